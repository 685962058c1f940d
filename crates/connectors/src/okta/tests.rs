//! Tests against a fake Okta Users API ([`crate::fake_http`]) that records every request and
//! answers with Okta's documented shapes (user objects, error bodies, rate-limit headers).

use resetline_engine::FakeClock;

use super::*;
use crate::fake_http::{Fake, Reply, Seen};
use resetline_engine::Directory;

const TOKEN: &str = "00okta-api-token-for-tests";
const NEW_PASSWORD: &str = "Blue-Harbor-4821";
const ID: &str = "00ub0oNGTSWTBKOLGLNR";

fn user(status: &str) -> String {
    format!(
        r#"{{"id": "{ID}", "status": "{status}", "created": "2013-06-24T16:39:18.000Z",
  "activated": "2013-06-24T16:39:19.000Z", "statusChanged": "2013-06-24T16:39:19.000Z",
  "lastLogin": "2013-06-24T17:39:19.000Z", "passwordChanged": "2013-07-02T21:36:25.344Z",
  "profile": {{"firstName": "Dana", "lastName": "Reyes", "email": "dana.reyes@example.com",
    "login": "dana.reyes@example.com", "mobilePhone": "+15555550199", "employeeNumber": "100001"}},
  "credentials": {{"password": {{}}, "provider": {{"type": "OKTA", "name": "OKTA"}}}},
  "_links": {{"self": {{"href": "https://acme.okta.com/api/v1/users/{ID}"}}}}}}"#
    )
}

fn list(status: &str) -> String {
    format!("[{}]", user(status))
}

