//! The node's accept loop and connection handler.
//!
//! Each connection reads what the socket has, runs every whole request in it, and writes all the
//! replies with one write (pipelining costs one syscall per batch, as in Redis). Replies beyond
//! 64 KiB are flushed before more requests run, so a client that does not read stalls itself, not
//! the node's memory.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_protocol::{Protocol, Reply, RequestDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::clients::ClientHandle;
use crate::cmd::ctx::Ctx;
use crate::cmd::dispatch;
use crate::config::NodeConfig;
use crate::state::session::{Flow, Session};
use crate::state::Shared;
use crate::store::{lock, now_ms};

/// Binds the node's listener (port 0 picks a free port).
pub async fn bind(config: &NodeConfig) -> io::Result<TcpListener> {
    let addr = config
        .listen_addr()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    TcpListener::bind(addr).await
}

/// Serves clients on `listener` until `shutdown` resolves, then closes every connection.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future,
) -> io::Result<()> {
    let port = listener.local_addr()?.port();
    let shared = Shared::new(config, port, crate::cmd::apply);
    serve(shared, listener, shutdown).await
}

/// Like [`run`] with state built by the caller (tests and the replication bootstrap use it).
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(sweeper(shared.clone(), stop_rx.clone()));
    crate::replication::start(shared.clone(), stop_rx.clone());
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, addr)) => {
                    backoff = Duration::from_millis(5);
                    accept(&shared, sock, addr);
                }
                Err(e) => {
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

fn accept(shared: &Arc<Shared>, sock: TcpStream, addr: std::net::SocketAddr) {
    let laddr = sock.local_addr().unwrap_or(addr);
    let max = shared.config().maxclients;
    let shared = shared.clone();
    let Some(handle) = shared.clients.register(addr, laddr, max) else {
        tokio::spawn(async move {
            // A client that just disconnected may not be unregistered yet: give it a moment.
            tokio::time::sleep(Duration::from_millis(20)).await;
            match shared.clients.register(addr, laddr, max) {
                Some(handle) => start_connection(shared, sock, handle, addr),
                None => {
                    let mut sock = sock;
                    let _ = sock
                        .write_all(b"-ERR max number of clients reached\r\n")
                        .await;
                }
            }
        });
        return;
    };
    start_connection(shared, sock, handle, addr);
}

fn start_connection(
    shared: Arc<Shared>,
    sock: TcpStream,
    handle: Arc<ClientHandle>,
    addr: std::net::SocketAddr,
) {
    let span = tracing::debug_span!("client", id = handle.id, peer = %addr);
    let Some(io) = IO_THREADS.get() else {
        tokio::spawn(client_task(shared, sock, handle).instrument(span));
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
    io.handles[n].spawn(
        async move {
            match TcpStream::from_std(std_sock) {
                Ok(sock) => client_task(shared, sock, handle).await,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot adopt connection");
                    shared.clients.unregister(handle.id);
                }
            }
        }
        .instrument(span),
    );
}

async fn client_task(shared: Arc<Shared>, sock: TcpStream, handle: Arc<ClientHandle>) {
    let id = handle.id;
    if let Err(e) = connection(&shared, sock, &handle).await {
        tracing::debug!(error = %e, "connection ended");
    }
    shared.clients.unregister(id);
}

/// Single-threaded runtimes that own client connections (see [`start_io_threads`]).
struct IoThreads {
    handles: Vec<tokio::runtime::Handle>,
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
    for i in 0..n {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(rt.handle().clone());
        std::thread::Builder::new()
            .name(format!("ringcache-io-{i}"))
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
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
        next: std::sync::atomic::AtomicUsize::new(0),
    });
    Ok(())
}

/// Flush replies once this much is buffered, before running more requests.
const OUTPUT_FLUSH: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

async fn connection(
    shared: &Arc<Shared>,
    mut sock: TcpStream,
    handle: &Arc<ClientHandle>,
) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let (limits, needs_auth, idle) = {
        let c = shared.config();
        (c.limits, c.requirepass.is_some(), c.idle_timeout())
    };
    let mut session = Session {
        id: handle.id,
        proto: Protocol::Resp2,
        authenticated: !needs_auth,
        client: handle.clone(),
        flow: Flow::Continue,
        is_replication_link: false,
        replica_port: None,
        from_primary: false,
        last_cmd: "NULL",
        migration: None,
    };
    let mut decoder = RequestDecoder::new(limits, session.authenticated);
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let mut args = Vec::new();
    loop {
        let mut commands = 0u64;
        loop {
            match decoder.decode_into(&mut inbuf, &mut args) {
                Ok(Some(_raw)) => {}
                Ok(None) => break,
                Err(e) => {
                    Reply::Error(e.reply_text()).encode(session.proto, &mut out);
                    sock.write_all(&out).await?;
                    tracing::debug!(error = %e, "protocol error; closing");
                    return Ok(());
                }
            };
            commands += 1;
            let mut reply = {
                let mut ctx = Ctx {
                    shared,
                    session: &mut session,
                };
                dispatch(&mut ctx, &args)
            };
            if let Some(migration) = session.migration.take() {
                // Waits on another node: the replies before it need not wait too.
                if !out.is_empty() {
                    sock.write_all(&out).await?;
                    shared.stats.net_output.fetch_add(out.len() as u64, Relaxed);
                    out.clear();
                }
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
                    _ => crate::topology::run(shared, migration).await,
                };
            }
            if session.is_replication_link {
                // SYNC: this connection now carries the snapshot and write stream to a replica.
                sock.write_all(&out).await?;
                return crate::replication::serve_replica(shared, sock, session.replica_port).await;
            }
            match session.flow {
                Flow::CloseNow => return Ok(()),
                Flow::CloseAfterReply => {
                    reply.encode(session.proto, &mut out);
                    sock.write_all(&out).await?;
                    return Ok(());
                }
                Flow::Continue => reply.encode(session.proto, &mut out),
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
            handle.last_active_ms.store(now_ms(), Relaxed);
            *lock(&handle.last_cmd) = session.last_cmd;
            handle.resp.store(session.proto.number() as u8, Relaxed);
        }
        if !out.is_empty() {
            sock.write_all(&out).await?;
            shared.stats.net_output.fetch_add(out.len() as u64, Relaxed);
            out.clear();
        }
        if handle.killed.load(Relaxed) {
            return Ok(());
        }
        // Drop the last request's argument slices so the read buffer is unshared again and
        // `reserve` reuses it in place instead of copying it.
        args.clear();
        if inbuf.capacity() - inbuf.len() < READ_CHUNK / 4 {
            inbuf.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            biased;
            _ = handle.kill.notified() => return Ok(()),
            r = read_idle(&mut sock, &mut inbuf, idle) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        shared.stats.net_input.fetch_add(n as u64, Relaxed);
    }
}

/// Reads more input; an idle timeout closes the connection like Redis's `timeout` setting.
async fn read_idle(
    sock: &mut TcpStream,
    buf: &mut BytesMut,
    idle: Option<Duration>,
) -> io::Result<usize> {
    match idle {
        None => sock.read_buf(buf).await,
        Some(d) => match tokio::time::timeout(d, sock.read_buf(buf)).await {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!("idle timeout; closing");
                Ok(0)
            }
        },
    }
}

/// Prunes expired and evicted keys from the bucket index: 1/64 of the buckets every 100 ms, so the
/// whole index is walked every 6.4 s at a bounded cost per step.
async fn sweeper(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let step = ringcache_protocol::hash::BUCKETS / 64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || s.store.sweep(step)).await;
    }
}
