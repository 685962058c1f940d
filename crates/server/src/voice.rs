//! The carrier's webhooks: a call arrives (`incoming`), a step's input, timeout or transfer
//! result arrives (`step`), the call ends (`status`), a code message's delivery report
//! arrives (`sms_status`).
//!
//! Each handler, once the webhook passed `webhook` (path, body cap, form, signature): takes
//! the call ([`CallLocks::take`](crate::call_lock::CallLocks::take): its lock and lease, its
//! session), runs the engine's step, saves the session (compare-and-swap), appends the step's
//! audit records and answers with the step's TwiML. What goes wrong is a [`WebhookError`]: a
//! call that is not running here, a store that fails, a document that cannot be rendered all
//! end in spoken TwiML, never a 500.
//!
//! The engine's step is boxed (`Box::pin(engine.step(…))`): it is a large future (every node
//! family's state), and inline it made each handler's future as large, which axum moves into a
//! box of its own on every request: about 9,000 instructions of copying per step
//! (`BENCHMARKS.md`, in process).

use axum::extract::State;
use axum::http::StatusCode;
use resetline_engine::session::Delivery;
use resetline_engine::{
    Action, Engine, Event, Secret, Session, Spoken, Step, StepEvent, StoreError,
};
use resetline_flow::Flow;

use crate::call_lock::{CALL_LOCK, CallGuard, Stored};
use crate::error::{Twiml, WebhookError};
use crate::registry::Loaded;
use crate::webhook::{Arrived, FlowId, StepPath, Webhook};
use crate::{AppState, records, render};

/// `POST /voice/{flow}`: a call arrives. A call that ended is never started again (its first
/// webhook is a replay), and no new call starts while the audit sink refuses them.
pub(crate) async fn incoming(
    State(state): State<AppState>,
    FlowId(flow): FlowId,
    arrived: Arrived,
) -> Result<Twiml, WebhookError> {
    let (hook, sid) = verify_call(&state, &arrived).await?;
    let caller = hook.get("From").unwrap_or_default().to_string();
    let call = Call::new(&state, &flow, sid);
    let Some(loaded) = state.inner.flows.current(&flow) else {
        tracing::warn!("call for a flow that is not loaded");
        return Err(WebhookError::NotRunning(call.not_found()));
    };
    let (mut guard, stored) = call.take().await?;
    let engine = engine_for(&state, &loaded);
    let (mut session, revision) = match stored {
        Some(found) => found,
        None => (call.start(&engine, &loaded.flow, &caller).await?, 0),
    };
    // A call in progress runs on the flow version it started with.
    let running = match revision {
        0 => loaded,
        _ => (state.inner.flows)
            .version(&flow, &session.flow_version)
            .unwrap_or(loaded),
    };
    let step = guard
        .renewing(Box::pin(engine.step(
            &running.flow,
            &mut session,
            Event::Start,
        )))
        .await;
    if !step.replayed && revision == 0 {
        state.inner.metrics.call_started();
    }
    call.finish(&running.flow, session, revision, step, &mut guard)
        .await
}

/// `POST /voice/{flow}/step/{token}[/timeout|/transfer]`: the action URL of a step the engine
/// wrote ([`resetline_engine::StepUrl`]) with the caller's digits, a timeout or the result of
/// a transfer.
pub(crate) async fn step(
    State(state): State<AppState>,
    path: StepPath,
    arrived: Arrived,
) -> Result<Twiml, WebhookError> {
    let (hook, sid) = verify_call(&state, &arrived).await?;
    let call = Call::new(&state, &path.flow, sid);
    let (mut guard, stored) = call.take().await?;
    let Some((mut session, revision)) = stored else {
        return Err(call.refuse("unknown_call").await);
    };
    let loaded = state
        .inner
        .flows
        .version(&session.flow_id, &session.flow_version)
        .filter(|_| session.flow_id == path.flow);
    let Some(loaded) = loaded else {
        tracing::warn!(version = %session.flow_version, "call's flow version is no longer loaded");
        return Err(WebhookError::NotRunning(call.not_found()));
    };
    let event = event(&path, &hook);
    drop(hook); // and with it the decoded parameters (`scrub`)
    let engine = engine_for(&state, &loaded);
    let step = guard
        .renewing(Box::pin(engine.step(&loaded.flow, &mut session, event)))
        .await;
    tracing::Span::current().record("node", session.node.as_str());
    call.finish(&loaded.flow, session, revision, step, &mut guard)
        .await
}

