//! Tests against a scripted fake server ([`crate::fake_http`]) that records every request.

use serde_json::json;

use super::*;
use crate::fake_http::{Fake, Reply};
use resetline_engine::Secret;

const TOKEN: &str = "eyJhbGciOiJub25lIn0.ticket-token";
const PASSWORD: &str = "atlassian-api-token-for-tests";
const CALL: &str = "CA0123456789abcdef0123456789abcdef";
const CREATED: &str =
    r#"{"issueId": "107001", "issueKey": "HELP-12", "requestTypeId": "25", "serviceDeskId": "10"}"#;

fn spec(base: &str) -> HttpTicketsSpec {
    HttpTicketsSpec {
        url: format!("{base}/rest/servicedeskapi/request"),
        method: String::new(),
        headers: vec![("X-ExperimentalApi".into(), "opt-in".into())],
        body: json!({
            "serviceDeskId": "10",
            "requestTypeId": "25",
            "requestFieldValues": {"summary": "{{ summary }}", "description": "{{ details }}"},
            "labels": ["{{ category }}"],
        }),
        ticket_number: "/issueKey".into(),
        ticket_id: Some("/issueId".into()),
        close: Some(CloseSpec {
            url: format!("{base}/rest/servicedeskapi/request/{{{{ ticket.id }}}}/transition"),
            method: "post".into(),
            body: Some(
                json!({"id": "761", "additionalComment": {"body": "{{ note }} ({{ ticket.number }})"}}),
            ),
        }),
    }
}

fn bearer() -> ServiceNowAuth {
    ServiceNowAuth::Bearer(Secret::new(TOKEN))
}

fn tickets(fake: &Fake) -> HttpTickets {
    HttpTickets::new(spec(&fake.base()), bearer()).unwrap()
}

fn new_ticket() -> NewTicket {
    NewTicket {
        summary: "PIN reset by phone failed for \"jdoe\"".into(),
        details: Some("Caller gave up.\nTwice.".into()),
        category: None,
        call_sid: CALL.into(),
    }
}

fn assert_no_secret(e: &BackendError) {
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(TOKEN) && !shown.contains(PASSWORD),
        "{shown}"
    );
}

#[tokio::test]
async fn open_sends_the_rendered_template_and_reads_the_number_by_pointer() {
    let fake = Fake::start(201, CREATED, Duration::ZERO).await;
    let opened = tickets(&fake).open(new_ticket()).await.unwrap();
    assert_eq!(
        opened,
        TicketRef {
            number: "HELP-12".into(),
            id: "107001".into()
        }
    );
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.request_line, "POST /rest/servicedeskapi/request HTTP/1.1");
    assert_eq!(
        s.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(s.header("accept"), Some("application/json"));
    assert_eq!(s.header("content-type"), Some("application/json"));
    assert_eq!(s.header("x-experimentalapi"), Some("opt-in"));
    assert_eq!(
        s.json(),
        json!({
            "serviceDeskId": "10",
            "requestTypeId": "25",
            "requestFieldValues": {
                "summary": "PIN reset by phone failed for \"jdoe\"",
                "description": "Caller gave up.\nTwice.",
            },
            "labels": [],
        })
    );
}

#[tokio::test]
async fn put_basic_auth_numeric_numbers_and_the_number_as_id() {
    let answer = r#"{"data": {"ticket": {"no": 4711}}}"#;
    let fake = Fake::start(200, answer, Duration::ZERO).await;
    let mut s = spec(&fake.base());
    s.method = "PUT".into();
    s.ticket_number = "/data/ticket/no".into();
    s.ticket_id = None;
    let auth = ServiceNowAuth::Basic {
        user: "resetline@example.com".into(),
        password: Secret::new(PASSWORD),
    };
    let opened = HttpTickets::new(s, auth)
        .unwrap()
        .open(new_ticket())
        .await
        .unwrap();
    assert_eq!(opened.number, "4711");
    assert_eq!(opened.id, "4711");
    let seen = &fake.requests()[0];
    assert!(
        seen.request_line.starts_with("PUT "),
        "{}",
        seen.request_line
    );
    assert!(
        seen.header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );
}

#[tokio::test]
async fn close_renders_the_url_and_body() {
    let fake = Fake::script(vec![Reply::new(201, CREATED), Reply::new(204, "")]).await;
    let tickets = tickets(&fake);
    let opened = tickets.open(new_ticket()).await.unwrap();
    tickets
        .close(&opened, "Recorded by Resetline.")
        .await
        .unwrap();
    let seen = fake.requests();
    assert_eq!(
        seen[1].request_line,
        "POST /rest/servicedeskapi/request/107001/transition HTTP/1.1"
    );
    assert_eq!(
        seen[1].json(),
        json!({"id": "761", "additionalComment": {"body": "Recorded by Resetline. (HELP-12)"}})
    );
}

