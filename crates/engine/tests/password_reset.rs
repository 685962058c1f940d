//! The reference flow (`flows/password-reset.yaml`) through the interpreter: one-time codes by
//! SMS and email, the comfort loop, resends of the same code, expiry and the new code after
//! it, used codes typed again in the same or another call, wrong codes, delivery failures,
//! send caps, tickets, agent transfer, Spanish.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Call, Options, Rig, rig, said};
use resetline_engine::testing::{MemoryDirectory, MemoryMessenger, MemoryUser};
use resetline_engine::*;

fn reference() -> Rig {
    rig(Options {
        flow: "password-reset.yaml",
        ..Options::default()
    })
}

/// Welcome (English), employee ID, then the method menu.
async fn to_methods<'r>(r: &'r Rig, sid: &str) -> Call<'r> {
    let (mut call, step) = Call::start(r, sid).await;
    assert!(
        said(&step).starts_with("Welcome to the service desk PIN reset line."),
        "{}",
        said(&step)
    );
    let step = call.press("1").await;
    assert_eq!(
        said(&step),
        "Please enter your employee ID, then press pound."
    );
    let step = call.press("1004217").await;
    assert_eq!(
        said(&step),
        "To get a code by text message, press 1. By email, press 2. To use your current PIN, press 3."
    );
    call
}

async fn finish_reset(call: &mut Call<'_>) -> Step {
    let step = call.press("48319273").await;
    assert_eq!(said(&step), "Please enter the new PIN again.");
    call.press("48319273").await
}

#[tokio::test]
async fn sms_happy_path_masks_the_number_notifies_and_records_a_ticket() {
    let r = reference();
    let mut call = to_methods(&r, "CA1").await;
    let step = call.press("1").await;
    assert_eq!(
        said(&step),
        "We sent a code to the number ending in 0, 1, 9, 9. | Please enter the 6-digit code."
    );
    let sent = r.messenger.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "+15555550199");
    assert_eq!(
        sent[0].status_callback.as_deref(),
        Some("/sms/status?call=CA1")
    );
    let code = r.messenger.last_code().expect("code in the SMS");
    assert_eq!(code.len(), 6);
    assert!(
        !serde_json::to_string(&call.session)
            .expect("json")
            .contains(&code),
        "the session never holds the code"
    );

    let step = call.press(&code).await;
    assert_eq!(
        said(&step),
        "Please enter your new PIN, 8 to 12 digits, then press pound."
    );
    assert!(
        r.log
            .entries()
            .contains(&"recording Pause { skip: false }".to_string())
    );
    let step = finish_reset(&mut call).await;
    assert_eq!(said(&step), "Your PIN has been changed. Goodbye.");
    assert_eq!(call.session.ended.as_deref(), Some("reset_done"));
    let notice = r.messenger.sent().pop().expect("notice");
    assert!(
        notice
            .body
            .expose()
            .starts_with("Your service desk PIN was changed by phone")
    );
    assert!(
        !notice.body.expose().contains("48319273"),
        "the notice never carries the secret"
    );
    let log = r.log.entries();
    let tail: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .skip_while(|e| !e.starts_with("set "))
        .collect();
    assert_eq!(
        tail,
        vec![
            "set 1004217",
            "recording Resume",
            "send +15555550199",
            "ticket open",
            "ticket close INC0000001"
        ]
    );
}

#[tokio::test]
async fn a_code_works_once() {
    let r = reference();
    let mut call = to_methods(&r, "CA2").await;
    call.press("1").await;
    let code = r.messenger.last_code().expect("code");
    call.press(&code).await;
    assert!(call.session.otp.is_none(), "consumed");
    assert_eq!(call.session.verifications, 1);
}

#[tokio::test]
async fn email_path() {
    let r = reference();
    let mut call = to_methods(&r, "CA3").await;
    let step = call.press("2").await;
    assert_eq!(
        said(&step),
        "We sent a code to your email address on file. | Please enter the 6-digit code."
    );
    let sent = r.messenger.sent();
    assert_eq!(sent[0].to, "dana@example.com");
    assert_eq!(sent[0].status_callback, None);
    let code = r.messenger.last_code().expect("code");
    let step = call.press(&code).await;
    assert!(said(&step).starts_with("Please enter your new PIN"));
}

