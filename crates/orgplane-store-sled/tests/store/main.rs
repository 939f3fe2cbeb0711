//! The sled store's integration tests: openraft's conformance suite, restarts and the format
//! record, apply atomicity and agreement with the model's in-memory reference state, snapshots,
//! backups and the stores seeded from them, online compaction and the residency scans.

mod apply;
mod backup;
mod compact;
mod conformance;
mod durability;
mod residency;
mod snapshot;
mod support;
