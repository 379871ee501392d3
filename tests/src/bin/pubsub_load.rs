//! `pubsub_load`: PUBLISH fan-out throughput, for `benches/bench-pubsub.sh`.
//!
//! Opens `--subscribers` connections that SUBSCRIBE to one channel and count the messages they
//! receive, then one publisher connection sends PUBLISH with `--pipeline` requests in flight for
//! `--seconds`. Prints one line of `name=value` pairs: published (PUBLISH replies read),
//! delivered (messages the subscribers received while the publisher ran and up to a second
//! after), seconds, publish_per_sec, delivered_per_sec, min_receivers (the smallest PUBLISH
//! reply: subscribers the server counted), complete (every subscriber got every message).
//! Exit status: 0 when it ran, 2 when it could not.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "PUBLISH to many subscribers: messages per second")]
struct Args {
    /// The server, HOST:PORT.
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Seconds the publisher runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// PUBLISH requests in flight.
    #[arg(long, default_value_t = 16)]
    pipeline: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 16)]
    payload: usize,
    #[arg(long, default_value = "bench:channel")]
    channel: String,
}

fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads until `n` complete lines-delimited replies of known total length arrive.
async fn read_exact_len(sock: &mut TcpStream, len: usize) -> Result<()> {
    let mut buf = vec![0u8; len];
    sock.read_exact(&mut buf).await?;
    Ok(())
}

async fn subscriber(
    addr: SocketAddr,
    channel: String,
    frame: usize,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    sock.write_all(&request(&[b"SUBSCRIBE", channel.as_bytes()]))
        .await?;
    // `*3 $9 subscribe $len channel :1`
    let confirm = format!(
        "*3\r\n$9\r\nsubscribe\r\n${}\r\n{}\r\n:1\r\n",
        channel.len(),
        channel
    );
    read_exact_len(&mut sock, confirm.len()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0usize;
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(100), sock.read(&mut buf)).await {
            Ok(Ok(0)) => bail!("a subscriber's connection closed"),
            Ok(Ok(n)) => {
                bytes += n;
                let whole = bytes / frame;
                bytes -= whole * frame;
                count.fetch_add(whole as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {}
        }
    }
    Ok(())
}

async fn run(args: Args) -> Result<String> {
    let payload = vec![b'x'; args.payload];
    let frame = format!(
        "*3\r\n$7\r\nmessage\r\n${}\r\n{}\r\n${}\r\n",
        args.channel.len(),
        args.channel,
        args.payload
    )
    .len()
        + args.payload
        + 2;
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    for _ in 0..args.subscribers {
        subs.push(tokio::spawn(subscriber(
            args.addr,
            args.channel.clone(),
            frame,
            delivered.clone(),
            stop.clone(),
        )));
    }
    let mut pubc = TcpStream::connect(args.addr).await.context("connect")?;
    pubc.set_nodelay(true)?;
    // Every subscriber is counted before the clock starts.
    let numsub = request(&[b"PUBSUB", b"NUMSUB", args.channel.as_bytes()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        pubc.write_all(&numsub).await?;
        let mut buf = vec![0u8; 256];
        let n = pubc.read(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.contains(&format!(":{}\r\n", args.subscribers)) {
            break;
        }
        if Instant::now() > deadline {
            bail!("subscribers not all counted: {text:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let one = request(&[b"PUBLISH", args.channel.as_bytes(), &payload]);
    let batch: Vec<u8> = one.repeat(args.pipeline);
    let start = Instant::now();
    let run_for = Duration::from_secs_f64(args.seconds);
    let mut published = 0u64;
    let mut min_receivers = i64::MAX;
    let mut inbuf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    while start.elapsed() < run_for {
        pubc.write_all(&batch).await?;
        let mut replies = 0;
        while replies < args.pipeline {
            let n = pubc.read(&mut chunk).await?;
            if n == 0 {
                bail!("the publisher's connection closed");
            }
            inbuf.extend_from_slice(&chunk[..n]);
            while let Some(end) = inbuf.windows(2).position(|w| w == b"\r\n") {
                let line = &inbuf[..end];
                if line.first() != Some(&b':') {
                    bail!("PUBLISH answered {:?}", String::from_utf8_lossy(line));
                }
                let v: i64 = std::str::from_utf8(&line[1..])?.parse()?;
                min_receivers = min_receivers.min(v);
                inbuf.drain(..end + 2);
                replies += 1;
            }
        }
        published += args.pipeline as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    // Messages still in flight reach the subscribers within a second.
    let want = published * args.subscribers as u64;
    let settle = Instant::now() + Duration::from_secs(1);
    while delivered.load(Ordering::Relaxed) < want && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = delivered.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for s in subs {
        s.await??;
    }
    Ok(format!(
        "published={published} delivered={got} seconds={secs:.3} publish_per_sec={:.0} delivered_per_sec={:.0} min_receivers={min_receivers} complete={}",
        published as f64 / secs,
        got as f64 / secs,
        got == want
    ))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pubsub_load: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pubsub_load: {e:#}");
            ExitCode::from(2)
        }
    }
}