#[tokio::test]
async fn five_wrong_codes_kill_the_code_and_go_to_an_agent() {
    let r = reference();
    let mut call = to_methods(&r, "CA4").await;
    call.press("1").await;
    let code = r.messenger.last_code().expect("code");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        let step = call.press(wrong).await;
        assert_eq!(
            said(&step),
            "That code didn't work. Please try again. | Please enter the 6-digit code."
        );
    }
    let step = call.press(wrong).await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk."
    );
    assert!(
        call.session.otp.as_ref().is_some_and(|o| o.dead),
        "the code is dead: even the right code fails now"
    );
    assert_eq!(r.messenger.sent().len(), 1, "no code is sent automatically");
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let r = reference();
    let mut call = to_methods(&r, "CA5").await;
    call.press("1").await;
    let code = r.messenger.last_code().expect("code");
    r.clock.advance(Duration::from_secs(10 * 60 + 1));
    let step = call.press(&code).await;
    assert_eq!(
        said(&step),
        "That code has expired. | To get a code by text message, press 1. By email, press 2. To use your current PIN, press 3."
    );
}

#[tokio::test]
async fn comfort_loop_resends_the_same_code_and_the_late_first_sms_still_works() {
    let r = reference();
    let mut call = to_methods(&r, "CA6").await;
    call.press("1").await;
    let first = r.messenger.last_code().expect("code");
    let step = call.silence().await;
    assert_eq!(
        said(&step),
        "(hold music) | If you have the code, press 1 to enter it. To have it sent again, press 2. For another way, press 3."
    );
    // Too soon: the cooldown (30 s) refuses, nothing is sent.
    let step = call.press("2").await;
    assert!(
        said(&step).starts_with("Please wait a few seconds before asking again."),
        "{}",
        said(&step)
    );
    assert_eq!(r.messenger.sent().len(), 1);
    r.clock.advance(Duration::from_secs(31));
    let step = call.press("2").await;
    assert!(
        said(&step).starts_with("We sent the same code again. | (hold music)"),
        "{}",
        said(&step)
    );
    assert_eq!(r.messenger.sent().len(), 2);
    assert_eq!(
        r.messenger.last_code().as_deref(),
        Some(first.as_str()),
        "a resend sends the same code"
    );
    // The first SMS arrives late; its code works, typed during the hold music.
    let step = call.press(&first).await;
    assert!(
        said(&step).starts_with("Please enter your new PIN"),
        "{}",
        said(&step)
    );
}

#[tokio::test]
async fn the_comfort_loop_gives_up_with_a_ticket_number_read_back() {
    let r = reference();
    let mut call = to_methods(&r, "CA7").await;
    call.press("1").await;
    call.silence().await;
    r.clock.advance(Duration::from_secs(181));
    let step = call.silence().await;
    assert_eq!(
        said(&step),
        "Your ticket number is I, N, C, 0, 0, 0, 0, 0, 0, 1. | The service desk will contact you. Goodbye."
    );
    assert_eq!(call.session.ended.as_deref(), Some("ticket_opened"));
}

#[tokio::test]
async fn a_failed_delivery_report_ends_the_wait_early() {
    let r = reference();
    let mut call = to_methods(&r, "CA8").await;
    call.press("1").await;
    call.silence().await;
    // What the server does when the carrier posts MessageStatus=undelivered.
    if let Some(o) = call.session.otp.as_mut() {
        o.delivery = resetline_engine::session::Delivery::Failed;
    }
    let step = call.silence().await;
    assert_eq!(
        said(&step),
        "The text message could not be delivered. | To get a code by text message, press 1. By email, press 2. To use your current PIN, press 3."
    );
}

#[tokio::test]
async fn a_refused_number_takes_the_fallback() {
    let log = Arc::new(resetline_engine::testing::CallLog::default());
    let r = rig(Options {
        flow: "password-reset.yaml",
        messenger: Some(MemoryMessenger::new(log).refusing("+15555550199")),
        ..Options::default()
    });
    let mut call = to_methods(&r, "CA9").await;
    let step = call.press("1").await;
    assert_eq!(
        said(&step),
        "We can't text that number. | To get a code by text message, press 1. By email, press 2. To use your current PIN, press 3."
    );
}

