//! A whole call with unique marker values for the PIN and the new PIN, with every log and
//! span field recorded at TRACE level (text and JSON): the markers appear nowhere in the
//! logs, the answers, the metrics or the stored session. A directory that quotes the new PIN
//! in its refusal or its error text leaves no digits of it there, nor in the audit records.

use resetline_testkit::logs::Logs;
use resetline_testkit::webhook::Signed;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use resetline_engine::testing::{CallLog, MemoryDirectory, MemoryUser};
use resetline_engine::{FakeClock, Secret, SessionStore};
use resetline_server::{AppState, Registry, app};
use resetline_store::MemoryStore;
use tower::ServiceExt;

const PIN: &str = "73106291";
const NEW_PIN: &str = "58204617";
const SID: &str = "CA0123456789abcdef0123456789abcdef";

use resetline_testkit::root;

/// Posts a signed webhook, keeps its answer in `seen`, and returns where the answer's
/// `<Gather>` posts next (empty without one).
async fn post(state: &AppState, path: &str, params: &[(&str, &str)], seen: &mut String) -> String {
    let (_, answer) = Signed::new("tok", "https://ivr.example.com", path, params)
        .oneshot(app(state.clone()))
        .await;
    seen.push_str(&answer);
    resetline_engine::testing::next_action(&answer).unwrap_or_default()
}

/// What the directory does with the new PIN.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NewPin {
    /// Sets it.
    Set,
    /// Refuses it by policy with a reason that quotes it (the refusal is logged).
    RefusedQuoting,
    /// Fails with an error text that quotes it (the error is logged).
    FailedQuoting,
}

/// Every run of four digits of `marker` (a leak of part of it is a leak).
fn windows(marker: &str) -> Vec<&str> {
    (0..=marker.len() - 4).map(|i| &marker[i..i + 4]).collect()
}

/// `logs` without the measured `latency_ms` values, whose digits could match a run of a
/// marker by chance.
fn without_latencies(logs: &str) -> String {
    logs.split("latency_ms")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.trim_start_matches(|c: char| c.is_ascii_digit() || "=\":.".contains(c))
            }
        })
        .collect::<Vec<_>>()
        .join("latency_ms")
}

