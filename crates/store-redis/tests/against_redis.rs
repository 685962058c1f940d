//! The Redis store against a real `redis-server` (Debian package) on 127.0.0.1: the same
//! behaviour as the memory store (compare-and-swap, expiry, refused newer formats, windowed
//! counters, lockout rule), plus what only a shared store needs (no lost increment under
//! concurrency, leases, health while Redis is down and after it returns).

use crate::support;
use std::sync::Arc;
use std::time::Duration;

use resetline_engine::{
    CallLeases, Counters, FakeClock, LockPolicy, Lockouts, OsRandom, Secret, Session, SessionStore,
    StoreError, SystemClock,
};
use resetline_store_redis::testing::{RedisOptions, RedisServer};
use resetline_store_redis::{RedisConfig, RedisStore};

fn config(server: &RedisServer, prefix: &str) -> RedisConfig {
    RedisConfig {
        key_prefix: prefix.to_string(),
        ..support::config(support::url(server), Duration::from_millis(500))
    }
}

fn store(server: &RedisServer, clock: Arc<dyn resetline_engine::Clock>) -> RedisStore {
    RedisStore::connect(&config(server, "t:"), clock, &OsRandom).expect("store")
}

fn session(sid: &str) -> Session {
    Session::new(sid, "f", "v", "+15555550100", 0, "en-US")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_refuses_a_stale_writer() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let s = store(&server, Arc::new(SystemClock));
    let a = session("CA1");
    assert_eq!(s.save(a.clone(), 0, 60_000).await, Ok(1));
    assert_eq!(
        s.save(a.clone(), 0, 60_000).await,
        Err(StoreError::Conflict),
        "a second creator loses"
    );
    assert_eq!(s.save(a.clone(), 1, 60_000).await, Ok(2));
    assert_eq!(
        s.save(a.clone(), 1, 60_000).await,
        Err(StoreError::Conflict),
        "a writer that saw revision 1 loses"
    );
    let (loaded, rev) = s.load("CA1").await.expect("load").expect("found");
    assert_eq!((loaded, rev), (a, 2));
    assert_eq!(s.load("CA2").await, Ok(None));
    assert_eq!(s.session_key("CA1"), "t:{CA1}:session", "hash tag per call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_with_their_ttl() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let s = store(&server, Arc::new(SystemClock));
    s.save(session("CA1"), 0, 150).await.expect("save");
    assert!(s.load("CA1").await.expect("load").is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.load("CA1").await, Ok(None), "gone after its ttl");
    assert_eq!(
        s.save(session("CA1"), 0, 60_000).await,
        Ok(1),
        "a new call under the same sid starts over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_a_newer_format_is_refused_not_misread() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let s = store(&server, Arc::new(SystemClock));
    let mut newer = session("CA1");
    newer.format = resetline_engine::session::READS_UP_TO + 1;
    s.save(newer, 0, 60_000).await.expect("save");
    assert!(matches!(s.load("CA1").await, Err(StoreError::Backend(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_from_two_replicas_lose_no_increment_and_refusals_do_not_count() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let a = store(&server, Arc::new(SystemClock));
    let b = store(&server, Arc::new(SystemClock));
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let s = if i.is_multiple_of(2) {
            a.clone()
        } else {
            b.clone()
        };
        tasks.push(tokio::spawn(async move {
            s.hit("global", 3_600_000, 150).await
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        if t.await.expect("task").expect("hit") {
            allowed += 1;
        }
    }
    assert_eq!(
        allowed, 150,
        "exactly the limit is allowed, none lost, none extra"
    );
    let mut c = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let counted: u64 = redis::cmd("ZCARD")
        .arg("t:counter:{global}")
        .query_async(&mut c)
        .await
        .expect("zcard");
    assert_eq!(counted, 150, "the 50 refused hits were not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_send_in_ten_minutes_is_refused_and_the_window_slides() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let clock = FakeClock::at(1_000_000);
    let counters = store(&server, Arc::new(clock.clone()));
    for _ in 0..5 {
        assert_eq!(
            counters.hit("send:+15555550199", 600_000, 5).await,
            Ok(true)
        );
        clock.advance(Duration::from_secs(60));
    }
    assert_eq!(
        counters.hit("send:+15555550199", 600_000, 5).await,
        Ok(false)
    );
    assert_eq!(
        counters.hit("send:+15555550100", 600_000, 5).await,
        Ok(true),
        "other keys are separate"
    );
    clock.advance(Duration::from_secs(300));
    assert_eq!(
        counters.hit("send:+15555550199", 600_000, 5).await,
        Ok(true),
        "the oldest hit left the window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockouts_apply_the_shared_rule_atomically_across_replicas() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let a = store(&server, Arc::new(SystemClock));
    let b = store(&server, Arc::new(SystemClock));
    let policy = LockPolicy::PIN;
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let s = if i.is_multiple_of(2) {
            a.clone()
        } else {
            b.clone()
        };
        tasks.push(tokio::spawn(async move {
            s.failure("100001", 1_000_000, policy).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("failure");
    }
    let state = a.get("100001").await.expect("get");
    let mut expected = resetline_engine::LockState::default();
    for _ in 0..20 {
        expected = expected.after_failure(1_000_000, &policy);
    }
    assert_eq!(
        state, expected,
        "20 concurrent failures all counted, same rule"
    );
    assert!(state.locked(1_000_001, &policy));
    b.success("100001").await.expect("success");
    assert_eq!(a.get("100001").await, Ok(Default::default()));
}

/// security.md check 12: 100 consecutive failures suspend checks for the account, and the
/// suspension outlives both a restart of Resetline (a new client) and of Redis (append-only
/// file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_account_stays_suspended_across_a_resetline_and_a_redis_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = RedisServer::start(dir.path(), true).expect("redis");
    let policy = LockPolicy::PIN;
    let now = resetline_engine::Clock::now_ms(&SystemClock);
    let first = store(&server, Arc::new(SystemClock));
    for i in 0..policy.suspend_at {
        first
            .failure("100001", now + u64::from(i), policy)
            .await
            .expect("failure");
    }
    let suspended = first.get("100001").await.expect("get");
    assert!(suspended.failures >= policy.suspend_at, "{suspended:?}");
    drop(first);

    let after_resetline = store(&server, Arc::new(SystemClock));
    let state = after_resetline.get("100001").await.expect("get");
    assert_eq!(state, suspended, "a new process reads the same lockout");
    assert!(
        state.locked(now + policy.max_wait_ms + 1, &policy),
        "suspended, not a wait that runs out"
    );
    drop(after_resetline);

    server.restart().expect("redis restart");
    let after_redis = store(&server, Arc::new(SystemClock));
    assert_eq!(
        after_redis.get("100001").await,
        Ok(suspended),
        "the suspension survives a Redis restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_has_one_holder_and_only_the_holder_releases_it() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let a = store(&server, Arc::new(SystemClock));
    let b = store(&server, Arc::new(SystemClock));
    assert_eq!(a.try_acquire("CA1", "tok-a", 10_000).await, Ok(true));
    assert_eq!(b.try_acquire("CA1", "tok-b", 10_000).await, Ok(false));
    assert_eq!(
        b.try_acquire("CA2", "tok-b", 10_000).await,
        Ok(true),
        "per call"
    );
    b.release("CA1", "tok-b").await.expect("release");
    assert_eq!(
        b.try_acquire("CA1", "tok-b", 10_000).await,
        Ok(false),
        "a non-holder's release does nothing"
    );
    a.release("CA1", "tok-a").await.expect("release");
    assert_eq!(b.try_acquire("CA1", "tok-b", 300).await, Ok(true));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.renew("CA1", "tok-b", 300).await,
        Ok(true),
        "the holder renews"
    );
    assert_eq!(
        a.renew("CA1", "tok-a", 60_000).await,
        Ok(false),
        "others cannot"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        a.try_acquire("CA1", "tok-a", 10_000).await,
        Ok(false),
        "still held 400 ms after it was taken for 300: renewed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.try_acquire("CA1", "tok-a", 10_000).await,
        Ok(true),
        "an expired lease (crashed holder) frees the call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_takes_the_lease_with_the_load_and_gives_it_back_with_the_save() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let a = store(&server, Arc::new(SystemClock));
    let b = store(&server, Arc::new(SystemClock));
    assert_eq!(
        a.acquire_and_load("CA1", "tok-a", 10_000).await,
        Ok(Some(None)),
        "taken; no session yet"
    );
    assert_eq!(
        b.acquire_and_load("CA1", "tok-b", 10_000).await,
        Ok(None),
        "held by a: b gets nothing, not even the session"
    );
    assert_eq!(
        a.save_and_release(session("CA1"), 0, 60_000, "tok-a").await,
        Ok(1)
    );
    assert_eq!(
        b.acquire_and_load("CA1", "tok-b", 10_000).await,
        Ok(Some(Some((session("CA1"), 1)))),
        "the save gave the lease back: b takes it and reads a's session"
    );
    assert_eq!(
        b.save_and_release(session("CA1"), 0, 60_000, "tok-b").await,
        Err(StoreError::Conflict),
        "a stale save still loses its compare-and-swap"
    );
    assert_eq!(
        a.acquire_and_load("CA1", "tok-a", 10_000).await,
        Ok(Some(Some((session("CA1"), 1)))),
        "the lease was given back even though the save lost"
    );
    assert_eq!(
        b.save_and_release(session("CA1"), 1, 60_000, "tok-b").await,
        Ok(2),
        "a save by a non-holder is still a compare-and-swap on the revision"
    );
    assert_eq!(
        b.acquire_and_load("CA1", "tok-b", 10_000).await,
        Ok(None),
        "but it does not release a's lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_call_is_remembered_under_its_own_key_after_its_session_expired() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let s = RedisStore::connect(
        &RedisConfig {
            ended_call_ttl: Duration::from_secs(30),
            ..config(&server, "t:")
        },
        Arc::new(SystemClock),
        &OsRandom,
    )
    .expect("store");
    let mut ended = session("CA1");
    s.save(ended.clone(), 0, 60_000).await.expect("save");
    assert_eq!(s.ended("CA1").await, Ok(false), "a live call");
    ended.ended = Some("reset_done".into());
    assert_eq!(s.save(ended, 1, 150).await, Ok(2), "saved without a lease");
    // With a lease: marked, and the lease given back in the same script.
    let mut other = session("CA2");
    other.ended = Some("hangup@identify".into());
    assert_eq!(
        s.acquire_and_load("CA2", "tok", 10_000).await,
        Ok(Some(None))
    );
    assert_eq!(s.save_and_release(other, 0, 150, "tok").await, Ok(1));
    assert_eq!(
        s.acquire_and_load("CA2", "tok-2", 10_000)
            .await
            .map(|l| l.is_some()),
        Ok(true),
        "the lease was given back"
    );
    s.save(session("CA3"), 0, 150).await.expect("save");

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.load("CA1").await, Ok(None), "the sessions expired");
    assert_eq!(s.ended("CA1").await, Ok(true));
    assert_eq!(s.ended("CA2").await, Ok(true));
    assert_eq!(s.ended("CA3").await, Ok(false), "a call that never ended");
    let mut probe = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("probe");
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t:{CA1}:ended")
        .query_async(&mut probe)
        .await
        .expect("PTTL");
    assert!((20_000..=30_000).contains(&ttl), "its own expiry: {ttl} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_while_redis_is_down_and_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = RedisServer::start(dir.path(), true).expect("redis");
    let s = store(&server, Arc::new(SystemClock));
    let checks = s.start_health_checks(Duration::from_millis(100));
    s.save(session("CA1"), 0, 60_000).await.expect("save");
    assert!(s.healthy());
    server.stop();
    let started = std::time::Instant::now();
    assert!(
        matches!(s.load("CA1").await, Err(StoreError::Backend(_))),
        "a clear error, not a hang"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the timeout"
    );
    assert!(!s.healthy());
    server.restart().expect("restart");
    let mut back = false;
    for _ in 0..100 {
        if s.healthy() && s.load("CA1").await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "healthy again once Redis is back");
    let (_, rev) = s
        .load("CA1")
        .await
        .expect("load")
        .expect("kept over the restart");
    assert_eq!(rev, 1);
    checks.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_is_a_timeout_not_a_hang() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let s = store(&server, Arc::new(SystemClock));
    s.save(session("CA1"), 0, 60_000).await.expect("save");
    let mut admin = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    // Redis stops answering every client for 1.5 s (as under a long-running command).
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .expect("pause");
    let started = std::time::Instant::now();
    let r = s.load("CA1").await;
    assert!(
        matches!(r, Err(StoreError::Backend(ref e)) if e.timeout),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "bounded by the 500 ms timeout"
    );
    assert!(!s.healthy());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        s.load("CA1").await.expect("load").is_some(),
        "works again afterwards"
    );
    assert!(s.healthy());
}

/// Socket reads Redis has processed so far (one per batch of commands it read at once).
async fn reads(probe: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(probe)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("total_reads_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_reads_processed")
}

/// As the server runs: one worker thread, where a woken task runs next.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn concurrent_webhooks_share_pipelines_and_each_gets_its_own_replies() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    let s = store(&server, Arc::new(SystemClock));
    let mut probe = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("probe");
    const CALLS: usize = 200;
    for i in 0..CALLS {
        s.save(session(&format!("CA{i}")), 0, 60_000)
            .await
            .expect("created");
    }
    // A lockout key holding a string: HMGET on it is refused (WRONGTYPE), for that caller only.
    let () = redis::cmd("SET")
        .arg("t:lockout:{broken}")
        .arg("not a hash")
        .query_async(&mut probe)
        .await
        .expect("set");
    let before = reads(&mut probe).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let s = s.clone();
        tasks.spawn(async move {
            let sid = format!("CA{i}");
            let token = format!("holder-{i}");
            // As a webhook: the lease with the session, a lockout read, the save with the release.
            let (mut loaded, rev) = s
                .acquire_and_load(&sid, &token, 3_000)
                .await
                .expect("round trip")
                .expect("the lease was free")
                .expect("the session exists");
            assert_eq!(
                (loaded.call_sid.as_str(), rev),
                (sid.as_str(), 1),
                "its own session"
            );
            let account = if i % 10 == 0 {
                "broken".to_string()
            } else {
                format!("acct{i}")
            };
            let lock = s.get(&account).await;
            assert_eq!(lock.is_err(), i % 10 == 0, "{account}: {lock:?}");
            loaded.node = format!("node{i}");
            s.save_and_release(loaded, rev, 60_000, &token)
                .await
                .expect("saved")
        });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.expect("caller"), 2);
    }
    let after = reads(&mut probe).await;
    for i in [0, 57, CALLS - 1] {
        let (saved, rev) = s
            .load(&format!("CA{i}"))
            .await
            .expect("load")
            .expect("found");
        assert_eq!(
            (saved.node, rev),
            (format!("node{i}"), 2),
            "each save landed on its call"
        );
    }
    // 200 webhooks sent 800 commands in three rounds; one read per command would be 800 on
    // the server side (the INFO calls add two). redis-rs's connection task writes whatever
    // callers queued since it last ran; on tokio it runs right after the caller that woke it,
    // so batches are smaller than the hand-written client's (which yielded once before each
    // write: at most 60 reads): about 280 reads on a quiet machine, up to ~560 on a loaded
    // one (batches depend on scheduling). Without pipelining every command is a read of its
    // own (800 and more); the bound, nine tenths of that, fails then and only then.
    assert!(
        after - before <= 720,
        "{} socket reads for {CALLS} concurrent webhooks: commands were not pipelined",
        after - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_logs_in_and_a_wrong_password_names_no_password() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start_with(
        dir.path(),
        RedisOptions {
            password: Some("default-secret".into()),
            acl_user: Some("app on >app-secret ~* &* +@all".into()),
            ..RedisOptions::default()
        },
    )
    .expect("redis");
    let login = |password: &str| RedisConfig {
        username: Some("app".into()),
        password: Some(Secret::new(password.to_string())),
        ..config(&server, "t:")
    };
    let s =
        RedisStore::connect(&login("app-secret"), Arc::new(SystemClock), &OsRandom).expect("store");
    assert_eq!(s.save(session("CA1"), 0, 60_000).await, Ok(1));
    assert!(s.check().await && s.healthy());

    let wrong = RedisStore::connect(&login("not-the-secret"), Arc::new(SystemClock), &OsRandom)
        .expect("store");
    let refused = wrong.load("CA1").await;
    let Err(StoreError::Backend(e)) = &refused else {
        panic!("refused expected: {refused:?}")
    };
    assert!(
        e.message.contains("WRONGPASS") && !e.message.contains("not-the-secret"),
        "{e:?}"
    );
    assert!(!wrong.check().await && !wrong.healthy());
}

/// A store that has not connected yet, on a server that answers nothing for a while.
async fn paused(server: &RedisServer, ms: u64) -> redis::aio::MultiplexedConnection {
    let mut admin = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .expect("pause");
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gave_up_never_has_its_command_run_later() {
    let dir = tempfile::tempdir().expect("dir");
    let server = RedisServer::start(dir.path(), false).expect("redis");
    // Gave up while the connection was being made (Redis did not answer the login in time).
    let connecting = store(&server, Arc::new(SystemClock));
    let mut admin = paused(&server, 1_000).await;
    let gave_up = connecting.hit("late-1", 600_000, 5).await;
    assert!(
        matches!(gave_up, Err(StoreError::Backend(ref e)) if e.timeout),
        "{gave_up:?}"
    );
    // Gave up with its command on a connection that stopped answering.
    let connected = store(&server, Arc::new(SystemClock));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(connected.check().await, "connected before the pause");
    // The script is known to Redis: an `EVALSHA` sent now would run (not fail `NOSCRIPT`).
    assert_eq!(connected.hit("warm", 600_000, 5).await, Ok(true));
    let mut admin2 = paused(&server, 1_000).await;
    let gave_up = connected.hit("late-2", 600_000, 5).await;
    assert!(
        matches!(gave_up, Err(StoreError::Backend(ref e)) if e.timeout),
        "{gave_up:?}"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Both stores work again, and neither hit was counted after its caller had gone.
    assert!(connecting.check().await && connected.check().await);
    for (probe, key) in [
        (&mut admin, "t:counter:{late-1}"),
        (&mut admin2, "t:counter:{late-2}"),
    ] {
        let found: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query_async(probe)
            .await
            .expect("exists");
        assert_eq!(found, 0, "{key}: the abandoned command never ran");
    }
}
