//! The replicated state machine: [`StateMachineStore`] (openraft's `RaftStateMachine`) and its
//! snapshot builder.
//!
//! Every `apply` call writes all its entries' effects, the last applied log id and the last
//! membership in ONE atomic sled batch on the `sm` tree, so the tree always holds the state
//! after some whole number of `apply` calls, and its last applied id says which.
//!
//! Durability: `apply` does not flush. The log is durable (appends are flushed before Raft
//! counts them) and committed entries are never truncated, so after a crash openraft re-applies
//! everything after the tree's last applied id that it knows to be committed (from the saved
//! committed id, or from the leader). sled recovers writes in the order they were made, so the
//! tree is never ahead of the log it was applied from. The one thing that needs the tree itself
//! on disk is purging: openraft purges the log only up to a snapshot, and the tree is flushed
//! before a snapshot is taken, so every purged entry is covered by the durable tree.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use orgplane_model::state::{apply, StateWrite, StorageFault};
use orgplane_raft::{NodeId, RaftRequest, RaftResponse, TypeConfig};

use crate::error::{to_raft, RaftStorageError, StoreError};
use crate::layout::{
    decode_json, encode_json, is_reserved_key, read_json, Trees, LAST_APPLIED_KEY, LAST_MEMBERSHIP_KEY,
    SNAPSHOT_CURRENT_KEY, SNAPSHOT_INSTALLING_KEY,
};
use crate::overlay::BatchOverlay;
use crate::shared::Shared;
use crate::snapshot_format;
use crate::state_reader::StateReader;

/// openraft's metadata of a snapshot, for this crate's node types.
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;
/// The last membership applied, with the id of its log entry.
type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// The state machine: the model's state in the `sm` tree, the current snapshot in the
/// `snapshot` tree. Batches land under the store's apply lock, so readers see whole batches.
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

/// Builds a snapshot from the copy of the `sm` tree taken by
/// [`RaftStateMachine::get_snapshot_builder`].
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    /// The whole tree at the time the builder was made, or why it could not be copied (the
    /// trait's `get_snapshot_builder` cannot fail, so the error waits for `build_snapshot`).
    copy: Result<TreeCopy, StoreError>,
    /// When the copy began: a build's duration runs from there to the saved snapshot.
    started: Instant,
    observer: Option<Arc<dyn SnapshotObserver>>,
}

/// The `sm` tree encoded as a snapshot, with the applied pointers it holds.
struct TreeCopy {
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

    /// Installs a snapshot as [`RaftStateMachine::install_snapshot`] does, but stops after
    /// `batches` batches of its pairs as if the process had crashed there. Not for production.
    #[doc(hidden)]
    pub fn install_snapshot_crashing_after(
        &self,
        meta: &Meta,
        data: Vec<u8>,
        batches: usize,
    ) -> Result<(), StoreError> {
        self.replace_state(meta, data, InstallStop(Some(batches)))
    }

    /// A read handle on the live state, for queries. Cheap; clone it freely.
    pub fn state_reader(&self) -> StateReader {
        StateReader::new(self.shared.clone())
    }

    fn applied_pointers(&self) -> Result<(Option<LogId<NodeId>>, Membership), StoreError> {
        let db = self.shared.db()?;
        let last_applied = read_json(&db.trees.sm, LAST_APPLIED_KEY, "last applied log id")?;
        let last_membership = read_json(&db.trees.sm, LAST_MEMBERSHIP_KEY, "last membership")?.unwrap_or_default();
        Ok((last_applied, last_membership))
    }

