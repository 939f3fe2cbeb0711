//! Route selection, the first half: request -> region key. Every routed request type says which
//! region must serve it ([`Routed::region_key`]) and whether sending it twice is safe
//! ([`Routed::retry_after_send_is_safe`]). The second half, region key -> cached per-region
//! service, is [`crate::region::RegionTable`].
//!
//! The region of an org-scoped request is the one its org id names (`OrgId::from_str` in the
//! model crate, a pure function); `CreateOrg` and `ListOrgs` name their region outright.

use orgplane_model::Region;
use orgplane_proto::conv::{parse_org_id, parse_region};
use orgplane_proto::v1;

use crate::error::RouterError;

/// A request the router forwards to exactly one region.
pub(crate) trait Routed: Clone + Send + Sync + 'static {
    /// The gRPC method name, for logs and spans.
    const RPC: &'static str;

    /// The region that holds the data the request is about. A malformed id or region name is
    /// INVALID_ARGUMENT, decided here, before anything is sent.
    fn region_key(&self) -> Result<Region, RouterError>;

    /// The org id the request names, if it is about one org; valid once [`Self::region_key`]
    /// accepted it (only then may it reach a span).
    fn org_id(&self) -> Option<&str> {
        None
    }

    /// The idempotency key of a write, `None` for a read.
    fn request_id_mut(&mut self) -> Option<&mut String> {
        None
    }

    /// Gives a write without an idempotency key a fresh random one, before the first attempt,
    /// so the router's own retries of it are deduplicated by the region like a client's.
    fn ensure_request_id(&mut self) {
        if let Some(request_id) = self.request_id_mut() {
            if request_id.is_empty() {
                *request_id = uuid::Uuid::new_v4().simple().to_string();
            }
        }
    }

    /// Whether the request may be sent again after it may have reached a node: always for a
    /// read; for a write only when it carries a request id (then the region applies it at most
    /// once). A request that provably never left the router may always be sent again.
    fn retry_after_send_is_safe(&mut self) -> bool {
        self.request_id_mut().is_none_or(|id| !id.is_empty())
    }
}

macro_rules! routed_by_org_id {
    ($request:ty, $rpc:literal, read) => {
        impl Routed for $request {
            const RPC: &'static str = $rpc;
            fn region_key(&self) -> Result<Region, RouterError> {
                Ok(parse_org_id("org_id", &self.org_id)?.region())
            }
            fn org_id(&self) -> Option<&str> {
                Some(&self.org_id)
            }
        }
    };
    ($request:ty, $rpc:literal, write) => {
        impl Routed for $request {
            const RPC: &'static str = $rpc;
            fn region_key(&self) -> Result<Region, RouterError> {
                Ok(parse_org_id("org_id", &self.org_id)?.region())
            }
            fn org_id(&self) -> Option<&str> {
                Some(&self.org_id)
            }
            fn request_id_mut(&mut self) -> Option<&mut String> {
                Some(&mut self.request_id)
            }
        }
    };
}

routed_by_org_id!(v1::GetOrgRequest, "GetOrg", read);
routed_by_org_id!(v1::ListMembersRequest, "ListMembers", read);
routed_by_org_id!(v1::UpdateOrgRequest, "UpdateOrg", write);
routed_by_org_id!(v1::DeleteOrgRequest, "DeleteOrg", write);
routed_by_org_id!(v1::AddMemberRequest, "AddMember", write);
routed_by_org_id!(v1::SetMemberRoleRequest, "SetMemberRole", write);
routed_by_org_id!(v1::RemoveMemberRequest, "RemoveMember", write);

