//! The L7 proxy: accept loop and client connections.
//!
//! A connection reads what the client sent, decodes every whole request, and turns each into a
//! [`Slot`] at the back of its FIFO right away (forwarding it to its shard, splitting it, or
//! answering it), so a pipeline reaches the shards as one batch. Replies leave strictly from the
//! front of the FIFO: whatever is complete there is written with one write per wakeup, so
//! replies keep the request order whatever order the shards answer in. A client may have at most
//! [`MAX_PENDING`] requests outstanding; beyond that the router stops reading it (backpressure
//! instead of unbounded memory).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::park::End;
use ringcache_protocol::table::{self, flags};
use ringcache_protocol::tls::TlsServer;
use ringcache_protocol::transport::Transport;
use ringcache_protocol::{Protocol, Reply, RequestDecoder};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::clients::{lock, ClientHandle, Who};
use crate::merge::Slot;
use crate::pools::View;
use crate::route::{self, Plan};
use crate::send::{send, send_as, send_plan};
use crate::session::Session;
use crate::shard::{ReplicaLink, Shard};
use crate::shard_metrics;
use crate::state::Router;
use crate::upstream::{UpRequest, UpResult};
use crate::{blocking, cursor, local, pubsub, scripts, txn};

/// Requests one client may have outstanding before the router stops reading from it.
pub const MAX_PENDING: usize = 1024;
/// How long shutdown waits for clients to receive the replies they are owed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves clients on `listener` until `shutdown` resolves; then stops accepting, lets connected
/// clients receive the replies they are owed (up to 2 s), and stops the upstream connections.
pub async fn serve(
    router: Arc<Router>,
    listener: TcpListener,
    shutdown: impl Future,
) -> io::Result<()> {
    serve_listeners(router, listener, None, shutdown).await
}

/// [`serve`] with a TLS client listener beside the plain one.
pub async fn serve_listeners(
    router: Arc<Router>,
    listener: TcpListener,
    tls: Option<(TcpListener, Arc<TlsServer>)>,
    shutdown: impl Future,
) -> io::Result<()> {
    let (tls_listener, tls) = match tls {
        Some((l, t)) => (Some(l), Some(t)),
        None => (None, None),
    };
    tokio::pin!(shutdown);
    start_lots(&router);
    tokio::spawn(park_idle(router.clone()));
    let extra = bind_pool_listeners(&router).await?;
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = async {
                tokio::select! {
                    a = listener.accept() => (a, None),
                    a = ringcache_protocol::transport::accept_on(tls_listener.as_ref()) => (a, tls.clone()),
                    a = accept_any(&extra) => (a, None),
                }
            } => match accepted {
                (Ok((sock, addr)), tls) => {
                    backoff = Duration::from_millis(5);
                    accept(&router, sock, addr, tls);
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
    drop(listener);
    drop(tls_listener);
    drop(extra);
    tracing::info!(clients = router.clients.len(), "shutting down");
    router.clients.kill_all();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while !router.clients.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    router.stop();
    Ok(())
}

/// Binds the `[[listener]]` addresses, each noted with its pool for `Router::listener_pool`.
async fn bind_pool_listeners(router: &Router) -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(router.config.listeners.len());
    for l in &router.config.listeners {
        let listener = TcpListener::bind(l.listen.as_str())
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("binding listener {}: {e}", l.listen)))?;
        let addr = listener.local_addr()?;
        let pool = router.pool_named(&l.pool).map_or(0, |p| p.index);
        router.note_listener(addr, pool);
        // Tests and the launcher read this line to find the port (0 picks one).
        println!("ringcache router listening for pool {} on {addr}", l.pool);
        tracing::info!(%addr, pool = %l.pool, "listening for a pool");
        out.push(listener);
    }
    Ok(out)
}