    /// Applies `entries` through one overlay and writes the result as one batch.
    fn apply_entries(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> Result<Vec<RaftResponse>, StoreError> {
        // The guard spans the whole call: the overlay's reads and the batch it becomes must be
        // of the same database.
        let db = self.shared.db()?;
        let mut overlay = BatchOverlay::new(&db.trees.sm);
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
        self.write_applied_batch(&db.trees.sm, overlay, &last_applied, last_membership.as_ref())?;
        Ok(responses)
    }

    /// Writes the overlay's effects with the applied pointers, atomically and under the apply
    /// lock, so neither a crash nor a reader sees part of it.
    fn write_applied_batch(
        &self,
        sm: &sled::Tree,
        overlay: BatchOverlay<'_>,
        last_applied: &LogId<NodeId>,
        last_membership: Option<&Membership>,
    ) -> Result<(), StoreError> {
        let mut batch = overlay.into_batch();
        batch.insert(LAST_APPLIED_KEY, encode_json("last applied log id", last_applied)?);
        if let Some(membership) = last_membership {
            batch.insert(LAST_MEMBERSHIP_KEY, encode_json("last membership", membership)?);
        }
        let _no_reads = self.shared.apply_lock.write();
        sm.apply_batch(batch).map_err(StoreError::sled("writing applied entries"))
    }

    /// Flushes, then encodes the whole tree. The flush makes the durable tree at least as new
    /// as the copy, which is what allows openraft to purge the log up to the snapshot. The pairs
    /// are encoded as the tree yields them, so the copy is the snapshot's bytes and nothing more.
    async fn copy_tree(&self) -> Result<TreeCopy, StoreError> {
        self.shared.flush("flushing before a snapshot").await?;
        let db = self.shared.db()?;
        let mut pointers: Vec<(sled::IVec, sled::IVec)> = Vec::new();
        let data = snapshot_format::encode_each(db.trees.sm.iter().inspect(|pair| {
            if let Ok((key, value)) = pair {
                if is_reserved_key(key) {
                    pointers.push((key.clone(), value.clone()));
                }
            }
        }))
        .map_err(StoreError::sled("copying the state for a snapshot"))?;
        let (last_applied, last_membership) = applied_pointers_in(&pointers)?;
        Ok(TreeCopy { data, last_applied, last_membership })
    }

    /// Verifies the snapshot, makes it the current one, then replaces the whole tree with its
    /// pairs (see [`write_current_snapshot_state`]). Readers wait until the tree is whole.
    fn replace_state(&self, meta: &Meta, data: Vec<u8>, stop: InstallStop) -> Result<(), StoreError> {
        check_snapshot(&data, meta)?;
        // The record is the one copy kept: the received bytes go before the tree is written.
        let record = encode_snapshot_record(meta, &data)?;
        drop(data);
        let db = self.shared.db()?;
        let _saving = self.shared.snapshot_save_lock();
        let _no_reads = self.shared.apply_lock.write();
        let mut marked = sled::Batch::default();
        marked.insert(SNAPSHOT_CURRENT_KEY, record);
        marked.insert(SNAPSHOT_INSTALLING_KEY, meta.snapshot_id.as_bytes());
        db.trees.snapshot.apply_batch(marked).map_err(StoreError::sled("marking a snapshot install"))?;
        write_current_snapshot_state(&db.trees, stop)
    }
}

/// Pairs written per sled batch while a snapshot's state is written: what an install holds in
/// memory beyond the snapshot's own bytes. (One transaction of the whole state, as this was
/// first written, held it several times over: a node joining a region of 200k members peaked at
/// 5.5 GiB.)
const INSTALL_BATCH_PAIRS: usize = 4096;

/// Where a test stops an install, as if the process had crashed there: after this many batches
/// of pairs. `None` in production.
#[derive(Clone, Copy)]
struct InstallStop(Option<usize>);

/// Replaces the `sm` tree with the state of the current snapshot, which is marked as being
/// installed. The tree is cleared, written a bounded batch at a time, and gets the applied
/// pointers last; then the mark goes. sled recovers a prefix of the writes made, so after a
/// crash anywhere in here the mark is still there (and [`finish_interrupted_install`] on the
/// next open does all of it again), or the whole state and its pointers are.
fn write_current_snapshot_state(trees: &Trees, stop: InstallStop) -> Result<(), StoreError> {
    let record = trees
        .snapshot
        .get(SNAPSHOT_CURRENT_KEY)
        .map_err(StoreError::sled("reading the snapshot being installed"))?
        .ok_or_else(|| StoreError::CorruptRecord {
            what: "current snapshot record",
            reason: "a snapshot install is marked, but there is no current snapshot".into(),
        })?;
    let (_, data) = split_snapshot_record(&record)?;
    trees.sm.clear().map_err(StoreError::sled("clearing the state for a snapshot"))?;
    let mut pointers = sled::Batch::default();
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    let mut batches = 0;
    let mut written: Result<(), StoreError> = Ok(());
    snapshot_format::decode_each(data, |key, value| {
        if written.is_err() {
            return;
        }
        if is_reserved_key(key) {
            pointers.insert(key, value);
            return;
        }
        batch.insert(key, value);
        in_batch += 1;
        if in_batch == INSTALL_BATCH_PAIRS {
            in_batch = 0;
            batches += 1;
            written = trees
                .sm
                .apply_batch(std::mem::take(&mut batch))
                .map_err(StoreError::sled("writing a snapshot's state"))
                .and_then(|()| stop.check(batches));
        }
    })?;
    written?;
    trees.sm.apply_batch(batch).map_err(StoreError::sled("writing a snapshot's state"))?;
    trees.sm.apply_batch(pointers).map_err(StoreError::sled("writing a snapshot's applied pointers"))?;
    trees.snapshot.remove(SNAPSHOT_INSTALLING_KEY).map_err(StoreError::sled("unmarking a snapshot install"))?;
    Ok(())
}

impl InstallStop {
    fn check(self, batches: usize) -> Result<(), StoreError> {
        if self.0 == Some(batches) {
            tracing::warn!(batches, "snapshot install stopped by the test hook");
            return Err(StoreError::InstallInterrupted { batches });
        }
        Ok(())
    }
}

/// Completes a snapshot install that a crash interrupted: called on open, before anything reads
/// the state. Flushes what it wrote.
pub(crate) fn finish_interrupted_install(db: &sled::Db, trees: &Trees) -> Result<(), StoreError> {
    let marked = trees
        .snapshot
        .get(SNAPSHOT_INSTALLING_KEY)
        .map_err(StoreError::sled("looking for an interrupted snapshot install"))?;
    let Some(snapshot_id) = marked else { return Ok(()) };
    tracing::warn!(snapshot_id = %String::from_utf8_lossy(&snapshot_id), "completing an interrupted snapshot install");
    write_current_snapshot_state(trees, InstallStop(None))?;
    db.flush().map_err(StoreError::sled("flushing a completed snapshot install"))?;
    Ok(())
}

/// Applies a request's commands in order; each sees the effects of the ones before it.
fn apply_request(state: &mut impl StateWrite, request: &RaftRequest) -> Result<RaftResponse, StorageFault> {
    let mut results = Vec::with_capacity(request.commands.len());
    for command in &request.commands {
        results.push(apply(state, command)?);
    }
    Ok(RaftResponse { results })
}

/// The applied pointers stored among a tree's pairs.
fn applied_pointers_in<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    pairs: &[(K, V)],
) -> Result<(Option<LogId<NodeId>>, Membership), StoreError> {
    let value_of = |wanted: &[u8]| pairs.iter().find(|(key, _)| key.as_ref() == wanted).map(|(_, v)| v.as_ref());
    let last_applied = value_of(LAST_APPLIED_KEY).map(|v| decode_json("last applied log id", v)).transpose()?;
    let last_membership =
        value_of(LAST_MEMBERSHIP_KEY).map(|v| decode_json("last membership", v)).transpose()?.unwrap_or_default();
    Ok((last_applied, last_membership))
}