#[tokio::test]
async fn the_sixth_code_to_one_number_in_ten_minutes_is_not_sent() {
    let r = rig(Options {
        flow: "password-reset.yaml",
        counters: true,
        ..Options::default()
    });
    for i in 0..5 {
        let mut call = to_methods(&r, &format!("CAcap{i}")).await;
        let step = call.press("1").await;
        assert!(said(&step).starts_with("We sent a code"), "{}", said(&step));
    }
    let mut call = to_methods(&r, "CAcap5").await;
    let step = call.press("1").await;
    assert_eq!(
        said(&step),
        "Too many codes were sent to this number. Please choose another way. | To get a code by text message, press 1. By email, press 2. To use your current PIN, press 3."
    );
    assert_eq!(
        r.messenger.sent().len(),
        5,
        "no provider call for the sixth"
    );
}

#[tokio::test]
async fn with_the_ticket_system_down_the_caller_still_gets_an_agent() {
    let r = rig(Options {
        flow: "password-reset.yaml",
        tickets_down: true,
        ..Options::default()
    });
    let mut call = to_methods(&r, "CA10").await;
    call.press("1").await;
    call.silence().await;
    r.clock.advance(Duration::from_secs(181));
    let step = call.silence().await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk."
    );
    assert!(matches!(step.actions.last(), Some(Action::Enqueue { .. })));
}

#[tokio::test]
async fn a_locked_account_is_transferred_with_an_explanation() {
    let mut locked = MemoryDirectory::dana();
    locked.account.state = AccountState::Locked;
    let r = rig(Options {
        flow: "password-reset.yaml",
        users: vec![MemoryUser { ..locked }],
        ..Options::default()
    });
    let (mut call, _) = Call::start(&r, "CA11").await;
    call.press("1").await;
    let step = call.press("1004217").await;
    assert_eq!(
        said(&step),
        "Your account is locked. I'm transferring you to the service desk."
    );
    assert!(
        matches!(step.actions.last(), Some(Action::Enqueue { queue, .. }) if queue == "service-desk")
    );
}

#[tokio::test]
async fn spanish_callers_hear_spanish() {
    let r = reference();
    let (mut call, _) = Call::start(&r, "CA12").await;
    let step = call.press("2").await;
    assert_eq!(
        said(&step),
        "Marque su número de empleado y después la tecla numeral."
    );
    call.press("1004217").await;
    let step = call.press("1").await;
    assert_eq!(
        said(&step),
        "Enviamos un código al número que termina en 0, 1, 9, 9. | Marque el código de 6 dígitos."
    );
    assert!(
        r.messenger.sent()[0]
            .body
            .expose()
            .starts_with("Su código de verificación")
    );
}

/// One audit record per event (two for an effect: its intent and its outcome), in order; a
/// retried webhook adds none; no record holds the code, the PIN or a full phone number.
#[tokio::test]
async fn the_audit_trail_of_a_reset_by_sms() {
    let r = reference();
    let mut events: Vec<resetline_audit::Record> = Vec::new();
    let (mut call, step) = Call::start(&r, "CA13").await;
    events.extend(step.audit);
    for digits in ["1", "1004217", "1"] {
        events.extend(call.press(digits).await.audit);
    }
    let code = r.messenger.last_code().expect("code");
    events.extend(call.press(&code).await.audit);
    // The carrier retries the last webhook: same answer, no new record.
    let token = call.session.last.as_ref().expect("an answer").token;
    let again = r
        .engine
        .step(
            &r.flow,
            &mut call.session,
            Event::Digits {
                token,
                digits: Secret::new(&code),
            },
        )
        .await;
    assert!(again.replayed && again.audit.is_empty());
    for digits in ["12345678", "48319273", "48319273"] {
        events.extend(call.press(digits).await.audit);
    }
    let kinds: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.outcome.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("session_created", "info", "incoming_call"),
            ("identify", "success", "found"),
            ("authn_token_created", "intent", "sent"),
            ("authn_token_created", "success", "sent"),
            ("authn_login_success", "success", "verified"),
            ("recording_paused", "success", "paused"),
            ("authn_password_change_fail", "failure", "policy"),
            ("authn_password_change", "intent", "set"),
            ("authn_password_change", "success", "set"),
            ("recording_resumed", "info", "resumed"),
            ("notification_sent", "intent", "sent"),
            ("notification_sent", "success", "sent"),
            ("ticket_opened", "success", "recorded"),
            ("call_ended", "info", "reset_done"),
        ]
    );
    // Each effect's outcome names its intent, whose id is unique.
    for (intent, outcome) in [(2, 3), (7, 8), (10, 11)] {
        let id = events[intent].id.expect("an intent has an id").to_string();
        assert_eq!(events[outcome].details.get("intent"), Some(&id));
    }
    let sent = &events[3];
    assert_eq!(
        sent.destination.as_ref().map(|d| d.as_str()),
        Some("***0199")
    );
    assert_eq!(sent.account, "1004217");
    assert_eq!(events[0].account, "unknown");
    assert_eq!(
        events[0].caller.as_ref().map(|c| c.as_str()),
        Some("***0100")
    );
    assert_eq!(
        events[6].details.get("rule").map(String::as_str),
        Some("sequential")
    );
    let all = format!("{events:?}");
    for secret in [
        code.as_str(),
        "48319273",
        "12345678",
        "+15555550199",
        "+15555550100",
    ] {
        assert!(!all.contains(secret), "audit records hold {secret}");
    }
}