/// The next connection on any of `listeners` (pending forever when there are none).
async fn accept_any(listeners: &[TcpListener]) -> io::Result<(TcpStream, SocketAddr)> {
    if listeners.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for l in listeners {
            if let std::task::Poll::Ready(r) = l.poll_accept(cx) {
                return std::task::Poll::Ready(r);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

fn accept(router: &Arc<Router>, sock: TcpStream, addr: SocketAddr, tls: Option<Arc<TlsServer>>) {
    let laddr = sock.local_addr().unwrap_or(addr);
    let max = router.config.max_clients;
    let Some(handle) = router.clients.register(addr, laddr, max) else {
        tokio::spawn(async move {
            let full = b"-ERR max number of clients reached\r\n";
            ringcache_protocol::tls::refuse(sock, tls, full).await;
        });
        return;
    };
    let io = router.io.pick();
    let span = tracing::debug_span!("client", id = handle.id, peer = %addr, io);
    let router = router.clone();
    if !router.io.is_dedicated() {
        tokio::spawn(client_task_on(router, sock, handle, io, tls).instrument(span));
        return;
    }
    // The socket moves to its IO thread for good (registered with that thread's reactor).
    let std_sock = match sock.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot hand over connection");
            router.clients.unregister(handle.id);
            return;
        }
    };
    let runtime = router.io.handle(io).clone();
    let task = async move {
        match TcpStream::from_std(std_sock) {
            Ok(sock) => client_task_on(router, sock, handle, io, tls).await,
            Err(e) => {
                tracing::debug!(error = %e, "cannot adopt connection");
                router.clients.unregister(handle.id);
            }
        }
    }
    .instrument(span);
    // Spawned from the IO thread itself, so that thread's allocator heap holds the task: the
    // memory a parking connection frees is then returned by that thread's release hook.
    runtime.spawn(async move {
        tokio::spawn(task);
    });
}

/// Serves a new connection: plain at once, TLS after its handshake (on the connection's own task
/// and IO thread).
async fn client_task_on(
    router: Arc<Router>,
    sock: TcpStream,
    handle: Arc<ClientHandle>,
    io: usize,
    tls: Option<Arc<TlsServer>>,
) {
    match tls {
        None => client_task(router, sock, handle, io).await,
        Some(tls) => match tls.accept(sock).await {
            Ok(stream) => client_task(router, stream, handle, io).await,
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                router.clients.unregister(handle.id);
            }
        },
    }
}

async fn client_task<T: Transport>(
    router: Arc<Router>,
    sock: T,
    handle: Arc<ClientHandle>,
    io: usize,
) {
    let laddr = handle.laddr;
    let mut s = Session::new(
        handle,
        io,
        router.acl.default_opens(),
        router.acl.default_user(),
    );
    s.pool = router.listener_pool(laddr);
    serve_client(router, sock, s).await;
}

/// Serves a connection until it closes (then unregisters it) or parks.
async fn serve_client<T: Transport>(router: Arc<Router>, mut sock: T, mut s: Session) {
    let registered = Registered(&router, s.id);
    let handle = s.client.clone();
    let lot = router.lots[s.io % router.lots.len()].clone();
    loop {
        match connection(&router, sock, &handle, &mut s).await {
            Ok(End::Park(std_sock)) => match lot.park_client(&handle, std_sock, Box::new(s)) {
                Ok(()) => {
                    // Still registered: the lot holds the connection now.
                    std::mem::forget(registered);
                    return;
                }
                Err((std_sock, session)) => {
                    s = *session;
                    match T::unpark(std_sock) {
                        Ok(back) => sock = back,
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot take a connection back");
                            return;
                        }
                    }
                }
            },
            Ok(End::Closed) => return,
            Err(e) => {
                tracing::debug!(error = %e, "connection ended");
                return;
            }
        }
    }
}

/// Runs each IO thread's lot of parked connections, resuming one on its thread when its socket
/// turns readable or its client is killed.
pub fn start_lots(router: &Arc<Router>) {
    for (i, lot) in router.lots.iter().enumerate() {
        let me = Arc::downgrade(router);
        let resume = move |sock: std::net::TcpStream, s: Box<Session>| {
            s.client.resumed();
            let Some(router) = me.upgrade() else { return };
            let span = tracing::debug_span!("client", id = s.id, io = s.io);
            tokio::spawn(
                async move {
                    match TcpStream::from_std(sock) {
                        Ok(sock) => serve_client(router, sock, *s).await,
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot take a connection back");
                            router.clients.unregister(s.id);
                        }
                    }
                }
                .instrument(span),
            );
        };
        router
            .io
            .handle(i)
            .spawn(lot.clone().run(resume, |s| s.client.killed.load(SeqCst)));
    }
}

/// Asks clients idle for a second or more to park, once a second, until the router stops.
async fn park_idle(router: Arc<Router>) {
    let mut stop = router.stop_signal();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        router.clients.ask_idle_to_park(1);
    }
}

