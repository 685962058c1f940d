//! The configuration of the identity-provider directories (SCIM 2.0, Okta), the HTTP data
//! action backends and the circuit breakers: raw shapes and their validation, reporting
//! every problem into the caller's list (no early return), like the rest of `config`.

use serde::Deserialize;

use resetline_engine::Secret;

use super::secret_env;

/// `directory:` fields used by the SCIM and Okta kinds.
#[derive(Debug, Default)]
pub(super) struct RawIdp {
    pub(super) base_url: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) employee_id_attribute: Option<String>,
    pub(super) pin_hash_attribute: Option<String>,
    pub(super) unlock: Option<bool>,
}

impl RawIdp {
    /// True when any IdP field is written (an error for the embedded kind).
    pub(super) fn any(&self) -> bool {
        self.base_url.is_some()
            || self.token_env.is_some()
            || self.timeout_ms.is_some()
            || self.employee_id_attribute.is_some()
            || self.pin_hash_attribute.is_some()
            || self.unlock.is_some()
    }
}

/// A SCIM or Okta directory.
#[derive(Clone, Debug)]
pub struct IdpConfig {
    /// SCIM base (`https://idp.example.com/scim/v2`) or Okta org URL.
    pub base_url: String,
    /// Bearer (SCIM) or SSWS (Okta) API token.
    pub token: Secret,
    /// Budget of one request.
    pub timeout_ms: u64,
    /// The attribute employee-ID lookups use (default: SCIM `userName`, Okta
    /// `employeeNumber`).
    pub employee_id_attribute: Option<String>,
    /// The attribute holding an Argon2id PIN hash, for `pin.verify`.
    pub pin_hash_attribute: Option<String>,
    /// Okta: locked-out users may reset; the reset unlocks them first.
    pub unlock: bool,
}

/// Default request budget of an IdP directory.
const DEFAULT_TIMEOUT_MS: u64 = 3000;

/// An http(s) base URL; plain http only to a loopback host (a local test server).
pub(super) fn base_url_problem(url: &str) -> Option<&'static str> {
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let name = if host.starts_with('[') {
            host.split(']')
                .next()
                .map(|h| format!("{h}]"))
                .unwrap_or_default()
        } else {
            host.split(':').next().unwrap_or("").to_owned()
        };
        let loopback = name == "localhost"
            || name == "[::1]"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Some("plain http is only allowed to a loopback host; use https");
        }
        r
    } else {
        return Some("is not an http(s) URL");
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Some("has no host");
    }
    if rest.contains('?') || rest.contains('#') {
        return Some("must not have a query or fragment");
    }
    if rest.split('/').next().is_some_and(|h| h.contains('@')) {
        return Some("must not contain credentials");
    }
    None
}

fn attribute_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c))
}

/// Validates the IdP fields of `directory:` for `kind` (`scim` or `okta`).
pub(super) fn idp(
    kind: &str,
    raw: RawIdp,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<IdpConfig> {
    let base_url = match raw.base_url {
        Some(u) => {
            if let Some(why) = base_url_problem(&u) {
                problems.push(format!("`directory.base_url`: `{u}` {why}"));
            }
            Some(u.trim_end_matches('/').to_owned())
        }
        None => {
            problems.push(format!(
                "`directory.base_url`: the {kind} directory needs its base URL"
            ));
            None
        }
    };
    let token = match raw.token_env {
        Some(name) => secret_env(env, &name, "`directory.token_env`", 1, problems),
        None => {
            problems.push(format!(
                "`directory.token_env`: the {kind} directory needs the environment variable holding its API token"
            ));
            None
        }
    };
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(100..=12_000).contains(&timeout_ms) {
        problems.push(format!(
            "`directory.timeout_ms`: {timeout_ms} must be between 100 and 12000"
        ));
    }
    for (field, value) in [
        ("employee_id_attribute", &raw.employee_id_attribute),
        ("pin_hash_attribute", &raw.pin_hash_attribute),
    ] {
        if let Some(v) = value
            && !attribute_ok(v)
        {
            problems.push(format!(
                "`directory.{field}`: `{v}` is not an attribute path (letters, digits, `.`, `:`, `_`, `-`)"
            ));
        }
    }
    if raw.unlock.is_some() && kind != "okta" {
        problems.push("`directory.unlock`: only the okta directory can unlock accounts".into());
    }
    Some(IdpConfig {
        base_url: base_url?,
        token: token?,
        timeout_ms,
        employee_id_attribute: raw.employee_id_attribute,
        pin_hash_attribute: raw.pin_hash_attribute,
        unlock: raw.unlock.unwrap_or(false),
    })
}

/// `breaker:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    #[serde(default = "default_failures")]
    failures: u32,
    #[serde(default = "default_cool_down")]
    cool_down_ms: u64,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            failures: default_failures(),
            cool_down_ms: default_cool_down(),
        }
    }
}