#[tokio::test]
async fn five_wrong_codes_are_audited_with_the_max_event() {
    let r = reference();
    let mut call = to_methods(&r, "CA14").await;
    call.press("1").await;
    let code = r.messenger.last_code().expect("code");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut events = Vec::new();
    for _ in 0..5 {
        events.extend(call.press(wrong).await.audit);
    }
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "authn_login_fail").count(),
        5
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "authn_login_fail_max")
            .count(),
        1
    );
    assert!(kinds.contains(&"call_transferred"));
}

/// Send limits beyond the per-number cap: a country allowlist, a per-prefix cap and a global
/// budget; each refusal makes no provider call and is audited with its rule.
#[tokio::test]
async fn send_limits_refuse_without_a_provider_call() {
    async fn try_send(r: &Rig, sid: &str) -> (String, Vec<String>) {
        let mut call = to_methods(r, sid).await;
        let step = call.press("1").await;
        let rules = step
            .audit
            .iter()
            .filter(|e| e.event.as_str() == "excess_rate_limit_exceeded")
            .map(|e| e.reason.clone())
            .collect();
        (said(&step), rules)
    }
    let refused = "Too many codes were sent to this number. Please choose another way. | To get a code by text message, press 1. By email, press 2. To use your current PIN, press 3.";

    let r = rig(Options {
        flow: "password-reset.yaml",
        counters: true,
        limits: SendLimits {
            sms_prefixes: vec!["+44".into()],
            ..SendLimits::default()
        },
        ..Options::default()
    });
    assert_eq!(
        try_send(&r, "CAc1").await,
        (refused.to_string(), vec!["country_not_allowed".to_string()])
    );
    assert!(r.messenger.sent().is_empty());

    let r = rig(Options {
        flow: "password-reset.yaml",
        counters: true,
        limits: SendLimits {
            global: (1, 3_600_000),
            ..SendLimits::default()
        },
        ..Options::default()
    });
    assert!(try_send(&r, "CAg1").await.0.starts_with("We sent a code"));
    assert_eq!(
        try_send(&r, "CAg2").await,
        (refused.to_string(), vec!["global_budget".to_string()])
    );
    assert_eq!(r.messenger.sent().len(), 1);

    let mut neighbour = MemoryDirectory::dana();
    neighbour.account.id = "1004218".into();
    neighbour.account.mobile = Some("+15555550188".into());
    let r = rig(Options {
        flow: "password-reset.yaml",
        counters: true,
        users: vec![MemoryDirectory::dana(), neighbour],
        limits: SendLimits {
            per_prefix: (1, 600_000),
            ..SendLimits::default()
        },
        ..Options::default()
    });
    assert!(try_send(&r, "CAp1").await.0.starts_with("We sent a code"));
    let (mut call, _) = Call::start(&r, "CAp2").await;
    call.press("1").await;
    call.press("1004218").await;
    let step = call.press("1").await;
    assert_eq!(
        said(&step),
        refused,
        "+1555555 0188 shares the prefix of +1555555 0199"
    );
    assert_eq!(r.messenger.sent().len(), 1);
}

