//! Plumbing shared by the identity-provider directories ([`crate::scim`], [`crate::okta`]):
//! configuration checks, one bounded request/answer exchange, quoting values into SCIM-style
//! filter expressions, PIN checks against an Argon2id hash held in a directory attribute, and
//! the mapping of a provider's password-policy text to the prompt key that speaks it.
//!
//! Invariant: no secret (token, PIN, password, hash) reaches an error, a log or a `Debug`
//! string; provider text is [`clean`]ed and [`redact`]ed before it does.

use std::fmt;

use resetline_engine::{BackendError, Secret};

use crate::pin::PinHashing;
use crate::rest::{
    MAX_ERROR_BODY, MAX_SUCCESS_BODY, check_base_url, clean, read_body, redact, transport_error,
};

/// The backend name in [`BackendError`]s.
pub(crate) const BACKEND: &str = "directory";

/// An identity-provider directory could not be configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdpConfigError {
    /// The base URL is unusable (the reason says why).
    BaseUrl(String),
    /// The API token is empty or contains a control character.
    Token,
    /// A configured attribute name (the field named) is not an attribute path.
    Attribute(&'static str),
    /// The HTTP client could not be built (TLS set-up).
    Client(String),
}

impl fmt::Display for IdpConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdpConfigError::BaseUrl(why) => write!(f, "bad directory base URL: {why}"),
            IdpConfigError::Token => {
                f.write_str("the directory API token is empty or has control characters")
            }
            IdpConfigError::Attribute(field) => write!(
                f,
                "`{field}` must be an attribute path (letters, digits, `.`, `:`, `_`, `-`)"
            ),
            IdpConfigError::Client(why) => write!(f, "cannot build the HTTP client: {why}"),
        }
    }
}

impl std::error::Error for IdpConfigError {}

/// Checks a base URL and an API token the way every IdP connector needs them.
pub(crate) fn check(base_url: &str, token: &Secret) -> Result<String, IdpConfigError> {
    let base = check_base_url(base_url).map_err(IdpConfigError::BaseUrl)?;
    if token.is_empty() || token.expose().chars().any(char::is_control) {
        return Err(IdpConfigError::Token);
    }
    Ok(base)
}

/// An attribute path such as `userName`, `profile.employeeNumber` or
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`.
pub(crate) fn attribute(field: &'static str, name: &str) -> Result<String, IdpConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(IdpConfigError::Attribute(field))
    }
}

/// `attr eq "value"` with the value quoted as a JSON string (RFC 7644 §3.4.2.2: a
/// comparison value is a JSON string, so `"` and `\` and control characters are escaped; a
/// value can never end the string and add a clause). Okta's `search` uses the same grammar.
pub(crate) fn eq_filter(attr: &str, value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned());
    format!("{attr} eq {quoted}")
}

/// `url` with the query `name=value&...`, each value percent-encoded with everything but
/// RFC 3986 unreserved characters escaped (a space is `%20`, never `+`, which strict SCIM
/// servers read literally).
pub(crate) fn with_query(mut url: reqwest::Url, pairs: &[(&str, &str)]) -> reqwest::Url {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    url.set_query(Some(&query.join("&")));
    url
}

