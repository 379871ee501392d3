//! Reading a client's input into a buffer taken only once bytes are there, so a connection that
//! sits idle holds no read buffer (Redis frees an idle client's query buffer the same way).

use std::io;

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Buffer space taken per read when the buffer is short of it.
pub const READ_CHUNK: usize = 16 * 1024;

/// Waits until `sock` is readable, then reads what it has into `buf` (growing it by
/// [`READ_CHUNK`] when needed): the bytes read, 0 at end of stream.
pub async fn read_some(sock: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        sock.readable().await?;
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match sock.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}
