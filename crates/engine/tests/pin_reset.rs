//! Drives the shipped PIN-only flow through the interpreter with fake backends: the whole
//! call, retries, recording pause/resume order, wrong PINs, policy refusals, time limit.

use crate::common;

use std::time::Duration;

use common::{Options, said};
use resetline_engine::*;

struct Rig {
    engine: Engine,
    log: std::sync::Arc<resetline_engine::testing::CallLog>,
    clock: FakeClock,
    flow: resetline_flow::Flow,
}

fn rig(slow: bool, recording_fails: bool) -> Rig {
    let r = common::rig(Options {
        slow_directory: slow,
        recording_fails,
        ..Options::default()
    });
    Rig {
        engine: r.engine,
        log: r.log,
        clock: r.clock,
        flow: r.flow,
    }
}

fn digits(token: u64, d: &str) -> Event {
    Event::Digits {
        token,
        digits: Secret::new(d),
    }
}

/// `d` typed at the Gather `s` waits at (its current step token).
async fn press(r: &Rig, s: &mut Session, d: &str) -> Step {
    let token = s.token;
    r.engine.step(&r.flow, s, digits(token, d)).await
}

/// No input at the Gather `s` waits at.
async fn silence(r: &Rig, s: &mut Session) -> Step {
    let token = s.token;
    r.engine.step(&r.flow, s, Event::Timeout { token }).await
}

#[tokio::test]
async fn whole_call_pauses_before_secrets_and_resumes_after() {
    let r = rig(false, false);
    let mut s = r.engine.new_session(&r.flow, "CA1", "+15555550100");
    let step = r.engine.step(&r.flow, &mut s, Event::Start).await;
    assert_eq!(
        said(&step),
        "Welcome to the service desk. You can change your PIN on this call. | Please enter your employee ID, then press pound."
    );
    assert!(
        matches!(step.actions.last(), Some(Action::Redirect { url }) if *url == format!("/voice/pin-reset/step/{}/timeout", s.token))
    );

    let step = press(&r, &mut s, "1004217").await;
    assert_eq!(
        said(&step),
        "Please enter your current PIN, then press pound."
    );
    assert_eq!(
        r.log.entries(),
        vec!["find 1004217", "recording Pause { skip: false }"],
        "paused before the PIN prompt is returned"
    );
    assert!(s.recording_paused_ms.is_some());

    let step = press(&r, &mut s, "27182818").await;
    assert_eq!(
        said(&step),
        "Please enter your new PIN, 8 to 12 digits, then press pound."
    );
    let step = press(&r, &mut s, "48319273").await;
    assert_eq!(said(&step), "Please enter the new PIN again.");
    let json = serde_json::to_string(&s).expect("session json");
    assert!(
        !json.contains("48319273"),
        "the first entry is kept only as a keyed hash"
    );
    let step = press(&r, &mut s, "48319273").await;
    assert_eq!(said(&step), "Your PIN has been changed. Goodbye.");
    assert_eq!(step.actions.last(), Some(&Action::Hangup));
    assert_eq!(s.ended.as_deref(), Some("reset_done"));
    assert_eq!(
        r.log.entries(),
        vec![
            "find 1004217",
            "recording Pause { skip: false }",
            "verify 1004217",
            "set 1004217",
            "recording Resume"
        ],
        "resumed after the last secret digit, before the goodbye"
    );
    assert!(s.recording_paused_ms.is_none());
}

#[tokio::test]
async fn a_retried_webhook_replays_the_answer_without_effects() {
    let r = rig(false, false);
    let mut s = r.engine.new_session(&r.flow, "CA2", "+15555550100");
    r.engine.step(&r.flow, &mut s, Event::Start).await;
    let token = s.token;
    let first = r
        .engine
        .step(&r.flow, &mut s, digits(token, "1004217"))
        .await;
    let again = r
        .engine
        .step(&r.flow, &mut s, digits(token, "1004217"))
        .await;
    assert!(again.replayed);
    assert_eq!(first.actions, again.actions);
    assert_eq!(
        r.log
            .entries()
            .iter()
            .filter(|l| l.starts_with("find"))
            .count(),
        1
    );
    assert_eq!(
        r.log
            .entries()
            .iter()
            .filter(|l| l.starts_with("recording"))
            .count(),
        1
    );
}

