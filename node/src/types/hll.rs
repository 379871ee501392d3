//! HyperLogLog in Redis's own byte representation: an HLL is an ordinary string value, so a
//! Redis HLL moved here by DUMP/RESTORE or GET/SET keeps working, and PFCOUNT answers Redis's
//! numbers.
//!
//! Layout: a 16-byte header `"HYLL" [encoding] [3 unused bytes] [cached cardinality: 8 bytes,
//! little endian; its top bit set = stale]`, then the 16384 6-bit registers, either dense (packed
//! from each byte's low bits up, 12288 bytes) or sparse, a run-length code of opcodes:
//! `00llllll` ZERO (1-64 zero registers), `01llllll llllllll` XZERO (1-16384 zero registers),
//! `1vvvvvll` VAL (value 1-32, repeated 1-4 times). A sparse HLL turns dense when a register
//! needs a value over 32 or the string would grow past `hll-sparse-max-bytes`.
//!
//! An element sets register `hash & 16383` to the length of the `0…01` run that follows in its
//! MurmurHash64A (Redis's seed); the estimate is Ertl's improved estimator over the histogram of
//! register values. Sparse updates split and merge opcodes exactly as Redis does, so the bytes
//! (and the moment a sparse HLL turns dense) match Redis's.

/// Header bytes before the registers.
pub const HDR: usize = 16;
pub const REGISTERS: usize = 1 << P;
const P: u32 = 14;
/// Hash bits left after the register index.
const Q: u32 = 64 - P;
const REG_MAX: u8 = 63;
/// A dense HLL's exact length.
pub const DENSE_SIZE: usize = HDR + (REGISTERS * 6).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;
const SEED: u64 = 0xadc8_3b19;
/// 0.5 / ln 2.
#[allow(clippy::excessive_precision)]
const ALPHA_INF: f64 = 0.721_347_520_444_481_703_680;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Dense,
    Sparse,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Dense => "dense",
            Encoding::Sparse => "sparse",
        }
    }
}

/// The string is no HLL: bad magic, unknown encoding, or a dense one of the wrong length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHll;

/// A sparse code that does not describe exactly 16384 registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

/// The encoding of `s` if it has an HLL's header (Redis checks nothing more before using one).
pub fn encoding(s: &[u8]) -> Result<Encoding, NotHll> {
    if s.len() < HDR || !s.starts_with(b"HYLL") {
        return Err(NotHll);
    }
    match s[4] {
        DENSE if s.len() == DENSE_SIZE => Ok(Encoding::Dense),
        SPARSE => Ok(Encoding::Sparse),
        _ => Err(NotHll),
    }
}

/// An empty HLL: sparse, all registers in XZERO opcodes, cached cardinality 0.
pub fn new_sparse() -> Vec<u8> {
    let mut h = Vec::with_capacity(HDR + 2 * REGISTERS.div_ceil(XZERO_MAX_LEN));
    h.extend_from_slice(b"HYLL");
    h.push(SPARSE);
    h.resize(HDR, 0);
    let mut left = REGISTERS;
    while left > 0 {
        let n = left.min(XZERO_MAX_LEN);
        h.extend_from_slice(&xzero(n));
        left -= n;
    }
    h
}

/// The cached cardinality, if still valid.
pub fn cached(s: &[u8]) -> Option<u64> {
    let card: [u8; 8] = s.get(8..HDR)?.try_into().ok()?;
    (card[7] & 0x80 == 0).then(|| u64::from_le_bytes(card))
}

pub fn set_cached(s: &mut [u8], card: u64) {
    if let Some(c) = s.get_mut(8..HDR) {
        c.copy_from_slice(&card.to_le_bytes());
    }
}

/// Marks the cached cardinality stale (after a register changed).
pub fn invalidate(s: &mut [u8]) {
    if let Some(b) = s.get_mut(HDR - 1) {
        *b |= 0x80;
    }
}

