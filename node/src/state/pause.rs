//! CLIENT PAUSE: for a while, clients' commands (all of them, or those that write or may
//! replicate) wait before they run; expired keys are hidden, not deleted, so nothing reaches the
//! replicas meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use crate::keyspace::lock;

/// What a pause holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseMode {
    /// Commands that write or may replicate (PUBLISH, PFCOUNT, scripts that may write).
    Write,
    /// Every command.
    All,
}

#[derive(Debug, Default)]
pub struct Pause {
    /// Set while a pause may be on: the one check every command pays.
    on: AtomicBool,
    until: Mutex<Option<(Instant, PauseMode)>>,
    /// Woken when a pause ends early (CLIENT UNPAUSE) or changes.
    pub changed: tokio::sync::Notify,
    /// Clients waiting now (INFO's `blocked_clients` counts them).
    pub waiting: AtomicUsize,
}

impl Pause {
    /// Pauses until `until`; a pause already on keeps the later end and the wider mode, as
    /// Redis keeps them.
    pub fn start(&self, until: Instant, mode: PauseMode) {
        let mut now = lock(&self.until);
        let (until, mode) = match *now {
            Some((u, m)) if u > Instant::now() => {
                (u.max(until), if m == PauseMode::All { m } else { mode })
            }
            _ => (until, mode),
        };
        *now = Some((until, mode));
        self.on.store(true, Relaxed);
        self.changed.notify_waiters();
    }

    /// CLIENT UNPAUSE.
    pub fn stop(&self) {
        *lock(&self.until) = None;
        self.on.store(false, Relaxed);
        self.changed.notify_waiters();
    }

    /// The pause in force now, and until when.
    pub fn current(&self) -> Option<(Instant, PauseMode)> {
        if !self.on.load(Relaxed) {
            return None;
        }
        let mut now = lock(&self.until);
        match *now {
            Some((until, mode)) if until > Instant::now() => Some((until, mode)),
            _ => {
                *now = None;
                self.on.store(false, Relaxed);
                None
            }
        }
    }

    /// Whether writes are held back now (expired keys are then hidden, not deleted).
    pub fn writes_paused(&self) -> bool {
        self.current().is_some()
    }
}
