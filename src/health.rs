//! `ringcache health`: one PING to a node or router, exit 0 if it answers, 1 if not.
//!
//! Images are built `FROM scratch`, so there is no shell or redis-cli for a Docker HEALTHCHECK:
//! the binary checks itself. `+PONG` is healthy; so is `-NOAUTH`, because a server asking for a
//! password is up and serving. Anything else, a closed connection or the timeout is unhealthy.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringcache_client::blocking::Client;
use ringcache_protocol::Reply;

/// Address checked when neither `--addr` nor `RINGCACHE_HEALTH_ADDR` is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7001";
/// Lets one image serve nodes and routers: each container sets the port it listens on.
pub const ADDR_ENV: &str = "RINGCACHE_HEALTH_ADDR";

/// Check that a ringcache node or router answers PING (for Docker HEALTHCHECK).
#[derive(clap::Args, Debug)]
#[command(about = "Check that a node or router answers PING (exit 0) or not (exit 1)")]
pub struct HealthArgs {
    /// HOST:PORT to PING [default: $RINGCACHE_HEALTH_ADDR, else 127.0.0.1:7001].
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Bound on resolving, connecting, sending and reading, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
}

/// PINGs the address; `Ok(())` when it answers `+PONG` or `-NOAUTH`.
pub fn run(args: HealthArgs) -> Result<()> {
    let addr = args
        .addr
        .or_else(|| std::env::var(ADDR_ENV).ok().filter(|a| !a.is_empty()))
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    ping(&addr, timeout).with_context(|| format!("health check of {addr}"))
}

fn ping(addr: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut client = Client::connect(addr, timeout).context("connecting")?;
    client.send_cmd(&["PING"]).context("sending PING")?;
    let left = deadline.saturating_duration_since(Instant::now());
    let reply = client.read(left).context("reading the reply")?.reply;
    match &reply {
        Reply::Status(s) if *s == "PONG" => Ok(()),
        Reply::StatusOwned(s) if s == "PONG" => Ok(()),
        Reply::Error(e) if e.starts_with("NOAUTH") => Ok(()),
        _ => bail!("unexpected reply to PING: {reply:?}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    /// A one-connection server that reads the PING and answers `reply` (or nothing, then holds the
    /// connection open for `hold`). Join the handle: it fails if the request was not a RESP PING.
    fn serve_once(reply: &'static [u8], hold: Duration) -> (String, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 14];
            s.read_exact(&mut req).unwrap();
            assert_eq!(&req, b"*1\r\n$4\r\nPING\r\n");
            s.write_all(reply).unwrap();
            thread::sleep(hold);
        });
        (addr, server)
    }

    fn check(addr: String, timeout_ms: u64) -> Result<()> {
        run(HealthArgs {
            addr: Some(addr),
            timeout_ms,
        })
    }

    #[test]
    fn pong_is_healthy() {
        let (addr, server) = serve_once(b"+PONG\r\n", Duration::ZERO);
        check(addr, 2000).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn pong_split_across_reads_is_healthy() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 14];
            s.read_exact(&mut req).unwrap();
            assert_eq!(&req, b"*1\r\n$4\r\nPING\r\n");
            s.write_all(b"+PO").unwrap();
            s.flush().unwrap();
            thread::sleep(Duration::from_millis(50));
            s.write_all(b"NG\r\n").unwrap();
        });
        check(addr, 2000).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn noauth_is_healthy() {
        let r = b"-NOAUTH Authentication required.\r\n";
        let (addr, server) = serve_once(r, Duration::ZERO);
        check(addr, 2000).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn other_errors_are_unhealthy() {
        let (addr, server) = serve_once(b"-LOADING busy\r\n", Duration::ZERO);
        let e = check(addr, 2000).unwrap_err();
        assert!(format!("{e:#}").contains("unexpected reply"), "{e:#}");
        server.join().unwrap();
    }

    #[test]
    fn closed_connection_is_unhealthy() {
        let (addr, server) = serve_once(b"", Duration::ZERO);
        let e = check(addr, 2000).unwrap_err();
        assert!(format!("{e:#}").contains("closed"), "{e:#}");
        server.join().unwrap();
    }

    #[test]
    fn silence_times_out() {
        let started = Instant::now();
        let (addr, server) = serve_once(b"", Duration::from_millis(1500));
        let e = check(addr, 200).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "not bounded");
        assert!(format!("{e:#}").contains("reading the reply"), "{e:#}");
        server.join().unwrap();
    }

    #[test]
    fn refused_is_unhealthy() {
        // Bind then drop: the port is very likely closed right after.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let e = check(addr, 1000).unwrap_err();
        assert!(format!("{e:#}").contains("connecting"), "{e:#}");
    }
}
