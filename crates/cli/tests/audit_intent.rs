//! Audit records around an irreversible effect survive a crash (issue 22, finding 9).
//!
//! The real `resetline serve` runs the shipped PIN flow against a local SCIM directory whose
//! password PATCH takes effect and then never answers: the credential has changed, the step
//! has not finished, nothing is saved. The test waits until the directory has the new PIN,
//! then SIGKILLs the server, so the process dies exactly between the directory change and the
//! save (no production hook is needed for that: the directory is an ordinary HTTP backend).
//! After a restart the trail shows the change (its intent, written and fsynced before the
//! PATCH, and `outcome_unknown`, written at start for an intent with no outcome), `resetline
//! audit verify` passes, and no record id appears twice.

use crate::support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use resetline_audit::{ChainId, EventType, Filter, Outcome};
use resetline_engine::Secret;
use support::{free_port, next_action, post_webhook, serve_binary, start_providers};

const PIN: &str = "48213579";
const NEW_PIN: &str = "58204617";
const SCIM_TOKEN: &str = "scim-bearer-token-e2e";
const KEY: &str = "0123456789abcdef0123456789abcdef-intent";
const SID: &str = "CA00000000000000000000000000intent";

/// A SCIM directory with one user whose password PATCH is applied (kept in `patched`) and
/// then left unanswered.
#[derive(Default)]
struct Scim {
    pin_hash: String,
    patched: Mutex<Vec<String>>,
}

fn scim(state: Arc<Scim>) -> Router {
    let user = |s: &Scim| {
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223",
            "userName": "100001",
            "displayName": "Alex Rivera",
            "active": true,
            "phoneNumbers": [{ "value": "+15555550199", "type": "mobile" }],
            "pinHash": s.pin_hash,
        })
    };
    Router::new()
        .route(
            "/scim/v2/Users",
            get(
                move |State(s): State<Arc<Scim>>, RawQuery(_): RawQuery| async move {
                    let list = serde_json::json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                        "totalResults": 1,
                        "Resources": [user(&s)],
                    });
                    (StatusCode::OK, list.to_string())
                },
            ),
        )
        .route(
            "/scim/v2/Users/{id}",
            axum::routing::patch(
                |State(s): State<Arc<Scim>>, Path(_id): Path<String>, body: String| async move {
                    if let Ok(mut p) = s.patched.lock() {
                        p.push(body);
                    }
                    // The change is made; the answer never comes.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    StatusCode::OK
                },
            ),
        )
        .with_state(state)
}

fn config(port: u16, providers: &str, scim_url: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    format!(
        "listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
flows_dir: {flows}
prompts_dir: {prompts}
carrier: {{ account_sid: {account}, auth_token_env: I_TOKEN, api_base: \"{providers}\" }}
directory: {{ kind: scim, base_url: \"{scim_url}/scim/v2\", token_env: I_SCIM, pin_hash_attribute: pinHash, timeout_ms: 12000 }}
audit: {{ dir: audit, key_env: I_KEY }}
hash_key_env: I_KEY
budget_ms: 12000
reload: {{ enabled: false }}
",
        account = support::ACCOUNT,
        flows = root.join("flows").display(),
        prompts = root.join("voice-prompts").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_the_directory_changed_the_pin_still_leaves_the_change_in_the_trail() {
    let directory = Arc::new(Scim {
        pin_hash: resetline_connectors::hash_pin(&Secret::new(PIN)).expect("hash"),
        ..Scim::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let scim_url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(axum::serve(listener, scim(directory.clone())).into_future());
    let (providers, _log) = start_providers().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    std::fs::write(
        dir.path().join("resetline.yaml"),
        config(port, &providers, &scim_url),
    )
    .expect("config");
    let env = [
        ("I_TOKEN", support::TOKEN),
        ("I_SCIM", SCIM_TOKEN),
        ("I_KEY", KEY),
    ];
    let served = serve_binary(dir.path(), port, &env).await;
    let (addr, public) = (served.addr, served.public.clone());

    let mut answer = post_webhook(
        addr,
        &public,
        "/voice/pin-reset",
        &[
            ("CallSid", SID),
            ("AccountSid", support::ACCOUNT),
            ("From", "+15555550100"),
            ("To", "+15555550000"),
        ],
    )
    .await;
    for digits in ["100001", PIN, NEW_PIN] {
        answer = post_webhook(
            addr,
            &public,
            &next_action(&answer),
            &[("CallSid", SID), ("Digits", digits)],
        )
        .await;
    }
    assert!(answer.contains("enter the new PIN again"), "{answer}");
    // The confirmation sets the PIN: the directory takes it and never answers.
    let last = next_action(&answer);
    let confirm = tokio::spawn(async move {
        post_webhook(
            addr,
            &public,
            &last,
            &[("CallSid", SID), ("Digits", NEW_PIN)],
        )
        .await
    });
    let started = Instant::now();
    while directory
        .patched
        .lock()
        .map(|p| p.is_empty())
        .unwrap_or(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the PIN never reached the directory:\n{}",
            served.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let patched = directory.patched.lock().expect("lock").clone();
    assert!(
        patched[0].contains(NEW_PIN),
        "the directory has the new PIN"
    );
    drop(served); // SIGKILL, with the step unfinished and the session unsaved
    confirm.abort();

    // A restart writes what is known about the unfinished change, then serves.
    let again = serve_binary(dir.path(), port, &env).await;
    let log = again.log();
    drop(again);

    let audit_dir = dir.path().join("audit");
    let out = Command::new(env!("CARGO_BIN_EXE_resetline"))
        .args(["audit", "verify"])
        .arg(&audit_dir)
        .env("RESETLINE_AUDIT_KEY", KEY)
        .output()
        .expect("resetline audit verify");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let chain = ChainId::new("resetline").expect("chain");
    let records = resetline_audit::query(&audit_dir, &chain, &Filter::default()).expect("read");
    let change: Vec<_> = records
        .iter()
        .filter(|r| r.record.call_id == SID && r.record.event == EventType::AuthnPasswordChange)
        .map(|r| &r.record)
        .collect();
    assert_eq!(
        change
            .iter()
            .map(|r| (r.outcome, r.reason.as_str()))
            .collect::<Vec<_>>(),
        [
            (Outcome::Intent, "set"),
            (Outcome::Unknown, "outcome_unknown")
        ],
        "the trail shows the change and that its outcome is unknown; restart log:\n{log}"
    );
    let intent = change[0].id.expect("the intent has an id").to_string();
    assert_eq!(
        change[1].details.get("intent"),
        Some(&intent),
        "the unknown outcome names its intent"
    );
    let mut ids = HashSet::new();
    for r in &records {
        if let Some(id) = r.record.id {
            assert!(ids.insert(id), "record id {id} twice");
        }
    }
    assert!(
        records.iter().all(|r| r.record.id.is_some()),
        "every record the server wrote has an id"
    );
}