/// Generated-password mode: the password is delivered first and set only once delivered; a
/// failed delivery changes nothing.
#[tokio::test]
async fn a_generated_password_is_delivered_then_set() {
    let r = rig(Options {
        flow: "generated.yaml",
        ..Options::default()
    });
    let (mut call, _) = Call::start(&r, "CAgen").await;
    call.press("1004217").await;
    let code = r.messenger.last_code().expect("code");
    let step = call.press(&code).await;
    assert_eq!(said(&step), "Your PIN has been changed. Goodbye.");
    let mail = r.messenger.sent().pop().expect("password mail");
    assert_eq!(mail.to, "dana@example.com");
    let password = mail
        .body
        .expose()
        .split_whitespace()
        .nth(6)
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_string();
    assert!(
        password.len() >= 12 && password.chars().any(|c| c.is_ascii_digit()),
        "{password}"
    );
    assert_eq!(
        r.log
            .entries()
            .iter()
            .filter(|e| e.starts_with("set "))
            .count(),
        1
    );
    assert!(
        step.audit
            .iter()
            .any(|e| e.event.as_str() == "authn_password_change" && e.reason == "generated")
    );
    assert!(!format!("{:?}", step.audit).contains(&password));

    let log = Arc::new(resetline_engine::testing::CallLog::default());
    let r = rig(Options {
        flow: "generated.yaml",
        messenger: Some(MemoryMessenger::new(log).refusing("dana@example.com")),
        ..Options::default()
    });
    let (mut call, _) = Call::start(&r, "CAgen2").await;
    call.press("1004217").await;
    let code = r.messenger.last_code().expect("code");
    let step = call.press(&code).await;
    assert_eq!(
        said(&step),
        "We couldn't send your new password, so your password was not changed. | Please hold while I transfer you to the service desk."
    );
    assert!(
        !r.log.entries().iter().any(|e| e.starts_with("set ")),
        "nothing set when the delivery failed"
    );
}

/// Wrong codes count against the account across calls: once a code's worth of consecutive
/// failures is exceeded, further code checks wait (security.md check 12 applies to codes too).
#[tokio::test]
async fn wrong_codes_lock_the_account_across_calls() {
    let r = reference();
    let wrong = |code: &str| {
        if code == "000000" {
            "111111".to_string()
        } else {
            "000000".to_string()
        }
    };
    let mut call = to_methods(&r, "CAcl1").await;
    call.press("1").await;
    let code = r.messenger.last_code().expect("code");
    for _ in 0..5 {
        call.press(&wrong(&code)).await;
    }
    let mut second = to_methods(&r, "CAcl2").await;
    second.press("1").await;
    let code = r.messenger.last_code().expect("code");
    let step = second.press(&wrong(&code)).await;
    assert!(
        step.audit
            .iter()
            .any(|e| e.event.as_str() == "authn_login_lock"),
        "the sixth consecutive failure locks"
    );
    let mut third = to_methods(&r, "CAcl3").await;
    third.press("1").await;
    let code = r.messenger.last_code().expect("code");
    let step = third.press(&code).await;
    assert!(
        step.audit
            .iter()
            .any(|e| e.reason == "attempt_during_lockout"),
        "even the right code waits out the lockout"
    );
    assert!(!said(&step).starts_with("Please enter your new PIN"));
}

/// A failed report for a resent message does not lock out the right code typed afterwards.
#[tokio::test]
async fn a_right_code_wins_over_a_late_failure_report() {
    let r = reference();
    let mut call = to_methods(&r, "CAlate").await;
    call.press("1").await;
    let code = r.messenger.last_code().expect("code");
    if let Some(o) = call.session.otp.as_mut() {
        o.delivery = resetline_engine::session::Delivery::Failed;
    }
    let step = call.press(&code).await;
    assert!(
        said(&step).starts_with("Please enter your new PIN"),
        "{}",
        said(&step)
    );
}

