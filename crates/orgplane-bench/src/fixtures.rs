//! The data a workload needs before the clock starts: orgs to read and add members to, one org
//! per client to update, a user who is a member in every reachable region, and an app with its
//! exported archive. Created once per
//! benchmark invocation, with request ids so a retried create applies once, and every retry
//! loop bounded by one setup deadline.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use orgplane_model::Region;
use orgplane_proto::v1::app_service_client::AppServiceClient;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::{
    export_app_chunk, AddMemberRequest, AppSlotSpec, CreateAppRequest, CreateOrgRequest, ExportAppRequest,
    GetOrgRequest, Org, ReadConsistency,
};
use tonic::transport::Channel;
use tonic::Code;

use crate::workload::{code_name, Mix, OpKind};

/// How many setup requests are in flight at once.
const SETUP_CONCURRENCY: usize = 16;

/// An org that one client alone updates, with the version it was last seen at (carried from one
/// run to the next, so a later run's first update expects the right version).
pub struct OwnedOrg {
    /// The org id.
    pub id: String,
    /// The org's version after the owning client's last successful update.
    pub version: AtomicU64,
}

/// The app the app workloads export, and its archive, which they import.
pub struct FixtureApp {
    pub org_id: String,
    pub app_id: String,
    /// The exported ZIP, as `orgctl app export` writes it.
    pub archive: Vec<u8>,
}

/// The fixture app's definition: a few kilobytes of JSON, like a small bot's steps.
fn app_definition() -> String {
    let steps: Vec<String> =
        (0..40).map(|i| format!(r#""step{i}":{{"say":"Hello from step {i}","next":"step{}"}}"#, i + 1)).collect();
    format!(r#"{{"entry":"step0","steps":{{{}}}}}"#, steps.join(","))
}

/// What was created for the workload.
pub struct Fixtures {
    /// Unique per invocation; prefixes user ids and request ids so reruns against the same
    /// deployment never collide.
    pub run_id: String,
    /// Orgs that readers and member writers spread over.
    pub pool: Vec<String>,
    /// One org per client, for update-org.
    pub owned: Vec<OwnedOrg>,
    /// The user who is a member of one org in each reachable region, for user-orgs.
    pub fanout_user: Option<String>,
    /// The app (in the first pool org) for export-app and import-app.
    pub app: Option<FixtureApp>,
}

/// How much to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureNeeds {
    /// Orgs in the pool.
    pub pool_orgs: usize,
    /// Orgs owned one per client.
    pub owned_orgs: usize,
    /// The regions the fan-out user gets a membership in (empty: no fan-out user).
    pub fanout_regions: Vec<Region>,
    /// An app and its archive.
    pub app: bool,
}

impl FixtureNeeds {
    /// What `mix` needs with `orgs` pool orgs, at most `max_clients` clients, and the fan-out
    /// user in each of `regions`.
    pub fn for_mix(mix: &Mix, orgs: usize, max_clients: usize, regions: &[Region]) -> FixtureNeeds {
        let app = mix.contains(OpKind::ExportApp) || mix.contains(OpKind::ImportApp);
        let pool = [OpKind::CreateMember, OpKind::GetOrg, OpKind::GetOrgLocal, OpKind::ListMembers]
            .iter()
            .any(|op| mix.contains(*op));
        FixtureNeeds {
            pool_orgs: if pool || app { orgs.max(1) } else { 0 },
            owned_orgs: if mix.contains(OpKind::UpdateOrg) { max_clients } else { 0 },
            fanout_regions: if mix.contains(OpKind::UserOrgs) { regions.to_vec() } else { Vec::new() },
            app,
        }
    }
}

/// A fresh id for this invocation.
pub fn new_run_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{:x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id())
}

/// Creates what `needs` asks for through `channel`, in `region` (the fan-out user's orgs in
/// their own regions), giving up at `deadline`.
pub async fn create(
    channel: Channel,
    region: Region,
    needs: &FixtureNeeds,
    deadline: Instant,
) -> anyhow::Result<Fixtures> {
    let run_id = new_run_id();
    let apps = AppServiceClient::new(channel.clone());
    let client = OrgServiceClient::new(channel);
    let create_in = |region: Region, label: &'static str, count: usize| {
        let (client, run_id) = (client.clone(), run_id.clone());
        futures::stream::iter(0..count)
            .map(move |i| create_org(client.clone(), region, format!("bench-{run_id}-{label}-{i}"), deadline))
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<Org>>()
    };
    let pool: Vec<String> = create_in(region, "pool", needs.pool_orgs).await?.into_iter().map(|org| org.id).collect();
    let owned = create_in(region, "owned", needs.owned_orgs)
        .await?
        .into_iter()
        .map(|org| OwnedOrg { id: org.id, version: AtomicU64::new(org.version) })
        .collect();

    let mut fanout_user = None;
    if !needs.fanout_regions.is_empty() {
        let user = format!("bench-{run_id}-fanout");
        for region in &needs.fanout_regions {
            let org = create_org(client.clone(), *region, format!("bench-{run_id}-fanout-{region}"), deadline).await?;
            let request = AddMemberRequest {
                org_id: org.id.clone(),
                user_id: user.clone(),
                role: "viewer".to_string(),
                request_id: format!("bench-{run_id}-fanout-{}", org.id),
            };
            with_retries(&format!("adding the fan-out user to {}", org.id), deadline, || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.add_member(request).await }
            })
            .await?;
        }
        fanout_user = Some(user);
    }
    let app = match (needs.app, pool.first()) {
        (true, Some(org_id)) => Some(create_app(apps, org_id, &run_id, deadline).await?),
        _ => None,
    };
    Ok(Fixtures { run_id, pool, owned, fanout_user, app })
}

