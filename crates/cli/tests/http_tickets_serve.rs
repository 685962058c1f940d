//! Issue 30 item 5 end to end: `resetline serve` with `tickets: { kind: http }` configured for
//! Jira Service Management (the shape of `examples/tickets/jira-service-management.yaml`)
//! against the Jira fake of `resetline_testkit::providers`. A whole SMS reset call ends in the
//! reference flow's record ticket: a create-request with the rendered template, then the
//! transition that closes it. An answer without the number takes the node's error path with a
//! clear log line and no secret in it.

use crate::support;

use serde_json::{Value, json};
use support::{ACCOUNT, TOKEN, root};

const PUBLIC: &str = "https://ivr.example.com";
const JIRA_TOKEN: &str = "jira-api-token-for-tests";

/// `resetline serve` in `dir` with the Jira fakes at `fake_url`, the number read at `pointer`.
async fn serve(dir: &std::path::Path, fake_url: &str, pointer: &str) -> support::Served {
    std::fs::copy(
        root().join("examples/demo/users.yaml"),
        dir.join("users.yaml"),
    )
    .expect("users");
    let port = support::free_port();
    let config = format!(
        "listen: 127.0.0.1:{port}
public_url: {PUBLIC}
flows_dir: {flows}
prompts_dir: {prompts}
carrier: {{ account_sid: {ACCOUNT}, auth_token_env: RL_TOKEN, api_base: \"{fake_url}\" }}
directory: {{ kind: embedded, path: users.yaml }}
messages: {{ sms: {{ from: \"+15555550000\" }} }}
tickets:
  kind: http
  url: \"{fake_url}/rest/servicedeskapi/request\"
  username: resetline@example.com
  password_env: RL_JIRA
  body:
    serviceDeskId: \"10\"
    requestTypeId: \"25\"
    requestFieldValues: {{ summary: \"{{{{ summary }}}}\", description: \"{{{{ details }}}}\" }}
    labels: [\"{{{{ category }}}}\"]
  ticket_number: {pointer}
  ticket_id: /issueId
  close:
    url: \"{fake_url}/rest/servicedeskapi/request/{{{{ ticket.id }}}}/transition\"
    body: {{ id: \"761\", additionalComment: {{ body: \"{{{{ note }}}}\" }} }}
hash_key_env: RL_KEY
audit: {{ dir: audit, key_env: RL_KEY }}
reload: {{ enabled: false }}
",
        flows = root().join("flows").display(),
        prompts = root().join("voice-prompts").display(),
    );
    let key = "k".repeat(32);
    support::serve(
        dir,
        port,
        &config,
        &[
            ("RL_TOKEN", TOKEN),
            ("RL_JIRA", JIRA_TOKEN),
            ("RL_KEY", &key),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_call_opens_and_closes_a_jira_request() {
    let (fake_url, log) = support::start_providers().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), &fake_url, "/issueKey").await;

    let mut call = support::verify_by_sms(server.addr, PUBLIC, &log).await;
    call.press("58204617").await;
    let resp = call.press("58204617").await;
    assert!(
        resp.contains("Your PIN has been changed. Goodbye."),
        "{resp}"
    );

    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();
    let jira: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/rest/servicedeskapi/"))
        .collect();
    assert_eq!(jira.len(), 2, "{requests:#?}");
    assert_eq!(jira[0].path, "/rest/servicedeskapi/request");
    assert!(jira[0].auth.starts_with("Basic "), "{}", jira[0].auth);
    let created: Value = serde_json::from_str(&jira[0].body).expect("JSON");
    let summary = created["requestFieldValues"]["summary"]
        .as_str()
        .expect("summary");
    assert!(summary.starts_with("PIN reset by phone"), "{created}");
    assert_eq!(created["serviceDeskId"], "10");
    assert_eq!(created["labels"], json!(["password-reset"]));
    assert!(!jira[0].body.contains("58204617"), "no PIN in the ticket");
    assert_eq!(
        jira[1].path,
        "/rest/servicedeskapi/request/107001/transition"
    );
    let closed: Value = serde_json::from_str(&jira[1].body).expect("JSON");
    assert_eq!(closed["id"], json!("761"));
    assert!(closed["additionalComment"]["body"].is_string(), "{closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_the_number_is_the_error_path_with_a_clear_log() {
    let (fake_url, log) = support::start_providers().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path(), &fake_url, "/ticket/key").await;

    let mut call = support::verify_by_sms(server.addr, PUBLIC, &log).await;
    call.press("58204617").await;
    let resp = call.press("58204617").await;
    // The reference flow's record ticket goes on to goodbye on `error`.
    assert!(
        resp.contains("Your PIN has been changed. Goodbye."),
        "{resp}"
    );

    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();
    let paths: Vec<&str> = requests
        .iter()
        .filter(|r| r.path.starts_with("/rest/"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["/rest/servicedeskapi/request"],
        "opened, never closed"
    );
    let text = server.log();
    let line = text
        .lines()
        .find(|l| l.contains("ticket not opened"))
        .unwrap_or_else(|| panic!("no `ticket not opened` line in:\n{text}"));
    assert!(
        line.contains("no usable ticket number at `/ticket/key`"),
        "{line}"
    );
    assert!(
        !text.contains(JIRA_TOKEN) && !text.contains("58204617"),
        "{text}"
    );
}
