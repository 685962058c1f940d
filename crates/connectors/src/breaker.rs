//! A circuit breaker per backend, and decorators that put one in front of a [`Directory`], a
//! [`Messenger`], a [`Tickets`] or a [`Recording`] (issue 7 item 5).
//!
//! A backend that is down would otherwise make every call wait its whole time budget before
//! the flow's error path (ticket or agent) starts. The breaker counts consecutive failures;
//! after [`BreakerPolicy::failures`] of them it *opens*: calls fail at once with a
//! [`BackendError`] (so the flow takes its `error` edge without waiting) until
//! [`BreakerPolicy::cool_down`] has passed. Then it lets one probe through (*half-open*): a
//! success closes it, a failure opens it for another cool-down. While the probe is in flight,
//! other calls still fail fast.
//!
//! What counts as a failure: a [`BackendError`] (including timeouts) and a call abandoned
//! before it finished (the engine drops a call that exceeds its budget; the permit's `Drop`
//! records that as a failure). An answer that refuses something (a policy refusal, a locked
//! account, an undeliverable number, "not found") is a working backend: a success.
//!
//! Invariant: time comes only from the injected [`Clock`], so tests are deterministic; the
//! breaker never holds its lock across an await, and never changes what a working backend
//! answers.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use resetline_engine::{
    Account, BackendError, BoxFuture, Clock, Directory, Messenger, NewTicket, OutgoingMessage,
    Recording, RecordingAck, RecordingChange, Secret, SendError, SentMessage, SetSecretError,
    TicketRef, Tickets,
};
use resetline_flow::model::LookupBy;

/// When a breaker opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker (at least 1).
    pub failures: u32,
    /// How long it stays open before one probe is let through.
    pub cool_down: Duration,
}

impl Default for BreakerPolicy {
    /// 5 consecutive failures open it for 30 s.
    fn default() -> Self {
        BreakerPolicy {
            failures: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// A breaker's state, as reported for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// One probe is allowed (or in flight); other calls fail fast.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open` (a fixed set: safe as a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 open, 2 half-open (a gauge value).
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { consecutive: u32 },
    Open { until_ms: u64 },
    HalfOpen { probing: bool },
}

/// One backend's circuit breaker. Share it (`Arc`) between the decorators of one backend.
pub struct Breaker {
    backend: &'static str,
    policy: BreakerPolicy,
    clock: Arc<dyn Clock>,
    state: Mutex<Inner>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("backend", &self.backend)
            .field("policy", &self.policy)
            .field("state", &self.state())
            .finish()
    }
}

/// Leave to make one call; records a failure if dropped without an outcome.
#[derive(Debug)]
struct Permit<'a> {
    breaker: &'a Breaker,
    done: bool,
}

impl Permit<'_> {
    fn finish(mut self, ok: bool) {
        self.done = true;
        self.breaker.record(ok);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The caller gave up (budget exceeded): the backend did not answer in time.
            self.breaker.record(false);
        }
    }
}

impl Breaker {
    /// A closed breaker for `backend` (the name in its errors and logs).
    pub fn new(backend: &'static str, policy: BreakerPolicy, clock: Arc<dyn Clock>) -> Self {
        Breaker {
            backend,
            policy: BreakerPolicy {
                failures: policy.failures.max(1),
                ..policy
            },
            clock,
            state: Mutex::new(Inner::Closed { consecutive: 0 }),
        }
    }

    /// The backend name.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The current state (an open breaker whose cool-down has passed reports half-open).
    pub fn state(&self) -> BreakerState {
        let now = self.clock.now_ms();
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until_ms } if now < until_ms => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every write replaces the whole value, so a poisoned lock still holds a valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_error(&self) -> BackendError {
        BackendError::new(
            self.backend,
            "circuit open after repeated failures; failing fast",
        )
    }