/// Unregisters a client when its task ends, even by a panic.
struct Registered<'a>(&'a Router, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.clients.unregister(self.1);
    }
}

/// Runs the connection's requests until it closes or, idle and asked to, parks.
async fn connection<T: Transport>(
    router: &Router,
    mut sock: T,
    handle: &Arc<ClientHandle>,
    s: &mut Session,
) -> io::Result<End> {
    sock.tcp().set_nodelay(true)?;
    let mut decoder = RequestDecoder::new(router.config.limits, s.authenticated);
    // Buffers are taken when bytes arrive and given back when the connection goes quiet: an
    // idle client holds none.
    let mut inbuf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut args: Vec<Bytes> = Vec::new();
    let mut fifo: VecDeque<Slot> = VecDeque::new();
    let mut eof = false;
    // A subscriber's messages taken in one wakeup (empty, and holding nothing, for others).
    let mut pushed: Vec<Bytes> = Vec::new();
    // A request CLIENT PAUSE holds back: nothing after it is read until it goes.
    let mut held: Option<crate::pause::Held> = None;
    loop {
        // Decode and dispatch everything buffered, up to the outstanding-request cap.
        let mut starved = false;
        // Requests planned on an older ring are answered before any is planned on a newer one.
        let mut holding = false;
        if !s.closing {
            let mut topo = router.view();
            if topo.generation != s.epoch && !fifo.is_empty() {
                holding = true;
            } else if s.busy_mark != topo.generation {
                // Publish the epoch before planning on it, then re-read the ring: a change's
                // quiesce either sees this client busy on the old ring or this client sees the
                // new one (`rebalance::publish::quiesce`). Nothing is outstanding here.
                for _ in 0..4 {
                    let epoch = topo.generation;
                    handle.busy_epoch.store(epoch, SeqCst);
                    s.busy_mark = epoch;
                    std::sync::atomic::fence(SeqCst);
                    let again = router.view();
                    if again.generation == epoch {
                        break;
                    }
                    topo = again;
                }
            }
            if !holding {
                s.epoch = topo.generation;
            }
            let start = Instant::now();
            let mut commands = 0u64;
            while !holding && fifo.len() < MAX_PENDING {
                let next = match held.take() {
                    Some(h) => {
                        args = h.args;
                        Ok(Some(h.raw))
                    }
                    None => decoder.decode_into(&mut inbuf, &mut args),
                };
                match next {
                    Ok(Some(raw)) => {
                        let raw =
                            match crate::pause::hold(router, s, std::mem::take(&mut args), raw) {
                                Ok(h) => {
                                    held = Some(h);
                                    break;
                                }
                                Err((a, raw)) => {
                                    args = a;
                                    raw
                                }
                            };
                        commands += 1;
                        let slot = match client_reply(s, &args) {
                            Some(slot) => slot,
                            None => {
                                let slot = dispatch(router, &topo, s, &args, raw, start);
                                silence(s, slot)
                            }
                        };
                        if s.close_now {
                            return Ok(End::Closed);
                        }
                        fifo.push_back(slot);
                        decoder.authenticated = s.authenticated;
                        if s.closing {
                            break;
                        }
                    }
                    Ok(None) => {
                        starved = true;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "protocol error; closing");
                        fifo.push_back(Slot::error(&e.reply_text()));
                        s.closing = true;
                        break;
                    }
                }
            }
            if commands > 0 {
                router.commands.fetch_add(commands, Relaxed);
                handle.active();
                *lock(&handle.last_cmd) = s.last_cmd;
                handle.resp.store(s.proto.number() as u8, Relaxed);
            }
        }
        if fifo.is_empty() && s.busy_mark != 0 {
            handle.busy_epoch.store(0, SeqCst);
            s.busy_mark = 0;
        }
        let input_done = s.closing || (eof && starved);
        if input_done && fifo.is_empty() {
            if !out.is_empty() {
                sock.write_all(&out).await?;
            }
            return Ok(End::Closed);
        }
        // Drop the last request's argument slices so the read buffer is unshared and `reserve`
        // can reuse it in place.
        args.clear();
        if inbuf.is_empty() {
            inbuf = BytesMut::new();
        }
        // Behind a held request the client is still read (up to a bound), to see it leave.
        let reading = !input_done
            && !eof
            && match held {
                None => fifo.len() < MAX_PENDING && !holding,
                Some(_) => inbuf.len() < HELD_INPUT,
            };
        tokio::select! {
            biased;
            // Also a request to park (`park_asked`), acted on below once nothing is under way.
            _ = handle.kill.notified(), if !s.closing => if handle.killed.load(SeqCst) {
                s.closing = true;
            },
            () = drain(router, s.who(), &mut fifo, &mut out), if !fifo.is_empty() => {}
            // CLIENT PAUSE: the held request goes once the pause lets it (after the replies
            // before it, which `drain` keeps sending meanwhile), if nothing else holds it.
            () = async { if let Some(h) = &held { h.wait(router).await } },
                if held.is_some() && !s.closing && !holding && fifo.len() < MAX_PENDING => {}
            r = sock.read_some(&mut inbuf), if reading => {
                if r? == 0 {
                    eof = true;
                    // Redis frees a blocked client that disconnects (a paused one too, its
                    // command not run); its connection goes too.
                    if held.is_some() || fifo.iter().any(|slot| matches!(slot, Slot::Blocked(_))) {
                        return Ok(End::Closed);
                    }
                }
            }
            // Messages for a subscriber, after any reply ready before them.
            () = recv_pushed(&mut s.pubsub, &mut pushed), if s.pubsub.is_some() && !s.closing => {}
        }
        let pushed_bytes: usize = pushed.iter().map(Bytes::len).sum();
        for msg in pushed.drain(..) {
            out.extend_from_slice(&msg);
        }
        if !out.is_empty() {
            if s.pubsub.is_some() {
                // A subscriber that stopped reading is cut off by the hub mid-write; a request
                // to park (the same notification) leaves the write going: cancelled, the rest
                // of the batch was lost.
                tokio::select! {
                    r = sock.write_all(&out) => r?,
                    () = handle.until_killed() => return Ok(End::Closed),
                }
            } else {
                sock.write_all(&out).await?;
            }
            out.clear();
        }
        if let (Some(sub), true) = (&s.pubsub, pushed_bytes > 0) {
            sub.written(pushed_bytes);
        }
        if fifo.is_empty() {
            // An idle connection keeps no buffer; a subscriber keeps a small one for its next
            // messages (allocating it again for each batch was a tenth of a fan-out's cost).
            if s.pubsub.is_none() || out.capacity() > SUBSCRIBER_BUFFER {
                out = BytesMut::new();
            }
            let idle = inbuf.is_empty() && !eof && !s.closing && s.busy_mark == 0 && held.is_none();
            let holds = txn::holds_link(s) || s.pubsub.is_some();
            // Only a plain socket parks (a TLS session's state lives beside it).
            if T::PARKS && idle && handle.park_asked.load(Relaxed) && !holds {
                // Nothing outstanding: its chain's runner has nothing to run.
                s.chain = None;
                return Ok(End::Park(sock.into_std()?));
            }
        }
    }
}

