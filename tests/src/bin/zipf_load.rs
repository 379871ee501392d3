//! `zipf_load`: a read-through cache load for the eviction bench (`benches/bench-memory.sh`).
//!
//! Over one pipelined connection, draws keys `key:000000000000` ... from a Zipf distribution
//! (rank 0 the most popular) and sends, per draw, a GET (`--get-pct` of draws; a nil reply, a
//! miss, is followed by a SET of that key in the next batch, as an application fills its cache)
//! or else a SET. The sequence is seeded, and each batch is the previous batch's fills followed by
//! `--pipeline` draws, so a run sends the same commands in the same order to any server whose
//! misses are the same.
//!
//! The first `--warmup-ops` draws fill the cache unrecorded; the next `--ops` draws are counted.
//! The run stops after those or after `--seconds`, whichever comes first, and prints one line of
//! `name=value` pairs: draws, gets, hits, misses, sets, fills, errors (error replies, e.g. OOM),
//! seconds, ops_per_sec (commands of the measured part, fills included), hit_ratio, complete.
//! Exit status: 0 when it ran (error replies are counted, not fatal), 2 when it could not.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tests::raw::{encode, Raw};
use tests::Reply;

#[derive(Parser, Debug)]
#[command(about = "Zipf read-through cache load over one pipelined RESP connection")]
struct Args {
    /// The server, HOST:PORT.
    #[arg(long)]
    addr: SocketAddr,
    /// Distinct keys the draws range over.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Draws counted (after the warm-up).
    #[arg(long, default_value_t = 2_000_000)]
    ops: u64,
    /// Draws sent before counting starts.
    #[arg(long, default_value_t = 0)]
    warmup_ops: u64,
    /// Upper bound on the whole run, warm-up included, in seconds.
    #[arg(long, default_value_t = 120.0)]
    seconds: f64,
    /// Percentage of draws that are GETs (the rest are SETs).
    #[arg(long, default_value_t = 90)]
    get_pct: u32,
    /// The Zipf exponent.
    #[arg(long, default_value_t = 0.99)]
    zipf: f64,
    /// Draws per batch sent before the batch's replies are read.
    #[arg(long, default_value_t = 32)]
    pipeline: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// The key prefix; a key is the prefix and the key's number in 12 digits.
    #[arg(long, default_value = "key:")]
    key_prefix: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Zipf(s) over `n` ranks by inversion of its cumulative weights (exact, 8 bytes per rank).
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut StdRng) -> u64 {
        let total = *self.cumulative.last().unwrap_or(&0.0);
        let u = rng.gen::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= u);
        i.min(self.cumulative.len().saturating_sub(1)) as u64
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Set,
    Fill,
}

/// A command sent whose reply is awaited.
struct Pending {
    kind: Kind,
    key: u64,
    measured: bool,
}

#[derive(Default)]
struct Counts {
    draws: u64,
    gets: u64,
    hits: u64,
    misses: u64,
    sets: u64,
    fills: u64,
    errors: u64,
    first_error: Option<String>,
}

fn key_of(prefix: &str, id: u64) -> Vec<u8> {
    format!("{prefix}{id:012}").into_bytes()
}

