//! What a client sends: the operations ([`OpKind`]), their weights ([`Mix`]), and the
//! [`Workload`] that turns a client's state and the [`Fixtures`] into one gRPC request.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use orgplane_proto::v1::app_service_client::AppServiceClient;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::{
    export_app_chunk, import_app_chunk, AddMemberRequest, ExportAppRequest, GetOrgRequest, ImportAppChunk,
    ImportAppHeader, ListMembersRequest, ListOrgsRequest, ListUserOrgsRequest, ReadConsistency, RegionState,
    UpdateOrgRequest,
};
use serde::Serialize;
use tonic::transport::Channel;

use crate::fixtures::Fixtures;

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// AddMember of a user id never used before (a durable write).
    CreateMember,
    /// UpdateOrg of the client's own org with the expected version.
    UpdateOrg,
    /// Linearizable GetOrg.
    GetOrg,
    /// GetOrg with READ_CONSISTENCY_LOCAL.
    GetOrgLocal,
    /// ListUserOrgs of the fan-out user.
    UserOrgs,
    /// Linearizable ListOrgs of the node's region: the first page of [`LIST_PAGE_SIZE`] orgs.
    ListOrgs,
    /// Linearizable ListMembers of a pool org (one page of up to [`LIST_PAGE_SIZE`]).
    ListMembers,
    /// ExportApp of the fixture app: the archive streamed to the end.
    ExportApp,
    /// ImportApp of the fixture app's archive into a pool org: an upload, a full check of the
    /// archive and one write that creates an app.
    ImportApp,
}

/// The size of one upload message of an import, as `orgctl app import` sends them.
pub const UPLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// The gRPC clients one bench client sends its requests with, over one channel.
pub struct Clients {
    pub org: OrgServiceClient<Channel>,
    pub apps: AppServiceClient<Channel>,
}

impl Clients {
    pub fn new(channel: Channel) -> Clients {
        Clients { org: OrgServiceClient::new(channel.clone()), apps: AppServiceClient::new(channel) }
    }
}

/// The page size of the list operations.
pub const LIST_PAGE_SIZE: u32 = 100;

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 9] = [
        OpKind::CreateMember,
        OpKind::UpdateOrg,
        OpKind::GetOrg,
        OpKind::GetOrgLocal,
        OpKind::UserOrgs,
        OpKind::ListOrgs,
        OpKind::ListMembers,
        OpKind::ExportApp,
        OpKind::ImportApp,
    ];

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::CreateMember => "create-members",
            OpKind::UpdateOrg => "update-org",
            OpKind::GetOrg => "get-org",
            OpKind::GetOrgLocal => "get-org-local",
            OpKind::UserOrgs => "user-orgs",
            OpKind::ListOrgs => "list-orgs",
            OpKind::ListMembers => "list-members",
            OpKind::ExportApp => "export-app",
            OpKind::ImportApp => "import-app",
        }
    }
}

impl FromStr for OpKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        OpKind::ALL.into_iter().find(|op| op.as_str() == text.trim()).ok_or_else(|| {
            let known: Vec<&str> = OpKind::ALL.iter().map(|op| op.as_str()).collect();
            format!("unknown operation {text:?} (one of {})", known.join(", "))
        })
    }
}

/// Weighted operations. Invariant (enforced by every constructor): at least one weight, every
/// weight above zero, each operation at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(OpKind, u32)>,
}

impl Mix {
    /// One operation only.
    pub fn single(op: OpKind) -> Mix {
        Mix { weights: vec![(op, 1)] }
    }

    /// Whether `op` has a weight.
    pub fn contains(&self, op: OpKind) -> bool {
        self.weights.iter().any(|(o, _)| *o == op)
    }

    /// The operation that a uniformly random `roll` picks.
    pub fn pick(&self, roll: u64) -> OpKind {
        let total: u64 = self.weights.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut point = roll % total;
        for (op, weight) in &self.weights {
            let weight = u64::from(*weight);
            if point < weight {
                return *op;
            }
            point -= weight;
        }
        unreachable!("the point is below the total weight")
    }
}

impl FromStr for Mix {
    type Err = String;

    /// Parses `OP=WEIGHT,...`, e.g. `get-org=80,create-members=15,update-org=5`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut weights: Vec<(OpKind, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (op, weight) = part.split_once('=').ok_or_else(|| format!("{part:?} is not OP=WEIGHT"))?;
            let op: OpKind = op.parse()?;
            let weight: u32 = weight.trim().parse().map_err(|_| format!("{part:?}: the weight is not a number"))?;
            if weight == 0 {
                return Err(format!("{part:?}: leave the operation out rather than give it weight 0"));
            }
            if weights.iter().any(|(o, _)| *o == op) {
                return Err(format!("{} is given twice", op.as_str()));
            }
            weights.push((op, weight));
        }
        if weights.is_empty() {
            return Err("the mix names no operation".to_string());
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.weights.iter().map(|(op, w)| format!("{}={w}", op.as_str())).collect();
        f.write_str(&parts.join(","))
    }
}

