//! `SmtpMailer`: sends one-time codes and after-reset notices by email over SMTP (issue 4
//! items 3 and 9), through lettre's connection API with rustls.
//!
//! One connection per message: greeting and `EHLO`, then `STARTTLS` (mode `starttls`; a server
//! that does not offer it is an error, never a silent downgrade) or TLS from the first byte
//! (mode `tls`), `AUTH` when credentials are set, `MAIL FROM`, `RCPT TO`, `DATA`, `QUIT`. Mode
//! `none` (plaintext) is only accepted for a loopback host, e.g. a local relay. The message
//! is `text/plain; charset=utf-8` with the engine's subject and a `Message-ID` on the sender's
//! domain, which becomes the [`SentMessage`] id.
//!
//! Errors: a permanent (5xx) reply to `RCPT TO` is [`SendError::Undeliverable`] with the SMTP
//! reply code (the server refuses that address); everything else (connection, TLS, auth,
//! transient 4xx replies, a refused `MAIL FROM` or `DATA`) is [`SendError::Backend`], and
//! running past the time budget is [`BackendError::timeout`].
//!
//! Invariant: the body leaves its [`Secret`] in exactly one place, the lettre message built
//! for the wire (the same borrowed value scrubs server text); the password only into lettre's
//! `Credentials` for `AUTH`. lettre's `tracing` feature, which logs every line written to the
//! server, stays off. No error, log or `Debug` output contains the body, the password or a
//! full recipient address (server text is masked like the engine masks destinations).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lettre::Address;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use resetline_engine::{
    BackendError, BoxFuture, Messenger, OutgoingMessage, Secret, SendError, SentMessage,
};
use resetline_flow::model::Channel;

use crate::rest::{clean, is_loopback_host, redact};

/// The backend name in [`BackendError`]s.
const BACKEND: &str = "email";

/// How the connection to the mail server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plaintext: only accepted for a loopback host (`none`).
    None,
    /// Plaintext greeting, then `STARTTLS` before anything else; required, never skipped
    /// (`starttls`, usually port 587).
    StartTls,
    /// TLS from the first byte, "implicit TLS" (`tls`, usually port 465).
    Tls,
}

impl SmtpTls {
    /// The usual port for the mode: 25, 587 or 465.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

impl FromStr for SmtpTls {
    type Err = SmtpConfigError;

    /// Parses `none`, `starttls` or `tls` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Tls),
            _ => Err(SmtpConfigError::TlsMode(clean(s))),
        }
    }
}

/// The mailer could not be configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmtpConfigError {
    /// The host is empty or not a plain host name / IP address.
    Host,
    /// The port is 0.
    Port,
    /// An unknown TLS mode (the text given).
    TlsMode(String),
    /// TLS mode `none` was asked for a host that is not loopback.
    PlaintextNotLoopback,
    /// The from address is unusable (lettre's reason).
    From(String),
    /// The user name or password is empty.
    Credentials,
    /// The EHLO name is empty or not a plain domain name.
    HelloName,
    /// The TLS client could not be set up (lettre's reason).
    Tls(String),
}

impl fmt::Display for SmtpConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmtpConfigError::Host => f.write_str("the SMTP host must be a host name or IP address"),
            SmtpConfigError::Port => f.write_str("the SMTP port must be 1-65535"),
            SmtpConfigError::TlsMode(mode) => write!(
                f,
                "unknown SMTP TLS mode {mode:?}: use none, starttls or tls"
            ),
            SmtpConfigError::PlaintextNotLoopback => f.write_str(
                "SMTP TLS mode none is only allowed to a loopback host; use starttls or tls",
            ),
            SmtpConfigError::From(why) => write!(f, "bad SMTP from address: {why}"),
            SmtpConfigError::Credentials => {
                f.write_str("the SMTP user name and password must not be empty")
            }
            SmtpConfigError::HelloName => {
                f.write_str("the SMTP EHLO name must be a plain domain name")
            }
            SmtpConfigError::Tls(why) => write!(f, "cannot set up TLS for SMTP: {why}"),
        }
    }
}

impl std::error::Error for SmtpConfigError {}

