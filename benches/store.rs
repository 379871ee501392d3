//! The node's keyspace per operation, single-threaded, over 100,000 keys shaped like
//! redis-benchmark's (`key:000000012345`, 3-byte values): a GET's lookup and a SET's insert
//! through a `Db` view (bucket lock, table probe, deadline check, access field), next to a bare
//! moka cache doing the same lookups and inserts for scale.
//!
//!     cargo bench --bench store

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use moka::sync::Cache;
use ringcache_node::keyspace::{Db, Expiry, Keyspace};

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
    let mut group = c.benchmark_group("keyspace (100k keys)");

    let ks = Keyspace::new();
    for k in &keys {
        Db::for_keys(&ks, [k], 0, Expiry::Delete).set_str(k, &value, None);
    }
    assert_eq!(ks.len(), KEYS as u64);
    let mut next = 0usize;
    group.bench_function("Db::lookup (hit)", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            let key = black_box(&keys[next]);
            let mut db = Db::for_keys(&ks, [key], 0, Expiry::Delete);
            assert!(db.lookup(key).is_some());
        })
    });
    group.bench_function("Db::set_str (overwrite)", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            let key = black_box(&keys[next]);
            Db::for_keys(&ks, [key], 0, Expiry::Delete).set_str(key, &value, None);
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
