//! A connection's byte stream: a plain `TcpStream`, or the same socket carrying TLS.
//!
//! Servers are generic over [`Transport`], so the plain path stays monomorphic (the same
//! readiness-driven reads and writes as before, no indirection) and TLS is a second instance of
//! it. [`TlsStream`] drives a rustls connection sans-IO on the socket's readiness: on readable,
//! `read_tls`, `process_new_packets` and the plaintext reader; on write, the plaintext writer then
//! `write_tls` until the socket has it all.

use std::future::Future;
use std::io::{self, BufRead, Read, Write};

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::input::read_some_in;

/// Accepts from an optional listener (a server's plain or TLS one); never resolves without one.
pub async fn accept_on(
    l: Option<&tokio::net::TcpListener>,
) -> io::Result<(TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// What a connection reads from and writes to.
pub trait Transport: Send + Sync + Sized + 'static {
    /// Whether the connection can park: its socket alone carries its state (a TLS session keeps
    /// keys and buffered records next to it).
    const PARKS: bool;

    /// Whether a [`Transport::read_now`] that left room in the buffer drained the socket (true of
    /// a plain socket, not of TLS, whose reads go through its record buffer).
    const SHORT_READ_DRAINS: bool;

    /// The socket underneath.
    fn tcp(&self) -> &TcpStream;

    /// Waits until input arrives and appends it to `buf` (growing it by `chunk` when short): the
    /// bytes added, 0 at end of stream. Cancel-safe: nothing read is lost if dropped.
    fn read_some_in<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
        chunk: usize,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// [`Transport::read_some_in`] with the default chunk.
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        self.read_some_in(buf, crate::input::READ_CHUNK)
    }

    /// Writes all of `data` to the peer.
    fn write_all<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;

    /// The socket out of the runtime's reactor, for parking (only when [`Transport::PARKS`]).
    fn into_std(self) -> io::Result<std::net::TcpStream>;

    /// A parked socket back in the runtime (only when [`Transport::PARKS`]).
    fn unpark(sock: std::net::TcpStream) -> io::Result<Self>;

    /// Reads what has arrived into `buf` without waiting (the caller reserves room): the bytes
    /// added, 0 at end of stream, `WouldBlock` when nothing is there; wait on `tcp().readable()`.
    fn read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize>;

    /// Writes what the socket takes now from the front of `out` (advancing it), without waiting.
    fn write_now(&mut self, out: &mut BytesMut) -> io::Result<()>;

    /// Bytes taken from `out` that are not on the socket yet (TLS records): wait on
    /// `tcp().writable()` and call [`Transport::write_now`] again.
    fn pending_out(&self) -> bool;
}

/// Writes what the socket takes now from the front of `out`.
#[inline]
fn plain_write_now(sock: &TcpStream, out: &mut BytesMut) -> io::Result<()> {
    use bytes::Buf;
    while !out.is_empty() {
        match sock.try_write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Transport for TcpStream {
    const PARKS: bool = true;
    const SHORT_READ_DRAINS: bool = true;

    #[inline]
    fn tcp(&self) -> &TcpStream {
        self
    }

    #[inline]
    fn read_some_in<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
        chunk: usize,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        read_some_in(self, buf, chunk)
    }

    #[inline]
    fn write_all<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        tokio::io::AsyncWriteExt::write_all(self, data)
    }

    fn into_std(self) -> io::Result<std::net::TcpStream> {
        TcpStream::into_std(self)
    }

    fn unpark(sock: std::net::TcpStream) -> io::Result<Self> {
        TcpStream::from_std(sock)
    }

    #[inline]
    fn read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }

    #[inline]
    fn write_now(&mut self, out: &mut BytesMut) -> io::Result<()> {
        plain_write_now(self, out)
    }

    #[inline]
    fn pending_out(&self) -> bool {
        false
    }
}

/// A socket carrying TLS: the rustls connection (after its handshake) driven on the socket's
/// readiness.
pub struct TlsStream {
    sock: TcpStream,
    // Boxed: a rustls connection is large, and futures holding the stream move it around.
    conn: Box<rustls::Connection>,
    /// The peer closed (TCP end of stream or close_notify).
    eof: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .field("eof", &self.eof)
            .finish()
    }
}

