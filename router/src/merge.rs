//! A client's pending replies, and how the replies of split and fanned-out commands combine.
//!
//! Each request a client sends becomes one [`Slot`] in its FIFO: a reply the router already has, a
//! forwarded request waiting on one upstream reply, or a merge waiting on several. The connection
//! writes slots strictly in FIFO order, so pipelined replies keep the request order whatever
//! order the shards answer in.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use ringcache_protocol::{Protocol, Reply};
use tokio::sync::oneshot;

use crate::cursor;
use crate::frame;
use crate::route::{FanOut, SplitMerge};
use crate::upstream::UpResult;

/// One pending reply, in the client's FIFO.
#[derive(Debug)]
pub enum Slot {
    Ready(Bytes),
    Forward(oneshot::Receiver<UpResult>),
    /// A request forwarded whole on the fast path, with its bytes: if a node refuses it with
    /// `-WRONGSHARD` (another router changed the ring), the connection retries it instead of
    /// answering (see [`Slot::fenced`]).
    Keyed(oneshot::Receiver<UpResult>, Bytes),
    Merge(Box<Merge>),
    /// A blocking command waiting on its own connection: a client that closes its side stops
    /// it, as Redis frees a blocked client that disconnects.
    Blocked(oneshot::Receiver<UpResult>),
    /// An EVALSHA or FCALL with its bytes: run again (`crate::scripts::heal`) if its shard
    /// lacks the script.
    Script(oneshot::Receiver<UpResult>, Bytes),
    /// A reply the client asked not to get (CLIENT REPLY OFF or SKIP): waited for, not written.
    Silent(Box<Slot>),
    /// PUBLISH's count of receivers from the channel's node, which counts this router's
    /// subscription links (the first number) where this router has its clients (the second).
    Published(oneshot::Receiver<UpResult>, i64, i64),
    /// A request sent only once every reply before it was taken (WAIT, `crate::wait`).
    Deferred(Box<crate::wait::Deferred>),
}

/// Replies of several upstream requests, combined once all have arrived.
#[derive(Debug)]
pub struct Merge {
    parts: Vec<PartReply>,
    how: How,
    /// A split request's bytes, kept to retry it if a node fenced a part off (see
    /// [`Slot::fenced`]).
    retry: Option<Bytes>,
}

#[derive(Debug)]
enum PartReply {
    Waiting(oneshot::Receiver<UpResult>),
    Done(UpResult),
}

