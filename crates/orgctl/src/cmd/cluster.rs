//! `orgctl cluster ...`: status and topology.

use clap::Subcommand;
use orgplane_client::{Client, ClientError};

use crate::output::{ClusterStatus, Render, Topology};

#[derive(Debug, PartialEq, Subcommand)]
pub enum ClusterCommand {
    /// Every node of every region: role, leader, term, log and applied index, health.
    Status,
    /// The regions and their node endpoints.
    Topology,
}

pub async fn run(client: &Client, command: ClusterCommand) -> Result<Box<dyn Render>, ClientError> {
    Ok(match command {
        ClusterCommand::Status => Box::new(ClusterStatus { regions: client.cluster_status().await? }),
        ClusterCommand::Topology => Box::new(Topology { regions: client.topology().await? }),
    })
}
