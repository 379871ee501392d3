#![allow(clippy::unwrap_used)]
//! HyperLogLog commands: Redis 7.0's replies, and its exact string representation (the bytes
//! below are what redis-server 7.0.15 stores), so HLLs move between Redis and the node.

use tests::*;

const INVALIDOBJ: &str = "INVALIDOBJ Corrupted HLL object detected";
const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";

/// `PFADD h a b c` on Redis 7.0.15: sparse, cached cardinality stale.
const ABC: &[u8] =
    b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x60\xf3\x80\x50\xb1\x84\x4b\xfb\x80\x42\x5a";

fn add_range(c: &mut Raw, key: &str, from: usize, to: usize) {
    for start in (from..to).step_by(1000) {
        let mut args = vec!["PFADD".to_string(), key.to_string()];
        args.extend((start..to.min(start + 1000)).map(|j| format!("e{j}")));
        c.cmd(&args);
    }
}

#[test]
fn pfadd_pfcount_and_the_representation() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["PFADD", "empty"]), int(1));
    assert_eq!(
        c.cmd(&["GET", "empty"]),
        bulk(b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x7f\xff")
    );
    assert_eq!(c.cmd(&["PFCOUNT", "empty"]), int(0));
    assert_eq!(c.cmd(&["PFADD", "empty"]), int(0));

    assert_eq!(c.cmd(&["PFADD", "h", "a", "b", "c"]), int(1));
    assert_eq!(c.cmd(&["GET", "h"]), bulk(ABC));
    assert_eq!(c.cmd(&["PFADD", "h", "a", "b", "c"]), int(0));
    assert_eq!(
        c.cmd(&["PFDEBUG", "DECODE", "h"]),
        bulk("Z:8436 v:1,1 Z:4274 v:2,1 Z:3068 v:1,1 Z:603")
    );
    assert_eq!(c.cmd(&["PFCOUNT", "h"]), int(3));
    // The count is cached in the header, little endian, top bit clear.
    assert_eq!(
        c.cmd(&["GETRANGE", "h", "8", "15"]),
        bulk(b"\x03\0\0\0\0\0\0\0")
    );
    assert_eq!(c.cmd(&["PFADD", "h", "a"]), int(0));
    assert_eq!(c.cmd(&["GETRANGE", "h", "15", "15"]), bulk(b"\x00"));
    assert_eq!(c.cmd(&["PFADD", "h", "1", "2", "3"]), int(1));
    assert_eq!(c.cmd(&["GETRANGE", "h", "15", "15"]), bulk(b"\x80"));
    assert_eq!(c.cmd(&["PFCOUNT", "h"]), int(6));
    assert_eq!(c.cmd(&["PFADD", "h", ""]), int(1));
    assert_eq!(c.cmd(&["PFCOUNT", "missing"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "missing"]), int(0));

    // Redis's bytes, stored with SET, count as in Redis; the deadline survives PFADD.
    assert_eq!(c.cmd(&[&b"SET"[..], b"copy", ABC, b"EX", b"100"]), ok());
    assert_eq!(c.cmd(&["PFCOUNT", "copy"]), int(3));
    assert_eq!(c.cmd(&["PFADD", "copy", "d"]), int(1));
    assert_eq!(c.cmd(&["PFCOUNT", "copy"]), int(4));
    assert!(c.cmd(&["TTL", "copy"]).int() > 0);

    assert_eq!(c.cmd(&["PFADD"]), wrong_args("pfadd"));
    assert_eq!(c.cmd(&["PFCOUNT"]), wrong_args("pfcount"));
}

#[test]
fn counts_match_redis_through_promotion() {
    let s = start_target(&[]);
    let mut c = s.raw();
    add_range(&mut c, "k", 0, 200);
    assert_eq!(c.cmd(&["STRLEN", "k"]), int(513));
    assert_eq!(c.cmd(&["PFCOUNT", "k"]), int(200));
    add_range(&mut c, "k", 200, 1000);
    assert_eq!(c.cmd(&["PFDEBUG", "ENCODING", "k"]), status("sparse"));
    assert_eq!(c.cmd(&["STRLEN", "k"]), int(1906));
    assert_eq!(c.cmd(&["PFCOUNT", "k"]), int(1008));
    add_range(&mut c, "k", 1000, 10000);
    assert_eq!(c.cmd(&["PFDEBUG", "ENCODING", "k"]), status("dense"));
    assert_eq!(c.cmd(&["STRLEN", "k"]), int(12304));
    assert_eq!(c.cmd(&["PFCOUNT", "k"]), int(9973));
    add_range(&mut c, "k", 10000, 100000);
    assert_eq!(c.cmd(&["PFCOUNT", "k"]), int(100853));

    // A lower hll-sparse-max-bytes turns HLLs dense sooner.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "hll-sparse-max-bytes", "100"]),
        ok()
    );
    add_range(&mut c, "small", 0, 200);
    assert_eq!(c.cmd(&["PFDEBUG", "ENCODING", "small"]), status("dense"));
    assert_eq!(c.cmd(&["PFCOUNT", "small"]), int(200));
}