    /// Admits one call, or fails fast while open.
    fn admit(&self) -> Result<Permit<'_>, BackendError> {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        match *state {
            Inner::Closed { .. } => {}
            Inner::Open { until_ms } if now < until_ms => return Err(self.open_error()),
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                tracing::info!(backend = self.backend, "circuit half-open: probing");
                *state = Inner::HalfOpen { probing: true };
            }
            Inner::HalfOpen { probing: true } => return Err(self.open_error()),
        }
        Ok(Permit {
            breaker: self,
            done: false,
        })
    }

    fn record(&self, ok: bool) {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let next = match (&*state, ok) {
            (_, true) => {
                if !matches!(*state, Inner::Closed { .. }) {
                    tracing::info!(backend = self.backend, "circuit closed: backend answered");
                }
                Inner::Closed { consecutive: 0 }
            }
            (Inner::Closed { consecutive }, false) if consecutive + 1 < self.policy.failures => {
                Inner::Closed {
                    consecutive: consecutive + 1,
                }
            }
            // A late failure of a call admitted before the breaker opened changes nothing.
            (Inner::Open { until_ms }, false) => Inner::Open {
                until_ms: *until_ms,
            },
            (_, false) => {
                let cool = u64::try_from(self.policy.cool_down.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(
                    backend = self.backend,
                    cool_down_ms = cool,
                    "circuit open: failing fast"
                );
                Inner::Open {
                    until_ms: now.saturating_add(cool),
                }
            }
        };
        *state = next;
    }

    /// Runs `call` through the breaker: `failed` says which results count as failures,
    /// `fast` makes the error returned while open.
    pub(crate) async fn run<T, E>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
        failed: impl Fn(&Result<T, E>) -> bool,
        fast: impl FnOnce(BackendError) -> E,
    ) -> Result<T, E> {
        let permit = match self.admit() {
            Ok(p) => p,
            Err(e) => return Err(fast(e)),
        };
        let result = call.await;
        permit.finish(!failed(&result));
        result
    }
}

/// A backend behind a [`Breaker`]: implements the same trait as `T`.
pub struct Guarded<T: ?Sized> {
    inner: Arc<T>,
    breaker: Arc<Breaker>,
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl<T: ?Sized> Guarded<T> {
    /// Puts `inner` behind `breaker`.
    pub fn new(inner: Arc<T>, breaker: Arc<Breaker>) -> Self {
        Guarded { inner, breaker }
    }

    /// The breaker (for metrics).
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }
}

impl Directory for Guarded<dyn Directory> {
    fn find<'a>(
        &'a self,
        by: LookupBy,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, BackendError>> {
        Box::pin(
            self.breaker
                .run(self.inner.find(by, value), Result::is_err, |e| e),
        )
    }

    fn verify_pin<'a>(
        &'a self,
        account: &'a str,
        pin: &'a Secret,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(
            self.breaker
                .run(self.inner.verify_pin(account, pin), Result::is_err, |e| e),
        )
    }

    fn set_secret<'a>(
        &'a self,
        account: &'a str,
        secret: &'a Secret,
    ) -> BoxFuture<'a, Result<(), SetSecretError>> {
        Box::pin(self.breaker.run(
            self.inner.set_secret(account, secret),
            |r| matches!(r, Err(SetSecretError::Backend(_))),
            SetSecretError::Backend,
        ))
    }
}

impl Messenger for Guarded<dyn Messenger> {
    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<SentMessage, SendError>> {
        Box::pin(self.breaker.run(
            self.inner.send(message),
            |r| matches!(r, Err(SendError::Backend(_))),
            SendError::Backend,
        ))
    }
}

impl Recording for Guarded<dyn Recording> {
    fn change<'a>(
        &'a self,
        call_sid: &'a str,
        change: RecordingChange,
    ) -> BoxFuture<'a, Result<RecordingAck, BackendError>> {
        Box::pin(
            self.breaker
                .run(self.inner.change(call_sid, change), Result::is_err, |e| e),
        )
    }
}

impl Tickets for Guarded<dyn Tickets> {
    fn open(&self, ticket: NewTicket) -> BoxFuture<'_, Result<TicketRef, BackendError>> {
        Box::pin(
            self.breaker
                .run(self.inner.open(ticket), Result::is_err, |e| e),
        )
    }

    fn close<'a>(
        &'a self,
        ticket: &'a TicketRef,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(
            self.breaker
                .run(self.inner.close(ticket, note), Result::is_err, |e| e),
        )
    }
}

#[cfg(test)]
mod tests;