/// One answer: status, a few headers, the body (bounded).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends `request` and reads the answer (success bodies up to 64 KiB, error bodies up to
/// 16 KiB). Transport failures and timeouts are [`BackendError`]s; any status is an answer.
pub(crate) async fn exchange(
    service: &str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, BackendError> {
    let fail = |e| transport_error(BACKEND, service, e);
    let mut response = request.send().await.map_err(fail)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let limit = if response.status().is_success() {
        MAX_SUCCESS_BODY
    } else {
        MAX_ERROR_BODY
    };
    let body = read_body(&mut response, limit).await.map_err(fail)?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Provider text made loggable: cleaned, addresses masked and digit runs of 4 or more dropped
/// (an IdP error may quote the PIN it refused).
pub(crate) fn loggable(text: &str) -> String {
    redact(&clean(text))
}

/// Checks `pin` against a stored Argon2id hash with the shared verifier, under the
/// process-wide bound. No stored hash checks against a dummy so the answer takes as long
/// (`Ok(false)`); a stored value that is not a usable Argon2id hash (below the floor, above
/// the ceiling) is a `BackendError` naming the problem.
pub(crate) async fn verify_pin_hash(
    pin: &Secret,
    stored: Option<String>,
) -> Result<bool, BackendError> {
    PinHashing::shared()
        .check(pin, stored.as_deref())
        .await
        .map_err(|m| BackendError::new(BACKEND, format!("the stored PIN hash: {m}")))
}

/// The prompt key that speaks why a provider refused a new secret of `len` characters,
/// from its policy text: too short or too long (when the text names a bound the secret
/// breaks), too common, reused, or `policy_rejected` when the text says nothing specific.
/// Requirement lists ("Password requirements: at least 8 characters, no parts of your
/// username...") list every rule, not the broken one, so only a length bound the secret
/// actually breaks is taken from them.
pub(crate) fn policy_prompt(text: &str, len: usize) -> &'static str {
    let t = text.to_ascii_lowercase();
    if let Some(min) = number_after(&t, &["at least ", "minimum length of ", "minimum length "])
        && len < min
    {
        return "policy_too_short";
    }
    if let Some(max) = number_after(&t, &["at most ", "maximum length of ", "maximum length "])
        && len > max
    {
        return "policy_too_long";
    }
    if t.contains("too short") {
        return "policy_too_short";
    }
    if t.contains("too long") {
        return "policy_too_long";
    }
    if t.contains("commonly used") || t.contains("too common") || t.contains("dictionary") {
        return "policy_common";
    }
    if t.contains("used too recently")
        || t.contains("previously used")
        || t.contains("password history")
        || t.contains("be your current password")
        || t.contains("same as your current")
        || t.contains("same as the current")
        || (t.contains("cannot be any of your last") && !t.contains("requirements:"))
    {
        return "policy_reused";
    }
    "policy_rejected"
}

/// The number right after the first of `prefixes` found in `text`.
fn number_after(text: &str, prefixes: &[&str]) -> Option<usize> {
    prefixes.iter().find_map(|p| {
        let at = text.find(p)? + p.len();
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idp_error_quoting_a_pin_keeps_no_digit_of_it() {
        let text = loggable("PIN 58204617 rejected for +15555550199 (jane@example.com)\n");
        assert_eq!(text, "PIN *** rejected for +*** (j***@example.com) ");
        for part in ["5820", "4617", "0199"] {
            assert!(!text.contains(part), "{text}");
        }
    }

    #[test]
    fn filter_values_cannot_escape_their_string() {
        assert_eq!(eq_filter("userName", "100001"), r#"userName eq "100001""#);
        assert_eq!(
            eq_filter("userName", r#"x" or userName pr or "a"#),
            r#"userName eq "x\" or userName pr or \"a""#
        );
        assert_eq!(eq_filter("a", "back\\slash\n"), r#"a eq "back\\slash\n""#);
    }

    #[test]
    fn queries_use_percent_twenty() {
        let url = reqwest::Url::parse("https://x.example/Users").unwrap();
        assert_eq!(
            with_query(url, &[("filter", r#"userName eq "a+b/ü""#), ("count", "2")]).as_str(),
            "https://x.example/Users?filter=userName%20eq%20%22a%2Bb%2F%C3%BC%22&count=2"
        );
    }

    #[test]
    fn attribute_paths() {
        for ok in [
            "userName",
            "profile.employeeNumber",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        ] {
            assert!(attribute("x", ok).is_ok(), "{ok}");
        }
        for bad in ["", "user name", "a\"b", "1abc", "a)or(b"] {
            assert_eq!(
                attribute("x", bad),
                Err(IdpConfigError::Attribute("x")),
                "{bad}"
            );
        }
    }

    #[test]
    fn policy_text_to_prompt() {
        let okta = "password: Password requirements were not met. Password requirements: at least 8 characters, a lowercase letter, an uppercase letter, a number, no parts of your username. Your password cannot be any of your last 4 passwords.";
        assert_eq!(policy_prompt(okta, 6), "policy_too_short");
        assert_eq!(policy_prompt(okta, 10), "policy_rejected");
        assert_eq!(
            policy_prompt(
                "password: This password was found in a list of commonly used passwords. Please try another password.",
                10
            ),
            "policy_common"
        );
        assert_eq!(
            policy_prompt("password: Password has been used too recently", 10),
            "policy_reused"
        );
        assert_eq!(
            policy_prompt("Password must be at most 12 characters", 14),
            "policy_too_long"
        );
        assert_eq!(
            policy_prompt("The password is too short.", 9),
            "policy_too_short"
        );
        assert_eq!(policy_prompt("nope", 9), "policy_rejected");
        assert_eq!(
            policy_prompt(
                "The password does not meet the complexity requirements of the current password policy.",
                9
            ),
            "policy_rejected"
        );
        assert_eq!(
            policy_prompt("Password cannot be your current password", 9),
            "policy_reused"
        );
    }
}
