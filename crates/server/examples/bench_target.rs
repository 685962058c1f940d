//! Load-test target for `scripts/bench-webhooks` (not part of the product).
//!
//! Serves, in one process: (1) the real `app(state)` with the shipped `pin-reset` flow, the
//! embedded directory with the demo users (as `resetline demo`), recording control that the
//! carrier acknowledges at once, and the memory session store; (2) a bare axum handler
//! (the router's fallback) answering every request with a fixed TwiML string; and two handlers between them, which say
//! where the gap goes: (3) "body", the bare handler that first reads the request body, and
//! (4) "floor", routed as the app routes webhooks and passed through the app's own
//! `preflight` (the body under the 64 KiB cap, the form parsed, `X-Twilio-Signature` checked),
//! then answering the same fixed string: what any handler that meets the security
//! requirements pays before it does any call's work.
//! Before serving it creates `--calls` live calls (each at its first Gather, as after the
//! incoming-call webhook), writes one signed Gather callback per call to `<dir>/requests.txt`
//! (`CallSid signature token`, the call's random step token padded to 20 digits so every line
//! has one length) and the body they sign, `{CallSid}` for the call id, to
//! `<dir>/body-template`, and reports resident memory per live session.
//!
//! With `<redis_app_port> <redis_url>`, it also serves (5) the same `app(state)` with the Redis
//! store (sessions, lockouts and per-call leases in Redis, as replicas run it), copies the
//! same live calls there (same step tokens), and reports Redis memory per live call (`INFO memory` before and
//! after) in `<dir>/memory.txt`. All apps check signatures against the same public URL, so
//! one requests file serves them all.
//!
//! The apps and the floor are served by `resetline_server::serve` with its default limits, as
//! `resetline serve` serves the webhook port; the bare and body handlers by `axum::serve`.
//! The memory-store app's admin routes (`/metrics`, with the handler latency histogram) are
//! served on a free loopback port, written to `<dir>/admin-address`.
//!
//! Usage: `bench_target <dir> <calls> <app_port> <bare_port> <body_port> <floor_port>
//! [<redis_app_port> <redis_url>]`; without the body and floor ports those two handlers take
//! any free port (so `scripts/bench-ab` can run several builds side by side).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use resetline_engine::{Engine, OsRandom, Secret, SessionStore, SystemClock};
use resetline_server::{AppState, Limits, admin_app, app, serve};
use resetline_store::MemoryStore;