/// What a client may send behind a request CLIENT PAUSE holds before the router stops reading.
const HELD_INPUT: usize = 1 << 20;
/// The write buffer a subscriber's connection keeps between batches of messages, at most.
const SUBSCRIBER_BUFFER: usize = 16 * 1024;
/// What a connection's write buffer starts with when its first reply of a batch is ready.
const REPLY_CHUNK: usize = 4 * 1024;

async fn recv_pushed(sub: &mut Option<Box<pubsub::Subscriber>>, out: &mut Vec<Bytes>) {
    match sub {
        Some(sub) => sub.recv(out).await,
        None => std::future::pending().await,
    }
}

/// Moves every complete reply at the front of the FIFO into `out`; pending until at least one is.
/// A request a node fenced off (another router changed the ring) is retried in its place: the
/// client's later replies wait for it, so the client sees its requests answered in order.
fn drain<'a>(
    router: &'a Router,
    who: Who,
    fifo: &'a mut VecDeque<Slot>,
    out: &'a mut BytesMut,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        let mut progressed = false;
        while let Some(front) = fifo.front_mut() {
            match front.poll_take(cx) {
                Poll::Ready(bytes) => {
                    if let Some(raw) = front.fenced(&bytes) {
                        *front = crate::rebalance::divert::retry_fenced(router, who, raw);
                        continue;
                    }
                    if let Some(raw) = front.healable(&bytes) {
                        *front = crate::scripts::heal(router, who, raw, bytes);
                        continue;
                    }
                    if let Some(raw) = front.elsewhere(&bytes) {
                        *front = crate::scripts::follow(router, who, raw, bytes);
                        continue;
                    }
                    if out.capacity() == 0 {
                        // Room for a pipeline's replies at once: growing from empty reply by
                        // reply reallocated it five times a batch of sixteen.
                        out.reserve(REPLY_CHUNK.max(bytes.len()));
                    }
                    out.extend_from_slice(&bytes);
                    fifo.pop_front();
                    progressed = true;
                }
                Poll::Pending => break,
            }
        }
        if progressed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// The replica a read goes to under its pool's `read_from`, if any may serve it: healthy (in
