//! The webhook server: `fn app(state) -> Router` (the carrier's port), `fn admin_app(state)
//! -> Router` (metrics and readiness, on a port of their own) and `serve`, the loop that
//! serves either within connection limits.
//!
//! Data path of one webhook: body size cap (413) -> form parse, at most [`MAX_PAIRS`] pairs
//! (400) -> signature check against
//! the configured public URL (403, no state change) -> per-call lock (and, with a shared
//! store, the call's lease across replicas) -> load session ->
//! engine step -> save session (compare-and-swap) -> render TwiML, all within one deadline
//! counted from the webhook's arrival (`deadline`). Architecture invariant:
//! this is the only crate that knows axum or HTTP; a broken backend or an unknown call yields
//! spoken TwiML with a next step, never a 500 (which carriers turn into "an application error
//! has occurred").

pub mod admin;
mod deadline;
pub mod metrics;
pub mod registry;
pub mod render;
mod scrub;
pub mod serve;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dashmap::DashMap;
use resetline_engine::session::{CallHasher, CallKey};
use resetline_engine::{
    Action, BackendError, CallLeases, Engine, Event, Secret, SessionStore, Spoken, StoreError,
};
use tracing::Instrument;

pub use admin::admin_app;
pub use deadline::{BUDGET as WEBHOOK_BUDGET, STEP_SHARE as WEBHOOK_STEP_SHARE};
pub use metrics::Metrics;
pub use registry::{Registry, ReloadResult};
pub use serve::{Limits, serve};

/// Largest webhook body accepted; larger ones get 413 before any parsing.
pub const MAX_BODY: usize = 64 * 1024;

/// Most form pairs a webhook may carry; more get 400 before any signature work (a 64 KiB
/// body of `a&a&...` is 32,768 pairs to sort and sign). Twilio's largest webhooks carry
/// about 40 (the incoming call with caller geography, STIR/SHAKEN and `CallToken`; a Gather
/// callback with speech results), so 128 leaves room for parameters a carrier adds later.
pub const MAX_PAIRS: usize = 128;

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The public URL and the carrier auth token (prepared for HMAC once).
    check: WebhookCheck,
    engine: Engine,
    flows: Arc<Registry>,
    store: Arc<dyn SessionStore>,
    audit: Arc<dyn resetline_engine::AuditSink>,
    locks: DashMap<CallKey, Arc<tokio::sync::Mutex<AuditTail>>, CallHasher>,
    leases: std::sync::OnceLock<Leases>,
    metrics: Arc<Metrics>,
    prompts_dir: PathBuf,
    refusals: RefusalBudget,
    appends: Arc<Appends>,
}

/// What a call's lock guards: the append of the call's audit records that was still running
/// when an earlier webhook of the call had to answer (`deadline`). The next webhook's records
/// are appended after it, so a call's records reach the sink in step order.
#[derive(Debug, Default)]
struct AuditTail(Option<tokio::task::JoinHandle<()>>);

impl AuditTail {
    fn pending(&self) -> bool {
        self.0.as_ref().is_some_and(|task| !task.is_finished())
    }
}

/// Audit appends not finished yet (some may run after their webhook was answered), so a
/// shutdown can wait for them ([`AppState::settle`]).
#[derive(Debug, Default)]
struct Appends {
    running: std::sync::atomic::AtomicUsize,
    done: tokio::sync::Notify,
}

/// How many refused webhooks per minute get their own audit record, so unsigned floods
/// cannot fill the trail; the rest are counted in the metrics, and the next audited refusal
/// says how many went unaudited before it.
const REFUSALS_AUDITED_PER_MINUTE: u32 = 120;

#[derive(Debug, Default)]
struct RefusalBudget(std::sync::Mutex<(u64, u32, u64)>);

impl RefusalBudget {
    /// `Some(unaudited since the last audited refusal)` when this refusal may be audited.
    fn admit(&self, now_ms: u64) -> Option<u64> {
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

impl AppState {
    /// Builds the state. `engine.catalogs` is replaced per flow version by the registry's,
    /// and `engine.journal` is `audit`: a step's intents and its other records go to one
    /// sink, in order.
    pub fn new(
        public_url: &str,
        auth_token: Secret,
        engine: Engine,
        flows: Arc<Registry>,
        store: Arc<dyn SessionStore>,
        audit: Arc<dyn resetline_engine::AuditSink>,
        prompts_dir: PathBuf,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                check: WebhookCheck::new(public_url, &auth_token),
                engine: Engine {
                    journal: audit.clone(),
                    ..engine
                },
                flows,
                store,
                audit,
                locks: DashMap::with_hasher(CallHasher::default()),
                leases: std::sync::OnceLock::new(),
                metrics: Arc::new(Metrics::default()),
                prompts_dir,
                refusals: RefusalBudget::default(),
                appends: Arc::default(),
            }),
        }
    }

    /// With a store shared by several replicas: every webhook of a call also takes the call's
    /// lease there, so two replicas never run a step of one call at once. `shared` is the
    /// session store given to `new` (sessions are then loaded with the lease and saved with
    /// its release, one round trip each). Call once, at setup; fails only without randomness
    /// for this process's holder id.
    pub fn with_leases(self, shared: Arc<dyn CallLeases>) -> Result<Self, BackendError> {
        let mut raw = [0u8; 8];
        self.inner.engine.random.fill(&mut raw).map_err(|_| {
            BackendError::new("call lease", "no randomness for the lease holder id")
        })?;
        let _ = self.inner.leases.set(Leases {
            store: shared,
            holder: raw.iter().map(|b| format!("{b:02x}")).collect(),
            next: std::sync::atomic::AtomicU64::new(0),
        });
        Ok(self)
    }

    /// The flow registry (for reloads).
    pub fn flows(&self) -> &Arc<Registry> {
        &self.inner.flows
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Calls with a request in progress or waiting (their in-process locks). A request's
    /// lock leaves with its last holder, so this is not the number of live calls.
    pub fn locked_calls(&self) -> usize {
        self.inner.locks.len()
    }

    /// Drops per-call locks no request holds (left by a request cancelled while it waited
    /// for its call's lock, or by a call whose late audit append has finished). Run it
    /// periodically; returns how many were dropped.
    pub fn forget_idle_locks(&self) -> usize {
        let before = self.inner.locks.len();
        self.inner.locks.retain(|_, lock| {
            Arc::strong_count(lock) > 1 || lock.try_lock().map_or(true, |tail| tail.pending())
        });
        before.saturating_sub(self.inner.locks.len())
    }

    /// Waits, at most `within`, for audit appends still running (some outlive their webhook,
    /// see `deadline`); returns how many are left. For a shutdown, after the listeners closed.
    pub async fn settle(&self, within: std::time::Duration) -> usize {
        let appends = &self.inner.appends;
        let until = tokio::time::Instant::now() + within;
        loop {
            let mut done = std::pin::pin!(appends.done.notified());
            done.as_mut().enable();
            let running = appends.running.load(std::sync::atomic::Ordering::Acquire);
            if running == 0 || tokio::time::timeout_at(until, done).await.is_err() {
                return running;
            }
        }
    }
}

