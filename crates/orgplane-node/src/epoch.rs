//! The ownership epoch a router believes an org has where it sends a request
//! (`x-orgplane-org-epoch`), and the check a node makes with it.
//!
//! Regions fence moves in their Raft state: a source refuses the org once frozen and keeps only
//! a forwarding record after the switch, so no region applies a write for an org it no longer
//! owns. The believed epoch adds one more check, for what the state of one replica cannot see
//! by itself: a replica that has not yet applied the switch that made the org live here at the
//! router's epoch (a local read on a lagging follower, or a follower whose pre-check runs
//! behind its leader) refuses with UNAVAILABLE, naming its epoch, instead of answering from an
//! older ownership. A router that believes an older epoch than the region's is merely behind;
//! the region owns the org and serves it.
//!
//! [`BelievedEpochScope`] keeps the header of each call in a task-local while the call runs;
//! [`check`] reads it.

use std::future::Future;

use orgplane_model::state::{self, StateRead};
use orgplane_model::OrgId;
use orgplane_proto::conv::ORG_EPOCH_HEADER;
use orgplane_telemetry::scope::{HeaderScope, ScopedCall};
use tonic::codegen::http;

use crate::error::NodeError;

tokio::task_local! {
    static BELIEVED_EPOCH: Option<u64>;
}

/// The epoch the caller's router believes the call's org has here, if it said.
pub(crate) fn believed() -> Option<u64> {
    BELIEVED_EPOCH.try_with(|e| *e).ok().flatten()
}

/// Refuses when the router believes `org` lives here at a newer epoch than this replica's
/// state shows (this replica is behind the org's move). Nothing to check when the router said
/// nothing or the org does not live here (the placement check answers for that).
pub(crate) fn check(view: &impl StateRead, region: orgplane_model::Region, org: &OrgId) -> Result<(), NodeError> {
    let Some(believed) = believed() else { return Ok(()) };
    let local = state::get_org(view, org).map_err(|source| NodeError::Storage { region, source })?;
    match local {
        Some(org_here) if org_here.epoch < believed => Err(NodeError::Unavailable {
            region,
            reason: format!(
                "this replica holds org {org} at epoch {}, behind the epoch {believed} it was routed with; retry",
                org_here.epoch
            ),
        }),
        _ => Ok(()),
    }
}

/// Keeps each call's `x-orgplane-org-epoch` for [`check`] (with
/// [`orgplane_telemetry::scope::HeaderScopeLayer`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct BelievedEpochScope;

impl HeaderScope for BelievedEpochScope {
    fn scope<F: Future + Send + 'static>(&self, headers: &http::HeaderMap, call: F) -> ScopedCall<F::Output> {
        let epoch = headers.get(ORG_EPOCH_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        Box::pin(BELIEVED_EPOCH.scope(epoch, call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orgplane_model::state::MemState;
    use orgplane_model::{Actor, Command, Op, Region};

    #[tokio::test]
    async fn a_replica_behind_the_routed_epoch_refuses_and_one_ahead_serves() {
        let org = OrgId::from_u128(Region::Eu, 1);
        let mut view = MemState::default();
        let create = Command {
            request_id: "r".into(),
            issued_at_ms: 1,
            actor: Actor::System,
            op: Op::CreateOrg { id: org.clone(), name: "Acme".into() },
        };
        state::apply(&mut view, &create).unwrap().unwrap();
        // The org is at epoch 1 here.
        assert!(check(&view, Region::Eu, &org).is_ok(), "no header: nothing to check");
        let behind = BELIEVED_EPOCH.scope(Some(2), async { check(&view, Region::Eu, &org) }).await;
        assert!(matches!(behind, Err(NodeError::Unavailable { .. })), "{behind:?}");
        let stale_router = BELIEVED_EPOCH.scope(Some(1), async { check(&view, Region::Eu, &org) }).await;
        assert!(stale_router.is_ok());
        let missing = OrgId::from_u128(Region::Eu, 2);
        assert!(BELIEVED_EPOCH.scope(Some(5), async { check(&view, Region::Eu, &missing) }).await.is_ok());
    }
}
