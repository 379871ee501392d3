//! ringcache's shared language, with no I/O: RESP requests and replies (and a tokio-util codec),
//! the command table, the key hash with `{tag}` handling, and the ring, so the router and every node
//! agree on which shard owns a key; and the client registry with the connection commands (CLIENT,
//! HELLO, AUTH, RESET) both servers answer alike.

pub mod acl;
pub mod clients;
pub mod codec;
pub mod errors;
pub mod glob;
pub mod hash;
pub mod help;
pub mod input;
pub mod keys;
pub mod latency;
pub mod monitor;
pub mod num;
pub mod park;
pub mod pause;
pub mod peek;
pub mod pki;
pub mod request;
pub mod resp;
pub mod ring;
pub mod shebang;
pub mod table;
pub mod tls;
pub mod transport;
pub mod wire;

pub use request::{Limits, ProtocolError, Request, RequestDecoder};
pub use resp::{Protocol, Reply};
