//! `LdapDirectory` against a real OpenLDAP `slapd` (Debian 2.5) with the ppolicy overlay,
//! started on 127.0.0.1 by `resetline_connectors::testing::Slapd` with seeded users.

use std::time::{Duration, Instant};

use ldap3::LdapConnAsync;
use resetline_connectors::LdapDirectory;
use resetline_connectors::testing::{self, Slapd};
use resetline_engine::{AccountState, Directory, Secret, SetSecretError};
use resetline_flow::model::LookupBy;

fn slapd() -> Slapd {
    Slapd::start().unwrap_or_else(|e| panic!("cannot start slapd: {e}"))
}

fn directory(s: &Slapd) -> LdapDirectory {
    LdapDirectory::new(s.config()).expect("config")
}

/// A simple bind as `dn` with `password` on a fresh connection: the result code.
async fn bind(url: &str, dn: &str, password: &str) -> u32 {
    let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect");
    tokio::spawn(conn.drive());
    let rc = ldap.simple_bind(dn, password).await.expect("bind").rc;
    let _ = ldap.unbind().await;
    rc
}

/// `attr` of `dn`, read as the rootdn.
async fn admin_read(url: &str, dn: &str, attr: &str) -> Vec<String> {
    let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect");
    tokio::spawn(conn.drive());
    ldap.simple_bind(testing::ADMIN_DN, testing::ADMIN_PASSWORD)
        .await
        .expect("bind")
        .success()
        .expect("admin bind");
    let (entries, _) = ldap
        .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec![attr])
        .await
        .expect("search")
        .success()
        .expect("search ok");
    let entry = ldap3::SearchEntry::construct(entries.into_iter().next().expect("entry"));
    entry
        .attrs
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[tokio::test]
async fn finds_users_by_each_configured_attribute() {
    let s = slapd();
    let d = directory(&s);
    let alex = d
        .find(LookupBy::EmployeeId, "100001")
        .await
        .expect("find")
        .expect("Alex");
    assert_eq!(alex.id, "100001");
    assert_eq!(alex.name, "Alex Rivera");
    assert_eq!(alex.mobile.as_deref(), Some("+15555550199"));
    assert_eq!(alex.email.as_deref(), Some("alex.rivera@example.com"));
    assert_eq!(alex.state, AccountState::Active);
    assert!(alex.allow_phone_reset);
    for (by, value) in [
        (LookupBy::Username, "100001"),
        (LookupBy::Phone, "+15555550199"),
        // telephoneNumberMatch ignores spaces and hyphens.
        (LookupBy::Phone, "+1 555 555-0199"),
        (LookupBy::Email, "Alex.Rivera@example.com"),
        (LookupBy::EmployeeId, "  100001 "),
    ] {
        let found = d.find(by, value).await.expect("find");
        assert_eq!(
            found.map(|a| a.id).as_deref(),
            Some("100001"),
            "{by:?} {value}"
        );
    }
    for (by, value) in [
        (LookupBy::EmployeeId, "999999"),
        (LookupBy::EmployeeId, ""),
        // Two entries share this mobile: a claim never picks one of them.
        (LookupBy::Phone, "+15555550111"),
    ] {
        assert_eq!(
            d.find(by, value).await.expect("find"),
            None,
            "{by:?} {value}"
        );
    }
}

#[tokio::test]
async fn filter_injection_finds_nobody() {
    let s = slapd();
    let d = directory(&s);
    // Unescaped, each of these would select exactly one entry (100002, Blake Chen).
    for value in ["*2", "100002)(uid=nobody", "*)(uid=100002", "100002\\"] {
        for by in [LookupBy::EmployeeId, LookupBy::Username, LookupBy::Phone] {
            let found = d.find(by, value).await.expect("a lookup, not an error");
            assert_eq!(found, None, "{by:?} {value:?}");
        }
    }
    // The escaped filter is still an ordinary equality match.
    assert!(
        d.find(LookupBy::Username, "100002")
            .await
            .expect("find")
            .is_some()
    );
}

