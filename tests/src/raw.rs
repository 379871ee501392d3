//! [`Raw`], the tests' byte-exact RESP client: the shared blocking client
//! ([`ringcache_client::blocking::Client`]) with helpers that fail the test instead of returning
//! errors, and [`encode`].

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use ringcache_client::blocking::Client;
use ringcache_client::ClientError;
use ringcache_protocol::codec::RawReply;
use ringcache_protocol::{Protocol, Reply};

/// How long a command run through [`Raw::cmd`] may take before the test fails.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// A raw, byte-exact RESP client over a blocking `TcpStream`. Every read is bounded by a timeout.
pub struct Raw {
    client: Client,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let client = Client::connect(&addr.to_string(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Raw { client }
    }

    pub fn from_stream(stream: TcpStream) -> Raw {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "peer".to_string(), |a| a.to_string());
        Raw {
            client: Client::from_stream(stream, &peer),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.client.stream().local_addr().unwrap()
    }

    pub fn stream(&self) -> &TcpStream {
        self.client.stream()
    }

    /// The protocol replies are decoded with (switch after `HELLO 3`; [`Raw::hello3`] does both).
    pub fn set_proto(&mut self, proto: Protocol) {
        self.client.set_proto(proto);
    }

    /// Writes all bytes; panics on error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Writes all bytes, returning the error (the peer may already have closed).
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.client.write(bytes)
    }

    /// Sends one command encoded as a RESP array of bulk strings.
    pub fn send_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.send(&encode(args));
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&mut self) {
        self.client.shutdown_write();
    }

    /// Reads one complete reply (exact bytes and decoded value), or `None` on timeout / close.
    pub fn read(&mut self, timeout: Duration) -> Option<RawReply> {
        match self.client.read(timeout) {
            Ok(r) => Some(r),
            Err(ClientError::Protocol { reason, .. }) => {
                panic!(
                    "undecodable reply ({reason}); buffered: {:?}",
                    self.pending()
                )
            }
            Err(_) => None,
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
                self.client.is_closed(),
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
        self.client.wait_closed(timeout)
    }

    /// Bytes received but not yet consumed as a reply.
    pub fn pending(&self) -> String {
        String::from_utf8_lossy(self.client.pending()).into_owned()
    }

    pub fn pending_bytes(&self) -> &[u8] {
        self.client.pending()
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut out, args.iter());
    out.to_vec()
}
