//! The `http` node end to end: the server (`app`, in process) runs a flow whose nodes call a
//! local receiver through the real `HttpDataActions`. The receiver checks every request's
//! signature with `signing::verify` (refusing stale ones) and answers JSON that the flow maps
//! into variables and branches on. A secret typed by the caller reaches the receiver only in
//! the one body field the flow lists, and no log line (TRACE, JSON), answer or stored
//! session contains it.

mod support;

use resetline_testkit::logs::Logs;
use resetline_testkit::webhook::Signed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use resetline_connectors::{BreakerPolicy, HttpDataActions, signing};
use resetline_engine::testing::{CallLog, MemoryAudit};
use resetline_engine::{Clock, Engine, Secret, SessionStore, SystemClock};
use resetline_server::{AppState, Registry, app};
use resetline_store::{MemoryCounters, MemoryLockouts, MemoryStore};

const SIGNING: &str = "hr-signing-token-0123456789";
const BADGE: &str = "735911";
const SID: &str = "CA0123456789abcdef0123456789abcdef";

/// What the receiver saw: path, whether the signature verified, body.
type Seen = Arc<Mutex<Vec<(String, bool, String)>>>;

fn verified(headers: &HeaderMap, body: &str) -> bool {
    let now_s = SystemClock.now_ms() / 1000;
    headers
        .get("x-resetline-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| {
            signing::verify(
                SIGNING.as_bytes(),
                h,
                body.as_bytes(),
                now_s,
                Duration::from_secs(300),
            )
            .is_ok()
        })
}

fn receiver(seen: Seen) -> Router {
    Router::new()
        .route(
            "/api/employees/{id}/status",
            get(
                |State(seen): State<Seen>, uri: Uri, headers: HeaderMap| async move {
                    let ok = verified(&headers, "");
                    seen.lock()
                        .unwrap()
                        .push((uri.path().to_owned(), ok, String::new()));
                    if !ok {
                        return (StatusCode::UNAUTHORIZED, "{}".to_owned());
                    }
                    if uri.path().contains("/999999/") {
                        return (
                            StatusCode::NOT_FOUND,
                            r#"{"error": "no such employee"}"#.to_owned(),
                        );
                    }
                    (
                        StatusCode::OK,
                        r#"{"employment": {"status": "active"}}"#.to_owned(),
                    )
                },
            ),
        )
        .route(
            "/api/badges/check",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    let ok = verified(&headers, &body);
                    seen.lock()
                        .unwrap()
                        .push(("/api/badges/check".into(), ok, body.clone()));
                    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let good = ok && json["code"] == BADGE && json["employee"] == "100001";
                    (StatusCode::OK, format!(r#"{{"ok": {good}}}"#))
                },
            ),
        )
        .with_state(seen)
}

fn flow(base: &str) -> String {
    format!(
        r#"flow: badge-check
version: "1"
start: identify
settings: {{ max_call_seconds: 600, locales: [en-US], default_locale: en-US, on_error: agent }}
nodes:
  identify:
    gather: {{ say: enter_employee_id, digits: 6..8, into: employee_id }}
    next: hr_status
    on: {{ exhausted: agent }}
  hr_status:
    http:
      method: GET
      url: "{base}/api/employees/{{{{ employee_id }}}}/status"
      map: {{ employment: /employment/status }}
      sign: {{ token_env: HR_SIGNING_TOKEN }}
    next: check
    on: {{ "404": not_found }}
  check:
    branch:
      - when: {{ var: employment, equals: active }}
        next: badge
    next: agent
  badge:
    secure:
      start: enter_badge
      nodes:
        enter_badge:
          gather: {{ say: enter_code, digits: 6, into: badge_code, secret: true }}
          next: check_badge
          on: {{ exhausted: agent }}
        check_badge:
          http:
            url: "{base}/api/badges/check"
            body: {{ employee: "{{{{ employee_id }}}}", code: "{{{{ badge_code }}}}" }}
            secrets: [/code]
            map: {{ badge_ok: /ok }}
            sign: {{ token_env: HR_SIGNING_TOKEN }}
          next: result
    on: {{ pause_failed: agent }}
  result:
    branch:
      - when: {{ var: badge_ok, equals: "true" }}
        next: done
    next: agent
  done:
    hangup: {{ say: reset_success, outcome: reset_done }}
  not_found:
    hangup: {{ say: id_not_found }}
  agent:
    transfer: {{ say: transferring, queue: service-desk }}
"#
    )
}

