//! Apps end to end, through an authenticating router in front of an EU and a US region (one
//! node each): an app moves from an EU org to a US org as an archive and back out again,
//! carrying no secret, resource id or source-org data beyond the manifest's `source_org_id`;
//! the import follows the target org's residency policy, arrives with every slot unbound, and
//! publishes only once bound to the target org's own resources; hostile archives are refused
//! and change nothing; Agents cannot import or publish, and outsiders cannot export.

use orgplane_appzip::{read_archive, AppArchive, Limits};
use orgplane_client::{AppSpec, Client, ClientError, Consistency, PageRequest};
use orgplane_model::{AuditFilter, ConfigEntry, Region, ResourceKind, Role};
use orgplane_router::RouterConfig;
use orgplane_tests::auth::{authenticated, client_as, test_key};
use orgplane_tests::TestRegion;
use tokio::sync::oneshot;
use tonic::Code;

const SECRET: &str = "sk-live-4b1d7e90c3";
const EU_NUMBER: &str = "+4930901820";
const US_NUMBER: &str = "+14155550100";

/// An EU and a US region behind one authenticating router, an org in each: `eu` with alice
/// (Admin), `us` with bob (Admin) and agnes (Agent).
struct World {
    regions: Vec<TestRegion>,
    router: String,
    _stop: oneshot::Sender<()>,
    eu: String,
    us: String,
}

impl World {
    async fn start() -> World {
        let eu_region = TestRegion::start(Region::Eu, 1, authenticated).await;
        let us_region = TestRegion::start(Region::Us, 1, authenticated).await;
        eu_region.leader().await;
        us_region.leader().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let router = listener.local_addr().unwrap().to_string();
        let config = RouterConfig {
            listen: listener.local_addr().unwrap(),
            regions: [&eu_region, &us_region]
                .iter()
                .map(|r| (r.region.to_string(), r.peers.values().cloned().collect()))
                .collect(),
            auth: Some(test_key().config().clone()),
            ..RouterConfig::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(orgplane_router::run(config, listener, async {
            let _ = stopped.await;
        }));
        let ops = client_as(&router, "ops", true, None);
        let eu = ops.create_org(Region::Eu, "Acme EU").await.unwrap().id;
        let us = ops.create_org(Region::Us, "Acme US").await.unwrap().id;
        ops.add_member(eu.as_str(), "alice", Role::Admin).await.unwrap();
        ops.add_member(us.as_str(), "bob", Role::Admin).await.unwrap();
        ops.add_member(us.as_str(), "agnes", Role::Agent).await.unwrap();
        World { regions: vec![eu_region, us_region], router, _stop: stop, eu, us }
    }

    fn user(&self, user: &str) -> Client {
        client_as(&self.router, user, false, None)
    }

    async fn shutdown(self) {
        for region in self.regions {
            region.shutdown().await;
        }
    }
}

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>, code: Code, needle: &str) -> String {
    let error = result.expect_err("must be refused");
    assert_eq!(error.code(), code, "{error}");
    assert!(error.message().contains(needle), "{needle:?} not in {:?}", error.message());
    error.message()
}

fn spec() -> AppSpec {
    AppSpec {
        name: "Support line".into(),
        definition: r#"{ "entry": "greet", "steps": { "greet": { "say": "Hello" } } }"#.into(),
        slots: vec![
            ("sms".into(), ResourceKind::Integration("twilio".into())),
            ("line".into(), ResourceKind::PhoneNumber),
        ],
        assets: vec![("prompts/en.txt".into(), b"Welcome to support.\n".to_vec())],
    }
}

async fn export(client: &Client, org: &str, app: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let exported = client.export_app(org, app, &mut bytes, None).await.unwrap();
    assert_eq!(exported.bytes, bytes.len() as u64);
    assert!(exported.header.file_name.ends_with(".zip"), "{:?}", exported.header);
    bytes
}

/// Every decompressed entry of an archive, as text for scanning: the manifest (as JSON), the
/// definition and the assets.
fn entries_text(archive: &AppArchive) -> Vec<(String, String)> {
    let mut out = vec![
        ("manifest.json".to_string(), serde_json::to_string(&archive.manifest).unwrap()),
        ("definition.json".to_string(), String::from_utf8_lossy(&archive.definition).into_owned()),
    ];
    for (name, bytes) in &archive.assets {
        out.push((format!("assets/{name}"), String::from_utf8_lossy(bytes).into_owned()));
    }
    out
}

/// Neither the raw archive nor any decompressed entry holds any of `needles`.
fn assert_absent(raw: &[u8], archive: &AppArchive, needles: &[&str]) {
    for needle in needles {
        assert!(!raw.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle:?} in the raw archive");
        for (name, text) in entries_text(archive) {
            assert!(!text.contains(needle), "{needle:?} in {name}: {text}");
        }
    }
}

