//! [`RouterError`], the one error type of the router, and the one place it becomes a
//! `tonic::Status` (`impl From<RouterError> for Status`).
//!
//! Status codes a client sees from the router itself (a node's own answers pass through with
//! the node's code and message):
//!
//! | code               | when                                                               |
//! |--------------------|--------------------------------------------------------------------|
//! | INVALID_ARGUMENT   | malformed org id, unknown or missing region name, bad page token   |
//! | NOT_FOUND          | the region is valid but this router has no nodes for it            |
//! | UNAVAILABLE        | no node of the region could be reached; the message names it       |
//! | RESOURCE_EXHAUSTED | every node of the region is at the router's concurrency limit      |
//! | DEADLINE_EXCEEDED  | the region did not answer within the request's deadline            |
//! | CANCELLED          | the client's app upload broke off; the call to the node was cancelled |
//!
//! Every status the router makes carries the region, when there is one, in the
//! `x-orgplane-region` metadata entry, so a client can act on it without parsing the message.

use orgplane_model::Region;
use orgplane_proto::conv::{MOVED_TO_HEADER, MOVING_TO_HEADER, ORG_EPOCH_HEADER};
use tonic::{Code, Status};

/// Metadata key of the region a router-made status is about.
pub const REGION_METADATA_KEY: &str = "x-orgplane-region";

/// Everything that can go wrong in the router: at startup (configuration, binding, serving)
/// and per request (routing, reaching the region).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    // ---- configuration, checked by `RouterConfig::validate` before anything starts
    #[error("no regions are configured")]
    NoRegions,
    #[error("unknown region name {name:?} in the configuration: expected us, eu or apac")]
    UnknownRegionName { name: String },
    #[error("region {region} is configured more than once")]
    DuplicateRegion { region: Region },
    #[error("region {region} has no endpoints")]
    NoEndpoints { region: Region },
    #[error("region {region} endpoint {endpoint:?} is invalid: {reason}")]
    BadEndpoint { region: Region, endpoint: String, reason: String },
    #[error("region {region} lists endpoint {endpoint:?} more than once")]
    DuplicateEndpoint { region: Region, endpoint: String },
    #[error("{key} must be greater than 0")]
    ZeroSetting { key: &'static str },
    #[error("invalid otlp-endpoint {endpoint:?}: {reason}")]
    BadOtlpEndpoint { endpoint: String, reason: String },
    #[error("invalid region flag {flag:?}: {reason}")]
    BadRegionFlag { flag: String, reason: String },
    #[error("metrics-listen {addr} is the gRPC listen address; give metrics a port of their own")]
    MetricsOnListenAddress { addr: std::net::SocketAddr },

    #[error("authentication: {0}")]
    Auth(#[from] orgplane_auth::SetupError),
    #[error("tls: the certificate names {found}, not a router")]
    NotARouterCertificate { found: orgplane_auth::PeerIdentity },

    // ---- serving
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] orgplane_telemetry::metrics::MetricsError),

    // ---- per request; each maps to a status in `From<RouterError> for Status`
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("invalid page_token: {reason}")]
    InvalidPageToken { reason: String },
    #[error("region {region} is not served by this router")]
    RegionNotServed { region: Region },
    #[error("region {region} is unavailable: {reason}")]
    RegionUnavailable { region: Region, reason: String },
    #[error("region {region} is overloaded: every node is at the router's concurrency limit")]
    RegionOverloaded { region: Region },
    #[error("region {region} did not answer within {budget_ms} ms")]
    DeadlineExceeded { region: Region, budget_ms: u64 },
    /// The client's upload (an app import) failed mid-stream; the node's call was cancelled so
    /// it never takes the part that arrived for the whole.
    #[error("region {region}: the upload broke off: {reason}")]
    UploadBroken { region: Region, reason: String },
    /// A node answered with a status of its own; it reaches the client unchanged.
    #[error("region {region} answered {:?}: {}", .status.code(), .status.message())]
    NodeAnswer { region: Region, status: Status },
}

impl RouterError {
    /// The region the error is about, if it is about one.
    pub fn region(&self) -> Option<Region> {
        match self {
            RouterError::DuplicateRegion { region }
            | RouterError::NoEndpoints { region }
            | RouterError::BadEndpoint { region, .. }
            | RouterError::DuplicateEndpoint { region, .. }
            | RouterError::RegionNotServed { region }
            | RouterError::RegionUnavailable { region, .. }
            | RouterError::RegionOverloaded { region }
            | RouterError::DeadlineExceeded { region, .. }
            | RouterError::UploadBroken { region, .. }
            | RouterError::NodeAnswer { region, .. } => Some(*region),
            _ => None,
        }
    }

