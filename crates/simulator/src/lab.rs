//! A lab: the real server (`resetline_server::app`) on a bound loopback port with the
//! in-memory session store, the embedded directory on a scratch copy of a users file, the
//! real Twilio connectors pointed at [`FakeTwilio`], in-memory tickets and audit, and one
//! [`FakeClock`] shared by the server, the fake and the carrier.
//!
//! Invariant: the lab talks to the server only over HTTP, as a carrier does; it reads the
//! session store and the audit sink only to report what happened (nodes visited, outcome).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use resetline_connectors::{
    ByChannel, EmbeddedDirectory, SmsSender, TwilioMessages, TwilioRecording,
};
use resetline_engine::testing::{CallLog, MemoryAudit, MemoryTickets};
use resetline_engine::{Engine, FakeClock, OsRandom, Secret, SessionStore};
use resetline_server::{AppState, Registry, ReloadResult, app};
use resetline_store::{MemoryCounters, MemoryLockouts, MemoryStore};

use crate::carrier::{Call, CallSpec, Carrier};
use crate::rest::{FakeTwilio, Mailbox};

/// The fake account the lab's carrier uses.
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
/// The fake account's auth token.
pub const TOKEN: &str = "simulated-auth-token";
/// The simulated clock starts here: Monday 2026-01-05 09:00:00 UTC.
pub const START_MS: u64 = 1_767_603_600_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Directory of flow files (every `*.yaml` except `*.test.yaml` is loaded).
    pub flows_dir: PathBuf,
    /// Prompt catalogs and audio.
    pub prompts_dir: PathBuf,
    /// Users file for the embedded directory (copied; the original is never changed).
    pub users: PathBuf,
}

/// Why a lab did not start.
#[derive(Debug)]
pub struct LabError(pub String);

impl std::fmt::Display for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LabError {}

/// A running server, its fakes and the carrier to call it.
#[derive(Debug)]
pub struct Lab {
    /// The server's public URL (`http://127.0.0.1:port`).
    pub public: String,
    /// The carrier.
    pub carrier: Carrier,
    /// The fake Twilio REST API and handset.
    pub twilio: FakeTwilio,
    /// Audit records the server wrote.
    pub audit: Arc<MemoryAudit>,
    /// Sessions.
    pub store: Arc<MemoryStore>,
    /// Loaded flows.
    pub registry: Arc<Registry>,
    /// The shared clock.
    pub clock: FakeClock,
    /// Ticket calls (`ticket open`, `ticket close INC...`).
    pub tickets: Arc<CallLog>,
    /// The ticket system (`set_down` takes it down).
    pub ticket_system: Arc<MemoryTickets>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _scratch: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A listener on a free loopback port, and its address.
async fn bind() -> Result<(tokio::net::TcpListener, SocketAddr), LabError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| LabError(format!("bind: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| LabError(format!("bind: {e}")))?;
    Ok((listener, addr))
}

/// Serves `router` on `listener` until the task is aborted.
fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "lab server stopped");
        }
    })
}

