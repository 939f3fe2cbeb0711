//! The typed methods of `AppService`: apps, their slots and bindings, publishing, and moving
//! an app between orgs as an archive. Same rules as the rest of [`Client`]: every write has a
//! short form (a fresh [`RequestId`]) and a `_with_request_id` form, retried with that one id;
//! reads are retried freely.
//!
//! Export writes the archive to any [`std::io::Write`] as it arrives, checking that it starts
//! with its header and holds exactly the bytes the header announced. Import reads the archive
//! from any [`std::io::Read`] first (up to [`IMPORT_MAX_BYTES`]), so each attempt can stream
//! the same bytes again under the same request id: the server applies the import once.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use orgplane_model::ResourceKind;
use orgplane_proto::v1;
use tonic::{Request, Status, Streaming};

use crate::client::{required, Client};
use crate::error::ClientError;
use crate::retry::{call_with_retries, CallKind};
use crate::types::{non_empty, Consistency, OrgRef, Page, PageRequest, RequestId};

/// The chunk size of an upload (the server sends exports in chunks of the same size).
pub const UPLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// The most the client reads from an import's reader: well over any archive a server accepts
/// (8 MiB by default), so the server's own limit is the one a caller meets, with its message.
pub const IMPORT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Called as a transfer goes: bytes done so far, and the total when known.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What a new app is made of.
#[derive(Debug, Clone, Default)]
pub struct AppSpec {
    pub name: String,
    /// JSON text; stored in canonical form.
    pub definition: String,
    /// Slot name and kind.
    pub slots: Vec<(String, ResourceKind)>,
    /// Small files by relative path.
    pub assets: Vec<(String, Vec<u8>)>,
}

/// What an update changes; `None` keeps that part.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppUpdate<'a> {
    pub name: Option<&'a str>,
    /// JSON text.
    pub definition: Option<&'a str>,
    /// The new slots, replacing all the old ones.
    pub slots: Option<&'a [(String, ResourceKind)]>,
}

/// An export's header, once the whole archive was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedApp {
    pub header: v1::ExportAppHeader,
    /// Bytes written (equal to `header.size`).
    pub bytes: u64,
}

fn slot_specs(slots: &[(String, ResourceKind)]) -> Vec<v1::AppSlotSpec> {
    slots.iter().map(|(name, kind)| v1::AppSlotSpec { name: name.clone(), kind: kind.to_string() }).collect()
}

impl Client {
    /// Creates an app in `org`; the server assigns its id. Every slot starts unbound.
    pub async fn create_app(&self, org: impl OrgRef, spec: &AppSpec) -> Result<v1::App, ClientError> {
        self.create_app_with_request_id(org, spec, &RequestId::generate()).await
    }

    /// [`Client::create_app`] with the caller's request id.
    pub async fn create_app_with_request_id(
        &self,
        org: impl OrgRef,
        spec: &AppSpec,
        request_id: &RequestId,
    ) -> Result<v1::App, ClientError> {
        let message = v1::CreateAppRequest {
            org_id: org.org_id_text(),
            name: spec.name.clone(),
            definition: spec.definition.clone(),
            slots: slot_specs(&spec.slots),
            assets: spec.assets.iter().cloned().collect(),
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.apps, "create_app", request_id, message, |mut c, r| async move { c.create_app(r).await })
            .await?;
        required("create_app", "app", response.app)
    }

    /// One app, with its definition and assets.
    pub async fn get_app(
        &self,
        org: impl OrgRef,
        app_id: &str,
        consistency: Consistency,
    ) -> Result<v1::App, ClientError> {
        let message = v1::GetAppRequest {
            org_id: org.org_id_text(),
            app_id: app_id.to_string(),
            consistency: consistency.to_wire(),
        };
        let response =
            self.read_on(&self.apps, "get_app", message, |mut c, r| async move { c.get_app(r).await }).await?;
        required("get_app", "app", response.app)
    }

