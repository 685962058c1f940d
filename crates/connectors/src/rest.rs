//! Plumbing shared by the REST connectors (Twilio recording and messages, ServiceNow): the
//! base-URL check, the HTTP client, bounded body reads, transport-error mapping, Twilio's two
//! error-body shapes, and the scrubbing of provider text before it reaches a log.
//!
//! Invariant: every string these helpers return is safe to log: no URL (a URL may carry
//! credentials or identifiers), no control characters, bounded length, and, through
//! [`redact`], no full phone number or email address.

use std::net::IpAddr;

use reqwest::Url;
use resetline_engine::{BackendError, scrub_digits};

/// At most this much of an error body is read.
pub(crate) const MAX_ERROR_BODY: usize = 16 * 1024;

/// At most this much of a success body is read (Twilio and ServiceNow answer a few KiB).
pub(crate) const MAX_SUCCESS_BODY: usize = 64 * 1024;

/// At most this many characters of a provider's message go into an error.
pub(crate) const MAX_MESSAGE_CHARS: usize = 200;

/// A SID or sys_id that is safe as one URL path segment: 1-64 ASCII letters and digits.
pub(crate) fn is_sid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// True for `localhost` and loopback IP literals (with or without IPv6 brackets).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>();
    host.eq_ignore_ascii_case("localhost") || ip.is_ok_and(|ip| ip.is_loopback())
}

/// Checks a base URL: http(s), no credentials, query or fragment; plain http only to a
/// loopback host (a local fake), since credentials travel with every request. Returns the
/// URL without a trailing `/`, or why it is unusable.
pub(crate) fn check_base_url(base: &str) -> Result<String, String> {
    let url = Url::parse(base).map_err(|e| e.to_string())?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    check_endpoint_url(base)
}

/// Checks an endpoint URL like [`check_base_url`], but a query is allowed (no fragment).
/// Returns the URL without a trailing `/`, or why it is unusable.
pub(crate) fn check_endpoint_url(endpoint: &str) -> Result<String, String> {
    let url = Url::parse(endpoint).map_err(|e| e.to_string())?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    let host = url.host_str().ok_or("has no host")?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(host) => {}
        "http" => return Err("plain http is only allowed to a loopback host; use https".into()),
        other => return Err(format!("scheme {other:?} is not http or https")),
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The HTTP client every REST connector uses: rustls, no redirects (a redirect could carry
/// the Authorization header elsewhere), a `resetline/<version>` user agent.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("resetline/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// A reqwest failure as a [`BackendError`] of `backend`: a timeout as
/// [`BackendError::timeout`], anything else as the cause chain without the URL.
pub(crate) fn transport_error(
    backend: &'static str,
    service: &str,
    e: reqwest::Error,
) -> BackendError {
    if e.is_timeout() {
        return BackendError::timeout(backend);
    }
    let e = e.without_url();
    let mut message = format!("request to {service} failed: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    BackendError::new(backend, message)
}

/// Reads at most `limit` bytes of a response body.
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => break,
        }
    }
    body.truncate(limit);
    Ok(body)
}

/// Reads an error body for diagnostics: a timeout while reading is still a timeout, any other
/// read failure just leaves the body empty.
pub(crate) async fn read_error_body(
    response: &mut reqwest::Response,
    backend: &'static str,
) -> Result<Vec<u8>, BackendError> {
    match read_body(response, MAX_ERROR_BODY).await {
        Ok(body) => Ok(body),
        Err(e) if e.is_timeout() => Err(BackendError::timeout(backend)),
        Err(_) => Ok(Vec::new()),
    }
}

/// Provider text made loggable: control characters become spaces, at most
/// [`MAX_MESSAGE_CHARS`] characters are kept.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

/// Masks what looks like an email address (first character + `***@domain`) and drops every
/// run of 4 or more digits ([`scrub_digits`], whose doc says what a run is): providers echo destinations, and may echo the
/// code or PIN they were sent, in their error messages.
pub(crate) fn redact(text: &str) -> String {
    scrub_digits(&mask_emails(text))
}

fn mask_emails(text: &str) -> String {
    let is_local = |c: char| c.is_alphanumeric() || "._%+-'".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    // `pending` is the first character not yet copied to `out`.
    let mut pending = 0;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '@' {
            i += 1;
            continue;
        }
        let local = chars[pending..i]
            .iter()
            .rev()
            .take_while(|c| is_local(**c))
            .count();
        let domain = chars[i + 1..].iter().take_while(|c| is_domain(**c)).count();
        if local == 0 || domain == 0 {
            i += 1;
            continue;
        }
        let start = i - local;
        out.extend(&chars[pending..start]);
        out.push(chars[start]);
        out.push_str("***@");
        out.extend(&chars[i + 1..i + 1 + domain]);
        i += 1 + domain;
        pending = i;
    }
    out.extend(&chars[pending..]);
    out
}

/// Twilio's error code and text from a legacy (`code`, `message`) or RFC 9457 (`code`,
/// `detail`, `title`) body; `None` when the body is not JSON. The text is [`clean`]ed.
pub(crate) fn twilio_error_parts(body: &[u8]) -> Option<(Option<u32>, Option<String>)> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = json.get("code").and_then(|c| {
        c.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
    });
    let text = ["message", "detail", "title"]
        .iter()
        .find_map(|k| json.get(*k).and_then(|v| v.as_str()))
        .map(clean);
    Some((code, text))
}

/// Twilio's error as `code N: text`, `code N` or `text`, when the body carries either.
pub(crate) fn twilio_error(body: &[u8]) -> Option<String> {
    match twilio_error_parts(body)? {
        (Some(code), Some(text)) => Some(format!("code {code}: {text}")),
        (Some(code), None) => Some(format!("code {code}")),
        (None, Some(text)) => Some(text),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_numbers_and_addresses() {
        assert_eq!(
            redact("The 'To' number +15551230199 is not a valid phone number."),
            "The 'To' number +*** is not a valid phone number."
        );
        assert_eq!(
            redact("To 555-123-0199, code 21211, PIN 4821"),
            "To ***, code ***, PIN ***"
        );
        assert_eq!(
            redact("5.1.1 <jane.doe@example.com>: Recipient address rejected"),
            "5.1.1 <j***@example.com>: Recipient address rejected"
        );
        assert_eq!(redact("a0123456789@x.org"), "a***@x.org");
        assert_eq!(redact("HTTP 400 (code 216)"), "HTTP 400 (code 216)");
        assert_eq!(redact("@ lone @x and y@"), "@ lone @x and y@");
        assert_eq!(redact("ünï@dömain.de"), "ü***@dömain.de");
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "[::1]", "::1", "127.8.9.10"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1", "[::2]", "localhost.example.com"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn twilio_codes_as_numbers_or_strings() {
        assert_eq!(
            twilio_error_parts(br#"{"code": "21614", "message": "x"}"#),
            Some((Some(21614), Some("x".into())))
        );
        assert_eq!(
            twilio_error_parts(br#"{"status": 400}"#),
            Some((None, None))
        );
        assert_eq!(twilio_error_parts(b"nope"), None);
    }
}
