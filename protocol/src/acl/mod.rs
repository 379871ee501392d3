//! ACL users shared by the node and the router, with Redis 7.0's rules and replies: users with
//! passwords, command / key / channel permissions and selectors ([`user::Rules`]), the registry
//! ([`Acl`]), the `ACL` command and AUTH ([`command`]), the ACL log ([`log`]), the aclfile
//! ([`file`]) and the limit on failed AUTH per client address ([`limit`]).
//!
//! A check costs one atomic load for a user that may run everything ([`User::check`]).

pub mod command;
pub mod file;
pub mod limit;
pub mod log;
pub mod selector;
pub mod spec;
pub mod user;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::table::CommandSpec;
pub use user::Rules;

/// Why a request was refused, in Redis's order of precedence (a later one is the more telling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Command = 1,
    Key = 2,
    Auth = 3,
    Channel = 4,
}

impl Reason {
    /// ACL LOG's `reason`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Auth => "auth",
            Reason::Channel => "channel",
        }
    }
}

/// A refusal and the argument it is about (0 for the command itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub reason: Reason,
    pub pos: usize,
}

impl Denied {
    /// The NOPERM error a refused request gets (`cmd`: the command as it runs, `client|id`).
    pub fn error(&self, cmd: &CommandSpec) -> String {
        match self.reason {
            Reason::Command => format!(
                "NOPERM this user has no permissions to run the '{}' command",
                cmd.name
            ),
            Reason::Key => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
            _ => "NOPERM this user has no permissions to access one of the channels used as arguments"
                .into(),
        }
    }

    /// ACL DRYRUN's wording, naming the key or channel.
    pub fn verbose(&self, cmd: &CommandSpec, args: &[Bytes]) -> String {
        let arg =
            || String::from_utf8_lossy(args.get(self.pos).map_or(&b""[..], |a| a)).into_owned();
        match self.reason {
            Reason::Command => format!(
                "This user has no permissions to run the '{}' command",
                cmd.name
            ),
            Reason::Key => format!("This user has no permissions to access the '{}' key", arg()),
            _ => format!(
                "This user has no permissions to access the '{}' channel",
                arg()
            ),
        }
    }

    /// Why a queued command may no longer run at EXEC.
    pub fn exec_reason(&self) -> &'static str {
        match self.reason {
            Reason::Command => "no permission to execute the command or subcommand",
            Reason::Key => "no permission to touch the specified keys",
            Reason::Channel => "no permission to access one of the channels used as arguments",
            Reason::Auth => "no permission",
        }
    }

    /// ACL LOG's `object`: the command, key or channel.
    pub fn object(&self, cmd: &CommandSpec, args: &[Bytes]) -> String {
        match self.reason {
            Reason::Command => cmd.name.to_string(),
            _ => String::from_utf8_lossy(args.get(self.pos).map_or(&b""[..], |a| a)).into_owned(),
        }
    }
}

/// An `ACL SETUSER` operation that failed, worded as Redis words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError {
    Syntax,
    Unknown,
    KeysAfterAll,
    ChannelsAfterAll,
    NoSuchPassword,
    BadHash,
    FirstArgOfSubcommand,
}

impl RuleError {
    pub fn text(self) -> &'static str {
        match self {
            RuleError::Syntax => "Syntax error",
            RuleError::Unknown => "Unknown command or category name in ACL",
            RuleError::KeysAfterAll => "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
            RuleError::ChannelsAfterAll => "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels",
            RuleError::NoSuchPassword => "The password you are trying to remove from the user does not exist",
            RuleError::BadHash => "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
            RuleError::FirstArgOfSubcommand => "Allowing first-arg of a subcommand is not supported",
        }
    }
}

/// How much checking a user's requests need.
const CHECK_ALL: u8 = 0;
const OPEN: u8 = 1;
/// Everything but the cluster's own commands (`default` with a password on a node).
const OPEN_BUT_CLUSTER: u8 = 2;

/// One user. Connections authenticated as it hold it, so `ACL SETUSER` applies to them at once.
#[derive(Debug)]
pub struct User {
    pub name: String,
    rules: RwLock<Arc<Rules>>,
    mode: AtomicU8,
    /// Cluster commands need a user other than a `default` with a password.
    guard_cluster: bool,
}

impl User {
    fn new(name: &str, rules: Rules, guard_cluster: bool) -> User {
        let u = User {
            name: name.to_string(),
            rules: RwLock::new(Arc::new(Rules::default())),
            mode: AtomicU8::new(CHECK_ALL),
            guard_cluster,
        };
        u.set_rules(rules);
        u
    }

