use super::{error_of, eval, hex, raw_error_of};

fn packed(code: &str) -> String {
    hex(&eval::<mlua::BString>(code))
}

#[test]
fn numbers_pick_the_smallest_encoding() {
    assert_eq!(packed("return cmsgpack.pack(0.1)"), "cb3fb999999999999a");
    assert_eq!(
        packed("return cmsgpack.pack(-1099511627776)"),
        "d3ffffff0000000000"
    );
    assert_eq!(packed("return cmsgpack.pack(1.5)"), "ca3fc00000");
    assert_eq!(
        packed("return cmsgpack.pack(1, 127, 128, 256, 65536, 2^32)"),
        "017fcc80cd0100ce00010000cf0000000100000000"
    );
    assert_eq!(
        packed("return cmsgpack.pack(-1, -32, -33, -129, -32769, -2^31 - 1)"),
        "ffe0d0dfd1ff7fd2ffff7fffd3ffffffff7fffffff"
    );
    // Integral floats are integers; NaN is a double, infinity a float.
    assert_eq!(packed("return cmsgpack.pack(3.0, 1/0)"), "03ca7f800000");
    assert_eq!(
        packed("return cmsgpack.pack(2^63, 2^63 + 2^20)"),
        "ca5f000000cb43e0000000000200"
    );
}

#[test]
fn strings_tables_and_other_values() {
    assert_eq!(
        packed("return cmsgpack.pack('abc', true, false, nil, print)"),
        "a3616263c3c2c0c0"
    );
    assert_eq!(
        packed("return cmsgpack.pack(string.rep('x', 40))"),
        format!("d928{}", "78".repeat(40))
    );
    assert_eq!(
        packed("return cmsgpack.pack(string.rep('x', 300)):sub(1, 3)"),
        "da012c"
    );
    assert_eq!(
        packed("return cmsgpack.pack(string.rep('x', 70000)):sub(1, 5)"),
        "db00011170"
    );
    assert_eq!(packed("return cmsgpack.pack({1, 2, 3})"), "93010203");
    assert_eq!(packed("return cmsgpack.pack({})"), "90");
    assert_eq!(packed("return cmsgpack.pack({a = 1})"), "81a16101");
    // A hole makes a map.
    assert_eq!(
        packed("return cmsgpack.pack({[1] = 1, [3] = 3}):sub(1, 1)"),
        "82"
    );
    assert_eq!(
        packed("local t = {} for i = 1, 20 do t[i] = i end return cmsgpack.pack(t):sub(1, 3)"),
        "dc0014"
    );
}

#[test]
fn cycles_end_at_sixteen_levels() {
    let r: (String, bool) = eval(
        "local a = {} a.x = a \
         local s = cmsgpack.pack(a) \
         local h = '' for i = 1, #s do h = h .. string.format('%02x', s:byte(i)) end \
         local t = cmsgpack.unpack(s) \
         for i = 1, 15 do t = t.x end \
         return h, t.x == nil",
    );
    assert_eq!(r.0, format!("{}c0", "81a178".repeat(16)));
    assert!(r.1);
}

#[test]
fn round_trip() {
    let ok: bool = eval(
        "local big = {} for i = 1, 70000 do big[i] = i end \
         local m = {} for i = 1, 1000 do m['k' .. i] = i * 0.5 end \
         local v = {s = string.rep('y', 70000), a = big, m = m, f = 0.1, n = -3147483648, t = true} \
         local d = cmsgpack.unpack(cmsgpack.pack(v)) \
         assert(d.s == v.s and d.f == 0.1 and d.n == v.n and d.t == true) \
         assert(#d.a == 70000 and d.a[70000] == 70000) \
         for k, x in pairs(m) do assert(d.m[k] == x) end \
         return true",
    );
    assert!(ok);
}

#[test]
fn unpack_variants() {
    let r: Vec<f64> = eval("return {cmsgpack.unpack(cmsgpack.pack(1, 2, 3))}");
    assert_eq!(r, [1.0, 2.0, 3.0]);
    let r: (i64, String) = eval("return cmsgpack.unpack_one(cmsgpack.pack('a', 'b'))");
    assert_eq!(r, (2, "a".to_owned()));
    let r: (i64, String) = eval("return cmsgpack.unpack_one(cmsgpack.pack('a', 'b'), 2)");
    assert_eq!(r, (-1, "b".to_owned()));
    let r: (i64, f64, f64) = eval("return cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)");
    assert_eq!(r, (2, 1.0, 2.0));
    let r: Vec<f64> = eval("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 0, 0)}");
    assert_eq!(r, [1.0, 2.0, 3.0]);
    let n: i64 = eval("return cmsgpack.unpack_one(cmsgpack.pack(1), 1)");
    assert_eq!(n, -1);
    // uint64 comes back through a signed integer.
    let r: f64 = eval("return cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255')");
    assert_eq!(r, -1.0);
}

