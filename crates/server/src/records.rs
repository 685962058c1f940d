//! Writing a webhook's audit records: a step's records, a refused webhook's (within a budget)
//! and a store failure's. Nothing is answered before its records are written, except that an
//! append still running at the webhook's deadline goes on in a task of its own (`deadline`)
//! and becomes the call's [`AuditTail`]: the call's next records are appended after it.
//! [`Appends`] counts the appends in flight, so a shutdown can wait for them.

use std::sync::atomic::{AtomicUsize, Ordering};

use resetline_audit::{EventType, Outcome, Record};

use crate::call_lock::AuditTail;
use crate::{AppState, deadline};

/// How many refused webhooks per minute get their own audit record, so unsigned floods
/// cannot fill the trail; the rest are counted in the metrics, and the next audited refusal
/// says how many went unaudited before it.
pub(crate) const REFUSALS_AUDITED_PER_MINUTE: u32 = 120;

/// The refusal budget: (window start, refusals audited in it, refusals unaudited since the
/// last audited one).
#[derive(Debug, Default)]
pub(crate) struct RefusalBudget(std::sync::Mutex<(u64, u32, u64)>);

impl RefusalBudget {
    /// `Some(unaudited since the last audited refusal)` when this refusal may be audited.
    pub(crate) fn admit(&self, now_ms: u64) -> Option<u64> {
        let Ok(mut g) = self.0.lock() else {
            return Some(0);
        };
        let (window, count, skipped) = &mut *g;
        if now_ms.saturating_sub(*window) >= 60_000 {
            *window = now_ms;
            *count = 0;
        }
        if *count >= REFUSALS_AUDITED_PER_MINUTE {
            *skipped += 1;
            return None;
        }
        *count += 1;
        Some(std::mem::take(skipped))
    }
}

/// Audit appends not finished yet (some may run after their webhook was answered), so a
/// shutdown can wait for them (`AppState::settle`).
#[derive(Debug, Default)]
pub(crate) struct Appends {
    pub(crate) running: AtomicUsize,
    pub(crate) done: tokio::sync::Notify,
}

/// Now, as an audit record's time.
pub(crate) fn audit_time(state: &AppState) -> time::OffsetDateTime {
    let nanos = i128::from(state.inner.engine.clock.now_ms()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A failure record of `event` for `call` (possibly "") in `flow_id`, with `reason`.
pub(crate) fn failure(
    state: &AppState,
    event: EventType,
    call: &str,
    flow_id: &str,
    reason: &str,
) -> Record {
    Record::new(
        audit_time(state),
        event,
        Outcome::Failure,
        call,
        flow_id,
        "",
    )
    .with_reason(reason)
}

/// An `input_validation_fail` record of a refused webhook of `call` for `flow_id`.
pub(crate) fn refusal(state: &AppState, call: &str, flow_id: &str, reason: &str) -> Record {
    failure(state, EventType::InputValidationFail, call, flow_id, reason)
}

/// Appends the audit records of a refused webhook, which `make` builds only when the refusal
/// budget admits them: a flood of refused webhooks (unsigned ones, or signed ones replayed)
/// cannot fill the trail, and the first record after a gap says how many went unaudited.
/// False when over the budget (the caller keeps its log quiet too).
pub(crate) async fn append_refusal(state: &AppState, make: impl FnOnce() -> Vec<Record>) -> bool {
    let now = state.inner.engine.clock.now_ms();
    let Some(suppressed) = state.inner.refusals.admit(now) else {
        return false;
    };
    let mut records = make();
    if suppressed > 0
        && let Some(first) = records.first_mut()
    {
        first
            .details
            .insert("unaudited_before".into(), suppressed.to_string());
    }
    append(state, records, None).await;
    true
}

/// Appends records; a failure is logged and counted (the call goes on). With the call's
/// `tail`, they are appended after the call's earlier records still being written. Waited for
/// until the webhook's deadline (`deadline`); an append still running then goes on by itself
/// (and becomes the call's tail) while the webhook is answered.
pub(crate) async fn append(state: &AppState, records: Vec<Record>, tail: Option<&mut AuditTail>) {
    if records.is_empty() {
        return;
    }
    let mut tail = tail;
    let earlier = tail.as_mut().and_then(|t| t.0.take());
    let (audit, metrics, appends) = (
        state.inner.audit.clone(),
        state.inner.metrics.clone(),
        state.inner.appends.clone(),
    );
    appends.running.fetch_add(1, Ordering::AcqRel);
    // Boxed: it may have to go on as a task of its own.
    let work = Box::pin(async move {
        if let Some(earlier) = earlier {
            let _ = earlier.await;
        }
        if let Err(e) = audit.append(records).await {
            metrics.audit_failed();
            tracing::error!(error = %e, "audit records not written");
        }
        appends.running.fetch_sub(1, Ordering::AcqRel);
        appends.done.notify_waiters();
    });
    if let Some(running) = deadline::or_detach(deadline::answer_by(), work).await {
        tracing::warn!(
            "audit records still being written at the webhook's deadline; answered, the append goes on"
        );
        if let Some(tail) = tail {
            tail.0 = Some(running);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_webhooks_are_audited_up_to_a_rate_and_the_gap_is_reported() {
        let budget = RefusalBudget::default();
        for _ in 0..REFUSALS_AUDITED_PER_MINUTE {
            assert_eq!(budget.admit(1_000), Some(0));
        }
        assert_eq!(budget.admit(2_000), None);
        assert_eq!(budget.admit(3_000), None);
        assert_eq!(
            budget.admit(61_000),
            Some(2),
            "the next audited refusal says two went unaudited"
        );
        assert_eq!(budget.admit(61_001), Some(0));
    }
}
