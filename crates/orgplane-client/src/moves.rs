//! The typed methods of `MoveService` that a router serves: moving an org to another region
//! ([`Client::move_org`]), following it ([`Client::move_status`]), rolling it back
//! ([`Client::abort_move`]), and asking every node where the org's data is
//! ([`Client::residency`]). The service's other calls are between the router and the nodes.
//!
//! Reads are retried freely. `MoveOrg` carries no request id, so it is never sent again
//! blindly: after a failure that may have reached the router, the client asks
//! `GetMoveStatus` whether a move to the same region started since the call began, and
//! returns that move; only when none did is the call sent again. When the check itself fails,
//! the error says that the move may have started ([`ClientError::MoveOutcomeUnknown`]).

use orgplane_model::relocation::MovePhase;
use orgplane_model::Region;
use orgplane_proto::v1;
use tokio::time::Instant;
use tonic::Code;

use crate::client::{required, Client};
use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::retry::{backoff_delay, call_with_retries, random_unit, CallKind};
use crate::types::{MoveStatus, OrgRef};

impl Client {
    /// Starts moving `org` to `to_region` and returns the move as the target region recorded
    /// it (phase `reserved`); the move goes on in the background: follow it with
    /// [`Client::move_status`]. With `dry_run`, only checks that the move could start, changes
    /// nothing, and returns the move as it would start (with an empty move id).
    ///
    /// Refused with INVALID_ARGUMENT for the org's own region, FAILED_PRECONDITION while
    /// another move of the org is in progress. A failure that may have reached the router is
    /// settled with `GetMoveStatus` before anything is sent again (see the module's doc).
    #[tracing::instrument(name = "client.move_org", skip_all, fields(to_region = %to_region, dry_run))]
    pub async fn move_org(
        &self,
        org: impl OrgRef,
        to_region: Region,
        dry_run: bool,
    ) -> Result<v1::OrgMove, ClientError> {
        let org_id = org.org_id_text();
        let message = v1::MoveOrgRequest { org_id: org_id.clone(), to_region: to_region.to_string(), dry_run };
        if dry_run {
            // A dry run changes nothing: retried like any read.
            let response =
                self.read_on(&self.moves, "move_org", message, |mut c, r| async move { c.move_org(r).await }).await?;
            return required("move_org", "move", response.r#move);
        }
        let earlier_move = self.latest_move_id(&org_id).await?;
        let deadline = Instant::now() + self.options.total_timeout;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let failure = match self.move_org_once(&message, deadline).await {
                Ok(started) => return Ok(started),
                Err(failure) => failure,
            };
            let may_have_started = may_have_reached_the_server(&failure);
            // A FAILED_PRECONDITION after an earlier attempt may be the router refusing this
            // call because the earlier attempt's move is in progress.
            let earlier_attempt_may_run = attempt > 1 && failure.code() == Code::FailedPrecondition;
            if !may_have_started && !earlier_attempt_may_run {
                return Err(failure);
            }
            match self.move_started_since(&org_id, earlier_move.as_deref(), to_region).await {
                Ok(Some(started)) => {
                    tracing::debug!(
                        attempt,
                        move_id = started.move_id,
                        "the move started although its answer was lost"
                    );
                    return Ok(started);
                }
                Ok(None) => {}
                Err(check) => {
                    return Err(ClientError::MoveOutcomeUnknown {
                        org_id,
                        to_region: to_region.to_string(),
                        failure: Box::new(failure),
                        check: Box::new(check),
                    })
                }
            }
            // No move started: sending the call again cannot start a second one.
            if !may_have_started || attempt > self.options.max_retries {
                return Err(failure);
            }
            let delay = backoff_delay(attempt, self.options.backoff_base, self.options.backoff_max, random_unit());
            if Instant::now() + delay >= deadline {
                return Err(failure);
            }
            tracing::debug!(attempt, code = failure.code_name(), "no move started; sending MoveOrg again");
            tokio::time::sleep(delay).await;
        }
    }

