//! The bytes of a state-machine snapshot: the whole live state (model data, last applied log
//! id, last membership) as length-prefixed pairs, with a header and a checksum.
//!
//! ```text
//! magic "OPSMSNAP" | version u32 | pair count u64 | (key len u64, key, value len u64, value)* | crc32 u32
//! ```
//!
//! Integers are big-endian. The CRC-32 covers every byte before it. Pairs are in strictly
//! ascending key order, as the state holds them; decoding checks all of this, so a snapshot
//! that arrives damaged is refused before anything is changed.
//!
//! The same bytes are a backup's data: [`SnapshotChunks`] produces them a bounded piece at a
//! time (a backup streams them), and [`encode_each`] writes them in one buffer as the state
//! iterates (a Raft snapshot); tests hold both to the same bytes. [`decode_each`] walks a
//! snapshot's pairs without copying them.

use std::marker::PhantomData;

use crate::error::StoreError;

const MAGIC: &[u8; 8] = b"OPSMSNAP";
/// The snapshot format version. Bump it on any change to this layout.
pub(crate) const SNAPSHOT_VERSION: u32 = 1;
const HEADER_LEN: usize = MAGIC.len() + 4 + 8;
const CHECKSUM_LEN: usize = 4;

/// A key and its value, as a snapshot holds them.
#[cfg(test)]
pub(crate) type Pair = (Vec<u8>, Vec<u8>);

/// Encodes `pairs`, which must be in ascending key order (as a sled tree yields them).
#[cfg(test)]
pub(crate) fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(usize::try_from(encoded_len(pairs)).unwrap_or(0));
    for chunk in SnapshotChunks::new(pairs, usize::MAX) {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

/// Encodes the pairs `pairs` yields, in ascending key order, as they come: the same bytes as
/// [`encode`] of them all, without holding them. Stops at the first error.
pub(crate) fn encode_each<K, V, E>(pairs: impl IntoIterator<Item = Result<(K, V), E>>) -> Result<Vec<u8>, E>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut bytes = header(0);
    let mut count: u64 = 0;
    for pair in pairs {
        let (key, value) = pair?;
        put_bytes(&mut bytes, key.as_ref());
        put_bytes(&mut bytes, value.as_ref());
        count += 1;
    }
    bytes[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&count.to_be_bytes());
    let checksum = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&checksum.to_be_bytes());
    Ok(bytes)
}

/// How many bytes [`encode`] makes of `pairs`.
pub(crate) fn encoded_len<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> u64 {
    let body: u64 = pairs.iter().map(|(k, v)| 16 + k.as_ref().len() as u64 + v.as_ref().len() as u64).sum();
    (HEADER_LEN + CHECKSUM_LEN) as u64 + body
}

/// The encoding of a list of pairs, in pieces of at most `max_chunk` bytes; all of them in
/// order are exactly [`encode`]'s bytes. Each piece is encoded when it is asked for, so only
/// the pairs and one piece are in memory, never the whole encoding.
pub(crate) struct SnapshotChunks<P, K, V> {
    pairs: P,
    next_pair: usize,
    /// Encoded bytes not yet handed out; after the last pair, the checksum too.
    pending: Vec<u8>,
    /// The CRC of every byte put in `pending` so far, the checksum excepted.
    crc: crc32fast::Hasher,
    sealed: bool,
    max_chunk: usize,
    _pair: PhantomData<fn() -> (K, V)>,
}

impl<P, K, V> SnapshotChunks<P, K, V>
where
    P: AsRef<[(K, V)]>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    /// Pieces of the encoding of `pairs` (ascending key order); `max_chunk` is at least 1.
    pub(crate) fn new(pairs: P, max_chunk: usize) -> Self {
        let pending = header(pairs.as_ref().len() as u64);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&pending);
        SnapshotChunks {
            pairs,
            next_pair: 0,
            pending,
            crc,
            sealed: false,
            max_chunk: max_chunk.max(1),
            _pair: PhantomData,
        }
    }
}