#[tokio::test]
async fn wrong_pins_then_agent() {
    let r = rig(false, false);
    let mut s = r.engine.new_session(&r.flow, "CA3", "+15555550100");
    r.engine.step(&r.flow, &mut s, Event::Start).await;
    press(&r, &mut s, "1004217").await;
    let step = press(&r, &mut s, "11112222").await;
    assert_eq!(
        said(&step),
        "That PIN is not correct. | Please enter your current PIN, then press pound."
    );
    press(&r, &mut s, "11112222").await;
    let step = press(&r, &mut s, "11112222").await;
    assert_eq!(
        said(&step),
        "That PIN is not correct. | Please hold while I transfer you to the service desk."
    );
    assert!(
        matches!(step.actions.last(), Some(Action::Enqueue { queue, .. }) if queue == "service-desk")
    );
    assert_eq!(
        r.log.entries().last().map(String::as_str),
        Some("recording Resume"),
        "leaving the section resumes recording"
    );
}

#[tokio::test]
async fn policy_refusals_speak_their_reason_and_mismatch_starts_over() {
    let r = rig(false, false);
    let mut s = r.engine.new_session(&r.flow, "CA4", "+15555550100");
    r.engine.step(&r.flow, &mut s, Event::Start).await;
    press(&r, &mut s, "1004217").await;
    press(&r, &mut s, "27182818").await;
    let step = press(&r, &mut s, "12345678").await;
    assert!(
        said(&step).starts_with("That PIN is a run of digits"),
        "{}",
        said(&step)
    );
    let step = press(&r, &mut s, "48319273").await;
    assert_eq!(said(&step), "Please enter the new PIN again.");
    let step = press(&r, &mut s, "48319274").await;
    assert_eq!(
        said(&step),
        "The two PINs didn't match. Let's start again. | Please enter your new PIN, 8 to 12 digits, then press pound."
    );
    assert!(
        !r.log.entries().iter().any(|l| l.starts_with("set")),
        "nothing changes on a mismatch"
    );
}

#[tokio::test]
async fn pause_failure_collects_no_secret() {
    let r = rig(false, true);
    let mut s = r.engine.new_session(&r.flow, "CA5", "+15555550100");
    r.engine.step(&r.flow, &mut s, Event::Start).await;
    let step = press(&r, &mut s, "1004217").await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk."
    );
    assert!(!said(&step).contains("PIN"));
}

#[tokio::test]
async fn a_slow_backend_takes_the_error_path() {
    let r = rig(true, false);
    let mut s = r.engine.new_session(&r.flow, "CA6", "+15555550100");
    r.engine.step(&r.flow, &mut s, Event::Start).await;
    let step = press(&r, &mut s, "1004217").await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk.",
        "on_error: agent"
    );
}

#[tokio::test]
async fn hangup_inside_the_secure_section_resumes_recording() {
    let r = rig(false, false);
    let mut s = r.engine.new_session(&r.flow, "CA7", "+15555550100");
    r.engine.step(&r.flow, &mut s, Event::Start).await;
    press(&r, &mut s, "1004217").await;
    r.engine.step(&r.flow, &mut s, Event::Hangup).await;
    assert_eq!(s.ended.as_deref(), Some("hangup@current_pin"));
    assert_eq!(
        r.log.entries().last().map(String::as_str),
        Some("recording Resume")
    );
}

#[tokio::test]
async fn the_call_time_limit_ends_the_call() {
    let r = rig(false, false);
    let mut s = r.engine.new_session(&r.flow, "CA8", "+15555550100");
    r.engine.step(&r.flow, &mut s, Event::Start).await;
    r.clock.advance(Duration::from_secs(301));
    let step = press(&r, &mut s, "1004217").await;
    assert_eq!(said(&step), "We've reached the time limit for this call.");
    assert_eq!(step.actions.last(), Some(&Action::Hangup));
    assert!(r.log.entries().is_empty(), "no lookup after the limit");
}

