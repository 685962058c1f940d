//! Breaker tests with a fake clock and scripted backends.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use resetline_engine::FakeClock;
use resetline_engine::testing::{CallLog, MemoryTickets};

use super::*;

fn breaker(clock: &FakeClock) -> Arc<Breaker> {
    Arc::new(Breaker::new(
        "directory",
        BreakerPolicy {
            failures: 3,
            cool_down: Duration::from_secs(10),
        },
        Arc::new(clock.clone()),
    ))
}

/// A directory that fails while `down` is set, counting the calls that reach it.
#[derive(Debug, Default)]
struct Flaky {
    down: AtomicU32,
    calls: AtomicUsize,
    hang: AtomicU32,
}

impl Directory for Flaky {
    fn find<'a>(
        &'a self,
        _by: LookupBy,
        _value: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, BackendError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang.load(Ordering::SeqCst) == 1 {
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::SeqCst) == 1 {
                Err(BackendError::new("directory", "connection refused"))
            } else {
                Ok(None)
            }
        })
    }

    fn verify_pin<'a>(
        &'a self,
        _account: &'a str,
        _pin: &'a Secret,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async { Ok(false) })
    }

    fn set_secret<'a>(
        &'a self,
        _account: &'a str,
        _secret: &'a Secret,
    ) -> BoxFuture<'a, Result<(), SetSecretError>> {
        Box::pin(async {
            Err(SetSecretError::Rejected {
                prompt: "policy_common".into(),
                reason: "too common".into(),
            })
        })
    }
}