impl<P, K, V> Iterator for SnapshotChunks<P, K, V>
where
    P: AsRef<[(K, V)]>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let pairs = self.pairs.as_ref();
        while self.pending.len() < self.max_chunk && !self.sealed {
            match pairs.get(self.next_pair) {
                Some((key, value)) => {
                    let start = self.pending.len();
                    put_bytes(&mut self.pending, key.as_ref());
                    put_bytes(&mut self.pending, value.as_ref());
                    self.crc.update(&self.pending[start..]);
                    self.next_pair += 1;
                }
                None => {
                    let checksum = self.crc.clone().finalize();
                    self.pending.extend_from_slice(&checksum.to_be_bytes());
                    self.sealed = true;
                }
            }
        }
        if self.pending.is_empty() {
            return None;
        }
        if self.pending.len() > self.max_chunk {
            let rest = self.pending.split_off(self.max_chunk);
            return Some(std::mem::replace(&mut self.pending, rest));
        }
        Some(std::mem::take(&mut self.pending))
    }
}

/// The header of a snapshot of `count` pairs.
fn header(count: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    bytes.extend_from_slice(&count.to_be_bytes());
    bytes
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Decodes and verifies a snapshot. Any damage is a [`StoreError::SnapshotRefused`].
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Pair>, StoreError> {
    let mut pairs: Vec<Pair> = Vec::new();
    decode_each(bytes, |key, value| pairs.push((key.to_vec(), value.to_vec())))?;
    Ok(pairs)
}

/// Verifies a snapshot and hands each pair to `each`, in key order, without copying it.
/// Nothing is handed out before the checksum has been verified; a structural fault found
/// later (only possible in bytes that a bug wrote and checksummed) stops the walk with a
/// refusal. Returns the number of pairs.
pub(crate) fn decode_each<'a>(bytes: &'a [u8], mut each: impl FnMut(&'a [u8], &'a [u8])) -> Result<u64, StoreError> {
    let body = verified_body(bytes)?;
    let mut reader = Reader { rest: body };
    if reader.take(MAGIC.len())? != MAGIC {
        return Err(refused("it does not start with the snapshot magic"));
    }
    let version = reader.u32()?;
    if version != SNAPSHOT_VERSION {
        return Err(refused(format!("snapshot format version {version}, this build reads {SNAPSHOT_VERSION}")));
    }
    let count = reader.u64()?;
    let mut previous: Option<&[u8]> = None;
    for _ in 0..count {
        let key = reader.length_prefixed()?;
        let value = reader.length_prefixed()?;
        if previous.is_some_and(|previous| previous >= key) {
            return Err(refused("keys are not in strictly ascending order"));
        }
        previous = Some(key);
        each(key, value);
    }
    if !reader.rest.is_empty() {
        return Err(refused(format!("{} bytes follow the last pair", reader.rest.len())));
    }
    Ok(count)
}

/// Checks the trailing CRC-32 and returns the bytes it covers.
fn verified_body(bytes: &[u8]) -> Result<&[u8], StoreError> {
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(refused(format!("{} bytes is too short to be a snapshot", bytes.len())));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let stored = u32::from_be_bytes(trailer.try_into().map_err(|_| refused("no checksum"))?);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(refused(format!("checksum mismatch: stored {stored:08x}, computed {computed:08x}")));
    }
    Ok(body)
}

/// Reads the body front to back; running out of bytes is a refusal, never a panic.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < len {
            return Err(refused(format!("truncated: wanted {len} more bytes, {} left", self.rest.len())));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes(bytes.try_into().map_err(|_| refused("short u32"))?))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let bytes = self.take(8)?;
        Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| refused("short u64"))?))
    }

    fn length_prefixed(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| refused(format!("length {len} does not fit in memory")))?;
        self.take(len)
    }
}

