//! `HttpTickets`: a ticket system reached by one configurable HTTP request (issue 30 item 5),
//! for service desks other than ServiceNow (Jira Service Management, an in-house API, ...).
//!
//! - open: `{method} {url}` (POST by default; PUT or PATCH) with a JSON body built from a
//!   template ([`template`]: placeholders `summary`, `details`, `category`, `call_sid`); a 2xx
//!   answer is parsed as JSON and the ticket number read at the `ticket_number` JSON pointer
//!   (RFC 6901, e.g. `/issueKey`); the id used to close it at `ticket_id` (default: the number).
//! - close (optional): `{method} {url}` where the URL and body may use `ticket.id`,
//!   `ticket.number` and `note`. Without it a close is an error the engine only logs.
//!
//! Every request sends `Accept: application/json`, the configured extra headers, and HTTP
//! Basic or a bearer token ([`ServiceNowAuth`]); `Authorization` and `Content-Type` can not be
//! configured as headers. A non-2xx answer is an error naming the status (and a provider
//! message from `errorMessage`, `message`, `error` or `error.message`, scrubbed by
//! [`redact`]); no usable value at the pointer is an error naming the pointer; a timeout is
//! [`BackendError::timeout`].
//!
//! Invariant: no secret reaches a template (the placeholders are the ticket's own text); the
//! password or token leaves its [`Secret`] only for the Authorization header; no error, log or
//! `Debug` output contains it, nor a request body.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use resetline_engine::{BackendError, BoxFuture, NewTicket, TicketRef, Tickets};
use serde_json::Value;

use crate::ServiceNowAuth;
use crate::rest::{
    MAX_SUCCESS_BODY, check_endpoint_url, clean, http_client, read_body, read_error_body, redact,
    transport_error,
};

pub mod template;

use template::{CLOSE_FIELDS, OPEN_FIELDS, Pointer};

/// The backend name in [`BackendError`]s.
const BACKEND: &str = "tickets";

/// The longest ticket number or id accepted from an answer.
const MAX_TICKET_CHARS: usize = 128;

/// The open request and how to read its answer, as configured.
#[derive(Clone, Debug, Default)]
pub struct HttpTicketsSpec {
    /// The URL tickets are created at (no placeholders).
    pub url: String,
    /// `POST` (default when empty), `PUT` or `PATCH`.
    pub method: String,
    /// Extra request headers (not `Authorization` or `Content-Type`).
    pub headers: Vec<(String, String)>,
    /// The body template: a JSON object.
    pub body: Value,
    /// Where the answer holds the ticket number (a JSON pointer).
    pub ticket_number: String,
    /// Where the answer holds the id used to close it (default: `ticket_number`).
    pub ticket_id: Option<String>,
    /// How to close a ticket, if the system is to be asked.
    pub close: Option<CloseSpec>,
}

/// The close request, as configured.
#[derive(Clone, Debug, Default)]
pub struct CloseSpec {
    /// The URL (placeholders `ticket.id`, `ticket.number` in its path or query).
    pub url: String,
    /// `POST` (default when empty), `PUT` or `PATCH`.
    pub method: String,
    /// The body template (placeholders `note`, `ticket.id`, `ticket.number`); none: no body.
    pub body: Option<Value>,
}

/// A `POST`, `PUT` or `PATCH` (any case; empty: `POST`).
fn method_of(m: &str) -> Result<Method, String> {
    match m.to_ascii_uppercase().as_str() {
        "" | "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        _ => Err(format!(
            "`{}` is not supported (supported: POST, PUT, PATCH)",
            clean(m)
        )),
    }
}

/// A checked URL template (its placeholders replaced by `x` must make a usable URL).
fn url_problems(url: &str, allowed: &[&str]) -> Vec<String> {
    let mut problems = template::check_url(url, allowed);
    let sample = template::render_url(url, &|_| Some("x".to_owned()));
    if let Err(why) = check_endpoint_url(&sample) {
        problems.push(why);
    }
    problems
}

