//! `HttpDataActions`: the engine's [`HttpActions`] over reqwest, for `http` flow nodes
//! (issue 7 item 4; seeds 003 and 004).
//!
//! Only named backends from the configuration are reachable: a request's URL must lie under
//! one backend's base URL (same scheme, host and port; the base path as a whole-segment
//! prefix), otherwise it is refused before anything is sent. So a flow cannot make the
//! server call an arbitrary host, and credentials go only where they were configured for:
//!
//! - `token`: sent as `Authorization: Bearer <token>` (a flow may not set `Authorization`
//!   itself for such a backend);
//! - `signing`: the flow's `sign: { token_env }` must name the environment variable the
//!   backend's signing token was configured from; the request then carries
//!   `t=<unix>,v1=<hex HMAC-SHA256(token, t + body)>` in the flow's header
//!   ([`crate::signing`]), with the time from the injected [`Clock`].
//!
//! One reqwest client (connection pool) serves all backends; each backend has its own
//! [`Breaker`]: connection failures, timeouts and 5xx answers count as failures, and while it
//! is open requests are refused at once ([`HttpError::Refused`]). Answers are read up to
//! 64 KiB; a JSON body is parsed, anything else is `None`.
//!
//! Invariant: URLs, headers and bodies are never logged (a body may carry a secret the flow
//! marked); tokens live in [`Secret`]s and appear in no error or `Debug` output.

use std::fmt;
use std::sync::Arc;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use resetline_engine::{
    BackendError, BoxFuture, Clock, HttpActions, HttpError, HttpRequest, HttpResponse, Secret,
};

use crate::breaker::{Breaker, BreakerPolicy};
use crate::rest::{MAX_SUCCESS_BODY, check_base_url, http_client, read_body, transport_error};

/// The backend name in [`BackendError`]s.
const BACKEND: &str = "http";

/// An HTTP data action backend could not be configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpConfigError {
    /// The backend name is empty or not letters, digits, `-` and `_`.
    Name(String),
    /// Two backends have the same name.
    Duplicate(String),
    /// A base URL is unusable (backend name, reason).
    BaseUrl(String, String),
    /// A token (backend name) is empty or has control characters.
    Token(String),
    /// The HTTP client could not be built.
    Client(String),
}

impl fmt::Display for HttpConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpConfigError::Name(n) => write!(
                f,
                "http backend name `{n}` must be letters, digits, `-` or `_`"
            ),
            HttpConfigError::Duplicate(n) => write!(f, "http backend `{n}` is defined twice"),
            HttpConfigError::BaseUrl(n, why) => {
                write!(f, "http backend `{n}`: bad base URL: {why}")
            }
            HttpConfigError::Token(n) => write!(
                f,
                "http backend `{n}`: a token is empty or has control characters"
            ),
            HttpConfigError::Client(why) => write!(f, "cannot build the HTTP client: {why}"),
        }
    }
}

impl std::error::Error for HttpConfigError {}

/// One configured backend.
pub struct HttpBackend {
    name: String,
    base: Url,
    token: Option<Secret>,
    signing: Option<(String, Secret)>,
    breaker: Arc<Breaker>,
}

impl fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBackend")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .field("signing_env", &self.signing.as_ref().map(|(env, _)| env))
            .field("breaker", &self.breaker.state())
            .finish()
    }
}

impl HttpBackend {
    /// Whether `url` lies under this backend's base.
    fn covers(&self, url: &Url) -> bool {
        let base_path = self.base.path().trim_end_matches('/');
        let path = url.path();
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
            && url.username().is_empty()
            && url.password().is_none()
            && (path == base_path
                || base_path.is_empty()
                || path
                    .strip_prefix(base_path)
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

/// The engine's [`HttpActions`] over reqwest, for the configured backends.
pub struct HttpDataActions {
    client: reqwest::Client,
    backends: Vec<HttpBackend>,
    clock: Arc<dyn Clock>,
    policy: BreakerPolicy,
}

impl fmt::Debug for HttpDataActions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDataActions")
            .field("backends", &self.backends)
            .finish()
    }
}

fn secret_ok(s: &Secret) -> bool {
    !s.is_empty() && !s.expose().chars().any(char::is_control)
}

impl HttpDataActions {
    /// No backends yet; every backend added gets a breaker with `policy`, on `clock`.
    pub fn new(clock: Arc<dyn Clock>, policy: BreakerPolicy) -> Result<Self, HttpConfigError> {
        Ok(HttpDataActions {
            client: http_client().map_err(HttpConfigError::Client)?,
            backends: Vec::new(),
            clock,
            policy,
        })
    }