/// A whole call of the PIN flow, the directory doing `new_pin` with the new PIN.
async fn whole_call(json: bool, new_pin: NewPin) {
    let buffer = Logs::default();
    // No timestamps: their digits could match a run of a marker by chance.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buffer.clone())
        .without_time()
        .with_ansi(false);
    let _guard = if json {
        tracing::subscriber::set_default(builder.json().finish())
    } else {
        tracing::subscriber::set_default(builder.finish())
    };

    let log = Arc::new(CallLog::default());
    let mut dana = MemoryDirectory::dana();
    dana.pin = Secret::new(PIN);
    let clock = Arc::new(FakeClock::at(1_700_000_000_000));
    let mut engine = resetline_engine::testing::engine(
        vec![MemoryUser { ..dana.clone() }],
        &log,
        clock.clone(),
        Arc::new(resetline_store::MemoryLockouts::new()),
    );
    let directory = MemoryDirectory::new(vec![dana], log.clone());
    match new_pin {
        NewPin::Set => {}
        NewPin::RefusedQuoting => {
            engine.directory = Arc::new(
                directory.rejecting("policy_rejected", "password {secret} is in the history"),
            );
        }
        NewPin::FailedQuoting => {
            engine.directory = Arc::new(directory.failing_set_secret(
                "LDAP 19 constraintViolation: userPassword {secret} (…{secret}…) not set",
            ));
        }
    }
    let registry = Arc::new(Registry::default());
    registry.load_dir(&root().join("flows"), &root().join("voice-prompts"));
    let store = Arc::new(MemoryStore::new(clock, 100));
    let audit = Arc::new(resetline_engine::testing::MemoryAudit::default());
    let state = AppState::new(
        "https://ivr.example.com",
        Secret::new("tok"),
        engine,
        registry,
        store.clone(),
        audit.clone(),
        root().join("voice-prompts"),
    );

    let mut answers = String::new();
    let mut next = post(
        &state,
        "/voice/pin-reset",
        &[("CallSid", SID), ("From", "+15555550100")],
        &mut answers,
    )
    .await;
    let mut last = String::new();
    for digits in ["1004217", PIN, NEW_PIN, NEW_PIN] {
        last = next.clone();
        next = post(
            &state,
            &last,
            &[("CallSid", SID), ("Digits", digits)],
            &mut answers,
        )
        .await;
    }
    // A refused and a retried request log too.
    post(
        &state,
        &last,
        &[("CallSid", SID), ("Digits", NEW_PIN)],
        &mut answers,
    )
    .await;
    let req = Request::post(last.as_str())
        .header("X-Twilio-Signature", "bad")
        .body(Body::from(format!("CallSid={SID}&Digits={PIN}")))
        .expect("req");
    let _ = app(state.clone()).oneshot(req).await;
    let ending = match new_pin {
        NewPin::Set => "Your PIN has been changed.",
        NewPin::RefusedQuoting => "The directory didn't accept that PIN.",
        NewPin::FailedQuoting => "Please hold while I transfer you",
    };
    assert!(answers.contains(ending), "the call went on: {answers}");

    let logs = buffer.text();
    let metrics = state.metrics().render(store.len());
    // Step tokens and record ids are random: their digits may happen to match a window.
    let answers = resetline_engine::testing::mask_step_tokens(&answers);
    let (mut session, _) = store.load(SID).await.expect("store").expect("session");
    session.token = 0;
    if let Some(last) = session.last.as_mut() {
        last.token = 0;
    }
    let stored = serde_json::to_string(&session).expect("json");
    let records: Vec<_> = audit
        .records()
        .into_iter()
        .map(|mut r| {
            r.id = None;
            r.details.remove("intent");
            r
        })
        .collect();
    let audited = resetline_engine::testing::mask_step_tokens(&format!("{records:?}"));
    let logs = resetline_engine::testing::mask_step_tokens(&without_latencies(&logs));
    for marker in [PIN, NEW_PIN] {
        for (place, text) in [
            ("logs", &logs),
            ("answers", &answers),
            ("metrics", &metrics),
            ("session", &stored),
            ("audit", &audited),
        ] {
            for part in windows(marker) {
                if let Some(at) = text.find(part) {
                    let around = &text[at.saturating_sub(80)..(at + 80).min(text.len())];
                    panic!("digits {part} of secret marker {marker} found in {place}: …{around}…");
                }
            }
        }
    }
    let logged = match new_pin {
        NewPin::Set => "recording paused",
        NewPin::RefusedQuoting => "password *** is in the history",
        NewPin::FailedQuoting => "constraintViolation: userPassword *** (…***…) not set",
    };
    assert!(
        logs.contains("recording paused") && logs.contains(SID) && logs.contains(logged),
        "logs were captured:\n{logs}"
    );
    assert!(
        audited.contains("AuthnPasswordChange"),
        "the reset was audited: {audited}"
    );
}

#[tokio::test]
async fn no_secret_in_text_logs() {
    whole_call(false, NewPin::Set).await;
}

#[tokio::test]
async fn no_secret_in_json_logs() {
    whole_call(true, NewPin::Set).await;
}

#[tokio::test]
async fn a_directory_refusal_quoting_the_new_pin_is_logged_without_it() {
    whole_call(false, NewPin::RefusedQuoting).await;
}

#[tokio::test]
async fn a_directory_error_quoting_the_new_pin_leaves_no_digit_of_it_in_logs_audit_or_twiml() {
    whole_call(false, NewPin::FailedQuoting).await;
    whole_call(true, NewPin::FailedQuoting).await;
}