/// An SMTP relay as a [`Messenger`] for email.
pub struct SmtpMailer {
    host: String,
    port: u16,
    tls: SmtpTls,
    /// Built once, for `starttls` and `tls`.
    tls_parameters: Option<TlsParameters>,
    from: Mailbox,
    credentials: Option<(String, Secret)>,
    hello: ClientId,
    timeout: Duration,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("credentials", &self.credentials)
            .field("hello", &self.hello.to_string())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// True for a host name made of letters, digits, `-` and `.`, or an IP literal.
fn is_host(host: &str) -> bool {
    let name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok();
    name || ip
}

impl SmtpMailer {
    /// The default budget for one message, connection to `QUIT`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A mailer for `host:port` with `tls`, sending as `from` (`noreply@example.com` or
    /// `Service Desk <noreply@example.com>`), without authentication, with
    /// [`Self::DEFAULT_TIMEOUT`].
    pub fn new(host: &str, port: u16, tls: SmtpTls, from: &str) -> Result<Self, SmtpConfigError> {
        if !is_host(host) {
            return Err(SmtpConfigError::Host);
        }
        if port == 0 {
            return Err(SmtpConfigError::Port);
        }
        if tls == SmtpTls::None && !is_loopback_host(host) {
            return Err(SmtpConfigError::PlaintextNotLoopback);
        }
        let from: Mailbox = from
            .parse()
            .map_err(|e: lettre::address::AddressError| SmtpConfigError::From(e.to_string()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls_parameters = match tls {
            SmtpTls::None => None,
            SmtpTls::StartTls | SmtpTls::Tls => Some(
                TlsParameters::new(host.clone())
                    .map_err(|e| SmtpConfigError::Tls(clean(&e.to_string())))?,
            ),
        };
        Ok(SmtpMailer {
            host,
            port,
            tls,
            tls_parameters,
            from,
            credentials: None,
            hello: ClientId::default(),
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// Authenticates with `AUTH PLAIN` or `AUTH LOGIN` (whichever the server offers).
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: Secret,
    ) -> Result<Self, SmtpConfigError> {
        let user = user.into();
        if user.is_empty() || password.is_empty() {
            return Err(SmtpConfigError::Credentials);
        }
        self.credentials = Some((user, password));
        Ok(self)
    }

    /// The name given in `EHLO` (default: the address literal `[127.0.0.1]`).
    pub fn with_hello_name(mut self, name: &str) -> Result<Self, SmtpConfigError> {
        if name.is_empty() || name.parse::<std::net::IpAddr>().is_ok() || !is_host(name) {
            return Err(SmtpConfigError::HelloName);
        }
        self.hello = ClientId::Domain(name.to_owned());
        Ok(self)
    }

    /// Sets the budget for one message, from connecting to `QUIT`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A fresh `Message-ID` (`<32 hex digits@sender domain>`).
    fn message_id(&self) -> Result<String, SendError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|_| {
            SendError::Backend(BackendError::new(BACKEND, "no randomness for a Message-ID"))
        })?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("<{hex}@{}>", self.from.email.domain()))
    }

    async fn deliver(&self, message: OutgoingMessage) -> Result<SentMessage, SendError> {
        if message.channel != Channel::Email {
            return Err(SendError::Backend(BackendError::new(
                BACKEND,
                "the email sender was given an SMS message; route SMS to the SMS sender",
            )));
        }
        let Ok(to) = message.to.trim().parse::<Address>() else {
            return Err(SendError::Undeliverable {
                code: None,
                reason: "not a valid email address".into(),
            });
        };
        let message_id = self.message_id()?;
        // The one place the body leaves its Secret (also used below to scrub server text).
        let body = message.body.expose();
        let email = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.clone()))
            .subject(message.subject.as_str())
            .message_id(Some(message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| {
                SendError::Backend(BackendError::new(
                    BACKEND,
                    format!("cannot build the message: {}", clean(&e.to_string())),
                ))
            })?
            .formatted();
        let tidy = |e: SmtpError| scrub(&e, &message.to, body);
        let session = self.session(&to, &email, &tidy);
        match tokio::time::timeout(self.timeout, session).await {
            Ok(Ok(())) => Ok(SentMessage {
                id: message_id
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SendError::Backend(BackendError::timeout(BACKEND))),
        }
    }

    /// One SMTP conversation: connect, transact, then `QUIT` (or close after a failure).
    async fn session(
        &self,
        to: &Address,
        email: &[u8],
        scrub: &(dyn Fn(SmtpError) -> String + Sync),
    ) -> Result<(), SendError> {
        let wrapper = match self.tls {
            SmtpTls::Tls => self.tls_parameters.clone(),
            SmtpTls::None | SmtpTls::StartTls => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            wrapper,
            None,
        )
        .await
        .map_err(|e| failed("connecting", e, scrub))?;
        let result = self.transact(&mut conn, to, email, scrub).await;
        // Be polite, but do not let a stalled server turn a result into a timeout.
        let grace = self.timeout.min(Duration::from_secs(1));
        if result.is_ok() {
            let _ = tokio::time::timeout(grace, conn.quit()).await;
        } else {
            let _ = tokio::time::timeout(grace, conn.abort()).await;
        }
        result
    }

    async fn transact(
        &self,
        conn: &mut AsyncSmtpConnection,
        to: &Address,
        email: &[u8],
        scrub: &(dyn Fn(SmtpError) -> String + Sync),
    ) -> Result<(), SendError> {
        if self.tls == SmtpTls::StartTls {
            let Some(parameters) = self.tls_parameters.clone() else {
                return Err(SendError::Backend(BackendError::new(
                    BACKEND,
                    "STARTTLS without TLS parameters",
                )));
            };
            conn.starttls(parameters, &self.hello)
                .await
                .map_err(|e| failed("STARTTLS", e, scrub))?;
        }
        if let Some((user, password)) = &self.credentials {
            let credentials = Credentials::new(user.clone(), password.expose().to_owned());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
                .map_err(|e| failed("authenticating", e, scrub))?;
        }
        let mut parameters = Vec::new();
        if !to.to_string().is_ascii() || !self.from.email.to_string().is_ascii() {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(SendError::Undeliverable {
                    code: None,
                    reason: "the address is not ASCII and the mail server lacks SMTPUTF8".into(),
                });
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !email.is_ascii() {
            // lettre encodes bodies as 7bit, quoted-printable or base64; only a non-ASCII
            // header could get here.
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(SendError::Backend(BackendError::new(
                    BACKEND,
                    "the message is not ASCII and the mail server lacks 8BITMIME",
                )));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        conn.command(Mail::new(Some(self.from.email.clone()), parameters))
            .await
            .map_err(|e| failed("MAIL FROM", e, scrub))?;
        match conn.command(Rcpt::new(to.clone(), Vec::new())).await {
            Ok(_) => {}
            Err(e) if e.is_permanent() => {
                return Err(SendError::Undeliverable {
                    code: e.status().map(|c| u32::from(u16::from(c))),
                    reason: format!("the mail server refused the recipient: {}", scrub(e)),
                });
            }
            Err(e) => return Err(failed("RCPT TO", e, scrub)),
        }
        conn.command(Data)
            .await
            .map_err(|e| failed("DATA", e, scrub))?;
        conn.message(email)
            .await
            .map_err(|e| failed("sending the message", e, scrub))?;
        Ok(())
    }
}

/// An SMTP failure at `step` as a [`SendError::Backend`]; a timeout as
/// [`BackendError::timeout`].
fn failed(step: &str, e: SmtpError, scrub: &(dyn Fn(SmtpError) -> String + Sync)) -> SendError {
    if e.is_timeout() {
        return SendError::Backend(BackendError::timeout(BACKEND));
    }
    SendError::Backend(BackendError::new(
        BACKEND,
        format!("SMTP {step} failed: {}", scrub(e)),
    ))
}

/// lettre's error text (with its causes) made loggable: no body, no full address.
fn scrub(e: &SmtpError, to: &str, body: &str) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        // lettre's Display already ends with its direct cause.
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    if !body.trim().is_empty() {
        text = text.replace(body, "[body]");
    }
    let to = to.trim();
    if !to.is_empty() {
        text = text.replace(to, &resetline_flow::template::mask(to));
    }
    redact(&clean(&text))
}

impl Messenger for SmtpMailer {
    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<SentMessage, SendError>> {
        Box::pin(self.deliver(message))
    }
}

#[cfg(test)]
mod tests;
