//! `ListUserOrgs` at the router: ask every served region in parallel, each within the fan-out
//! deadline, and merge the answers in region order. The answer is never silently partial:
//! `regions` holds one `RegionResult` per region asked, and a region that did not answer
//! keeps its place in the next page token, so asking for the next page asks it again.
//!
//! The router's page token is opaque to clients: URL-safe base64 of a small JSON object, the
//! [`FanoutCursor`], that maps each region with pages left to that region's own page token
//! (empty for "from the start"). A region whose pages are done is not in it and is not asked
//! again; when no region is left, the token is empty.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::future::join_all;
use orgplane_model::Region;
use orgplane_proto::v1::{ListUserOrgsRequest, ListUserOrgsResponse, RegionResult, RegionState, UserOrg};
use serde::{Deserialize, Serialize};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use crate::deadline::Deadline;
use crate::error::RouterError;
use crate::org_service::log_outcome;
use crate::server::RouterState;

/// The longest router page token accepted, in bytes; larger ones are refused before decoding.
const FANOUT_TOKEN_MAX_BYTES: usize = 8 * 1024;
/// The version of the token layout, checked on decode.
const FANOUT_TOKEN_VERSION: u32 = 1;

/// Where a user-wide listing is: the regions with pages left, each with its own page token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FanoutCursor {
    pub(crate) pending: BTreeMap<Region, String>,
}

/// The JSON inside a router page token.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FanoutToken {
    v: u32,
    pending: BTreeMap<String, String>,
}

impl FanoutCursor {
    /// The first page: every served region, from its start.
    pub(crate) fn start(regions: impl IntoIterator<Item = Region>) -> FanoutCursor {
        FanoutCursor { pending: regions.into_iter().map(|r| (r, String::new())).collect() }
    }

    /// The client's token for this cursor; empty once no region has pages left.
    pub(crate) fn encode(&self) -> String {
        if self.pending.is_empty() {
            return String::new();
        }
        let token = FanoutToken {
            v: FANOUT_TOKEN_VERSION,
            pending: self.pending.iter().map(|(r, t)| (r.as_str().to_string(), t.clone())).collect(),
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("a map of strings always serializes"))
    }

    /// Reads a client's token; `served` says which regions this router can ask. Anything not
    /// issued by a router serving these regions is INVALID_ARGUMENT.
    pub(crate) fn decode(token: &str, served: &[Region]) -> Result<FanoutCursor, RouterError> {
        let invalid = |reason: &str| RouterError::InvalidPageToken { reason: reason.to_string() };
        if token.len() > FANOUT_TOKEN_MAX_BYTES {
            return Err(invalid("is too long"));
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid("is not a token this router issued"))?;
        let token: FanoutToken =
            serde_json::from_slice(&bytes).map_err(|_| invalid("is not a token this router issued"))?;
        if token.v != FANOUT_TOKEN_VERSION {
            return Err(invalid("is from another version of the router"));
        }
        if token.pending.is_empty() {
            return Err(invalid("is not a token this router issued"));
        }
        let mut pending = BTreeMap::new();
        for (name, region_token) in token.pending {
            let region: Region = name.parse().map_err(|_| invalid("names an unknown region"))?;
            if !served.contains(&region) {
                return Err(RouterError::InvalidPageToken {
                    reason: format!("names region {region}, which this router does not serve"),
                });
            }
            pending.insert(region, region_token);
        }
        Ok(FanoutCursor { pending })
    }
}

/// Serves `ListUserOrgs`; logs like every routed call.
#[tracing::instrument(name = "router.fanout", skip_all, fields(rpc = "ListUserOrgs"))]
pub(crate) async fn list_user_orgs(
    state: &RouterState,
    request: Request<ListUserOrgsRequest>,
) -> Result<Response<ListUserOrgsResponse>, Status> {
    let started = Instant::now();
    let deadline = Deadline::for_request(request.metadata(), state.request_timeout);
    let result = fan_out(state, deadline, request.into_inner()).await.map(Response::new).map_err(Status::from);
    log_outcome("ListUserOrgs", None, result.as_ref().map_or_else(Status::code, |_| Code::Ok), started);
    result
}

