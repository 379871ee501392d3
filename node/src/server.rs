//! The node's accept loop and connection handler.
//!
//! Each connection reads what the socket has, runs every whole request in it, and writes all the
//! replies with one write (pipelining costs one syscall per batch, as in Redis). Replies beyond
//! 64 KiB are flushed before more requests run, so a client that does not read stalls itself, not
//! the node's memory.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::input::READ_CHUNK;
use ringcache_protocol::park::{End, Lot};
use ringcache_protocol::tls::TlsServer;
use ringcache_protocol::transport::Transport;
use ringcache_protocol::{Reply, RequestDecoder};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::clients::ClientHandle;
use crate::config::NodeConfig;
use crate::keyspace::{lock, now_ms, WARM_MAX};
use crate::state::session::{Flow, ReplyMode, Session};
use crate::state::Shared;

/// Binds the node's listener (port 0 picks a free port).
pub async fn bind(config: &NodeConfig) -> io::Result<TcpListener> {
    let addr = config
        .listen_addr()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    TcpListener::bind(addr).await
}

/// Binds the node's TLS listener (`--tls-port`), if it has one.
pub async fn bind_tls(config: &NodeConfig) -> io::Result<Option<TcpListener>> {
    match config.tls_listen_addr() {
        Some(addr) => TcpListener::bind(addr).await.map(Some),
        None => Ok(None),
    }
}

/// Serves clients on `listener` until `shutdown` resolves, then closes every connection.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future,
) -> io::Result<()> {
    let port = listener.local_addr()?.port();
    let shared = Shared::new(config, port, crate::cmd::apply);
    load_users(&shared)?;
    serve(shared, listener, shutdown).await
}

/// Loads `--aclfile`, if the node has one: a bad file is an error naming its line, before the
/// node serves anyone.
pub fn load_users(shared: &Shared) -> io::Result<()> {
    if shared.acl.file_path().is_some() {
        shared
            .acl
            .load_file()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("aclfile: {e}")))?;
    }
    Ok(())
}

/// Like [`run`] with state built by the caller (tests and the replication bootstrap use it).
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future,
) -> io::Result<()> {
    serve_listeners(shared, Listeners::plain(listener), shutdown).await
}

/// The node's listeners: plain, TLS, or both (`--port 0` with `--tls-port`: TLS only).
pub struct Listeners {
    pub plain: Option<TcpListener>,
    pub tls: Option<(TcpListener, Arc<TlsServer>)>,
}

impl Listeners {
    pub fn plain(listener: TcpListener) -> Listeners {
        Listeners {
            plain: Some(listener),
            tls: None,
        }
    }
}