/// How a merge combines its parts' replies.
#[derive(Debug)]
pub enum How {
    /// A split command; `owners[k]` is the part holding the `k`-th key group.
    Split {
        merge: SplitMerge,
        owners: Vec<u32>,
    },
    FanOut(FanOut),
    /// SCAN on shard `shard` of `shards`: the shard's cursor becomes the router's.
    Scan {
        shard: usize,
        shards: usize,
    },
    /// INFO: the router's own sections, then the shards' merged (`crate::info::merge`), with
    /// these fields replaced by the router's own counts, and these added to.
    Info {
        text: String,
        proto: Protocol,
        overrides: Vec<(&'static str, u64)>,
        adds: Vec<(&'static str, u64)>,
    },
}

impl Merge {
    pub fn new(parts: Vec<oneshot::Receiver<UpResult>>, how: How) -> Merge {
        Merge {
            parts: parts.into_iter().map(PartReply::Waiting).collect(),
            how,
            retry: None,
        }
    }

    /// Keeps the request's bytes: if the merged reply is a `-WRONGSHARD`, the whole request is
    /// run again (its parts that ran are idempotent but for DEL/UNLINK's count).
    pub fn retry_with(&mut self, raw: Bytes) {
        self.retry = Some(raw);
    }
}

pub(crate) const CLOSED: &str = "ERR the shard connection closed before replying";

impl Slot {
    pub fn error(text: &str) -> Slot {
        Slot::Ready(error_bytes(text))
    }

    pub fn reply(reply: &Reply, proto: Protocol) -> Slot {
        Slot::Ready(reply.to_bytes(proto))
    }

    /// The encoded reply once it is complete.
    pub fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        match self {
            Slot::Ready(b) => Poll::Ready(std::mem::take(b)),
            Slot::Forward(rx) | Slot::Keyed(rx, _) | Slot::Blocked(rx) | Slot::Script(rx, _) => {
                Pin::new(rx).poll(cx).map(received)
            }
            Slot::Silent(inner) => inner.poll_take(cx).map(|_| Bytes::new()),
            Slot::Deferred(d) => d.poll_take(cx),
            Slot::Published(rx, links, clients) => Pin::new(rx).poll(cx).map(|r| match r {
                Ok(Ok(raw)) => match crate::frame::integer(&raw) {
                    Some(n) => Reply::Int((n - *links).max(0) + *clients).to_bytes(Protocol::Resp2),
                    None => raw,
                },
                other => received(other),
            }),
            Slot::Merge(m) => {
                let mut waiting = false;
                for part in &mut m.parts {
                    if let PartReply::Waiting(rx) = part {
                        match Pin::new(rx).poll(cx) {
                            Poll::Pending => waiting = true,
                            Poll::Ready(r) => {
                                *part =
                                    PartReply::Done(r.unwrap_or_else(|_| Ok(error_bytes(CLOSED))));
                            }
                        }
                    }
                }
                if waiting {
                    return Poll::Pending;
                }
                let parts: Vec<UpResult> = std::mem::take(&mut m.parts)
                    .into_iter()
                    .map(|p| match p {
                        PartReply::Done(r) => r,
                        PartReply::Waiting(_) => Ok(error_bytes(CLOSED)),
                    })
                    .collect();
                Poll::Ready(combine(&m.how, parts))
            }
        }
    }
}

impl Slot {
    /// The request's bytes, if `reply` (its answer, just taken) refuses it with `-WRONGSHARD`
    /// and it may be retried.
    pub fn fenced(&mut self, reply: &[u8]) -> Option<Bytes> {
        crate::rebalance::divert::wrongshard(reply)?;
        match self {
            Slot::Keyed(_, raw) | Slot::Script(_, raw) => Some(std::mem::take(raw)),
            Slot::Merge(m) => m.retry.take(),
            _ => None,
        }
    }
}

impl Slot {
    /// The request's bytes, if `reply` says its shard lacks the script or function it runs.
    pub fn healable(&mut self, reply: &[u8]) -> Option<Bytes> {
        match self {
            Slot::Script(_, raw) if crate::scripts::missing(reply) => Some(std::mem::take(raw)),
            _ => None,
        }
    }
}

impl Slot {
    /// The request's bytes, if `reply` says its script is to run on another shard.
    pub fn elsewhere(&mut self, reply: &[u8]) -> Option<Bytes> {
        crate::scripts::elsewhere(reply)?;
        match self {
            Slot::Keyed(_, raw) | Slot::Script(_, raw) => Some(std::mem::take(raw)),
            _ => None,
        }
    }
}

/// A shard's answer as the bytes a client gets: its reply, or the error that stood in for it.
pub fn received(r: Result<UpResult, oneshot::error::RecvError>) -> Bytes {
    match r {
        Ok(Ok(raw)) => raw,
        Ok(Err(e)) => error_bytes(&e.reply_text()),
        Err(_) => error_bytes(CLOSED),
    }
}

/// `-text\r\n`, with any CR/LF in the text replaced as Redis does.
pub fn error_bytes(text: &str) -> Bytes {
    Reply::Error(text.to_string()).to_bytes(Protocol::Resp2)
}

/// Either every part's reply bytes, or the first failure as a ready error reply.
fn successes(parts: Vec<UpResult>) -> Result<Vec<Bytes>, Bytes> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p {
            Err(e) => return Err(error_bytes(&e.reply_text())),
            Ok(raw) if frame::is_error(&raw) => return Err(raw),
            Ok(raw) => out.push(raw),
        }
    }
    Ok(out)
}

fn unexpected(what: &str) -> Bytes {
    error_bytes(&format!("ERR a shard sent an unexpected reply to {what}"))
}

