//! The public `AppService` on a node: apps of this region's orgs, their slots and bindings,
//! publishing, and moving apps between orgs as archives.
//!
//! Same shape as [`crate::access_service`]: the caller's actor from the authenticator, input
//! parsed and validated before anything is proposed, writes through [`NodeCore::write_org`]
//! (the policy table before proposing, `apply` again), reads linearized and answered from one
//! consistent view after [`NodeCore::authorize_read`] said yes on it.
//!
//! Export: a read (apps.transfer) of the app, built into an archive by `orgplane-appzip`
//! (deterministic: the same app version gives the same bytes), streamed as a header and
//! [`EXPORT_CHUNK_BYTES`] chunks. The archive names resources only as hints: an integration by
//! its name, a phone number by its label, never a number or a secret.
//!
//! Import, in this order, so that any refusal changes nothing (not even the audit log):
//! 1. the header names the org; the caller must hold apps.transfer there (before any upload
//!    is buffered);
//! 2. the upload is collected up to the archive limit; one byte more is INVALID_ARGUMENT
//!    without reading further;
//! 3. `read_archive` checks it all (structure, names, sizes as read, ratio, manifest);
//! 4. the app it holds is validated like a create, and the org's residency policy checked
//!    against the manifest's source region (after a linearizable read);
//! 5. one `ImportApp` command creates the app, every slot unbound.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use orgplane_appzip::{read_archive, write_archive, AppArchive, ArchiveError, Limits, Manifest, SlotManifest};
use orgplane_model::command::CommandOutcome;
use orgplane_model::policy::{self, Access, QueryKind};
use orgplane_model::state::{self, QueryError};
use orgplane_model::{validate, Actor, App, AppId, DomainError, Op, OrgId, Permission, Region, ResourceKind};
use orgplane_proto::conv::{self, decode_page_token, encode_page_token, parse_app_id, parse_slot_specs};
use orgplane_proto::v1::app_service_server::AppService;
use orgplane_proto::v1::*;
use orgplane_store_sled::ConsistentView;
use tonic::{Request, Response, Status, Streaming};

use crate::caller;
use crate::error::NodeError;
use crate::org_service::{not_found_here, unexpected, NodeCore};

type Reply<T> = Result<Response<T>, Status>;

/// The largest data chunk of an export stream.
pub const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

/// The messages of an export stream.
pub type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportAppChunk, Status>> + Send>>;

/// The `AppService` of a node.
pub struct AppServiceImpl {
    core: Arc<NodeCore>,
    limits: Limits,
}

impl AppServiceImpl {
    pub fn new(core: Arc<NodeCore>) -> Self {
        AppServiceImpl { core, limits: Limits::default() }
    }

    /// The same service with other archive limits (tests use small ones).
    pub fn with_limits(core: Arc<NodeCore>, limits: Limits) -> Self {
        AppServiceImpl { core, limits }
    }

    async fn commit(&self, actor: Actor, request_id: &str, op: Op) -> Result<App, Status> {
        match self.core.write_org(actor, request_id, op).await? {
            CommandOutcome::App(app) => Ok(app),
            other => Err(unexpected(other)),
        }
    }

    /// The app, or its NOT_FOUND (the org's own when the org is missing).
    fn app_in(view: &ConsistentView<'_>, org: &OrgId, app: &AppId) -> Result<App, QueryError> {
        if let Some(found) = state::get_app(view, org, app)? {
            return Ok(found);
        }
        match state::get_org(view, org)? {
            Some(_) => Err(DomainError::not_found("app", format!("{app} of org {org}")).into()),
            None => Err(DomainError::org_not_found(org).into()),
        }
    }

    /// Reads the whole upload after its header, refusing it as soon as it passes the limit.
    async fn collect_upload(&self, stream: &mut Streaming<ImportAppChunk>) -> Result<Vec<u8>, NodeError> {
        let limit = self.limits.max_archive_bytes;
        let mut bytes = Vec::new();
        while let Some(message) = stream.next().await {
            let message = message.map_err(|status| NodeError::Unavailable {
                region: self.core.region,
                reason: format!("the upload broke off: {}", status.message()),
            })?;
            match message.part {
                Some(import_app_chunk::Part::Data(data)) => {
                    if bytes.len() as u64 + data.len() as u64 > limit {
                        return Err(invalid("archive", format!("the upload is over the limit of {limit} bytes")));
                    }
                    bytes.extend_from_slice(&data);
                }
                Some(import_app_chunk::Part::Header(_)) => {
                    return Err(invalid("archive", "only the first message may be a header".into()))
                }
                None => return Err(invalid("archive", "a message holds neither header nor data".into())),
            }
        }
        if bytes.is_empty() {
            return Err(invalid("archive", "the upload is empty".into()));
        }
        Ok(bytes)
    }

