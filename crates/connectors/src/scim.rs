//! `ScimDirectory`: a SCIM 2.0 service provider (RFC 7643 resources, RFC 7644 protocol) as
//! the engine's [`Directory`] (issue 7 item 2).
//!
//! - find: `GET {base}/Users?filter=<attr> eq "<value>"&count=2` with `Accept:
//!   application/scim+json` and `Authorization: Bearer <token>`. The attribute per lookup:
//!   employee ID -> `employee_id_attribute` (default `userName`; e.g. the enterprise
//!   extension's `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`),
//!   username -> `userName`, phone -> `phoneNumbers.value`, email -> `emails.value`. The value
//!   is quoted as a JSON string, so it cannot add a clause to the filter. `totalResults` 0 is
//!   "not found"; more than one match is also "not found" (a claim never picks the wrong
//!   person), and is logged.
//! - the account: `id` = `userName` (unique by RFC 7643 §4.1.1); name = `displayName`, else
//!   `name.formatted`, else `userName`; mobile = the `phoneNumbers` entry of type `mobile`,
//!   else the primary one; email = the primary `emails` entry, else the first; `active: false`
//!   -> Disabled. SCIM core has no lockout attribute: accounts are Active or Disabled, and a
//!   provider that answers a reset with 423 Locked makes it [`SetSecretError::Locked`].
//! - set_secret: the user is looked up again by `userName` (fresh `active` state and the
//!   server's `id`), then `PATCH {base}/Users/{id}` with a PatchOp `replace` of `password`
//!   (RFC 7644 §3.5.2; RFC 7643 §4.1.1 `password`, writeOnly).
//! - verify_pin: SCIM has no PIN. When `pin_hash_attribute` is configured (an extension
//!   attribute holding an Argon2id hash written by provisioning with `resetline hash-pin`),
//!   the PIN is checked against it with the embedded directory's code; otherwise `pin.verify`
//!   fails with a [`BackendError`] saying so, and the flow takes its error path.
//!
//! Errors: a SCIM error body (`schemas: [urn:ietf:params:scim:api:messages:2.0:Error]`,
//! `status`, `scimType`, `detail`) is read. A 400 `invalidValue` (or 400 without `scimType`)
//! on the password PATCH is the provider's policy refusing the secret: spoken through
//! [`crate::idp::policy_prompt`]. Every other status (401, 403, 404, 409, 429, 5xx) is a
//! [`BackendError`] naming status, `scimType` and `detail`.
//!
//! Invariant: the token and the new password leave their [`Secret`]s only for the
//! Authorization header and the one PATCH body; neither is logged nor in any error.

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use resetline_engine::{Account, AccountState, BackendError, Secret, SetSecretError};
use resetline_flow::model::LookupBy;
use serde_json::{Value, json};

use crate::idp::{
    Answer, BACKEND, IdpConfigError, attribute, check, eq_filter, exchange, loggable,
    policy_prompt, verify_pin_hash, with_query,
};
use crate::rest::http_client;

/// SCIM's media type (RFC 7644 §3.1).
const SCIM_JSON: &str = "application/scim+json";
/// The PatchOp message schema.
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM 2.0 service provider's `/Users` as the engine's [`Directory`].
pub struct ScimDirectory {
    client: reqwest::Client,
    base: String,
    token: Secret,
    employee_id_attribute: String,
    pin_hash_attribute: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for ScimDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScimDirectory")
            .field("base", &self.base)
            .field("token", &self.token)
            .field("employee_id_attribute", &self.employee_id_attribute)
            .field("pin_hash_attribute", &self.pin_hash_attribute)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The SCIM error body's parts: `scimType` and `detail` (cleaned, masked).
fn scim_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let text = |k: &str| {
        json.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(loggable)
    };
    (text("scimType"), text("detail"))
}