/// The router with every route.
///
/// The carrier's webhooks (`POST /voice/{flow}`, `/voice/{flow}/status`,
/// `/voice/{flow}/step/{token}[/timeout|/transfer]`) are routed by [`voice_route`] in the
/// fallback rather than by the router: the router's path parameters cost every webhook four
/// allocations and a percent-decoding pass, for flow ids and tokens that never need decoding.
///
/// `/metrics` and `/readyz` are not here: they are [`admin_app`]'s, on the admin listener.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/sms/status", post(sms_status))
        .route("/prompts/{locale}/{file}", get(audio))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(voice)
        .with_state(state)
}

/// `X-Twilio-Signature`, lower case as `HeaderMap` keeps names.
static SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-twilio-signature");

/// A webhook as it arrived: the path and query (what the signature covers with the public
/// URL), the signature header and the body. The body is read here, at most [`MAX_BODY`]
/// bytes (413 before any parsing: at once when `Content-Length` says more, or as soon as more
/// arrives); the URI and the one header are moved out of the request, not copied, and a body
/// that arrives in one piece (the usual case) is kept as it came, without a copy. Dropped,
/// it zeroes its body where Resetline holds the only reference (`scrub`).
struct Arrived {
    uri: Uri,
    signature: Option<HeaderValue>,
    body: Bytes,
}

impl Drop for Arrived {
    fn drop(&mut self) {
        scrub::body(&mut self.body);
    }
}

impl<S: Send + Sync> FromRequest<S> for Arrived {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let uri = std::mem::take(&mut parts.uri);
        let signature = parts.headers.remove(&SIGNATURE_HEADER);
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(body_too_large());
        }
        Ok(Arrived {
            uri,
            signature,
            body: read_body(body, declared).await?,
        })
    }
}

fn body_too_large() -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, "body over 64 KiB\n").into_response()
}

/// The whole body, refused (413) as soon as it exceeds [`MAX_BODY`]. A body in several pieces
/// is joined into one buffer sized once (the announced length, or the cap), so no copy of it
/// is left behind by growing (`scrub` zeroes the buffer).
async fn read_body(mut body: axum::body::Body, declared: Option<u64>) -> Result<Bytes, Response> {
    use http_body_util::BodyExt;
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let room = declared.map_or(MAX_BODY, |n| {
        usize::try_from(n).unwrap_or(MAX_BODY).min(MAX_BODY)
    });
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame
            .map_err(|_| (StatusCode::BAD_REQUEST, "body could not be read\n").into_response())?
            .into_data()
        else {
            continue; // trailers: nothing a webhook carries
        };
        let had = first.as_ref().map_or(0, Bytes::len).max(joined.len());
        if had + data.len() > MAX_BODY {
            return Err(body_too_large());
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            Some(earlier) => {
                joined.reserve_exact(room.max(earlier.len() + data.len()));
                joined.extend_from_slice(&earlier);
                joined.extend_from_slice(&data);
            }
            None => joined.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

fn bad_form() -> Response {
    (StatusCode::BAD_REQUEST, "bad form body\n").into_response()
}

fn signature_refused() -> Response {
    (StatusCode::FORBIDDEN, "signature refused\n").into_response()
}

/// The check every webhook passes before its call is touched: the form body parsed and
/// `X-Twilio-Signature` checked over the configured public URL + the request's path and query.
/// `app` runs it on every webhook (and audits refusals); [`preflight`] runs it alone.
#[derive(Debug)]
pub struct WebhookCheck {
    public_url: String,
    signing: resetline_twiml::signature::SigningKey,
}

impl WebhookCheck {
    /// Checks against `public_url` (a trailing `/` is ignored) with the carrier's auth token.
    pub fn new(public_url: &str, auth_token: &Secret) -> Self {
        WebhookCheck {
            public_url: public_url.trim_end_matches('/').to_string(),
            signing: resetline_twiml::signature::SigningKey::new(auth_token.expose().as_bytes()),
        }
    }

    /// The public URL, without a trailing `/`.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The webhook's parameters (borrowed from its body where they need no decoding) and
    /// whether its signature holds; an error when the body is not a form or has more than
    /// [`MAX_PAIRS`] pairs (then no signature work is done).
    fn check<'a>(
        &self,
        hook: &'a Arrived,
    ) -> Result<
        (
            Webhook<'a>,
            Result<(), resetline_twiml::signature::SignatureError>,
        ),
        resetline_twiml::params::ParamsError,
    > {
        let params = resetline_twiml::params::parse_borrowed(&hook.body, MAX_BODY, MAX_PAIRS)?;
        let path = hook
            .uri
            .path_and_query()
            .map_or(hook.uri.path(), |p| p.as_str());
        let mut url = String::with_capacity(self.public_url.len() + path.len());
        url.push_str(&self.public_url);
        url.push_str(path);
        let header = hook.signature.as_ref().and_then(|v| v.to_str().ok());
        let signature = self.signing.validate(&url, &params, header);
        Ok((Webhook { params }, signature))
    }
}

/// What `app` does to a webhook before its call's work, alone: the body read (413 over
/// [`MAX_BODY`]), the form parsed (400) and the signature checked (403; `app` also audits a
/// refusal, this does not). `None` when the webhook passes. For measuring what that costs
/// (`examples/bench_target.rs`), with the very code `app` runs.
pub async fn preflight(check: &WebhookCheck, req: Request) -> Option<Response> {
    let arrived = match Arrived::from_request(req, &()).await {
        Ok(arrived) => arrived,
        Err(refused) => return Some(refused),
    };
    match check.check(&arrived) {
        Ok((_, Ok(()))) => None,
        Ok((_, Err(_))) => Some(signature_refused()),
        Err(_) => Some(bad_form()),
    }
}

/// A parsed, signature-checked webhook; parameters borrow from the body where they need no
/// decoding. Dropped, it zeroes the decoded ones (`scrub`).
struct Webhook<'a> {
    params: Vec<resetline_twiml::params::Pair<'a>>,
}