fn run(args: &Args) -> Result<(Counts, Duration, bool)> {
    if args.keys == 0 || args.pipeline == 0 || args.get_pct > 100 {
        bail!("--keys and --pipeline must be positive and --get-pct at most 100");
    }
    if !(args.zipf.is_finite() && args.zipf >= 0.0) {
        bail!("--zipf must be a non-negative number");
    }
    let zipf = Zipf::new(args.keys, args.zipf);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let value: Vec<u8> = (0..args.value_size)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26])
        .collect();
    let mut conn = std::panic::catch_unwind(|| Raw::connect(args.addr))
        .map_err(|_| anyhow::anyhow!("cannot connect to {}", args.addr))?;

    let total = args.warmup_ops + args.ops;
    let limit = Duration::from_secs_f64(args.seconds.max(0.0));
    let started = Instant::now();
    let mut measure_start = if args.warmup_ops == 0 {
        Some(started)
    } else {
        None
    };
    let mut c = Counts::default();
    let mut drawn = 0u64;
    let mut fills: Vec<u64> = Vec::new();
    let mut fills_measured: Vec<bool> = Vec::new();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut batch: Vec<u8> = Vec::new();
    let mut complete = true;
    while drawn < total || !fills.is_empty() {
        if started.elapsed() >= limit {
            complete = drawn >= total;
            break;
        }
        batch.clear();
        for (&key, &measured) in fills.iter().zip(&fills_measured) {
            let k = key_of(&args.key_prefix, key);
            batch.extend_from_slice(&encode(&[&b"SET"[..], &k, &value]));
            pending.push_back(Pending {
                kind: Kind::Fill,
                key,
                measured,
            });
        }
        fills.clear();
        fills_measured.clear();
        for _ in 0..args.pipeline {
            if drawn >= total {
                break;
            }
            if drawn == args.warmup_ops && measure_start.is_none() {
                measure_start = Some(Instant::now());
            }
            let measured = drawn >= args.warmup_ops;
            drawn += 1;
            let key = zipf.sample(&mut rng);
            let k = key_of(&args.key_prefix, key);
            let kind = if rng.gen_range(0..100) < args.get_pct {
                batch.extend_from_slice(&encode(&[&b"GET"[..], &k]));
                Kind::Get
            } else {
                batch.extend_from_slice(&encode(&[&b"SET"[..], &k, &value]));
                Kind::Set
            };
            pending.push_back(Pending {
                kind,
                key,
                measured,
            });
        }
        conn.try_send(&batch)
            .with_context(|| format!("write to {}", args.addr))?;
        while let Some(p) = pending.pop_front() {
            let Some(r) = conn.read(Duration::from_secs(10)) else {
                bail!("no reply from {} within 10s", args.addr);
            };
            if !p.measured {
                if p.kind == Kind::Get && r.reply == Reply::Nil {
                    fills.push(p.key);
                    fills_measured.push(false);
                }
                continue;
            }
            if let Reply::Error(e) = &r.reply {
                c.errors += 1;
                c.first_error.get_or_insert_with(|| e.clone());
                continue;
            }
            match p.kind {
                Kind::Get => {
                    c.gets += 1;
                    match r.reply {
                        Reply::Nil => {
                            c.misses += 1;
                            fills.push(p.key);
                            fills_measured.push(true);
                        }
                        Reply::Bulk(_) => c.hits += 1,
                        other => bail!("GET answered {other:?}"),
                    }
                }
                Kind::Set => c.sets += 1,
                Kind::Fill => c.fills += 1,
            }
        }
    }
    c.draws = drawn.saturating_sub(args.warmup_ops);
    let elapsed = measure_start.map_or(Duration::ZERO, |t| t.elapsed());
    Ok((c, elapsed, complete))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok((c, elapsed, complete)) => {
            let secs = elapsed.as_secs_f64();
            let commands = c.gets + c.sets + c.fills + c.errors;
            let ops_per_sec = if secs > 0.0 {
                commands as f64 / secs
            } else {
                0.0
            };
            let hit_ratio = if c.hits + c.misses > 0 {
                c.hits as f64 / (c.hits + c.misses) as f64
            } else {
                0.0
            };
            println!(
                "draws={} gets={} hits={} misses={} sets={} fills={} errors={} seconds={secs:.3} ops_per_sec={ops_per_sec:.0} hit_ratio={hit_ratio:.4} complete={complete}",
                c.draws, c.gets, c.hits, c.misses, c.sets, c.fills, c.errors
            );
            if let Some(e) = c.first_error {
                eprintln!("zipf_load: first error reply: {e}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zipf_load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
