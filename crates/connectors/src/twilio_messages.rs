//! `TwilioMessages`: sends one-time codes and after-reset notices by SMS through Twilio's
//! Messages API (issue 4 item 3, shared/docs/protocol.md §6).
//!
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, then
//! `From` or `MessagingServiceSid` (exactly one, fixed at configuration), `Body`, and
//! `StatusCallback` (the configured public URL + the engine-relative
//! [`OutgoingMessage::status_callback`]) so delivery reports reach `POST /sms/status`. HTTP
//! Basic auth `AccountSid:AuthToken`. 200/201 with a `sid` is a [`SentMessage`]; Twilio codes
//! in [`TwilioMessages::UNDELIVERABLE_CODES`] are [`SendError::Undeliverable`] (the flow's
//! fallback path); any other answer, a transport failure or a timeout is
//! [`SendError::Backend`].
//!
//! An email-channel message is refused as [`SendError::Backend`], not `Undeliverable`: it is a
//! wiring mistake (route email to [`crate::SmtpMailer`], e.g. with [`crate::ByChannel`]), not a
//! property of the destination, and must not send the flow down a "can't text that number"
//! path.
//!
//! Invariant: the message body leaves its [`Secret`] in exactly one place, the form field
//! `Body` (the same borrowed value scrubs provider text); the auth token only for the
//! Authorization header. No error, log or `Debug` output contains either, nor a full
//! destination number: Undeliverable reasons are fixed texts, Backend messages carry Twilio's
//! text with numbers and addresses masked and the body cut out.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use resetline_engine::{
    BackendError, BoxFuture, Messenger, OutgoingMessage, Secret, SendError, SentMessage,
};
use resetline_flow::model::Channel;

use crate::rest::{
    MAX_SUCCESS_BODY, check_base_url, http_client, is_sid, read_body, read_error_body, redact,
    transport_error, twilio_error_parts,
};
use crate::twilio_recording::ConfigError;

/// The backend name in [`BackendError`]s.
const BACKEND: &str = "sms";

/// Who the SMS comes from: exactly one of Twilio's `From` and `MessagingServiceSid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsSender {
    /// `From`: a Twilio number (E.164), short code or alphanumeric sender id.
    From(String),
    /// `MessagingServiceSid` (`MG...`): Twilio picks a number from the service's pool.
    MessagingService(String),
}

impl SmsSender {
    /// The sender from two optional settings, refusing both or neither.
    pub fn from_settings(
        from: Option<&str>,
        messaging_service_sid: Option<&str>,
    ) -> Result<SmsSender, ConfigError> {
        let sender = match (from, messaging_service_sid) {
            (Some(from), None) => SmsSender::From(from.to_owned()),
            (None, Some(sid)) => SmsSender::MessagingService(sid.to_owned()),
            (Some(_), Some(_)) => {
                return Err(ConfigError::Sender(
                    "set either From or MessagingServiceSid, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::Sender(
                    "set From (a Twilio number) or MessagingServiceSid (MG...)",
                ));
            }
        };
        sender.check()?;
        Ok(sender)
    }

