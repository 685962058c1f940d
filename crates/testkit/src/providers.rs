//! Local fakes of the Twilio REST API (Recordings, Messages) and the ServiceNow Table API
//! that record every request (method, path, auth header, body) and answer with the
//! documented shapes (protocol.md §5-6).
//!
//! Not the simulator's fake (`resetline_simulator::rest`): that one is the demo handset, with
//! simulated time and delivery reports; this one records what a real server sent.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{patch, post};

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: &'static str,
    pub path: String,
    pub auth: String,
    pub body: String,
}

/// Every request the fakes received, in order.
pub type Log = Arc<Mutex<Vec<Seen>>>;

/// Records a request in `log`.
pub fn seen(log: &Log, method: &'static str, path: String, headers: &HeaderMap, body: String) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Ok(mut l) = log.lock() {
        l.push(Seen {
            method,
            path,
            auth,
            body,
        });
    }
}

/// The fakes' routes, recording into `log`.
pub fn providers(log: Log) -> Router {
    providers_with_delay(log, Delay::default())
}

/// Milliseconds the fake Messages API waits before it answers (a slow provider).
pub type Delay = Arc<std::sync::atomic::AtomicU64>;

/// `providers`, with the Messages API answering `delay` after it logged the request.
pub fn providers_with_delay(log: Log, delay: Delay) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}/Recordings/{rec}",
            post(|State(log): State<Log>, Path((account, call, rec)): Path<(String, String, String)>, headers: HeaderMap, body: String| async move {
                seen(&log, "POST", format!("/2010-04-01/Accounts/{account}/Calls/{call}/Recordings/{rec}"), &headers, body);
                (StatusCode::OK, [("content-type", "application/json")], r#"{"sid":"RE0123456789abcdef0123456789abcdef","status":"paused","source":"StartCallRecordingAPI"}"#)
            }),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            post(move |State(log): State<Log>, Path(account): Path<String>, headers: HeaderMap, body: String| async move {
                let n = log.lock().map(|l| l.len()).unwrap_or(0);
                seen(&log, "POST", format!("/2010-04-01/Accounts/{account}/Messages.json"), &headers, body);
                let wait = delay.load(std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                let sid = format!("SM{n:032}");
                (StatusCode::CREATED, [("content-type", "application/json")], format!(r#"{{"sid":"{sid}","status":"queued","direction":"outbound-api","error_code":null}}"#)).into_response()
            }),
        )
        .route(
            "/api/now/table/incident",
            post(|State(log): State<Log>, headers: HeaderMap, body: String| async move {
                seen(&log, "POST", "/api/now/table/incident".into(), &headers, body);
                (StatusCode::CREATED, [("content-type", "application/json")], r#"{"result":{"number":"INC0010001","sys_id":"9d385017c611228701d22104cc95c371"}}"#)
            }),
        )
        .route(
            "/api/now/table/incident/{id}",
            patch(|State(log): State<Log>, Path(id): Path<String>, headers: HeaderMap, body: String| async move {
                seen(&log, "PATCH", format!("/api/now/table/incident/{id}"), &headers, body);
                (StatusCode::OK, [("content-type", "application/json")], r#"{"result":{"number":"INC0010001","state":"7"}}"#)
            }),
        )
        .with_state(log)
}

/// The value of `key` in a form body.
pub fn form_value(body: &str, key: &str) -> Option<String> {
    let params = resetline_twiml::params::parse_owned(body.as_bytes());
    params.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Serves the provider fakes on a free port; returns their base URL and the request log.
pub async fn start_providers() -> (String, Log) {
    let (url, log, _) = start_slow_providers().await;
    (url, log)
}

/// `start_providers`, with a knob that slows the Messages API down.
pub async fn start_slow_providers() -> (String, Log, Delay) {
    let log: Log = Arc::default();
    let delay = Delay::default();
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let url = format!("http://{}", fake.local_addr().expect("addr"));
    tokio::spawn(axum::serve(fake, providers_with_delay(log.clone(), delay.clone())).into_future());
    (url, log, delay)
}