#[tokio::test]
async fn opens_after_consecutive_failures_fails_fast_then_probes_and_closes() {
    let clock = FakeClock::at(1_000_000);
    let flaky = Arc::new(Flaky::default());
    let b = breaker(&clock);
    let dir = Guarded::<dyn Directory>::new(flaky.clone(), b.clone());
    flaky.down.store(1, Ordering::SeqCst);
    for _ in 0..3 {
        let e = dir.find(LookupBy::EmployeeId, "1").await.unwrap_err();
        assert_eq!(e.message, "connection refused");
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    // Open: fails fast, the backend is not called.
    let e = dir.find(LookupBy::EmployeeId, "1").await.unwrap_err();
    assert!(e.message.contains("circuit open"), "{e}");
    assert_eq!(e.backend, "directory");
    assert!(!e.timeout);
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    // Cool-down passes: one probe; it fails, so the breaker opens again.
    clock.advance(Duration::from_secs(10));
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert!(dir.find(LookupBy::EmployeeId, "1").await.is_err());
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
    assert_eq!(b.state(), BreakerState::Open);
    assert!(dir.find(LookupBy::EmployeeId, "1").await.is_err());
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 4, "open again: no call");
    // The backend recovers: the next probe closes the breaker.
    flaky.down.store(0, Ordering::SeqCst);
    clock.advance(Duration::from_secs(10));
    assert_eq!(dir.find(LookupBy::EmployeeId, "1").await, Ok(None));
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(dir.find(LookupBy::EmployeeId, "1").await, Ok(None));
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_success_resets_the_count() {
    let clock = FakeClock::at(0);
    let flaky = Arc::new(Flaky::default());
    let b = breaker(&clock);
    let dir = Guarded::<dyn Directory>::new(flaky.clone(), b.clone());
    for _ in 0..5 {
        flaky.down.store(1, Ordering::SeqCst);
        assert!(dir.find(LookupBy::EmployeeId, "1").await.is_err());
        assert!(dir.find(LookupBy::EmployeeId, "1").await.is_err());
        flaky.down.store(0, Ordering::SeqCst);
        assert!(dir.find(LookupBy::EmployeeId, "1").await.is_ok());
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test]
async fn refusals_are_answers_not_failures() {
    let clock = FakeClock::at(0);
    let flaky = Arc::new(Flaky::default());
    let b = breaker(&clock);
    let dir = Guarded::<dyn Directory>::new(flaky, b.clone());
    for _ in 0..10 {
        assert!(matches!(
            dir.set_secret("1", &Secret::new("12345678")).await,
            Err(SetSecretError::Rejected { .. })
        ));
        assert_eq!(dir.verify_pin("1", &Secret::new("1")).await, Ok(false));
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test]
async fn an_abandoned_call_counts_as_a_failure_and_one_probe_at_a_time() {
    let clock = FakeClock::at(0);
    let flaky = Arc::new(Flaky::default());
    let b = breaker(&clock);
    let dir = Arc::new(Guarded::<dyn Directory>::new(flaky.clone(), b.clone()));
    flaky.hang.store(1, Ordering::SeqCst);
    for _ in 0..3 {
        let r = tokio::time::timeout(
            Duration::from_millis(5),
            dir.find(LookupBy::EmployeeId, "1"),
        )
        .await;
        assert!(r.is_err(), "the caller gave up");
    }
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(Duration::from_secs(10));
    // A probe hangs; a concurrent call fails fast instead of joining it.
    let d2 = dir.clone();
    let probe = tokio::spawn(async move { d2.find(LookupBy::EmployeeId, "1").await });
    while flaky.calls.load(Ordering::SeqCst) < 4 {
        tokio::task::yield_now().await;
    }
    let e = dir.find(LookupBy::EmployeeId, "1").await.unwrap_err();
    assert!(e.message.contains("circuit open"));
    probe.abort();
    let _ = probe.await;
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "the abandoned probe reopened it"
    );
}

#[tokio::test]
async fn tickets_and_messages_are_guarded_too() {
    let clock = FakeClock::at(0);
    let log = Arc::new(CallLog::default());
    let b = Arc::new(Breaker::new(
        "tickets",
        BreakerPolicy {
            failures: 2,
            cool_down: Duration::from_secs(5),
        },
        Arc::new(clock.clone()),
    ));
    let tickets =
        Guarded::<dyn Tickets>::new(Arc::new(MemoryTickets::new(log.clone()).down()), b.clone());
    let t = || NewTicket {
        summary: "s".into(),
        details: None,
        category: None,
        call_sid: "CA1".into(),
    };
    assert!(tickets.open(t()).await.is_err());
    assert!(tickets.open(t()).await.is_err());
    let tried = log.entries().len();
    let e = tickets.open(t()).await.unwrap_err();
    assert!(e.message.contains("circuit open"));
    assert_eq!(e.backend, "tickets");
    assert_eq!(log.entries().len(), tried, "not called while open");

    let mb = Arc::new(Breaker::new(
        "messages",
        BreakerPolicy::default(),
        Arc::new(clock.clone()),
    ));
    let messenger = Guarded::<dyn Messenger>::new(
        Arc::new(resetline_engine::testing::MemoryMessenger::new(log.clone()).refusing("+1555")),
        mb.clone(),
    );
    for _ in 0..10 {
        let m = OutgoingMessage {
            channel: resetline_flow::model::Channel::Sms,
            to: "+1555".into(),
            subject: String::new(),
            body: Secret::new("x"),
            status_callback: None,
        };
        assert!(matches!(
            messenger.send(m).await,
            Err(SendError::Undeliverable { .. })
        ));
    }
    assert_eq!(
        mb.state(),
        BreakerState::Closed,
        "undeliverable is an answer"
    );
}

#[tokio::test]
async fn recording_control_is_guarded() {
    let clock = FakeClock::at(0);
    let log = Arc::new(CallLog::default());
    let b = Arc::new(Breaker::new(
        "recording",
        BreakerPolicy {
            failures: 1,
            cool_down: Duration::from_secs(5),
        },
        Arc::new(clock.clone()),
    ));
    let recording = Guarded::<dyn Recording>::new(
        Arc::new(resetline_engine::testing::ScriptedRecording::failing(
            log.clone(),
        )),
        b.clone(),
    );
    let pause = RecordingChange::Pause { skip: false };
    assert!(recording.change("CA1", pause).await.is_err());
    let calls = log.entries().len();
    let e = recording.change("CA1", pause).await.unwrap_err();
    assert!(e.message.contains("circuit open"), "{e}");
    assert_eq!(log.entries().len(), calls, "not called while open");
    let ok = Guarded::<dyn Recording>::new(
        Arc::new(resetline_engine::testing::ScriptedRecording::ok(log)),
        Arc::new(Breaker::new(
            "recording",
            BreakerPolicy::default(),
            Arc::new(clock),
        )),
    );
    assert_eq!(ok.change("CA1", pause).await, Ok(RecordingAck::Done));
}

#[test]
fn state_names_and_debug() {
    let clock = FakeClock::at(0);
    let b = breaker(&clock);
    assert_eq!(b.state().as_str(), "closed");
    assert_eq!(BreakerState::HalfOpen.as_gauge(), 2);
    assert!(format!("{b:?}").contains("Closed"));
}
