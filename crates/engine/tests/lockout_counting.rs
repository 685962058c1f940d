//! Only completed PIN checks count toward a lockout (issue 22, findings 7 and 8): a check
//! that failed at the directory, ran out of time (a slow bind, a queue for the hash pool) or
//! was cancelled gives back the attempt it reserved, so a directory outage never pushes real
//! users toward the growing wait or the 100-failure suspension; wrong PINs still count.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Call, Options, Rig, rig, said};
use resetline_engine::testing::{CallLog, MemoryDirectory};
use resetline_engine::*;

const DANA: &str = "1004217";

/// The PIN-only flow against `directory`, sharing `lockouts` with other rigs.
fn against(directory: MemoryDirectory, lockouts: &Arc<resetline_store::MemoryLockouts>) -> Rig {
    rig(Options {
        directory: Some(Arc::new(directory)),
        lockouts: Some(lockouts.clone()),
        ..Options::default()
    })
}

fn dana(log: &Arc<CallLog>) -> MemoryDirectory {
    MemoryDirectory::new(vec![MemoryDirectory::dana()], log.clone())
}

/// One call that identifies Dana and types `pin`.
async fn one_pin(r: &Rig, sid: &str, pin: &str) -> Step {
    let (mut call, _) = Call::start(r, sid).await;
    call.press(DANA).await;
    call.press(pin).await
}

#[tokio::test]
async fn pin_checks_that_fail_at_the_directory_are_not_counted_as_failures() {
    let lockouts = Arc::new(resetline_store::MemoryLockouts::new());
    let log = Arc::new(CallLog::default());
    let down = against(dana(&log).failing_pin_checks(), &lockouts);
    for i in 0..5 {
        let step = one_pin(&down, &format!("CAdown{i}"), "27182818").await;
        assert_eq!(
            said(&step),
            "Please hold while I transfer you to the service desk.",
            "the error path"
        );
        assert!(
            step.audit
                .iter()
                .any(|e| e.event.as_str() == "authn_login_fail" && e.outcome.as_str() == "error"),
            "the failed check is audited as an error"
        );
    }
    assert_eq!(log.count("verify"), 5, "every check reached the directory");
    assert_eq!(
        lockouts.get(DANA).await,
        Ok(LockState::default()),
        "five directory errors counted nothing"
    );
    // The directory is back: Dana is not locked out and her PIN works.
    let up = against(dana(&log), &lockouts);
    let step = one_pin(&up, "CAup", "27182818").await;
    assert!(
        said(&step).starts_with("Please enter your new PIN"),
        "{}",
        said(&step)
    );
}

/// A check that waits longer than its budget (a bind that hangs, a hash that waited in a
/// queue) takes the error path and is not counted (paused clock: deterministic).
#[tokio::test(start_paused = true)]
async fn pin_checks_cut_off_by_the_time_budget_are_not_counted_as_failures() {
    let lockouts = Arc::new(resetline_store::MemoryLockouts::new());
    let log = Arc::new(CallLog::default());
    let slow = against(
        dana(&log).slow_pin_checks(Duration::from_secs(30)),
        &lockouts,
    );
    for i in 0..3 {
        let step = one_pin(&slow, &format!("CAslow{i}"), "27182818").await;
        assert_eq!(
            said(&step),
            "Please hold while I transfer you to the service desk."
        );
    }
    assert_eq!(lockouts.get(DANA).await, Ok(LockState::default()));
}

/// Giving back is exact: wrong PINs typed between the errors still count, one each.
#[tokio::test]
async fn wrong_pins_still_count_between_directory_errors() {
    let lockouts = Arc::new(resetline_store::MemoryLockouts::new());
    let log = Arc::new(CallLog::default());
    let (up, down) = (
        against(dana(&log), &lockouts),
        against(dana(&log).failing_pin_checks(), &lockouts),
    );
    one_pin(&up, "CAw1", "11112222").await;
    one_pin(&down, "CAe1", "27182818").await;
    one_pin(&up, "CAw2", "11112223").await;
    one_pin(&down, "CAe2", "27182818").await;
    let state = lockouts.get(DANA).await.expect("state");
    assert_eq!(state.failures, 2, "the two wrong PINs, not the two errors");
    assert!(!state.locked(up.clock.now_ms(), &LockPolicy::PIN));
    let step = one_pin(&up, "CAw3", "11112224").await;
    assert!(
        step.audit
            .iter()
            .any(|e| e.event.as_str() == "authn_login_lock" && e.reason == "growing_wait"),
        "the third wrong PIN starts the wait as usual"
    );
}

/// A webhook dropped mid-check (the carrier hung up, a server deadline cancelled the step)
/// never learns the answer, so its reserved attempt is given back too (paused clock).
#[tokio::test(start_paused = true)]
async fn a_pin_check_cancelled_with_its_webhook_is_not_counted_as_a_failure() {
    let lockouts = Arc::new(resetline_store::MemoryLockouts::new());
    let log = Arc::new(CallLog::default());
    let mut slow = against(
        dana(&log).slow_pin_checks(Duration::from_secs(3)),
        &lockouts,
    );
    slow.engine.budget = Duration::from_secs(10);
    let (mut call, _) = Call::start(&slow, "CAcancel").await;
    call.press(DANA).await;
    let typed = call.press("11112222");
    let cut = tokio::time::timeout(Duration::from_secs(1), typed).await;
    assert!(cut.is_err(), "the step was dropped during the check");
    assert_eq!(log.count("verify"), 1, "the check had started");
    // The give-back runs on its own task once the step is gone.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(lockouts.get(DANA).await, Ok(LockState::default()));
}