fn error(code: &str, summary: &str, causes: &[&str]) -> String {
    let causes: Vec<String> = causes
        .iter()
        .map(|c| format!(r#"{{"errorSummary": "{c}"}}"#))
        .collect();
    format!(
        r#"{{"errorCode": "{code}", "errorSummary": "{summary}", "errorLink": "{code}", "errorId": "oaeXyZ123", "errorCauses": [{}]}}"#,
        causes.join(", ")
    )
}

fn okta(fake: &Fake) -> OktaDirectory {
    OktaDirectory::new(&fake.base(), Secret::new(TOKEN)).unwrap()
}

fn query(seen: &Seen) -> Vec<(String, String)> {
    let path = seen.request_line.split(' ').nth(1).unwrap();
    reqwest::Url::parse(&format!("http://x{path}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn assert_okta_headers(s: &Seen) {
    assert_eq!(
        s.header("authorization"),
        Some(format!("SSWS {TOKEN}").as_str())
    );
    assert_eq!(s.header("accept"), Some("application/json"));
}

fn assert_clean(shown: &str) {
    assert!(
        !shown.contains(TOKEN) && !shown.contains(NEW_PASSWORD),
        "{shown}"
    );
}

#[tokio::test]
async fn find_searches_profiles_and_maps_the_user() {
    let fake = Fake::start(200, &list("ACTIVE"), Duration::ZERO).await;
    let found = okta(&fake)
        .find(LookupBy::EmployeeId, "100001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found,
        Account {
            id: "dana.reyes@example.com".into(),
            name: "Dana Reyes".into(),
            mobile: Some("+15555550199".into()),
            email: Some("dana.reyes@example.com".into()),
            state: AccountState::Active,
            allow_phone_reset: true,
            birth_date: None,
        }
    );
    let seen = fake.requests();
    assert!(
        seen[0]
            .request_line
            .starts_with("GET /api/v1/users?search=")
    );
    assert_okta_headers(&seen[0]);
    assert_eq!(
        query(&seen[0]),
        [
            (
                "search".to_owned(),
                r#"profile.employeeNumber eq "100001""#.to_owned()
            ),
            ("limit".to_owned(), "2".to_owned())
        ]
    );
    okta(&fake)
        .find(LookupBy::Phone, "+15555550199")
        .await
        .unwrap();
    okta(&fake)
        .find(LookupBy::Email, r#"a" or profile.login sw "b"#)
        .await
        .unwrap();
    let seen = fake.requests();
    assert_eq!(
        query(&seen[1])[0].1,
        r#"profile.mobilePhone eq "+15555550199""#
    );
    assert_eq!(
        query(&seen[2])[0].1,
        r#"profile.email eq "a\" or profile.login sw \"b""#
    );
}

#[tokio::test]
async fn status_words_become_states() {
    for (status, unlock, want) in [
        ("LOCKED_OUT", false, AccountState::Locked),
        ("LOCKED_OUT", true, AccountState::Active),
        ("SUSPENDED", false, AccountState::Disabled),
        ("DEPROVISIONED", false, AccountState::Disabled),
        ("STAGED", false, AccountState::Disabled),
        ("PASSWORD_EXPIRED", false, AccountState::Active),
        ("SOMETHING_NEW", false, AccountState::Disabled),
    ] {
        let fake = Fake::start(200, &list(status), Duration::ZERO).await;
        let a = okta(&fake)
            .with_unlock(unlock)
            .find(LookupBy::EmployeeId, "100001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.state, want, "{status} unlock={unlock}");
    }
    let fake = Fake::start(200, "[]", Duration::ZERO).await;
    assert_eq!(okta(&fake).find(LookupBy::EmployeeId, "1").await, Ok(None));
    let two = format!("[{}, {}]", user("ACTIVE"), user("ACTIVE"));
    let fake = Fake::start(200, &two, Duration::ZERO).await;
    assert_eq!(okta(&fake).find(LookupBy::Phone, "+1555").await, Ok(None));
}

#[tokio::test]
async fn set_secret_uses_the_admin_set_password_update() {
    let fake = Fake::script(vec![
        Reply::new(200, &user("ACTIVE")),
        Reply::new(200, &user("ACTIVE")),
    ])
    .await;
    okta(&fake)
        .set_secret("dana.reyes@example.com", &Secret::new(NEW_PASSWORD))
        .await
        .unwrap();
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].request_line,
        "GET /api/v1/users/dana.reyes@example.com HTTP/1.1"
    );
    assert_eq!(
        seen[1].request_line,
        format!("POST /api/v1/users/{ID} HTTP/1.1")
    );
    for s in &seen {
        assert_okta_headers(s);
    }
    assert_eq!(seen[1].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[1].json(),
        json!({"credentials": {"password": {"value": NEW_PASSWORD}}})
    );
}

#[tokio::test]
async fn locked_users_are_unlocked_first_only_when_configured() {
    let fake = Fake::script(vec![
        Reply::new(200, &user("LOCKED_OUT")),
        Reply::new(200, ""),
        Reply::new(200, &user("ACTIVE")),
    ])
    .await;
    okta(&fake)
        .with_unlock(true)
        .set_secret("dana.reyes@example.com", &Secret::new(NEW_PASSWORD))
        .await
        .unwrap();
    let lines: Vec<String> = fake
        .requests()
        .into_iter()
        .map(|s| s.request_line)
        .collect();
    assert_eq!(
        lines,
        [
            "GET /api/v1/users/dana.reyes@example.com HTTP/1.1".to_owned(),
            format!("POST /api/v1/users/{ID}/lifecycle/unlock HTTP/1.1"),
            format!("POST /api/v1/users/{ID} HTTP/1.1"),
        ]
    );

    let fake = Fake::start(200, &user("LOCKED_OUT"), Duration::ZERO).await;
    assert_eq!(
        okta(&fake)
            .set_secret("dana.reyes@example.com", &Secret::new(NEW_PASSWORD))
            .await,
        Err(SetSecretError::Locked)
    );
    let fake = Fake::start(200, &user("SUSPENDED"), Duration::ZERO).await;
    assert!(matches!(
        okta(&fake).set_secret("dana.reyes@example.com", &Secret::new(NEW_PASSWORD)).await,
        Err(SetSecretError::Rejected { prompt, reason }) if prompt == "not_allowed" && reason.contains("SUSPENDED")
    ));
    assert_eq!(fake.requests().len(), 1, "no update for a suspended user");
}

#[tokio::test]
async fn password_policy_refusals_are_spoken_as_their_reason() {
    let requirements = "password: Password requirements were not met. Password requirements: at least 20 characters, a lowercase letter, an uppercase letter, a number, no parts of your username. Your password cannot be any of your last 4 passwords.";
    for (status, body, want) in [
        (
            400,
            error(
                "E0000001",
                "Api validation failed: password",
                &[requirements],
            ),
            "policy_too_short",
        ),
        (
            403,
            error(
                "E0000014",
                "Update of credentials failed",
                &["password: Password has been used too recently"],
            ),
            "policy_reused",
        ),
        (
            400,
            error(
                "E0000001",
                "Api validation failed: password",
                &[
                    "password: This password was found in a list of commonly used passwords. Please try another password.",
                ],
            ),
            "policy_common",
        ),
        (
            400,
            error(
                "E0000080",
                "The password does not meet the complexity requirements of the current password policy.",
                &[],
            ),
            "policy_rejected",
        ),
    ] {
        let fake = Fake::script(vec![
            Reply::new(200, &user("ACTIVE")),
            Reply::new(status, &body),
        ])
        .await;
        let e = okta(&fake)
            .set_secret("dana.reyes@example.com", &Secret::new(NEW_PASSWORD))
            .await
            .unwrap_err();
        let SetSecretError::Rejected { prompt, reason } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(prompt, want, "{reason}");
        assert_clean(&format!("{e:?}"));
    }
    let e = {
        let body = error(
            "E0000001",
            "Api validation failed: password",
            &[requirements],
        );
        let fake = Fake::script(vec![
            Reply::new(200, &user("ACTIVE")),
            Reply::new(400, &body),
        ])
        .await;
        okta(&fake)
            .set_secret("dana.reyes@example.com", &Secret::new(NEW_PASSWORD))
            .await
            .unwrap_err()
    };
    assert!(matches!(
        e,
        SetSecretError::Rejected { reason, .. } if reason.starts_with("Api validation failed: password; password: Password requirements were not met.")
    ));
}

#[tokio::test]
async fn errors_name_okta_s_code_and_summary() {
    for (status, body, want) in [
        (
            401,
            error("E0000011", "Invalid token provided", &[]),
            "Okta search answered HTTP 401 (E0000011: Invalid token provided)",
        ),
        (
            403,
            error(
                "E0000006",
                "You do not have permission to perform the requested action",
                &[],
            ),
            "Okta search answered HTTP 403 (E0000006: You do not have permission to perform the requested action)",
        ),
        (
            500,
            error("E0000009", "Internal Server Error", &[]),
            "Okta search answered HTTP 500 (E0000009: Internal Server Error)",
        ),
        (
            502,
            "bad gateway".to_owned(),
            "Okta search answered HTTP 502",
        ),
    ] {
        let fake = Fake::start(status, &body, Duration::ZERO).await;
        let e = okta(&fake)
            .find(LookupBy::EmployeeId, "100001")
            .await
            .unwrap_err();
        assert_eq!(e.message, want);
        assert_clean(&format!("{e} {e:?}"));
    }
    // A user that vanished between lookup and reset.
    let fake = Fake::start(
        404,
        &error(
            "E0000007",
            "Not found: Resource not found: dana.reyes@example.com (User)",
            &[],
        ),
        Duration::ZERO,
    )
    .await;
    let e = okta(&fake)
        .set_secret("dana.reyes@example.com", &Secret::new(NEW_PASSWORD))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SetSecretError::Backend(b) if b.message == "no such Okta user"),
        "{e:?}"
    );
    // The update itself fails.
    let fake = Fake::script(vec![
        Reply::new(200, &user("ACTIVE")),
        Reply::new(
            403,
            &error(
                "E0000006",
                "You do not have permission to perform the requested action",
                &[],
            ),
        ),
    ])
    .await;
    let e = okta(&fake)
        .set_secret("dana.reyes@example.com", &Secret::new(NEW_PASSWORD))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SetSecretError::Backend(b) if b.message.starts_with("Okta password change answered HTTP 403 (E0000006")),
        "{e:?}"
    );
}

