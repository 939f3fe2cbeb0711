//! The replicated state machine: [`StateMachineStore`] (openraft's `RaftStateMachine`) and its
//! snapshot builder.
//!
//! The state is in memory ([`LiveState`]). Every `apply` call computes all its entries' effects
//! through one overlay and lands them, with the last applied log id and the last membership, in
//! one step under the state's write lock, so readers see the state after some whole number of
//! `apply` calls, and its last applied id says which.
//!
//! Durability: `apply` writes nothing to disk. The log is durable (appends are flushed before
//! Raft counts them) and committed entries are never truncated; the current snapshot is saved
//! and flushed before openraft purges the log up to it. So the state after any crash is the
//! current snapshot plus the log after it: [`recover`], run by every open, decodes the one and
//! applies the other up to the last committed id the log store saved, and openraft applies
//! whatever else it learns is committed.

use std::io::Cursor;
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta};
use orgplane_model::state::{apply, StateWrite, StorageFault};
use orgplane_raft::{NodeId, RaftRequest, RaftResponse, TypeConfig};

use crate::error::{to_raft, RaftStorageError, StoreError};
use crate::layout::{decode_json, encode_json, read_json, Trees, COMMITTED_KEY, SNAPSHOT_CURRENT_KEY};
use crate::live::{applied_pointers_in, LiveState, Membership};
use crate::log_store::read_entries;
use crate::overlay::BatchOverlay;
use crate::shared::Shared;
use crate::snapshot_format;
use crate::state_reader::StateReader;

/// openraft's metadata of a snapshot, for this crate's node types.
pub(crate) type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// The state machine: the live state in memory (shared with readers), the current snapshot in
/// the `snapshot` tree.
pub struct StateMachineStore {
    shared: Arc<Shared>,
    /// Told about every snapshot built or installed, for metrics.
    observer: Option<Arc<dyn SnapshotObserver>>,
}

/// Watches the store's snapshot work, so the node can export counts and durations without this
/// crate knowing a metrics library. Called inline after the work succeeded: keep it quick.
pub trait SnapshotObserver: Send + Sync + 'static {
    /// A snapshot was built and saved, `elapsed` after its copy of the state began.
    fn snapshot_built(&self, elapsed: Duration);
    /// A snapshot from the leader replaced the state, in `elapsed`.
    fn snapshot_installed(&self, elapsed: Duration);
}

/// Builds a snapshot from the copy of the state taken by
/// [`RaftStateMachine::get_snapshot_builder`].
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    /// The state at the time the builder was made, encoded, or why it could not be (the
    /// trait's `get_snapshot_builder` cannot fail, so the error waits for `build_snapshot`).
    copy: Result<StateBytes, StoreError>,
    /// When the copy began: a build's duration runs from there to the saved snapshot.
    started: Instant,
    observer: Option<Arc<dyn SnapshotObserver>>,
}

/// The live state encoded as a snapshot, with the applied pointers it holds.
struct StateBytes {
    data: Vec<u8>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: Membership,
}

impl StateMachineStore {
    pub(crate) fn new(shared: Arc<Shared>) -> StateMachineStore {
        StateMachineStore { shared, observer: None }
    }

    /// Reports every snapshot built or installed from now on to `observer`.
    pub fn observe_snapshots(&mut self, observer: Arc<dyn SnapshotObserver>) {
        self.observer = Some(observer);
    }

    /// Puts `value` at `key` of the live state, as if a command had, without a log entry: to
    /// plant a damaged record in a test. Not for production.
    #[doc(hidden)]
    pub fn plant_record_for_test(&self, key: &[u8], value: &[u8]) {
        self.shared.write_state().pairs.insert(key.to_vec(), value.to_vec());
    }

    /// A read handle on the live state, for queries. Cheap; clone it freely.
    pub fn state_reader(&self) -> StateReader {
        StateReader::new(self.shared.clone())
    }

    fn applied_pointers(&self) -> (Option<LogId<NodeId>>, Membership) {
        let state = self.shared.read_state();
        (state.last_applied, state.last_membership.clone())
    }

