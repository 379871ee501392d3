//! Idle connections parked outside the runtime, so that one costs its socket and its session,
//! not a task, a reactor registration and a future sized for every await of a busy connection.
//!
//! Each IO thread keeps a [`Lot`]: an epoll instance of its own holding the sockets of its idle
//! connections, registered with the thread's reactor as one file descriptor. A connection idle
//! for a while (asked by [`crate::clients::Clients::ask_idle_to_park`], as Redis's clientsCron
//! frees an idle client's buffers) takes its socket out of the reactor and parks it here with its
//! session, and its task ends. When the socket turns readable (or closed), or its client is killed,
//! the lot hands socket and session back to the server, which starts a task for it again.
//!
//! Level-triggered epoll makes parking race-free: bytes that arrived before the socket was added
//! are reported by the first wait after it.
//!
//! A connection's task is freed when it parks, but allocators return freed pages to the OS only
//! later, from the same thread; so a lot calls the release hook ([`set_release_hook`]) on its thread
//! shortly after connections parked.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{
    AtomicBool, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rustix::event::epoll;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::clients::{lock, ClientExt, ClientHandle};

/// Events taken per `epoll_wait`.
const BATCH: usize = 256;
/// A lot calls the release hook once no connection has parked for this long...
const RELEASE_AFTER: Duration = Duration::from_millis(100);
/// ...or this long after the first of a stream of parks.
const RELEASE_AT_MOST_AFTER: Duration = Duration::from_secs(2);
/// Connections parked since the hook last ran before it is worth running: a forced collect
/// visits every page of the thread's heap (on a node, the dataset's).
const RELEASE_MIN_PARKED: usize = 64;
/// And at most this often.
const RELEASE_EVERY: Duration = Duration::from_secs(1);

static RELEASE_HOOK: OnceLock<fn()> = OnceLock::new();

/// Sets what a lot calls on its thread once parked connections' memory has been freed (the
/// binary passes its allocator's `release_free_pages`). First call wins.
pub fn set_release_hook(hook: fn()) {
    let _ = RELEASE_HOOK.set(hook);
}

/// How a connection's task ended.
#[derive(Debug)]
pub enum End {
    Closed,
    /// Idle and asked to park: its socket, out of the runtime's reactor.
    Park(std::net::TcpStream),
}

/// What wakes a lot's [`Lot::run`], and why.
#[derive(Debug, Default)]
struct Signals {
    wake: Notify,
    /// A client was killed somewhere: look for killed ones among the parked.
    killed: AtomicBool,
    /// Connections parked since the release hook last ran.
    freed: AtomicUsize,
    closed: AtomicBool,
}

/// One IO thread's parked connections (`T`: what the server needs to resume one).
#[derive(Debug)]
pub struct Lot<T> {
    epoll: AsyncFd<OwnedFd>,
    parked: Mutex<HashMap<u64, (std::net::TcpStream, T)>>,
    signals: Arc<Signals>,
}

/// Every live lot's signals, so a kill anywhere reaches the lot holding its client.
static LOTS: Mutex<Vec<Weak<Signals>>> = Mutex::new(Vec::new());

/// Wakes every lot to look for killed clients among its parked ones.
pub fn kick_all() {
    lock(&LOTS).retain(|k| match k.upgrade() {
        Some(k) => {
            k.killed.store(true, Relaxed);
            k.wake.notify_one();
            true
        }
        None => false,
    });
}

