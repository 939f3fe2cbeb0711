//! `orgplane health`: one `grpc.health.v1.Health/Check` call, for container health checks and
//! probes (the image has no shell and no grpcurl). Exit status 0 means SERVING; anything else,
//! an unreachable address or a timeout included, is 1, with one line saying why.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::cli::HealthArgs;

/// Why a health check got no status.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read the CA file {path}: {source}")]
    ReadCa { path: String, source: std::io::Error },
    #[error("{addr} is not a HOST:PORT address: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{addr} has no health status for service {service:?} ({code:?}: {message})")]
    Call { addr: String, service: String, code: tonic::Code, message: String },
    #[error("{addr} did not answer within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
}

/// Asks `addr` for the health of `service` (`""`: the server as a whole), giving up after
/// `timeout` in all, connecting included. With `tls_ca`, over TLS trusting that CA only.
pub async fn check(
    addr: &str,
    service: &str,
    timeout: Duration,
    tls_ca: Option<&Path>,
) -> Result<ServingStatus, ProbeError> {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let bad_address =
        |e: tonic::transport::Error| ProbeError::BadAddress { addr: addr.to_string(), reason: e.to_string() };
    let scheme = if tls_ca.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(bad_address)?;
    if let Some(path) = tls_ca {
        let ca =
            std::fs::read(path).map_err(|source| ProbeError::ReadCa { path: path.display().to_string(), source })?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .map_err(bad_address)?;
    }
    let endpoint = endpoint.connect_timeout(timeout).timeout(timeout);
    let call = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ProbeError::Connect { addr: addr.to_string(), reason: error_chain(&e) })?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest { service: service.to_string() })
            .await
            .map_err(|status| ProbeError::Call {
                addr: addr.to_string(),
                service: service.to_string(),
                code: status.code(),
                message: status.message().to_string(),
            })?;
        Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(ProbeError::Timeout { addr: addr.to_string(), timeout_ms }))
}

/// Runs `orgplane health` on a small runtime of its own: prints the status (or why there is
/// none) and returns the exit code.
pub fn run(args: &HealthArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("orgplane health: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(check(
        &args.addr,
        &args.service,
        Duration::from_millis(args.timeout_ms),
        args.tls_ca_file.as_deref(),
    ));
    match result {
        Ok(ServingStatus::Serving) => {
            println!("SERVING");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{}", status.as_str_name());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("orgplane health: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A transport error with its causes, which hold the useful part ("connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    let mut last = text.clone();
    while let Some(cause) = source {
        // hyper and tonic repeat some messages at two levels; say each once.
        let cause_text = cause.to_string();
        if cause_text != last {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        last = cause_text;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn reports_serving_not_serving_and_unknown_services() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        reporter.set_service_status("orgplane.v1.OrgService", tonic_health::ServingStatus::NotServing).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server =
            tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ));

        assert_eq!(check(&addr, "", TIMEOUT, None).await.unwrap(), ServingStatus::Serving);
        assert_eq!(check(&addr, "orgplane.v1.OrgService", TIMEOUT, None).await.unwrap(), ServingStatus::NotServing);
        let unknown = check(&addr, "no.such.Service", TIMEOUT, None).await.unwrap_err();
        assert!(matches!(unknown, ProbeError::Call { code: tonic::Code::NotFound, .. }), "{unknown}");

        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn fails_on_a_closed_port_and_a_bad_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let closed = check(&addr, "", TIMEOUT, None).await.unwrap_err();
        assert!(matches!(closed, ProbeError::Connect { .. }), "{closed}");
        let bad = check("not an address", "", TIMEOUT, None).await.unwrap_err();
        assert!(matches!(bad, ProbeError::BadAddress { .. }), "{bad}");
    }

    #[tokio::test]
    async fn times_out_on_a_server_that_never_answers() {
        // Accepts TCP connections but never speaks HTTP/2.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let err = check(&addr, "", Duration::from_millis(300), None).await.unwrap_err();
        assert!(matches!(err, ProbeError::Timeout { timeout_ms: 300, .. } | ProbeError::Call { .. }), "{err}");
        drop(listener);
    }
}
