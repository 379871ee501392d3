//! [`IntSet`]: distinct integers, sorted, in one allocation at the smallest width that holds
//! every one of them (2, 4 or 8 bytes each, Redis's `intset`). Lookups binary-search; an insert
//! or removal moves the tail and resizes the buffer to fit exactly, as an intset does (these
//! are many and small, and spare capacity would cost more than the copies). Boxed slices rather
//! than vectors: no capacity to carry, so a [`super::Set`] stays 32 bytes.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntSet {
    I16(Box<[i16]>),
    I32(Box<[i32]>),
    I64(Box<[i64]>),
}

impl Default for IntSet {
    fn default() -> Self {
        IntSet::I16(Box::default())
    }
}

/// One of the widths an intset stores.
trait Width: Copy + Ord + Into<i64> + TryFrom<i64> {}
impl Width for i16 {}
impl Width for i32 {}
impl Width for i64 {}

fn search<T: Width>(v: &[T], x: i64) -> Result<usize, usize> {
    v.binary_search_by(|e| (*e).into().cmp(&x))
}

/// Changes the elements as a vector, then boxes them again at their exact size.
fn edit<T, R>(b: &mut Box<[T]>, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
    let mut v = std::mem::take(b).into_vec();
    let r = f(&mut v);
    *b = v.into_boxed_slice();
    r
}

/// Inserts `x` in order; `None` if it does not fit the width.
fn insert<T: Width>(b: &mut Box<[T]>, x: i64) -> Option<bool> {
    let t = T::try_from(x).ok()?;
    match b.binary_search(&t) {
        Ok(_) => Some(false),
        Err(at) => {
            edit(b, |v| {
                v.reserve_exact(1);
                v.insert(at, t);
            });
            Some(true)
        }
    }
}

fn remove<T: Width>(b: &mut Box<[T]>, x: i64) -> bool {
    match search(b, x) {
        Ok(at) => {
            edit(b, |v| v.remove(at));
            true
        }
        Err(_) => false,
    }
}

/// Drops the elements at `sorted` (ascending, distinct) in one pass.
fn drop_at<T>(b: &mut Box<[T]>, sorted: &[usize]) {
    let mut next = sorted.iter().peekable();
    let mut i = 0;
    edit(b, |v| {
        v.retain(|_| {
            let drop = next.peek() == Some(&&i);
            if drop {
                next.next();
            }
            i += 1;
            !drop
        })
    });
}

fn widen<T: Width, U: From<T>>(v: &[T]) -> Box<[U]> {
    let mut out = Vec::with_capacity(v.len());
    out.extend(v.iter().map(|&e| U::from(e)));
    out.into_boxed_slice()
}

impl IntSet {
    pub fn len(&self) -> usize {
        match self {
            IntSet::I16(v) => v.len(),
            IntSet::I32(v) => v.len(),
            IntSet::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the buffer (its capacity is its length).
    pub fn bytes(&self) -> usize {
        match self {
            IntSet::I16(v) => v.len() * 2,
            IntSet::I32(v) => v.len() * 4,
            IntSet::I64(v) => v.len() * 8,
        }
    }

    /// The element at `index` in ascending order.
    pub fn get(&self, index: usize) -> Option<i64> {
        match self {
            IntSet::I16(v) => v.get(index).map(|&e| e.into()),
            IntSet::I32(v) => v.get(index).map(|&e| e.into()),
            IntSet::I64(v) => v.get(index).copied(),
        }
    }

    pub fn first(&self) -> Option<i64> {
        self.get(0)
    }

    pub fn last(&self) -> Option<i64> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    pub fn contains(&self, x: i64) -> bool {
        match self {
            IntSet::I16(v) => search(v, x).is_ok(),
            IntSet::I32(v) => search(v, x).is_ok(),
            IntSet::I64(v) => search(v, x).is_ok(),
        }
    }

    /// Adds `x`, widening every element first if `x` needs more bytes; true if it is new.
    pub fn insert(&mut self, x: i64) -> bool {
        let fitted = match self {
            IntSet::I16(v) => insert(v, x),
            IntSet::I32(v) => insert(v, x),
            IntSet::I64(v) => insert(v, x),
        };
        if let Some(added) = fitted {
            return added;
        }
        // `x` is outside the current width, so it is new, and it goes to one end.
        *self = match self {
            IntSet::I16(v) if i32::try_from(x).is_ok() => IntSet::I32(widen(v)),
            IntSet::I16(v) => IntSet::I64(widen(v)),
            IntSet::I32(v) => IntSet::I64(widen(v)),
            IntSet::I64(_) => return false,
        };
        match self {
            IntSet::I16(v) => insert(v, x),
            IntSet::I32(v) => insert(v, x),
            IntSet::I64(v) => insert(v, x),
        }
        .unwrap_or(false)
    }

    /// Removes `x`; true if it was there. The width stays (Redis never narrows an intset).
    pub fn remove(&mut self, x: i64) -> bool {
        match self {
            IntSet::I16(v) => remove(v, x),
            IntSet::I32(v) => remove(v, x),
            IntSet::I64(v) => remove(v, x),
        }
    }

    /// Removes the elements at `sorted` (ascending, distinct indexes).
    pub fn remove_indexes(&mut self, sorted: &[usize]) {
        match self {
            IntSet::I16(v) => drop_at(v, sorted),
            IntSet::I32(v) => drop_at(v, sorted),
            IntSet::I64(v) => drop_at(v, sorted),
        }
    }

    /// Elements in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widens_as_needed_and_stays_sorted() {
        let mut s = IntSet::default();
        assert!(s.insert(5));
        assert!(s.insert(-3));
        assert!(!s.insert(5));
        assert_eq!(s.bytes(), 4);
        assert!(s.insert(100_000));
        assert!(matches!(s, IntSet::I32(_)));
        assert!(s.insert(i64::MIN));
        assert!(matches!(s, IntSet::I64(_)));
        assert!(s.insert(i64::MAX));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![i64::MIN, -3, 5, 100_000, i64::MAX]
        );
        assert_eq!(s.bytes(), 40);
        assert!(s.contains(-3));
        assert!(!s.contains(4));
        assert!(s.remove(5));
        assert!(!s.remove(5));
        assert_eq!((s.first(), s.last()), (Some(i64::MIN), Some(i64::MAX)));
        s.remove_indexes(&[0, 3]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![-3, 100_000]);
        assert_eq!(s.bytes(), 16);
    }

    #[test]
    fn a_small_value_below_a_wide_one_is_placed_in_order() {
        let mut s = IntSet::default();
        s.insert(40_000);
        s.insert(-40_000);
        s.insert(1);
        assert!(matches!(s, IntSet::I32(_)));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![-40_000, 1, 40_000]);
    }
}