/// `std::io` reads and writes on a tokio socket that never block (`WouldBlock` clears tokio's
/// cached readiness, so the next wait is for a real event); a read that left room in its buffer
/// says so (the socket is drained).
struct Nonblocking<'a>(&'a TcpStream, bool);

impl Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.try_read(buf)?;
        self.1 = n > 0 && n < buf.len();
        Ok(n)
    }
}

impl Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    /// A stream over `sock` whose handshake on `conn` is done (or still to be driven by reads and
    /// writes).
    pub fn new(sock: TcpStream, conn: rustls::Connection) -> TlsStream {
        TlsStream {
            sock,
            conn: Box::new(conn),
            eof: false,
        }
    }

    /// The rustls connection (peer certificates, negotiated protocol).
    pub fn connection(&self) -> &rustls::Connection {
        &self.conn
    }

    /// Moves the plaintext rustls has decrypted into `buf`: `Some(n)` with n > 0, `Some(0)` at
    /// the end of the stream, `None` when there is none yet.
    fn take_plain(&mut self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        let mut total = 0;
        loop {
            let mut reader = self.conn.reader();
            match reader.fill_buf() {
                Ok([]) => {
                    self.eof = true;
                    break;
                }
                Ok(chunk) => {
                    let n = chunk.len();
                    buf.extend_from_slice(chunk);
                    reader.consume(n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // TCP end of stream without close_notify: an end all the same for a cache client.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(if total > 0 || self.eof {
            Some(total)
        } else {
            None
        })
    }

    /// Reads what TLS records the socket has into rustls and decrypts them (`WouldBlock` when
    /// there is nothing).
    ///
    /// A read that leaves room in rustls's buffer has drained the socket, so tokio's readiness
    /// is cleared in the same step (as `input::read_some_in` does): the next read waits for the
    /// next event instead of spending a `recv` on `EAGAIN`.
    fn read_records(&mut self) -> io::Result<()> {
        let (sock, conn) = (&self.sock, &mut self.conn);
        let mut got = None;
        let r = sock.try_io(tokio::io::Interest::READABLE, || {
            let mut io = Nonblocking(sock, false);
            let n = conn.read_tls(&mut io)?;
            got = Some(n);
            if io.1 {
                // `WouldBlock` is how tokio is told to clear the readiness it cached.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match (r, got) {
            (Err(e), None) => return Err(e),
            (_, None) => return Ok(()),
            (_, Some(0)) => self.eof = true,
            (_, Some(_)) => {
                if let Err(e) = self.conn.process_new_packets() {
                    // The alert rustls queued tells the peer why.
                    let _ = self.push_pending();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                self.push_pending()?;
            }
        }
        Ok(())
    }

    /// Writes what TLS records the socket takes now, without waiting (alerts, tickets, key
    /// updates queued while reading); the rest goes out with the next write.
    fn push_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Nonblocking(&self.sock, false)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn read_tls_some(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        loop {
            if buf.capacity() - buf.len() < chunk / 4 {
                buf.reserve(chunk);
            }
            if let Some(n) = self.take_plain(buf)? {
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            self.sock.readable().await?;
            match self.read_records() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn write_tls_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        loop {
            // rustls takes plaintext up to its buffer limit; the rest after the socket drains it.
            while !data.is_empty() {
                let n = self.conn.writer().write(data)?;
                if n == 0 {
                    break;
                }
                data = &data[n..];
            }
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut Nonblocking(&self.sock, false)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.sock.writable().await?,
                    Err(e) => return Err(e),
                }
            }
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    fn tls_read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            if let Some(n) = self.take_plain(buf)? {
                return Ok(n);
            }
            self.read_records()?;
        }
    }

    fn tls_write_now(&mut self, out: &mut BytesMut) -> io::Result<()> {
        use bytes::Buf;
        loop {
            while !out.is_empty() {
                let n = self.conn.writer().write(out)?;
                if n == 0 {
                    break;
                }
                out.advance(n);
            }
            if !self.conn.wants_write() {
                return Ok(());
            }
            match self.conn.write_tls(&mut Nonblocking(&self.sock, false)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends close_notify (best effort, without waiting).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.push_pending();
    }
}

impl Transport for TlsStream {
    const PARKS: bool = false;
    const SHORT_READ_DRAINS: bool = false;

    fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    fn read_some_in<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
        chunk: usize,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        self.read_tls_some(buf, chunk)
    }

    fn write_all<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        self.write_tls_all(data)
    }

    fn into_std(self) -> io::Result<std::net::TcpStream> {
        Err(no_park())
    }

    fn unpark(_: std::net::TcpStream) -> io::Result<Self> {
        Err(no_park())
    }

    fn read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.tls_read_now(buf)
    }

    fn write_now(&mut self, out: &mut BytesMut) -> io::Result<()> {
        self.tls_write_now(out)
    }

    fn pending_out(&self) -> bool {
        self.conn.wants_write()
    }
}

fn no_park() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "a TLS connection does not park")
}

/// A link's stream, plain or TLS as its settings say (the client crate's links: a router's
/// control links, a replica's link to its primary, migration links, health checks).
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(TlsStream),
}

