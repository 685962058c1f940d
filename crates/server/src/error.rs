//! What a webhook answers when it cannot answer with its step: [`WebhookError`].
//!
//! Two kinds, kept apart because carriers treat them apart:
//! - **refusals** (4xx): the request itself is wrong (too large, not a form, unsigned, a path
//!   the server does not serve). Nothing ran and no state changed. They are the sender's
//!   doing, so they are logged at `info` at most (a refused signature is logged and audited
//!   where it is checked, within the refusal budget).
//! - **call problems**: the request is fine but the call cannot go on (unknown or ended call,
//!   store or lock trouble, the audit sink down, a document that cannot be rendered). The
//!   caller hears spoken TwiML (an apology and a hang-up at worst), never a 500, which a
//!   carrier turns into "an application error has occurred". Internal ones are logged here,
//!   as errors, in one place ([`IntoResponse`]); their metrics and audit records are written
//!   where they arise, as those need the app's state.
//!
//! A status callback that could not be recorded is the one 5xx: 503, so the carrier retries.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use resetline_engine::StoreError;
use resetline_twiml::TooManyPairs;

use crate::render::{FALLBACK, RenderFailed};

/// A TwiML document, answered as `text/xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Twiml(pub(crate) String);

impl IntoResponse for Twiml {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], self.0).into_response()
    }
}

/// Why a webhook is not answered with its step's TwiML.
#[derive(Debug)]
pub(crate) enum WebhookError {
    /// The body is over `MAX_BODY` (413).
    TooLarge,
    /// The body could not be read (400).
    Unreadable,
    /// The body has more than `MAX_PAIRS` form pairs (400, before any signature work).
    BadForm(TooManyPairs),
    /// `X-Twilio-Signature` does not hold (403).
    BadSignature,
    /// The webhook names no valid call: `CallSid`, or `call` in an SMS status URL (400).
    NoCall(&'static str),
    /// A flow id outside the flow language in the path (404).
    NoSuchFlow,
    /// A step path that is not one the engine writes (404).
    NoSuchStep,
    /// The call is not running here (unknown or ended, or its flow is no longer loaded): the
    /// caller hears the `call_not_found` prompt and a hang-up (logged and audited where found).
    NotRunning(Twiml),
    /// The session store, the call's lock or its lease failed or ran out of time: the caller
    /// hears the apology and a hang-up.
    Store { apology: Twiml, error: StoreError },
    /// A new call while the audit sink refuses them (`audit.on_failure: refuse`, or its retry
    /// buffer is full): the apology and a hang-up.
    AuditDown(Twiml),
    /// The step's TwiML could not be rendered: the fixed apology ([`FALLBACK`]).
    Render(RenderFailed),
    /// A status callback that could not be recorded (503): the carrier sends it again.
    TryAgain(StoreError),
}

impl From<RenderFailed> for WebhookError {
    fn from(e: RenderFailed) -> Self {
        WebhookError::Render(e)
    }
}

impl From<TooManyPairs> for WebhookError {
    fn from(e: TooManyPairs) -> Self {
        WebhookError::BadForm(e)
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let refused = |status: StatusCode, text: &'static str| (status, text).into_response();
        match self {
            WebhookError::TooLarge => refused(StatusCode::PAYLOAD_TOO_LARGE, "body over 64 KiB\n"),
            WebhookError::Unreadable => {
                refused(StatusCode::BAD_REQUEST, "body could not be read\n")
            }
            WebhookError::BadForm(e) => {
                tracing::info!(error = %e, "webhook body is not a valid form");
                refused(StatusCode::BAD_REQUEST, "bad form body\n")
            }
            WebhookError::BadSignature => refused(StatusCode::FORBIDDEN, "signature refused\n"),
            WebhookError::NoCall(text) => refused(StatusCode::BAD_REQUEST, text),
            WebhookError::NoSuchFlow => refused(StatusCode::NOT_FOUND, "no such flow\n"),
            WebhookError::NoSuchStep => refused(StatusCode::NOT_FOUND, "no such step\n"),
            WebhookError::NotRunning(twiml) => twiml.into_response(),
            WebhookError::Store { apology, error } => {
                tracing::error!(error = %error, "session store failed");
                apology.into_response()
            }
            WebhookError::AuditDown(apology) => {
                tracing::error!(
                    "new call refused: the audit sink is down (audit.on_failure: refuse, or its retry buffer is full)"
                );
                apology.into_response()
            }
            WebhookError::Render(e) => {
                tracing::error!(error = %e, "TwiML could not be rendered; sending the fallback");
                Twiml(FALLBACK.to_string()).into_response()
            }
            WebhookError::TryAgain(error) => {
                tracing::warn!(error = %error, "status callback not recorded; the carrier sends it again");
                refused(StatusCode::SERVICE_UNAVAILABLE, "try again\n")
            }
        }
    }
}