/// Why one request did not count as ok: a gRPC code name, or `PARTIAL` for a user-wide list
/// that some region did not answer.
pub type Failure = &'static str;

/// A workload: the weights, the data set up for it, and the counters that keep user ids unique.
pub struct Workload {
    mix: Mix,
    fixtures: Fixtures,
    request_ids: bool,
    /// Makes every member's user id and every request id unique within this process.
    sequence: AtomicU64,
}

/// One client's own state, kept between its requests.
pub struct ClientState {
    index: usize,
    rng: u64,
    cursor: usize,
    /// The version of the client's own org, when known; `None` after a failed update, whose
    /// outcome is unknown (the next update first reads the org again).
    owned_version: Option<u64>,
}

impl Workload {
    /// A workload over `fixtures`, which must hold what `mix` needs
    /// ([`crate::fixtures::FixtureNeeds::for_mix`]).
    pub fn new(mix: Mix, fixtures: Fixtures, request_ids: bool) -> Workload {
        Workload { mix, fixtures, request_ids, sequence: AtomicU64::new(0) }
    }

    /// The state of client `index` at the start of a run.
    pub fn client(&self, index: usize) -> ClientState {
        let owned_version = self.fixtures.owned.get(index).map(|o| o.version.load(Ordering::Relaxed));
        ClientState { index, rng: splitmix64(index as u64 + 1), cursor: index, owned_version }
    }

    /// Keeps what a client learned for the next run (its org's version).
    pub fn finish_client(&self, state: ClientState) {
        if let (Some(owned), Some(version)) = (self.fixtures.owned.get(state.index), state.owned_version) {
            owned.version.store(version, Ordering::Relaxed);
        }
    }

    /// The next operation of a client.
    pub fn pick(&self, state: &mut ClientState) -> OpKind {
        state.rng = splitmix64(state.rng);
        self.mix.pick(state.rng)
    }

    /// Work before `op` that is not part of its latency: re-reads the client's org after an
    /// update whose outcome is unknown. Errors here are left to the measured request.
    pub async fn prepare(&self, op: OpKind, clients: &mut Clients, state: &mut ClientState) {
        if op != OpKind::UpdateOrg || state.owned_version.is_some() {
            return;
        }
        let Some(owned) = self.fixtures.owned.get(state.index) else {
            return;
        };
        let request = GetOrgRequest { org_id: owned.id.clone(), consistency: ReadConsistency::Linearizable as i32 };
        if let Ok(response) = clients.org.get_org(request).await {
            state.owned_version = response.into_inner().org.map(|org| org.version);
        }
    }