async fn audit_len(client: &Client, org: &str) -> usize {
    client.list_all_audit_events(org, &AuditFilter::default(), Consistency::Linearizable).await.unwrap().items.len()
}

async fn app_count(client: &Client, org: &str) -> usize {
    client.list_apps(org, PageRequest::first(1000)).await.unwrap().items.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_moves_from_eu_to_us_and_publishes_once_bound_there() {
    let w = World::start().await;
    let (alice, bob) = (w.user("alice"), w.user("bob"));
    let (eu, us) = (w.eu.as_str(), w.us.as_str());

    // The source: an EU app bound to EU resources (one integration with a secret), published.
    let config = [ConfigEntry::plain("account", "AC-1"), ConfigEntry::secret("auth_token", SECRET)];
    alice.create_integration(eu, "main", "twilio", &config).await.unwrap();
    alice.create_phone_number(eu, EU_NUMBER, "Berlin office").await.unwrap();
    let app = alice.create_app(eu, &spec()).await.unwrap();
    alice.bind_app_slot(eu, &app.id, "sms", "main").await.unwrap();
    alice.bind_app_slot(eu, &app.id, "line", EU_NUMBER).await.unwrap();
    let published = alice.publish_app(eu, &app.id).await.unwrap();
    assert_eq!(published.published_version, Some(published.version));
    // A bound resource cannot be deleted.
    refused(alice.delete_integration(eu, "main").await, Code::FailedPrecondition, &app.id);

    let first = export(&alice, eu, &app.id).await;
    assert_eq!(export(&alice, eu, &app.id).await, first, "the same app version exports the same bytes");
    let source = read_archive(&first, &Limits::default()).unwrap();
    assert_eq!(source.manifest.source_org_id, eu);
    assert_eq!(source.manifest.source_region, "eu");

    // The US org does not allow EU apps yet: refused, and nothing changes there.
    let audit_before = audit_len(&bob, us).await;
    let message = refused(bob.import_app(us, first.as_slice(), None).await, Code::FailedPrecondition, "region eu");
    assert!(message.contains("--allow-import-from eu"), "{message}");
    assert_eq!(app_count(&bob, us).await, 0);
    assert_eq!(audit_len(&bob, us).await, audit_before, "a refused import leaves no audit event");

    let org = bob.set_allowed_import_regions(us, &[Region::Eu], None).await.unwrap();
    let mut regions = org.allowed_import_regions.clone();
    regions.sort();
    assert_eq!(regions, ["eu", "us"]);
    assert_eq!(org.name, "Acme US", "the name is kept");
    bob.create_integration(us, "main", "twilio", &[ConfigEntry::secret("auth_token", "us-token")]).await.unwrap();
    bob.create_phone_number(us, US_NUMBER, "SF office").await.unwrap();

    let imported = bob.import_app(us, first.as_slice(), None).await.unwrap();
    let copy = imported.app.clone().unwrap();
    assert_eq!(copy.org_id, us);
    assert_ne!(copy.id, app.id);
    assert_eq!(imported.slots_to_bind, ["line", "sms"], "every slot arrives unbound");
    assert!(copy.slots.iter().all(|s| s.binding.is_empty()), "{copy:?}");
    let got = bob.get_app(us, &copy.id, Consistency::Linearizable).await.unwrap();
    assert_eq!(got.definition.as_bytes(), source.definition.as_slice(), "the definition arrived whole");
    assert_eq!(got.assets.len(), source.assets.len());
    assert_eq!((imported.source_org_id.as_str(), imported.source_region.as_str()), (eu, "eu"));
    let sms_hint = imported.hints.iter().find(|h| h.slot == "sms").unwrap();
    assert_eq!(
        (sms_hint.source_resource_name.as_str(), sms_hint.candidates.as_slice()),
        ("main", &["main".to_string()][..])
    );
    let events = bob.list_all_audit_events(us, &AuditFilter::default(), Consistency::Linearizable).await.unwrap().items;
    let import = events.iter().find(|e| e.action == "import_app").expect("import_app event");
    assert_eq!((import.actor.as_str(), import.outcome.as_str()), ("bob", "ok"));
    assert_eq!(import.detail.get("source_region").map(String::as_str), Some("eu"));
    assert_eq!(import.detail.get("source_org_id").map(String::as_str), Some(eu));

    // Not publishable until bound, and only to this org's resources.
    let message = refused(bob.publish_app(us, &copy.id).await, Code::FailedPrecondition, "unbound slots");
    assert!(message.contains("line") && message.contains("sms"), "{message}");
    refused(bob.bind_app_slot(us, &copy.id, "line", EU_NUMBER).await, Code::NotFound, EU_NUMBER);
    bob.bind_app_slot(us, &copy.id, "sms", "main").await.unwrap();
    refused(bob.publish_app(us, &copy.id).await, Code::FailedPrecondition, "unbound slots: line");
    bob.bind_app_slot(us, &copy.id, "line", US_NUMBER).await.unwrap();
    let published = bob.publish_app(us, &copy.id).await.unwrap();
    assert!(published.published_version.is_some());

    // Out again: the same app but for ids, org and timestamps.
    let second = export(&bob, us, &copy.id).await;
    let again = read_archive(&second, &Limits::default()).unwrap();
    assert_eq!(again.manifest.app_name, source.manifest.app_name);
    assert_eq!(again.manifest.slots, source.manifest.slots);
    assert_eq!(again.manifest.format_version, source.manifest.format_version);
    assert_eq!(again.definition, source.definition);
    assert_eq!(again.assets, source.assets);
    assert_eq!((again.manifest.source_org_id.as_str(), again.manifest.source_region.as_str()), (us, "us"));

    // No secret, no resource id (the numbers), no other org's data in either archive; the
    // source org's id only as manifest.source_org_id.
    assert_absent(&first, &source, &[SECRET, "us-token", EU_NUMBER, US_NUMBER, us, "Berlin office"]);
    assert_absent(&second, &again, &[SECRET, "us-token", EU_NUMBER, US_NUMBER, eu, "SF office"]);
    for (archive, org) in [(&source, eu), (&again, us)] {
        for (name, text) in entries_text(archive) {
            let expected = usize::from(name == "manifest.json");
            assert_eq!(text.matches(org).count(), expected, "{org} in {name}: {text}");
        }
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_and_change_nothing() {
    let w = World::start().await;
    let bob = w.user("bob");
    let us = w.us.as_str();
    bob.set_allowed_import_regions(us, &[Region::Eu], None).await.unwrap();
    let audit_before = audit_len(&bob, us).await;
    let cases = orgplane_appzip::corpus::hostile_archives();
    assert!(cases.iter().any(|(name, _)| *name == "too_large"));
    for (name, archive) in cases {
        let error = bob.import_app(us, archive.as_slice(), None).await.expect_err(name);
        assert_eq!(error.code(), Code::InvalidArgument, "{name}: {error}");
        assert!(!error.message().is_empty(), "{name}");
    }
    assert_eq!(app_count(&bob, us).await, 0, "no app was created");
    assert_eq!(audit_len(&bob, us).await, audit_before, "no audit event either");

    // The valid archive of the same corpus goes in, so the refusals above were the archives'.
    let valid = orgplane_appzip::corpus::valid_archive();
    let imported = bob.import_app(us, valid.as_slice(), None).await.unwrap();
    assert_eq!(imported.slots_to_bind, ["crm", "main_line"]);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_cannot_import_or_publish_and_outsiders_cannot_export() {
    let w = World::start().await;
    let (alice, bob, agnes) = (w.user("alice"), w.user("bob"), w.user("agnes"));
    let (eu, us) = (w.eu.as_str(), w.us.as_str());
    let app = alice.create_app(eu, &AppSpec { slots: Vec::new(), ..spec() }).await.unwrap();
    let archive = export(&alice, eu, &app.id).await;

    let local = bob.create_app(us, &AppSpec { slots: Vec::new(), ..spec() }).await.unwrap();
    refused(agnes.import_app(us, archive.as_slice(), None).await, Code::PermissionDenied, "apps.transfer");
    refused(agnes.publish_app(us, &local.id).await, Code::PermissionDenied, "apps.publish");
    refused(agnes.create_app(us, &spec()).await, Code::PermissionDenied, "apps.build");
    let listed = agnes.list_apps(us, PageRequest::first(10)).await.unwrap();
    assert_eq!(listed.items.len(), 1, "an Agent reads apps");
    assert!(listed.items[0].definition.is_empty(), "lists leave definitions out");

    // Bob is a member of the US org only: the EU org's app does not exist for him, exactly
    // as an org that does not exist at all.
    let mut sink = Vec::new();
    let hidden = bob.export_app(eu, &app.id, &mut sink, None).await.expect_err("outsider export");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden}");
    assert!(hidden.message().contains(eu) && !hidden.message().contains(&app.id), "{}", hidden.message());
    assert!(sink.is_empty());
    refused(bob.get_app(eu, &app.id, Consistency::Linearizable).await, Code::NotFound, eu);
    w.shutdown().await;
}
