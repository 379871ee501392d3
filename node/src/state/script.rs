//! Scripting state every connection can read: the one script thread's job queue, which script
//! is running (for BUSY replies, SCRIPT KILL and FUNCTION STATS), and counts INFO reports. The
//! Lua VM is kept here between runs as an opaque box (`crate::script` knows its type).

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Work for the script thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// The script that is running now.
#[derive(Debug, Clone)]
pub struct Running {
    pub started: Instant,
    /// A function (FCALL) rather than an EVAL script: BUSY and KILL name FUNCTION then.
    pub is_function: bool,
    /// The function's name (FUNCTION STATS), empty for EVAL.
    pub name: String,
    /// The command that runs it, for FUNCTION STATS.
    pub command: Vec<bytes::Bytes>,
}

pub struct ScriptState {
    queue: OnceLock<std::sync::mpsc::Sender<Job>>,
    /// The Lua VM (`crate::script::Engine`), between runs: the thread that runs a script takes
    /// it out for the run.
    pub engine: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    /// The script thread waits for the engine: IO threads leave it alone until it has it.
    pub thread_waiting: AtomicBool,
    running: Mutex<Option<Running>>,
    /// A script is running (read on every command while set, so kept apart from `running`).
    active: AtomicBool,
    /// Scripts started so far: a waiter sees the one it waited on has ended.
    seq: AtomicU64,
    /// When the running script started, in nanoseconds since [`ScriptState::epoch`] (read on
    /// every hand-off while scripts run, so no lock).
    started_ns: AtomicU64,
    epoch: Instant,
    /// SCRIPT KILL / FUNCTION KILL asked the running script to stop.
    pub kill: Arc<AtomicBool>,
    /// The running script has written: it cannot be killed.
    pub wrote: AtomicBool,
    /// Raised each time a script ends.
    pub ended: tokio::sync::Notify,
    pub cached_scripts: AtomicUsize,
    pub scripts_memory: AtomicUsize,
    pub functions: AtomicUsize,
    pub libraries: AtomicUsize,
    pub functions_memory: AtomicUsize,
    /// `busy-reply-threshold` in milliseconds (kept here: read on every hand-off while a script
    /// runs).
    pub busy_ms: AtomicU64,
    /// Every function library's code (a replica's snapshot carries them).
    library_codes: Mutex<Vec<bytes::Bytes>>,
    pub vm_memory: AtomicUsize,
}

impl Default for ScriptState {
    fn default() -> Self {
        ScriptState {
            queue: OnceLock::new(),
            engine: Mutex::new(None),
            thread_waiting: AtomicBool::new(false),
            running: Mutex::new(None),
            active: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            started_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            kill: Arc::default(),
            wrote: AtomicBool::new(false),
            ended: tokio::sync::Notify::new(),
            cached_scripts: AtomicUsize::new(0),
            scripts_memory: AtomicUsize::new(0),
            functions: AtomicUsize::new(0),
            libraries: AtomicUsize::new(0),
            functions_memory: AtomicUsize::new(0),
            vm_memory: AtomicUsize::new(0),
            busy_ms: AtomicU64::new(5000),
            library_codes: Mutex::new(Vec::new()),
        }
    }
}

impl std::fmt::Debug for ScriptState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptState")
            .field("active", &self.active)
            .finish()
    }
}

impl ScriptState {
    /// Queues `job` for the script thread, starting it with `start` the first time.
    pub fn submit(
        &self,
        job: Job,
        start: impl FnOnce() -> std::sync::mpsc::Sender<Job>,
    ) -> Result<(), Job> {
        let tx = self.queue.get_or_init(start);
        tx.send(job).map_err(|e| e.0)
    }

    pub fn active(&self) -> bool {
        self.active.load(SeqCst)
    }

    pub fn seq(&self) -> u64 {
        self.seq.load(SeqCst)
    }

    /// The running script, if any.
    pub fn running(&self) -> Option<Running> {
        crate::keyspace::lock(&self.running).clone()
    }

    /// How long the running script has run, if one runs.
    pub fn elapsed(&self) -> Option<std::time::Duration> {
        if !self.active() {
            return None;
        }
        let started = std::time::Duration::from_nanos(self.started_ns.load(SeqCst));
        Some(self.epoch.elapsed().saturating_sub(started))
    }

    pub fn library_codes(&self) -> Vec<bytes::Bytes> {
        crate::keyspace::lock(&self.library_codes).clone()
    }

    pub fn set_library_codes(&self, codes: Vec<bytes::Bytes>) {
        *crate::keyspace::lock(&self.library_codes) = codes;
    }

    /// A script starts (on the script thread).
    pub fn start(&self, running: Running) {
        let started = running.started.saturating_duration_since(self.epoch);
        self.started_ns.store(
            u64::try_from(started.as_nanos()).unwrap_or(u64::MAX),
            SeqCst,
        );
        self.kill.store(false, SeqCst);
        self.wrote.store(false, Relaxed);
        *crate::keyspace::lock(&self.running) = Some(running);
        self.seq.fetch_add(1, SeqCst);
        self.active.store(true, SeqCst);
    }

    /// The running script ended.
    pub fn end(&self) {
        self.active.store(false, SeqCst);
        *crate::keyspace::lock(&self.running) = None;
        self.kill.store(false, SeqCst);
        self.ended.notify_waiters();
    }
}