/// Serves clients on `listeners` until `shutdown` resolves, then closes every connection.
pub async fn serve_listeners(
    shared: Arc<Shared>,
    listeners: Listeners,
    shutdown: impl Future,
) -> io::Result<()> {
    let Listeners { plain, tls } = listeners;
    let (tls_listener, tls) = match tls {
        Some((l, t)) => (Some(l), Some(t)),
        None => (None, None),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(active_expiry(shared.clone(), stop_rx.clone()));
    tokio::spawn(guard_rss(shared.clone(), stop_rx.clone()));
    if IO_THREADS.get().is_some() {
        tokio::spawn(park_idle(shared.clone(), stop_rx.clone()));
    }
    crate::replication::start(shared.clone(), stop_rx.clone());
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = async {
                tokio::select! {
                    a = ringcache_protocol::transport::accept_on(plain.as_ref()) => (a, None),
                    a = ringcache_protocol::transport::accept_on(tls_listener.as_ref()) => (a, tls.clone()),
                }
            } => match accepted {
                (Ok((sock, addr)), tls) => {
                    backoff = Duration::from_millis(5);
                    accept(&shared, sock, addr, tls);
                }
                (Err(e), _) => {
                    // EMFILE and friends: wait instead of spinning, then try again.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
        }
    }
    tracing::info!("shutting down: closing {} clients", shared.clients.len());
    let _ = stop_tx.send(true);
    shared.clients.kill_all();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !shared.clients.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn accept(
    shared: &Arc<Shared>,
    sock: TcpStream,
    addr: std::net::SocketAddr,
    tls: Option<Arc<TlsServer>>,
) {
    let laddr = sock.local_addr().unwrap_or(addr);
    let max = shared.config().maxclients;
    let shared = shared.clone();
    let Some(handle) = shared.clients.register(addr, laddr, max) else {
        tokio::spawn(async move {
            // A client that just disconnected may not be unregistered yet: give it a moment.
            tokio::time::sleep(Duration::from_millis(20)).await;
            match shared.clients.register(addr, laddr, max) {
                Some(handle) => start_connection(shared, sock, handle, addr, tls),
                None => {
                    let full = b"-ERR max number of clients reached\r\n";
                    ringcache_protocol::tls::refuse(sock, tls, full).await;
                }
            }
        });
        return;
    };
    start_connection(shared, sock, handle, addr, tls);
}

/// Serves a new connection: plain at once, TLS after its handshake (on the connection's task,
/// so a slow handshake holds no one else).
async fn client_task_on(
    shared: Arc<Shared>,
    sock: TcpStream,
    handle: Arc<ClientHandle>,
    io: Option<usize>,
    tls: Option<Arc<TlsServer>>,
) {
    match tls {
        None => client_task(shared, sock, handle, io).await,
        Some(tls) => match tls.accept(sock).await {
            Ok(stream) => client_task(shared, stream, handle, io).await,
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                shared.clients.unregister(handle.id);
            }
        },
    }
}

fn start_connection(
    shared: Arc<Shared>,
    sock: TcpStream,
    handle: Arc<ClientHandle>,
    addr: std::net::SocketAddr,
    tls: Option<Arc<TlsServer>>,
) {
    let span = tracing::debug_span!("client", id = handle.id, peer = %addr);
    let Some(io) = IO_THREADS.get() else {
        tokio::spawn(client_task_on(shared, sock, handle, None, tls).instrument(span));
        return;
    };
    // Hand the socket to one IO thread for good: no work stealing and no cross-thread wake-ups
    // per request, each thread running its connections like a small Redis event loop.
    let std_sock = match sock.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot hand over connection");
            shared.clients.unregister(handle.id);
            return;
        }
    };
    let n = io.next.fetch_add(1, Relaxed) % io.handles.len();
    let task = async move {
        match TcpStream::from_std(std_sock) {
            Ok(sock) => client_task_on(shared, sock, handle, Some(n), tls).await,
            Err(e) => {
                tracing::debug!(error = %e, "cannot adopt connection");
                shared.clients.unregister(handle.id);
            }
        }
    }
    .instrument(span);
    // Spawned from the IO thread itself, so that thread's allocator heap holds the task: the
    // memory a parking connection frees is then returned by that thread's release hook.
    io.handles[n].spawn(async move {
        tokio::spawn(task);
    });
}

/// A new connection on IO thread `io` (`None`: on the caller's runtime, never parked).
async fn client_task<T: Transport>(
    shared: Arc<Shared>,
    sock: T,
    handle: Arc<ClientHandle>,
    io: Option<usize>,
) {
    let mut session = Session::new(handle.id, handle, shared.acl.default_opens());
    session.user = Some(shared.acl.default_user());
    serve_client(shared, sock, session, io).await;
}

