#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use rand::{Rng, SeedableRng};

use super::*;

/// The reference: the members sorted by (score, member).
fn model_sorted(m: &HashMap<Vec<u8>, f64>) -> Vec<(Vec<u8>, f64)> {
    let mut v: Vec<(Vec<u8>, f64)> = m.iter().map(|(k, s)| (k.clone(), *s)).collect();
    v.sort_by(|a, b| index::cmp(a.1, &a.0, b.1, &b.0));
    v
}

fn contents(z: &ZSet) -> Vec<(Vec<u8>, f64)> {
    z.iter().map(|(m, s)| (m.to_vec(), s)).collect()
}

fn check(z: &ZSet, m: &HashMap<Vec<u8>, f64>) {
    let want = model_sorted(m);
    assert_eq!(contents(z), want);
    assert_eq!(z.len(), want.len());
    if let ZSet::Large(l) = z {
        l.check();
    }
    let rev: Vec<(Vec<u8>, f64)> = z
        .iter_rev_from(usize::MAX)
        .map(|(m, s)| (m.to_vec(), s))
        .collect();
    let mut back = want.clone();
    back.reverse();
    assert_eq!(rev, back);
}

fn limits(entries: usize) -> Limits {
    Limits {
        zset_max_listpack_entries: entries,
        ..Limits::default()
    }
}

#[test]
fn small_set_orders_and_converts() {
    let l = Limits::default();
    let mut z = ZSet::default();
    assert!(z.insert(b"b", 2.0, &l));
    assert!(z.insert(b"a", 2.0, &l));
    assert!(z.insert(b"c", 1.5, &l));
    assert!(!z.insert(b"c", 3.0, &l));
    assert_eq!(z.encoding(), "listpack");
    let order: Vec<&[u8]> = z.iter().map(|(m, _)| m).collect();
    assert_eq!(order, vec![&b"a"[..], b"b", b"c"]);
    assert_eq!(z.score(b"c"), Some(3.0));
    assert_eq!(z.rank(b"b"), Some((1, 2.0)));
    assert!(z.insert(&[b'x'; 65], 0.0, &l));
    assert_eq!(z.encoding(), "skiplist");
    assert_eq!(z.rank(b"b"), Some((2, 2.0)));
    assert_eq!(z.remove(b"a"), Some(2.0));
    assert_eq!(z.remove(b"a"), None);
    assert_eq!(z.len(), 3);
    let scores: Vec<f64> = z.range_by_score(1.0, 2.5).map(|(_, s)| s).collect();
    assert_eq!(scores, vec![2.0]);
}

#[test]
fn zero_keeps_its_sign_only_when_large() {
    let mut small = ZSet::default();
    small.insert(b"a", -0.0, &Limits::default());
    assert_eq!(small.score(b"a").unwrap().to_bits(), 0.0f64.to_bits());
    let mut large = ZSet::default();
    large.insert(b"a", -0.0, &limits(0));
    assert_eq!(large.score(b"a").unwrap().to_bits(), (-0.0f64).to_bits());
    // An equal score is no change, as in Redis: the sign stays.
    large.insert(b"a", 0.0, &limits(0));
    assert_eq!(large.score(b"a").unwrap().to_bits(), (-0.0f64).to_bits());
}

#[test]
fn random_operations_match_a_model() {
    for (seed, entries, members) in [
        (1u64, 0usize, 3000u32),
        (2, 128, 100),
        (3, 0, 50),
        (4, 0, 40_000),
    ] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let l = limits(entries);
        let mut z = ZSet::default();
        let mut m: HashMap<Vec<u8>, f64> = HashMap::new();
        let ops = if members > 10_000 { 60_000 } else { 6_000 };
        for step in 0..ops {
            let member = format!("m{}", rng.gen_range(0..members)).into_bytes();
            match rng.gen_range(0..10) {
                0..=5 => {
                    let score = f64::from(rng.gen_range(0..50u32)) / 2.0;
                    assert_eq!(
                        z.insert(&member, score, &l),
                        m.insert(member, score).is_none()
                    );
                }
                6 | 7 => assert_eq!(z.remove(&member), m.remove(&member)),
                8 => {
                    let want = model_sorted(&m);
                    let n = rng.gen_range(0..40);
                    let start = rng.gen_range(0..=want.len());
                    let mut got = Vec::new();
                    z.remove_range(start..start + n, |m, s| got.push((m.to_vec(), s)));
                    let end = (start + n).min(want.len());
                    assert_eq!(got, want[start..end].to_vec());
                    for (k, _) in &got {
                        m.remove(k);
                    }
                }
                _ => {
                    let want = model_sorted(&m);
                    let r = ScoreRange {
                        min: f64::from(rng.gen_range(0..50u32)) / 2.0,
                        min_ex: rng.gen(),
                        max: f64::from(rng.gen_range(0..50u32)) / 2.0,
                        max_ex: rng.gen(),
                    };
                    let span = z.score_span(&r);
                    let expect: Vec<usize> = (0..want.len())
                        .filter(|&i| r.above_min(want[i].1) && r.below_max(want[i].1))
                        .collect();
                    assert_eq!(span.len(), expect.len());
                    if let Some(&f) = expect.first() {
                        assert_eq!(span.start, f);
                    }
                    if let Some((k, s)) = want.get(want.len() / 2) {
                        assert_eq!(z.rank(k), Some((want.len() / 2, *s)));
                        assert_eq!(
                            z.get(want.len() / 2).map(|(m, _)| m.to_vec()),
                            Some(k.clone())
                        );
                    }
                }
            }
            if step % 500 == 0 || members <= 100 {
                check(&z, &m);
            }
        }
        check(&z, &m);
    }
}

