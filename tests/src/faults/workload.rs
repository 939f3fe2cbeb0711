//! The clients: each one sequential, recording every operation's invocation and outcome in the
//! shared [`History`]. Operations go through `OrgServiceClient` with a deadline per request,
//! to a node chosen at random per operation (a follower forwards writes to its leader).
//!
//! A write's outcome is `Ok`, `Fail` only when it certainly had no effect (a refusal, or a
//! connection that could not be made), and `Indeterminate` otherwise (a timeout, UNAVAILABLE
//! after the request may have reached the leader): the checker lets those take effect at any
//! point after their invocation, or never.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::*;
use tonic::transport::Channel;
use tonic::Code;

use super::cluster::channel;
use super::history::{History, KeyInfo, Kind, OpRecord, Outcome};
use super::rng::Rng;

/// Where a client sends requests: a node or a router.
#[derive(Clone)]
pub struct Target {
    pub label: String,
    pub addr: String,
    channel: Channel,
}

impl Target {
    pub fn new(label: impl Into<String>, addr: impl Into<String>) -> Target {
        let addr = addr.into();
        Target { label: label.into(), channel: channel(&addr), addr }
    }

    pub fn client(&self) -> OrgServiceClient<Channel> {
        OrgServiceClient::new(self.channel.clone())
    }
}

/// Whether a failed call certainly never reached a server: the client could not connect.
/// Statuses a server sent have no source error; tonic's own connection failures do.
fn never_sent(status: &tonic::Status) -> bool {
    if status.code() != Code::Unavailable {
        return false;
    }
    let mut source = status.source();
    while let Some(e) = source {
        let text = format!("{e:?} {e}").to_lowercase();
        if text.contains("connection refused") || text.contains("connecterror") || text.contains("tcp connect error") {
            return true;
        }
        source = e.source();
    }
    false
}

/// How an error ends an operation that may have changed state.
fn classify(status: &tonic::Status) -> Outcome {
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented => Outcome::Fail,
        _ if never_sent(status) => Outcome::Fail,
        _ => Outcome::Indeterminate,
    }
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Runs `call` with a gRPC deadline of `timeout` and a local bound just past it.
async fn bounded<T, F>(timeout: Duration, call: F) -> Result<T, tonic::Status>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(timeout + Duration::from_millis(300), call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded("client-side deadline")),
    }
}

fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Who issues recorded operations, where to, and with which deadline.
pub struct Caller<'a> {
    pub history: &'a History,
    pub client: &'a str,
    pub target: &'a Target,
    pub timeout: Duration,
}

