//! Tests against a fake ServiceNow Table API ([`crate::fake_http`]) that records every request.

use super::*;
use crate::fake_http::{Fake, Reply};

const USER: &str = "resetline.integration";
const PASSWORD: &str = "s3cret-Pa55word-for-tests";
/// `base64("{USER}:{PASSWORD}")`, computed independently.
const BASIC: &str = "Basic cmVzZXRsaW5lLmludGVncmF0aW9uOnMzY3JldC1QYTU1d29yZC1mb3ItdGVzdHM=";
const BEARER_TOKEN: &str = "eyJhbGciOiJub25lIn0.test-token";
const CALL: &str = "CA0123456789abcdef0123456789abcdef";
const SYS_ID: &str = "9d385017c611228701d22104cc95c371";
const CREATED: &str = r#"{"result": {"number": "INC0012345", "sys_id": "9d385017c611228701d22104cc95c371", "state": "1", "short_description": "Password reset by phone failed"}}"#;
const UPDATED: &str = r#"{"result": {"number": "INC0012345", "sys_id": "9d385017c611228701d22104cc95c371", "state": "7"}}"#;
const UNAUTHORIZED: &str = r#"{"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"}"#;

fn basic() -> ServiceNowAuth {
    ServiceNowAuth::Basic {
        user: USER.into(),
        password: Secret::new(PASSWORD),
    }
}

fn tickets(fake: &Fake) -> ServiceNowTickets {
    ServiceNowTickets::new(&fake.base(), basic()).unwrap()
}

fn new_ticket() -> NewTicket {
    NewTicket {
        summary: "Password reset by phone failed".into(),
        details: Some("Caller gave up waiting for the SMS code.".into()),
        category: Some("password_reset".into()),
        call_sid: CALL.into(),
    }
}

fn ticket() -> TicketRef {
    TicketRef {
        number: "INC0012345".into(),
        id: SYS_ID.into(),
    }
}

fn assert_no_secret(e: &BackendError) {
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(PASSWORD) && !shown.contains(BEARER_TOKEN),
        "{shown}"
    );
}

#[tokio::test]
async fn open_posts_an_incident_and_reads_the_number_back() {
    let fake = Fake::start(201, CREATED, Duration::ZERO).await;
    let opened = tickets(&fake).open(new_ticket()).await.unwrap();
    assert_eq!(opened, ticket());
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.request_line, "POST /api/now/table/incident HTTP/1.1");
    assert_eq!(s.header("authorization"), Some(BASIC));
    assert_eq!(s.header("accept"), Some("application/json"));
    assert_eq!(s.header("content-type"), Some("application/json"));
    assert_eq!(
        s.json(),
        json!({
            "short_description": "Password reset by phone failed",
            "description": "Caller gave up waiting for the SMS code.",
            "category": "password_reset",
            "correlation_id": CALL,
        })
    );
}

#[tokio::test]
async fn open_adds_configured_fields_and_omits_missing_ones() {
    let fake = Fake::start(201, CREATED, Duration::ZERO).await;
    let tickets = ServiceNowTickets::new(&format!("{}/", fake.base()), basic())
        .unwrap()
        .with_assignment_group("Service Desk")
        .unwrap()
        .with_caller_id("resetline")
        .unwrap();
    let mut t = new_ticket();
    t.details = None;
    t.category = None;
    tickets.open(t).await.unwrap();
    assert_eq!(
        fake.requests()[0].json(),
        json!({
            "short_description": "Password reset by phone failed",
            "correlation_id": CALL,
            "assignment_group": "Service Desk",
            "caller_id": "resetline",
        })
    );
}

#[tokio::test]
async fn close_patches_state_close_code_and_notes() {
    let fake = Fake::start(200, UPDATED, Duration::ZERO).await;
    tickets(&fake)
        .close(&ticket(), "Reset by phone: PIN changed.")
        .await
        .unwrap();
    let custom = tickets(&fake)
        .with_close_values("6", "Resolved by caller")
        .unwrap();
    custom.close(&ticket(), "done").await.unwrap();
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(
            s.request_line,
            format!("PATCH /api/now/table/incident/{SYS_ID} HTTP/1.1")
        );
        assert_eq!(s.header("authorization"), Some(BASIC));
        assert_eq!(s.header("accept"), Some("application/json"));
    }
    assert_eq!(
        seen[0].json(),
        json!({"state": "7", "close_code": "Solved (Permanently)", "close_notes": "Reset by phone: PIN changed."})
    );
    assert_eq!(
        seen[1].json(),
        json!({"state": "6", "close_code": "Resolved by caller", "close_notes": "done"})
    );
}

#[tokio::test]
async fn open_then_close_in_one_conversation() {
    let fake = Fake::script(vec![Reply::new(201, CREATED), Reply::new(200, UPDATED)]).await;
    let tickets = tickets(&fake);
    let opened = tickets.open(new_ticket()).await.unwrap();
    tickets.close(&opened, "for the record").await.unwrap();
    let lines: Vec<String> = fake
        .requests()
        .into_iter()
        .map(|s| s.request_line)
        .collect();
    assert_eq!(
        lines,
        [
            "POST /api/now/table/incident HTTP/1.1".to_owned(),
            format!("PATCH /api/now/table/incident/{SYS_ID} HTTP/1.1"),
        ]
    );
}

