//! `orgctl cluster ...`: status, topology, and a region's membership (add, remove, list nodes).

use clap::Subcommand;
use orgplane_client::{Client, ClientError};
use orgplane_model::Region;

use crate::output::{ClusterStatus, MembershipView, Render, Topology};

#[derive(Debug, PartialEq, Subcommand)]
pub enum ClusterCommand {
    /// Every node of every region: role, leader, term, log and applied index, health.
    Status,
    /// The regions and their node endpoints.
    Topology,
    /// Add a node to a region: it joins as a learner (start it with `orgplane node --join`),
    /// catches up, and is promoted to voter.
    AddNode {
        #[arg(long)]
        region: Region,
        #[arg(long)]
        node_id: u64,
        /// HOST:PORT the region's nodes reach the new node at.
        #[arg(long)]
        addr: String,
    },
    /// Remove a node from a region; refused when the rest could not keep a quorum.
    RemoveNode {
        #[arg(long)]
        region: Region,
        #[arg(long)]
        node_id: u64,
    },
    /// A region's voters and learners.
    Members {
        #[arg(long)]
        region: Region,
    },
}

pub async fn run(client: &Client, command: ClusterCommand) -> Result<Box<dyn Render>, ClientError> {
    Ok(match command {
        ClusterCommand::Status => Box::new(ClusterStatus { regions: client.cluster_status().await? }),
        ClusterCommand::Topology => Box::new(Topology { regions: client.topology().await? }),
        ClusterCommand::AddNode { region, node_id, addr } => {
            Box::new(MembershipView(client.add_node(region, node_id, &addr).await?))
        }
        ClusterCommand::RemoveNode { region, node_id } => {
            Box::new(MembershipView(client.remove_node(region, node_id).await?))
        }
        ClusterCommand::Members { region } => Box::new(MembershipView(client.membership(region).await?)),
    })
}
