//! `orgctl org move|move-status|move-abort|residency`: moving an org to another region online,
//! following the move, rolling it back, and where the org's data lives.
//!
//! `org move` starts the move, then (unless `--no-wait`) reads its status every
//! [`POLL_INTERVAL`] until it is done or aborted, for at most `--timeout` (default
//! [`DEFAULT_MOVE_WAIT`]). The phases show on stderr: a spinner line on a terminal, otherwise
//! one line per phase change. The router drives the move: stopping orgctl does not stop it.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use orgplane_client::{v1, Client, Consistency};
use orgplane_model::relocation::MovePhase;
use orgplane_model::Region;
use tokio::time::Instant;

use crate::error::CommandError;
use crate::output::{MoveReport, MoveStatusView, Render, ResidencyReport};

/// How often `org move` reads the move's status while it waits.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long `org move` waits for the move to end when `--timeout` is not given.
pub const DEFAULT_MOVE_WAIT: Duration = Duration::from_secs(300);

/// `org move ORG --to REGION [--dry-run] [--no-wait]`: starts the move and, unless told not
/// to, waits for it to end; an aborted move or a wait that runs out is an error.
pub async fn start_move(
    client: &Client,
    org: &str,
    to: Region,
    dry_run: bool,
    no_wait: bool,
    wait: Option<Duration>,
) -> Result<Box<dyn Render>, CommandError> {
    let started = client.move_org(org, to, dry_run).await?;
    if dry_run || no_wait {
        return Ok(Box::new(MoveReport { org_move: started, dry_run, started_only: !dry_run }));
    }
    let mut progress = MoveProgress::start(&started);
    let ended = wait_for_end(client, started, wait.unwrap_or(DEFAULT_MOVE_WAIT), &mut progress).await;
    progress.finish();
    let ended = ended?;
    if ended.phase == MovePhase::Aborted.as_str() {
        return Err(CommandError::MoveAborted { org_move: Box::new(ended) });
    }
    Ok(Box::new(MoveReport { org_move: ended, dry_run: false, started_only: false }))
}

/// `org move-status ORG`: the latest move and where the org lives. For an org that never
/// moved (the router's NOT_FOUND), where it lives comes from the org itself.
pub async fn status(client: &Client, org: &str) -> Result<Box<dyn Render>, CommandError> {
    match client.move_status(org).await {
        Ok(status) => Ok(Box::new(MoveStatusView {
            org_id: org.to_string(),
            home_region: status.home_region,
            epoch: status.epoch,
            org_move: Some(status.org_move),
        })),
        Err(err) if err.code_name() == "NOT_FOUND" => {
            // NOT_FOUND also for an org that does not exist: reading it says which.
            let read = client.get_org(org, Consistency::Linearizable).await?;
            Ok(Box::new(MoveStatusView {
                org_id: read.org.id,
                home_region: read.org.region,
                epoch: read.org.epoch,
                org_move: None,
            }))
        }
        Err(err) => Err(err.into()),
    }
}

/// `org move-abort ORG [--reason TEXT]`.
pub async fn abort(client: &Client, org: &str, reason: &str) -> Result<Box<dyn Render>, CommandError> {
    let aborted = client.abort_move(org, reason).await?;
    Ok(Box::new(MoveReport { org_move: aborted, dry_run: false, started_only: false }))
}

/// `org residency ORG`.
pub async fn residency(client: &Client, org: &str) -> Result<Box<dyn Render>, CommandError> {
    Ok(Box::new(ResidencyReport(client.residency(org).await?)))
}

/// Reads the move's status until it is done or aborted, for at most `wait`. A status read
/// that fails in a way worth retrying (its own retries ran out) is noted and read again.
async fn wait_for_end(
    client: &Client,
    started: v1::OrgMove,
    wait: Duration,
    progress: &mut MoveProgress,
) -> Result<v1::OrgMove, CommandError> {
    let deadline = Instant::now() + wait;
    let mut latest = started;
    loop {
        if is_over(&latest) {
            return Ok(latest);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CommandError::MoveWaitTimedOut { org_move: Box::new(latest), waited: wait });
        }
        tokio::time::sleep(POLL_INTERVAL.min(left)).await;
        let Ok(read) = tokio::time::timeout(left, client.move_status(&latest.org_id)).await else {
            continue;
        };
        match read {
            Ok(status) if status.org_move.move_id != latest.move_id => {
                return Err(CommandError::MoveReplaced {
                    org_move: Box::new(latest),
                    newer: Box::new(status.org_move),
                });
            }
            Ok(status) => {
                latest = status.org_move;
                progress.show(&latest);
            }
            Err(err) if err.is_retryable() => progress.note(&format!(
                "the move's status did not answer ({}: {}); still waiting",
                err.code_name(),
                err.message()
            )),
            Err(err) => return Err(err.into()),
        }
    }
}

/// Done or aborted.
fn is_over(m: &v1::OrgMove) -> bool {
    m.phase == MovePhase::Done.as_str() || m.phase == MovePhase::Aborted.as_str()
}

/// The line that announces a phase on a stderr that is not a terminal.
pub(crate) fn phase_line(m: &v1::OrgMove) -> String {
    format!("move {} of org {} ({} → {}): {}", m.move_id, m.org_id, m.source_region, m.target_region, m.phase)
}

/// Shows the phases of a move while orgctl waits for it, on stderr: a spinner with the phase
/// and the time waited on a terminal, otherwise one line per phase change.
struct MoveProgress {
    spinner: Option<ProgressBar>,
    shown_phase: String,
    title: String,
    since: Instant,
}

impl MoveProgress {
    fn start(m: &v1::OrgMove) -> MoveProgress {
        let title = format!("moving org {} {} → {}", m.org_id, m.source_region, m.target_region);
        let spinner = std::io::stderr().is_terminal().then(|| {
            let spinner = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                spinner.set_style(style);
            }
            spinner.enable_steady_tick(Duration::from_millis(100));
            spinner
        });
        let mut progress = MoveProgress { spinner, shown_phase: String::new(), title, since: Instant::now() };
        progress.show(m);
        progress
    }

    fn show(&mut self, m: &v1::OrgMove) {
        match &self.spinner {
            Some(spinner) => spinner.set_message(format!(
                "{}: {} ({:.1} s)",
                self.title,
                m.phase,
                self.since.elapsed().as_secs_f64()
            )),
            None if m.phase != self.shown_phase => eprintln!("{}", phase_line(m)),
            None => {}
        }
        self.shown_phase.clone_from(&m.phase);
    }

    fn note(&self, text: &str) {
        match &self.spinner {
            Some(spinner) => spinner.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(self) {
        if let Some(spinner) = self.spinner {
            spinner.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_line_names_the_move_its_org_regions_and_phase() {
        let m = v1::OrgMove {
            move_id: "mv-7".into(),
            org_id: "eu-1".into(),
            source_region: "eu".into(),
            target_region: "us".into(),
            phase: "frozen".into(),
            ..Default::default()
        };
        assert_eq!(phase_line(&m), "move mv-7 of org eu-1 (eu → us): frozen");
        assert!(!is_over(&m));
        assert!(is_over(&v1::OrgMove { phase: "aborted".into(), ..m.clone() }));
        assert!(is_over(&v1::OrgMove { phase: "done".into(), ..m }));
    }
}