/// Serves a connection until it closes (then unregisters it) or parks.
async fn serve_client<T: Transport>(
    shared: Arc<Shared>,
    mut sock: T,
    mut session: Session,
    io: Option<usize>,
) {
    let handle = session.client.clone();
    // Only a plain socket parks (a TLS session's state lives beside it).
    let lot = io
        .filter(|_| T::PARKS)
        .and_then(|n| IO_THREADS.get().map(|t| &t.lots[n]));
    loop {
        match serve_session(&shared, sock, &handle, &mut session, lot.is_some()).await {
            Ok(End::Park(std_sock)) => {
                let Some(lot) = lot else { break };
                let parked = Box::new(Parked {
                    shared: shared.clone(),
                    session,
                    io: io.unwrap_or(0),
                });
                match lot.park_client(&handle, std_sock, parked) {
                    Ok(()) => return,
                    Err((std_sock, parked)) => {
                        session = parked.session;
                        match T::unpark(std_sock) {
                            Ok(s) => sock = s,
                            Err(e) => {
                                tracing::debug!(error = %e, "cannot take a connection back");
                                break;
                            }
                        }
                    }
                }
            }
            Ok(End::Closed) => break,
            Err(e) => {
                tracing::debug!(error = %e, "connection ended");
                break;
            }
        }
    }
    // What the client registered goes with it.
    crate::cmd::multi::unwatch_all(&shared, &mut session);
    crate::cmd::pubsub::unsubscribe_all(&shared, &mut session);
    shared.clients.unregister(handle.id);
}

/// A parked connection: what resuming it needs besides its socket.
struct Parked {
    shared: Arc<Shared>,
    session: Session,
    io: usize,
}

/// Starts a task again for a parked connection (on its lot's IO thread).
fn resume(sock: std::net::TcpStream, parked: Parked) {
    let Parked {
        shared,
        session,
        io,
    } = parked;
    session.client.resumed();
    let span = tracing::debug_span!("client", id = session.id);
    tokio::spawn(
        async move {
            match TcpStream::from_std(sock) {
                Ok(sock) => serve_client(shared, sock, session, Some(io)).await,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot take a connection back");
                    let mut session = session;
                    crate::cmd::multi::unwatch_all(&shared, &mut session);
                    crate::cmd::pubsub::unsubscribe_all(&shared, &mut session);
                    shared.clients.unregister(session.id);
                }
            }
        }
        .instrument(span),
    );
}

/// Asks connections idle for a second or more to park, once a second, until `stop`.
async fn park_idle(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // Under `timeout` connections keep their task (and its timer): asking would only wake
        // them.
        if shared.config().idle_timeout().is_none() {
            shared.clients.ask_idle_to_park(1);
        }
    }
}

/// Single-threaded runtimes that own client connections (see [`start_io_threads`]).
struct IoThreads {
    handles: Vec<tokio::runtime::Handle>,
    /// Each thread's parked idle connections.
    lots: Vec<Arc<Lot<Box<Parked>>>>,
    next: std::sync::atomic::AtomicUsize,
}

static IO_THREADS: std::sync::OnceLock<IoThreads> = std::sync::OnceLock::new();

/// The thread the mover's batches (`MIGRATE-ARC`) run on, started with the IO threads at nice
/// [`BULK_NICE`]: while CPU is short, requests go first and the mover takes what is left.
static BULK: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
const BULK_NICE: i32 = 5;

/// Starts `n` IO threads, each a current-thread runtime serving the connections handed to it;
/// without them connections run on the caller's runtime. Call once, before serving.
pub fn start_io_threads(n: usize) -> io::Result<()> {
    let mut handles = Vec::with_capacity(n);
    let mut lots = Vec::with_capacity(n);
    for i in 0..n {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(crate::tick::before_park)
            .build()?;
        handles.push(rt.handle().clone());
        let lot = {
            let _in = rt.enter();
            Lot::new()?
        };
        rt.spawn(lot.clone().run(
            |sock, p: Box<Parked>| resume(sock, *p),
            |p| p.session.client.killed.load(SeqCst),
        ));
        lots.push(lot);
        std::thread::Builder::new()
            .name(format!("ringcache-io-{i}"))
            // Scripts run here too (`script::inline`): deep replies need the script thread's
            // stack (address space; pages are touched only as deep as it goes).
            .stack_size(crate::script::host::SCRIPT_STACK)
            .spawn(move || {
                crate::tick::hook_this_thread();
                rt.block_on(std::future::pending::<()>())
            })?;
    }
    if n > 0 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _ = BULK.set(rt.handle().clone());
        std::thread::Builder::new()
            .name("ringcache-bulk".into())
            .spawn(move || {
                // Linux: the nice value is per thread, and `None` is the calling thread.
                if let Err(e) = rustix::process::setpriority_process(None, BULK_NICE) {
                    tracing::warn!(error = %e, "cannot lower the bulk-move thread's priority");
                }
                rt.block_on(std::future::pending::<()>())
            })?;
    }
    let _ = IO_THREADS.set(IoThreads {
        handles,
        lots,
        next: std::sync::atomic::AtomicUsize::new(0),
    });
    Ok(())
}