/// sync with this shard's primary), lag under `max_replica_lag`, and the key's arc not migrating.
/// `index`: the shard's in the view; `default`: the client's default pool.
fn pick_replica(
    router: &Router,
    topo: &View,
    index: usize,
    default: usize,
    args: &[Bytes],
    spec: &table::CommandSpec,
) -> Option<Arc<ReplicaLink>> {
    use crate::config::ReadFrom;
    let shard = topo.shards.get(index)?;
    let policy = router.pools.get(topo.pool_of_shard(index))?.read_from;
    if policy == ReadFrom::Primary || shard.replica_links.is_empty() {
        return None;
    }
    let max_lag = router
        .config
        .ring
        .max_replica_lag
        .unwrap_or(DEFAULT_MAX_REPLICA_LAG)
        .as_millis() as i64;
    if spec
        .keys(args)
        .any(|i| topo.is_migrating(&args[i], default))
    {
        return None;
    }
    // `connected` drops the moment a replica's connections break, before the next health probe.
    let usable = shard.replica_links.iter().filter(|r| {
        r.healthy.load(Relaxed) && r.lag_ms.load(Relaxed) <= max_lag && r.pool.connected() > 0
    });
    match policy {
        ReadFrom::ReplicaRoundRobin => {
            let usable: Vec<_> = usable.collect();
            if usable.is_empty() {
                return None;
            }
            let n = ROUND_ROBIN.fetch_add(1, Relaxed) as usize % usable.len();
            Some(usable[n].clone())
        }
        _ => usable.min_by_key(|r| r.outstanding.load(Relaxed)).cloned(),
    }
}

/// Bounded staleness for replica reads when the config does not say.
pub const DEFAULT_MAX_REPLICA_LAG: Duration = Duration::from_millis(1000);
static ROUND_ROBIN: AtomicU64 = AtomicU64::new(0);

fn send_to_replica(
    replica: &ReplicaLink,
    primary: &Arc<Shard>,
    s: &Session,
    raw: Bytes,
    cmd: u16,
    start: Instant,
) -> oneshot::Receiver<UpResult> {
    let (tx, rx) = oneshot::channel();
    replica.pool.send(
        s.io,
        s.proto,
        s.id,
        UpRequest {
            raw: raw.clone(),
            reply: tx,
            cmd,
            start,
            outstanding: Some(crate::upstream::Outstanding::new(&replica.outstanding)),
            patient: false,
            fix: None,
        },
    );
    // A read caught by a replica's connection breaking is retried once on the primary (reads are
    // safe to repeat), so a replica dying costs latency, not errors.
    let (out_tx, out_rx) = oneshot::channel();
    let primary = primary.clone();
    let who = s.who();
    tokio::spawn(async move {
        let result = match rx.await {
            Ok(Err(e)) if e.connection_lost() => send_as(&primary, who, raw, cmd, start)
                .await
                .unwrap_or(Err(e)),
            Ok(r) => r,
            Err(_) => return,
        };
        let _ = out_tx.send(result);
    });
    out_rx
}

/// A reply the router produced, counted under the `router` shard label.
fn answer(router: &Router, cmd: u16, start: Instant, reply: &Reply, proto: Protocol) -> Slot {
    router
        .metrics
        .observe(cmd, start.elapsed(), reply.is_error());
    Slot::reply(reply, proto)
}

