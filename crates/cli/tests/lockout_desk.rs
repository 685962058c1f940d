//! `resetline lockout show|clear` for the service desk (issue 22, finding 8): against the
//! Redis store a running `resetline serve` uses, with a real `redis-server`; every use is
//! recorded, with who asked, in the desk's own audit chain, which `audit verify` accepts;
//! with lockouts in memory (inside `serve`) the command refuses and says why.

use crate::support;

use crate::pg;

use std::path::Path;
use std::process::Output;

use resetline_engine::{Clock, LockPolicy, Lockouts, OsRandom, Secret, SystemClock};
use resetline_store_redis::testing::RedisServer;
use resetline_store_redis::{RedisConfig, RedisEndpoint, RedisStore};
use support::{ACCOUNT, TOKEN, next_action, post_webhook};

const PREFIX: &str = "desk-test:";
const ALEX: &str = "100001";
const ALEX_PIN: &str = "48213579";
const KEY: &str = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";

fn env() -> [(&'static str, &'static str); 3] {
    [
        ("RESETLINE_TEST_TOKEN", TOKEN),
        ("RESETLINE_TEST_KEY", KEY),
        ("RESETLINE_TEST_SN", "sn-password"),
    ]
}

/// The file audit trail `serve` and the desk write in these tests.
const FILE_AUDIT: &str = "{ dir: audit, key_env: RESETLINE_TEST_KEY }";

