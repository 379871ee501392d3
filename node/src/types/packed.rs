//! [`Packed`]: a sequence of byte strings in one tight buffer, each as `[length varint][bytes]`
//! (what Redis calls a listpack). Small hashes, sets, sorted sets and each chunk of a list are
//! one of these: a few bytes of overhead per element instead of an allocation each. Lookups scan
//! linearly, which is why values convert to tables past the `*-max-listpack-*` thresholds.
//!
//! The buffer's capacity is kept equal to its length (each insert reallocates, as a listpack
//! does): these buffers are many and small, and spare capacity would cost more than the copies.
//!
//! `Packed<true>` (a list's chunk) also ends each element with its encoded length written
//! backwards, as a listpack's `backlen`: popping or indexing from the back then steps back
//! element by element instead of walking the whole chunk from its front.

/// Appends `n` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint at `at`: the value and the bytes it took.
pub(crate) fn get_varint(buf: &[u8], at: usize) -> (usize, usize) {
    let mut n = 0usize;
    let mut shift = 0;
    let mut i = at;
    while let Some(&b) = buf.get(i) {
        // A corrupt run of continuation bytes must not overflow the shift.
        n |= ((b & 0x7F) as usize).checked_shl(shift).unwrap_or(0);
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    (n, i - at)
}

/// Bytes `n` takes as a varint.
pub(crate) fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Bytes an element takes in the buffer.
pub fn encoded_len(item: &[u8]) -> usize {
    varint_len(item.len()) + item.len()
}

/// Appends `n` so that it reads backwards from its last byte: the lowest seven bits last, a
/// set high bit meaning more bits sit before it.
fn put_backlen(out: &mut Vec<u8>, n: usize) {
    let len = varint_len(n);
    for i in (0..len).rev() {
        let more = if i + 1 < len { 0x80 } else { 0 };
        out.push(((n >> (7 * i)) & 0x7F) as u8 | more);
    }
}

/// Reads a backwards length ending just before `end`: the value and the bytes it took.
fn get_backlen(buf: &[u8], end: usize) -> (usize, usize) {
    let mut n = 0usize;
    let mut i = end;
    let mut shift = 0;
    while i > 0 {
        i -= 1;
        let b = buf[i];
        n |= ((b & 0x7F) as usize).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    (n, end - i)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packed<const BACK: bool = false> {
    buf: Vec<u8>,
    count: u32,
}

/// Where an element sits: its index and its byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub index: usize,
    pub offset: usize,
}

impl Packed {
    pub fn new() -> Packed {
        Packed::default()
    }
}

impl<const BACK: bool> Packed<BACK> {
    /// Bytes `item` takes in this kind of buffer.
    pub fn encoded_len(item: &[u8]) -> usize {
        let n = encoded_len(item);
        if BACK {
            n + varint_len(n)
        } else {
            n
        }
    }

    fn encode(out: &mut Vec<u8>, item: &[u8]) {
        put_varint(out, item.len());
        out.extend_from_slice(item);
        if BACK {
            put_backlen(out, encoded_len(item));
        }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the buffer.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The element at byte `offset` and the offset of the next one.
    pub fn at(&self, offset: usize) -> (&[u8], usize) {
        let (len, n) = get_varint(&self.buf, offset);
        let start = offset + n;
        let end = (start + len).min(self.buf.len());
        let next = if BACK {
            (end + varint_len(n + len)).min(self.buf.len())
        } else {
            end
        };
        (&self.buf[start..end], next)
    }

    /// The offset of the element before the one at `offset`; only a `BACK` buffer can tell.
    fn before(&self, offset: usize) -> usize {
        debug_assert!(BACK);
        let (n, took) = get_backlen(&self.buf, offset);
        offset.saturating_sub(took + n)
    }

    pub fn iter(&self) -> Iter<'_, BACK> {
        Iter {
            p: self,
            offset: 0,
            index: 0,
        }
    }

    /// Elements with their positions.
    pub fn iter_pos(&self) -> impl Iterator<Item = (Pos, &[u8])> + '_ {
        let mut offset = 0;
        (0..self.len()).map(move |index| {
            let (item, next) = self.at(offset);
            let pos = Pos { index, offset };
            offset = next;
            (pos, item)
        })
    }

    /// The position of element `index` (walks from the nearer end when it can step back).
    pub fn pos(&self, index: usize) -> Option<Pos> {
        if index >= self.len() {
            return None;
        }
        let mut offset = 0;
        if BACK && index >= self.len() / 2 {
            offset = self.buf.len();
            for _ in index..self.len() {
                offset = self.before(offset);
            }
            return Some(Pos { index, offset });
        }
        for _ in 0..index {
            offset = self.at(offset).1;
        }
        Some(Pos { index, offset })
    }

    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.pos(index).map(|p| self.at(p.offset).0)
    }

    /// The byte offset past the last element.
    pub fn end(&self) -> Pos {
        Pos {
            index: self.len(),
            offset: self.buf.len(),
        }
    }

    /// Inserts `item` before the element at `pos` (or at the end with [`Packed::end`]).
    pub fn insert(&mut self, pos: Pos, item: &[u8]) {
        let mut enc = Vec::with_capacity(Self::encoded_len(item));
        Self::encode(&mut enc, item);
        self.buf.reserve_exact(enc.len());
        self.buf.splice(pos.offset..pos.offset, enc);
        self.count += 1;
    }

    pub fn push_back(&mut self, item: &[u8]) {
        self.buf.reserve_exact(Self::encoded_len(item));
        Self::encode(&mut self.buf, item);
        self.count += 1;
    }

    pub fn push_front(&mut self, item: &[u8]) {
        self.insert(
            Pos {
                index: 0,
                offset: 0,
            },
            item,
        );
    }

    /// Removes `n` elements starting at `pos`.
    pub fn remove(&mut self, pos: Pos, n: usize) {
        let mut end = pos.offset;
        let mut removed = 0;
        while removed < n && end < self.buf.len() {
            end = self.at(end).1;
            removed += 1;
        }
        self.buf.drain(pos.offset..end);
        self.buf.shrink_to_fit();
        self.count -= removed as u32;
    }

    /// Replaces the element at `pos` with `item`.
    pub fn replace(&mut self, pos: Pos, item: &[u8]) {
        let (_, end) = self.at(pos.offset);
        let mut enc = Vec::with_capacity(Self::encoded_len(item));
        Self::encode(&mut enc, item);
        if enc.len() > end - pos.offset {
            self.buf.reserve_exact(enc.len() - (end - pos.offset));
        }
        self.buf.splice(pos.offset..end, enc);
        self.buf.shrink_to_fit();
    }

    /// The first element `pred` accepts, stepping `step` elements at a time from the front (2
    /// walks the fields of field/value pairs).
    pub fn find(&self, step: usize, mut pred: impl FnMut(&[u8]) -> bool) -> Option<Pos> {
        let mut offset = 0;
        let mut index = 0;
        while index < self.len() {
            let (item, mut next) = self.at(offset);
            if pred(item) {
                return Some(Pos { index, offset });
            }
            for _ in 1..step {
                next = self.at(next).1;
            }
            offset = next;
            index += step;
        }
        None
    }

    /// Splits off the elements from `index` on into a new buffer.
    pub fn split_off(&mut self, index: usize) -> Self {
        let Some(pos) = self.pos(index) else {
            return Self::default();
        };
        let tail = self.buf.split_off(pos.offset);
        self.buf.shrink_to_fit();
        let moved = self.count - index as u32;
        self.count = index as u32;
        Self {
            buf: tail,
            count: moved,
        }
    }

    /// Appends every element of `other`.
    pub fn append(&mut self, other: &Self) {
        self.buf.reserve_exact(other.buf.len());
        self.buf.extend_from_slice(&other.buf);
        self.count += other.count;
    }
}

