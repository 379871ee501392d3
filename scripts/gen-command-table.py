#!/usr/bin/env python3
"""Regenerate protocol/src/generated/ from a running Redis 7 server.

The command table (arity, flags, key positions) and the exact COMMAND INFO / COMMAND DOCS replies of
every command ringcache supports are taken from Redis itself, so redis-cli hints and client libraries
that read key positions see what they would see on Redis.

usage: scripts/gen-command-table.py [port]   (a redis-server must listen on 127.0.0.1:port, default 6399)
"""
import os
import socket
import sys

COMMANDS = """
ping echo hello auth select quit reset client
acl
del unlink exists touch type expire pexpire expireat pexpireat ttl pttl expiretime pexpiretime persist
rename renamenx copy keys scan randomkey dbsize flushdb flushall object dump restore migrate
get set setnx setex psetex getex getdel getset mget mset msetnx append strlen getrange setrange
incr decr incrby decrby incrbyfloat lcs
hset hsetnx hmset hget hmget hdel hexists hlen hkeys hvals hgetall hincrby hincrbyfloat hstrlen
hrandfield hscan
lpush rpush lpushx rpushx lpop rpop llen lrange lindex lset linsert lrem ltrim lpos lmove rpoplpush
lmpop blpop brpop blmove brpoplpush blmpop
sadd srem smembers sismember smismember scard spop srandmember smove sinter sintercard sinterstore
sunion sunionstore sdiff sdiffstore sscan
zadd zincrby zrem zcard zscore zmscore zrank zrevrank zcount zlexcount zrange zrangestore zrevrange
zrangebyscore zrevrangebyscore zrangebylex zrevrangebylex zremrangebyrank zremrangebyscore
zremrangebylex zpopmin zpopmax zmpop zrandmember zunion zinter zdiff zunionstore zinterstore
zdiffstore zintercard zscan bzpopmin bzpopmax bzmpop
setbit getbit bitcount bitpos bitop bitfield bitfield_ro
pfadd pfcount pfmerge pfdebug pfselftest
sort sort_ro substr
geoadd geodist geohash geopos geosearch geosearchstore georadius georadius_ro georadiusbymember
georadiusbymember_ro
multi exec discard watch unwatch
info command config time save bgsave lastsave replicaof slaveof role memory function shutdown slowlog monitor
wait latency
eval evalsha eval_ro evalsha_ro script fcall fcall_ro
subscribe psubscribe unsubscribe punsubscribe publish ssubscribe sunsubscribe spublish pubsub
xadd xlen xrange xrevrange xdel xtrim xsetid xread xreadgroup xgroup xack xpending xclaim xautoclaim
xinfo
""".split()

