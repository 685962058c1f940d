//! The `http` node through the interpreter with scripted HTTP answers: templated requests,
//! response mapping, status edges, retries by method, timeouts, secrets only in the body
//! field the flow lists.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Call, Options, said};
use resetline_engine::testing::{HttpReply, ScriptedHttp};
use resetline_engine::*;
use serde_json::json;

const FLOW: &str = r#"
flow: data-actions
start: identify
settings: { max_call_seconds: 600, locales: [en-US], default_locale: en-US, on_error: agent }
nodes:
  identify:
    gather: { say: enter_employee_id, digits: 6..8, into: employee_id }
    next: hr_status
    on: { exhausted: agent }
  hr_status:
    http:
      method: GET
      url: "https://hr.example.com/api/employees/{{ employee_id }}/status"
      headers: { X-Call-Sid: "{{ call.sid }}" }
      map: { employment: /employment/status, manager: /manager/name, missing: /nope }
      timeout: 2s
      retries: 1
      sign: { token_env: HR_SIGNING_TOKEN }
    next: check
    on: { "404": not_found, "4xx": agent }
  check:
    branch:
      - when: { var: employment, equals: active }
        next: badge_check
    next: agent
  badge_check:
    secure:
      start: enter_badge
      nodes:
        enter_badge:
          gather: { say: enter_code, digits: 6, into: badge_code, secret: true }
          next: check_badge
          on: { exhausted: agent }
        check_badge:
          http:
            url: "https://badges.example.com/api/check"
            body: { employee: "{{ employee_id }}", code: "{{ badge_code }}", n: 3 }
            secrets: [/code]
            map: { badge_ok: /ok }
            retries: 2
          next: badge_result
          on: { "409": agent }
    on: { pause_failed: agent }
  badge_result:
    branch:
      - when: { var: badge_ok, equals: "true" }
        next: done
    next: agent
  done:
    hangup: { say: reset_success, outcome: reset_done }
  not_found:
    hangup: { say: id_not_found }
  agent:
    transfer: { say: transferring, queue: service-desk }
"#;

struct Http {
    rig: common::Rig,
    http: Arc<ScriptedHttp>,
}

fn rig(replies: Vec<HttpReply>) -> Http {
    rig_with(replies, None)
}

fn rig_with(replies: Vec<HttpReply>, budgets: Option<(Duration, Duration)>) -> Http {
    let compiled = resetline_flow::compile("data-actions.yaml", FLOW, None);
    assert!(compiled.is_ok(), "{:?}", compiled.diagnostics);
    let log = Arc::new(resetline_engine::testing::CallLog::default());
    let http = Arc::new(ScriptedHttp::new(log, replies));
    let rig = common::rig_with(
        Options {
            http: Some(http.clone()),
            budgets,
            ..Options::default()
        },
        compiled.flow.expect("flow"),
    );
    Http { rig, http }
}

fn ok(body: serde_json::Value) -> HttpReply {
    HttpReply::Answer(200, body)
}

fn status() -> serde_json::Value {
    json!({"employment": {"status": "active", "since": 2019}, "manager": {"name": "Sam Lee"}})
}