    /// Sends one `op` and waits for its answer.
    pub async fn issue(&self, op: OpKind, clients: &mut Clients, state: &mut ClientState) -> Result<(), Failure> {
        let client = &mut clients.org;
        match op {
            OpKind::CreateMember => {
                let org_id = self.next_pool_org(state);
                let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                let request = AddMemberRequest {
                    org_id,
                    user_id: format!("bench-{}-{n}", self.fixtures.run_id),
                    role: "viewer".to_string(),
                    request_id: self.request_id(n),
                };
                client.add_member(request).await.map(drop).map_err(|s| code_name(s.code()))
            }
            OpKind::UpdateOrg => {
                let owned = self.fixtures.owned.get(state.index).expect("an owned org per client");
                let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                let request = UpdateOrgRequest {
                    org_id: owned.id.clone(),
                    name: format!("bench update {n}"),
                    expected_version: state.owned_version,
                    request_id: self.request_id(n),
                    allowed_import_regions: None,
                };
                let result = client.update_org(request).await;
                state.owned_version =
                    result.as_ref().ok().and_then(|r| r.get_ref().org.as_ref()).map(|org| org.version);
                result.map(drop).map_err(|s| code_name(s.code()))
            }
            OpKind::GetOrg | OpKind::GetOrgLocal => {
                let consistency =
                    if op == OpKind::GetOrg { ReadConsistency::Linearizable } else { ReadConsistency::Local };
                let request = GetOrgRequest { org_id: self.next_pool_org(state), consistency: consistency as i32 };
                client.get_org(request).await.map(drop).map_err(|s| code_name(s.code()))
            }
            OpKind::ListOrgs => {
                let request = ListOrgsRequest {
                    page_size: LIST_PAGE_SIZE,
                    consistency: ReadConsistency::Linearizable as i32,
                    ..Default::default()
                };
                client.list_orgs(request).await.map(drop).map_err(|s| code_name(s.code()))
            }
            OpKind::ListMembers => {
                let request = ListMembersRequest {
                    org_id: self.next_pool_org(state),
                    page_size: LIST_PAGE_SIZE,
                    consistency: ReadConsistency::Linearizable as i32,
                    ..Default::default()
                };
                client.list_members(request).await.map(drop).map_err(|s| code_name(s.code()))
            }
            OpKind::UserOrgs => {
                let user_id = self.fixtures.fanout_user.clone().expect("a fan-out user");
                let request = ListUserOrgsRequest { user_id, ..Default::default() };
                let response = client.list_user_orgs(request).await.map_err(|s| code_name(s.code()))?;
                let partial = response.get_ref().regions.iter().any(|r| r.state != RegionState::Ok as i32);
                if partial {
                    Err("PARTIAL")
                } else {
                    Ok(())
                }
            }
            OpKind::ExportApp => {
                let app = self.fixtures.app.as_ref().expect("a fixture app");
                let request = ExportAppRequest {
                    org_id: app.org_id.clone(),
                    app_id: app.app_id.clone(),
                    consistency: ReadConsistency::Linearizable as i32,
                };
                let mut stream = clients.apps.export_app(request).await.map_err(|s| code_name(s.code()))?.into_inner();
                let mut bytes = 0;
                while let Some(chunk) = stream.message().await.map_err(|s| code_name(s.code()))? {
                    if let Some(export_app_chunk::Part::Data(data)) = chunk.part {
                        bytes += data.len();
                    }
                }
                if bytes == app.archive.len() {
                    Ok(())
                } else {
                    Err("SHORT_EXPORT")
                }
            }
            OpKind::ImportApp => {
                let app = self.fixtures.app.as_ref().expect("a fixture app");
                let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                let header = ImportAppHeader { org_id: self.next_pool_org(state), request_id: self.request_id(n) };
                let mut messages = vec![ImportAppChunk { part: Some(import_app_chunk::Part::Header(header)) }];
                messages.extend(
                    app.archive
                        .chunks(UPLOAD_CHUNK_BYTES)
                        .map(|data| ImportAppChunk { part: Some(import_app_chunk::Part::Data(data.to_vec())) }),
                );
                let upload = futures::stream::iter(messages);
                clients.apps.import_app(upload).await.map(drop).map_err(|s| code_name(s.code()))
            }
        }
    }

    fn next_pool_org(&self, state: &mut ClientState) -> String {
        let pool = &self.fixtures.pool;
        state.cursor = (state.cursor + 1) % pool.len();
        pool[state.cursor].clone()
    }

    fn request_id(&self, n: u64) -> String {
        if self.request_ids {
            format!("bench-{}-{n}", self.fixtures.run_id)
        } else {
            String::new()
        }
    }
}

/// One step of the splitmix64 generator: cheap, deterministic per client, good enough to pick
/// operations.
pub fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The canonical name of a gRPC code (`UNAVAILABLE`), as the metrics label it.
pub use orgplane_telemetry::metrics::grpc_code_label as code_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_prints() {
        let mix: Mix = "get-org=80, create-members=15,update-org=5".parse().unwrap();
        assert_eq!(mix.to_string(), "get-org=80,create-members=15,update-org=5");
        assert!(mix.contains(OpKind::UpdateOrg));
        assert!(!mix.contains(OpKind::UserOrgs));
        for bad in ["", "get-org", "get-org=0", "get-org=x", "nope=1", "get-org=1,get-org=2"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mix_picks_in_proportion() {
        let mix: Mix = "get-org=80,create-members=15,update-org=5".parse().unwrap();
        // Every roll in 0..100 lands once: the counts are the weights exactly.
        let mut counts = std::collections::BTreeMap::new();
        for roll in 0..100u64 {
            *counts.entry(mix.pick(roll)).or_insert(0) += 1;
        }
        assert_eq!(counts[&OpKind::GetOrg], 80);
        assert_eq!(counts[&OpKind::CreateMember], 15);
        assert_eq!(counts[&OpKind::UpdateOrg], 5);
        // And splitmix64 rolls come close over many picks.
        let mut rng = 1;
        let mut gets = 0;
        for _ in 0..100_000 {
            rng = splitmix64(rng);
            gets += usize::from(mix.pick(rng) == OpKind::GetOrg);
        }
        assert!((79_000..81_000).contains(&gets), "{gets}");
    }

    #[test]
    fn code_names_are_canonical() {
        assert_eq!(code_name(tonic::Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(tonic::Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
    }
}
