//! The end-to-end suite: every path of `flows/password-reset.yaml` as a scripted call through
//! the real server on a bound port (a [`Lab`]: real Twilio connectors against the REST fake,
//! the embedded directory on a copy of the demo users, in-memory tickets and audit).
//!
//! Golden transcripts live in `tests/golden/<path>.txt` and are reviewed like code; regenerate
//! after an intended change with `UPDATE_GOLDEN=1 cargo test -p resetline-simulator --test
//! integration reference_flow_e2e::` and read the diff. The suite prints its node coverage and requires all
//! of the flow's nodes to be visited.

use std::collections::BTreeSet;
use std::path::Path;

use resetline_simulator::flowtest::{CaseResult, SmsSpec, Step, TestCase, run_case};
use resetline_simulator::{Lab, LabConfig};

const FLOW: &str = "password-reset";
const CALLER: &str = "+15555550100";

use resetline_testkit::root;

fn config() -> LabConfig {
    let root = root();
    LabConfig {
        flows_dir: root.join("flows"),
        prompts_dir: root.join("voice-prompts"),
        users: root.join("examples/demo/users.yaml"),
    }
}

/// A script in short form: `~` silence, `msg` wait for a message, `jump:11m`, `hangup`,
/// `hear:text`, anything else is pressed (`$code`, `$first_code` included).
fn script(acts: &[&str]) -> Vec<Step> {
    acts.iter()
        .map(|a| match *a {
            "~" => Step {
                silence: Some(1),
                ..Step::default()
            },
            "msg" => Step {
                wait_for_message: Some(true),
                ..Step::default()
            },
            "hangup" => Step {
                hangup: Some(true),
                ..Step::default()
            },
            a if a.starts_with("jump:") => Step {
                jump: Some(a["jump:".len()..].to_string()),
                ..Step::default()
            },
            a if a.starts_with("hear:") => Step {
                hear: Some(a["hear:".len()..].to_string()),
                ..Step::default()
            },
            a => Step {
                press: Some(a.to_string()),
                ..Step::default()
            },
        })
        .collect()
}

fn sms(delay: &str, outcome: &str) -> SmsSpec {
    SmsSpec {
        delay: Some(delay.to_string()),
        outcome: Some(outcome.to_string()),
        error_code: None,
    }
}

fn case(name: &str, acts: &[&str]) -> TestCase {
    TestCase {
        name: name.to_string(),
        steps: script(acts),
        ..TestCase::default()
    }
}

async fn run(lab: &Lab, case: &TestCase) -> CaseResult {
    let from = case.from.clone().unwrap_or_else(|| CALLER.to_string());
    let r = run_case(lab, FLOW, &from, case).await;
    assert!(
        r.passed(),
        "{}: {:?}\n{}\n{}",
        case.name,
        r.failures,
        r.diff.clone().unwrap_or_default(),
        transcript(&r)
    );
    r
}

fn transcript(r: &CaseResult) -> String {
    r.transcript.iter().map(|e| format!("{e}\n")).collect()
}

fn golden(name: &str, r: &CaseResult) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    let actual = format!(
        "# {FLOW}: {}\n# outcome: {}, end: {}, {:.1} s simulated, {} keys\n{}",
        r.name,
        r.outcome.as_deref().unwrap_or("-"),
        r.end,
        r.elapsed_ms as f64 / 1000.0,
        r.keypresses,
        transcript(r)
    );
    resetline_testkit::golden::assert(&path, &actual);
}

const SMS: &[&str] = &["1", "100001#", "1", "$code", "58204617#", "58204617#"];
const EMAIL: &[&str] = &["1", "100001#", "2", "$code", "58204617#", "58204617#"];
const PIN: &[&str] = &["1", "100001#", "3", "48213579#", "58204617#", "58204617#"];

