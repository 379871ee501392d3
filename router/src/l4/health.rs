//! Health checks of L4 backends: PING every interval, `fall` failures in a row mark a backend
//! down, `rise` successes mark it up; a `replicas:<shard>` pool also follows its shard's
//! replicas.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use ringcache_client::Client;
use ringcache_protocol::tls::TlsClient;
use ringcache_protocol::wire::reply_text;
use ringcache_protocol::Reply;
use tokio::sync::watch;

use crate::l4::pool::{Backend, Member, Pool};

/// Health-check settings: PING every `interval`, `fall` failures in a row mark a backend down,
/// `rise` successes mark it up again.
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            fall: 3,
            rise: 2,
        }
    }
}

/// Where a pool's membership comes from when it can change (a shard's replicas).
pub type MemberSource = Arc<dyn Fn() -> Vec<Member> + Send + Sync>;

/// Health-checks every backend of `pool` with PING (over TLS with `tls`) until `stop`, first
/// refreshing its members from `members` when given.
pub async fn health_loop(
    pool: Arc<Pool>,
    settings: HealthSettings,
    tls: Option<TlsClient>,
    members: Option<MemberSource>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(settings.interval);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if let Some(source) = &members {
            let want = source();
            let have = pool.backends();
            let same = want.len() == have.len()
                && want
                    .iter()
                    .zip(have.iter())
                    .all(|(m, b)| m.addr == b.addr && m.weight == b.weight);
            if !same {
                tracing::info!(pool = %pool.name, backends = want.len(), "L4 pool membership changed");
                pool.set_members(&want);
            }
        }
        let name = pool.name.as_str();
        let backends = pool.backends();
        let tls = tls.as_ref();
        let checks = backends.iter().map(|b| async move {
            let ok = ping_with(&b.addr, settings.timeout, tls).await;
            record(name, b, ok, settings);
        });
        futures::future::join_all(checks).await;
    }
}

fn record(pool: &str, b: &Backend, ok: bool, s: HealthSettings) {
    if ok {
        b.fails.store(0, Relaxed);
        let passes = b.passes.fetch_add(1, Relaxed) + 1;
        if !b.healthy.load(Relaxed) && passes >= s.rise {
            b.healthy.store(true, Relaxed);
            tracing::info!(pool, backend = %b.addr, "backend up");
        }
    } else {
        b.passes.store(0, Relaxed);
        let fails = b.fails.fetch_add(1, Relaxed) + 1;
        if b.healthy.load(Relaxed) && fails >= s.fall {
            b.healthy.store(false, Relaxed);
            tracing::warn!(pool, backend = %b.addr, "backend down");
        }
    }
}

/// True if `addr` answers PING with +PONG (or -NOAUTH: alive, just password-protected).
pub async fn ping(addr: &str, timeout: Duration) -> bool {
    ping_with(addr, timeout, None).await
}

/// [`ping`] over TLS with `tls`.
pub async fn ping_with(addr: &str, timeout: Duration, tls: Option<&TlsClient>) -> bool {
    let attempt = async {
        let mut c = Client::connect_with(addr, timeout, tls).await.ok()?;
        match c.call(&["PING"], timeout).await.ok()? {
            Reply::Error(e) => Some(e.starts_with("NOAUTH")),
            r => Some(reply_text(&r).as_deref() == Some("PONG")),
        }
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::l4::pool::Policy;

    #[test]
    fn health_marks_down_after_fall_and_up_after_rise() {
        let p = Pool::new("t", Policy::RoundRobin, &["a:1".parse().unwrap()]);
        let backends = p.backends();
        let b = &backends[0];
        let s = HealthSettings::default();
        record("t", b, false, s);
        record("t", b, false, s);
        assert!(b.healthy.load(Relaxed));
        record("t", b, false, s);
        assert!(!b.healthy.load(Relaxed));
        record("t", b, true, s);
        assert!(!b.healthy.load(Relaxed));
        record("t", b, true, s);
        assert!(b.healthy.load(Relaxed));
    }
}
