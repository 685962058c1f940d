//! PIN checks through `app(state)` on `flows/pin-reset.yaml` (enumeration-safe) over the
//! embedded directory at production Argon2 cost:
//!
//! - security.md check 1: unknown, locked, disabled, not-allowed and active IDs get the same
//!   status and the same TwiML (step tokens masked) at every step up to the result of the
//!   first verification, and the median time of each step differs by less than 50 ms between
//!   unknown, locked, disabled and active IDs over 200 calls each. Every call uses an ID of
//!   its own, so no call meets a lockout another call caused.
//! - A correct PIN that waits behind a saturated Argon2 bound longer than the step's budget
//!   takes the flow's error path, never the wrong-PIN one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use resetline_connectors::{EmbeddedDirectory, PinHashing, hash_pin};
use resetline_engine::Directory;
use resetline_engine::testing::{CallLog, MemoryAudit};
use resetline_engine::{FakeClock, Secret};
use resetline_server::{AppState, Registry, app};
use resetline_store::MemoryStore;
use tower::ServiceExt;

const PUBLIC: &str = "https://ivr.example.com";
const TOKEN: &str = "12345";
const PIN: &str = "48213579";
const WRONG_PIN: &str = "58204617";
const TRIALS: usize = 200;
/// Calls of the not-allowed kind: the same decoy path as locked and disabled, so its TwiML is
/// compared on fewer calls and its time is not (check 1 names unknown, locked, disabled).
const NOT_ALLOWED_TRIALS: usize = 20;

use resetline_testkit::root;

/// The kinds of ID a caller may type, and the first digit of their IDs.
const KINDS: [(&str, char); 5] = [
    ("active", '1'),
    ("locked", '2'),
    ("disabled", '3'),
    ("not_allowed", '4'),
    ("unknown", '5'),
];

/// The `n`th ID of `kind` (seven digits).
fn id(kind: char, n: usize) -> String {
    format!("{kind}{n:06}")
}

/// A users file with `TRIALS` users of each kind but `unknown`, all with the same PIN hash
/// (production cost) so every check does the same work.
fn users_file(dir: &Path) -> PathBuf {
    let hash = hash_pin(&Secret::new(PIN)).expect("hash");
    let mut text = String::from("allow_phone_reset: true\nusers:\n");
    for (kind, first) in KINDS {
        let (state, allowed) = match kind {
            "active" => ("active", true),
            "locked" => ("locked", true),
            "disabled" => ("disabled", true),
            "not_allowed" => ("active", false),
            _ => continue,
        };
        for n in 0..TRIALS {
            text.push_str(&format!(
                "  - id: \"{}\"\n    name: \"User {n}\"\n    mobile: \"+1555555{n:04}\"\n    state: {state}\n    allow_phone_reset: {allowed}\n    pin_hash: \"{hash}\"\n",
                id(first, n)
            ));
        }
    }
    let path = dir.join("users.yaml");
    std::fs::write(&path, text).expect("users file");
    path
}

fn state(users: &Path) -> AppState {
    let directory = EmbeddedDirectory::load(users).expect("users");
    // Argon2 at production cost on a busy test machine: a step must never run out of time,
    // or the answer would differ for a reason other than the ID.
    state_with(Arc::new(directory), Duration::from_secs(10), Arc::default())
}

fn state_with(
    directory: Arc<dyn Directory>,
    budget: Duration,
    audit: Arc<MemoryAudit>,
) -> AppState {
    let log = Arc::new(CallLog::default());
    let clock = Arc::new(FakeClock::at(1_700_000_000_000));
    let mut engine = resetline_engine::testing::engine(
        Vec::new(),
        &log,
        clock.clone(),
        Arc::new(resetline_store::MemoryLockouts::new()),
    );
    engine.directory = directory;
    engine.budget = budget;
    let registry = Arc::new(Registry::default());
    registry.load_dir(&root().join("flows"), &root().join("voice-prompts"));
    let store = Arc::new(MemoryStore::new(clock, 100_000));
    AppState::new(
        PUBLIC,
        Secret::new(TOKEN),
        engine,
        registry,
        store,
        audit,
        root().join("voice-prompts"),
    )
}

fn form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn signed(path: &str, params: &[(&str, &str)]) -> Request<Body> {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig =
        resetline_twiml::signature::compute(TOKEN.as_bytes(), &format!("{PUBLIC}{path}"), &owned);
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sig)
        .body(Body::from(form(params)))
        .expect("request")
}

/// One answer: status, body, and how long the app took.
struct Answer {
    status: StatusCode,
    body: String,
    took: Duration,
}

async fn send(state: &AppState, req: Request<Body>) -> Answer {
    let started = Instant::now();
    let resp = app(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        took: started.elapsed(),
    }
}

/// A call that types `account` and then a wrong PIN: the answer to each of its three webhooks.
async fn call(state: &AppState, sid: &str, account: &str) -> [Answer; 3] {
    call_with(state, sid, account, WRONG_PIN).await
}