/// Pulls the keys of a pipeline's requests into cache before the first runs, so their misses
/// overlap (a lone request gains nothing from it).
fn warm(ks: &crate::keyspace::Keyspace, input: &[u8]) {
    let mut keys: [&[u8]; WARM_MAX] = [&[]; WARM_MAX];
    let mut n = 0;
    ringcache_protocol::peek::for_each_key(input, WARM_MAX, |k| {
        keys[n] = k;
        n += 1;
    });
    if n > 1 {
        ks.warm(&keys[..n]);
    }
}

/// Flush replies once this much is buffered, before running more requests.
const OUTPUT_FLUSH: usize = 64 * 1024;

/// Runs the connection's requests until it closes or, idle and asked to (`can_park`), parks.
async fn serve_session<T: Transport>(
    shared: &Arc<Shared>,
    mut sock: T,
    handle: &Arc<ClientHandle>,
    session: &mut Session,
    can_park: bool,
) -> io::Result<End> {
    sock.tcp().set_nodelay(true)?;
    let (limits, idle) = {
        let c = shared.config();
        (c.limits, c.idle_timeout())
    };
    let mut decoder = RequestDecoder::new(limits, session.authenticated);
    // Both buffers are taken when bytes arrive and given back when the connection goes quiet:
    // an idle client holds no buffer (as Redis frees an idle client's query buffer).
    let mut inbuf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut args = Vec::new();
    loop {
        let mut commands = 0u64;
        loop {
            // Every WARM_MAX requests, the next ones' keys: a router's batch holds hundreds.
            if commands.is_multiple_of(WARM_MAX as u64) {
                warm(&shared.keyspace, &inbuf);
            }
            match decoder.decode_into(&mut inbuf, &mut args) {
                Ok(Some(_raw)) => {}
                Ok(None) => break,
                Err(e) => {
                    Reply::Error(e.reply_text()).encode(session.proto, &mut out);
                    sock.write_all(&out).await?;
                    tracing::debug!(error = %e, "protocol error; closing");
                    return Ok(End::Closed);
                }
            };
            commands += 1;
            if out.capacity() == 0 {
                out.reserve(READ_CHUNK);
            }
            if crate::cmd::pause::must_wait(shared, session, &args) {
                // CLIENT PAUSE: the replies before it go out, then it waits for the pause's end.
                flush(shared, &mut sock, &mut out).await?;
                let over = pause_over(shared, session, &args);
                let held = Box::pin(hold(&mut sock, &mut inbuf, handle, over)).await;
                if held.is_none() {
                    return Ok(End::Closed);
                }
            }
            if let Some(payload) = large_restore_payload(&args) {
                // Decoding a million-member value takes long enough to stall every client of
                // this IO thread (a big key arriving by migration): it runs on a blocking thread,
                // before the command takes its key's lock.
                let limits = shared.keyspace.limits();
                let p = payload.clone();
                let decoded =
                    tokio::task::spawn_blocking(move || crate::dump::restore(&p, &limits))
                        .await
                        .unwrap_or(Err(crate::dump::BadPayload));
                session.predecoded = Some(Box::new((payload, decoded)));
            }
            let offset_before = shared.repl.offset();
            let mut reply = if crate::script::host::wants_script_thread(session, &args) {
                // Runs on the script thread; this connection waits without holding its IO
                // thread (a script past the busy threshold answers BUSY at once).
                match crate::script::host::busy_reply(shared, &args) {
                    Some(busy) => crate::cmd::multi::rejected(shared, session, &args, busy),
                    None => match crate::script::inline::run(shared, session, &args) {
                        Some(reply) => reply,
                        None => {
                            Box::pin(crate::script::host::hand_off(shared, session, &args)).await
                        }
                    },
                }
            } else if shared.scripts.active() && !crate::script::host::allowed_while_busy(&args) {
                // The running script holds its keys' locks: wait for it rather than block this
                // IO thread on one of them (past the threshold: BUSY).
                match Box::pin(crate::script::host::wait_turn(shared, &args)).await {
                    Some(busy) => crate::cmd::multi::rejected(shared, session, &args, busy),
                    None => crate::cmd::execute(shared, session, &args),
                }
            } else {
                crate::cmd::execute(shared, session, &args)
            };
            session.predecoded = None;
            // Any write this command propagated (a script's, a transaction's too): WAIT waits
            // for replicas to acknowledge up to here.
            let offset_after = shared.repl.offset();
            if offset_after != offset_before {
                session.woff = offset_after;
            }
            if let Some(wait) = session.repl_wait.take() {
                flush(shared, &mut sock, &mut out).await?;
                match Box::pin(crate::replication::wait_acks(
                    shared, &mut sock, &mut inbuf, handle, *wait,
                ))
                .await
                {
                    Some(r) => reply = r,
                    None => return Ok(End::Closed),
                }
            }
            if let Some((waiter, timeout)) = session.blocked.take() {
                // Blocked: the replies before it go out now; this connection waits without
                // holding its IO thread.
                flush(shared, &mut sock, &mut out).await?;
                // Boxed, as the other rare waits below: inline, each would enlarge every
                // connection's task, idle or not, by its own state.
                let mail = session.pubsub.as_ref().map(|s| s.mailbox.clone());
                match Box::pin(wait_blocked(
                    shared, &mut sock, &mut inbuf, handle, &waiter, timeout, mail,
                ))
                .await
                {
                    Some(r) => {
                        if let Some(spec) = ringcache_protocol::table::lookup(&waiter.args[0]) {
                            if r.is_error() {
                                shared.stats.failed_later(spec);
                            }
                            // Served after waiting (not timed out, not unblocked by an
                            // error): SLOWLOG shows it as Redis does, with the time it ran (the
                            // wait is not counted).
                            if !r.is_error() && r != waiter.timeout_reply {
                                crate::cmd::log_if_slow(shared, session, spec, &waiter.args, 0);
                            }
                        }
                        reply = crate::cmd::streams::for_protocol(r, &waiter.args[0], session.proto)
                    }
                    None => return Ok(End::Closed),
                }
            }
            if let Some(migration) = session.migration.take().map(|m| *m) {
                // Waits on another node: the replies before it need not wait too.
                flush(shared, &mut sock, &mut out).await?;
                // This connection waits for the move; its IO thread serves the others meanwhile.
                reply = match BULK.get() {
                    // The mover's batches run on the low-priority bulk thread: a request that
                    // wakes an IO thread preempts them.
                    Some(bulk) if migration.is_bulk() => {
                        let shared = shared.clone();
                        bulk.spawn(async move { crate::topology::run(&shared, migration).await })
                            .await
                            .unwrap_or_else(|_| Reply::error("ERR the move was aborted"))
                    }
                    _ => Box::pin(crate::topology::run(shared, migration)).await,
                };
                if reply.is_error() {
                    // Counted as a call that went well while its reply was still to come.
                    if let Some(spec) = ringcache_protocol::table::lookup(&args[0]) {
                        shared.stats.failed_later(spec);
                    }
                }
            }
            if let Reply::Error(e) = &reply {
                shared.stats.error(e);
            }
            if session.is_replication_link {
                // SYNC: this connection now carries the snapshot and write stream to a replica.
                sock.write_all(&out).await?;
                return Box::pin(crate::replication::serve_replica(
                    shared,
                    sock,
                    session.replica_port,
                ))
                .await
                .map(|()| End::Closed);
            }
            if session.pubsub.is_some() {
                deliver_mail(session, &mut out);
            }
            match session.flow {
                Flow::CloseNow => return Ok(End::Closed),
                Flow::CloseAfterReply => {
                    reply.encode(session.proto, &mut out);
                    sock.write_all(&out).await?;
                    return Ok(End::Closed);
                }
                Flow::Continue if session.reply == ReplyMode::On => {
                    reply.encode(session.proto, &mut out)
                }
                Flow::Continue => quiet_reply(session, &reply, &mut out),
            }
            decoder.authenticated = session.authenticated;
            if out.len() >= OUTPUT_FLUSH {
                sock.write_all(&out).await?;
                shared.stats.net_output.fetch_add(out.len() as u64, Relaxed);
                out.clear();
            }
        }
        if commands > 0 {
            shared.stats.commands.fetch_add(commands, Relaxed);
            handle.active();
            *lock(&handle.last_cmd) = session.last_cmd;
            handle.resp.store(session.proto.number() as u8, Relaxed);
        }
        if !out.is_empty() {
            crate::tick::end_of_tick().await;
            sock.write_all(&out).await?;
            shared.stats.net_output.fetch_add(out.len() as u64, Relaxed);
            out.clear();
        }
        if handle.killed.load(Relaxed) {
            return Ok(End::Closed);
        }
        // Drop the last request's argument slices so the read buffer is unshared again and
        // `reserve` reuses it in place instead of copying it.
        args.clear();
        if inbuf.is_empty() {
            inbuf = BytesMut::new();
        }
        if out.capacity() > 0 {
            out = BytesMut::new();
        }
        let n = if session.pubsub.is_some() {
            // Subscribed: messages are written as they arrive while the socket is read. Boxed,
            // as the other rare waits: inline it would enlarge every connection's task.
            match Box::pin(wait_subscribed(
                shared, &mut sock, &mut inbuf, handle, session,
            ))
            .await?
            {
                Some(n) => n,
                None => return Ok(End::Closed),
            }
        } else {
            tokio::select! {
            biased;
            _ = handle.kill.notified() => {
                if handle.killed.load(SeqCst) {
                    return Ok(End::Closed);
                }
                // Asked to park: only with nothing half-read, and not under an idle timeout
                // (a parked connection has no timer). Declined, the request stands until the
                // client runs a command.
                if T::PARKS && can_park && idle.is_none() && inbuf.is_empty() && handle.park_asked.load(Relaxed) {
                    return Ok(End::Park(sock.into_std()?));
                }
                continue;
            }
            r = read_idle(&mut sock, &mut inbuf, idle) => r?,
            }
        };
        if n == 0 {
            return Ok(End::Closed);
        }
        session.read_at = Instant::now();
        shared.stats.net_input.fetch_add(n as u64, Relaxed);
    }
}

