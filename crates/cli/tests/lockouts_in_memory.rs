//! security.md check 12: lockouts (and the 100-failure suspension) must survive a restart,
//! which only a shared store gives (tested against Redis in
//! `crates/store-redis/tests/against_redis.rs`). `resetline serve` says so at start when they
//! live in memory, and does not when they are in Redis.

use crate::support as serve_common;

use resetline_store_redis::testing::RedisServer;
use serve_common::{ACCOUNT, TOKEN, free_port, root};

const WARNING: &str = "PIN and code lockouts live in memory: a restart forgets every lockout";

/// A server config on `port` with `store` (a `store:` line, or nothing for the default).
fn config(dir: &std::path::Path, port: u16, store: &str) -> String {
    let root = root();
    std::fs::copy(
        root.join("examples/demo/users.yaml"),
        dir.join("users.yaml"),
    )
    .expect("copy users");
    format!(
        "listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
flows_dir: {flows}
prompts_dir: {prompts}
carrier: {{ account_sid: {ACCOUNT}, auth_token_env: T_TOKEN, api_base: \"http://127.0.0.1:{dead}\" }}
directory: {{ kind: embedded, path: {users} }}
audit: {{ dir: audit, key_env: T_KEY }}
hash_key_env: T_KEY
reload: {{ enabled: false }}
{store}
",
        flows = root.join("flows").display(),
        prompts = root.join("voice-prompts").display(),
        users = dir.join("users.yaml").display(),
        dead = free_port(),
    )
}

async fn start_logs(store: &str) -> String {
    let scratch = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let yaml = config(scratch.path(), port, store);
    let key = "k".repeat(32);
    let server = serve_common::serve(
        scratch.path(),
        port,
        &yaml,
        &[("T_TOKEN", TOKEN), ("T_KEY", &key)],
    )
    .await;
    server.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_at_start_when_lockouts_live_in_memory() {
    let logs = start_logs("").await;
    assert!(
        logs.contains(WARNING) && logs.contains("WARN"),
        "no warning about lockouts in memory:\n{logs}"
    );

    let redis_dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start(redis_dir.path(), false).expect("redis-server");
    let logs = start_logs(&format!(
        "store: {{ kind: redis, url: \"{}\", key_prefix: \"w:\" }}",
        redis.url()
    ))
    .await;
    assert!(
        logs.contains("lockouts in Redis") && !logs.contains(WARNING),
        "lockouts in Redis need no warning:\n{logs}"
    );
}