#[tokio::test]
async fn without_close_settings_or_with_a_dot_id_close_is_an_error_and_sends_nothing() {
    let fake = Fake::start(204, "", Duration::ZERO).await;
    let mut s = spec(&fake.base());
    s.close = None;
    let t = HttpTickets::new(s, bearer()).unwrap();
    let r = TicketRef {
        number: "HELP-1".into(),
        id: "1".into(),
    };
    let e = t.close(&r, "x").await.unwrap_err();
    assert!(e.message.contains("`tickets.close`"), "{e}");
    let dots = TicketRef {
        number: "HELP-1".into(),
        id: "..".into(),
    };
    let e = tickets(&fake).close(&dots, "x").await.unwrap_err();
    assert!(e.message.contains("path segment"), "{e}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn non_2xx_names_the_status_and_the_provider_message() {
    let body = r#"{"errorMessage": "Summary: You must specify a summary (jane.doe@example.com, 5551234)", "i18nErrorMessage": {}}"#;
    let fake = Fake::start(400, body, Duration::ZERO).await;
    let e = tickets(&fake).open(new_ticket()).await.unwrap_err();
    assert_eq!(e.backend, "tickets");
    assert!(!e.timeout);
    assert_eq!(
        e.message,
        "the ticket system answered HTTP 400 (Summary: You must specify a summary (j***@example.com, ***))"
    );
    assert_no_secret(&e);
    let fake = Fake::start(503, "<html>down</html>", Duration::ZERO).await;
    let e = tickets(&fake).open(new_ticket()).await.unwrap_err();
    assert_eq!(e.message, "the ticket system answered HTTP 503");
}

#[tokio::test]
async fn answers_without_a_usable_number_are_errors() {
    for (answer, want) in [
        (r#"{"issueId": "107001"}"#, "ticket number at `/issueKey`"),
        (
            r#"{"issueKey": "", "issueId": "1"}"#,
            "ticket number at `/issueKey`",
        ),
        (
            r#"{"issueKey": {"k": 1}, "issueId": "1"}"#,
            "ticket number at `/issueKey`",
        ),
        (r#"{"issueKey": "HELP-1"}"#, "ticket id at `/issueId`"),
        (
            r#"{"issueKey": "HELP\n1", "issueId": "1"}"#,
            "ticket number at `/issueKey`",
        ),
        ("created", "not JSON"),
    ] {
        let fake = Fake::start(201, answer, Duration::ZERO).await;
        let e = tickets(&fake).open(new_ticket()).await.unwrap_err();
        assert!(e.message.contains(want), "{answer}: {e}");
        assert!(!e.timeout);
    }
}

#[tokio::test]
async fn a_slow_system_is_a_timeout() {
    let fake = Fake::start(201, CREATED, Duration::from_secs(3)).await;
    let t = tickets(&fake).with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert_eq!(
        t.open(new_ticket()).await,
        Err(BackendError::timeout("tickets"))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn every_configuration_problem_is_reported() {
    let bad = HttpTicketsSpec {
        url: "http://desk.example.com/{{ summary }}".into(),
        method: "DELETE".into(),
        headers: vec![
            ("Authorization".into(), "Basic abc".into()),
            ("bad header".into(), "x".into()),
        ],
        body: json!({"summary": "{{ pin }}"}),
        ticket_number: "issueKey".into(),
        ticket_id: Some("/a~2".into()),
        close: Some(CloseSpec {
            url: "ftp://desk.example.com/x".into(),
            method: "GET".into(),
            body: Some(json!({"c": "{{ code }}"})),
        }),
    };
    let fields: Vec<&str> = bad.problems().iter().map(|(f, _)| *f).collect();
    assert_eq!(
        fields,
        [
            "url",
            "method",
            "headers",
            "headers",
            "body",
            "ticket_number",
            "ticket_id",
            "close.url",
            "close.method",
            "close.body"
        ]
    );
    let mut plain = spec("http://desk.example.com");
    plain.close = None;
    let problems = plain.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].1.contains("loopback"), "{problems:?}");
    assert!(matches!(
        HttpTickets::new(bad, bearer()),
        Err(HttpTicketsConfigError::Spec(p)) if p.len() == 10
    ));
    assert_eq!(
        HttpTickets::new(
            spec("https://desk.example.com"),
            ServiceNowAuth::Bearer(Secret::new(""))
        )
        .unwrap_err(),
        HttpTicketsConfigError::Auth
    );
}

#[test]
fn debug_hides_the_token() {
    let t = HttpTickets::new(spec("https://desk.example.com"), bearer()).unwrap();
    let shown = format!("{t:?}");
    assert!(
        !shown.contains(TOKEN) && shown.contains("Secret(***)"),
        "{shown}"
    );
}
