//! `OktaDirectory`: an Okta org's Users API as the engine's [`Directory`] (issue 7 item 3;
//! seed 000 resets passwords in Okta).
//!
//! - find: `GET {base}/api/v1/users?search=profile.<attr> eq "<value>"&limit=2` with
//!   `Authorization: SSWS <token>` and `Accept: application/json`. The profile attribute per
//!   lookup: employee ID -> `employee_id_attribute` (default `employeeNumber`), phone ->
//!   `mobilePhone`, email -> `email`, username -> `login`. The value is quoted as a JSON
//!   string (Okta's search grammar is SCIM's), so it cannot add a clause. No match, or more
//!   than one, is "not found".
//! - the account: `id` = `profile.login` (unique in the org); name = `displayName`, else
//!   `firstName lastName`; mobile = `mobilePhone`; email = `email`; state from `status`:
//!   `LOCKED_OUT` -> Locked (or Active when `unlock` is on: the flow verifies the caller and
//!   the reset unlocks), `SUSPENDED`, `DEPROVISIONED`, `STAGED` and unknown words ->
//!   Disabled, `ACTIVE`, `PASSWORD_EXPIRED`, `RECOVERY`, `PROVISIONED` -> Active.
//! - set_secret: `GET /api/v1/users/{login}` (fresh status and the Okta `id`); a locked-out
//!   user is unlocked first with `POST /api/v1/users/{id}/lifecycle/unlock` when `unlock` is
//!   on (otherwise [`SetSecretError::Locked`]); then the administrator set-password,
//!   `POST /api/v1/users/{id}` with `{"credentials": {"password": {"value": ...}}}` (a
//!   partial update: the profile is untouched).
//! - verify_pin: Okta has no PIN. With `pin_hash_attribute` (a custom profile attribute
//!   holding an Argon2id hash written by provisioning with `resetline hash-pin`) the PIN is
//!   checked against it; otherwise `pin.verify` fails with a [`BackendError`] saying so.
//!
//! Errors: Okta's body `{errorCode, errorSummary, errorCauses: [{errorSummary}]}`. On the
//! password update, `E0000001` (validation), `E0000014` (update of credentials failed) and
//! `E0000080` (complexity) are the password policy refusing the secret: the cause text is
//! spoken through [`crate::idp::policy_prompt`]. `429` (`E0000047`) is retried once when
//! `X-Rate-Limit-Reset` is at most `rate_limit_wait` away, otherwise it is a
//! [`BackendError`] at once. Everything else (401 `E0000011`, 403 `E0000006`, 404
//! `E0000007`, 5xx) is a [`BackendError`] naming status, code and summary.
//!
//! Invariant: the token and the new password leave their [`Secret`]s only for the
//! Authorization header and the one update body; neither is logged nor in any error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use resetline_engine::{
    Account, AccountState, BackendError, Clock, Secret, SetSecretError, SystemClock,
};
use resetline_flow::model::LookupBy;
use serde_json::{Value, json};

use crate::idp::{
    Answer, BACKEND, IdpConfigError, attribute, check, eq_filter, exchange, loggable,
    policy_prompt, verify_pin_hash, with_query,
};
use crate::rest::http_client;

/// An Okta org's users as the engine's [`Directory`].
pub struct OktaDirectory {
    client: reqwest::Client,
    base: String,
    token: Secret,
    employee_id_attribute: String,
    pin_hash_attribute: Option<String>,
    unlock: bool,
    timeout: Duration,
    rate_limit_wait: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for OktaDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OktaDirectory")
            .field("base", &self.base)
            .field("token", &self.token)
            .field("employee_id_attribute", &self.employee_id_attribute)
            .field("pin_hash_attribute", &self.pin_hash_attribute)
            .field("unlock", &self.unlock)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Okta's error parts: `errorCode`, and the summary followed by each cause's summary.
fn okta_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    // A code such as `E0000047` (not masked: it is no phone number).
    let code = json
        .get("errorCode")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty() && c.len() <= 16 && c.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_owned);
    let mut texts: Vec<String> = json
        .get("errorSummary")
        .and_then(Value::as_str)
        .map(loggable)
        .into_iter()
        .collect();
    if let Some(causes) = json.get("errorCauses").and_then(Value::as_array) {
        texts.extend(
            causes
                .iter()
                .filter_map(|c| c.get("errorSummary").and_then(Value::as_str))
                .map(loggable),
        );
    }
    (code, (!texts.is_empty()).then(|| texts.join("; ")))
}