// The access API: every call is about one org. Reads may always be resent; writes only with a
// request id, which the router fills in before the first attempt.
routed_by_org_id!(v1::CreateRoleRequest, "CreateRole", write);
routed_by_org_id!(v1::UpdateRoleRequest, "UpdateRole", write);
routed_by_org_id!(v1::DeleteRoleRequest, "DeleteRole", write);
routed_by_org_id!(v1::ListRolesRequest, "ListRoles", read);
routed_by_org_id!(v1::CreateInvitationRequest, "CreateInvitation", write);
routed_by_org_id!(v1::ListInvitationsRequest, "ListInvitations", read);
routed_by_org_id!(v1::RevokeInvitationRequest, "RevokeInvitation", write);
routed_by_org_id!(v1::AcceptInvitationRequest, "AcceptInvitation", write);
routed_by_org_id!(v1::CreateIntegrationRequest, "CreateIntegration", write);
routed_by_org_id!(v1::GetIntegrationRequest, "GetIntegration", read);
routed_by_org_id!(v1::ListIntegrationsRequest, "ListIntegrations", read);
routed_by_org_id!(v1::UpdateIntegrationRequest, "UpdateIntegration", write);
routed_by_org_id!(v1::DeleteIntegrationRequest, "DeleteIntegration", write);
routed_by_org_id!(v1::CreatePhoneNumberRequest, "CreatePhoneNumber", write);
routed_by_org_id!(v1::GetPhoneNumberRequest, "GetPhoneNumber", read);
routed_by_org_id!(v1::ListPhoneNumbersRequest, "ListPhoneNumbers", read);
routed_by_org_id!(v1::UpdatePhoneNumberRequest, "UpdatePhoneNumber", write);
routed_by_org_id!(v1::DeletePhoneNumberRequest, "DeletePhoneNumber", write);
routed_by_org_id!(v1::ListAuditEventsRequest, "ListAuditEvents", read);

// The app API: the same rules. `ImportApp` is a client stream routed by its header's org id
// (see `crate::app_service`), never resent.
routed_by_org_id!(v1::CreateAppRequest, "CreateApp", write);
routed_by_org_id!(v1::GetAppRequest, "GetApp", read);
routed_by_org_id!(v1::ListAppsRequest, "ListApps", read);
routed_by_org_id!(v1::UpdateAppRequest, "UpdateApp", write);
routed_by_org_id!(v1::DeleteAppRequest, "DeleteApp", write);
routed_by_org_id!(v1::BindAppSlotRequest, "BindAppSlot", write);
routed_by_org_id!(v1::UnbindAppSlotRequest, "UnbindAppSlot", write);
routed_by_org_id!(v1::PublishAppRequest, "PublishApp", write);
routed_by_org_id!(v1::ExportAppRequest, "ExportApp", read);

impl Routed for v1::CreateOrgRequest {
    const RPC: &'static str = "CreateOrg";
    fn region_key(&self) -> Result<Region, RouterError> {
        Ok(parse_region("region", &self.region)?)
    }
    fn request_id_mut(&mut self) -> Option<&mut String> {
        Some(&mut self.request_id)
    }
}

impl Routed for v1::ListOrgsRequest {
    const RPC: &'static str = "ListOrgs";
    /// A node lists its own region when `region` is empty; the router has no own region, so
    /// it requires one.
    fn region_key(&self) -> Result<Region, RouterError> {
        Ok(parse_region("region", &self.region)?)
    }
}

/// Membership changes name their region. Adding a node is idempotent (the same id and address
/// again is a no-op), so it may be sent twice; a removal sent twice could answer NOT_FOUND for a
/// removal that succeeded, so it is sent again only when it never left the router.
impl Routed for v1::AddNodeRequest {
    const RPC: &'static str = "AddNode";
    fn region_key(&self) -> Result<Region, RouterError> {
        Ok(parse_region("region", &self.region)?)
    }
}

impl Routed for v1::RemoveNodeRequest {
    const RPC: &'static str = "RemoveNode";
    fn region_key(&self) -> Result<Region, RouterError> {
        Ok(parse_region("region", &self.region)?)
    }
    fn retry_after_send_is_safe(&mut self) -> bool {
        false
    }
}

