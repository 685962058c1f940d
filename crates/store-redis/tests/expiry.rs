//! Redis state that only grows (issue 22, finding 14): every counter and lockout key carries
//! an expiry, so 100,000 distinct callers and accounts leave nothing behind once their window
//! (or the lockout's reset period) has passed; only a suspension, which the policy says lasts
//! until an operator clears it, is kept without one.

use crate::support;
use std::sync::Arc;
use std::time::Duration;

use resetline_engine::{Clock, Counters, LockPolicy, Lockouts, OsRandom, SystemClock};
use resetline_store_redis::RedisStore;
use resetline_store_redis::testing::RedisServer;

fn store(server: &RedisServer) -> RedisStore {
    let config = support::config(support::url(server), Duration::from_secs(5));
    RedisStore::connect(&config, Arc::new(SystemClock), &OsRandom).expect("store")
}

async fn probe(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("probe")
}

/// (keys, keys with an expiry) in db 0.
async fn keyspace(probe: &mut redis::aio::MultiplexedConnection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(probe)
        .await
        .expect("info");
    let Some(db0) = info.lines().find_map(|l| l.strip_prefix("db0:")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        db0.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("keys"), field("expires"))
}

async fn pttl(probe: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(probe)
        .await
        .expect("pttl")
}

/// Runs `each(i)` for `0..n`, `at_once` at a time.
async fn all<F, Fut>(n: u32, at_once: u32, each: F)
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        tasks.spawn(each(i));
        if tasks.len() >= at_once as usize {
            tasks.join_next().await.expect("task").expect("ran");
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_callers_leave_no_key_behind_after_the_window() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let s = store(&server);
    let mut p = probe(&server).await;
    // Short windows so the test can wait them out; the rules are the production ones.
    const WINDOW_MS: u64 = 5_000;
    let policy = LockPolicy {
        reset_after_ms: WINDOW_MS,
        step_ms: 500,
        max_wait_ms: 1_000,
        ..LockPolicy::PIN
    };
    const N: u32 = 100_000;
    let st = s.clone();
    all(N, 1_000, move |i| {
        let s = st.clone();
        async move {
            let caller = format!("send-caller:+1555{i:07}");
            assert_eq!(s.hit(&caller, WINDOW_MS, 10).await, Ok(true));
            let now = SystemClock.now_ms();
            let account = format!("{i:07}");
            s.failure(&account, now, policy).await.expect("counted");
            if i % 10 == 0 {
                // A few accounts reach the growing wait, which outlasts nothing.
                for _ in 0..3 {
                    s.failure(&account, now, policy).await.expect("counted");
                }
            }
        }
    })
    .await;
    // (Keys of the first callers may have gone already: a count would race the window.)
    let (keys, expiring) = keyspace(&mut p).await;
    assert!(keys > 0, "the callers left keys");
    assert_eq!(expiring, keys, "every key carries an expiry");
    // Redis drops expired keys by itself (sampling, a few times a second); wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (left, _) = keyspace(&mut p).await;
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} keys still there a minute after the window"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_expires_after_its_reset_period_but_a_suspension_never_does() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let s = store(&server);
    let mut p = probe(&server).await;
    let policy = LockPolicy::PIN;
    let now = SystemClock.now_ms();
    s.failure("1004217", now, policy).await.expect("counted");
    let ttl = pttl(&mut p, "t:lockout:{1004217}").await;
    assert!(
        ttl > i64::try_from(policy.reset_after_ms).expect("fits") - 60_000,
        "kept for the 12 h reset period, from the last failure: {ttl} ms"
    );
    for _ in 0..policy.suspend_at {
        s.failure("1004218", now, policy).await.expect("counted");
    }
    assert_eq!(
        pttl(&mut p, "t:lockout:{1004218}").await,
        -1,
        "a suspension lasts until an operator clears it"
    );
    assert!(
        s.get("1004218")
            .await
            .expect("get")
            .locked(u64::MAX - 1, &policy)
    );
}