    /// Adds a backend: `name`, its base URL (`https` unless loopback), an optional bearer
    /// token, and an optional signing token with the environment variable it came from (the
    /// name flows use in `sign.token_env`).
    pub fn with_backend(
        mut self,
        name: &str,
        base_url: &str,
        token: Option<Secret>,
        signing: Option<(String, Secret)>,
    ) -> Result<Self, HttpConfigError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(HttpConfigError::Name(name.to_owned()));
        }
        if self.backends.iter().any(|b| b.name == name) {
            return Err(HttpConfigError::Duplicate(name.to_owned()));
        }
        let base = check_base_url(base_url)
            .and_then(|b| Url::parse(&b).map_err(|e| e.to_string()))
            .map_err(|why| HttpConfigError::BaseUrl(name.to_owned(), why))?;
        if !token.as_ref().is_none_or(secret_ok)
            || !signing.as_ref().is_none_or(|(_, s)| secret_ok(s))
        {
            return Err(HttpConfigError::Token(name.to_owned()));
        }
        self.backends.push(HttpBackend {
            name: name.to_owned(),
            base,
            token,
            signing,
            breaker: Arc::new(Breaker::new(BACKEND, self.policy, self.clock.clone())),
        });
        Ok(self)
    }

    /// Each backend's name and breaker (for metrics).
    pub fn breakers(&self) -> Vec<(String, Arc<Breaker>)> {
        self.backends
            .iter()
            .map(|b| (b.name.clone(), b.breaker.clone()))
            .collect()
    }

    fn refuse(message: impl Into<String>) -> HttpError {
        HttpError::Refused(BackendError::new(BACKEND, message))
    }

    /// The request to send, or why it is refused.
    fn build(
        &self,
        backend: &HttpBackend,
        url: Url,
        request: &HttpRequest,
    ) -> Result<reqwest::RequestBuilder, HttpError> {
        let method = match request.method.as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            _ => return Err(Self::refuse("unsupported method")),
        };
        let mut builder = self
            .client
            .request(method, url)
            .timeout(request.timeout)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Self::refuse("a header name is not valid"))?;
            if name == reqwest::header::AUTHORIZATION && backend.token.is_some() {
                return Err(Self::refuse(format!(
                    "backend `{}` sets Authorization itself; the flow may not",
                    backend.name
                )));
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                Self::refuse(format!("header `{name}` has a value that is not valid"))
            })?;
            builder = builder.header(name, value);
        }
        if let Some(token) = &backend.token {
            builder = builder.bearer_auth(token.expose());
        }
        let body = request.body.as_ref().map_or("", |b| b.expose());
        if let Some(sign) = &request.sign {
            let key = match &backend.signing {
                Some((env, key)) if *env == sign.token_env => key,
                _ => {
                    return Err(Self::refuse(format!(
                        "signing token `{}` is not configured for backend `{}`",
                        sign.token_env, backend.name
                    )));
                }
            };
            let header = HeaderName::from_bytes(sign.header.as_bytes())
                .map_err(|_| Self::refuse("the signature header name is not valid"))?;
            let value = crate::signing::sign(
                key.expose().as_bytes(),
                self.clock.now_ms() / 1000,
                body.as_bytes(),
            )
            .and_then(|v| HeaderValue::from_str(&v).ok())
            .ok_or_else(|| Self::refuse("cannot sign the request"))?;
            builder = builder.header(header, value);
        }
        if let Some(b) = &request.body {
            builder = builder
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(b.expose().to_owned());
        }
        Ok(builder)
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // Refusals are configuration mistakes (flow and resetline.yaml disagree): warn.
        let refused = |e: HttpError| {
            tracing::warn!(error = %e.backend(), "http data action refused before sending");
            e
        };
        let url =
            Url::parse(&request.url).map_err(|_| refused(Self::refuse("the URL is not valid")))?;
        let backend = self
            .backends
            .iter()
            .find(|b| b.covers(&url))
            .ok_or_else(|| {
                refused(Self::refuse(
                    "the URL is not under any configured http backend",
                ))
            })?;
        let builder = self.build(backend, url, &request).map_err(refused)?;
        let exchange = async {
            let classify = |e: reqwest::Error| {
                let not_sent = e.is_connect();
                let error = transport_error(BACKEND, &backend.name, e);
                if not_sent {
                    HttpError::NotSent(error)
                } else {
                    HttpError::Failed(error)
                }
            };
            let mut response = builder.send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let body = read_body(&mut response, MAX_SUCCESS_BODY)
                .await
                .map_err(classify)?;
            Ok(HttpResponse {
                status,
                body: serde_json::from_slice(&body).ok(),
            })
        };
        let result = backend
            .breaker
            .run(
                exchange,
                |r| !matches!(r, Ok(r) if r.status < 500),
                HttpError::Refused,
            )
            .await;
        match &result {
            Ok(r) => {
                tracing::debug!(backend = %backend.name, status = r.status, "http data action answered")
            }
            Err(e) => {
                tracing::info!(backend = %backend.name, error = %e.backend(), "http data action failed")
            }
        }
        result
    }
}

impl HttpActions for HttpDataActions {
    fn call(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests;