impl Drop for Webhook<'_> {
    fn drop(&mut self) {
        scrub::params(&mut self.params);
    }
}

impl Webhook<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// Parses the form body and checks `X-Twilio-Signature` over the public URL.
/// A refused signature is audited (rate-limited) before the 403 goes out, like every other
/// record: nothing is answered before its audit record is written.
#[allow(clippy::result_large_err)] // the Err is the finished 4xx response, built once per refused request
async fn verify<'a>(state: &AppState, hook: &'a Arrived) -> Result<Webhook<'a>, Response> {
    let uri = &hook.uri;
    let (hook_params, signature) = state.inner.check.check(hook).map_err(|e| {
        tracing::info!(error = %e, "webhook body is not a valid form");
        bad_form()
    })?;
    if let Err(e) = signature {
        state.inner.metrics.signature_failed();
        let audited = audit_refusal(state, || {
            let call = hook_params
                .get("CallSid")
                .filter(|v| valid_call_sid(v))
                .unwrap_or("");
            vec![refusal_record(state, call, "", "signature").with_detail("path", uri.path())]
        })
        .await;
        if audited {
            tracing::warn!(path = uri.path(), error = %e, "webhook signature refused");
        } else {
            tracing::debug!(
                path = uri.path(),
                "signature refused (audit rate limit reached)"
            );
        }
        return Err(signature_refused());
    }
    Ok(hook_params)
}

/// An `input_validation_fail` record of a refused webhook of `call` (possibly "") for `flow_id`.
fn refusal_record(
    state: &AppState,
    call: &str,
    flow_id: &str,
    reason: &str,
) -> resetline_audit::Record {
    resetline_audit::Record::new(
        audit_time(state),
        resetline_audit::EventType::InputValidationFail,
        resetline_audit::Outcome::Failure,
        call,
        flow_id,
        "",
    )
    .with_reason(reason)
}

/// Now, as an audit record's time.
fn audit_time(state: &AppState) -> time::OffsetDateTime {
    let nanos = i128::from(state.inner.engine.clock.now_ms()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Appends the audit records of a refused webhook, which `make` builds only when the refusal
/// budget admits them: a flood of refused webhooks (unsigned ones, or signed ones replayed)
/// cannot fill the trail, and the first record after a gap says how many went unaudited.
/// False when over the budget (the caller keeps its log quiet too).
async fn audit_refusal(
    state: &AppState,
    make: impl FnOnce() -> Vec<resetline_audit::Record>,
) -> bool {
    let Some(suppressed) = state
        .inner
        .refusals
        .admit(state.inner.engine.clock.now_ms())
    else {
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
    append_audit(state, records, None).await;
    true
}

/// Refuses a webhook of a call that is not running here (`reason`: `unknown_call`, a step of a
/// call with no session; `ended_call`, the first webhook of a call that already ended, as a
/// replay of it would be): nothing runs, the refusal is audited, and the caller hears the
/// `call_not_found` apology and a hang-up.
async fn refuse_call(state: &AppState, flow_id: &str, call_sid: &str, reason: &str) -> Response {
    let audited = audit_refusal(state, || {
        vec![refusal_record(state, call_sid, flow_id, reason)]
    })
    .await;
    if audited {
        tracing::warn!(flow = %flow_id, reason, "webhook for a call that is not running refused");
    }
    twiml_response(not_found_twiml(state, flow_id))
}

/// `verify`, then the request's `CallSid` (400 when missing or malformed).
#[allow(clippy::result_large_err)] // as for `verify`
async fn verify_call<'a>(
    state: &AppState,
    arrived: &'a Arrived,
) -> Result<(Webhook<'a>, String), Response> {
    let hook = verify(state, arrived).await?;
    match hook
        .get("CallSid")
        .filter(|s| valid_call_sid(s))
        .map(str::to_string)
    {
        Some(sid) => Ok((hook, sid)),
        None => Err((StatusCode::BAD_REQUEST, "CallSid missing or malformed\n").into_response()),
    }
}

fn twiml_response(xml: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

/// Flow ids are `[a-z0-9_-]{1,64}` (the checker enforces it); anything else in the URL is
/// refused before it reaches a log line or span (no forged log lines from unsigned requests).
fn plausible_flow_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn valid_call_sid(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= 64
        && sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
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
            match &c.entries.get(key)?.body {
                resetline_flow::prompts::PromptBody::Say(t) => {
                    let text = t
                        .render(&|_| None)
                        .ok()
                        .map(|s| resetline_flow::template::plain_text(&s))?;
                    Some((text, locale, c.voice.clone()))
                }
                resetline_flow::prompts::PromptBody::Play { .. } => None,
            }
        })
        .unwrap_or_else(|| (fallback.to_string(), "en-US".to_string(), None))
}

/// A polite message and a hang-up for a call the engine does not know.
fn not_found_twiml(state: &AppState, flow_id: &str) -> String {
    let (text, locale, voice) = engine_prompt(
        state,
        flow_id,
        "call_not_found",
        "Sorry, we lost track of this call. Please call again.",
    );
    render::say_and_hang_up(&[Spoken::Text(text)], &locale, voice.as_deref())
}

/// Where a `/voice/...` path goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VoiceRoute<'a> {
    /// `/voice/{flow}`: a call arrives.
    Incoming(&'a str),
    /// `/voice/{flow}/status`: the call's status callback.
    Status(&'a str),
    /// `/voice/{flow}/step/{token}[/timeout|/transfer]`: an action URL the engine emitted;
    /// `event` is `digits`, `timeout` or `transfer`.
    Step {
        flow: &'a str,
        token: &'a str,
        event: &'static str,
    },
}

/// The route of a `/voice/...` path; `None` for any other path. Segments are taken as they
/// are (flow ids and tokens have nothing to percent-decode; one that was encoded anyway is
/// refused by the flow-id or token check, never guessed at).
fn voice_route(path: &str) -> Option<VoiceRoute<'_>> {
    let mut parts = path.strip_prefix("/voice/")?.split('/');
    let flow = parts.next().filter(|f| !f.is_empty())?;
    let route = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => VoiceRoute::Incoming(flow),
        (Some("status"), None, _) => VoiceRoute::Status(flow),
        (Some("step"), Some(token), what) if !token.is_empty() => VoiceRoute::Step {
            flow,
            token,
            event: match what {
                None => "digits",
                Some("timeout") => "timeout",
                Some("transfer") => "transfer",
                Some(_) => return None,
            },
        },
        _ => return None,
    };
    parts.next().is_none().then_some(route)
}