    /// One page of the apps of `org`, without definitions and assets.
    pub async fn list_apps(&self, org: impl OrgRef, page: PageRequest) -> Result<Page<v1::App>, ClientError> {
        let message = v1::ListAppsRequest {
            org_id: org.org_id_text(),
            page_size: page.page_size,
            page_token: page.token_for_wire(),
            consistency: page.consistency.to_wire(),
        };
        let response =
            self.read_on(&self.apps, "list_apps", message, |mut c, r| async move { c.list_apps(r).await }).await?;
        Ok(Page { items: response.apps, next_page_token: non_empty(response.next_page_token), read: response.read })
    }

    /// Changes an app as `update` says. New slots replace the old ones (a slot keeping its
    /// name and kind keeps its binding).
    pub async fn update_app(
        &self,
        org: impl OrgRef,
        app_id: &str,
        update: &AppUpdate<'_>,
        expected_version: Option<u64>,
    ) -> Result<v1::App, ClientError> {
        self.update_app_with_request_id(org, app_id, update, expected_version, &RequestId::generate()).await
    }

    /// [`Client::update_app`] with the caller's request id.
    pub async fn update_app_with_request_id(
        &self,
        org: impl OrgRef,
        app_id: &str,
        update: &AppUpdate<'_>,
        expected_version: Option<u64>,
        request_id: &RequestId,
    ) -> Result<v1::App, ClientError> {
        let message = v1::UpdateAppRequest {
            org_id: org.org_id_text(),
            app_id: app_id.to_string(),
            name: update.name.map(str::to_string),
            definition: update.definition.map(str::to_string),
            slots: update.slots.map(|s| v1::AppSlots { slots: slot_specs(s) }),
            expected_version,
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.apps, "update_app", request_id, message, |mut c, r| async move { c.update_app(r).await })
            .await?;
        required("update_app", "app", response.app)
    }

    /// Deletes an app (and its bindings).
    pub async fn delete_app(
        &self,
        org: impl OrgRef,
        app_id: &str,
        expected_version: Option<u64>,
    ) -> Result<(), ClientError> {
        self.delete_app_with_request_id(org, app_id, expected_version, &RequestId::generate()).await
    }

    /// [`Client::delete_app`] with the caller's request id.
    pub async fn delete_app_with_request_id(
        &self,
        org: impl OrgRef,
        app_id: &str,
        expected_version: Option<u64>,
        request_id: &RequestId,
    ) -> Result<(), ClientError> {
        let message = v1::DeleteAppRequest {
            org_id: org.org_id_text(),
            app_id: app_id.to_string(),
            expected_version,
            request_id: request_id.to_string(),
        };
        self.write_on(&self.apps, "delete_app", request_id, message, |mut c, r| async move { c.delete_app(r).await })
            .await?;
        Ok(())
    }

    /// Binds `slot` of the app to a resource of the same org: an integration's name or a
    /// phone number.
    pub async fn bind_app_slot(
        &self,
        org: impl OrgRef,
        app_id: &str,
        slot: &str,
        resource_id: &str,
    ) -> Result<v1::App, ClientError> {
        self.bind_app_slot_with_request_id(org, app_id, slot, resource_id, &RequestId::generate()).await
    }

    /// [`Client::bind_app_slot`] with the caller's request id.
    pub async fn bind_app_slot_with_request_id(
        &self,
        org: impl OrgRef,
        app_id: &str,
        slot: &str,
        resource_id: &str,
        request_id: &RequestId,
    ) -> Result<v1::App, ClientError> {
        let message = v1::BindAppSlotRequest {
            org_id: org.org_id_text(),
            app_id: app_id.to_string(),
            slot: slot.to_string(),
            resource_id: resource_id.to_string(),
            request_id: request_id.to_string(),
        };
        let response =
            self.write_on(&self.apps, "bind_app_slot", request_id, message, |mut c, r| async move {
                c.bind_app_slot(r).await
            })
            .await?;
        required("bind_app_slot", "app", response.app)
    }