impl HttpTicketsSpec {
    /// Every problem of the configuration, each as (field, problem); the field is named as in
    /// `resetline.yaml` under `tickets:` (`url`, `body`, `close.method`, ...).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.url.contains("{{") {
            out.push(("url", "placeholders are only allowed in `close.url`".into()));
        } else if let Err(p) = check_endpoint_url(&self.url) {
            out.push(("url", p));
        }
        if let Err(p) = method_of(&self.method) {
            out.push(("method", p));
        }
        for (name, value) in &self.headers {
            if let Err(p) = header(name, value) {
                out.push(("headers", p));
            }
        }
        for p in template::check_body(&self.body, OPEN_FIELDS) {
            out.push(("body", p));
        }
        if let Err(p) = Pointer::parse(&self.ticket_number) {
            out.push(("ticket_number", p));
        }
        if let Some(Err(p)) = self.ticket_id.as_deref().map(Pointer::parse) {
            out.push(("ticket_id", p));
        }
        if let Some(close) = &self.close {
            for p in url_problems(&close.url, CLOSE_FIELDS) {
                out.push(("close.url", p));
            }
            if let Err(p) = method_of(&close.method) {
                out.push(("close.method", p));
            }
            for p in close
                .body
                .as_ref()
                .map(|b| template::check_body(b, CLOSE_FIELDS))
                .unwrap_or_default()
            {
                out.push(("close.body", p));
            }
        }
        out
    }
}

