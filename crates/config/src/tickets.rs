//! `tickets:`: the ticket system and its credentials: `kind: servicenow` (the Table API's
//! incidents) or `kind: http` (one configurable request, e.g. Jira Service Management; the
//! connector's [`HttpTicketsSpec`] owns its checks). Problems are added to the caller's list,
//! like every other section's.

use std::collections::BTreeMap;

use serde::Deserialize;

use resetline_connectors::{CloseSpec, HttpTicketsSpec};
use resetline_engine::Secret;

use crate::secret_env;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTickets {
    kind: String,
    username: Option<String>,
    password_env: Option<String>,
    token_env: Option<String>,
    // kind: servicenow
    base_url: Option<String>,
    assignment_group: Option<String>,
    // kind: http
    url: Option<String>,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<serde_json::Value>,
    ticket_number: Option<String>,
    ticket_id: Option<String>,
    close: Option<RawClose>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClose {
    url: String,
    method: Option<String>,
    body: Option<serde_json::Value>,
}

/// Ticket system authentication.
#[derive(Clone, Debug)]
pub enum TicketAuth {
    /// HTTP Basic.
    Basic(String, Secret),
    /// Bearer token.
    Bearer(Secret),
}

/// Which ticket system, with its settings.
#[derive(Clone, Debug)]
pub enum TicketSystem {
    /// ServiceNow's incident table.
    ServiceNow {
        /// Instance base URL.
        base_url: String,
        /// Optional assignment group.
        assignment_group: Option<String>,
    },
    /// A ticket system behind one configurable HTTP request.
    Http(HttpTicketsSpec),
}

/// The ticket system and its credentials.
#[derive(Clone, Debug)]
pub struct TicketsConfig {
    /// Which system.
    pub system: TicketSystem,
    /// Credentials.
    pub auth: TicketAuth,
}

/// Checks `tickets:` (none: ticket nodes take their error path).
pub(crate) fn tickets(
    raw: Option<RawTickets>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<TicketsConfig> {
    let mut t = raw?;
    let system = match t.kind.as_str() {
        "servicenow" => servicenow(&mut t, problems),
        "http" => http(&mut t, problems),
        other => {
            problems.push(format!(
                "`tickets.kind`: `{other}` is not supported (supported: servicenow, http)"
            ));
            if let Some(base) = &t.base_url {
                base_url(base, problems);
            }
            None
        }
    };
    let auth = match (t.username, t.password_env, t.token_env) {
        (Some(u), Some(p), None) => secret_env(env, &p, "`tickets.password_env`", 1, problems)
            .map(|p| TicketAuth::Basic(u, p)),
        (None, None, Some(tok)) => {
            secret_env(env, &tok, "`tickets.token_env`", 1, problems).map(TicketAuth::Bearer)
        }
        _ => {
            problems.push("`tickets`: give `username` + `password_env`, or `token_env`".into());
            None
        }
    };
    Some(TicketsConfig {
        system: system?,
        auth: auth?,
    })
}

fn base_url(base: &str, problems: &mut Vec<String>) {
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        problems.push(format!(
            "`tickets.base_url`: `{base}` is not an http(s) URL"
        ));
    }
}

/// A problem for each field given that `kind` does not take.
fn foreign(kind: &str, given: &[(&str, bool)], problems: &mut Vec<String>) {
    for (field, present) in given {
        if *present {
            problems.push(format!("`tickets.{field}`: not a setting of kind {kind}"));
        }
    }
}

fn servicenow(t: &mut RawTickets, problems: &mut Vec<String>) -> Option<TicketSystem> {
    foreign(
        "servicenow",
        &[
            ("url", t.url.is_some()),
            ("method", t.method.is_some()),
            ("headers", !t.headers.is_empty()),
            ("body", t.body.is_some()),
            ("ticket_number", t.ticket_number.is_some()),
            ("ticket_id", t.ticket_id.is_some()),
            ("close", t.close.is_some()),
        ],
        problems,
    );
    let Some(base) = t.base_url.take() else {
        problems.push("`tickets.base_url`: required for kind servicenow".into());
        return None;
    };
    base_url(&base, problems);
    Some(TicketSystem::ServiceNow {
        base_url: base.trim_end_matches('/').to_string(),
        assignment_group: t.assignment_group.take(),
    })
}

fn http(t: &mut RawTickets, problems: &mut Vec<String>) -> Option<TicketSystem> {
    foreign(
        "http",
        &[
            ("base_url", t.base_url.is_some()),
            ("assignment_group", t.assignment_group.is_some()),
        ],
        problems,
    );
    let mut required = |field: &str, present: bool| {
        if !present {
            problems.push(format!("`tickets.{field}`: required for kind http"));
        }
        present
    };
    let complete = [
        required("url", t.url.is_some()),
        required("body", t.body.is_some()),
        required("ticket_number", t.ticket_number.is_some()),
    ];
    let spec = HttpTicketsSpec {
        url: t.url.take().unwrap_or_default(),
        method: t.method.take().unwrap_or_default(),
        headers: std::mem::take(&mut t.headers).into_iter().collect(),
        body: t.body.take().unwrap_or_else(|| serde_json::json!({})),
        ticket_number: t.ticket_number.take().unwrap_or_else(|| "/".into()),
        ticket_id: t.ticket_id.take(),
        close: t.close.take().map(|c| CloseSpec {
            url: c.url,
            method: c.method.unwrap_or_default(),
            body: c.body,
        }),
    };
    let mut ok = complete.iter().all(|c| *c);
    for (field, problem) in spec.problems() {
        // A missing setting is reported once, as missing.
        let missing =
            (field == "url" && spec.url.is_empty()) || (field == "ticket_number" && !complete[2]);
        if !missing {
            problems.push(format!("`tickets.{field}`: {problem}"));
            ok = false;
        }
    }
    ok.then_some(TicketSystem::Http(spec))
}

#[cfg(test)]
mod tests;