    /// The hints of an import: per slot, this org's resources of the slot's kind whose name
    /// matches the manifest's. Empty unless the caller may read resources.
    fn hints(&self, actor: &Actor, org: &OrgId, app: &App, manifest: &Manifest) -> Result<Vec<SlotHint>, NodeError> {
        let core = &self.core;
        core.state.read_consistent(|view| {
            let may_read = policy::authorize(view, actor, org, Permission::ResourcesRead).is_ok();
            let mut hints = Vec::new();
            for slot in &manifest.slots {
                let Some(kind) = app.slots.get(&slot.name).map(|s| s.kind.clone()) else { continue };
                let source = slot.bound_resource_name.clone().unwrap_or_default();
                let candidates = if may_read && !source.is_empty() {
                    matching_resources(view, org, &kind, &source).map_err(|e| NodeError::from_query(core.region, e))?
                } else {
                    Vec::new()
                };
                hints.push(SlotHint {
                    slot: slot.name.clone(),
                    kind: kind.to_string(),
                    source_resource_name: source,
                    candidates,
                });
            }
            Ok(hints)
        })
    }
}

/// The resources of `org` of `kind` named `name`: integrations by name, numbers by label.
fn matching_resources(
    view: &ConsistentView<'_>,
    org: &OrgId,
    kind: &ResourceKind,
    name: &str,
) -> Result<Vec<String>, QueryError> {
    let limit = validate::MAX_PAGE_SIZE;
    Ok(match kind {
        ResourceKind::Integration(wanted) => state::get_integration(view, org, name)?
            .filter(|i| i.kind == *wanted)
            .map(|i| vec![i.name])
            .unwrap_or_default(),
        ResourceKind::PhoneNumber => {
            let (numbers, _) = state::list_phone_numbers(view, org, None, limit)?;
            numbers.into_iter().filter(|p| p.label == name).map(|p| p.number).collect()
        }
    })
}

fn invalid(field: &str, reason: String) -> NodeError {
    NodeError::Domain(DomainError::InvalidArgument { field: field.into(), reason })
}

fn archive_refused(e: ArchiveError) -> NodeError {
    invalid("archive", e.to_string())
}

fn page(page_size: u32, page_token: &str) -> Result<(usize, Option<String>), NodeError> {
    Ok((validate::page_size(page_size)?, decode_page_token(page_token)?))
}

/// The archive of `app` as exported from `region`: the same app version gives the same bytes.
pub fn archive_of(app: &App, region: Region) -> AppArchive {
    let slots = app
        .slots
        .iter()
        .map(|(name, slot)| SlotManifest {
            name: name.clone(),
            kind: slot.kind.to_string(),
            // Integrations are named by their name; a phone number's number is not a name to
            // carry to another org, so the binding is not named (the label is not in the app).
            bound_resource_name: match slot.kind {
                ResourceKind::Integration(_) => slot.binding.clone(),
                ResourceKind::PhoneNumber => None,
            },
        })
        .collect();
    AppArchive {
        manifest: Manifest {
            format_version: orgplane_appzip::FORMAT_VERSION,
            app_name: app.name.clone(),
            app_version: app.version,
            source_org_id: app.org_id.to_string(),
            source_region: region.to_string(),
            exported_at_ms: app.updated_at_ms,
            slots,
        },
        definition: app.definition.as_bytes().to_vec(),
        assets: app.assets.clone(),
    }
}

/// A file name for the export: the app's name reduced to `a-z0-9-`, and its version.
fn file_name(app: &App) -> String {
    let mut stem: String = app
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    stem.truncate(64);
    if stem.is_empty() {
        stem = "app".into();
    }
    format!("{stem}-v{}.zip", app.version)
}

