//! Commands run through a [`Raw`] connection and what tests read from their replies: pipelines,
//! a full SCAN, `RING LOCATE`, TTLs, `INFO` sections.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringcache_protocol::Reply;

use crate::raw::{encode, Raw};
use crate::replies::{flat_text, ReplyExt};

/// A command as owned words, for building pipelines.
pub fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Pipelines `cmds` in chunks of 100 and returns the replies in order.
pub fn pipeline(c: &mut Raw, cmds: &[Vec<String>]) -> Vec<Reply> {
    pipeline_chunks(c, cmds, 100, false)
}

/// Pipelines `cmds` (in chunks of 200, so neither side's buffers fill up), failing on any error
/// reply.
pub fn pipeline_ok(c: &mut Raw, cmds: &[Vec<String>]) -> Vec<Reply> {
    pipeline_chunks(c, cmds, 200, true)
}

fn pipeline_chunks(c: &mut Raw, cmds: &[Vec<String>], chunk: usize, ok: bool) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(cmds.len());
    for chunk in cmds.chunks(chunk) {
        let mut buf = Vec::new();
        for cmd in chunk {
            buf.extend_from_slice(&encode(cmd));
        }
        c.send(&buf);
        for cmd in chunk {
            let r = c.reply();
            if ok {
                assert!(!r.is_error(), "{:?}: {r:?}", &cmd[..cmd.len().min(3)]);
            }
            replies.push(r);
        }
    }
    replies
}

/// Stores `n` strings `<prefix>:<i>` of about `value_len` bytes with MSET.
pub fn preload(c: &mut Raw, prefix: &str, n: usize, value_len: usize) {
    let pad = "v".repeat(value_len);
    let ids: Vec<usize> = (0..n).collect();
    let cmds: Vec<Vec<String>> = ids
        .chunks(200)
        .map(|ids| {
            let mut cmd = vec!["MSET".to_string()];
            for i in ids {
                cmd.push(format!("{prefix}:{i}"));
                cmd.push(format!("{i}:{pad}"));
            }
            cmd
        })
        .collect();
    pipeline_ok(c, &cmds);
}

pub fn ttl(c: &mut Raw, key: &str) -> i64 {
    c.cmd(&["TTL", key]).int()
}

pub fn pttl(c: &mut Raw, key: &str) -> i64 {
    c.cmd(&["PTTL", key]).int()
}

/// Milliseconds since the Unix epoch (for EXPIREAT arguments and EXPIRETIME replies).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `INFO <section>` of a server as field → value.
pub fn info(c: &mut Raw, section: &str) -> BTreeMap<String, String> {
    let r = c.cmd(&["INFO", section]);
    let text = match &r {
        Reply::Bulk(b) | Reply::Verbatim(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("INFO {section} should be a bulk string, got {other:?}"),
    };
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The value of field `name` of an `INFO` section; fails the test if it is missing.
pub fn info_value<'a>(info: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    info.get(name)
        .unwrap_or_else(|| panic!("INFO lacks {name}: {info:?}"))
}

/// A numeric `INFO` field.
pub fn num(info: &BTreeMap<String, String>, name: &str) -> u64 {
    info.get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO lacks a numeric {name}: {info:?}"))
}

/// INFO's `blocked_clients`, once it reaches `n` (or after 5 s, whatever it is then).
pub fn blocked_clients(c: &mut Raw, n: u64) -> u64 {
    let mut seen = 0;
    for _ in 0..100 {
        seen = num(&info(c, "clients"), "blocked_clients");
        if seen == n {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

/// CLIENT PAUSE and UNPAUSE refuse bad arguments with Redis's errors (nothing is paused).
pub fn assert_pause_arguments_checked(c: &mut Raw) {
    use crate::replies::{err, wrong_args};
    let cases: [(&[&str], Reply); 5] = [
        (
            &["CLIENT", "PAUSE", "abc"],
            err("ERR timeout is not an integer or out of range"),
        ),
        (&["CLIENT", "PAUSE", "-1"], err("ERR timeout is negative")),
        (
            &["CLIENT", "PAUSE", "10", "READ"],
            err("ERR CLIENT PAUSE mode must be WRITE or ALL"),
        ),
        (&["CLIENT", "PAUSE"], wrong_args("client|pause")),
        (&["CLIENT", "UNPAUSE", "x"], wrong_args("client|unpause")),
    ];
    for (args, want) in cases {
        assert_eq!(c.cmd(args), want, "{args:?}");
    }
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
