use super::*;
use rand::{Rng, SeedableRng};

fn limits(fill: i64) -> Limits {
    Limits {
        list_max_listpack_size: fill,
        ..Limits::default()
    }
}

fn items(l: &List) -> Vec<Vec<u8>> {
    l.iter().map(<[u8]>::to_vec).collect()
}

/// The chunk invariants: no empty chunk, counts and bytes add up, no chunk over the limit
/// unless it holds a single element.
fn check(l: &List, fill: i64) {
    assert!(l.chunks.iter().all(|c| !c.is_empty()));
    assert_eq!(l.chunks.iter().map(Chunk::len).sum::<usize>(), l.len());
    assert_eq!(l.chunks.iter().map(Chunk::bytes).sum::<usize>(), l.bytes);
    for c in &l.chunks {
        assert!(fits(fill, c.bytes(), c.len()), "chunk over the limit");
    }
    let rev: Vec<Vec<u8>> = l.iter_rev().map(<[u8]>::to_vec).collect();
    let mut fwd = items(l);
    fwd.reverse();
    assert_eq!(rev, fwd);
}

#[test]
fn chunk_limits_follow_the_setting() {
    assert!(fits(2, 10, 2));
    assert!(!fits(2, 10, 3));
    assert!(!fits(100, 9000, 3));
    assert!(fits(-1, 4096, 500));
    assert!(!fits(-1, 4097, 2));
    assert!(fits(-5, 65536, 2));
    assert!(fits(-9, 65536, 2));
    // A single element always fits (a chunk of its own).
    assert!(fits(-1, 1 << 20, 1));
    assert!(fits(0, 10, 1) && !fits(0, 10, 2));
}

#[test]
fn pushes_pops_and_indexes() {
    let l5 = limits(5);
    let mut l = List::default();
    for i in 0..23 {
        l.push_back(format!("{i}").as_bytes(), &l5);
    }
    l.push_front(b"head", &l5);
    assert_eq!(l.len(), 24);
    assert_eq!(l.chunks.len(), 6);
    assert_eq!(l.get(0), Some(&b"head"[..]));
    assert_eq!(l.get(23), Some(&b"22"[..]));
    assert_eq!(l.get(12), Some(&b"11"[..]));
    assert_eq!(l.get(24), None);
    assert_eq!(
        l.iter_from(20).collect::<Vec<_>>(),
        [b"19", b"20", b"21", b"22"]
    );
    assert_eq!(l.pop_front().unwrap(), b"head");
    assert_eq!(l.pop_back().unwrap(), b"22");
    l.remove_front(7);
    l.remove_back(7);
    assert_eq!(items(&l).concat(), b"7891011121314".to_vec());
    check(&l, 5);
    l.remove_back(100);
    assert!(l.is_empty());
    assert_eq!(l.mem_usage(), 0);
}

#[test]
fn a_large_element_gets_a_chunk_of_its_own() {
    let l = limits(-2);
    let mut list = List::default();
    list.push_back(b"a", &l);
    list.push_back(&[b'x'; 10_000], &l);
    list.push_back(b"b", &l);
    assert_eq!(list.chunks.len(), 3);
    check(&list, -2);
    assert!(list.set(1, b"small", &l));
    list.set(0, &[b'y'; 9000], &l);
    check(&list, -2);
    assert_eq!(list.get(0).unwrap().len(), 9000);
    assert_eq!(list.get(1), Some(&b"small"[..]));
    assert!(!list.set(3, b"z", &l));
}

#[test]
fn insert_set_and_remove_match_a_model() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for fill in [1, 3, 16, -1, -2] {
        let lim = limits(fill);
        let mut l = List::default();
        let mut model: Vec<Vec<u8>> = Vec::new();
        for _ in 0..3000 {
            let item: Vec<u8> = if rng.gen_bool(0.1) {
                vec![b'x'; rng.gen_range(100..6000)]
            } else {
                format!("{}", rng.gen_range(0..20)).into_bytes()
            };
            match rng.gen_range(0..8) {
                0 => {
                    l.push_back(&item, &lim);
                    model.push(item);
                }
                1 => {
                    l.push_front(&item, &lim);
                    model.insert(0, item);
                }
                2 => {
                    let at = rng.gen_range(0..=model.len());
                    l.insert(at, &item, &lim);
                    model.insert(at, item);
                }
                3 if !model.is_empty() => {
                    let at = rng.gen_range(0..model.len());
                    assert!(l.set(at, &item, &lim));
                    model[at] = item;
                }
                4 => {
                    let count = rng.gen_range(-2..=2);
                    let target = format!("{}", rng.gen_range(0..20)).into_bytes();
                    let removed = l.remove_matching(&target, count, &lim);
                    let mut want = 0;
                    let quota = if count == 0 {
                        usize::MAX
                    } else {
                        count.unsigned_abs() as usize
                    };
                    if count >= 0 {
                        model.retain(|x| {
                            let drop = *x == target && want < quota;
                            want += usize::from(drop);
                            !drop
                        });
                    } else {
                        model.reverse();
                        model.retain(|x| {
                            let drop = *x == target && want < quota;
                            want += usize::from(drop);
                            !drop
                        });
                        model.reverse();
                    }
                    assert_eq!(removed, want);
                }
                5 => {
                    let n = rng.gen_range(0..4);
                    l.remove_front(n);
                    model.drain(..n.min(model.len()));
                }
                6 => {
                    assert_eq!(l.pop_back(), model.pop());
                }
                _ => {
                    if !model.is_empty() {
                        let at = rng.gen_range(0..model.len());
                        assert_eq!(l.get(at), Some(&model[at][..]));
                        assert_eq!(l.iter_from(at).next(), Some(&model[at][..]));
                    }
                }
            }
            assert_eq!(l.len(), model.len());
        }
        assert_eq!(items(&l), model);
        check(&l, fill);
    }
}
