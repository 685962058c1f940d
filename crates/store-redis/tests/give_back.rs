//! Giving back a reserved PIN attempt on Redis (issue 22, findings 7 and 8): a check that did
//! not complete removes exactly its own failure, atomically across replicas, while wrong PINs
//! counted in parallel stay counted and no parallel call gets a free guess.

use crate::support;
use std::sync::Arc;
use std::time::Duration;

use resetline_engine::{
    Clock, LockPolicy, LockState, Lockouts, OsRandom, Reservation, SystemClock,
};
use resetline_store_redis::RedisStore;
use resetline_store_redis::testing::RedisServer;

fn store(server: &RedisServer) -> RedisStore {
    let config = support::config(support::url(server), Duration::from_secs(2));
    RedisStore::connect(&config, Arc::new(SystemClock), &OsRandom).expect("store")
}

/// As the engine does: read, count before the check.
async fn reserve(s: &RedisStore, account: &str, now: u64) -> Reservation {
    let before = s.get(account).await.expect("get");
    let after = s
        .failure(account, now, LockPolicy::PIN)
        .await
        .expect("counted");
    Reservation { before, after }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_give_back_removes_exactly_its_own_failure_and_keeps_the_expiry() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let s = store(&server);
    let p = LockPolicy::PIN;
    let t = SystemClock.now_ms();
    s.failure("1004217", t, p).await.expect("wrong PIN");
    s.failure("1004217", t + 1, p).await.expect("wrong PIN");
    let two = s.get("1004217").await.expect("get");
    let r = reserve(&s, "1004217", t + 2).await;
    assert!(r.after.locked(t + 3, &p), "the third would lock");
    assert_eq!(s.give_back("1004217", r, t + 3, p).await, Ok(two));
    assert_eq!(
        s.get("1004217").await,
        Ok(two),
        "exactly the two wrong PINs"
    );
    let mut probe = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("probe");
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t:lockout:{1004217}")
        .query_async(&mut probe)
        .await
        .expect("pttl");
    assert!(ttl > 0, "still expires: {ttl}");
    // Nothing stored (a success in between): nothing to give back, nothing written.
    s.success("1004217").await.expect("success");
    assert_eq!(
        s.give_back("1004217", r, t + 4, p).await,
        Ok(LockState::default())
    );
    let exists: i64 = redis::cmd("EXISTS")
        .arg("t:lockout:{1004217}")
        .query_async(&mut probe)
        .await
        .expect("exists");
    assert_eq!(exists, 0);
}

/// 40 parallel checks on two replicas: the 20 that "errored" give back, the 20 wrong ones
/// stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_give_backs_on_two_replicas_leave_exactly_the_wrong_pins() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let (a, b) = (store(&server), store(&server));
    let p = LockPolicy::PIN;
    let t = SystemClock.now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40u64 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            let r = reserve(&s, "1004217", t + i).await;
            if i % 4 < 2 {
                tokio::task::yield_now().await;
                s.give_back("1004217", r, t + i, p)
                    .await
                    .expect("given back");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let state = a.get("1004217").await.expect("get");
    assert_eq!(state.failures, 20, "the wrong PINs, not the errors");
    let mut expected = LockState::default();
    for _ in 0..20 {
        expected = expected.after_failure(state.last_failure_ms, &p);
    }
    assert!(
        state.locked_until_ms <= expected.locked_until_ms,
        "no wait longer than 20 failures earn"
    );
}