/// Combines the parts' replies (in part order) into the client's reply.
pub fn combine(how: &How, parts: Vec<UpResult>) -> Bytes {
    let result = match how {
        How::Split {
            merge: SplitMerge::Values,
            owners,
        } => successes(parts).and_then(|p| values(&p, owners)),
        How::Split {
            merge: SplitMerge::AllOk,
            ..
        }
        | How::FanOut(FanOut::AllOk) => successes(parts).and_then(|p| all_ok(&p)),
        How::Split {
            merge: SplitMerge::Sum,
            ..
        }
        | How::FanOut(FanOut::Sum) => successes(parts).and_then(|p| sum(&p)),
        How::FanOut(FanOut::Concat) => successes(parts).and_then(|p| concat(&p)),
        How::FanOut(FanOut::Random) => random(parts),
        How::FanOut(FanOut::First) => {
            successes(parts).and_then(|p| p.into_iter().next().ok_or_else(|| unexpected("a load")))
        }
        How::FanOut(FanOut::AnyOk) => any_ok(parts),
        How::FanOut(FanOut::SlowLog(n)) => successes(parts).and_then(|p| slowlog(&p, *n)),
        How::FanOut(FanOut::LatencyHistogram) => {
            successes(parts).and_then(|p| crate::latency::merge_histograms(&p))
        }
        How::Scan { shard, shards } => successes(parts).and_then(|p| scan(&p, *shard, *shards)),
        How::Info {
            text,
            proto,
            overrides,
            adds,
        } => Ok(crate::info::merge(text, *proto, &parts, overrides, adds)),
    };
    result.unwrap_or_else(|e| e)
}

/// MGET: each part's values back in the client's key order.
fn values(parts: &[Bytes], owners: &[u32]) -> Result<Bytes, Bytes> {
    let mut elements = Vec::with_capacity(parts.len());
    for raw in parts {
        elements.push(frame::elements(raw).ok_or_else(|| unexpected("MGET"))?);
    }
    let mut next = vec![0usize; parts.len()];
    let mut out = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 16);
    array_header(&mut out, owners.len());
    for &part in owners {
        let part = part as usize;
        let range = elements
            .get(part)
            .and_then(|e| e.get(next[part]))
            .ok_or_else(|| unexpected("MGET"))?;
        out.put_slice(&parts[part][range.clone()]);
        next[part] += 1;
    }
    if next.iter().zip(&elements).any(|(&used, e)| used != e.len()) {
        return Err(unexpected("MGET"));
    }
    Ok(out.freeze())
}

fn all_ok(parts: &[Bytes]) -> Result<Bytes, Bytes> {
    if parts.iter().all(|p| &p[..] == b"+OK\r\n") {
        Ok(Bytes::from_static(b"+OK\r\n"))
    } else {
        Err(unexpected("a write"))
    }
}

fn any_ok(parts: Vec<UpResult>) -> Result<Bytes, Bytes> {
    let mut first_error = None;
    for p in parts {
        match p {
            Ok(raw) if &raw[..] == b"+OK\r\n" => return Ok(raw),
            Ok(raw) => {
                first_error.get_or_insert(raw);
            }
            Err(e) => {
                first_error.get_or_insert_with(|| error_bytes(&e.reply_text()));
            }
        }
    }
    Err(first_error.unwrap_or_else(|| unexpected("a kill")))
}

fn sum(parts: &[Bytes]) -> Result<Bytes, Bytes> {
    let mut total: i64 = 0;
    for p in parts {
        let n = frame::integer(p).ok_or_else(|| unexpected("a counting command"))?;
        total = total.saturating_add(n);
    }
    Ok(Reply::Int(total).to_bytes(Protocol::Resp2))
}

/// KEYS: the parts' arrays joined (element bytes copied as they are, never parsed).
fn concat(parts: &[Bytes]) -> Result<Bytes, Bytes> {
    let mut total = 0usize;
    let mut bodies = Vec::with_capacity(parts.len());
    for p in parts {
        let (count, body) = split_array_header(p).ok_or_else(|| unexpected("KEYS"))?;
        total += count;
        bodies.push(body);
    }
    let mut out = BytesMut::with_capacity(bodies.iter().map(|b| b.len()).sum::<usize>() + 16);
    array_header(&mut out, total);
    for b in bodies {
        out.put_slice(b);
    }
    Ok(out.freeze())
}

/// SLOWLOG GET: the shards' entries, newest first (by their unix time, then duration), at most
/// `n`, each entry's bytes copied as the shard sent them.
fn slowlog(parts: &[Bytes], n: usize) -> Result<Bytes, Bytes> {
    let mut entries: Vec<(i64, i64, &[u8])> = Vec::new();
    for p in parts {
        for r in frame::elements(p).ok_or_else(|| unexpected("SLOWLOG GET"))? {
            let entry = &p[r];
            let fields = frame::elements(entry).ok_or_else(|| unexpected("SLOWLOG GET"))?;
            let int = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| frame::integer(&entry[f.clone()]))
            };
            let (Some(time), Some(micros)) = (int(1), int(2)) else {
                return Err(unexpected("SLOWLOG GET"));
            };
            entries.push((time, micros, entry));
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    entries.truncate(n);
    let mut out = BytesMut::with_capacity(entries.iter().map(|e| e.2.len()).sum::<usize>() + 16);
    array_header(&mut out, entries.len());
    for (_, _, e) in entries {
        out.put_slice(e);
    }
    Ok(out.freeze())
}

