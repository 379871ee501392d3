//! The async client: one TCP connection, requests written whole, replies read in order.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::codec::RawReply;
use ringcache_protocol::tls::TlsClient;
use ringcache_protocol::transport::{Stream, Transport};
use ringcache_protocol::wire::WireCommand;
use ringcache_protocol::{Protocol, Reply};
use tokio::net::TcpStream;

use crate::conversation::{encode_all, Conversation};
use crate::error::ClientError;

#[derive(Debug)]
pub struct Client {
    addr: String,
    sock: Stream,
    conv: Conversation,
}

impl Client {
    /// Connects to `addr` (`HOST:PORT`) within `timeout`, RESP2.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        Client::connect_with(addr, timeout, None).await
    }

    /// Connects to `addr` within `timeout`, over TLS when `tls` is given (the handshake within
    /// the same timeout).
    pub async fn connect_with(
        addr: &str,
        timeout: Duration,
        tls: Option<&TlsClient>,
    ) -> Result<Client, ClientError> {
        let sock = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ClientError::ConnectTimeout {
                    addr: addr.to_string(),
                })
            }
            Ok(Err(e)) => return Err(ClientError::io(addr, &e)),
            Ok(Ok(s)) => s,
        };
        let Some(tls) = tls else {
            return Ok(Client::from_stream(sock, addr));
        };
        let _ = sock.set_nodelay(true);
        match tokio::time::timeout(timeout, tls.connect(sock, addr)).await {
            Err(_) => Err(ClientError::ConnectTimeout {
                addr: addr.to_string(),
            }),
            Ok(Err(e)) => Err(ClientError::io(addr, &e)),
            Ok(Ok(s)) => Ok(Client::from_transport(Stream::Tls(s), addr)),
        }
    }

    /// Wraps a connected socket; `addr` names the server in errors.
    pub fn from_stream(sock: TcpStream, addr: &str) -> Client {
        // Requests are small and waited for: never hold one back for Nagle.
        let _ = sock.set_nodelay(true);
        Client::from_transport(Stream::Plain(sock), addr)
    }

    /// Wraps a connected stream, plain or TLS.
    pub fn from_transport(sock: Stream, addr: &str) -> Client {
        Client {
            addr: addr.to_string(),
            sock,
            conv: Conversation::new(Protocol::Resp2),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Gives back the read buffer, for a connection kept idle in a pool; the next read takes one.
    pub fn release_idle(&mut self) {
        self.conv.release_idle();
    }

    pub fn set_proto(&mut self, proto: Protocol) {
        self.conv.set_proto(proto);
    }

    /// Runs one command; an error reply is `Ok(Reply::Error)`, a transport failure `Err`.
    pub async fn call<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let out = encode_all(&[args]);
        let mut replies = self.exchange(&out, 1, timeout).await?;
        Ok(replies.pop().map(|r| r.reply).unwrap_or(Reply::Nil))
    }

    /// Runs one of the cluster's own commands.
    pub async fn call_wire(
        &mut self,
        cmd: &impl WireCommand,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        self.call(&cmd.args(), timeout).await
    }

    /// Several commands in one write; their replies in order.
    pub async fn pipeline<A: AsRef<[u8]>>(
        &mut self,
        cmds: &[Vec<A>],
        timeout: Duration,
    ) -> Result<Vec<Reply>, ClientError> {
        let refs: Vec<&[A]> = cmds.iter().map(Vec::as_slice).collect();
        let out = encode_all(&refs);
        let replies = self.exchange(&out, cmds.len(), timeout).await?;
        Ok(replies.into_iter().map(|r| r.reply).collect())
    }

    /// Writes `bytes` (already RESP) and reads `n` replies, each with its exact bytes.
    pub async fn exchange(
        &mut self,
        bytes: &[u8],
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RawReply>, ClientError> {
        let addr = self.addr.clone();
        let work = async {
            self.write_all(bytes).await?;
            let mut replies = Vec::with_capacity(n);
            while replies.len() < n {
                replies.push(self.read_one().await?);
            }
            Ok(replies)
        };
        bounded(addr, timeout, work).await
    }

    /// Writes `bytes` within `timeout`.
    pub async fn send(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), ClientError> {
        let addr = self.addr.clone();
        bounded(addr, timeout, self.write_all(bytes)).await
    }

    /// Reads the next reply within `timeout`.
    pub async fn read(&mut self, timeout: Duration) -> Result<RawReply, ClientError> {
        let addr = self.addr.clone();
        bounded(addr, timeout, self.read_one()).await
    }

    /// The socket and the bytes read past the last reply, for a link that turns into a stream
    /// after its handshake (a replica's link to its primary).
    pub fn into_parts(self) -> (Stream, BytesMut) {
        (self.sock, self.conv.input)
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.sock
            .write_all(bytes)
            .await
            .map_err(|e| ClientError::io(&self.addr, &e))
    }

    async fn read_one(&mut self) -> Result<RawReply, ClientError> {
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
            self.conv.reserve();
            let got = self
                .sock
                .read_some(&mut self.conv.input)
                .await
                .map_err(|e| ClientError::io(&self.addr, &e))?;
            if got == 0 {
                return Err(ClientError::Closed {
                    addr: self.addr.clone(),
                });
            }
        }
    }
}