/// Sends what arrived in a subscribed session's mailbox ahead of the reply being encoded (a
/// message published before it, by this command or another client, goes out before it), and
/// drops the subscriptions once none is left.
#[inline(never)]
fn deliver_mail(session: &mut Session, out: &mut BytesMut) {
    let Some(subs) = &session.pubsub else {
        return;
    };
    subs.mailbox.set_proto(session.proto);
    let n = subs.mailbox.take(out);
    subs.mailbox.sent(n);
    if subs.is_empty() {
        session.pubsub = None;
    }
}

/// A reply under CLIENT REPLY OFF or SKIP: dropped, unless it is a pub/sub push.
#[inline(never)]
fn quiet_reply(session: &mut Session, reply: &Reply, out: &mut BytesMut) {
    match session.reply {
        // CLIENT REPLY SKIP itself answers nothing; the command after it is the one skipped.
        ReplyMode::SkipNext => session.reply = ReplyMode::Skip,
        ReplyMode::Skip => session.reply = ReplyMode::On,
        ReplyMode::On | ReplyMode::Off => {}
    }
    if crate::cmd::pubsub::is_push_command(session.last_cmd) {
        reply.encode(session.proto, out);
    }
}

/// A subscribed connection's wait: writes the messages queued for it as they arrive until the
/// client sends more (the bytes read; `None`: close). It does not park (its subscriptions live
/// in this task) and has no idle timeout, as Redis exempts pub/sub clients from `timeout`.
async fn wait_subscribed<T: Transport>(
    shared: &Shared,
    sock: &mut T,
    inbuf: &mut BytesMut,
    handle: &ClientHandle,
    session: &Session,
) -> io::Result<Option<usize>> {
    let Some(mailbox) = session.pubsub.as_ref().map(|s| s.mailbox.clone()) else {
        return sock.read_some(inbuf).await.map(Some);
    };
    let mut out = BytesMut::new();
    loop {
        if handle.killed.load(SeqCst) {
            return Ok(None);
        }
        let n = mailbox.take(&mut out);
        if n > 0 {
            // A subscriber that does not read is cut off by a publisher (output buffer limit):
            // the kill ends a write that cannot finish.
            tokio::select! {
                biased;
                () = handle.until_killed() => return Ok(None),
                r = sock.write_all(&out) => r?,
            }
            mailbox.sent(n);
            shared.stats.net_output.fetch_add(out.len() as u64, Relaxed);
            out.clear();
            continue;
        }
        if out.capacity() > 0 {
            out = BytesMut::new();
        }
        tokio::select! {
            biased;
            // A request to park is declined: the connection is not idle while subscribed.
            _ = handle.kill.notified() => {}
            _ = mailbox.ready.notified() => {}
            r = sock.read_some(inbuf) => return r.map(Some),
        }
    }
}

