//! The client over a blocking socket: for tools that run without a runtime (the container
//! health check) and for tests that check replies byte for byte. Every read waits at most until
//! its deadline.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use ringcache_protocol::codec::RawReply;
use ringcache_protocol::{Protocol, Reply};

use crate::conversation::{encode_all, Conversation, READ_CHUNK};
use crate::error::ClientError;

#[derive(Debug)]
pub struct Client {
    addr: String,
    stream: TcpStream,
    conv: Conversation,
    closed: bool,
}

impl Client {
    /// Connects to `addr` (`HOST:PORT`, resolved; the first address that answers) within
    /// `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let deadline = Instant::now() + timeout;
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| ClientError::io(addr, &e))?
            .collect();
        let mut last = ClientError::ConnectTimeout {
            addr: addr.to_string(),
        };
        for a in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&a, left) {
                Ok(s) => return Ok(Client::from_stream(s, addr)),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => last = ClientError::io(addr, &e),
            }
        }
        Err(last)
    }

    /// Wraps a connected socket; `addr` names the server in errors.
    pub fn from_stream(stream: TcpStream, addr: &str) -> Client {
        let _ = stream.set_nodelay(true);
        // A peer that stops reading must not block a writer for ever.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        Client {
            addr: addr.to_string(),
            stream,
            conv: Conversation::new(Protocol::Resp2),
            closed: false,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn set_proto(&mut self, proto: Protocol) {
        self.conv.set_proto(proto);
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.write(bytes)
            .map_err(|e| ClientError::io(&self.addr, &e))
    }

    /// Writes all of `bytes`, failing with the OS error itself: for callers that tell a write
    /// blocked by backpressure (`WouldBlock`/`TimedOut`) from a peer that is gone.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends one command as a RESP array of bulk strings.
    pub fn send_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<(), ClientError> {
        let out = encode_all(&[args]);
        self.send(&out)
    }

    /// Runs one command; an error reply is `Ok(Reply::Error)`.
    pub fn call<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        self.send_cmd(args)?;
        Ok(self.read(timeout)?.reply)
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads one whole reply (exact bytes and value) within `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Result<RawReply, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.conv.next_reply() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(reason) => {
                    return Err(ClientError::Protocol {
                        addr: self.addr.clone(),
                        reason,
                    })
                }
            }
            if !self.fill(deadline)? {
                return Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    after: timeout,
                });
            }
        }
    }

    /// Reads more bytes, waiting until `deadline`: `Ok(false)` on timeout, `Err` once closed.
    pub fn fill(&mut self, deadline: Instant) -> Result<bool, ClientError> {
        if self.closed {
            return Err(ClientError::Closed {
                addr: self.addr.clone(),
            });
        }
        let mut chunk = [0u8; READ_CHUNK];
        // Interrupted reads retry; the bound keeps a signal storm from spinning for ever.
        for _ in 0..1000 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| ClientError::io(&self.addr, &e))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return Err(ClientError::Closed {
                        addr: self.addr.clone(),
                    });
                }
                Ok(n) => {
                    self.conv.input.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false)
                }
                Err(e) => {
                    self.closed = true;
                    return Err(ClientError::io(&self.addr, &e));
                }
            }
        }
        Ok(false)
    }

    /// Whether the peer closed (or reset) the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the peer closes the connection within `timeout`; bytes arriving meanwhile are
    /// kept (see [`Client::pending`]), so a caller can check what the server said before it hung
    /// up.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(true) => {}
                // A read that returned before the deadline (a spurious wake-up) waits again.
                Ok(false) if Instant::now() < deadline => {}
                Ok(false) => return false,
                Err(_) => return self.closed,
            }
        }
    }

    /// Bytes received but not yet read as a reply.
    pub fn pending(&self) -> &[u8] {
        &self.conv.input
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn call_and_raw_bytes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"*2\r\n:1\r\n$1\r\nx\r\n").unwrap();
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"+PO").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(b"NG\r\n").unwrap();
        });
        let mut c = Client::connect(&addr, Duration::from_secs(1)).unwrap();
        let r = c.call(&["X"], Duration::from_secs(1)).unwrap();
        assert_eq!(
            r,
            Reply::Array(vec![Reply::Int(1), Reply::Bulk("x".into())])
        );
        c.send_cmd(&["PING"]).unwrap();
        let raw = c.read(Duration::from_secs(1)).unwrap();
        assert_eq!(&raw.raw[..], b"+PONG\r\n");
        server.join().unwrap();
        let e = c.read(Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, ClientError::Closed { .. }), "{e}");
        assert!(c.is_closed());
    }

    #[test]
    fn wait_closed_keeps_what_came_before_the_close() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"-ERR bye\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            drop(s);
            // A second client that the server never closes.
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(s);
        });
        let mut c = Client::connect(&addr, Duration::from_secs(1)).unwrap();
        assert!(c.wait_closed(Duration::from_secs(5)));
        assert_eq!(c.pending(), b"-ERR bye\r\n");
        assert!(c.wait_closed(Duration::from_millis(1)));

        let mut open = Client::connect(&addr, Duration::from_secs(1)).unwrap();
        assert!(!open.wait_closed(Duration::from_millis(30)));
        assert!(!open.is_closed());
        server.join().unwrap();
    }

    #[test]
    fn write_to_a_closed_peer_fails_with_the_os_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let mut c = Client::connect(&addr, Duration::from_secs(1)).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(s);
        // The first writes may land in the socket buffer before the reset comes back.
        let e = (0..100)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(5));
                c.write(b"*1\r\n$4\r\nPING\r\n").err()
            })
            .unwrap();
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
        let e = c.send(b"PING\r\n").unwrap_err();
        assert!(matches!(e, ClientError::Io { .. }), "{e}");
    }

    #[test]
    fn silence_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let mut c = Client::connect(&addr, Duration::from_secs(1)).unwrap();
        let e = c.call(&["PING"], Duration::from_millis(30)).unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        drop(l);
    }
}
