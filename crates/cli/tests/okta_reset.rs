//! Seed 000 with the directory switched to Okta by configuration alone: the real
//! `resetline serve` binary runs the shipped PIN flow against a local fake of the Okta Users
//! API (search, user read, admin set-password; `SSWS` auth; documented error bodies) and of
//! Twilio's recording control. The current PIN is checked against an Argon2id hash in a
//! custom profile attribute; Okta's first refusal ("commonly used") is spoken as its reason;
//! the second PIN is set.

use crate::support as serve_common;
use crate::support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use resetline_engine::Secret;
use serve_common::{ACCOUNT, TOKEN, free_port, root};

const OKTA_TOKEN: &str = "00okta-api-token-e2e";
const PIN: &str = "48213579";
const COMMON: &str = "73106291";
const NEW_PIN: &str = "58204617";
const OKTA_ID: &str = "00ub0oNGTSWTBKOLGLNR";

#[derive(Default)]
struct Fake {
    /// (method, path?query, authorization, body)
    seen: Mutex<Vec<(String, String, String, String)>>,
    hash: String,
}

type Shared = Arc<Fake>;

fn user(hash: &str) -> String {
    format!(
        r#"{{"id": "{OKTA_ID}", "status": "ACTIVE", "profile": {{"firstName": "Alex", "lastName": "Rivera", "email": "alex.rivera@example.com", "login": "alex.rivera@example.com", "mobilePhone": "+15555550199", "employeeNumber": "100001", "resetlinePinHash": "{hash}"}}, "credentials": {{"provider": {{"type": "OKTA", "name": "OKTA"}}}}}}"#
    )
}

fn record(f: &Fake, method: &str, path: String, headers: &HeaderMap, body: String) -> usize {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut seen = f.seen.lock().unwrap();
    seen.push((method.to_owned(), path, auth, body));
    seen.iter()
        .filter(|s| s.0 == "POST" && s.1.starts_with("/api/v1/users/"))
        .count()
}

fn fakes(state: Shared) -> Router {
    Router::new()
        .route(
            "/api/v1/users",
            get(|State(f): State<Shared>, RawQuery(q): RawQuery, h: HeaderMap| async move {
                record(&f, "GET", format!("/api/v1/users?{}", q.unwrap_or_default()), &h, String::new());
                (StatusCode::OK, format!("[{}]", user(&f.hash)))
            }),
        )
        .route(
            "/api/v1/users/{id}",
            get(|State(f): State<Shared>, Path(id): Path<String>, h: HeaderMap| async move {
                record(&f, "GET", format!("/api/v1/users/{id}"), &h, String::new());
                (StatusCode::OK, user(&f.hash))
            })
            .post(|State(f): State<Shared>, Path(id): Path<String>, h: HeaderMap, body: String| async move {
                let n = record(&f, "POST", format!("/api/v1/users/{id}"), &h, body);
                if n == 1 {
                    (StatusCode::BAD_REQUEST, r#"{"errorCode": "E0000001", "errorSummary": "Api validation failed: password", "errorLink": "E0000001", "errorId": "oae1", "errorCauses": [{"errorSummary": "password: This password was found in a list of commonly used passwords. Please try another password."}]}"#.to_owned())
                } else {
                    (StatusCode::OK, user(&f.hash))
                }
            }),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}/Recordings/{rec}",
            post(|State(f): State<Shared>, Path((a, c, r)): Path<(String, String, String)>, h: HeaderMap, body: String| async move {
                record(&f, "POST", format!("/2010-04-01/Accounts/{a}/Calls/{c}/Recordings/{r}"), &h, body);
                (StatusCode::OK, r#"{"sid": "RE0123456789abcdef0123456789abcdef", "status": "paused"}"#)
            }),
        )
        .with_state(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pin_flow_resets_in_okta_and_speaks_okta_s_refusal() {
    let fake = Arc::new(Fake {
        seen: Mutex::default(),
        hash: resetline_connectors::hash_pin(&Secret::new(PIN)).expect("hash"),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let fake_url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(axum::serve(listener, fakes(fake.clone())).into_future());

    let root = root();
    let port = free_port();
    let scratch = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
flows_dir: {flows}
prompts_dir: {prompts}
carrier: {{ account_sid: {ACCOUNT}, auth_token_env: T_TOKEN, api_base: \"{fake_url}\" }}
directory: {{ kind: okta, base_url: \"{fake_url}\", token_env: T_OKTA, pin_hash_attribute: resetlinePinHash }}
audit: {{ dir: audit, key_env: T_KEY }}
hash_key_env: T_KEY
reload: {{ enabled: false }}
",
        flows = root.join("flows").display(),
        prompts = root.join("voice-prompts").display(),
    );
    let key = "k".repeat(32);
    let server = serve_common::serve(
        scratch.path(),
        port,
        &yaml,
        &[("T_TOKEN", TOKEN), ("T_OKTA", OKTA_TOKEN), ("T_KEY", &key)],
    )
    .await;

    let sid = "CA0000000000000000000000000000000a";
    let first = server.start_call("pin-reset", sid).await;
    assert!(first.contains("Please enter your employee ID"), "{first}");
    let mut answers = first.clone();
    let mut said = Vec::new();
    let mut last = first;
    for digits in ["100001", PIN, COMMON, COMMON, NEW_PIN, NEW_PIN] {
        let answer = server
            .post(
                &support::next_action(&last),
                &[("CallSid", sid), ("Digits", digits)],
            )
            .await;
        last = answer.clone();
        said.push(answer.clone());
        answers.push_str(&answer);
    }
    assert!(
        said[0].contains("Please enter your current PIN"),
        "{}",
        said[0]
    );
    assert!(said[1].contains("Please enter your new PIN"), "{}", said[1]);
    assert!(
        said[3].contains("That PIN is too common. Please choose another."),
        "Okta's reason is spoken: {}",
        said[3]
    );
    assert!(
        said[5].contains("Your PIN has been changed. Goodbye."),
        "{}",
        said[5]
    );

    let seen = fake.seen.lock().unwrap().clone();
    let okta: Vec<_> = seen
        .iter()
        .filter(|s| s.1.starts_with("/api/v1/"))
        .collect();
    assert!(
        okta.iter().all(|s| s.2 == format!("SSWS {OKTA_TOKEN}")),
        "{okta:?}"
    );
    assert_eq!(
        okta[0].1,
        "/api/v1/users?search=profile.employeeNumber%20eq%20%22100001%22&limit=2"
    );
    let sets: Vec<_> = okta
        .iter()
        .filter(|s| s.0 == "POST")
        .map(|s| {
            (
                s.1.clone(),
                serde_json::from_str::<serde_json::Value>(&s.3).expect("json"),
            )
        })
        .collect();
    assert_eq!(
        sets,
        vec![
            (
                format!("/api/v1/users/{OKTA_ID}"),
                serde_json::json!({"credentials": {"password": {"value": COMMON}}})
            ),
            (
                format!("/api/v1/users/{OKTA_ID}"),
                serde_json::json!({"credentials": {"password": {"value": NEW_PIN}}})
            ),
        ]
    );
    let recording: Vec<_> = seen
        .iter()
        .filter(|s| s.1.contains("/Recordings/"))
        .map(|s| s.3.clone())
        .collect();
    assert_eq!(recording.len(), 2, "paused, then resumed: {recording:?}");
    assert!(recording[1].contains("Status=in-progress"), "{recording:?}");

    let logs = server.log();
    for secret in [PIN, COMMON, NEW_PIN, OKTA_TOKEN] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(!answers.contains(secret), "{secret} in an answer");
    }
}
