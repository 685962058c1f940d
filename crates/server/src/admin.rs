//! The admin routes, served on their own listener (`admin_listen`, loopback by default) and
//! never on the webhook port: readiness names every loaded flow and its version, the metrics
//! show traffic, outcomes and backend state, which is reconnaissance for anyone who can reach
//! the carrier's port. Invariant: `app` routes none of these (a test asks the webhook port
//! for them and gets 404). New operator routes go here, beside these.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{AppState, metrics};

/// The admin router: `/healthz`, `/readyz` (503 until a flow is loaded, while the audit sink
/// fails or the session store is unreachable) and `/metrics` (Prometheus text).
pub fn admin_app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let flows = state.inner.flows.list();
    if flows.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no flow loaded\n").into_response();
    }
    if !state.inner.audit.healthy() {
        let body = match state.inner.audit.stats().pending {
            0 => "audit sink failing\n".to_string(),
            n => format!("audit sink failing: {n} record(s) waiting for a retry\n"),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    if !state.inner.store.healthy() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "session store unreachable\n",
        )
            .into_response();
    }
    let body: String = flows.iter().map(|(id, v)| format!("{id} {v}\n")).collect();
    (StatusCode::OK, body).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.inner.metrics.render(state.inner.store.len())
            + &metrics::audit_lines(&state.inner.audit.stats()),
    )
        .into_response()
}
