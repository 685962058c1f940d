//! `HttpTickets` configured for Jira Service Management, against the Jira-shaped fake of
//! `resetline_testkit::providers` over real HTTP on loopback: the request has the documented
//! create-request shape, the key comes back by pointer, the transition closes it.

use resetline_connectors::{CloseSpec, HttpTickets, HttpTicketsSpec, ServiceNowAuth};
use resetline_engine::{NewTicket, Secret, Tickets};
use resetline_testkit::providers::start_providers;
use serde_json::{Value, json};

const API_TOKEN: &str = "ATATT3xFfGF0-test-api-token";

fn jira(base: &str) -> HttpTickets {
    let spec = HttpTicketsSpec {
        url: format!("{base}/rest/servicedeskapi/request"),
        method: "POST".into(),
        headers: Vec::new(),
        body: json!({
            "serviceDeskId": "10",
            "requestTypeId": "25",
            "requestFieldValues": {"summary": "{{ summary }}", "description": "{{ details }}"},
        }),
        ticket_number: "/issueKey".into(),
        ticket_id: Some("/issueId".into()),
        close: Some(CloseSpec {
            url: format!("{base}/rest/servicedeskapi/request/{{{{ ticket.number }}}}/transition"),
            method: String::new(),
            body: Some(json!({"id": "761", "additionalComment": {"body": "{{ note }}"}})),
        }),
    };
    let auth = ServiceNowAuth::Basic {
        user: "resetline@example.com".into(),
        password: Secret::new(API_TOKEN),
    };
    HttpTickets::new(spec, auth).expect("a valid Jira configuration")
}

fn ticket(summary: &str) -> NewTicket {
    NewTicket {
        summary: summary.into(),
        details: Some("Caller said: \"it's locked\" {{ not a placeholder }}".into()),
        category: None,
        call_sid: "CA0123456789abcdef0123456789abcdef".into(),
    }
}

#[tokio::test]
async fn opens_and_closes_a_jira_service_management_request() {
    let (base, log) = start_providers().await;
    let tickets = jira(&base);
    let opened = tickets
        .open(ticket("PIN reset by phone failed"))
        .await
        .expect("opened");
    assert_eq!(opened.number, "HELP-1");
    assert_eq!(opened.id, "107001");
    tickets
        .close(&opened, "Recorded by Resetline.")
        .await
        .expect("closed");

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].method, seen[0].path.as_str()),
        ("POST", "/rest/servicedeskapi/request")
    );
    assert!(seen[0].auth.starts_with("Basic "), "{}", seen[0].auth);
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "serviceDeskId": "10",
            "requestTypeId": "25",
            "requestFieldValues": {
                "summary": "PIN reset by phone failed",
                "description": "Caller said: \"it's locked\" {{ not a placeholder }}",
            },
        })
    );
    assert_eq!(
        seen[1].path,
        "/rest/servicedeskapi/request/HELP-1/transition"
    );
    let body: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(
        body,
        json!({"id": "761", "additionalComment": {"body": "Recorded by Resetline."}})
    );
}

#[tokio::test]
async fn jira_s_refusal_is_the_error_path_with_its_message() {
    let (base, _log) = start_providers().await;
    let e = jira(&base).open(ticket(" ")).await.expect_err("refused");
    assert_eq!(e.backend, "tickets");
    assert_eq!(
        e.message,
        "the ticket system answered HTTP 400 (Summary: You must specify a summary of the issue.)"
    );
    assert!(!format!("{e} {e:?}").contains(API_TOKEN));
}
