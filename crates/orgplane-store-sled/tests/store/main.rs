//! The sled store's integration tests: openraft's conformance suite, restarts and the format
//! record, apply atomicity and agreement with the model's in-memory reference state, snapshots.

mod apply;
mod conformance;
mod durability;
mod snapshot;
mod support;
