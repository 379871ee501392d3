//! The partial sort Redis uses when COUNT keeps fewer points than a search found: Bentley and
//! McIlroy's quicksort ("Engineering a Sort Function", 1993: median-of-three pivots, a ninther
//! past 40 elements, equal keys gathered at both ends then swapped to the middle, insertion sort
//! below 7 elements) that only descends into the parts overlapping the wanted positions.
//!
//! Points at the same distance (the same cell) come out in the order this algorithm leaves
//! them, not the found order a stable sort keeps, so the same algorithm is needed for a
//! `GEORADIUS ... COUNT n` to list tied points as Redis does.

use std::cmp::Ordering;

/// Orders `v` so that its positions `0..want` hold what a full sort would put there.
pub fn sort_prefix<T>(v: &mut [T], want: usize, cmp: &impl Fn(&T, &T) -> Ordering) {
    if want == 0 {
        return;
    }
    sort_part(v, 0, 0, want - 1, cmp);
}

/// Whether `[start, start + len)` holds any of the wanted positions `[lo, hi]`.
fn overlaps(start: usize, len: usize, lo: usize, hi: usize) -> bool {
    !(hi < start || lo >= start + len)
}

/// The index of the median of `v[a]`, `v[b]`, `v[c]` (the algorithm's exact tie-breaking).
fn median3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &impl Fn(&T, &T) -> Ordering) -> usize {
    if cmp(&v[a], &v[b]) == Ordering::Less {
        if cmp(&v[b], &v[c]) == Ordering::Less {
            b
        } else if cmp(&v[a], &v[c]) == Ordering::Less {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]) == Ordering::Greater {
        b
    } else if cmp(&v[a], &v[c]) == Ordering::Less {
        a
    } else {
        c
    }
}

/// Swaps `v[a..a + n]` with `v[b..b + n]`, element by element (the ranges never overlap).
fn swap_run<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

/// Sorts enough of `whole` (which starts at position `start` of the array being sorted) that
/// positions `[lo, hi]` of the array hold their final elements.
fn sort_part<T>(
    whole: &mut [T],
    mut start: usize,
    lo: usize,
    hi: usize,
    cmp: &impl Fn(&T, &T) -> Ordering,
) {
    let mut v = whole;
    loop {
        let n = v.len();
        if n < 7 {
            for m in 1..n {
                let mut l = m;
                while l > 0 && cmp(&v[l - 1], &v[l]) == Ordering::Greater {
                    v.swap(l, l - 1);
                    l -= 1;
                }
            }
            return;
        }
        let mut mid = n / 2;
        if n > 7 {
            let (mut first, mut last) = (0, n - 1);
            if n > 40 {
                let d = n / 8;
                first = median3(v, first, first + d, first + 2 * d, cmp);
                mid = median3(v, mid - d, mid, mid + d, cmp);
                last = median3(v, last - 2 * d, last - d, last, cmp);
            }
            mid = median3(v, first, mid, last, cmp);
        }
        // The pivot sits at 0; keys equal to it gather at 1..pa and pd+1..n.
        v.swap(0, mid);
        let (mut pa, mut pb) = (1, 1);
        let (mut pc, mut pd) = (n - 1, n - 1);
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[0]);
                if c == Ordering::Greater {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[0]);
                if c == Ordering::Less {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let r = pa.min(pb - pa);
        swap_run(v, 0, pb - r, r);
        let r = (pd - pc).min(n - pd - 1);
        swap_run(v, pb, n - r, r);
        let smaller = pb - pa;
        if smaller > 1 && overlaps(start, smaller, lo, hi) {
            sort_part(&mut v[..smaller], start, lo, hi, cmp);
        }
        let larger = pd - pc;
        if larger <= 1 || !overlaps(start + n - larger, larger, lo, hi) {
            return;
        }
        start += n - larger;
        v = &mut v[n - larger..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_sorted_and_holds_the_smallest() {
        let mut seed = 7u64;
        for len in [0usize, 1, 5, 7, 8, 41, 100, 1000] {
            for want in [1usize, 3, 10, 500] {
                let mut v: Vec<u32> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (seed >> 40) as u32 % 50
                    })
                    .collect();
                let mut all = v.clone();
                all.sort_unstable();
                let want = want.min(len);
                sort_prefix(&mut v, want, &|a: &u32, b: &u32| a.cmp(b));
                assert_eq!(v[..want], all[..want], "len {len} want {want}");
            }
        }
    }
}
