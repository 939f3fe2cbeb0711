//! `orgctl app ...`: an org's apps. Build them (`create`, `update`, `delete`), bind their
//! slots to the org's resources (`bind`, `unbind`), `publish` them, and move them between
//! orgs: `export` writes the archive to a file, `import` uploads one into an org and prints
//! the slots to bind there, with the org's resources that match each (a hint only).
//!
//! A refused publish prints the server's message, which lists every unbound slot. Transfers
//! show a progress bar on stderr when it is a terminal, nothing otherwise.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use orgplane_client::{v1, AppSpec, AppUpdate, Client, Consistency, PageRequest, Progress};
use orgplane_model::ResourceKind;
use serde_json::{json, Value};

use crate::error::CommandError;
use crate::output::{format_time_ms, printable, Answer, Render, Table};

#[derive(Debug, PartialEq, Subcommand)]
pub enum AppCommand {
    /// Create an app from a definition file, with binding slots (all unbound).
    Create {
        org: String,
        #[arg(long)]
        name: String,
        /// The definition document, a JSON object (at most 1 MiB).
        #[arg(long, value_name = "FILE.json")]
        definition: PathBuf,
        /// A binding slot, NAME:KIND with KIND phone_number or integration:<kind> (repeatable).
        #[arg(long = "slot", value_name = "NAME:KIND", value_parser = parse_slot)]
        slots: Vec<(String, ResourceKind)>,
    },
    /// The org's apps.
    List { org: String },
    /// One app: its slots and bindings.
    Get { org: String, app: String },
    /// Change an app's name, definition or slots (slots given replace all the old ones).
    Update {
        org: String,
        app: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_name = "FILE.json")]
        definition: Option<PathBuf>,
        #[arg(long = "slot", value_name = "NAME:KIND", value_parser = parse_slot)]
        slots: Vec<(String, ResourceKind)>,
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Delete an app.
    Delete { org: String, app: String },
    /// Write the app as a ZIP archive (no secrets, no resource ids) to FILE.
    Export {
        org: String,
        app: String,
        #[arg(long = "output-file", short = 'o', value_name = "FILE")]
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Upload an exported archive into an org; prints the slots to bind there.
    Import { org: String, file: PathBuf },
    /// Bind a slot to a resource of the same org: an integration's name or a phone number.
    Bind { org: String, app: String, slot: String, resource_id: String },
    /// Unbind a slot.
    Unbind { org: String, app: String, slot: String },
    /// Publish the app's current version (every slot must be bound).
    Publish { org: String, app: String },
}

/// `NAME:KIND`, split at the first `:` (a kind may hold one too: `integration:twilio`).
fn parse_slot(text: &str) -> Result<(String, ResourceKind), String> {
    let (name, kind) = text.split_once(':').ok_or("expected NAME:KIND")?;
    let kind: ResourceKind = kind.parse().map_err(|e: orgplane_model::DomainError| e.to_string())?;
    orgplane_model::validate::slot_name(name).map_err(|e| e.to_string())?;
    Ok((name.to_string(), kind))
}

pub async fn run(client: &Client, command: AppCommand) -> Result<Box<dyn Render>, CommandError> {
    Ok(match command {
        AppCommand::Create { org, name, definition, slots } => {
            let spec = AppSpec { name, definition: read_text(&definition)?, slots, assets: Vec::new() };
            app_answer(&client.create_app(&org, &spec).await?)
        }
        AppCommand::List { org } => {
            let page = client.list_apps(&org, PageRequest::first(1000)).await?;
            apps_answer(&page.items, page.next_page_token.as_deref())
        }
        AppCommand::Get { org, app } => app_answer(&client.get_app(&org, &app, Consistency::Linearizable).await?),
        AppCommand::Update { org, app, name, definition, slots, expected_version } => {
            let definition = definition.as_deref().map(read_text).transpose()?;
            let slots = (!slots.is_empty()).then_some(slots.as_slice());
            let update = AppUpdate { name: name.as_deref(), definition: definition.as_deref(), slots };
            app_answer(&client.update_app(&org, &app, &update, expected_version).await?)
        }
        AppCommand::Delete { org, app } => {
            client.delete_app(&org, &app, None).await?;
            Box::new(Answer {
                json: json!({ "deleted": { "org_id": org, "app_id": app } }),
                table: format!("deleted app {app}\n"),
            })
        }
        AppCommand::Export { org, app, file, force } => export(client, &org, &app, &file, force).await?,
        AppCommand::Import { org, file } => {
            let archive = File::open(&file).map_err(file_error(&file, "opening the archive"))?;
            let size = archive.metadata().map(|m| m.len()).unwrap_or(0);
            let (bar, progress) = progress_bar(size);
            let imported = client.import_app(&org, archive, Some(progress)).await;
            bar.finish_and_clear();
            import_answer(&imported?)
        }
        AppCommand::Bind { org, app, slot, resource_id } => {
            app_answer(&client.bind_app_slot(&org, &app, &slot, &resource_id).await?)
        }
        AppCommand::Unbind { org, app, slot } => app_answer(&client.unbind_app_slot(&org, &app, &slot).await?),
        AppCommand::Publish { org, app } => app_answer(&client.publish_app(&org, &app).await?),
    })
}

