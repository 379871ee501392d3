use super::{error_of, eval};

#[test]
fn basic_operations() {
    let r: Vec<f64> = eval(
        "return {bit.tobit(1), bit.band(1), bit.bxor(1, 2), bit.bor(1, 2, 4, 8, 16, 32, 64, 128), \
         bit.band(0xff, 0x0f, 0x3), bit.bnot(0), bit.tobit(0xffffffff), bit.tobit(2^32 + 5)}",
    );
    assert_eq!(r, [1.0, 1.0, 3.0, 255.0, 3.0, -1.0, -1.0, 5.0]);
}

#[test]
fn shifts_and_rotations_are_32_bit() {
    let r: Vec<f64> = eval(
        "return {bit.lshift(1, 31), bit.lshift(1, 32), bit.rshift(-1, 28), bit.arshift(-256, 4), \
         bit.rol(0x12345678, 8), bit.ror(0x12345678, 8), bit.bswap(0x12345678), bit.lshift(3, -1)}",
    );
    assert_eq!(
        r,
        [
            -2147483648.0,
            1.0,
            15.0,
            -16.0,
            878082066.0,
            2014458966.0,
            2018915346.0,
            -2147483648.0
        ]
    );
}

#[test]
fn numbers_round_to_nearest_even() {
    let r: Vec<f64> =
        eval("return {bit.tobit(1.5), bit.tobit(2.5), bit.tobit(-1.5), bit.tobit('12')}");
    assert_eq!(r, [2.0, 2.0, -2.0, 12.0]);
}

#[test]
fn tohex() {
    let r: Vec<String> = eval(
        "return {bit.tohex(1), bit.tohex(-1), bit.tohex(0x12345678, 4), bit.tohex(255, -2), \
         bit.tohex(1, 20), bit.tohex(1, 0)}",
    );
    assert_eq!(r, ["00000001", "ffffffff", "5678", "FF", "00000001", ""]);
}

#[test]
fn non_numbers_are_argument_errors() {
    assert_eq!(
        error_of("bit.tobit('x')"),
        "bad argument #1 to 'tobit' (number expected, got string)"
    );
    assert_eq!(
        error_of("bit.band()"),
        "bad argument #1 to 'band' (number expected, got no value)"
    );
    // The first argument is read first, then the others from the last one down.
    assert_eq!(
        error_of("bit.bor(1, {}, nil)"),
        "bad argument #3 to 'bor' (number expected, got nil)"
    );
    assert_eq!(
        error_of("bit.tohex(1, nil)"),
        "bad argument #2 to 'tohex' (number expected, got nil)"
    );
}

#[test]
fn tohex_of_the_most_negative_count() {
    let r: Vec<String> = eval("return {bit.tohex(255, 2^31), bit.tohex(-1, -2^31)}");
    assert_eq!(r, ["000000FF", "FFFFFFFF"]);
}

#[test]
fn many_arguments() {
    // Past 32 arguments the wrapper passes them in a table: same results, same errors.
    let r: Vec<f64> = eval(
        "local t = {} for i = 1, 7000 do t[i] = 2^(i % 31) end \
         return {bit.bor(unpack(t)), bit.band(-1, unpack(t, 1, 40))}",
    );
    assert_eq!(r, [2147483647.0, 0.0]);
    assert_eq!(
        error_of(
            "local t = {} for i = 1, 40 do t[i] = 1 end t[35] = {} bit.band(unpack(t, 1, 40))"
        ),
        "bad argument #35 to 'band' (number expected, got table)"
    );
}
