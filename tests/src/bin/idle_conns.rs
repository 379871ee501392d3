//! `idle_conns`: holds many idle client connections open for the connection-cost bench
//! (`benches/bench-conns.sh`).
//!
//! Opens `--conns` connections to `--addr`, every `--ping-every`th sending one PING (and reading
//! its PONG), then prints `ready conns=N`. While they stay open, one more connection sends
//! `--pings` PINGs one at a time and the program prints `p50_us=.. p99_us=.. max_us=..`, then
//! holds every connection until `--hold-seconds` pass or it is killed. Exit status 2 when a
//! connection cannot be made or a PING is not answered.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Hold many idle RESP connections open and time PINGs meanwhile")]
struct Args {
    /// The server, HOST:PORT.
    #[arg(long)]
    addr: SocketAddr,
    /// Connections held open.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// One connection in this many sends a PING once connected.
    #[arg(long, default_value_t = 10)]
    ping_every: usize,
    /// PINGs timed on the active connection.
    #[arg(long, default_value_t = 10_000)]
    pings: usize,
    /// Upper bound on holding the connections after the PINGs, in seconds.
    #[arg(long, default_value_t = 300)]
    hold_seconds: u64,
}

fn ping(s: &mut TcpStream) -> Result<()> {
    // As an array: twemproxy does not take inline commands.
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf)?;
    if &buf != b"+PONG\r\n" {
        bail!("unexpected reply {:?}", String::from_utf8_lossy(&buf));
    }
    Ok(())
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn run(a: &Args) -> Result<()> {
    let mut held = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let mut s = connect(a.addr).with_context(|| format!("connection {i}"))?;
        if a.ping_every > 0 && i % a.ping_every == 0 {
            ping(&mut s).with_context(|| format!("PING on connection {i}"))?;
        }
        held.push(s);
    }
    println!("ready conns={}", held.len());
    let mut active = connect(a.addr)?;
    let mut lat = Vec::with_capacity(a.pings);
    for _ in 0..a.pings {
        let t = Instant::now();
        ping(&mut active)?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    lat.sort_unstable();
    let at = |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)));
    println!(
        "p50_us={} p99_us={} max_us={}",
        at(0.50).copied().unwrap_or(0),
        at(0.99).copied().unwrap_or(0),
        lat.last().copied().unwrap_or(0)
    );
    std::thread::sleep(Duration::from_secs(a.hold_seconds));
    drop(held);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle_conns: {e:#}");
            ExitCode::from(2)
        }
    }
}
