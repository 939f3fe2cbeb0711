//! The fault suite's harness: real `orgplane` processes, each node in its own network
//! namespace, clients that record a history of operations while faults are injected (kill -9,
//! SIGSTOP, iptables partitions, a whole region down), and a linearizability checker for the
//! result. The scenarios themselves are in `tests/tests/faults.rs`.
//!
//! - [`checker`]: Wing–Gong linearizability search for a register, memoized and bounded.
//! - [`history`]: operations as recorded, their JSON form, and the analysis of a history
//!   (linearizability per key, versions, lost writes, members).
//! - [`net`]: the namespaces, bridge and iptables rules; prerequisites.
//! - [`procs`]: the binary, processes, signals, leftovers of crashed runs.
//! - [`cluster`]: a region of node processes, the router, status and health.
//! - [`workload`]: the recording clients.
//! - [`scenario`]: the frame of a run: locks, run folder, final checks, the summary line.
//! - [`rng`]: the seeded generator that makes a run replayable (`ORGPLANE_FAULTS_SEED`).
//!
//! Needs root and the Debian packages `iproute2` and `iptables`; every scenario fails with a
//! message naming them when they are missing.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod net;
pub mod procs;
pub mod rng;
pub mod scenario;
pub mod workload;
