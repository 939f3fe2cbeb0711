//! The command line: global flags here, each command group's arguments beside its logic in
//! [`crate::cmd`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cmd::access::{AuditCommand, IntegrationCommand, InviteCommand, PhoneCommand, RoleCommand};
use crate::cmd::app::AppCommand;
use crate::cmd::backup::BackupArgs;
use crate::cmd::cluster::ClusterCommand;
use crate::cmd::member::MemberCommand;
use crate::cmd::org::OrgCommand;
use crate::cmd::user::UserCommand;

/// The dev router's address, which `orgplane dev` listens on.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:50051";

/// orgctl: operate an orgplane deployment through its public API.
#[derive(Debug, Parser)]
#[command(name = "orgctl", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after the command name.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct GlobalArgs {
    /// The router (or region node) to talk to: HOST:PORT, http://HOST:PORT or https://HOST:PORT
    /// (TLS, verified against the system CA roots, or --ca-file).
    #[arg(long, global = true, env = "ORGPLANE_ENDPOINT", default_value = DEFAULT_ENDPOINT, value_parser = parse_endpoint)]
    pub endpoint: String,
    /// How to print the answer: aligned columns for people, or one JSON document on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// The longest a call may take, retries included, in seconds (fractions allowed).
    /// Default: 5 s per attempt, 15 s in all. For `org move`, also the longest it waits for
    /// the move to end (default 300 s).
    #[arg(long, global = true, value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// A bearer token, sent as `authorization: Bearer <token>` with every call.
    #[arg(long, global = true, env = "ORGPLANE_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub token: Option<String>,
    /// Speak TLS and trust only this CA (PEM): a deployment with its own CA (`orgplane
    /// dev-certs`). A bare HOST:PORT endpoint then means TLS.
    #[arg(long, global = true, env = "ORGPLANE_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present, with --key-file: to call a node directly, whose
    /// `[tls] allowed-clients` names it. Routers do not need one.
    #[arg(long, global = true, env = "ORGPLANE_CERT_FILE", value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "ORGPLANE_KEY_FILE", value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns (or field: value lines for one record).
    Table,
    /// Exactly one JSON document on stdout; nothing else goes to stdout.
    Json,
}

#[derive(Debug, PartialEq, Subcommand)]
pub enum Command {
    /// Create, read, list, rename and delete orgs; move them between regions, and see where
    /// their data lives.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Add, change, remove and list the members of an org.
    #[command(subcommand)]
    Member(MemberCommand),
    /// What a user belongs to, across every region.
    #[command(subcommand)]
    User(UserCommand),
    /// The deployment: regions, nodes, leaders.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Write a consistent backup of a region to a file (restore it with `orgplane restore`).
    Backup(BackupArgs),
    /// Custom roles of an org, and the permission catalog.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Invitations into an org.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// An org's integrations with external services.
    #[command(subcommand)]
    Integration(IntegrationCommand),
    /// An org's phone numbers.
    #[command(subcommand)]
    Phone(PhoneCommand),
    /// An org's audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// An org's apps: build, bind, publish, export to a ZIP and import into another org.
    #[command(subcommand)]
    App(AppCommand),
}

fn parse_endpoint(text: &str) -> Result<String, String> {
    orgplane_client::endpoint_uri(text).map(|_| text.trim().to_string()).map_err(|e| e.to_string())
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err("must be greater than 0".to_string());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is too long"))
}