/// Every request no other route takes: the webhooks under `/voice/` ([`voice_route`]), 405
/// for them with another method, 404 for anything else; both before the body is read. A
/// webhook's deadline (`deadline`) counts from here, before its body is read.
async fn voice(State(state): State<AppState>, req: Request) -> Response {
    // Boxed: the handler's future is several kilobytes, and the deadline's wrappers would
    // otherwise copy it as they take it in.
    deadline::scope(
        tokio::time::Instant::now(),
        Box::pin(voice_routed(state, req)),
    )
    .await
}

async fn voice_routed(state: AppState, req: Request) -> Response {
    if voice_route(req.uri().path()).is_none() {
        return (StatusCode::NOT_FOUND, "no such route\n").into_response();
    }
    if req.method() != axum::http::Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "webhooks are POSTed\n",
        )
            .into_response();
    }
    // Routed again on the path `Arrived` took out of the request (a few comparisons), so the
    // flow id and token borrow from it.
    let arrived = match Arrived::from_request(req, &state).await {
        Ok(arrived) => arrived,
        Err(refused) => return refused,
    };
    match voice_route(arrived.uri.path()) {
        Some(VoiceRoute::Incoming(flow)) => incoming(&state, flow, &arrived).await,
        Some(VoiceRoute::Status(flow)) => status(&state, flow, &arrived).await,
        Some(VoiceRoute::Step { flow, token, event }) => {
            step_common(&state, flow, token, event, &arrived).await
        }
        None => (StatusCode::NOT_FOUND, "no such route\n").into_response(),
    }
}

async fn incoming(state: &AppState, flow_id: &str, arrived: &Arrived) -> Response {
    if !plausible_flow_id(flow_id) {
        return (StatusCode::NOT_FOUND, "no such flow\n").into_response();
    }
    timed(state, "incoming", tracing::info_span!("webhook", route = "incoming", flow = %flow_id, call = tracing::field::Empty), Box::pin(async {
        let (hook, call_sid) = match verify_call(state, arrived).await {
            Ok(found) => found,
            Err(r) => return r,
        };
        let caller = hook.get("From").unwrap_or_default().to_string();
        tracing::Span::current().record("call", call_sid.as_str());
        let Some(loaded) = state.inner.flows.current(flow_id) else {
            tracing::warn!(flow = %flow_id, "call for a flow that is not loaded");
            return twiml_response(not_found_twiml(state, flow_id));
        };
        let (mut guard, stored) = match take_call(state, &call_sid).await {
            Ok(taken) => taken,
            Err(e) => return store_trouble(state, flow_id, &call_sid, &e).await,
        };
        let engine = Engine { catalogs: loaded.catalogs.clone(), ..state.inner.engine.clone() };
        let (mut session, revision) = match stored {
            Some(found) => found,
            // A call that ended is never started again: its first webhook is a replay.
            None => match state.inner.store.ended(&call_sid).await {
                Ok(true) => return refuse_call(state, flow_id, &call_sid, "ended_call").await,
                Err(e) => return store_trouble(state, flow_id, &call_sid, &e).await,
                Ok(false) if state.inner.audit.refuses_new_calls() => {
                    state.inner.metrics.audit_refused_call();
                    tracing::error!(flow = %flow_id, "new call refused: the audit sink is down (audit.on_failure: refuse, or its retry buffer is full)");
                    return apology(state, flow_id);
                }
                Ok(false) => (engine.new_session(&loaded.flow, &call_sid, &caller), 0),
            },
        };
        let flow = if revision == 0 { loaded.clone() } else { state.inner.flows.version(flow_id, &session.flow_version).unwrap_or(loaded.clone()) };
        let step = guard.renewing(std::pin::pin!(engine.step(&flow.flow, &mut session, Event::Start))).await;
        if !step.replayed && revision == 0 {
            state.inner.metrics.call_started();
        }
        finish_step(state, flow_id, &flow.flow, session, revision, step, &mut guard).await
    }))
    .await
}