#[tokio::test]
async fn locked_and_disabled_accounts_are_reported_and_never_reset() {
    let s = slapd();
    let d = directory(&s);
    let blake = d.find(LookupBy::EmployeeId, "100002").await.expect("find");
    assert_eq!(blake.map(|a| a.state), Some(AccountState::Locked));
    let casey = d.find(LookupBy::EmployeeId, "100003").await.expect("find");
    assert_eq!(casey.map(|a| a.state), Some(AccountState::Disabled));

    let locked = d.set_secret("100002", &Secret::new("58204617")).await;
    assert_eq!(locked, Err(SetSecretError::Locked));
    match d.set_secret("100003", &Secret::new("58204617")).await {
        Err(SetSecretError::Rejected { prompt, .. }) => assert_eq!(prompt, "not_allowed"),
        other => panic!("{other:?}"),
    }
    // Nothing was changed: an administrator's password change would have lifted the lock.
    let url = s.url();
    assert_eq!(
        admin_read(&url, &testing::user_dn("100003"), "pwdAccountLockedTime").await,
        vec!["000001010000Z".to_string()]
    );
    assert_eq!(
        admin_read(&url, &testing::user_dn("100002"), "pwdAccountLockedTime").await,
        vec!["20260101000000Z".to_string()]
    );
}

#[tokio::test]
async fn a_reset_sets_the_password_and_the_user_can_bind_with_it() {
    let s = slapd();
    let d = directory(&s);
    let dn = testing::user_dn("100001");
    d.set_secret("100001", &Secret::new("58204617"))
        .await
        .expect("reset");
    assert_eq!(
        bind(&s.url(), &dn, "58204617").await,
        0,
        "new password binds"
    );
    assert_eq!(
        bind(&s.url(), &dn, "31415926").await,
        49,
        "old password no longer does"
    );
    // The change went through ppolicy as the service account: it is in the history now.
    assert!(!admin_read(&s.url(), &dn, "pwdChangedTime").await.is_empty());
    assert!(!admin_read(&s.url(), &dn, "pwdHistory").await.is_empty());
    // PIN checks by bind follow the new secret.
    let by_bind = LdapDirectory::new(s.bind_mode_config()).expect("config");
    assert!(
        by_bind
            .verify_pin("100001", &Secret::new("58204617"))
            .await
            .expect("verify")
    );
    assert!(
        !by_bind
            .verify_pin("100001", &Secret::new("31415926"))
            .await
            .expect("verify")
    );
}