/// `SCIM answered HTTP 401 (invalidValue: detail)`.
fn failure(answer: &Answer, what: &str) -> BackendError {
    let (kind, detail) = scim_error(&answer.body);
    let extra = match (kind, detail) {
        (Some(k), Some(d)) => format!(" ({k}: {d})"),
        (Some(k), None) => format!(" ({k})"),
        (None, Some(d)) => format!(" ({d})"),
        (None, None) => String::new(),
    };
    BackendError::new(
        BACKEND,
        format!("SCIM {what} answered HTTP {}{extra}", answer.status),
    )
}

/// The value at a SCIM attribute path in a resource: `a`, `a.b`, or a full URN path whose
/// last `:` separates the extension schema from the attribute.
fn attr<'v>(resource: &'v Value, path: &str) -> Option<&'v Value> {
    let (mut node, rest) = match path.rsplit_once(':') {
        Some((schema, attr)) if path.starts_with("urn:") => (resource.get(schema)?, attr),
        _ => (resource, path),
    };
    for part in rest.split('.') {
        node = node.get(part)?;
    }
    Some(node)
}

/// The entry of a multi-valued attribute to use: `type` = `want` first, then `primary`,
/// then the first.
fn pick(resource: &Value, name: &str, want: Option<&str>) -> Option<String> {
    let items = resource.get(name)?.as_array()?;
    let value = |v: &Value| v.get("value").and_then(Value::as_str).map(str::to_owned);
    let typed = want.and_then(|w| {
        items
            .iter()
            .find(|i| i.get("type").and_then(Value::as_str) == Some(w))
    });
    let primary = || {
        items
            .iter()
            .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
    };
    typed
        .or_else(primary)
        .or_else(|| items.first())
        .and_then(value)
}

/// `{base}/Users` as a URL to add a query or a path segment to.
fn users_url(base: &str) -> Result<reqwest::Url, BackendError> {
    reqwest::Url::parse(&format!("{base}/Users"))
        .map_err(|e| BackendError::new(BACKEND, e.to_string()))
}

/// A SCIM User resource as an [`Account`].
fn account_of(user: &Value) -> Option<Account> {
    let user_name = user.get("userName")?.as_str()?.to_owned();
    let name = user
        .get("displayName")
        .and_then(Value::as_str)
        .or_else(|| attr(user, "name.formatted").and_then(Value::as_str))
        .unwrap_or(&user_name)
        .to_owned();
    let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
    Some(Account {
        id: user_name,
        name,
        mobile: pick(user, "phoneNumbers", Some("mobile")),
        email: pick(user, "emails", None),
        state: if active {
            AccountState::Active
        } else {
            AccountState::Disabled
        },
        allow_phone_reset: true,
        birth_date: None,
    })
}

impl ScimDirectory {
    /// The default budget for one request.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