/// Creates the fixture app in `org_id` (two slots, a few KiB of definition) and exports it.
pub(crate) async fn create_app(
    apps: AppServiceClient<Channel>,
    org_id: &str,
    run_id: &str,
    deadline: Instant,
) -> anyhow::Result<FixtureApp> {
    let request = CreateAppRequest {
        org_id: org_id.to_string(),
        name: format!("bench-{run_id}"),
        definition: app_definition(),
        slots: vec![
            AppSlotSpec { name: "crm".into(), kind: "integration:http".into() },
            AppSlotSpec { name: "line".into(), kind: "phone_number".into() },
        ],
        assets: Default::default(),
        request_id: format!("bench-{run_id}-app"),
    };
    let created = with_retries("creating the fixture app", deadline, || {
        let (mut apps, request) = (apps.clone(), request.clone());
        async move { apps.create_app(request).await }
    })
    .await?;
    let app_id = created.into_inner().app.context("CreateApp answered without an app")?.id;
    let export = ExportAppRequest {
        org_id: org_id.to_string(),
        app_id: app_id.clone(),
        consistency: ReadConsistency::Linearizable as i32,
    };
    let mut stream = with_retries("exporting the fixture app", deadline, || {
        let (mut apps, export) = (apps.clone(), export.clone());
        async move { apps.export_app(export).await }
    })
    .await?
    .into_inner();
    let mut archive = Vec::new();
    while let Some(chunk) = stream.message().await.context("exporting the fixture app")? {
        if let Some(export_app_chunk::Part::Data(data)) = chunk.part {
            archive.extend_from_slice(&data);
        }
    }
    Ok(FixtureApp { org_id: org_id.to_string(), app_id, archive })
}

/// Creates one org, retrying with the same request id while the region is unavailable.
pub(crate) async fn create_org(
    client: OrgServiceClient<Channel>,
    region: Region,
    key: String,
    deadline: Instant,
) -> anyhow::Result<Org> {
    let request = CreateOrgRequest { region: region.to_string(), name: key.clone(), request_id: key };
    let response = with_retries(&format!("creating an org in {region}"), deadline, || {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.create_org(request).await }
    })
    .await?;
    response.into_inner().org.context("CreateOrg answered without an org")
}

/// Waits until every org in `ids` can be read with LOCAL consistency on every channel, so a
/// local-read benchmark does not start by counting replicas that have not applied the setup yet.
pub async fn wait_visible_locally(channels: &[Channel], ids: &[String], deadline: Instant) -> anyhow::Result<()> {
    for channel in channels {
        let mut client = OrgServiceClient::new(channel.clone());
        for id in ids {
            let request = GetOrgRequest { org_id: id.clone(), consistency: ReadConsistency::Local as i32 };
            loop {
                match client.get_org(request.clone()).await {
                    Ok(_) => break,
                    Err(status) if Instant::now() >= deadline => {
                        bail!("org {id} is not readable locally before the setup deadline: {}", describe(&status))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }
    Ok(())
}

/// Runs `attempt` until it succeeds, fails for good, or `deadline` passes, backing off from 50 ms
/// to 1 s between attempts. Only transient codes are retried.
pub(crate) async fn with_retries<T, F, Fut>(what: &str, deadline: Instant, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(status) if is_transient(status.code()) && Instant::now() + delay < deadline => {
                tracing::debug!(what, error = %describe(&status), "retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(status) => bail!("{what}: {}", describe(&status)),
        }
    }
}

fn is_transient(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown)
}

fn describe(status: &tonic::Status) -> String {
    format!("{} {}", code_name(status.code()), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_follow_the_mix() {
        let regions = [Region::Us, Region::Eu];
        let check = |mix: &str, expected: FixtureNeeds| {
            assert_eq!(FixtureNeeds::for_mix(&mix.parse().unwrap(), 64, 256, &regions), expected, "{mix}");
        };
        check("get-org=1", FixtureNeeds { pool_orgs: 64, owned_orgs: 0, fanout_regions: vec![], app: false });
        check("update-org=1", FixtureNeeds { pool_orgs: 0, owned_orgs: 256, fanout_regions: vec![], app: false });
        check(
            "user-orgs=1",
            FixtureNeeds { pool_orgs: 0, owned_orgs: 0, fanout_regions: regions.to_vec(), app: false },
        );
        check(
            "get-org=80,create-members=15,update-org=5",
            FixtureNeeds { pool_orgs: 64, owned_orgs: 256, fanout_regions: vec![], app: false },
        );
        check("import-app=1", FixtureNeeds { pool_orgs: 64, owned_orgs: 0, fanout_regions: vec![], app: true });
    }

    #[test]
    fn run_ids_are_valid_in_user_and_request_ids() {
        let id = new_run_id();
        let request_id = format!("bench-{id}-{}", u64::MAX);
        assert!(orgplane_model::validate::request_id(&request_id).is_ok(), "{request_id}");
        assert!(orgplane_model::validate::user_id(&request_id).is_ok());
    }
}