#[tokio::test]
async fn ppolicy_refusals_come_back_as_spoken_reasons() {
    let s = slapd();
    let d = directory(&s);
    let rejected = |r: Result<(), SetSecretError>| match r {
        Err(SetSecretError::Rejected { prompt, reason }) => (prompt, reason),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let (prompt, reason) = rejected(d.set_secret("100001", &Secret::new("1234")).await);
    assert_eq!(prompt, "policy_too_short");
    assert!(
        reason.contains("LDAP result 19") && reason.contains("ppolicy error 6"),
        "{reason}"
    );
    assert!(!reason.contains("1234"), "the secret is not in the reason");

    d.set_secret("100001", &Secret::new("58204617"))
        .await
        .expect("first change");
    d.set_secret("100001", &Secret::new("70315826"))
        .await
        .expect("second change");
    let (prompt, reason) = rejected(d.set_secret("100001", &Secret::new("58204617")).await);
    assert_eq!(prompt, "policy_reused");
    assert!(reason.contains("history"), "{reason}");

    // 100004 is under a policy with a one-day pwdMinAge.
    d.set_secret("100004", &Secret::new("58204617"))
        .await
        .expect("first change");
    let (prompt, reason) = rejected(d.set_secret("100004", &Secret::new("70315826")).await);
    assert_eq!(prompt, "policy_too_recent");
    assert!(reason.contains("too young"), "{reason}");
}

#[tokio::test]
async fn pins_check_by_bind_or_against_a_hash_attribute() {
    let s = slapd();
    let d = LdapDirectory::new(s.bind_mode_config()).expect("config");
    assert!(
        d.verify_pin("100001", &Secret::new("31415926"))
            .await
            .expect("verify")
    );
    assert!(
        !d.verify_pin("100001", &Secret::new("31415927"))
            .await
            .expect("verify")
    );
    assert!(
        !d.verify_pin("100001", &Secret::new(""))
            .await
            .expect("verify"),
        "an empty PIN is never an anonymous bind success"
    );
    assert!(
        !d.verify_pin("999999", &Secret::new("31415926"))
            .await
            .expect("verify")
    );

    let hashed = directory(&s);
    // The demo PIN of examples/demo/README.md, hashed in the entry.
    assert!(
        hashed
            .verify_pin("100001", &Secret::new("48213579"))
            .await
            .expect("verify")
    );
    assert!(
        !hashed
            .verify_pin("100001", &Secret::new("31415926"))
            .await
            .expect("verify")
    );
    assert!(
        !hashed
            .verify_pin("100002", &Secret::new("27182818"))
            .await
            .expect("verify"),
        "no hash: wrong, whatever is typed"
    );
    let weak = hashed
        .verify_pin("100005", &Secret::new("11235813"))
        .await
        .expect_err("a hash below the floor is not used");
    assert!(weak.message.contains("weaker"), "{weak}");
    assert!(!weak.message.contains("c29tZXNhbHRzb21lc2FsdA"), "{weak}");
}

#[tokio::test]
async fn a_stopped_server_is_a_backend_error_and_a_silent_one_a_timeout() {
    let mut s = slapd();
    let d = directory(&s);
    assert!(
        d.find(LookupBy::EmployeeId, "100001")
            .await
            .expect("up")
            .is_some()
    );
    s.stop();
    let e = d
        .find(LookupBy::EmployeeId, "100001")
        .await
        .expect_err("slapd is down");
    assert_eq!(e.backend, "directory");
    match d.set_secret("100001", &Secret::new("58204617")).await {
        Err(SetSecretError::Backend(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        d.verify_pin("100001", &Secret::new("31415926"))
            .await
            .is_err()
    );

    // A server that accepts connections and never answers: the deadline ends every call.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        let conns: Vec<_> = silent.incoming().take(2).collect();
        std::thread::sleep(Duration::from_secs(3));
        drop(conns);
    });
    let mut cfg = s.config();
    cfg.url = format!("ldap://127.0.0.1:{port}");
    cfg.timeout = Duration::from_millis(300);
    let d = LdapDirectory::new(cfg).expect("config");
    let started = Instant::now();
    let e = d
        .find(LookupBy::EmployeeId, "100001")
        .await
        .expect_err("no answer");
    assert!(e.timeout, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(held);
}

/// Established TCP connections from this machine to 127.0.0.1:`port` (client side).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == remote && f[3] == "01"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_share_one_service_connection() {
    let s = slapd();
    let d = std::sync::Arc::new(directory(&s));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let by = if i % 2 == 0 {
                LookupBy::EmployeeId
            } else {
                LookupBy::Phone
            };
            let value = if i % 2 == 0 { "100001" } else { "+15555550199" };
            d.find(by, value).await
        }));
    }
    for t in tasks {
        assert!(t.await.expect("task").expect("find").is_some());
    }
    assert_eq!(connections_to(s.port()), 1, "one shared connection");
}

#[tokio::test]
async fn the_shared_connection_is_replaced_after_the_server_restarts() {
    let mut s = slapd();
    let d = directory(&s);
    for _ in 0..3 {
        assert!(
            d.find(LookupBy::EmployeeId, "100001")
                .await
                .expect("find")
                .is_some()
        );
    }
    s.restart().expect("restart");
    // The cached connection died with the old process; the next call reconnects by itself.
    assert!(
        d.find(LookupBy::EmployeeId, "100001")
            .await
            .expect("reconnected")
            .is_some()
    );
    d.set_secret("100001", &Secret::new("58204617"))
        .await
        .expect("reset after reconnect");
}

#[tokio::test]
async fn a_wrong_service_password_is_a_clear_backend_error() {
    let s = slapd();
    let mut cfg = s.config();
    cfg.bind_password = Secret::new("not-the-password");
    let d = LdapDirectory::new(cfg).expect("config");
    let e = d
        .find(LookupBy::EmployeeId, "100001")
        .await
        .expect_err("bind refused");
    assert!(
        e.message.contains("could not bind") && e.message.contains("49"),
        "{e}"
    );
    assert!(!e.message.contains("not-the-password"), "{e}");
}

