//! The sled store's integration tests: openraft's conformance suite, restarts and the format
//! record, apply atomicity and agreement with the model's in-memory reference state, snapshots,
//! backups and the stores seeded from them.

mod apply;
mod backup;
mod conformance;
mod durability;
mod snapshot;
mod support;