async fn step_common(
    state: &AppState,
    flow_id: &str,
    token: &str,
    route: &'static str,
    arrived: &Arrived,
) -> Response {
    if !plausible_flow_id(flow_id) {
        return (StatusCode::NOT_FOUND, "no such flow\n").into_response();
    }
    timed(state, route, tracing::info_span!("webhook", route, flow = %flow_id, call = tracing::field::Empty, node = tracing::field::Empty), Box::pin(async {
        let (hook, call_sid) = match verify_call(state, arrived).await {
            Ok(found) => found,
            Err(r) => return r,
        };
        let Ok(token) = token.parse::<u64>() else {
            return (StatusCode::NOT_FOUND, "no such step\n").into_response();
        };
        tracing::Span::current().record("call", call_sid.as_str());
        let (mut guard, stored) = match take_call(state, &call_sid).await {
            Ok(taken) => taken,
            Err(e) => return store_trouble(state, flow_id, &call_sid, &e).await,
        };
        let Some((mut session, revision)) = stored else {
            return refuse_call(state, flow_id, &call_sid, "unknown_call").await;
        };
        let Some(loaded) = state.inner.flows.version(&session.flow_id, &session.flow_version).filter(|_| session.flow_id == flow_id) else {
            tracing::warn!(flow = %flow_id, version = %session.flow_version, "call's flow version is no longer loaded");
            return twiml_response(not_found_twiml(state, flow_id));
        };
        let engine = Engine { catalogs: loaded.catalogs.clone(), ..state.inner.engine.clone() };
        let event = match route {
            "digits" => Event::Digits { token, digits: Secret::new(hook.get("Digits").unwrap_or_default()) },
            "timeout" => Event::Timeout { token },
            _ => Event::Transfer { token, result: hook.get("QueueResult").or(hook.get("DialCallStatus")).unwrap_or("failed").to_string() },
        };
        drop(hook);
        let step = guard.renewing(std::pin::pin!(engine.step(&loaded.flow, &mut session, event))).await;
        tracing::Span::current().record("node", session.node.as_str());
        finish_step(state, flow_id, &loaded.flow, session, revision, step, &mut guard).await
    }))
    .await
}

async fn status(state: &AppState, flow_id: &str, arrived: &Arrived) -> Response {
    if !plausible_flow_id(flow_id) {
        return (StatusCode::NOT_FOUND, "no such flow\n").into_response();
    }
    timed(
        state,
        "status",
        tracing::info_span!("webhook", route = "status", flow = %flow_id),
        Box::pin(async {
            let (hook, call_sid) = match verify_call(state, arrived).await {
                Ok(found) => found,
                Err(r) => return r,
            };
            let final_status = matches!(
                hook.get("CallStatus"),
                Some("completed" | "busy" | "failed" | "no-answer" | "canceled")
            );
            if !final_status {
                return StatusCode::NO_CONTENT.into_response();
            }
            let (mut guard, stored) = match take_call(state, &call_sid).await {
                Ok(taken) => taken,
                Err(e) => {
                    state.inner.metrics.store_failed();
                    tracing::warn!(error = %e, "could not record the hang-up");
                    return (StatusCode::SERVICE_UNAVAILABLE, "try again\n").into_response();
                }
            };
            if let Some((mut session, revision)) = stored
                && let Some(loaded) = state
                    .inner
                    .flows
                    .version(&session.flow_id, &session.flow_version)
            {
                let engine = Engine {
                    catalogs: loaded.catalogs.clone(),
                    ..state.inner.engine.clone()
                };
                let was_open = session.ended.is_none();
                let mut step = guard
                    .renewing(std::pin::pin!(engine.step(
                        &loaded.flow,
                        &mut session,
                        Event::Hangup
                    )))
                    .await;
                if was_open && let Some(outcome) = &session.ended {
                    state.inner.metrics.call_ended(outcome);
                }
                if let Err(e) = save(state, &loaded.flow, session, revision, &mut guard).await {
                    tracing::warn!(error = %e, "could not record the hang-up");
                }
                append_audit(state, unjournaled(&mut step), guard.tail()).await;
            }
            drop(guard); // and with it the call's lock, unless another request waits for it
            StatusCode::NO_CONTENT.into_response()
        }),
    )
    .await
}

/// How long a call's lease outlives its last renewal: a replica that dies mid-step frees the
/// call this long after (its holder renews it every `LEASE_RENEW` while the step runs).
const LEASE_TTL_MS: u64 = 3_000;
const LEASE_RENEW: std::time::Duration = std::time::Duration::from_secs(1);
/// The backend name of a call's in-process lock in a wait that timed out.
const CALL_LOCK: &str = "call lock";

/// The shared store's call leases, and this process's holder id: a lease token is
/// `<holder>-<n>`, unique across replicas (random holder) and requests (counter).
#[derive(Debug)]
struct Leases {
    store: Arc<dyn CallLeases>,
    holder: String,
    next: std::sync::atomic::AtomicU64,
}

/// A lease this request holds.
struct Held {
    store: Arc<dyn CallLeases>,
    call: String,
    token: String,
}

/// Exclusive hold of one call for one request: the in-process lock, and with a shared store
/// the call's lease (given back with the session's save, or on drop).
struct CallGuard {
    local: Option<tokio::sync::OwnedMutexGuard<AuditTail>>,
    lease: Option<Held>,
    /// Where the call's lock lives and its key: on drop the lock leaves the map unless
    /// another request holds or waits for it, so the map holds only calls in a request.
    locks: (AppState, CallKey),
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        // A call whose records are still being written keeps its lock (and so the order of
        // its records) until the periodic sweep finds the append done.
        let pending = self.local.as_ref().is_some_and(|tail| tail.pending());
        drop(self.local.take());
        let (state, call) = &self.locks;
        // Under the shard's write lock: nobody can clone the lock between the count and the
        // removal, and a request that cloned it before keeps the entry (count > 1).
        if !pending {
            state
                .inner
                .locks
                .remove_if(call, |_, lock| Arc::strong_count(lock) == 1);
        }
        if let Some(Held { store, call, token }) = self.lease.take() {
            tokio::spawn(async move {
                if let Err(e) = store.release(&call, &token).await {
                    tracing::warn!(call = %call, error = %e, "call lease not released; it expires by itself");
                }
            });
        }
    }
}

