//! The history a workload records (every operation's invocation and outcome, with times from
//! one monotonic clock), its JSON form kept with a failing run, and its analysis: the
//! linearizability of each key's register, versions consistent with values, no acknowledged
//! write lost, every acknowledged member-add present.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checker::{self, Call, Limits, RegOp, Verdict};

/// What an operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `GetOrg`, linearizable (the default consistency).
    Read,
    /// `GetOrg` with `READ_CONSISTENCY_LOCAL`: the answering replica's own state.
    ReadLocal,
    /// `UpdateOrg` without an expected version.
    Write,
    /// `UpdateOrg` with the expected version of a value the client read.
    Cas,
    /// `AddMember` of a fresh user id.
    AddMember,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Still in flight (only while the workload runs).
    Pending,
    /// Answered; for a cas, `cas_applied` says whether it applied or was rejected (ABORTED).
    Ok,
    /// Definitely had no effect (refused, or never sent: the connection could not be made).
    Fail,
    /// Unknown: timed out or failed after the request may have reached the leader.
    Indeterminate,
}

/// One operation of the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpRecord {
    pub id: usize,
    /// Who issued it: `c1`.., or `final` for the reads after the faults healed, `probe` for a
    /// scenario's own calls.
    pub client: String,
    /// Where it was sent: `n1`.. or `router`.
    pub target: String,
    /// Index into [`HistoryData::keys`].
    pub key: usize,
    pub kind: Kind,
    /// Write and cas: the name written. Add-member: the user id. Read: the name read.
    pub value: Option<String>,
    /// Cas: the name the client read together with `expected_version`.
    pub expected: Option<String>,
    pub expected_version: Option<u64>,
    /// The org's version in the answer (reads, writes, applied cas).
    pub version: Option<u64>,
    pub cas_applied: Option<bool>,
    /// Microseconds since the history began.
    pub invoke_us: u64,
    pub complete_us: Option<u64>,
    pub outcome: Outcome,
    /// The gRPC status of a failed or indeterminate operation.
    pub error: Option<String>,
    /// For reads: the node that answered and how far it had applied.
    pub served_by: Option<u64>,
    pub applied_index: Option<u64>,
}

impl OpRecord {
    /// A new operation for `client` on `key`, to be passed to [`History::invoke`].
    pub fn new(client: impl Into<String>, target: impl Into<String>, key: usize, kind: Kind) -> OpRecord {
        OpRecord {
            id: 0,
            client: client.into(),
            target: target.into(),
            key,
            kind,
            value: None,
            expected: None,
            expected_version: None,
            version: None,
            cas_applied: None,
            invoke_us: 0,
            complete_us: None,
            outcome: Outcome::Pending,
            error: None,
            served_by: None,
            applied_index: None,
        }
    }
}

/// A key of the workload: one org, whose name is the register.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    pub org_id: String,
    /// The name the org was created with: the register's initial value.
    pub initial: String,
    pub region: String,
}

/// What is kept of a run: its keys and operations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryData {
    pub keys: Vec<KeyInfo>,
    pub ops: Vec<OpRecord>,
}

/// A history being recorded by concurrent clients.
pub struct History {
    start: Instant,
    data: Mutex<HistoryData>,
}

impl History {
    pub fn new(keys: Vec<KeyInfo>) -> History {
        History { start: Instant::now(), data: Mutex::new(HistoryData { keys, ops: Vec::new() }) }
    }

    /// Microseconds since the history began.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub fn keys(&self) -> Vec<KeyInfo> {
        self.data.lock().unwrap().keys.clone()
    }

    /// Adds a key (an org created after the history began) and returns its index.
    pub fn add_key(&self, key: KeyInfo) -> usize {
        let mut data = self.data.lock().unwrap();
        data.keys.push(key);
        data.keys.len() - 1
    }

    /// Records the invocation of `op`, stamped now; returns its id for [`History::complete`].
    pub fn invoke(&self, mut op: OpRecord) -> usize {
        let mut data = self.data.lock().unwrap();
        op.id = data.ops.len();
        op.invoke_us = self.now_us();
        op.outcome = Outcome::Pending;
        data.ops.push(op);
        data.ops.len() - 1
    }

    /// Records the end of operation `id`, stamped now: `fill` sets the outcome and results.
    pub fn complete(&self, id: usize, fill: impl FnOnce(&mut OpRecord)) {
        let now = self.now_us();
        let mut data = self.data.lock().unwrap();
        let op = &mut data.ops[id];
        op.complete_us = Some(now);
        fill(op);
        assert_ne!(op.outcome, Outcome::Pending, "operation {id} completed without an outcome");
    }

    /// A copy of operation `id` as it is now.
    pub fn op(&self, id: usize) -> OpRecord {
        self.data.lock().unwrap().ops[id].clone()
    }

    pub fn snapshot(&self) -> HistoryData {
        self.data.lock().unwrap().clone()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.snapshot()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// Counts and findings of one history.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub ops: usize,
    pub ok: usize,
    pub failed: usize,
    pub indeterminate: usize,
    /// Everything that breaks a guarantee: non-linearizable keys, versions that disagree with
    /// values, lost acknowledged writes or member-adds. Empty for a correct run.
    pub violations: Vec<String>,
    /// Keys the checker could not decide within its bound: a test failure of its own kind.
    pub undecided: Vec<String>,
    /// How many search states the checker used, over all keys.
    pub checker_states: usize,
}

