//! Reading a client's input into a buffer taken only once bytes are there, so a connection that
//! sits idle holds no read buffer (Redis frees an idle client's query buffer the same way).

use std::io;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Buffer space taken per read when the buffer is short of it.
pub const READ_CHUNK: usize = 16 * 1024;

/// Waits until `sock` is readable, then reads what it has into `buf` (growing it by
/// [`READ_CHUNK`] when needed): the bytes read, 0 at end of stream.
///
/// A read that leaves room in the buffer has drained the socket, so its readiness is cleared
/// then: the next call waits for the next event instead of spending a `recv` on `EAGAIN`
/// (one `recv` per batch of requests, as Redis reads).
pub async fn read_some(sock: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    read_some_in(sock, buf, READ_CHUNK).await
}

/// [`read_some`] growing the buffer by `chunk` (when less than a quarter of it is free).
pub async fn read_some_in(sock: &TcpStream, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
    loop {
        sock.readable().await?;
        if buf.capacity() - buf.len() < chunk / 4 {
            buf.reserve(chunk);
        }
        let spare = buf.capacity() - buf.len();
        let mut drained = None;
        let r = sock.try_io(Interest::READABLE, || {
            let n = sock.try_read_buf(buf)?;
            if n > 0 && n < spare {
                // `WouldBlock` is how tokio is told to clear the readiness it cached.
                drained = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (r, drained) {
            (_, Some(n)) => return Ok(n),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
            (r, None) => return r,
        }
    }
}
