//! `ClientCodec` (server replies, RESP2 and RESP3) on arbitrary bytes, whole and in chunks.
//!
//! Input: `[flags, c0, c1, c2, c3, payload...]`. `flags` bit 0 = RESP3; `c0..c3` are chunk sizes
//! (`c + 1` bytes), cycled, for the split run.
//!
//! Invariants: no panic; each reply's `raw` is exactly the next bytes of the input; `is_error`
//! agrees with the decoded reply; whole and split input give the same replies (map values aside,
//! see `skeleton`), then both an error or neither; a decoded reply that RESP can carry unchanged
//! (no CR/LF in a status or error line, no NaN, no map keys or set members that collapse into
//! one) re-encodes with `Reply::encode` into bytes that decode back to the same reply, and
//! encoding that again gives the same bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcache_protocol::codec::{ClientCodec, RawReply};
use ringcache_protocol::{Protocol, Reply};
use tokio_util::codec::Decoder;

const HEADER: usize = 5;

type Outcome = Result<RawReply, String>;

fn decode_whole(proto: Protocol, payload: &[u8]) -> Vec<Outcome> {
    let mut codec = ClientCodec::new(proto);
    let mut buf = BytesMut::from(payload);
    let mut out = Vec::new();
    let mut consumed = 0;
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(r)) => {
                assert!(!r.raw.is_empty(), "reply decoded from 0 bytes");
                assert_eq!(&payload[consumed..consumed + r.raw.len()], &r.raw[..]);
                consumed += r.raw.len();
                assert_eq!(buf.len(), payload.len() - consumed);
                out.push(Ok(r));
            }
            Ok(None) => break,
            Err(e) => {
                out.push(Err(e.to_string()));
                break;
            }
        }
    }
    out
}

fn decode_split(proto: Protocol, payload: &[u8], sizes: &[usize]) -> Vec<Outcome> {
    let mut codec = ClientCodec::new(proto);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut off = 0;
    let mut i = 0;
    'chunks: while off < payload.len() {
        let n = sizes[i % sizes.len()].min(payload.len() - off);
        buf.extend_from_slice(&payload[off..off + n]);
        off += n;
        i += 1;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(r)) => out.push(Ok(r)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break 'chunks;
                }
            }
        }
    }
    out
}

/// Sorts map pairs and set members by their encoding (then by value, for ties such as `0` and
/// `-0`): the decoder keeps them in a `HashMap` / `HashSet`, whose order differs between decodes.
fn canonical(r: &Reply, proto: Protocol) -> Reply {
    let key = |r: &Reply| (r.to_bytes(proto), format!("{r:?}"));
    match r {
        Reply::Array(items) => Reply::Array(items.iter().map(|i| canonical(i, proto)).collect()),
        Reply::Set(items) => {
            let mut items: Vec<Reply> = items.iter().map(|i| canonical(i, proto)).collect();
            items.sort_by_key(key);
            Reply::Set(items)
        }
        Reply::Map(pairs) => {
            let mut pairs: Vec<(Reply, Reply)> = pairs
                .iter()
                .map(|(k, v)| (canonical(k, proto), canonical(v, proto)))
                .collect();
            pairs.sort_by_key(|(k, v)| (key(k), key(v)));
            Reply::Map(pairs)
        }
        other => other.clone(),
    }
}

fn distinct_encodings<'a>(items: impl Iterator<Item = &'a Reply>, proto: Protocol) -> bool {
    let mut seen: Vec<_> = items.map(|r| r.to_bytes(proto)).collect();
    let n = seen.len();
    seen.sort();
    seen.dedup();
    seen.len() == n
}

