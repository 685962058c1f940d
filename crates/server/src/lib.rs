//! The webhook server: `fn app(state) -> Router` (the carrier's port), `fn admin_app(state)
//! -> Router` (metrics and readiness, on a port of their own) and `serve`, the loop that
//! serves either within connection limits.
//!
//! Data path of one webhook (`webhook`, then a handler of `voice`): the router (404 for a path
//! it does not serve, 405 for a method other than POST) -> the deadline starts (`deadline`)
//! -> path checked (404) -> body size cap (413) -> form parse, at most [`MAX_PAIRS`] pairs
//! (400) -> signature check against the configured public URL (403, no state change) ->
//! per-call lock (and, with a shared store, the call's lease across replicas) and session
//! load (`call_lock`) -> engine step -> save session (compare-and-swap) -> audit records
//! (`records`) -> render TwiML (`render`). What goes wrong is a `WebhookError` (`error`):
//! 4xx for refusals, and for call problems (an unknown call, a broken backend) spoken TwiML
//! with a next step, never a 500 (which carriers turn into "an application error has
//! occurred"). Architecture invariant: this is the only crate that knows axum or HTTP.

pub mod admin;
mod call_lock;
mod deadline;
mod error;
pub mod metrics;
mod records;
pub mod registry;
pub mod render;
mod scrub;
pub mod serve;
pub mod tls;
mod voice;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use resetline_engine::{BackendError, CallLeases, Engine, Secret, SessionStore, StepEvent};

pub use admin::admin_app;
pub use deadline::{BUDGET as WEBHOOK_BUDGET, STEP_SHARE as WEBHOOK_STEP_SHARE};
pub use metrics::Metrics;
pub use registry::{Registry, ReloadResult};
pub use serve::{Limits, serve, serve_tls};
pub use tls::{Tls, TlsError, TlsFiles};
pub use webhook::{WebhookCheck, preflight};

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
    locks: Arc<call_lock::CallLocks>,
    metrics: Arc<Metrics>,
    prompts_dir: PathBuf,
    refusals: records::RefusalBudget,
    appends: Arc<records::Appends>,
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
                locks: Arc::default(),
                metrics: Arc::new(Metrics::default()),
                prompts_dir,
                refusals: records::RefusalBudget::default(),
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
        let random = self.inner.engine.random.as_ref();
        self.inner.locks.use_leases(shared, random)?;
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
        self.inner.locks.forget_idle()
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
/// The carrier's webhooks: `POST /voice/{flow}` (a call arrives), `/voice/{flow}/status` (its
/// status callback), the step URLs the engine writes (`/voice/{flow}/step/{token}`, and
/// `/timeout`, `/transfer` after it: [`resetline_engine::StepUrl`]) and `/sms/status`. Each
/// runs under `webhook::observe` (deadline, span, metrics). `/metrics` and `/readyz` are not
/// here: they are [`admin_app`]'s, on the admin listener.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route(
            "/voice/{flow}",
            webhook_route(&state, "incoming", voice::incoming),
        )
        .route(
            "/voice/{flow}/status",
            webhook_route(&state, "status", voice::status),
        )
        .route(
            "/sms/status",
            webhook_route(&state, "sms_status", voice::sms_status),
        );
    for event in StepEvent::ALL {
        let path = format!("/voice/{{flow}}/step/{{token}}{}", event.suffix());
        router = router.route(&path, webhook_route(&state, event.as_str(), voice::step));
    }
    router
        .route("/prompts/{locale}/{file}", get(audio))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

/// A webhook route: POST only (the router answers 405 to other methods, before the handler
/// and its layer), observed as `route` in logs and metrics.
fn webhook_route<H, T>(state: &AppState, route: &'static str, handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    let observe = from_fn_with_state((state.clone(), route), webhook::observe);
    post(handler).route_layer(observe)
}

/// `GET /prompts/{locale}/{file}`: a recorded prompt the TwiML plays (`voice-prompts/audio`).
async fn audio(
    State(state): State<AppState>,
    Path((locale, file)): Path<(String, String)>,
) -> Response {
    let dir = state.inner.prompts_dir.join("audio");
    let Some(candidates) = resetline_flow::prompts::audio_candidates(&dir, &locale, &file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    for candidate in candidates {
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

    /// Every step URL the engine writes is routed to the step webhook: routes and URLs come
    /// from one definition (`resetline_engine::StepUrl`).
    #[tokio::test]
    async fn every_step_url_the_engine_writes_is_routed_to_the_step_webhook() {
        use tower::ServiceExt;
        let clock = Arc::new(resetline_engine::FakeClock::at(1_700_000_000_000));
        let log = Arc::new(resetline_engine::testing::CallLog::default());
        let engine = resetline_engine::testing::engine(
            vec![],
            &log,
            clock.clone(),
            Arc::new(resetline_store::MemoryLockouts::new()),
        );
        let state = AppState::new(
            "http://127.0.0.1",
            Secret::new("token"),
            engine,
            Arc::new(Registry::default()),
            Arc::new(resetline_store::MemoryStore::new(clock, 10)),
            Arc::new(resetline_engine::testing::MemoryAudit::default()),
            PathBuf::from("voice-prompts"),
        );
        for event in StepEvent::ALL {
            let url = resetline_engine::StepUrl {
                flow: "pin-reset",
                token: 12,
                event,
            };
            let request = axum::http::Request::post(url.format())
                .body(axum::body::Body::from("CallSid=CA1"))
                .expect("request");
            let response = app(state.clone()).oneshot(request).await.expect("answer");
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{} reached the step webhook (unsigned: refused there)",
                url.format()
            );
        }
    }
}