impl CallGuard {
    /// The call's audit tail, for appending after the call's earlier records.
    fn tail(&mut self) -> Option<&mut AuditTail> {
        self.local.as_deref_mut()
    }

    /// Runs `work` (a step: backend calls of up to 12 s) while renewing the call's lease every
    /// `LEASE_RENEW`, so it does not lapse under a slow step. A lost lease is logged and the
    /// work finishes: the save's compare-and-swap still guards the session.
    ///
    /// `work` comes pinned by the caller: taken by value and pinned here, the step's future
    /// (about 1.8 KB) would be held twice in this one's, and copied with it on every webhook.
    async fn renewing<F: std::future::Future>(&self, mut work: std::pin::Pin<&mut F>) -> F::Output {
        let Some(held) = &self.lease else {
            return work.await;
        };
        // Boxed: its timer is large, and unboxed it would grow every step's future (the
        // memory store's too, which never takes this path) by its size.
        let renew = Box::pin(async {
            loop {
                tokio::time::sleep(LEASE_RENEW).await;
                match held
                    .store
                    .renew(&held.call, &held.token, LEASE_TTL_MS)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(call = %held.call, "call lease lost while held; the save's compare-and-swap still guards the session");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(call = %held.call, error = %e, "call lease not renewed");
                    }
                }
            }
        });
        tokio::select! {
            biased;
            out = &mut work => out,
            () = renew => work.await,
        }
    }
}

/// Takes the call for this request (one request per call at a time, across replicas too) and
/// loads its session. A request that finds another replica running the call waits until that
/// one saved, then runs against the saved session: a retried webhook then gets the stored
/// answer replayed. Every wait ends by the webhook's step deadline (`deadline::step_by`): the
/// lock's with a `call lock` timeout, the lease's and the load's with theirs.
#[allow(clippy::type_complexity)] // the guard and what the store holds for the call
async fn take_call(
    state: &AppState,
    call_sid: &str,
) -> Result<(CallGuard, Option<(resetline_engine::Session, u64)>), StoreError> {
    // The server only takes calls whose id passed `valid_call_sid` (at most 64 bytes).
    let key = CallKey::new(call_sid)
        .ok_or_else(|| StoreError::Backend(BackendError::new("sessions", "call id too long")))?;
    let lock = match state.inner.locks.get(&key) {
        Some(lock) => lock.clone(),
        None => state.inner.locks.entry(key).or_default().clone(),
    };
    let by = deadline::step_by();
    let local = resetline_engine::until(by, lock.lock_owned())
        .await
        .ok_or_else(|| StoreError::Backend(BackendError::timeout(CALL_LOCK)))?;
    let mut guard = CallGuard {
        local: Some(local),
        lease: None,
        locks: (state.clone(), key),
    };
    let Some(leases) = state.inner.leases.get() else {
        let loaded = deadline::store(by, "sessions", state.inner.store.load(call_sid)).await?;
        return Ok((guard, loaded));
    };
    let n = leases
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token = format!("{}-{n:x}", leases.holder);
    let held = |token| Held {
        store: leases.store.clone(),
        call: call_sid.to_string(),
        token,
    };
    // The usual case, a free call: lease and session in one round trip.
    if let Some(loaded) = deadline::store(
        by,
        "call lease",
        leases
            .store
            .acquire_and_load(call_sid, &token, LEASE_TTL_MS),
    )
    .await?
    {
        guard.lease = Some(held(token));
        return Ok((guard, loaded));
    }
    // Another replica runs a step of this call: wait for its lease (without reading the
    // session each time), then read what it saved.
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if tokio::time::Instant::now() + pause >= by {
            return Err(StoreError::Backend(BackendError::timeout("call lease")));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
        let taken = leases.store.try_acquire(call_sid, &token, LEASE_TTL_MS);
        if deadline::store(by, "call lease", taken).await? {
            guard.lease = Some(held(token));
            let loaded = deadline::store(by, "sessions", leases.store.load(call_sid)).await?;
            return Ok((guard, loaded));
        }
    }
}

/// Runs a handler body inside its tracing span and records its latency and status. The body
/// comes boxed: a step's future is several kilobytes, and unboxed it would be copied with
/// every future that holds it (the handler's, axum's), on every webhook.
async fn timed(
    state: &AppState,
    route: &'static str,
    span: tracing::Span,
    body: std::pin::Pin<Box<impl std::future::Future<Output = Response>>>,
) -> Response {
    let started = Instant::now();
    let response = deadline::ensure(body.instrument(span.clone())).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    state.inner.metrics.webhook(route, status, latency);
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "webhook answered"
        )
    });
    response
}

