//! Client bookkeeping shared by the node and the router: the registry of connected clients
//! (CLIENT LIST / KILL, `maxclients`, INFO clients) and the commands that read or change a
//! connection's own state (CLIENT, HELLO, AUTH, RESET), with Redis 7's replies and errors.
//!
//! No I/O here: each server's connection task owns its socket and waits on its handle's `kill`.
//! A server adds its own per-client state as the handle's [`ClientExt`], and lends the commands
//! its session through [`Conn`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicU8,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::acl::command::{check_credentials, login};
use crate::acl::{Acl, User};
use crate::errors::{arity_error, unknown_subcommand, REDIS_COMPAT_VERSION};
use crate::resp::{Protocol, Reply};
use crate::table;
/// The sections plain INFO and `INFO default` print (Redis 7's default set), on a node and,
/// merged from the shards, on the router.
pub const INFO_DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];

/// Locks `m` even if a holder panicked: the registry's data stays consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a server keeps per client beyond the shared fields; `Default` is a new connection's.
pub trait ClientExt: Default + Debug + Send + Sync {
    /// Whole seconds since the client's last command (CLIENT LIST's `idle`), given its `age`.
    fn idle_secs(&self, age: Duration) -> u64;
    /// The client is active now (it ran a command, or its parked connection woke); `created` is
    /// when it connected (read only by an implementation that counts from it).
    fn mark_active(&self, created: Instant);
    /// Its pub/sub subscriptions: channels, patterns, shard channels (CLIENT LIST's `sub`,
    /// `psub`, `ssub`; any makes it a pubsub client, flag `P`).
    fn subscriptions(&self) -> [u32; 3] {
        [0; 3]
    }
}

/// What the registry knows of one connection; the connection task owns the socket.
#[derive(Debug)]
pub struct ClientHandle<X> {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub name: Mutex<Option<Bytes>>,
    pub last_cmd: Mutex<&'static str>,
    /// The name of the ACL user it is authenticated as (CLIENT LIST's `user`).
    pub user: Mutex<Arc<str>>,
    pub resp: AtomicU8,
    pub killed: AtomicBool,
    /// Woken by CLIENT KILL and by shutdown, and to ask an idle connection to park (then
    /// `park_asked` is set, `killed` not); a stored permit is not lost if the task is busy.
    pub kill: Notify,
    /// The connection is parked in its IO thread's [`crate::park::Lot`], without a task.
    pub parked: AtomicBool,
    /// Asked to park and not yet parked; cleared when the client runs a command.
    pub park_asked: AtomicBool,
    /// The server's own state for this client (its fields also read through `Deref`).
    pub ext: X,
}

impl<X> Deref for ClientHandle<X> {
    type Target = X;

    fn deref(&self) -> &X {
        &self.ext
    }
}

impl<X> ClientHandle<X> {
    /// Resolves once the client is killed (CLIENT KILL, shutdown, cut off at its output limit);
    /// a request to park, on the same notification, is not a kill.
    pub async fn until_killed(&self) {
        while !self.killed.load(SeqCst) {
            self.kill.notified().await;
        }
    }
}

impl<X: ClientExt> ClientHandle<X> {
    /// A handle outside any registry's numbering (the registry calls it with the next id).
    pub fn new(id: u64, addr: SocketAddr, laddr: SocketAddr, ext: X) -> Self {
        ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(None),
            last_cmd: Mutex::new("NULL"),
            user: Mutex::new(Arc::from("default")),
            resp: AtomicU8::new(2),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            parked: AtomicBool::new(false),
            park_asked: AtomicBool::new(false),
            ext,
        }
    }

    pub fn kill(&self) {
        self.killed.store(true, SeqCst);
        self.kill.notify_one();
        // A parked connection has no task to wake: its lot hands it back to close it. SeqCst
        // against `parked`: either this sees it parked or the parking side sees it killed.
        if self.parked.load(SeqCst) {
            crate::park::kick_all();
        }
    }

    /// A command ran: the client is not idle, and a request to park made before is void.
    pub fn active(&self) {
        self.ext.mark_active(self.created);
        if self.park_asked.load(Relaxed) {
            self.park_asked.store(false, Relaxed);
        }
    }

    /// Its parked connection woke: active again, so the sweep does not ask it to park before it
    /// has read what woke it.
    pub fn resumed(&self) {
        self.active();
        self.parked.store(false, SeqCst);
    }

    /// One CLIENT LIST line, with Redis's field order (fields we do not track are reported as 0).
    pub fn info_line(&self) -> String {
        let name = lock(&self.name)
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let age = self.created.elapsed();
        let [sub, psub, ssub] = self.ext.subscriptions();
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub={sub} psub={psub} ssub={ssub} multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={}\n",
            self.id,
            self.addr,
            self.laddr,
            name,
            age.as_secs(),
            self.ext.idle_secs(age),
            if self.is_pubsub() { "P" } else { "N" },
            lock(&self.last_cmd),
            lock(&self.user),
            self.resp.load(Relaxed),
        )
    }

    /// Subscribed to anything (CLIENT LIST TYPE pubsub).
    pub fn is_pubsub(&self) -> bool {
        self.ext.subscriptions().iter().any(|&n| n > 0)
    }
}

