//! The `http` node: a generic HTTP data action (issue 7 item 4).
//!
//! The node's URL, headers and JSON body are rendered from flow variables; a string leaf of
//! the body whose JSON pointer is listed under `secrets:` may also read the secret variables
//! gathered earlier in the same step (they are never stored), every other place reads only
//! plain variables, so a secret cannot reach a URL, a header or an unlisted field even if the
//! checker were bypassed. The rendered body travels as a [`Secret`]; the secret strings of
//! the intermediate JSON value are zeroed once it is serialized.
//!
//! Tries: each try gets the node's `timeout`, cut to what is left of the step's budget. A
//! request that never left (connection refused) is retried for any method; a timeout, a
//! failed exchange or a 5xx is retried only for idempotent methods (`GET`, `PUT`,
//! `DELETE`): a `POST` or `PATCH` may already have taken effect. At most `retries` extra
//! tries, never past the step's budget.
//!
//! The answer: a 2xx maps the response into variables (`map:`, JSON pointer -> text, at most
//! [`MAX_MAPPED_CHARS`] characters each; a pointer the body lacks leaves the variable unset;
//! a 2xx whose body is not JSON while `map:` is given is an error). Then an exact status edge
//! (`"404"`), else a class edge (`"4xx"`), else `next` for a 2xx and `error` for anything
//! else. Logs name the node, the status and the try, never the URL, headers or body.

use std::collections::HashMap;

use resetline_flow::model::{Http, JsonTemplate, Node};
use serde_json::Value;
use zeroize::Zeroize;

use super::drive::onward_or_error;
use super::{Engine, Flowing};
use crate::backend::{BackendError, HttpError, HttpRequest, HttpResponse, HttpSigning};
use crate::secret::Secret;
use crate::session::{Session, Var};

/// Longest text a mapped variable keeps (sessions stay small).
pub(crate) const MAX_MAPPED_CHARS: usize = 1024;

/// Renders a body template. `plain` reads plain variables; `secret` also reads the step's
/// secret variables and is used only for the leaves at `allowed` pointers.
fn render_body(
    t: &JsonTemplate,
    pointer: &str,
    allowed: &[String],
    plain: &dyn Fn(&[String]) -> Option<String>,
    secret: &dyn Fn(&[String]) -> Option<String>,
) -> Result<Value, String> {
    Ok(match t {
        JsonTemplate::Null => Value::Null,
        JsonTemplate::Bool(b) => Value::Bool(*b),
        JsonTemplate::Number(n) => serde_json::from_str::<serde_json::Number>(n)
            .map_or_else(|_| Value::String(n.clone()), Value::Number),
        JsonTemplate::String(s) => {
            let lookup = if allowed.iter().any(|p| p == pointer) {
                secret
            } else {
                plain
            };
            let segs = s.value.render(lookup)?;
            Value::String(resetline_flow::template::plain_text(&segs))
        }
        JsonTemplate::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| render_body(v, &format!("{pointer}/{i}"), allowed, plain, secret))
                .collect::<Result<_, _>>()?,
        ),
        JsonTemplate::Object(fields) => {
            let mut map = serde_json::Map::new();
            for (k, v) in fields {
                let escaped = k.replace('~', "~0").replace('/', "~1");
                let value =
                    render_body(v, &format!("{pointer}/{escaped}"), allowed, plain, secret)?;
                map.insert(k.clone(), value);
            }
            Value::Object(map)
        }
    })
}

/// A response value as variable text.
fn as_text(v: &Value) -> Option<String> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(text.chars().take(MAX_MAPPED_CHARS).collect())
}

fn idempotent(method: &str) -> bool {
    matches!(method, "GET" | "PUT" | "DELETE")
}

