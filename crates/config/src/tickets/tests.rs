use std::path::Path;

use serde_json::json;

use crate::testing::{GOOD, env, write};
use crate::{TicketAuth, TicketSystem, load};

/// `GOOD` with `tickets` appended; the config, or every problem as one text.
fn with(tickets: &str) -> Result<crate::Config, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    load(&write(dir.path(), &format!("{GOOD}{tickets}")), &env).map_err(|e| e.to_string())
}

const HTTP: &str = "tickets:\n  kind: http\n  url: https://desk.example.com/api/tickets\n  token_env: TOKEN\n  headers: { X-Source: resetline }\n  body:\n    title: \"{{ summary }}\"\n    text: \"Call {{ call_sid }}: {{ details }}\"\n    priority: 3\n  ticket_number: /data/number\n";

#[test]
fn an_http_ticket_system_loads() {
    let c = with(HTTP).expect("config");
    let t = c.tickets.expect("tickets");
    assert!(matches!(t.auth, TicketAuth::Bearer(ref s) if s.expose() == "tok"));
    let TicketSystem::Http(spec) = t.system else {
        panic!("kind http")
    };
    assert_eq!(spec.url, "https://desk.example.com/api/tickets");
    assert_eq!(spec.method, "");
    assert_eq!(
        spec.headers,
        [("X-Source".to_string(), "resetline".to_string())]
    );
    assert_eq!(
        spec.body,
        json!({"title": "{{ summary }}", "text": "Call {{ call_sid }}: {{ details }}", "priority": 3})
    );
    assert_eq!(spec.ticket_number, "/data/number");
    assert!(spec.ticket_id.is_none() && spec.close.is_none());
}

#[test]
fn the_jira_example_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/tickets/jira-service-management.yaml");
    let text = std::fs::read_to_string(example).expect("the example");
    let dir = tempfile::tempdir().expect("tempdir");
    let c = load(&write(dir.path(), &format!("{GOOD}{text}")), &|n| {
        env(n).or_else(|| (n == "JIRA_API_TOKEN").then(|| "api-token".to_string()))
    })
    .expect("the example is valid");
    let Some(TicketSystem::Http(spec)) = c.tickets.map(|t| t.system) else {
        panic!("kind http")
    };
    assert_eq!(spec.ticket_number, "/issueKey");
    assert_eq!(spec.ticket_id.as_deref(), Some("/issueId"));
    assert_eq!(
        spec.body["requestFieldValues"],
        json!({"summary": "{{ summary }}", "description": "{{ details }}"})
    );
    let close = spec.close.expect("close");
    assert!(close.url.ends_with("/request/{{ ticket.id }}/transition"));
}

#[test]
fn every_http_problem_is_reported_at_once() {
    let bad = "tickets:\n  kind: http\n  base_url: https://desk.example.com\n  method: DELETE\n  token_env: TOKEN\n  headers: { Authorization: \"Bearer abc\" }\n  body: { title: \"{{ pin }}\" }\n  ticket_number: data.number\n  ticket_id: \"/a~2\"\n  close: { url: \"https://{{ ticket.id }}.example.com/close\", method: GET }\n";
    let text = with(bad).expect_err("invalid");
    for want in [
        "`tickets.base_url`: not a setting of kind http",
        "`tickets.url`: required for kind http",
        "`tickets.method`: `DELETE` is not supported (supported: POST, PUT, PATCH)",
        "`tickets.headers`: `Authorization` comes from",
        "`tickets.body`: at /title: unknown placeholder `{{ pin }}` (allowed: summary, details, category, call_sid)",
        "`tickets.ticket_number`: `data.number` is not a JSON pointer (RFC 6901)",
        "`tickets.ticket_id`: `/a~2` is not a JSON pointer",
        "`tickets.close.url`: placeholders may only appear in the path or query",
        "`tickets.close.method`: `GET` is not supported",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    assert!(!text.contains("abc"), "no header value echoed:\n{text}");
}

#[test]
fn missing_http_settings_are_named_once() {
    let text = with("tickets: { kind: http, token_env: TOKEN }\n").expect_err("invalid");
    for field in ["url", "body", "ticket_number"] {
        let want = format!("`tickets.{field}`: required for kind http");
        assert_eq!(text.matches(&want).count(), 1, "{want} once in:\n{text}");
    }
    let text = with("tickets: { kind: http, url: \"http://desk.example.com/t\", body: [], ticket_number: /n, token_env: TOKEN }\n")
        .expect_err("invalid");
    assert!(
        text.contains("`tickets.url`: plain http is only allowed to a loopback host"),
        "{text}"
    );
    assert!(
        text.contains("`tickets.body`: must be a JSON object"),
        "{text}"
    );
}

#[test]
fn servicenow_refuses_http_settings() {
    let text = with("tickets: { kind: servicenow, base_url: \"https://x.service-now.com\", token_env: TOKEN, ticket_number: /n }\n")
        .expect_err("invalid");
    assert!(
        text.contains("`tickets.ticket_number`: not a setting of kind servicenow"),
        "{text}"
    );
    let text = with("tickets: { kind: servicenow, token_env: TOKEN }\n").expect_err("invalid");
    assert!(
        text.contains("`tickets.base_url`: required for kind servicenow"),
        "{text}"
    );
}
