#![allow(clippy::unwrap_used)]
//! Bitmap commands (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD, BITFIELD_RO): replies and
//! error texts as Redis 7.0 gives them, RESP2 and RESP3.

use tests::*;

const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const BAD_TYPE: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

fn set_bytes(c: &mut Raw, key: &str, value: &[u8]) {
    assert_eq!(c.cmd(&[&b"SET"[..], key.as_bytes(), value]), ok());
}

#[test]
fn setbit_getbit() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SETBIT", "b", "7", "1"]), int(0));
    assert_eq!(c.cmd(&["GET", "b"]), bulk(b"\x01"));
    assert_eq!(c.cmd(&["SETBIT", "b", "7", "1"]), int(1));
    assert_eq!(c.cmd(&["SETBIT", "b", "7", "0"]), int(1));
    assert_eq!(c.cmd(&["SETBIT", "b", "0", "1"]), int(0));
    // Growth pads with zero bytes.
    assert_eq!(c.cmd(&["SETBIT", "b", "33", "1"]), int(0));
    assert_eq!(c.cmd(&["GET", "b"]), bulk(b"\x80\x00\x00\x00\x40"));
    assert_eq!(c.cmd(&["SETBIT", "b", "100", "0"]), int(0));
    assert_eq!(c.cmd(&["STRLEN", "b"]), int(13));
    assert_eq!(c.cmd(&["GETBIT", "b", "0"]), int(1));
    assert_eq!(c.cmd(&["GETBIT", "b", "1"]), int(0));
    assert_eq!(c.cmd(&["GETBIT", "b", "33"]), int(1));
    assert_eq!(c.cmd(&["GETBIT", "b", "100000"]), int(0));
    assert_eq!(c.cmd(&["GETBIT", "missing", "3"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "missing"]), int(0));
    // Bits of ordinary strings, most significant first.
    set_bytes(&mut c, "s", b"`");
    assert_eq!(c.cmd(&["GETBIT", "s", "1"]), int(1));
    assert_eq!(c.cmd(&["GETBIT", "s", "2"]), int(1));
    assert_eq!(c.cmd(&["GETBIT", "s", "3"]), int(0));

    assert_eq!(c.cmd(&["SETBIT", "b", "-1", "1"]), err(BAD_OFFSET));
    assert_eq!(c.cmd(&["SETBIT", "b", "x", "1"]), err(BAD_OFFSET));
    assert_eq!(c.cmd(&["SETBIT", "b", "4294967296", "1"]), err(BAD_OFFSET));
    assert_eq!(c.cmd(&["GETBIT", "b", "4294967296"]), err(BAD_OFFSET));
    assert_eq!(c.cmd(&["GETBIT", "b", "-1"]), err(BAD_OFFSET));
    let bad_bit = err("ERR bit is not an integer or out of range");
    assert_eq!(c.cmd(&["SETBIT", "b", "1", "2"]), bad_bit);
    assert_eq!(c.cmd(&["SETBIT", "b", "1", "-1"]), bad_bit);
    assert_eq!(c.cmd(&["SETBIT", "b", "1", "x"]), bad_bit);
    assert_eq!(c.cmd(&["SETBIT", "n", "1", "x"]), bad_bit);
    assert_eq!(c.cmd(&["EXISTS", "n"]), int(0));
    assert_eq!(c.cmd(&["SETBIT", "b", "1"]), wrong_args("setbit"));
    assert_eq!(c.cmd(&["GETBIT", "b"]), wrong_args("getbit"));

    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["SETBIT", "h", "1", "1"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["GETBIT", "h", "1"]), err(WRONGTYPE));
}

#[test]
fn setbit_keeps_the_deadline() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "b", "x", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["SETBIT", "b", "100", "1"]), int(0));
    let ttl = c.cmd(&["TTL", "b"]).int();
    assert!((1..=100).contains(&ttl), "{ttl}");
}