/// `*n\r\n...` → (n, the bytes after the header).
fn split_array_header(raw: &[u8]) -> Option<(usize, &[u8])> {
    if raw.first() != Some(&b'*') {
        return None;
    }
    let eol = raw.iter().position(|&b| b == b'\r')?;
    let n = ringcache_protocol::num::parse_i64(&raw[1..eol])?;
    Some((usize::try_from(n).ok()?, raw.get(eol + 2..)?))
}

/// RANDOMKEY: a key from a random shard that has one; nil if none has; an error only if no
/// shard had a key and some shard failed.
fn random(parts: Vec<UpResult>) -> Result<Bytes, Bytes> {
    let mut keys = Vec::new();
    let mut first_error = None;
    let mut null = None;
    for p in parts {
        match p {
            Err(e) => {
                first_error.get_or_insert_with(|| error_bytes(&e.reply_text()));
            }
            Ok(raw) if frame::is_error(&raw) => {
                first_error.get_or_insert(raw);
            }
            Ok(raw) if frame::is_null(&raw) => {
                null.get_or_insert(raw);
            }
            Ok(raw) => keys.push(raw),
        }
    }
    if !keys.is_empty() {
        let pick = rand::thread_rng().gen_range(0..keys.len());
        return Ok(keys.swap_remove(pick));
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(null.unwrap_or_else(|| Bytes::from_static(b"$-1\r\n")))
}

/// SCAN: the shard's `[cursor, keys]` with its cursor packed into the router's.
fn scan(parts: &[Bytes], shard: usize, shards: usize) -> Result<Bytes, Bytes> {
    let raw = parts.first().ok_or_else(|| unexpected("SCAN"))?;
    let els = frame::elements(raw).ok_or_else(|| unexpected("SCAN"))?;
    let [cur, keys] = &els[..] else {
        return Err(unexpected("SCAN"));
    };
    let next = frame::bulk_payload(&raw[cur.clone()])
        .and_then(cursor::parse)
        .ok_or_else(|| unexpected("SCAN"))?;
    let packed = cursor::encode_next(shard, next, shards).ok_or_else(|| {
        error_bytes("ERR a shard's SCAN cursor is too large to combine with the shard index")
    })?;
    let mut digits = itoa::Buffer::new();
    let text = digits.format(packed);
    let mut out = BytesMut::with_capacity(raw.len() + 24);
    out.put_slice(b"*2\r\n");
    ringcache_protocol::resp::bulk(&mut out, text.as_bytes());
    out.put_slice(&raw[keys.clone()]);
    Ok(out.freeze())
}

/// INFO: the router's text with a `# Keyspace` section summing the shards' `db0` lines.
fn array_header(out: &mut BytesMut, n: usize) {
    let mut digits = itoa::Buffer::new();
    out.put_u8(b'*');
    out.put_slice(digits.format(n).as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::upstream::{UpstreamError, UpstreamErrorKind};
    use std::sync::Arc;

    fn ok(s: &[u8]) -> UpResult {
        Ok(Bytes::copy_from_slice(s))
    }

    fn down() -> UpResult {
        Err(UpstreamError {
            shard: Arc::from("b"),
            addr: Arc::from("h:2"),
            kind: UpstreamErrorKind::Connect(Arc::from("connection refused")),
        })
    }

    fn split(merge: SplitMerge, owners: Vec<u32>) -> How {
        How::Split { merge, owners }
    }

    #[test]
    fn mget_values_return_in_client_order() {
        // keys k0..k4 with owners [0, 1, 0, 2, 1]
        let parts = vec![
            ok(b"*2\r\n$2\r\nv0\r\n$-1\r\n"),
            ok(b"*2\r\n$2\r\nv1\r\n$2\r\nv4\r\n"),
            ok(b"*1\r\n$2\r\nv3\r\n"),
        ];
        let got = combine(&split(SplitMerge::Values, vec![0, 1, 0, 2, 1]), parts);
        assert_eq!(
            &got[..],
            b"*5\r\n$2\r\nv0\r\n$2\r\nv1\r\n$-1\r\n$2\r\nv3\r\n$2\r\nv4\r\n"
        );
        // a short part is an error, not a misaligned reply
        let got = combine(
            &split(SplitMerge::Values, vec![0, 1, 0]),
            vec![ok(b"*1\r\n$1\r\na\r\n"), ok(b"*1\r\n$1\r\nb\r\n")],
        );
        assert!(got.starts_with(b"-ERR a shard sent an unexpected reply to MGET"));
    }

    #[test]
    fn failures_name_the_shard() {
        let got = combine(
            &split(SplitMerge::Values, vec![0, 1]),
            vec![ok(b"*1\r\n$1\r\na\r\n"), down()],
        );
        assert_eq!(
            &got[..],
            b"-ERR shard 'b' (h:2) unavailable: connection refused\r\n"
        );
        let got = combine(
            &split(SplitMerge::Sum, vec![0, 1]),
            vec![ok(b":1\r\n"), ok(b"-WRONGTYPE x\r\n")],
        );
        assert_eq!(&got[..], b"-WRONGTYPE x\r\n");
    }

    #[test]
    fn sums_and_oks() {
        let got = combine(
            &split(SplitMerge::Sum, vec![0, 1, 2]),
            vec![ok(b":2\r\n"), ok(b":0\r\n"), ok(b":5\r\n")],
        );
        assert_eq!(&got[..], b":7\r\n");
        let got = combine(
            &How::FanOut(FanOut::AllOk),
            vec![ok(b"+OK\r\n"), ok(b"+OK\r\n")],
        );
        assert_eq!(&got[..], b"+OK\r\n");
        let got = combine(&How::FanOut(FanOut::AllOk), vec![ok(b"+OK\r\n"), down()]);
        assert!(got.starts_with(b"-ERR shard 'b'"));
    }

    #[test]
    fn keys_concatenate() {
        let got = combine(
            &How::FanOut(FanOut::Concat),
            vec![
                ok(b"*1\r\n$1\r\na\r\n"),
                ok(b"*0\r\n"),
                ok(b"*2\r\n$1\r\nb\r\n$1\r\nc\r\n"),
            ],
        );
        assert_eq!(&got[..], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
    }

    #[test]
    fn randomkey_prefers_keys_over_nil_and_errors() {
        let got = combine(
            &How::FanOut(FanOut::Random),
            vec![ok(b"$-1\r\n"), down(), ok(b"$1\r\nk\r\n")],
        );
        assert_eq!(&got[..], b"$1\r\nk\r\n");
        let got = combine(
            &How::FanOut(FanOut::Random),
            vec![ok(b"_\r\n"), ok(b"_\r\n")],
        );
        assert_eq!(&got[..], b"_\r\n");
        let got = combine(&How::FanOut(FanOut::Random), vec![ok(b"$-1\r\n"), down()]);
        assert!(got.starts_with(b"-ERR shard 'b'"));
    }

    #[test]
    fn scan_cursor_is_packed() {
        let reply = b"*2\r\n$2\r\n17\r\n*1\r\n$1\r\nk\r\n";
        let got = combine(
            &How::Scan {
                shard: 1,
                shards: 3,
            },
            vec![ok(reply)],
        );
        assert_eq!(&got[..], b"*2\r\n$2\r\n52\r\n*1\r\n$1\r\nk\r\n");
        let end = b"*2\r\n$1\r\n0\r\n*0\r\n";
        let got = combine(
            &How::Scan {
                shard: 1,
                shards: 3,
            },
            vec![ok(end)],
        );
        assert_eq!(&got[..], b"*2\r\n$1\r\n2\r\n*0\r\n");
        let got = combine(
            &How::Scan {
                shard: 2,
                shards: 3,
            },
            vec![ok(end)],
        );
        assert_eq!(&got[..], b"*2\r\n$1\r\n0\r\n*0\r\n");
    }

    #[test]
    fn info_sums_keyspaces() {
        let a = ok(b"$45\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n\r\n");
        let b = ok(b"=46\r\ntxt:# Keyspace\r\ndb0:keys=4,expires=0,avg_ttl=0\r\n\r\n");
        let got = combine(
            &How::Info {
                text: "# Router\r\nx:1\r\n".into(),
                proto: Protocol::Resp2,
                overrides: Vec::new(),
                adds: Vec::new(),
            },
            vec![a, b, down()],
        );
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("db0:keys=7,expires=1,avg_ttl=0"), "{text}");
        assert!(text.starts_with('$'));
    }
}