    /// The gRPC code the client gets for this error.
    pub fn code(&self) -> Code {
        match self {
            RouterError::InvalidArgument { .. } | RouterError::InvalidPageToken { .. } => Code::InvalidArgument,
            RouterError::RegionNotServed { .. } => Code::NotFound,
            RouterError::RegionUnavailable { .. } => Code::Unavailable,
            RouterError::RegionOverloaded { .. } => Code::ResourceExhausted,
            RouterError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            RouterError::UploadBroken { .. } => Code::Cancelled,
            RouterError::NodeAnswer { status, .. } => status.code(),
            // Startup errors never reach a client; if one did, it is the router's fault.
            _ => Code::Internal,
        }
    }
}

impl From<orgplane_proto::ConvError> for RouterError {
    fn from(err: orgplane_proto::ConvError) -> Self {
        RouterError::InvalidArgument { field: err.field, reason: err.reason }
    }
}

/// The one mapping from router errors to what a client sees. A node's own answer passes
/// through with its code, message and details (so ABORTED, NOT_FOUND and friends mean what
/// the node meant); everything the router decides itself gets the code in the table above,
/// the error's message, and the region in `x-orgplane-region`.
impl From<RouterError> for Status {
    fn from(err: RouterError) -> Status {
        let code = err.code();
        let region = err.region();
        let mut status = match err {
            RouterError::NodeAnswer { status, .. } => {
                let mut answer =
                    Status::with_details(status.code(), status.message().to_string(), status.details().to_vec().into());
                // Where a moving or moved org is: the node's own words, for clients that follow them.
                for key in [MOVED_TO_HEADER, MOVING_TO_HEADER, ORG_EPOCH_HEADER] {
                    if let Some(value) = status.metadata().get(key) {
                        answer.metadata_mut().insert(key, value.clone());
                    }
                }
                answer
            }
            other => Status::new(code, other.to_string()),
        };
        if let Some(region) = region {
            status
                .metadata_mut()
                .insert(REGION_METADATA_KEY, tonic::metadata::MetadataValue::from_static(region.as_str()));
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: RouterError, code: Code, message: &str) {
        let status = Status::from(err);
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(status.message(), message);
    }

    #[test]
    fn a_node_answer_keeps_where_the_org_moved() {
        let mut moved = Status::failed_precondition("org x moved to region us (epoch 2)");
        moved.metadata_mut().insert(MOVED_TO_HEADER, "us".parse().unwrap());
        moved.metadata_mut().insert(ORG_EPOCH_HEADER, "2".parse().unwrap());
        moved.metadata_mut().insert("x-orgplane-leader", "127.0.0.1:1".parse().unwrap());
        let status = Status::from(RouterError::NodeAnswer { region: Region::Eu, status: moved });
        assert_eq!(status.metadata().get(MOVED_TO_HEADER).unwrap(), "us");
        assert_eq!(status.metadata().get(ORG_EPOCH_HEADER).unwrap(), "2");
        assert!(status.metadata().get("x-orgplane-leader").is_none(), "only where the org is passes");
    }

    #[test]
    fn is_an_error_binaries_can_wrap() {
        fn check_bounds<T: std::error::Error + Send + Sync + 'static>() {}
        check_bounds::<RouterError>();
    }

    #[test]
    fn maps_errors_to_statuses() {
        check(
            RouterError::RegionUnavailable { region: Region::Eu, reason: "connection refused".into() },
            Code::Unavailable,
            "region eu is unavailable: connection refused",
        );
        check(
            RouterError::RegionNotServed { region: Region::Apac },
            Code::NotFound,
            "region apac is not served by this router",
        );
        check(
            RouterError::InvalidArgument { field: "org_id", reason: "is malformed".into() },
            Code::InvalidArgument,
            "invalid org_id: is malformed",
        );
        check(
            RouterError::DeadlineExceeded { region: Region::Us, budget_ms: 250 },
            Code::DeadlineExceeded,
            "region us did not answer within 250 ms",
        );
        check(
            RouterError::NodeAnswer { region: Region::Us, status: Status::aborted("org is at version 3") },
            Code::Aborted,
            "org is at version 3",
        );
        check(RouterError::NoRegions, Code::Internal, "no regions are configured");
        let status = Status::from(RouterError::RegionOverloaded { region: Region::Eu });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get(REGION_METADATA_KEY).unwrap(), "eu");
    }
}
