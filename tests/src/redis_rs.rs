//! A `redis-rs` client, to check the server works with a widely used client library.

use std::net::SocketAddr;
use std::time::Duration;

/// A multiplexed `redis-rs` connection (RESP2).
pub async fn client(addr: SocketAddr) -> redis::aio::MultiplexedConnection {
    let c = redis::Client::open(format!("redis://{addr}/")).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        c.get_multiplexed_async_connection(),
    )
    .await
    .expect("redis-rs connect timed out")
    .expect("redis-rs connect")
}
