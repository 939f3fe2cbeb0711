//! [`GrpcTransport`]: the Raft layer's [`PeerTransport`] over the peer-only gRPC service, with
//! one lazily connected channel per peer address, kept for the node's life. With mutual TLS
//! configured, peers are dialled over TLS, verified against the deployment's CA and the host
//! name in their address, and shown this node's certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orgplane_model::Region;
use orgplane_proto::raft_v1::raft_service_client::RaftServiceClient;
use orgplane_proto::raft_v1::{PeerHeader, PeerRequest};
use orgplane_raft::transport::BoxFuture;
use orgplane_raft::{NodeId, PeerRpc, PeerTransport, TransportError};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

/// How long connecting to a peer may take before the call counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

pub struct GrpcTransport {
    region: Region,
    from: NodeId,
    max_message_bytes: usize,
    /// Some: peers are dialled with mutual TLS.
    tls: Option<ClientTlsConfig>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcTransport {
    pub fn new(
        region: Region,
        from: NodeId,
        max_message_bytes: usize,
        tls: Option<ClientTlsConfig>,
    ) -> Arc<GrpcTransport> {
        Arc::new(GrpcTransport { region, from, max_message_bytes, tls, channels: Mutex::new(HashMap::new()) })
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let bad = |e: tonic::transport::Error| format!("bad peer address {addr:?}: {e}");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(bad)?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(bad)?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let ch = endpoint.connect_lazy();
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}

impl PeerTransport for GrpcTransport {
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        rpc: PeerRpc,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let channel = self.channel(addr);
        let header = PeerHeader { region: self.region.to_string(), target_node_id: target, from_node_id: self.from };
        let max = self.max_message_bytes;
        let addr = addr.to_string();
        Box::pin(async move {
            let channel =
                channel.map_err(|reason| TransportError::Unreachable { target, addr: addr.clone(), reason })?;
            let mut client =
                RaftServiceClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max);
            let mut request = tonic::Request::new(PeerRequest { header: Some(header), payload });
            request.set_timeout(timeout);
            let call = async {
                match rpc {
                    PeerRpc::AppendEntries => client.append_entries(request).await,
                    PeerRpc::Vote => client.vote(request).await,
                    PeerRpc::InstallSnapshot => client.install_snapshot(request).await,
                    PeerRpc::Forward => client.forward(request).await,
                    PeerRpc::ReadIndex => client.read_index(request).await,
                }
            };
            // The grpc-timeout header asks the server to stop; this bounds our own wait too.
            let reply = match tokio::time::timeout(timeout, call).await {
                Err(_) => return Err(TransportError::Timeout { target, rpc: rpc.as_str(), timeout }),
                Ok(reply) => reply,
            };
            match reply {
                Ok(resp) => Ok(resp.into_inner().payload),
                Err(status) => Err(match status.code() {
                    Code::Unavailable => {
                        TransportError::Unreachable { target, addr, reason: status.message().to_string() }
                    }
                    Code::DeadlineExceeded | Code::Cancelled => {
                        TransportError::Timeout { target, rpc: rpc.as_str(), timeout }
                    }
                    _ => TransportError::Refused {
                        target,
                        rpc: rpc.as_str(),
                        reason: format!("{:?}: {}", status.code(), status.message()),
                    },
                }),
            }
        })
    }
}