/// A flow that asks for the same code again after it verified (security.md check 6).
const ASK_AGAIN: &str = r#"
flow: ask-again
start: identify
settings: { max_call_seconds: 600, locales: [en-US], on_error: agent }
nodes:
  identify:
    gather: { say: enter_employee_id, digits: 6..8, into: employee_id }
    next: lookup
    on: { exhausted: agent }
  lookup:
    directory.find: { by: employee_id, value: "{{ employee_id }}" }
    next: send
    on: { not_found: agent, locked: agent, disabled: agent, not_allowed: agent }
  send:
    code.send: { channel: sms, to: user.mobile, say: code_sent_email }
    next: verify
    on: { undeliverable: agent, rate_limited: agent }
  verify:
    code.verify: { from: send, say: enter_code }
    next: again
    on: { failed: agent, expired: agent, delivery_failed: agent }
  again:
    menu: { say: choose_method, keys: { "1": verify, "2": agent } }
    on: { exhausted: agent }
  agent:
    transfer: { say: transferring, queue: service-desk }
"#;

/// security.md check 6: a code works once; typed again in the same call it is refused.
#[tokio::test]
async fn a_used_code_typed_again_in_the_same_call_is_refused() {
    let compiled = resetline_flow::compile("ask-again.yaml", ASK_AGAIN, None);
    assert!(compiled.is_ok(), "{:?}", compiled.diagnostics);
    let r = common::rig_with(Options::default(), compiled.flow.expect("flow"));
    let (mut call, _) = Call::start(&r, "CAagain").await;
    call.press("1004217").await;
    let code = r.messenger.last_code().expect("code");
    let step = call.press(&code).await;
    assert!(
        said(&step).starts_with("To get a code by text message"),
        "{}",
        said(&step)
    );
    assert_eq!(call.session.verifications, 1);
    let step = call.press("1").await;
    assert_eq!(said(&step), "Please enter the 6-digit code.");
    let step = call.press(&code).await;
    assert_eq!(
        said(&step),
        "Please hold while I transfer you to the service desk.",
        "the used code is refused"
    );
    assert_eq!(
        call.session.verifications, 1,
        "a used code never counts twice"
    );
    assert_eq!(r.messenger.sent().len(), 1, "no new code was sent");
}

/// security.md check 6: a code used in one call is refused in another call of the same
/// account, whose own code still works.
#[tokio::test]
async fn a_used_code_typed_in_another_call_is_refused() {
    let r = reference();
    let mut first = to_methods(&r, "CAused1").await;
    first.press("1").await;
    let used = r.messenger.last_code().expect("code");
    let step = first.press(&used).await;
    assert!(
        said(&step).starts_with("Please enter your new PIN"),
        "{}",
        said(&step)
    );

    let mut second = to_methods(&r, "CAused2").await;
    second.press("1").await;
    let own = r.messenger.last_code().expect("code");
    assert_ne!(own, used, "every call gets its own code");
    let step = second.press(&used).await;
    assert_eq!(
        said(&step),
        "That code didn't work. Please try again. | Please enter the 6-digit code."
    );
    assert_eq!(second.session.verifications, 0);
    let step = second.press(&own).await;
    assert!(
        said(&step).starts_with("Please enter your new PIN"),
        "{}",
        said(&step)
    );
}

/// security.md check 8: while a code is valid a resend sends the same one (see
/// `comfort_loop_resends_the_same_code_and_the_late_first_sms_still_works`); after expiry the
/// next send mints a new code, and the expired one no longer works.
#[tokio::test]
async fn after_expiry_a_new_code_is_sent_and_the_old_one_is_refused() {
    let r = reference();
    let mut call = to_methods(&r, "CAexpiry").await;
    call.press("1").await;
    let old = r.messenger.last_code().expect("code");
    r.clock.advance(Duration::from_secs(10 * 60 + 1));
    let step = call.press(&old).await;
    assert!(
        said(&step).starts_with("That code has expired."),
        "{}",
        said(&step)
    );
    let step = call.press("1").await;
    assert!(said(&step).starts_with("We sent a code"), "{}", said(&step));
    assert_eq!(r.messenger.sent().len(), 2);
    let new = r.messenger.last_code().expect("code");
    assert_ne!(new, old, "after expiry the code is a new one");
    let step = call.press(&old).await;
    assert_eq!(
        said(&step),
        "That code didn't work. Please try again. | Please enter the 6-digit code."
    );
    let step = call.press(&new).await;
    assert!(
        said(&step).starts_with("Please enter your new PIN"),
        "{}",
        said(&step)
    );
}
