//! `orgctl member ...`: add, set-role, remove, list.

use clap::Subcommand;
use orgplane_client::{Client, ClientError, Consistency, PageRequest, RequestId};
use orgplane_model::Role;

use crate::cmd::PAGE_SIZE_RANGE;
use crate::output::{MemberList, MemberRecord, RemovedMember, Render};

#[derive(Debug, PartialEq, Subcommand)]
pub enum MemberCommand {
    /// Add a user to an org with a role.
    Add {
        /// The org id.
        org: String,
        /// The user id, as the identity provider gives it.
        user: String,
        /// admin, developer, agent, viewer or the name of one of the org's custom roles.
        #[arg(long)]
        role: Role,
        #[arg(long)]
        request_id: Option<RequestId>,
    },
    /// Change a member's role.
    SetRole {
        org: String,
        user: String,
        /// admin, developer, agent, viewer or the name of one of the org's custom roles.
        #[arg(long)]
        role: Role,
        #[arg(long)]
        request_id: Option<RequestId>,
    },
    /// Remove a member from an org.
    Remove {
        org: String,
        user: String,
        #[arg(long)]
        request_id: Option<RequestId>,
    },
    /// List an org's members, in user-id order.
    List {
        org: String,
        /// Members per page (1 to 1000; default: the server's, 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(PAGE_SIZE_RANGE))]
        page_size: Option<u32>,
        /// Continue from a previous page's next page token.
        #[arg(long, conflicts_with = "all")]
        page_token: Option<String>,
        /// Follow the pages to the end and print every member.
        #[arg(long, conflicts_with = "page_size")]
        all: bool,
    },
}

pub async fn run(client: &Client, command: MemberCommand) -> Result<Box<dyn Render>, ClientError> {
    let request_id = |given: Option<RequestId>| given.unwrap_or_else(RequestId::generate);
    Ok(match command {
        MemberCommand::Add { org, user, role, request_id: given } => {
            let member = client.add_member_with_request_id(&org, &user, role, &request_id(given)).await?;
            Box::new(MemberRecord { member })
        }
        MemberCommand::SetRole { org, user, role, request_id: given } => {
            let member = client.set_member_role_with_request_id(&org, &user, role, &request_id(given)).await?;
            Box::new(MemberRecord { member })
        }
        MemberCommand::Remove { org, user, request_id: given } => {
            client.remove_member_with_request_id(&org, &user, &request_id(given)).await?;
            Box::new(RemovedMember { org_id: org, user_id: user })
        }
        MemberCommand::List { org, page_size, page_token, all } => {
            let page = if all {
                client.list_all_members(&org, Consistency::Linearizable).await?
            } else {
                let request = PageRequest { page_size: page_size.unwrap_or(0), page_token, ..PageRequest::default() };
                client.list_members(&org, request).await?
            };
            Box::new(MemberList { org_id: org, members: page.items, next_page_token: page.next_page_token })
        }
    })
}