fn refused(reason: impl Into<String>) -> StoreError {
    StoreError::SnapshotRefused { reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Pair> {
        vec![
            (b"\x00last_applied".to_vec(), b"{}".to_vec()),
            (b"m/eu-1/alice".to_vec(), b"member".to_vec()),
            (b"o/eu-1".to_vec(), Vec::new()),
        ]
    }

    fn check_refused(bytes: &[u8], expected_reason: &str) {
        match decode(bytes) {
            Err(StoreError::SnapshotRefused { reason }) => {
                assert!(reason.contains(expected_reason), "reason {reason:?} lacks {expected_reason:?}")
            }
            other => panic!("expected a refusal with {expected_reason:?}, got {other:?}"),
        }
    }

    /// Re-seals `bytes` with a correct checksum, to reach the checks behind it.
    fn resealed(mut body: Vec<u8>) -> Vec<u8> {
        let checksum = crc32fast::hash(&body);
        body.extend_from_slice(&checksum.to_be_bytes());
        body
    }

    #[test]
    fn pieces_of_any_size_make_the_same_bytes() {
        let pairs = sample();
        let whole = encode(&pairs);
        assert_eq!(encoded_len(&pairs), whole.len() as u64);
        for max_chunk in [1, 3, 7, 16, whole.len() - 1, whole.len(), whole.len() + 5] {
            let pieces: Vec<Vec<u8>> = SnapshotChunks::new(pairs.clone(), max_chunk).collect();
            assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= max_chunk), "max {max_chunk}");
            assert_eq!(pieces.concat(), whole, "max {max_chunk}");
        }
        let empty: Vec<Pair> = Vec::new();
        assert_eq!(SnapshotChunks::new(&empty[..], 4).collect::<Vec<_>>().concat(), encode(&empty));
    }

    #[test]
    fn encoding_pairs_as_they_come_makes_the_same_bytes() {
        let pairs = sample();
        let each = encode_each(pairs.iter().map(|(k, v)| Ok::<_, ()>((k, v)))).unwrap();
        assert_eq!(each, encode(&pairs));
        let none: Vec<Result<Pair, ()>> = Vec::new();
        assert_eq!(encode_each(none).unwrap(), encode::<Vec<u8>, Vec<u8>>(&[]));
        let failing = [Ok(sample()[0].clone()), Err("disk"), Ok(sample()[1].clone())];
        assert_eq!(encode_each(failing), Err("disk"));
    }

    #[test]
    fn round_trip() {
        assert_eq!(decode(&encode(&sample())).unwrap(), sample());
        assert_eq!(decode(&encode::<Vec<u8>, Vec<u8>>(&[])).unwrap(), Vec::<Pair>::new());
    }

    #[test]
    fn every_single_byte_flip_is_refused() {
        let bytes = encode(&sample());
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(decode(&damaged).is_err(), "a flip at byte {at} went unnoticed");
        }
    }

    #[test]
    fn damage_is_named() {
        let bytes = encode(&sample());
        check_refused(&bytes[..10], "too short");
        check_refused(&bytes[..bytes.len() - 1], "checksum mismatch");

        let body = bytes[..bytes.len() - CHECKSUM_LEN].to_vec();
        let mut wrong_version = body.clone();
        wrong_version[MAGIC.len() + 3] = 9;
        check_refused(&resealed(wrong_version), "snapshot format version 9");

        let mut wrong_magic = body.clone();
        wrong_magic[0] = b'X';
        check_refused(&resealed(wrong_magic), "magic");

        let mut truncated = body.clone();
        truncated.truncate(body.len() - 3);
        check_refused(&resealed(truncated), "truncated");

        let mut trailing = body.clone();
        trailing.push(7);
        check_refused(&resealed(trailing), "follow the last pair");

        let mut unordered = sample();
        unordered.swap(1, 2);
        check_refused(&encode(&unordered), "ascending");
    }
}
