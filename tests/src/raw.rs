//! [`Raw`], a byte-exact RESP client over a blocking `TcpStream` (every read bounded by a
//! timeout), and [`encode`]. Self-contained: a shared RESP client crate is meant to replace it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_protocol::codec::{ClientCodec, RawReply};
use ringcache_protocol::{Protocol, Reply};
use tokio_util::codec::Decoder;

/// How long a command run through [`Raw::cmd`] may take before the test fails.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// A raw, byte-exact RESP client over a blocking `TcpStream`. Every read is bounded by a timeout.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    codec: ClientCodec,
    closed: bool,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Raw::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Raw {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        Raw {
            stream,
            buf: BytesMut::new(),
            codec: ClientCodec::new(Protocol::Resp2),
            closed: false,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The protocol replies are decoded with (switch after `HELLO 3`; [`Raw::hello3`] does both).
    pub fn set_proto(&mut self, proto: Protocol) {
        self.codec.proto = proto;
    }

    /// Writes all bytes; panics on error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Writes all bytes, returning the error (the peer may already have closed).
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends one command encoded as a RESP array of bulk strings.
    pub fn send_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.send(&encode(args));
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more bytes into the buffer, waiting until `deadline`. Returns false on timeout,
    /// EOF or error (marking the connection closed on EOF / error).
    fn fill(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline || self.closed {
            return false;
        }
        self.stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..1000 {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return false;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => {
                    self.closed = true;
                    return false;
                }
            }
        }
        false
    }

    /// Reads one complete reply (exact bytes and decoded value), or `None` on timeout / close.
    pub fn read(&mut self, timeout: Duration) -> Option<RawReply> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(r)) => return Some(r),
                Ok(None) => {}
                Err(e) => panic!("undecodable reply ({e}); buffered: {:?}", self.pending()),
            }
            if !self.fill(deadline) {
                return None;
            }
        }
    }

    /// The exact bytes of one complete reply, or `None` on timeout / close.
    pub fn read_reply(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        self.read(timeout).map(|r| r.raw.to_vec())
    }

    /// Reads one decoded reply, failing the test if none arrives within [`CMD_TIMEOUT`].
    pub fn reply(&mut self) -> Reply {
        match self.read(CMD_TIMEOUT) {
            Some(r) => r.reply,
            None => panic!(
                "no reply within {CMD_TIMEOUT:?} (closed: {}); buffered: {:?}",
                self.closed,
                self.pending()
            ),
        }
    }

    /// Runs one command and returns its decoded reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        self.send_cmd(args);
        self.reply()
    }

    /// Runs one command and returns the exact bytes of its reply.
    pub fn cmd_raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send_cmd(args);
        match self.read_reply(CMD_TIMEOUT) {
            Some(r) => r,
            None => panic!(
                "no reply within {CMD_TIMEOUT:?}; buffered: {:?}",
                self.pending()
            ),
        }
    }

    /// Sends `HELLO 3` (plus `extra` arguments), switches to RESP3 and returns the HELLO reply.
    pub fn hello3(&mut self, extra: &[&str]) -> Reply {
        let mut args = vec!["HELLO", "3"];
        args.extend_from_slice(extra);
        self.send_cmd(&args);
        self.set_proto(Protocol::Resp3);
        let r = self.reply();
        if r.is_error() {
            self.set_proto(Protocol::Resp2);
        }
        r
    }

    /// Whether the peer closes the connection within `timeout`; bytes arriving meanwhile are
    /// buffered (see [`Raw::pending`]).
    pub fn is_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for _ in 0..100_000 {
            if self.closed || (!self.fill(deadline) && Instant::now() >= deadline) {
                break;
            }
        }
        self.closed
    }

    /// Bytes received but not yet consumed as a reply.
    pub fn pending(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    pub fn pending_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut out, args.iter());
    out.to_vec()
}
