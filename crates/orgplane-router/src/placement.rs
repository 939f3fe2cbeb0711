//! Where moved orgs live now: the router's cache of forwarding answers.
//!
//! An org id names the region the org was created in, which is where the router sends its
//! requests until told otherwise. After a move, the old region answers FAILED_PRECONDITION with
//! the new region and epoch in its metadata ([`MOVED_TO_HEADER`], [`ORG_EPOCH_HEADER`]); the
//! router remembers that here and goes there, and every later request for the org goes
//! straight to its new home carrying the epoch the router believes. A stale entry costs one
//! more forwarding answer, never a wrong answer: regions, not this cache, decide who serves.
//!
//! Bounded: past [`MAX_ENTRIES`] the cache is emptied and refills from forwarding answers (a
//! router restart does the same).

use std::collections::HashMap;
use std::sync::Mutex;

use orgplane_model::{OrgId, Region};
use orgplane_proto::conv::{MOVED_TO_HEADER, ORG_EPOCH_HEADER};
use tonic::metadata::MetadataMap;

/// The most moved orgs remembered at once.
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// Where an org lives, as far as this router knows, and at what epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) region: Region,
    pub(crate) epoch: u64,
}

/// The forwarding answers this router has seen.
#[derive(Debug, Default)]
pub(crate) struct Placements {
    known: Mutex<HashMap<OrgId, Placement>>,
}

impl Placements {
    /// Where to send requests for `org`: the cached home, if the org moved.
    pub(crate) fn get(&self, org: &OrgId) -> Option<Placement> {
        self.lock().get(org).copied()
    }

    /// Remembers that `org` lives at `placement`, unless a newer epoch is known already.
    pub(crate) fn learn(&self, org: &OrgId, placement: Placement) {
        let mut known = self.lock();
        if known.get(org).is_some_and(|old| old.epoch > placement.epoch) {
            return;
        }
        if known.len() >= MAX_ENTRIES && !known.contains_key(org) {
            known.clear();
        }
        known.insert(org.clone(), placement);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrgId, Placement>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The new home a moved org's old region named in its answer, if the answer is one.
pub(crate) fn forwarded_to(metadata: &MetadataMap) -> Option<Placement> {
    let region = metadata.get(MOVED_TO_HEADER)?.to_str().ok()?.parse::<Region>().ok()?;
    let epoch = metadata.get(ORG_EPOCH_HEADER)?.to_str().ok()?.parse::<u64>().ok()?;
    Some(Placement { region, epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_epoch_wins_and_the_cache_stays_bounded() {
        let cache = Placements::default();
        let org = OrgId::from_u128(Region::Us, 1);
        cache.learn(&org, Placement { region: Region::Eu, epoch: 3 });
        cache.learn(&org, Placement { region: Region::Apac, epoch: 2 });
        assert_eq!(cache.get(&org), Some(Placement { region: Region::Eu, epoch: 3 }), "an older answer is ignored");
        for n in 0..MAX_ENTRIES as u128 + 1 {
            cache.learn(&OrgId::from_u128(Region::Us, 10 + n), Placement { region: Region::Eu, epoch: 2 });
        }
        assert!(cache.lock().len() <= MAX_ENTRIES);
    }

    #[test]
    fn a_forwarding_answer_is_read_from_its_metadata() {
        let mut metadata = MetadataMap::new();
        assert_eq!(forwarded_to(&metadata), None);
        metadata.insert(MOVED_TO_HEADER, "eu".parse().unwrap());
        metadata.insert(ORG_EPOCH_HEADER, "4".parse().unwrap());
        assert_eq!(forwarded_to(&metadata), Some(Placement { region: Region::Eu, epoch: 4 }));
        metadata.insert(ORG_EPOCH_HEADER, "four".parse().unwrap());
        assert_eq!(forwarded_to(&metadata), None, "a malformed answer is not followed");
    }
}
