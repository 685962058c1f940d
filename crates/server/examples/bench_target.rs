//! Load-test target for `scripts/bench-webhooks` (not part of the product).
//!
//! Serves, in one process and on two ports: (1) the real `app(state)` with the shipped
//! `pin-reset` flow, the embedded directory with the demo users (as `resetline demo`),
//! recording control that the carrier acknowledges at once, and the memory session store; (2) a bare axum handler answering every POST with a fixed TwiML string.
//! Before serving it creates `--calls` live calls (each at its first Gather, as after the
//! incoming-call webhook), writes one signed Gather callback per call to `<dir>/requests.txt`
//! (`CallSid signature`), and reports resident memory per live session.
//!
//! With `<redis_app_port> <redis_url>`, it also serves (3) the same `app(state)` with the Redis
//! store (sessions, lockouts and per-call leases in Redis, as replicas run it), creates the
//! same live calls there, and reports Redis memory per live call (`INFO memory` before and
//! after) in `<dir>/memory.txt`. Both apps check signatures against the same public URL, so
//! one requests file serves both.
//!
//! Usage: `bench_target <dir> <calls> <app_port> <bare_port> [<redis_app_port> <redis_url>]`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use resetline_engine::testing::CallLog;
use resetline_engine::{
    BackendError, BoxFuture, Engine, Event, OsRandom, Recording, RecordingAck, RecordingChange,
    Secret, SessionStore, SystemClock,
};
use resetline_server::{AppState, Registry, app};
use resetline_store::MemoryStore;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PUBLIC: &str = "http://127.0.0.1";
const TOKEN: &str = "bench-token";
const BARE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather action=\"http://127.0.0.1/voice/pin-reset/step/2\" finishOnKey=\"#\" method=\"POST\" timeout=\"3\"><Say language=\"en-US\" voice=\"Polly.Joanna\">Please enter your current PIN, then press pound.</Say><Pause length=\"2\" /></Gather><Redirect method=\"POST\">http://127.0.0.1/voice/pin-reset/step/2/timeout</Redirect></Response>";

/// Counts audit records and drops them: the benchmark measures the step, not a disk (the file
/// sink's own figures are in BENCHMARKS.md).
#[derive(Debug, Default)]
struct CountingAudit(std::sync::atomic::AtomicU64);

impl resetline_engine::AuditSink for CountingAudit {
    fn append(
        &self,
        records: Vec<resetline_audit::Record>,
    ) -> resetline_engine::BoxFuture<'_, Result<(), resetline_engine::BackendError>> {
        self.0
            .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

/// The carrier acknowledges every recording pause/resume at once (the benchmark measures the
/// step, not Twilio's REST API).
#[derive(Debug)]
struct Acknowledged;

impl Recording for Acknowledged {
    fn change<'a>(
        &'a self,
        _call_sid: &'a str,
        _change: RecordingChange,
    ) -> BoxFuture<'a, Result<RecordingAck, BackendError>> {
        Box::pin(async { Ok(RecordingAck::Done) })
    }
}