impl Caller<'_> {
    /// One `GetOrg` of `key`, recorded. `local`: READ_CONSISTENCY_LOCAL instead of the
    /// linearizable default.
    pub async fn read(&self, key: usize, org_id: &str, local: bool) -> OpRecord {
        let kind = if local { Kind::ReadLocal } else { Kind::Read };
        let id = self.history.invoke(OpRecord::new(self.client, &self.target.label, key, kind));
        let consistency = if local { ReadConsistency::Local as i32 } else { ReadConsistency::Unspecified as i32 };
        let request = with_deadline(GetOrgRequest { org_id: org_id.into(), consistency }, self.timeout);
        let mut c = self.target.client();
        let result = bounded(self.timeout, c.get_org(request)).await;
        self.history.complete(id, |op| match result {
            Ok(reply) => {
                op.outcome = Outcome::Ok;
                let org = reply.org.unwrap_or_default();
                op.value = Some(org.name);
                op.version = Some(org.version);
                if let Some(info) = reply.read {
                    op.served_by = Some(info.node_id);
                    op.applied_index = Some(info.applied_index);
                }
            }
            // The org exists from before the history began: NOT_FOUND is an answer ("no
            // value"), and one the checker will refuse.
            Err(status) if status.code() == Code::NotFound => {
                op.outcome = Outcome::Ok;
                op.error = Some(describe(&status));
            }
            // A read changes nothing; a failed one is dropped by the checker either way.
            Err(status) => {
                op.outcome = classify(&status);
                op.error = Some(describe(&status));
            }
        });
        self.history.op(id)
    }

    /// One `UpdateOrg` of `key` to `name`, recorded; with `expected` (name, version) a cas.
    pub async fn write(&self, key: usize, org_id: &str, name: &str, expected: Option<(String, u64)>) -> OpRecord {
        let kind = if expected.is_some() { Kind::Cas } else { Kind::Write };
        let mut record = OpRecord::new(self.client, &self.target.label, key, kind);
        record.value = Some(name.to_string());
        record.expected = expected.as_ref().map(|(n, _)| n.clone());
        record.expected_version = expected.as_ref().map(|(_, v)| *v);
        let id = self.history.invoke(record);
        let request = UpdateOrgRequest {
            org_id: org_id.into(),
            name: name.into(),
            expected_version: expected.as_ref().map(|(_, v)| *v),
            request_id: String::new(),
            allowed_import_regions: None,
        };
        let mut c = self.target.client();
        let result = bounded(self.timeout, c.update_org(with_deadline(request, self.timeout))).await;
        self.history.complete(id, |op| match result {
            Ok(reply) => {
                op.outcome = Outcome::Ok;
                op.version = reply.org.map(|o| o.version);
                if kind == Kind::Cas {
                    op.cas_applied = Some(true);
                }
            }
            Err(status) if kind == Kind::Cas && status.code() == Code::Aborted => {
                op.outcome = Outcome::Ok;
                op.cas_applied = Some(false);
                op.error = Some(describe(&status));
            }
            Err(status) => {
                op.outcome = classify(&status);
                op.error = Some(describe(&status));
            }
        });
        self.history.op(id)
    }

    /// One `AddMember` of `user` to `key`'s org, recorded.
    pub async fn add_member(&self, key: usize, org_id: &str, user: &str) -> OpRecord {
        let mut record = OpRecord::new(self.client, &self.target.label, key, Kind::AddMember);
        record.value = Some(user.to_string());
        let id = self.history.invoke(record);
        let request = AddMemberRequest {
            org_id: org_id.into(),
            user_id: user.into(),
            role: "viewer".into(),
            request_id: String::new(),
        };
        let mut c = self.target.client();
        let result = bounded(self.timeout, c.add_member(with_deadline(request, self.timeout))).await;
        self.history.complete(id, |op| match result {
            Ok(_) => op.outcome = Outcome::Ok,
            Err(status) => {
                op.outcome = classify(&status);
                op.error = Some(describe(&status));
            }
        });
        self.history.op(id)
    }
}

/// Creates an org through `target`, retrying (bounded) with one request id so it applies once;
/// the org is not part of any history: its name is the register's initial value.
pub async fn create_org(target: &Target, region: &str, name: &str, bound: Duration) -> KeyInfo {
    let started = Instant::now();
    let request_id = format!("create-{name}");
    let mut last = String::new();
    while started.elapsed() < bound {
        let request = CreateOrgRequest { region: region.into(), name: name.into(), request_id: request_id.clone() };
        match bounded(
            Duration::from_secs(3),
            target.client().create_org(with_deadline(request, Duration::from_secs(3))),
        )
        .await
        {
            Ok(reply) => {
                let org = reply.org.expect("created org");
                return KeyInfo { org_id: org.id, initial: org.name, region: region.into() };
            }
            Err(status) => last = describe(&status),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not create org {name} in {region} via {} within {bound:?}: {last}", target.label);
}

/// Every member's user id of `org_id`, read linearizably a page at a time (bounded retries).
pub async fn list_members(target: &Target, org_id: &str, bound: Duration) -> Result<Vec<String>, String> {
    let started = Instant::now();
    'attempt: while started.elapsed() < bound {
        let mut users = Vec::new();
        let mut token = String::new();
        for _page in 0..1000 {
            let request = ListMembersRequest {
                org_id: org_id.into(),
                page_size: 1000,
                page_token: token.clone(),
                consistency: ReadConsistency::Linearizable as i32,
            };
            match bounded(
                Duration::from_secs(3),
                target.client().list_members(with_deadline(request, Duration::from_secs(3))),
            )
            .await
            {
                Ok(reply) => {
                    users.extend(reply.members.into_iter().map(|m| m.user_id));
                    if reply.next_page_token.is_empty() {
                        return Ok(users);
                    }
                    token = reply.next_page_token;
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'attempt;
                }
            }
        }
        return Err("more than 1000 pages of members".into());
    }
    Err(format!("ListMembers of {org_id} did not succeed within {bound:?}"))
}

/// The mix of operations, as weights.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub read: u32,
    pub write: u32,
    pub cas: u32,
    pub add_member: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { read: 45, write: 35, cas: 12, add_member: 8 }
    }
}

