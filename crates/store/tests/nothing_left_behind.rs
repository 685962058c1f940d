//! In-memory state that only grows (issue 22, finding 14): send counters and lockouts of
//! callers and accounts nobody hears from again are dropped once their window has passed,
//! so 100,000 distinct callers leave nothing behind; a suspension stays until an operator
//! clears it.

use std::sync::Arc;
use std::time::Duration;

use resetline_engine::{Counters, FakeClock, LockPolicy, Lockouts};
use resetline_store::{MemoryCounters, MemoryLockouts};

const HOUR_MS: u64 = 3_600_000;

#[tokio::test]
async fn a_hundred_thousand_callers_leave_no_send_counter_behind_after_the_window() {
    let clock = FakeClock::at(1_000_000);
    let counters = MemoryCounters::new(Arc::new(clock.clone()));
    for i in 0..100_000u32 {
        let caller = format!("send-caller:+1555{i:07}");
        assert_eq!(counters.hit(&caller, HOUR_MS, 10).await, Ok(true));
    }
    // Refused hits leave nothing of their own either.
    for _ in 0..20 {
        counters.hit("send:+15555550199", 600_000, 5).await.ok();
    }
    assert_eq!(counters.len(), 100_001);
    clock.advance(Duration::from_millis(HOUR_MS + 1));
    assert_eq!(
        counters.hit("send-caller:+15550000000", HOUR_MS, 10).await,
        Ok(true),
        "the next hit after the window"
    );
    assert_eq!(counters.len(), 1, "only the caller counted just now");
}

#[tokio::test]
async fn a_key_inside_its_own_window_is_kept_whatever_the_other_windows() {
    let clock = FakeClock::at(1_000_000);
    let counters = MemoryCounters::new(Arc::new(clock.clone()));
    counters.hit("send:+15555550199", 600_000, 5).await.ok();
    counters.hit("send-account:1004217", HOUR_MS, 1).await.ok();
    clock.advance(Duration::from_secs(11 * 60));
    counters.hit("send:+15555550100", 600_000, 5).await.ok();
    assert_eq!(
        counters.hit("send-account:1004217", HOUR_MS, 1).await,
        Ok(false),
        "the hour's cap still holds after the ten-minute keys went"
    );
    assert_eq!(counters.len(), 2);
}

#[tokio::test]
async fn a_hundred_thousand_accounts_leave_no_lockout_behind_after_the_reset_period() {
    let policy = LockPolicy::PIN;
    let lockouts = MemoryLockouts::new();
    let t0 = 1_000_000;
    for i in 0..100_000u32 {
        lockouts
            .failure(&format!("{i:07}"), t0, policy)
            .await
            .expect("counted");
    }
    let suspended = "9999999";
    for _ in 0..policy.suspend_at {
        lockouts.failure(suspended, t0, policy).await.expect("ok");
    }
    assert_eq!(lockouts.len(), 100_001);
    let later = t0 + policy.reset_after_ms;
    lockouts
        .failure("0000001", later, policy)
        .await
        .expect("ok");
    assert_eq!(lockouts.len(), 2, "the new failure and the suspension");
    let state = lockouts.get(suspended).await.expect("state");
    assert!(
        state.locked(later + 365 * 24 * HOUR_MS, &policy),
        "a suspension never lifts by itself"
    );
}