SUBCOMMANDS = {
    "acl": "cat deluser dryrun genpass getuser list load log save setuser users whoami help".split(),
    "client": "id setname getname list info kill no-evict reply unblock pause unpause help".split(),
    "command": "count info docs list getkeys getkeysandflags help".split(),
    "config": "get set resetstat rewrite help".split(),
    "object": "encoding freq idletime refcount help".split(),
    "memory": "usage malloc-stats purge help".split(),
    "latency": "doctor graph history latest reset histogram help".split(),
    "slowlog": "get len reset help".split(),
    "function": "load list delete flush dump restore stats kill help".split(),
    "script": "load exists flush kill debug help".split(),
    "pubsub": "channels numsub numpat shardchannels shardnumsub help".split(),
    "xgroup": "create destroy setid createconsumer delconsumer help".split(),
    "xinfo": "stream groups consumers help".split(),
}


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def _line(self, pos):
        while True:
            i = self.buf.find(b"\r\n", pos)
            if i >= 0:
                return i
            self._fill()

    def _skip(self, pos):
        """Return the end offset of the frame starting at pos (reading more as needed)."""
        end = self._line(pos)
        t = self.buf[pos:pos + 1]
        body = self.buf[pos + 1:end]
        nxt = end + 2
        if t in (b"+", b"-", b":", b"_", b",", b"#", b"("):
            return nxt
        if t in (b"$", b"=", b"!"):
            n = int(body)
            if n < 0:
                return nxt
            while len(self.buf) < nxt + n + 2:
                self._fill()
            return nxt + n + 2
        if t in (b"*", b"~", b">", b"%", b"|"):
            n = int(body)
            if n < 0:
                return nxt
            if t in (b"%", b"|"):
                n *= 2
            for _ in range(n):
                nxt = self._skip(nxt)
            return nxt
        raise ValueError(f"bad frame type {t!r}")

    def call_raw(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        end = self._skip(0)
        frame, self.buf = self.buf[:end], self.buf[end:]
        return frame


def strip_header(frame):
    return frame[frame.index(b"\r\n") + 2:]


def strip_docs(frame):
    # *2 / %1, then the name as a bulk string, then the doc map
    rest = strip_header(frame)
    rest = rest[rest.index(b"\r\n") + 2:]
    return rest[rest.index(b"\r\n") + 2:]


def parse_info(frame):
    """Decode the head of a COMMAND INFO entry: name, arity, flags, first, last, step."""
    lines = frame.split(b"\r\n")
    name = lines[2].decode()
    arity = int(lines[3][1:])
    nflags = int(lines[4][1:])
    flags = [lines[5 + i][1:].decode() for i in range(nflags)]
    first = int(lines[5 + nflags][1:])
    last = int(lines[6 + nflags][1:])
    step = int(lines[7 + nflags][1:])
    return name, arity, flags, first, last, step


def parse_resp(buf, pos=0):
    """Decode one RESP2 frame at pos: (value, next offset); arrays become lists, bulk strings str."""
    end = buf.index(b"\r\n", pos)
    t, body, nxt = buf[pos:pos + 1], buf[pos + 1:end], end + 2
    if t in (b"+", b"-"):
        return body.decode(), nxt
    if t == b":":
        return int(body), nxt
    if t == b"$":
        n = int(body)
        if n < 0:
            return None, nxt
        return buf[nxt:nxt + n].decode(), nxt + n + 2
    if t == b"*":
        out = []
        for _ in range(max(int(body), 0)):
            v, nxt = parse_resp(buf, nxt)
            out.append(v)
        return out, nxt
    raise ValueError(f"bad frame type {t!r}")


def pairs(lst):
    return dict(zip(lst[0::2], lst[1::2]))


KEY_FLAGS = ("RO", "RW", "OW", "RM", "ACCESS", "UPDATE", "INSERT", "DELETE", "NOT_KEY", "INCOMPLETE",
             "VARIABLE_FLAGS")

ACL_CATEGORIES = ("keyspace read write set sortedset list hash string bitmap hyperloglog geo stream pubsub "
                  "admin fast slow blocking dangerous connection transaction scripting").split()


def acl_entry(frame):
    """ACL categories (a bit per ACL_CATEGORIES entry) and key specs of a COMMAND INFO entry."""
    info, _ = parse_resp(frame)
    cats = 0
    for c in info[6]:
        cats |= 1 << ACL_CATEGORIES.index(c.lstrip("@"))
    specs = []
    for raw in info[8]:
        ks = pairs(raw)
        fl = [f.upper() for f in ks["flags"]]
        bits = " | ".join(f"KEY_{f}" for f in fl if f in KEY_FLAGS) or "0"
        bs = pairs(ks["begin_search"])
        bspec = pairs(bs["spec"]) if isinstance(bs["spec"], list) else {}
        if bs["type"] == "index":
            begin = f"Begin::Index({bspec['index']})"
        elif bs["type"] == "keyword":
            begin = f'Begin::Keyword("{bspec["keyword"].lower()}", {bspec["startfrom"]})'
        else:
            begin = "Begin::Unknown"
        fk = pairs(ks["find_keys"])
        fspec = pairs(fk["spec"]) if isinstance(fk["spec"], list) else {}
        if fk["type"] == "range":
            find = f"Find::Range {{ last: {fspec['lastkey']}, step: {fspec['keystep']}, limit: {fspec['limit']} }}"
        elif fk["type"] == "keynum":
            find = f"Find::Keynum {{ at: {fspec['keynumidx']}, first: {fspec['firstkey']}, step: {fspec['keystep']} }}"
        else:
            find = "Find::Unknown"
        specs.append(f"KeySpec {{ flags: {bits}, begin: {begin}, find: {find} }}")
    return cats, specs


def rust_bytes(b):
    out = []
    for c in b:
        if c == 0x22:
            out.append('\\"')
        elif c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x0A:
            out.append("\\n")
        else:
            out.append("\\x%02x" % c)
    return 'b"' + "".join(out) + '"'


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6399
    c2 = Conn(port)
    c3 = Conn(port)
    c3.call_raw("HELLO", "3")
    names = []
    for cmd in COMMANDS:
        names.append(cmd)
        for sub in SUBCOMMANDS.get(cmd, []):
            names.append(f"{cmd}|{sub}")
    specs, info2, info3, docs2, docs3 = [], [], [], [], []
    for name in names:
        i2 = strip_header(c2.call_raw("COMMAND", "INFO", name))
        i3 = strip_header(c3.call_raw("COMMAND", "INFO", name))
        if i2[:1] in (b"$", b"_") or i2.startswith(b"*-1"):
            sys.exit(f"redis does not know {name}")
        specs.append(parse_info(i2))
        d2 = strip_docs(c2.call_raw("COMMAND", "DOCS", name))
        d3 = strip_docs(c3.call_raw("COMMAND", "DOCS", name))
        info2.append((name, i2))
        info3.append((name, i3))
        docs2.append((name, d2))
        docs3.append((name, d3))

    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = os.path.join(here, "..", "protocol", "src", "generated")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "table.rs"), "w") as f:
        f.write("// @generated by scripts/gen-command-table.py from Redis 7's COMMAND INFO; do not edit.\n")
        f.write("use crate::table::{flags::*, CommandSpec};\n\n")
        f.write("pub(crate) static REDIS_COMMANDS: &[CommandSpec] = &[\n")
        for name, arity, flags, first, last, step in specs:
            fl = " | ".join(f.upper().replace("-", "_") for f in flags if f.upper().replace("-", "_") in KNOWN_FLAGS) or "0"
            f.write(f'    CommandSpec {{ name: "{name}", arity: {arity}, flags: {fl}, first_key: {first}, last_key: {last}, step: {step} }},\n')
        f.write("];\n")
    with open(os.path.join(out_dir, "acl.rs"), "w") as f:
        f.write("// @generated by scripts/gen-command-table.py from Redis 7's COMMAND INFO; do not edit.\n")
        f.write("// Each command's ACL categories and key specs, in the order of REDIS_COMMANDS.\n")
        f.write("#[allow(unused_imports)]\nuse crate::acl::spec::{categories::*, Begin, CommandAcl, Find, KeySpec};\n")
        f.write("#[allow(unused_imports)]\nuse crate::acl::spec::key_spec_flags::*;\n\n")
        f.write("pub(crate) static REDIS_ACL: &[CommandAcl] = &[\n")
        for name, raw in info2:
            cats, ks = acl_entry(raw)
            cl = " | ".join(c.upper() for i, c in enumerate(ACL_CATEGORIES) if cats >> i & 1) or "0"
            f.write(f'    CommandAcl {{ name: "{name}", categories: {cl}, keys: &[{", ".join(ks)}] }},\n')
        f.write("];\n")
    for fname, entries in (("info2.rs", info2), ("info3.rs", info3), ("docs2.rs", docs2), ("docs3.rs", docs3)):
        with open(os.path.join(out_dir, fname), "w") as f:
            f.write("// @generated by scripts/gen-command-table.py from Redis 7; do not edit.\n")
            f.write("&[\n")
            for name, raw in entries:
                f.write(f'    ("{name}", {rust_bytes(raw)}),\n')
            f.write("]\n")


KNOWN_FLAGS = {"WRITE", "READONLY", "DENYOOM", "ADMIN", "PUBSUB", "NOSCRIPT", "BLOCKING", "LOADING",
               "STALE", "SKIP_MONITOR", "SKIP_SLOWLOG", "FAST", "NO_AUTH", "MAY_REPLICATE", "NO_MULTI",
               "MOVABLEKEYS", "ALLOW_BUSY", "NO_MANDATORY_KEYS"}

if __name__ == "__main__":
    main()
