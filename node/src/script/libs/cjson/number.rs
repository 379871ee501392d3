//! Numbers as lua-cjson reads and writes them through the C library: `printf("%.<p>g")` and
//! `strtod` (C locale), reproduced in Rust.

/// Powers of ten up to 10^14, the largest precision.
const POW10: [f64; 15] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
];

/// Appends `printf("%.<precision>g", n)` (precision 1 to 14).
pub(crate) fn write_g(out: &mut Vec<u8>, n: f64, precision: usize) {
    let p = precision.clamp(1, 14);
    // An integer of at most `p` digits prints as itself.
    if n.fract() == 0.0 && n.abs() < POW10[p] && n != 0.0 {
        out.extend_from_slice(itoa::Buffer::new().format(n as i64).as_bytes());
        return;
    }
    out.extend_from_slice(format_g(n, p).as_bytes());
}

/// `printf("%.<precision>g", n)`.
pub(crate) fn format_g(n: f64, precision: usize) -> String {
    let p = precision.max(1);
    if n.is_nan() {
        return if n.is_sign_negative() {
            "-nan".to_owned()
        } else {
            "nan".to_owned()
        };
    }
    if n.is_infinite() {
        return if n < 0.0 {
            "-inf".to_owned()
        } else {
            "inf".to_owned()
        };
    }
    if n == 0.0 {
        return if n.is_sign_negative() {
            "-0".to_owned()
        } else {
            "0".to_owned()
        };
    }
    // The exponent %e would print at this precision decides between the two styles.
    let e = format!("{:.*e}", p - 1, n);
    let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let x: i32 = exp.parse().unwrap_or(0);
    if x < -4 || x >= p as i32 {
        let mantissa = strip_zeros(mantissa);
        let sign = if x < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", x.unsigned_abs())
    } else {
        let fixed = format!("{:.*}", (p as i32 - 1 - x) as usize, n);
        strip_zeros(&fixed).to_owned()
    }
}

/// Trailing zeros of a fraction, and then a trailing point, removed (what %g does).
fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `strtod` on `s` from its start: the value and how many bytes it read (0: no number).
/// Accepts what glibc's does: a sign, then `inf`/`infinity`, `nan`/`nan(chars)`, a hexadecimal
/// float (`0x1.8p3`) or a decimal one.
pub(crate) fn strtod(s: &[u8]) -> (f64, usize) {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let starts_ci = |i: usize, word: &[u8]| {
        s.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    let mut i = 0;
    let negative = at(0) == b'-';
    if matches!(at(0), b'+' | b'-') {
        i = 1;
    }
    let sign = |v: f64| if negative { -v } else { v };
    if starts_ci(i, b"inf") {
        i += 3;
        if starts_ci(i, b"inity") {
            i += 5;
        }
        return (sign(f64::INFINITY), i);
    }
    if starts_ci(i, b"nan") {
        i += 3;
        if at(i) == b'(' {
            let mut j = i + 1;
            while at(j).is_ascii_alphanumeric() || at(j) == b'_' {
                j += 1;
            }
            if at(j) == b')' {
                i = j + 1;
            }
        }
        return (sign(f64::NAN), i);
    }
    if at(i) == b'0' && (at(i + 1) | 0x20) == b'x' {
        if let Some((v, end)) = hex(s, i + 2) {
            return (sign(v), end);
        }
        // "0x" with no hex digit after it: strtod reads the "0".
        return (sign(0.0), i + 1);
    }
    let int_start = i;
    while at(i).is_ascii_digit() {
        i += 1;
    }
    let int_digits = &s[int_start..i];
    let mut frac_digits: &[u8] = &[];
    if at(i) == b'.' {
        let start = i + 1;
        let mut j = start;
        while at(j).is_ascii_digit() {
            j += 1;
        }
        if !int_digits.is_empty() || j > start {
            frac_digits = &s[start..j];
            i = j;
        }
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return (0.0, 0);
    }
    let mut exp: &[u8] = b"0";
    if at(i) | 0x20 == b'e' {
        let mut j = i + 1;
        if matches!(at(j), b'+' | b'-') {
            j += 1;
        }
        let digits_start = j;
        while at(j).is_ascii_digit() {
            j += 1;
        }
        if j > digits_start {
            exp = &s[i + 1..j];
            i = j;
        }
    }
    let mut text = String::with_capacity(int_digits.len() + frac_digits.len() + exp.len() + 4);
    text.push_str(if int_digits.is_empty() {
        "0"
    } else {
        ascii(int_digits)
    });
    text.push('.');
    text.push_str(if frac_digits.is_empty() {
        "0"
    } else {
        ascii(frac_digits)
    });
    text.push('e');
    text.push_str(ascii(exp));
    (sign(text.parse::<f64>().unwrap_or(0.0)), i)
}

fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("0")
}

/// A hexadecimal float's digits from `start` (after "0x"): `None` when there are none.
fn hex(s: &[u8], start: usize) -> Option<(f64, usize)> {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut i = start;
    let mut mantissa: u64 = 0;
    let mut exp: i64 = 0;
    let mut digits = 0;
    let mut sticky = false;
    let mut add = |d: u8, fraction: bool, exp: &mut i64| {
        if mantissa >> 60 == 0 {
            mantissa = mantissa << 4 | u64::from(d);
            if fraction {
                *exp -= 4;
            }
        } else {
            sticky |= d != 0;
            if !fraction {
                *exp += 4;
            }
        }
    };
    while let Some(d) = (at(i) as char).to_digit(16) {
        add(d as u8, false, &mut exp);
        digits += 1;
        i += 1;
    }
    if at(i) == b'.' {
        let mut j = i + 1;
        let mut frac = 0;
        while let Some(d) = (at(j) as char).to_digit(16) {
            add(d as u8, true, &mut exp);
            frac += 1;
            j += 1;
        }
        if digits > 0 || frac > 0 {
            digits += frac;
            i = j;
        }
    }
    if digits == 0 {
        return None;
    }
    if at(i) | 0x20 == b'p' {
        let mut j = i + 1;
        let negative = at(j) == b'-';
        if matches!(at(j), b'+' | b'-') {
            j += 1;
        }
        let digits_start = j;
        let mut e: i64 = 0;
        while at(j).is_ascii_digit() {
            e = (e * 10 + i64::from(at(j) - b'0')).min(1 << 40);
            j += 1;
        }
        if j > digits_start {
            exp += if negative { -e } else { e };
            i = j;
        }
    }
    // A dropped non-zero digit keeps the value off an exact tie when it is rounded.
    let m = if sticky { mantissa | 1 } else { mantissa };
    Some((scale(m as f64, exp), i))
}

/// `v * 2^exp` without overflowing on the way.
fn scale(mut v: f64, mut exp: i64) -> f64 {
    while exp > 0 && v.is_finite() && v != 0.0 {
        let step = exp.min(1000);
        v *= 2f64.powi(step as i32);
        exp -= step;
    }
    while exp < 0 && v != 0.0 {
        let step = exp.max(-1000);
        v *= 2f64.powi(step as i32);
        exp -= step;
    }
    v
}