/// Reads more input; an idle timeout closes the connection like Redis's `timeout` setting.
async fn read_idle<T: Transport>(
    sock: &mut T,
    buf: &mut BytesMut,
    idle: Option<Duration>,
) -> io::Result<usize> {
    match idle {
        None => sock.read_some(buf).await,
        // Boxed: the timer would otherwise sit in every connection's task, timeout or not.
        Some(d) => match Box::pin(tokio::time::timeout(d, sock.read_some(buf))).await {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!("idle timeout; closing");
                Ok(0)
            }
        },
    }
}

/// Waits until a blocked client is served, its timeout passes, or it goes away (`None`: close
/// the connection). Bytes the client sends meanwhile stay buffered for after (as Redis does);
/// pub/sub messages for a (RESP3) subscriber that blocked are written as they arrive.
async fn wait_blocked<T: Transport>(
    shared: &Shared,
    sock: &mut T,
    inbuf: &mut BytesMut,
    handle: &ClientHandle,
    waiter: &Arc<crate::state::blocking::Waiter>,
    timeout: Option<Duration>,
    mail: Option<Arc<crate::state::pubsub::Mailbox>>,
) -> Option<Reply> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let gone = loop {
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = waiter.woken.notified() => break false,
            _ = until => break false,
            () = mail_arrived(mail.as_deref()) => {
                if let Some(mb) = mail.as_deref() {
                    let mut out = BytesMut::new();
                    let n = mb.take(&mut out);
                    if sock.write_all(&out).await.is_err() {
                        break true;
                    }
                    mb.sent(n);
                    shared.stats.net_output.fetch_add(out.len() as u64, Relaxed);
                }
            }
            // Not a request to park: a blocked client stays.
            _ = handle.kill.notified() => if handle.killed.load(SeqCst) {
                break true;
            },
            r = sock.read_some(inbuf) => match r {
                Ok(0) | Err(_) => break true,
                // A client piling up input while blocked is cut off, as Redis bounds a query
                // buffer.
                Ok(_) if inbuf.len() > MAX_BLOCKED_INPUT => break true,
                Ok(_) => {}
            },
        }
    };
    let reply = crate::cmd::blocking::unblock(shared, waiter);
    (!gone).then_some(reply)
}

