//! `carrier:`: the carrier account (Twilio) whose auth token signs webhooks and authenticates
//! REST calls. Problems are added to the caller's list, like every other section's.

use serde::Deserialize;

use resetline_engine::Secret;

use crate::secret_env;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCarrier {
    #[serde(default = "default_kind")]
    kind: String,
    account_sid: String,
    auth_token_env: String,
    #[serde(default = "default_api")]
    api_base: String,
    #[serde(default = "default_api_timeout")]
    api_timeout_ms: u64,
}

fn default_kind() -> String {
    "twilio".into()
}
fn default_api() -> String {
    "https://api.twilio.com".into()
}
fn default_api_timeout() -> u64 {
    3000
}

/// The carrier account (Twilio).
#[derive(Clone, Debug)]
pub struct CarrierConfig {
    /// `AC...`.
    pub account_sid: String,
    /// Auth token: signs webhooks and authenticates REST calls.
    pub auth_token: Secret,
    /// REST base URL (tests point it at a local fake).
    pub api_base: String,
    /// REST request timeout.
    pub api_timeout_ms: u64,
}

/// Checks `carrier:`; `None` when the auth token is missing (a problem says why).
pub(crate) fn carrier(
    raw: RawCarrier,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<CarrierConfig> {
    if raw.kind != "twilio" {
        problems.push(format!(
            "`carrier.kind`: `{}` is not supported (supported: twilio)",
            raw.kind
        ));
    }
    let sid = &raw.account_sid;
    if !(sid.len() == 34
        && sid.starts_with("AC")
        && sid[2..].chars().all(|c| c.is_ascii_hexdigit()))
    {
        problems.push("`carrier.account_sid`: must be `AC` followed by 32 hex digits".to_string());
    }
    let token = secret_env(
        env,
        &raw.auth_token_env,
        "`carrier.auth_token_env`",
        1,
        problems,
    );
    if !(raw.api_base.starts_with("https://") || raw.api_base.starts_with("http://")) {
        problems.push(format!(
            "`carrier.api_base`: `{}` is not an http(s) URL",
            raw.api_base
        ));
    }
    token.map(|auth_token| CarrierConfig {
        account_sid: raw.account_sid,
        auth_token,
        api_base: raw.api_base.trim_end_matches('/').to_string(),
        api_timeout_ms: raw.api_timeout_ms,
    })
}
