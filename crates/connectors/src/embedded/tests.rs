//! Unit tests for the embedded directory, each on its own temp directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::*;
use crate::pin::hash_pin;
use resetline_engine::Directory;

const ALEX_PIN: &str = "48213579";

/// Hashes for the fixture, computed once per test binary (Argon2 is slow on purpose).
fn hashes() -> &'static [String; 2] {
    static HASHES: OnceLock<[String; 2]> = OnceLock::new();
    HASHES.get_or_init(|| {
        [
            hash_pin(&Secret::new(ALEX_PIN)).unwrap(),
            hash_pin(&Secret::new("70315926")).unwrap(),
        ]
    })
}

fn fixture(global: bool) -> String {
    let [alex, other] = hashes();
    format!(
        r#"# comment
allow_phone_reset: {global}
users:
  - id: "100001"
    name: Alex Rivera
    mobile: "+15555550199"
    email: Alex.Rivera@Example.com
    state: active
    birth_date: "1987-04-12"
    pin_hash: "{alex}"
  - id: "100002"
    name: Blake Chen
    mobile: "+15555550142"
    email: blake@example.com
    state: locked
    pin_hash: "{other}"
  - id: "100003"
    name: Casey Diaz
    mobile: "+15555550163"
    state: disabled
    pin_hash: "{other}"
  - id: "100004"
    name: Dana Evans
    mobile: "+15555550177"
    email: dana@example.com
    state: active
    allow_phone_reset: false
    pin_hash: "{other}"
  - id: "100005"
    name: Eli Shared
    mobile: "+15555550188"
    email: shared@example.com
    state: active
  - id: "100006"
    name: Fran Shared
    mobile: "+15555550188"
    email: SHARED@example.com
    state: active
    pin_hash: "{other}"
"#
    )
}

fn setup(global: bool) -> (tempfile::TempDir, PathBuf, EmbeddedDirectory) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.yaml");
    std::fs::write(&path, fixture(global)).unwrap();
    let directory = EmbeddedDirectory::load(&path).unwrap();
    (dir, path, directory)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn find(d: &EmbeddedDirectory, by: LookupBy, value: &str) -> Option<String> {
    d.find(by, value).await.unwrap().map(|a| a.id)
}

#[tokio::test]
async fn finds_by_each_attribute() {
    let (_dir, _path, d) = setup(true);
    assert_eq!(
        find(&d, LookupBy::EmployeeId, "100001").await.as_deref(),
        Some("100001")
    );
    assert_eq!(
        find(&d, LookupBy::EmployeeId, " 100002 ").await.as_deref(),
        Some("100002")
    );
    assert_eq!(
        find(&d, LookupBy::Username, "100004").await.as_deref(),
        Some("100004")
    );
    assert_eq!(
        find(&d, LookupBy::Phone, "+15555550199").await.as_deref(),
        Some("100001")
    );
    assert_eq!(
        find(&d, LookupBy::Phone, "+1 (555) 555-0199")
            .await
            .as_deref(),
        Some("100001")
    );
    assert_eq!(
        find(&d, LookupBy::Email, "alex.rivera@example.COM")
            .await
            .as_deref(),
        Some("100001")
    );
    for (by, value) in [
        (LookupBy::EmployeeId, "999999"),
        (LookupBy::EmployeeId, ""),
        (LookupBy::Phone, "5555550199"),
        (LookupBy::Phone, "+"),
        (LookupBy::Email, "nobody@example.com"),
        // Shared by two users: a claim must not pick one of them.
        (LookupBy::Phone, "+15555550188"),
        (LookupBy::Email, "shared@example.com"),
    ] {
        assert_eq!(find(&d, by, value).await, None, "{by:?} {value:?}");
    }
    let alex = d
        .find(LookupBy::EmployeeId, "100001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        alex,
        Account {
            id: "100001".into(),
            name: "Alex Rivera".into(),
            mobile: Some("+15555550199".into()),
            email: Some("Alex.Rivera@Example.com".into()),
            state: AccountState::Active,
            allow_phone_reset: true,
            birth_date: Some("1987-04-12".into()),
        }
    );
    assert_eq!(d.len(), 6);
}

