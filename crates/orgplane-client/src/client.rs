//! [`Client`]: one typed method per RPC of `OrgService`, `ClusterService` and `AdminService`
//! (those of `AccessService` are in [`crate::access`], `AppService`'s in [`crate::apps`],
//! `MoveService`'s in [`crate::moves`]),
//! each sent through the retry loop of [`crate::retry`].

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use orgplane_model::{Region, Role};
use orgplane_proto::v1;
use orgplane_proto::v1::access_service_client::AccessServiceClient;
use orgplane_proto::v1::admin_service_client::AdminServiceClient;
use orgplane_proto::v1::app_service_client::AppServiceClient;
use orgplane_proto::v1::cluster_service_client::ClusterServiceClient;
use orgplane_proto::v1::move_service_client::MoveServiceClient;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use tonic::{Request, Response, Status};

use crate::backup::BackupStream;
use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::retry::{call_with_retries, CallKind};
use crate::transport::{lazy_channel, Credentials, Transport};
use crate::types::{non_empty, Consistency, OrgRead, OrgRef, Page, PageRequest, RequestId, UserOrgs};

/// The page size the `list_all_*` helpers ask for: the largest the server allows, so a full
/// listing takes as few round trips as possible.
const LIST_ALL_PAGE_SIZE: u32 = 1000;

/// A client of a router or of a region node (both serve the same API).
///
/// Cheap to clone: clones share the connection. Methods return the generated wire records
/// ([`v1::Org`], [`v1::Member`], ...) unwrapped from their response messages, and small
/// wrappers ([`OrgRead`], [`Page`], [`UserOrgs`]) where an answer says more than one record.
///
/// Every write has two forms: `create_org(..)` makes a fresh [`RequestId`] for the call, and
/// `create_org_with_request_id(.., &id)` uses the caller's, so a caller that restarts can send
/// the same logical write again and still have it applied once.
#[derive(Debug, Clone)]
pub struct Client {
    org: OrgServiceClient<Transport>,
    cluster: ClusterServiceClient<Transport>,
    admin: AdminServiceClient<Transport>,
    pub(crate) access: AccessServiceClient<Transport>,
    pub(crate) apps: AppServiceClient<Transport>,
    pub(crate) moves: MoveServiceClient<Transport>,
    pub(crate) options: Arc<ClientOptions>,
    pub(crate) endpoint: Arc<str>,
}

impl Client {
    /// A client of `endpoint` (`HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`) with
    /// default options.
    ///
    /// Connects lazily: this fails only for a malformed endpoint; an unreachable server shows
    /// as UNAVAILABLE on the first call. Must be called inside a Tokio runtime.
    pub fn connect(endpoint: &str) -> Result<Client, ClientError> {
        Client::with_options(endpoint, ClientOptions::default())
    }

    /// A client of `endpoint` with `options`, which are validated first.
    pub fn with_options(endpoint: &str, options: ClientOptions) -> Result<Client, ClientError> {
        options.validate()?;
        let credentials = Credentials::new(options.bearer_token.as_deref())?;
        let channel = lazy_channel(endpoint, &options)?;
        let org = OrgServiceClient::with_interceptor(channel.clone(), credentials.clone())
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        let admin = AdminServiceClient::with_interceptor(channel.clone(), credentials.clone())
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        let access = AccessServiceClient::with_interceptor(channel.clone(), credentials.clone())
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        let apps = AppServiceClient::with_interceptor(channel.clone(), credentials.clone())
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        let moves = MoveServiceClient::with_interceptor(channel.clone(), credentials.clone())
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        let cluster = ClusterServiceClient::with_interceptor(channel, credentials)
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        Ok(Client {
            org,
            cluster,
            admin,
            access,
            apps,
            moves,
            options: Arc::new(options),
            endpoint: endpoint.trim().into(),
        })
    }

    /// The endpoint as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The generated `OrgService` client over this client's connection and credentials, for
    /// calls the typed methods do not cover. No retries, no timeout, no request ids: the caller
    /// owns all of that.
    pub fn org_service(&self) -> OrgServiceClient<Transport> {
        self.org.clone()
    }

    /// The generated `ClusterService` client; see [`Client::org_service`].
    pub fn cluster_service(&self) -> ClusterServiceClient<Transport> {
        self.cluster.clone()
    }

    // ------------------------------------------------------------------------------ orgs

