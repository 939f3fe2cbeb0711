//! The commands, one module per group. Each module owns its group's arguments (a clap
//! `Subcommand`) and a `run` that makes the calls and returns what to print, as an
//! [`Render`] value; printing is [`crate::output`]'s job.

pub mod access;
pub mod app;
pub mod backup;
pub mod cluster;
pub mod member;
pub mod moves;
pub mod org;
pub mod user;

use orgplane_client::{Client, ClientError, ClientOptions, TlsOptions};

use crate::cli::{Command, GlobalArgs};
use crate::error::CommandError;
use crate::output::Render;

/// The items per page the `--page-size` flags accept.
pub(crate) const PAGE_SIZE_RANGE: std::ops::RangeInclusive<i64> = 1..=1000;

/// Builds the client the global flags describe.
pub fn client(global: &GlobalArgs) -> Result<Client, ClientError> {
    let mut options =
        ClientOptions { bearer_token: global.token.clone(), tls: tls_options(global)?, ..ClientOptions::default() };
    if let Some(timeout) = global.timeout {
        // `--timeout` bounds the whole call: one attempt may use all of it, and retries fit
        // in what is left.
        options.request_timeout = timeout;
        options.total_timeout = timeout;
    }
    Client::with_options(&global.endpoint, options)
}

/// The TLS files the global flags name, read; None when none is named.
fn tls_options(global: &GlobalArgs) -> Result<Option<TlsOptions>, ClientError> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| ClientError::InvalidOptions { reason: format!("cannot read {flag} {}: {e}", path.display()) })
    };
    let ca_pem = global.ca_file.as_deref().map(|path| read("--ca-file", path)).transpose()?;
    let identity_pem = match (&global.cert_file, &global.key_file) {
        (Some(cert), Some(key)) => Some((read("--cert-file", cert)?, read("--key-file", key)?)),
        _ => None,
    };
    Ok((ca_pem.is_some() || identity_pem.is_some()).then_some(TlsOptions { ca_pem, identity_pem }))
}

/// Runs `command` and returns its answer, ready to print. `timeout` is the global `--timeout`,
/// which for `org move` also bounds the wait for the move to end.
pub async fn run(
    client: &Client,
    command: Command,
    timeout: Option<std::time::Duration>,
) -> Result<Box<dyn Render>, CommandError> {
    Ok(match command {
        Command::Org(command) => org::run(client, command, timeout).await?,
        Command::Member(command) => member::run(client, command).await?,
        Command::User(command) => user::run(client, command).await?,
        Command::Cluster(command) => cluster::run(client, command).await?,
        Command::Backup(args) => backup::run(client, args).await?,
        Command::Role(command) => access::run_role(client, command).await?,
        Command::Invite(command) => access::run_invite(client, command).await?,
        Command::Integration(command) => access::run_integration(client, command).await?,
        Command::Phone(command) => access::run_phone(client, command).await?,
        Command::Audit(command) => access::run_audit(client, command).await?,
        Command::App(command) => app::run(client, command).await?,
    })
}