async fn fan_out(
    state: &RouterState,
    deadline: Deadline,
    request: ListUserOrgsRequest,
) -> Result<ListUserOrgsResponse, RouterError> {
    let served: Vec<Region> = state.table.regions().collect();
    let cursor = if request.page_token.is_empty() {
        FanoutCursor::start(served)
    } else {
        FanoutCursor::decode(&request.page_token, &served)?
    };
    // The incoming deadline already keeps a reply margin back (see `Deadline::for_request`).
    let region_deadline = deadline.at_most(state.fanout_timeout);

    let asks = cursor.pending.iter().map(|(&region, region_token)| {
        let ask = ListUserOrgsRequest { page_token: region_token.clone(), ..request.clone() };
        let span = tracing::debug_span!("router.fanout.region", region = region.as_str());
        async move {
            let nodes = state.table.get(region)?;
            nodes
                .call(
                    "ListUserOrgs",
                    region_deadline,
                    ask,
                    true,
                    |n: &crate::region::Node| n.org.clone(),
                    |mut node, r| async move { node.list_user_orgs(r).await },
                )
                .await
        }
        .instrument(span)
    });
    let answers = join_all(asks).await;
    let response = merge(cursor, answers)?;
    count_partial(state, &response);
    Ok(response)
}

/// Counts each region the answer went out without (`orgplane_router_fanout_partial_total`).
fn count_partial(state: &RouterState, response: &ListUserOrgsResponse) {
    for result in &response.regions {
        if result.state() != RegionState::Ok {
            if let Ok(region) = result.region.parse::<Region>() {
                state.metrics.fanout_partial(region);
            }
        }
    }
}

/// Merges the regions' answers, in region order (`cursor.pending` is ordered by region, and
/// `answers` is in the same order).
fn merge(
    cursor: FanoutCursor,
    answers: Vec<Result<ListUserOrgsResponse, RouterError>>,
) -> Result<ListUserOrgsResponse, RouterError> {
    // A request every region refused as invalid, or refused the caller (listing another
    // user's orgs), is the client's mistake, not a partial answer.
    let refused = |code| matches!(code, Code::InvalidArgument | Code::PermissionDenied | Code::Unauthenticated);
    if answers.iter().all(|a| matches!(a, Err(e) if refused(e.code()))) {
        if let Some(Err(error)) = answers.into_iter().next() {
            return Err(error);
        }
        return Ok(ListUserOrgsResponse::default());
    }
    let mut response = ListUserOrgsResponse::default();
    let mut next = FanoutCursor::default();
    for ((region, region_token), answer) in cursor.pending.into_iter().zip(answers) {
        let result = match answer {
            Ok(page) => {
                response.orgs.extend(page.orgs);
                if !page.next_page_token.is_empty() {
                    next.pending.insert(region, page.next_page_token);
                }
                RegionResult { region: region.to_string(), state: RegionState::Ok as i32, message: String::new() }
            }
            Err(error) => {
                // Not answered: ask it again, from the same place, for the next page.
                next.pending.insert(region, region_token);
                RegionResult {
                    region: region.to_string(),
                    state: region_state(&error) as i32,
                    message: error.to_string(),
                }
            }
        };
        response.regions.push(result);
    }
    dedupe_moving_orgs(&mut response.orgs);
    response.next_page_token = next.encode();
    Ok(response)
}

/// Around a move's switch, for a moment, the org's old region (frozen) and its new one both
/// list it: keep the entry with the newer epoch, in place of the first.
fn dedupe_moving_orgs(orgs: &mut Vec<UserOrg>) {
    let epoch = |entry: &UserOrg| entry.org.as_ref().map_or(0, |o| o.epoch);
    let id = |entry: &UserOrg| entry.org.as_ref().map(|o| o.id.clone()).unwrap_or_default();
    let mut kept: Vec<UserOrg> = Vec::with_capacity(orgs.len());
    for entry in orgs.drain(..) {
        match kept.iter_mut().find(|k| id(k) == id(&entry) && !id(&entry).is_empty()) {
            Some(existing) if epoch(&entry) > epoch(existing) => *existing = entry,
            Some(_) => {}
            None => kept.push(entry),
        }
    }
    *orgs = kept;
}

