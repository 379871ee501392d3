//! Number parsing with Redis's exact rules (`string2ll`, `string2ld`), so the same inputs are
//! accepted and rejected as on Redis.

/// Parses a signed 64-bit integer the way Redis's `string2ll` does: optional `-`, no `+`, no
/// leading zeros, no spaces, nothing else.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i128).wrapping_neg() as i64)
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Parses a double the way Redis's `getDoubleFromObject` does: what `strtod` reads in full, no
/// leading space, no NaN, and no value that overflowed to infinity or underflowed to zero.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    if text.is_empty() || text.as_bytes()[0].is_ascii_whitespace() {
        return None;
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        return parse_hex_f64(hex, text.starts_with('-'));
    }
    let v: f64 = text.parse().ok()?;
    if v.is_nan() {
        return None;
    }
    let spelled_inf = {
        let t = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
        t == "inf" || t == "infinity"
    };
    if v.is_infinite() && !spelled_inf {
        return None;
    }
    let all_zero_digits = text
        .split(['e', 'E'])
        .next()
        .is_some_and(|m| m.bytes().all(|c| !c.is_ascii_digit() || c == b'0'));
    if v == 0.0 && !all_zero_digits {
        return None;
    }
    Some(v)
}

/// The hexadecimal floats `strtod` reads (`0x1.8p3`, `0x10`): the digits after `0x`, refused
/// when they overflow to infinity or underflow to zero, as `parse_f64` refuses decimals.
fn parse_hex_f64(digits: &str, negative: bool) -> Option<f64> {
    use rustc_apfloat::{ieee::Double, Float, Round, Status};
    if !is_hex_float(digits) {
        return None;
    }
    // strtod takes a missing binary exponent as p0; APFloat insists on one.
    let text = if digits.contains(['p', 'P']) {
        format!("0x{digits}")
    } else {
        format!("0x{digits}p0")
    };
    let parsed = Double::from_str_r(&text, Round::NearestTiesToEven).ok()?;
    if parsed.value.is_infinite()
        || (parsed.value.is_zero() && parsed.status.contains(Status::UNDERFLOW))
    {
        return None;
    }
    let v = f64::from_bits(parsed.value.to_bits() as u64);
    Some(if negative { -v } else { v })
}

/// Parses a non-negative length the way the RESP header parser does.
pub fn parse_len(s: &[u8]) -> Option<i64> {
    parse_i64(s)
}

/// Why INCRBYFLOAT or HINCRBYFLOAT refuses; the callers map each to Redis's error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrFloatError {
    /// The increment is not a float.
    BadIncrement,
    /// The increment is infinite (refused up front only by HINCRBYFLOAT).
    InfiniteIncrement,
    /// The stored value is not a float.
    BadCurrent,
    /// The sum is NaN or infinite.
    Overflow,
}

/// Adds `incr` to `current` (absent: 0) exactly as Redis 7 does: both parsed as an x87 `long
/// double` (`string2ld`: `strtold` with no spaces, no NaN, no overflow), added, and printed with
/// `%.17Lf` minus trailing zeros. An `f64` would print 100 + -99.99 as 0.0100000000000051 where
/// Redis prints 0.01, so the arithmetic runs on an 80-bit soft float.
pub fn incr_float(
    current: Option<&[u8]>,
    incr: &[u8],
    reject_infinite_incr: bool,
) -> Result<String, IncrFloatError> {
    use rustc_apfloat::{Float, Round};
    let by = parse_long_double(incr).ok_or(IncrFloatError::BadIncrement)?;
    if reject_infinite_incr && by.is_infinite() {
        return Err(IncrFloatError::InfiniteIncrement);
    }
    let cur = match current {
        Some(c) => parse_long_double(c).ok_or(IncrFloatError::BadCurrent)?,
        None => LongDouble::ZERO,
    };
    let sum = cur.add_r(by, Round::NearestTiesToEven).value;
    if !sum.is_finite() {
        return Err(IncrFloatError::Overflow);
    }
    Ok(format_long_double(sum))
}

type LongDouble = rustc_apfloat::ieee::X87DoubleExtended;

/// Redis's `MAX_LONG_DOUBLE_CHARS`: longer inputs are not floats.
const MAX_LONG_DOUBLE_CHARS: usize = 5 * 1024;