/// What an archive holds, as the parts of an `ImportApp` command, validated.
struct Imported {
    name: String,
    definition: String,
    assets: BTreeMap<String, Vec<u8>>,
    slots: BTreeMap<String, ResourceKind>,
    source_region: Region,
}

fn imported(archive: &AppArchive) -> Result<Imported, NodeError> {
    let manifest = &archive.manifest;
    let name = validate::app_name(&manifest.app_name)
        .map_err(|e| invalid("archive", format!("manifest.json app_name: {e}")))?;
    let text = std::str::from_utf8(&archive.definition)
        .map_err(|_| invalid("archive", "definition.json is not UTF-8".into()))?;
    let definition = validate::app_definition(text).map_err(|e| invalid("archive", format!("definition.json: {e}")))?;
    let mut slots = BTreeMap::new();
    for slot in &manifest.slots {
        let kind: ResourceKind =
            slot.kind.parse().map_err(|e| invalid("archive", format!("manifest.json slot {:?}: {e}", slot.name)))?;
        slots.insert(slot.name.clone(), kind);
    }
    validate::app_slots(slots.keys()).map_err(|e| invalid("archive", format!("manifest.json: {e}")))?;
    validate::app_assets(&archive.assets).map_err(|e| invalid("archive", format!("assets: {e}")))?;
    let source_region: Region = manifest
        .source_region
        .parse()
        .map_err(|_| invalid("archive", format!("manifest.json source_region {:?}", manifest.source_region)))?;
    Ok(Imported { name, definition, assets: archive.assets.clone(), slots, source_region })
}

fn new_app_id() -> AppId {
    AppId::from_u128(uuid::Uuid::now_v7().as_u128())
}

