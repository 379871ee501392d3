//! Moves one sorted set of a million members between two nodes the way a membership change does
//! (`MIGRATE-ARC` batches on the source's bulk thread, the key as one RESTORE on the target) while
//! clients keep reading small keys from both nodes, and prints the p99 latency of those reads
//! during the move against the p99 outside it.
//!
//! `cargo run --release -p tests --bin bigkey_move -- [--members N] [--probe-secs S]`, with
//! `RINGCACHE_BIN=target/release/ringcache` so the nodes are release builds.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tests::*;

/// Reads per probe thread are timed one by one; two threads per node.
const PROBES_PER_NODE: usize = 2;
const SMALL_KEYS: usize = 10_000;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let members = arg("--members", 1_000_000) as usize;
    let probe_secs = arg("--probe-secs", 5);
    let source = start_node(&[]);
    let target = start_node(&[]);
    let mut c = source.raw();

    let started = Instant::now();
    let batch = 1000;
    let cmds: Vec<Vec<String>> = (0..members.div_ceil(batch))
        .map(|b| {
            let mut cmd = vec!["ZADD".to_string(), "big".to_string()];
            for i in b * batch..((b + 1) * batch).min(members) {
                cmd.push(i.to_string());
                cmd.push(format!("member:{i:09}"));
            }
            cmd
        })
        .collect();
    pipeline_ok(&mut c, &cmds);
    assert_eq!(c.cmd(&["ZCARD", "big"]), int(members as i64));
    let small: Vec<Vec<String>> = (0..SMALL_KEYS)
        .map(|i| cmd(&["SET", &format!("small:{i}"), "v"]))
        .collect();
    pipeline_ok(&mut c, &small);
    pipeline_ok(&mut target.raw(), &small);
    println!(
        "loaded a sorted set of {members} members and {SMALL_KEYS} small keys in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Probes: every read's start time and latency, on both nodes.
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let mut probes = Vec::new();
    for node in [&source, &target] {
        for t in 0..PROBES_PER_NODE {
            let mut conn = node.raw();
            let (stop, samples) = (stop.clone(), samples.clone());
            probes.push(thread::spawn(move || {
                let mut mine = Vec::new();
                let mut i = t;
                while !stop.load(SeqCst) {
                    let key = format!("small:{}", i % SMALL_KEYS);
                    let at = Instant::now();
                    let r = conn.cmd(&["GET", &key]);
                    mine.push((at, at.elapsed()));
                    assert!(!r.is_error(), "GET {key}: {r:?}");
                    i += PROBES_PER_NODE;
                }
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(mine);
            }));
        }
    }
    thread::sleep(Duration::from_secs(probe_secs));

    // The move: the whole ring as one arc, 64 keys a batch, as the router's mover sends it.
    let move_start = Instant::now();
    let target_addr = target.addr.to_string();
    let mut moved = 0;
    loop {
        let r = c.cmd(&["MIGRATE-ARC", &target_addr, "0", "0", "64"]);
        let Reply::Array(v) = &r else {
            panic!("MIGRATE-ARC answered {r:?}");
        };
        moved += v[0].int();
        if v[2].int() == 0 {
            break;
        }
    }
    let move_end = Instant::now();
    thread::sleep(Duration::from_secs(probe_secs));
    stop.store(true, SeqCst);
    for p in probes {
        let _ = p.join();
    }

    let mut t = target.raw();
    assert_eq!(t.cmd(&["ZCARD", "big"]), int(members as i64));
    assert_eq!(c.cmd(&["EXISTS", "big"]), int(0));
    let all = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (mut during, mut outside): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for (at, d) in all {
        if at + d >= move_start && at <= move_end {
            during.push(d);
        } else {
            outside.push(d);
        }
    }
    during.sort_unstable();
    outside.sort_unstable();
    let (p99_during, p99_outside) = (percentile(&during, 0.99), percentile(&outside, 0.99));
    println!(
        "moved {moved} keys in {:.2}s (the sorted set among them)",
        (move_end - move_start).as_secs_f64()
    );
    println!(
        "reads of other keys on both nodes during the move: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} reads)",
        ms(percentile(&during, 0.5)),
        ms(p99_during),
        ms(during.last().copied().unwrap_or_default()),
        during.len()
    );
    println!(
        "outside the move: p50 {:.2} ms, p99 {:.2} ms ({} reads)",
        ms(percentile(&outside, 0.5)),
        ms(p99_outside),
        outside.len()
    );
    println!(
        "p99 during / outside: {:.2}",
        p99_during.as_secs_f64() / p99_outside.as_secs_f64().max(1e-9)
    );
}
