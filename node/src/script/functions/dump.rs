//! FUNCTION DUMP's payload, in our own format: a magic, a version, each library's code, and a
//! checksum of all that (RESTORE refuses a payload whose version or checksum is wrong).

use bytes::{BufMut, Bytes, BytesMut};

const MAGIC: &[u8; 6] = b"RCFUNC";
const VERSION: u8 = 1;

/// The payload holding these libraries' code.
pub fn encode<'a>(codes: impl Iterator<Item = &'a Bytes>) -> Bytes {
    let codes: Vec<&Bytes> = codes.collect();
    let mut out = BytesMut::new();
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u32_le(codes.len() as u32);
    for c in codes {
        out.put_u32_le(c.len() as u32);
        out.put_slice(c);
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&out);
    out.put_u64_le(sum);
    out.freeze()
}

/// The libraries' code in a payload, or `None` if it is not one of ours (or is damaged).
pub fn decode(payload: &[u8]) -> Option<Vec<Bytes>> {
    let body_len = payload.len().checked_sub(8)?;
    let (body, sum) = payload.split_at(body_len);
    let sum = u64::from_le_bytes(sum.try_into().ok()?);
    if xxhash_rust::xxh3::xxh3_64(body) != sum {
        return None;
    }
    let rest = body.strip_prefix(MAGIC)?;
    let (&version, rest) = rest.split_first()?;
    if version != VERSION {
        return None;
    }
    let (count, mut rest) = take_u32(rest)?;
    let mut codes = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let (len, r) = take_u32(rest)?;
        let code = r.get(..len as usize)?;
        codes.push(Bytes::copy_from_slice(code));
        rest = &r[len as usize..];
    }
    rest.is_empty().then_some(codes)
}

fn take_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let head = b.get(..4)?;
    Some((u32::from_le_bytes(head.try_into().ok()?), &b[4..]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let codes = [
            Bytes::from_static(b"#!lua name=a\n"),
            Bytes::from_static(b""),
        ];
        let p = encode(codes.iter());
        assert_eq!(decode(&p).unwrap(), codes.to_vec());
        let mut bad = p.to_vec();
        bad[10] ^= 1;
        assert!(decode(&bad).is_none());
        assert!(decode(b"bad_payload").is_none());
        assert!(decode(&encode([].iter())).unwrap().is_empty());
    }
}