/// `work` within `timeout`, else a timeout naming `addr`.
async fn bounded<T>(
    addr: String,
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout {
            addr,
            after: timeout,
        }),
    }
}

/// Connects as `link` says, runs one command and hangs up; an error reply becomes `Err` naming
/// the server.
pub async fn call_once<A: AsRef<[u8]>>(
    addr: &str,
    args: &[A],
    timeout: Duration,
    link: &crate::LinkSpec,
) -> Result<Reply, String> {
    let mut c = Client::open(addr, timeout, link)
        .await
        .map_err(|e| e.to_string())?;
    match c.call(args, timeout).await.map_err(|e| e.to_string())? {
        Reply::Error(e) => Err(format!("{addr}: {e}")),
        r => Ok(r),
    }
}

/// Arguments as owned `Bytes` (the shape [`Client::pipeline`] takes for mixed commands).
pub fn args<A: AsRef<[u8]>>(parts: &[A]) -> Vec<Bytes> {
    parts
        .iter()
        .map(|p| Bytes::copy_from_slice(p.as_ref()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A server that answers each read with `reply` bytes (split across two writes).
    async fn serve(reply: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let (a, b) = reply.split_at(reply.len() / 2);
                let _ = s.write_all(a).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = s.write_all(b).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn call_reads_a_reply_split_across_reads() {
        let addr = serve(b"$5\r\nhello\r\n").await;
        let mut c = Client::connect(&addr, Duration::from_secs(1))
            .await
            .unwrap();
        let r = c.call(&["GET", "k"], Duration::from_secs(1)).await.unwrap();
        assert_eq!(r, Reply::Bulk(Bytes::from_static(b"hello")));
    }

    #[tokio::test]
    async fn pipeline_keeps_order_and_errors_are_replies() {
        let addr = serve(b"+OK\r\n-ERR no\r\n:3\r\n").await;
        let mut c = Client::connect(&addr, Duration::from_secs(1))
            .await
            .unwrap();
        let cmds = vec![args(&["A"]), args(&["B"]), args(&["C"])];
        let r = c.pipeline(&cmds, Duration::from_secs(1)).await.unwrap();
        assert_eq!(r[0], Reply::StatusOwned("OK".into()));
        assert_eq!(r[1], Reply::Error("ERR no".into()));
        assert_eq!(r[2], Reply::Int(3));
    }

    #[tokio::test]
    async fn silence_is_a_timeout_and_names_the_server() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let _hold = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let mut c = Client::connect(&addr, Duration::from_secs(1))
            .await
            .unwrap();
        let e = c
            .call(&["PING"], Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        assert_eq!(e.to_string(), format!("{addr}: no reply within 50 ms"));
    }

    #[tokio::test]
    async fn refused_and_closed_are_errors() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = Client::connect(&addr, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), format!("{addr}: connection refused"));

        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            drop(s);
        });
        let mut c = Client::connect(&addr, Duration::from_secs(1))
            .await
            .unwrap();
        let e = c.call(&["PING"], Duration::from_secs(1)).await.unwrap_err();
        assert!(
            matches!(e, ClientError::Closed { .. } | ClientError::Io { .. }),
            "{e}"
        );
    }

    #[tokio::test]
    async fn into_parts_keeps_bytes_past_the_reply() {
        let addr = serve(b"+FULLRESYNC x 0 0\r\n*1\r\n$4\r\nPING\r\n").await;
        let mut c = Client::connect(&addr, Duration::from_secs(1))
            .await
            .unwrap();
        c.send(b"*1\r\n$4\r\nSYNC\r\n", Duration::from_secs(1))
            .await
            .unwrap();
        let first = c.read(Duration::from_secs(1)).await.unwrap();
        assert_eq!(first.reply, Reply::StatusOwned("FULLRESYNC x 0 0".into()));
        // The rest may still be in flight; what arrived stays in the buffer.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_sock, rest) = c.into_parts();
        assert!(b"*1\r\n$4\r\nPING\r\n".starts_with(&rest));
    }
}
