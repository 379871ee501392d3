//! Prometheus metrics: the router's state as text exposition (the per-(command, shard)
//! counters of [`crate::shard_metrics`], connections, epochs, migrations, failovers, L4 pools),
//! and a tiny HTTP/1.1 responder for `GET /metrics`.
//!
//! Families: `ringcache_requests_total{command,shard}`, `ringcache_errors_total{command,shard}`,
//! `ringcache_request_duration_seconds{command,shard}` (histogram), `ringcache_upstream_connections{shard}`,
//! `ringcache_client_connections`. The shard label `router` counts commands the router answers
//! itself (and errors it produces, such as CROSSSHARD).

use std::fmt::Write;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::RouterConfig;
use crate::shard_metrics::{self, escape_label, ShardMetrics};
use crate::state::Router;

/// Binds `config.metrics`, if set (before the router starts, so a taken port fails at once).
pub async fn bind(config: &RouterConfig) -> io::Result<Option<TcpListener>> {
    match &config.metrics {
        Some(addr) => Ok(Some(TcpListener::bind(addr.as_str()).await.map_err(
            |e| io::Error::new(e.kind(), format!("binding metrics address {addr}: {e}")),
        )?)),
        None => Ok(None),
    }
}

/// Serves `GET /metrics` on `listener` until the router stops (printing
/// `ringcache router metrics on ADDR`).
pub fn start(router: &Arc<Router>, listener: TcpListener) -> io::Result<()> {
    let addr = listener.local_addr()?;
    // The launcher and tests read this line to find the metrics port (0 picks one).
    println!("ringcache router metrics on {addr}");
    tracing::info!(%addr, "metrics listening");
    tokio::spawn(serve(router.clone(), listener, router.stop_signal()));
    Ok(())
}

/// Renders the text exposition for the router's current state.
pub fn render(router: &Router) -> String {
    let topo = router.view();
    let mut blocks: Vec<&ShardMetrics> = vec![&router.metrics];
    blocks.extend(topo.shards.iter().map(|s| &*s.metrics));
    let mut out = String::with_capacity(8192);
    shard_metrics::write_command_families(&blocks, &mut out);

    let name = "ringcache_upstream_connections";
    let _ = writeln!(
        out,
        "# HELP {name} Open connections from the router to each shard's primary.\n# TYPE {name} gauge"
    );
    for s in &topo.shards {
        let _ = writeln!(
            out,
            "{name}{{shard=\"{}\"}} {}",
            s.metrics.label(),
            s.pool.connected()
        );
    }
    let name = "ringcache_client_connections";
    let _ = writeln!(
        out,
        "# HELP {name} Clients connected to the router.\n# TYPE {name} gauge\n{name} {}",
        router.clients.len()
    );
    let name = "ringcache_ring_epoch";
    let _ = writeln!(
        out,
        "# HELP {name} Epoch of the ring the router routes by.\n# TYPE {name} gauge\n{name} {}",
        topo.pools[0].ring.epoch()
    );
    let name = "ringcache_pool_epoch";
    let _ = writeln!(
        out,
        "# HELP {name} Epoch of each pool's ring.\n# TYPE {name} gauge"
    );
    for (p, t) in router.pools.iter().zip(&topo.pools) {
        let _ = writeln!(out, "{name}{{pool=\"{}\"}} {}", p.name, t.ring.epoch());
    }
    // Migration figures of the `default` pool (other pools' are in RING STATUS POOL <name>).
    router.default_pool().rebalance.render_metrics(&mut out);
    pools_and_routes(router, &topo, &mut out);
    let f = &router.failover;
    let _ = writeln!(
        out,
        "# HELP ringcache_failovers_total Primaries replaced by a replica.\n# TYPE ringcache_failovers_total counter\nringcache_failovers_total {}",
        f.failovers.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP ringcache_failover_lost_writes_total Writes a failed primary acknowledged that its promoted replica never received.\n# TYPE ringcache_failover_lost_writes_total counter\nringcache_failover_lost_writes_total {}",
        f.lost_writes.load(Relaxed)
    );
    let name = "ringcache_l4_active_connections";
    let _ = writeln!(
        out,
        "# HELP {name} Connections an L4 listener holds open to each backend.\n# TYPE {name} gauge"
    );
    for pool in router
        .l4_pools
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        for (addr, active, healthy) in pool.snapshot() {
            let _ = writeln!(
                out,
                "{name}{{pool=\"{}\",backend=\"{addr}\",healthy=\"{healthy}\"}} {active}",
                escape_label(&pool.name)
            );
        }
    }
    out
}