fn default_failures() -> u32 {
    5
}
fn default_cool_down() -> u64 {
    30_000
}

/// The circuit breaker in front of every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// How long it stays open before one probe.
    pub cool_down_ms: u64,
}

pub(super) fn breaker(raw: RawBreaker, problems: &mut Vec<String>) -> BreakerConfig {
    if raw.failures == 0 {
        problems.push("`breaker.failures` must be at least 1".into());
    }
    if !(1000..=600_000).contains(&raw.cool_down_ms) {
        problems.push(format!(
            "`breaker.cool_down_ms`: {} must be between 1000 and 600000",
            raw.cool_down_ms
        ));
    }
    BreakerConfig {
        failures: raw.failures.max(1),
        cool_down_ms: raw.cool_down_ms,
    }
}

/// `http:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default)]
    backends: Vec<RawHttpBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpBackend {
    name: String,
    base_url: String,
    token_env: Option<String>,
    signing_key_env: Option<String>,
}

/// A backend `http` nodes may call.
#[derive(Clone, Debug)]
pub struct HttpBackendConfig {
    /// Name (for logs and metrics).
    pub name: String,
    /// Requests must lie under this URL.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<Secret>,
    /// The signing token and the variable it came from (flows name it in `sign.token_env`).
    pub signing: Option<(String, Secret)>,
}