#[test]
fn pfmerge_and_pfcount_of_several_keys() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["PFADD", "h1{t}", "a", "b", "c"]), int(1));
    assert_eq!(c.cmd(&["PFADD", "h2{t}", "b", "c", "d"]), int(1));
    assert_eq!(c.cmd(&["PFADD", "h3{t}", "c", "d", "e"]), int(1));
    assert_eq!(
        c.cmd(&["PFCOUNT", "h1{t}", "h2{t}", "h3{t}", "none{t}"]),
        int(5)
    );
    assert_eq!(c.cmd(&["PFMERGE", "m{t}", "h1{t}", "h2{t}", "h3{t}"]), ok());
    assert_eq!(c.cmd(&["PFCOUNT", "m{t}"]), int(5));
    assert_eq!(c.cmd(&["PFDEBUG", "ENCODING", "m{t}"]), status("sparse"));
    // The destination is an input too.
    assert_eq!(c.cmd(&["PFADD", "m{t}", "z"]), int(1));
    assert_eq!(c.cmd(&["PFMERGE", "m{t}", "h1{t}"]), ok());
    assert_eq!(c.cmd(&["PFCOUNT", "m{t}"]), int(6));
    // No input at all still creates an empty HLL.
    assert_eq!(c.cmd(&["PFMERGE", "e{t}"]), ok());
    assert_eq!(c.cmd(&["PFCOUNT", "e{t}"]), int(0));
    // A dense input makes a dense result.
    add_range(&mut c, "d{t}", 0, 5000);
    assert_eq!(c.cmd(&["PFMERGE", "md{t}", "h1{t}", "d{t}"]), ok());
    assert_eq!(c.cmd(&["PFDEBUG", "ENCODING", "md{t}"]), status("dense"));
    let merged = c.cmd(&["PFCOUNT", "md{t}"]).int();
    assert_eq!(c.cmd(&["PFCOUNT", "h1{t}", "d{t}"]).int(), merged);
    assert!((4900..5100).contains(&merged), "{merged}");

    assert_eq!(c.cmd(&["SET", "str{t}", "bar"]), ok());
    assert_eq!(c.cmd(&["PFMERGE", "m{t}", "str{t}"]), err(NOT_HLL));
    assert_eq!(c.cmd(&["PFMERGE", "str{t}", "h1{t}"]), err(NOT_HLL));
    assert_eq!(c.cmd(&["PFCOUNT", "h1{t}", "str{t}"]), err(NOT_HLL));
    assert_eq!(c.cmd(&["HSET", "hash{t}", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["PFMERGE", "m{t}", "hash{t}"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["PFCOUNT", "h1{t}", "hash{t}"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["PFMERGE"]), wrong_args("pfmerge"));
}

#[test]
fn wrong_types_and_corrupt_hlls() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "str", "hello world, not an HLL"]), ok());
    assert_eq!(c.cmd(&["PFADD", "str", "a"]), err(NOT_HLL));
    assert_eq!(c.cmd(&["PFCOUNT", "str"]), err(NOT_HLL));
    assert_eq!(c.cmd(&["HSET", "hash", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["PFADD", "hash", "a"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["PFCOUNT", "hash"]), err(WRONGTYPE));

    // Bytes after the last register.
    assert_eq!(c.cmd(&["PFADD", "h", "a", "b", "c"]), int(1));
    assert_eq!(c.cmd(&["APPEND", "h", "hello"]), int(32));
    assert_eq!(c.cmd(&["PFCOUNT", "h"]), err(INVALIDOBJ));
    // PFADD only walks to the register it sets.
    assert_eq!(c.cmd(&["PFADD", "h", "zzz"]), int(1));
    assert_eq!(c.cmd(&["PFDEBUG", "TODENSE", "h"]), err(INVALIDOBJ));
    // A run past the last register (the XZERO of 603 made 16383 long).
    assert_eq!(c.cmd(&["PFADD", "r", "a", "b", "c"]), int(1));
    assert_eq!(
        c.cmd(&[&b"SETRANGE"[..], b"r", b"25", b"\x7f\xfe"]),
        int(27)
    );
    assert_eq!(c.cmd(&["PFCOUNT", "r"]), err(INVALIDOBJ));
    assert_eq!(c.cmd(&["PFCOUNT", "r", "h"]), err(INVALIDOBJ));
    // Broken magic, unknown encoding, dense of the wrong length.
    assert_eq!(c.cmd(&["PFADD", "m", "a"]), int(1));
    assert_eq!(c.cmd(&["SETRANGE", "m", "0", "0123"]), int(21));
    assert_eq!(c.cmd(&["PFCOUNT", "m"]), err(NOT_HLL));
    assert_eq!(c.cmd(&["PFADD", "e", "a"]), int(1));
    assert_eq!(c.cmd(&["SETRANGE", "e", "4", "x"]), int(21));
    assert_eq!(c.cmd(&["PFCOUNT", "e"]), err(NOT_HLL));
    assert_eq!(c.cmd(&["PFADD", "d", "a"]), int(1));
    assert_eq!(c.cmd(&["SETRANGE", "d", "4", "\x00"]), int(21));
    assert_eq!(c.cmd(&["PFCOUNT", "d"]), err(NOT_HLL));
    assert_eq!(c.cmd(&["PFDEBUG", "GETREG", "d"]), err(NOT_HLL));
    // A valid cached count is answered without looking at the registers, as Redis does.
    assert_eq!(c.cmd(&["PFADD", "c", "a", "b"]), int(1));
    assert_eq!(c.cmd(&["PFCOUNT", "c"]), int(2));
    assert_eq!(c.cmd(&["APPEND", "c", "junk"]), int(28));
    assert_eq!(c.cmd(&["PFCOUNT", "c"]), int(2));
}

#[test]
fn pfdebug_and_pfselftest() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["PFADD", "h", "a", "b", "c"]), int(1));
    assert_eq!(c.cmd(&["PFDEBUG", "encoding", "h"]), status("sparse"));
    let regs = c.cmd(&["PFDEBUG", "GETREG", "h"]).items();
    assert_eq!(regs.len(), 16384);
    // Registers as DECODE showed them: 8436 → 1, 12711 → 2, 15780 → 1.
    assert_eq!(regs[8436], int(1));
    assert_eq!(regs[12711], int(2));
    assert_eq!(regs[15780], int(1));
    let set = regs.iter().filter(|r| **r != int(0)).count();
    assert_eq!(set, 3);
    // GETREG turned it dense.
    assert_eq!(c.cmd(&["PFDEBUG", "ENCODING", "h"]), status("dense"));
    assert_eq!(c.cmd(&["STRLEN", "h"]), int(12304));
    assert_eq!(c.cmd(&["PFCOUNT", "h"]), int(3));
    assert_eq!(
        c.cmd(&["PFDEBUG", "DECODE", "h"]),
        err("ERR HLL encoding is not sparse")
    );
    assert_eq!(c.cmd(&["PFADD", "s", "x"]), int(1));
    assert_eq!(c.cmd(&["PFDEBUG", "TODENSE", "s"]), int(1));
    assert_eq!(c.cmd(&["PFDEBUG", "TODENSE", "s"]), int(0));
    assert_eq!(c.cmd(&["PFCOUNT", "s"]), int(1));

    assert_eq!(
        c.cmd(&["PFDEBUG", "GETREG", "missing"]),
        err("ERR The specified key does not exist")
    );
    assert_eq!(
        c.cmd(&["PFDEBUG", "nosuch", "missing"]),
        err("ERR The specified key does not exist")
    );
    assert_eq!(
        c.cmd(&["PFDEBUG", "Nosuch", "h"]),
        err("ERR Unknown PFDEBUG subcommand 'Nosuch'")
    );
    assert_eq!(c.cmd(&["PFDEBUG", "GETREG"]), wrong_args("pfdebug"));
    assert_eq!(
        c.cmd(&["PFDEBUG", "GETREG", "h", "x"]),
        wrong_args("pfdebug")
    );
    assert_eq!(c.cmd(&["HSET", "hash", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["PFDEBUG", "ENCODING", "hash"]), err(WRONGTYPE));

    assert_eq!(c.cmd(&["PFSELFTEST"]), ok());
    assert_eq!(c.cmd(&["PFSELFTEST", "x"]), wrong_args("pfselftest"));
}