/// Every named path with its expected ending, golden transcript and the nodes it covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_of_the_reference_flow() {
    let mut visited: BTreeSet<String> = BTreeSet::new();
    let mut all_nodes = Vec::new();
    let mut paths: Vec<(&str, TestCase, &str, Option<&str>)> = vec![
        (
            "sms-success",
            case("reset by text message", SMS),
            "completed",
            Some("reset_done"),
        ),
        (
            "email-success",
            case("reset by email code", EMAIL),
            "completed",
            Some("reset_done"),
        ),
        (
            "pin-success",
            case("reset with the current PIN", PIN),
            "completed",
            Some("reset_done"),
        ),
        (
            "comfort-loop-resend-late-sms",
            TestCase {
                sms: vec![sms("45s", "delivered"), sms("1s", "delivered")],
                ..case(
                    "late text, resend, first code works",
                    &[
                        "1",
                        "100001#",
                        "1",
                        "~",
                        "2",
                        "msg",
                        "1",
                        "$first_code",
                        "58204617#",
                        "58204617#",
                    ],
                )
            },
            "completed",
            Some("reset_done"),
        ),
        (
            "comfort-loop-gives-up",
            TestCase {
                sms: vec![sms("1s", "lost")],
                ..case(
                    "no code arrives, comfort loop gives up",
                    &[
                        "1", "100001#", "1", "~", "~", "~", "~", "~", "~", "~", "~", "~",
                    ],
                )
            },
            "completed",
            Some("ticket_opened"),
        ),
        (
            "sms-undelivered",
            TestCase {
                sms: vec![sms("3s", "undelivered")],
                ..case(
                    "text not delivered, then email",
                    &[
                        "1",
                        "100001#",
                        "1",
                        "~",
                        "2",
                        "$code",
                        "58204617#",
                        "58204617#",
                    ],
                )
            },
            "completed",
            Some("reset_done"),
        ),
        (
            "code-expired",
            case(
                "code expired, back to the menu, then PIN",
                &[
                    "1",
                    "100001#",
                    "1",
                    "jump:11m",
                    "$code",
                    "3",
                    "48213579#",
                    "58204617#",
                    "58204617#",
                ],
            ),
            "completed",
            Some("reset_done"),
        ),
        (
            "wrong-codes-agent",
            case(
                "five wrong codes",
                &[
                    "1", "100001#", "1", "000000", "000001", "000002", "000003", "000004",
                ],
            ),
            "transferred",
            Some("transferred"),
        ),
        (
            "wrong-pins-agent",
            case(
                "three wrong PINs",
                &["1", "100001#", "3", "11112222#", "11112223#", "11112224#"],
            ),
            "transferred",
            Some("transferred"),
        ),
        (
            "weak-pins-ticket",
            case(
                "three refused new PINs end with a ticket",
                &[
                    "1",
                    "100001#",
                    "1",
                    "$code",
                    "12345678#",
                    "11111111#",
                    "19870412#",
                ],
            ),
            "completed",
            Some("ticket_opened"),
        ),
        (
            "locked-agent",
            case("locked account", &["1", "100002#"]),
            "transferred",
            Some("transferred"),
        ),
        (
            "disabled-ticket",
            case("disabled account", &["1", "100003#"]),
            "completed",
            Some("ticket_opened"),
        ),
        (
            "not-allowed-ticket",
            case("phone reset not allowed", &["1", "100004#"]),
            "completed",
            Some("ticket_opened"),
        ),
        (
            "unknown-id-then-agent",
            case(
                "unknown IDs until the visit limit",
                &["~", "~", "999999#", "999998#", "999997#"],
            ),
            "transferred",
            Some("transferred"),
        ),
        (
            "no-mobile-then-email",
            case(
                "no mobile of record, then email",
                &["1", "100005#", "1", "2", "$code", "hangup"],
            ),
            "caller_hung_up",
            None,
        ),
        (
            "silent-caller-agent",
            case("no input at the employee ID", &["1", "~", "~", "~"]),
            "transferred",
            Some("transferred"),
        ),
        (
            "spanish-sms-success",
            case(
                "Spanish, reset by text message",
                &["2", "100001#", "1", "$code", "58204617#", "58204617#"],
            ),
            "completed",
            Some("reset_done"),
        ),
        (
            // A full queue still leaves the caller with a number: a call-back ticket.
            "queue-full-ticket",
            TestCase {
                transfer_result: Some("queue-full".into()),
                ..case("the service-desk queue is full", &["1", "100002#"])
            },
            "completed",
            Some("ticket_opened"),
        ),
        (
            // Queue full and the ticket system down: the one ending without a number, an
            // apology asking to call again.
            "queue-full-tickets-down",
            TestCase {
                transfer_result: Some("queue-full".into()),
                tickets_down: true,
                ..case(
                    "the queue is full and the ticket system is down",
                    &["1", "100002#"],
                )
            },
            "completed",
            Some("error"),
        ),
        (
            "sms-provider-down",
            TestCase {
                sms_provider_down: true,
                ..case("the SMS provider fails", &["1", "100001#", "1"])
            },
            "transferred",
            Some("transferred"),
        ),
    ];
    for (name, case, end, outcome) in paths.drain(..) {
        let lab = Lab::start(&config()).await.expect("lab");
        all_nodes = lab.nodes(FLOW);
        let r = run(&lab, &case).await;
        assert_eq!(r.end, end, "{name}\n{}", transcript(&r));
        assert_eq!(
            r.outcome.as_deref(),
            outcome.or(r.outcome.as_deref()),
            "{name}"
        );
        if let Some(o) = outcome {
            assert_eq!(r.outcome.as_deref(), Some(o), "{name}\n{}", transcript(&r));
        }
        // Recording is never left paused.
        let changes = lab.twilio.recording_changes();
        assert!(
            changes.last().is_none_or(|(_, s)| s == "in-progress"),
            "{name}: {changes:?}"
        );
        if name == "sms-success" {
            assert!(
                r.elapsed_ms < 90_000,
                "the SMS happy path must take under 90 s of call time, took {} ms",
                r.elapsed_ms
            );
        }
        golden(name, &r);
        visited.extend(r.visited);
    }

    // Too many codes: five sends to one number in ten minutes, the sixth is refused.
    let lab = Lab::start(&config()).await.expect("lab");
    for _ in 0..5 {
        run(&lab, &case("one send", &["1", "100001#", "1", "hangup"])).await;
    }
    let r = run(
        &lab,
        &case(
            "the sixth code is refused",
            &["1", "100001#", "1", "hear:Too many codes", "hangup"],
        ),
    )
    .await;
    golden("too-many-codes", &r);
    visited.extend(r.visited);

    let total = all_nodes.len();
    let missing: Vec<&String> = all_nodes.iter().filter(|n| !visited.contains(*n)).collect();
    println!(
        "node coverage of {FLOW}: {}/{} ({:.0}%){}",
        total - missing.len(),
        total,
        100.0 * (total - missing.len()) as f64 / total.max(1) as f64,
        if missing.is_empty() {
            String::new()
        } else {
            format!("; not visited: {missing:?}")
        }
    );
    assert!(missing.is_empty(), "nodes never visited: {missing:?}");
}

