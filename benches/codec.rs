//! Request decoding, the first thing every request costs on a node and on the router: a pipeline
//! of 16 SETs (redis-benchmark -P 16) and one 100-key MGET (the router bench's MGET row).
//!
//!     cargo bench --bench codec

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::{Limits, RequestDecoder};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn encoded(requests: &[Vec<Vec<u8>>]) -> Bytes {
    let mut buf = BytesMut::new();
    for args in requests {
        encode_request(&mut buf, args.iter().map(|a| &a[..]));
    }
    buf.freeze()
}

/// Decodes every request of `wire`, checking each has `arity` arguments.
fn decode_all(wire: &Bytes, arity: usize, requests: usize) {
    let mut decoder = RequestDecoder::new(Limits::default(), true);
    let mut buf = BytesMut::from(&wire[..]);
    let mut args = Vec::new();
    let mut n = 0;
    while let Ok(Some(raw)) = decoder.decode_into(&mut buf, &mut args) {
        assert_eq!(args.len(), arity);
        black_box(raw);
        n += 1;
    }
    assert_eq!(n, requests, "the pipeline decodes whole");
}

fn bench_codec(c: &mut Criterion) {
    let sets: Vec<Vec<Vec<u8>>> = (0..16)
        .map(|i| {
            let key = format!("key:{:012}", i * 7919);
            vec![b"SET".to_vec(), key.into_bytes(), b"xxx".to_vec()]
        })
        .collect();
    let wire = encoded(&sets);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(16));
    group.bench_function("decode 16 pipelined SETs", |b| {
        b.iter(|| decode_all(&wire, 3, 16))
    });

    let mut mget = vec![b"MGET".to_vec()];
    mget.extend((1..=100).map(|i| format!("mget:{i}").into_bytes()));
    let wire = encoded(&[mget]);
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode MGET of 100 keys", |b| {
        b.iter(|| decode_all(&wire, 101, 1))
    });
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