/// After a step: count an ended call, save the session (unless the step was a replay), write
/// its audit records (a refused step token's within the refusal budget), and answer with its
/// TwiML.
async fn finish_step(
    state: &AppState,
    flow_id: &str,
    flow: &resetline_flow::Flow,
    session: resetline_engine::Session,
    revision: u64,
    mut step: resetline_engine::Step,
    guard: &mut CallGuard,
) -> Response {
    ended_metric(state, &session, &step.actions, step.replayed);
    if step.replayed {
        // Nothing ran. A retry has no record; a refused step token has the engine's one.
        if let Some(reason) = step.audit.first().map(|r| r.reason.clone()) {
            let refused = step.audit;
            if audit_refusal(state, move || refused).await {
                tracing::warn!(flow = %flow_id, reason, "step token refused");
            }
        }
    } else {
        let session_sid = session.call_sid.clone();
        let saved = save(state, flow, session, revision, guard).await;
        // What the step did happened, saved or not: it is always audited. Still under the
        // call's local lock (the caller holds the guard), so a call's records reach the audit
        // sink in step order.
        append_audit(state, unjournaled(&mut step), guard.tail()).await;
        if let Err(e) = saved {
            return store_trouble(state, flow_id, &session_sid, &e).await;
        }
    }
    twiml_response(render::twiml(state.inner.check.public_url(), &step.actions))
}

/// A step's audit records the engine did not write to its journal already.
fn unjournaled(step: &mut resetline_engine::Step) -> Vec<resetline_audit::Record> {
    let journaled = std::mem::take(&mut step.journaled).min(step.audit.len());
    step.audit.split_off(journaled)
}