    /// Creates an org named `name` in `region`; the server assigns its id.
    pub async fn create_org(&self, region: Region, name: &str) -> Result<v1::Org, ClientError> {
        self.create_org_with_request_id(region, name, &RequestId::generate()).await
    }

    /// [`Client::create_org`] with the caller's request id.
    pub async fn create_org_with_request_id(
        &self,
        region: Region,
        name: &str,
        request_id: &RequestId,
    ) -> Result<v1::Org, ClientError> {
        let message = v1::CreateOrgRequest {
            region: region.to_string(),
            name: name.to_string(),
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.org, "create_org", request_id, message, |mut client, request| async move {
                client.create_org(request).await
            })
            .await?;
        required("create_org", "org", response.org)
    }

    /// Reads one org.
    pub async fn get_org(&self, org: impl OrgRef, consistency: Consistency) -> Result<OrgRead, ClientError> {
        let message = v1::GetOrgRequest { org_id: org.org_id_text(), consistency: consistency.to_wire() };
        let response = self
            .read_on(&self.org, "get_org", message, |mut client, request| async move { client.get_org(request).await })
            .await?;
        Ok(OrgRead { org: required("get_org", "org", response.org)?, read: response.read })
    }

    /// One page of the orgs of `region`, in id order.
    pub async fn list_orgs(&self, region: Region, page: PageRequest) -> Result<Page<v1::Org>, ClientError> {
        let message = v1::ListOrgsRequest {
            region: region.to_string(),
            page_size: page.page_size,
            page_token: page.token_for_wire(),
            consistency: page.consistency.to_wire(),
        };
        let response =
            self.read_on(&self.org, "list_orgs", message, |mut client, request| async move {
                client.list_orgs(request).await
            })
            .await?;
        Ok(Page { items: response.orgs, next_page_token: non_empty(response.next_page_token), read: response.read })
    }

    /// Every org of `region`, following the pages. Each page is its own call (and is retried on
    /// its own); the `read` of the answer is the last page's.
    pub async fn list_all_orgs(&self, region: Region, consistency: Consistency) -> Result<Page<v1::Org>, ClientError> {
        collect_pages("list_orgs", consistency, |page| self.list_orgs(region, page)).await
    }

    /// Renames an org. With `expected_version`, only if the org is still at that version
    /// (else ABORTED).
    pub async fn update_org(
        &self,
        org: impl OrgRef,
        name: &str,
        expected_version: Option<u64>,
    ) -> Result<v1::Org, ClientError> {
        self.update_org_with_request_id(org, name, expected_version, &RequestId::generate()).await
    }

    /// [`Client::update_org`] with the caller's request id.
    pub async fn update_org_with_request_id(
        &self,
        org: impl OrgRef,
        name: &str,
        expected_version: Option<u64>,
        request_id: &RequestId,
    ) -> Result<v1::Org, ClientError> {
        let message = v1::UpdateOrgRequest {
            org_id: org.org_id_text(),
            name: name.to_string(),
            expected_version,
            request_id: request_id.to_string(),
            allowed_import_regions: None,
        };
        let response = self
            .write_on(&self.org, "update_org", request_id, message, |mut client, request| async move {
                client.update_org(request).await
            })
            .await?;
        required("update_org", "org", response.org)
    }

    /// Replaces the org's residency policy for app imports: the regions (besides its own, which
    /// is always allowed) whose app exports may be imported into it. Needs org.update.
    pub async fn set_allowed_import_regions(
        &self,
        org: impl OrgRef,
        regions: &[Region],
        expected_version: Option<u64>,
    ) -> Result<v1::Org, ClientError> {
        self.update_org_with_import_regions(org, None, regions, expected_version, &RequestId::generate()).await
    }

    /// Replaces the residency policy (see [`Client::set_allowed_import_regions`]) and, when
    /// `name` is given, renames the org in the same write.
    pub async fn update_org_with_import_regions(
        &self,
        org: impl OrgRef,
        name: Option<&str>,
        regions: &[Region],
        expected_version: Option<u64>,
        request_id: &RequestId,
    ) -> Result<v1::Org, ClientError> {
        let message = v1::UpdateOrgRequest {
            org_id: org.org_id_text(),
            name: name.unwrap_or_default().to_string(),
            expected_version,
            request_id: request_id.to_string(),
            allowed_import_regions: Some(v1::ImportRegions {
                regions: regions.iter().map(ToString::to_string).collect(),
            }),
        };
        let response = self
            .write_on(&self.org, "update_org", request_id, message, |mut client, request| async move {
                client.update_org(request).await
            })
            .await?;
        required("update_org", "org", response.org)
    }