/// CLIENT REPLY ON|OFF|SKIP: `None` for any other request.
fn client_reply(s: &mut Session, args: &[Bytes]) -> Option<Slot> {
    use crate::session::Replies;
    let (name, sub) = (args.first()?, args.get(1)?);
    if !name.eq_ignore_ascii_case(b"client") || !sub.eq_ignore_ascii_case(b"reply") {
        return None;
    }
    if args.len() != 3 {
        return Some(Slot::reply(&local::arity_error("client|reply"), s.proto));
    }
    let mode = &args[2];
    let next = if mode.eq_ignore_ascii_case(b"on") {
        Replies::On
    } else if mode.eq_ignore_ascii_case(b"off") {
        Replies::Off
    } else if mode.eq_ignore_ascii_case(b"skip") {
        // As Redis: SKIP changes nothing while replies are off.
        if s.replies == Replies::Off {
            Replies::Off
        } else {
            Replies::Skip
        }
    } else {
        return Some(Slot::error("ERR syntax error"));
    };
    s.replies = next;
    // ON answers OK whatever the mode was; OFF and SKIP answer nothing.
    let ok = Slot::reply(&Reply::OK, s.proto);
    Some(if next == Replies::On {
        ok
    } else {
        Slot::Silent(Box::new(ok))
    })
}

/// Drops `slot`'s reply if CLIENT REPLY says so; pub/sub confirmations still go.
fn silence(s: &mut Session, slot: Slot) -> Slot {
    use crate::session::Replies;
    let drop = match s.replies {
        Replies::On => false,
        Replies::Off => true,
        Replies::Skip => {
            s.replies = Replies::On;
            true
        }
    };
    // Redis sends (un)subscribe confirmations as pushes, in RESP2 too: never silenced.
    let push = s.last_cmd.contains("subscribe");
    if drop && !push {
        Slot::Silent(Box::new(slot))
    } else {
        slot
    }
}