    fn check(&self) -> Result<(), ConfigError> {
        match self {
            SmsSender::From(from) => {
                if from.trim().is_empty() || from.len() > 64 || from.chars().any(char::is_control) {
                    return Err(ConfigError::Sender(
                        "From must be 1-64 characters without control characters",
                    ));
                }
            }
            SmsSender::MessagingService(sid) => {
                if !sid.starts_with("MG") || !is_sid(sid) {
                    return Err(ConfigError::Sender(
                        "MessagingServiceSid must be MG followed by letters and digits",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The form field and value.
    fn field(&self) -> (&'static str, &str) {
        match self {
            SmsSender::From(from) => ("From", from),
            SmsSender::MessagingService(sid) => ("MessagingServiceSid", sid),
        }
    }
}

/// Twilio's Messages API as a [`Messenger`] for SMS.
pub struct TwilioMessages {
    client: reqwest::Client,
    /// API base URL without a trailing `/`.
    base: String,
    account_sid: String,
    auth_token: Secret,
    sender: SmsSender,
    /// The engine's public base URL (no trailing `/`) delivery reports are posted to.
    public_url: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for TwilioMessages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioMessages")
            .field("base", &self.base)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("sender", &self.sender)
            .field("public_url", &self.public_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A fixed, loggable reason for an undeliverable code (Twilio's own text may echo the number).
fn undeliverable_reason(code: u32) -> &'static str {
    match code {
        21211 => "the 'To' number is not a valid phone number",
        21408 => "sending SMS to this region is not enabled",
        21610 => "the recipient has unsubscribed (replied STOP)",
        21612 => "the 'To' number cannot be reached from this sender",
        21614 => "the 'To' number is not a mobile number",
        21635 => "the 'To' number is a landline",
        _ => "Twilio refused the destination",
    }
}

impl TwilioMessages {
    /// Twilio's production API.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.twilio.com";

    /// The default budget for one request, connection included: the code is sent while the
    /// carrier waits for the webhook's answer (15 s at most).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Twilio error codes that mean "this destination cannot get our SMS": invalid number
    /// (21211), region not enabled (21408), unsubscribed (21610), unreachable from this
    /// sender (21612), not a mobile (21614), landline (21635).
    pub const UNDELIVERABLE_CODES: [u32; 6] = [21211, 21408, 21610, 21612, 21614, 21635];

    /// A sender for `account_sid` (`AC...`) authenticated by `auth_token`, sending as
    /// `sender`, against [`Self::DEFAULT_BASE_URL`] with [`Self::DEFAULT_TIMEOUT`] and no
    /// delivery reports until [`Self::with_public_url`] is set.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: Secret,
        sender: SmsSender,
    ) -> Result<Self, ConfigError> {
        let account_sid = account_sid.into();
        if !is_sid(&account_sid) {
            return Err(ConfigError::AccountSid);
        }
        if auth_token.is_empty() {
            return Err(ConfigError::EmptyAuthToken);
        }
        sender.check()?;
        Ok(TwilioMessages {
            client: http_client().map_err(ConfigError::Client)?,
            base: Self::DEFAULT_BASE_URL.to_owned(),
            account_sid,
            auth_token,
            sender,
            public_url: None,
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// Uses another API base URL (e.g. a local fake in tests). `https` is required except for
    /// loopback hosts; a path prefix is kept, a trailing `/` is dropped.
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.base = check_base_url(base_url).map_err(ConfigError::BaseUrl)?;
        Ok(self)
    }

    /// The engine's public base URL (as Twilio reaches it, e.g. `https://reset.example.com`):
    /// `StatusCallback` is this + the message's engine-relative callback path. Without it no
    /// `StatusCallback` is sent and the flow waits for the code without delivery reports.
    pub fn with_public_url(mut self, public_url: &str) -> Result<Self, ConfigError> {
        let url = check_base_url(public_url).map_err(ConfigError::PublicUrl)?;
        if url.contains('_') {
            // Twilio rejects underscores in a StatusCallback host (protocol.md §6); a path
            // underscore would be fine, but a public base URL rarely has one.
            return Err(ConfigError::PublicUrl(
                "Twilio rejects underscores in callback URLs".into(),
            ));
        }
        self.public_url = Some(url);
        Ok(self)
    }

    /// Sets the budget for one request (connecting, sending and reading the answer).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base, self.account_sid
        )
    }

    /// The absolute `StatusCallback`, when the message has one and a public URL is set.
    fn status_callback(&self, path: Option<&str>) -> Result<Option<String>, SendError> {
        let (Some(path), Some(public)) = (path, &self.public_url) else {
            return Ok(None);
        };
        if !path.starts_with('/') || path.starts_with("//") || path.chars().any(char::is_control) {
            return Err(SendError::Backend(BackendError::new(
                BACKEND,
                "the delivery-report path is not an absolute path on this server",
            )));
        }
        Ok(Some(format!("{public}{path}")))
    }

    async fn deliver(&self, message: OutgoingMessage) -> Result<SentMessage, SendError> {
        if message.channel != Channel::Sms {
            return Err(SendError::Backend(BackendError::new(
                BACKEND,
                "the SMS sender was given an email message; route email to the SMTP mailer",
            )));
        }
        if message.to.trim().is_empty() {
            return Err(SendError::Undeliverable {
                code: None,
                reason: "no destination number".into(),
            });
        }
        let callback = self.status_callback(message.status_callback.as_deref())?;
        // The one place the body leaves its Secret (also used below to scrub Twilio's text).
        let body = message.body.expose();
        let mut form: Vec<(&str, &str)> = vec![("To", &message.to), self.sender.field()];
        form.push(("Body", body));
        if let Some(callback) = &callback {
            form.push(("StatusCallback", callback));
        }
        let request = self
            .client
            .post(self.url())
            .timeout(self.timeout)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&form);
        let fail = |e| SendError::Backend(transport_error(BACKEND, "Twilio", e));
        let mut response = request.send().await.map_err(fail)?;
        let status = response.status();
        if status == StatusCode::CREATED || status == StatusCode::OK {
            let answer = read_body(&mut response, MAX_SUCCESS_BODY)
                .await
                .map_err(fail)?;
            return sid_of(&answer).map(|id| SentMessage { id }).ok_or_else(|| {
                SendError::Backend(BackendError::new(
                    BACKEND,
                    format!(
                        "Twilio answered HTTP {} without a message sid",
                        status.as_u16()
                    ),
                ))
            });
        }
        let answer = read_error_body(&mut response, BACKEND)
            .await
            .map_err(SendError::Backend)?;
        let (code, text) = twilio_error_parts(&answer).unwrap_or((None, None));
        if let Some(code) = code
            && status.is_client_error()
            && Self::UNDELIVERABLE_CODES.contains(&code)
        {
            return Err(SendError::Undeliverable {
                code: Some(code),
                reason: undeliverable_reason(code).to_owned(),
            });
        }
        let text = text.map(|t| scrub(&t, &message.to, body));
        let detail = match (code, text) {
            (Some(code), Some(text)) => format!(" (code {code}: {text})"),
            (Some(code), None) => format!(" (code {code})"),
            (None, Some(text)) => format!(" ({text})"),
            (None, None) => String::new(),
        };
        Err(SendError::Backend(BackendError::new(
            BACKEND,
            format!("Twilio answered HTTP {}{detail}", status.as_u16()),
        )))
    }
}

/// The `sid` of a created message, when it is a well-formed SID.
fn sid_of(answer: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let sid = json.get("sid")?.as_str()?;
    is_sid(sid).then(|| sid.to_owned())
}

/// Provider text without the body (should Twilio ever echo it) or the full destination.
fn scrub(text: &str, to: &str, body: &str) -> String {
    let mut text = text.to_owned();
    if !body.trim().is_empty() {
        text = text.replace(body, "[body]");
    }
    if !to.trim().is_empty() {
        text = text.replace(to, "***");
    }
    redact(&text)
}

impl Messenger for TwilioMessages {
    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<SentMessage, SendError>> {
        Box::pin(self.deliver(message))
    }
}

#[cfg(test)]
mod tests;