impl Transport for Stream {
    const PARKS: bool = false;
    const SHORT_READ_DRAINS: bool = false;

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.tcp(),
        }
    }

    async fn read_some_in(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => read_some_in(s, buf, chunk).await,
            Stream::Tls(t) => t.read_tls_some(buf, chunk).await,
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => tokio::io::AsyncWriteExt::write_all(s, data).await,
            Stream::Tls(t) => t.write_tls_all(data).await,
        }
    }

    fn into_std(self) -> io::Result<std::net::TcpStream> {
        Err(no_park())
    }

    fn unpark(_: std::net::TcpStream) -> io::Result<Self> {
        Err(no_park())
    }

    fn read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read_now(buf),
            Stream::Tls(t) => t.tls_read_now(buf),
        }
    }

    fn write_now(&mut self, out: &mut BytesMut) -> io::Result<()> {
        match self {
            Stream::Plain(s) => plain_write_now(s, out),
            Stream::Tls(t) => t.tls_write_now(out),
        }
    }

    fn pending_out(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.conn.wants_write(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tls::{ClientAuth, ClientFiles, ServerFiles, TlsClient, TlsServer};

    /// A CA and a certificate for 127.0.0.1 in a fresh directory: (server files, client files).
    fn pki(name: &str) -> (ServerFiles, ClientFiles) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
        let dir = std::env::temp_dir().join(format!("ringcache-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        std::fs::write(dir.join("node.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("node.key"), key.serialize_pem()).unwrap();
        let server = ServerFiles {
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
            ca: None,
            auth: ClientAuth::No,
        };
        let client = ClientFiles {
            ca: dir.join("ca.crt"),
            ..Default::default()
        };
        (server, client)
    }

    /// A megabyte each way through the sans-IO stream (server side by `read_some`/`write_all`,
    /// client side by `write_now`/`read_now` on readiness), then a clean end of stream.
    #[test]
    fn bytes_cross_both_ways_and_the_end_is_seen() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (server_files, client_files) = pki("transport");
            let server = TlsServer::new(server_files).unwrap();
            let client = TlsClient::new(&client_files).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let echo = tokio::spawn(async move {
                let (sock, _) = listener.accept().await.unwrap();
                let mut s = server.accept(sock).await.unwrap();
                let mut buf = BytesMut::new();
                let mut total = 0;
                loop {
                    let n = s.read_some(&mut buf).await.unwrap();
                    if n == 0 {
                        return total;
                    }
                    total += n;
                    let chunk = buf.split();
                    s.write_all(&chunk).await.unwrap();
                }
            });
            let sock = TcpStream::connect(&addr).await.unwrap();
            let mut c = Stream::Tls(client.connect(sock, &addr).await.unwrap());
            let sent: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
            let mut out = BytesMut::from(&sent[..]);
            let mut back = BytesMut::new();
            while back.len() < sent.len() {
                if !out.is_empty() || c.pending_out() {
                    c.write_now(&mut out).unwrap();
                }
                if back.capacity() - back.len() < 4096 {
                    back.reserve(64 * 1024);
                }
                match c.read_now(&mut back) {
                    Ok(0) => panic!("closed early"),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tokio::select! {
                            r = c.tcp().readable() => r.unwrap(),
                            r = c.tcp().writable(), if !out.is_empty() || c.pending_out() => r.unwrap(),
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(&back[..], &sent[..]);
            if let Stream::Tls(t) = &mut c {
                t.close();
            }
            drop(c);
            assert_eq!(echo.await.unwrap(), sent.len());
        });
    }
}
