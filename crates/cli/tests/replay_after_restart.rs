//! Issue 22, finding 5: a captured call replayed against a restarted server runs nothing
//! again. A whole SMS reset call is placed against the real `resetline serve` binary and every
//! webhook the carrier sent is kept (path, body, signature); the server is restarted and every
//! request is posted again, in order. Afterwards no provider request was made (no SMS reached
//! the fake Messages API, no recording change, no ticket), the users file is byte for byte the
//! same, no send counter or lockout moved, and the refused webhooks are in the audit trail.
//!
//! With the memory store the restarted process knows nothing of the call: the replayed first
//! webhook starts a new call, but the replayed step URLs carry the old process's random step
//! tokens, which that new call never issued. With Redis the ended call is still there, and once
//! its session has expired, the ended-call marker (`store.ended_call_ttl_s`) still refuses it.

use crate::support;

use std::path::Path;

use resetline_audit::{ChainId, Filter, Record};
use resetline_store_redis::testing::RedisServer;
use support::{ACCOUNT, BASE, Call, Log, SID, Sent, Served, TOKEN};

const PUBLIC: &str = "https://ivr.example.com";
const PREFIX: &str = "rl-replay:";

use resetline_testkit::root;

/// `resetline serve` with its files in `dir` (users, audit trail, log), the provider fakes at
/// `fake_url`, `store` as the `store:` value and `global_per_hour` code sends in all.
async fn serve(dir: &Path, fake_url: &str, store: &str, global_per_hour: u32) -> Served {
    let port = support::free_port();
    let config = format!(
        "listen: 127.0.0.1:{port}
public_url: {PUBLIC}
flows_dir: {flows}
prompts_dir: {prompts}
carrier: {{ account_sid: {ACCOUNT}, auth_token_env: RL_TOKEN, api_base: \"{fake_url}\" }}
directory: {{ kind: embedded, path: users.yaml }}
messages: {{ sms: {{ from: \"+15555550000\" }} }}
tickets: {{ kind: servicenow, base_url: \"{fake_url}\", username: resetline, password_env: RL_SN }}
limits: {{ global_per_hour: {global_per_hour} }}
hash_key_env: RL_KEY
audit: {{ dir: audit, key_env: RL_KEY }}
store: {store}
reload: {{ enabled: false }}
",
        flows = root().join("flows").display(),
        prompts = root().join("voice-prompts").display(),
    );
    std::fs::write(dir.join("resetline.yaml"), config).expect("config");
    let key = "k".repeat(32);
    support::serve_binary(
        dir,
        port,
        &[
            ("RL_TOKEN", TOKEN),
            ("RL_SN", "sn-password"),
            ("RL_KEY", &key),
            ("RUST_LOG", "info"),
        ],
    )
    .await
}

/// The whole SMS reset call and its status callback, every webhook kept as sent.
async fn captured_call(server: &Served, log: &Log) -> Vec<Sent> {
    let mut call = support::sms_reset_call(server.addr, PUBLIC, log).await;
    let status = call
        .post(
            &format!("{BASE}/status"),
            &[
                ("CallSid", SID),
                ("CallStatus", "completed"),
                ("CallDuration", "95"),
            ],
        )
        .await;
    assert!(status.starts_with("HTTP/1.1 204"), "{status}");
    assert_eq!(
        call.sent.len(),
        8,
        "the first webhook, six answers, the hang-up"
    );
    call.sent
}

/// Posts every captured webhook again, in order; each is answered (200 or 204), never a 5xx.
async fn replay(server: &Served, sent: &[Sent]) {
    for s in sent {
        let answer = s.post(server.addr).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 204"),
            "{}: {answer}",
            s.path
        );
    }
}

/// Every audit record `serve` wrote in `dir`.
fn audit(dir: &Path) -> Vec<Record> {
    let chain = ChainId::new("resetline").expect("chain");
    resetline_audit::query(&dir.join("audit"), &chain, &Filter::default())
        .expect("audit trail")
        .into_iter()
        .map(|r| r.record)
        .collect()
}

/// The refusals among `records`, as `reason` for the call.
fn refusals(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.event.as_str() == "input_validation_fail")
        .map(|r| {
            assert_eq!(r.call_id, SID);
            r.reason.clone()
        })
        .collect()
}

fn provider_requests(log: &Log) -> usize {
    log.lock().map(|l| l.len()).unwrap_or_default()
}

/// What a replay must leave as it found it: the requests made to the providers (SMS,
/// recording control, tickets) and the users file (the credentials).
struct Effects {
    requests: usize,
    users: Vec<u8>,
}

impl Effects {
    fn now(log: &Log, dir: &Path) -> Effects {
        Effects {
            requests: provider_requests(log),
            users: std::fs::read(dir.join("users.yaml")).expect("users file"),
        }
    }

    /// Asserts that nothing happened since `self`.
    fn unchanged(&self, log: &Log, dir: &Path) {
        assert_eq!(
            provider_requests(log),
            self.requests,
            "no SMS, recording change or ticket"
        );
        let users = std::fs::read(dir.join("users.yaml")).expect("users file");
        assert!(users == self.users, "no credential changed");
    }
}

/// A scratch directory with the demo users.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        root().join("examples/demo/users.yaml"),
        dir.path().join("users.yaml"),
    )
    .expect("users");
    dir
}

/// The memory store, and one code send per hour in all: a send the replay made would use it up.
const MEMORY: &str = "{ kind: memory }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_call_replayed_after_a_restart_with_the_memory_store_runs_nothing() {
    let (fake_url, log) = support::start_providers().await;
    let dir = scratch();
    let server = serve(dir.path(), &fake_url, MEMORY, 1).await;
    let sent = captured_call(&server, &log).await;
    drop(server);

    let (before, records) = (Effects::now(&log, dir.path()), audit(dir.path()).len());
    let server = serve(dir.path(), &fake_url, MEMORY, 1).await;
    replay(&server, &sent).await;

    before.unchanged(&log, dir.path());
    let after = audit(dir.path());
    let new = &after[records..];
    assert_eq!(
        refusals(new),
        vec!["stale_step_token"; 6],
        "each replayed step is refused and audited: {new:#?}"
    );
    assert!(
        !new.iter().any(|r| matches!(
            r.event.as_str(),
            "authn_token_created" | "authn_login_success" | "authn_password_change"
        )),
        "{new:#?}"
    );

    // The send counters did not move: the one send this hour is still there for a real call.
    let (mut fresh, _) = Call::start(
        server.addr,
        PUBLIC,
        BASE,
        "CAfeedfacefeedfacefeedfacefeedface",
    )
    .await;
    fresh.press("1").await;
    fresh.press("100001").await;
    let answer = fresh.press("1").await;
    assert!(
        answer.contains("We sent a code to the number ending in"),
        "{answer}"
    );
    assert_eq!(provider_requests(&log), before.requests + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_call_replayed_after_a_restart_with_redis_runs_nothing_also_once_its_session_expired()
 {
    let (fake_url, log) = support::start_providers().await;
    let dir = scratch();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).expect("redis dir");
    let redis = RedisServer::start(&redis_dir, false).expect("redis-server");
    let store = format!(
        "{{ kind: redis, url: \"{}\", key_prefix: \"{PREFIX}\" }}",
        redis.url()
    );
    let server = serve(dir.path(), &fake_url, &store, 1000).await;
    let sent = captured_call(&server, &log).await;
    drop(server);

    // Send counters and lockouts: what a replay must not move.
    let limits = |dump: &str| -> String {
        dump.lines()
            .filter(|l| l.contains("counter:") || l.contains("lockout:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (before, counters) = (
        Effects::now(&log, dir.path()),
        limits(&support::redis_dump(&redis.url()).await),
    );
    assert!(counters.contains("send-global"), "{counters}");

    // Restarted while the call's session is still stored: the call is over.
    let server = serve(dir.path(), &fake_url, &store, 1000).await;
    let before_a = audit(dir.path()).len();
    replay(&server, &sent).await;
    let before_b = audit(dir.path()).len();
    // Then its session expired (deleted here, as its ttl would): the ended-call marker remains.
    let mut c = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let deleted: i64 = redis::cmd("DEL")
        .arg(format!("{PREFIX}{{{SID}}}:session"))
        .query_async(&mut c)
        .await
        .expect("DEL");
    assert_eq!(deleted, 1);
    replay(&server, &sent).await;

    before.unchanged(&log, dir.path());
    let dump = support::redis_dump(&redis.url()).await;
    assert_eq!(limits(&dump), counters, "no send counter or lockout moved");
    assert!(
        !dump.contains(&format!("{PREFIX}{{{SID}}}:session")),
        "no call was started again:\n{dump}"
    );
    assert!(
        dump.contains(&format!("{PREFIX}{{{SID}}}:ended")),
        "the ended call is remembered under its own key:\n{dump}"
    );
    let records = audit(dir.path());
    assert_eq!(
        refusals(&records[before_a..before_b]),
        vec!["ended_call"; 6],
        "while the session is stored, the first webhook and five steps are refused (the last \
         step's retry gets its answer again): {:#?}",
        &records[before_a..before_b]
    );
    let mut expected = vec!["ended_call"];
    expected.extend(["unknown_call"; 6]);
    assert_eq!(
        refusals(&records[before_b..]),
        expected,
        "once it expired, the first webhook by the marker, the steps as unknown: {:#?}",
        &records[before_b..]
    );
}
