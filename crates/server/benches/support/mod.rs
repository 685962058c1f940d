//! What the webhook benchmarks share (`benches/webhook.rs` in process, `examples/bench_target.rs`
//! over TCP): the engine as `resetline demo` runs it, minus the parts that would measure
//! something else, and live calls waiting at the first Gather with their signed callbacks.
//!
//! The engine has the product's embedded directory with the demo users, recording control that
//! the carrier acknowledges at once (no Twilio REST round trip), and an audit sink that counts
//! records and drops them (the sinks have their own benchmarks): what is measured is the
//! engine's own work.

#![allow(dead_code, unreachable_pub)] // each benchmark uses part of it

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use resetline_engine::{
    AuditSink, BackendError, BoxFuture, Engine, Event, OsRandom, Recording, RecordingAck,
    RecordingChange, Secret, SessionStore, SystemClock,
};
use resetline_server::Registry;
use resetline_server::registry::Loaded;

/// The public URL both apps check signatures against (with the app's port appended).
pub const PUBLIC: &str = "http://127.0.0.1";
/// The carrier auth token of the benchmark.
pub const TOKEN: &str = "bench-token";
/// The flow every benchmark call runs.
pub const FLOW: &str = "pin-reset";
/// The employee ID each benchmark call enters (a demo user, `examples/demo/users.yaml`).
pub const EMPLOYEE_ID: &str = "100001";
/// The path of the callback of the Gather call `s` waits at (its step token is random).
pub fn step_path(s: &resetline_engine::Session) -> String {
    format!("/voice/{FLOW}/step/{}", s.token)
}

/// Counts audit records and drops them.
#[derive(Debug, Default)]
pub struct CountingAudit(pub AtomicU64);

impl AuditSink for CountingAudit {
    fn append(
        &self,
        records: Vec<resetline_audit::Record>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        self.0.fetch_add(records.len() as u64, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

/// The carrier acknowledges every recording pause/resume at once.
#[derive(Debug)]
pub struct Acknowledged;

impl Recording for Acknowledged {
    fn change<'a>(
        &'a self,
        _call_sid: &'a str,
        _change: RecordingChange,
    ) -> BoxFuture<'a, Result<RecordingAck, BackendError>> {
        Box::pin(async { Ok(RecordingAck::Done) })
    }
}

pub use resetline_testkit::root;

/// The shipped flows, loaded and checked.
pub fn registry() -> Result<Arc<Registry>, String> {
    let registry = Arc::new(Registry::default());
    let root = root();
    registry.load_dir(&root.join("flows"), &root.join("voice-prompts"));
    registry
        .current(FLOW)
        .map(|_| registry)
        .ok_or_else(|| format!("{FLOW} did not load"))
}

/// The engine, with a copy of the demo users in `dir` (the embedded directory rewrites its
/// file when a PIN changes).
pub fn engine(dir: &Path) -> Result<Engine, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let users = dir.join("users.yaml");
    std::fs::copy(root().join("examples/demo/users.yaml"), &users)?;
    let directory = resetline_connectors::embedded::EmbeddedDirectory::load(&users)?;
    Ok(Engine {
        catalogs: Arc::new(Default::default()),
        directory: Arc::new(directory),
        messenger: Arc::new(resetline_engine::testing::MemoryMessenger::new(Arc::new(
            resetline_engine::testing::CallLog::default(),
        ))),
        tickets: Arc::new(resetline_engine::testing::MemoryTickets::new(Arc::new(
            resetline_engine::testing::CallLog::default(),
        ))),
        http: Arc::new(resetline_engine::testing::NoHttp),
        counters: Arc::new(resetline_engine::testing::NoCounters),
        limits: Default::default(),
        lockouts: Arc::new(resetline_store::MemoryLockouts::new()),
        recording: Arc::new(Acknowledged),
        clock: Arc::new(SystemClock),
        random: Arc::new(OsRandom),
        journal: Arc::new(resetline_engine::testing::MemoryAudit::default()),
        hash_key: Arc::new(Secret::new("k".repeat(32))),
        budget: Duration::from_secs(4),
        step_budget: Duration::from_secs(12),
    })
}

/// Call `i`'s CallSid.
pub fn call_sid(i: usize) -> String {
    format!("CA{i:032x}")
}

/// A new call's session after the incoming-call webhook: waiting at the employee-ID Gather.
pub async fn new_call(engine: &Engine, loaded: &Loaded, sid: &str) -> resetline_engine::Session {
    let engine = Engine {
        catalogs: loaded.catalogs.clone(),
        ..engine.clone()
    };
    let mut s = engine.new_session(&loaded.flow, sid, "+15555550100");
    engine.step(&loaded.flow, &mut s, Event::Start).await;
    s
}

/// Creates call `sid` in `store`, waiting at the first Gather; the path of its callback.
pub async fn create_call(
    engine: &Engine,
    loaded: &Loaded,
    store: &dyn SessionStore,
    sid: &str,
) -> Result<String, String> {
    let s = new_call(engine, loaded, sid).await;
    let path = step_path(&s);
    store
        .save(s, 0, 3_600_000)
        .await
        .map(|_| path)
        .map_err(|e| e.to_string())
}

/// The form body of every benchmark Gather callback, with `{CallSid}` where the call id goes:
/// `BENCH_BODY_TEMPLATE` (set by `scripts/bench-webhooks` with `BENCH_BODY=twilio` to the 28
/// parameters of a captured Twilio Gather payload, in Twilio's order, protocol.md §1), or
/// the call id and the digits alone.
pub fn body_template() -> String {
    std::env::var("BENCH_BODY_TEMPLATE")
        .unwrap_or_else(|_| format!("CallSid={{CallSid}}&Digits={EMPLOYEE_ID}"))
}

/// The form body of call `sid`'s first Gather callback.
pub fn body(sid: &str) -> String {
    body_template().replace("{CallSid}", sid)
}

/// `X-Twilio-Signature` of call `sid`'s first Gather callback, posted to `path`, for an app at
/// `public_url`.
pub fn signature(public_url: &str, path: &str, sid: &str) -> String {
    let params = resetline_twiml::params::parse_owned(body(sid).as_bytes());
    resetline_twiml::signature::compute(TOKEN.as_bytes(), &format!("{public_url}{path}"), &params)
}
