//! Whole calls with the directory in Active Directory: a real Samba AD DC
//! (`resetline_connectors::testing::samba::SambaDc`) reached over LDAPS with the domain's
//! private CA as `ca_file`, the real `resetline serve` binary configured with
//! `flavor: active_directory`, the service account that holds only the Reset Password right on
//! the users' OU, and the local provider fakes of `support/`.

use crate::support;

use resetline_connectors::testing::samba::{self, SambaDc};
use support::SID;

const AD_PASSWORD_ENV: &str = "RESETLINE_TEST_AD_PASSWORD";

fn dc() -> SambaDc {
    SambaDc::start().unwrap_or_else(|e| panic!("cannot start the Samba DC: {e}"))
}

/// The `directory:` section for `dc`, PINs checked against the hash attribute (`extra`: more
/// keys, indented by two).
fn directory(dc: &SambaDc, extra: &str) -> String {
    let pins = format!(
        "  attributes: {{ pin_hash: {} }}\n",
        samba::PIN_HASH_ATTRIBUTE
    );
    directory_with(dc, &(pins + extra))
}

/// The `directory:` section for `dc` with PINs checked by binding as the user (the PIN is the
/// domain password), the threshold read from the domain object.
fn bind_mode_directory(dc: &SambaDc) -> String {
    let pins = format!(
        "  pin_check: bind_counts_toward_directory_lockout\n  pin_bind: {{ policy_dn: \"{}\" }}\n",
        samba::BASE_DN
    );
    directory_with(dc, &pins)
}

/// The `directory:` section for `dc` with the service account and `extra` (indented by two).
fn directory_with(dc: &SambaDc, extra: &str) -> String {
    format!(
        "  kind: ldap
  flavor: active_directory
  url: \"{url}\"
  ca_file: \"{ca}\"
  bind_dn: \"{service}\"
  bind_password_env: {AD_PASSWORD_ENV}
  base_dn: \"{people}\"
{extra}",
        url = dc.ldaps_url(),
        ca = dc.ca_file().display(),
        service = samba::SERVICE_DN,
        people = samba::PEOPLE_DN,
    )
}

use resetline_testkit::root;

/// `resetline serve` for the reference flows against `dc` with the `directory:` section given.
async fn serve(dir: &std::path::Path, dc_directory: &str, fake_url: &str) -> support::Served {
    support::serve_flows(
        dir,
        &root().join("flows"),
        fake_url,
        dc_directory,
        support::SMS_ONLY,
        &[(AD_PASSWORD_ENV, samba::SERVICE_PASSWORD)],
    )
    .await
}

/// A call to the reference flow that identifies as `employee_id` (English), chooses the PIN
/// path and enters `pins` as the current PIN until the call is handed to the service desk; the
/// last answer.
async fn current_pin_call(server: &support::Served, employee_id: &str, pins: &[&str]) -> String {
    let (mut call, _) = support::Call::start(server.addr, &server.public, support::BASE, SID).await;
    call.press("1").await;
    call.press(employee_id).await;
    let resp = call.press("3").await;
    assert!(resp.contains("enter your current PIN"), "{resp}");
    let mut resp = String::new();
    for pin in pins {
        resp = call.press(pin).await;
        if resp.contains("service-desk</Enqueue>") {
            break;
        }
    }
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_flow_resets_an_ad_password_and_the_user_binds_with_it() {
    let dc = dc();
    let (fake_url, log) = support::start_providers().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let server = serve(scratch.path(), &directory(&dc, ""), &fake_url).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_refusing_a_new_pin_is_spoken_to_the_caller_as_its_reason() {
    let dc = dc();
    let (fake_url, log) = support::start_providers().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let server = serve(scratch.path(), &directory(&dc, ""), &fake_url).await;

    // Dana's PSO asks for complexity: AD answers the digits-only PIN with 0000052D, and she
    // hears why, not a generic refusal.
    let (mut call, _) = support::Call::start(server.addr, &server.public, support::BASE, SID).await;
    call.press("1").await;
    call.press("100004").await;
    let resp = call.press("1").await;
    assert!(resp.contains("0177"), "{resp}");
    let code = support::sms_code(&log);
    let resp = call.press(&code).await;
    assert!(resp.contains("enter your new PIN"), "{resp}");
    call.press("58204617").await;
    let resp = call.press("58204617").await;
    assert!(
        resp.contains("The directory asks for letters and symbols as well as digits, so that PIN can't be used."),
        "{resp}"
    );
    assert!(!resp.contains("has been changed"), "{resp}");
    assert_eq!(
        dc.user_bind("devans", "14142135").await.map(|r| r.0),
        Ok(0),
        "unchanged"
    );
    assert!(
        !server.log().contains("58204617"),
        "no PIN in the server log"
    );
}

/// Six wrong PINs over the phone for Alex, three to each of two `resetline serve` processes
/// in turn (each call ends at the service desk: the phone's own lockout, kept in memory, takes
/// the PIN path away after three, and a restart forgets it, as a second replica would not
/// know it either): more than the domain's lockoutThreshold (5).
async fn six_wrong_pins(dc_directory: &str) {
    for _ in 0..2 {
        let (fake_url, _log) = support::start_providers().await;
        let scratch = tempfile::tempdir().expect("tempdir");
        let server = serve(scratch.path(), dc_directory, &fake_url).await;
        let resp = current_pin_call(&server, "100001", &["11111111", "22222222", "33333333"]).await;
        assert!(resp.contains("service-desk</Enqueue>"), "{resp}");
        assert!(!resp.contains("enter your new PIN"), "{resp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pins_on_the_phone_never_count_toward_the_ad_lockout() {
    let dc = dc();
    six_wrong_pins(&directory(&dc, "")).await;
    assert_eq!(
        dc.read(&samba::user_dn("arivera"), "badPwdCount").await,
        Ok(vec!["0".to_string()])
    );
    assert_eq!(
        dc.user_bind("arivera", "31415926").await.map(|r| r.0),
        Ok(0),
        "still logs in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_checks_by_bind_over_the_phone_stop_before_the_ad_lockout() {
    let dc = dc();
    // The PIN is the domain password, checked by binding as Alex: the first call binds three
    // times; the second reads badPwdCount 3 from AD and binds no more (one more failure would
    // leave the person fewer than two attempts of their own), so the call goes to the desk.
    six_wrong_pins(&bind_mode_directory(&dc)).await;
    let user = samba::user_dn("arivera");
    assert_eq!(
        dc.read(&user, "badPwdCount").await,
        Ok(vec!["3".to_string()])
    );
    let lockout = dc.read(&user, "lockoutTime").await.expect("read");
    assert!(lockout.iter().all(|t| t == "0"), "not locked: {lockout:?}");
    assert_eq!(
        dc.user_bind("arivera", "31415926").await.map(|r| r.0),
        Ok(0),
        "still logs in"
    );
}