    /// Encodes the whole live state. openraft calls this from the state machine worker, the
    /// same task that calls `apply`, so no batch lands meanwhile; readers go on.
    fn encode_state(&self) -> Result<StateBytes, StoreError> {
        let state = self.shared.read_state();
        let data = state.encode()?;
        Ok(StateBytes { data, last_applied: state.last_applied, last_membership: state.last_membership.clone() })
    }

    /// Verifies the snapshot, makes it the current one, then replaces the live state with its
    /// state. A crash after the record is saved reopens with the snapshot's state (see
    /// [`recover`]).
    fn replace_state(&self, meta: &Meta, data: Vec<u8>) -> Result<(), StoreError> {
        check_snapshot(&data, meta)?;
        let record = encode_snapshot_record(meta, &data)?;
        drop(data);
        let state = LiveState::from_snapshot(split_snapshot_record(&record)?.1)?;
        let db = self.shared.db()?;
        let _saving = self.shared.snapshot_save_lock();
        db.trees
            .snapshot
            .insert(SNAPSHOT_CURRENT_KEY, record)
            .map_err(StoreError::sled("saving an installed snapshot"))?;
        *self.shared.write_state() = state;
        Ok(())
    }
}

/// Applies `entries` through one overlay over the live state, then lands the batch in one step.
/// Nothing lands when any entry fails. The caller is the state's only writer.
fn apply_entries(
    state: &RwLock<LiveState>,
    entries: impl IntoIterator<Item = Entry<TypeConfig>>,
) -> Result<Vec<RaftResponse>, StoreError> {
    let read = state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut overlay = BatchOverlay::new(&read.pairs);
    let mut responses = Vec::new();
    let mut last_applied = None;
    let mut last_membership = None;
    for entry in entries {
        let log_id = entry.log_id;
        let response = match entry.payload {
            EntryPayload::Blank => RaftResponse::default(),
            EntryPayload::Normal(request) => {
                apply_request(&mut overlay, &request).map_err(|fault| StoreError::Apply { log_id, fault })?
            }
            EntryPayload::Membership(membership) => {
                last_membership = Some(Membership::new(Some(log_id), membership));
                RaftResponse::default()
            }
        };
        responses.push(response);
        last_applied = Some(log_id);
    }
    let Some(last_applied) = last_applied else { return Ok(responses) };
    let writes = overlay.into_writes();
    // The caller is the only writer, so nothing lands between this read lock and the write lock.
    drop(read);
    state.write().unwrap_or_else(std::sync::PoisonError::into_inner).commit(writes, last_applied, last_membership);
    Ok(responses)
}

/// Log entries applied per batch while [`recover`] replays the log: what it holds beyond the
/// state.
const RECOVERY_BATCH_ENTRIES: u64 = 1024;

/// The state a store opens with: the current snapshot's, then every stored log entry after it
/// up to the saved committed id, applied in order. A log that does not reach back to the
/// snapshot is refused as corrupt (the log is purged only up to a saved snapshot).
pub(crate) fn recover(trees: &Trees) -> Result<LiveState, StoreError> {
    let state =
        match trees.snapshot.get(SNAPSHOT_CURRENT_KEY).map_err(StoreError::sled("reading the current snapshot"))? {
            Some(record) => {
                let (meta, data) = split_snapshot_record(&record)?;
                let state = LiveState::from_snapshot(data)?;
                if state.last_applied != meta.last_log_id {
                    return Err(StoreError::CorruptRecord {
                        what: "current snapshot record",
                        reason: format!(
                            "its data was applied up to {:?}, its meta says {:?}",
                            state.last_applied, meta.last_log_id
                        ),
                    });
                }
                state
            }
            None => LiveState::default(),
        };
    let committed: Option<LogId<NodeId>> = read_json(&trees.raft_state, COMMITTED_KEY, "committed log id")?;
    let Some(committed) = committed else { return Ok(state) };
    let state = RwLock::new(state);
    loop {
        let next = match state.read().unwrap_or_else(std::sync::PoisonError::into_inner).last_applied {
            Some(applied) => applied.index + 1,
            // Nothing applied and no snapshot: the log was never purged, so it starts where the
            // first stored entry is.
            None => first_log_index(trees)?.unwrap_or(0),
        };
        if next > committed.index {
            break;
        }
        let end = committed.index.min(next + RECOVERY_BATCH_ENTRIES - 1);
        let entries = read_entries(&trees.log, (Bound::Included(next), Bound::Included(end)))?;
        if entries.first().map(|e| e.log_id.index) != Some(next) || entries.len() as u64 != end - next + 1 {
            return Err(StoreError::CorruptRecord {
                what: "log",
                reason: format!("entries {next}..={end} are committed after the snapshot but not all stored"),
            });
        }
        apply_entries(&state, entries)?;
    }
    let state = state.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(applied) = state.last_applied {
        tracing::info!(last_applied = %applied, "state recovered from the snapshot and the committed log");
    }
    Ok(state)
}

