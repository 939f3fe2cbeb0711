//! The `orgplane` binary as an operator runs it: `orgplane node` from flags or a config file,
//! `orgplane dev`, gRPC health and reflection, and a clean exit on SIGTERM and Ctrl-C.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const BIN: &str = env!("CARGO_BIN_EXE_orgplane");
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_timeout(Duration::from_secs(1)).connect_lazy()
}

/// Waits until the health service at `addr` answers SERVING for `service`.
async fn wait_serving(addr: &str, service: &str, child: &mut Child) {
    let deadline = Instant::now() + WAIT;
    let mut health = HealthClient::new(channel(addr));
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("process exited early with {status}");
        }
        let mut req = tonic::Request::new(HealthCheckRequest { service: service.into() });
        req.set_timeout(Duration::from_secs(1));
        if let Ok(resp) = health.check(req).await {
            if resp.into_inner().status == ServingStatus::Serving as i32 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{addr} not SERVING within {WAIT:?}");
        // Polling a remote process: nothing to subscribe to, so a short pause between checks.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `signal` and waits for a clean exit.
fn stop_with(child: &mut Child, signal: &str) {
    let ok = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit after SIG{signal}: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "no exit within {WAIT:?} after SIG{signal}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_node_from_flags_serves_health_and_reflection_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(BIN)
        .args(["node", "--allow-unauthenticated", "--region", "eu", "--node-id", "1", "--listen", &addr])
        .arg("--data-dir")
        .arg(dir.path().join("n1"))
        .args(["--peers", &format!("1={addr}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_serving(&addr, "", &mut child).await;
    wait_serving(&addr, "orgplane.v1.OrgService", &mut child).await;

    // Reflection lists the public services, so generic gRPC clients work.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel(&addr));
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"orgplane.v1.OrgService".to_string()), "{names:?}");

    stop_with(&mut child, "TERM");
}

#[tokio::test]
async fn a_node_from_a_config_file_with_a_flag_override() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "region = \"us\"\nnode-id = 1\nlisten = \"127.0.0.1:1\"\ndata-dir = \"{}\"\nheartbeat-ms = 100\n\n[peers]\n1 = \"{addr}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    // --listen overrides the file's (unusable) address.
    let mut child = Command::new(BIN)
        .args(["node", "--allow-unauthenticated", "--listen", &addr])
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_serving(&addr, "", &mut child).await;
    stop_with(&mut child, "INT");
}

/// A node or router with neither token verification (`[auth]`) nor `--allow-unauthenticated`,
/// or with both, refuses to start and says what to do; and exits, rather than serving.
#[test]
fn no_authentication_configured_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("d").display().to_string();
    let node = ["node", "--region", "eu", "--node-id", "1", "--listen", "127.0.0.1:0", "--peers", "1=127.0.0.1:1"];
    let node: Vec<&str> = node.into_iter().chain(["--data-dir", &data_dir]).collect();
    let router = vec!["router", "--listen", "127.0.0.1:0", "--region", "eu=127.0.0.1:1"];
    let with_auth = dir.path().join("auth.toml");
    std::fs::write(
        &with_auth,
        "[auth]\nalgorithm = \"EdDSA\"\nkey-file = \"/k.pem\"\nissuer = \"i\"\naudience = \"a\"\n",
    )
    .unwrap();
    for args in [node, router] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} started without authentication");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("auth is not configured") && stderr.contains("--allow-unauthenticated"), "{stderr}");

        let out = Command::new(BIN).args(&args).args(["--allow-unauthenticated", "--config"]).arg(&with_auth).output();
        let out = out.unwrap();
        assert!(!out.status.success(), "{args:?} started with both");
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be combined"), "{args:?}");
    }
    assert!(!dir.path().join("d").exists(), "a refused node wrote nothing");
}

/// `orgplane dev-token` makes the dev key once and prints a token that verifies against it.
#[test]
fn dev_token_prints_a_token_of_the_dev_key() {
    let dir = tempfile::tempdir().unwrap();
    let token = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["dev-token", "--user", "alice"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let admin = token(&["--platform-admin", "--ttl", "1h"]);
    let user = token(&[]);
    let verifier = orgplane_auth::dev_key::ensure(dir.path()).unwrap().verifier().unwrap();
    let principal = verifier.verify(&format!("Bearer {admin}")).expect("the admin token verifies");
    assert_eq!((principal.subject.as_str(), principal.platform_admin), ("alice", true));
    let principal = verifier.verify(&format!("Bearer {user}")).expect("a second token, same key");
    assert!(!principal.platform_admin);

    let out = Command::new(BIN).args(["dev-token", "--user", "alice", "--ttl", "0s"]).output().unwrap();
    assert!(!out.status.success(), "a zero lifetime is refused");
}

#[test]
fn bad_configuration_is_refused_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        vec!["node", "--region", "mars", "--node-id", "1", "--listen", "127.0.0.1:0", "--peers", "1=127.0.0.1:1"],
        vec!["node", "--region", "eu", "--node-id", "4", "--listen", "127.0.0.1:0", "--peers", "1=127.0.0.1:1"],
        vec!["node", "--region", "eu", "--node-id", "1", "--listen", "127.0.0.1:0", "--peers", "1=nope"],
        vec!["router", "--listen", "127.0.0.1:0", "--region", "mars=127.0.0.1:1"],
    ];
    for args in bad {
        let out = Command::new(BIN).args(&args).arg("--data-dir").arg(dir.path()).output().unwrap();
        assert!(!out.status.success(), "{args:?} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Error") || stderr.contains("error"), "{args:?}: {stderr}");
    }
    let unknown_key = dir.path().join("bad.toml");
    std::fs::write(&unknown_key, "region = \"eu\"\nnode-id = 1\nlisten = \"127.0.0.1:0\"\ndata-dir = \"x\"\nbogus = 1\n[peers]\n1 = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(BIN).args(["node", "--config"]).arg(&unknown_key).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"), "names the unknown key");
}