/// `Okta search answered HTTP 401 (E0000011: Invalid token provided)`.
fn failure(answer: &Answer, what: &str) -> BackendError {
    let extra = match okta_error(&answer.body) {
        (Some(c), Some(t)) => format!(" ({c}: {t})"),
        (Some(c), None) => format!(" ({c})"),
        (None, Some(t)) => format!(" ({t})"),
        (None, None) => String::new(),
    };
    BackendError::new(
        BACKEND,
        format!("Okta {what} answered HTTP {}{extra}", answer.status),
    )
}

/// The account state of an Okta `status`.
fn state_of(status: &str, unlock: bool) -> AccountState {
    match status {
        "ACTIVE" | "PASSWORD_EXPIRED" | "RECOVERY" | "PROVISIONED" => AccountState::Active,
        "LOCKED_OUT" if unlock => AccountState::Active,
        "LOCKED_OUT" => AccountState::Locked,
        _ => AccountState::Disabled,
    }
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// An Okta user as an [`Account`].
fn account_of(user: &Value, unlock: bool) -> Option<Account> {
    let profile = user.get("profile")?;
    let login = text(profile, "login")?.to_owned();
    let name = text(profile, "displayName").map_or_else(
        || {
            let parts: Vec<&str> = [text(profile, "firstName"), text(profile, "lastName")]
                .into_iter()
                .flatten()
                .collect();
            if parts.is_empty() {
                login.clone()
            } else {
                parts.join(" ")
            }
        },
        str::to_owned,
    );
    Some(Account {
        name,
        mobile: text(profile, "mobilePhone").map(str::to_owned),
        email: text(profile, "email").map(str::to_owned),
        state: state_of(text(user, "status").unwrap_or(""), unlock),
        allow_phone_reset: true,
        birth_date: None,
        id: login,
    })
}

impl OktaDirectory {
    /// The default budget for one request.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

    /// The longest wait for a rate-limit reset before retrying once (default 1 s).
    pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

    /// A directory for the org at `base_url` (e.g. `https://acme.okta.com`; `https` unless
    /// loopback) with an API token (`Authorization: SSWS <token>`).
    pub fn new(base_url: &str, token: Secret) -> Result<Self, IdpConfigError> {
        let base = check(base_url, &token)?;
        Ok(OktaDirectory {
            client: http_client().map_err(IdpConfigError::Client)?,
            base,
            token,
            employee_id_attribute: "employeeNumber".to_owned(),
            pin_hash_attribute: None,
            unlock: false,
            timeout: Self::DEFAULT_TIMEOUT,
            rate_limit_wait: Self::DEFAULT_RATE_LIMIT_WAIT,
            clock: Arc::new(SystemClock),
        })
    }

    /// The profile attribute employee-ID lookups search (default `employeeNumber`).
    pub fn with_employee_id_attribute(mut self, name: &str) -> Result<Self, IdpConfigError> {
        self.employee_id_attribute = attribute("employee_id_attribute", name)?;
        Ok(self)
    }

    /// The profile attribute holding an Argon2id PIN hash, for `pin.verify`.
    pub fn with_pin_hash_attribute(mut self, name: &str) -> Result<Self, IdpConfigError> {
        self.pin_hash_attribute = Some(attribute("pin_hash_attribute", name)?);
        Ok(self)
    }

    /// Locked-out users may reset: the reset unlocks them first.
    pub fn with_unlock(mut self, unlock: bool) -> Self {
        self.unlock = unlock;
        self
    }

    /// The budget for one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest wait for a rate-limit reset before the one retry.
    pub fn with_rate_limit_wait(mut self, wait: Duration) -> Self {
        self.rate_limit_wait = wait;
        self
    }

    /// The clock rate-limit resets are compared with.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, BackendError> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/users", self.base))
            .map_err(|e| BackendError::new(BACKEND, e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| BackendError::new(BACKEND, "bad base URL"))?
            .extend(segments);
        Ok(url)
    }

    /// Sends a request built by `build`; a 429 whose reset is near is retried once.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, BackendError> {
        let answer = exchange("Okta", self.authorized(build())).await?;
        if answer.status != 429 {
            return Ok(answer);
        }
        let now_s = self.clock.now_ms() / 1000;
        let reset_s = answer
            .headers
            .get("x-rate-limit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match reset_s {
            Some(reset)
                if Duration::from_secs(reset.saturating_sub(now_s)) <= self.rate_limit_wait =>
            {
                tracing::info!(
                    wait_s = reset.saturating_sub(now_s),
                    "Okta rate limit: retrying once after the reset"
                );
                tokio::time::sleep(Duration::from_secs(reset.saturating_sub(now_s))).await;
                exchange("Okta", self.authorized(build())).await
            }
            _ => Ok(answer),
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut value = HeaderValue::from_str(&format!("SSWS {}", self.token.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static("SSWS"));
        value.set_sensitive(true);
        request
            .timeout(self.timeout)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(AUTHORIZATION, value)
    }

    async fn search(&self, attr: &str, value: &str) -> Result<Option<Value>, BackendError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let url = with_query(
            self.url(&[])?,
            &[
                ("search", &eq_filter(&format!("profile.{attr}"), value)),
                ("limit", "2"),
            ],
        );
        let answer = self.send(|| self.client.get(url.clone())).await?;
        if !answer.ok() {
            return Err(failure(&answer, "search"));
        }
        let Some(Value::Array(mut users)) = answer.json() else {
            return Err(BackendError::new(
                BACKEND,
                "Okta search answer is not a list",
            ));
        };
        match users.len() {
            0 => Ok(None),
            1 => Ok(users.pop()),
            n => {
                tracing::warn!(
                    attribute = attr,
                    matches = n,
                    "Okta search matched several users; treated as not found"
                );
                Ok(None)
            }
        }
    }

    /// `GET /api/v1/users/{login}`; `None` on 404.
    async fn user(&self, login: &str) -> Result<Option<Value>, BackendError> {
        if login.trim().is_empty() {
            return Ok(None);
        }
        let url = self.url(&[login])?;
        let answer = self.send(|| self.client.get(url.clone())).await?;
        match answer.status {
            404 => Ok(None),
            _ if answer.ok() => answer
                .json()
                .map(Some)
                .ok_or_else(|| BackendError::new(BACKEND, "Okta user answer is not JSON")),
            _ => Err(failure(&answer, "user read")),
        }
    }

    async fn find_now(&self, by: LookupBy, value: &str) -> Result<Option<Account>, BackendError> {
        let attr = match by {
            LookupBy::EmployeeId => self.employee_id_attribute.as_str(),
            LookupBy::Username => "login",
            LookupBy::Phone => "mobilePhone",
            LookupBy::Email => "email",
        };
        match self.search(attr, value).await? {
            None => Ok(None),
            Some(user) => account_of(&user, self.unlock)
                .map(Some)
                .ok_or_else(|| BackendError::new(BACKEND, "Okta user has no profile.login")),
        }
    }

    async fn verify_now(&self, account: &str, pin: &Secret) -> Result<bool, BackendError> {
        let Some(attr) = &self.pin_hash_attribute else {
            return Err(BackendError::new(
                BACKEND,
                "Okta has no PIN; configure directory.pin_hash_attribute to use pin.verify",
            ));
        };
        let stored = self
            .user(account)
            .await?
            .as_ref()
            .and_then(|u| u.get("profile"))
            .and_then(|p| text(p, attr))
            .map(str::to_owned);
        verify_pin_hash(pin, stored).await
    }

    async fn set_now(&self, account: &str, secret: &Secret) -> Result<(), SetSecretError> {
        let backend = SetSecretError::Backend;
        let user = self
            .user(account)
            .await
            .map_err(backend)?
            .ok_or_else(|| backend(BackendError::new(BACKEND, "no such Okta user")))?;
        let id = text(&user, "id")
            .ok_or_else(|| backend(BackendError::new(BACKEND, "Okta user has no id")))?
            .to_owned();
        let status = text(&user, "status").unwrap_or("");
        match state_of(status, false) {
            AccountState::Active => {}
            AccountState::Locked if self.unlock => {
                let url = self.url(&[&id, "lifecycle", "unlock"]).map_err(backend)?;
                let answer = self
                    .send(|| self.client.post(url.clone()))
                    .await
                    .map_err(backend)?;
                if !answer.ok() {
                    return Err(backend(failure(&answer, "unlock")));
                }
                tracing::info!("Okta user unlocked before the reset");
            }
            AccountState::Locked => return Err(SetSecretError::Locked),
            AccountState::Disabled => {
                return Err(SetSecretError::Rejected {
                    prompt: "not_allowed".into(),
                    reason: format!("the Okta user's status is {}", loggable(status)),
                });
            }
        }
        let url = self.url(&[&id]).map_err(backend)?;
        let answer = self
            .send(|| {
                self.client
                    .post(url.clone())
                    .json(&json!({"credentials": {"password": {"value": secret.expose()}}}))
            })
            .await
            .map_err(backend)?;
        if answer.ok() {
            return Ok(());
        }
        let (code, summary) = okta_error(&answer.body);
        let policy = matches!(answer.status, 400 | 403)
            && matches!(code.as_deref(), Some("E0000001" | "E0000014" | "E0000080"));
        if policy {
            let reason = summary.unwrap_or_else(|| "password refused".into());
            return Err(SetSecretError::Rejected {
                prompt: policy_prompt(&reason, secret.len()).into(),
                reason,
            });
        }
        Err(backend(failure(&answer, "password change")))
    }
}

crate::own_methods_directory!(OktaDirectory);

#[cfg(test)]
mod tests;