/// `string2ld`: what glibc's `strtold` accepts in full (decimal, hexadecimal, `inf`/`infinity`
/// in any case, optional sign), refusing NaN, leading spaces and values out of range.
fn parse_long_double(s: &[u8]) -> Option<LongDouble> {
    use rustc_apfloat::{Float, Round, Status};
    if s.is_empty() || s.len() >= MAX_LONG_DOUBLE_CHARS {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let (neg, body) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let value = if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        LongDouble::INFINITY
    } else {
        let hex = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X"));
        let parsed = match hex {
            Some(digits) if is_hex_float(digits) => {
                // strtold takes a missing binary exponent as p0; APFloat insists on one.
                let with_exp = if digits.contains(['p', 'P']) {
                    format!("0x{digits}")
                } else {
                    format!("0x{digits}p0")
                };
                LongDouble::from_str_r(&with_exp, Round::NearestTiesToEven).ok()?
            }
            Some(_) => return None,
            None if is_decimal_float(body) => {
                LongDouble::from_str_r(body, Round::NearestTiesToEven).ok()?
            }
            None => return None,
        };
        // strtold's ERANGE: Redis refuses a result that overflowed or underflowed to zero.
        if parsed.value.is_infinite()
            || (parsed.value.is_zero() && parsed.status.contains(Status::UNDERFLOW))
        {
            return None;
        }
        parsed.value
    };
    Some(if neg { -value } else { value })
}

/// `digits[.digits][(e|E)[+|-]digits]` with at least one mantissa digit (`1.`, `.5` included).
fn is_decimal_float(s: &str) -> bool {
    is_float_form(s.as_bytes(), |c| c.is_ascii_digit(), b'e')
}

/// The part of a hexadecimal float after `0x`: `hex[.hex][(p|P)[+|-]digits]`.
fn is_hex_float(s: &str) -> bool {
    is_float_form(s.as_bytes(), |c| c.is_ascii_hexdigit(), b'p')
}

/// `m[.m][(x|X)[+|-]decimal digits]` with at least one mantissa digit `m`, `x` the exponent letter.
fn is_float_form(b: &[u8], mantissa: impl Fn(u8) -> bool, exp_letter: u8) -> bool {
    let mut i = count_while(b, &mantissa);
    let mut digits = i;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac = count_while(&b[i..], &mantissa);
        i += frac;
        digits += frac;
    }
    if digits == 0 {
        return false;
    }
    if b.get(i)
        .is_some_and(|c| c.to_ascii_lowercase() == exp_letter)
    {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = count_while(&b[i..], |c| c.is_ascii_digit());
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == b.len()
}

fn count_while(b: &[u8], f: impl Fn(u8) -> bool) -> usize {
    b.iter().take_while(|&&c| f(c)).count()
}

/// Decimals `%.17Lf` prints.
const LD_DECIMALS: u32 = 17;

/// Redis's `ld2string(.., LD_STR_HUMAN)`: `%.17Lf` (exact decimal value, rounded half to even
/// at 17 decimals as glibc does), trailing zeros and a trailing dot removed, `-0` printed `0`.
fn format_long_double(v: LongDouble) -> String {
    use rustc_apfloat::Float;
    let bits = v.to_bits();
    let negative = v.is_negative();
    // x87 extended: 15-bit biased exponent, 64-bit significand with an explicit integer bit.
    let biased = ((bits >> 64) & 0x7fff) as i32;
    let sig = bits as u64;
    let exp = if biased == 0 { 1 } else { biased } - 16383 - 63;
    let text = if sig == 0 {
        "0".to_string()
    } else if exp >= 0 {
        // An integer: its digits, and `%.17Lf`'s zeros after the dot are trimmed anyway.
        big_shl_decimal(sig, exp as u32)
    } else {
        // value × 10^17 = sig × 10^17 / 2^-exp, and sig × 10^17 < 2^121 fits in a u128.
        let scaled = u128::from(sig) * 10u128.pow(LD_DECIMALS);
        let shift = (-exp) as u32;
        let n = if shift >= 128 {
            0 // below 2^-7 of a unit in the 17th decimal: rounds to zero
        } else {
            let q = scaled >> shift;
            let rem = scaled - (q << shift);
            let half = 1u128 << (shift - 1);
            if rem > half || (rem == half && q & 1 == 1) {
                q + 1
            } else {
                q
            }
        };
        let digits = format!("{n:0>18}");
        let (int, frac) = digits.split_at(digits.len() - LD_DECIMALS as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        }
    };
    if negative && text != "0" {
        format!("-{text}")
    } else {
        text
    }
}

