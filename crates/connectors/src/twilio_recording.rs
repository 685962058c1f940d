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
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use resetline_engine::{BackendError, BoxFuture, Recording, RecordingAck, RecordingChange, Secret};

use crate::rest::{
    check_base_url, http_client, is_sid, read_error_body, transport_error, twilio_error,
};

/// The backend name in [`BackendError`]s.
const BACKEND: &str = "recording";

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

/// A Twilio client ([`TwilioRecording`] or [`crate::TwilioMessages`]) could not be configured.
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
    /// The SMS sender is unusable: not exactly one of `From` and `MessagingServiceSid`, or a
    /// malformed one (the reason says which).
    Sender(&'static str),
    /// The public base URL for delivery reports is unusable (the reason says why).
    PublicUrl(String),
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
            ConfigError::Sender(why) => write!(f, "bad Twilio SMS sender: {why}"),
            ConfigError::PublicUrl(why) => {
                write!(f, "bad public URL for Twilio delivery reports: {why}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The form body for `change`. Every value is a fixed token, so nothing needs encoding.
fn form_body(change: RecordingChange) -> &'static str {
    match change {
        RecordingChange::Pause { skip: true } => "Status=paused&PauseBehavior=skip",
        RecordingChange::Pause { skip: false } => "Status=paused&PauseBehavior=silence",
        RecordingChange::Resume => "Status=in-progress",
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
        let client = http_client().map_err(ConfigError::Client)?;
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
        self.base = check_base_url(base_url).map_err(ConfigError::BaseUrl)?;
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
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(BACKEND, "Twilio", e))?;
        let status = response.status();
        match status {
            StatusCode::OK => return Ok(RecordingAck::Done),
            StatusCode::NOT_FOUND => return Ok(RecordingAck::NoRecording),
            _ => {}
        }
        let body = read_error_body(&mut response, BACKEND).await?;
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
