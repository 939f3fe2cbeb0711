//! [`LiveState`]: the state machine's state, held in memory: the model's pairs in key order
//! and the applied pointers (last applied log id, last membership).
//!
//! Nothing of it is written to sled per command. Its durable form is the current snapshot (one
//! value in the `snapshot` tree) plus the log after it: [`crate::open`] decodes the snapshot
//! and applies the committed log entries that follow, and openraft purges the log only up to a
//! snapshot that is saved and flushed. This is how Consul's FSM and etcd's raft examples keep
//! their state: a command costs map updates on every node, not a storage write per key (a
//! profile of the earlier design, where every applied batch was a sled batch, put half of a
//! write's CPU in those sled writes).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::Bound;

use openraft::{LogId, StoredMembership};
use orgplane_model::state::{StateRead, StorageFault};
use orgplane_raft::NodeId;

use crate::error::StoreError;
use crate::layout::{decode_json, encode_json, is_reserved_key, LAST_APPLIED_KEY, LAST_MEMBERSHIP_KEY};
use crate::snapshot_format;

/// The last membership applied, with the id of its log entry.
pub(crate) type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// Model keys and values, in key order.
pub(crate) type Pairs = BTreeMap<Vec<u8>, Vec<u8>>;

/// Key-value pairs in key order, as a list.
pub(crate) type PairList = Vec<(Vec<u8>, Vec<u8>)>;

/// One batch's net effect on the pairs: `Some` is a put, `None` a delete.
pub(crate) type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The state after some whole number of applied batches.
#[derive(Default)]
pub(crate) struct LiveState {
    /// Model keys only: the pointers are fields, never pairs.
    pub(crate) pairs: Pairs,
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) last_membership: Membership,
}

impl LiveState {
    /// The state a snapshot's bytes hold. Verifies the bytes (checksum, structure) first.
    pub(crate) fn from_snapshot(data: &[u8]) -> Result<LiveState, StoreError> {
        let mut pairs = Pairs::new();
        let mut pointers: Vec<(&[u8], &[u8])> = Vec::new();
        snapshot_format::decode_each(data, |key, value| {
            if is_reserved_key(key) {
                pointers.push((key, value));
            } else {
                pairs.insert(key.to_vec(), value.to_vec());
            }
        })?;
        let (last_applied, last_membership) = applied_pointers_in(&pointers)?;
        Ok(LiveState { pairs, last_applied, last_membership })
    }

    /// The applied pointers as the pairs a snapshot stores them in, in key order.
    pub(crate) fn pointer_pairs(&self) -> Result<PairList, StoreError> {
        let mut pointers = Vec::with_capacity(2);
        if let Some(last_applied) = &self.last_applied {
            pointers.push((LAST_APPLIED_KEY.to_vec(), encode_json("last applied log id", last_applied)?));
        }
        pointers.push((LAST_MEMBERSHIP_KEY.to_vec(), encode_json("last membership", &self.last_membership)?));
        Ok(pointers)
    }

    /// The snapshot bytes of this state: the pointers, then the model's pairs (reserved keys
    /// sort first, so this is key order).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let pointers = self.pointer_pairs()?;
        let pairs = pointers.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
        let pairs = pairs.chain(self.pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        let encoded = snapshot_format::encode_each(pairs.map(Ok::<_, Infallible>));
        Ok(encoded.unwrap_or_else(|never| match never {}))
    }

    /// Lands one batch: its writes and the pointers after it.
    pub(crate) fn commit(&mut self, writes: Writes, last_applied: LogId<NodeId>, last_membership: Option<Membership>) {
        for (key, write) in writes {
            match write {
                Some(value) => self.pairs.insert(key, value),
                None => self.pairs.remove(&key),
            };
        }
        self.last_applied = Some(last_applied);
        if let Some(membership) = last_membership {
            self.last_membership = membership;
        }
    }
}

impl StateRead for LiveState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageFault> {
        Ok(self.pairs.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<PairList, StorageFault> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .pairs
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// The applied pointers stored among a snapshot's pairs.
pub(crate) fn applied_pointers_in<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    pairs: &[(K, V)],
) -> Result<(Option<LogId<NodeId>>, Membership), StoreError> {
    let value_of = |wanted: &[u8]| pairs.iter().find(|(key, _)| key.as_ref() == wanted).map(|(_, v)| v.as_ref());
    let last_applied = value_of(LAST_APPLIED_KEY).map(|v| decode_json("last applied log id", v)).transpose()?;
    let last_membership =
        value_of(LAST_MEMBERSHIP_KEY).map(|v| decode_json("last membership", v)).transpose()?.unwrap_or_default();
    Ok((last_applied, last_membership))
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    #[test]
    fn a_state_survives_its_own_encoding() {
        let mut state = LiveState::default();
        let mut writes = Writes::new();
        writes.insert(b"o/1".to_vec(), Some(b"one".to_vec()));
        writes.insert(b"o/2".to_vec(), Some(b"two".to_vec()));
        state.commit(writes, LogId::new(CommittedLeaderId::new(2, 1), 7), None);
        let mut writes = Writes::new();
        writes.insert(b"o/1".to_vec(), None);
        writes.insert(b"m/1/a".to_vec(), Some(b"alice".to_vec()));
        state.commit(writes, LogId::new(CommittedLeaderId::new(2, 1), 8), None);

        let decoded = LiveState::from_snapshot(&state.encode().unwrap()).unwrap();
        assert_eq!(decoded.pairs, state.pairs);
        assert_eq!(decoded.pairs.keys().cloned().collect::<Vec<_>>(), vec![b"m/1/a".to_vec(), b"o/2".to_vec()]);
        assert_eq!(decoded.last_applied, Some(LogId::new(CommittedLeaderId::new(2, 1), 8)));
        assert_eq!(decoded.last_membership, state.last_membership);
    }

    #[test]
    fn scans_are_bounded_and_ordered() {
        let mut state = LiveState::default();
        for key in ["a/1", "a/2", "a/3", "b/1"] {
            state.pairs.insert(key.as_bytes().to_vec(), key.as_bytes().to_vec());
        }
        let keys = |pairs: Vec<(Vec<u8>, Vec<u8>)>| pairs.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(state.scan(b"a/", b"a0", 2).unwrap()), vec![b"a/1".to_vec(), b"a/2".to_vec()]);
        assert_eq!(keys(state.scan(b"a/2", b"b/1", 10).unwrap()), vec![b"a/2".to_vec(), b"a/3".to_vec()]);
        assert!(state.scan(b"b", b"a", 10).unwrap().is_empty());
    }
}
