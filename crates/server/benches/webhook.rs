//! One signed Gather callback through `app(state)` in process (no TCP, no hyper): the part of
//! a webhook's cost that is Resetline's own. Each iteration is the first Gather callback of a
//! call no other iteration touched (the call is created in the untimed setup), so it does the
//! whole step: form parse, signature, per-call lock, session load, engine step (directory
//! lookup, PIN-lockout check, recording pause, audit records, next prompt), save, render.
//!
//! `signed_gather_step_in_process_redis` is the same with sessions, lockouts and call leases
//! in a real `redis-server` on loopback (skipped when it is not installed): one request at a
//! time, so every Redis round trip is a pipeline of its own (no batching across webhooks, the
//! Redis client's worst case).
//!
//! Run: `cargo bench -p resetline-server --bench webhook`
//!
//! Instruction counts (repeatable where wall time on a shared VM is not), counting only inside
//! `one_webhook` (the redis-server process is not counted):
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='webhook::one_webhook*'
//! target/release/deps/webhook-<hash> --bench --profile-time 20 <bench name>`

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use resetline_engine::{SessionStore, SystemClock};
use resetline_server::{AppState, app};
use resetline_store::MemoryStore;
use resetline_store_redis::testing::RedisServer;
use tower::ServiceExt;

#[path = "support/mod.rs"]
mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[inline(never)]
fn one_webhook(
    rt: &tokio::runtime::Runtime,
    router: &axum::Router,
    req: Request<Body>,
) -> Response<Body> {
    rt.block_on(router.clone().oneshot(req))
        .unwrap_or_else(|e| match e {})
}

/// The app on `store` (with `leases`, the store's call leases, for Redis) and a function that
/// benchmarks first Gather callbacks of fresh calls through it as `name`.
fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    engine: resetline_engine::Engine,
    store: Arc<dyn SessionStore>,
    leases: Option<Arc<dyn resetline_engine::CallLeases>>,
) {
    let registry = support::registry().expect("flows");
    let loaded = registry.current(support::FLOW).expect("flow");
    let mut state = AppState::new(
        support::PUBLIC,
        resetline_engine::Secret::new(support::TOKEN),
        engine.clone(),
        registry.clone(),
        store.clone(),
        Arc::new(support::CountingAudit::default()),
        support::root().join("voice-prompts"),
    );
    if let Some(leases) = leases {
        state = state.with_leases(leases).expect("leases");
    }
    let router = app(state);
    let mut next = 0usize;
    c.bench_function(name, |b| {
        b.iter_batched(
            || {
                let sid = support::call_sid(next);
                next += 1;
                let path = rt
                    .block_on(support::create_call(&engine, &loaded, store.as_ref(), &sid))
                    .expect("call created");
                Request::post(path.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header(
                        resetline_twiml::signature::HEADER_NAME,
                        support::signature(support::PUBLIC, &path, &sid),
                    )
                    .body(Body::from(support::body(&sid)))
                    .expect("request")
            },
            |req| {
                let res = one_webhook(rt, &router, req);
                assert_eq!(res.status(), 200);
                black_box(res)
            },
            BatchSize::SmallInput,
        );
    });
}

/// An unsigned 64 KiB body of `a&a&...` (32,768 empty form pairs) posted to a Gather
/// callback URL of the same app (issue 22, finding 3): what refusing one costs, to compare
/// with `signed_gather_step_in_process`, a whole step.
fn bench_pair_flood(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    engine: resetline_engine::Engine,
) {
    let state = AppState::new(
        support::PUBLIC,
        resetline_engine::Secret::new(support::TOKEN),
        engine,
        support::registry().expect("flows"),
        Arc::new(MemoryStore::new(Arc::new(SystemClock), 1_000)),
        Arc::new(support::CountingAudit::default()),
        support::root().join("voice-prompts"),
    );
    let router = app(state);
    let flood = axum::body::Bytes::from("a&".repeat(32 * 1024));
    // Unsigned: any step token will do, the request is refused before the call is looked up.
    let path = format!("/voice/{}/step/1", support::FLOW);
    c.bench_function("unsigned_pair_flood_in_process", |b| {
        b.iter_batched(
            || {
                Request::post(path.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header(resetline_twiml::signature::HEADER_NAME, "x")
                    .body(Body::from(flood.clone()))
                    .expect("request")
            },
            |req| {
                let res = one_webhook(rt, &router, req);
                assert!(res.status().is_client_error());
                black_box(res)
            },
            BatchSize::SmallInput,
        );
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = support::engine(dir.path()).expect("engine");
    let store = Arc::new(MemoryStore::new(Arc::new(SystemClock), 10_000_000));
    bench_store(
        c,
        &rt,
        "signed_gather_step_in_process",
        engine.clone(),
        store,
        None,
    );
    bench_pair_flood(c, &rt, engine.clone());

    let Ok(server) = RedisServer::start(dir.path(), false) else {
        eprintln!("redis-server not installed: the Redis variant is skipped");
        return;
    };
    let redis = rt
        .block_on(async {
            let redis = resetline_store_redis::RedisStore::connect(
                &resetline_store_redis::RedisConfig {
                    endpoint: resetline_store_redis::RedisEndpoint::Url(
                        resetline_engine::Secret::new(server.url()),
                    ),
                    password: None,
                    username: None,
                    tls: false,
                    key_prefix: "bench:".into(),
                    timeout: std::time::Duration::from_secs(2),
                    ended_call_ttl: std::time::Duration::from_millis(
                        resetline_store::ENDED_CALL_TTL_MS,
                    ),
                },
                Arc::new(SystemClock),
                &resetline_engine::OsRandom,
            )?;
            redis.check().await;
            Ok::<_, resetline_store_redis::RedisConfigError>(redis)
        })
        .expect("redis store");
    let engine = resetline_engine::Engine {
        lockouts: Arc::new(redis.clone()),
        ..engine
    };
    bench_store(
        c,
        &rt,
        "signed_gather_step_in_process_redis",
        engine,
        Arc::new(redis.clone()),
        Some(Arc::new(redis)),
    );
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
