//! security.md check 12: lockouts (and the 100-failure suspension) must survive a restart,
//! which only a shared store gives (tested against Redis in
//! `crates/store-redis/tests/against_redis.rs`). `resetline serve` says so at start when they
//! live in memory, and does not when they are in Redis.

use crate::support as serve_common;

use resetline_store_redis::testing::RedisServer;
use serve_common::{TOKEN, free_port};

const WARNING: &str = "PIN and code lockouts live in memory: a restart forgets every lockout";

async fn start_logs(store: &str) -> String {
    let scratch = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let yaml = serve_common::embedded_config(scratch.path(), port, store);
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
