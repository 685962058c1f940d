//! Time: every step answers by its deadline, and every backend call in it by its own.
//!
//! A step's deadline is the earliest of `step_budget` after it started and the caller's
//! deadline ([`finish_by`], e.g. what a webhook has left once it waited for its call's lock);
//! it is held in a task-local so the steps inside a caller's scope see it. Invariant: a backend
//! call never runs past `budget` nor past its step's deadline; a call that is ready when first
//! polled (an in-memory store) is answered at once and arms no timer, even when the step is
//! out of time; one that runs out reports its backend's timeout error.

use std::time::Duration;

use super::Engine;
use crate::backend::BackendError;

tokio::task_local! {
    /// When the step in progress must have answered (set by [`Engine::step`], and by
    /// [`finish_by`] for the steps inside it).
    pub(super) static DEADLINE: tokio::time::Instant;
}

/// Runs `work` with every step in it ending by `by` at the latest (a step still ends
/// `step_budget` after it started when that comes first): the caller's deadline, e.g. what is
/// left of a webhook's time once it waited for its call's lock.
pub async fn finish_by<F: std::future::Future>(by: tokio::time::Instant, work: F) -> F::Output {
    DEADLINE.scope(by, work).await
}

/// `fut`'s output if it is ready by `by`, `None` when `by` passed first. Polled once before
/// any timer is armed: a future that is ready at once (an in-memory store) costs no timer,
/// and is answered even when `by` has passed.
pub async fn until<F: std::future::Future>(by: tokio::time::Instant, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await;
    match first {
        Some(out) => Some(out),
        None => tokio::time::timeout_at(by, fut).await.ok(),
    }
}

impl Engine {
    /// Runs a backend call within the time left for it ([`Engine::remaining`], counted from
    /// now); `None` when it ran out. A call that is ready when first polled (the in-memory
    /// stores, the embedded directory) returns at once and arms no timer; one that has to wait
    /// gets a timer for what is left of its time.
    pub(super) async fn bounded<F: std::future::Future>(&self, fut: F) -> Option<F::Output> {
        until(self.call_deadline(), fut).await
    }

    /// The time left for the next backend call: `budget`, cut to what remains of the step.
    pub(super) fn remaining(&self) -> Duration {
        self.left_at(tokio::time::Instant::now())
    }

    /// When the next backend call must have answered: [`Engine::remaining`] from now (one
    /// reading of the clock).
    pub(super) fn call_deadline(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        now + self.left_at(now)
    }

    /// The time a backend call started at `now` has: `budget`, cut to what remains of the step.
    fn left_at(&self, now: tokio::time::Instant) -> Duration {
        DEADLINE
            .try_with(|step| step.saturating_duration_since(now))
            .unwrap_or(self.budget)
            .min(self.budget)
    }

    /// A call to `backend` within its time ([`Engine::bounded`]); its timeout error when it
    /// ran out.
    pub(super) async fn within<T, E: From<BackendError>>(
        &self,
        backend: &'static str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.bounded(fut)
            .await
            .unwrap_or_else(|| Err(BackendError::timeout(backend).into()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{DEADLINE, Engine, finish_by};
    use crate::backend::{BoxFuture, LockPolicy, LockState, Lockouts, StoreError};

    /// No lockouts (the in-memory store lives in `resetline-store`, which depends on this crate).
    #[derive(Debug)]
    struct Open;

    impl Lockouts for Open {
        fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<LockState, StoreError>> {
            Box::pin(async { Ok(LockState::default()) })
        }
        fn failure<'a>(
            &'a self,
            _: &'a str,
            _: u64,
            _: LockPolicy,
        ) -> BoxFuture<'a, Result<LockState, StoreError>> {
            Box::pin(async { Ok(LockState::default()) })
        }
        fn success<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn give_back<'a>(
            &'a self,
            _: &'a str,
            _: crate::backend::Reservation,
            _: u64,
            _: LockPolicy,
        ) -> BoxFuture<'a, Result<LockState, StoreError>> {
            Box::pin(async { Ok(LockState::default()) })
        }
    }

    fn engine() -> Engine {
        let log = Arc::new(crate::testing::CallLog::default());
        let clock = Arc::new(crate::FakeClock::at(1_700_000_000_000));
        crate::testing::engine(vec![], &log, clock, Arc::new(Open))
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_ready_at_once_is_answered_even_when_the_step_is_out_of_time() {
        let engine = engine();
        let past = tokio::time::Instant::now() - Duration::from_secs(1);
        let out = DEADLINE
            .scope(past, engine.bounded(std::future::ready(7)))
            .await;
        assert_eq!(out, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_callers_deadline_cuts_a_backend_calls_budget_short() {
        let engine = engine(); // 500 ms per backend call
        let started = tokio::time::Instant::now();
        let by = started + Duration::from_millis(200);
        let out = finish_by(by, engine.bounded(std::future::pending::<()>())).await;
        assert_eq!(out, None);
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        let step = finish_by(by, async { DEADLINE.try_with(|d| *d) }).await;
        assert_eq!(step, Ok(by), "steps inside see the caller's deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_waits_gets_its_budget_counted_from_before_its_first_poll() {
        let engine = engine(); // 500 ms per backend call
        let started = tokio::time::Instant::now();
        let out = engine
            .bounded(async {
                // The first poll itself takes 200 ms of the budget, then the call waits.
                tokio::time::advance(Duration::from_millis(200)).await;
                std::future::pending::<()>().await
            })
            .await;
        assert_eq!(out, None, "it ran out");
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(500),
            "at its budget from the start, not 500 ms after the first poll"
        );
        let late = engine
            .bounded(async {
                tokio::time::sleep(Duration::from_millis(499)).await;
                "answered"
            })
            .await;
        assert_eq!(
            late,
            Some("answered"),
            "one that answers within its budget is waited for"
        );
    }
}
