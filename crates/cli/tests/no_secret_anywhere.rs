//! security.md check 30: whole calls with marker values for the one-time code, the current PIN
//! and two new PINs, with the real embedded directory and the real audit file sink, every log
//! and span at TRACE level (JSON), then a scan of the logs, every answer, the metrics, the
//! stored sessions and every file written (users file, audit segments and checkpoints): the
//! markers appear nowhere.

mod support;

use resetline_testkit::logs::Logs;
use resetline_testkit::webhook::Signed;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use resetline_audit_writer::FileAudit;
use resetline_connectors::EmbeddedDirectory;
use resetline_engine::testing::{CallLog, MemoryMessenger};
use resetline_engine::{AuditSink, Engine, Secret, SessionStore, SystemClock};
use resetline_server::{AppState, Registry, app};
use resetline_store::{MemoryCounters, MemoryLockouts, MemoryStore};

const PIN: &str = "48213579"; // demo user 100001's PIN
const NEW_PIN: &str = "73106291";
const NEWER_PIN: &str = "58204617";

/// Posts a signed webhook; keeps the answer in `answers` (its step tokens masked: a random
/// token's digits may happen to contain a marker) and returns where the next answer goes.
async fn post(
    state: &AppState,
    path: &str,
    params: &[(&str, &str)],
    answers: &mut String,
) -> String {
    let (_, answer) = Signed::new("tok", "https://ivr.example.com", path, params)
        .oneshot(app(state.clone()))
        .await;
    answers.push_str(&resetline_engine::testing::mask_step_tokens(&answer));
    if answer.contains("action=\"") {
        support::next_action(&answer)
    } else {
        String::new()
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_marker_in_logs_answers_metrics_sessions_or_files() {
    let buffer = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buffer.clone())
        .with_ansi(false)
        .json()
        .finish();
    // Global, so logs from blocking and worker threads are captured too (one test per binary).
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = tempfile::tempdir().expect("tempdir");
    let users = scratch.path().join("users.yaml");
    std::fs::copy(root.join("examples/demo/users.yaml"), &users).expect("copy");
    let audit_dir = scratch.path().join("audit");
    let chain = resetline_audit::ChainId::new("resetline").expect("chain");
    let key = resetline_audit::AuditKey::new(&[9u8; 32]).expect("key");
    let (sink, _) =
        resetline_audit::FileSink::open(resetline_audit::SinkConfig::new(&audit_dir, chain), key)
            .expect("sink");
    let audit = Arc::new(FileAudit::start(sink).expect("audit"));

    let log = Arc::new(CallLog::default());
    let messenger = Arc::new(MemoryMessenger::new(log.clone()));
    let clock = Arc::new(SystemClock);
    let engine = Engine {
        directory: Arc::new(EmbeddedDirectory::load(&users).expect("users")),
        messenger: messenger.clone(),
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
    registry.load_dir(&root.join("flows"), &root.join("voice-prompts"));
    let store = Arc::new(MemoryStore::new(clock, 100));
    let state = AppState::new(
        "https://ivr.example.com",
        Secret::new("tok"),
        engine,
        registry,
        store.clone(),
        audit.clone(),
        root.join("voice-prompts"),
    );

    // Call 1: reset by SMS code to NEW_PIN.
    let mut answers = String::new();
    let sid1 = "CA00000000000000000000000000000001";
    let mut next = post(
        &state,
        "/voice/password-reset",
        &[("CallSid", sid1), ("From", "+15555550100")],
        &mut answers,
    )
    .await;
    for digits in ["1", "100001", "1"] {
        next = post(
            &state,
            &next,
            &[("CallSid", sid1), ("Digits", digits)],
            &mut answers,
        )
        .await;
    }
    let code = messenger.last_code().expect("code");
    for digits in [code.as_str(), NEW_PIN, NEW_PIN] {
        next = post(
            &state,
            &next,
            &[("CallSid", sid1), ("Digits", digits)],
            &mut answers,
        )
        .await;
    }
    assert!(
        answers.contains("Your PIN has been changed."),
        "call 1 completed"
    );

    // Call 2: the PIN path, proving NEW_PIN and choosing NEWER_PIN; and a wrong PIN first.
    let sid2 = "CA00000000000000000000000000000002";
    let mut next = post(
        &state,
        "/voice/pin-reset",
        &[("CallSid", sid2), ("From", "+15555550100")],
        &mut answers,
    )
    .await;
    for digits in ["100001", PIN, NEW_PIN, NEWER_PIN, NEWER_PIN] {
        next = post(
            &state,
            &next,
            &[("CallSid", sid2), ("Digits", digits)],
            &mut answers,
        )
        .await;
    }
    assert!(
        answers.matches("Your PIN has been changed.").count() == 2,
        "call 2 completed"
    );
    audit.close().await.ok();

    let logs = buffer.text();
    assert!(
        logs.contains("webhook answered") && logs.contains("code sent"),
        "logs were captured"
    );
    let metrics = state.metrics().render(store.len());
    let mut sessions = String::new();
    for sid in [sid1, sid2] {
        let (mut s, _) = store.load(sid).await.expect("store").expect("session");
        // Step tokens masked, as in the answers; the kept answer's URLs are bytes here.
        s.token = 0;
        if let Some(last) = s.last.as_mut() {
            last.token = 0;
        }
        sessions.push_str(&serde_json::to_string(&s).expect("json"));
    }
    let mut places: Vec<(String, String)> = vec![
        ("logs".into(), logs),
        ("answers".into(), answers),
        ("metrics".into(), metrics),
        ("sessions".into(), sessions),
    ];
    for file in files_under(scratch.path()) {
        places.push((
            file.display().to_string(),
            String::from_utf8_lossy(&std::fs::read(&file).expect("read")).into_owned(),
        ));
    }
    assert!(
        places.iter().any(|(p, _)| p.ends_with(".jsonl")),
        "audit files were written"
    );
    for marker in [code.as_str(), PIN, NEW_PIN, NEWER_PIN] {
        for (place, text) in &places {
            assert!(
                !text.contains(marker),
                "a secret marker was found in {place}"
            );
        }
    }
}