#[tokio::test]
async fn silence_reprompts_then_exhausts() {
    let r = rig(false, false);
    let mut s = r.engine.new_session(&r.flow, "CA9", "+15555550100");
    r.engine.step(&r.flow, &mut s, Event::Start).await;
    let step = silence(&r, &mut s).await;
    assert_eq!(
        said(&step),
        "Please enter your employee ID, then press pound."
    );
    silence(&r, &mut s).await;
    let step = silence(&r, &mut s).await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk."
    );
}

/// PIN lockout across calls: the third consecutive wrong PIN locks the account for a minute;
/// a call during the lockout is refused without a directory check and without counting; after
/// the wait the right PIN works and resets the count (security.md checks 12-14).
#[tokio::test]
async fn lockout_grows_across_calls_and_success_resets_it() {
    use common::Call;
    let r = common::rig(Options::default());
    let (mut call, _) = Call::start(&r, "CAlock1").await;
    call.press("1004217").await;
    call.press("11112222").await;
    call.press("11112223").await;
    let step = call.press("11112224").await;
    assert!(
        said(&step).ends_with("Please hold while I transfer you to the service desk."),
        "{}",
        said(&step)
    );
    let lock: Vec<_> = step
        .audit
        .iter()
        .filter(|e| e.event.as_str() == "authn_login_lock")
        .collect();
    assert_eq!(lock.len(), 1);
    assert_eq!(lock[0].reason, "growing_wait");
    assert_eq!(
        lock[0].details.get("locked_for_s").map(String::as_str),
        Some("60")
    );
    let verifies = r.log.count("verify");

    // A second call during the lockout: refused before any PIN is asked, nothing counted.
    let (mut second, _) = Call::start(&r, "CAlock2").await;
    let step = second.press("1004217").await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk."
    );
    assert_eq!(
        r.log.count("verify"),
        verifies,
        "no directory check during a lockout"
    );
    assert!(
        step.audit
            .iter()
            .any(|e| e.reason == "attempt_during_lockout")
    );

    // After the wait, the right PIN works and resets the failures.
    r.clock.advance(Duration::from_secs(61));
    let (mut third, _) = Call::start(&r, "CAlock3").await;
    third.press("1004217").await;
    let step = third.press("27182818").await;
    assert!(
        said(&step).starts_with("Please enter your new PIN"),
        "{}",
        said(&step)
    );
    let (mut fourth, _) = Call::start(&r, "CAlock4").await;
    fourth.press("1004217").await;
    fourth.press("11112222").await;
    let step = fourth.press("11112223").await;
    assert_eq!(
        said(&step),
        "That PIN is not correct. | Please enter your current PIN, then press pound.",
        "two fresh failures are still allowed"
    );
}

/// A directory's own refusal (an HTTP 400 complexity error) is spoken as its reason, the caller
/// may try again, and after the last attempt the call takes `rejected` (seed 003).
#[tokio::test]
async fn a_directory_refusal_is_spoken_as_its_reason() {
    use common::Call;
    let r = common::rig(Options {
        directory_rejects: Some(("policy_common", "HTTP 400: password in dictionary")),
        ..Options::default()
    });
    let (mut call, _) = Call::start(&r, "CArej").await;
    call.press("1004217").await;
    call.press("27182818").await;
    call.press("48319273").await;
    let step = call.press("48319273").await;
    assert_eq!(
        said(&step),
        "That PIN is too common. Please choose another. | Please enter your new PIN, 8 to 12 digits, then press pound."
    );
    let refused = step
        .audit
        .iter()
        .find(|e| e.event.as_str() == "authn_password_change_fail")
        .expect("audited");
    assert_eq!(refused.reason, "directory_rejected");
    for _ in 0..2 {
        call.press("59371846").await;
        call.press("59371846").await;
    }
    assert_eq!(
        call.session.node, "agent",
        "after the last refusal the call takes `rejected`"
    );
}

