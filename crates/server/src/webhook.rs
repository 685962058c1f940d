//! What every webhook passes before its call is touched, in order:
//!
//! 1. [`observe`] (a route layer): the webhook's deadline starts (`deadline`), its span opens,
//!    and when it is answered its latency and status are counted and logged.
//! 2. the path: [`FlowId`] or [`StepPath`] (404 for a flow id outside the flow language or a
//!    step URL the engine does not write), before the body is read;
//! 3. [`Arrived`]: the body, at most [`MAX_BODY`] bytes (413 before any parsing);
//! 4. [`WebhookCheck::check`]: the form, at most [`MAX_PAIRS`] pairs (400 before any signature
//!    work), and `X-Twilio-Signature` over the configured public URL + path + query (403).
//!
//! Only then does a handler take the call's lock. The router itself answers 404 for a path it
//! does not serve and 405 for a method other than POST, before any of this.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use resetline_engine::{Secret, StepEvent, StepUrl};
use resetline_twiml::TooManyPairs;
use resetline_twiml::params::Pair;
use resetline_twiml::signature::{SignatureError, SigningKey};
use tracing::Instrument;

use crate::error::WebhookError;
use crate::{AppState, MAX_BODY, MAX_PAIRS, deadline, scrub};

/// Runs a webhook under its deadline, counted from here (before its body is read), inside its
/// tracing span (`route`, and `flow`, `call`, `node` as the handler learns them), and counts
/// and logs its answer.
pub(crate) async fn observe(
    State((state, route)): State<(AppState, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "webhook",
        route,
        flow = tracing::field::Empty,
        call = tracing::field::Empty,
        node = tracing::field::Empty
    );
    let arrived = tokio::time::Instant::now();
    let response = deadline::scope(arrived, next.run(req))
        .instrument(span.clone())
        .await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    state.inner.metrics.webhook(route, status, latency);
    let latency_ms = latency.as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(status, latency_ms, "webhook answered"));
    response
}

/// Flow ids are `[a-z0-9_-]{1,64}` (the checker enforces it); anything else in the URL is
/// refused before it reaches a log line or span (no forged log lines from unsigned requests).
fn plausible_flow_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The `{flow}` of `/voice/{flow}` and `/voice/{flow}/status`, recorded in the span; 404
/// ([`WebhookError::NoSuchFlow`]) when it is not a flow id.
pub(crate) struct FlowId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for FlowId {
    type Rejection = WebhookError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WebhookError> {
        let Ok(Path(flow)) = Path::<String>::from_request_parts(parts, state).await else {
            return Err(WebhookError::NoSuchFlow);
        };
        if !plausible_flow_id(&flow) {
            return Err(WebhookError::NoSuchFlow);
        }
        tracing::Span::current().record("flow", flow.as_str());
        Ok(FlowId(flow))
    }
}

/// The step a webhook is for, parsed from its path as the engine wrote it
/// ([`StepUrl::parse`]: nothing percent-decoded), the flow recorded in the span; 404 when the
/// path is not a step URL or its flow id is not one.
pub(crate) struct StepPath {
    pub(crate) flow: String,
    pub(crate) token: u64,
    pub(crate) event: StepEvent,
}

impl<S: Send + Sync> FromRequestParts<S> for StepPath {
    type Rejection = WebhookError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, WebhookError> {
        let url = StepUrl::parse(parts.uri.path()).ok_or(WebhookError::NoSuchStep)?;
        if !plausible_flow_id(url.flow) {
            return Err(WebhookError::NoSuchFlow);
        }
        tracing::Span::current().record("flow", url.flow);
        Ok(StepPath {
            flow: url.flow.to_string(),
            token: url.token,
            event: url.event,
        })
    }
}

/// `X-Twilio-Signature`, lower case as `HeaderMap` keeps names.
static SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-twilio-signature");

/// A webhook as it arrived: the path and query (what the signature covers with the public
/// URL), the signature header and the body. The body is read here, at most [`MAX_BODY`]
/// bytes (413 before any parsing: at once when `Content-Length` says more, or as soon as more
/// arrives); the URI and the one header are moved out of the request, not copied, and a body
/// that arrives in one piece (the usual case) is kept as it came, without a copy. Dropped,
/// it zeroes its body where Resetline holds the only reference (`scrub`).
pub(crate) struct Arrived {
    pub(crate) uri: Uri,
    signature: Option<HeaderValue>,
    body: Bytes,
}

impl Drop for Arrived {
    fn drop(&mut self) {
        scrub::body(&mut self.body);
    }
}

