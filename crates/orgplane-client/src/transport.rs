//! The connection: endpoint parsing, the lazily connecting channel, and the interceptor that
//! adds the bearer token to every call.

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::error::ClientError;
use crate::options::ClientOptions;

/// The service stack under the generated clients: a tonic channel, and the interceptor that
/// adds credentials. The raw clients of [`crate::Client::org_service`] run over it.
pub type Transport = InterceptedService<Channel, Credentials>;

/// Turns `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT` into the URI tonic wants.
/// A bare `HOST:PORT` is plaintext.
pub fn endpoint_uri(endpoint: &str) -> Result<String, ClientError> {
    let invalid =
        |reason: &str| ClientError::InvalidEndpoint { endpoint: endpoint.to_string(), reason: reason.to_string() };
    let text = endpoint.trim();
    if text.is_empty() {
        return Err(invalid("is empty"));
    }
    let uri = if let Some(rest) = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://")) {
        if rest.is_empty() {
            return Err(invalid("has no host"));
        }
        text.to_string()
    } else if text.contains("://") {
        return Err(invalid("the only schemes supported are http and https"));
    } else {
        format!("http://{text}")
    };
    let parsed: tonic::codegen::http::Uri = uri.parse().map_err(|_| invalid("is not HOST:PORT"))?;
    if parsed.host().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if parsed.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
        return Err(invalid("must not have a path"));
    }
    Ok(uri)
}

/// Builds the channel. It connects on the first call, not here, and reconnects by itself.
/// Needs a Tokio runtime (tonic spawns the channel's worker task).
pub(crate) fn lazy_channel(endpoint: &str, options: &ClientOptions) -> Result<Channel, ClientError> {
    let mut uri = endpoint_uri(endpoint)?;
    let invalid = |e: tonic::transport::Error| ClientError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    };
    if options.tls.is_some() && !endpoint.trim().contains("://") {
        uri = uri.replacen("http://", "https://", 1);
    }
    if options.tls.is_some() && uri.starts_with("http://") {
        return Err(ClientError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: "TLS options are set but the endpoint says http://; use https:// or HOST:PORT".to_string(),
        });
    }
    let tls = uri.starts_with("https://");
    let mut endpoint = Endpoint::from_shared(uri).map_err(invalid)?;
    if tls {
        endpoint = endpoint.tls_config(tls_config(options.tls.as_ref())).map_err(invalid)?;
    }
    Ok(endpoint
        // A dead host fails the attempt quickly instead of using up the request timeout.
        .connect_timeout(options.connect_timeout)
        // Small request/response calls: do not let Nagle delay them.
        .tcp_nodelay(true)
        // Notice a silently dead connection (a crashed router) between calls.
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_timeout(std::time::Duration::from_secs(10))
        .connect_lazy())
}

/// The server is verified against the configured CA (else the system's roots) and the
/// endpoint's host name; a client certificate is shown when configured.
fn tls_config(options: Option<&crate::options::TlsOptions>) -> ClientTlsConfig {
    let mut config = ClientTlsConfig::new();
    match options.and_then(|tls| tls.ca_pem.as_ref()) {
        Some(ca) => config = config.ca_certificate(Certificate::from_pem(ca)),
        None => config = config.with_native_roots(),
    }
    if let Some((cert, key)) = options.and_then(|tls| tls.identity_pem.as_ref()) {
        config = config.identity(Identity::from_pem(cert, key));
    }
    config
}

/// Adds `authorization: Bearer <token>` to every call when a token is configured.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    authorization: Option<AsciiMetadataValue>,
}

impl Credentials {
    /// Checks the token once, here, so a bad token fails when the client is built rather than
    /// on every call.
    pub fn new(bearer_token: Option<&str>) -> Result<Credentials, ClientError> {
        let Some(token) = bearer_token else { return Ok(Credentials::default()) };
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::InvalidToken {
                reason: "must be non-empty visible ASCII without spaces".to_string(),
            });
        }
        let mut value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| ClientError::InvalidToken { reason: e.to_string() })?;
        // Keeps the token out of HPACK's dynamic table and out of debug output of the headers.
        value.set_sensitive(true);
        Ok(Credentials { authorization: Some(value) })
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = endpoint_uri(input);
        match (got, expected) {
            (Ok(uri), Ok(want)) => assert_eq!(uri, want, "input {input:?}"),
            (Err(err), Err(want)) => assert!(err.to_string().contains(want), "input {input:?}: {err}"),
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_endpoints() {
        check("127.0.0.1:50051", Ok("http://127.0.0.1:50051"));
        check("localhost:50051", Ok("http://localhost:50051"));
        check(" router.internal:443 ", Ok("http://router.internal:443"));
        check("http://10.0.0.1:50051", Ok("http://10.0.0.1:50051"));
        check("[::1]:50051", Ok("http://[::1]:50051"));
        check("", Err("is empty"));
        check("http://", Err("has no host"));
        check("https://router:443", Ok("https://router:443"));
        check("https://", Err("has no host"));
        check("grpc://router:1", Err("only schemes"));
        check("router:1/path", Err("must not have a path"));
        check("a b:1", Err("is not HOST:PORT"));
    }

    /// An https endpoint speaks TLS: the first byte the server sees is a TLS handshake record
    /// (0x16), where a plaintext HTTP/2 client would send its preface ("PRI ...").
    #[tokio::test]
    async fn https_endpoints_speak_tls() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let first_byte = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.read_u8().await.unwrap()
        });
        let options = ClientOptions { max_retries: 0, ..ClientOptions::default() };
        let client = crate::Client::with_options(&format!("https://localhost:{}", addr.port()), options).unwrap();
        let call = tokio::time::timeout(std::time::Duration::from_secs(10), client.topology());
        let (_, byte) = tokio::join!(call, first_byte);
        assert_eq!(byte.unwrap(), 0x16, "a TLS ClientHello");
    }

    #[test]
    fn refuses_tokens_that_cannot_be_metadata() {
        assert!(Credentials::new(None).is_ok());
        assert!(Credentials::new(Some("abc.def-123")).is_ok());
        assert!(Credentials::new(Some("")).is_err());
        assert!(Credentials::new(Some("has space")).is_err());
        assert!(Credentials::new(Some("line\nbreak")).is_err());
    }
}