/// The employee ID each benchmark call enters (a demo user, `examples/demo/users.yaml`).
const EMPLOYEE_ID: &str = "100001";

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .ok_or("usage: bench_target <dir> <calls> <app_port> <bare_port>")?,
    );
    let calls: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let app_port: u16 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(18081);
    let bare_port: u16 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(18082);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");

    let clock = Arc::new(SystemClock);
    std::fs::create_dir_all(&dir)?;
    let users = dir.join("users.yaml");
    std::fs::copy(root.join("examples/demo/users.yaml"), &users)?;
    let directory = resetline_connectors::embedded::EmbeddedDirectory::load(&users)?;
    let engine = Engine {
        catalogs: Arc::new(Default::default()),
        directory: Arc::new(directory),
        messenger: Arc::new(resetline_engine::testing::MemoryMessenger::new(Arc::new(
            CallLog::default(),
        ))),
        tickets: Arc::new(resetline_engine::testing::MemoryTickets::new(Arc::new(
            CallLog::default(),
        ))),
        http: Arc::new(resetline_engine::testing::NoHttp),
        counters: Arc::new(resetline_engine::testing::NoCounters),
        limits: Default::default(),
        lockouts: Arc::new(resetline_store::MemoryLockouts::new()),
        recording: Arc::new(Acknowledged),
        clock: clock.clone(),
        random: Arc::new(OsRandom),
        hash_key: Arc::new(Secret::new("k".repeat(32))),
        budget: Duration::from_secs(4),
        step_budget: Duration::from_secs(12),
    };
    let registry = Arc::new(Registry::default());
    registry.load_dir(&root.join("flows"), &root.join("voice-prompts"));
    let loaded = registry
        .current("pin-reset")
        .ok_or("pin-reset did not load")?;
    let store = Arc::new(MemoryStore::new(clock.clone(), calls + 10));
    let engine_for_flow = Engine {
        catalogs: loaded.catalogs.clone(),
        ..engine.clone()
    };

    // Live calls, each waiting at the employee-ID Gather.
    let before = rss_bytes();
    let mut requests = String::with_capacity(calls * 64);
    let mut stored_bytes = 0usize;
    for i in 0..calls {
        let sid = format!("CA{i:032x}");
        let mut s = engine_for_flow.new_session(&loaded.flow, &sid, "+15555550100");
        engine_for_flow
            .step(&loaded.flow, &mut s, Event::Start)
            .await;
        if i == 0 {
            stored_bytes = resetline_store::encode(&s)
                .map_err(|e| e.to_string())?
                .len();
        }
        store
            .save(s, 0, 3_600_000)
            .await
            .map_err(|e| e.to_string())?;
        let params = vec![
            ("CallSid".to_string(), sid.clone()),
            ("Digits".to_string(), EMPLOYEE_ID.to_string()),
        ];
        let sig = resetline_twiml::signature::compute(
            TOKEN.as_bytes(),
            &format!("{PUBLIC}:{app_port}/voice/pin-reset/step/1"),
            &params,
        );
        requests.push_str(&format!("{sid} {sig}\n"));
    }
    let after = rss_bytes();
    std::fs::write(dir.join("requests.txt"), requests)?;
    let per_session = after.saturating_sub(before) as f64 / calls as f64;
    let mut memory = format!(
        "live_sessions {calls}\nrss_before_bytes {before}\nrss_after_bytes {after}\nrss_per_session_bytes {per_session:.0}\nsession_stored_bytes {stored_bytes}\n"
    );

    // The same calls in Redis, for the Redis-backed app.
    let redis_app = match (args.get(5).and_then(|a| a.parse::<u16>().ok()), args.get(6)) {
        (Some(port), Some(url)) => {
            let redis = resetline_store_redis::RedisStore::connect(
                &resetline_store_redis::RedisConfig {
                    url: Secret::new(url.as_str()),
                    password: None,
                    username: None,
                    tls: false,
                    key_prefix: "bench:".into(),
                    timeout: Duration::from_secs(2),
                },
                clock.clone(),
                &OsRandom,
            )?;
            redis.start_health_checks(Duration::from_secs(1));
            let mut info = redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            let used = |text: String| -> u64 {
                text.lines()
                    .find_map(|l| l.strip_prefix("used_memory:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            let before: u64 = used(
                redis::cmd("INFO")
                    .arg("memory")
                    .query_async(&mut info)
                    .await?,
            );
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..calls {
                let (redis, engine, flow) =
                    (redis.clone(), engine_for_flow.clone(), loaded.clone());
                tasks.spawn(async move {
                    let sid = format!("CA{i:032x}");
                    let mut s = engine.new_session(&flow.flow, &sid, "+15555550100");
                    engine.step(&flow.flow, &mut s, Event::Start).await;
                    redis.save(s, 0, 3_600_000).await.map(|_| ())
                });
                while tasks.len() >= 64 {
                    if let Some(done) = tasks.join_next().await {
                        done?.map_err(|e| e.to_string())?;
                    }
                }
            }
            while let Some(done) = tasks.join_next().await {
                done?.map_err(|e| e.to_string())?;
            }
            let after: u64 = used(
                redis::cmd("INFO")
                    .arg("memory")
                    .query_async(&mut info)
                    .await?,
            );
            memory.push_str(&format!(
                "redis_used_memory_before_bytes {before}\nredis_used_memory_after_bytes {after}\nredis_bytes_per_live_call {:.0}\n",
                after.saturating_sub(before) as f64 / calls as f64
            ));
            let engine = Engine {
                lockouts: Arc::new(redis.clone()),
                ..engine.clone()
            };
            let state = AppState::new(
                &format!("{PUBLIC}:{app_port}"),
                Secret::new(TOKEN),
                engine,
                registry.clone(),
                Arc::new(redis.clone()),
                Arc::new(CountingAudit::default()),
                root.join("voice-prompts"),
            )
            .with_leases(Arc::new(redis))?;
            Some((port, state))
        }
        _ => None,
    };
    std::fs::write(dir.join("memory.txt"), memory)?;

    let audit = Arc::new(CountingAudit::default());
    let state = AppState::new(
        &format!("{PUBLIC}:{app_port}"),
        Secret::new(TOKEN),
        engine,
        registry.clone(),
        store,
        audit.clone(),
        root.join("voice-prompts"),
    );
    let real = tokio::net::TcpListener::bind(("127.0.0.1", app_port)).await?;
    let bare = tokio::net::TcpListener::bind(("127.0.0.1", bare_port)).await?;
    let bare_app = Router::new().route(
        "/{*path}",
        post(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                BARE,
            )
        }),
    );
    let redis_served = async {
        match redis_app {
            Some((port, state)) => {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
                std::fs::write(dir.join("ready-redis"), "ready\n")?;
                axum::serve(listener, app(state)).await
            }
            None => std::future::pending().await,
        }
    };
    std::fs::write(dir.join("ready"), "ready\n")?;
    tokio::select! {
        r = axum::serve(real, app(state)) => r?,
        r = axum::serve(bare, bare_app) => r?,
        r = redis_served => r?,
    }
    Ok(())
}
