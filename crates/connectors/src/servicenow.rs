//! `ServiceNowTickets`: opens and closes service-desk tickets through the ServiceNow Table API
//! (issue 4 item 10), so a caller who gives up or fails hears a ticket number, and a
//! successful reset leaves a closed ticket for the record.
//!
//! - open: `POST {base}/api/now/table/incident` with JSON `{short_description, description,
//!   category, correlation_id: CallSid}` (+ `assignment_group`, `caller_id` when configured);
//!   the answer `{"result": {"number": "INC0012345", "sys_id": "..."}}` becomes a
//!   [`TicketRef`].
//! - close: `PATCH {base}/api/now/table/incident/{sys_id}` with `{"state", "close_code",
//!   "close_notes"}`; state and close code default to [`ServiceNowTickets::DEFAULT_CLOSE_STATE`]
//!   (`7`, Closed) and [`ServiceNowTickets::DEFAULT_CLOSE_CODE`] (`Solved (Permanently)`),
//!   both configurable because instances customise them.
//!
//! Both send `Accept: application/json` and HTTP Basic (user + password) or a bearer token.
//! A ServiceNow error body `{"error": {"message", "detail"}, "status": "failure"}` becomes the
//! [`BackendError`]'s message; a timeout is [`BackendError::timeout`].
//!
//! Invariant: the password or token lives in a [`Secret`] and leaves it only for the
//! Authorization header; no error, log or `Debug` output contains it. Only TLS carries it,
//! except to a loopback test server; redirects are not followed.

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use resetline_engine::{BackendError, BoxFuture, NewTicket, Secret, TicketRef, Tickets};
use serde_json::{Map, Value, json};

use crate::rest::{
    MAX_SUCCESS_BODY, check_base_url, clean, http_client, is_sid, read_body, read_error_body,
    redact, transport_error,
};

/// The backend name in [`BackendError`]s.
const BACKEND: &str = "tickets";

/// How the connector authenticates to ServiceNow.
#[derive(Clone, Debug)]
pub enum ServiceNowAuth {
    /// HTTP Basic with a ServiceNow user (an integration account) and its password.
    Basic {
        /// User name (no `:`).
        user: String,
        /// Password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>` (an OAuth access token).
    Bearer(Secret),
}

/// The ticket connector could not be configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceNowConfigError {
    /// The instance base URL is unusable (the reason says why).
    BaseUrl(String),
    /// The Basic-auth user is empty, contains `:` or a control character.
    User,
    /// The password or bearer token is empty.
    EmptySecret,
    /// A configured field value (named) is empty or contains a control character.
    Field(&'static str),
    /// The HTTP client could not be built (TLS set-up).
    Client(String),
}

impl fmt::Display for ServiceNowConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceNowConfigError::BaseUrl(why) => write!(f, "bad ServiceNow base URL: {why}"),
            ServiceNowConfigError::User => f.write_str(
                "the ServiceNow user must be non-empty, without ':' or control characters",
            ),
            ServiceNowConfigError::EmptySecret => {
                f.write_str("the ServiceNow password or token is empty")
            }
            ServiceNowConfigError::Field(name) => write!(
                f,
                "the ServiceNow {name} must be non-empty, without control characters"
            ),
            ServiceNowConfigError::Client(why) => {
                write!(f, "cannot build the HTTP client: {why}")
            }
        }
    }
}

impl std::error::Error for ServiceNowConfigError {}

/// A ServiceNow instance's incident table as the engine's [`Tickets`].
pub struct ServiceNowTickets {
    client: reqwest::Client,
    /// Instance base URL without a trailing `/`.
    base: String,
    auth: ServiceNowAuth,
    assignment_group: Option<String>,
    caller_id: Option<String>,
    close_state: String,
    close_code: String,
    timeout: Duration,
}

impl fmt::Debug for ServiceNowTickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `ServiceNowAuth`'s Debug shows secrets as `Secret(***)`.
        f.debug_struct("ServiceNowTickets")
            .field("base", &self.base)
            .field("auth", &self.auth)
            .field("assignment_group", &self.assignment_group)
            .field("caller_id", &self.caller_id)
            .field("close_state", &self.close_state)
            .field("close_code", &self.close_code)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A configured field value: non-empty, no control characters.
fn field(name: &'static str, value: String) -> Result<String, ServiceNowConfigError> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(ServiceNowConfigError::Field(name));
    }
    Ok(value)
}

/// ServiceNow's `error.message` and `error.detail`, when the body carries them.
fn servicenow_error(body: &[u8]) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let error = json.get("error")?;
    let text = |k: &str| {
        error
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(|s| redact(&clean(s)))
    };
    match (text("message"), text("detail")) {
        (Some(m), Some(d)) => Some(format!("{m}: {d}")),
        (Some(m), None) => Some(m),
        (None, Some(d)) => Some(d),
        (None, None) => None,
    }
}

/// The ticket in a create answer: `result.number` and `result.sys_id`.
fn ticket_of(answer: &[u8]) -> Option<TicketRef> {
    let json: Value = serde_json::from_slice(answer).ok()?;
    let result = json.get("result")?;
    let number = result.get("number")?.as_str()?;
    let sys_id = result.get("sys_id")?.as_str()?;
    let number_ok = !number.is_empty()
        && number.len() <= 40
        && number.chars().all(|c| c.is_ascii_alphanumeric());
    (number_ok && is_sid(sys_id)).then(|| TicketRef {
        number: number.to_owned(),
        id: sys_id.to_owned(),
    })
}

impl ServiceNowTickets {
    /// The default budget for one request: tickets are opened while the caller waits.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The incident `state` written on close: `7` is Closed in the base system.
    pub const DEFAULT_CLOSE_STATE: &'static str = "7";

