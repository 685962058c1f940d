//! Local fakes of the Twilio REST API (Recordings, Messages), the ServiceNow Table API and
//! Jira Service Management's request API that record every request (method, path, auth
//! header, body) and answer with the documented shapes (protocol.md §5-6; Jira: [`jira`]).
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
        .route(
            "/rest/servicedeskapi/request",
            post(|State(log): State<Log>, headers: HeaderMap, body: String| async move {
                let path = "/rest/servicedeskapi/request";
                let n = log.lock().map(|l| l.iter().filter(|s| s.path == path).count()).unwrap_or(0);
                let answer = jira::create(&body, n + 1);
                seen(&log, "POST", path.into(), &headers, body);
                answer
            }),
        )
        .route(
            "/rest/servicedeskapi/request/{key}/transition",
            post(|State(log): State<Log>, Path(key): Path<String>, headers: HeaderMap, body: String| async move {
                let answer = jira::transition(&body);
                seen(&log, "POST", format!("/rest/servicedeskapi/request/{key}/transition"), &headers, body);
                answer
            }),
        )
        .with_state(log)
}

/// Jira Service Management's REST API, as documented for Cloud
/// (`/rest/servicedeskapi/request`): create a customer request, transition it.
pub mod jira {
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use serde_json::{Value, json};

    /// The Jira error body: `{"errorMessage", "i18nErrorMessage"}`.
    fn error(status: StatusCode, message: &str) -> Response {
        let body = json!({
            "errorMessage": message,
            "i18nErrorMessage": {"i18nKey": "sd.request.create.error", "parameters": []},
        });
        (
            status,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    }

    /// `POST /rest/servicedeskapi/request`: `{"serviceDeskId", "requestTypeId",
    /// "requestFieldValues": {"summary", "description"?}}` (ids as strings, a non-empty
    /// summary) answers 201 with the `n`-th created request (`issueKey` `HELP-{n}`, `issueId`
    /// `{107000 + n}`); anything else 400.
    pub fn create(body: &str, n: usize) -> Response {
        let Ok(request) = serde_json::from_str::<Value>(body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "The request body is not valid JSON.",
            );
        };
        let text = |p: &str| {
            request
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(desk), Some(kind)) = (text("/serviceDeskId"), text("/requestTypeId")) else {
            return error(
                StatusCode::BAD_REQUEST,
                "serviceDeskId and requestTypeId are required.",
            );
        };
        let summary = text("/requestFieldValues/summary").unwrap_or_default();
        if summary.trim().is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "Summary: You must specify a summary of the issue.",
            );
        }
        let mut fields =
            vec![json!({"fieldId": "summary", "label": "What do you need?", "value": summary})];
        if let Some(d) = text("/requestFieldValues/description") {
            fields.push(
                json!({"fieldId": "description", "label": "Why do you need this?", "value": d}),
            );
        }
        let id = format!("{}", 107_000 + n);
        let answer = json!({
            "_expands": ["participant", "status", "sla", "requestType", "serviceDesk", "attachment", "action", "comment"],
            "issueId": id,
            "issueKey": format!("HELP-{n}"),
            "requestTypeId": kind,
            "serviceDeskId": desk,
            "createdDate": {"iso8601": "2026-12-08T02:00:00+0000", "jira": "2026-12-08T02:00:00.000+0000", "friendly": "Today 02:00", "epochMillis": 1_796_522_400_000_u64},
            "reporter": {"accountId": "qm:resetline", "displayName": "Resetline", "active": true},
            "requestFieldValues": fields,
            "currentStatus": {"status": "Waiting for support", "statusCategory": "NEW"},
            "_links": {"web": format!("https://example.atlassian.net/servicedesk/customer/portal/{desk}/HELP-{n}"), "self": format!("https://example.atlassian.net/rest/servicedeskapi/request/{id}")},
        });
        (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            answer.to_string(),
        )
            .into_response()
    }

    /// `POST /rest/servicedeskapi/request/{issueIdOrKey}/transition`: `{"id",
    /// "additionalComment": {"body"}?}` answers 204; without a transition `id`, 400.
    pub fn transition(body: &str) -> Response {
        let id = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
        match id {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => error(StatusCode::BAD_REQUEST, "A transition id is required."),
        }
    }
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
