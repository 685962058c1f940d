//! The webhook server through `app(state)`: signed requests drive a whole PIN-only call; the
//! carrier behaviours (bad signatures, retries, 413, unknown calls, hang-ups) and hot reload.
//! One test runs the same call against a real bound port.

use resetline_testkit::webhook::{Signed, form};
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use resetline_engine::testing::{CallLog, MemoryDirectory};
use resetline_engine::{FakeClock, Secret, SessionStore};
use resetline_server::{AppState, Registry, ReloadResult, admin_app, app};
use resetline_store::MemoryStore;
use tower::ServiceExt;

const PUBLIC: &str = "https://ivr.example.com";
const TOKEN: &str = "12345";
const SID: &str = "CA0123456789abcdef0123456789abcdef";

use resetline_testkit::root;

struct Rig {
    state: AppState,
    log: Arc<CallLog>,
    store: Arc<MemoryStore>,
    audit: Arc<resetline_engine::testing::MemoryAudit>,
    clock: FakeClock,
}

fn rig_with(flows_dir: &Path) -> Rig {
    rig_full(flows_dir, resetline_engine::testing::MemoryAudit::default())
}

fn rig_full(flows_dir: &Path, audit: resetline_engine::testing::MemoryAudit) -> Rig {
    let audit = Arc::new(audit);
    let (state, log, store, clock) = rig_sink(flows_dir, audit.clone());
    Rig {
        state,
        log,
        store,
        audit,
        clock,
    }
}

fn rig_sink(
    flows_dir: &Path,
    audit: Arc<dyn resetline_engine::AuditSink>,
) -> (AppState, Arc<CallLog>, Arc<MemoryStore>, FakeClock) {
    rig_tuned(flows_dir, audit, |_| {})
}

/// `rig_sink` with the engine changed by `tune` (a slow backend, other budgets).
fn rig_tuned(
    flows_dir: &Path,
    audit: Arc<dyn resetline_engine::AuditSink>,
    tune: impl FnOnce(&mut resetline_engine::Engine),
) -> (AppState, Arc<CallLog>, Arc<MemoryStore>, FakeClock) {
    let log = Arc::new(CallLog::default());
    let fake = FakeClock::at(1_700_000_000_000);
    let clock = Arc::new(fake.clone());
    let mut engine = resetline_engine::testing::engine(
        vec![MemoryDirectory::dana()],
        &log,
        clock.clone(),
        Arc::new(resetline_store::MemoryLockouts::new()),
    );
    tune(&mut engine);
    let registry = Arc::new(Registry::default());
    let results = registry.load_dir(flows_dir, &root().join("voice-prompts"));
    assert!(
        results
            .iter()
            .any(|r| matches!(r, ReloadResult::Installed { flow, .. } if flow == "pin-reset")),
        "{results:?}"
    );
    let store = Arc::new(MemoryStore::new(clock, 1000));
    let state = AppState::new(
        PUBLIC,
        Secret::new(TOKEN),
        engine,
        registry,
        store.clone(),
        audit,
        root().join("voice-prompts"),
    );
    (state, log, store, fake)
}

fn rig() -> Rig {
    rig_with(&root().join("flows"))
}

/// `X-Twilio-Signature` of a webhook to `path` with `params`.
fn signature(path: &str, params: &[(&str, &str)]) -> String {
    Signed::new(TOKEN, PUBLIC, path, params).signature
}

fn signed(path: &str, params: &[(&str, &str)]) -> Request<Body> {
    let sig = signature(path, params);
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sig)
        .body(Body::from(form(params)))
        .expect("request")
}

/// The app on a free loopback port: its address and the server task (abort it at the end).
async fn serve(
    state: &AppState,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(axum::serve(listener, app(state.clone())).into_future());
    (addr, server)
}

async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, String) {
    let resp = app(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Where the answer to `answer`'s `<Gather>` goes.
fn next(answer: &str) -> String {
    resetline_engine::testing::next_action(answer).expect("an answer with a Gather")
}

fn incoming() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CallSid", SID),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+15555550100"),
        ("To", "+15555550000"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
    ]
}