/// A call that types `account` and then `pin`.
async fn call_with(state: &AppState, sid: &str, account: &str, pin: &str) -> [Answer; 3] {
    let incoming = [
        ("CallSid", sid),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+15555550100"),
        ("To", "+15555550000"),
        ("CallStatus", "ringing"),
    ];
    let start = send(state, signed("/voice/pin-reset", &incoming)).await;
    let press = |answer: &Answer, digits: &str| {
        let path = resetline_engine::testing::next_action(&answer.body).expect("a Gather action");
        signed(&path, &[("CallSid", sid), ("Digits", digits)])
    };
    let identified = send(state, press(&start, account)).await;
    let verified = send(state, press(&identified, pin)).await;
    [start, identified, verified]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_id_hears_the_same_prompts_at_the_same_speed_until_a_verification_fails() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let state = state(&users_file(scratch.path()));
    // times[kind][step]
    let mut times: Vec<[Vec<Duration>; 3]> = KINDS.iter().map(|_| Default::default()).collect();
    let mut reference: Option<Vec<(StatusCode, String)>> = None;
    for n in 0..TRIALS {
        // The kinds take turns, so a slow moment of the machine hits them alike.
        for (k, (kind, first)) in KINDS.iter().enumerate() {
            if *kind == "not_allowed" && n >= NOT_ALLOWED_TRIALS {
                continue;
            }
            let sid = format!("CA{k}{n:031}");
            let answers = call(&state, &sid, &id(*first, n)).await;
            let seen: Vec<(StatusCode, String)> = answers
                .iter()
                .map(|a| {
                    (
                        a.status,
                        resetline_engine::testing::mask_step_tokens(&a.body),
                    )
                })
                .collect();
            match &reference {
                None => {
                    assert!(
                        seen[1].1.contains("Please enter your current PIN"),
                        "{seen:?}"
                    );
                    assert!(seen[2].1.contains("That PIN is not correct"), "{seen:?}");
                    reference = Some(seen);
                }
                Some(r) => {
                    for (step, (want, got)) in r.iter().zip(&seen).enumerate() {
                        assert_eq!(want, got, "{kind} ID, call {n}, webhook {step}");
                    }
                }
            }
            for (step, a) in answers.iter().enumerate() {
                times[k][step].push(a.took);
            }
        }
    }
    let medians: Vec<[Duration; 3]> = times.into_iter().map(|steps| steps.map(median)).collect();
    for (k, (kind, _)) in KINDS.iter().enumerate() {
        eprintln!("{kind:12} median per webhook: {:?}", medians[k]);
    }
    let timed = || {
        KINDS
            .iter()
            .zip(&medians)
            .filter(|((kind, _), _)| *kind != "not_allowed")
            .map(|(_, m)| m)
    };
    for step in 0..3 {
        let fastest = timed().map(|m| m[step]).min().expect("kinds");
        let slowest = timed().map(|m| m[step]).max().expect("kinds");
        assert!(
            slowest - fastest < Duration::from_millis(50),
            "webhook {step}: medians differ by {:?} ({medians:?})",
            slowest - fastest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_pin_behind_a_saturated_argon2_bound_takes_the_error_path_not_wrong_pin() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let users = users_file(scratch.path());
    // One hash at a time, and 20 checks of other calls ahead in the queue: far more than the
    // step's budget of 300 ms at 19 MiB, t=2 each.
    let directory = Arc::new(
        EmbeddedDirectory::load(&users)
            .expect("users")
            .with_pin_hashing(PinHashing::new(1)),
    );
    let audit = Arc::new(MemoryAudit::default());
    let state = state_with(directory.clone(), Duration::from_millis(300), audit.clone());
    let active = id('1', 0);
    let ahead: Vec<_> = (0..20)
        .map(|_| {
            let directory = directory.clone();
            let active = active.clone();
            tokio::spawn(
                async move { directory.verify_pin(&active, &Secret::new(WRONG_PIN)).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let [_, identified, verified] =
        call_with(&state, "CA0000000000000000000000000000000", &active, PIN).await;
    assert!(
        identified.body.contains("Please enter your current PIN"),
        "{}",
        identified.body
    );
    assert_eq!(verified.status, StatusCode::OK);
    assert!(
        !verified.body.contains("That PIN is not correct"),
        "a check that never ran is not a wrong PIN: {}",
        verified.body
    );
    assert!(
        verified.body.contains("transfer you") && verified.body.contains("<Enqueue"),
        "the flow's error path (on_error: agent): {}",
        verified.body
    );
    let pin_checks = || -> Vec<_> {
        audit
            .records()
            .into_iter()
            .filter(|r| r.event.as_str().starts_with("authn_login"))
            .collect()
    };
    for _ in 0..100 {
        if !pin_checks().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let checks = pin_checks();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].event.as_str(), "authn_login_fail");
    assert_eq!(checks[0].outcome.as_str(), "error");
    assert_eq!(checks[0].reason, "timeout");
    for check in ahead {
        assert_eq!(
            check.await.expect("task"),
            Ok(false),
            "the queue still drains"
        );
    }
}
