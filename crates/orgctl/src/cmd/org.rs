//! `orgctl org ...`: create, get, list, update, delete; move to another region, the move's
//! status, abort, and where the org's data lives (those four in [`crate::cmd::moves`]).

use std::time::Duration;

use clap::Subcommand;
use orgplane_client::{Client, Consistency, PageRequest, RequestId};
use orgplane_model::Region;

use crate::cmd::{moves, PAGE_SIZE_RANGE};
use crate::error::CommandError;
use crate::output::{DeletedOrg, OrgList, OrgRecord, Render};

#[derive(Debug, PartialEq, Subcommand)]
pub enum OrgCommand {
    /// Create an org in a region; the server assigns its id.
    Create {
        /// us, eu or apac.
        #[arg(long)]
        region: Region,
        /// 1 to 128 characters.
        #[arg(long)]
        name: String,
        /// Idempotency key: sending the same create again with it changes nothing more.
        /// Default: a fresh one, reused by the client's own retries.
        #[arg(long)]
        request_id: Option<RequestId>,
    },
    /// Read one org.
    Get {
        /// The org id, for example eu-01jdq3n8x2k7m4p9r5t6v8w0yz.
        id: String,
        /// Read the answering replica's own state (possibly behind) instead of a
        /// linearizable read; works while the region has no leader.
        #[arg(long)]
        local: bool,
    },
    /// List the orgs of a region, in id order.
    List {
        /// us, eu or apac.
        #[arg(long)]
        region: Region,
        /// Orgs per page (1 to 1000; default: the server's, 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(PAGE_SIZE_RANGE))]
        page_size: Option<u32>,
        /// Continue from a previous page's next page token.
        #[arg(long, conflicts_with = "all")]
        page_token: Option<String>,
        /// Follow the pages to the end and print every org.
        #[arg(long, conflicts_with = "page_size")]
        all: bool,
    },
    /// Rename an org and/or set the regions whose app exports may be imported into it.
    Update {
        id: String,
        /// The new name.
        #[arg(long, required_unless_present = "allow_import_from")]
        name: Option<String>,
        /// Allow importing apps exported from these regions (replaces the list; the org's
        /// own region is always allowed).
        #[arg(long, num_args = 1.., value_name = "REGION")]
        allow_import_from: Option<Vec<Region>>,
        /// Apply only if the org is still at this version (else ABORTED).
        #[arg(long)]
        expected_version: Option<u64>,
        #[arg(long)]
        request_id: Option<RequestId>,
    },
    /// Delete an org and all its memberships.
    Delete {
        id: String,
        /// Delete only if the org is still at this version (else ABORTED).
        #[arg(long)]
        expected_version: Option<u64>,
        #[arg(long)]
        request_id: Option<RequestId>,
    },
    /// Move an org to another region, online (platform admins); waits and reports.
    ///
    /// The org keeps its id, members, roles, resources, apps and audit log; writes to it pause
    /// for seconds at most, at the switch; afterwards the old region keeps only a forwarding
    /// record.
    ///
    /// Waits for the move to end (at most --timeout, default 300 s), showing its phases on
    /// stderr (reserved, copying, frozen, switched, cleaning_up, done), then prints the report:
    /// move id, regions, epochs, records and bytes copied, write pause, duration. Fails if the
    /// move is aborted or the wait runs out. The router drives the move: interrupting orgctl
    /// does not stop it.
    Move {
        /// The org id, for example eu-01jdq3n8x2k7m4p9r5t6v8w0yz.
        org: String,
        /// The region to move it to: us, eu or apac.
        #[arg(long = "to", value_name = "REGION")]
        to: Region,
        /// Only check that the move could start; nothing changes.
        #[arg(long, conflicts_with = "no_wait")]
        dry_run: bool,
        /// Print the move as started and return at once; follow it with `org move-status`.
        #[arg(long)]
        no_wait: bool,
    },
    /// The org's latest move (in progress or ended), and the region and epoch it lives at.
    MoveStatus { org: String },
    /// Roll back the org's move in progress (refused once it has switched: it then only
    /// completes).
    MoveAbort {
        org: String,
        /// Why, recorded with the move.
        #[arg(long, default_value = "aborted by an operator with orgctl")]
        reason: String,
    },
    /// Where the org's data lives, as every node of every region reports it.
    ///
    /// Per node: the org's state records, a forwarding record (region@epoch), a move record,
    /// log entries, whether its snapshot holds the org, files naming it (path:count), backups
    /// kept, or why the node did not answer.
    Residency { org: String },
}

/// Runs an `org` command. `wait` is the global `--timeout`: for `org move`, how long to wait
/// for the move to end.
pub async fn run(
    client: &Client,
    command: OrgCommand,
    wait: Option<Duration>,
) -> Result<Box<dyn Render>, CommandError> {
    let request_id = |given: Option<RequestId>| given.unwrap_or_else(RequestId::generate);
    Ok(match command {
        OrgCommand::Create { region, name, request_id: given } => {
            let org = client.create_org_with_request_id(region, &name, &request_id(given)).await?;
            Box::new(OrgRecord { org, read: None })
        }
        OrgCommand::Get { id, local } => {
            let consistency = if local { Consistency::Local } else { Consistency::Linearizable };
            let read = client.get_org(&id, consistency).await?;
            Box::new(OrgRecord { org: read.org, read: read.read })
        }
        OrgCommand::List { region, page_size, page_token, all } => {
            let page = if all {
                client.list_all_orgs(region, Consistency::Linearizable).await?
            } else {
                let request = PageRequest { page_size: page_size.unwrap_or(0), page_token, ..PageRequest::default() };
                client.list_orgs(region, request).await?
            };
            Box::new(OrgList { region, orgs: page.items, next_page_token: page.next_page_token })
        }
        OrgCommand::Update { id, name, allow_import_from, expected_version, request_id: given } => {
            let request_id = request_id(given);
            let org = match (name, allow_import_from) {
                (Some(name), None) => {
                    client.update_org_with_request_id(&id, &name, expected_version, &request_id).await?
                }
                (name, regions) => {
                    let regions = regions.unwrap_or_default();
                    client
                        .update_org_with_import_regions(&id, name.as_deref(), &regions, expected_version, &request_id)
                        .await?
                }
            };
            Box::new(OrgRecord { org, read: None })
        }
        OrgCommand::Delete { id, expected_version, request_id: given } => {
            let removed_members = client.delete_org_with_request_id(&id, expected_version, &request_id(given)).await?;
            Box::new(DeletedOrg { org_id: id, removed_members })
        }
        OrgCommand::Move { org, to, dry_run, no_wait } => {
            moves::start_move(client, &org, to, dry_run, no_wait, wait).await?
        }
        OrgCommand::MoveStatus { org } => moves::status(client, &org).await?,
        OrgCommand::MoveAbort { org, reason } => moves::abort(client, &org, &reason).await?,
        OrgCommand::Residency { org } => moves::residency(client, &org).await?,
    })
}