/// Decimal digits of `sig × 2^shift` (up to 2^16384: a little big-integer arithmetic).
fn big_shl_decimal(sig: u64, shift: u32) -> String {
    // Little-endian base-2^32 limbs.
    let mut limbs = vec![0u32; (shift / 32) as usize];
    let wide = u128::from(sig) << (shift % 32);
    limbs.extend([wide as u32, (wide >> 32) as u32, (wide >> 64) as u32]);
    while limbs.last() == Some(&0) {
        limbs.pop();
    }
    // Peel off base-10^9 chunks, least significant first.
    let mut chunks = Vec::new();
    while !limbs.is_empty() {
        let mut rem = 0u64;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    let mut out = String::new();
    for (i, c) in chunks.iter().rev().enumerate() {
        if i == 0 {
            out.push_str(&c.to_string());
        } else {
            out.push_str(&format!("{c:09}"));
        }
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

#[cfg(test)]
mod f64_tests {
    use super::parse_f64;

    #[test]
    fn doubles_as_redis_reads_them() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"0"), Some(0.0));
        assert_eq!(parse_f64(b"-0.0"), Some(-0.0));
        assert_eq!(parse_f64(b"0x10"), Some(16.0));
        assert_eq!(parse_f64(b"-0X1.8p1"), Some(-3.0));
        assert_eq!(parse_f64(b"0x0"), Some(0.0));
        for bad in [
            &b"nan"[..],
            b" 1",
            b"1 ",
            b"",
            b"abc",
            b"1e400",
            b"1e-400",
            b"1.2.3",
            b"0x",
            b"0xg",
            b"0x1p99999",
        ] {
            assert_eq!(parse_f64(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ll_rules() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b"1a"), None);
    }

    #[test]
    fn incr_float_matches_redis_long_double() {
        let incr =
            |cur: Option<&str>, by: &str| incr_float(cur.map(str::as_bytes), by.as_bytes(), false);
        let ok = |cur: Option<&str>, by: &str| incr(cur, by).unwrap_or_else(|e| format!("{e:?}"));
        // Replies taken from redis-server 7 (long double arithmetic).
        assert_eq!(ok(Some("100"), "-99.99"), "0.01");
        assert_eq!(ok(Some("10.5"), "0.1"), "10.6");
        assert_eq!(ok(None, "5.0e3"), "5000");
        assert_eq!(ok(Some("3.0"), "0"), "3");
        assert_eq!(ok(Some("1.23456789012345678"), "0"), "1.23456789012345678");
        // 1e20's unit in the last place is 8: the 1.5 rounds away, as on Redis.
        assert_eq!(ok(Some("1e20"), "1.5"), "100000000000000000000");
        assert_eq!(ok(Some("0.1"), "0.2"), "0.3");
        assert_eq!(ok(Some("1.1"), "2.2"), "3.3");
        assert_eq!(
            ok(Some("123456789.123456789"), "0.000000001"),
            "123456789.12345678999554366"
        );
        assert_eq!(ok(Some("-5"), "2.5"), "-2.5");
        // An exact tie at the 17th decimal rounds half to even, as glibc's printf.
        assert_eq!(ok(None, "3.814697265625e-6"), "0.00000381469726562");
        assert_eq!(ok(None, "5e-18"), "0");
        assert_eq!(ok(None, "6e-18"), "0.00000000000000001");
        assert_eq!(ok(None, "1e-4940"), "0");
        assert_eq!(ok(None, "1e300"), "1000000000000000000008997324079559193870523944273290747938260082321265646596180935755849152083750497190350372508614274835903592556184672983913096260520748646287327135641843653294084255107606016789726652932370030551382947620994540294772781889620606179267611627097410650567187386105690089424915104006144");
        assert_eq!(ok(None, "1.7976931348623157e308"), "179769313486231569995921046774104434048386446944329178485314420765176628523124396354701868608387085564428793419425520689308708363451136055357897278026477617073498977686288394835618163294045594434929537447290627480669417384648879122776218333598953852832103282504751611691208117720159985926376802466863339536384");
        assert_eq!(ok(Some("0.000001"), "0.0000001"), "0.0000011");
        assert_eq!(ok(Some("-1"), "1"), "0");
        assert_eq!(ok(Some("-0.0000000000000000001"), "0"), "0");
        assert_eq!(ok(None, "0x10"), "16");
        assert_eq!(ok(None, "0x1.8p1"), "3");
        assert_eq!(ok(None, "+.5"), "0.5");
        assert_eq!(ok(None, "2."), "2");
        assert_eq!(incr(None, "inf"), Err(IncrFloatError::Overflow));
        assert_eq!(
            incr_float(None, b"-Infinity", true),
            Err(IncrFloatError::InfiniteIncrement)
        );
        assert_eq!(
            incr(Some("1e4932"), "1e4932"),
            Err(IncrFloatError::Overflow)
        );
        for bad in [
            "", " 1", "1 ", "nan", "abc", "1e", "1e5000", "1e-5000", "0x", ".", "e5", "--1",
        ] {
            assert_eq!(
                incr(None, bad),
                Err(IncrFloatError::BadIncrement),
                "{bad:?}"
            );
        }
        assert_eq!(incr(Some("x"), "1"), Err(IncrFloatError::BadCurrent));
        assert_eq!(ok(None, "0e-5000"), "0");
    }
}