/// Writes the replies gathered so far, before the connection waits (on a pause, on replicas, a
/// blocked command or a move).
async fn flush<T: Transport>(shared: &Shared, sock: &mut T, out: &mut BytesMut) -> io::Result<()> {
    if !out.is_empty() {
        sock.write_all(out).await?;
        shared.stats.net_output.fetch_add(out.len() as u64, Relaxed);
        out.clear();
    }
    Ok(())
}

/// Waits for `done` while the client stays connected: bytes it sends meanwhile stay buffered
/// for after (`None`: it went away or was killed).
pub(crate) async fn hold<T: Transport, F: Future>(
    sock: &mut T,
    inbuf: &mut BytesMut,
    handle: &ClientHandle,
    done: F,
) -> Option<F::Output> {
    tokio::pin!(done);
    loop {
        tokio::select! {
            out = &mut done => return Some(out),
            _ = handle.kill.notified() => if handle.killed.load(SeqCst) {
                return None;
            },
            r = sock.read_some(inbuf) => match r {
                Ok(0) | Err(_) => return None,
                Ok(_) if inbuf.len() > MAX_BLOCKED_INPUT => return None,
                Ok(_) => {}
            },
        }
    }
}

/// Resolves once no pause holds `args` back (CLIENT UNPAUSE or the pause's end).
async fn pause_over(shared: &Shared, session: &Session, args: &[Bytes]) {
    let held = |mode| crate::cmd::pause::held_back(shared, mode, session, args);
    shared.pause.over(held).await
}