impl<S: Send + Sync> FromRequest<S> for Arrived {
    type Rejection = WebhookError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, WebhookError> {
        let (mut parts, body) = req.into_parts();
        let uri = std::mem::take(&mut parts.uri);
        let signature = parts.headers.remove(&SIGNATURE_HEADER);
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(WebhookError::TooLarge);
        }
        Ok(Arrived {
            uri,
            signature,
            body: read_body(body, declared).await?,
        })
    }
}

/// The whole body, refused (413) as soon as it exceeds [`MAX_BODY`]. A body in several pieces
/// is joined into one buffer sized once (the announced length, or the cap), so no copy of it
/// is left behind by growing (`scrub` zeroes the buffer).
async fn read_body(mut body: Body, declared: Option<u64>) -> Result<Bytes, WebhookError> {
    use http_body_util::BodyExt;
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let room = declared.map_or(MAX_BODY, |n| {
        usize::try_from(n).unwrap_or(MAX_BODY).min(MAX_BODY)
    });
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| WebhookError::Unreadable)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: nothing a webhook carries
        };
        let had = first.as_ref().map_or(0, Bytes::len).max(joined.len());
        if had + data.len() > MAX_BODY {
            return Err(WebhookError::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            Some(earlier) => {
                joined.reserve_exact(room.max(earlier.len() + data.len()));
                joined.extend_from_slice(&earlier);
                joined.extend_from_slice(&data);
            }
            None => joined.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// The check every webhook passes before its call is touched: the form body parsed and
/// `X-Twilio-Signature` checked over the configured public URL + the request's path and query.
/// `app` runs it on every webhook (and audits refusals); [`preflight`] runs it alone.
#[derive(Debug)]
pub struct WebhookCheck {
    public_url: String,
    signing: SigningKey,
}

impl WebhookCheck {
    /// Checks against `public_url` (a trailing `/` is ignored) with the carrier's auth token.
    pub fn new(public_url: &str, auth_token: &Secret) -> Self {
        WebhookCheck {
            public_url: public_url.trim_end_matches('/').to_string(),
            signing: SigningKey::new(auth_token.expose().as_bytes()),
        }
    }

    /// The public URL, without a trailing `/`.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The webhook's parameters (borrowed from its body where they need no decoding) and
    /// whether its signature holds; an error when the body has more than [`MAX_PAIRS`] pairs
    /// (then no signature work is done).
    pub(crate) fn check<'a>(
        &self,
        hook: &'a Arrived,
    ) -> Result<(Webhook<'a>, Result<(), SignatureError>), TooManyPairs> {
        let params = Webhook {
            params: resetline_twiml::params::parse(&hook.body, MAX_PAIRS)?,
        };
        let path = hook
            .uri
            .path_and_query()
            .map_or(hook.uri.path(), |p| p.as_str());
        let mut url = String::with_capacity(self.public_url.len() + path.len());
        url.push_str(&self.public_url);
        url.push_str(path);
        let header = hook.signature.as_ref().and_then(|v| v.to_str().ok());
        let signature = self.signing.validate(&url, &params.params, header);
        Ok((params, signature))
    }
}

/// What `app` does to a webhook before its call's work, alone: the body read (413 over
/// [`MAX_BODY`]), the form parsed (400) and the signature checked (403; `app` also audits a
/// refusal, this does not). `None` when the webhook passes. For measuring what that costs
/// (`examples/bench_target.rs`), with the very code `app` runs.
pub async fn preflight(check: &WebhookCheck, req: Request) -> Option<Response> {
    let refused = match Arrived::from_request(req, &()).await {
        Err(refused) => refused,
        Ok(arrived) => match check.check(&arrived) {
            Ok((_, Ok(()))) => return None,
            Ok((_, Err(_))) => WebhookError::BadSignature,
            Err(e) => WebhookError::BadForm(e),
        },
    };
    Some(refused.into_response())
}

/// A parsed webhook's parameters; they borrow from the body where they need no decoding.
/// Dropped, it zeroes the decoded ones (`scrub`).
pub(crate) struct Webhook<'a> {
    params: Vec<Pair<'a>>,
}

impl Drop for Webhook<'_> {
    fn drop(&mut self) {
        scrub::params(&mut self.params);
    }
}

impl Webhook<'_> {
    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_ids_outside_the_language_are_refused_before_logging() {
        assert!(plausible_flow_id("password-reset"));
        assert!(!plausible_flow_id("x\nfake log line"));
        assert!(!plausible_flow_id(""));
        assert!(!plausible_flow_id(&"a".repeat(65)));
    }
}
