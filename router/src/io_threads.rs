//! IO threads: single-threaded runtimes that each own a share of the client connections *and*
//! their own upstream connections to every shard.
//!
//! A client and the upstream connections carrying its requests live on one thread, so handing a
//! request over and waking the client with its reply never crosses threads (no futex wakeups, no
//! work stealing) — each thread runs like a small event loop, as twemproxy and Redis do, and the
//! threads share nothing on the hot path but a few relaxed counters.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::runtime::Handle;
use tokio::sync::watch;

/// The runtimes connections are spread over.
#[derive(Debug)]
pub struct IoThreads {
    handles: Vec<Handle>,
    /// Real threads (false: everything runs on the caller's runtime).
    dedicated: bool,
    next: AtomicUsize,
}

impl IoThreads {
    /// Starts `n` threads, each running a current-thread runtime until `stop` turns true (or its
    /// sender is dropped). `n == 0` runs everything on the caller's runtime instead.
    pub fn start(n: usize, stop: &watch::Receiver<bool>) -> io::Result<IoThreads> {
        IoThreads::start_named(n, "ringcache-router-io", stop)
    }

    /// As [`IoThreads::start`], the threads named `{name}-{i}`.
    pub fn start_named(
        n: usize,
        name: &str,
        stop: &watch::Receiver<bool>,
    ) -> io::Result<IoThreads> {
        if n == 0 {
            return Ok(IoThreads {
                handles: vec![Handle::current()],
                dedicated: false,
                next: AtomicUsize::new(0),
            });
        }
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let mut stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        while !*stop.borrow_and_update() {
                            if stop.changed().await.is_err() {
                                break;
                            }
                        }
                    })
                })?;
        }
        Ok(IoThreads {
            handles,
            dedicated: true,
            next: AtomicUsize::new(0),
        })
    }

    /// How many runtimes (at least 1).
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    pub fn is_dedicated(&self) -> bool {
        self.dedicated
    }

    /// Every runtime, in order.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    pub fn handle(&self, index: usize) -> &Handle {
        &self.handles[index % self.handles.len()]
    }

    /// The next runtime for a new connection, round robin.
    pub fn pick(&self) -> usize {
        self.next.fetch_add(1, Relaxed) % self.handles.len()
    }

    /// Upstream connections per shard each runtime opens, so that the total per shard is about
    /// `total` (at least one per runtime).
    pub fn connections_each(&self, total: usize) -> usize {
        total.div_ceil(self.handles.len()).max(1)
    }
}
