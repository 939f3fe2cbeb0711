//! `orgctl user orgs USER`: the orgs a user belongs to, from every region, and which regions
//! answered.

use clap::Subcommand;
use orgplane_client::{Client, ClientError, Consistency, PageRequest};

use crate::cmd::PAGE_SIZE_RANGE;
use crate::output::{Render, UserOrgList};

#[derive(Debug, PartialEq, Subcommand)]
pub enum UserCommand {
    /// The orgs a user belongs to, with the role in each. Every region is asked; a region that
    /// does not answer is reported, and the list is then partial.
    Orgs {
        /// The user id.
        user: String,
        /// Orgs per page from each region (1 to 1000; default: the server's, 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(PAGE_SIZE_RANGE))]
        page_size: Option<u32>,
        /// Continue from a previous page's next page token.
        #[arg(long, conflicts_with = "all")]
        page_token: Option<String>,
        /// Follow the pages to the end.
        #[arg(long, conflicts_with = "page_size")]
        all: bool,
    },
}

pub async fn run(client: &Client, command: UserCommand) -> Result<Box<dyn Render>, ClientError> {
    match command {
        UserCommand::Orgs { user, page_size, page_token, all } => {
            let answer = if all {
                client.list_all_user_orgs(&user, Consistency::Linearizable).await?
            } else {
                let request = PageRequest { page_size: page_size.unwrap_or(0), page_token, ..PageRequest::default() };
                client.list_user_orgs(&user, request).await?
            };
            Ok(Box::new(UserOrgList { user_id: user, answer }))
        }
    }
}