    /// A directory at `base_url` (the SCIM base, e.g. `https://idp.example.com/scim/v2`;
    /// `https` unless loopback) with a bearer `token`.
    pub fn new(base_url: &str, token: Secret) -> Result<Self, IdpConfigError> {
        let base = check(base_url, &token)?;
        Ok(ScimDirectory {
            client: http_client().map_err(IdpConfigError::Client)?,
            base,
            token,
            employee_id_attribute: "userName".to_owned(),
            pin_hash_attribute: None,
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// The attribute employee-ID lookups filter on (default `userName`).
    pub fn with_employee_id_attribute(mut self, name: &str) -> Result<Self, IdpConfigError> {
        self.employee_id_attribute = attribute("employee_id_attribute", name)?;
        Ok(self)
    }

    /// The attribute holding an Argon2id PIN hash, for `pin.verify`.
    pub fn with_pin_hash_attribute(mut self, name: &str) -> Result<Self, IdpConfigError> {
        self.pin_hash_attribute = Some(attribute("pin_hash_attribute", name)?);
        Ok(self)
    }

    /// The budget for one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .timeout(self.timeout)
            .header(ACCEPT, HeaderValue::from_static(SCIM_JSON))
            .bearer_auth(self.token.expose())
    }

    /// The one User whose `attr` equals `value`, as its resource.
    async fn user_where(&self, attr: &str, value: &str) -> Result<Option<Value>, BackendError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let url = with_query(
            users_url(&self.base)?,
            &[("filter", &eq_filter(attr, value)), ("count", "2")],
        );
        let request = self.request(reqwest::Method::GET, url.to_string());
        let answer = exchange("SCIM", request).await?;
        if !answer.ok() {
            return Err(failure(&answer, "search"));
        }
        let list = answer
            .json()
            .ok_or_else(|| BackendError::new(BACKEND, "SCIM search answer is not JSON"))?;
        let total = list.get("totalResults").and_then(Value::as_u64);
        let mut resources = list
            .get("Resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match (total, resources.len()) {
            (Some(0), _) | (None, 0) => Ok(None),
            (Some(1), 1) | (None, 1) => Ok(resources.pop()),
            (Some(n), got) if n > 1 || got > 1 => {
                tracing::warn!(
                    attribute = attr,
                    matches = n,
                    "SCIM lookup matched several users; treated as not found"
                );
                Ok(None)
            }
            _ => Err(BackendError::new(
                BACKEND,
                "SCIM search answer has no usable totalResults/Resources",
            )),
        }
    }

    async fn find_now(&self, by: LookupBy, value: &str) -> Result<Option<Account>, BackendError> {
        let attr = match by {
            LookupBy::EmployeeId => self.employee_id_attribute.as_str(),
            LookupBy::Username => "userName",
            LookupBy::Phone => "phoneNumbers.value",
            LookupBy::Email => "emails.value",
        };
        match self.user_where(attr, value).await? {
            None => Ok(None),
            Some(user) => account_of(&user)
                .map(Some)
                .ok_or_else(|| BackendError::new(BACKEND, "SCIM user resource has no userName")),
        }
    }

    async fn verify_now(&self, account: &str, pin: &Secret) -> Result<bool, BackendError> {
        let Some(path) = &self.pin_hash_attribute else {
            return Err(BackendError::new(
                BACKEND,
                "SCIM has no PIN; configure directory.pin_hash_attribute to use pin.verify",
            ));
        };
        let user = self.user_where("userName", account).await?;
        let stored = user
            .as_ref()
            .and_then(|u| attr(u, path))
            .and_then(Value::as_str)
            .map(str::to_owned);
        verify_pin_hash(pin, stored).await
    }

    async fn set_now(&self, account: &str, secret: &Secret) -> Result<(), SetSecretError> {
        let user = self
            .user_where("userName", account)
            .await
            .map_err(SetSecretError::Backend)?
            .ok_or_else(|| {
                SetSecretError::Backend(BackendError::new(BACKEND, "no such SCIM user"))
            })?;
        if user.get("active").and_then(Value::as_bool) == Some(false) {
            return Err(SetSecretError::Rejected {
                prompt: "not_allowed".into(),
                reason: "the account is not active".into(),
            });
        }
        let id = user
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= 256)
            .ok_or_else(|| {
                SetSecretError::Backend(BackendError::new(BACKEND, "SCIM user has no id"))
            })?;
        let mut url = users_url(&self.base).map_err(SetSecretError::Backend)?;
        url.path_segments_mut()
            .map_err(|()| SetSecretError::Backend(BackendError::new(BACKEND, "bad base URL")))?
            .push(id);
        let body = json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "password", "value": secret.expose()}],
        })
        .to_string();
        let request = self
            .request(reqwest::Method::PATCH, url.to_string())
            .header(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))
            .body(body);
        let answer = exchange("SCIM", request)
            .await
            .map_err(SetSecretError::Backend)?;
        if answer.ok() {
            return Ok(());
        }
        let (kind, detail) = scim_error(&answer.body);
        match answer.status {
            400 if matches!(kind.as_deref(), None | Some("invalidValue")) => {
                let reason = detail.unwrap_or_else(|| "password refused".into());
                Err(SetSecretError::Rejected {
                    prompt: policy_prompt(&reason, secret.len()).into(),
                    reason,
                })
            }
            423 => Err(SetSecretError::Locked),
            _ => Err(SetSecretError::Backend(failure(&answer, "password change"))),
        }
    }
}

crate::own_methods_directory!(ScimDirectory);

#[cfg(test)]
mod tests;
