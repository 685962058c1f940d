//! Shared rig for the engine's flow tests: the shipped flows and catalogs, test doubles that
//! log every backend call, a fake clock, and a `Call` that keeps the step token.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use resetline_engine::action::transcript;
use resetline_engine::testing::{
    CallLog, MemoryDirectory, MemoryMessenger, MemoryTickets, MemoryUser, NoCounters,
    ScriptedRecording,
};
use resetline_engine::*;
use resetline_flow::{Catalogs, Flow, SourceMap};

pub use resetline_testkit::root;

pub fn flow(name: &str) -> Flow {
    let shipped = root().join("flows").join(name);
    let path = if shipped.exists() {
        shipped
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/flows")
            .join(name)
    };
    let text = std::fs::read_to_string(&path).expect("flow");
    let compiled = resetline_flow::compile(name, &text, None);
    assert!(compiled.is_ok(), "{:?}", compiled.diagnostics);
    compiled.flow.expect("flow loads")
}

/// How to build a rig.
pub struct Options {
    pub flow: &'static str,
    pub users: Vec<MemoryUser>,
    pub slow_directory: bool,
    pub recording_fails: bool,
    pub messenger: Option<MemoryMessenger>,
    pub tickets_down: bool,
    /// Use real windowed counters (send caps) instead of allow-all.
    pub counters: bool,
    /// Lockout state shared with another rig (calls of one account across rigs).
    pub lockouts: Option<Arc<dyn Lockouts>>,
    /// The directory refuses every new secret with (spoken prompt, backend reason).
    pub directory_rejects: Option<(&'static str, &'static str)>,
    /// Send limits.
    pub limits: SendLimits,
    /// Per-call and per-step budgets (default 200 ms and 12 s).
    pub budgets: Option<(Duration, Duration)>,
    /// HTTP data actions (default: none configured).
    pub http: Option<Arc<dyn HttpActions>>,
    /// The directory itself (replaces the in-memory one built from `users`).
    pub directory: Option<Arc<dyn Directory>>,
    /// The audit journal (default: in memory).
    pub journal: Option<Arc<dyn AuditSink>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flow: "pin-reset.yaml",
            users: vec![MemoryDirectory::dana()],
            slow_directory: false,
            recording_fails: false,
            messenger: None,
            tickets_down: false,
            counters: false,
            limits: Default::default(),
            lockouts: None,
            directory_rejects: None,
            budgets: None,
            http: None,
            directory: None,
            journal: None,
        }
    }
}

pub struct Rig {
    pub engine: Engine,
    pub log: Arc<CallLog>,
    pub clock: FakeClock,
    pub flow: Flow,
    pub messenger: Arc<MemoryMessenger>,
}

pub fn rig(o: Options) -> Rig {
    let flow = o.flow;
    rig_with(o, self::flow(flow))
}

/// A rig running `flow` (e.g. compiled from text in the test).
pub fn rig_with(o: Options, flow: Flow) -> Rig {
    let (catalogs, _) = Catalogs::load_dir(&root().join("voice-prompts"), &mut SourceMap::new());
    let log = Arc::new(CallLog::default());
    let clock = FakeClock::at(1_700_000_000_000);
    let messenger = Arc::new(
        o.messenger
            .unwrap_or_else(|| MemoryMessenger::new(log.clone())),
    );
    let tickets = if o.tickets_down {
        MemoryTickets::new(log.clone()).down()
    } else {
        MemoryTickets::new(log.clone())
    };
    let engine = Engine {
        catalogs: Arc::new(catalogs),
        directory: o.directory.clone().unwrap_or_else(|| {
            Arc::new({
                let d =
                    MemoryDirectory::new(o.users, log.clone()).with_delay(if o.slow_directory {
                        Duration::from_secs(5)
                    } else {
                        Duration::ZERO
                    });
                match &o.directory_rejects {
                    Some(("", reason)) => d.failing_set_secret(reason),
                    Some((prompt, reason)) => d.rejecting(prompt, reason),
                    None => d,
                }
            })
        }),
        recording: Arc::new(if o.recording_fails {
            ScriptedRecording::failing(log.clone())
        } else {
            ScriptedRecording::ok(log.clone())
        }),
        messenger: messenger.clone(),
        tickets: Arc::new(tickets),
        http: o
            .http
            .clone()
            .unwrap_or_else(|| Arc::new(resetline_engine::testing::NoHttp)),
        limits: Arc::new(o.limits.clone()),
        lockouts: o
            .lockouts
            .clone()
            .unwrap_or_else(|| Arc::new(resetline_store::MemoryLockouts::new())),
        counters: if o.counters {
            Arc::new(resetline_store::MemoryCounters::new(Arc::new(
                clock.clone(),
            )))
        } else {
            Arc::new(NoCounters)
        },
        clock: Arc::new(clock.clone()),
        random: Arc::new(OsRandom),
        journal: o
            .journal
            .clone()
            .unwrap_or_else(|| Arc::new(resetline_engine::testing::MemoryAudit::default())),
        hash_key: Arc::new(Secret::new("test-key-test-key-test-key-test-key")),
        budget: o.budgets.map_or(Duration::from_millis(200), |b| b.0),
        step_budget: o.budgets.map_or(Duration::from_secs(12), |b| b.1),
    };
    Rig {
        engine,
        log,
        clock,
        flow,
        messenger,
    }
}

pub fn said(step: &Step) -> String {
    transcript(&step.actions).join(" | ")
}

/// One call; keeps the step token like the carrier would (it follows the action URLs).
pub struct Call<'r> {
    pub rig: &'r Rig,
    pub session: Session,
}

impl<'r> Call<'r> {
    pub async fn start(rig: &'r Rig, sid: &str) -> (Call<'r>, Step) {
        let mut session = rig.engine.new_session(&rig.flow, sid, "+15555550100");
        let step = rig.engine.step(&rig.flow, &mut session, Event::Start).await;
        (Call { rig, session }, step)
    }

    pub async fn press(&mut self, digits: &str) -> Step {
        let token = self.session.token;
        self.rig
            .engine
            .step(
                &self.rig.flow,
                &mut self.session,
                Event::Digits {
                    token,
                    digits: Secret::new(digits),
                },
            )
            .await
    }

    pub async fn silence(&mut self) -> Step {
        let token = self.session.token;
        self.rig
            .engine
            .step(&self.rig.flow, &mut self.session, Event::Timeout { token })
            .await
    }

    pub async fn hang_up(&mut self) -> Step {
        self.rig
            .engine
            .step(&self.rig.flow, &mut self.session, Event::Hangup)
            .await
    }
}
