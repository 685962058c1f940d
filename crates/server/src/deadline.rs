//! One deadline per webhook, counted from its arrival, that every wait draws from.
//!
//! The carrier gives up on a webhook 15 s after it sent it and plays its own error message
//! ("an application error has occurred"). So, from the moment a webhook's handling starts
//! (`webhook::observe`, before its body is read):
//!
//! | by | what is done |
//! |---|---|
//! | [`STEP_SHARE`] (10 s) | the body read, the call's in-process lock, its lease across replicas, the session's load, and the engine's step (every backend call in it: the engine cuts its budgets to this) |
//! | [`BUDGET`] (12 s) | the session's save and the audit records' append |
//!
//! and the answer goes out then at the latest, 3 s before the carrier's limit (the network
//! and proxies in between). What runs out becomes spoken TwiML, never silence: a step whose
//! backend calls run out takes the flow's `error` path (the engine); a lock, lease, load or
//! save that runs out gets the technical-difficulty apology. Audit records still being
//! written at [`BUDGET`] are not dropped: their append goes on in a task of its own
//! ([`or_detach`]) and the next webhook of the same call appends its records after them.
//!
//! The deadline lives in a task-local ([`scope`]), so the waits deep in the handler read it
//! without every function passing it on.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use resetline_engine::{BackendError, StoreError};
use tokio::time::Instant;

/// Everything a webhook waits for, from its arrival to its answer.
pub const BUDGET: Duration = Duration::from_secs(12);

/// The share of [`BUDGET`] for everything up to the end of the engine's step; the rest is
/// for the save and the audit append (the Redis store's command timeout is 500 ms by default,
/// an audit write's 2 s).
pub const STEP_SHARE: Duration = Duration::from_secs(10);

tokio::task_local! {
    /// When the webhook being handled must be answered.
    static ANSWER_BY: Instant;
}

/// Runs a webhook's handling, which arrived at `arrived`, under its deadline: engine steps
/// inside end by `arrived` + [`STEP_SHARE`], and [`answer_by`] is `arrived` + [`BUDGET`].
pub(crate) async fn scope<F: Future>(arrived: Instant, work: F) -> F::Output {
    ANSWER_BY
        .scope(
            arrived + BUDGET,
            resetline_engine::finish_by(arrived + STEP_SHARE, work),
        )
        .await
}

/// When the webhook being handled must be answered (outside a webhook: [`BUDGET`] from now).
pub(crate) fn answer_by() -> Instant {
    ANSWER_BY
        .try_with(|by| *by)
        .unwrap_or_else(|_| Instant::now() + BUDGET)
}

/// When everything up to the end of the step must be done.
pub(crate) fn step_by() -> Instant {
    answer_by() - (BUDGET - STEP_SHARE)
}

/// Waits for `work` until `by`. When it is not done by then, it goes on as a task of its own
/// (returned) and this returns at `by`. Polled once first: work that is ready at once (an
/// in-memory sink) arms no timer.
pub(crate) async fn or_detach(
    by: Instant,
    mut work: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let ready = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx).is_ready())).await;
    if ready {
        return None;
    }
    tokio::select! {
        biased;
        () = &mut work => None,
        () = tokio::time::sleep_until(by) => Some(tokio::spawn(work)),
    }
}

/// A store operation (lock, lease, load, save) that must finish by `by`; after it, the
/// timeout error of `what` (the store's own timeout may come first).
pub(crate) async fn store<T>(
    by: Instant,
    what: &'static str,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    resetline_engine::until(by, op)
        .await
        .unwrap_or_else(|| Err(StoreError::Backend(BackendError::timeout(what))))
}