    /// Deletes an org and its memberships; returns how many memberships went with it.
    pub async fn delete_org(&self, org: impl OrgRef, expected_version: Option<u64>) -> Result<u64, ClientError> {
        self.delete_org_with_request_id(org, expected_version, &RequestId::generate()).await
    }

    /// [`Client::delete_org`] with the caller's request id.
    pub async fn delete_org_with_request_id(
        &self,
        org: impl OrgRef,
        expected_version: Option<u64>,
        request_id: &RequestId,
    ) -> Result<u64, ClientError> {
        let message =
            v1::DeleteOrgRequest { org_id: org.org_id_text(), expected_version, request_id: request_id.to_string() };
        let response = self
            .write_on(&self.org, "delete_org", request_id, message, |mut client, request| async move {
                client.delete_org(request).await
            })
            .await?;
        Ok(response.removed_members)
    }

    // --------------------------------------------------------------------------- members

    /// Adds `user` to `org` with `role`.
    pub async fn add_member(&self, org: impl OrgRef, user: &str, role: Role) -> Result<v1::Member, ClientError> {
        self.add_member_with_request_id(org, user, role, &RequestId::generate()).await
    }

    /// [`Client::add_member`] with the caller's request id.
    pub async fn add_member_with_request_id(
        &self,
        org: impl OrgRef,
        user: &str,
        role: Role,
        request_id: &RequestId,
    ) -> Result<v1::Member, ClientError> {
        let message = v1::AddMemberRequest {
            org_id: org.org_id_text(),
            user_id: user.to_string(),
            role: role.to_string(),
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.org, "add_member", request_id, message, |mut client, request| async move {
                client.add_member(request).await
            })
            .await?;
        required("add_member", "member", response.member)
    }

    /// Changes the role of `user` in `org`.
    pub async fn set_member_role(&self, org: impl OrgRef, user: &str, role: Role) -> Result<v1::Member, ClientError> {
        self.set_member_role_with_request_id(org, user, role, &RequestId::generate()).await
    }

    /// [`Client::set_member_role`] with the caller's request id.
    pub async fn set_member_role_with_request_id(
        &self,
        org: impl OrgRef,
        user: &str,
        role: Role,
        request_id: &RequestId,
    ) -> Result<v1::Member, ClientError> {
        let message = v1::SetMemberRoleRequest {
            org_id: org.org_id_text(),
            user_id: user.to_string(),
            role: role.to_string(),
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.org, "set_member_role", request_id, message, |mut client, request| async move {
                client.set_member_role(request).await
            })
            .await?;
        required("set_member_role", "member", response.member)
    }

    /// Removes `user` from `org`.
    pub async fn remove_member(&self, org: impl OrgRef, user: &str) -> Result<(), ClientError> {
        self.remove_member_with_request_id(org, user, &RequestId::generate()).await
    }

    /// [`Client::remove_member`] with the caller's request id.
    pub async fn remove_member_with_request_id(
        &self,
        org: impl OrgRef,
        user: &str,
        request_id: &RequestId,
    ) -> Result<(), ClientError> {
        let message = v1::RemoveMemberRequest {
            org_id: org.org_id_text(),
            user_id: user.to_string(),
            request_id: request_id.to_string(),
        };
        self.write_on(&self.org, "remove_member", request_id, message, |mut client, request| async move {
            client.remove_member(request).await
        })
        .await?;
        Ok(())
    }

    /// One page of the members of `org`, in user-id order.
    pub async fn list_members(&self, org: impl OrgRef, page: PageRequest) -> Result<Page<v1::Member>, ClientError> {
        let message = v1::ListMembersRequest {
            org_id: org.org_id_text(),
            page_size: page.page_size,
            page_token: page.token_for_wire(),
            consistency: page.consistency.to_wire(),
        };
        let response = self
            .read_on(&self.org, "list_members", message, |mut client, request| async move {
                client.list_members(request).await
            })
            .await?;
        Ok(Page { items: response.members, next_page_token: non_empty(response.next_page_token), read: response.read })
    }