#[tokio::test]
async fn tls_by_ldaps_and_starttls_with_a_private_ca() {
    let s = Slapd::start_with_tls().unwrap_or_else(|e| panic!("cannot start slapd: {e}"));
    let ca = s.ca_file().expect("ca");
    let mut ldaps = s.config();
    ldaps.url = s.ldaps_url().expect("ldaps url");
    ldaps.ca_file = Some(ca.clone());
    let d = LdapDirectory::new(ldaps.clone()).expect("config");
    assert!(
        d.find(LookupBy::EmployeeId, "100001")
            .await
            .expect("ldaps")
            .is_some()
    );
    d.set_secret("100001", &Secret::new("58204617"))
        .await
        .expect("reset over ldaps");

    let mut starttls = s.config();
    starttls.url = s.url().replace("127.0.0.1", "localhost");
    starttls.starttls = true;
    starttls.ca_file = Some(ca);
    let d = LdapDirectory::new(starttls).expect("config");
    assert!(
        d.find(LookupBy::EmployeeId, "100001")
            .await
            .expect("starttls")
            .is_some()
    );

    // Without the private CA the server's certificate is not trusted.
    let mut untrusted = ldaps;
    untrusted.ca_file = None;
    let d = LdapDirectory::new(untrusted).expect("config");
    assert!(d.find(LookupBy::EmployeeId, "100001").await.is_err());
}

/// The number of `pwdFailureTime` values of `uid` (failed binds ppolicy has on record).
async fn failures_on_record(url: &str, uid: &str) -> usize {
    admin_read(url, &testing::user_dn(uid), "pwdFailureTime")
        .await
        .len()
}

/// PIN checks by bind, as a deployment must ask for them explicitly.
fn bind_mode(s: &Slapd) -> resetline_connectors::LdapConfig {
    s.bind_mode_config()
}

#[tokio::test]
async fn wrong_pins_on_the_phone_never_lock_the_directory_login() {
    let s = slapd();
    let d = directory(&s);
    // More wrong PINs than the default policy's pwdMaxFailure (5).
    for pin in [
        "11111111", "22222222", "33333333", "44444444", "55555555", "66666666",
    ] {
        assert!(
            !d.verify_pin("100001", &Secret::new(pin))
                .await
                .expect("verify")
        );
    }
    assert_eq!(
        failures_on_record(&s.url(), "100001").await,
        0,
        "the default PIN check never touches the directory login"
    );
    assert_eq!(
        bind(&s.url(), &testing::user_dn("100001"), "31415926").await,
        0,
        "the person still logs in"
    );
}

#[tokio::test]
async fn pin_binds_stop_before_the_directory_lockout_threshold() {
    let s = slapd();
    let d = LdapDirectory::new(bind_mode(&s)).expect("config");
    let dn = testing::user_dn("100001");
    let mut wrong = 0;
    for pin in [
        "11111111", "22222222", "33333333", "44444444", "55555555", "66666666",
    ] {
        match d.verify_pin("100001", &Secret::new(pin)).await {
            Ok(matched) => {
                assert!(!matched);
                wrong += 1;
            }
            Err(e) => assert!(e.message.contains("lockout"), "{e}"),
        }
    }
    // pwdMaxFailure is 5: Resetline stops while the person still has two attempts of their own.
    assert_eq!(wrong, 3, "binds made before the guard refused");
    assert_eq!(failures_on_record(&s.url(), "100001").await, 3);
    assert_eq!(
        bind(&s.url(), &dn, "31415926").await,
        0,
        "the person still logs in"
    );
}