#[tokio::test]
async fn bearer_tokens_are_sent_as_such() {
    let fake = Fake::start(201, CREATED, Duration::ZERO).await;
    let tickets = ServiceNowTickets::new(
        &fake.base(),
        ServiceNowAuth::Bearer(Secret::new(BEARER_TOKEN)),
    )
    .unwrap();
    tickets.open(new_ticket()).await.unwrap();
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some(format!("Bearer {BEARER_TOKEN}").as_str())
    );
}

#[tokio::test]
async fn unauthorized_names_servicenow_s_message() {
    let fake = Fake::start(401, UNAUTHORIZED, Duration::ZERO).await;
    let e = tickets(&fake).open(new_ticket()).await.unwrap_err();
    assert_eq!(e.backend, "tickets");
    assert!(!e.timeout);
    assert_eq!(
        e.message,
        "ServiceNow answered HTTP 401 (User Not Authenticated: Required to provide Auth information)"
    );
    assert_no_secret(&e);
}

#[tokio::test]
async fn server_errors_carry_the_error_body() {
    let body = r#"{"error": {"message": "Operation Failed", "detail": "Error during insert of incident (jane.doe@example.com)"}, "status": "failure"}"#;
    let fake = Fake::start(500, body, Duration::ZERO).await;
    let e = tickets(&fake).open(new_ticket()).await.unwrap_err();
    assert_eq!(
        e.message,
        "ServiceNow answered HTTP 500 (Operation Failed: Error during insert of incident (j***@example.com))"
    );
    let fake = Fake::start(503, "<html>maintenance</html>", Duration::ZERO).await;
    let e = tickets(&fake).close(&ticket(), "x").await.unwrap_err();
    assert_eq!(e.message, "ServiceNow answered HTTP 503");
    assert_no_secret(&e);
}

#[tokio::test]
async fn a_slow_instance_is_a_timeout() {
    let fake = Fake::start(201, CREATED, Duration::from_secs(3)).await;
    let tickets = tickets(&fake).with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert_eq!(
        tickets.open(new_ticket()).await,
        Err(BackendError::timeout("tickets"))
    );
    assert_eq!(
        tickets.close(&ticket(), "x").await,
        Err(BackendError::timeout("tickets"))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn unusable_answers_and_ids_are_errors() {
    for answer in [
        "{}",
        r#"{"result": {"number": "INC0012345"}}"#,
        r#"{"result": {"number": "INC 1", "sys_id": "abc"}}"#,
        r#"{"result": {"number": "INC1", "sys_id": "../x"}}"#,
    ] {
        let fake = Fake::start(201, answer, Duration::ZERO).await;
        let e = tickets(&fake).open(new_ticket()).await.unwrap_err();
        assert!(e.message.contains("result.number"), "{answer}: {e}");
    }
    let fake = Fake::start(200, UPDATED, Duration::ZERO).await;
    let bad = TicketRef {
        number: "INC1".into(),
        id: "../../sys_user".into(),
    };
    let e = tickets(&fake).close(&bad, "x").await.unwrap_err();
    assert!(e.message.contains("sys_id"), "{e}");
    assert!(fake.requests().is_empty());
}

#[test]
fn configuration_is_checked() {
    let base = "https://acme.service-now.com";
    assert!(ServiceNowTickets::new(base, basic()).is_ok());
    assert_eq!(
        ServiceNowTickets::new(base, basic()).unwrap().table_url(),
        "https://acme.service-now.com/api/now/table/incident"
    );
    for bad in [
        "http://acme.service-now.com",
        "https://u:p@acme.service-now.com",
        "x",
    ] {
        assert!(
            matches!(
                ServiceNowTickets::new(bad, basic()),
                Err(ServiceNowConfigError::BaseUrl(_))
            ),
            "{bad}"
        );
    }
    for user in ["", "a:b", "a\nb"] {
        let auth = ServiceNowAuth::Basic {
            user: user.into(),
            password: Secret::new(PASSWORD),
        };
        assert_eq!(
            ServiceNowTickets::new(base, auth).unwrap_err(),
            ServiceNowConfigError::User
        );
    }
    let empty = ServiceNowAuth::Basic {
        user: USER.into(),
        password: Secret::new(""),
    };
    assert_eq!(
        ServiceNowTickets::new(base, empty).unwrap_err(),
        ServiceNowConfigError::EmptySecret
    );
    assert_eq!(
        ServiceNowTickets::new(base, ServiceNowAuth::Bearer(Secret::new("a\r\nb"))).unwrap_err(),
        ServiceNowConfigError::EmptySecret
    );
    let t = || ServiceNowTickets::new(base, basic()).unwrap();
    assert_eq!(
        t().with_assignment_group(" ").unwrap_err(),
        ServiceNowConfigError::Field("assignment_group")
    );
    assert!(t().with_close_values("7", "").is_err());
    assert_eq!(
        ServiceNowConfigError::Field("caller_id").to_string(),
        "the ServiceNow caller_id must be non-empty, without control characters"
    );
}

#[test]
fn debug_hides_the_password_and_token() {
    let base = "https://acme.service-now.com";
    let shown = format!("{:?}", ServiceNowTickets::new(base, basic()).unwrap());
    assert!(!shown.contains(PASSWORD) && shown.contains("Secret(***)") && shown.contains(USER));
    let bearer = ServiceNowAuth::Bearer(Secret::new(BEARER_TOKEN));
    let shown = format!("{:?}", ServiceNowTickets::new(base, bearer).unwrap());
    assert!(!shown.contains(BEARER_TOKEN), "{shown}");
}