/// A backend error inside the secure section leaves it through the flow's error path, and the
/// recording is resumed before the caller is transferred.
#[tokio::test]
async fn an_error_inside_the_secure_section_resumes_recording() {
    use common::Call;
    let r = common::rig(Options {
        directory_rejects: Some(("", "HTTP 503")),
        ..Options::default()
    });
    let (mut call, _) = Call::start(&r, "CAerr").await;
    call.press("1004217").await;
    call.press("27182818").await;
    call.press("48319273").await;
    let step = call.press("48319273").await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk."
    );
    let log = r.log.entries();
    let tail: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .skip_while(|e| !e.starts_with("set "))
        .collect();
    assert_eq!(
        tail,
        vec!["set 1004217", "recording Resume"],
        "resumed on the error path"
    );
    assert!(call.session.recording_paused_ms.is_none());
}

/// The whole step has a deadline: a backend call that fits its own budget but not what is
/// left of the step is cut off, and the call takes the error path in time (paused clock:
/// deterministic).
#[tokio::test(start_paused = true)]
async fn a_step_deadline_cuts_off_a_call_that_fits_its_own_budget() {
    use common::Call;
    let fits = common::rig(Options {
        slow_directory: true,
        budgets: Some((Duration::from_secs(10), Duration::from_secs(12))),
        ..Options::default()
    });
    let (mut call, _) = Call::start(&fits, "CAdl1").await;
    let step = call.press("1004217").await;
    assert_eq!(
        said(&step),
        "Please enter your current PIN, then press pound.",
        "5 s lookup within both budgets"
    );
    let cut = common::rig(Options {
        slow_directory: true,
        budgets: Some((Duration::from_secs(10), Duration::from_secs(1))),
        ..Options::default()
    });
    let (mut call, _) = Call::start(&cut, "CAdl2").await;
    let step = call.press("1004217").await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk.",
        "the step deadline cut the lookup"
    );
}

/// Enumeration-safe mode in the engine: a locked account (and an unknown ID) goes on to the
/// PIN prompt like an active one; its PIN, even the right one, is checked against an account
/// no directory holds and is wrong; the failure is audited for the unknown account and the
/// lockout counts on the ID typed, so a later call for it behaves as for a real account.
#[tokio::test]
async fn a_locked_or_unknown_id_is_asked_for_its_pin_and_never_verified() {
    use common::Call;
    let mut locked = resetline_engine::testing::MemoryDirectory::dana();
    locked.account.id = "1004218".into();
    locked.account.state = AccountState::Locked;
    let r = common::rig(Options {
        users: vec![resetline_engine::testing::MemoryDirectory::dana(), locked],
        ..Options::default()
    });
    for (sid, id, pin) in [
        ("CAdecoy1", "1004218", "27182818"),
        ("CAdecoy2", "9999999", "27182818"),
    ] {
        let (mut call, _) = Call::start(&r, sid).await;
        let step = call.press(id).await;
        assert_eq!(
            said(&step),
            "Please enter your current PIN, then press pound."
        );
        let step = call.press(pin).await;
        assert!(
            said(&step).starts_with("That PIN is not correct."),
            "{}",
            said(&step)
        );
        let fail = step
            .audit
            .iter()
            .find(|e| e.event.as_str() == "authn_login_fail")
            .expect("audited");
        assert_eq!(fail.account, resetline_audit::UNKNOWN_ACCOUNT);
        assert_eq!(fail.reason, "wrong");
        call.press("11112223").await;
        call.press("11112224").await;
    }
    assert_eq!(
        r.log.count("verify resetline-no-such-account"),
        6,
        "every decoy check went to an account nobody holds: {:?}",
        r.log.entries()
    );
    assert_eq!(
        r.log.count("verify 1004218"),
        0,
        "the locked account itself is never checked"
    );
    // Three failures on the typed ID locked its PIN checks, as for a real account.
    let (mut again, _) = Call::start(&r, "CAdecoy3").await;
    let step = again.press("9999999").await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk."
    );
}