/// What the clients of one workload do.
#[derive(Clone)]
pub struct WorkloadSpec {
    /// Client names are `{prefix}{n}`.
    pub prefix: String,
    pub clients: usize,
    /// The keys (indices into the history's keys) the clients work on.
    pub keys: Vec<usize>,
    pub targets: Vec<Target>,
    /// Each client stops after this long or this many operations, whichever comes first.
    pub duration: Duration,
    pub max_ops_per_client: usize,
    /// A pause between a client's operations (pacing, to keep histories checkable).
    pub pace: Duration,
    /// The deadline of each request.
    pub timeout: Duration,
    pub mix: Mix,
    pub seed: u64,
    /// Written names start with this (unique per run, so a name identifies its write).
    pub tag: String,
}

/// Running clients; [`Workload::stop`] ends them.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    pub fn start(history: Arc<History>, spec: WorkloadSpec) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let keys = history.keys();
        let tasks = (1..=spec.clients)
            .map(|n| {
                let history = history.clone();
                let spec = spec.clone();
                let stop = stop.clone();
                let keys = keys.clone();
                tokio::spawn(async move { run_client(n, history, spec, keys, stop).await })
            })
            .collect();
        Workload { stop, tasks }
    }

    /// Asks the clients to stop and waits for their operations in flight (each bounded by its
    /// deadline).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a client panicked");
        }
    }

    /// Waits for the clients to reach their own bounds.
    pub async fn finish(self) {
        for task in self.tasks {
            task.await.expect("a client panicked");
        }
    }
}

async fn run_client(n: usize, history: Arc<History>, spec: WorkloadSpec, keys: Vec<KeyInfo>, stop: Arc<AtomicBool>) {
    let name = format!("{}{n}", spec.prefix);
    let mut rng = Rng::new(spec.seed ^ (n as u64).wrapping_mul(0x9E37_79B9));
    // The last (name, version) this client saw of each key: what a cas expects.
    let mut known: HashMap<usize, (String, u64)> = HashMap::new();
    let started = Instant::now();
    let mix = spec.mix;
    let total = mix.read + mix.write + mix.cas + mix.add_member;
    for seq in 0..spec.max_ops_per_client {
        if stop.load(Ordering::SeqCst) || started.elapsed() >= spec.duration {
            break;
        }
        let key = *rng.pick(&spec.keys);
        let org_id = keys[key].org_id.clone();
        let target = rng.pick(&spec.targets).clone();
        let caller = Caller { history: &history, client: &name, target: &target, timeout: spec.timeout };
        let roll = rng.below(u64::from(total)) as u32;
        let value = format!("{}-k{key}-{name}-{seq}", spec.tag);
        if roll < mix.read {
            let op = caller.read(key, &org_id, false).await;
            if let (Outcome::Ok, Some(v), Some(version)) = (op.outcome, op.value, op.version) {
                known.insert(key, (v, version));
            }
        } else if roll < mix.read + mix.write {
            let op = caller.write(key, &org_id, &value, None).await;
            if let (Outcome::Ok, Some(version)) = (op.outcome, op.version) {
                known.insert(key, (value, version));
            }
        } else if roll < mix.read + mix.write + mix.cas {
            match known.get(&key).cloned() {
                Some(expected) => {
                    let op = caller.write(key, &org_id, &value, Some(expected)).await;
                    if let (Outcome::Ok, Some(true), Some(version)) = (op.outcome, op.cas_applied, op.version) {
                        known.insert(key, (value, version));
                    }
                }
                // Nothing read yet to expect: read first.
                None => {
                    let op = caller.read(key, &org_id, false).await;
                    if let (Outcome::Ok, Some(v), Some(version)) = (op.outcome, op.value, op.version) {
                        known.insert(key, (v, version));
                    }
                }
            }
        } else {
            caller.add_member(key, &org_id, &format!("{}-u-{name}-{seq}", spec.tag)).await;
        }
        if !spec.pace.is_zero() {
            tokio::time::sleep(spec.pace).await;
        }
    }
}