    /// The org's latest move, as its target region records it, and where the org is served
    /// now. NOT_FOUND when the org never moved (or does not exist).
    pub async fn move_status(&self, org: impl OrgRef) -> Result<MoveStatus, ClientError> {
        let message = v1::GetMoveStatusRequest { org_id: org.org_id_text() };
        let response = self
            .read_on(&self.moves, "get_move_status", message, |mut c, r| async move { c.get_move_status(r).await })
            .await?;
        Ok(MoveStatus {
            org_move: required("get_move_status", "move", response.r#move)?,
            home_region: response.home_region,
            epoch: response.epoch,
        })
    }

    /// Rolls back the org's move in progress; `reason` is recorded with it. Refused with
    /// FAILED_PRECONDITION once the move has switched (it can then only complete).
    ///
    /// Sent again after UNAVAILABLE like a read: aborting twice ends the same way. When a
    /// repeated attempt is refused because the move has ended, and the latest move is aborted,
    /// the earlier attempt did it: that move is returned.
    pub async fn abort_move(&self, org: impl OrgRef, reason: &str) -> Result<v1::OrgMove, ClientError> {
        let org_id = org.org_id_text();
        let message = v1::AbortMoveRequest { org_id: org_id.clone(), reason: reason.to_string() };
        let failure = match self
            .read_on(&self.moves, "abort_move", message, |mut c, r| async move { c.abort_move(r).await })
            .await
        {
            Ok(response) => return required("abort_move", "move", response.r#move),
            Err(failure) => failure,
        };
        let refused_after_a_lost_answer = matches!(
            &failure,
            ClientError::Status { attempts, status, .. } if *attempts > 1 && status.code() == Code::FailedPrecondition
        );
        if refused_after_a_lost_answer {
            if let Ok(latest) = self.move_status(&org_id).await {
                if latest.org_move.phase == MovePhase::Aborted.as_str() {
                    return Ok(latest.org_move);
                }
            }
        }
        Err(failure)
    }

    /// What every node of every region holds of the org (state records, forwarding, move
    /// record, log entries, snapshot, files), each checked by the node itself; a node that did
    /// not answer says why in its `error`.
    pub async fn residency(&self, org: impl OrgRef) -> Result<v1::GetResidencyResponse, ClientError> {
        let message = v1::GetResidencyRequest { org_id: org.org_id_text() };
        self.read_on(&self.moves, "get_residency", message, |mut c, r| async move { c.get_residency(r).await }).await
    }

    /// One attempt of `MoveOrg`, bounded by the per-attempt timeout and by `deadline`.
    async fn move_org_once(&self, message: &v1::MoveOrgRequest, deadline: Instant) -> Result<v1::OrgMove, ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::status("move_org", 1, tonic::Status::deadline_exceeded("no time left"), false));
        }
        let once = ClientOptions { max_retries: 0, total_timeout: left, ..(*self.options).clone() };
        let response =
            call_with_retries(&once, &self.endpoint, "move_org", CallKind::Write, None, message.clone(), |r| {
                let mut moves = self.moves.clone();
                async move { moves.move_org(r).await }
            })
            .await?;
        required("move_org", "move", response.r#move)
    }

    /// The id of the org's latest move; `None` when it never moved.
    async fn latest_move_id(&self, org_id: &str) -> Result<Option<String>, ClientError> {
        match self.move_status(org_id).await {
            Ok(status) => Ok(Some(status.org_move.move_id)),
            Err(err) if err.code() == Code::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The org's latest move when it is not `earlier_move` and goes to `to_region`: a move
    /// that started since `earlier_move` was read, as a `MoveOrg` to `to_region` would start it.
    async fn move_started_since(
        &self,
        org_id: &str,
        earlier_move: Option<&str>,
        to_region: Region,
    ) -> Result<Option<v1::OrgMove>, ClientError> {
        let latest = match self.move_status(org_id).await {
            Ok(status) => status.org_move,
            Err(err) if err.code() == Code::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let is_new = earlier_move != Some(latest.move_id.as_str());
        Ok((is_new && latest.target_region == to_region.as_str()).then_some(latest))
    }
}

/// True when a failed call may have reached the server and been acted on: the failures a
/// write with a request id would be sent again after (see [`crate::retry`]).
fn may_have_reached_the_server(failure: &ClientError) -> bool {
    match failure {
        ClientError::Status { status, from_transport, .. } => {
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted)
                || (*from_transport && matches!(status.code(), Code::Unknown | Code::Cancelled | Code::Internal))
        }
        _ => false,
    }
}
