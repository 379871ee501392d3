//! The node's keyspace per operation, single-threaded, over 100,000 keys shaped like
//! redis-benchmark's (`key:000000012345`, 3-byte values), next to a bare moka cache doing the
//! same lookups and inserts: the floor the store's own work (stripe lock, bucket index, deadlines,
//! weigher) sits on. Redis's whole GET at -P 16 on this machine costs ~0.8 µs of CPU, syscalls
//! included (docs/BENCHMARKS.md).
//!
//!     cargo bench --bench store

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use moka::sync::Cache;
use ringcache_node::store::Store;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: usize = 100_000;

fn keys() -> Vec<Bytes> {
    // a fixed stride over the keyspace: every key once per KEYS steps, in no cache-friendly order
    (0..KEYS)
        .map(|i| Bytes::from(format!("key:{:012}", (i * 7919) % KEYS)))
        .collect()
}

fn bench_store(c: &mut Criterion) {
    let keys = keys();
    let value = Bytes::from_static(b"xxx");
    let mut group = c.benchmark_group("store (100k keys)");

    let store = Store::new(0);
    for k in &keys {
        store.put_str(k, &value, None);
    }
    assert_eq!(store.len(), KEYS as u64);
    let mut next = 0usize;
    group.bench_function("Store::lookup (hit)", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            let hit = store.lookup(black_box(&keys[next]));
            assert!(hit.is_some());
        })
    });
    group.bench_function("Store::put_str (overwrite, under its stripe lock)", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            let key = black_box(&keys[next]);
            let _g = store.lock_key(key);
            store.put_str(key, &value, None);
        })
    });

    let bare: Cache<Bytes, Bytes> = Cache::builder().initial_capacity(1 << 16).build();
    for k in &keys {
        bare.insert(k.clone(), value.clone());
    }
    group.bench_function("bare moka get (hit)", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            assert!(bare.get(black_box(&keys[next])).is_some());
        })
    });
    group.bench_function("bare moka insert (overwrite)", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            bare.insert(black_box(keys[next].clone()), value.clone());
        })
    });
    group.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