#[test]
fn the_engine_runs_http_nodes() {
    let compiled = resetline_flow::compile("data-actions.yaml", FLOW, None);
    assert_eq!(
        Engine::unsupported(&compiled.flow.expect("flow")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn request_is_templated_and_the_answer_mapped_into_variables() {
    let h = rig(vec![ok(status())]);
    let (mut call, _) = Call::start(&h.rig, "CA1").await;
    let step = call.press("100001").await;
    assert_eq!(
        said(&step),
        "Please enter the 6-digit code.",
        "active: on to the badge"
    );
    let seen = h.http.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.url, "https://hr.example.com/api/employees/100001/status");
    assert_eq!(
        r.headers,
        vec![("X-Call-Sid".to_string(), "CA1".to_string())]
    );
    assert!(r.body.is_none());
    assert_eq!(
        r.timeout,
        Duration::from_secs(2).min(Duration::from_millis(200))
    );
    assert_eq!(
        r.sign,
        Some(HttpSigning {
            token_env: "HR_SIGNING_TOKEN".into(),
            header: "X-Resetline-Signature".into()
        })
    );
    assert_eq!(call.session.text("employment"), Some("active"));
    assert_eq!(call.session.text("manager"), Some("Sam Lee"));
    assert_eq!(call.session.text("missing"), None, "absent pointer: unset");
}

#[tokio::test]
async fn status_edges_exact_then_class_then_error() {
    for (reply, want) in [
        (
            HttpReply::Answer(404, json!({"error": "no such employee"})),
            "I couldn't find that employee ID.",
        ),
        (
            HttpReply::Answer(403, serde_json::Value::Null),
            "transfer you to the service desk",
        ),
        (
            HttpReply::Answer(302, serde_json::Value::Null),
            "transfer you to the service desk",
        ),
        (
            ok(json!({"employment": {"status": "terminated"}})),
            "transfer you to the service desk",
        ),
    ] {
        let h = rig(vec![reply]);
        let (mut call, _) = Call::start(&h.rig, "CA1").await;
        let step = call.press("100001").await;
        assert!(said(&step).contains(want), "{}", said(&step));
        assert_eq!(h.http.requests().len(), 1);
    }
    // 2xx without JSON while `map:` is given: the error path (on_error: agent).
    let h = rig(vec![HttpReply::Answer(200, serde_json::Value::Null)]);
    let (mut call, _) = Call::start(&h.rig, "CA1").await;
    let step = call.press("100001").await;
    assert!(matches!(step.actions.last(), Some(Action::Enqueue { .. })));
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retried_for_get_then_take_the_error_path() {
    let h = rig(vec![
        HttpReply::Answer(503, serde_json::Value::Null),
        ok(status()),
    ]);
    let (mut call, _) = Call::start(&h.rig, "CA1").await;
    let step = call.press("100001").await;
    assert_eq!(said(&step), "Please enter the 6-digit code.");
    assert_eq!(h.http.requests().len(), 2, "one retry after the 503");

    let h = rig(vec![HttpReply::Hang]);
    let (mut call, _) = Call::start(&h.rig, "CA2").await;
    let started = std::time::Instant::now();
    let step = call.press("100001").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        said(&step).contains("transfer you to the service desk"),
        "{}",
        said(&step)
    );
    assert!(matches!(step.actions.last(), Some(Action::Enqueue { .. })));
    assert_eq!(h.http.requests().len(), 2, "timed out twice (retries: 1)");

    let h = rig(vec![HttpReply::Answer(500, serde_json::Value::Null)]);
    let (mut call, _) = Call::start(&h.rig, "CA3").await;
    let step = call.press("100001").await;
    assert!(matches!(step.actions.last(), Some(Action::Enqueue { .. })));
    assert_eq!(h.http.requests().len(), 2);
}

#[tokio::test]
async fn the_step_budget_bounds_all_tries() {
    // 200 ms per call, 300 ms per step: the second try only gets what is left.
    let h = rig_with(
        vec![HttpReply::Hang],
        Some((Duration::from_millis(200), Duration::from_millis(300))),
    );
    let (mut call, _) = Call::start(&h.rig, "CA1").await;
    let started = std::time::Instant::now();
    let step = call.press("100001").await;
    assert!(started.elapsed() < Duration::from_millis(900));
    assert!(matches!(step.actions.last(), Some(Action::Enqueue { .. })));
}

async fn to_badge(h: &Http) -> Call<'_> {
    let (mut call, _) = Call::start(&h.rig, "CA9").await;
    call.press("100001").await;
    call
}

#[tokio::test]
async fn a_secret_goes_only_into_the_listed_body_field_and_post_is_not_retried_after_sending() {
    let h = rig(vec![
        ok(status()),
        HttpReply::Error(HttpError::Failed(BackendError::timeout("http"))),
    ]);
    let mut call = to_badge(&h).await;
    let step = call.press("735911").await;
    assert!(
        matches!(step.actions.last(), Some(Action::Enqueue { .. })),
        "error -> agent"
    );
    let seen = h.http.requests();
    assert_eq!(
        seen.len(),
        2,
        "a POST that may have been applied is not sent again"
    );
    let r = &seen[1];
    assert_eq!(r.method, "POST");
    assert_eq!(r.url, "https://badges.example.com/api/check");
    let body: serde_json::Value =
        serde_json::from_str(r.body.as_ref().expect("body").expose()).expect("json");
    assert_eq!(
        body,
        json!({"employee": "100001", "code": "735911", "n": 3})
    );
    assert!(!format!("{r:?}").contains("735911"), "the body is a Secret");
    assert!(!r.url.contains("735911") && !format!("{:?}", r.headers).contains("735911"));
    let stored = serde_json::to_string(&call.session).expect("session");
    assert!(!stored.contains("735911"), "never stored");
}

#[tokio::test]
async fn a_post_that_was_never_sent_is_retried_and_mapping_works() {
    let h = rig(vec![
        ok(status()),
        HttpReply::Error(HttpError::NotSent(BackendError::new(
            "http",
            "connection refused",
        ))),
        ok(json!({"ok": true})),
    ]);
    let mut call = to_badge(&h).await;
    let step = call.press("735911").await;
    assert_eq!(said(&step), "Your PIN has been changed. Goodbye.");
    assert_eq!(h.http.requests().len(), 3);
    assert_eq!(call.session.text("badge_ok"), Some("true"));
}

#[tokio::test]
async fn refused_requests_are_not_retried() {
    let h = rig(vec![HttpReply::Error(HttpError::Refused(
        BackendError::new("http", "circuit open"),
    ))]);
    let (mut call, _) = Call::start(&h.rig, "CA1").await;
    let step = call.press("100001").await;
    assert!(matches!(step.actions.last(), Some(Action::Enqueue { .. })));
    assert_eq!(h.http.requests().len(), 1);
}

#[tokio::test]
async fn without_a_configured_backend_the_call_goes_to_an_agent() {
    let compiled = resetline_flow::compile("data-actions.yaml", FLOW, None);
    let rig = common::rig_with(Options::default(), compiled.flow.expect("flow"));
    let (mut call, _) = Call::start(&rig, "CA1").await;
    let step = call.press("100001").await;
    assert!(said(&step).contains("transfer you to the service desk"));
    assert!(matches!(step.actions.last(), Some(Action::Enqueue { .. })));
}