/// The engine's event for a step webhook.
fn event(path: &StepPath, hook: &Webhook<'_>) -> Event {
    let token = path.token;
    match path.event {
        StepEvent::Digits => Event::Digits {
            token,
            digits: Secret::new(hook.get("Digits").unwrap_or_default()),
        },
        StepEvent::Timeout => Event::Timeout { token },
        StepEvent::Transfer => Event::Transfer {
            token,
            result: (hook.get("QueueResult").or(hook.get("DialCallStatus")))
                .unwrap_or("failed")
                .to_string(),
        },
    }
}

/// What a call status callback's `CallStatus` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallStatus {
    /// `completed`, `busy`, `failed`, `no-answer`, `canceled`: the call is over.
    Over,
    /// Anything else (`queued`, `ringing`, `in-progress`, none): nothing to do.
    Going,
}

impl CallStatus {
    fn parse(word: Option<&str>) -> Self {
        match word {
            Some("completed" | "busy" | "failed" | "no-answer" | "canceled") => CallStatus::Over,
            _ => CallStatus::Going,
        }
    }
}

/// `POST /voice/{flow}/status`: the call's status callback. When the call is over, the engine
/// runs its hang-up (the session ends, the outcome is audited).
pub(crate) async fn status(
    State(state): State<AppState>,
    FlowId(_): FlowId,
    arrived: Arrived,
) -> Result<StatusCode, WebhookError> {
    let (hook, sid) = verify_call(&state, &arrived).await?;
    if CallStatus::parse(hook.get("CallStatus")) == CallStatus::Going {
        return Ok(StatusCode::NO_CONTENT);
    }
    let (mut guard, stored) = take_or_retry(&state, &sid).await?;
    let Some((mut session, revision)) = stored else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let Some(loaded) = (state.inner.flows).version(&session.flow_id, &session.flow_version) else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let was_open = session.ended.is_none();
    let engine = engine_for(&state, &loaded);
    let mut step = guard
        .renewing(Box::pin(engine.step(
            &loaded.flow,
            &mut session,
            Event::Hangup,
        )))
        .await;
    if was_open && let Some(outcome) = &session.ended {
        state.inner.metrics.call_ended(outcome);
    }
    if let Err(e) = save(&state, &loaded.flow, session, revision, &mut guard).await {
        tracing::warn!(error = %e, "could not record the hang-up");
    }
    records::append(&state, unjournaled(&mut step), guard.tail()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// What a message delivery report's `MessageStatus` says about a code message.
fn delivery(word: Option<&str>) -> Option<Delivery> {
    match word {
        Some("failed" | "undelivered") => Some(Delivery::Failed),
        Some("delivered") => Some(Delivery::Delivered),
        _ => None,
    }
}

/// `POST /sms/status?call=CA...`: a code message's delivery report (the message's
/// `StatusCallback`, named in the URL the engine gave, which the signature covers).
/// `failed` / `undelivered` ends the call's wait early (its next webhook takes
/// `delivery_failed`); `delivered` is noted.
pub(crate) async fn sms_status(
    State(state): State<AppState>,
    arrived: Arrived,
) -> Result<StatusCode, WebhookError> {
    let hook = verify(&state, &arrived).await?;
    let query = arrived.uri.query().unwrap_or_default();
    let call = (query.split('&').find_map(|kv| kv.strip_prefix("call=")))
        .filter(|c| valid_call_sid(c))
        .ok_or(WebhookError::NoCall("call missing or malformed\n"))?;
    tracing::Span::current().record("call", call);
    let Some(delivery) = delivery(hook.get("MessageStatus").or(hook.get("SmsStatus"))) else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let message = hook.get("MessageSid").or(hook.get("SmsSid"));
    let (mut guard, stored) = take_or_retry(&state, call).await?;
    let Some((mut session, revision)) = stored else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let otp = session.otp.as_mut();
    let Some(otp) = otp.filter(|o| o.message_id.as_deref() == Some(message.unwrap_or_default()))
    else {
        tracing::info!("delivery report for an older message; ignored");
        return Ok(StatusCode::NO_CONTENT);
    };
    otp.delivery = delivery;
    let error_code = hook.get("ErrorCode").unwrap_or("");
    tracing::info!(status = ?delivery, error_code, "message delivery report");
    let Some(loaded) = (state.inner.flows).version(&session.flow_id, &session.flow_version) else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let saved = save(&state, &loaded.flow, session, revision, &mut guard).await;
    saved.map_err(|e| try_again(&state, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A status callback's store failure: counted, and 503 so the carrier sends it again.
fn try_again(state: &AppState, e: StoreError) -> WebhookError {
    state.inner.metrics.store_failed();
    WebhookError::TryAgain(e)
}

/// Takes the call for a status callback (503 when the store fails).
async fn take_or_retry(state: &AppState, sid: &str) -> Result<(CallGuard, Stored), WebhookError> {
    let store = state.inner.store.as_ref();
    let taken = state.inner.locks.take(store, sid).await;
    taken.map_err(|e| try_again(state, e))
}

/// The webhook's parameters once its form and its signature hold. A refused signature is
/// counted, audited (within the refusal budget) and logged before the 403 goes out, like
/// every other record: nothing is answered before its audit record is written.
async fn verify<'a>(state: &AppState, hook: &'a Arrived) -> Result<Webhook<'a>, WebhookError> {
    let (params, signature) = state.inner.check.check(hook)?;
    let Err(e) = signature else {
        return Ok(params);
    };
    state.inner.metrics.signature_failed();
    let path = hook.uri.path();
    let audited = records::append_refusal(state, || {
        let call = params.get("CallSid").filter(|v| valid_call_sid(v));
        let record = records::refusal(state, call.unwrap_or(""), "", "signature");
        vec![record.with_detail("path", path)]
    })
    .await;
    if audited {
        tracing::warn!(path, error = %e, "webhook signature refused");
    } else {
        tracing::debug!(path, "signature refused (audit rate limit reached)");
    }
    Err(WebhookError::BadSignature)
}

/// `verify`, then the request's `CallSid` (400 when missing or malformed), recorded in the
/// webhook's span.
async fn verify_call<'a>(
    state: &AppState,
    hook: &'a Arrived,
) -> Result<(Webhook<'a>, String), WebhookError> {
    let params = verify(state, hook).await?;
    let sid = (params.get("CallSid").filter(|s| valid_call_sid(s)))
        .ok_or(WebhookError::NoCall("CallSid missing or malformed\n"))?
        .to_string();
    tracing::Span::current().record("call", sid.as_str());
    Ok((params, sid))
}

fn valid_call_sid(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= 64
        && sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
}

/// The app's engine with the catalogs of the flow version a call runs.
fn engine_for(state: &AppState, loaded: &Loaded) -> Engine {
    Engine {
        catalogs: loaded.catalogs.clone(),
        ..state.inner.engine.clone()
    }
}

/// A step's audit records the engine did not write to its journal already.
fn unjournaled(step: &mut Step) -> Vec<resetline_audit::Record> {
    let journaled = std::mem::take(&mut step.journaled).min(step.audit.len());
    step.audit.split_off(journaled)
}

/// Saves with the TTL the call may still need: its remaining time plus a margin for late
/// status callbacks.
async fn save(
    state: &AppState,
    flow: &Flow,
    session: Session,
    revision: u64,
    guard: &mut CallGuard,
) -> Result<u64, StoreError> {
    let max_ms =
        (flow.settings.max_call_seconds.as_ref()).map_or(600_000, |m| u64::from(m.value) * 1000);
    let ttl_ms = max_ms + 300_000;
    guard
        .save(state.inner.store.as_ref(), session, revision, ttl_ms)
        .await
}

/// The call a webhook is for, once its signature held: the flow id of its path and its
/// `CallSid`.
struct Call<'a> {
    state: &'a AppState,
    flow: &'a str,
    sid: String,
}

impl<'a> Call<'a> {
    fn new(state: &'a AppState, flow: &'a str, sid: String) -> Self {
        Call { state, flow, sid }
    }

    /// The call's lock, lease and stored session; the apology when the store fails.
    async fn take(&self) -> Result<(CallGuard, Stored), WebhookError> {
        let store = self.state.inner.store.as_ref();
        match self.state.inner.locks.take(store, &self.sid).await {
            Ok(taken) => Ok(taken),
            Err(e) => Err(self.store_trouble(e).await),
        }
    }

    /// A new session for a call with none stored: refused when the call already ended (a
    /// replay of its first webhook) or while the audit sink refuses new calls.
    async fn start(
        &self,
        engine: &Engine,
        flow: &Flow,
        caller: &str,
    ) -> Result<Session, WebhookError> {
        match self.state.inner.store.ended(&self.sid).await {
            Ok(true) => Err(self.refuse("ended_call").await),
            Err(e) => Err(self.store_trouble(e).await),
            Ok(false) if self.state.inner.audit.refuses_new_calls() => {
                self.state.inner.metrics.audit_refused_call();
                Err(WebhookError::AuditDown(self.apology()))
            }
            Ok(false) => Ok(engine.new_session(flow, &self.sid, caller)),
        }
    }

    /// After a step: count an ended call, save the session (unless the step was a replay),
    /// write its audit records (a refused step token's within the refusal budget), and answer
    /// with its TwiML.
    async fn finish(
        &self,
        flow: &Flow,
        session: Session,
        revision: u64,
        mut step: Step,
        guard: &mut CallGuard,
    ) -> Result<Twiml, WebhookError> {
        let state = self.state;
        ended_metric(state, &session, &step);
        if step.replayed {
            // Nothing ran. A retry has no record; a refused step token has the engine's one.
            if let Some(reason) = step.audit.first().map(|r| r.reason.clone()) {
                let refused = std::mem::take(&mut step.audit);
                if records::append_refusal(state, move || refused).await {
                    tracing::warn!(reason, "step token refused");
                }
            }
        } else {
            let saved = save(state, flow, session, revision, guard).await;
            // What the step did happened, saved or not: it is always audited. Still under the
            // call's local lock (the caller holds the guard), so a call's records reach the
            // audit sink in step order.
            records::append(state, unjournaled(&mut step), guard.tail()).await;
            if let Err(e) = saved {
                return Err(self.store_trouble(e).await);
            }
        }
        let public_url = state.inner.check.public_url();
        Ok(Twiml(render::twiml(public_url, &step.actions)?))
    }

    /// Refuses a webhook of a call that is not running here (`reason`: `unknown_call`, a step
    /// of a call with no session; `ended_call`, the first webhook of a call that already
    /// ended, as a replay of it would be): nothing runs, the refusal is audited, and the
    /// caller hears the `call_not_found` apology and a hang-up.
    async fn refuse(&self, reason: &str) -> WebhookError {
        let record = || vec![records::refusal(self.state, &self.sid, self.flow, reason)];
        if records::append_refusal(self.state, record).await {
            tracing::warn!(reason, "webhook for a call that is not running refused");
        }
        WebhookError::NotRunning(self.not_found())
    }

    /// The session store failed (or the call's lock or lease was not free in time): counted
    /// and audited (the call ends here: `session_expired`, reason `store_unavailable`, or
    /// `call_busy` for the lock); the caller hears an apology in the flow's language.
    async fn store_trouble(&self, error: StoreError) -> WebhookError {
        self.state.inner.metrics.store_failed();
        let reason = match &error {
            StoreError::Conflict => "store_conflict",
            StoreError::Backend(b) if b.backend == CALL_LOCK => "call_busy",
            StoreError::Backend(_) => "store_unavailable",
        };
        let event = resetline_audit::EventType::SessionExpired;
        let record = records::failure(self.state, event, &self.sid, self.flow, reason);
        records::append(self.state, vec![record], None).await;
        WebhookError::Store {
            apology: self.apology(),
            error,
        }
    }

    /// A polite message and a hang-up for a call the engine does not know.
    fn not_found(&self) -> Twiml {
        let fallback = "Sorry, we lost track of this call. Please call again.";
        let (text, locale, voice) =
            engine_prompt(self.state, self.flow, "call_not_found", fallback);
        let text = [Spoken::Text(text)];
        Twiml(render::say_and_hang_up(&text, &locale, voice.as_deref()))
    }

    /// The technical-difficulty apology (the catalog's `technical_difficulty`) and a hang-up:
    /// a next step, never silence or a 500.
    fn apology(&self) -> Twiml {
        let fallback = "Sorry, something went wrong on our side.";
        let (text, locale, voice) =
            engine_prompt(self.state, self.flow, "technical_difficulty", fallback);
        let text = [Spoken::Text(format!(
            "{text} Please call again in a few minutes."
        ))];
        Twiml(render::say_and_hang_up(&text, &locale, voice.as_deref()))
    }
}

/// Counts a call the step ended.
fn ended_metric(state: &AppState, session: &Session, step: &Step) {
    if !step.replayed
        && step.actions.last() == Some(&Action::Hangup)
        && let Some(outcome) = &session.ended
    {
        state.inner.metrics.call_ended(outcome);
    }
}

/// An engine prompt (`call_not_found`, `technical_difficulty`) as text in the flow's default
/// locale, with the catalog's voice; `fallback` when the flow or prompt is unknown.
fn engine_prompt(
    state: &AppState,
    flow_id: &str,
    key: &str,
    fallback: &str,
) -> (String, String, Option<String>) {
    state
        .inner
        .flows
        .current(flow_id)
        .and_then(|l| {
            let locale = l.flow.settings.default_locale.value.clone();
            let c = l.catalogs.get(&locale)?;
            let text = c.entries.get(key)?.plain_text(&|_| None)?;
            Some((text, locale, c.voice.clone()))
        })
        .unwrap_or_else(|| (fallback.to_string(), "en-US".to_string(), None))
}