#[tokio::test]
async fn maps_state_and_both_allow_flags() {
    let (_dir, _path, d) = setup(true);
    let get = |id: &'static str| async { d.find(LookupBy::EmployeeId, id).await.unwrap().unwrap() };
    assert_eq!(get("100002").await.state, AccountState::Locked);
    assert_eq!(get("100003").await.state, AccountState::Disabled);
    assert!(!get("100004").await.allow_phone_reset);
    assert!(get("100005").await.allow_phone_reset);
    let (_dir, _path, off) = setup(false);
    let alex = off
        .find(LookupBy::EmployeeId, "100001")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !alex.allow_phone_reset,
        "the global switch overrides the user's flag"
    );
}

#[tokio::test]
async fn verifies_pins() {
    let (_dir, _path, d) = setup(true);
    assert!(
        d.verify_pin("100001", &Secret::new(ALEX_PIN))
            .await
            .unwrap()
    );
    assert!(
        !d.verify_pin("100001", &Secret::new("48213570"))
            .await
            .unwrap()
    );
    assert!(!d.verify_pin("100001", &Secret::new("")).await.unwrap());
    assert!(
        !d.verify_pin("999999", &Secret::new(ALEX_PIN))
            .await
            .unwrap(),
        "unknown account"
    );
    assert!(
        !d.verify_pin("100005", &Secret::new(ALEX_PIN))
            .await
            .unwrap(),
        "account without a PIN"
    );
}