/// Turns one request into a slot: forwarded, split, fanned out, or answered here.
fn dispatch(
    router: &Router,
    topo: &View,
    s: &mut Session,
    args: &[Bytes],
    raw: Bytes,
    start: Instant,
) -> Slot {
    let Some(name) = args.first() else {
        return Slot::Ready(Bytes::new());
    };
    let spec = table::lookup(name);
    let cmd = shard_metrics::command_index(spec);
    let Some(spec) = spec else {
        if name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:") {
            tracing::warn!(
                "possible cross-protocol attack (HTTP request on the RESP port); closing"
            );
            s.close_now = true;
            return Slot::Ready(Bytes::new());
        }
        txn::queue_failed(s);
        return answer(router, cmd, start, &local::unknown_command(args), s.proto);
    };
    s.last_cmd = spec.name;
    if !spec.arity_ok(args.len()) {
        txn::queue_failed(s);
        return answer(router, cmd, start, &local::arity_error(spec.name), s.proto);
    }
    if !s.authenticated && !spec.has(flags::NO_AUTH) && spec.name != "quit" {
        let reply = Reply::error("NOAUTH Authentication required.");
        return answer(router, cmd, start, &reply, s.proto);
    }
    let context = if txn::in_multi(s) {
        ringcache_protocol::acl::log::MULTI
    } else {
        ringcache_protocol::acl::log::TOPLEVEL
    };
    if let Some(reply) = ringcache_protocol::acl::command::check(
        &router.acl,
        &s.user,
        || s.client.info_line(),
        spec,
        args,
        context,
    ) {
        txn::queue_failed(s);
        return answer(router, cmd, start, &reply, s.proto);
    }
    if router.pubsub.monitoring() && ringcache_protocol::monitor::shown(spec, args) {
        let line = ringcache_protocol::monitor::line_now(&s.client.addr.to_string(), args);
        router.pubsub.feed_monitors(&line);
    }
    // The first key's route, noted while planning (mirroring and the route's counters use it).
    let first_route = std::cell::Cell::new(None);
    let plan = if topo.routes.is_empty() {
        route::plan(spec, args, |k| topo.owner(k, s.pool).unwrap_or(0))
    } else {
        route::plan(spec, args, |k| {
            let routed = topo.route(k, s.pool);
            if first_route.get().is_none() {
                first_route.set(Some(routed));
            }
            topo.owner_routed(k, routed).unwrap_or(0)
        })
    };
    if plan == Plan::WrongArity {
        txn::queue_failed(s);
        return answer(router, cmd, start, &local::arity_error(spec.name), s.proto);
    }
    if let Some(slot) = pubsub::commands::refused_in_subscribed_mode(s, spec) {
        return slot;
    }
    match spec.name {
        "ping" => {
            if let Some(slot) = pubsub::commands::subscribed_ping(s, args) {
                return slot;
            }
        }
        // Its subscriptions end with it.
        "reset" => s.pubsub = None,
        _ => {}
    }
    if spec.name == "client" && args.len() > 1 && args[1].eq_ignore_ascii_case(b"unblock") {
        return blocking::client_unblock(router, s.who(), args);
    }
    if txn::applies(s, spec) && !topo.shards.is_empty() {
        if let Some(slot) = txn::dispatch(router, topo, s, spec, args, &raw) {
            return slot;
        }
    }
    if spec.name == "wait" && !topo.shards.is_empty() {
        let Some(me) = router.me() else {
            return Slot::error("ERR the router is shutting down");
        };
        return Slot::Deferred(Box::new(crate::wait::run(me, s.who(), args)));
    }
    if spec.name == "monitor" {
        // After the subscribed-mode refusal and a transaction's queueing, as on Redis.
        return pubsub::commands::monitor(router, s);
    }
    if spec.name == "config" {
        return local::config_slot(router, topo, s, args, &raw, cmd, start);
    }
    if (spec.has(flags::PUBSUB) || spec.name == "pubsub") && !topo.shards.is_empty() {
        return pubsub::commands::run(router, topo, s, spec, args, &raw, cmd, start);
    }
    if matches!(spec.name, "eval" | "eval_ro" | "script" | "function") && !topo.shards.is_empty() {
        if let Some(slot) = scripts::dispatch(router, topo, s, spec, args, &raw, cmd, start) {
            return slot;
        }
    }
    if topo.shards.is_empty() && !matches!(plan, Plan::Local | Plan::Unsupported) {
        let reply = Reply::error("ERR the ring has no shards");
        return answer(router, cmd, start, &reply, s.proto);
    }
    // Keys in a moving arc (or a client with such requests outstanding) take the migration path.
    if let Some(slot) =
        crate::rebalance::divert(router, topo, s, spec, &plan, args, &raw, cmd, start)
    {
        return slot;
    }
    if let Some(routed) = first_route.get() {
        let f = &router.mirror_in_flight;
        crate::mirror::mirror(f, topo, s, routed, spec, &plan, args, &raw, cmd, start);
    }
    match plan {
        Plan::Forward(index) => {
            let shard = &topo.shards[index];
            if spec.has(flags::READONLY) {
                if let Some(replica) = pick_replica(router, topo, index, s.pool, args, spec) {
                    let rx = send_to_replica(&replica, shard, s, raw.clone(), cmd, start);
                    return Slot::Keyed(rx, raw);
                }
            }
            if let Some(heals) = crate::scripts::is_script(spec) {
                let rx = crate::scripts::run_on(shard, s.who(), raw.clone(), cmd, start);
                let rx = crate::scripts::watch(shard, rx);
                return if heals {
                    Slot::Script(rx, raw)
                } else {
                    Slot::Keyed(rx, raw)
                };
            }
            let rx = send(shard, s, raw.clone(), cmd, start);
            Slot::Keyed(rx, raw)
        }
        Plan::Scan if cursor::parse(&args[1]).is_none() => answer(
            router,
            cmd,
            start,
            &Reply::error("ERR invalid cursor"),
            s.proto,
        ),
        plan @ (Plan::Split { .. } | Plan::FanOut(_) | Plan::Scan) => {
            let split = matches!(plan, Plan::Split { .. });
            let mut slot = send_plan(topo, s.who(), plan, args, raw.clone(), cmd, start);
            if let (true, Slot::Merge(m)) = (split, &mut slot) {
                m.retry_with(raw);
            }
            slot
        }
        Plan::Blocking(_) => blocking::run(router, s.who(), spec, args),
        Plan::CrossShard => answer(
            router,
            cmd,
            start,
            &Reply::error(route::CROSSSHARD),
            s.proto,
        ),
        Plan::Unsupported | Plan::WrongArity => {
            answer(router, cmd, start, &local::unsupported(spec), s.proto)
        }
        Plan::Local => {
            let slot = local::run(router, topo, s, spec, args);
            if let Slot::Ready(bytes) = &slot {
                router
                    .metrics
                    .observe(cmd, start.elapsed(), bytes.first() == Some(&b'-'));
            }
            slot
        }
    }
}
