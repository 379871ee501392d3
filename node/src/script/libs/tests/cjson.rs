use super::{error_of, eval, raw_error_of};

#[test]
fn encode_scalars_and_numbers() {
    let r: Vec<String> = eval(
        "return {cjson.encode(1), cjson.encode(-0.5), cjson.encode(1/3), cjson.encode(1e20), \
         cjson.encode(123456789012345678), cjson.encode(0.0001), cjson.encode(0.00001), \
         cjson.encode(true), cjson.encode(nil), cjson.encode(cjson.null), \
         (function(z) return cjson.encode(-z) end)(0)}",
    );
    assert_eq!(
        r,
        [
            "1",
            "-0.5",
            "0.33333333333333",
            "1e+20",
            "1.2345678901235e+17",
            "0.0001",
            "1e-05",
            "true",
            "null",
            "null",
            "-0"
        ]
    );
}

#[test]
fn encode_escapes_strings() {
    let s: String = eval(r#"return cjson.encode('a"b\\c/d\n\t\1\127é')"#);
    assert_eq!(s, r#""a\"b\\c\/d\n\t\u0001\u007fé""#);
}

#[test]
fn arrays_and_objects() {
    let r: Vec<String> = eval(
        "return {cjson.encode({1, 'a', true}), cjson.encode({}), cjson.encode({a = {b = {}}}), \
         cjson.encode({[1] = 1, [3] = 3}), cjson.encode({[2] = 'x'}), cjson.encode({[1.5] = 1}), \
         cjson.encode({{1, {2}}})}",
    );
    assert_eq!(
        r,
        [
            "[1,\"a\",true]",
            "{}",
            "{\"a\":{\"b\":{}}}",
            "[1,null,3]",
            "[null,\"x\"]",
            "{\"1.5\":1}",
            "[[1,[2]]]"
        ]
    );
}

#[test]
fn sparse_arrays() {
    assert_eq!(
        error_of("cjson.encode({[1] = 1, [20] = 2})"),
        "Cannot serialise table: excessively sparse array"
    );
    let r: Vec<String> = eval(
        "local a = cjson.encode({[10] = 1}) \
         cjson.encode_sparse_array(true) \
         local b = cjson.encode({[20] = 1}) \
         local c = {cjson.encode_sparse_array(nil, 0, 5)} \
         local d = cjson.encode({[1] = 1, [20] = 2}) \
         return {a:sub(1, 11), b, tostring(c[1]) .. ',' .. c[2] .. ',' .. c[3], #d}",
    );
    assert_eq!(r, ["[null,null,", "{\"20\":1}", "true,0,5", "95"]);
}

#[test]
fn encode_errors() {
    assert_eq!(
        error_of("cjson.encode(print)"),
        "Cannot serialise function: type not supported"
    );
    assert_eq!(
        error_of("cjson.encode({[true] = 1})"),
        "Cannot serialise boolean: table key must be a number or string"
    );
    assert_eq!(
        error_of("cjson.encode({0/0})"),
        "Cannot serialise number: must not be NaN or Inf"
    );
    assert_eq!(
        error_of("cjson.encode({x = coroutine.create(function() end)})"),
        "Cannot serialise thread: type not supported"
    );
    assert_eq!(
        error_of("cjson.encode_max_depth(2) cjson.encode({{{}}})"),
        "Cannot serialise, excessive nesting (3)"
    );
    assert_eq!(
        error_of("local t = {} t[1] = t cjson.encode(t)"),
        "Cannot serialise, excessive nesting (1001)"
    );
    // A raised limit meets the Lua stack bound the C version has.
    assert_eq!(
        error_of("cjson.encode_max_depth(100000) local t = {} t.a = t cjson.encode(t)"),
        "Cannot serialise, excessive nesting (4000)"
    );
}

#[test]
fn invalid_numbers_settings() {
    let r: Vec<String> = eval(
        "local out = {} \
         out[1] = tostring(cjson.encode_invalid_numbers(true)) \
         out[2] = cjson.encode({1/0, -1/0, 0/0}) \
         out[3] = cjson.encode_invalid_numbers('null') \
         out[4] = cjson.encode({1/0, 0/0}) \
         out[5] = tostring(cjson.encode_invalid_numbers('off')) \
         return out",
    );
    assert_eq!(
        r,
        ["true", "[inf,-inf,nan]", "null", "[null,null]", "false"]
    );
}

#[test]
fn precision() {
    let r: Vec<String> = eval(
        "local p = cjson.encode_number_precision(3) \
         return {tostring(p), cjson.encode(3.14159), cjson.encode(1234567)}",
    );
    assert_eq!(r, ["3", "3.14", "1.23e+06"]);
    assert_eq!(
        error_of("cjson.encode_number_precision(15)"),
        "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 14)"
    );
    assert_eq!(
        error_of("cjson.encode_number_precision(1, 2)"),
        "bad argument #2 to 'encode_number_precision' (found too many arguments)"
    );
    assert_eq!(
        error_of("cjson.encode_keep_buffer('maybe')"),
        "bad argument #1 to 'encode_keep_buffer' (invalid option 'maybe')"
    );
}

#[test]
fn decode_values() {
    let s: String =
        eval("return table.concat(cjson.decode('[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]'), ' ')");
    assert_eq!(s, "0 -5000 -1 0.0003 1023.2 0");
    let r: (String, String) =
        eval("local d = cjson.decode('{\"keya\": \"a\", \"keyb\": \"b\"}') return d.keya, d.keyb");
    assert_eq!(r, ("a".to_owned(), "b".to_owned()));
    let ok: bool = eval(
        "local d = cjson.decode(' {\"a\" : [true, false, null, {}], \"b\": \"\\\\u00e9\\\\ud83d\\\\ude00\\\\/\\\\n\"} ') \
         return d.a[1] == true and d.a[2] == false and d.a[3] == cjson.null and next(d.a[4]) == nil \
            and d.b == '\\195\\169\\240\\159\\152\\128/\\n'",
    );
    assert!(ok);
    // strtod's extras, accepted by default.
    let r: Vec<f64> = eval("return {cjson.decode('+1'), cjson.decode('0x10'), cjson.decode('012'), cjson.decode('-Infinity')}");
    assert_eq!(r, [1.0, 16.0, 12.0, f64::NEG_INFINITY]);
    let nan: bool = eval("local n = cjson.decode('nan') return n ~= n");
    assert!(nan);
    let n: f64 = eval("return cjson.decode(42)");
    assert_eq!(n, 42.0);
    // The text ends at a NUL.
    let n: f64 = eval("return cjson.decode('77\\0garbage')");
    assert_eq!(n, 77.0);
}

#[test]
fn decode_errors() {
    for (input, message) in [
        ("''", "Expected value but found T_END at character 1"),
        (
            "'[1,]'",
            "Expected value but found T_ARR_END at character 4",
        ),
        (
            "'{1:2}'",
            "Expected object key string but found T_NUMBER at character 2",
        ),
        (
            "'{\"a\" 1}'",
            "Expected colon but found T_NUMBER at character 6",
        ),
        (
            "'{\"a\":1 \"b\"}'",
            "Expected comma or object end but found T_STRING at character 8",
        ),
        (
            "'[1 2]'",
            "Expected comma or array end but found T_NUMBER at character 4",
        ),
        (
            "'1 2'",
            "Expected the end but found T_NUMBER at character 3",
        ),
        (
            "'\"abc'",
            "Expected value but found unexpected end of string at character 5",
        ),
        (
            "'\"a\\\\qb\"'",
            "Expected value but found invalid escape code at character 3",
        ),
        (
            "'\"\\\\ud800\"'",
            "Expected value but found invalid unicode escape code at character 2",
        ),
        (
            "'tru'",
            "Expected value but found invalid token at character 1",
        ),
        (
            "'@'",
            "Expected value but found invalid token at character 1",
        ),
        (
            "'-'",
            "Expected value but found invalid number at character 1",
        ),
        ("'a\\0'", "JSON parser does not support UTF-16 or UTF-32"),
    ] {
        assert_eq!(
            error_of(&format!("cjson.decode({input})")),
            message,
            "{input}"
        );
    }
    assert_eq!(
        error_of("cjson.decode_invalid_numbers(false) cjson.decode('+1')"),
        "Expected value but found invalid token at character 1"
    );
    assert_eq!(
        error_of("cjson.decode_invalid_numbers(false) cjson.decode('[01]')"),
        "Expected value but found invalid number at character 2"
    );
    assert_eq!(
        error_of("cjson.decode({})"),
        "bad argument #1 to 'decode' (string expected, got table)"
    );
}

#[test]
fn decode_depth_is_bounded() {
    assert_eq!(
        error_of("cjson.decode_max_depth(1) cjson.decode('{\"obj\": {\"array\": [1,2,3,4]}}')"),
        "Found too many nested data structures (2) at character 9"
    );
    assert_eq!(
        error_of("cjson.decode(string.rep('[', 100000))"),
        "Found too many nested data structures (1001) at character 1001"
    );
    // Raised past the Lua stack the C version needs, the stack bound applies.
    assert_eq!(
        error_of("cjson.decode_max_depth(1000000) cjson.decode(string.rep('[', 100000))"),
        "Found too many nested data structures (7999) at character 7999"
    );
    let ok: bool = eval("local t = cjson.decode(string.rep('[', 999) .. string.rep(']', 999)) return type(t) == 'table'");
    assert!(ok);
}

#[test]
fn round_trip_and_instances() {
    let ok: bool = eval(
        "local v = {s = 'x', n = 100, a = {'Some', 'String', 'Array'}, b = true, f = false} \
         local d = cjson.decode(cjson.encode(v)) \
         assert(d.s == 'x' and d.n == 100 and d.a[3] == 'Array' and d.b == true and d.f == false) \
         local other = cjson.new() \
         other.encode_max_depth(1) \
         assert(pcall(cjson.encode, {{}})) \
         assert(not pcall(other.encode, {{}})) \
         return cjson._NAME == 'cjson' and cjson._VERSION == '2.1.0'",
    );
    assert!(ok);
}

#[test]
fn large_and_deep_values() {
    // More keys than mlua can hold Lua values in Rust at once.
    let r: (i64, String, String) = eval(
        "local t = {} for i = 1, 20000 do t['k' .. i] = {i, 'v' .. i} end \
         local j = cjson.encode(t) local d = cjson.decode(j) \
         return #j, d.k777[2], cjson.encode(d.k20000)",
    );
    assert_eq!(
        r,
        (486683, "v777".to_owned(), "[20000,\"v20000\"]".to_owned())
    );
    // Raised depth limits: nesting deeper than that many Lua values.
    let n: i64 = eval(
        "cjson.decode_max_depth(100000) cjson.encode_max_depth(100000) \
         local d = cjson.decode(string.rep('{\"a\":[', 2600) .. string.rep(']}', 2600)) \
         local s = cjson.encode(d) \
         local n = 0 while type(d) == 'table' do d = d.a or d[1] n = n + 1 end \
         assert(s == string.rep('{\"a\":[', 2599) .. '{\"a\":{}}' .. string.rep(']}', 2599)) \
         return n",
    );
    assert_eq!(n, 5200);
}

#[test]
fn exponential_output_is_refused() {
    let e = raw_error_of(
        "local s = string.rep('x', 1000) local t = {s, s} for i = 1, 15 do t = {t, t} end \
         cjson.encode(t)",
    );
    assert_eq!(e, "not enough memory");
}
