//! `Backup` at the router: routed like every region-scoped call (the region it names, hinted
//! node first, failover while nothing was streamed yet), then the node's stream is relayed
//! message by message. The router holds one message at a time and keeps nothing.
//!
//! A stream can outlast any single call's budget, so once it has started it is bounded in two
//! ways, both ending it with a status that names the region: the client's own deadline
//! (`grpc-timeout`), if it sent one, for the whole call; and the router's request timeout for
//! each message, so a node that stops sending mid-stream cannot hold the call open forever.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use orgplane_model::Region;
use orgplane_proto::v1::BackupChunk;
use tonic::{Code, Status, Streaming};

use crate::deadline::Deadline;
use crate::error::RouterError;

/// The messages of a relayed stream (a backup's, an app export's).
pub(crate) type RelayedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The messages of a relayed backup stream.
pub(crate) type BackupStream = RelayedStream<BackupChunk>;

/// Relays `from_node` until it ends, fails, passes `deadline` (the client's, if any) or goes
/// `idle` for longer than that between two messages. Also relays app exports
/// ([`crate::app_service`]), which are bounded the same way.
pub(crate) fn relay<T: Send + 'static>(
    region: Region,
    from_node: Streaming<T>,
    deadline: Option<Deadline>,
    idle: Duration,
) -> RelayedStream<T> {
    Box::pin(futures::stream::unfold(Some(from_node), move |state| async move {
        let mut from_node = state?;
        let wait = match deadline.map(|d| d.remaining()) {
            None => idle,
            Some(Some(left)) => left.min(idle),
            Some(None) => return Some((Err(deadline_passed(region, deadline)), None)),
        };
        let failure = match tokio::time::timeout(wait, from_node.message()).await {
            Ok(Ok(Some(chunk))) => return Some((Ok(chunk), Some(from_node))),
            Ok(Ok(None)) => return None,
            Ok(Err(status)) => mid_stream_failure(region, status),
            Err(_) if deadline.is_some_and(|d| d.remaining().is_none()) => deadline_passed(region, deadline),
            Err(_) => RouterError::RegionUnavailable {
                region,
                reason: format!("the stream stalled: no message within {} ms", idle.as_millis()),
            }
            .into(),
        };
        tracing::warn!(region = region.as_str(), code = ?failure.code(), "relayed stream ended early");
        Some((Err(failure), None))
    }))
}

fn deadline_passed(region: Region, deadline: Option<Deadline>) -> Status {
    let budget_ms = deadline.map_or(0, |d| d.budget().as_millis() as u64);
    RouterError::DeadlineExceeded { region, budget_ms }.into()
}

/// A node's own status passes through; a broken connection (a status tonic made here, with an
/// error source) or UNAVAILABLE becomes UNAVAILABLE naming the region.
fn mid_stream_failure(region: Region, status: Status) -> Status {
    if std::error::Error::source(&status).is_some() || status.code() == Code::Unavailable {
        let reason = format!("the stream broke: {}", status.message());
        return RouterError::RegionUnavailable { region, reason }.into();
    }
    RouterError::NodeAnswer { region, status }.into()
}