pub(super) fn http(
    raw: RawHttp,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Vec<HttpBackendConfig> {
    let mut out: Vec<HttpBackendConfig> = Vec::new();
    for (i, b) in raw.backends.into_iter().enumerate() {
        let at = format!("`http.backends[{i}]`");
        if b.name.is_empty()
            || !b
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(format!(
                "{at}.name: `{}` must be letters, digits, `-` or `_`",
                b.name
            ));
        }
        if out.iter().any(|o| o.name == b.name) {
            problems.push(format!("{at}.name: `{}` is used twice", b.name));
        }
        if let Some(why) = base_url_problem(&b.base_url) {
            problems.push(format!("{at}.base_url: `{}` {why}", b.base_url));
        }
        let token = b
            .token_env
            .as_deref()
            .map(|n| secret_env(env, n, &format!("{at}.token_env"), 1, problems));
        let signing = b.signing_key_env.as_deref().map(|n| {
            secret_env(env, n, &format!("{at}.signing_key_env"), 16, problems)
                .map(|s| (n.to_owned(), s))
        });
        out.push(HttpBackendConfig {
            name: b.name,
            base_url: b.base_url.trim_end_matches('/').to_owned(),
            token: token.flatten(),
            signing: signing.flatten(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{BASE, env, write};
    use crate::{DirectoryConfig, load};

    #[test]
    fn base_urls() {
        for ok in [
            "https://idp.example.com/scim/v2",
            "http://127.0.0.1:8080/scim",
            "http://localhost",
            "http://[::1]:9/x",
        ] {
            assert_eq!(base_url_problem(ok), None, "{ok}");
        }
        for bad in [
            "http://idp.example.com",
            "ftp://x",
            "https://",
            "https://u:p@x.example",
            "https://x.example/?a",
            "http://127.0.0.1.evil.example",
        ] {
            assert!(base_url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn scim_okta_breaker_and_http_backends_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "{BASE}directory: {{ kind: okta, base_url: https://acme.okta.com/, token_env: IDP_TOKEN, timeout_ms: 2000, employee_id_attribute: employeeNumber, pin_hash_attribute: resetlinePinHash, unlock: true }}\nbreaker: {{ failures: 3, cool_down_ms: 10000 }}\nhttp: {{ backends: [ {{ name: hr, base_url: https://hr.example.com/api, token_env: HR_TOKEN, signing_key_env: HR_SIGNING }} ] }}\n"
        );
        let c = load(&write(dir.path(), &text), &env).expect("config");
        let DirectoryConfig::Okta(okta) = &c.directory else {
            panic!("{:?}", c.directory)
        };
        assert_eq!(okta.base_url, "https://acme.okta.com");
        assert_eq!(okta.token.expose(), "tok");
        assert_eq!(okta.timeout_ms, 2000);
        assert!(okta.unlock);
        assert_eq!(
            c.breaker,
            BreakerConfig {
                failures: 3,
                cool_down_ms: 10_000
            }
        );
        assert_eq!(c.http_backends.len(), 1);
        assert_eq!(c.http_backends[0].name, "hr");
        assert_eq!(
            c.http_backends[0].signing.as_ref().map(|(n, _)| n.as_str()),
            Some("HR_SIGNING")
        );
        let text = format!(
            "{BASE}directory: {{ kind: scim, base_url: \"http://127.0.0.1:9/scim/v2\", token_env: IDP_TOKEN }}\n"
        );
        let c = load(&write(dir.path(), &text), &env).expect("config");
        assert!(
            matches!(&c.directory, DirectoryConfig::Scim(s) if s.timeout_ms == 3000 && !s.unlock)
        );
        assert_eq!(c.breaker.failures, 5);
    }

    #[test]
    fn every_connector_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "{BASE}directory: {{ kind: scim, path: users.yaml, base_url: \"http://idp.example.com\", timeout_ms: 50, employee_id_attribute: \"a b\", unlock: true }}\nbreaker: {{ failures: 0, cool_down_ms: 5 }}\nhttp: {{ backends: [ {{ name: \"h r\", base_url: ftp://x, token_env: NOPE, signing_key_env: HR_TOKEN }}, {{ name: \"h r\", base_url: https://x.example }} ] }}\n"
        );
        let text = load(&write(dir.path(), &text), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`directory.path`: the scim directory has no users file",
            "`directory.base_url`: `http://idp.example.com` plain http",
            "`directory.token_env`: the scim directory needs",
            "`directory.timeout_ms`: 50",
            "`directory.employee_id_attribute`: `a b`",
            "`directory.unlock`: only the okta",
            "`breaker.failures`",
            "`breaker.cool_down_ms`",
            "`http.backends[0]`.name",
            "`http.backends[0]`.base_url: `ftp://x` is not an http(s) URL",
            "`http.backends[0]`.token_env: environment variable `NOPE` is not set",
            "`http.backends[0]`.signing_key_env: environment variable `HR_TOKEN` must hold at least 16",
            "`http.backends[1]`.name: `h r` is used twice",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert!(!text.contains("tok`"), "no secret echoed");
        let text = format!(
            "{BASE}directory: {{ kind: embedded, path: users.yaml, base_url: https://x.example }}\n"
        );
        std::fs::write(dir.path().join("users.yaml"), "users: []\n").ok();
        let text = load(&write(dir.path(), &text), &env)
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("belong to the ldap, scim and okta kinds"),
            "{text}"
        );
    }
}
