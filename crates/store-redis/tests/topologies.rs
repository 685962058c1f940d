//! The Redis store on a real Redis Cluster (three masters) and on a Sentinel-managed master
//! (a master, its replica, one Sentinel), all `redis-server` processes on 127.0.0.1: a whole
//! call's sessions, lease, counters and lockouts work the same as on one server, a call's keys
//! share one slot, and a call survives a failover in its middle.

use crate::support;
use std::sync::Arc;
use std::time::Duration;

use resetline_engine::{
    CallLeases, Counters, LockPolicy, Lockouts, OsRandom, Session, SessionStore, SystemClock,
};
use resetline_store_redis::testing::{RedisCluster, RedisSentinel, SENTINEL_SERVICE, cli};
use resetline_store_redis::{RedisEndpoint, RedisStore};

fn store(endpoint: RedisEndpoint) -> RedisStore {
    let config = support::config(endpoint, Duration::from_secs(2));
    RedisStore::connect(&config, Arc::new(SystemClock), &OsRandom).expect("store")
}

fn session(sid: &str) -> Session {
    Session::new(sid, "f", "v", "+15555550100", 0, "en-US")
}

/// One call as the server drives it: first webhook, a code send, a wrong PIN given back, a
/// second webhook, the last save of the ended call. Returns the session's last revision.
async fn call(s: &RedisStore, sid: &str, from: u64) -> u64 {
    let token = format!("tok-{sid}");
    let loaded = s.acquire_and_load(sid, &token, 10_000).await;
    let rev = match loaded {
        Ok(Some(Some((_, rev)))) => rev,
        Ok(Some(None)) => 0,
        other => panic!("{sid}: lease and load: {other:?}"),
    };
    assert_eq!(rev, from, "{sid}: the session as last saved");
    let rev = s
        .save_and_release(session(sid), rev, 60_000, &token)
        .await
        .expect("saved");
    assert!(
        s.hit(&format!("send:{sid}"), 600_000, 5)
            .await
            .expect("counted")
    );
    let account = format!("acct-{sid}");
    let before = s.get(&account).await.expect("lockout");
    let after = s
        .failure(&account, 1_000_000, LockPolicy::PIN)
        .await
        .expect("counted");
    let reserved = resetline_engine::Reservation { before, after };
    assert_eq!(
        s.give_back(&account, reserved, 1_000_001, LockPolicy::PIN)
            .await,
        Ok(before),
        "{sid}: the attempt given back"
    );
    assert_eq!(
        s.acquire_and_load(sid, &token, 10_000).await,
        Ok(Some(Some((session(sid), rev)))),
        "{sid}: the second webhook reads the first one's save"
    );
    assert_eq!(s.renew(sid, &token, 10_000).await, Ok(true));
    let mut ended = session(sid);
    ended.ended = Some("reset_done".into());
    let last = s
        .save_and_release(ended, rev, 60_000, &token)
        .await
        .expect("saved");
    assert_eq!(s.ended(sid).await, Ok(true), "{sid}: remembered as ended");
    assert_eq!(
        s.try_acquire(sid, "other", 10_000).await,
        Ok(true),
        "{sid}: the lease was given back"
    );
    s.release(sid, "other").await.expect("released");
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_calls_run_on_a_three_master_cluster_with_keys_on_every_master() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = RedisCluster::start(dir.path()).expect("cluster");
    let s = store(RedisEndpoint::Cluster(cluster.urls()));
    assert!(s.check().await, "every master answers PING");
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..30 {
        let s = s.clone();
        calls.spawn(async move { call(&s, &format!("CA{i:032}"), 0).await });
    }
    while let Some(done) = calls.join_next().await {
        assert_eq!(done.expect("call"), 2);
    }
    for node in &cluster.nodes {
        let keys: u64 = cli(node.port, &["DBSIZE"])
            .expect("dbsize")
            .trim()
            .parse()
            .expect("a number");
        assert!(keys > 0, "node {} holds some of the calls' keys", node.port);
    }
    assert!(s.healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_keys_share_one_cluster_slot() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = RedisCluster::start(dir.path()).expect("cluster");
    let s = store(RedisEndpoint::Cluster(cluster.urls()));
    let slot = |key: &str| {
        cli(cluster.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
            .expect("keyslot")
            .trim()
            .to_string()
    };
    let mut slots = std::collections::BTreeSet::new();
    for sid in ["CA1", "CA2", "CA3", "CA4"] {
        let session = slot(&s.session_key(sid));
        assert_eq!(
            session,
            slot(&s.lease_key(sid)),
            "{sid}: lease with session"
        );
        assert_eq!(
            session,
            slot(&s.ended_key(sid)),
            "{sid}: ended with session"
        );
        assert_eq!(session, slot(sid), "{sid}: the hash tag is the CallSid");
        slots.insert(session);
    }
    assert!(slots.len() > 1, "calls spread over slots: {slots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_continues_on_the_new_master_after_a_sentinel_failover_in_its_middle() {
    let dir = tempfile::tempdir().expect("dir");
    let mut sentinel = RedisSentinel::start(dir.path()).expect("sentinel");
    let s = store(RedisEndpoint::Sentinel {
        nodes: vec![sentinel.url()],
        service: SENTINEL_SERVICE.into(),
    });
    let sid = "CA0123456789abcdef0123456789abc007";
    let token = "tok-1";
    assert_eq!(s.acquire_and_load(sid, token, 10_000).await, Ok(Some(None)));
    assert_eq!(
        s.save_and_release(session(sid), 0, 60_000, token).await,
        Ok(1)
    );
    assert!(s.hit("send:+15555550100", 600_000, 5).await.expect("hit"));
    let locked = s
        .failure("100001", 1_000_000, LockPolicy::PIN)
        .await
        .expect("failure");

    sentinel.kill_master().expect("failover");

    // The next webhook, at its first try: the dead master's connection was dropped when it
    // closed, and the new one goes to the master the Sentinel names now, which holds
    // everything written before.
    assert_eq!(
        s.acquire_and_load(sid, token, 10_000).await,
        Ok(Some(Some((session(sid), 1)))),
        "the session read from the promoted replica"
    );
    assert_eq!(
        s.save_and_release(session(sid), 1, 60_000, token).await,
        Ok(2),
        "and saved there"
    );
    assert_eq!(s.get("100001").await, Ok(locked), "the lockout survived");
    let stored = cli(sentinel.replica.port, &["GET", &s.session_key(sid)]).expect("get");
    assert!(stored.starts_with("2:"), "on the new master: {stored:?}");
    assert!(s.check().await && s.healthy());
}