    /// Every member of `org`, following the pages (see [`Client::list_all_orgs`]).
    pub async fn list_all_members(
        &self,
        org: impl OrgRef,
        consistency: Consistency,
    ) -> Result<Page<v1::Member>, ClientError> {
        let org = org.org_id_text();
        collect_pages("list_members", consistency, |page| self.list_members(&org, page)).await
    }

    /// One page of the orgs `user` belongs to, from every region. Through a router the answer
    /// may be partial: check [`UserOrgs::is_partial`].
    pub async fn list_user_orgs(&self, user: &str, page: PageRequest) -> Result<UserOrgs, ClientError> {
        let message = v1::ListUserOrgsRequest {
            user_id: user.to_string(),
            page_size: page.page_size,
            page_token: page.token_for_wire(),
            consistency: page.consistency.to_wire(),
        };
        let response = self
            .read_on(&self.org, "list_user_orgs", message, |mut client, request| async move {
                client.list_user_orgs(request).await
            })
            .await?;
        Ok(UserOrgs {
            orgs: response.orgs,
            next_page_token: non_empty(response.next_page_token),
            regions: response.regions,
        })
    }

    /// Every org of `user`, following the pages. A region that failed on any page is reported
    /// with its first failure; one that answered every page is OK.
    pub async fn list_all_user_orgs(&self, user: &str, consistency: Consistency) -> Result<UserOrgs, ClientError> {
        let mut all = UserOrgs::default();
        let mut seen_tokens = HashSet::new();
        let mut page = PageRequest::first(LIST_ALL_PAGE_SIZE).with_consistency(consistency);
        loop {
            let answer = self.list_user_orgs(user, page.clone()).await?;
            all.orgs.extend(answer.orgs);
            for result in answer.regions {
                match all.regions.iter_mut().find(|r| r.region == result.region) {
                    None => all.regions.push(result),
                    Some(known) if known.state() == v1::RegionState::Ok => *known = result,
                    Some(_) => {}
                }
            }
            match answer.next_page_token {
                None => return Ok(all),
                Some(token) => {
                    page.page_token = Some(advancing_token("list_user_orgs", &mut seen_tokens, token)?);
                }
            }
        }
    }

    // --------------------------------------------------------------------------- cluster

    /// The status of every node of every region (from a router), or of the answering node.
    pub async fn cluster_status(&self) -> Result<Vec<v1::RegionStatus>, ClientError> {
        let response = self
            .read_on(
                &self.cluster,
                "get_cluster_status",
                v1::GetClusterStatusRequest {},
                |mut client, request| async move { client.get_cluster_status(request).await },
            )
            .await?;
        Ok(response.regions)
    }

    /// The regions and their node endpoints (served by the router).
    pub async fn topology(&self) -> Result<Vec<v1::RegionEndpoints>, ClientError> {
        let response = self
            .read_on(&self.cluster, "get_topology", v1::GetTopologyRequest {}, |mut client, request| async move {
                client.get_topology(request).await
            })
            .await?;
        Ok(response.regions)
    }

    // --------------------------------------------------------------------------- membership

    /// Adds node `node_id` at `address` to `region`: it joins as a learner, catches up, and is
    /// promoted to voter. The node must already run with `--join`. Safe to call again.
    pub async fn add_node(&self, region: Region, node_id: u64, address: &str) -> Result<v1::Membership, ClientError> {
        let message = v1::AddNodeRequest { region: region.to_string(), node_id, address: address.to_string() };
        let response =
            call_with_retries(&self.options, &self.endpoint, "add_node", CallKind::Read, None, message, |r| {
                let mut admin = self.admin.clone();
                async move { admin.add_node(r).await }
            })
            .await?;
        required("add_node", "membership", response.membership)
    }

    /// Removes node `node_id` from `region`. Refused (FAILED_PRECONDITION) when the remaining
    /// voters could not form a quorum. Sent once: a retry could report NOT_FOUND for a removal
    /// that succeeded.
    pub async fn remove_node(&self, region: Region, node_id: u64) -> Result<v1::Membership, ClientError> {
        let mut request = Request::new(v1::RemoveNodeRequest { region: region.to_string(), node_id });
        request.set_timeout(self.options.total_timeout);
        let response = self.admin.clone().remove_node(request).await.map_err(|status| ClientError::Status {
            rpc: "remove_node",
            attempts: 1,
            status: Box::new(status),
            from_transport: false,
        })?;
        required("remove_node", "membership", response.into_inner().membership)
    }