    pub fn rules(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn cluster_locked(&self, r: &Rules) -> bool {
        self.guard_cluster && self.name == "default" && !r.nopass
    }

    pub fn set_rules(&self, r: Rules) {
        let mode = match (r.unrestricted(), self.cluster_locked(&r)) {
            (true, false) => OPEN,
            (true, true) => OPEN_BUT_CLUSTER,
            _ => CHECK_ALL,
        };
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
        self.mode.store(mode, Relaxed);
    }

    /// Whether this user may run the request (`top` as looked up in the table).
    #[inline]
    pub fn check(&self, top: &'static CommandSpec, args: &[Bytes]) -> Result<(), Denied> {
        match self.mode.load(Relaxed) {
            OPEN => Ok(()),
            OPEN_BUT_CLUSTER if !spec::CLUSTER_COMMANDS.contains(&top.name) => Ok(()),
            _ => self.check_slow(top, args),
        }
    }

    /// Whether a selector that allows the request also allows reading any key (`allkeys`, or a
    /// readable `*` pattern): SORT's BY and GET patterns need it.
    pub fn may_read_any_key(&self, top: &'static CommandSpec, args: &[Bytes]) -> bool {
        if self.mode.load(Relaxed) == OPEN {
            return true;
        }
        let rules = self.rules();
        let cmd = spec::effective(top, args);
        std::iter::once(&rules.root)
            .chain(&rules.selectors)
            .any(|s| s.check(top, cmd, args).is_ok() && s.reads_any_key())
    }

    #[cold]
    fn check_slow(&self, top: &'static CommandSpec, args: &[Bytes]) -> Result<(), Denied> {
        let rules = self.rules();
        let cmd = spec::effective(top, args);
        if self.cluster_locked(&rules) && spec::CLUSTER_COMMANDS.contains(&top.name) {
            return Err(Denied {
                reason: Reason::Command,
                pos: 0,
            });
        }
        rules.check(top, cmd, args)
    }
}

/// Counters of refusals (INFO stats `acl_access_denied_*`).
#[derive(Debug, Default)]
pub struct DeniedStats {
    pub auth: AtomicU64,
    pub cmd: AtomicU64,
    pub key: AtomicU64,
    pub channel: AtomicU64,
}

impl DeniedStats {
    pub fn count(&self, r: Reason) {
        let c = match r {
            Reason::Auth => &self.auth,
            Reason::Command => &self.cmd,
            Reason::Key => &self.key,
            Reason::Channel => &self.channel,
        };
        c.fetch_add(1, Relaxed);
    }

    /// INFO stats lines.
    pub fn info(&self, out: &mut String) {
        out.push_str(&format!(
            "acl_access_denied_auth:{}\r\nacl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\nacl_access_denied_channel:{}\r\n",
            self.auth.load(Relaxed),
            self.cmd.load(Relaxed),
            self.key.load(Relaxed),
            self.channel.load(Relaxed)
        ));
    }

    pub fn reset(&self) {
        for c in [&self.auth, &self.cmd, &self.key, &self.channel] {
            c.store(0, Relaxed);
        }
    }
}

/// Every user of one server, its ACL log and refusal counters.
#[derive(Debug)]
pub struct Acl {
    users: RwLock<BTreeMap<String, Arc<User>>>,
    default: Arc<User>,
    guard_cluster: bool,
    pub log: log::AclLog,
    pub denied: DeniedStats,
    /// `--aclfile`: ACL LOAD and ACL SAVE read and write it.
    pub file: Mutex<Option<std::path::PathBuf>>,
    pub limiter: limit::AuthLimiter,
    /// Users the server's own settings define (the cluster user of `RINGCACHE_PASSWORD`):
    /// made again after every ACL LOAD, so reloading a file never locks the cluster out.
    pinned: Mutex<Vec<(String, Vec<String>)>>,
}

impl Acl {
    /// A registry with only `default` (everything, no password); `guard_cluster` on a node.
    pub fn new(guard_cluster: bool) -> Acl {
        let default = Arc::new(User::new("default", Rules::superuser(), guard_cluster));
        let mut users = BTreeMap::new();
        users.insert("default".to_string(), default.clone());
        Acl {
            users: RwLock::new(users),
            default,
            guard_cluster,
            log: log::AclLog::default(),
            denied: DeniedStats::default(),
            file: Mutex::new(None),
            limiter: limit::AuthLimiter::default(),
            pinned: Mutex::new(Vec::new()),
        }
    }

