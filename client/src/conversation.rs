//! The transport-free half of a client: requests encoded into an output buffer, replies decoded
//! from an input buffer with the cluster's own [`ClientCodec`]. The async and the blocking
//! client both wrap one, so they frame and decode alike.

use bytes::BytesMut;
use ringcache_protocol::codec::{ClientCodec, RawReply};
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::Protocol;
use tokio_util::codec::Decoder;

/// Bytes read ahead of each socket read.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
pub struct Conversation {
    /// Received bytes not yet decoded as a reply.
    pub input: BytesMut,
    codec: ClientCodec,
}

impl Conversation {
    pub fn new(proto: Protocol) -> Conversation {
        Conversation {
            input: BytesMut::with_capacity(4096),
            codec: ClientCodec::new(proto),
        }
    }

    /// Gives back the input buffer if nothing is left in it (a connection put aside idle).
    pub fn release_idle(&mut self) {
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
    }

    /// The protocol replies are decoded with (switch after `HELLO 3`).
    pub fn set_proto(&mut self, proto: Protocol) {
        self.codec.proto = proto;
    }

    pub fn proto(&self) -> Protocol {
        self.codec.proto
    }

    /// One whole reply if the input holds one; `Err` if the input is not RESP.
    pub fn next_reply(&mut self) -> Result<Option<RawReply>, String> {
        self.codec
            .decode(&mut self.input)
            .map_err(|e| e.to_string())
    }

    /// Room for the next read.
    pub fn reserve(&mut self) {
        if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
            self.input.reserve(READ_CHUNK);
        }
    }
}

/// Encodes commands given as argument lists into one buffer.
pub(crate) fn encode_all<A: AsRef<[u8]>>(cmds: &[&[A]]) -> BytesMut {
    let mut out = BytesMut::new();
    for args in cmds {
        encode_request(&mut out, args.iter());
    }
    out
}