#[test]
fn bitcount_ranges() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["BITCOUNT", "missing"]), int(0));
    // A missing key answers 0 whatever its arguments.
    assert_eq!(c.cmd(&["BITCOUNT", "missing", "0"]), int(0));
    assert_eq!(c.cmd(&["BITCOUNT", "missing", "0", "1", "bit"]), int(0));
    set_bytes(&mut c, "s", b"foobar");
    assert_eq!(c.cmd(&["BITCOUNT", "s"]), int(26));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "0", "0"]), int(4));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "1", "1"]), int(6));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "1", "1", "BYTE"]), int(6));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "5", "30", "BIT"]), int(17));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "1", "-2"]), int(18));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "-2", "1"]), int(0));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "0", "1000"]), int(26));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "-1000", "-1"]), int(26));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "-6", "-7"]), int(0));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "10", "-34", "bit"]), int(4));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "0", "-1", "bit"]), int(26));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "0", "4294967296"]), int(26));
    // start > end with both negative answers 0 before the unit is looked at.
    assert_eq!(c.cmd(&["BITCOUNT", "s", "-1", "-2", "nonsense"]), int(0));
    set_bytes(&mut c, "e", b"");
    assert_eq!(c.cmd(&["BITCOUNT", "e", "0", "-1"]), int(0));
    // Long strings (every popcount path).
    set_bytes(&mut c, "ff", &[0xff; 1000]);
    assert_eq!(c.cmd(&["BITCOUNT", "ff"]), int(8000));
    assert_eq!(c.cmd(&["BITCOUNT", "ff", "3", "-5", "bit"]), int(7993));

    assert_eq!(c.cmd(&["BITCOUNT", "s", "0"]), err(SYNTAX));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "0", "1", "bits"]), err(SYNTAX));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "0", "1", "bit", "x"]), err(SYNTAX));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "a", "1"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["BITCOUNT", "s", "0", "1.5"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["BITCOUNT"]), wrong_args("bitcount"));
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["BITCOUNT", "h"]), err(WRONGTYPE));
}