#[tokio::test]
async fn a_users_own_policy_sets_the_threshold_and_their_own_failures_count() {
    let s = slapd();
    let d = LdapDirectory::new(bind_mode(&s)).expect("config");
    // 100007 is under `cn=tight` (pwdMaxFailure 3): one phone attempt, then the guard.
    assert!(
        !d.verify_pin("100007", &Secret::new("11111111"))
            .await
            .expect("verify")
    );
    let e = d
        .verify_pin("100007", &Secret::new("22222222"))
        .await
        .expect_err("guard");
    assert!(e.message.contains("locks at 3"), "{e}");
    assert_eq!(failures_on_record(&s.url(), "100007").await, 1);
    assert_eq!(s.user_bind("100007", "17320508").await, Ok(0));

    // Failures of the person's own (a desktop typo) count too: with two on record for
    // 100001 and the default policy's 5, the phone gets one more attempt.
    for _ in 0..2 {
        assert_eq!(s.user_bind("100001", "wrong-password").await, Ok(49));
    }
    assert!(
        !d.verify_pin("100001", &Secret::new("11111111"))
            .await
            .expect("verify")
    );
    assert!(
        d.verify_pin("100001", &Secret::new("22222222"))
            .await
            .is_err()
    );
    assert_eq!(failures_on_record(&s.url(), "100001").await, 3);
    // The right PIN is still refused while the count is that high, and the person's own
    // login works and clears the count; then the phone may check again.
    assert!(
        d.verify_pin("100001", &Secret::new("31415926"))
            .await
            .is_err()
    );
    assert_eq!(s.user_bind("100001", "31415926").await, Ok(0));
    assert_eq!(failures_on_record(&s.url(), "100001").await, 0);
    assert!(
        d.verify_pin("100001", &Secret::new("31415926"))
            .await
            .expect("verify")
    );
}

#[tokio::test]
async fn without_a_readable_threshold_no_pin_bind_is_made() {
    let s = slapd();
    let mut cfg = bind_mode(&s);
    cfg.pin_check = resetline_connectors::PinCheck::BindCountsTowardDirectoryLockout(
        resetline_connectors::BindGuard {
            policy_dn: Some(format!("cn=missing,ou=policies,{}", testing::BASE_DN)),
            max_failures: None,
        },
    );
    let d = LdapDirectory::new(cfg.clone()).expect("config");
    let e = d
        .verify_pin("100001", &Secret::new("31415926"))
        .await
        .expect_err("no threshold known");
    assert!(e.message.contains("max_failures"), "{e}");
    assert_eq!(failures_on_record(&s.url(), "100001").await, 0);
    // The configured fallback is used when the entry cannot be read.
    cfg.pin_check = resetline_connectors::PinCheck::BindCountsTowardDirectoryLockout(
        resetline_connectors::BindGuard {
            policy_dn: Some(format!("cn=missing,ou=policies,{}", testing::BASE_DN)),
            max_failures: Some(4),
        },
    );
    let d = LdapDirectory::new(cfg).expect("config");
    assert!(
        d.verify_pin("100001", &Secret::new("31415926"))
            .await
            .expect("verify")
    );
}

#[tokio::test]
async fn unknown_ids_do_as_much_work_as_known_ones() {
    let s = slapd();
    // Hash mode: an unknown account runs a dummy check of the same cost as a real one; bind
    // mode: an unknown account binds to an entry that does not exist.
    let hashed = directory(&s);
    let by_bind = LdapDirectory::new(bind_mode(&s)).expect("config");
    for d in [&hashed, &by_bind] {
        assert!(
            !d.verify_pin("999999", &Secret::new("31415926"))
                .await
                .expect("verify")
        );
    }
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..15 {
        let started = std::time::Instant::now();
        let _ = hashed.verify_pin("100001", &Secret::new("11235813")).await;
        known.push(started.elapsed());
        let started = std::time::Instant::now();
        let _ = hashed.verify_pin("999999", &Secret::new("11235813")).await;
        unknown.push(started.elapsed());
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[7], unknown[7]);
    eprintln!("hash mode medians: known {k:?}, unknown {u:?}");
    assert!(
        k.max(u) - k.min(u) < Duration::from_millis(50),
        "known {k:?}, unknown {u:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_pins_cannot_pass_the_guard_together() {
    let s = slapd();
    let d = std::sync::Arc::new(LdapDirectory::new(bind_mode(&s)).expect("config"));
    let checks: Vec<_> = (0..8)
        .map(|i| {
            let d = d.clone();
            tokio::spawn(async move {
                d.verify_pin("100001", &Secret::new(format!("1111000{i}")))
                    .await
            })
        })
        .collect();
    let mut binds = 0;
    for c in checks {
        if c.await.expect("task").is_ok() {
            binds += 1;
        }
    }
    assert!(binds <= 3, "{binds} binds");
    assert!(failures_on_record(&s.url(), "100001").await <= 3);
    assert_eq!(s.user_bind("100001", "31415926").await, Ok(0));
}