/// MurmurHash2, 64-bit version, reading words little endian (as Redis does on every platform).
pub fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let mut k = u64::from_le_bytes(b).wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element lands in and the value it offers that register.
pub fn register_of(element: &[u8]) -> (usize, u8) {
    let h = murmur64a(element, SEED);
    let index = (h & (REGISTERS as u64 - 1)) as usize;
    // The 1 at bit Q bounds the run at Q + 1.
    let rest = (h >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Dense register `i` of `regs` (the bytes after the header).
pub fn get_reg(regs: &[u8], i: usize) -> u8 {
    let (byte, fb) = (i * 6 / 8, (i * 6) & 7);
    let b0 = u16::from(regs.get(byte).copied().unwrap_or(0));
    let b1 = u16::from(regs.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) & u16::from(REG_MAX)) as u8
}

pub fn set_reg(regs: &mut [u8], i: usize, v: u8) {
    let (byte, fb) = (i * 6 / 8, (i * 6) & 7);
    let (v, max) = (u16::from(v), u16::from(REG_MAX));
    if let Some(b) = regs.get_mut(byte) {
        *b = ((u16::from(*b) & !(max << fb)) | (v << fb)) as u8;
    }
    if let Some(b) = regs.get_mut(byte + 1) {
        *b = ((u16::from(*b) & !(max >> (8 - fb))) | (v >> (8 - fb))) as u8;
    }
}

/// Raises dense register `i` to `v`; whether it rose.
fn dense_set(regs: &mut [u8], i: usize, v: u8) -> bool {
    if v > get_reg(regs, i) {
        set_reg(regs, i, v);
        true
    } else {
        false
    }
}

/// One sparse opcode.
#[derive(Debug, Clone, Copy)]
enum Op {
    Zero(usize),
    XZero(usize),
    Val(u8, usize),
}

impl Op {
    fn span(self) -> usize {
        match self {
            Op::Zero(n) | Op::XZero(n) | Op::Val(_, n) => n,
        }
    }
}

/// The opcode at `s[p]` and its length in bytes. A byte past the end reads as 0, as the NUL
/// after a Redis string does (a truncated XZERO in a corrupt HLL).
fn op_at(s: &[u8], p: usize) -> (Op, usize) {
    let b = s.get(p).copied().unwrap_or(0);
    if b & 0xc0 == 0 {
        (Op::Zero(usize::from(b & 0x3f) + 1), 1)
    } else if b & 0x80 != 0 {
        (Op::Val(((b >> 2) & 0x1f) + 1, usize::from(b & 3) + 1), 1)
    } else {
        let lo = s.get(p + 1).copied().unwrap_or(0);
        (
            Op::XZero(((usize::from(b & 0x3f) << 8) | usize::from(lo)) + 1),
            2,
        )
    }
}

/// The opcodes of a sparse HLL, in order.
fn ops(s: &[u8]) -> impl Iterator<Item = Op> + '_ {
    let mut p = HDR;
    std::iter::from_fn(move || {
        (p < s.len()).then(|| {
            let (op, len) = op_at(s, p);
            p += len;
            op
        })
    })
}

fn val(v: u8, len: usize) -> u8 {
    0x80 | ((v - 1) << 2) | (len as u8 - 1)
}

fn xzero(len: usize) -> [u8; 2] {
    let l = len - 1;
    [0x40 | (l >> 8) as u8, (l & 0xff) as u8]
}

/// Writes the shortest zero-run opcode for `len` registers at `out`; the bytes written.
fn put_zero(out: &mut [u8], len: usize) -> usize {
    if len > ZERO_MAX_LEN {
        out[..2].copy_from_slice(&xzero(len));
        2
    } else {
        out[0] = (len - 1) as u8;
        1
    }
}