/// Verifies a received snapshot's bytes (checksum and structure) and refuses one whose data does
/// not hold the state its metadata claims. Nothing is written.
fn check_snapshot(data: &[u8], meta: &Meta) -> Result<(), StoreError> {
    let mut pointers: Vec<(&[u8], &[u8])> = Vec::new();
    snapshot_format::decode_each(data, |key, value| {
        if is_reserved_key(key) {
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
fn encode_snapshot_record(meta: &Meta, data: &[u8]) -> Result<Vec<u8>, StoreError> {
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
fn split_snapshot_record(record: &[u8]) -> Result<(Meta, &[u8]), StoreError> {
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

fn sm_read_error(error: StoreError) -> RaftStorageError {
    to_raft(ErrorSubject::StateMachine, ErrorVerb::Read, &error)
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
        self.applied_pointers().map_err(sm_read_error)
    }

    #[tracing::instrument(name = "store.apply", skip_all)]
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<RaftResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_entries(entries).map_err(|e| match &e {
            StoreError::Apply { log_id, .. } => to_raft(ErrorSubject::Apply(*log_id), ErrorVerb::Write, &e),
            _ => sm_write_error(e),
        })
    }

    /// Copies the whole `sm` tree now. sled has no point-in-time snapshots, so the copy is what
    /// makes the snapshot consistent: openraft calls this from the state machine worker, the
    /// same task that calls `apply`, so no apply runs while the copy is taken.
    #[tracing::instrument(name = "store.snapshot_copy", skip_all)]
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let started = Instant::now();
        let copy = self.copy_tree().await;
        SnapshotBuilder { shared: self.shared.clone(), copy, started, observer: self.observer.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    #[tracing::instrument(name = "store.install_snapshot", skip_all, fields(snapshot_id = %meta.snapshot_id))]
    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), RaftStorageError> {
        let started = Instant::now();
        let write_error = |e: StoreError| to_raft(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, &e);
        self.replace_state(meta, snapshot.into_inner(), InstallStop(None)).map_err(write_error)?;
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