    /// Unbinds `slot` of the app.
    pub async fn unbind_app_slot(&self, org: impl OrgRef, app_id: &str, slot: &str) -> Result<v1::App, ClientError> {
        self.unbind_app_slot_with_request_id(org, app_id, slot, &RequestId::generate()).await
    }

    /// [`Client::unbind_app_slot`] with the caller's request id.
    pub async fn unbind_app_slot_with_request_id(
        &self,
        org: impl OrgRef,
        app_id: &str,
        slot: &str,
        request_id: &RequestId,
    ) -> Result<v1::App, ClientError> {
        let message = v1::UnbindAppSlotRequest {
            org_id: org.org_id_text(),
            app_id: app_id.to_string(),
            slot: slot.to_string(),
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.apps, "unbind_app_slot", request_id, message, |mut c, r| async move {
                c.unbind_app_slot(r).await
            })
            .await?;
        required("unbind_app_slot", "app", response.app)
    }

    /// Publishes the app's current version; FAILED_PRECONDITION names every unbound slot.
    pub async fn publish_app(&self, org: impl OrgRef, app_id: &str) -> Result<v1::App, ClientError> {
        self.publish_app_with_request_id(org, app_id, &RequestId::generate()).await
    }

    /// [`Client::publish_app`] with the caller's request id.
    pub async fn publish_app_with_request_id(
        &self,
        org: impl OrgRef,
        app_id: &str,
        request_id: &RequestId,
    ) -> Result<v1::App, ClientError> {
        let message = v1::PublishAppRequest {
            org_id: org.org_id_text(),
            app_id: app_id.to_string(),
            expected_version: None,
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.apps, "publish_app", request_id, message, |mut c, r| async move { c.publish_app(r).await })
            .await?;
        required("publish_app", "app", response.app)
    }

    /// Exports the app as an archive into `out`, calling `progress` as bytes arrive. The
    /// stream's start is retried like a read; once bytes were written, a failure is final.
    pub async fn export_app(
        &self,
        org: impl OrgRef,
        app_id: &str,
        out: &mut impl Write,
        progress: Option<Progress>,
    ) -> Result<ExportedApp, ClientError> {
        const RPC: &str = "export_app";
        let message = v1::ExportAppRequest {
            org_id: org.org_id_text(),
            app_id: app_id.to_string(),
            consistency: Consistency::Linearizable.to_wire(),
        };
        let apps = &self.apps;
        let mut messages = call_with_retries(&self.options, &self.endpoint, RPC, CallKind::Read, None, message, |r| {
            let mut request = r;
            // A `grpc-timeout` would bound the whole stream; the retry loop bounds its start,
            // and every message must arrive within the request timeout.
            request.metadata_mut().remove("grpc-timeout");
            let mut apps = apps.clone();
            async move { apps.export_app(request).await }
        })
        .await?;
        let idle = self.options.request_timeout;
        let header = match next_export_part(&mut messages, idle).await? {
            Some(v1::export_app_chunk::Part::Header(header)) => header,
            _ => return Err(malformed(RPC, "the stream does not start with a header")),
        };
        let mut written = 0u64;
        while let Some(part) = next_export_part(&mut messages, idle).await? {
            let v1::export_app_chunk::Part::Data(data) = part else {
                return Err(malformed(RPC, "a second header"));
            };
            written += data.len() as u64;
            if written > header.size {
                return Err(malformed(RPC, "more bytes than the header announced"));
            }
            out.write_all(&data).map_err(|source| ClientError::Io {
                rpc: RPC,
                context: "writing the archive",
                source,
            })?;
            if let Some(progress) = &progress {
                progress(written, header.size);
            }
        }
        if written != header.size {
            return Err(malformed(RPC, "the stream ended before the bytes the header announced"));
        }
        out.flush().map_err(|source| ClientError::Io { rpc: RPC, context: "writing the archive", source })?;
        Ok(ExportedApp { header, bytes: written })
    }

