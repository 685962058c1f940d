//! `TwilioRecording`: pauses and resumes a call's recording through Twilio's REST API, so the
//! secure section can hold the first secret prompt until the carrier has acknowledged the
//! pause (security check 29).
//!
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Recordings/Twilio.CURRENT.json`
//! with a form body `Status=paused&PauseBehavior=skip|silence` or `Status=in-progress`, HTTP
//! Basic auth `AccountSid:AuthToken` (shared/docs/protocol.md §5). 200 is
//! [`RecordingAck::Done`], 404 is [`RecordingAck::NoRecording`]; anything else, a transport
//! failure or a timeout is a [`BackendError`].
//!
//! Invariant: the auth token lives in a [`Secret`] and leaves it only for the Authorization
//! header (which reqwest marks sensitive); no error, log or `Debug` output contains it. Only
//! TLS (rustls) carries it, except to a loopback test server; redirects are not followed.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};
use resetline_engine::{BackendError, BoxFuture, Recording, RecordingAck, RecordingChange, Secret};

/// The backend name in [`BackendError`]s.
const BACKEND: &str = "recording";

/// At most this much of an error body is read.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// At most this many characters of Twilio's error message go into a [`BackendError`].
const MAX_MESSAGE_CHARS: usize = 200;

/// Twilio's recording control, configured with an account and its auth token.
pub struct TwilioRecording {
    client: reqwest::Client,
    /// Base URL without a trailing `/`.
    base: String,
    account_sid: String,
    auth_token: Secret,
    timeout: Duration,
}

impl fmt::Debug for TwilioRecording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioRecording")
            .field("base", &self.base)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The recording client could not be configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The Account SID is empty, too long, or not ASCII letters and digits.
    AccountSid,
    /// The auth token is empty.
    EmptyAuthToken,
    /// The base URL is unusable (the reason says why).
    BaseUrl(String),
    /// The HTTP client could not be built (TLS set-up).
    Client(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::AccountSid => {
                f.write_str("the Twilio Account SID must be 1-64 ASCII letters and digits (AC...)")
            }
            ConfigError::EmptyAuthToken => f.write_str("the Twilio auth token is empty"),
            ConfigError::BaseUrl(why) => write!(f, "bad Twilio API base URL: {why}"),
            ConfigError::Client(why) => write!(f, "cannot build the HTTP client: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A SID that is safe as one URL path segment.
fn is_sid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks a base URL: http(s), no credentials, query or fragment; plain http only to a
/// loopback host (a local fake), since the auth token travels with every request.
fn check_base_url(base: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::BaseUrl(why.to_owned());
    let url = Url::parse(base).map_err(|e| ConfigError::BaseUrl(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    let host = url.host_str().ok_or_else(|| bad("has no host"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let ip = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>();
            let loopback =
                host.eq_ignore_ascii_case("localhost") || ip.is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(bad(
                    "plain http is only allowed to a loopback host; use https",
                ));
            }
        }
        other => {
            return Err(ConfigError::BaseUrl(format!(
                "scheme {other:?} is not http or https"
            )));
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The form body for `change`. Every value is a fixed token, so nothing needs encoding.
fn form_body(change: RecordingChange) -> &'static str {
    match change {
        RecordingChange::Pause { skip: true } => "Status=paused&PauseBehavior=skip",
        RecordingChange::Pause { skip: false } => "Status=paused&PauseBehavior=silence",
        RecordingChange::Resume => "Status=in-progress",
    }
}

/// A reqwest failure as a [`BackendError`]: the cause chain, without the URL.
fn transport_error(e: reqwest::Error) -> BackendError {
    if e.is_timeout() {
        return BackendError::timeout(BACKEND);
    }
    let e = e.without_url();
    let mut message = format!("request to Twilio failed: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    BackendError::new(BACKEND, message)
}

/// Twilio's `code` and `message` (legacy body) or `code`, `title` and `detail` (RFC 9457
/// body), when the body is JSON carrying them.
fn twilio_error(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = json.get("code").and_then(|c| {
        c.as_i64()
            .map(|n| n.to_string())
            .or_else(|| c.as_str().map(str::to_owned))
    });
    let text = ["message", "detail", "title"]
        .iter()
        .find_map(|k| json.get(*k).and_then(|v| v.as_str()));
    let text = text.map(|t| {
        let clean: String = t
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_MESSAGE_CHARS)
            .collect();
        clean
    });
    match (code, text) {
        (Some(code), Some(text)) => Some(format!("code {code}: {text}")),
        (Some(code), None) => Some(format!("code {code}")),
        (None, Some(text)) => Some(text),
        (None, None) => None,
    }
}

impl TwilioRecording {
    /// Twilio's production API.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.twilio.com";

    /// The default budget for one request, connection included. Pausing happens while the
    /// carrier waits for the webhook's answer (15 s at most), so keep it well below that.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A client for `account_sid` (`AC...`) authenticated by `auth_token`, against
    /// [`Self::DEFAULT_BASE_URL`] with [`Self::DEFAULT_TIMEOUT`].
    pub fn new(account_sid: impl Into<String>, auth_token: Secret) -> Result<Self, ConfigError> {
        let account_sid = account_sid.into();
        if !is_sid(&account_sid) {
            return Err(ConfigError::AccountSid);
        }
        if auth_token.is_empty() {
            return Err(ConfigError::EmptyAuthToken);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("resetline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(TwilioRecording {
            client,
            base: Self::DEFAULT_BASE_URL.to_owned(),
            account_sid,
            auth_token,
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// Uses another API base URL (e.g. a local fake in tests). `https` is required except for
    /// loopback hosts; a path prefix is kept, a trailing `/` is dropped.
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.base = check_base_url(base_url)?;
        Ok(self)
    }

    /// Sets the budget for one request (connecting, sending and reading the answer).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL of the current recording of `call_sid`.
    fn url(&self, call_sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls/{call_sid}/Recordings/Twilio.CURRENT.json",
            self.base, self.account_sid
        )
    }

    async fn send(
        &self,
        call_sid: &str,
        change: RecordingChange,
    ) -> Result<RecordingAck, BackendError> {
        if !is_sid(call_sid) {
            return Err(BackendError::new(
                BACKEND,
                "the CallSid is not 1-64 ASCII letters and digits",
            ));
        }
        let request = self
            .client
            .post(self.url(call_sid))
            .timeout(self.timeout)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(form_body(change));
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        match status {
            StatusCode::OK => return Ok(RecordingAck::Done),
            StatusCode::NOT_FOUND => return Ok(RecordingAck::NoRecording),
            _ => {}
        }
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(BackendError::timeout(BACKEND)),
                Err(_) => break,
            }
        }
        body.truncate(MAX_ERROR_BODY);
        let detail = twilio_error(&body)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        Err(BackendError::new(
            BACKEND,
            format!("Twilio answered HTTP {}{detail}", status.as_u16()),
        ))
    }
}

impl Recording for TwilioRecording {
    fn change<'a>(
        &'a self,
        call_sid: &'a str,
        change: RecordingChange,
    ) -> BoxFuture<'a, Result<RecordingAck, BackendError>> {
        Box::pin(self.send(call_sid, change))
    }
}

#[cfg(test)]
mod tests;