/// Writes `resetline.yaml` in `dir` for a server on `port` with `store` and `audit`.
fn write_config(dir: &Path, port: u16, fake_url: &str, store: &str, audit: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root");
    std::fs::copy(
        root.join("examples/demo/users.yaml"),
        dir.join("users.yaml"),
    )
    .expect("users");
    let config = format!(
        "listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
flows_dir: {flows}
prompts_dir: {prompts}
carrier: {{ account_sid: {ACCOUNT}, auth_token_env: RESETLINE_TEST_TOKEN, api_base: \"{fake_url}\" }}
directory: {{ kind: embedded, path: users.yaml }}
messages: {{ sms: {{ from: \"+15555550000\" }} }}
tickets: {{ kind: servicenow, base_url: \"{fake_url}\", username: resetline, password_env: RESETLINE_TEST_SN }}
hash_key_env: RESETLINE_TEST_KEY
audit: {audit}
reload: {{ enabled: false }}
store: {store}
",
        flows = root.join("flows").display(),
        prompts = root.join("voice-prompts").display(),
    );
    std::fs::write(dir.join("resetline.yaml"), config).expect("config");
}

/// `resetline <args>` with the configuration's environment and `extra`.
fn resetline(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_resetline"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("USER")
        .env_remove("LOGNAME");
    for (k, v) in env().iter().chain(extra) {
        cmd.env(k, v);
    }
    cmd.output().expect("run resetline")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One pin-reset call as `sid` that types `pins` one after another; the last answer.
async fn call(server: &support::Served, sid: &str, pins: &[&str]) -> String {
    let (addr, public) = (server.addr, server.public.as_str());
    let start = [
        ("CallSid", sid),
        ("From", "+15555550100"),
        ("To", "+15555550000"),
    ];
    let mut resp = post_webhook(addr, public, "/voice/pin-reset", &start).await;
    for digits in std::iter::once(&ALEX).chain(pins) {
        let next = next_action(&resp);
        resp = post_webhook(addr, public, &next, &[("CallSid", sid), ("Digits", digits)]).await;
    }
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_desk_clears_a_lockout_in_redis_while_serve_runs_and_each_use_is_audited() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    let redis_dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(redis_dir.path(), false).expect("redis");
    let (fake_url, _log) = support::start_providers().await;
    let port = support::free_port();
    let store = format!(
        "{{ kind: redis, url: \"{}\", key_prefix: \"{PREFIX}\" }}",
        redis.url()
    );
    write_config(dir, port, &fake_url, &store, FILE_AUDIT);
    let server = support::serve_binary(dir, port, &env()).await;

    // Three wrong PINs start a wait; a call during it is refused before any PIN is asked.
    let locked = call(&server, "CAdesk1", &["11112222", "11112223", "11112224"]).await;
    assert!(locked.contains("transfer you"), "{locked}");
    let refused = call(&server, "CAdesk2", &[]).await;
    assert!(
        refused.contains("transfer you") && !refused.contains("current PIN"),
        "{refused}"
    );

    // Another account, suspended after 100 failures (seeded straight into Redis).
    let seed = RedisStore::connect(
        &RedisConfig {
            endpoint: RedisEndpoint::Url(Secret::new(redis.url())),
            password: None,
            username: None,
            tls: false,
            key_prefix: PREFIX.into(),
            timeout: std::time::Duration::from_secs(2),
            ended_call_ttl: std::time::Duration::from_secs(86_400),
        },
        std::sync::Arc::new(SystemClock),
        &OsRandom,
    )
    .expect("store");
    for _ in 0..100 {
        seed.failure("100005", SystemClock.now_ms(), LockPolicy::PIN)
            .await
            .expect("seeded");
    }

    let shown = resetline(dir, &["lockout", "show", ALEX], &[("USER", "desk-bob")]);
    assert!(shown.status.success(), "{}", text(&shown));
    let shown = text(&shown);
    assert!(shown.contains("3 consecutive failures"), "{shown}");
    assert!(shown.contains("checks refused for"), "{shown}");
    let suspended = resetline(dir, &["lockout", "show", "100005", "--by", "carol"], &[]);
    assert!(
        text(&suspended).contains("SUSPENDED after 100 consecutive failures"),
        "{}",
        text(&suspended)
    );

    let cleared = resetline(dir, &["lockout", "clear", ALEX, "--by", "alice"], &[]);
    assert!(cleared.status.success(), "{}", text(&cleared));
    let cleared = resetline(dir, &["lockout", "clear", "100005", "--by", "alice"], &[]);
    assert!(cleared.status.success(), "{}", text(&cleared));
    assert!(
        !seed
            .get("100005")
            .await
            .expect("get")
            .locked(u64::MAX - 1, &LockPolicy::PIN)
    );

    // The running server sees it at once: the right PIN is taken.
    let after = call(&server, "CAdesk3", &[ALEX_PIN]).await;
    assert!(after.contains("new PIN"), "{after}");

    // Every use is in the desk's chain, which verifies, while serve keeps its own.
    let verified = resetline(
        dir,
        &["audit", "verify", "audit", "--chain", "resetline-desk"],
        &[("RESETLINE_AUDIT_KEY", KEY)],
    );
    assert!(verified.status.success(), "{}", text(&verified));
    let query = resetline(
        dir,
        &[
            "audit",
            "query",
            "audit",
            "--chain",
            "resetline-desk",
            "--json",
        ],
        &[],
    );
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&query.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let seen: Vec<(String, String, String, String)> = records
        .iter()
        .map(|r| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&r["event"]),
                s(&r["account"]),
                s(&r["details"]["by"]),
                s(&r["details"]["pin_state"]),
            )
        })
        .collect();
    let expected = [
        ("lockout_shown", ALEX, "desk-bob", "waiting"),
        ("lockout_shown", "100005", "carol", "suspended"),
        ("lockout_cleared", ALEX, "alice", "waiting"),
        ("lockout_cleared", "100005", "alice", "suspended"),
    ]
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()));
    assert_eq!(seen, expected);
    assert_eq!(records[2]["details"]["pin_failures"], "3");
    assert!(
        server.log().contains("resetline is serving") && !server.log().contains("panicked"),
        "serve kept running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_lockouts_in_memory_the_desk_command_refuses_and_says_why() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    let memory = "{ kind: memory }";
    write_config(
        dir,
        support::free_port(),
        "http://127.0.0.1:9",
        memory,
        FILE_AUDIT,
    );
    let out = resetline(dir, &["lockout", "clear", ALEX, "--by", "alice"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("in memory"), "{said}");
    assert!(said.contains("nothing was shown or cleared"), "{said}");
    assert!(said.contains("kind: redis"), "{said}");
    let out = resetline(dir, &["lockout", "show", ALEX], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("give --by NAME"), "{}", text(&out));
    assert!(
        !dir.join("audit").exists(),
        "nothing done, nothing recorded"
    );
}

/// With the audit trail in PostgreSQL, the desk's records go to their own chain there, next
/// to the chain `serve` holds, and `audit verify --postgres-url-env` accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_postgres_trail_the_desk_records_its_chain_beside_the_one_serve_holds() {
    let postgres = pg::Postgres::start();
    let url = postgres.url();
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    let redis_dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(redis_dir.path(), false).expect("redis");
    let (fake_url, _log) = support::start_providers().await;
    let port = support::free_port();
    let store = format!(
        "{{ kind: redis, url: \"{}\", key_prefix: \"{PREFIX}\" }}",
        redis.url()
    );
    let audit = "{ kind: postgres, url_env: RESETLINE_TEST_PG, key_env: RESETLINE_TEST_KEY }";
    write_config(dir, port, &fake_url, &store, audit);
    let pg_env = [("RESETLINE_TEST_PG", url.as_str())];
    let server = support::serve_binary(dir, port, &[&env()[..], &pg_env[..]].concat()).await;
    call(&server, "CApg1", &["11112222"]).await;

    let shown = resetline(dir, &["lockout", "show", ALEX, "--by", "dave"], &pg_env);
    assert!(shown.status.success(), "{}", text(&shown));
    assert!(text(&shown).contains("1 failure (last"), "{}", text(&shown));
    let chain = [
        "--postgres-url-env",
        "RESETLINE_TEST_PG",
        "--chain",
        "resetline-desk",
    ];
    let key = [("RESETLINE_AUDIT_KEY", KEY)];
    let verified = resetline(
        dir,
        &[&["audit", "verify"][..], &chain].concat(),
        &[&pg_env[..], &key[..]].concat(),
    );
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        text(&verified).contains("ok: 1 records"),
        "{}",
        text(&verified)
    );
    let query = resetline(
        dir,
        &[&["audit", "query", "--json"][..], &chain].concat(),
        &pg_env,
    );
    let line = String::from_utf8_lossy(&query.stdout).to_string();
    assert!(
        line.contains("\"lockout_shown\"") && line.contains("\"by\":\"dave\""),
        "{line}"
    );
}