/// Writes the export to a temporary file beside `file`, renamed into place once whole.
async fn export(
    client: &Client,
    org: &str,
    app: &str,
    file: &Path,
    force: bool,
) -> Result<Box<dyn Render>, CommandError> {
    let refuse_existing =
        || if !force && file.exists() { Err(CommandError::FileExists { path: file.to_path_buf() }) } else { Ok(()) };
    refuse_existing()?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app.zip".into());
    let partial = file.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let written = async {
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(file_error(&partial, "creating the temporary file"))?;
        let mut out = BufWriter::new(out);
        let (bar, progress) = progress_bar(0);
        let exported = client.export_app(org, app, &mut out, Some(progress)).await;
        bar.finish_and_clear();
        let exported = exported?;
        let out = out.into_inner().map_err(|e| e.into_error()).map_err(file_error(&partial, "flushing the archive"))?;
        out.sync_all().map_err(file_error(&partial, "syncing the archive"))?;
        refuse_existing()?;
        fs::rename(&partial, file).map_err(file_error(file, "renaming the archive into place"))?;
        Ok::<_, CommandError>(exported)
    }
    .await;
    let exported = match written {
        Ok(exported) => exported,
        Err(err) => {
            let _ = fs::remove_file(&partial);
            return Err(err);
        }
    };
    let header = &exported.header;
    let json = json!({
        "file": file.display().to_string(), "bytes": exported.bytes, "suggested_name": header.file_name,
        "app_version": header.app_version, "format_version": header.format_version,
    });
    let table = format!(
        "wrote {} ({} bytes, app version {}, archive format {})\n",
        file.display(),
        exported.bytes,
        header.app_version,
        header.format_version
    );
    Ok(Box::new(Answer { json, table }))
}

/// A bar on stderr when it is a terminal (hidden otherwise), and the callback that moves it.
fn progress_bar(total: u64) -> (ProgressBar, Progress) {
    let bar = if std::io::stderr().is_terminal() { ProgressBar::new(total) } else { ProgressBar::hidden() };
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}") {
        bar.set_style(style);
    }
    let moved = bar.clone();
    let progress: Progress = Arc::new(move |done, total| {
        moved.set_length(total);
        moved.set_position(done);
    });
    (bar, progress)
}

fn read_text(path: &Path) -> Result<String, CommandError> {
    fs::read_to_string(path).map_err(file_error(path, "reading the definition"))
}

fn file_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> CommandError {
    let path = path.to_path_buf();
    move |source| CommandError::AppFile { path, action, source }
}

fn app_json(app: &v1::App) -> Value {
    let slots: Vec<Value> = app
        .slots
        .iter()
        .map(|s| json!({ "name": s.name, "kind": s.kind, "binding": (!s.binding.is_empty()).then_some(&s.binding) }))
        .collect();
    json!({
        "id": app.id, "org_id": app.org_id, "name": app.name, "version": app.version,
        "published_version": app.published_version, "slots": slots,
        "create_time_ms": app.create_time_ms, "update_time_ms": app.update_time_ms,
    })
}

fn slot_table(app: &v1::App) -> String {
    let mut table = Table::new(&["SLOT", "KIND", "BOUND TO"]);
    for s in &app.slots {
        let binding = if s.binding.is_empty() { "-".to_string() } else { s.binding.clone() };
        table.row([s.name.clone(), s.kind.clone(), binding]);
    }
    table.render()
}