    /// The incident `close_code` written on close (a base-system choice).
    pub const DEFAULT_CLOSE_CODE: &'static str = "Solved (Permanently)";

    /// A connector for the instance at `base_url` (e.g. `https://acme.service-now.com`;
    /// `https` unless loopback) authenticated by `auth`.
    pub fn new(base_url: &str, auth: ServiceNowAuth) -> Result<Self, ServiceNowConfigError> {
        let base = check_base_url(base_url).map_err(ServiceNowConfigError::BaseUrl)?;
        match &auth {
            ServiceNowAuth::Basic { user, password } => {
                if user.trim().is_empty()
                    || user.contains(':')
                    || user.chars().any(char::is_control)
                {
                    return Err(ServiceNowConfigError::User);
                }
                if password.is_empty() {
                    return Err(ServiceNowConfigError::EmptySecret);
                }
            }
            ServiceNowAuth::Bearer(token) => {
                // The token goes into a header value: no control characters either.
                if token.is_empty() || token.expose().chars().any(char::is_control) {
                    return Err(ServiceNowConfigError::EmptySecret);
                }
            }
        }
        Ok(ServiceNowTickets {
            client: http_client().map_err(ServiceNowConfigError::Client)?,
            base,
            auth,
            assignment_group: None,
            caller_id: None,
            close_state: Self::DEFAULT_CLOSE_STATE.to_owned(),
            close_code: Self::DEFAULT_CLOSE_CODE.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// Sets `assignment_group` on every opened incident (a group name or sys_id).
    pub fn with_assignment_group(
        mut self,
        group: impl Into<String>,
    ) -> Result<Self, ServiceNowConfigError> {
        self.assignment_group = Some(field("assignment_group", group.into())?);
        Ok(self)
    }

    /// Sets `caller_id` on every opened incident (e.g. the service account the line files as).
    pub fn with_caller_id(
        mut self,
        caller: impl Into<String>,
    ) -> Result<Self, ServiceNowConfigError> {
        self.caller_id = Some(field("caller_id", caller.into())?);
        Ok(self)
    }

    /// Replaces the `state` and `close_code` written on close.
    pub fn with_close_values(
        mut self,
        state: impl Into<String>,
        close_code: impl Into<String>,
    ) -> Result<Self, ServiceNowConfigError> {
        self.close_state = field("close state", state.into())?;
        self.close_code = field("close code", close_code.into())?;
        Ok(self)
    }

    /// Sets the budget for one request (connecting, sending and reading the answer).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn table_url(&self) -> String {
        format!("{}/api/now/table/incident", self.base)
    }

    /// The request with auth, `Accept` and the time budget.
    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, url)
            .timeout(self.timeout)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        match &self.auth {
            ServiceNowAuth::Basic { user, password } => {
                request.basic_auth(user, Some(password.expose()))
            }
            ServiceNowAuth::Bearer(token) => request.bearer_auth(token.expose()),
        }
    }

    /// Sends `request`; a 2xx answer's body (bounded) or the error as a [`BackendError`].
    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, BackendError> {
        let fail = |e| transport_error(BACKEND, "ServiceNow", e);
        let mut response = request.send().await.map_err(fail)?;
        let status = response.status();
        if status.is_success() {
            return read_body(&mut response, MAX_SUCCESS_BODY)
                .await
                .map_err(fail);
        }
        let body = read_error_body(&mut response, BACKEND).await?;
        let detail = servicenow_error(&body)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        Err(BackendError::new(
            BACKEND,
            format!("ServiceNow answered HTTP {}{detail}", status.as_u16()),
        ))
    }

    async fn open_incident(&self, ticket: NewTicket) -> Result<TicketRef, BackendError> {
        let mut body = Map::new();
        body.insert("short_description".into(), ticket.summary.into());
        if let Some(details) = ticket.details {
            body.insert("description".into(), details.into());
        }
        if let Some(category) = ticket.category {
            body.insert("category".into(), category.into());
        }
        body.insert("correlation_id".into(), ticket.call_sid.into());
        if let Some(group) = &self.assignment_group {
            body.insert("assignment_group".into(), group.as_str().into());
        }
        if let Some(caller) = &self.caller_id {
            body.insert("caller_id".into(), caller.as_str().into());
        }
        let request = self
            .request(reqwest::Method::POST, self.table_url())
            .json(&Value::Object(body));
        let answer = self.call(request).await?;
        ticket_of(&answer).ok_or_else(|| {
            BackendError::new(
                BACKEND,
                "ServiceNow's answer has no usable result.number and result.sys_id",
            )
        })
    }

    async fn close_incident(&self, ticket: &TicketRef, note: &str) -> Result<(), BackendError> {
        if !is_sid(&ticket.id) {
            return Err(BackendError::new(
                BACKEND,
                "the ticket's sys_id is not 1-64 ASCII letters and digits",
            ));
        }
        let url = format!("{}/{}", self.table_url(), ticket.id);
        let request = self.request(reqwest::Method::PATCH, url).json(&json!({
            "state": self.close_state,
            "close_code": self.close_code,
            "close_notes": note,
        }));
        self.call(request).await.map(|_| ())
    }
}

impl Tickets for ServiceNowTickets {
    fn open(&self, ticket: NewTicket) -> BoxFuture<'_, Result<TicketRef, BackendError>> {
        Box::pin(self.open_incident(ticket))
    }

    fn close<'a>(
        &'a self,
        ticket: &'a TicketRef,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.close_incident(ticket, note))
    }
}

#[cfg(test)]
mod tests;