#[tokio::test]
async fn dev_runs_three_regions_and_a_router_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let router = format!("127.0.0.1:{}", free_port());
    let base = free_port_block(9);
    let log = dir.path().join("dev.log");
    let mut child = Command::new(BIN)
        .args(["dev", "--listen", &router, "--node-base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_serving(&router, "", &mut child).await;
    for region in ["us", "eu", "apac"] {
        for node in 1..=3 {
            assert!(dir.path().join("data").join(region).join(format!("node-{node}")).is_dir(), "{region}/node-{node}");
        }
    }
    stop_with(&mut child, "INT");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("router on"), "prints what it started: {stderr}");
    assert!(stderr.contains("stopped"), "says it stopped: {stderr}");
}

/// A run of `n` consecutive free ports (checked by binding them).
fn free_port_block(n: u16) -> u16 {
    for _ in 0..100 {
        let start = free_port();
        if start > u16::MAX - n {
            continue;
        }
        let held: Vec<_> = (start..start + n).filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok()).collect();
        if held.len() == n as usize {
            return start;
        }
    }
    panic!("no block of {n} free ports");
}

/// `orgplane restore` as an operator runs it: a backup of a running node's region, refused
/// when damaged or of another region (writing nothing), restored into a new data dir, and a
/// new `orgplane node` started on it that serves the backed-up org and takes writes.
#[tokio::test]
async fn restore_seeds_a_new_node_that_serves_the_backup() {
    use orgplane_client::{Client, Consistency};
    use orgplane_model::Region;

    let dir = tempfile::tempdir().unwrap();
    let old_addr = format!("127.0.0.1:{}", free_port());
    let mut old = Command::new(BIN)
        .args(["node", "--allow-unauthenticated", "--region", "eu", "--node-id", "1", "--listen", &old_addr])
        .args(["--peers", &format!("1={old_addr}")])
        .arg("--data-dir")
        .arg(dir.path().join("old"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_serving(&old_addr, "orgplane.v1.OrgService", &mut old).await;
    let client = Client::connect(&old_addr).unwrap();
    let org = client.create_org(Region::Eu, "Backed up").await.unwrap();

    let file = dir.path().join("eu.opb");
    let mut stream = client.backup(Region::Eu).await.unwrap();
    let mut writer =
        orgplane_backup::BackupWriter::new(std::fs::File::create(&file).unwrap(), stream.header().clone()).unwrap();
    while let Some(data) = stream.next_data().await.unwrap() {
        writer.write_data(&data).unwrap();
    }
    writer.finish(stream.data_crc32().unwrap()).unwrap();
    stop_with(&mut old, "TERM");

    let new_addr = format!("127.0.0.1:{}", free_port());
    let peers = format!("1={new_addr}");
    let restore = |region: &str, from: &std::path::Path, data_dir: &std::path::Path| {
        Command::new(BIN)
            .args(["restore", "--region", region, "--node-id", "1", "--peers", &peers])
            .arg("--from")
            .arg(from)
            .arg("--data-dir")
            .arg(data_dir)
            .output()
            .unwrap()
    };
    let new_dir = dir.path().join("new");

    let out = restore("us", &file, &new_dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is of region eu, not us"), "{out:?}");
    let mut bytes = std::fs::read(&file).unwrap();
    let last_data_byte = bytes.len() - 9;
    bytes[last_data_byte] ^= 0x80;
    let damaged = dir.path().join("damaged.opb");
    std::fs::write(&damaged, bytes).unwrap();
    let out = restore("eu", &damaged, &new_dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"), "{out:?}");
    assert!(!new_dir.exists(), "a refused restore writes nothing");

    let out = restore("eu", &file, &new_dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("restored region eu at log index"), "{stdout}");
    assert!(stdout.contains(&format!("--data-dir {}", new_dir.display())), "says how to start the node: {stdout}");

    let mut new = Command::new(BIN)
        .args(["node", "--allow-unauthenticated", "--region", "eu", "--node-id", "1", "--listen", &new_addr])
        .args(["--peers", &peers])
        .arg("--data-dir")
        .arg(&new_dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_serving(&new_addr, "orgplane.v1.OrgService", &mut new).await;
    let client = Client::connect(&new_addr).unwrap();
    assert_eq!(client.get_org(&org.id, Consistency::Linearizable).await.unwrap().org, org);
    client.add_member(&org.id, "alice", orgplane_model::Role::Admin).await.unwrap();
    let membership = client.membership(Region::Eu).await.unwrap();
    let addresses: Vec<&str> = membership.members.iter().map(|m| m.address.as_str()).collect();
    assert_eq!(addresses, [new_addr.as_str()], "the new cluster's own address, not the old one");
    stop_with(&mut new, "TERM");
}