async fn post_webhook(state: &AppState, path: &str, params: &[(&str, &str)]) -> String {
    let (_, answer) = Signed::new("tok", "https://ivr.example.com", path, params)
        .oneshot(app(state.clone()))
        .await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_data_actions_drive_the_call_and_the_secret_goes_only_to_its_field() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .json()
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(axum::serve(listener, receiver(seen.clone())).into_future());

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = tempfile::tempdir().expect("tempdir");
    std::fs::write(scratch.path().join("badge-check.yaml"), flow(&base)).expect("flow");

    let log = Arc::new(CallLog::default());
    let clock = Arc::new(SystemClock);
    let http = HttpDataActions::new(clock.clone(), BreakerPolicy::default())
        .and_then(|h| {
            h.with_backend(
                "hr",
                &format!("{base}/api"),
                None,
                Some(("HR_SIGNING_TOKEN".into(), Secret::new(SIGNING))),
            )
        })
        .expect("http");
    let engine = Engine {
        http: Arc::new(http),
        counters: Arc::new(MemoryCounters::new(clock.clone())),
        budget: Duration::from_secs(4),
        ..resetline_engine::testing::engine(
            Vec::new(),
            &log,
            clock.clone(),
            Arc::new(MemoryLockouts::new()),
        )
    };
    let registry = Arc::new(Registry::default());
    let loaded = registry.load_dir(scratch.path(), &root.join("voice-prompts"));
    assert!(
        loaded
            .iter()
            .all(|r| matches!(r, resetline_server::ReloadResult::Installed { .. })),
        "{loaded:?}"
    );
    let store = Arc::new(MemoryStore::new(clock, 100));
    let state = AppState::new(
        "https://ivr.example.com",
        Secret::new("tok"),
        engine,
        registry,
        store.clone(),
        Arc::new(MemoryAudit::default()),
        root.join("voice-prompts"),
    );

    let base_path = "/voice/badge-check";
    let mut answers = String::new();
    answers.push_str(
        &post_webhook(
            &state,
            base_path,
            &[
                ("CallSid", SID),
                ("From", "+15555550100"),
                ("To", "+15555550000"),
            ],
        )
        .await,
    );
    let badge_prompt = post_webhook(
        &state,
        &support::next_action(&answers),
        &[("CallSid", SID), ("Digits", "100001")],
    )
    .await;
    assert!(
        badge_prompt.contains("Please enter the 6-digit code."),
        "{badge_prompt}"
    );
    let done = post_webhook(
        &state,
        &support::next_action(&badge_prompt),
        &[("CallSid", SID), ("Digits", BADGE)],
    )
    .await;
    assert!(
        done.contains("Your PIN has been changed. Goodbye."),
        "{done}"
    );
    assert!(done.contains("<Hangup />"), "{done}");
    answers.push_str(&badge_prompt);
    answers.push_str(&done);

    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].0, "/api/employees/100001/status");
    assert!(requests[0].1 && requests[1].1, "both signatures verify");
    let body: serde_json::Value = serde_json::from_str(&requests[1].2).expect("json");
    assert_eq!(
        body,
        serde_json::json!({"employee": "100001", "code": BADGE})
    );

    // A second call for an unknown employee takes the "404" edge.
    let sid2 = "CA0123456789abcdef0123456789abcdee";
    let first = post_webhook(
        &state,
        base_path,
        &[
            ("CallSid", sid2),
            ("From", "+15555550100"),
            ("To", "+15555550000"),
        ],
    )
    .await;
    let nf = post_webhook(
        &state,
        &support::next_action(&first),
        &[("CallSid", sid2), ("Digits", "999999")],
    )
    .await;
    assert!(
        nf.contains("I couldn&apos;t find that employee ID")
            || nf.contains("I couldn't find that employee ID"),
        "{nf}"
    );

    // The badge code appears in no log line, answer or stored session.
    let logs = logs.text();
    assert!(
        logs.contains("http data action"),
        "the node logged its status"
    );
    assert!(!logs.contains(BADGE), "the secret is not logged");
    assert!(!logs.contains(SIGNING), "the signing token is not logged");
    // Step tokens masked: a random token's digits may happen to contain the badge code.
    assert!(!resetline_engine::testing::mask_step_tokens(&answers).contains(BADGE));
    let mut session = store.load(SID).await.expect("load").expect("session").0;
    session.token = 0;
    if let Some(last) = session.last.as_mut() {
        last.token = 0;
    }
    assert!(
        !serde_json::to_string(&session)
            .expect("json")
            .contains(BADGE)
    );
}