pub struct Iter<'a, const BACK: bool = false> {
    p: &'a Packed<BACK>,
    offset: usize,
    index: usize,
}

impl<'a, const BACK: bool> Iterator for Iter<'a, BACK> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.index >= self.p.len() {
            return None;
        }
        let (item, next) = self.p.at(self.offset);
        self.offset = next;
        self.index += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.p.len() - self.index;
        (left, Some(left))
    }
}

impl<const BACK: bool> ExactSizeIterator for Iter<'_, BACK> {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn push_insert_remove_replace() {
        let mut p = Packed::new();
        p.push_back(b"b");
        p.push_front(b"a");
        let long = vec![b'x'; 300];
        p.push_back(&long);
        assert_eq!(p.len(), 3);
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            vec![&b"a"[..], b"b", &long[..]]
        );
        assert_eq!(p.bytes(), 2 + 2 + 2 + 300);
        let pos = p.find(1, |i| i == b"b").unwrap();
        assert_eq!(pos.index, 1);
        p.replace(pos, b"bbb");
        assert_eq!(p.get(1), Some(&b"bbb"[..]));
        p.insert(p.pos(1).unwrap(), b"");
        assert_eq!(p.get(1), Some(&b""[..]));
        p.remove(p.pos(0).unwrap(), 2);
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![&b"bbb"[..], &long[..]]);
        let tail = p.split_off(1);
        assert_eq!((p.len(), tail.len()), (1, 1));
        p.append(&tail);
        assert_eq!(p.get(1).unwrap().len(), 300);
        assert_eq!(p.buf.capacity(), p.buf.len());
    }

    #[test]
    fn back_lengths_step_back() {
        let mut p = Packed::<true>::default();
        let items: Vec<Vec<u8>> = [0usize, 1, 126, 127, 128, 300, 20_000]
            .iter()
            .map(|&n| vec![b'a' + (n % 26) as u8; n])
            .collect();
        for it in &items {
            p.push_back(it);
        }
        for (i, it) in items.iter().enumerate() {
            assert_eq!(p.get(i), Some(&it[..]), "element {i}");
        }
        assert_eq!(
            p.bytes(),
            items
                .iter()
                .map(|i| Packed::<true>::encoded_len(i))
                .sum::<usize>()
        );
        let last = p.pos(p.len() - 1).unwrap();
        p.remove(last, 1);
        p.insert(p.pos(5).unwrap(), b"mid");
        assert_eq!(p.get(5), Some(&b"mid"[..]));
        assert_eq!(p.get(6), Some(&items[5][..]));
        p.replace(p.pos(6).unwrap(), b"x");
        assert_eq!(p.iter().last(), Some(&b"x"[..]));
        let tail = p.split_off(4);
        assert_eq!(tail.get(0), Some(&items[4][..]));
        assert_eq!(p.get(3), Some(&items[3][..]));
    }

    #[test]
    fn find_steps_over_pairs() {
        let mut p = Packed::new();
        for s in ["f1", "v1", "f2", "f1"] {
            p.push_back(s.as_bytes());
        }
        // "f1" as a value (index 3) is not a field.
        assert_eq!(p.find(2, |i| i == b"f1").unwrap().index, 0);
        assert!(p.find(2, |i| i == b"v1").is_none());
        assert_eq!(p.find(2, |i| i == b"f2").unwrap().index, 2);
    }
}
