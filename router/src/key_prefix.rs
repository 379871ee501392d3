//! `remove_prefix`: a pool whose nodes hold one route's keys without the route's prefix. The
//! router plans every request on the client's key names (the ring hashes the stored name, see
//! `Routed::cut`); the bytes change only on the way to and from such a pool's nodes, here: a
//! request loses the prefix from its keys (and KEYS's or SCAN's pattern is rewritten for the
//! stored names), and a reply naming keys gets it back (filtered by the client's pattern).

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::glob;
use ringcache_protocol::request::{Limits, RequestDecoder};
use ringcache_protocol::table;

use crate::frame::{aggregate, bulk_payload};
use crate::pools_config::RouteConfig;
use std::sync::Arc;

/// The prefix a pool's nodes do not see.
#[derive(Debug)]
pub struct KeyPrefix {
    prefix: Bytes,
}

/// How to give a reply from a stripped pool the client's key names back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyFix {
    /// BLPOP, BRPOP, BZPOPMIN, BZPOPMAX, BLMPOP, BZMPOP, LMPOP, ZMPOP: the first element of the
    /// array names the key.
    First,
    /// XREAD, XREADGROUP: `[key, entries]` pairs (RESP2) or a map of key to entries (RESP3).
    Streams,
    /// KEYS: every element, kept if it matches the client's pattern.
    Keys(Bytes),
    /// SCAN: `[cursor, keys]`, keys kept if they match the client's MATCH pattern.
    Scan(Option<Bytes>),
    /// RANDOMKEY: a bulk key (or nil).
    Bulk,
    /// MULTI, EXEC, DISCARD on a connection of a client's own (see [`KeyPrefix::link_reply`]).
    Multi,
    Exec,
    Discard,
}

/// The fixes of the commands a node queued since MULTI on one connection, in order: EXEC's
/// reply holds their replies.
pub type Queued = Option<Vec<Option<ReplyFix>>>;

/// What a pattern is for the stored names (see [`residual`]).
#[derive(Debug, PartialEq, Eq)]
enum Residual<'a> {
    /// Exactly the keys whose prefixed name matches: the rest of the pattern after the prefix.
    Exact(&'a [u8]),
    /// A `*` reaches into the prefix: every stored name may match (filtered afterwards).
    Any,
    /// No prefixed name can match.
    Never,
}

/// The prefix the nodes of pool `pool` hold keys without: its route's, if it removes it (the
/// config gives such a pool to that route alone).
pub fn for_pool(routes: &[RouteConfig], pool: &str) -> Option<Arc<KeyPrefix>> {
    routes
        .iter()
        .find(|r| r.remove_prefix && r.pool == pool)
        .map(|r| Arc::new(KeyPrefix::new(r.prefix.as_bytes())))
}

