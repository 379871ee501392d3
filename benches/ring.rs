//! Ring lookup, construction and join diff, plus the balance figures the ring promises.
//!
//! `cargo bench --bench ring -- --quick` prints the figures, then the timings.

use std::hint::black_box;

use criterion::{criterion_group, BatchSize, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringcache_protocol::hash::key_hash;
use ringcache_protocol::ring::{Ring, ShardSpec, DEFAULT_VNODES};

fn shards(n: usize) -> Vec<ShardSpec> {
    (0..n)
        .map(|i| ShardSpec::new(format!("shard-{i}"), 1))
        .collect()
}

fn ten_shards() -> Ring {
    Ring::new(1, DEFAULT_VNODES, shards(10)).expect("valid shards")
}

/// Random keys shaped like real ones (`user:<digits>:profile`), generated before timing and
/// packed into one buffer: a real lookup hashes a key just parsed, so it is already in cache.
fn keys(n: usize) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut rng = StdRng::seed_from_u64(42);
    let (mut packed, mut ranges) = (Vec::new(), Vec::with_capacity(n));
    for _ in 0..n {
        let start = packed.len();
        packed.extend_from_slice(format!("user:{}:profile", rng.gen::<u32>()).as_bytes());
        ranges.push(start..packed.len());
    }
    (packed, ranges)
}

/// Busiest shard over mean for 10 shards, the key fraction an 11th shard takes, and the 2:1
/// weight ratio, each over 1M keys.
fn print_figures() {
    let ring = ten_shards();
    let joined = ring
        .with_shard(ShardSpec::new("shard-10", 1))
        .expect("new id");
    let weighted = Ring::new(
        1,
        DEFAULT_VNODES,
        vec![ShardSpec::new("heavy", 2), ShardSpec::new("light", 1)],
    )
    .expect("valid shards");
    let mut rng = StdRng::seed_from_u64(7);
    let (mut counts, mut weight_counts, mut moved) = ([0u64; 10], [0u64; 2], 0u64);
    let n = 1_000_000;
    for _ in 0..n {
        let hash = key_hash(&rng.gen::<[u8; 16]>());
        let owner = ring.owner_index(hash).expect("non-empty ring");
        counts[owner] += 1;
        if joined.owner(hash).map(|s| s.id.as_str()) != Some(ring.shards()[owner].id.as_str()) {
            moved += 1;
        }
        weight_counts[weighted.owner_index(hash).expect("non-empty ring")] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0);
    let mean = n as f64 / 10.0;
    println!(
        "ring figures over {n} keys, vnodes {DEFAULT_VNODES}: balance max/mean {:.4} (10 shards); \
         join moved {:.4} (1/11 = {:.4}); weight 2:1 → {:.4}:1; arcs moved on join {}",
        max as f64 / mean,
        moved as f64 / n as f64,
        1.0 / 11.0,
        weight_counts[0] as f64 / weight_counts[1] as f64,
        ring.diff(&joined).len(),
    );
}

fn bench_ring(c: &mut Criterion) {
    let ring = ten_shards();
    let (packed, ranges) = keys(1 << 16);
    let mask = ranges.len() - 1;

    let mut next = 0usize;
    c.bench_function("ring/locate (10 shards, random keys)", |b| {
        b.iter(|| {
            next = (next + 1) & mask;
            black_box(ring.locate(black_box(&packed[ranges[next].clone()])))
        })
    });

    let hashes: Vec<u64> = ranges
        .iter()
        .map(|r| key_hash(&packed[r.clone()]))
        .collect();
    c.bench_function("ring/owner_index (search only)", |b| {
        b.iter(|| {
            next = (next + 1) & mask;
            black_box(ring.owner_index(black_box(hashes[next])))
        })
    });

    c.bench_function("ring/new (10 shards)", |b| {
        // the shard list is built outside the timed part: only Ring::new is measured
        b.iter_batched(
            || shards(10),
            |specs| Ring::new(1, DEFAULT_VNODES, black_box(specs)),
            BatchSize::SmallInput,
        )
    });

    let joined = ring
        .with_shard(ShardSpec::new("shard-10", 1))
        .expect("new id");
    c.bench_function("ring/diff (10 → 11 shards)", |b| {
        b.iter(|| black_box(&ring).diff(black_box(&joined)))
    });
}

criterion_group!(benches, bench_ring);

fn main() {
    print_figures();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