/// A configured header, or why it can not be one.
fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{}` is not a header name", clean(name)))?;
    if n == reqwest::header::AUTHORIZATION {
        return Err("`Authorization` comes from `username` + `password_env` or `token_env`; secrets are never written in the file".into());
    }
    if n == reqwest::header::CONTENT_TYPE {
        return Err("`Content-Type` is always application/json".into());
    }
    let v = HeaderValue::from_str(value)
        .map_err(|_| format!("header `{n}` has a value that is not valid"))?;
    Ok((n, v))
}

/// The HTTP ticket system could not be configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpTicketsConfigError {
    /// The settings have problems (field, problem), all of them.
    Spec(Vec<(&'static str, String)>),
    /// The Basic-auth user is unusable or a secret is empty.
    Auth,
    /// The HTTP client could not be built (TLS set-up).
    Client(String),
}

impl fmt::Display for HttpTicketsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpTicketsConfigError::Spec(problems) => {
                let all: Vec<String> = problems.iter().map(|(f, p)| format!("{f}: {p}")).collect();
                f.write_str(&all.join("; "))
            }
            HttpTicketsConfigError::Auth => f.write_str(
                "the user must be non-empty without ':' or control characters, and the password or token non-empty",
            ),
            HttpTicketsConfigError::Client(why) => write!(f, "cannot build the HTTP client: {why}"),
        }
    }
}

impl std::error::Error for HttpTicketsConfigError {}

/// The checked close request.
struct Close {
    url: String,
    method: Method,
    body: Option<Value>,
}

/// A ticket system behind one configurable HTTP request as the engine's [`Tickets`].
pub struct HttpTickets {
    client: reqwest::Client,
    url: String,
    method: Method,
    headers: HeaderMap,
    auth: ServiceNowAuth,
    body: Value,
    ticket_number: Pointer,
    ticket_id: Option<Pointer>,
    close: Option<Close>,
    timeout: Duration,
}

impl fmt::Debug for HttpTickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `ServiceNowAuth`'s Debug shows secrets as `Secret(***)`; headers are not shown.
        f.debug_struct("HttpTickets")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("auth", &self.auth)
            .field("ticket_number", &self.ticket_number)
            .field("closes", &self.close.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A provider's error text from a JSON error body (Jira's `errorMessage`, a `message`, an
/// `error` string or `error.message`), scrubbed.
fn provider_error(body: &[u8]) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let text = ["/errorMessage", "/message", "/error", "/error/message"]
        .iter()
        .find_map(|p| json.pointer(p).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())?;
    Some(redact(&clean(text)))
}

/// A ticket number or id from an answer: at most [`MAX_TICKET_CHARS`], no control characters.
fn usable(text: Option<String>) -> Option<String> {
    text.filter(|t| t.chars().count() <= MAX_TICKET_CHARS && !t.chars().any(char::is_control))
}

impl HttpTickets {
    /// The default budget for one request: tickets are opened while the caller waits.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A connector for `spec` authenticated by `auth`; every problem of `spec` at once.
    pub fn new(
        spec: HttpTicketsSpec,
        auth: ServiceNowAuth,
    ) -> Result<Self, HttpTicketsConfigError> {
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(HttpTicketsConfigError::Spec(problems));
        }
        let auth_ok = match &auth {
            ServiceNowAuth::Basic { user, password } => {
                !(user.trim().is_empty()
                    || user.contains(':')
                    || user.chars().any(char::is_control)
                    || password.is_empty())
            }
            ServiceNowAuth::Bearer(token) => {
                !(token.is_empty() || token.expose().chars().any(char::is_control))
            }
        };
        if !auth_ok {
            return Err(HttpTicketsConfigError::Auth);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let (n, v) = header(name, value)
                .map_err(|p| HttpTicketsConfigError::Spec(vec![("headers", p)]))?;
            headers.insert(n, v);
        }
        let spec_error = |field, p| HttpTicketsConfigError::Spec(vec![(field, p)]);
        let close = match spec.close {
            Some(c) => Some(Close {
                url: c.url,
                method: method_of(&c.method).map_err(|p| spec_error("close.method", p))?,
                body: c.body,
            }),
            None => None,
        };
        Ok(HttpTickets {
            client: http_client().map_err(HttpTicketsConfigError::Client)?,
            method: method_of(&spec.method).map_err(|p| spec_error("method", p))?,
            url: spec.url,
            headers,
            auth,
            body: spec.body,
            ticket_number: Pointer::parse(&spec.ticket_number)
                .map_err(|p| spec_error("ticket_number", p))?,
            ticket_id: spec
                .ticket_id
                .as_deref()
                .map(Pointer::parse)
                .transpose()
                .map_err(|p| spec_error("ticket_id", p))?,
            close,
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// Sets the budget for one request (connecting, sending and reading the answer).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `body` to `url`; a 2xx answer's body (bounded) or the error.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Vec<u8>, BackendError> {
        let mut request = self
            .client
            .request(method, url)
            .timeout(self.timeout)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .headers(self.headers.clone());
        request = match &self.auth {
            ServiceNowAuth::Basic { user, password } => {
                request.basic_auth(user, Some(password.expose()))
            }
            ServiceNowAuth::Bearer(token) => request.bearer_auth(token.expose()),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let fail = |e| transport_error(BACKEND, "the ticket system", e);
        let mut response = request.send().await.map_err(fail)?;
        let status = response.status();
        if status.is_success() {
            return read_body(&mut response, MAX_SUCCESS_BODY)
                .await
                .map_err(fail);
        }
        let body = read_error_body(&mut response, BACKEND).await?;
        let detail = provider_error(&body)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        Err(BackendError::new(
            BACKEND,
            format!(
                "the ticket system answered HTTP {}{detail}",
                status.as_u16()
            ),
        ))
    }

    async fn open_ticket(&self, ticket: NewTicket) -> Result<TicketRef, BackendError> {
        let body = template::render_body(&self.body, &|name| match name {
            "summary" => Some(ticket.summary.clone()),
            "details" => ticket.details.clone(),
            "category" => ticket.category.clone(),
            "call_sid" => Some(ticket.call_sid.clone()),
            _ => None,
        });
        let answer = self
            .call(self.method.clone(), &self.url, Some(body))
            .await?;
        let json: Value = serde_json::from_slice(&answer)
            .map_err(|_| BackendError::new(BACKEND, "the ticket system's answer is not JSON"))?;
        let missing = |p: &Pointer, what: &str| {
            BackendError::new(
                BACKEND,
                format!(
                    "the ticket system's answer has no usable {what} at `{}`",
                    p.as_str()
                ),
            )
        };
        let number = usable(self.ticket_number.text_in(&json))
            .ok_or_else(|| missing(&self.ticket_number, "ticket number"))?;
        let id = match &self.ticket_id {
            Some(p) => usable(p.text_in(&json)).ok_or_else(|| missing(p, "ticket id"))?,
            None => number.clone(),
        };
        Ok(TicketRef { number, id })
    }

    async fn close_ticket(&self, ticket: &TicketRef, note: &str) -> Result<(), BackendError> {
        let Some(close) = &self.close else {
            return Err(BackendError::new(
                BACKEND,
                "closing is not configured (`tickets.close`); the ticket stays open",
            ));
        };
        if ticket.id.trim_matches('.').is_empty() {
            return Err(BackendError::new(
                BACKEND,
                "the ticket id is not a usable path segment",
            ));
        }
        let lookup = |name: &str| match name {
            "note" => Some(note.to_owned()),
            "ticket.id" => Some(ticket.id.clone()),
            "ticket.number" => Some(ticket.number.clone()),
            _ => None,
        };
        let url = template::render_url(&close.url, &lookup);
        let body = close
            .body
            .as_ref()
            .map(|b| template::render_body(b, &lookup));
        self.call(close.method.clone(), &url, body)
            .await
            .map(|_| ())
    }
}

impl Tickets for HttpTickets {
    fn open(&self, ticket: NewTicket) -> BoxFuture<'_, Result<TicketRef, BackendError>> {
        Box::pin(self.open_ticket(ticket))
    }

    fn close<'a>(
        &'a self,
        ticket: &'a TicketRef,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.close_ticket(ticket, note))
    }
}

#[cfg(test)]
mod tests;
