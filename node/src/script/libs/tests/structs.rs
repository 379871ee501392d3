use super::{error_of, eval, hex};

fn packed(code: &str) -> String {
    hex(&eval::<mlua::BString>(code))
}

#[test]
fn pack_integers_with_endianness() {
    assert_eq!(packed("return struct.pack('>I2', 258)"), "0102");
    assert_eq!(packed("return struct.pack('<I2', 258)"), "0201");
    assert_eq!(
        packed("return struct.pack('bBhH', -1, 255, -2, 65535)"),
        "ffff feff ffff".replace(' ', "")
    );
    assert_eq!(packed("return struct.pack('>i3', -2)"), "fffffe");
    assert_eq!(packed("return struct.pack('>l', 1)"), "0000000000000001");
    // Beyond 8 bytes the value's upper bytes are zero, also for negative numbers.
    assert_eq!(
        packed("return struct.pack('<i10', -1)"),
        "ffffffffffffffff0000"
    );
}

#[test]
fn pack_floats_strings_and_padding() {
    assert_eq!(packed("return struct.pack('>f', 1.5)"), "3fc00000");
    assert_eq!(packed("return struct.pack('<d', 1.5)"), "000000000000f83f");
    assert_eq!(packed("return struct.pack('c3', 'abcdef')"), "616263");
    assert_eq!(packed("return struct.pack('c0', 'ab')"), "6162");
    assert_eq!(packed("return struct.pack('s', 'ab')"), "616200");
    assert_eq!(packed("return struct.pack('bxb', 1, 2)"), "010002");
    // '!' aligns to the item's size up to the given maximum.
    assert_eq!(
        packed("return struct.pack('!4 b i', 1, 2)"),
        "0100000002000000"
    );
    assert_eq!(
        packed("return struct.pack('!b d', 1, 0)"),
        "01000000000000000000000000000000"
    );
}

#[test]
fn unpack_returns_values_and_next_position() {
    let r: Vec<f64> = eval("return {struct.unpack('>I2 b', '\\1\\2\\255')}");
    assert_eq!(r, [258.0, -1.0, 4.0]);
    let r: Vec<f64> = eval("return {struct.unpack('<i3', '\\254\\255\\255')}");
    assert_eq!(r, [-2.0, 4.0]);
    let r: (String, String, f64) = eval("return struct.unpack('sc2', 'hi\\0there')");
    assert_eq!(r, ("hi".to_owned(), "th".to_owned(), 6.0));
    let r: (f64, f64) = eval("return struct.unpack('B', 'abc', 2)");
    assert_eq!(r, (98.0, 3.0));
    // 'c0' takes its length from the previous result.
    let r: (String, f64) = eval("return struct.unpack('b c0', '\\3abcd')");
    assert_eq!(r, ("abc".to_owned(), 5.0));
    let r: (f64, f64) = eval("return struct.unpack('>d', struct.pack('>d', -0.25))");
    assert_eq!(r, (-0.25, 9.0));
}

#[test]
fn size() {
    let r: Vec<f64> = eval(
        "return {struct.size('bhid'), struct.size('!bhid'), struct.size('c10 z'), struct.size('')}",
    );
    assert_eq!(r, [15.0, 16.0, 10.0, 0.0]);
}

#[test]
fn errors() {
    assert_eq!(
        error_of("struct.pack('y', 1)"),
        "bad argument #1 to 'pack' (invalid format option 'y')"
    );
    assert_eq!(
        error_of("struct.pack('i40', 1)"),
        "integral size 40 is larger than limit of 32"
    );
    assert_eq!(
        error_of("struct.pack('c99999999999', 'a')"),
        "integral size overflow"
    );
    assert_eq!(
        error_of("struct.pack('!3 i', 1)"),
        "alignment 3 is not a power of 2"
    );
    assert_eq!(
        error_of("struct.pack('i', 'x')"),
        "bad argument #2 to 'pack' (number expected, got string)"
    );
    assert_eq!(
        error_of("struct.pack('c5', 'ab')"),
        "bad argument #3 to 'pack' (string too short)"
    );
    assert_eq!(
        error_of("struct.unpack('i', 'ab')"),
        "bad argument #2 to 'unpack' (data string too short)"
    );
    assert_eq!(
        error_of("struct.unpack('b', 'ab', 0)"),
        "bad argument #3 to 'unpack' (offset must be 1 or greater)"
    );
    assert_eq!(
        error_of("struct.unpack('s', 'ab')"),
        "unfinished string in data"
    );
    assert_eq!(
        error_of("struct.unpack('c0', 'ab')"),
        "format 'c0' needs a previous size"
    );
    assert_eq!(
        error_of("struct.size('s')"),
        "bad argument #1 to 'size' (option 's' has no fixed size)"
    );
    assert_eq!(
        error_of("struct.size('c0')"),
        "bad argument #1 to 'size' (option 'c0' has no fixed size)"
    );
    assert_eq!(
        error_of("struct.unpack(nil, 'a')"),
        "bad argument #1 to 'unpack' (string expected, got nil)"
    );
}

#[test]
fn too_many_results_is_an_error_not_a_crash() {
    assert_eq!(
        error_of("struct.unpack(string.rep('b', 9000), string.rep('a', 9000))"),
        "stack overflow (too many results)"
    );
    let n: f64 =
        eval("return select('#', struct.unpack(string.rep('b', 7000), string.rep('a', 7000)))");
    assert_eq!(n, 7001.0);
}

#[test]
fn edge_values() {
    // lua-struct pushes a nil after the arguments: the first missing one reads as nil.
    assert_eq!(
        error_of("struct.pack('b')"),
        "bad argument #2 to 'pack' (number expected, got nil)"
    );
    // NaN and 2^64 as the compiled C converts them.
    assert_eq!(packed("return struct.pack('<L', 0/0)"), "0000000000000080");
    assert_eq!(packed("return struct.pack('<L', 2^64)"), "0000000000000000");
    assert_eq!(packed("return struct.pack('<L', -1)"), "ffffffffffffffff");
    let n: f64 =
        eval("return select('#', struct.unpack(string.rep('c1', 7990), string.rep('y', 7990)))");
    assert_eq!(n, 7991.0);
}
