//! Commands run through a [`Raw`] connection and what tests read from their replies: a full
//! SCAN, `RING LOCATE`.

use std::time::{Duration, Instant};

use ringcache_protocol::Reply;

use crate::raw::Raw;
use crate::replies::{flat_text, ReplyExt};

/// Milliseconds since the Unix epoch (for EXPIREAT arguments and EXPIRETIME replies).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The shard `RING LOCATE key` names: its `shard` field (a map, or a flat array in RESP2), else
/// the one of `ids` that appears as a whole word in the reply.
pub fn ring_locate(c: &mut Raw, key: &str, ids: &[String]) -> String {
    let r = c.cmd(&["RING", "LOCATE", key]);
    assert!(!r.is_error(), "RING LOCATE {key}: {r:?}");
    let is_map = match &r {
        Reply::Map(_) => true,
        Reply::Array(v) => v.len() % 2 == 0,
        _ => false,
    };
    if is_map {
        if let Some(shard) = r.get("shard") {
            let shard = shard.text();
            assert!(
                ids.contains(&shard),
                "RING LOCATE {key}: unknown shard {shard:?}: {r:?}"
            );
            return shard;
        }
    }
    let text = flat_text(&r);
    let words: Vec<&str> = text
        .split(|ch: char| ch.is_whitespace() || ",;=:()[]{}\"'".contains(ch))
        .collect();
    let named: Vec<&String> = ids
        .iter()
        .filter(|id| words.contains(&id.as_str()))
        .collect();
    assert_eq!(
        named.len(),
        1,
        "RING LOCATE {key} should name one shard of {ids:?}: {r:?}"
    );
    named[0].clone()
}

/// A full SCAN iteration (bounded: 100,000 calls, 60 s) with extra arguments (`MATCH p`,
/// `COUNT n`, `TYPE t`); every key returned, in order, duplicates kept.
pub fn scan_all(c: &mut Raw, extra: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..100_000 {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let r = c.cmd(&args);
        let items = r.items();
        assert_eq!(items.len(), 2, "SCAN reply is [cursor, keys]: {r:?}");
        keys.extend(items[1].strings());
        cursor = items[0].text();
        if cursor == "0" {
            return keys;
        }
        assert!(Instant::now() < deadline, "SCAN did not finish in 60 s");
    }
    panic!("SCAN did not finish in 100000 calls");
}