#[path = "../benches/support/mod.rs"]
mod support;
use support::{CountingAudit, PUBLIC, TOKEN};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BARE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather action=\"http://127.0.0.1/voice/pin-reset/step/2\" finishOnKey=\"#\" method=\"POST\" timeout=\"3\"><Say language=\"en-US\" voice=\"Polly.Joanna\">Please enter your current PIN, then press pound.</Say><Pause length=\"2\" /></Gather><Redirect method=\"POST\">http://127.0.0.1/voice/pin-reset/step/2/timeout</Redirect></Response>";

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
            .ok_or("usage: bench_target <dir> <calls> <app_port> <bare_port> <body_port> <floor_port> [<redis_app_port> <redis_url>]")?,
    );
    let calls: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let app_port: u16 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(18081);
    let bare_port: u16 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(18082);
    let body_port: u16 = args.get(5).and_then(|a| a.parse().ok()).unwrap_or(0);
    let floor_port: u16 = args.get(6).and_then(|a| a.parse().ok()).unwrap_or(0);
    let root = support::root();

    let clock = Arc::new(SystemClock);
    let engine = support::engine(&dir)?;
    let registry = support::registry()?;
    let loaded = registry
        .current(support::FLOW)
        .ok_or("pin-reset did not load")?;
    let store = Arc::new(MemoryStore::new(clock.clone(), calls + 10));

    // Live calls, each waiting at the employee-ID Gather.
    let before = rss_bytes();
    let mut requests = String::with_capacity(calls * 86);
    let mut stored_bytes = 0usize;
    for i in 0..calls {
        let sid = support::call_sid(i);
        let s = support::new_call(&engine, &loaded, &sid).await;
        let (path, token) = (support::step_path(&s), s.token);
        if i == 0 {
            stored_bytes = resetline_store::encode(&s)
                .map_err(|e| e.to_string())?
                .len();
        }
        store
            .save(s, 0, 3_600_000)
            .await
            .map_err(|e| e.to_string())?;
        let sig = support::signature(&format!("{PUBLIC}:{app_port}"), &path, &sid);
        requests.push_str(&format!("{sid} {sig} {token:020}\n"));
    }
    let after = rss_bytes();
    std::fs::write(dir.join("requests.txt"), requests)?;
    std::fs::write(dir.join("body-template"), support::body_template())?;
    let per_session = after.saturating_sub(before) as f64 / calls as f64;
    let mut memory = format!(
        "live_sessions {calls}\nrss_before_bytes {before}\nrss_after_bytes {after}\nrss_per_session_bytes {per_session:.0}\nsession_stored_bytes {stored_bytes}\n"
    );

    // The same calls in Redis, for the Redis-backed app.
    let redis_app = match (args.get(7).and_then(|a| a.parse::<u16>().ok()), args.get(8)) {
        (Some(port), Some(url)) => {
            let redis = resetline_store_redis::RedisStore::connect(
                &resetline_store_redis::RedisConfig {
                    endpoint: resetline_store_redis::RedisEndpoint::Url(Secret::new(url.as_str())),
                    password: None,
                    username: None,
                    tls: false,
                    key_prefix: "bench:".into(),
                    timeout: Duration::from_secs(2),
                    ended_call_ttl: Duration::from_millis(resetline_store::ENDED_CALL_TTL_MS),
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
                let (redis, store) = (redis.clone(), store.clone());
                tasks.spawn(async move {
                    let sid = support::call_sid(i);
                    let (s, _) = store
                        .load(&sid)
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or("a call missing from the memory store")?;
                    redis
                        .save(s, 0, 3_600_000)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
                while tasks.len() >= 64 {
                    if let Some(done) = tasks.join_next().await {
                        done??;
                    }
                }
            }
            while let Some(done) = tasks.join_next().await {
                done??;
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
    // Fallbacks, as the app's webhooks are routed: no path parameters to extract (a
    // `/{*path}` route would make every bare request pay for one).
    let bare_app = Router::new().fallback(|| async { fixed() });
    let body_app = Router::new().fallback(|body: axum::body::Bytes| async move {
        std::hint::black_box(body);
        fixed()
    });
    let check = Arc::new(resetline_server::WebhookCheck::new(
        &format!("{PUBLIC}:{app_port}"),
        &Secret::new(TOKEN),
    ));
    // Routed by a fallback and checked by `preflight`, as `app` routes and checks webhooks.
    let floor_app = Router::new()
        .fallback(
            |axum::extract::State(check): axum::extract::State<
                Arc<resetline_server::WebhookCheck>,
            >,
             req: axum::extract::Request| async move {
                match resetline_server::preflight(&check, req).await {
                    None => fixed().into_response(),
                    Some(refused) => refused,
                }
            },
        )
        .with_state(check);
    let bare = tokio::net::TcpListener::bind(("127.0.0.1", bare_port)).await?;
    let body = tokio::net::TcpListener::bind(("127.0.0.1", body_port)).await?;
    let floor = tokio::net::TcpListener::bind(("127.0.0.1", floor_port)).await?;
    let redis_served = async {
        match redis_app {
            Some((port, state)) => {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
                std::fs::write(dir.join("ready-redis"), "ready\n")?;
                serve(
                    listener,
                    app(state),
                    Limits::default(),
                    std::future::pending(),
                )
                .await;
                Ok::<(), std::io::Error>(())
            }
            None => std::future::pending().await,
        }
    };
    let admin = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    std::fs::write(dir.join("admin-address"), admin.local_addr()?.to_string())?;
    std::fs::write(dir.join("ready"), "ready\n")?;
    let forever = std::future::pending::<()>;
    tokio::select! {
        () = serve(real, app(state.clone()), Limits::default(), forever()) => {}
        () = serve(admin, admin_app(state), Limits::admin(), forever()) => {}
        r = axum::serve(bare, bare_app) => r?,
        r = axum::serve(body, body_app) => r?,
        () = serve(floor, floor_app, Limits::default(), forever()) => {}
        r = redis_served => r?,
    }
    Ok(())
}

/// The bare handlers' answer: a fixed TwiML string of the app's shape.
fn fixed() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        BARE,
    )
}