    /// The membership of `region`.
    pub async fn membership(&self, region: Region) -> Result<v1::Membership, ClientError> {
        let message = v1::GetMembershipRequest { region: region.to_string() };
        let response =
            call_with_retries(&self.options, &self.endpoint, "get_membership", CallKind::Read, None, message, |r| {
                let mut admin = self.admin.clone();
                async move { admin.get_membership(r).await }
            })
            .await?;
        required("get_membership", "membership", response.membership)
    }

    // --------------------------------------------------------------------------- backup

    /// Starts a backup of `region`: a consistent copy of its state at a log index that holds
    /// every write acknowledged before this call. Starting is retried like a read; once the
    /// header arrived, the stream is read with [`BackupStream::next_data`]. Each message must
    /// arrive within the request timeout; the stream as a whole has no deadline.
    pub async fn backup(&self, region: Region) -> Result<BackupStream, ClientError> {
        let message = v1::BackupRequest { region: region.to_string() };
        let messages = call_with_retries(&self.options, &self.endpoint, "backup", CallKind::Read, None, message, |r| {
            let mut request = r;
            // Each attempt's start is bounded by the retry loop's own timer. A `grpc-timeout`
            // would bound the whole stream, which may rightly take longer than one attempt.
            request.metadata_mut().remove("grpc-timeout");
            let mut admin = self.admin.clone();
            async move { admin.backup(request).await }
        })
        .await?;
        BackupStream::start(messages, self.options.request_timeout).await
    }

    // --------------------------------------------------------------------------- plumbing

    /// A write on one service's client, retried (when its code allows) under `request_id`, so
    /// the server applies it once.
    pub(crate) async fn write_on<C, Req, Resp, F, Fut>(
        &self,
        service: &C,
        rpc: &'static str,
        request_id: &RequestId,
        message: Req,
        send: F,
    ) -> Result<Resp, ClientError>
    where
        C: Clone,
        Req: Clone,
        F: Fn(C, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let kind = CallKind::Write;
        call_with_retries(&self.options, &self.endpoint, rpc, kind, Some(request_id.as_str()), message, |request| {
            send(service.clone(), request)
        })
        .await
    }

    /// A read on one service's client, retried when its code allows.
    pub(crate) async fn read_on<C, Req, Resp, F, Fut>(
        &self,
        service: &C,
        rpc: &'static str,
        message: Req,
        send: F,
    ) -> Result<Resp, ClientError>
    where
        C: Clone,
        Req: Clone,
        F: Fn(C, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        call_with_retries(&self.options, &self.endpoint, rpc, CallKind::Read, None, message, |request| {
            send(service.clone(), request)
        })
        .await
    }
}

/// The record an OK answer must carry.
pub(crate) fn required<T>(rpc: &'static str, field: &'static str, value: Option<T>) -> Result<T, ClientError> {
    value.ok_or_else(|| ClientError::MalformedResponse { rpc, reason: format!("the answer has no {field}") })
}

/// Refuses a page token seen before in the same listing, which would loop forever.
fn advancing_token(rpc: &'static str, seen: &mut HashSet<String>, token: String) -> Result<String, ClientError> {
    if seen.insert(token.clone()) {
        Ok(token)
    } else {
        Err(ClientError::MalformedResponse { rpc, reason: "the next page token repeats an earlier one".to_string() })
    }
}

/// Follows `next_page_token` from the first page to the last.
pub(crate) async fn collect_pages<T, F, Fut>(
    rpc: &'static str,
    consistency: Consistency,
    mut fetch: F,
) -> Result<Page<T>, ClientError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, ClientError>>,
{
    let mut all = Page { items: Vec::new(), next_page_token: None, read: None };
    let mut seen_tokens = HashSet::new();
    let mut page = PageRequest::first(LIST_ALL_PAGE_SIZE).with_consistency(consistency);
    loop {
        let answer = fetch(page.clone()).await?;
        all.items.extend(answer.items);
        all.read = answer.read;
        match answer.next_page_token {
            None => return Ok(all),
            Some(token) => page.page_token = Some(advancing_token(rpc, &mut seen_tokens, token)?),
        }
    }
}
