//! Pub/sub on a `remove_prefix` pool's nodes (`crate::key_prefix`). Keyspace notifications
//! name the stored keys: the link to such a node subscribes keyspace channels by stored name,
//! and one node pattern for every notification ([`NODE_PATTERN`]), whose messages are renamed
//! and matched against the client's patterns here; the client's patterns are also subscribed
//! as written, for PUBLISH on channels routed to this pool (their notifications come through
//! the node pattern, so are dropped there). Shard channels (SSUBSCRIBE, SPUBLISH) are placed
//! and named like keys: stored without the prefix.

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::glob;
use ringcache_protocol::resp::encode_request;

use super::Kind;
use crate::key_prefix::KeyPrefix;

/// The node pattern standing for every client pattern on such a link.
pub(super) const NODE_PATTERN: &[u8] = b"__key*__:*";

const KEYSPACE: &[u8] = b"__keyspace@";
const KEYEVENT: &[u8] = b"__keyevent@";

/// The byte after `__keyspace@<db>__:` or `__keyevent@<db>__:` in `channel`.
fn after_db(channel: &[u8], space: &[u8]) -> Option<usize> {
    let rest = channel.strip_prefix(space)?;
    let end = rest.windows(3).position(|w| w == b"__:")?;
    Some(space.len() + end + 3)
}

/// Whether `channel` is a keyspace or keyevent notification's.
pub(super) fn is_notification(channel: &[u8]) -> bool {
    after_db(channel, KEYSPACE).is_some() || after_db(channel, KEYEVENT).is_some()
}

/// The name to subscribe on the node for the client's `name`.
pub(super) fn node_name(keys: &KeyPrefix, kind: Kind, name: &Bytes) -> Bytes {
    match kind {
        Kind::Pattern => name.clone(),
        Kind::Shard => match name.strip_prefix(keys.prefix()) {
            Some(rest) => Bytes::copy_from_slice(rest),
            None => name.clone(),
        },
        Kind::Channel => {
            if let Some(at) = after_db(name, KEYSPACE) {
                if name[at..].starts_with(keys.prefix()) {
                    let mut out = BytesMut::with_capacity(name.len());
                    out.put_slice(&name[..at]);
                    out.put_slice(&name[at + keys.prefix().len()..]);
                    return out.freeze();
                }
                // Not a key of this pool: a channel nothing is published to here (a key whose
                // stored name is this one is another client key).
                let mut out = BytesMut::from(&b"\0ringcache:none:"[..]);
                out.put_slice(name);
                return out.freeze();
            }
            name.clone()
        }
    }
}

/// The client's name for a channel a stripped node lists (PUBSUB CHANNELS, SHARDCHANNELS):
/// `None` for the placeholder of a name that is not this pool's.
pub(super) fn client_channel(keys: &KeyPrefix, kind: Kind, name: &[u8]) -> Option<Bytes> {
    if name.starts_with(b"\0ringcache:none:") {
        return None;
    }
    let mut out = BytesMut::with_capacity(name.len() + keys.prefix().len());
    match (kind, after_db(name, KEYSPACE)) {
        (Kind::Shard, _) => {
            out.put_slice(keys.prefix());
            out.put_slice(name);
        }
        (_, Some(at)) => {
            out.put_slice(&name[..at]);
            out.put_slice(keys.prefix());
            out.put_slice(&name[at..]);
        }
        (_, None) => out.put_slice(name),
    }
    Some(out.freeze())
}

/// A node's `message` (channel, payload) with the client's names: the key in a keyspace
/// channel, the payload (a key) of a keyevent one.
pub(super) fn renamed(keys: &KeyPrefix, channel: &[u8], payload: &[u8]) -> (Bytes, Bytes) {
    let join = |a: &[u8], b: &[u8], c: &[u8]| {
        let mut out = BytesMut::with_capacity(a.len() + b.len() + c.len());
        out.put_slice(a);
        out.put_slice(b);
        out.put_slice(c);
        out.freeze()
    };
    if let Some(at) = after_db(channel, KEYSPACE) {
        let channel = join(&channel[..at], keys.prefix(), &channel[at..]);
        return (channel, Bytes::copy_from_slice(payload));
    }
    if after_db(channel, KEYEVENT).is_some() {
        return (
            Bytes::copy_from_slice(channel),
            join(keys.prefix(), payload, b""),
        );
    }
    (
        Bytes::copy_from_slice(channel),
        Bytes::copy_from_slice(payload),
    )
}

/// A `message` (or `smessage`) frame (RESP2, as the node sent it: a request's shape).
pub(super) fn message(kind: &[u8], channel: &[u8], payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(channel.len() + payload.len() + 32);
    encode_request(&mut out, [kind, channel, payload]);
    out.freeze()
}

/// A `pmessage` frame for the client's `pattern`, if it matches the renamed `channel`.
pub(super) fn pmessage(pattern: &[u8], channel: &[u8], payload: &[u8]) -> Option<Bytes> {
    if !glob::matches(pattern, channel, false) {
        return None;
    }
    let mut out = BytesMut::with_capacity(pattern.len() + channel.len() + payload.len() + 40);
    encode_request(&mut out, [&b"pmessage"[..], pattern, channel, payload]);
    Some(out.freeze())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_both_ways() {
        let k = KeyPrefix::new(b"sess:");
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(
            node_name(&k, Kind::Channel, &b("__keyspace@0__:sess:a")),
            b("__keyspace@0__:a")
        );
        assert_eq!(
            node_name(&k, Kind::Channel, &b("__keyspace@0__:other")),
            b("\0ringcache:none:__keyspace@0__:other")
        );
        assert_eq!(
            node_name(&k, Kind::Channel, &b("__keyevent@0__:set")),
            b("__keyevent@0__:set")
        );
        assert_eq!(
            node_name(&k, Kind::Pattern, &b("__keyspace@*__:sess:*")),
            b("__keyspace@*__:sess:*")
        );
        assert_eq!(node_name(&k, Kind::Shard, &b("sess:room")), b("room"));
        assert!(is_notification(b"__keyevent@0__:del"));
        assert_eq!(
            client_channel(&k, Kind::Channel, b"__keyspace@0__:a"),
            Some(b("__keyspace@0__:sess:a"))
        );
        assert_eq!(
            client_channel(&k, Kind::Channel, b"\0ringcache:none:x"),
            None
        );
        assert_eq!(
            client_channel(&k, Kind::Shard, b"room"),
            Some(b("sess:room"))
        );
        assert!(!is_notification(b"__keyspace@0_x"));
        assert_eq!(
            renamed(&k, b"__keyspace@0__:a", b"set"),
            (b("__keyspace@0__:sess:a"), b("set"))
        );
        assert_eq!(
            renamed(&k, b"__keyevent@0__:set", b"a"),
            (b("__keyevent@0__:set"), b("sess:a"))
        );
        assert_eq!(
            &message(b"message", b"c", b"p")[..],
            b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n"
        );
        assert!(pmessage(b"__keyspace@*__:sess:*", b"__keyspace@0__:sess:a", b"set").is_some());
        assert!(pmessage(b"__keyspace@*__:user:*", b"__keyspace@0__:sess:a", b"set").is_none());
    }
}