/// All connected clients.
#[derive(Debug)]
pub struct Clients<X> {
    next_id: AtomicU64,
    map: Mutex<HashMap<u64, Arc<ClientHandle<X>>>>,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
}

impl<X> Default for Clients<X> {
    fn default() -> Self {
        Clients {
            next_id: AtomicU64::new(0),
            map: Mutex::new(HashMap::new()),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
        }
    }
}

impl<X: ClientExt> Clients<X> {
    /// Registers a connection unless `max` clients are already connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        max: usize,
    ) -> Option<Arc<ClientHandle<X>>> {
        let mut map = lock(&self.map);
        if map.len() >= max {
            self.rejected_connections.fetch_add(1, Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let handle = Arc::new(ClientHandle::new(id, addr, laddr, X::default()));
        map.insert(id, handle.clone());
        self.total_connections.fetch_add(1, Relaxed);
        Some(handle)
    }

    pub fn unregister(&self, id: u64) {
        lock(&self.map).remove(&id);
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections parked without a task (INFO clients `parked_clients`).
    pub fn parked(&self) -> usize {
        lock(&self.map)
            .values()
            .filter(|c| c.parked.load(Relaxed))
            .count()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle<X>>> {
        lock(&self.map).get(&id).cloned()
    }

    /// Every client not already killed, in id order.
    pub fn all(&self) -> Vec<Arc<ClientHandle<X>>> {
        let mut v: Vec<_> = lock(&self.map)
            .values()
            .filter(|c| !c.killed.load(Relaxed))
            .cloned()
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Asks every connection idle for `min_idle_secs` or more, not parked and not already asked,
    /// to park (through its `kill` notify, with `park_asked` set).
    pub fn ask_idle_to_park(&self, min_idle_secs: u64) {
        for c in lock(&self.map).values() {
            if c.parked.load(Relaxed) || c.park_asked.load(Relaxed) || c.killed.load(Relaxed) {
                continue;
            }
            if c.ext.idle_secs(c.created.elapsed()) >= min_idle_secs {
                c.park_asked.store(true, Relaxed);
                c.kill.notify_one();
            }
        }
    }

    pub fn kill_all(&self) {
        for c in lock(&self.map).values() {
            c.kill();
        }
    }
}

/// What a server's connection lends the shared connection commands.
pub trait Conn {
    type Ext: ClientExt;
    /// This connection's handle (its id is the session's).
    fn client(&self) -> &ClientHandle<Self::Ext>;
    /// The registry CLIENT LIST and KILL look through.
    fn clients(&self) -> &Clients<Self::Ext>;
    /// The server's ACL users.
    fn acl(&self) -> &Acl;
    /// The user this connection runs as.
    fn user(&self) -> Arc<User>;
    /// Runs as `u` from now on, authenticated (see [`crate::acl::command::login`]).
    fn set_user(&mut self, u: Arc<User>);
    fn authenticated(&mut self) -> &mut bool;
    fn proto(&mut self) -> &mut Protocol;
    /// HELLO's `role`.
    fn role(&self) -> &'static str;
    /// Closes this connection once the current reply is written (CLIENT KILL of itself).
    fn close_after_reply(&mut self);
    /// Every client's subscriptions by client id: channels and shard channels (`false`) and
    /// patterns (`true`), for ACL SETUSER to find subscribers its new rules no longer allow.
    fn subscriptions(&self) -> HashMap<u64, Vec<(Bytes, bool)>>;
}

fn is(a: &[u8], kw: &str) -> bool {
    a.eq_ignore_ascii_case(kw.as_bytes())
}

fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

fn int_arg(a: &[u8]) -> Option<i64> {
    crate::num::parse_i64(a)
}

/// `AUTH [user] password`.
pub fn auth(c: &mut impl Conn, a: &[Bytes]) -> Reply {
    let (user, pass) = match a.len() {
        2 => {
            if c.acl().default_opens() {
                return Reply::error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            }
            (&b"default"[..], &a[1][..])
        }
        3 => (&a[1][..], &a[2][..]),
        _ => return syntax_error(),
    };
    match check_credentials(c, &a[0], user, pass) {
        Ok(u) => {
            login(c, u);
            Reply::OK
        }
        Err(e) => e,
    }
}

fn set_name(c: &impl Conn, name: &[u8]) -> Result<(), Reply> {
    if !name.iter().all(|&ch| (b'!'..=b'~').contains(&ch)) {
        return Err(Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    // A copy: the name outlives the request buffer the argument points into.
    *lock(&c.client().name) = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
    Ok(())
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
pub fn hello(c: &mut impl Conn, a: &[Bytes]) -> Reply {
    let mut proto = None;
    if a.len() >= 2 {
        match int_arg(&a[1]) {
            Some(2) => proto = Some(Protocol::Resp2),
            Some(3) => proto = Some(Protocol::Resp3),
            Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
            None => return Reply::error("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut auth: Option<(&[u8], &[u8])> = None;
    let mut name: Option<&[u8]> = None;
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - i - 1;
        if is(&a[i], "auth") && more >= 2 {
            auth = Some((&a[i + 1], &a[i + 2]));
            i += 3;
        } else if is(&a[i], "setname") && more >= 1 {
            name = Some(&a[i + 1]);
            i += 2;
        } else {
            return Reply::Error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&a[i])
            ));
        }
    }
    if let Some((user, pass)) = auth {
        match check_credentials(c, &a[0], user, pass) {
            Ok(u) => login(c, u),
            Err(e) => return e,
        }
    }
    if !*c.authenticated() {
        return Reply::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(n) = name {
        if let Err(e) = set_name(c, n) {
            return e;
        }
    }
    if let Some(p) = proto {
        *c.proto() = p;
    }
    Reply::Map(vec![
        (Reply::bulk_str("server"), Reply::bulk_str("redis")),
        (
            Reply::bulk_str("version"),
            Reply::bulk_str(REDIS_COMPAT_VERSION),
        ),
        (Reply::bulk_str("proto"), Reply::Int(c.proto().number())),
        (Reply::bulk_str("id"), Reply::Int(c.client().id as i64)),
        (Reply::bulk_str("mode"), Reply::bulk_str("standalone")),
        (Reply::bulk_str("role"), Reply::bulk_str(c.role())),
        (Reply::bulk_str("modules"), Reply::Array(Vec::new())),
    ])
}

/// `RESET`: back to RESP2, no name, and unauthenticated when a password is set.
pub fn reset(c: &mut impl Conn) -> Reply {
    *c.proto() = Protocol::Resp2;
    *lock(&c.client().name) = None;
    let opens = c.acl().default_opens();
    let default = c.acl().default_user();
    login(c, default);
    *c.authenticated() = opens;
    Reply::Status("RESET")
}

/// `CLIENT <subcommand> ...`.
pub fn client(c: &mut impl Conn, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = table::lookup_sub(b"client", &sub) else {
        return unknown_subcommand(&a[1], "client");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    match &sub[..] {
        b"id" => Reply::Int(c.client().id as i64),
        b"setname" => match set_name(c, &a[2]) {
            Ok(()) => Reply::OK,
            Err(e) => e,
        },
        b"getname" => lock(&c.client().name)
            .clone()
            .map(Reply::Bulk)
            .unwrap_or(Reply::Nil),
        b"help" => crate::help::client(),
        b"list" => client_list(c, a),
        b"info" => Reply::Verbatim(Bytes::from(c.client().info_line())),
        b"kill" => client_kill(c, a),
        b"no-evict" if a.len() == 3 && (is(&a[2], "on") || is(&a[2], "off")) => Reply::OK,
        b"no-evict" => syntax_error(),
        _ => unknown_subcommand(&a[1], "client"),
    }
}

fn client_list(c: &impl Conn, a: &[Bytes]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    let mut pubsub: Option<bool> = None;
    let mut i = 2;
    while i < a.len() {
        if is(&a[i], "type") && i + 1 < a.len() {
            let t = &a[i + 1];
            if !["normal", "master", "replica", "pubsub", "slave"]
                .iter()
                .any(|k| is(t, k))
            {
                return Reply::Error(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(t)
                ));
            }
            // No client is a master or replica link here: those types list nothing.
            if !is(t, "normal") && !is(t, "pubsub") {
                return Reply::Verbatim(Bytes::new());
            }
            pubsub = Some(is(t, "pubsub"));
            i += 2;
        } else if is(&a[i], "id") && i + 1 < a.len() {
            let mut v = Vec::new();
            for id in &a[i + 1..] {
                match int_arg(id) {
                    Some(n) if n > 0 => v.push(n as u64),
                    _ => return Reply::error("ERR Invalid client ID"),
                }
            }
            ids = Some(v);
            i = a.len();
        } else {
            return syntax_error();
        }
    }
    let mut text = String::new();
    for h in c.clients().all() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&h.id))
            || pubsub.is_some_and(|p| p != h.is_pubsub())
        {
            continue;
        }
        text.push_str(&h.info_line());
    }
    Reply::Verbatim(Bytes::from(text))
}

fn client_kill(c: &mut impl Conn, a: &[Bytes]) -> Reply {
    let all = c.clients().all();
    if a.len() == 3 {
        // Old form: CLIENT KILL ip:port, replies OK or an error.
        let addr = String::from_utf8_lossy(&a[2]);
        return match all.iter().find(|h| h.addr.to_string() == addr) {
            Some(h) => {
                kill(c, h);
                Reply::OK
            }
            None => Reply::error("ERR No such client"),
        };
    }
    if !a.len().is_multiple_of(2) {
        return syntax_error();
    }
    let (mut id, mut addr, mut laddr, mut skipme) = (None, None, None, true);
    let mut user: Option<String> = None;
    for pair in a[2..].chunks(2) {
        let v = String::from_utf8_lossy(&pair[1]).into_owned();
        if is(&pair[0], "id") {
            match int_arg(&pair[1]) {
                Some(n) if n > 0 => id = Some(n as u64),
                _ => return Reply::error("ERR client-id should be greater than 0"),
            }
        } else if is(&pair[0], "addr") {
            addr = Some(v);
        } else if is(&pair[0], "laddr") {
            laddr = Some(v);
        } else if is(&pair[0], "skipme") {
            if is(&pair[1], "yes") {
                skipme = true;
            } else if is(&pair[1], "no") {
                skipme = false;
            } else {
                return syntax_error();
            }
        } else if is(&pair[0], "user") {
            if c.acl().get(&pair[1]).is_none() {
                return Reply::Error(format!("ERR No such user '{v}'"));
            }
            user = Some(v);
        } else if is(&pair[0], "type") || is(&pair[0], "maxage") {
            // Every client is a normal client: accept the filter as is.
        } else {
            return syntax_error();
        }
    }
    let me = c.client().id;
    let mut killed = 0;
    for h in &all {
        if id.is_some_and(|id| id != h.id)
            || addr.as_ref().is_some_and(|a| *a != h.addr.to_string())
            || laddr.as_ref().is_some_and(|a| *a != h.laddr.to_string())
            || user.as_ref().is_some_and(|u| **u != **lock(&h.user))
            || (skipme && h.id == me)
        {
            continue;
        }
        kill(c, h);
        killed += 1;
    }
    Reply::Int(killed)
}

/// Kills another client at once; this one closes after its reply.
fn kill<C: Conn>(c: &mut C, h: &ClientHandle<C::Ext>) {
    if h.id == c.client().id {
        c.close_after_reply();
    } else {
        h.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Ext;

    impl ClientExt for Ext {
        fn idle_secs(&self, _age: Duration) -> u64 {
            0
        }

        fn mark_active(&self, _created: Instant) {}
    }

    struct TestConn {
        acl: Acl,
        clients: Arc<Clients<Ext>>,
        me: Arc<ClientHandle<Ext>>,
        authenticated: bool,
        proto: Protocol,
        closing: bool,
    }

    impl Conn for TestConn {
        type Ext = Ext;
        fn client(&self) -> &ClientHandle<Ext> {
            &self.me
        }
        fn clients(&self) -> &Clients<Ext> {
            &self.clients
        }
        fn acl(&self) -> &Acl {
            &self.acl
        }
        fn user(&self) -> Arc<User> {
            self.acl.default_user()
        }
        fn set_user(&mut self, _u: Arc<User>) {
            self.authenticated = true;
        }
        fn authenticated(&mut self) -> &mut bool {
            &mut self.authenticated
        }
        fn proto(&mut self) -> &mut Protocol {
            &mut self.proto
        }
        fn role(&self) -> &'static str {
            "master"
        }
        fn close_after_reply(&mut self) {
            self.closing = true;
        }
        fn subscriptions(&self) -> HashMap<u64, Vec<(Bytes, bool)>> {
            HashMap::new()
        }
    }

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn setup() -> (TestConn, Arc<ClientHandle<Ext>>) {
        let clients = Arc::new(Clients::<Ext>::default());
        let a: SocketAddr = ([127, 0, 0, 1], 5000).into();
        let b: SocketAddr = ([127, 0, 0, 1], 5001).into();
        let l: SocketAddr = ([127, 0, 0, 1], 6379).into();
        let me = clients.register(a, l, 10).expect("room for a client");
        let other = clients.register(b, l, 10).expect("room for a client");
        let conn = TestConn {
            acl: Acl::new(false),
            clients,
            me,
            authenticated: true,
            proto: Protocol::Resp2,
            closing: false,
        };
        (conn, other)
    }

    #[test]
    fn register_respects_max() {
        let (conn, _) = setup();
        let a: SocketAddr = ([127, 0, 0, 1], 5002).into();
        assert!(conn.clients.register(a, a, 2).is_none());
        assert_eq!(conn.clients.rejected_connections.load(Relaxed), 1);
        assert_eq!(conn.clients.total_connections.load(Relaxed), 2);
    }

    /// Runs each command on `conn` and checks its reply.
    fn expect(conn: &mut TestConn, cases: &[(&str, Reply)]) {
        for (cmd, want) in cases {
            assert_eq!(&client(conn, &args(cmd)), want, "{cmd}");
        }
    }

    #[test]
    fn kill_forms() {
        let (mut conn, other) = setup();
        expect(
            &mut conn,
            &[
                (
                    "client kill 127.0.0.1:9",
                    Reply::error("ERR No such client"),
                ),
                (
                    "client kill id 0",
                    Reply::error("ERR client-id should be greater than 0"),
                ),
                ("client kill skipme maybe", Reply::error("ERR syntax error")),
                // SKIPME defaults to yes: only the other client goes.
                ("client kill laddr 127.0.0.1:6379", Reply::Int(1)),
            ],
        );
        assert!(other.killed.load(Relaxed) && !conn.closing);
        expect(&mut conn, &[("client kill 127.0.0.1:5000", Reply::OK)]);
        assert!(conn.closing && !conn.me.killed.load(Relaxed));
    }

    #[test]
    fn list_filters_and_names() {
        let (mut conn, _) = setup();
        expect(
            &mut conn,
            &[
                (
                    "client setname a\nb",
                    Reply::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    ),
                ),
                ("client setname me", Reply::OK),
                ("client list type pubsub", Reply::Verbatim(Bytes::new())),
                (
                    "client list type x",
                    Reply::error("ERR Unknown client type 'x'"),
                ),
                ("client list id 0", Reply::error("ERR Invalid client ID")),
            ],
        );
        let Reply::Verbatim(text) = client(&mut conn, &args("client list id 1")) else {
            panic!("CLIENT LIST is verbatim text");
        };
        assert!(text.starts_with(b"id=1 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=0 name=me "));
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(reset(&mut conn), Reply::Status("RESET"));
        expect(&mut conn, &[("client getname", Reply::Nil)]);
    }
}