/// Runs `set(index, value)` over the non-zero registers of a sparse HLL; `Corrupt` unless the
/// opcodes cover exactly 16384 registers. A run reaching past the last register is corrupt
/// whatever its opcode (Redis's fix for CVE-2025-32023, which Debian's 7.0.15 carries).
fn each_sparse(s: &[u8], mut set: impl FnMut(usize, u8)) -> Result<(), Corrupt> {
    let mut idx = 0;
    for op in ops(s) {
        let n = op.span();
        if idx + n > REGISTERS {
            return Err(Corrupt);
        }
        if let Op::Val(v, _) = op {
            for i in idx..idx + n {
                set(i, v);
            }
        }
        idx += n;
    }
    if idx == REGISTERS {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// The dense form of `s` (its header kept, the cached cardinality too).
pub fn to_dense(s: &[u8]) -> Result<Vec<u8>, Corrupt> {
    if s.get(4) == Some(&DENSE) {
        return Ok(s.to_vec());
    }
    let mut d = vec![0u8; DENSE_SIZE];
    d[..HDR].copy_from_slice(s.get(..HDR).ok_or(Corrupt)?);
    d[4] = DENSE;
    each_sparse(s, |i, v| set_reg(&mut d[HDR..], i, v))?;
    Ok(d)
}

/// Raises register `index` of the HLL `h` to `count`: whether it rose. A sparse HLL may turn
/// dense on the way; `Corrupt` if its opcodes are invalid.
pub fn add(h: &mut Vec<u8>, index: usize, count: u8, sparse_max: usize) -> Result<bool, Corrupt> {
    match h.get(4) {
        Some(&DENSE) if h.len() == DENSE_SIZE => Ok(dense_set(&mut h[HDR..], index, count)),
        Some(&SPARSE) => sparse_set(h, index, count, sparse_max),
        _ => Err(Corrupt),
    }
}

fn promote(h: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    let mut d = to_dense(h)?;
    // Promotion happens only for a value the register did not hold yet.
    dense_set(&mut d[HDR..], index, count);
    *h = d;
    Ok(true)
}

/// Redis's sparse update: find the opcode covering `index`; if the value must rise, rewrite that
/// opcode as up to three (zero run, value, zero run; or value runs), then merge equal adjacent
/// values in the five opcodes from the one before. Past `sparse_max` bytes, or for a value over
/// 32, the HLL turns dense.
fn sparse_set(
    h: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max: usize,
) -> Result<bool, Corrupt> {
    if count > VAL_MAX_VALUE {
        return promote(h, index, count);
    }
    let mut end = h.len();
    let (mut p, mut first, mut prev, mut span) = (HDR, 0usize, None, 0usize);
    while p < end {
        let (op, len) = op_at(h, p);
        span = op.span();
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += len;
        first += span;
    }
    if span == 0 || p >= end {
        return Err(Corrupt);
    }
    let (op, oplen) = op_at(h, p);
    let in_place = match op {
        Op::Val(v, _) if v >= count => return Ok(false),
        Op::Val(_, n) | Op::Zero(n) => n == 1,
        Op::XZero(_) => false,
    };
    if in_place {
        h[p] = val(count, 1);
    } else {
        let last = first + span - 1;
        let mut seq = [0u8; 5];
        let mut n = 0;
        match op {
            Op::Val(cur, _) => {
                if index != first {
                    seq[n] = val(cur, index - first);
                    n += 1;
                }
                seq[n] = val(count, 1);
                n += 1;
                if index != last {
                    seq[n] = val(cur, last - index);
                    n += 1;
                }
            }
            Op::Zero(_) | Op::XZero(_) => {
                if index != first {
                    n += put_zero(&mut seq[n..], index - first);
                }
                seq[n] = val(count, 1);
                n += 1;
                if index != last {
                    n += put_zero(&mut seq[n..], last - index);
                }
            }
        }
        // A truncated XZERO at the very end loses the sequence's last byte, as in Redis.
        let new_len = (end + n).saturating_sub(oplen);
        if n > oplen && new_len > sparse_max {
            return promote(h, index, count);
        }
        h.splice(p..(p + oplen).min(end), seq[..n].iter().copied());
        h.truncate(new_len);
        end = h.len();
    }
    let mut p = prev.unwrap_or(HDR);
    let mut scan = 5;
    while p < end && scan > 0 {
        scan -= 1;
        let b = h[p];
        if b & 0xc0 == 0x40 {
            p += 2;
            continue;
        }
        if b & 0xc0 == 0 {
            p += 1;
            continue;
        }
        if let Some(&b2) = h.get(p + 1) {
            if b2 & 0x80 != 0 {
                let (v1, l1) = (((b >> 2) & 0x1f) + 1, usize::from(b & 3) + 1);
                let (v2, l2) = (((b2 >> 2) & 0x1f) + 1, usize::from(b2 & 3) + 1);
                if v1 == v2 && l1 + l2 <= VAL_MAX_LEN {
                    h[p + 1] = val(v1, l1 + l2);
                    h.remove(p);
                    end -= 1;
                    continue;
                }
            }
        }
        p += 1;
    }
    invalidate(h);
    Ok(true)
}

/// Raises `max[i]` to each register of `s` (an HLL whose header was checked).
pub fn merge_into(max: &mut [u8], s: &[u8]) -> Result<(), Corrupt> {
    match encoding(s) {
        Ok(Encoding::Dense) => {
            let regs = &s[HDR..];
            for (i, m) in max.iter_mut().enumerate().take(REGISTERS) {
                *m = (*m).max(get_reg(regs, i));
            }
            Ok(())
        }
        Ok(Encoding::Sparse) => each_sparse(s, |i, v| {
            if let Some(m) = max.get_mut(i) {
                *m = (*m).max(v);
            }
        }),
        Err(NotHll) => Err(Corrupt),
    }
}

/// How many registers hold each value.
pub type Histogram = [u64; 64];

/// The register histogram of the HLL `s`; `Corrupt` for a sparse code not covering exactly
/// 16384 registers.
pub fn histogram(s: &[u8]) -> Result<Histogram, Corrupt> {
    let mut h = [0u64; 64];
    match encoding(s) {
        Ok(Encoding::Dense) => {
            for c in s[HDR..].chunks_exact(3) {
                let (b0, b1, b2) = (c[0], c[1], c[2]);
                h[usize::from(b0 & 63)] += 1;
                h[usize::from((b0 >> 6 | b1 << 2) & 63)] += 1;
                h[usize::from((b1 >> 4 | b2 << 4) & 63)] += 1;
                h[usize::from(b2 >> 2)] += 1;
            }
        }
        Ok(Encoding::Sparse) => each_sparse(s, |_, v| h[usize::from(v)] += 1).map(|()| {
            // Registers not set by a value run are zero.
            h[0] = REGISTERS as u64 - h[1..].iter().sum::<u64>();
        })?,
        Err(NotHll) => return Err(Corrupt),
    }
    Ok(h)
}

/// The histogram of plain one-byte registers (PFCOUNT's merge of several keys).
pub fn raw_histogram(regs: &[u8]) -> Histogram {
    let mut h = [0u64; 64];
    for &r in regs {
        h[usize::from(r & 63)] += 1;
    }
    h
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if before == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        let d = 1.0 - x;
        z -= d * d * y;
        if before == z {
            return z / 3.0;
        }
    }
}

/// The cardinality estimate (Ertl, "New cardinality estimation algorithms for HyperLogLog
/// sketches"), in Redis's order of floating-point operations so the rounding agrees.
pub fn estimate(h: &Histogram) -> u64 {
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - h[q + 1] as f64) / m);
    for &n in h[1..=q].iter().rev() {
        z += n as f64;
        z *= 0.5;
    }
    z += m * sigma(h[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

/// PFDEBUG DECODE's text for a sparse HLL: `z:N` ZERO, `Z:N` XZERO, `v:VALUE,N` VAL.
pub fn decode(s: &[u8]) -> String {
    let parts: Vec<String> = ops(s)
        .map(|op| match op {
            Op::Zero(n) => format!("z:{n}"),
            Op::XZero(n) => format!("Z:{n}"),
            Op::Val(v, n) => format!("v:{v},{n}"),
        })
        .collect();
    parts.join(" ")
}

/// PFSELFTEST: registers keep what is stored in them without touching neighbours; dense and
/// sparse HLLs fed the same elements agree; the estimate stays within six standard errors.
pub fn selftest(sparse_max: usize) -> Result<(), String> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut regs = vec![0u8; DENSE_SIZE - HDR];
    let mut want = vec![0u8; REGISTERS];
    for _ in 0..20 {
        for (i, w) in want.iter_mut().enumerate() {
            *w = rng.gen::<u8>() & REG_MAX;
            set_reg(&mut regs, i, *w);
        }
        for (i, &w) in want.iter().enumerate() {
            let got = get_reg(&regs, i);
            if got != w {
                return Err(format!(
                    "TESTFAILED Register {i} should be {w} but is {got}"
                ));
            }
        }
    }
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..4].copy_from_slice(b"HYLL");
    let mut sparse = new_sparse();
    let relerr = 1.04 / (REGISTERS as f64).sqrt();
    let seed: u64 = rng.gen();
    let mut checkpoint: u64 = 1;
    let count = |h: &[u8]| histogram(h).map(|h| estimate(&h)).unwrap_or(u64::MAX);
    for j in 1..=1_000_000u64 {
        let (i, c) = register_of(&(j ^ seed).to_le_bytes());
        dense_set(&mut dense[HDR..], i, c);
        add(&mut sparse, i, c, sparse_max).map_err(|_| "TESTFAILED sparse HLL corrupted")?;
        if j != checkpoint {
            continue;
        }
        if (j as usize) < sparse_max / 2 && sparse.get(4) != Some(&SPARSE) {
            return Err("TESTFAILED sparse encoding not used".into());
        }
        let card = count(&dense);
        if card != count(&sparse) {
            return Err("TESTFAILED dense/sparse disagree".into());
        }
        let abserr = checkpoint.abs_diff(card);
        // A cardinality of 10 may see a collision now and then: allow exactly one.
        let maxerr = if j == 10 {
            1
        } else {
            (relerr * 6.0 * checkpoint as f64).ceil() as u64
        };
        if abserr > maxerr {
            return Err(format!(
                "TESTFAILED Too big error. card:{checkpoint} abserr:{abserr}"
            ));
        }
        checkpoint *= 10;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registers_match_redis() {
        // Where redis-server 7.0.15 puts these elements (PFADD then PFDEBUG DECODE).
        assert_eq!(register_of(b"a"), (12711, 2));
        assert_eq!(register_of(b"b"), (15780, 1));
        assert_eq!(register_of(b"c"), (8436, 1));
        assert_eq!(register_of(b"hello-world-12345"), (14578, 1));
        let mut h = new_sparse();
        for e in [&b"a"[..], b"b", b"c"] {
            let (i, c) = register_of(e);
            assert!(add(&mut h, i, c, 3000).unwrap());
        }
        assert_eq!(decode(&h), "Z:8436 v:1,1 Z:4274 v:2,1 Z:3068 v:1,1 Z:603");
        assert_eq!(estimate(&histogram(&h).unwrap()), 3);
    }

    #[test]
    fn empty_hll_counts_zero() {
        let h = new_sparse();
        assert_eq!(h.len(), HDR + 2);
        assert_eq!(encoding(&h), Ok(Encoding::Sparse));
        assert_eq!(cached(&h), Some(0));
        assert_eq!(estimate(&histogram(&h).unwrap()), 0);
        assert_eq!(decode(&h), "Z:16384");
    }

    #[test]
    fn sparse_and_dense_agree() {
        let mut s = new_sparse();
        let mut d = to_dense(&s).unwrap();
        for j in 0..5000u32 {
            let (i, c) = register_of(format!("e{j}").as_bytes());
            let a = add(&mut s, i, c, 3000).unwrap();
            let b = add(&mut d, i, c, 3000).unwrap();
            assert_eq!(a, b);
            assert_eq!(
                estimate(&histogram(&s).unwrap()),
                estimate(&histogram(&d).unwrap())
            );
        }
        assert_eq!(encoding(&s), Ok(Encoding::Dense));
        let e = estimate(&histogram(&d).unwrap());
        assert!((4800..5200).contains(&e), "{e}");
    }

    #[test]
    fn registers_round_trip() {
        assert!(selftest(3000).is_ok());
    }

    #[test]
    fn corrupt_sparse_is_detected() {
        let mut h = new_sparse();
        h.extend_from_slice(b"hello");
        assert_eq!(histogram(&h), Err(Corrupt));
        assert_eq!(to_dense(&h), Err(Corrupt));
        let mut max = vec![0u8; REGISTERS];
        assert_eq!(merge_into(&mut max, &h), Err(Corrupt));
        // A truncated XZERO at the end must not panic.
        let mut t = new_sparse();
        t.pop();
        let _ = add(&mut t, 16383, 3, 3000);
        let _ = histogram(&t);
    }
}
