//! tokio-util codecs: [`ServerCodec`] for the side that accepts clients (node, router front end) and
//! [`ClientCodec`] for the side that talks to a server (router upstreams, replication, tools).
//!
//! Requests are decoded by [`RequestDecoder`] (Redis's limits, inline commands); replies from a
//! server, RESP2 or RESP3, are decoded by the `redis-protocol` crate, which also keeps the exact
//! bytes of each reply so a proxy forwards them untouched.

use bytes::{BufMut, Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::BytesFrame as Frame3;
use tokio_util::codec::{Decoder, Encoder};

use crate::request::{ProtocolError, Request, RequestDecoder};
use crate::resp::{Protocol, Reply};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("invalid reply from server: {0}")]
    Reply(String),
}

/// Accepting side: decodes client requests, encodes replies in the negotiated protocol.
#[derive(Debug, Default)]
pub struct ServerCodec {
    pub decoder: RequestDecoder,
    pub proto: Protocol,
}

impl Decoder for ServerCodec {
    type Item = Request;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }
}

impl Encoder<&Reply> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Reply, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.encode(self.proto, dst);
        Ok(())
    }
}

impl Encoder<Reply> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Reply, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.encode(self.proto, dst);
        Ok(())
    }
}

/// One reply read from a server: its exact bytes and its decoded value.
#[derive(Debug, Clone, PartialEq)]
pub struct RawReply {
    pub raw: Bytes,
    pub reply: Reply,
}

impl RawReply {
    pub fn is_error(&self) -> bool {
        // The decoded value, not the first byte: a RESP3 attribute may precede an error.
        matches!(self.reply, Reply::Error(_))
    }

    /// The error text (`ERR ...`) when the reply is an error.
    pub fn error_text(&self) -> Option<&str> {
        match &self.reply {
            Reply::Error(text) => Some(text),
            _ => None,
        }
    }
}

/// Upper bound of one reply a client side buffers (a bulk reply may legitimately be 512 MB).
const MAX_REPLY_BUFFER: usize = 1 << 30;

/// Connecting side: encodes requests, decodes replies in the protocol the connection speaks
/// (RESP2 until it sends `HELLO 3`).
#[derive(Debug, Default)]
pub struct ClientCodec {
    pub proto: Protocol,
}

impl ClientCodec {
    pub fn new(proto: Protocol) -> Self {
        ClientCodec { proto }
    }
}

impl Decoder for ClientCodec {
    type Item = RawReply;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawReply>, CodecError> {
        if src.is_empty() {
            return Ok(None);
        }
        let decoded = match self.proto {
            Protocol::Resp2 => redis_protocol::resp2::decode::decode_bytes_mut(src)
                .map(|o| o.map(|(f, _, raw)| (from_resp2(&f), raw))),
            Protocol::Resp3 => redis_protocol::resp3::decode::complete::decode_bytes_mut(src)
                .map(|o| o.map(|(f, _, raw)| (from_resp3(&f), raw))),
        };
        match decoded {
            Ok(Some((reply, raw))) => Ok(Some(RawReply { raw, reply })),
            Ok(None) if src.len() > MAX_REPLY_BUFFER => {
                Err(CodecError::Reply("reply larger than 1 GiB".into()))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(CodecError::Reply(e.to_string())),
        }
    }
}

impl Encoder<&Request> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Request, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.put_slice(&item.raw);
        Ok(())
    }
}

impl Encoder<&[&[u8]]> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &[&[u8]], dst: &mut BytesMut) -> Result<(), CodecError> {
        crate::resp::encode_request(dst, item.iter());
        Ok(())
    }
}

fn from_resp2(frame: &Frame2) -> Reply {
    match frame {
        Frame2::SimpleString(b) => Reply::StatusOwned(String::from_utf8_lossy(b).into_owned()),
        Frame2::Error(s) => Reply::Error(s.to_string()),
        Frame2::Integer(n) => Reply::Int(*n),
        Frame2::BulkString(b) => Reply::Bulk(b.clone()),
        Frame2::Array(items) => Reply::Array(items.iter().map(from_resp2).collect()),
        // RESP2 cannot tell a nil bulk from a nil array once decoded; a nil bulk is far more common.
        Frame2::Null => Reply::Nil,
    }
}

fn from_resp3(frame: &Frame3) -> Reply {
    match frame {
        Frame3::BlobString { data, .. } => Reply::Bulk(data.clone()),
        Frame3::SimpleString { data, .. } => {
            Reply::StatusOwned(String::from_utf8_lossy(data).into_owned())
        }
        Frame3::SimpleError { data, .. } => Reply::Error(data.to_string()),
        Frame3::BlobError { data, .. } => Reply::Error(String::from_utf8_lossy(data).into_owned()),
        Frame3::Number { data, .. } => Reply::Int(*data),
        Frame3::Null => Reply::Nil,
        Frame3::Array { data, .. } | Frame3::Push { data, .. } => {
            Reply::Array(data.iter().map(from_resp3).collect())
        }
        Frame3::Set { data, .. } => Reply::Set(data.iter().map(from_resp3).collect()),
        Frame3::Map { data, .. } => Reply::Map(
            data.iter()
                .map(|(k, v)| (from_resp3(k), from_resp3(v)))
                .collect(),
        ),
        Frame3::Double { data, .. } => Reply::Double(*data),
        Frame3::Boolean { data, .. } => Reply::Int(i64::from(*data)),
        Frame3::BigNumber { data, .. } => Reply::Bulk(data.clone()),
        Frame3::VerbatimString { data, .. } => Reply::Verbatim(data.clone()),
        Frame3::ChunkedString(data) => Reply::Bulk(data.clone()),
        Frame3::Hello { .. } => Reply::Nil,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_codec_keeps_raw_bytes() {
        let mut c = ClientCodec::new(Protocol::Resp2);
        let mut buf = BytesMut::from(&b"$3\r\nabc\r\n*2\r\n:1\r\n$-1\r\n+OK"[..]);
        let r = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&r.raw[..], b"$3\r\nabc\r\n");
        let r = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&r.raw[..], b"*2\r\n:1\r\n$-1\r\n");
        assert_eq!(r.reply, Reply::Array(vec![Reply::Int(1), Reply::Nil]));
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\r\n-ERR x\r\n");
        assert!(!c.decode(&mut buf).unwrap().unwrap().is_error());
        let e = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(e.error_text(), Some("ERR x"));
        let mut c3 = ClientCodec::new(Protocol::Resp3);
        let mut buf = BytesMut::from(&b"%1\r\n$1\r\na\r\n_\r\n"[..]);
        let r = c3.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            r.reply,
            Reply::Map(vec![(Reply::bulk_str("a"), Reply::Nil)])
        );
    }
}
