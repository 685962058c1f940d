//! One signed Gather callback through `app(state)` in process (no TCP, no hyper): the part of
//! a webhook's cost that is Resetline's own. Each iteration is the first Gather callback of a
//! call no other iteration touched (the call is created in the untimed setup), so it does the
//! whole step: form parse, signature, per-call lock, session load, engine step (directory
//! lookup, PIN-lockout check, recording pause, audit records, next prompt), save, render.
//!
//! Run: `cargo bench -p resetline-server --bench webhook`
//!
//! Instruction counts (repeatable where wall time on a shared VM is not), counting only inside
//! `one_webhook`:
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='webhook::one_webhook*'
//! target/release/deps/webhook-<hash> --bench --profile-time 20`

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use resetline_engine::SystemClock;
use resetline_server::{AppState, app};
use resetline_store::MemoryStore;
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

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = support::engine(dir.path()).expect("engine");
    let registry = support::registry().expect("flows");
    let loaded = registry.current(support::FLOW).expect("flow");
    let store = Arc::new(MemoryStore::new(Arc::new(SystemClock), 10_000_000));
    let state = AppState::new(
        support::PUBLIC,
        resetline_engine::Secret::new(support::TOKEN),
        engine.clone(),
        registry.clone(),
        store.clone(),
        Arc::new(support::CountingAudit::default()),
        support::root().join("voice-prompts"),
    );
    let router = app(state);
    let mut next = 0usize;
    c.bench_function("signed_gather_step_in_process", |b| {
        b.iter_batched(
            || {
                let sid = support::call_sid(next);
                next += 1;
                rt.block_on(support::create_call(&engine, &loaded, store.as_ref(), &sid))
                    .expect("call created");
                Request::post(support::STEP_PATH)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header(
                        resetline_twiml::signature::HEADER_NAME,
                        support::signature(support::PUBLIC, &sid),
                    )
                    .body(Body::from(support::body(&sid)))
                    .expect("request")
            },
            |req| {
                let res = one_webhook(&rt, &router, req);
                assert_eq!(res.status(), 200);
                black_box(res)
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