#[test]
fn bitpos_ranges() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["BITPOS", "missing", "0"]), int(0));
    assert_eq!(c.cmd(&["BITPOS", "missing", "1"]), int(-1));
    assert_eq!(c.cmd(&["BITPOS", "missing", "1", "x"]), int(-1));
    set_bytes(&mut c, "s", b"\xff\xf0\x00");
    assert_eq!(c.cmd(&["BITPOS", "s", "0"]), int(12));
    assert_eq!(c.cmd(&["BITPOS", "s", "1"]), int(0));
    assert_eq!(c.cmd(&["BITPOS", "s", "0", "2", "-1", "byte"]), int(16));
    assert_eq!(c.cmd(&["BITPOS", "s", "1", "7", "15", "bit"]), int(7));
    assert_eq!(c.cmd(&["BITPOS", "s", "1", "12", "-1", "BIT"]), int(-1));
    set_bytes(&mut c, "s", b"\xff\xff\xff");
    // All ones: the first clear bit is past the end, unless an end was given.
    assert_eq!(c.cmd(&["BITPOS", "s", "0"]), int(24));
    assert_eq!(c.cmd(&["BITPOS", "s", "0", "1"]), int(24));
    // Without an end the unit is not an option: it is read as the end.
    assert_eq!(c.cmd(&["BITPOS", "s", "0", "3", "bit"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["BITPOS", "s", "0", "0", "-1"]), int(-1));
    assert_eq!(c.cmd(&["BITPOS", "s", "0", "0", "-1", "bit"]), int(-1));
    set_bytes(&mut c, "s", b"\x00\xff\x00");
    assert_eq!(c.cmd(&["BITPOS", "s", "1", "2", "200"]), int(-1));
    assert_eq!(c.cmd(&["BITPOS", "s", "0", "1", "1"]), int(-1));
    assert_eq!(c.cmd(&["BITPOS", "s", "0", "8", "8", "bit"]), int(-1));
    assert_eq!(c.cmd(&["BITPOS", "s", "1", "8", "8", "bit"]), int(8));
    assert_eq!(c.cmd(&["BITPOS", "s", "1", "-2"]), int(8));
    assert_eq!(c.cmd(&["BITPOS", "s", "1", "5", "3"]), int(-1));
    set_bytes(&mut c, "e", b"");
    assert_eq!(c.cmd(&["BITPOS", "e", "0"]), int(-1));
    assert_eq!(c.cmd(&["BITPOS", "e", "1"]), int(-1));
    // A 1 far into a long run of zero bytes.
    let mut long = vec![0u8; 5000];
    long[4321] = 0x10;
    set_bytes(&mut c, "long", &long);
    assert_eq!(c.cmd(&["BITPOS", "long", "1"]), int(4321 * 8 + 3));
    assert_eq!(
        c.cmd(&["BITPOS", "long", "1", "3", "34570", "bit"]),
        int(-1)
    );
    assert_eq!(
        c.cmd(&["BITPOS", "long", "1", "3", "34571", "bit"]),
        int(34571)
    );
    assert_eq!(
        c.cmd(&["BITPOS", "long", "0", "34568", "34571", "bit"]),
        int(34568)
    );
    assert_eq!(
        c.cmd(&["BITPOS", "long", "1", "34572", "-1", "bit"]),
        int(-1)
    );

    let must = err("ERR The bit argument must be 1 or 0.");
    assert_eq!(c.cmd(&["BITPOS", "s", "2"]), must);
    assert_eq!(c.cmd(&["BITPOS", "missing", "2"]), must);
    assert_eq!(c.cmd(&["BITPOS", "s", "x"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["BITPOS", "s", "1", "x"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["BITPOS", "s", "1", "0", "x"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["BITPOS", "s", "1", "0", "1", "x"]), err(SYNTAX));
    assert_eq!(
        c.cmd(&["BITPOS", "s", "1", "0", "1", "bit", "x"]),
        err(SYNTAX)
    );
    assert_eq!(c.cmd(&["BITPOS", "s"]), wrong_args("bitpos"));
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["BITPOS", "h", "1"]), err(WRONGTYPE));
}

#[test]
fn bitop_and_or_xor_not() {
    let s = start_target(&[]);
    let mut c = s.raw();
    set_bytes(&mut c, "a{t}", b"\x01\x02\xff\xff");
    set_bytes(&mut c, "b{t}", b"\x01\x02\xff");
    assert_eq!(c.cmd(&["BITOP", "AND", "r{t}", "a{t}", "b{t}"]), int(4));
    assert_eq!(c.cmd(&["GET", "r{t}"]), bulk(b"\x01\x02\xff\x00"));
    assert_eq!(c.cmd(&["BITOP", "or", "r{t}", "a{t}", "b{t}"]), int(4));
    assert_eq!(c.cmd(&["GET", "r{t}"]), bulk(b"\x01\x02\xff\xff"));
    assert_eq!(c.cmd(&["BITOP", "Xor", "r{t}", "a{t}", "b{t}"]), int(4));
    assert_eq!(c.cmd(&["GET", "r{t}"]), bulk(b"\x00\x00\x00\xff"));
    assert_eq!(c.cmd(&["BITOP", "NOT", "r{t}", "b{t}"]), int(3));
    assert_eq!(c.cmd(&["GET", "r{t}"]), bulk(b"\xfe\xfd\x00"));
    // Missing keys are zero streams; a shorter first key is padded too.
    assert_eq!(c.cmd(&["BITOP", "and", "r{t}", "none{t}", "a{t}"]), int(4));
    assert_eq!(c.cmd(&["GET", "r{t}"]), bulk(b"\x00\x00\x00\x00"));
    assert_eq!(c.cmd(&["BITOP", "and", "r{t}", "b{t}", "a{t}"]), int(4));
    assert_eq!(c.cmd(&["GET", "r{t}"]), bulk(b"\x01\x02\xff\x00"));
    assert_eq!(
        c.cmd(&["BITOP", "or", "r{t}", "none{t}", "b{t}", "none2{t}"]),
        int(3)
    );
    assert_eq!(c.cmd(&["GET", "r{t}"]), bulk(b"\x01\x02\xff"));
    // The destination may be a source; the result drops its deadline.
    assert_eq!(c.cmd(&["EXPIRE", "a{t}", "100"]), int(1));
    assert_eq!(c.cmd(&["BITOP", "not", "a{t}", "a{t}"]), int(4));
    assert_eq!(c.cmd(&["GET", "a{t}"]), bulk(b"\xfe\xfd\x00\x00"));
    assert_eq!(c.cmd(&["TTL", "a{t}"]), int(-1));
    // An empty result deletes the destination.
    assert_eq!(c.cmd(&["BITOP", "or", "r{t}", "none{t}"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "r{t}"]), int(0));
    set_bytes(&mut c, "e{t}", b"");
    assert_eq!(c.cmd(&["BITOP", "not", "r{t}", "e{t}"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "r{t}"]), int(0));
    // Long inputs (word-wise paths).
    let x: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let y: Vec<u8> = (0..260u32).map(|i| (i * 13 + 5) as u8).collect();
    set_bytes(&mut c, "x{t}", &x);
    set_bytes(&mut c, "y{t}", &y);
    assert_eq!(c.cmd(&["BITOP", "xor", "r{t}", "x{t}", "y{t}"]), int(300));
    let want: Vec<u8> = (0..300)
        .map(|i| x[i] ^ y.get(i).copied().unwrap_or(0))
        .collect();
    assert_eq!(c.cmd(&["GET", "r{t}"]), bulk(&want));

    assert_eq!(c.cmd(&["BITOP", "nand", "r{t}", "a{t}"]), err(SYNTAX));
    assert_eq!(
        c.cmd(&["BITOP", "not", "r{t}", "a{t}", "b{t}"]),
        err("ERR BITOP NOT must be called with a single source key.")
    );
    assert_eq!(c.cmd(&["BITOP", "and", "r{t}"]), wrong_args("bitop"));
    assert_eq!(c.cmd(&["HSET", "h{t}", "f", "v"]), int(1));
    assert_eq!(
        c.cmd(&["BITOP", "and", "r{t}", "a{t}", "h{t}"]),
        err(WRONGTYPE)
    );
    // A hash destination is replaced.
    assert_eq!(c.cmd(&["BITOP", "or", "h{t}", "b{t}"]), int(3));
    assert_eq!(c.cmd(&["TYPE", "h{t}"]), status("string"));
}

#[test]
fn bitfield_get_set_incrby() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["BITFIELD", "bf", "SET", "u8", "0", "255", "GET", "u8", "0"]),
        arr(vec![int(0), int(255)])
    );
    assert_eq!(
        c.cmd(&["BITFIELD", "bf", "INCRBY", "u8", "0", "10", "GET", "i8", "0"]),
        arr(vec![int(9), int(9)])
    );
    assert_eq!(
        c.cmd(&["BITFIELD", "bf", "overflow", "sat", "incrby", "u8", "0", "300"]),
        arr(vec![int(255)])
    );
    assert_eq!(
        c.cmd(&["BITFIELD", "bf", "OVERFLOW", "FAIL", "INCRBY", "u8", "0", "1", "GET", "u8", "0"]),
        arr(vec![nil(), int(255)])
    );
    assert_eq!(
        c.cmd(&["BITFIELD", "bf", "GET", "i8", "0"]),
        arr(vec![int(-1)])
    );
    // `#N` is the N-th field of the type's width.
    assert_eq!(
        c.cmd(&["BITFIELD", "f", "SET", "i5", "#2", "-7", "GET", "i5", "10", "GET", "u5", "10"]),
        arr(vec![int(0), int(-7), int(25)])
    );
    assert_eq!(c.cmd(&["GET", "f"]), bulk(b"\x00\x32"));
    // Signed wrap and saturation at 64 bits.
    assert_eq!(
        c.cmd(&[
            "BITFIELD",
            "w",
            "SET",
            "i64",
            "0",
            "9223372036854775807",
            "INCRBY",
            "i64",
            "0",
            "1",
            "OVERFLOW",
            "SAT",
            "INCRBY",
            "i64",
            "0",
            "-1",
            "INCRBY",
            "i64",
            "0",
            "10",
        ]),
        arr(vec![
            int(0),
            int(i64::MIN),
            int(i64::MIN),
            int(i64::MIN + 10)
        ])
    );
    assert_eq!(
        c.cmd(&["BITFIELD", "w", "SET", "u63", "0", "-1", "GET", "u63", "0"]),
        arr(vec![int((1 << 62) + 5), int(i64::MAX)])
    );
    assert_eq!(
        c.cmd(&[
            "BITFIELD", "w", "OVERFLOW", "SAT", "SET", "i8", "0", "200", "SET", "u4", "0", "-3"
        ]),
        arr(vec![int(-1), int(7)])
    );
    // The string grows to the highest field written; GETs past the end read zeros.
    assert_eq!(
        c.cmd(&["BITFIELD", "g", "SET", "u1", "100", "1", "GET", "u8", "1000"]),
        arr(vec![int(0), int(0)])
    );
    assert_eq!(c.cmd(&["STRLEN", "g"]), int(13));
    // A write that fails its OVERFLOW check still creates the key, as in Redis.
    assert_eq!(
        c.cmd(&["BITFIELD", "n", "OVERFLOW", "FAIL", "INCRBY", "u2", "100", "5"]),
        arr(vec![nil()])
    );
    assert_eq!(c.cmd(&["STRLEN", "n"]), int(13));
    assert_eq!(c.cmd(&["BITFIELD", "none"]), arr(vec![]));
    assert_eq!(c.cmd(&["EXISTS", "none"]), int(0));
    assert_eq!(
        c.cmd(&["BITFIELD", "none", "GET", "u8", "0"]),
        arr(vec![int(0)])
    );
    assert_eq!(c.cmd(&["EXISTS", "none"]), int(0));
    assert_eq!(
        c.cmd(&["BITFIELD_RO", "bf", "GET", "u4", "0", "GET", "i4", "#1"]),
        arr(vec![int(15), int(-1)])
    );
    assert_eq!(c.cmd(&["BITFIELD_RO", "bf"]), arr(vec![]));

    // RESP3: a failed write is a null.
    let mut c3 = s.raw();
    c3.hello3(&[]);
    assert_eq!(
        c3.cmd_raw(&[
            "BITFIELD", "bf", "OVERFLOW", "FAIL", "INCRBY", "u8", "0", "1", "GET", "u2", "0"
        ]),
        b"*2\r\n_\r\n:3\r\n"
    );
    assert_eq!(
        c.cmd_raw(&["BITFIELD", "bf", "OVERFLOW", "FAIL", "INCRBY", "u8", "0", "1"]),
        b"*1\r\n$-1\r\n"
    );
}

