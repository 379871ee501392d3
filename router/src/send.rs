//! Sending a client's request to its shards: to one shard, split per shard, to every shard, or
//! walking the shards for SCAN. The fast path (`proxy::dispatch`), `local` (INFO keyspace) and
//! the migration path (`rebalance`) all send through here.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::clients::Who;
use crate::cursor;
use crate::merge::{How, Merge, Slot};
use crate::pools::View;
use crate::route::{self, Plan};
use crate::session::Session;
use crate::shard::Shard;
use crate::upstream::{UpRequest, UpResult};

/// Queues `raw` on `shard`'s connection for this client and returns where its reply will arrive.
pub fn send(
    shard: &Shard,
    s: &Session,
    raw: Bytes,
    cmd: u16,
    start: Instant,
) -> oneshot::Receiver<UpResult> {
    send_as(shard, s.who(), raw, cmd, start)
}

/// [`send`] for a client known by its [`Who`] (the migration path runs outside the connection).
pub fn send_as(
    shard: &Shard,
    who: Who,
    raw: Bytes,
    cmd: u16,
    start: Instant,
) -> oneshot::Receiver<UpResult> {
    let (req, rx) = UpRequest::new(raw, cmd, start);
    shard.pool.send(who.io, who.proto, who.id, req);
    rx
}

/// True for a shard's SCAN reply that ends its walk (cursor 0) with no keys.
fn scan_done_and_empty(raw: &[u8]) -> bool {
    let Some(els) = crate::frame::elements(raw) else {
        return false;
    };
    let [cur, keys] = &els[..] else {
        return false;
    };
    crate::frame::bulk_payload(&raw[cur.clone()]) == Some(&b"0"[..])
        && crate::frame::elements(&raw[keys.clone()]).is_some_and(|k| k.is_empty())
}

/// Sends a planned request to the shards' primaries and returns its slot: the part of dispatch
/// the migration path (`rebalance`) shares. Fan-outs include shards outside the ring that a
/// migration is still emptying (a key is in exactly one place, so nothing is counted twice).
pub fn send_plan(
    topo: &View,
    who: Who,
    plan: Plan,
    args: &[Bytes],
    raw: Bytes,
    cmd: u16,
    start: Instant,
) -> Slot {
    match plan {
        Plan::Forward(shard) => match topo.shards.get(shard) {
            Some(shard) => Slot::Forward(send_as(shard, who, raw, cmd, start)),
            None => Slot::error("ERR the ring has no shards"),
        },
        Plan::Split {
            merge,
            step,
            parts,
            owners,
        } => {
            let receivers = parts
                .iter()
                .map(|part| {
                    let request = route::part_request(args, part, step);
                    send_as(&topo.shards[part.shard], who, request, cmd, start)
                })
                .collect();
            Slot::Merge(Box::new(Merge::new(
                receivers,
                How::Split { merge, owners },
            )))
        }
        Plan::FanOut(how) => {
            // FLUSHALL, FLUSHDB, SLOWLOG RESET reach mirror-only pools too (their copies go);
            // the counting and listing fan-outs leave them out (each key counts once).
            let send = |shard: &Arc<Shard>| send_as(shard, who, raw.clone(), cmd, start);
            let receivers = match how {
                route::FanOut::AllOk => topo.all_shards().map(send).collect(),
                _ => topo.serving_shards().map(send).collect(),
            };
            Slot::Merge(Box::new(Merge::new(receivers, How::FanOut(how))))
        }
        Plan::Scan => {
            let Some(cursor) = cursor::parse(&args[1]) else {
                return Slot::error("ERR invalid cursor");
            };
            let serving: Vec<&Arc<Shard>> = topo.serving_shards().collect();
            let shards = serving.len();
            let pos = cursor::decode(cursor, shards);
            if pos.shard >= serving.len() {
                return Slot::error("ERR invalid cursor");
            }
            let (first, mut shard_cursor) = (pos.shard, pos.cursor);
            let serving: Vec<Arc<Shard>> = serving.into_iter().cloned().collect();
            let args: Vec<Bytes> = args.to_vec();
            let (tx, rx) = oneshot::channel();
            // A shard that finished with nothing to return hands over to the next one within the
            // same call, so an empty cluster answers cursor 0 as Redis does.
            tokio::spawn(async move {
                let mut index = first;
                let result = loop {
                    let mut digits = itoa::Buffer::new();
                    let c = Bytes::copy_from_slice(digits.format(shard_cursor).as_bytes());
                    let rewritten: Vec<&[u8]> = std::iter::once(&args[0][..])
                        .chain(std::iter::once(&c[..]))
                        .chain(args[2..].iter().map(|a| &a[..]))
                        .collect();
                    let mut request = BytesMut::with_capacity(64);
                    ringcache_protocol::resp::encode_request(&mut request, rewritten);
                    let reply =
                        match send_as(&serving[index], who, request.freeze(), cmd, start).await {
                            Ok(r) => r,
                            Err(_) => break Err(()),
                        };
                    let Ok(raw) = &reply else {
                        break Ok(reply);
                    };
                    if index + 1 < serving.len() && scan_done_and_empty(raw) {
                        index += 1;
                        shard_cursor = 0;
                        continue;
                    }
                    let how = How::Scan {
                        shard: index,
                        shards: serving.len(),
                    };
                    break Ok(Ok(crate::merge::combine(&how, vec![reply])));
                };
                if let Ok(r) = result {
                    let _ = tx.send(r);
                }
            });
            Slot::Forward(rx)
        }
        Plan::CrossShard => Slot::error(route::CROSSSHARD),
        Plan::Local | Plan::Unsupported | Plan::WrongArity | Plan::Blocking(_) => {
            Slot::error("ERR the router answers this command itself")
        }
    }
}