impl KeyPrefix {
    pub fn new(prefix: &[u8]) -> KeyPrefix {
        KeyPrefix {
            prefix: Bytes::copy_from_slice(prefix),
        }
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// `raw` (one RESP request) as this pool's nodes see it, and how to fix its reply;
    /// `None`: it names no key and its reply none.
    pub fn request(&self, raw: &Bytes) -> Option<(Bytes, Option<ReplyFix>)> {
        let mut buf = BytesMut::from(&raw[..]);
        let mut args = Vec::new();
        // Decoded once already by the router, under its own limits: none here.
        let limits = Limits {
            max_bulk_len: i64::MAX,
            max_multibulk_len: i64::MAX,
            max_inline_len: usize::MAX,
            unauth_max_multibulk_len: i64::MAX,
            unauth_max_bulk_len: i64::MAX,
        };
        let mut decoder = RequestDecoder::new(limits, true);
        decoder.decode_into(&mut buf, &mut args).ok()??;
        let spec = table::lookup(args.first()?)?;
        let mut fix = match spec.name {
            "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "blmpop" | "bzmpop" | "lmpop"
            | "zmpop" => Some(ReplyFix::First),
            "xread" | "xreadgroup" => Some(ReplyFix::Streams),
            "randomkey" => Some(ReplyFix::Bulk),
            "multi" => Some(ReplyFix::Multi),
            "exec" => Some(ReplyFix::Exec),
            "discard" => Some(ReplyFix::Discard),
            _ => None,
        };
        let mut changed = false;
        match spec.name {
            "keys" if args.len() == 2 => {
                let pattern = args[1].clone();
                args[1] = self.pattern(&pattern);
                fix = Some(ReplyFix::Keys(pattern));
                changed = true;
            }
            "scan" => {
                let mut pattern = None;
                let mut i = 2;
                while i + 1 < args.len() {
                    if args[i].eq_ignore_ascii_case(b"match") {
                        pattern = Some(args[i + 1].clone());
                        args[i + 1] = self.pattern(&args[i + 1]);
                        changed = true;
                    }
                    i += 2;
                }
                fix = Some(ReplyFix::Scan(pattern));
            }
            // The router's own `MIGRATE-KEYS <target> key...` (the table lists it keyless).
            "migrate-keys" => {
                for k in args.iter_mut().skip(2) {
                    changed |= self.strip(k);
                }
            }
            _ => {
                let at: Vec<usize> = spec.keys(&args).collect();
                for i in at {
                    changed |= self.strip(&mut args[i]);
                }
            }
        }
        if !changed {
            return fix.map(|f| (raw.clone(), Some(f)));
        }
        let mut out = BytesMut::with_capacity(raw.len());
        ringcache_protocol::resp::encode_request(&mut out, &args);
        Some((out.freeze(), fix))
    }

    /// Drops the prefix from `key`; false if it does not start with it (not this route's key:
    /// sent unchanged).
    fn strip(&self, key: &mut Bytes) -> bool {
        if !key.starts_with(&self.prefix) {
            return false;
        }
        *key = key.slice(self.prefix.len()..);
        true
    }

    /// The pattern to send for the client's `pattern`: its rest after the prefix when that is
    /// exact, else one the replies are filtered from.
    fn pattern(&self, pattern: &[u8]) -> Bytes {
        match residual(pattern, &self.prefix) {
            Residual::Exact(rest) => Bytes::copy_from_slice(rest),
            Residual::Any => Bytes::from_static(b"*"),
            // Nothing matches; the client's own pattern rarely matches a stored name either
            // (and the filter drops what does).
            Residual::Never => Bytes::copy_from_slice(pattern),
        }
    }

    /// `raw` (a reply from this pool's node) with the client's key names.
    pub fn reply(&self, fix: &ReplyFix, raw: Bytes) -> Bytes {
        let fixed = match fix {
            ReplyFix::First => self.first(&raw),
            ReplyFix::Streams => self.streams(&raw),
            ReplyFix::Keys(pattern) => self.keys(&raw, Some(pattern)),
            ReplyFix::Scan(pattern) => self.scan(&raw, pattern.as_deref()),
            ReplyFix::Bulk => bulk_payload(&raw).filter(|_| raw[0] == b'$').map(|k| {
                let mut out = BytesMut::with_capacity(raw.len() + self.prefix.len());
                self.put_key(&mut out, k);
                out
            }),
            ReplyFix::Multi | ReplyFix::Exec | ReplyFix::Discard => None,
        };
        fixed.map_or(raw, BytesMut::freeze)
    }

    /// [`reply`](Self::reply) on a connection that may run a transaction: a command the node
    /// queued answers `QUEUED` and keeps its fix for EXEC, whose reply gets each one.
    pub fn link_reply(&self, fix: Option<ReplyFix>, raw: Bytes, queued: &mut Queued) -> Bytes {
        match fix {
            Some(ReplyFix::Multi) => {
                if &raw[..] == b"+OK\r\n" {
                    *queued = Some(Vec::new());
                }
                raw
            }
            Some(ReplyFix::Discard) => {
                *queued = None;
                raw
            }
            Some(ReplyFix::Exec) => match queued.take() {
                Some(fixes) if fixes.iter().any(Option::is_some) => self.exec(&fixes, raw),
                _ => raw,
            },
            fix => match queued {
                Some(fixes) => {
                    if &raw[..] == b"+QUEUED\r\n" {
                        fixes.push(fix);
                    }
                    raw
                }
                None => match fix {
                    Some(fix) => self.reply(&fix, raw),
                    None => raw,
                },
            },
        }
    }

    /// EXEC's array with each queued command's reply fixed.
    fn exec(&self, fixes: &[Option<ReplyFix>], raw: Bytes) -> Bytes {
        let Some((head, els)) = aggregate(&raw).filter(|(_, els)| els.len() == fixes.len()) else {
            return raw;
        };
        let mut out = BytesMut::with_capacity(raw.len() + 64);
        out.put_slice(&raw[..head]);
        for (el, fix) in els.into_iter().zip(fixes) {
            match fix {
                Some(fix) => out.put_slice(&self.reply(fix, raw.slice(el))),
                None => out.put_slice(&raw[el]),
            }
        }
        out.freeze()
    }

    fn put_key(&self, out: &mut BytesMut, key: &[u8]) {
        out.put_u8(b'$');
        out.put_slice(
            itoa::Buffer::new()
                .format(self.prefix.len() + key.len())
                .as_bytes(),
        );
        out.put_slice(b"\r\n");
        out.put_slice(&self.prefix);
        out.put_slice(key);
        out.put_slice(b"\r\n");
    }

    /// The bulk key `el`, prefixed.
    fn with_key(&self, out: &mut BytesMut, el: &[u8]) -> Option<()> {
        let key = bulk_payload(el).filter(|_| el[0] == b'$')?;
        self.put_key(out, key);
        Some(())
    }

    fn first(&self, raw: &[u8]) -> Option<BytesMut> {
        let (head, els) = aggregate(raw)?;
        let first = els.first()?;
        let mut out = BytesMut::with_capacity(raw.len() + self.prefix.len());
        out.put_slice(&raw[..head]);
        self.with_key(&mut out, &raw[first.clone()])?;
        out.put_slice(&raw[first.end..]);
        Some(out)
    }

    fn streams(&self, raw: &[u8]) -> Option<BytesMut> {
        let (head, els) = aggregate(raw)?;
        let mut out = BytesMut::with_capacity(raw.len() + els.len() * self.prefix.len());
        out.put_slice(&raw[..head]);
        if raw[0] == b'%' {
            // A map: keys at even places.
            for (i, el) in els.iter().enumerate() {
                if i % 2 == 0 {
                    self.with_key(&mut out, &raw[el.clone()])?;
                } else {
                    out.put_slice(&raw[el.clone()]);
                }
            }
        } else {
            for el in els {
                let pair = &raw[el];
                out.put_slice(&self.first(pair)?);
            }
        }
        Some(out)
    }

    fn keys(&self, raw: &[u8], pattern: Option<&[u8]>) -> Option<BytesMut> {
        let (_, els) = aggregate(raw)?;
        let mut body = BytesMut::with_capacity(raw.len() + els.len() * self.prefix.len());
        let mut kept = 0usize;
        let mut name = Vec::new();
        for el in els {
            let key = bulk_payload(&raw[el])?;
            name.clear();
            name.extend_from_slice(&self.prefix);
            name.extend_from_slice(key);
            if pattern.is_none_or(|p| glob::matches(p, &name, false)) {
                self.put_key(&mut body, key);
                kept += 1;
            }
        }
        let mut out = BytesMut::with_capacity(body.len() + 16);
        out.put_u8(raw[0]);
        out.put_slice(itoa::Buffer::new().format(kept).as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(&body);
        Some(out)
    }

    fn scan(&self, raw: &[u8], pattern: Option<&[u8]>) -> Option<BytesMut> {
        let (head, els) = aggregate(raw)?;
        let [cursor, keys] = &els[..] else {
            return None;
        };
        let mut out = BytesMut::with_capacity(raw.len() + 64);
        out.put_slice(&raw[..head]);
        out.put_slice(&raw[cursor.clone()]);
        out.put_slice(&self.keys(&raw[keys.clone()], pattern)?);
        Some(out)
    }
}

/// What the glob `pattern` asks of the names stored without `prefix`: walks the prefix
/// through the pattern's leading literals, `?`s and classes.
fn residual<'a>(pattern: &'a [u8], prefix: &[u8]) -> Residual<'a> {
    let mut p = 0;
    for &c in prefix {
        let Some(&at) = pattern.get(p) else {
            return Residual::Never;
        };
        match at {
            b'*' => return Residual::Any,
            b'?' => p += 1,
            b'[' => {
                let (matched, len) = glob::class(&pattern[p..], c, false);
                let Some(len) = len else {
                    return Residual::Any;
                };
                if !matched {
                    return Residual::Never;
                }
                p += len;
            }
            b'\\' if p + 1 < pattern.len() => {
                if pattern[p + 1] != c {
                    return Residual::Never;
                }
                p += 2;
            }
            lit => {
                if lit != c {
                    return Residual::Never;
                }
                p += 1;
            }
        }
    }
    Residual::Exact(&pattern[p..])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(args: &[&str]) -> Bytes {
        let mut out = BytesMut::new();
        ringcache_protocol::resp::encode_request(&mut out, args);
        out.freeze()
    }