#[tokio::test]
async fn sets_a_pin_and_keeps_every_other_user() {
    let (dir, path, d) = setup(true);
    let before = file::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    d.set_secret("100001", &Secret::new("61728394"))
        .await
        .unwrap();
    assert!(
        d.verify_pin("100001", &Secret::new("61728394"))
            .await
            .unwrap()
    );
    assert!(
        !d.verify_pin("100001", &Secret::new(ALEX_PIN))
            .await
            .unwrap()
    );

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("61728394") && !text.contains(ALEX_PIN),
        "no plaintext PIN in the file"
    );
    let after = file::parse(&path, &text).unwrap();
    assert_eq!(after.users.len(), before.users.len());
    assert_eq!(after.allow_phone_reset, before.allow_phone_reset);
    for (a, b) in after.users.iter().zip(&before.users) {
        if a.id == "100001" {
            let new = a.pin_hash.as_deref().unwrap();
            assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
            assert_ne!(a.pin_hash, b.pin_hash);
            assert_eq!(a.name, b.name);
        } else {
            assert_eq!(a, b);
        }
    }
    assert_eq!(
        entries(dir.path()),
        ["users.yaml"],
        "no temp file left behind"
    );

    let reloaded = EmbeddedDirectory::load(&path).unwrap();
    assert!(
        reloaded
            .verify_pin("100001", &Secret::new("61728394"))
            .await
            .unwrap()
    );
    assert!(
        reloaded
            .verify_pin("100004", &Secret::new("70315926"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn refuses_locked_disabled_not_allowed_and_unknown_accounts() {
    let (_dir, path, d) = setup(true);
    let before = std::fs::read_to_string(&path).unwrap();
    let new = Secret::new("61728394");
    assert_eq!(
        d.set_secret("100002", &new).await,
        Err(SetSecretError::Locked)
    );
    let Err(SetSecretError::Rejected { prompt, .. }) = d.set_secret("100003", &new).await else {
        panic!("disabled")
    };
    assert_eq!(prompt, "not_allowed");
    let Err(SetSecretError::Rejected { prompt, .. }) = d.set_secret("100004", &new).await else {
        panic!("not allowed")
    };
    assert_eq!(prompt, "not_allowed");
    assert!(matches!(
        d.set_secret("999999", &new).await,
        Err(SetSecretError::Backend(_))
    ));
    assert!(matches!(
        d.set_secret("100001", &Secret::new("")).await,
        Err(SetSecretError::Rejected { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "refusals write nothing"
    );

    let (_dir, _path, off) = setup(false);
    assert!(
        matches!(
            off.set_secret("100001", &new).await,
            Err(SetSecretError::Rejected { .. })
        ),
        "global switch off"
    );
}

#[tokio::test]
async fn a_failed_write_changes_nothing() {
    let (dir, path, d) = setup(true);
    // Running as root ignores directory permissions, so make the rename itself fail: the
    // file's place is now taken by a non-empty directory.
    let moved = dir.path().join("moved.yaml");
    std::fs::rename(&path, &moved).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), "x").unwrap();

    let Err(SetSecretError::Backend(e)) = d.set_secret("100001", &Secret::new("61728394")).await
    else {
        panic!("expected a backend error")
    };
    assert_eq!(e.backend, "directory");
    assert!(!e.timeout);
    assert!(e.message.contains("nothing changed"), "{e}");
    assert!(!e.message.contains("61728394"));
    assert!(
        d.verify_pin("100001", &Secret::new(ALEX_PIN))
            .await
            .unwrap(),
        "old PIN still valid in memory"
    );
    assert!(
        !d.verify_pin("100001", &Secret::new("61728394"))
            .await
            .unwrap()
    );
    assert_eq!(
        entries(dir.path()),
        ["moved.yaml", "users.yaml"],
        "temp file removed"
    );
}

#[tokio::test]
async fn a_read_only_directory_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path, d) = setup(true);
    let before = std::fs::read_to_string(&path).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root (CAP_DAC_OVERRIDE) can still write here; the test only means something when the
    // directory really is read-only for this process.
    let enforced = std::fs::write(dir.path().join("probe"), "x").is_err();
    let result = d.set_secret("100001", &Secret::new("61728394")).await;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if enforced {
        assert!(
            matches!(result, Err(SetSecretError::Backend(_))),
            "{result:?}"
        );
        assert!(
            d.verify_pin("100001", &Secret::new(ALEX_PIN))
                .await
                .unwrap()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    } else {
        assert_eq!(result, Ok(()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_are_all_kept() {
    let (_dir, path, d) = setup(true);
    let d = Arc::new(d);
    // Two users at once, one of them twice.
    let pins = [
        ("100001", "61728394"),
        ("100006", "83920174"),
        ("100001", "52839107"),
    ];
    let mut tasks = Vec::new();
    for (id, pin) in pins {
        let d = Arc::clone(&d);
        tasks.push(tokio::spawn(async move {
            d.set_secret(id, &Secret::new(pin)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let reloaded = EmbeddedDirectory::load(&path).unwrap();
    assert!(
        reloaded
            .verify_pin("100006", &Secret::new("83920174"))
            .await
            .unwrap(),
        "100006's change kept"
    );
    let alex_new = [
        reloaded
            .verify_pin("100001", &Secret::new("61728394"))
            .await
            .unwrap(),
        reloaded
            .verify_pin("100001", &Secret::new("52839107"))
            .await
            .unwrap(),
    ];
    assert_eq!(
        alex_new.iter().filter(|m| **m).count(),
        1,
        "one of 100001's two changes is the last"
    );
    for (id, pin) in [
        ("100001", "61728394"),
        ("100001", "52839107"),
        ("100006", "83920174"),
    ] {
        assert_eq!(
            d.verify_pin(id, &Secret::new(pin)).await.unwrap(),
            reloaded.verify_pin(id, &Secret::new(pin)).await.unwrap(),
            "memory and file agree"
        );
    }
    assert_eq!(reloaded.len(), 6);
}

#[test]
fn load_reports_a_missing_file_and_invalid_users() {
    let dir = tempfile::tempdir().unwrap();
    let missing = EmbeddedDirectory::load(dir.path().join("nope.yaml")).unwrap_err();
    assert!(matches!(missing, LoadError::Io { .. }));
    assert!(missing.to_string().contains("nope.yaml"), "{missing}");

    let path = dir.path().join("users.yaml");
    std::fs::write(
        &path,
        "allow_phone_reset: true\nusers:\n  - id: \"1\"\n    name: A\n    state: frozen\n",
    )
    .unwrap();
    let e = EmbeddedDirectory::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("users[0] (id \"1\") `state`: unknown state \"frozen\""),
        "{e}"
    );
}

#[test]
fn debug_shows_no_hash() {
    let (_dir, _path, d) = setup(true);
    let shown = format!("{d:?}");
    assert!(
        shown.contains("EmbeddedDirectory") && shown.contains("users: 6"),
        "{shown}"
    );
    assert!(!shown.contains("argon2"), "{shown}");
}

/// The shipped demo file loads, and each documented PIN opens its account.
#[tokio::test]
async fn demo_users_match_their_documented_pins() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/users.yaml");
    let d = EmbeddedDirectory::load(&path).unwrap();
    for (id, pin) in [
        ("100001", "48213579"),
        ("100002", "73920461"),
        ("100003", "15926037"),
        ("100004", "60481935"),
        ("100005", "29374816"),
    ] {
        assert!(d.verify_pin(id, &Secret::new(pin)).await.unwrap(), "{id}");
    }
    let alex = d
        .find(LookupBy::Phone, "+15555550199")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (alex.id.as_str(), alex.state, alex.allow_phone_reset),
        ("100001", AccountState::Active, true)
    );
}
