//! A whole call with unique marker values for the PIN and the new PIN, with every log and
//! span field recorded at TRACE level (text and JSON): the markers appear nowhere in the
//! logs, the answers, the metrics or the stored session.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use resetline_engine::testing::{CallLog, MemoryDirectory, MemoryUser};
use resetline_engine::{FakeClock, Secret, SessionStore};
use resetline_server::{AppState, Registry, app};
use resetline_store::MemoryStore;
use tower::ServiceExt;

const PIN: &str = "73106291";
const NEW_PIN: &str = "58204617";
const SID: &str = "CA0123456789abcdef0123456789abcdef";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Posts a signed webhook, keeps its answer in `seen`, and returns where the answer's
/// `<Gather>` posts next (empty without one).
async fn post(state: &AppState, path: &str, params: &[(&str, &str)], seen: &mut String) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig = resetline_twiml::signature::compute(
        b"tok",
        &format!("https://ivr.example.com{path}"),
        &owned,
    );
    let body = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&");
    let req = Request::post(path)
        .header("X-Twilio-Signature", sig)
        .body(Body::from(body))
        .expect("req");
    let resp = app(state.clone()).oneshot(req).await.expect("resp");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let answer = String::from_utf8_lossy(&bytes);
    seen.push_str(&answer);
    resetline_engine::testing::next_action(&answer).unwrap_or_default()
}

/// A whole call of the PIN flow; with `echoing`, the directory refuses the new PIN with a
/// reason that quotes it (the refusal is logged; the quoted PIN must not be).
async fn whole_call(json: bool, echoing: bool) {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
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
    if echoing {
        engine.directory = Arc::new(
            MemoryDirectory::new(vec![dana], log.clone())
                .rejecting("policy_rejected", "password {secret} is in the history"),
        );
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
    let ending = if echoing {
        "The directory didn't accept that PIN."
    } else {
        "Your PIN has been changed."
    };
    assert!(answers.contains(ending), "the call went on: {answers}");

    let logs = String::from_utf8_lossy(&buffer.0.lock().map(|b| b.clone()).unwrap_or_default())
        .into_owned();
    assert!(
        logs.contains("recording paused")
            && logs.contains(SID)
            && (!echoing || logs.contains("password *** is in the history")),
        "logs were captured:\n{logs}"
    );
    let metrics = state.metrics().render(store.len());
    let (session, _) = store.load(SID).await.expect("store").expect("session");
    let stored = serde_json::to_string(&session).expect("json");
    for marker in [PIN, NEW_PIN] {
        for (place, text) in [
            ("logs", &logs),
            ("answers", &answers),
            ("metrics", &metrics),
            ("session", &stored),
        ] {
            assert!(!text.contains(marker), "secret marker found in {place}");
        }
    }
}

#[tokio::test]
async fn no_secret_in_text_logs() {
    whole_call(false, false).await;
}

#[tokio::test]
async fn no_secret_in_json_logs() {
    whole_call(true, false).await;
}

#[tokio::test]
async fn a_directory_refusal_quoting_the_new_pin_is_logged_without_it() {
    whole_call(false, true).await;
}