impl Routed for v1::GetMembershipRequest {
    const RPC: &'static str = "GetMembership";
    fn region_key(&self) -> Result<Region, RouterError> {
        Ok(parse_region("region", &self.region)?)
    }
}

/// A backup names its region; it changes nothing, so it may be sent again until its stream
/// has started (after that the router relays it and never resends).
impl Routed for v1::BackupRequest {
    const RPC: &'static str = "Backup";
    fn region_key(&self) -> Result<Region, RouterError> {
        Ok(parse_region("region", &self.region)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<R: Routed>(request: R, expected: Result<Region, &str>) {
        let got = request.region_key().map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{}", R::RPC),
            (Err(got), Err(want)) => assert!(got.contains(want), "{}: {got}", R::RPC),
            (got, want) => panic!("{}: got {got:?}, want {want:?}", R::RPC),
        }
    }

    const EU_ORG: &str = "eu-01jdq3n8x2k7m4p9r5t6v8w0yz";

    #[test]
    fn region_keys() {
        check(v1::GetOrgRequest { org_id: EU_ORG.into(), ..Default::default() }, Ok(Region::Eu));
        check(
            v1::RemoveMemberRequest { org_id: "us-7zzzzzzzzzzzzzzzzzzzzzzzzz".into(), ..Default::default() },
            Ok(Region::Us),
        );
        check(v1::GetOrgRequest { org_id: "".into(), ..Default::default() }, Err("invalid org_id: org id is empty"));
        check(v1::UpdateOrgRequest { org_id: "eu-nope".into(), ..Default::default() }, Err("malformed"));
        check(
            v1::DeleteOrgRequest { org_id: "mars-01jdq3n8x2k7m4p9r5t6v8w0yz".into(), ..Default::default() },
            Err("unknown region"),
        );
        check(v1::CreateOrgRequest { region: "APAC".into(), ..Default::default() }, Ok(Region::Apac));
        check(v1::CreateOrgRequest { region: "".into(), ..Default::default() }, Err("invalid region: is required"));
        check(v1::ListOrgsRequest { region: "mars".into(), ..Default::default() }, Err("invalid region"));
    }

    #[test]
    fn fills_missing_request_ids_only() {
        let mut write = v1::AddMemberRequest { org_id: EU_ORG.into(), ..Default::default() };
        assert!(!write.retry_after_send_is_safe(), "a write without a request id must not be resent");
        write.ensure_request_id();
        assert_eq!(write.request_id.len(), 32);
        assert!(write.retry_after_send_is_safe());
        let first = write.request_id.clone();
        write.ensure_request_id();
        assert_eq!(write.request_id, first, "an existing request id is kept");

        let mut other = v1::AddMemberRequest::default();
        other.ensure_request_id();
        assert_ne!(other.request_id, first, "each write gets its own id");

        let mut read = v1::GetOrgRequest::default();
        read.ensure_request_id();
        assert!(read.retry_after_send_is_safe());
    }

    #[test]
    fn access_calls_route_by_org_and_resend_writes_only_with_a_request_id() {
        check(v1::CreateIntegrationRequest { org_id: EU_ORG.into(), ..Default::default() }, Ok(Region::Eu));
        check(v1::ListAuditEventsRequest { org_id: "apac-nope".into(), ..Default::default() }, Err("malformed"));
        check(v1::AcceptInvitationRequest::default(), Err("invalid org_id"));
        let mut write = v1::DeleteRoleRequest { org_id: EU_ORG.into(), ..Default::default() };
        assert!(!write.retry_after_send_is_safe());
        write.ensure_request_id();
        assert!(write.retry_after_send_is_safe());
        let mut read = v1::ListRolesRequest { org_id: EU_ORG.into(), ..Default::default() };
        assert!(read.request_id_mut().is_none() && read.retry_after_send_is_safe());
    }
}
