//! [`BatchOverlay`]: the model's view of the state while one `apply` call runs. Writes go to
//! an overlay that reads see at once (so the second command of a batch sees the first one's
//! org), and at the end the overlay's net effect lands in the live state in one step, under
//! the state's write lock, so no reader sees part of a batch and a fault part way through a
//! batch changes nothing.
//!
//! The overlay reads the live state under its read lock: readers go on while a batch is
//! computed, and only wait while its writes land.

use std::collections::BTreeMap;
use std::ops::Bound;

use orgplane_model::state::{StateRead, StateWrite, StorageFault};

use crate::layout::is_reserved_key;
use crate::live::{Pairs, Writes};

/// The live state's pairs plus the not-yet-landed changes of the current batch.
pub(crate) struct BatchOverlay<'s> {
    base: &'s Pairs,
    /// This batch's writes: `Some` is a put, `None` a delete. Later writes replace earlier ones,
    /// so it holds the batch's net effect.
    pending: Writes,
}

impl<'s> BatchOverlay<'s> {
    pub(crate) fn new(base: &'s Pairs) -> BatchOverlay<'s> {
        BatchOverlay { base, pending: BTreeMap::new() }
    }

    /// The net effect of the batch, to be landed in one step.
    pub(crate) fn into_writes(self) -> Writes {
        self.pending
    }
}

impl StateRead for BatchOverlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageFault> {
        if let Some(write) = self.pending.get(key) {
            return Ok(write.clone());
        }
        Ok(self.base.get(key).cloned())
    }

    /// Merges the base's range with the overlay's in key order. Where both hold a key the
    /// overlay wins; an overlay delete hides the base's value.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageFault> {
        let mut out = Vec::new();
        if start >= end || limit == 0 {
            return Ok(out);
        }
        let range = (Bound::Included(start), Bound::Excluded(end));
        let mut stored = self.base.range::<[u8], _>(range).peekable();
        let mut written = self.pending.range::<[u8], _>(range).peekable();
        while out.len() < limit {
            let written_first = match (stored.peek(), written.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((stored_key, _)), Some((written_key, _))) => written_key <= stored_key,
            };
            if written_first {
                let Some((key, write)) = written.next() else { break };
                // The overlay's write replaces the base's value for the same key.
                if stored.peek().is_some_and(|(stored_key, _)| *stored_key == key) {
                    stored.next();
                }
                if let Some(value) = write {
                    out.push((key.clone(), value.clone()));
                }
            } else if let Some((key, value)) = stored.next() {
                out.push((key.clone(), value.clone()));
            }
        }
        Ok(out)
    }
}

impl StateWrite for BatchOverlay<'_> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        debug_assert!(!is_reserved_key(&key), "the model wrote a reserved key {key:?}");
        self.pending.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        debug_assert!(!is_reserved_key(&key), "the model deleted a reserved key {key:?}");
        self.pending.insert(key, None);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// One step against both the overlay and a plain map.
    #[derive(Debug, Clone)]
    enum Step {
        /// In the base before the overlay exists.
        Stored(u8, u8),
        Put(u8, u8),
        Delete(u8),
        Scan(u8, u8, usize),
        Get(u8),
    }

    fn key(k: u8) -> Vec<u8> {
        // A small key space so that stored keys, puts and deletes collide often; `b/` keeps
        // the keys in the model's range.
        format!("b/{:02}", k % 24).into_bytes()
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Step::Stored(k, v)),
            (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
            any::<u8>().prop_map(Step::Delete),
            (any::<u8>(), any::<u8>(), 0usize..30).prop_map(|(a, b, n)| Step::Scan(a, b, n)),
            any::<u8>().prop_map(Step::Get),
        ]
    }

    proptest! {
        #[test]
        fn overlay_reads_match_a_map_with_the_same_writes(steps in proptest::collection::vec(step(), 1..80)) {
            let mut base = Pairs::new();
            for s in &steps {
                if let Step::Stored(k, v) = s {
                    base.insert(key(*k), vec![*v]);
                }
            }
            let mut reference = base.clone();
            let mut overlay = BatchOverlay::new(&base);
            for s in steps {
                match s {
                    Step::Stored(..) => {}
                    Step::Put(k, v) => {
                        overlay.put(key(k), vec![v]);
                        reference.insert(key(k), vec![v]);
                    }
                    Step::Delete(k) => {
                        overlay.delete(key(k));
                        reference.remove(&key(k));
                    }
                    Step::Get(k) => prop_assert_eq!(overlay.get(&key(k)).unwrap(), reference.get(&key(k)).cloned()),
                    Step::Scan(a, b, limit) => {
                        let (start, end) = (key(a), key(b));
                        let expected: Vec<_> = if start < end {
                            reference.range(start.clone()..end.clone()).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
                        } else {
                            Vec::new()
                        };
                        prop_assert_eq!(overlay.scan(&start, &end, limit).unwrap(), expected);
                    }
                }
            }
            // The batch has the same net effect as the map.
            let mut landed = crate::live::LiveState { pairs: base.clone(), ..Default::default() };
            landed.commit(overlay.into_writes(), openraft::LogId::default(), None);
            prop_assert_eq!(landed.pairs, reference);
        }
    }

    #[test]
    fn a_write_hides_what_the_base_holds() {
        let mut base = Pairs::new();
        base.insert(b"o/1".to_vec(), b"old".to_vec());
        let mut overlay = BatchOverlay::new(&base);
        assert_eq!(overlay.get(b"o/1").unwrap(), Some(b"old".to_vec()));
        overlay.put(b"o/1".to_vec(), b"new".to_vec());
        assert_eq!(overlay.get(b"o/1").unwrap(), Some(b"new".to_vec()));
        overlay.delete(b"o/1".to_vec());
        assert_eq!(overlay.get(b"o/1").unwrap(), None);
        assert!(overlay.scan(b"o/", b"o0", 10).unwrap().is_empty());
        assert_eq!(base.get(b"o/1".as_slice()), Some(&b"old".to_vec()), "nothing lands before the batch ends");
    }
}