/// One of a route's counters.
type RouteCounter = fn(&crate::mirror::RouteStats) -> u64;

/// Requests and errors per pool (its shards' sums), and each route's counters.
fn pools_and_routes(router: &Router, topo: &crate::pools::View, out: &mut String) {
    let commands = shard_metrics::command_names().len() as u16;
    let _ = writeln!(
        out,
        "# HELP ringcache_pool_requests_total Requests sent to a pool's shards.\n# TYPE ringcache_pool_requests_total counter"
    );
    let mut errors = Vec::with_capacity(topo.pools.len());
    for (p, t) in router.pools.iter().zip(&topo.pools) {
        let (mut req, mut err) = (0u64, 0u64);
        for s in &t.shards {
            for cmd in 0..commands {
                let (r, e) = s.metrics.counts(cmd);
                req += r;
                err += e;
            }
        }
        let pool = escape_label(&p.name);
        let _ = writeln!(
            out,
            "ringcache_pool_requests_total{{pool=\"{pool}\"}} {req}"
        );
        errors.push((pool, err));
    }
    let _ = writeln!(
        out,
        "# HELP ringcache_pool_errors_total Error replies from a pool's shards.\n# TYPE ringcache_pool_errors_total counter"
    );
    for (pool, err) in errors {
        let _ = writeln!(out, "ringcache_pool_errors_total{{pool=\"{pool}\"}} {err}");
    }
    let routes = &topo.routes;
    let families: [(&str, &str, RouteCounter); 4] = [
        (
            "requests",
            "Requests whose first key matched the route.",
            |s| s.requests.load(Relaxed),
        ),
        (
            "mirrored",
            "Copies of the route's commands sent to its mirror pool.",
            |s| s.mirrored.load(Relaxed),
        ),
        (
            "mirror_drops",
            "Copies dropped: too many outstanding (a slow or stopped mirror).",
            |s| s.mirror_drops.load(Relaxed),
        ),
        (
            "mirror_errors",
            "Copies the mirror answered with an error or not at all.",
            |s| s.mirror_errors.load(Relaxed),
        ),
    ];
    for (name, help, get) in families {
        let _ = writeln!(
            out,
            "# HELP ringcache_route_{name}_total {help}\n# TYPE ringcache_route_{name}_total counter"
        );
        for (r, stats) in routes.list.iter().zip(routes.stats.iter()) {
            let _ = writeln!(
                out,
                "ringcache_route_{name}_total{{route=\"{}\",pool=\"{}\"}} {}",
                escape_label(&r.prefix),
                escape_label(&r.pool),
                get(stats)
            );
        }
    }
    if topo.splits.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP ringcache_route_split_percent The live share of a route's keys its split sends to the split's pool.\n# TYPE ringcache_route_split_percent gauge"
    );
    for (r, s) in routes.list.iter().zip(&topo.splits.by_route) {
        if let (Some(s), Some(cfg)) = (s, &r.split) {
            let _ = writeln!(
                out,
                "ringcache_route_split_percent{{route=\"{}\",split_pool=\"{}\"}} {}",
                escape_label(&r.prefix),
                escape_label(&cfg.pool),
                s.percent
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP ringcache_split_keys_moved_total Keys the split movers moved.\n# TYPE ringcache_split_keys_moved_total counter\nringcache_split_keys_moved_total {}",
        router.split_keys_moved.load(Relaxed)
    );
}

/// Serves `GET /metrics` until `stop` turns true.
pub async fn serve(
    router: Arc<Router>,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => {
                    let router = router.clone();
                    tokio::spawn(async move {
                        let scrape = tokio::time::timeout(Duration::from_secs(10), respond(&router, sock));
                        if let Ok(Err(e)) = scrape.await {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Answers one HTTP/1.x request and closes the connection.
async fn respond(router: &Router, mut sock: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read the request head (bounded): only its first line matters.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 {
            break;
        }
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, body, kind) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            render(router),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "not found: metrics are at /metrics\n".to_string(),
            "text/plain; charset=utf-8",
        ),
        _ => (
            "405 Method Not Allowed",
            "only GET /metrics\n".to_string(),
            "text/plain; charset=utf-8",
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        sock.write_all(body.as_bytes()).await?;
    }
    sock.shutdown().await
}
