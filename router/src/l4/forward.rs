//! Accepting L4 connections and splicing each to the backend its pool picked, on the L4 thread
//! carrying the fewest connections to that backend.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use crate::l4::pool::{Active, Pool};

/// Where an L4 listener's connections run: how many each thread carries, per backend.
///
/// A new connection goes to the thread with the fewest connections to its backend, then the fewest
/// overall, so every thread carries every backend. Plain round robin pinned each backend to one
/// thread (least-connections alternates backends in step with it), and bench-l4 then left the
/// machine 11-15% idle at -P 1 against 3-5% with the mix: each thread ping-pongs with one server.
struct Spread {
    threads: usize,
    /// Live connections per thread, per backend address (addresses of removed backends stay; few).
    by_backend: std::collections::HashMap<String, Arc<[AtomicUsize]>>,
}

impl Spread {
    fn new(threads: usize) -> Spread {
        Spread {
            threads: threads.max(1),
            by_backend: std::collections::HashMap::new(),
        }
    }

    /// Live connections on `thread`, all backends together.
    fn on_thread(&self, thread: usize) -> usize {
        self.by_backend
            .values()
            .map(|counts| counts[thread].load(Relaxed))
            .sum()
    }

    /// Picks the thread for a connection to `backend` and counts it there until the slot drops.
    fn place(&mut self, backend: &str) -> ThreadSlot {
        let threads = self.threads;
        let counts = self
            .by_backend
            .entry(backend.to_string())
            .or_insert_with(|| (0..threads).map(|_| AtomicUsize::new(0)).collect())
            .clone();
        let thread = (0..threads)
            .min_by_key(|&t| (counts[t].load(Relaxed), self.on_thread(t)))
            .unwrap_or(0);
        counts[thread].fetch_add(1, Relaxed);
        ThreadSlot { counts, thread }
    }
}

/// One connection counted on its thread (for its backend) for as long as it lives.
struct ThreadSlot {
    counts: Arc<[AtomicUsize]>,
    thread: usize,
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        self.counts[self.thread].fetch_sub(1, Relaxed);
    }
}

/// Accepts connections on `listener` and splices each to a backend of `pool`, until `stop`.
pub async fn serve(
    listener: TcpListener,
    pool: Arc<Pool>,
    connect_timeout: Duration,
    io: Vec<tokio::runtime::Handle>,
    mut stop: watch::Receiver<bool>,
) {
    let mut spread = Spread::new(io.len());
    let mut backoff = Duration::from_millis(5);
    loop {
        let (client, peer) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok(c) => { backoff = Duration::from_millis(5); c }
                Err(e) => {
                    tracing::warn!(pool = %pool.name, error = %e, "L4 accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let Some(backend) = pool.pick(Some(peer.ip())) else {
            tracing::debug!(pool = %pool.name, %peer, "no healthy backend; closing");
            continue;
        };
        // Counted from the pick, so concurrent picks already see this connection.
        let active = Active::new(backend);
        let slot = spread.place(&active.0.addr);
        let span = tracing::debug_span!("l4", pool = %pool.name, client = %peer, upstream = %active.0.addr);
        // Each connection lives on one IO thread (a current-thread runtime), like the proxy's
        // clients: both directions wake on the same thread, no work stealing.
        let Some(handle) = io.get(slot.thread).cloned() else {
            tokio::spawn(forward(client, (active, slot), connect_timeout).instrument(span));
            continue;
        };
        let Ok(std_client) = client.into_std() else {
            continue;
        };
        handle.spawn(
            async move {
                if let Ok(client) = TcpStream::from_std(std_client) {
                    forward(client, (active, slot), connect_timeout).await;
                }
            }
            .instrument(span),
        );
    }
}

/// Splices `client` to the backend `active` counts it on; both counts drop when it ends.
async fn forward(
    client: TcpStream,
    (active, slot): (Active, ThreadSlot),
    connect_timeout: Duration,
) {
    let addr = active.0.addr.clone();
    let upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "L4 upstream connect failed");
            return;
        }
        Err(_) => {
            tracing::debug!("L4 upstream connect timed out");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // Each way forwards an EOF as a write shutdown (half-close); an error stops both ways, and
    // dropping the halves then closes both sockets.
    let (client_rd, mut client_wr) = client.into_split();
    let (upstream_rd, mut upstream_wr) = upstream.into_split();
    let both = tokio::try_join!(
        one_way(&client_rd, &mut upstream_wr),
        one_way(&upstream_rd, &mut client_wr)
    );
    match both {
        Ok((up, down)) => tracing::debug!(up, down, "L4 connection closed"),
        Err(e) => tracing::debug!(error = %e, "L4 connection ended with an error"),
    }
    drop((active, slot));
}

/// Bytes read at once from one side.
const CHUNK: usize = 16 * 1024;

/// Copies `from` to `to` until `from`'s EOF, which it passes on as a write shutdown. A buffer is
/// taken only once `from` has bytes and given back once they are written, so an idle connection
/// holds none (a copy loop keeping its buffer would hold 2 × 8 KiB per connection for good).
async fn one_way(from: &OwnedReadHalf, to: &mut OwnedWriteHalf) -> std::io::Result<u64> {
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let mut buf = Vec::with_capacity(CHUNK);
        match from.try_read_buf(&mut buf) {
            Ok(0) => {
                to.shutdown().await?;
                return Ok(total);
            }
            Ok(n) => {
                to.write_all(&buf).await?;
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// The address a listener is bound to, for logs and the launcher.
pub fn bound(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_io_thread_carries_every_backend() {
        // Least-connections alternates a, b, a, b...; each thread must get both, evenly.
        let mut spread = Spread::new(2);
        let held: Vec<(String, ThreadSlot)> = ["a", "b", "a", "b", "a", "b", "a", "b"]
            .iter()
            .map(|b| (b.to_string(), spread.place(b)))
            .collect();
        for thread in 0..2 {
            for backend in ["a", "b"] {
                let n = held
                    .iter()
                    .filter(|(b, s)| b == backend && s.thread == thread)
                    .count();
                assert_eq!(n, 2, "thread {thread}, backend {backend}");
            }
            assert_eq!(spread.on_thread(thread), 4);
        }
        // One backend only: the threads still share it evenly, and closed connections free their slot.
        drop(held);
        assert!((0..2).all(|t| spread.on_thread(t) == 0));
        let one: Vec<ThreadSlot> = (0..6).map(|_| spread.place("c")).collect();
        let threads: Vec<usize> = one.iter().map(|s| s.thread).collect();
        assert_eq!(threads, [0, 1, 0, 1, 0, 1]);
        let single = Spread::new(0).place("a");
        assert_eq!(single.thread, 0);
    }
}
