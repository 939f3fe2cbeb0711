//! [`NodeError`], and [`NodeError::into_status`]: the one place where a node's errors become
//! gRPC statuses. The codes are part of the API (see `proto/orgplane/v1/orgplane.proto`).

use orgplane_model::state::{QueryError, StorageFault};
use orgplane_model::{DomainError, Region};
use orgplane_proto::conv::{MOVED_TO_HEADER, MOVING_TO_HEADER, ORG_EPOCH_HEADER};
use orgplane_proto::ConvError;
use orgplane_raft::{ProposeError, ReadError};
use tonic::{Code, Status};

/// Why a request to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The request does not parse into domain values.
    #[error(transparent)]
    Conv(#[from] ConvError),
    /// A rule of the domain refused it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The request is for another region than the one this node serves.
    #[error("this node serves region {serving}, not {requested}")]
    WrongRegion { serving: Region, requested: Region },
    /// The write could not be committed in time; its outcome is unknown.
    #[error("region {region} could not commit the write: {source}")]
    Write { region: Region, source: ProposeError },
    /// A linearizable read could not be confirmed in time.
    #[error("region {region} could not confirm a linearizable read: {source}")]
    Read { region: Region, source: ReadError },
    /// A membership change that would be unsafe or makes no sense.
    #[error("region {region} membership change refused: {reason}")]
    Membership { region: Region, reason: String },
    /// The region cannot do it now (no leader, still catching up); retry later.
    #[error("region {region} is unavailable: {reason}")]
    Unavailable { region: Region, reason: String },
    /// The local state could not be read.
    #[error("region {region} storage fault: {source}")]
    Storage { region: Region, source: StorageFault },
}

impl NodeError {
    pub fn from_query(region: Region, e: QueryError) -> NodeError {
        match e {
            QueryError::Domain(d) => NodeError::Domain(d),
            QueryError::Storage(source) => NodeError::Storage { region, source },
        }
    }

    /// The status a client sees.
    pub fn into_status(self) -> Status {
        let code = match &self {
            NodeError::Conv(_) => Code::InvalidArgument,
            NodeError::Domain(d) => match d {
                DomainError::InvalidArgument { .. } => Code::InvalidArgument,
                DomainError::NotFound { .. } => Code::NotFound,
                DomainError::AlreadyExists { .. } => Code::AlreadyExists,
                DomainError::VersionMismatch { .. } => Code::Aborted,
                DomainError::FailedPrecondition { .. } => Code::FailedPrecondition,
                DomainError::PermissionDenied { .. } => Code::PermissionDenied,
                // Retry shortly: the switch is seconds away.
                DomainError::OrgMoving { .. } => Code::Unavailable,
                // Ask the region named in the metadata.
                DomainError::OrgMoved { .. } => Code::FailedPrecondition,
            },
            NodeError::WrongRegion { .. } => Code::InvalidArgument,
            NodeError::Write { source: ProposeError::Rejected(_), .. } => Code::ResourceExhausted,
            NodeError::Write { .. } | NodeError::Read { .. } | NodeError::Unavailable { .. } => Code::Unavailable,
            NodeError::Membership { .. } => Code::FailedPrecondition,
            NodeError::Storage { .. } => Code::Internal,
        };
        let mut status = Status::new(code, self.to_string());
        // Where the org is, for routers to act on without parsing the message.
        let metadata = status.metadata_mut();
        match &self {
            NodeError::Domain(DomainError::OrgMoved { region, epoch, .. }) => {
                if let (Ok(region), Ok(epoch)) = (region.parse(), epoch.to_string().parse()) {
                    metadata.insert(MOVED_TO_HEADER, region);
                    metadata.insert(ORG_EPOCH_HEADER, epoch);
                }
            }
            NodeError::Domain(DomainError::OrgMoving { region, .. }) => {
                if let Ok(region) = region.parse() {
                    metadata.insert(MOVING_TO_HEADER, region);
                }
            }
            _ => {}
        }
        status
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        e.into_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_the_region() {
        let s = NodeError::Write {
            region: Region::Eu,
            source: ProposeError::Unavailable { waited_ms: 5, last_error: "x".into() },
        }
        .into_status();
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("region eu"), "{}", s.message());
        let s = NodeError::Domain(DomainError::VersionMismatch {
            kind: "org".into(),
            id: "i".into(),
            expected: 1,
            actual: 2,
        })
        .into_status();
        assert_eq!(s.code(), Code::Aborted);
    }

    #[test]
    fn a_moved_or_moving_org_says_where_in_metadata() {
        let moved = NodeError::Domain(DomainError::OrgMoved { org_id: "o".into(), region: "eu".into(), epoch: 3 })
            .into_status();
        assert_eq!(moved.code(), Code::FailedPrecondition);
        assert_eq!(moved.metadata().get(MOVED_TO_HEADER).unwrap(), "eu");
        assert_eq!(moved.metadata().get(ORG_EPOCH_HEADER).unwrap(), "3");
        let moving =
            NodeError::Domain(DomainError::OrgMoving { org_id: "o".into(), region: "us".into() }).into_status();
        assert_eq!(moving.code(), Code::Unavailable);
        assert_eq!(moving.metadata().get(MOVING_TO_HEADER).unwrap(), "us");
        assert!(moving.message().contains("moving to region us"), "{}", moving.message());
    }
}
