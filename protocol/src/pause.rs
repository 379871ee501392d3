//! CLIENT PAUSE, shared by node and router: the pause in force, its arguments, and which
//! commands may write or replicate. Each server decides for its own clients what a pause holds
//! back (its sessions, transactions and scripts differ).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::clients::lock;
use crate::resp::Reply;
use crate::table::{self, flags, CommandSpec};

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

    /// Whether writes are held back now.
    pub fn writes_paused(&self) -> bool {
        self.current().is_some()
    }

    /// Resolves once `held` says no pause holds the command back any more (CLIENT UNPAUSE, the
    /// pause's end, or a change of mode); the client counts in `waiting` until then (or until
    /// the wait is dropped: its client left).
    pub async fn over(&self, held: impl Fn(PauseMode) -> bool) {
        let _counted = Waiting::new(&self.waiting);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let Some((until, mode)) = self.current() else {
                return;
            };
            if !held(mode) {
                return;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }
}

/// One client counted in a `waiting` count while this lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Waiting<'a> {
        n.fetch_add(1, Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// CLIENT PAUSE timeout [WRITE|ALL] (`a` from CLIENT on), on `pause`.
pub fn client_pause(pause: &Pause, a: &[Bytes]) -> Reply {
    if a.len() < 3 || a.len() > 4 {
        return crate::errors::arity_error("client|pause");
    }
    match parse(a) {
        Ok((until, mode)) => {
            pause.start(until, mode);
            Reply::OK
        }
        Err(e) => e,
    }
}

/// CLIENT UNPAUSE (`a` from CLIENT on), on `pause`.
pub fn client_unpause(pause: &Pause, a: &[Bytes]) -> Reply {
    if a.len() != 2 {
        return crate::errors::arity_error("client|unpause");
    }
    pause.stop();
    Reply::OK
}

/// CLIENT PAUSE's arguments (`args` from CLIENT on): until when, and what it holds back.
fn parse(args: &[Bytes]) -> Result<(Instant, PauseMode), Reply> {
    let ms = timeout_ms(&args[2])?;
    let mode = match args.get(3) {
        None => PauseMode::All,
        Some(m) if m.eq_ignore_ascii_case(b"write") => PauseMode::Write,
        Some(m) if m.eq_ignore_ascii_case(b"all") => PauseMode::All,
        Some(_) => return Err(Reply::error("ERR CLIENT PAUSE mode must be WRITE or ALL")),
    };
    // Past a century a deadline is as good as none.
    let until = Instant::now() + Duration::from_millis(ms.min(3_153_600_000_000));
    Ok((until, mode))
}

/// A timeout in milliseconds as Redis parses one (WAIT, CLIENT PAUSE): an integer, not negative.
pub fn timeout_ms(a: &[u8]) -> Result<u64, Reply> {
    let ms = crate::num::parse_i64(a)
        .ok_or_else(|| Reply::error("ERR timeout is not an integer or out of range"))?;
    u64::try_from(ms).map_err(|_| Reply::error("ERR timeout is negative"))
}

/// Whether the request `args` waits under a pause of `mode`: every command under ALL; under
/// WRITE those `may_write` says may write or replicate. A request refused anyway (unknown
/// command, wrong arity) is answered at once, as Redis answers it.
pub fn holds(
    mode: PauseMode,
    args: &[Bytes],
    may_write: impl FnOnce(&'static CommandSpec) -> bool,
) -> bool {
    let Some(spec) = args.first().and_then(|n| table::lookup(n)) else {
        return false;
    };
    spec.arity_ok(args.len()) && (mode == PauseMode::All || may_write(spec))
}

/// Whether a command writes or may replicate, scripts aside (the caller knows their flags):
/// its own or its subcommand's `write` flag, or one of Redis's `may-replicate` commands.
pub fn writes(spec: &'static CommandSpec, args: &[Bytes]) -> bool {
    let sub: &CommandSpec = table::counted_as(spec, args);
    spec.has(flags::WRITE) || sub.has(flags::WRITE) || may_replicate(spec)
}

/// Whether `spec` is one of Redis's `may-replicate` commands.
pub fn may_replicate(spec: &CommandSpec) -> bool {
    MAY_REPLICATE.contains(&spec.name)
}

/// Redis 7.0's `may-replicate` commands (not shown by COMMAND INFO, so not in the table):
/// PFCOUNT may rewrite its sketch, PUBLISH goes down the replication stream, and a script or
/// function may write (EVALSHA and FCALL unless they are known to declare `no-writes`).
const MAY_REPLICATE: [&str; 6] = ["pfcount", "publish", "spublish", "eval", "evalsha", "fcall"];

/// Whether an EVAL script may write: it declares `no-writes` in its shebang, or it may.
pub fn eval_may_write(body: Option<&Bytes>) -> bool {
    body.is_none_or(|body| crate::shebang::eval_shebang(body).map_or(true, |(f, _)| !f.no_writes))
}
