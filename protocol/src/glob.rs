//! Redis's glob matching (`stringmatchlen`) for KEYS, SCAN MATCH, HSCAN MATCH and CONFIG GET.

/// True if `s` matches `p`: `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x` escapes.
pub fn matches(p: &[u8], s: &[u8], nocase: bool) -> bool {
    matches_depth(p, s, nocase, 0, &mut false)
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// The class at the start of `p` (`[` first) tried on byte `c`, read as Redis reads it (an escape
/// takes two bytes and a range `a-z` three, whatever they are): whether `c` matches, and the
/// class's length through its `]`, `None` if it never closes (it takes the rest of the pattern).
pub fn class(p: &[u8], c: u8, nocase: bool) -> (bool, Option<usize>) {
    let not = p.get(1) == Some(&b'^');
    let mut i = if not { 2 } else { 1 };
    let mut matched = false;
    let end = loop {
        if i >= p.len() {
            break None;
        }
        let left = p.len() - i;
        if p[i] == b'\\' && left >= 2 {
            i += 1;
            matched |= eq(p[i], c, nocase);
        } else if p[i] == b']' {
            break Some(i + 1);
        } else if left >= 3 && p[i + 1] == b'-' {
            let (mut lo, mut hi, mut c) = (p[i], p[i + 2], c);
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            if nocase {
                lo = lo.to_ascii_lowercase();
                hi = hi.to_ascii_lowercase();
                c = c.to_ascii_lowercase();
            }
            i += 2;
            matched |= c >= lo && c <= hi;
        } else {
            matched |= eq(p[i], c, nocase);
        }
        i += 1;
    };
    (matched != not, end)
}

/// `skip_longer`: set once what follows a `*` matched no suffix of the string; then no outer
/// `*` can succeed by giving it a shorter one, and every outer loop stops (Redis's fix for
/// patterns like `a*a*a*…b`, exponential otherwise).
fn matches_depth(
    mut p: &[u8],
    mut s: &[u8],
    nocase: bool,
    depth: u32,
    skip_longer: &mut bool,
) -> bool {
    // Redis bounds recursion the same way, so a hostile pattern cannot blow the stack.
    if depth > 1000 {
        return false;
    }
    // Only stars match the empty string (the loop below needs a byte to compare).
    if s.is_empty() {
        return p.iter().all(|&c| c == b'*');
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                for i in 0..s.len() {
                    if matches_depth(&p[1..], &s[i..], nocase, depth + 1, skip_longer) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                }
                *skip_longer = true;
                return false;
            }
            b'?' => {
                s = &s[1..];
            }
            b'[' => {
                let (matched, len) = class(p, s[0], nocase);
                if !matched {
                    return false;
                }
                s = &s[1..];
                let Some(len) = len else {
                    // An unterminated class consumed the pattern.
                    return s.is_empty();
                };
                // At its `]`, which the step below passes.
                p = &p[len - 1..];
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if !eq(p[0], s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if !eq(c, s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn nested_stars_give_up_instead_of_backtracking_for_ever() {
        // Exponential without Redis's skip: 2^40 tries for this pair.
        let pattern = format!("{}b", "a*".repeat(40));
        let s = "a".repeat(80);
        assert!(!matches(pattern.as_bytes(), s.as_bytes(), false));
        assert!(matches(
            pattern.as_bytes(),
            format!("{s}b").as_bytes(),
            false
        ));
        assert!(matches(b"*a*b*c", b"xxaxxbxxc", false));
        assert!(!matches(b"*a*b*c", b"xxaxxcxxb", false));
    }

    #[test]
    fn redis_glob() {
        assert!(matches(b"*", b"anything", false));
        assert!(matches(b"*", b"", false));
        assert!(matches(b"h?llo", b"hello", false));
        assert!(matches(b"h*llo", b"heeeello", false));
        assert!(matches(b"h[ae]llo", b"hallo", false));
        assert!(!matches(b"h[ae]llo", b"hillo", false));
        assert!(matches(b"h[^e]llo", b"hallo", false));
        assert!(!matches(b"h[^e]llo", b"hello", false));
        assert!(matches(b"h[a-b]llo", b"hbllo", false));
        assert!(matches(b"h\\*llo", b"h*llo", false));
        assert!(!matches(b"h\\*llo", b"hello", false));
        assert!(matches(b"MAX*", b"maxmemory", true));
        assert!(!matches(b"a*b", b"acd", false));
        assert!(matches(b"a*", b"a", false));
        assert!(matches(b"user:*:name", b"user:42:name", false));
    }
}