    pub fn default_user(&self) -> Arc<User> {
        self.default.clone()
    }

    /// A new connection starts authenticated when `default` needs no password.
    pub fn default_opens(&self) -> bool {
        let r = self.default.rules();
        r.nopass && r.enabled
    }

    pub fn get(&self, name: &[u8]) -> Option<Arc<User>> {
        let name = std::str::from_utf8(name).ok()?;
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// `requirepass`: the default user's only password, or none (`nopass`) when empty.
    pub fn set_requirepass(&self, pass: Option<&str>) {
        let mut r = (*self.default.rules()).clone();
        let _ = r.apply("resetpass");
        let _ = match pass {
            Some(p) if !p.is_empty() => r.apply(&format!(">{p}")),
            _ => r.apply("nopass"),
        };
        self.default.set_rules(r);
    }

    /// The user `name` if `pass` opens it.
    pub fn authenticate(&self, name: &[u8], pass: &[u8]) -> Option<Arc<User>> {
        let u = self.get(name)?;
        u.rules().password_ok(pass).then_some(u)
    }

    /// `ACL SETUSER name op...`: all operations or none (the error text, code included). True
    /// when an existing user lost channels: its subscribed clients are to be disconnected.
    pub fn setuser(&self, name: &str, ops: &[String]) -> Result<bool, String> {
        if name.contains(' ') || name.contains('\0') {
            return Err("ERR Usernames can't contain spaces or null characters".into());
        }
        let ops = user::merge_selectors(ops).map_err(|i| {
            format!(
                "ERR Unmatched parenthesis in acl selector starting at '{}'.",
                ops[i]
            )
        })?;
        let existing = self.get(name.as_bytes());
        let mut rules = match &existing {
            Some(u) => (*u.rules()).clone(),
            None => Rules::default(),
        };
        for op in &ops {
            rules
                .apply(op)
                .map_err(|e| format!("ERR Error in ACL SETUSER modifier '{op}': {}", e.text()))?;
        }
        match existing {
            Some(u) => {
                let narrowed = !rules.channels_cover(&u.rules());
                u.set_rules(rules);
                return Ok(narrowed);
            }
            None => {
                let u = Arc::new(User::new(name, rules, self.guard_cluster));
                self.users
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_string(), u);
            }
        }
        Ok(false)
    }

    /// Makes user `name` with `ops` now and after every [`Acl::load_file`].
    pub fn pin_user(&self, name: &str, ops: &[&str]) -> Result<(), String> {
        let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        self.setuser(name, &ops)?;
        let mut pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        pinned.retain(|(n, _)| n != name);
        pinned.push((name.to_string(), ops));
        Ok(())
    }

    /// Makes the pinned users again (after a file replaced every user).
    pub(crate) fn restore_pinned(&self) {
        let pinned = self
            .pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, ops) in pinned {
            // Accepted when pinned, so they apply again.
            let _ = self.setuser(&name, &ops);
        }
    }

    /// Removes users (never `default`); the number removed.
    pub fn deluser(&self, names: &[&str]) -> Result<usize, String> {
        if names.contains(&"default") {
            return Err("ERR The 'default' user cannot be removed".into());
        }
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        Ok(names.iter().filter(|n| users.remove(**n).is_some()).count())
    }

    /// Names, sorted.
    pub fn usernames(&self) -> Vec<String> {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// `ACL LIST`'s lines.
    pub fn list(&self) -> Vec<String> {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|u| format!("user {} {}", u.name, u.rules().describe()))
            .collect()
    }

    /// Replaces every user by `users` (from an aclfile); `default` keeps its identity and takes
    /// its new rules (its current ones when the file has none). The names no longer present.
    pub fn replace_all(&self, users: Vec<(String, Rules)>) -> Vec<String> {
        let mut map = self.users.write().unwrap_or_else(|p| p.into_inner());
        let mut next = BTreeMap::new();
        next.insert("default".to_string(), self.default.clone());
        for (name, rules) in users {
            if name == "default" {
                self.default.set_rules(rules);
                continue;
            }
            // A user that stays keeps its connections, which see the new rules.
            let u = match map.get(&name) {
                Some(u) => {
                    u.set_rules(rules);
                    u.clone()
                }
                None => Arc::new(User::new(&name, rules, self.guard_cluster)),
            };
            next.insert(name, u);
        }
        let gone = map
            .keys()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect();
        *map = next;
        gone
    }
}
