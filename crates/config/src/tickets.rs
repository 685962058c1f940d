//! `tickets:`: the ServiceNow-shaped ticket system and its credentials. Problems are added
//! to the caller's list, like every other section's.

use serde::Deserialize;

use resetline_engine::Secret;

use crate::secret_env;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTickets {
    kind: String,
    base_url: String,
    username: Option<String>,
    password_env: Option<String>,
    token_env: Option<String>,
    assignment_group: Option<String>,
}

/// Ticket system authentication.
#[derive(Clone, Debug)]
pub enum TicketAuth {
    /// HTTP Basic.
    Basic(String, Secret),
    /// Bearer token.
    Bearer(Secret),
}

/// ServiceNow-shaped ticket system.
#[derive(Clone, Debug)]
pub struct TicketsConfig {
    /// Instance base URL.
    pub base_url: String,
    /// Credentials.
    pub auth: TicketAuth,
    /// Optional assignment group.
    pub assignment_group: Option<String>,
}

/// Checks `tickets:` (none: ticket nodes take their error path).
pub(crate) fn tickets(
    raw: Option<RawTickets>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<TicketsConfig> {
    let t = raw?;
    if t.kind != "servicenow" {
        problems.push(format!(
            "`tickets.kind`: `{}` is not supported (supported: servicenow)",
            t.kind
        ));
    }
    if !(t.base_url.starts_with("https://") || t.base_url.starts_with("http://")) {
        problems.push(format!(
            "`tickets.base_url`: `{}` is not an http(s) URL",
            t.base_url
        ));
    }
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
    auth.map(|auth| TicketsConfig {
        base_url: t.base_url.trim_end_matches('/').to_string(),
        auth,
        assignment_group: t.assignment_group,
    })
}