/// Resolves when a message is queued in `mail`; never without a mailbox.
async fn mail_arrived(mail: Option<&crate::state::pubsub::Mailbox>) {
    match mail {
        Some(mb) => mb.ready.notified().await,
        None => std::future::pending().await,
    }
}

/// RESTORE payloads from this size on are decoded off the IO thread.
const LARGE_PAYLOAD: usize = 256 * 1024;

/// The payload of a RESTORE large enough to decode off the IO thread.
fn large_restore_payload(args: &[Bytes]) -> Option<Bytes> {
    let payload = args.get(3).filter(|p| p.len() >= LARGE_PAYLOAD)?;
    args[0]
        .eq_ignore_ascii_case(b"restore")
        .then(|| payload.clone())
}

/// Input a blocked client may send before it is disconnected.
const MAX_BLOCKED_INPUT: usize = 64 * 1024 * 1024;

/// Samples the process's resident memory for the keyspace's RSS guard, four times a second, off
/// the IO threads; the tables the guard moves are moved on an IO thread, in turn, and the IO
/// threads then free the pages the move emptied.
async fn guard_rss(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let io = IO_THREADS.get().map_or(&[][..], |t| &t.handles[..]);
    let mut turn = 0;
    loop {
        let s = shared.clone();
        let work = tokio::task::spawn_blocking(move || {
            s.keyspace.guard_rss(crate::cmd::server::anon_rss_bytes())
        })
        .await
        .unwrap_or_default();
        if let Some(range) = work.relocate {
            let s = shared.clone();
            let relocate = move || s.keyspace.relocate_tables(range);
            turn += 1;
            let _ = match io.get(turn % io.len().max(1)) {
                Some(h) => h.spawn(async move { relocate() }).await,
                None => tokio::task::spawn_blocking(relocate).await,
            };
        }
        if work.collect {
            for h in io {
                h.spawn(async { ringcache_alloc::release_free_pages() });
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Active expiry, on primaries: every 100 ms, keys past their deadline are deleted in steps of
/// buckets, repeated while a step finds more than a quarter of what it checked expired, within
/// 25 ms (Redis's slow cycle budget at hz 10).
async fn active_expiry(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    const STEP_BUCKETS: usize = 256;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        // Under CLIENT PAUSE expired keys stay (hidden): their deletes would reach the replicas.
        if shared.repl.is_replica()
            || shared.keyspace.volatile() == 0
            || shared.pause.writes_paused()
        {
            continue;
        }
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            loop {
                let now = now_ms();
                let (checked, deleted) =
                    s.keyspace.expire_step(now, STEP_BUCKETS, |bucket, key| {
                        crate::replication::propagate_expired(&s, bucket, key, now);
                        s.watches.touch(&[key]);
                        crate::cmd::notify::expired(&s, key);
                    });
                if deleted * 4 <= checked || started.elapsed() > Duration::from_millis(25) {
                    break;
                }
            }
        })
        .await;
    }
}