/// Appends records; a failure is logged and counted (the call goes on). With the call's
/// `tail`, they are appended after the call's earlier records still being written. Waited for
/// until the webhook's deadline (`deadline`); an append still running then goes on by itself
/// (and becomes the call's tail) while the webhook is answered.
async fn append_audit(
    state: &AppState,
    records: Vec<resetline_audit::Record>,
    tail: Option<&mut AuditTail>,
) {
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
    appends
        .running
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    let work = Box::pin(async move {
        if let Some(earlier) = earlier {
            let _ = earlier.await;
        }
        if let Err(e) = audit.append(records).await {
            metrics.audit_failed();
            tracing::error!(error = %e, "audit records not written");
        }
        appends
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
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

/// SMS delivery report (`StatusCallback` of a code message): `failed` / `undelivered` ends
/// the call's wait early (its next webhook takes `delivery_failed`); `delivered` is noted.
/// The call is named in the callback URL the engine gave (`/sms/status?call=CA...`), which the
/// signature covers.
async fn sms_status(State(state): State<AppState>, arrived: Arrived) -> Response {
    timed(&state, "sms_status", tracing::info_span!("webhook", route = "sms_status"), Box::pin(async {
        let hook = match verify(&state, &arrived).await {
            Ok(h) => h,
            Err(r) => return r,
        };
        let call = arrived.uri.query().unwrap_or_default().split('&').find_map(|kv| kv.strip_prefix("call=")).unwrap_or_default().to_string();
        if !valid_call_sid(&call) {
            return (StatusCode::BAD_REQUEST, "call missing or malformed\n").into_response();
        }
        let delivery = match hook.get("MessageStatus").or(hook.get("SmsStatus")) {
            Some("failed" | "undelivered") => resetline_engine::session::Delivery::Failed,
            Some("delivered") => resetline_engine::session::Delivery::Delivered,
            _ => return StatusCode::NO_CONTENT.into_response(),
        };
        let message = hook.get("MessageSid").or(hook.get("SmsSid")).unwrap_or_default().to_string();
        let (mut guard, stored) = match take_call(&state, &call).await {
            Ok(taken) => taken,
            Err(e) => {
                state.inner.metrics.store_failed();
                tracing::warn!(call = %call, error = %e, "delivery report not recorded");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again\n").into_response();
            }
        };
        match stored {
            Some((mut session, revision)) => {
                let matches = session.otp.as_ref().is_some_and(|o| o.message_id.as_deref() == Some(message.as_str()));
                if !matches {
                    tracing::info!(call = %call, "delivery report for an older message; ignored");
                    return StatusCode::NO_CONTENT.into_response();
                }
                if let Some(o) = session.otp.as_mut() {
                    o.delivery = delivery;
                }
                tracing::info!(call = %call, status = ?delivery, error_code = hook.get("ErrorCode").unwrap_or(""), "message delivery report");
                let Some(loaded) = state.inner.flows.version(&session.flow_id, &session.flow_version) else {
                    return StatusCode::NO_CONTENT.into_response();
                };
                if let Err(e) = save(&state, &loaded.flow, session, revision, &mut guard).await {
                    state.inner.metrics.store_failed();
                    tracing::warn!(call = %call, error = %e, "delivery report not recorded");
                    return (StatusCode::SERVICE_UNAVAILABLE, "try again\n").into_response();
                }
                StatusCode::NO_CONTENT.into_response()
            }
            None => StatusCode::NO_CONTENT.into_response(),
        }
    }))
    .await
}

/// Saves with the TTL the call may still need: its remaining time plus a margin for late
/// status callbacks. With a lease, the save gives it back too (unless the store failed: then
/// the guard's drop tries again).
async fn save(
    state: &AppState,
    flow: &resetline_flow::Flow,
    session: resetline_engine::Session,
    revision: u64,
    guard: &mut CallGuard,
) -> Result<u64, StoreError> {
    let max_ms = flow
        .settings
        .max_call_seconds
        .as_ref()
        .map_or(600_000, |m| u64::from(m.value) * 1000);
    let ttl_ms = max_ms + 300_000;
    let by = deadline::answer_by();
    let Some(held) = &guard.lease else {
        return deadline::store(
            by,
            "sessions",
            state.inner.store.save(session, revision, ttl_ms),
        )
        .await;
    };
    let saved = deadline::store(
        by,
        "sessions",
        held.store
            .save_and_release(session, revision, ttl_ms, &held.token),
    )
    .await;
    // Given back unless the store failed (then the guard's drop tries again). The guard keeps
    // it until here, so a request cancelled during the save still releases it on drop.
    if !matches!(saved, Err(StoreError::Backend(_))) {
        guard.lease = None;
    }
    saved
}

fn ended_metric(
    state: &AppState,
    session: &resetline_engine::Session,
    actions: &[Action],
    replayed: bool,
) {
    if !replayed
        && actions.last() == Some(&Action::Hangup)
        && let Some(outcome) = &session.ended
    {
        state.inner.metrics.call_ended(outcome);
    }
}

/// The session store failed (or the call's lock or lease was not free in time): the caller
/// hears an apology in the flow's language (the catalog's `technical_difficulty`) and a next
/// step, never silence or a 500. The failure is counted and audited (the call ends here:
/// `session_expired`, reason `store_unavailable`, or `call_busy` for the lock).
async fn store_trouble(
    state: &AppState,
    flow_id: &str,
    call_sid: &str,
    e: &StoreError,
) -> Response {
    tracing::error!(flow = %flow_id, error = %e, "session store failed");
    state.inner.metrics.store_failed();
    let record = resetline_audit::Record::new(
        audit_time(state),
        resetline_audit::EventType::SessionExpired,
        resetline_audit::Outcome::Failure,
        call_sid,
        flow_id,
        "",
    )
    .with_reason(match e {
        StoreError::Conflict => "store_conflict",
        StoreError::Backend(b) if b.backend == CALL_LOCK => "call_busy",
        StoreError::Backend(_) => "store_unavailable",
    });
    append_audit(state, vec![record], None).await;
    apology(state, flow_id)
}

/// The technical-difficulty apology and a hang-up.
fn apology(state: &AppState, flow_id: &str) -> Response {
    let (text, locale, voice) = engine_prompt(
        state,
        flow_id,
        "technical_difficulty",
        "Sorry, something went wrong on our side.",
    );
    let text = [Spoken::Text(format!(
        "{text} Please call again in a few minutes."
    ))];
    twiml_response(render::say_and_hang_up(&text, &locale, voice.as_deref()))
}

async fn audio(
    State(state): State<AppState>,
    Path((locale, file)): Path<(String, String)>,
) -> Response {
    let safe = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !safe(&locale) || !safe(&file) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let dir = state.inner.prompts_dir.join("audio");
    for candidate in [dir.join(&locale).join(&file), dir.join(&file)] {
        if let Ok(bytes) = tokio::fs::read(&candidate).await {
            let mime = match candidate.extension().and_then(|e| e.to_str()) {
                Some("wav") => "audio/wav",
                Some("mp3") => "audio/mpeg",
                Some("aiff" | "aif") => "audio/aiff",
                _ => "application/octet-stream",
            };
            return ([(header::CONTENT_TYPE, mime)], bytes).into_response();
        }
    }
    StatusCode::NOT_FOUND.into_response()
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

    fn state() -> AppState {
        let log = Arc::new(resetline_engine::testing::CallLog::default());
        let clock = Arc::new(resetline_engine::FakeClock::at(1_700_000_000_000));
        let engine = resetline_engine::testing::engine(
            vec![],
            &log,
            clock.clone(),
            Arc::new(resetline_store::MemoryLockouts::new()),
        );
        AppState::new(
            "http://127.0.0.1",
            Secret::new("token"),
            engine,
            Arc::new(Registry::default()),
            Arc::new(resetline_store::MemoryStore::new(clock, 10)),
            Arc::new(resetline_engine::testing::MemoryAudit::default()),
            PathBuf::from("voice-prompts"),
        )
    }

    /// Three requests of one call: the second waits for the first; when the first is done the
    /// lock stays (the second holds it), so the third waits for the second instead of taking
    /// a fresh lock; the last one out removes it.
    #[tokio::test]
    async fn a_calls_lock_outlives_its_holder_while_a_request_waits() {
        let state = state();
        let (first, _) = take_call(&state, "CA1").await.expect("first");
        let second = tokio::spawn({
            let state = state.clone();
            async move { take_call(&state, "CA1").await.map(|(guard, _)| guard) }
        });
        tokio::task::yield_now().await; // the second is now waiting for the lock
        assert!(!second.is_finished());
        drop(first);
        let second = second.await.expect("task").expect("second");
        assert_eq!(state.locked_calls(), 1, "the waiter kept the call's lock");
        let third = tokio::spawn({
            let state = state.clone();
            async move { take_call(&state, "CA1").await.map(|(guard, _)| guard) }
        });
        tokio::task::yield_now().await;
        assert!(
            !third.is_finished(),
            "a third request waits for the second (same lock), it does not take a new one"
        );
        drop(second);
        drop(third.await.expect("task").expect("third"));
        assert_eq!(state.locked_calls(), 0, "the last holder removed the lock");
    }

    #[test]
    fn voice_paths_route_to_their_webhook_and_nothing_else_does() {
        use VoiceRoute::{Incoming, Status, Step};
        let step = |flow, token, event| Some(Step { flow, token, event });
        assert_eq!(voice_route("/voice/pin-reset"), Some(Incoming("pin-reset")));
        assert_eq!(
            voice_route("/voice/pin-reset/status"),
            Some(Status("pin-reset"))
        );
        assert_eq!(voice_route("/voice/f/step/12"), step("f", "12", "digits"));
        assert_eq!(
            voice_route("/voice/f/step/12/timeout"),
            step("f", "12", "timeout")
        );
        assert_eq!(
            voice_route("/voice/f/step/12/transfer"),
            step("f", "12", "transfer")
        );
        for other in [
            "/voice",
            "/voice/",
            "/voice//status",
            "/voice/f/",
            "/voice/f/status/x",
            "/voice/f/step",
            "/voice/f/step/",
            "/voice/f/step/12/other",
            "/voice/f/step/12/timeout/x",
            "/voice/f/other",
            "/sms/status",
            "/",
        ] {
            assert_eq!(voice_route(other), None, "{other}");
        }
    }

    #[test]
    fn flow_ids_outside_the_language_are_refused_before_logging() {
        assert!(plausible_flow_id("password-reset"));
        assert!(!plausible_flow_id("x\nfake log line"));
        assert!(!plausible_flow_id(""));
        assert!(!plausible_flow_id(&"a".repeat(65)));
    }
}