#[test]
fn malformed_input_is_an_error() {
    assert_eq!(
        error_of("cmsgpack.unpack('\\196\\1a')"),
        "Bad data format in input."
    );
    assert_eq!(
        error_of("cmsgpack.unpack('\\205\\1')"),
        "Missing bytes in input."
    );
    // A huge declared length is not allocated.
    assert_eq!(
        error_of("cmsgpack.unpack('\\219\\255\\255\\255\\255abc')"),
        "Missing bytes in input."
    );
    assert_eq!(
        error_of("cmsgpack.unpack('\\221\\255\\255\\255\\255')"),
        "Missing bytes in input."
    );
    assert_eq!(
        error_of("cmsgpack.unpack_one('\\1', -1)"),
        "Invalid request to unpack with offset of -1 and limit of 1."
    );
    assert_eq!(
        error_of("cmsgpack.unpack_one('\\1', 5)"),
        "Start offset 5 greater than input length 1."
    );
    assert_eq!(
        error_of("cmsgpack.pack()"),
        "bad argument #0 to 'pack' (MessagePack pack needs input.)"
    );
    assert_eq!(
        error_of("cmsgpack.unpack({})"),
        "bad argument #1 to 'unpack' (string expected, got table)"
    );
    assert_eq!(
        error_of("cmsgpack.unpack_limit('a')"),
        "bad argument #2 to 'unpack_limit' (number expected, got no value)"
    );
}

#[test]
fn deep_nesting_is_bounded() {
    // 5000 nested one-element arrays: more than the C stack allows.
    let e = error_of("cmsgpack.unpack(string.rep('\\145', 5000) .. '\\1')");
    assert_eq!(e, "stack overflow (in function mp_decode_to_lua_array)");
    let ok: bool = eval("local t = cmsgpack.unpack(string.rep('\\145', 3000) .. '\\1') for i = 1, 3000 do t = t[1] end return t == 1");
    assert!(ok);
}

#[test]
fn many_results() {
    let n: i64 = eval("return select('#', cmsgpack.unpack(string.rep('\\1', 7990)))");
    assert_eq!(n, 7990);
    let e = error_of("cmsgpack.unpack(string.rep('\\1', 8000))");
    assert_eq!(
        e,
        "stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)"
    );
    let e = error_of("cmsgpack.pack(unpack((function() local t = {} for i = 1, 4001 do t[i] = i end return t end)()))");
    assert_eq!(
        e,
        "bad argument #0 to 'pack' (Too many arguments for MessagePack pack.)"
    );
}

#[test]
fn large_values_and_many_strings() {
    let r: (i64, String) = eval(
        "local t = {} for i = 1, 20000 do t['k' .. i] = 'v' .. i end \
         local m = cmsgpack.pack(t) local d = cmsgpack.unpack(m) return #m, d.k12345",
    );
    assert_eq!(r, (257791, "v12345".to_owned()));
    // Results and arguments past what mlua passes directly.
    let n: i64 = eval("return select('#', cmsgpack.unpack(string.rep('\\161a', 7999)))");
    assert_eq!(n, 7999);
    let r: (i64, i64) = eval(
        "local t = {} for i = 1, 4000 do t[i] = 's' .. i end \
         local s = cmsgpack.pack(unpack(t)) local u = {cmsgpack.unpack(s)} return #u, #s",
    );
    assert_eq!(r, (4000, 22893));
    let ok: bool = eval("local s = string.rep('\\129\\161a', 3000) .. '\\1' local t = cmsgpack.unpack(s) for i = 1, 3000 do t = t.a end return t == 1");
    assert!(ok);
}

#[test]
fn exponential_output_is_refused() {
    // Each level refers to the table twice: 2^16 copies of the innermost part, each large.
    let e = raw_error_of(
        "local s = string.rep('x', 1000) local t = {s, s} for i = 1, 15 do t = {t, t} end \
         cmsgpack.pack(t)",
    );
    assert_eq!(e, "not enough memory");
}