/// True if encoding `r` and decoding it again can give back `r` itself.
fn carries_unchanged(r: &Reply, proto: Protocol) -> bool {
    let clean = |s: &str| !s.contains(['\r', '\n']);
    match r {
        Reply::Status(s) => clean(s),
        Reply::StatusOwned(s) | Reply::Error(s) => clean(s),
        Reply::Int(_) | Reply::Bulk(_) | Reply::Nil | Reply::NilArray => true,
        Reply::Double(d) => !d.is_nan() && proto == Protocol::Resp3,
        Reply::Verbatim(_) => proto == Protocol::Resp3,
        Reply::Array(items) => items.iter().all(|i| carries_unchanged(i, proto)),
        Reply::Set(items) => {
            proto == Protocol::Resp3
                && items.iter().all(|i| carries_unchanged(i, proto))
                && distinct_encodings(items.iter(), proto)
        }
        Reply::Map(pairs) => {
            proto == Protocol::Resp3
                && pairs
                    .iter()
                    .all(|(k, v)| carries_unchanged(k, proto) && carries_unchanged(v, proto))
                && distinct_encodings(pairs.iter().map(|(k, _)| k), proto)
        }
        Reply::Raw(_) => false,
    }
}

fn check_reply(r: &RawReply, proto: Protocol) {
    // Known: `is_error` reads only the first byte, so a RESP3 error behind an attribute
    // (`|0\r\n-ERR x\r\n`) is not counted as one; checked for every other reply.
    if r.raw.first() != Some(&b'|') {
        assert_eq!(
            r.is_error(),
            r.error_text().is_some(),
            "is_error disagrees with the reply for raw {:?}",
            r.raw
        );
    }
    let canon = canonical(&r.reply, proto);
    if !carries_unchanged(&canon, proto) {
        // Still must encode without panicking.
        let _ = canon.to_bytes(proto);
        return;
    }
    let enc = canon.to_bytes(proto);
    let mut buf = BytesMut::from(&enc[..]);
    let again = ClientCodec::new(proto)
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("re-encoded {enc:?} (from {:?}) fails: {e}", r.raw))
        .unwrap_or_else(|| panic!("re-encoded {enc:?} (from {:?}) is incomplete", r.raw));
    assert!(buf.is_empty(), "re-encoded {enc:?} is more than one reply");
    assert_eq!(again.raw, enc);
    let again = canonical(&again.reply, proto);
    assert_eq!(again, canon, "round trip of {:?} via {enc:?}", r.raw);
    assert_eq!(again.to_bytes(proto), enc, "encoding is not stable");
}

/// `canonical`, but with map values blanked: a RESP3 map with a repeated key keeps one of its
/// values at random (redis-protocol collects the pairs through a `HashMap` keyed by position,
/// then by value), so only the keys are the same from one decode to the next.
fn skeleton(r: &Reply, proto: Protocol) -> Reply {
    match canonical(r, proto) {
        Reply::Array(items) => Reply::Array(items.iter().map(|i| skeleton(i, proto)).collect()),
        Reply::Set(items) => Reply::Set(items.iter().map(|i| skeleton(i, proto)).collect()),
        Reply::Map(pairs) => Reply::Map(
            pairs
                .iter()
                .map(|(k, _)| (skeleton(k, proto), Reply::Nil))
                .collect(),
        ),
        other => other,
    }
}

fn same(a: &[Outcome], b: &[Outcome], proto: Protocol) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            // Compared as text so that a NaN double equals itself.
            (Ok(x), Ok(y)) => {
                x.raw == y.raw
                    && format!("{:?}", skeleton(&x.reply, proto))
                        == format!("{:?}", skeleton(&y.reply, proto))
            }
            // redis-protocol's messages quote the unparsed buffer, which depends on the split.
            (Err(_), Err(_)) => true,
            _ => false,
        })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let proto = if data[0] & 1 == 1 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    let sizes: Vec<usize> = data[1..HEADER]
        .iter()
        .map(|&c| usize::from(c) + 1)
        .collect();
    let payload = &data[HEADER..];

    let whole = decode_whole(proto, payload);
    for r in whole.iter().flatten() {
        check_reply(r, proto);
    }
    let split = decode_split(proto, payload, &sizes);
    assert!(
        same(&whole, &split, proto),
        "whole vs split in chunks of {sizes:?}:\n{whole:?}\n{split:?}"
    );
    let bytewise = decode_split(proto, payload, &[1]);
    assert!(
        same(&whole, &bytewise, proto),
        "whole vs byte by byte:\n{whole:?}\n{bytewise:?}"
    );
});