/// The index of the first stored log entry, if any.
fn first_log_index(trees: &Trees) -> Result<Option<u64>, StoreError> {
    let first = trees.log.first().map_err(StoreError::sled("reading the first log entry"))?;
    Ok(first.and_then(|(key, _)| key.as_ref().try_into().ok().map(u64::from_be_bytes)))
}

/// Applies a request's commands in order; each sees the effects of the ones before it.
fn apply_request(state: &mut impl StateWrite, request: &RaftRequest) -> Result<RaftResponse, StorageFault> {
    let mut results = Vec::with_capacity(request.commands.len());
    for command in &request.commands {
        results.push(apply(state, command)?);
    }
    Ok(RaftResponse { results })
}

/// Verifies a received snapshot's bytes (checksum and structure) and refuses one whose data does
/// not hold the state its metadata claims. Nothing is written.
fn check_snapshot(data: &[u8], meta: &Meta) -> Result<(), StoreError> {
    let mut pointers: Vec<(&[u8], &[u8])> = Vec::new();
    snapshot_format::decode_each(data, |key, value| {
        if crate::layout::is_reserved_key(key) {
            pointers.push((key, value));
        }
    })?;
    let (last_applied, last_membership) = applied_pointers_in(&pointers)?;
    if last_applied != meta.last_log_id || last_membership != meta.last_membership {
        return Err(StoreError::SnapshotRefused {
            reason: format!(
                "its data was applied up to {last_applied:?} with membership {last_membership:?}, \
                 but its metadata says {:?} with {:?}",
                meta.last_log_id, meta.last_membership
            ),
        });
    }
    Ok(())
}

/// The current-snapshot record: the meta's JSON length (u64 big-endian), the meta's JSON, the
/// snapshot bytes.
pub(crate) fn encode_snapshot_record(meta: &Meta, data: &[u8]) -> Result<Vec<u8>, StoreError> {
    let meta_json = encode_json("snapshot meta", meta)?;
    let mut record = Vec::with_capacity(8 + meta_json.len() + data.len());
    record.extend_from_slice(&(meta_json.len() as u64).to_be_bytes());
    record.extend_from_slice(&meta_json);
    record.extend_from_slice(data);
    Ok(record)
}

fn decode_snapshot_record(record: &[u8]) -> Result<(Meta, Vec<u8>), StoreError> {
    let (meta, data) = split_snapshot_record(record)?;
    Ok((meta, data.to_vec()))
}

/// The meta of a current-snapshot record, and its snapshot bytes, borrowed.
pub(crate) fn split_snapshot_record(record: &[u8]) -> Result<(Meta, &[u8]), StoreError> {
    let corrupt = |reason: &str| StoreError::CorruptRecord { what: "current snapshot record", reason: reason.into() };
    let (len, rest) = record.split_first_chunk::<8>().ok_or_else(|| corrupt("shorter than its length prefix"))?;
    let len = usize::try_from(u64::from_be_bytes(*len)).map_err(|_| corrupt("meta length overflows"))?;
    if rest.len() < len {
        return Err(corrupt("meta longer than the record"));
    }
    let (meta_json, data) = rest.split_at(len);
    Ok((decode_json("snapshot meta", meta_json)?, data))
}

/// Reads the current snapshot (meta and bytes in one value, so one read sees a matching pair).
fn read_current_snapshot(snapshot: &sled::Tree) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
    match snapshot.get(SNAPSHOT_CURRENT_KEY).map_err(StoreError::sled("reading the current snapshot"))? {
        Some(record) => decode_snapshot_record(&record).map(Some),
        None => Ok(None),
    }
}