impl Analysis {
    /// The counts part of a scenario's summary line.
    pub fn counts(&self) -> String {
        format!(
            "ops={} ok={} failed={} indeterminate={} violations={}",
            self.ops,
            self.ok,
            self.failed,
            self.indeterminate,
            self.violations.len()
        )
    }
}

/// Analyzes `data`. `members` holds, per key, the user ids a final linearizable `ListMembers`
/// returned (keys without an entry are not checked for members).
pub fn analyze(data: &HistoryData, members: &BTreeMap<usize, BTreeSet<String>>, limits: Limits) -> Analysis {
    let mut a = Analysis::default();
    for op in &data.ops {
        a.ops += 1;
        match op.outcome {
            Outcome::Ok => a.ok += 1,
            Outcome::Fail => a.failed += 1,
            Outcome::Indeterminate | Outcome::Pending => a.indeterminate += 1,
        }
    }
    for (k, key) in data.keys.iter().enumerate() {
        let ops: Vec<&OpRecord> = data.ops.iter().filter(|o| o.key == k).collect();
        let label = |o: &OpRecord| format!("#{} ({} via {})", o.id, o.client, o.target);

        // 1. Linearizability of the register "org name".
        let calls: Vec<Call<String>> = ops
            .iter()
            .filter_map(|o| {
                let complete = match o.outcome {
                    Outcome::Ok => o.complete_us,
                    Outcome::Indeterminate | Outcome::Pending => None,
                    Outcome::Fail => return None,
                };
                let op = match o.kind {
                    Kind::Read | Kind::ReadLocal => RegOp::Read(o.value.clone()),
                    Kind::Write => RegOp::Write(o.value.clone()?),
                    Kind::Cas => RegOp::Cas {
                        expected: o.expected.clone()?,
                        new: o.value.clone()?,
                        applied: o.cas_applied.unwrap_or(true),
                    },
                    Kind::AddMember => return None,
                };
                Some(Call { invoke: o.invoke_us, complete, op, label: label(o) })
            })
            .collect();
        match checker::check(Some(key.initial.clone()), &calls, limits) {
            Verdict::Linearizable { states } => a.checker_states += states,
            Verdict::Violation(why) => a.violations.push(format!("key {k} ({}): not linearizable: {why}", key.org_id)),
            Verdict::Unknown(why) => a.undecided.push(format!("key {k} ({}): {why}", key.org_id)),
        }

        // 2. Every version names one value and every value one version (each change bumps
        // the version; names are unique).
        let mut version_of: HashMap<&str, (u64, usize)> = HashMap::new();
        let mut value_of: HashMap<u64, (&str, usize)> = HashMap::new();
        for o in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
            let (Some(value), Some(version)) = (o.value.as_deref(), o.version) else { continue };
            if o.kind == Kind::AddMember {
                continue;
            }
            if let Some((v, other)) = version_of.insert(value, (version, o.id)) {
                if v != version {
                    a.violations.push(format!(
                        "key {k}: value {value:?} seen at version {v} (#{other}) and at version {version} (#{})",
                        o.id
                    ));
                }
            }
            if let Some((v, other)) = value_of.insert(version, (value, o.id)) {
                if v != value {
                    a.violations
                        .push(format!("key {k}: version {version} holds {v:?} (#{other}) and {value:?} (#{})", o.id));
                }
            }
        }

        // 3. No acknowledged write lost: the final read shows the last acknowledged write, or
        // one that is indeterminate (it may have applied after it).
        let Some(last_read) =
            ops.iter().rfind(|o| o.client == "final" && o.kind == Kind::Read && o.outcome == Outcome::Ok)
        else {
            a.violations.push(format!("key {k}: no final linearizable read succeeded"));
            continue;
        };
        let final_value = last_read.value.clone().unwrap_or_default();
        let acked: Vec<&&OpRecord> = ops
            .iter()
            .filter(|o| {
                o.outcome == Outcome::Ok
                    && (o.kind == Kind::Write || (o.kind == Kind::Cas && o.cas_applied == Some(true)))
            })
            .collect();
        let mut allowed: BTreeSet<String> = acked
            .iter()
            .filter(|w| {
                let done = w.complete_us.unwrap_or(u64::MAX);
                // Not superseded: no other acknowledged write began after this one returned.
                !acked.iter().any(|other| other.invoke_us > done)
            })
            .filter_map(|w| w.value.clone())
            .collect();
        allowed.extend(
            ops.iter()
                .filter(|o| {
                    matches!(o.outcome, Outcome::Indeterminate | Outcome::Pending)
                        && matches!(o.kind, Kind::Write | Kind::Cas)
                })
                .filter_map(|o| o.value.clone()),
        );
        if acked.is_empty() {
            allowed.insert(key.initial.clone());
        }
        if !allowed.contains(&final_value) {
            let last = acked.iter().max_by_key(|w| w.complete_us).and_then(|w| w.value.clone());
            a.violations.push(format!(
                "key {k}: acknowledged write lost: the final read shows {final_value:?}, expected one of the last \
                 acknowledged writes or an indeterminate one (last acknowledged: {last:?})"
            ));
        }

        // 4. Every acknowledged member-add is listed; no definitely failed one is.
        if let Some(listed) = members.get(&k) {
            for o in ops.iter().filter(|o| o.kind == Kind::AddMember) {
                let Some(user) = o.value.as_deref() else { continue };
                match o.outcome {
                    Outcome::Ok if !listed.contains(user) => a
                        .violations
                        .push(format!("key {k}: acknowledged member-add #{} of {user} missing from ListMembers", o.id)),
                    Outcome::Fail if listed.contains(user) => a.violations.push(format!(
                        "key {k}: member-add #{} of {user} failed definitely ({:?}) yet the member exists",
                        o.id, o.error
                    )),
                    _ => {}
                }
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyInfo {
        KeyInfo { org_id: "eu-x".into(), initial: "init".into(), region: "eu".into() }
    }

    /// An operation on key 0, answered (`done` Some) or indeterminate.
    fn op(id: usize, client: &str, kind: Kind, value: &str, version: Option<u64>, t: (u64, Option<u64>)) -> OpRecord {
        let mut o = OpRecord::new(client, "n1", 0, kind);
        o.id = id;
        o.value = Some(value.to_string());
        o.version = version;
        o.invoke_us = t.0;
        o.complete_us = t.1;
        o.outcome = if t.1.is_some() { Outcome::Ok } else { Outcome::Indeterminate };
        o
    }

    fn check(ops: Vec<OpRecord>, members: &[&str]) -> Analysis {
        let data = HistoryData { keys: vec![key()], ops };
        let members = BTreeMap::from([(0, members.iter().map(|m| m.to_string()).collect())]);
        analyze(&data, &members, Limits::default())
    }

    #[test]
    fn a_correct_history_has_no_findings() {
        let a = check(
            vec![
                op(0, "c1", Kind::Write, "a", Some(2), (0, Some(10))),
                op(1, "c2", Kind::Read, "a", Some(2), (20, Some(30))),
                op(2, "c1", Kind::AddMember, "u1", None, (40, Some(50))),
                op(3, "c1", Kind::Write, "b", None, (60, None)),
                op(4, "final", Kind::Read, "b", Some(3), (100, Some(110))),
            ],
            &["u1"],
        );
        assert!(a.violations.is_empty() && a.undecided.is_empty(), "{a:?}");
        assert_eq!((a.ops, a.ok, a.indeterminate), (5, 4, 1));
    }

    #[test]
    fn a_lost_acknowledged_write_is_found() {
        let a = check(
            vec![
                op(0, "c1", Kind::Write, "a", Some(2), (0, Some(10))),
                op(1, "c1", Kind::Write, "b", Some(3), (20, Some(30))),
                op(2, "final", Kind::Read, "a", Some(2), (100, Some(110))),
            ],
            &[],
        );
        assert!(a.violations.iter().any(|v| v.contains("acknowledged write lost")), "{:?}", a.violations);
        assert!(a.violations.iter().any(|v| v.contains("not linearizable")), "{:?}", a.violations);
    }

    #[test]
    fn versions_that_disagree_with_values_are_found() {
        let a = check(
            vec![
                op(0, "c1", Kind::Write, "a", Some(2), (0, Some(10))),
                op(1, "c2", Kind::Read, "a", Some(5), (20, Some(30))),
                op(2, "final", Kind::Read, "a", Some(2), (100, Some(110))),
            ],
            &[],
        );
        assert!(a.violations.iter().any(|v| v.contains("seen at version 2")), "{:?}", a.violations);
    }

    #[test]
    fn a_missing_acknowledged_member_is_found() {
        let a = check(
            vec![
                op(0, "c1", Kind::AddMember, "u1", None, (0, Some(10))),
                op(1, "final", Kind::Read, "init", Some(1), (100, Some(110))),
            ],
            &[],
        );
        assert!(a.violations.iter().any(|v| v.contains("missing from ListMembers")), "{:?}", a.violations);
    }
}