    fn kp() -> KeyPrefix {
        KeyPrefix::new(b"sess:")
    }

    #[test]
    fn keys_lose_the_prefix_and_others_stay() {
        let (raw, fix) = kp().request(&req(&["SET", "sess:a", "sess:v"])).unwrap();
        assert_eq!(raw, req(&["SET", "a", "sess:v"]));
        assert_eq!(fix, None);
        let (raw, _) = kp()
            .request(&req(&["MSET", "sess:a", "1", "sess:b", "2"]))
            .unwrap();
        assert_eq!(raw, req(&["MSET", "a", "1", "b", "2"]));
        let (raw, _) = kp()
            .request(&req(&[
                "EVAL", "return 1", "2", "sess:a", "sess:b", "sess:c",
            ]))
            .unwrap();
        assert_eq!(raw, req(&["EVAL", "return 1", "2", "a", "b", "sess:c"]));
        let (raw, _) = kp()
            .request(&req(&["MIGRATE-KEYS", "10.0.0.1:7000", "sess:a"]))
            .unwrap();
        assert_eq!(raw, req(&["MIGRATE-KEYS", "10.0.0.1:7000", "a"]));
        assert!(kp().request(&req(&["PING"])).is_none());
        assert!(kp().request(&req(&["GET", "other"])).is_none());
    }

