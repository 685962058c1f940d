//! Whole calls with the directory in Active Directory: a real Samba AD DC
//! (`resetline_connectors::testing::samba::SambaDc`) reached over LDAPS with the domain's
//! private CA as `ca_file`, the real `resetline serve` binary configured with
//! `flavor: active_directory`, the service account that holds only the Reset Password right on
//! the users' OU, and the local provider fakes of `support/`.

mod support;

use resetline_connectors::testing::samba::{self, SambaDc};
use support::SID;

const AD_PASSWORD_ENV: &str = "RESETLINE_TEST_AD_PASSWORD";

fn dc() -> SambaDc {
    SambaDc::start().unwrap_or_else(|e| panic!("cannot start the Samba DC: {e}"))
}

/// The `directory:` section for `dc` (`extra`: more keys, indented by two).
fn directory(dc: &SambaDc, extra: &str) -> String {
    format!(
        "  kind: ldap
  flavor: active_directory
  url: \"{url}\"
  ca_file: \"{ca}\"
  bind_dn: \"{service}\"
  bind_password_env: {AD_PASSWORD_ENV}
  base_dn: \"{people}\"
  attributes: {{ pin_hash: {pin_hash} }}
{extra}",
        url = dc.ldaps_url(),
        ca = dc.ca_file().display(),
        service = samba::SERVICE_DN,
        people = samba::PEOPLE_DN,
        pin_hash = samba::PIN_HASH_ATTRIBUTE,
    )
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_flow_resets_an_ad_password_and_the_user_binds_with_it() {
    let dc = dc();
    let (fake_url, log) = support::start_providers().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let server = support::serve_flows(
        scratch.path(),
        &root().join("flows"),
        &fake_url,
        &directory(&dc, ""),
        support::SMS_ONLY,
        &[(AD_PASSWORD_ENV, samba::SERVICE_PASSWORD)],
    )
    .await;

    // Employee ID 100001 -> Alex (employeeID), the code by SMS to his mobile, the new PIN.
    support::sms_reset_call(server.addr, &server.public, &log).await;

    assert_eq!(
        dc.user_bind("arivera", "58204617").await.map(|r| r.0),
        Ok(0)
    );
    assert_eq!(
        dc.user_bind("arivera", "31415926").await.map(|r| r.0),
        Ok(49)
    );
    let logs = server.log();
    assert!(!logs.contains("58204617"), "no PIN in the server log");
    assert!(
        !logs.contains(samba::SERVICE_PASSWORD),
        "no service password in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_password_reaches_ad_through_the_same_path_and_must_be_changed() {
    let dc = dc();
    let (fake_url, log) = support::start_providers().await;
    let (smtp_port, mail) = support::smtp_sink().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    // The engine's generated-password flow (seed 001): SMS code, then a generated password by
    // email, set only once delivered.
    let flows = scratch.path().join("flows");
    std::fs::create_dir(&flows).expect("mkdir");
    std::fs::copy(
        root().join("crates/engine/tests/flows/generated.yaml"),
        flows.join("generated.yaml"),
    )
    .expect("copy flow");
    let messages = format!(
        "{}  email: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, from: \"Service Desk <desk@example.com>\" }}\n",
        support::SMS_ONLY
    );
    let server = support::serve_flows(
        scratch.path(),
        &flows,
        &fake_url,
        &directory(&dc, "  must_change_at_next_logon: true\n"),
        &messages,
        &[(AD_PASSWORD_ENV, samba::SERVICE_PASSWORD)],
    )
    .await;

    let (mut call, resp) =
        support::Call::start(server.addr, &server.public, "/voice/generated", SID).await;
    assert!(resp.contains("employee ID"), "{resp}");
    call.press("100001").await;
    let code = support::sms_code(&log);
    let resp = call.press(&code).await;
    assert!(resp.contains("Your PIN has been changed."), "{resp}");

    let (rcpt, data) = mail.lock().map(|m| m[0].clone()).expect("one message");
    assert_eq!(rcpt, "<alex.rivera@example.com>");
    let password: String = data
        .split("password is ")
        .nth(1)
        .expect("the password sentence")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    assert!(password.len() >= 12, "{data}");
    // The new password is Alex's now, and he must change it at his next sign-in (the message
    // says so): AD answers a bind with it "data 773".
    let (rc, text) = dc.user_bind("arivera", &password).await.expect("bind");
    assert!(rc == 49 && text.contains("data 773"), "{rc} {text}");
    assert_eq!(
        dc.read(&samba::user_dn("arivera"), "pwdLastSet").await,
        Ok(vec!["0".to_string()])
    );
    let (rc, text) = dc.user_bind("arivera", "31415926").await.expect("bind");
    assert!(
        rc == 49 && text.contains("data 52e"),
        "old one: {rc} {text}"
    );
    assert!(!server.log().contains(&password), "no password in the log");
}