#[test]
fn bitfield_errors() {
    let s = start_target(&[]);
    let mut c = s.raw();
    for t in ["u64", "i65", "I8", "u0", "x8", "u", "i-1", ""] {
        assert_eq!(
            c.cmd(&["BITFIELD", "k", "GET", t, "0"]),
            err(BAD_TYPE),
            "{t}"
        );
    }
    assert_eq!(
        c.cmd(&["BITFIELD", "k", "GET", "u8", "-1"]),
        err(BAD_OFFSET)
    );
    assert_eq!(
        c.cmd(&["BITFIELD", "k", "GET", "u8", "#x"]),
        err(BAD_OFFSET)
    );
    assert_eq!(c.cmd(&["BITFIELD", "k", "GET", "u8", "#"]), err(BAD_OFFSET));
    assert_eq!(
        c.cmd(&["BITFIELD", "k", "SET", "u8", "4294967296", "1"]),
        err(BAD_OFFSET)
    );
    assert_eq!(
        c.cmd(&["BITFIELD", "k", "SET", "u8", "#536870912", "1"]),
        err(BAD_OFFSET)
    );
    assert_eq!(
        c.cmd(&["BITFIELD", "k", "SET", "u8", "0", "x"]),
        err(NOT_INTEGER)
    );
    assert_eq!(c.cmd(&["BITFIELD", "k", "INCRBY", "u8", "0"]), err(SYNTAX));
    assert_eq!(c.cmd(&["BITFIELD", "k", "GET", "u8"]), err(SYNTAX));
    assert_eq!(c.cmd(&["BITFIELD", "k", "FOO", "u8", "0"]), err(SYNTAX));
    assert_eq!(c.cmd(&["BITFIELD", "k", "OVERFLOW"]), err(SYNTAX));
    assert_eq!(
        c.cmd(&["BITFIELD", "k", "OVERFLOW", "up", "GET", "u8", "0"]),
        err("ERR Invalid OVERFLOW type specified")
    );
    let ro = err("ERR BITFIELD_RO only supports the GET subcommand");
    assert_eq!(
        c.cmd(&["BITFIELD_RO", "k", "GET", "u8", "0", "SET", "u8", "0", "1"]),
        ro
    );
    assert_eq!(c.cmd(&["BITFIELD_RO", "k", "INCRBY", "u8", "0", "1"]), ro);
    // Argument errors come before BITFIELD_RO's and before the key's type.
    assert_eq!(
        c.cmd(&["BITFIELD_RO", "k", "SET", "u8", "0", "x"]),
        err(NOT_INTEGER)
    );
    assert_eq!(c.cmd(&["EXISTS", "k"]), int(0));
    assert_eq!(c.cmd(&["BITFIELD"]), wrong_args("bitfield"));
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["BITFIELD", "h", "GET", "u8", "0"]), err(WRONGTYPE));
    assert_eq!(
        c.cmd(&["BITFIELD", "h", "SET", "u8", "0", "1"]),
        err(WRONGTYPE)
    );
    assert_eq!(
        c.cmd(&["BITFIELD_RO", "h", "GET", "u8", "0"]),
        err(WRONGTYPE)
    );
    assert_eq!(c.cmd(&["BITFIELD", "h", "GET", "u8", "x"]), err(BAD_OFFSET));
}