    #[test]
    fn patterns_for_the_stored_names() {
        assert_eq!(residual(b"sess:*", b"sess:"), Residual::Exact(b"*"));
        assert_eq!(
            residual(b"s?ss:u[0-9]*", b"sess:"),
            Residual::Exact(b"u[0-9]*")
        );
        assert_eq!(residual(b"[st]ess\\:x", b"sess:"), Residual::Exact(b"x"));
        assert_eq!(residual(b"*", b"sess:"), Residual::Any);
        assert_eq!(residual(b"se*:1", b"sess:"), Residual::Any);
        assert_eq!(residual(b"user:*", b"sess:"), Residual::Never);
        assert_eq!(residual(b"se", b"sess:"), Residual::Never);
        assert_eq!(residual(b"[^s]*", b"sess:"), Residual::Never);
        // A range takes three bytes, `]` included, as in Redis's stringmatch.
        assert_eq!(residual(b"[t-]]ess:*", b"sess:"), Residual::Exact(b"*"));
        assert_eq!(residual(b"[a-\\]ess:*", b"sess:"), Residual::Never);
        assert!(glob::matches(b"[t-]]ess:*", b"sess:x", false));
        assert_eq!(residual(b"[s", b"sess:"), Residual::Any);
        let (raw, fix) = kp().request(&req(&["KEYS", "sess:u*"])).unwrap();
        assert_eq!(raw, req(&["KEYS", "u*"]));
        assert_eq!(fix, Some(ReplyFix::Keys(Bytes::from_static(b"sess:u*"))));
        let (raw, fix) = kp()
            .request(&req(&["SCAN", "0", "COUNT", "10", "match", "*:1"]))
            .unwrap();
        assert_eq!(raw, req(&["SCAN", "0", "COUNT", "10", "match", "*"]));
        assert_eq!(fix, Some(ReplyFix::Scan(Some(Bytes::from_static(b"*:1")))));
    }

