//! The process-wide tracing subscriber, installed once by the binary: log lines on stderr
//! (text or JSON, filtered by `RUST_LOG`), and, when an OTLP endpoint is configured, an
//! OpenTelemetry layer that exports orgplane's spans over OTLP/gRPC. Libraries never install
//! one.

use std::str::FromStr;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What is logged when `RUST_LOG` is not set. openraft logs routine election races at WARN
/// ("message will be ignored because vote changed"); its errors still show.
pub const DEFAULT_FILTER: &str = "info,openraft=error,sled=warn,h2=warn,tower=warn,hyper=warn";

/// The standard OpenTelemetry variables for the collector, honoured when orgplane's own
/// `otlp-endpoint` is empty (the traces-only one first, as the spec orders them).
pub const OTEL_ENDPOINT_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// How long shutting down waits for the last spans to reach the collector.
const EXPORT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the fields of every enclosing span (`spans`), so lines
    /// can be joined by `trace_id`, `region`, `node`, `org` or `request_id`.
    Json,
}

impl LogFormat {
    /// The names accepted on the command line, in the order `--help` lists them.
    pub const NAMES: [&'static str; 2] = ["text", "json"];
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<LogFormat, String> {
        match name {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: expected text or json")),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// What [`init`] needs to know about the process.
#[derive(Debug, Clone)]
pub struct TracingSettings {
    pub log_format: LogFormat,
    /// The exported spans' `service.name` (`orgplane-node`, `orgplane-router`, `orgplane-dev`);
    /// `OTEL_SERVICE_NAME` overrides it.
    pub service_name: &'static str,
    /// The exported spans' `service.instance.id` (a node's `eu-1`), when there is one.
    pub instance: Option<String>,
    /// The configured OTLP/gRPC collector (`http://host:4317`); empty: the standard
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT` variables, and if those are unset too, no export.
    pub otlp_endpoint: String,
}

/// The subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    BadOtlpEndpoint { endpoint: String, reason: String },
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    Exporter { endpoint: String, source: opentelemetry_otlp::ExporterBuildError },
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the exporter alive; [`TracingGuard::shutdown`] (or dropping it) sends the spans still
/// buffered. Hold it until the process is done serving, inside the Tokio runtime.
#[derive(Debug)]
#[must_use = "dropping the guard stops the span export"]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Whether spans are exported (an OTLP endpoint was configured).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered and stops the exporter (waits at most a few seconds).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown_with_timeout(EXPORT_SHUTDOWN_TIMEOUT) {
                tracing::warn!(%error, "the span exporter did not shut down cleanly");
            }
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The collector to export to: `configured` if set, else the standard OpenTelemetry variables.
/// `None`: export is off.
pub fn resolve_otlp_endpoint(configured: &str) -> Option<String> {
    let configured = configured.trim();
    if !configured.is_empty() {
        return Some(configured.to_string());
    }
    OTEL_ENDPOINT_VARIABLES
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_string())
        .find(|value| !value.is_empty())
}

/// Checks an `otlp-endpoint` setting: empty (off), or an `http://` or `https://` URL with a
/// host, such as `http://otel-collector:4317`. Config validation calls it, so a typo fails at
/// start, not at the first export.
pub fn check_otlp_endpoint(endpoint: &str) -> Result<(), String> {
    let endpoint = endpoint.trim();
    if endpoint.is_empty() {
        return Ok(());
    }
    let uri: tonic::codegen::http::Uri = endpoint.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("must start with http:// or https://".to_string()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".to_string());
    }
    Ok(())
}

/// Installs the global subscriber: log lines on stderr (colored only on a terminal), filtered
/// by `RUST_LOG` (default [`DEFAULT_FILTER`]); with an OTLP endpoint (see
/// [`resolve_otlp_endpoint`]), orgplane's spans at INFO and above are also exported over
/// OTLP/gRPC in batches, whatever `RUST_LOG` says. Must be called within a Tokio runtime when
/// exporting (the exporter's channel runs on it).
pub fn init(settings: TracingSettings) -> Result<TracingGuard, TracingError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let logs = match settings.log_format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    let provider = match resolve_otlp_endpoint(&settings.otlp_endpoint) {
        Some(endpoint) => Some(otlp_provider(&settings, endpoint)?),
        None => None,
    };
    let export = provider.as_ref().map(|provider| {
        let tracer = provider.tracer("orgplane");
        // Only orgplane's own spans: the exporter's gRPC client (h2, hyper, tonic) must never
        // feed spans of its own exports back into the exporter.
        let ours = filter_fn(|meta| meta.target().starts_with("orgplane") && *meta.level() <= tracing::Level::INFO);
        tracing_opentelemetry::layer().with_tracer(tracer).with_filter(ours)
    });
    tracing_subscriber::registry().with(logs.with_filter(filter)).with(export).try_init()?;
    Ok(TracingGuard { provider })
}

fn otlp_provider(settings: &TracingSettings, endpoint: String) -> Result<SdkTracerProvider, TracingError> {
    check_otlp_endpoint(&endpoint)
        .map_err(|reason| TracingError::BadOtlpEndpoint { endpoint: endpoint.clone(), reason })?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|source| TracingError::Exporter { endpoint, source })?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.trim().is_empty()) {
        // The standard variable wins; `Resource::builder` has read it.
    } else {
        resource = resource.with_service_name(settings.service_name);
    }
    if let Some(instance) = &settings.instance {
        resource = resource.with_attribute(KeyValue::new("service.instance.id", instance.clone()));
    }
    // Batches leave on a background thread; OTEL_BSP_* variables tune them.
    Ok(SdkTracerProvider::builder().with_resource(resource.build()).with_batch_exporter(exporter).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_and_print_their_names() {
        for name in LogFormat::NAMES {
            assert_eq!(name.parse::<LogFormat>().unwrap().to_string(), name);
        }
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn checks_otlp_endpoints() {
        for ok in ["", "  ", "http://localhost:4317", "https://otel.example.com", "http://10.0.0.1:4317/"] {
            assert_eq!(check_otlp_endpoint(ok), Ok(()), "{ok:?}");
        }
        for (bad, reason) in [
            ("localhost:4317", "must start with http:// or https://"),
            ("grpc://collector:4317", "must start with http:// or https://"),
            ("http://", "not a URL"),
            ("http://exa mple:4317", "not a URL"),
        ] {
            let got = check_otlp_endpoint(bad).unwrap_err();
            assert!(got.contains(reason), "{bad:?}: {got}");
        }
    }

    #[test]
    fn a_configured_endpoint_wins_over_the_environment() {
        assert_eq!(resolve_otlp_endpoint(" http://a:4317 ").as_deref(), Some("http://a:4317"));
    }
}