/// Answers the `<Gather>` of the answer `after` with `digits` (posted to its action URL: step
/// tokens are random).
async fn press(state: &AppState, after: &str, digits: &str) -> (StatusCode, String) {
    let path = next(after);
    send(
        state,
        signed(
            &path,
            &[("CallSid", SID), ("Digits", digits), ("FinishedOnKey", "#")],
        ),
    )
    .await
}

#[tokio::test]
async fn a_whole_pin_only_call_with_signed_requests() {
    let r = rig();
    let (status, body) = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    assert_eq!(status, StatusCode::OK);
    let step = next(&body);
    assert!(step.starts_with("/voice/pin-reset/step/"), "{step}");
    assert!(body.starts_with(&format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather action=\"https://ivr.example.com{step}\"")), "{body}");
    assert!(
        body.contains("Please enter your employee ID, then press pound."),
        "{body}"
    );
    assert!(
        body.ends_with(&format!(
            "<Redirect method=\"POST\">https://ivr.example.com{step}/timeout</Redirect></Response>"
        )),
        "{body}"
    );

    let (_, body) = press(&r.state, &body, "1004217").await;
    assert!(body.contains("Please enter your current PIN"), "{body}");
    let (_, body) = press(&r.state, &body, "27182818").await;
    assert!(body.contains("Please enter your new PIN"), "{body}");
    let (_, body) = press(&r.state, &body, "48319273").await;
    assert!(body.contains("Please enter the new PIN again."), "{body}");
    let (_, body) = press(&r.state, &body, "48319273").await;
    assert!(
        body.contains("Your PIN has been changed. Goodbye.</Say><Hangup /></Response>"),
        "{body}"
    );
    assert_eq!(
        r.log.entries(),
        vec![
            "find 1004217",
            "recording Pause { skip: false }",
            "verify 1004217",
            "set 1004217",
            "recording Resume"
        ]
    );

    // No digit the caller typed is in any answer or the stored session.
    let (session, _) = r.store.load(SID).await.expect("store").expect("session");
    let json = serde_json::to_string(&session).expect("json");
    for secret in ["27182818", "48319273"] {
        assert!(!json.contains(secret));
    }
    assert_eq!(session.ended.as_deref(), Some("reset_done"));

    let (_, metrics) = admin(&r.state, "/metrics").await;
    assert!(
        metrics.contains("resetline_calls_started_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("resetline_calls_ended_total{outcome=\"reset_done\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("resetline_webhooks_total{route=\"digits\",status=\"200\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_or_missing_signatures_get_403_and_change_nothing() {
    let r = rig();
    let body = form(&incoming());
    for sig in [
        None,
        Some(""),
        Some("WRONG_SIGNATURE"),
        Some("NOTRSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ] {
        let mut req = Request::post("/voice/pin-reset")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(s) = sig {
            req = req.header("X-Twilio-Signature", s);
        }
        let (status, _) = send(&r.state, req.body(Body::from(body.clone())).expect("req")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{sig:?}");
    }
    // Signed for another URL (e.g. the Host header instead of the public URL).
    let owned: Vec<(String, String)> = incoming()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig = resetline_twiml::signature::compute(
        TOKEN.as_bytes(),
        "http://10.0.0.5:8080/voice/pin-reset",
        &owned,
    );
    let req = Request::post("/voice/pin-reset")
        .header("X-Twilio-Signature", sig)
        .body(Body::from(body.clone()))
        .expect("req");
    assert_eq!(send(&r.state, req).await.0, StatusCode::FORBIDDEN);
    // A tampered parameter.
    let mut req = signed("/voice/pin-reset", &incoming());
    *req.body_mut() = Body::from(body.replace("%2B15555550100", "%2B15555550101"));
    assert_eq!(send(&r.state, req).await.0, StatusCode::FORBIDDEN);
    assert_eq!(r.store.len(), 0, "no session was created");
    tokio::task::yield_now().await;
    for _ in 0..50 {
        if r.audit.records().len() >= 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let refused: Vec<_> = r
        .audit
        .records()
        .into_iter()
        .filter(|e| e.event.as_str() == "input_validation_fail")
        .collect();
    assert_eq!(refused.len(), 6, "one audit record per refused webhook");
    assert!(refused.iter().all(|e| e.reason == "signature"));
    assert!(r.log.entries().is_empty(), "no backend was called");

    // A refused step request does not advance a live call either.
    send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    let before = r.store.load(SID).await.expect("store").expect("session");
    let req = Request::post("/voice/pin-reset/step/1")
        .header("X-Twilio-Signature", "bad")
        .body(Body::from(form(&[("CallSid", SID), ("Digits", "1004217")])))
        .expect("req");
    assert_eq!(send(&r.state, req).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        r.store.load(SID).await.expect("store").expect("session"),
        before
    );
}

#[tokio::test]
async fn a_retried_webhook_gets_the_identical_answer_and_one_effect() {
    let r = rig();
    let first = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    let again = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    assert_eq!(first, again);
    let one = press(&r.state, &first.1, "1004217").await;
    let two = press(&r.state, &first.1, "1004217").await;
    assert_eq!(one, two);
    assert_eq!(r.log.count("find"), 1);
    assert_eq!(r.log.count("recording"), 1);
    let kinds: Vec<String> = r
        .audit
        .records()
        .iter()
        .map(|e| e.event.as_str().to_string())
        .collect();
    assert_eq!(
        kinds,
        vec!["session_created", "identify", "recording_paused"],
        "a retry writes no second record"
    );
}

#[tokio::test]
async fn concurrent_duplicates_advance_the_call_once() {
    let r = rig();
    let (_, first) = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    assert_eq!(
        r.state.locked_calls(),
        0,
        "a finished request leaves no lock"
    );
    let (a, b) = tokio::join!(
        press(&r.state, &first, "1004217"),
        press(&r.state, &first, "1004217")
    );
    assert_eq!(a, b);
    assert_eq!(r.log.count("find"), 1);
    assert_eq!(
        r.state.locked_calls(),
        0,
        "no lock is left once both requests are done"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let r = rig();
    let big = format!("CallSid={SID}&Pad={}", "a".repeat(70 * 1024));
    let req = Request::post("/voice/pin-reset")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", "x")
        .body(Body::from(big))
        .expect("req");
    assert_eq!(send(&r.state, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn webhook_paths_take_post_only_and_unknown_paths_are_404() {
    let r = rig();
    let get = |path: &str| Request::get(path).body(Body::empty()).expect("req");
    for path in [
        "/voice/pin-reset",
        "/voice/pin-reset/status",
        "/voice/pin-reset/step/1",
        "/voice/pin-reset/step/1/timeout",
    ] {
        let resp = app(r.state.clone())
            .oneshot(get(path))
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(resp.headers()["allow"], "POST", "{path}");
    }
    for path in [
        "/voice/pin-reset/step/1/other",
        "/voice/pin-reset/other",
        "/voice/",
        "/elsewhere",
    ] {
        let (status, _) = send(&r.state, signed(path, &incoming())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // Routing and the method come before the body: a large one announced changes neither.
    let announced = |method: &str, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("content-length", "70000")
            .body(Body::empty())
            .expect("req")
    };
    let (status, _) = send(&r.state, announced("GET", "/voice/pin-reset/step/1")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = send(&r.state, announced("POST", "/elsewhere")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(&r.state, announced("POST", "/voice/pin-reset/step/1")).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "refused on the announced length, before reading"
    );
    let (status, _) = send(&r.state, signed("/voice/pin-reset/step/x1", &incoming())).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a token that is not a number"
    );
    let (status, body) = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(r.store.len(), 1, "the POSTed call was taken");
}

/// A request whose body comes in chunks (`Transfer-Encoding: chunked`, no length announced)
/// over a real port: one that grows past 64 KiB is refused with 413 before it is parsed, and
/// one split across chunks is joined and answered like any other.
#[tokio::test]
async fn chunked_bodies_are_joined_and_capped_at_64_kib() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = rig();
    let (addr, server) = serve(&r.state).await;
    let chunked = |path: &str, signature: &str, chunks: &[&str]| {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {signature}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        for c in chunks {
            request.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
        }
        request.push_str("0\r\n\r\n");
        request
    };
    let exchange = |request: String| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer 413 and close before reading everything: a failed write is fine.
        let _ = stream.write_all(request.as_bytes()).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    };
    let pad = "a".repeat(40 * 1024);
    let first = format!("CallSid={SID}&Pad={pad}");
    let resp = exchange(chunked("/voice/pin-reset", "x", &[&first, &pad])).await;
    assert!(
        resp.starts_with("HTTP/1.1 413"),
        "{}",
        &resp[..resp.len().min(200)]
    );
    assert_eq!(r.store.len(), 0);

    let params = incoming();
    let sig = signature("/voice/pin-reset", &params);
    let body = form(&params);
    let (a, b) = body.split_at(body.len() / 2);
    let resp = exchange(chunked("/voice/pin-reset", &sig, &[a, b])).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert_eq!(r.store.len(), 1, "the call was taken from the joined body");
    server.abort();
}

#[tokio::test]
async fn an_unknown_call_hears_an_apology_and_a_hangup() {
    let r = rig();
    let (status, body) = send(
        &r.state,
        signed(
            "/voice/pin-reset/step/3",
            &[("CallSid", SID), ("Digits", "1")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(
            "Sorry, we lost track of this call. Please call again.</Say><Hangup /></Response>"
        ),
        "{body}"
    );
}

/// The refusals audited so far, as (reason, call).
fn refusals(r: &Rig) -> Vec<(String, String)> {
    r.audit
        .records()
        .iter()
        .filter(|e| e.event.as_str() == "input_validation_fail")
        .map(|e| (e.reason.clone(), e.call_id.clone()))
        .collect()
}

#[tokio::test]
async fn a_step_for_an_unknown_call_runs_nothing_and_is_audited() {
    let r = rig();
    let (status, body) = send(
        &r.state,
        signed(
            "/voice/pin-reset/step/8306219475103856624",
            &[("CallSid", SID), ("Digits", "1004217")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with("</Say><Hangup /></Response>"), "{body}");
    assert!(r.log.entries().is_empty(), "no backend was called");
    assert_eq!(r.store.len(), 0, "no call was started");
    assert_eq!(
        refusals(&r),
        vec![("unknown_call".to_string(), SID.to_string())]
    );
}

/// A call that ended, replayed: while its session is stored, its first webhook is refused;
/// once the session expired, the ended-call memory refuses it instead of starting the call
/// again. Every refusal is audited; nothing reaches a backend.
#[tokio::test]
async fn a_replayed_call_that_ended_is_refused_also_after_its_session_expired() {
    let r = rig();
    let (_, first) = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    let (_, second) = press(&r.state, &first, "1004217").await;
    let (status, _) = send(
        &r.state,
        signed(
            "/voice/pin-reset/status",
            &[("CallSid", SID), ("CallStatus", "completed")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let backend_calls = r.log.entries().len();

    // The last step retried after the end: its answer again, no refusal.
    let (_, body) = press(&r.state, &first, "1004217").await;
    assert_eq!(body, second);
    // The first webhook posted again while the session is stored: refused, and answered
    // with the call's last answer.
    let (_, body) = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    assert_eq!(body, second);
    // The session expires (the flow's 300 s + 5 min); the end is remembered for a day.
    r.clock.advance(std::time::Duration::from_secs(11 * 60));
    assert!(r.store.load(SID).await.expect("store").is_none());
    let (status, body) = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Sorry, we lost track of this call. Please call again.</Say><Hangup />"),
        "{body}"
    );
    assert!(
        r.store.load(SID).await.expect("store").is_none(),
        "not started again"
    );
    assert_eq!(
        r.log.entries().len(),
        backend_calls,
        "no backend was called"
    );
    let sid = SID.to_string();
    assert_eq!(
        refusals(&r),
        vec![
            ("ended_call".to_string(), sid.clone()),
            ("ended_call".to_string(), sid)
        ]
    );
}

#[tokio::test]
async fn a_hangup_in_the_secure_section_resumes_recording_and_records_where() {
    let r = rig();
    let (_, first) = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    press(&r.state, &first, "1004217").await;
    let (status, _) = send(
        &r.state,
        signed(
            "/voice/pin-reset/status",
            &[
                ("CallSid", SID),
                ("CallStatus", "completed"),
                ("CallDuration", "41"),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        r.log.entries().last().map(String::as_str),
        Some("recording Resume")
    );
    let (session, _) = r.store.load(SID).await.expect("store").expect("session");
    assert_eq!(session.ended.as_deref(), Some("hangup@current_pin"));
}

#[tokio::test]
async fn hot_reload_keeps_calls_in_flight_on_their_version_and_refuses_broken_flows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(root().join("flows/pin-reset.yaml")).expect("flow");
    std::fs::write(dir.path().join("pin-reset.yaml"), &original).expect("write");
    let r = rig_with(dir.path());
    let v1 = r
        .state
        .flows()
        .current("pin-reset")
        .expect("v1")
        .flow
        .version_key();
    let (_, first) = send(&r.state, signed("/voice/pin-reset", &incoming())).await;

    // v2 greets differently.
    std::fs::write(
        dir.path().join("pin-reset.yaml"),
        original.replace("say: welcome_pin_only", "say: welcome"),
    )
    .expect("write");
    let results = r
        .state
        .flows()
        .load_dir(dir.path(), &root().join("voice-prompts"));
    assert!(
        matches!(&results[..], [ReloadResult::Installed { .. }]),
        "{results:?}"
    );
    assert_ne!(
        r.state
            .flows()
            .current("pin-reset")
            .expect("v2")
            .flow
            .version_key(),
        v1
    );

    // The call in flight continues on v1 ...
    let (_, body) = press(&r.state, &first, "1004217").await;
    assert!(body.contains("Please enter your current PIN"), "{body}");
    let (session, _) = r.store.load(SID).await.expect("store").expect("session");
    assert_eq!(session.flow_version, v1);
    // ... and a new call gets v2.
    let other = incoming()
        .into_iter()
        .map(|(k, v)| {
            if k == "CallSid" {
                (k, "CAffffffffffffffffffffffffffffffff")
            } else {
                (k, v)
            }
        })
        .collect::<Vec<_>>();
    let (_, body) = send(&r.state, signed("/voice/pin-reset", &other)).await;
    assert!(
        body.contains("PIN reset line. For English, press 1."),
        "{body}"
    );

    // A broken flow is refused and v2 keeps serving.
    std::fs::write(
        dir.path().join("pin-reset.yaml"),
        original.replace("next: lookup", "next: lokup"),
    )
    .expect("write");
    let results = r
        .state
        .flows()
        .load_dir(dir.path(), &root().join("voice-prompts"));
    assert!(
        matches!(&results[..], [ReloadResult::Refused { reason, .. }] if reason.contains("E010")),
        "{results:?}"
    );
    assert!(r.state.flows().current("pin-reset").is_some());
}

#[tokio::test]
async fn an_undelivered_sms_report_ends_the_wait_early() {
    let r = rig();
    let sid_path = |p: &str| p.to_string();
    let post =
        |path: &str, digits: &str| signed(&sid_path(path), &[("CallSid", SID), ("Digits", digits)]);
    let (_, body) = send(&r.state, signed("/voice/password-reset", &incoming())).await;
    let (_, body) = send(&r.state, post(&next(&body), "1")).await;
    let (_, body) = send(&r.state, post(&next(&body), "1004217")).await;
    let (_, body) = send(&r.state, post(&next(&body), "1")).await;
    assert!(
        body.contains(
            "We sent a code to the number ending in <say-as interpret-as=\"digits\">0199</say-as>."
        ),
        "{body}"
    );
    let (_, body) = send(
        &r.state,
        signed(&format!("{}/timeout", next(&body)), &[("CallSid", SID)]),
    )
    .await;
    assert!(body.contains("hold-music.wav"), "{body}");
    let waiting = next(&body);
    // The carrier reports the message undelivered, on the URL the engine gave it.
    let report = format!("/sms/status?call={SID}");
    let (status, _) = send(
        &r.state,
        signed(
            &report,
            &[
                ("MessageSid", "SM00000000000000000000000000000001"),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "30003"),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = send(
        &r.state,
        signed(&format!("{waiting}/timeout"), &[("CallSid", SID)]),
    )
    .await;
    assert!(
        body.contains("The text message could not be delivered."),
        "{body}"
    );
    // An unsigned report changes nothing.
    let req = Request::post(report.as_str())
        .body(Body::from("MessageSid=SM1&MessageStatus=failed"))
        .expect("req");
    assert_eq!(send(&r.state, req).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn health_readiness_and_audio() {
    let r = rig();
    assert_eq!(
        send(
            &r.state,
            Request::get("/healthz").body(Body::empty()).expect("req")
        )
        .await
        .0,
        StatusCode::OK
    );
    let (status, body) = admin(&r.state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("pin-reset 1+") && body.contains("password-reset 1+"),
        "{body}"
    );
    let (status, _) = send(
        &r.state,
        Request::get("/prompts/en-US/hold-music.wav")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(
        &r.state,
        Request::get("/prompts/en-US/..%2Fen-US.yaml")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_same_call_over_a_real_bound_port() {
    let r = rig();
    let (addr, server) = serve(&r.state).await;
    let post = |path: String, params: Vec<(&'static str, String)>| async move {
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Signed::new(TOKEN, PUBLIC, &path, &params).post(addr).await
    };
    let mut params: Vec<(&'static str, String)> = incoming()
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    let mut resp = post("/voice/pin-reset".into(), params.clone()).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(resp.contains("content-type: text/xml"), "{resp}");
    params = vec![("CallSid", SID.to_string())];
    for (digits, want) in [
        ("1004217", "current PIN"),
        ("27182818", "new PIN"),
        ("48319273", "again"),
        ("48319273", "Goodbye"),
    ] {
        let mut p = params.clone();
        p.push(("Digits", digits.to_string()));
        resp = post(next(&resp), p).await;
        assert!(resp.contains(want), "{resp}");
    }
    server.abort();
}

#[tokio::test]
async fn a_failing_audit_sink_is_counted_and_reported_not_ready_while_calls_go_on() {
    let r = rig_full(
        &root().join("flows"),
        resetline_engine::testing::MemoryAudit::failing(),
    );
    let (status, body) = send(&r.state, signed("/voice/pin-reset", &incoming())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Please enter your employee ID"),
        "the call goes on: {body}"
    );
    let (status, body) = admin(&r.state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "audit sink failing\n");
    let (_, metrics) = admin(&r.state, "/metrics").await;
    assert!(
        metrics.contains("resetline_audit_failures_total 1"),
        "{metrics}"
    );
}

async fn get(state: &AppState, path: &str) -> (StatusCode, String) {
    send(state, Request::get(path).body(Body::empty()).expect("req")).await
}

/// A GET of `path` on the admin routes (`admin_app`, the admin listener's router).
async fn admin(state: &AppState, path: &str) -> (StatusCode, String) {
    let req = Request::get(path).body(Body::empty()).expect("req");
    let resp = admin_app(state.clone())
        .oneshot(req)
        .await
        .expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_sink_down_then_back_keeps_every_record_in_order_and_readyz_follows() {
    use resetline_audit_writer::{BufferPolicy, Buffered, OnFailure};
    // The same call against a sink that never fails, for the expected records.
    let reference = rig();
    let (_, body) = send(&reference.state, signed("/voice/pin-reset", &incoming())).await;
    let (_, body) = press(&reference.state, &body, "1004217").await;
    press(&reference.state, &body, "27182818").await;
    let expected: Vec<String> = reference
        .audit
        .records()
        .iter()
        .map(|r| format!("{} {}", r.event, r.reason))
        .collect();
    assert!(expected.len() >= 4, "{expected:?}");

    let memory = Arc::new(resetline_engine::testing::MemoryAudit::default());
    let buffered = Arc::new(
        Buffered::new(
            memory.clone(),
            BufferPolicy {
                capacity: 100,
                on_failure: OnFailure::Refuse,
            },
            &resetline_engine::OsRandom,
        )
        .expect("ids"),
    );
    let (state, _, store, _) = rig_sink(&root().join("flows"), buffered.clone());
    assert_eq!(admin(&state, "/readyz").await.0, StatusCode::OK);

    memory.set_failing(true);
    let (status, first) = send(&state, signed("/voice/pin-reset", &incoming())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(first.contains("Please enter your employee ID"), "{first}");
    let (status, body) = admin(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("record(s) waiting for a retry"), "{body}");
    let (_, metrics) = admin(&state, "/metrics").await;
    assert!(!metrics.contains("resetline_audit_pending 0"), "{metrics}");

    // on_failure: refuse — a new call hears the apology and starts nothing...
    let other = "CA99999999999999999999999999999999";
    let mut params = incoming();
    params[0] = ("CallSid", other);
    let (status, body) = send(&state, signed("/voice/pin-reset", &params)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Please call again in a few minutes"),
        "{body}"
    );
    assert!(body.contains("<Hangup />"), "{body}");
    assert!(store.load(other).await.expect("store").is_none());
    let (_, metrics) = admin(&state, "/metrics").await;
    assert!(
        metrics.contains("resetline_audit_refused_calls_total 1"),
        "{metrics}"
    );
    // ...while the call in progress goes on.
    let (status, body) = press(&state, &first, "1004217").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Please enter your current PIN"), "{body}");

    memory.set_failing(false);
    let (_, body) = press(&state, &body, "27182818").await;
    assert!(body.contains("Please enter your new PIN"), "{body}");
    // The webhook queued its records behind the backlog; the retry task (here called
    // directly) writes them all, in order.
    assert_eq!(
        admin(&state, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(buffered.flush().await, 0);
    assert_eq!(admin(&state, "/readyz").await.0, StatusCode::OK);
    let got: Vec<String> = memory
        .records()
        .iter()
        .map(|r| format!("{} {}", r.event, r.reason))
        .collect();
    assert_eq!(got, expected, "nothing lost, nothing reordered");
    let (_, metrics) = admin(&state, "/metrics").await;
    assert!(metrics.contains("resetline_audit_pending 0"), "{metrics}");
    assert!(
        metrics.contains("resetline_audit_dropped_total 0"),
        "{metrics}"
    );
}

/// Finding 3: a 64 KiB body of `a&a&...` is 32,768 form pairs. It is refused as a bad form
/// (400) as soon as the pair cap is passed, before the signature check sorts and signs them:
/// no signature refusal is counted or audited, because no signature work was done.
#[tokio::test]
async fn a_body_of_thousands_of_empty_pairs_is_refused_before_any_signature_work() {
    let r = rig();
    let flood = "a&".repeat(32 * 1024);
    assert_eq!(flood.len(), 64 * 1024, "within the body cap");
    let req = Request::post("/voice/pin-reset/step/1")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", "x")
        .body(Body::from(flood))
        .expect("req");
    let (status, body) = send(&r.state, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        r.audit.records().is_empty(),
        "refused before the signature check: no signature refusal recorded"
    );
    // A signed webhook with more pairs than any carrier sends is refused the same way.
    let mut params = incoming();
    let pads: Vec<String> = (0..130).map(|i| format!("Pad{i}")).collect();
    params.extend(pads.iter().map(|p| (p.as_str(), "x")));
    let (status, _) = send(&r.state, signed("/voice/pin-reset", &params)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(r.store.len(), 0, "no call was taken");
}

/// Finding 13: flow ids and versions (`/readyz`), traffic and backend state (`/metrics`)
/// are not answered on the public webhook port; `/healthz` is.
#[tokio::test]
async fn metrics_and_readiness_are_not_served_on_the_webhook_port() {
    let r = rig();
    for path in ["/metrics", "/readyz"] {
        let (status, body) = get(&r.state, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    assert_eq!(get(&r.state, "/healthz").await.0, StatusCode::OK);
    for path in ["/metrics", "/readyz", "/healthz"] {
        assert_eq!(admin(&r.state, path).await.0, StatusCode::OK, "{path}");
    }
}

/// A directory whose every call waits an hour; notes when a lookup is given up.
#[derive(Debug, Default)]
struct HangingDirectory(Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>);

/// Notes the time it is dropped at.
struct NoteDrop(Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>);

impl Drop for NoteDrop {
    fn drop(&mut self) {
        if let Ok(mut at) = self.0.lock() {
            at.push(tokio::time::Instant::now());
        }
    }
}

impl resetline_engine::Directory for HangingDirectory {
    fn find<'a>(
        &'a self,
        _: resetline_flow::model::LookupBy,
        _: &'a str,
    ) -> resetline_engine::BoxFuture<
        'a,
        Result<Option<resetline_engine::Account>, resetline_engine::BackendError>,
    > {
        let given_up = NoteDrop(self.0.clone());
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            drop(given_up);
            Ok(None)
        })
    }
    fn verify_pin<'a>(
        &'a self,
        _: &'a str,
        _: &'a Secret,
    ) -> resetline_engine::BoxFuture<'a, Result<bool, resetline_engine::BackendError>> {
        Box::pin(async {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Ok(false)
        })
    }
    fn set_secret<'a>(
        &'a self,
        _: &'a str,
        _: &'a Secret,
    ) -> resetline_engine::BoxFuture<'a, Result<(), resetline_engine::SetSecretError>> {
        Box::pin(async {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Ok(())
        })
    }
}

/// An audit sink whose every write takes a minute, then keeps the records (event names).
#[derive(Debug, Default)]
struct SlowAudit(std::sync::Mutex<Vec<String>>);

impl SlowAudit {
    fn events(&self) -> Vec<String> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl resetline_engine::AuditSink for SlowAudit {
    fn append(
        &self,
        records: Vec<resetline_audit::Record>,
    ) -> resetline_engine::BoxFuture<'_, Result<(), resetline_engine::BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            if let Ok(mut events) = self.0.lock() {
                events.extend(records.iter().map(|r| format!("{} {}", r.call_id, r.event)));
            }
            Ok(())
        })
    }
}

/// Finding 10: the carrier gives up 15 s after it sent a webhook. With a directory that
/// never answers, an audit sink that takes a minute per write and the call's lock held by an
/// earlier request of the same call, every webhook is still answered within 12 s of its
/// arrival (tokio's paused clock: the times are exact, not measured against a wall clock),
/// and no audit record is lost: the ones still being written when the answer went out reach
/// the sink afterwards, in the call's order.
#[tokio::test(start_paused = true)]
async fn a_hanging_directory_a_slow_audit_sink_and_a_held_call_lock_still_answer_in_time() {
    use tokio::time::Instant;
    const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(12);
    let audit = Arc::new(SlowAudit::default());
    let directory = HangingDirectory::default();
    let given_up = directory.0.clone();
    let (state, _, _, _) = rig_tuned(&root().join("flows"), audit.clone(), |engine| {
        engine.directory = Arc::new(directory);
        // The most `budget_ms` allows, and the step budget `serve` gives.
        engine.budget = std::time::Duration::from_secs(12);
        engine.step_budget = std::time::Duration::from_secs(12);
    });
    let timed = |req: Request<Body>| {
        let state = state.clone();
        tokio::spawn(async move {
            let arrived = Instant::now();
            let (status, body) = send(&state, req).await;
            (status, body, arrived.elapsed())
        })
    };

    // The call's first webhook: only its audit records are slow.
    let (status, body, took) = timed(signed("/voice/pin-reset", &incoming()))
        .await
        .expect("task");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("employee ID"), "{body}");
    assert!(took <= ANSWER_WITHIN, "the first webhook took {took:?}");

    // The employee ID: the lookup hangs. A second copy of the same webhook a second later
    // waits for the call's lock, which the first holds.
    let step = next(&body);
    let lookup_arrived = Instant::now();
    let first = timed(signed(&step, &[("CallSid", SID), ("Digits", "1004217")]));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let second = timed(signed(&step, &[("CallSid", SID), ("Digits", "1004217")]));
    let (status, body, took) = first.await.expect("task");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("<Say"), "a spoken answer: {body}");
    assert!(took <= ANSWER_WITHIN, "the lookup's webhook took {took:?}");
    let given_up = given_up.lock().map(|at| at.clone()).unwrap_or_default();
    assert_eq!(
        given_up
            .iter()
            .map(|at| *at - lookup_arrived)
            .collect::<Vec<_>>(),
        vec![resetline_server::WEBHOOK_STEP_SHARE],
        "the lookup (a 12 s budget) was cut to the webhook's step share"
    );
    let (status, body, took) = second.await.expect("task");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("<Say"), "a spoken answer: {body}");
    assert!(took <= ANSWER_WITHIN, "the waiting duplicate took {took:?}");

    // Every record reaches the sink in the end, the call's first webhook's first.
    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    let events = audit.events();
    assert!(
        events
            .first()
            .is_some_and(|e| e.ends_with("session_created")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.ends_with("identify")),
        "the lookup's records were written after its answer: {events:?}"
    );
    state.forget_idle_locks(); // the periodic sweep, once the late appends are done
    assert_eq!(state.locked_calls(), 0, "no call lock is left behind");
}