    #[test]
    fn replies_name_the_clients_keys() {
        let k = kp();
        let keys = Bytes::from_static(b"*3\r\n$1\r\na\r\n$2\r\nu1\r\n$2\r\nu2\r\n");
        let fixed = k.reply(&ReplyFix::Keys(Bytes::from_static(b"sess:u*")), keys);
        assert_eq!(&fixed[..], b"*2\r\n$7\r\nsess:u1\r\n$7\r\nsess:u2\r\n");
        let scan = Bytes::from_static(b"*2\r\n$2\r\n17\r\n*1\r\n$1\r\na\r\n");
        let fixed = k.reply(&ReplyFix::Scan(None), scan);
        assert_eq!(&fixed[..], b"*2\r\n$2\r\n17\r\n*1\r\n$6\r\nsess:a\r\n");
        let pop = Bytes::from_static(b"*2\r\n$1\r\nl\r\n$1\r\nv\r\n");
        let fixed = k.reply(&ReplyFix::First, pop);
        assert_eq!(&fixed[..], b"*2\r\n$6\r\nsess:l\r\n$1\r\nv\r\n");
        let nil = Bytes::from_static(b"*-1\r\n");
        assert_eq!(k.reply(&ReplyFix::First, nil.clone()), nil);
        let err = Bytes::from_static(b"-WRONGTYPE x\r\n");
        assert_eq!(k.reply(&ReplyFix::First, err.clone()), err);
        let random = Bytes::from_static(b"$1\r\nz\r\n");
        assert_eq!(&k.reply(&ReplyFix::Bulk, random)[..], b"$6\r\nsess:z\r\n");
        let xread2 = Bytes::from_static(b"*1\r\n*2\r\n$1\r\ns\r\n*0\r\n");
        let fixed = k.reply(&ReplyFix::Streams, xread2);
        assert_eq!(&fixed[..], b"*1\r\n*2\r\n$6\r\nsess:s\r\n*0\r\n");
        let xread3 = Bytes::from_static(b"%1\r\n$1\r\ns\r\n*0\r\n");
        let fixed = k.reply(&ReplyFix::Streams, xread3);
        assert_eq!(&fixed[..], b"%1\r\n$6\r\nsess:s\r\n*0\r\n");
    }

    #[test]
    fn exec_fixes_the_replies_of_what_was_queued() {
        let k = kp();
        let mut queued: Queued = None;
        let ok = Bytes::from_static(b"+OK\r\n");
        let q = Bytes::from_static(b"+QUEUED\r\n");
        k.link_reply(Some(ReplyFix::Multi), ok, &mut queued);
        k.link_reply(None, q.clone(), &mut queued);
        k.link_reply(Some(ReplyFix::First), q.clone(), &mut queued);
        // Refused, not queued: not in EXEC's reply.
        let err = Bytes::from_static(b"-ERR no\r\n");
        k.link_reply(Some(ReplyFix::Bulk), err, &mut queued);
        let exec = Bytes::from_static(b"*2\r\n:1\r\n*2\r\n$1\r\nl\r\n*1\r\n$1\r\nv\r\n");
        let fixed = k.link_reply(Some(ReplyFix::Exec), exec, &mut queued);
        assert_eq!(
            &fixed[..],
            b"*2\r\n:1\r\n*2\r\n$6\r\nsess:l\r\n*1\r\n$1\r\nv\r\n"
        );
        assert_eq!(queued, None);
        let pop = Bytes::from_static(b"*2\r\n$1\r\nl\r\n$1\r\nv\r\n");
        let fixed = k.link_reply(Some(ReplyFix::First), pop, &mut queued);
        assert_eq!(&fixed[..], b"*2\r\n$6\r\nsess:l\r\n$1\r\nv\r\n");
    }
}
