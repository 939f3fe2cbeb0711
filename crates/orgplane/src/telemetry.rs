//! The tracing subscriber. Only binaries install one. `RUST_LOG` filters (default `info`).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What is logged when `RUST_LOG` is not set. openraft logs routine election races at WARN
/// ("message will be ignored because vote changed"); its errors still show.
pub const DEFAULT_FILTER: &str = "info,openraft=error,sled=warn,h2=warn,tower=warn,hyper=warn";

/// Installs the global subscriber, writing to stderr (colored only on a terminal).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
