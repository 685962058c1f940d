//! The reference flow with its directory in LDAP: a real OpenLDAP `slapd` with ppolicy
//! (`resetline_connectors::testing::Slapd`), the real `resetline serve` binary configured by a
//! `resetline.yaml` whose only difference from an embedded deployment is the `directory:`
//! section, and the local provider fakes of `support/`.

use crate::support;

use resetline_connectors::LdapDirectory;
use resetline_connectors::testing::{self, Slapd};
use resetline_engine::{Directory, Secret};
use support::BASE;

const LDAP_PASSWORD_ENV: &str = "RESETLINE_TEST_LDAP_PASSWORD";

/// Starts `resetline serve` for the reference flows with the fakes at `fake_url` and the
/// directory at `ldap_url`.
async fn serve(dir: &std::path::Path, fake_url: &str, ldap_url: &str) -> support::Served {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let directory = format!(
        "  kind: ldap
  url: \"{ldap_url}\"
  bind_dn: \"{service}\"
  bind_password_env: {LDAP_PASSWORD_ENV}
  base_dn: \"{base}\"
  flavor: openldap
  timeout_ms: 2000
  attributes: {{ pin_hash: {pin_hash} }}
",
        service = testing::SERVICE_DN,
        base = testing::BASE_DN,
        pin_hash = testing::PIN_HASH_ATTRIBUTE,
    );
    support::serve_flows(
        dir,
        &root.join("flows"),
        fake_url,
        &directory,
        support::SMS_ONLY,
        &[(LDAP_PASSWORD_ENV, testing::SERVICE_PASSWORD)],
    )
    .await
}

fn slapd() -> Slapd {
    Slapd::start().unwrap_or_else(|e| panic!("cannot start slapd: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_flow_runs_on_ldap_by_configuration_alone() {
    let ldap = slapd();
    let (fake_url, log) = support::start_providers().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let server = serve(scratch.path(), &fake_url, &ldap.url()).await;

    support::sms_reset_call(server.addr, &server.public, &log).await;

    // The new PIN is now the account's directory password: the user binds with it.
    assert_eq!(ldap.user_bind("100001", "58204617").await, Ok(0));
    assert_eq!(ldap.user_bind("100001", "31415926").await, Ok(49));
    let logs = server.log();
    assert!(!logs.contains("58204617"), "no PIN in the server log");
    assert!(
        !logs.contains(testing::SERVICE_PASSWORD),
        "no service password in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ppolicy_refusal_is_spoken_as_its_reason_and_the_caller_tries_again() {
    let ldap = slapd();
    // 58204617 was used before: it is in the entry's password history.
    let directory = LdapDirectory::new(ldap.config()).expect("directory");
    for pin in ["58204617", "70315826"] {
        directory
            .set_secret("100001", &Secret::new(pin))
            .await
            .expect("earlier change");
    }
    let (fake_url, log) = support::start_providers().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let server = serve(scratch.path(), &fake_url, &ldap.url()).await;
    let (addr, public) = (server.addr, server.public.as_str());

    let mut call = support::verify_by_sms(addr, public, &log).await;
    call.press("58204617").await;
    let resp = call.press("58204617").await;
    assert!(
        resp.contains("You have used that PIN before. Please choose one you have not used."),
        "{resp}"
    );
    assert!(
        resp.contains("Please enter your new PIN"),
        "asked again: {resp}"
    );
    call.press("61829374").await;
    let resp = call.press("61829374").await;
    assert!(
        resp.contains("Your PIN has been changed. Goodbye."),
        "{resp}"
    );
    assert_eq!(ldap.user_bind("100001", "61829374").await, Ok(0));
    // The server's reason reached the log for the desk (never the PIN).
    let logs = server.log();
    assert!(logs.contains("history"), "{logs}");
    assert!(!logs.contains("61829374") && !logs.contains("58204617"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_directory_down_a_call_ends_with_an_agent_never_silence() {
    let mut ldap = slapd();
    let (fake_url, log) = support::start_providers().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let server = serve(scratch.path(), &fake_url, &ldap.url()).await;
    let (addr, public) = (server.addr, server.public.as_str());

    // Down while the caller is in the secure section: the reset fails, the recording resumes
    // and the caller is transferred.
    let mut call = support::verify_by_sms(addr, public, &log).await;
    ldap.stop();
    call.press("58204617").await;
    let resp = call.press("58204617").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(resp.contains("technical trouble"), "{resp}");
    assert!(resp.contains("<Enqueue"), "transferred to the desk: {resp}");
    let resumed = log
        .lock()
        .map(|l| {
            l.iter()
                .filter(|r| r.path.contains("/Recordings/"))
                .any(|r| r.body.contains("Status=in-progress"))
        })
        .unwrap_or(false);
    assert!(resumed, "recording resumed on the way out");

    // Down from the start: the lookup fails and the caller reaches an agent.
    let other = "CA00000000000000000000000000000001";
    let (mut call, _) = support::Call::start(addr, public, BASE, other).await;
    call.press("1").await;
    let resp = call.press("100001").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(
        resp.contains("technical trouble") && resp.contains("<Enqueue"),
        "{resp}"
    );
}
