//! `orgctl`, the orgplane operations CLI: parse the arguments, make the calls through
//! `orgplane-client`, print the answer.
//!
//! Output contract:
//! - `--output table` (default): aligned columns for people, on stdout.
//! - `--output json`: exactly one JSON document on stdout, nothing else there.
//! - Warnings (`warning: ...`, for example a partial user list) go to stderr in both formats,
//!   as does progress (app transfers, the phases of `org move`).
//! - Errors go to stderr only, stdout stays empty: `error: <CODE>: <message>` and
//!   `hint: <hint>`. Exit code 1 for a failed call, 2 for a usage error (clap's, or an
//!   endpoint, token or request id the client refuses before sending anything).
//! - `ORGPLANE_LOG` (a tracing filter, for example `debug`) logs retries and the like to stderr.
//!
//! Layout: [`cli`] (global flags and command groups), [`cmd`] (one module per group: its
//! arguments and logic), [`output`] (tables and JSON), [`error`] (what a failed command
//! reports).

#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod error;
mod output;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::error::CommandError;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    install_tracing();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let format = cli.global.output;
    let answer = runtime.block_on(async {
        let client = cmd::client(&cli.global)?;
        cmd::run(&client, cli.command, cli.global.timeout).await
    });
    let answer: Result<_, CommandError> = answer;
    match answer {
        Ok(answer) => {
            match output::print(answer.as_ref(), format, &mut io::stdout().lock(), &mut io::stderr().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                // The reader went away (`orgctl ... | head`): nothing left to tell anyone.
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: cannot write the answer: {err}");
                    ExitCode::from(1)
                }
            }
        }
        Err(err) => report(&err, &mut io::stderr().lock()),
    }
}

/// Prints `err` with its hint and returns the exit code.
fn report(err: &CommandError, stderr: &mut dyn Write) -> ExitCode {
    // Nothing to do if stderr itself is gone.
    let _ = writeln!(stderr, "error: {}: {}\nhint: {}", err.code_name(), err.message(), err.hint());
    ExitCode::from(err.exit_code())
}

/// Logs to stderr, filtered by `ORGPLANE_LOG` (default: warnings only).
fn install_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORGPLANE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .init();
}