fn parse_token(text: &str) -> Result<String, String> {
    orgplane_client::Credentials::new(Some(text)).map(|_| text.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use orgplane_client::RequestId;
    use orgplane_model::{Region, Role};

    use super::*;
    use crate::cmd::cluster::ClusterCommand;
    use crate::cmd::member::MemberCommand;
    use crate::cmd::org::OrgCommand;
    use crate::cmd::user::UserCommand;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("orgctl").chain(args.split_whitespace()))
    }

    fn check(args: &str, expected: Command) {
        let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(cli.command, expected, "{args:?}");
    }

    fn check_refused(args: &str, kind: ErrorKind) {
        let err = parse(args).expect_err(args);
        assert_eq!(err.kind(), kind, "{args:?}: {err}");
        assert_eq!(err.exit_code(), 2, "{args:?}");
    }

    #[test]
    fn parses_org_commands() {
        check(
            "org create --region EU --name Acme",
            Command::Org(OrgCommand::Create { region: Region::Eu, name: "Acme".into(), request_id: None }),
        );
        check(
            "org create --region us --name Acme --request-id deploy-1",
            Command::Org(OrgCommand::Create {
                region: Region::Us,
                name: "Acme".into(),
                request_id: Some("deploy-1".parse::<RequestId>().unwrap()),
            }),
        );
        check("org get eu-1", Command::Org(OrgCommand::Get { id: "eu-1".into(), local: false }));
        check("org get eu-1 --local", Command::Org(OrgCommand::Get { id: "eu-1".into(), local: true }));
        check(
            "org list --region apac --page-size 10 --page-token t1",
            Command::Org(OrgCommand::List {
                region: Region::Apac,
                page_size: Some(10),
                page_token: Some("t1".into()),
                all: false,
            }),
        );
        check(
            "org list --region apac --all",
            Command::Org(OrgCommand::List { region: Region::Apac, page_size: None, page_token: None, all: true }),
        );
        check(
            "org update eu-1 --name New --expected-version 3",
            Command::Org(OrgCommand::Update {
                id: "eu-1".into(),
                name: Some("New".into()),
                allow_import_from: None,
                expected_version: Some(3),
                request_id: None,
            }),
        );
        check(
            "org update us-1 --allow-import-from eu apac",
            Command::Org(OrgCommand::Update {
                id: "us-1".into(),
                name: None,
                allow_import_from: Some(vec![Region::Eu, Region::Apac]),
                expected_version: None,
                request_id: None,
            }),
        );
        check(
            "app create eu-1 --name Bot --definition bot.json --slot sms:integration:twilio --slot line:phone_number",
            Command::App(AppCommand::Create {
                org: "eu-1".into(),
                name: "Bot".into(),
                definition: "bot.json".into(),
                slots: vec![
                    ("sms".into(), "integration:twilio".parse().unwrap()),
                    ("line".into(), orgplane_model::ResourceKind::PhoneNumber),
                ],
            }),
        );
        check(
            "app export eu-1 app-1 -o bot.zip",
            Command::App(AppCommand::Export {
                org: "eu-1".into(),
                app: "app-1".into(),
                file: "bot.zip".into(),
                force: false,
            }),
        );
        check(
            "org delete eu-1",
            Command::Org(OrgCommand::Delete { id: "eu-1".into(), expected_version: None, request_id: None }),
        );
    }

    #[test]
    fn parses_move_commands() {
        let moving =
            |dry_run, no_wait| Command::Org(OrgCommand::Move { org: "eu-1".into(), to: Region::Us, dry_run, no_wait });
        check("org move eu-1 --to us", moving(false, false));
        check("org move eu-1 --to US --dry-run", moving(true, false));
        check("org move eu-1 --no-wait --to us", moving(false, true));
        let cli = parse("org move eu-1 --to us --timeout 600").unwrap();
        assert_eq!(cli.global.timeout, Some(Duration::from_secs(600)), "the global --timeout bounds the wait");
        check("org move-status eu-1", Command::Org(OrgCommand::MoveStatus { org: "eu-1".into() }));
        check(
            "org move-abort eu-1 --reason wrong",
            Command::Org(OrgCommand::MoveAbort { org: "eu-1".into(), reason: "wrong".into() }),
        );
        check(
            "org move-abort eu-1",
            Command::Org(OrgCommand::MoveAbort {
                org: "eu-1".into(),
                reason: "aborted by an operator with orgctl".into(),
            }),
        );
        check("org residency eu-1", Command::Org(OrgCommand::Residency { org: "eu-1".into() }));
        check_refused("org move eu-1", ErrorKind::MissingRequiredArgument);
        check_refused("org move eu-1 --to mars", ErrorKind::ValueValidation);
        check_refused("org move eu-1 --to us --dry-run --no-wait", ErrorKind::ArgumentConflict);
        check_refused("org residency", ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn parses_member_user_and_cluster_commands() {
        check(
            "member add eu-1 alice --role admin",
            Command::Member(MemberCommand::Add {
                org: "eu-1".into(),
                user: "alice".into(),
                role: Role::Admin,
                request_id: None,
            }),
        );
        check(
            "member set-role eu-1 alice --role Viewer",
            Command::Member(MemberCommand::SetRole {
                org: "eu-1".into(),
                user: "alice".into(),
                role: Role::Viewer,
                request_id: None,
            }),
        );
        check(
            "member remove eu-1 alice",
            Command::Member(MemberCommand::Remove { org: "eu-1".into(), user: "alice".into(), request_id: None }),
        );
        check(
            "member list eu-1 --all",
            Command::Member(MemberCommand::List { org: "eu-1".into(), page_size: None, page_token: None, all: true }),
        );
        check(
            "user orgs alice",
            Command::User(UserCommand::Orgs { user: "alice".into(), page_size: None, page_token: None, all: false }),
        );
        check("cluster status", Command::Cluster(ClusterCommand::Status));
        check(
            "backup --region eu -o /b/eu.opb --output json",
            Command::Backup(BackupArgs { region: Region::Eu, file: "/b/eu.opb".into(), force: false }),
        );
        check(
            "backup --region US --file eu.opb --force",
            Command::Backup(BackupArgs { region: Region::Us, file: "eu.opb".into(), force: true }),
        );
        check("cluster topology", Command::Cluster(ClusterCommand::Topology));
    }

    #[test]
    fn parses_access_commands() {
        use orgplane_model::Permission;

        use crate::cmd::access::*;
        check(
            "role create eu-1 support --permission org.read --permission resources.read",
            Command::Role(RoleCommand::Create {
                org: "eu-1".into(),
                name: "support".into(),
                permissions: vec![Permission::OrgRead, Permission::ResourcesRead],
            }),
        );
        check("role list eu-1", Command::Role(RoleCommand::List { org: "eu-1".into() }));
        check(
            "integration create eu-1 --kind twilio --name sms --config account=AC1 --secret token=s3",
            Command::Integration(IntegrationCommand::Create {
                org: "eu-1".into(),
                kind: "twilio".into(),
                name: "sms".into(),
                config: vec![("account".into(), "AC1".into())],
                secrets: vec![("token".into(), "s3".into())],
            }),
        );
        check(
            "phone add eu-1 +4930901820",
            Command::Phone(PhoneCommand::Add {
                org: "eu-1".into(),
                number: "+4930901820".into(),
                label: String::new(),
            }),
        );
        check(
            "audit list eu-1 --since 5 --until 9 --actor alice",
            Command::Audit(AuditCommand::List {
                org: "eu-1".into(),
                since: Some(5),
                until: Some(9),
                actor: Some("alice".into()),
                page_size: None,
                page_token: None,
                all: false,
            }),
        );
        check(
            "invite create eu-1 bob@example.com --role developer",
            Command::Invite(InviteCommand::Create {
                org: "eu-1".into(),
                email: "bob@example.com".into(),
                role: Role::Developer,
                expires_at_ms: None,
            }),
        );
        check("invite accept eu-1", Command::Invite(InviteCommand::Accept { org: "eu-1".into() }));
        check_refused("role create eu-1 support --permission org.own", ErrorKind::ValueValidation);
        check_refused("role create eu-1 support", ErrorKind::MissingRequiredArgument);
        check_refused("integration create eu-1 --kind k --name n --config novalue", ErrorKind::ValueValidation);
        check_refused("app create eu-1 --name n --definition d.json --slot sms:fax", ErrorKind::ValueValidation);
        check_refused("org update eu-1", ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn parses_global_flags_anywhere() {
        let cli =
            parse("--endpoint http://10.0.0.1:7000 org get eu-1 --output json --timeout 2.5 --token abc").unwrap();
        assert_eq!(
            cli.global,
            GlobalArgs {
                endpoint: "http://10.0.0.1:7000".into(),
                output: OutputFormat::Json,
                timeout: Some(Duration::from_millis(2500)),
                token: Some("abc".into()),
                ca_file: None,
                cert_file: None,
                key_file: None,
            }
        );
        let cli = parse("org get eu-1 --ca-file ca.pem --cert-file c.pem --key-file c.key").unwrap();
        assert_eq!(cli.global.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(cli.global.key_file, Some(PathBuf::from("c.key")));
        check_refused("org get eu-1 --cert-file c.pem", ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn refuses_bad_usage() {
        check_refused("org create --region mars --name Acme", ErrorKind::ValueValidation);
        check_refused("org create --name Acme", ErrorKind::MissingRequiredArgument);
        check_refused("org create --region eu --name Acme --request-id", ErrorKind::InvalidValue);
        check_refused("org create --region eu --name Acme --request-id has\u{7f}del", ErrorKind::ValueValidation);
        check_refused("member add eu-1 alice --role owner!", ErrorKind::ValueValidation);
        check_refused("org list --region eu --all --page-token t", ErrorKind::ArgumentConflict);
        check_refused("org list --region eu --page-size 0", ErrorKind::ValueValidation);
        check_refused("org list --region eu --page-size 1001", ErrorKind::ValueValidation);
        check_refused("org get eu-1 --timeout 0", ErrorKind::ValueValidation);
        check_refused("org get eu-1 --timeout soon", ErrorKind::ValueValidation);
        check_refused("org get eu-1 --endpoint grpc://router:443", ErrorKind::ValueValidation);
        check_refused("org get eu-1 --output yaml", ErrorKind::InvalidValue);
        check_refused("org frobnicate", ErrorKind::InvalidSubcommand);
        check_refused("org", ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
        check_refused("backup --region eu", ErrorKind::MissingRequiredArgument);
        check_refused("backup --region eu -o eu.opb --output yaml", ErrorKind::InvalidValue);
        check_refused("backup --region mars -o eu.opb", ErrorKind::ValueValidation);
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