impl Engine {
    /// Runs an `http` node.
    pub(super) async fn http_node<'f>(
        &self,
        s: &mut Session,
        node: &'f Node,
        h: &Http,
        secrets: &HashMap<String, Secret>,
    ) -> Flowing<'f> {
        let request = match self.http_request(s, h, secrets) {
            Ok(r) => r,
            Err(missing) => {
                tracing::warn!(call = %s.call_sid, node = %node.id.value, missing, "http: template variable not set");
                return Flowing::Outcome("error");
            }
        };
        let answer = self.http_tries(s, node, h, request).await;
        let response = match answer {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %e, timeout = e.timeout, "http data action failed");
                return Flowing::Outcome("error");
            }
        };
        let status = response.status;
        if (200..300).contains(&status) && !h.map.is_empty() {
            let Some(body) = &response.body else {
                tracing::warn!(call = %s.call_sid, node = %node.id.value, status, "http: the answer is not JSON; nothing to map");
                return Flowing::Outcome("error");
            };
            for (var, pointer) in &h.map {
                match body.pointer(pointer).and_then(as_text) {
                    Some(text) => {
                        s.vars.insert(var.value.clone(), Var::Text(text));
                    }
                    None => {
                        s.vars.remove(&var.value);
                    }
                }
            }
        }
        let class = format!("{}xx", status / 100);
        if let Some(t) = node.on(&status.to_string()).or_else(|| node.on(&class)) {
            return Flowing::Goto(&t.value);
        }
        if (200..300).contains(&status) {
            return onward_or_error(node);
        }
        Flowing::Outcome("error")
    }

    /// The request of an `http` node; `Err` names a variable that is not set.
    fn http_request(
        &self,
        s: &Session,
        h: &Http,
        secrets: &HashMap<String, Secret>,
    ) -> Result<HttpRequest, String> {
        let url = self.render_text(s, &h.url.value)?;
        let headers = h
            .headers
            .iter()
            .map(|(name, t)| Ok((name.clone(), self.render_text(s, &t.value)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let allowed: Vec<String> = h.secrets.iter().map(|p| p.value.clone()).collect();
        let plain = |p: &[String]| s.lookup(p);
        let secret = |p: &[String]| match p {
            [name] => secrets
                .get(name)
                .map(|v| v.expose().to_owned())
                .or_else(|| s.lookup(p)),
            _ => s.lookup(p),
        };
        let body = match &h.body {
            None => None,
            Some(t) => {
                let mut value = render_body(t, "", &allowed, &plain, &secret)?;
                let text = Secret::new(value.to_string());
                for p in &allowed {
                    if let Some(Value::String(v)) = value.pointer_mut(p) {
                        v.zeroize();
                    }
                }
                Some(text)
            }
        };
        Ok(HttpRequest {
            method: h.method.clone(),
            url,
            headers,
            body,
            timeout: h.timeout,
            sign: h.sign.as_ref().map(|(token_env, header)| HttpSigning {
                token_env: token_env.clone(),
                header: header.clone(),
            }),
        })
    }

    /// The tries of one `http` node, within the node's and the step's budgets.
    async fn http_tries(
        &self,
        s: &Session,
        node: &Node,
        h: &Http,
        request: HttpRequest,
    ) -> Result<HttpResponse, BackendError> {
        let safe = idempotent(&h.method);
        let mut last = BackendError::timeout("http");
        for attempt in 0..=h.retries {
            let budget = h.timeout.min(self.remaining());
            if budget.is_zero() {
                break;
            }
            let mut this = request.clone();
            this.timeout = budget;
            let more = attempt < h.retries;
            let result = match tokio::time::timeout(budget, self.http.call(this)).await {
                Ok(r) => r,
                Err(_) => Err(HttpError::Failed(BackendError::timeout("http"))),
            };
            match result {
                Ok(r) if r.status >= 500 && safe && more => {
                    tracing::info!(call = %s.call_sid, node = %node.id.value, status = r.status, attempt, "http: server error, retrying");
                    last = BackendError::new("http", format!("HTTP {}", r.status));
                }
                Ok(r) => {
                    tracing::info!(call = %s.call_sid, node = %node.id.value, status = r.status, attempt, "http data action");
                    return Ok(r);
                }
                Err(HttpError::NotSent(e)) if more => {
                    tracing::info!(call = %s.call_sid, node = %node.id.value, error = %e, attempt, "http: not sent, retrying");
                    last = e;
                }
                Err(HttpError::Failed(e)) if safe && more => {
                    tracing::info!(call = %s.call_sid, node = %node.id.value, error = %e, attempt, "http: failed, retrying");
                    last = e;
                }
                Err(e) => return Err(e.backend().clone()),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_leaves_read_secrets() {
        let compiled = resetline_flow::compile(
            "t.yaml",
            "flow: t\nstart: a\nsettings: { locales: [en-US], on_error: b }\nnodes:\n  a:\n    http:\n      url: https://x.example/\n      body: { a: \"{{ v }}\", n: 5, list: [\"{{ v }}\", true, null], \"x/y\": \"k\" }\n    next: b\n  b:\n    hangup: {}\n",
            None,
        );
        let flow = compiled.flow.expect("flow");
        let resetline_flow::model::Kind::Http(h) = &flow.node("a").expect("a").kind else {
            panic!("http")
        };
        let body = h.body.as_ref().expect("body");
        let plain = |_: &[String]| Some("plain".to_owned());
        let secret = |_: &[String]| Some("SECRET".to_owned());
        let v = render_body(body, "", &["/list/0".to_owned()], &plain, &secret).expect("renders");
        assert_eq!(
            v,
            serde_json::json!({"a": "plain", "n": 5, "list": ["SECRET", true, null], "x/y": "k"})
        );
        let none = |_: &[String]| None;
        assert_eq!(
            render_body(body, "", &[], &none, &secret),
            Err("v".to_owned()),
            "a secret is not read where the flow does not list it"
        );
        assert_eq!(as_text(&serde_json::json!(42)), Some("42".into()));
        assert_eq!(as_text(&Value::Null), None);
        assert_eq!(
            as_text(&Value::String("x".repeat(5000))).map(|t| t.len()),
            Some(MAX_MAPPED_CHARS)
        );
    }
}
