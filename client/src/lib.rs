//! The one RESP client of ringcache: the router's control links to nodes, a node's links to its
//! primary and to migration targets, the binary's admin tools and the tests all talk to servers
//! through it.
//!
//! - [`Client`]: async (tokio). Connect with a timeout, send a command (or a typed
//!   [`WireCommand`](ringcache_protocol::wire::WireCommand)), read its reply; pipelines; raw bytes
//!   for links that turn into streams (replication), with [`Client::into_parts`].
//! - [`blocking::Client`]: the same over a blocking socket, for tools without a runtime and for
//!   tests that check replies byte for byte.
//! - [`admin`]: typed readers of the router's `RING STATUS` and `RING NODES`, and the one flow
//!   that sends a membership change and follows it until its keys have moved.
//!
//! Every wait is bounded: connecting, writing and reading all take a timeout.

pub mod admin;
pub mod blocking;
mod conversation;
mod error;
mod link;
mod tokio_client;

pub use conversation::Conversation;
pub use error::ClientError;
pub use link::{Credentials, LinkSpec};
pub use ringcache_protocol::codec::RawReply;
pub use ringcache_protocol::{Protocol, Reply};
pub use tokio_client::{args, call_once, Client};