#[tonic::async_trait]
impl AppService for AppServiceImpl {
    #[tracing::instrument(name = "node.create_app", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn create_app(&self, request: Request<CreateAppRequest>) -> Reply<CreateAppResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let name = validate::app_name(&req.name).map_err(NodeError::from)?;
        let definition = validate::app_definition(&req.definition).map_err(NodeError::from)?;
        let slots = parse_slot_specs("slots", &req.slots).map_err(NodeError::from)?;
        validate::app_slots(slots.keys()).map_err(NodeError::from)?;
        let assets: BTreeMap<String, Vec<u8>> = req.assets.into_iter().collect();
        validate::app_assets(&assets).map_err(NodeError::from)?;
        let op = Op::CreateApp { org_id, app_id: new_app_id(), name, definition, assets, slots };
        let app = self.commit(actor, &req.request_id, op).await?;
        Ok(self.core.reply(CreateAppResponse { app: Some(conv::app_to_wire(&app)) }))
    }

    #[tracing::instrument(name = "node.get_app", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn get_app(&self, request: Request<GetAppRequest>) -> Reply<GetAppResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let app_id = parse_app_id("app_id", &req.app_id).map_err(NodeError::from)?;
        let (app, read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::GetApp, req.consistency, |view| Self::app_in(view, &org_id, &app_id))
            .await?;
        Ok(self.core.reply(GetAppResponse { app: Some(conv::app_to_wire(&app)), read: Some(read) }))
    }

    #[tracing::instrument(name = "node.list_apps", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_apps(&self, request: Request<ListAppsRequest>) -> Reply<ListAppsResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let (limit, after) = page(req.page_size, &req.page_token)?;
        let ((apps, next), read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::ListApps, req.consistency, |view| {
                state::list_apps(view, &org_id, after.as_deref(), limit)
            })
            .await?;
        Ok(self.core.reply(ListAppsResponse {
            apps: apps.iter().map(conv::app_summary_to_wire).collect(),
            next_page_token: next.map(|n| encode_page_token(&n)).unwrap_or_default(),
            read: Some(read),
        }))
    }

    #[tracing::instrument(name = "node.update_app", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn update_app(&self, request: Request<UpdateAppRequest>) -> Reply<UpdateAppResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let app_id = parse_app_id("app_id", &req.app_id).map_err(NodeError::from)?;
        let name = req.name.as_deref().map(validate::app_name).transpose().map_err(NodeError::from)?;
        let definition =
            req.definition.as_deref().map(validate::app_definition).transpose().map_err(NodeError::from)?;
        let slots = match &req.slots {
            Some(given) => {
                let slots = parse_slot_specs("slots", &given.slots).map_err(NodeError::from)?;
                validate::app_slots(slots.keys()).map_err(NodeError::from)?;
                Some(slots)
            }
            None => None,
        };
        if name.is_none() && definition.is_none() && slots.is_none() {
            return Err(invalid("name", "an update must change the name, the definition or the slots".into()).into());
        }
        let op = Op::UpdateApp { org_id, app_id, name, definition, slots, expected_version: req.expected_version };
        let app = self.commit(actor, &req.request_id, op).await?;
        Ok(self.core.reply(UpdateAppResponse { app: Some(conv::app_to_wire(&app)) }))
    }

    #[tracing::instrument(name = "node.delete_app", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn delete_app(&self, request: Request<DeleteAppRequest>) -> Reply<DeleteAppResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let app_id = parse_app_id("app_id", &req.app_id).map_err(NodeError::from)?;
        let op = Op::DeleteApp { org_id, app_id, expected_version: req.expected_version };
        match self.core.write_org(actor, &req.request_id, op).await? {
            CommandOutcome::AppDeleted => Ok(self.core.reply(DeleteAppResponse {})),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.bind_app_slot", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn bind_app_slot(&self, request: Request<BindAppSlotRequest>) -> Reply<BindAppSlotResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let app_id = parse_app_id("app_id", &req.app_id).map_err(NodeError::from)?;
        validate::slot_name(&req.slot).map_err(NodeError::from)?;
        if req.resource_id.is_empty() || req.resource_id.len() > 256 {
            return Err(invalid("resource_id", "must be 1 to 256 bytes".into()).into());
        }
        let op = Op::BindAppSlot { org_id, app_id, slot: req.slot, resource_id: req.resource_id };
        let app = self.commit(actor, &req.request_id, op).await?;
        Ok(self.core.reply(BindAppSlotResponse { app: Some(conv::app_to_wire(&app)) }))
    }

    #[tracing::instrument(name = "node.unbind_app_slot", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn unbind_app_slot(&self, request: Request<UnbindAppSlotRequest>) -> Reply<UnbindAppSlotResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let app_id = parse_app_id("app_id", &req.app_id).map_err(NodeError::from)?;
        validate::slot_name(&req.slot).map_err(NodeError::from)?;
        let op = Op::UnbindAppSlot { org_id, app_id, slot: req.slot };
        let app = self.commit(actor, &req.request_id, op).await?;
        Ok(self.core.reply(UnbindAppSlotResponse { app: Some(conv::app_to_wire(&app)) }))
    }

    #[tracing::instrument(name = "node.publish_app", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn publish_app(&self, request: Request<PublishAppRequest>) -> Reply<PublishAppResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let app_id = parse_app_id("app_id", &req.app_id).map_err(NodeError::from)?;
        let op = Op::PublishApp { org_id, app_id, expected_version: req.expected_version };
        let app = self.commit(actor, &req.request_id, op).await?;
        Ok(self.core.reply(PublishAppResponse { app: Some(conv::app_to_wire(&app)) }))
    }

    type ExportAppStream = ExportStream;

    #[tracing::instrument(name = "node.export_app", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn export_app(&self, request: Request<ExportAppRequest>) -> Reply<Self::ExportAppStream> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let app_id = parse_app_id("app_id", &req.app_id).map_err(NodeError::from)?;
        let (app, _read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::ExportApp, req.consistency, |view| {
                Self::app_in(view, &org_id, &app_id)
            })
            .await?;
        let bytes = write_archive(&archive_of(&app, self.core.region), &self.limits).map_err(|e| {
            NodeError::Domain(DomainError::failed_precondition(format!("app {app_id} cannot be exported: {e}")))
        })?;
        let header = ExportAppHeader {
            file_name: file_name(&app),
            size: bytes.len() as u64,
            format_version: orgplane_appzip::FORMAT_VERSION,
            app_version: app.version,
        };
        tracing::info!(app = %app_id, bytes = bytes.len(), "exporting app");
        let mut messages = vec![ExportAppChunk { part: Some(export_app_chunk::Part::Header(header)) }];
        messages.extend(
            bytes
                .chunks(EXPORT_CHUNK_BYTES)
                .map(|c| ExportAppChunk { part: Some(export_app_chunk::Part::Data(c.to_vec())) }),
        );
        Ok(self.core.reply(Box::pin(futures::stream::iter(messages.into_iter().map(Ok))) as ExportStream))
    }

    #[tracing::instrument(name = "node.import_app", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn import_app(&self, request: Request<Streaming<ImportAppChunk>>) -> Reply<ImportAppResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(ImportAppChunk { part: Some(import_app_chunk::Part::Header(header)) })) => header,
            Some(Err(status)) => return Err(status),
            _ => return Err(invalid("header", "the first message must be the header".into()).into()),
        };
        let org_id = core.org_id(&header.org_id)?;
        validate::request_id(&header.request_id).map_err(NodeError::from)?;
        // 1. Who may import, before a byte of the upload is buffered.
        policy::authorize_access(
            &core.state,
            &actor,
            Some(&org_id),
            Access::Permission(Permission::AppsTransfer),
            "import_app",
        )
        .map_err(|e| not_found_here(core, &org_id, NodeError::from_query(core.region, e)))?;
        // 2. and 3. The whole upload, within the limit, then every check of the archive.
        let bytes = self.collect_upload(&mut stream).await?;
        let archive = read_archive(&bytes, &self.limits).map_err(archive_refused)?;
        drop(bytes);
        let new = imported(&archive)?;
        // 4. The residency policy, on a linearized view (apply checks it again).
        core.prepare_read(0).await?;
        let org = state::get_org(&core.state, &org_id)
            .map_err(|e| core.storage(e))?
            .ok_or_else(|| not_found_here(core, &org_id, NodeError::Domain(DomainError::org_not_found(&org_id))))?;
        if !org.allows_import_from(new.source_region) {
            return Err(NodeError::Domain(DomainError::failed_precondition(state::residency_refusal(
                &org_id,
                new.source_region,
            )))
            .into());
        }
        // 5. One command.
        let op = Op::ImportApp {
            org_id: org_id.clone(),
            app_id: new_app_id(),
            name: new.name,
            definition: new.definition,
            assets: new.assets,
            slots: new.slots,
            source_org_id: archive.manifest.source_org_id.clone(),
            source_region: new.source_region,
        };
        let app = self.commit(actor.clone(), &header.request_id, op).await?;
        let hints = self.hints(&actor, &org_id, &app, &archive.manifest)?;
        tracing::info!(app = %app.id, source_region = %archive.manifest.source_region, "imported app");
        Ok(core.reply(ImportAppResponse {
            slots_to_bind: app.unbound_slots().into_iter().map(str::to_string).collect(),
            app: Some(conv::app_to_wire(&app)),
            hints,
            source_org_id: archive.manifest.source_org_id.clone(),
            source_region: archive.manifest.source_region.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> App {
        App {
            id: AppId::from_u128(1),
            org_id: OrgId::from_u128(Region::Eu, 1),
            name: name.into(),
            definition: r#"{"a":1}"#.into(),
            assets: BTreeMap::new(),
            slots: BTreeMap::from([
                (
                    "sms".to_string(),
                    orgplane_model::Slot {
                        kind: ResourceKind::Integration("twilio".into()),
                        binding: Some("main".into()),
                    },
                ),
                (
                    "line".to_string(),
                    orgplane_model::Slot { kind: ResourceKind::PhoneNumber, binding: Some("+4930123456".into()) },
                ),
            ]),
            version: 3,
            published_version: None,
            created_at_ms: 1,
            updated_at_ms: 2,
        }
    }

    #[test]
    fn exports_are_deterministic_and_name_no_number() {
        let a = write_archive(&archive_of(&app("Support Bot"), Region::Eu), &Limits::default()).unwrap();
        let b = write_archive(&archive_of(&app("Support Bot"), Region::Eu), &Limits::default()).unwrap();
        assert_eq!(a, b);
        let back = read_archive(&a, &Limits::default()).unwrap();
        assert!(!format!("{:?}", back.manifest).contains("+4930123456"));
        assert_eq!(file_name(&app("Support Bot!")), "support-bot-v3.zip");
        assert_eq!(file_name(&app("???")), "app-v3.zip");
        let parsed = imported(&back).unwrap();
        assert_eq!(parsed.slots.len(), 2);
        assert_eq!(parsed.source_region, Region::Eu);
    }
}
