//! Lua scripting as Redis 7.0 has it: EVAL, EVALSHA and their read-only variants, SCRIPT,
//! FUNCTION and FCALL.
//!
//! One script thread per node runs the Lua VM ([`host`]): a connection hands a script command
//! over with its session and awaits the reply without holding its IO thread, unless the script
//! runs inline on that IO thread, short and with the VM free ([`inline`]); scripts run one
//! at a time, each atomic: it holds the buckets of its declared keys from the start (the
//! dispatcher locks them as for any command), adds the bucket of any other key it touches
//! without waiting for it, and every `redis.call` runs through that one view ([`call`]). What a
//! script wrote reaches the replicas as those writes, never as the script ([`run`]).
//!
//! Layout: [`vm`] builds the sandboxed VM (`sandbox.lua`, `redis.lua`, `functions.lua` are its
//! Lua side), [`api`] the `redis` table's helpers, [`convert`] Redis's Lua/reply conversions,
//! [`shebang`] script flags, [`eval`] EVAL and SCRIPT, [`functions`] FUNCTION and FCALL,
//! [`sha1`] script names. `libs` registers `cjson`, `cmsgpack`, `bit` and `struct`.

pub mod api;
pub mod call;
pub mod convert;
pub mod eval;
pub mod functions;
pub mod host;
pub mod inline;
pub mod libs;
pub mod run;
pub mod sha1;
pub use ringcache_protocol::shebang;
pub mod vm;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The VM and what lives in it (held by one thread at a time: see [`host`]).
pub struct Engine {
    pub vm: vm::Vm,
    /// Cached EVAL scripts by SHA1 (lowercase hex).
    pub scripts: HashMap<[u8; 40], eval::Script>,
    pub functions: functions::Registry,
    /// Scripts seen to end within the inline budget: they may run inline (see [`inline`]).
    pub short: HashSet<Box<[u8]>>,
    /// Scripts that publish: they stay on the script thread (see [`inline`]).
    pub publishers: HashSet<Box<[u8]>>,
}

impl Engine {
    pub fn new(kill: Arc<AtomicBool>) -> mlua::Result<Engine> {
        Ok(Engine {
            vm: vm::Vm::new(kill)?,
            scripts: HashMap::new(),
            functions: functions::Registry::default(),
            short: HashSet::new(),
            publishers: HashSet::new(),
        })
    }

    /// A new VM in place of this one, as SCRIPT FLUSH gives in Redis: nothing earlier scripts
    /// left in it (garbage, grown internal tables) outlives the flush. Function libraries are
    /// loaded into it again; on any failure the old VM stays.
    pub fn reset_vm(&mut self) -> Result<(), String> {
        let vm = vm::Vm::new(self.vm.kill_flag()).map_err(|e| e.to_string())?;
        let functions = self.functions.reload(&vm)?;
        self.vm = vm;
        self.functions = functions;
        Ok(())
    }
}

/// Whether the script EVALSHA names, or the function FCALL names, is declared `no-writes`
/// (CLIENT PAUSE WRITE lets those run); `None` when unknown or while the VM is in use.
pub fn declared_no_writes(shared: &crate::state::Shared, args: &[bytes::Bytes]) -> Option<bool> {
    let (name, arg) = (args.first()?, args.get(1)?);
    let slot = shared.scripts.engine.try_lock().ok()?;
    let engine = slot.as_ref()?.downcast_ref::<Engine>()?;
    if name.eq_ignore_ascii_case(b"evalsha") {
        let sha: [u8; 40] = arg.to_ascii_lowercase().try_into().ok()?;
        engine.scripts.get(&sha).map(|s| s.flags.no_writes)
    } else if name.eq_ignore_ascii_case(b"fcall") {
        engine.functions.function(arg).map(|f| f.flags.no_writes)
    } else {
        None
    }
}