impl Lab {
    /// Starts the server and the fakes. Fails when a flow does not load clean.
    ///
    /// # Errors
    /// A flow or catalog refused, the users file unreadable, a port not bound.
    pub async fn start(cfg: &LabConfig) -> Result<Lab, LabError> {
        let clock = FakeClock::at(START_MS);
        let twilio = FakeTwilio::new(ACCOUNT, TOKEN, clock.clone());
        let (fake_listener, fake_addr) = bind().await?;
        let fake_task = serve(fake_listener, twilio.router());
        let fake_url = format!("http://{fake_addr}");

        let (listener, addr) = bind().await?;
        let public = format!("http://{addr}");

        let scratch = tempfile::tempdir().map_err(|e| LabError(format!("tempdir: {e}")))?;
        let users = scratch.path().join("users.yaml");
        std::fs::copy(&cfg.users, &users)
            .map_err(|e| LabError(format!("users file {}: {e}", cfg.users.display())))?;
        let directory =
            EmbeddedDirectory::load(&users).map_err(|e| LabError(format!("users file: {e}")))?;
        let recording = TwilioRecording::new(ACCOUNT, Secret::new(TOKEN))
            .and_then(|r| r.with_base_url(&fake_url))
            .map_err(|e| LabError(format!("recording: {e}")))?;
        let sms = TwilioMessages::new(
            ACCOUNT,
            Secret::new(TOKEN),
            SmsSender::From("+15555550000".into()),
        )
        .and_then(|m| m.with_base_url(&fake_url))
        .and_then(|m| m.with_public_url(&public))
        .map_err(|e| LabError(format!("messages: {e}")))?;
        let messenger = ByChannel::new()
            .sms(Arc::new(sms))
            .email(Arc::new(Mailbox(twilio.clone())));
        let tickets = Arc::new(CallLog::default());
        let ticket_system = Arc::new(MemoryTickets::new(tickets.clone()));
        let audit = Arc::new(MemoryAudit::default());
        let clock_dyn: Arc<dyn resetline_engine::Clock> = Arc::new(clock.clone());
        let engine = Engine {
            catalogs: Arc::new(Default::default()),
            directory: Arc::new(directory),
            recording: Arc::new(recording),
            http: Arc::new(resetline_engine::testing::NoHttp),
            messenger: Arc::new(messenger),
            tickets: ticket_system.clone(),
            counters: Arc::new(MemoryCounters::new(clock_dyn.clone())),
            limits: Default::default(),
            lockouts: Arc::new(MemoryLockouts::new()),
            clock: clock_dyn.clone(),
            random: Arc::new(OsRandom),
            journal: audit.clone(),
            hash_key: Arc::new(Secret::new("simulator-hash-key-0123456789abcdef")),
            budget: Duration::from_secs(4),
            step_budget: Duration::from_secs(12),
        };
        let registry = Arc::new(Registry::default());
        let refused: Vec<String> = registry
            .load_dir(&cfg.flows_dir, &cfg.prompts_dir)
            .into_iter()
            .filter_map(|r| match r {
                ReloadResult::Refused { file, reason } => Some(format!("{file}: {reason}")),
                _ => None,
            })
            .collect();
        if !refused.is_empty() {
            return Err(LabError(format!("flows refused:\n{}", refused.join("\n"))));
        }
        let store = Arc::new(MemoryStore::new(clock_dyn, 1000));
        let state = AppState::new(
            &public,
            Secret::new(TOKEN),
            engine,
            registry.clone(),
            store.clone(),
            audit.clone(),
            cfg.prompts_dir.clone(),
        );
        let server = serve(listener, app(state));
        let carrier = Carrier::new(ACCOUNT, TOKEN, clock.clone())
            .map_err(|e| LabError(e.to_string()))?
            .with_twilio(twilio.clone());
        Ok(Lab {
            public,
            carrier,
            twilio,
            audit,
            store,
            registry,
            clock,
            tickets,
            ticket_system,
            tasks: vec![fake_task, server],
            _scratch: scratch,
        })
    }

    /// A call from `from` to flow `flow`, with the status callback configured.
    pub fn spec(&self, flow: &str, from: &str) -> CallSpec {
        let mut spec = CallSpec::new(&format!("{}/voice/{flow}", self.public), from);
        spec.status_callback = Some(format!("{}/voice/{flow}/status", self.public));
        spec
    }

    /// Places a call.
    pub async fn call(&self, spec: CallSpec) -> Call {
        self.carrier.place(spec).await
    }

    /// Nodes the call entered (the session's visit counts, the start node, and the nodes named
    /// in its audit records).
    pub async fn visited(&self, call_sid: &str) -> BTreeSet<String> {
        let mut nodes = BTreeSet::new();
        if let Ok(Some((s, _))) = self.store.load(call_sid).await {
            nodes.extend(s.visits.keys().cloned());
            if let Some(flow) = self.registry.version(&s.flow_id, &s.flow_version) {
                nodes.insert(flow.flow.start.value.clone());
            }
        }
        for r in self.audit.records() {
            if r.call_id == call_sid && !r.node.is_empty() {
                nodes.insert(r.node.clone());
            }
        }
        nodes
    }

    /// The call's recorded outcome (`reset_done`, `ticket_opened`, `transferred`, ...).
    pub async fn outcome(&self, call_sid: &str) -> Option<String> {
        match self.store.load(call_sid).await {
            Ok(Some((s, _))) => s.ended,
            _ => None,
        }
    }

    /// The call's audit events, in order.
    pub fn audit_events(&self, call_sid: &str) -> Vec<String> {
        self.audit
            .records()
            .iter()
            .filter(|r| r.call_id == call_sid)
            .map(|r| r.event.as_str().to_string())
            .collect()
    }

    /// The id of the loaded flow that came from the file `flow_path`.
    pub fn flow_id_of(&self, flow_path: &Path) -> Option<String> {
        let want = flow_path.file_name()?;
        self.registry.list().keys().find_map(|id| {
            let loaded = self.registry.current(id)?;
            (Path::new(&loaded.flow.file).file_name() == Some(want)).then(|| id.clone())
        })
    }

    /// The node the call is at now (from its session).
    pub async fn current_node(&self, call_sid: &str) -> Option<String> {
        match self.store.load(call_sid).await {
            Ok(Some((s, _))) => Some(s.node),
            _ => None,
        }
    }

    /// Every node of flow `flow` (secure sections included).
    pub fn nodes(&self, flow: &str) -> Vec<String> {
        self.registry
            .current(flow)
            .map(|l| l.flow.nodes.iter().map(|n| n.id.value.clone()).collect())
            .unwrap_or_default()
    }
}

/// The nearest `voice-prompts/` directory in `dir` or above it.
pub fn find_prompts_dir(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join("voice-prompts"))
        .find(|c| c.is_dir())
}