fn region_state(error: &RouterError) -> RegionState {
    match error.code() {
        Code::Unavailable | Code::ResourceExhausted => RegionState::Unavailable,
        Code::DeadlineExceeded => RegionState::DeadlineExceeded,
        _ => RegionState::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orgplane_proto::v1::{Org, UserOrg};

    const SERVED: &[Region] = &[Region::Us, Region::Eu, Region::Apac];

    fn check_decode(token: &str, expected: Result<&[(Region, &str)], &str>) {
        let got = FanoutCursor::decode(token, &SERVED[..2]).map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(cursor), Ok(want)) => {
                assert_eq!(cursor.pending, want.iter().map(|(r, t)| (*r, t.to_string())).collect(), "token {token:?}")
            }
            (Err(got), Err(want)) => assert!(got.contains(want), "token {token:?}: {got}"),
            (got, want) => panic!("token {token:?}: got {got:?}, want {want:?}"),
        }
    }

    fn raw(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        let cursor = FanoutCursor { pending: [(Region::Us, "abc".to_string()), (Region::Eu, String::new())].into() };
        check_decode(&cursor.encode(), Ok(&[(Region::Us, "abc"), (Region::Eu, "")]));
        assert_eq!(FanoutCursor::default().encode(), "");
        assert_eq!(FanoutCursor::start(SERVED.iter().copied()).pending.len(), 3);
        check_decode("!!!", Err("invalid page_token: is not a token this router issued"));
        check_decode(&raw("[1,2]"), Err("is not a token this router issued"));
        check_decode(&raw(r#"{"v":2,"pending":{"us":""}}"#), Err("another version"));
        check_decode(&raw(r#"{"v":1,"pending":{}}"#), Err("is not a token this router issued"));
        check_decode(&raw(r#"{"v":1,"pending":{"mars":""}}"#), Err("unknown region"));
        check_decode(
            &raw(r#"{"v":1,"pending":{"apac":""}}"#),
            Err("names region apac, which this router does not serve"),
        );
        check_decode(&raw(r#"{"v":1,"pending":{"us":""},"x":1}"#), Err("is not a token this router issued"));
        check_decode(&"a".repeat(FANOUT_TOKEN_MAX_BYTES + 1), Err("too long"));
    }

    fn page(ids: &[&str], next: &str) -> ListUserOrgsResponse {
        ListUserOrgsResponse {
            orgs: ids
                .iter()
                .map(|id| UserOrg { org: Some(Org { id: id.to_string(), ..Default::default() }), role: "admin".into() })
                .collect(),
            next_page_token: next.to_string(),
            regions: vec![],
        }
    }

    #[test]
    fn an_org_listed_by_two_regions_around_its_move_appears_once_at_its_newer_epoch() {
        let entry = |id: &str, region: &str, epoch: u64| UserOrg {
            org: Some(Org { id: id.into(), region: region.into(), epoch, ..Org::default() }),
            role: "admin".into(),
        };
        let mut orgs = vec![entry("a", "us", 1), entry("b", "us", 1), entry("a", "eu", 2), entry("c", "eu", 1)];
        dedupe_moving_orgs(&mut orgs);
        let seen: Vec<_> =
            orgs.iter().map(|e| e.org.as_ref().map(|o| (o.id.as_str(), o.region.as_str())).unwrap()).collect();
        assert_eq!(seen, vec![("a", "eu"), ("b", "us"), ("c", "eu")]);
    }

    #[test]
    fn merges_in_region_order_and_keeps_failed_regions_pending() {
        let cursor = FanoutCursor::start([Region::Us, Region::Eu, Region::Apac]);
        let answers = vec![
            Ok(page(&["us-1", "us-2"], "us-next")),
            Err(RouterError::DeadlineExceeded { region: Region::Eu, budget_ms: 100 }),
            Ok(page(&["apac-1"], "")),
        ];
        let merged = merge(cursor, answers).unwrap();
        let ids: Vec<_> = merged.orgs.iter().map(|o| o.org.as_ref().unwrap().id.as_str()).collect();
        assert_eq!(ids, ["us-1", "us-2", "apac-1"]);
        let states: Vec<_> = merged.regions.iter().map(|r| (r.region.as_str(), r.state())).collect();
        assert_eq!(states, [("us", RegionState::Ok), ("eu", RegionState::DeadlineExceeded), ("apac", RegionState::Ok)]);
        assert!(merged.regions[1].message.contains("region eu did not answer"));
        let next = FanoutCursor::decode(&merged.next_page_token, SERVED).unwrap();
        assert_eq!(next.pending, [(Region::Us, "us-next".to_string()), (Region::Eu, String::new())].into());
    }

    #[test]
    fn all_done_ends_the_listing_and_all_invalid_is_the_clients_mistake() {
        let cursor = FanoutCursor::start([Region::Us, Region::Eu]);
        let merged = merge(cursor.clone(), vec![Ok(page(&[], "")), Ok(page(&["eu-1"], ""))]).unwrap();
        assert_eq!(merged.next_page_token, "");

        let invalid = |region| RouterError::NodeAnswer { region, status: Status::invalid_argument("user_id is empty") };
        let err = merge(cursor.clone(), vec![Err(invalid(Region::Us)), Err(invalid(Region::Eu))]).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);

        let partly = merge(
            cursor,
            vec![
                Err(invalid(Region::Us)),
                Err(RouterError::RegionUnavailable { region: Region::Eu, reason: "down".into() }),
            ],
        )
        .unwrap();
        assert_eq!(partly.regions[0].state(), RegionState::Error);
        assert_eq!(partly.regions[1].state(), RegionState::Unavailable);
    }
}