impl<T: Send + 'static> Lot<T> {
    /// A lot for the current runtime (its epoll instance registers with this runtime's reactor).
    pub fn new() -> io::Result<Arc<Lot<T>>> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let signals = Arc::new(Signals::default());
        lock(&LOTS).push(Arc::downgrade(&signals));
        // `new` is deprecated for fds the value might close behind the reactor's back (tokio
        // #8587); an OwnedFd closes only when the AsyncFd drops it, after deregistering.
        #[allow(deprecated)]
        let epoll = AsyncFd::new(fd)?;
        Ok(Arc::new(Lot {
            epoll,
            parked: Mutex::new(HashMap::new()),
            signals,
        }))
    }

    /// Parks connection `id`: its socket (already out of the runtime's reactor) and `state`.
    /// On failure both come back, for the connection to go on as it was.
    pub fn park(
        &self,
        id: u64,
        sock: std::net::TcpStream,
        state: T,
    ) -> Result<(), (std::net::TcpStream, T)> {
        let mut parked = lock(&self.parked);
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        if self.signals.closed.load(Relaxed)
            || epoll::add(
                self.epoll.get_ref(),
                &sock,
                epoll::EventData::new_u64(id),
                flags,
            )
            .is_err()
        {
            return Err((sock, state));
        }
        parked.insert(id, (sock, state));
        if self.signals.freed.fetch_add(1, Relaxed) + 1 == RELEASE_MIN_PARKED {
            self.signals.wake.notify_one();
        }
        Ok(())
    }

    /// Parks the connection of client `handle` (marking it parked, so that a kill reaches the
    /// lot). On failure both come back and the client is marked not parked again.
    pub fn park_client<X: ClientExt>(
        &self,
        handle: &ClientHandle<X>,
        sock: std::net::TcpStream,
        state: T,
    ) -> Result<(), (std::net::TcpStream, T)> {
        handle.parked.store(true, SeqCst);
        handle.park_asked.store(false, Relaxed);
        match self.park(handle.id, sock, state) {
            Ok(()) => {
                // SeqCst against `ClientHandle::kill`: a kill that did not see the client parked
                // is seen here.
                if handle.killed.load(SeqCst) {
                    self.kick();
                }
                Ok(())
            }
            Err(back) => {
                handle.parked.store(false, SeqCst);
                Err(back)
            }
        }
    }

    /// How many connections are parked here.
    pub fn len(&self) -> usize {
        lock(&self.parked).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes [`Lot::run`] to look for killed clients (`killed` says which).
    pub fn kick(&self) {
        self.signals.killed.store(true, Relaxed);
        self.signals.wake.notify_one();
    }

    /// Stops [`Lot::run`]; parked connections are closed.
    pub fn close(&self) {
        self.signals.closed.store(true, Relaxed);
        self.signals.wake.notify_one();
    }

    /// Hands each parked connection to `resume` once its socket is readable (input, end of stream
    /// or error) or `killed` says its client was killed. Runs until [`Lot::close`]; spawn it on
    /// the runtime the lot was made on.
    pub async fn run(
        self: Arc<Self>,
        mut resume: impl FnMut(std::net::TcpStream, T),
        killed: impl Fn(&T) -> bool,
    ) {
        let mut release_at: Option<tokio::time::Instant> = None;
        let mut released = tokio::time::Instant::now();
        // When the pending release was first scheduled, and the parks counted then.
        let (mut first, mut seen) = (released, 0);
        while !self.signals.closed.load(Relaxed) {
            let release = async {
                match release_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let mut woke = tokio::select! {
                _ = self.signals.wake.notified() => Vec::new(),
                () = release => {
                    let now = tokio::time::Instant::now();
                    let parked = self.signals.freed.load(Relaxed);
                    if parked != seen && now < first + RELEASE_AT_MOST_AFTER {
                        // Still parking: wait for the burst to end.
                        seen = parked;
                        release_at = Some(now + RELEASE_AFTER);
                    } else {
                        release_at = None;
                        released = now;
                        self.signals.freed.store(0, Relaxed);
                        if let Some(hook) = RELEASE_HOOK.get() {
                            hook();
                        }
                    }
                    Vec::new()
                }
                guard = self.epoll.readable() => {
                    // An error here means the runtime is going away.
                    let Ok(mut guard) = guard else {
                        self.signals.closed.store(true, Relaxed);
                        break;
                    };
                    match self.take_ready() {
                        Some((ready, events)) => {
                            if events < BATCH {
                                // Fewer than asked for: nothing else is pending right now.
                                guard.clear_ready();
                            }
                            ready
                        }
                        // EINTR and the like: still ready, try again.
                        None => Vec::new(),
                    }
                }
            };
            if self.signals.killed.swap(false, Relaxed) {
                woke.extend(self.take_killed(&killed));
            }
            if release_at.is_none() && self.signals.freed.load(Relaxed) >= RELEASE_MIN_PARKED {
                let now = tokio::time::Instant::now();
                (first, seen) = (now, self.signals.freed.load(Relaxed));
                release_at = Some((released + RELEASE_EVERY).max(now + RELEASE_AFTER));
            }
            for (sock, state) in woke {
                resume(sock, state);
            }
        }
        lock(&self.parked).clear();
    }

    /// The parked connections `epoll_wait` reports ready, out of the lot, and how many events it
    /// reported (`None`: the wait failed).
    #[allow(clippy::type_complexity)]
    fn take_ready(&self) -> Option<(Vec<(std::net::TcpStream, T)>, usize)> {
        // Not kept across awaits: an event holds a raw pointer, which no future may.
        let mut events: Vec<epoll::Event> = Vec::with_capacity(BATCH);
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if epoll::wait(
            self.epoll.get_ref(),
            rustix::buffer::spare_capacity(&mut events),
            Some(&zero),
        )
        .is_err()
        {
            return None;
        }
        let ids = events.iter().map(|ev| {
            let data = ev.data;
            data.u64()
        });
        Some((self.take(ids), events.len()))
    }

    /// The parked connections whose clients were killed, out of the lot.
    fn take_killed(&self, killed: &impl Fn(&T) -> bool) -> Vec<(std::net::TcpStream, T)> {
        let ids: Vec<u64> = lock(&self.parked)
            .iter()
            .filter(|(_, (_, state))| killed(state))
            .map(|(id, _)| *id)
            .collect();
        self.take(ids)
    }

    /// The parked connections `ids` (those still here), out of the lot and its epoll set.
    fn take(&self, ids: impl IntoIterator<Item = u64>) -> Vec<(std::net::TcpStream, T)> {
        let mut parked = lock(&self.parked);
        let out: Vec<_> = ids
            .into_iter()
            .filter_map(|id| parked.remove(&id))
            .inspect(|entry| {
                let _ = epoll::delete(self.epoll.get_ref(), &entry.0);
            })
            .collect();
        // Gives back most of the table once a burst of parked connections has gone.
        if parked.capacity() > 64 && parked.len() * 4 < parked.capacity() {
            let keep = parked.len() * 2;
            parked.shrink_to(keep);
        }
        out
    }
}

impl<T> Drop for Lot<T> {
    fn drop(&mut self) {
        let me = Arc::as_ptr(&self.signals);
        lock(&LOTS).retain(|k| k.as_ptr() != me && k.strong_count() > 0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicBool;
    use tokio::sync::mpsc;

    /// A connected pair: (client side, server side).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        (c, s)
    }

    type State = (u32, Arc<AtomicBool>);

    #[test]
    fn a_parked_socket_comes_back_when_readable_or_killed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let lot: Arc<Lot<State>> = Lot::new().unwrap();
            let (tx, mut rx) = mpsc::unbounded_channel();
            tokio::spawn(lot.clone().run(
                move |sock, state: State| {
                    let _ = tx.send((sock, state.0));
                },
                |state: &State| state.1.load(Relaxed),
            ));
            let (mut quiet_client, quiet) = pair();
            let (mut loud_client, loud) = pair();
            let (_killed_client, killed) = pair();
            let kill_flag = Arc::new(AtomicBool::new(false));
            assert!(lot.park(1, quiet, (1, Arc::default())).is_ok());
            assert!(lot.park(2, loud, (2, Arc::default())).is_ok());
            assert!(lot.park(3, killed, (3, kill_flag.clone())).is_ok());
            assert_eq!(lot.len(), 3);

            // Bytes on a parked socket bring it back with its state and its bytes unread.
            loud_client.write_all(b"PING\r\n").unwrap();
            let (back, id) = rx.recv().await.unwrap();
            assert_eq!(id, 2);
            let mut buf = [0u8; 16];
            let n = loop {
                match back.peek(&mut buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tokio::task::yield_now().await
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            assert_eq!(&buf[..n], b"PING\r\n");

            // A kill brings back only the killed one.
            kill_flag.store(true, Relaxed);
            lot.kick();
            let (_, id) = rx.recv().await.unwrap();
            assert_eq!(id, 3);
            assert_eq!(lot.len(), 1);

            // The peer closing counts as readable (end of stream).
            quiet_client.flush().unwrap();
            drop(quiet_client);
            let (_, id) = rx.recv().await.unwrap();
            assert_eq!(id, 1);
            assert!(lot.is_empty());

            // Once closed, the lot takes nothing more.
            lot.close();
            let (_c, s) = pair();
            assert!(lot.park(4, s, (4, Arc::default())).is_err());
        });
    }
}
