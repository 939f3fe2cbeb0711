//! The dev signing key: made once with mode 0600, reused, and its tokens verify.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orgplane_auth::dev_key::{self, DEV_KEY_DIR, PUBLIC_KEY_FILE, SIGNING_KEY_FILE};
use orgplane_auth::{AuthError, JwtAlgorithm, Principal, SetupError};

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DEV_KEY_DIR).join(SIGNING_KEY_FILE)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_key_is_made_once_private_and_its_tokens_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = dev_key::ensure(dir.path()).unwrap();
    assert_eq!(mode(&key_path(dir.path())), 0o600);
    assert_eq!(mode(&dir.path().join(DEV_KEY_DIR)), 0o700);
    assert_eq!(key.public_key_path(), &dir.path().join(DEV_KEY_DIR).join(PUBLIC_KEY_FILE));
    let config = key.config();
    assert_eq!(
        (config.algorithm, config.issuer.as_str(), config.audience.as_str()),
        (JwtAlgorithm::EdDsa, "orgplane-dev", "orgplane")
    );
    let private_before = std::fs::read(key_path(dir.path())).unwrap();

    let admin = key.token("ops", true, None, Duration::from_secs(3600)).unwrap();
    let user = key.token("alice", false, Some("alice@example.com"), Duration::from_secs(3600)).unwrap();

    // A second `ensure` (the next `orgplane dev-token`) reuses the key: earlier tokens verify.
    let again = dev_key::ensure(dir.path()).unwrap();
    assert_eq!(std::fs::read(key_path(dir.path())).unwrap(), private_before);
    let verifier = again.verifier().unwrap();
    assert_eq!(
        verifier.verify(&format!("Bearer {admin}")).unwrap(),
        Principal { subject: "ops".into(), platform_admin: true, email: None }
    );
    assert_eq!(
        verifier.verify(&format!("Bearer {user}")).unwrap(),
        Principal { subject: "alice".into(), platform_admin: false, email: Some("alice@example.com".into()) }
    );
}

#[test]
fn tokens_expire_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let key = dev_key::ensure(dir.path()).unwrap();
    let token = key.token("alice", false, None, Duration::from_secs(60)).unwrap();
    let verifier = key.verifier().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let leeway = key.config().leeway_secs;
    // Whatever second the token was made in, it is expired once 60 s + leeway + 2 s have passed.
    assert_eq!(verifier.verify_at(&format!("Bearer {token}"), now + 60 + leeway + 2), Err(AuthError::Expired));
    assert!(key.token("", false, None, Duration::from_secs(60)).is_err());
    assert!(key.token("alice", false, None, Duration::ZERO).is_err());
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    dev_key::ensure(dir.path()).unwrap();
    std::fs::set_permissions(key_path(dir.path()), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(dev_key::ensure(dir.path()), Err(SetupError::LooseKeyPermissions { mode: 0o644, .. })));
}

#[test]
fn a_lost_or_altered_public_key_is_rewritten_from_the_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dev_key::ensure(dir.path()).unwrap();
    let public = std::fs::read(key.public_key_path()).unwrap();
    let token = key.token("alice", false, None, Duration::from_secs(600)).unwrap();

    std::fs::write(key.public_key_path(), "garbage").unwrap();
    let key = dev_key::ensure(dir.path()).unwrap();
    assert_eq!(std::fs::read(key.public_key_path()).unwrap(), public);
    std::fs::remove_file(key.public_key_path()).unwrap();
    let key = dev_key::ensure(dir.path()).unwrap();
    assert_eq!(key.verifier().unwrap().verify(&format!("Bearer {token}")).unwrap().subject, "alice");
}

#[test]
fn processes_racing_to_make_the_key_end_up_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let barrier = std::sync::Barrier::new(4);
    let made: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let key = dev_key::ensure(dir.path()).unwrap();
                    let token = key.token("alice", false, None, Duration::from_secs(600)).unwrap();
                    (token, std::fs::read_to_string(key.public_key_path()).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Whichever thread made the key, every thread signed with the one on disk at the end.
    let verifier = dev_key::ensure(dir.path()).unwrap().verifier().unwrap();
    for (token, _) in &made {
        assert!(verifier.verify(&format!("Bearer {token}")).is_ok());
    }
    let publics: Vec<&String> = made.iter().map(|(_, public)| public).collect();
    assert!(publics.windows(2).all(|w| w[0] == w[1]));
}