    /// Imports the archive read from `archive` into `org`: the new app (every slot unbound),
    /// the slots to bind and hints. Every attempt sends the same bytes with the same request
    /// id, so the server creates the app once.
    pub async fn import_app(
        &self,
        org: impl OrgRef,
        archive: impl Read,
        progress: Option<Progress>,
    ) -> Result<v1::ImportAppResponse, ClientError> {
        self.import_app_with_request_id(org, archive, progress, &RequestId::generate()).await
    }

    /// [`Client::import_app`] with the caller's request id.
    pub async fn import_app_with_request_id(
        &self,
        org: impl OrgRef,
        archive: impl Read,
        progress: Option<Progress>,
        request_id: &RequestId,
    ) -> Result<v1::ImportAppResponse, ClientError> {
        const RPC: &str = "import_app";
        let mut bytes = Vec::new();
        archive.take(IMPORT_MAX_BYTES + 1).read_to_end(&mut bytes).map_err(|source| ClientError::Io {
            rpc: RPC,
            context: "reading the archive",
            source,
        })?;
        if bytes.len() as u64 > IMPORT_MAX_BYTES {
            let source = std::io::Error::other(format!("the archive is over {IMPORT_MAX_BYTES} bytes"));
            return Err(ClientError::Io { rpc: RPC, context: "reading the archive", source });
        }
        let header = v1::ImportAppHeader { org_id: org.org_id_text(), request_id: request_id.to_string() };
        let upload = (header, Arc::new(bytes));
        let apps = &self.apps;
        call_with_retries(&self.options, &self.endpoint, RPC, CallKind::Write, Some(request_id.as_str()), upload, |r| {
            let (metadata, extensions, (header, bytes)) = r.into_parts();
            let request = Request::from_parts(metadata, extensions, upload_messages(header, bytes, progress.clone()));
            let mut apps = apps.clone();
            async move { apps.import_app(request).await }
        })
        .await
    }
}

/// The header, then the archive in [`UPLOAD_CHUNK_BYTES`] chunks, reporting progress as each
/// chunk is taken for sending.
fn upload_messages(
    header: v1::ImportAppHeader,
    bytes: Arc<Vec<u8>>,
    progress: Option<Progress>,
) -> impl tokio_stream::Stream<Item = v1::ImportAppChunk> + Send + 'static {
    let total = bytes.len() as u64;
    let first = v1::ImportAppChunk { part: Some(v1::import_app_chunk::Part::Header(header)) };
    let chunks = (0..bytes.len().div_ceil(UPLOAD_CHUNK_BYTES)).map(move |i| {
        let start = i * UPLOAD_CHUNK_BYTES;
        let end = (start + UPLOAD_CHUNK_BYTES).min(bytes.len());
        if let Some(progress) = &progress {
            progress(end as u64, total);
        }
        v1::ImportAppChunk { part: Some(v1::import_app_chunk::Part::Data(bytes[start..end].to_vec())) }
    });
    tokio_stream::iter(std::iter::once(first).chain(chunks))
}

async fn next_export_part(
    messages: &mut Streaming<v1::ExportAppChunk>,
    idle: Duration,
) -> Result<Option<v1::export_app_chunk::Part>, ClientError> {
    match tokio::time::timeout(idle, messages.message()).await {
        Err(_) => Err(ClientError::status(
            "export_app",
            1,
            Status::deadline_exceeded(format!("no export message within {} ms", idle.as_millis())),
            false,
        )),
        Ok(Err(status)) => {
            let from_transport = std::error::Error::source(&status).is_some();
            Err(ClientError::status("export_app", 1, status, from_transport))
        }
        Ok(Ok(None)) => Ok(None),
        Ok(Ok(Some(v1::ExportAppChunk { part: Some(part) }))) => Ok(Some(part)),
        Ok(Ok(Some(v1::ExportAppChunk { part: None }))) => Err(malformed("export_app", "an empty message")),
    }
}

fn malformed(rpc: &'static str, reason: &str) -> ClientError {
    ClientError::MalformedResponse { rpc, reason: reason.to_string() }
}
