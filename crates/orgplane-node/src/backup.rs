//! `Backup` on a node: a consistent, linearizable copy of this region's state machine,
//! streamed as a header, data chunks and a trailer with the data's CRC-32.
//!
//! The order of the steps is what makes the backup right:
//! 1. a read index from the leader (a quorum round): every write acknowledged before the call
//!    began is at or below it;
//! 2. wait until this replica applied up to it (steps 1 and 2 are a linearizable read's);
//! 3. copy the whole state machine while no batch lands ([`StateReader::copy_state`]): the
//!    state after exactly the entries up to the copy's last applied id, which is the index the
//!    header names (at least the read index);
//! 4. stream the copy's encoding, a chunk at a time.
//!
//! Applies wait only for step 3, the in-memory copy (as for a Raft snapshot); the stream runs
//! while writes go on. The node holds the region's state once in memory (the copy) plus one
//! encoded chunk, never the whole encoding. The copy is of this node's own state machine, so a
//! backup holds this region's data and nothing else, by construction.

use std::pin::Pin;

use futures::Stream;
use orgplane_backup::{BackupHeader, BackupMember};
use orgplane_model::state::StorageFault;
use orgplane_proto::conv::{backup_header_to_wire, parse_region};
use orgplane_proto::v1::{backup_chunk, BackupChunk, BackupTrailer};
use orgplane_store_sled::{backup_data_format, StateCopy};
use tonic::Status;

use crate::error::NodeError;
use crate::org_service::NodeCore;

/// The largest data chunk of a backup stream: small enough for any gRPC message limit in the
/// path (nodes, router and client allow 4 MiB), large enough that framing costs nothing.
pub const BACKUP_CHUNK_BYTES: usize = 1024 * 1024;

/// The messages of a backup stream.
pub type BackupStream = Pin<Box<dyn Stream<Item = Result<BackupChunk, Status>> + Send>>;

/// Takes the copy (steps 1 to 3 of the module docs) and returns the stream of step 4. Fails
/// before the first message for a request of another region, or when the region cannot
/// confirm a read index (UNAVAILABLE, naming the region).
pub(crate) async fn start_backup(core: &NodeCore, region: &str) -> Result<BackupStream, NodeError> {
    let requested = parse_region("region", region)?;
    if requested != core.region {
        return Err(NodeError::WrongRegion { serving: core.region, requested });
    }
    let read_index = core.reader.linearize().await.map_err(|source| NodeError::Read { region: core.region, source })?;
    let state = core.state.clone();
    let copy = tokio::task::spawn_blocking(move || state.copy_state())
        .await
        .map_err(|e| NodeError::Unavailable { region: core.region, reason: format!("the copy task failed: {e}") })?
        .map_err(|e| NodeError::Storage { region: core.region, source: StorageFault(e.to_string()) })?;
    let header = header_of(core, &copy)?;
    if header.log_index < read_index {
        // Cannot happen (the copy follows the wait for the read index); refuse rather than
        // hand out a backup that could miss an acknowledged write.
        return Err(NodeError::Unavailable {
            region: core.region,
            reason: format!("the copy is at index {}, behind the read index {read_index}", header.log_index),
        });
    }
    tracing::info!(
        log_index = header.log_index,
        read_index,
        data_bytes = header.data_bytes,
        "backup copy taken; streaming it"
    );
    let messages = BackupMessages {
        header: Some(BackupChunk { part: Some(backup_chunk::Part::Header(backup_header_to_wire(&header))) }),
        data: Box::new(copy.into_chunks(BACKUP_CHUNK_BYTES)),
        crc: crc32fast::Hasher::new(),
        trailer_sent: false,
    };
    Ok(Box::pin(futures::stream::iter(messages.map(Ok))))
}

/// The header of a backup of `copy`, taken by this node now.
fn header_of(core: &NodeCore, copy: &StateCopy) -> Result<BackupHeader, NodeError> {
    let last_applied = copy.last_applied().ok_or_else(|| NodeError::Unavailable {
        region: core.region,
        reason: "this node has applied nothing yet".into(),
    })?;
    let membership = copy.last_membership().membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    Ok(BackupHeader {
        region: core.region,
        log_index: last_applied.index,
        log_term: last_applied.leader_id.term,
        membership: membership
            .nodes()
            .map(|(id, node)| BackupMember { node_id: *id, address: node.addr.clone(), voter: voters.contains(id) })
            .collect(),
        created_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        data_bytes: copy.encoded_len(),
        data_format: backup_data_format(),
        node_id: core.node_id,
    })
}

/// The header, then each data chunk as it is encoded, then the trailer with the CRC-32 of
/// every data byte.
struct BackupMessages {
    header: Option<BackupChunk>,
    data: Box<dyn Iterator<Item = Vec<u8>> + Send>,
    crc: crc32fast::Hasher,
    trailer_sent: bool,
}

impl Iterator for BackupMessages {
    type Item = BackupChunk;

    fn next(&mut self) -> Option<BackupChunk> {
        if let Some(header) = self.header.take() {
            return Some(header);
        }
        if let Some(data) = self.data.next() {
            self.crc.update(&data);
            return Some(BackupChunk { part: Some(backup_chunk::Part::Data(data)) });
        }
        if self.trailer_sent {
            return None;
        }
        self.trailer_sent = true;
        let data_crc32 = self.crc.clone().finalize();
        Some(BackupChunk { part: Some(backup_chunk::Part::Trailer(BackupTrailer { data_crc32 })) })
    }
}