fn app_answer(app: &v1::App) -> Box<dyn Render> {
    let published = app.published_version.map_or("never".to_string(), |v| format!("version {v}"));
    let mut table = format!(
        "id         {}\nname       {}\nversion    {}\npublished  {}\nupdated    {}\n",
        app.id,
        printable(&app.name),
        app.version,
        published,
        format_time_ms(app.update_time_ms)
    );
    if !app.slots.is_empty() {
        table.push('\n');
        table.push_str(&slot_table(app));
    }
    Box::new(Answer { json: json!({ "app": app_json(app) }), table })
}

fn apps_answer(apps: &[v1::App], next: Option<&str>) -> Box<dyn Render> {
    let mut table = Table::new(&["ID", "NAME", "VERSION", "PUBLISHED", "UNBOUND SLOTS"]);
    for app in apps {
        let unbound: Vec<&str> = app.slots.iter().filter(|s| s.binding.is_empty()).map(|s| s.name.as_str()).collect();
        table.row([
            app.id.clone(),
            app.name.clone(),
            app.version.to_string(),
            app.published_version.map_or("-".to_string(), |v| v.to_string()),
            unbound.join(","),
        ]);
    }
    let json = json!({ "apps": apps.iter().map(app_json).collect::<Vec<_>>(), "next_page_token": next });
    Box::new(Answer { json, table: table.render() })
}

fn import_answer(imported: &v1::ImportAppResponse) -> Box<dyn Render> {
    let Some(app) = &imported.app else {
        return Box::new(Answer { json: json!({}), table: "imported\n".into() });
    };
    let mut table = format!(
        "imported app {} ({}) from org {} in region {}\n",
        app.id,
        printable(&app.name),
        imported.source_org_id,
        imported.source_region
    );
    if imported.slots_to_bind.is_empty() {
        table.push_str("no slots to bind; it can be published\n");
    } else {
        table.push_str("slots to bind before publishing (orgctl app bind ORG APP SLOT RESOURCE_ID):\n");
        let mut rows = Table::new(&["SLOT", "KIND", "WAS BOUND TO", "MATCHING HERE"]);
        for slot in &imported.slots_to_bind {
            let hint = imported.hints.iter().find(|h| &h.slot == slot);
            rows.row([
                slot.clone(),
                hint.map(|h| h.kind.clone()).unwrap_or_default(),
                hint.map(|h| h.source_resource_name.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into()),
                hint.map(|h| h.candidates.join(",")).filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into()),
            ]);
        }
        table.push_str(&rows.render());
    }
    let hints: Vec<Value> = imported
        .hints
        .iter()
        .map(|h| json!({ "slot": h.slot, "kind": h.kind, "source_resource_name": h.source_resource_name, "candidates": h.candidates }))
        .collect();
    let json = json!({
        "app": app_json(app), "slots_to_bind": imported.slots_to_bind, "hints": hints,
        "source_org_id": imported.source_org_id, "source_region": imported.source_region,
    });
    Box::new(Answer { json, table })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_parse_name_and_kind() {
        assert_eq!(parse_slot("line:phone_number"), Ok(("line".into(), ResourceKind::PhoneNumber)));
        assert_eq!(
            parse_slot("sms:integration:twilio"),
            Ok(("sms".into(), ResourceKind::Integration("twilio".into())))
        );
        assert!(parse_slot("sms").is_err());
        assert!(parse_slot("Bad:phone_number").is_err());
        assert!(parse_slot("sms:integration:").is_err());
    }

    #[test]
    fn import_prints_the_slots_to_bind_and_hints() {
        let imported = v1::ImportAppResponse {
            app: Some(v1::App { id: "app-1".into(), name: "Bot".into(), ..Default::default() }),
            slots_to_bind: vec!["line".into(), "sms".into()],
            hints: vec![v1::SlotHint {
                slot: "sms".into(),
                kind: "integration:twilio".into(),
                source_resource_name: "main".into(),
                candidates: vec!["main".into()],
            }],
            source_org_id: "eu-1".into(),
            source_region: "eu".into(),
        };
        let table = import_answer(&imported).table();
        assert!(table.contains("from org eu-1 in region eu"), "{table}");
        let sms = table.lines().find(|l| l.starts_with("sms")).unwrap();
        assert!(sms.contains("integration:twilio") && sms.matches("main").count() == 2, "{sms}");
        assert!(table.lines().any(|l| l.starts_with("line")), "{table}");
    }
}