#[tokio::test]
async fn rate_limits_are_retried_once_when_the_reset_is_near() {
    let clock = FakeClock::at(1_700_000_000_000);
    let limited = error(
        "E0000047",
        "API call exceeded rate limit due to too many requests.",
        &[],
    );
    let now_s = "1700000000";
    let fake = Fake::script(vec![
        Reply::new(429, &limited)
            .with_header("X-Rate-Limit-Limit", "600")
            .with_header("X-Rate-Limit-Remaining", "0")
            .with_header("X-Rate-Limit-Reset", now_s),
        Reply::new(200, &list("ACTIVE")),
    ])
    .await;
    let dir = okta(&fake).with_clock(Arc::new(clock.clone()));
    assert!(
        dir.find(LookupBy::EmployeeId, "100001")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(fake.requests().len(), 2);

    let far = "1700000060";
    let fake = Fake::script(vec![
        Reply::new(429, &limited).with_header("X-Rate-Limit-Reset", far),
        Reply::new(200, &list("ACTIVE")),
    ])
    .await;
    let dir = okta(&fake).with_clock(Arc::new(clock));
    let started = std::time::Instant::now();
    let e = dir.find(LookupBy::EmployeeId, "100001").await.unwrap_err();
    assert_eq!(
        e.message,
        "Okta search answered HTTP 429 (E0000047: API call exceeded rate limit due to too many requests.)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no waiting a minute"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn timeouts_and_pins() {
    let fake = Fake::start(200, &list("ACTIVE"), Duration::from_secs(3)).await;
    let dir = okta(&fake).with_timeout(Duration::from_millis(200));
    assert_eq!(
        dir.find(LookupBy::EmployeeId, "100001").await,
        Err(BackendError::timeout("directory"))
    );
    let fake = Fake::start(200, &user("ACTIVE"), Duration::ZERO).await;
    let e = okta(&fake)
        .verify_pin("dana.reyes@example.com", &Secret::new("1234"))
        .await
        .unwrap_err();
    assert!(e.message.contains("pin_hash_attribute"));
    let hash = crate::hash_pin(&Secret::new("48213579")).unwrap();
    let with_hash = user("ACTIVE").replace(
        r#""employeeNumber": "100001""#,
        &format!(r#""employeeNumber": "100001", "resetlinePinHash": "{hash}""#),
    );
    let fake = Fake::start(200, &with_hash, Duration::ZERO).await;
    let dir = okta(&fake)
        .with_pin_hash_attribute("resetlinePinHash")
        .unwrap();
    assert_eq!(
        dir.verify_pin("dana.reyes@example.com", &Secret::new("48213579"))
            .await,
        Ok(true)
    );
    assert_eq!(
        dir.verify_pin("dana.reyes@example.com", &Secret::new("48213570"))
            .await,
        Ok(false)
    );
    assert_eq!(
        fake.requests()[0].request_line,
        "GET /api/v1/users/dana.reyes@example.com HTTP/1.1"
    );
}

#[test]
fn configuration_is_checked_and_debug_hides_the_token() {
    assert!(OktaDirectory::new("https://acme.okta.com", Secret::new(TOKEN)).is_ok());
    assert!(matches!(
        OktaDirectory::new("http://acme.okta.com", Secret::new(TOKEN)),
        Err(IdpConfigError::BaseUrl(_))
    ));
    assert_eq!(
        OktaDirectory::new("https://acme.okta.com", Secret::new("a\nb")).unwrap_err(),
        IdpConfigError::Token
    );
    let shown = format!(
        "{:?}",
        OktaDirectory::new("https://acme.okta.com", Secret::new(TOKEN)).unwrap()
    );
    assert_clean(&shown);
}