/// Saves a freshly built snapshot as the current one, unless the current one covers more of
/// the log (an install or another build finished first).
fn save_built_snapshot(shared: &Shared, meta: &Meta, data: &[u8]) -> Result<(), StoreError> {
    let db = shared.db()?;
    let _saving = shared.snapshot_save_lock();
    if let Some((current, _)) = read_current_snapshot(&db.trees.snapshot)? {
        if current.last_log_id > meta.last_log_id {
            tracing::info!(built = ?meta.last_log_id, current = ?current.last_log_id, "kept the newer current snapshot");
            return Ok(());
        }
    }
    let record = encode_snapshot_record(meta, data)?;
    db.trees.snapshot.insert(SNAPSHOT_CURRENT_KEY, record).map_err(StoreError::sled("saving the current snapshot"))?;
    Ok(())
}

impl SnapshotBuilder {
    /// A snapshot id unique on this node, also across restarts: the log id it covers and a
    /// counter that sled persists.
    fn new_snapshot_id(&self, last_applied: Option<&LogId<NodeId>>) -> Result<String, StoreError> {
        // Compaction starts a new database, whose counter starts again at 0: an id can then
        // repeat only for a snapshot of the same log id, which holds the same state.
        let counter = self.shared.db()?.db.generate_id().map_err(StoreError::sled("generating a snapshot id"))?;
        Ok(match last_applied {
            Some(log_id) => format!("{}-{}-{counter}", log_id.leader_id.term, log_id.index),
            None => format!("none-{counter}"),
        })
    }
}

fn sm_write_error(error: StoreError) -> RaftStorageError {
    to_raft(ErrorSubject::StateMachine, ErrorVerb::Write, &error)
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Serializes the copy taken when the builder was made. openraft runs this in its own task,
    /// concurrently with further applies, which is why it works from a copy.
    #[tracing::instrument(name = "store.build_snapshot", skip_all)]
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let copy = std::mem::replace(&mut self.copy, Err(StoreError::BuilderSpent))
            .map_err(|e| to_raft(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))?;
        let data = copy.data;
        let snapshot_id = self.new_snapshot_id(copy.last_applied.as_ref()).map_err(sm_write_error)?;
        let meta = Meta { last_log_id: copy.last_applied, last_membership: copy.last_membership, snapshot_id };
        let write_error = |e: StoreError| to_raft(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, &e);
        save_built_snapshot(&self.shared, &meta, &data).map_err(write_error)?;
        self.shared.flush("flushing a built snapshot").await.map_err(write_error)?;
        if let Some(observer) = &self.observer {
            observer.snapshot_built(self.started.elapsed());
        }
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), RaftStorageError> {
        Ok(self.applied_pointers())
    }

    #[tracing::instrument(name = "store.apply", skip_all)]
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<RaftResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        apply_entries(self.shared.state_lock(), entries).map_err(|e| match &e {
            StoreError::Apply { log_id, .. } => to_raft(ErrorSubject::Apply(*log_id), ErrorVerb::Write, &e),
            _ => sm_write_error(e),
        })
    }

    /// Encodes the whole live state now: openraft calls this from the state machine worker, the
    /// same task that calls `apply`, so no batch lands while the copy is taken.
    #[tracing::instrument(name = "store.snapshot_copy", skip_all)]
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let started = Instant::now();
        let copy = self.encode_state();
        SnapshotBuilder { shared: self.shared.clone(), copy, started, observer: self.observer.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    #[tracing::instrument(name = "store.install_snapshot", skip_all, fields(snapshot_id = %meta.snapshot_id))]
    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), RaftStorageError> {
        let started = Instant::now();
        let write_error = |e: StoreError| to_raft(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, &e);
        self.replace_state(meta, snapshot.into_inner()).map_err(write_error)?;
        self.shared.flush("flushing an installed snapshot").await.map_err(write_error)?;
        if let Some(observer) = &self.observer {
            observer.snapshot_installed(started.elapsed());
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let read_error = |e: StoreError| to_raft(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e);
        let current =
            read_current_snapshot(&self.shared.db().map_err(read_error)?.trees.snapshot).map_err(read_error)?;
        Ok(current.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