/// Hanging up at every point the caller can act, on each success path: the call ends, the
/// recording is resumed if it was paused, and the audit trail says at which node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_up_at_every_node() {
    let mut wheres = BTreeSet::new();
    for path in [SMS, EMAIL, PIN] {
        for k in 0..path.len() {
            let mut acts: Vec<&str> = path[..k].to_vec();
            acts.push("hangup");
            let lab = Lab::start(&config()).await.expect("lab");
            let r = run(&lab, &case("hang up", &acts)).await;
            assert_eq!(r.end, "caller_hung_up", "{acts:?}");
            let changes: Vec<String> = lab
                .twilio
                .recording_changes()
                .into_iter()
                .map(|(_, s)| s)
                .collect();
            if changes.iter().any(|s| s == "paused") {
                assert_eq!(
                    changes.last().map(String::as_str),
                    Some("in-progress"),
                    "{acts:?}: recording resumed after a hang-up in the secure section"
                );
            }
            let records = lab.audit.records();
            let last = records.last().expect("audit records");
            assert_eq!(last.event.as_str(), "session_expired", "{acts:?}");
            assert!(!last.node.is_empty(), "{acts:?}: the audit says where");
            wheres.insert(last.node.clone());
        }
    }
    for node in [
        "welcome",
        "identify",
        "choose_method",
        "enter_sms_code",
        "enter_email_code",
        "current_pin",
        "new_pin",
        "new_pin_after_pin",
    ] {
        assert!(wheres.contains(node), "no hang-up at {node}: {wheres:?}");
    }
}

/// Every webhook posted twice (a carrier retry): identical answers, and the effects happen
/// once (same messages, tickets and audit events as without retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_at_every_step_repeat_no_effect() {
    for path in [SMS, EMAIL, PIN] {
        let once = Lab::start(&config()).await.expect("lab");
        let plain = run(&once, &case("once", path)).await;
        let twice = Lab::start(&config()).await.expect("lab");
        let retried = run(
            &twice,
            &TestCase {
                retry_webhooks: true,
                ..case("retried", path)
            },
        )
        .await;
        assert_eq!(retried.outcome.as_deref(), Some("reset_done"));
        assert_eq!(once.twilio.accepted(), twice.twilio.accepted(), "messages");
        assert_eq!(once.tickets.entries(), twice.tickets.entries(), "tickets");
        let events = |lab: &Lab| -> Vec<String> {
            lab.audit
                .records()
                .iter()
                .map(|r| r.event.as_str().to_string())
                .collect()
        };
        assert_eq!(events(&once), events(&twice), "audit events");
        assert_eq!(
            once.twilio.recording_changes().len(),
            twice.twilio.recording_changes().len()
        );
        let lines = |r: &CaseResult| -> Vec<String> {
            r.transcript.iter().map(|e| e.line.to_string()).collect()
        };
        assert_eq!(lines(&plain), lines(&retried), "same call either way");
    }
}

/// Requests signed with the wrong token are refused before any state: Twilio sees an HTTP
/// error (11200) and the call fails; no session exists, the refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_refused() {
    let lab = Lab::start(&config()).await.expect("lab");
    let mut spec = lab.spec(FLOW, CALLER);
    spec.sign_with = Some("not-the-token".into());
    let call = lab.call(spec).await;
    assert_eq!(call.end(), Some(&resetline_simulator::End::Failed(11200)));
    assert!(lab.outcome(call.sid()).await.is_none());
    assert!(
        lab.visited(call.sid()).await.is_empty(),
        "no session was created"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let events: Vec<String> = lab
        .audit
        .records()
        .iter()
        .map(|r| r.event.as_str().to_string())
        .collect();
    assert!(
        events.contains(&"input_validation_fail".to_string()),
        "{events:?}"
    );
}