#[test]
fn long_members_split_chunks_by_bytes() {
    let l = limits(0);
    let mut z = ZSet::default();
    let mut m = HashMap::new();
    for i in 0..300u32 {
        let member = vec![b'a' + (i % 26) as u8; (i as usize * 37) % 5000];
        let member = [member, i.to_be_bytes().to_vec()].concat();
        z.insert(&member, f64::from(i % 7), &l);
        m.insert(member, f64::from(i % 7));
    }
    check(&z, &m);
    let before = z.mem_usage();
    assert!(before > 300 * 2500);
    z.remove_range(0..300, |_, _| ());
    assert!(z.is_empty());
    assert!(z.mem_usage() < before / 10);
}

#[test]
fn lex_ranges_follow_redis_emptiness() {
    use LexBound::*;
    let r = |min, max| LexRange { min, max };
    assert!(r(NegInf, NegInf).is_empty());
    assert!(r(PosInf, PosInf).is_empty());
    assert!(!r(NegInf, PosInf).is_empty());
    assert!(r(PosInf, NegInf).is_empty());
    assert!(r(Incl(b"b"), Incl(b"a")).is_empty());
    assert!(!r(Incl(b"a"), Incl(b"a")).is_empty());
    assert!(r(Incl(b"a"), Excl(b"a")).is_empty());
    let l = Limits::default();
    let mut z = ZSet::default();
    for m in ["a", "b", "c", "d"] {
        z.insert(m.as_bytes(), 0.0, &l);
    }
    assert_eq!(z.lex_span(&r(Excl(b"a"), Incl(b"c"))), 1..3);
    assert_eq!(z.lex_span(&r(NegInf, Excl(b"b"))), 0..1);
    assert_eq!(z.lex_span(&r(Incl(b"e"), PosInf)), 4..4);
}

#[test]
fn scan_by_score_visits_everything_once() {
    let l = limits(0);
    let mut z = ZSet::default();
    for i in 0..1000u32 {
        z.insert(format!("m{i}").as_bytes(), f64::from(i / 3) - 100.0, &l);
    }
    z.insert(b"neg", f64::NEG_INFINITY, &l);
    z.insert(b"zero", -0.0, &l);
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        cursor = z.scan(cursor, 10, |m, _| seen.push(m.to_vec()));
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 1002);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 1002);
}

#[test]
fn memory_per_member_stays_small() {
    let l = limits(0);
    for order in ["up", "down", "random"] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut z = ZSet::default();
        let n = 100_000u32;
        for i in 0..n {
            let score = match order {
                "up" => f64::from(i),
                "down" => -f64::from(i),
                _ => f64::from(rng.gen_range(0..1_000_000u32)),
            };
            z.insert(format!("member:{i}").as_bytes(), score, &l);
        }
        let per = z.mem_usage() / n as usize;
        // Entries take 8 + 1 + ~12 bytes, table slots 12 bytes at 44-87% load.
        assert!(
            per < if order == "random" { 60 } else { 52 },
            "{order}: {per}"
        );
        if let ZSet::Large(l) = &z {
            l.check();
        }
    }
}

#[test]
fn groups_split_and_merge_under_bulk_changes() {
    let l = limits(0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut z = ZSet::default();
    let mut m = HashMap::new();
    for i in 0..120_000u32 {
        let member = format!("k{i}").into_bytes();
        let score = f64::from(rng.gen_range(0..1000u32));
        z.insert(&member, score, &l);
        m.insert(member, score);
    }
    check(&z, &m);
    // Cut big ranges out of the middle and the ends, then thin out what is left.
    for (start, n) in [(50_000, 80_000), (0, 10_000), (60_000, 200_000), (1, 3)] {
        let mut gone = Vec::new();
        z.remove_range(start..start + n, |k, _| gone.push(k.to_vec()));
        gone.iter().for_each(|k| {
            m.remove(k);
        });
        check(&z, &m);
    }
    let keys: Vec<Vec<u8>> = m.keys().cloned().collect();
    for (i, k) in keys.iter().enumerate() {
        if i % 3 != 0 {
            assert_eq!(z.remove(k), m.remove(k));
        }
    }
    check(&z, &m);
    let c = z.clone();
    check(&c, &m);
    assert!(c.mem_usage() <= z.mem_usage());
}
