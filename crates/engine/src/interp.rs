//! The interpreter: one step of a call per carrier event.
//!
//! A step validates the event's step token (a retried webhook replays the stored answer and
//! repeats no effect; any other token is refused and audited), then walks the flow from the
//! current node: nodes that need no caller input run at once (lookups, branches, prompts), and
//! the walk stops at the first node that waits for the caller, a transfer, or the end of the
//! call. Transitions keep the rules that cannot live in the flow file: `limit` visits,
//! recording paused before the first node of a `secure` section and resumed on every way out,
//! and `max_call_seconds`.
//!
//! This file holds the step itself (token check, replay, time limit) and the types; the walk
//! is `drive.rs`, time budgets `deadline.rs`, what the caller hears `speech.rs`, recording
//! around secure sections `secure.rs`, the journal of effect intents `journal.rs`, and each
//! family of node kinds its own module: `input.rs` (menu, gather, the gather every input node
//! emits), `codes.rs` (code.send, code.verify, comfort loop), `pin.rs` and `reserve.rs`
//! (pin.verify, lockouts), `new_secret.rs` (set_secret), `directory.rs` (directory.find,
//! decoys), `transfer.rs`, `tickets.rs` (ticket, notify), `http.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use resetline_flow::{Catalogs, Flow};

use crate::action::Action;
use crate::backend::{Counters, Directory, Messenger, Recording, Tickets};
use crate::clock::{Clock, Random};
use crate::secret::Secret;
use crate::session::{Answer, Last, Session};
use resetline_audit::{EventType as Ev, MaskedNumber, Outcome as Out, Record};

mod codes;
mod deadline;
mod directory;
mod drive;
mod http;
mod input;
mod journal;
mod new_secret;
mod pin;
mod reserve;
mod secure;
mod speech;
mod tickets;
mod transfer;

use deadline::DEADLINE;
pub use deadline::{finish_by, until};

/// What a carrier told us.
#[derive(Debug)]
pub enum Event {
    /// The call arrived (the first webhook).
    Start,
    /// Digits for the step `token` (possibly empty when the carrier posts an empty result).
    Digits {
        /// Step token from the action URL.
        token: u64,
        /// The digits, wrapped at the edge.
        digits: Secret,
    },
    /// The gather for step `token` ended without input.
    Timeout {
        /// Step token.
        token: u64,
    },
    /// A transfer for step `token` ended (`QueueResult` / `DialCallStatus`).
    Transfer {
        /// Step token.
        token: u64,
        /// The carrier's result word.
        result: String,
    },
    /// The call ended (status callback `completed` and friends).
    Hangup,
}

/// The result of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the carrier should do.
    pub actions: Vec<Action>,
    /// True when this answers a retried request: the stored answer was replayed and nothing
    /// else happened.
    pub replayed: bool,
    /// Audit records of what happened in this step, in order (none for a replay).
    pub audit: Vec<Record>,
    /// How many of `audit`'s first records the engine already wrote to its journal during
    /// the step (with an effect's intent); the caller appends the rest.
    pub journaled: usize,
}

/// The interpreter with its backends.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Prompt catalogs.
    pub catalogs: Arc<Catalogs>,
    /// The directory.
    pub directory: Arc<dyn Directory>,
    /// Recording control.
    pub recording: Arc<dyn Recording>,
    /// SMS and email.
    pub messenger: Arc<dyn Messenger>,
    /// The ticket system.
    pub tickets: Arc<dyn Tickets>,
    /// HTTP data actions (`http` nodes).
    pub http: Arc<dyn crate::backend::HttpActions>,
    /// Windowed counters shared across calls (send caps).
    pub counters: Arc<dyn Counters>,
    /// PIN lockout state shared across calls.
    pub lockouts: Arc<dyn crate::backend::Lockouts>,
    /// Limits on sending one-time codes.
    pub limits: Arc<crate::backend::SendLimits>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Randomness.
    pub random: Arc<dyn Random>,
    /// The audit journal: an effect's intent must be written here before the effect
    /// (`interp/journal.rs`). The server points it at its audit sink.
    pub journal: Arc<dyn crate::backend::AuditSink>,
    /// Key for keyed hashes of secrets held between webhooks (at least 32 bytes).
    pub hash_key: Arc<Secret>,
    /// Time budget for one backend call; keep well under the carrier's 15 s.
    pub budget: Duration,
    /// Time budget for a whole step (all its backend calls together); keep under 15 s.
    pub step_budget: Duration,
}

/// How a node finished.
enum Flowing<'f> {
    /// Go to a node (its id, borrowed from the flow: a hop allocates nothing).
    Goto(&'f str),
    /// Take an outcome edge.
    Outcome(&'static str),
    /// Stop: the call waits for the caller or the carrier.
    Wait,
    /// The call ended.
    End,
}

/// Node kinds this build runs. Flows with other kinds are refused at load time with a clear
/// message, never half-run.
pub const SUPPORTED: &[&str] = &[
    "say",
    "menu",
    "gather",
    "branch",
    "set",
    "directory.find",
    "code.send",
    "code.verify",
    "notify",
    "ticket",
    "pin.verify",
    "set_secret",
    "secure",
    "http",
    "transfer",
    "hangup",
];

impl Engine {
    /// Names the nodes this build cannot run, as `node (kind)`.
    pub fn unsupported(flow: &Flow) -> Vec<String> {
        flow.nodes
            .iter()
            .filter(|n| !SUPPORTED.contains(&n.kind.name()))
            .map(|n| format!("{} ({})", n.id.value, n.kind.name()))
            .collect()
    }

    /// A new session for a call that just arrived.
    pub fn new_session(&self, flow: &Flow, call_sid: &str, caller: &str) -> Session {
        Session::new(
            call_sid,
            &flow.id.value,
            &flow.version_key(),
            caller,
            self.clock.now_ms(),
            &flow.settings.default_locale.value,
        )
    }

    /// Runs one step. `session` must belong to `flow` (same id and version). Every backend
    /// call gets `budget`, and all of them together at most `step_budget`, ending by the
    /// caller's deadline ([`finish_by`]) when that comes first, so the carrier is answered in
    /// time (a call that runs out takes the flow's error path).
    pub async fn step(&self, flow: &Flow, s: &mut Session, event: Event) -> Step {
        let own = tokio::time::Instant::now() + self.step_budget;
        let deadline = DEADLINE.try_with(|by| own.min(*by)).unwrap_or(own);
        DEADLINE
            .scope(deadline, self.step_inner(flow, s, event))
            .await
    }

    /// One step within its deadline: the token check, then the walk from the event.
    async fn step_inner(&self, flow: &Flow, s: &mut Session, event: Event) -> Step {
        let token = match &event {
            Event::Start => 0,
            Event::Digits { token, .. }
            | Event::Timeout { token }
            | Event::Transfer { token, .. } => *token,
            Event::Hangup => {
                self.hangup(flow, s).await;
                let audit = std::mem::take(&mut s.pending_audit);
                return Step {
                    actions: Vec::new(),
                    replayed: false,
                    audit,
                    journaled: std::mem::take(&mut s.journaled),
                };
            }
        };
        // The first webhook carries token 0, which only a call that has not started expects;
        // every later one the random token of the step it answers.
        let first = matches!(event, Event::Start);
        if token != s.token || s.ended.is_some() || first != (token == 0) {
            return self.not_current(s, token);
        }
        let fresh = self.fresh_token();
        if let Ok(next) = fresh {
            s.token = next;
        }
        let mut out = Vec::new();
        let mut secrets: HashMap<String, Secret> = HashMap::new();
        let max_ms = flow
            .settings
            .max_call_seconds
            .as_ref()
            .map_or(600_000, |m| u64::from(m.value) * 1000);
        if token == 0 {
            let r = self
                .record(s, Ev::SessionCreated, Out::Info)
                .with_reason("incoming_call");
            s.pending_audit.push(r);
        }
        if fresh.is_err() {
            // No unpredictable token for the next step: the call ends rather than go on with
            // one an attacker could guess.
            tracing::error!(call = %s.call_sid, "no randomness for the next step token; ending the call");
            self.say_key(flow, s, "technical_difficulty", &mut out);
            self.end(flow, s, "error", &mut out).await;
        } else if self.clock.now_ms().saturating_sub(s.started_ms) > max_ms {
            self.say_key(flow, s, "call_time_limit", &mut out);
            self.end(flow, s, "time_limit", &mut out).await;
        } else {
            let first = match event {
                Event::Start => Flowing::Goto(&flow.start.value),
                Event::Digits { digits, .. } => {
                    self.input(flow, s, Some(digits), &mut out, &mut secrets)
                        .await
                }
                Event::Timeout { .. } => self.input(flow, s, None, &mut out, &mut secrets).await,
                Event::Transfer { result, .. } => self.transfer_result(flow, s, &result),
                Event::Hangup => Flowing::End,
            };
            self.drive(flow, s, first, &mut out, &mut secrets).await;
        }
        s.last = Some(Last {
            token,
            answer: Answer::of(&out),
        });
        let audit = std::mem::take(&mut s.pending_audit);
        Step {
            actions: out,
            replayed: false,
            audit,
            journaled: std::mem::take(&mut s.journaled),
        }
    }

    /// The answer to a webhook whose token is not the one the call waits for. Nothing runs
    /// either way: a retry of the last answered webhook (its token) gets that answer again;
    /// anything else (an older step's token, another call's, a previous process's, any step
    /// of an ended call) is refused, audited (`input_validation_fail`, reason
    /// `stale_step_token` or `ended_call`) and answered with the call's last answer too, so a
    /// carrier that posts late does not leave the caller in silence.
    fn not_current(&self, s: &Session, token: u64) -> Step {
        let retry = s.last.as_ref().is_some_and(|last| last.token == token);
        let audit = if retry {
            Vec::new()
        } else {
            let reason = if s.ended.is_some() {
                "ended_call"
            } else {
                "stale_step_token"
            };
            // Neither token is logged: they are how a step is addressed. The server logs the
            // refusal when it audits it (a flood of replays floods neither).
            tracing::debug!(call = %s.call_sid, node = %s.node, reason, "step token refused");
            vec![
                self.record(s, Ev::InputValidationFail, Out::Failure)
                    .with_reason(reason),
            ]
        };
        let actions = match s.last.as_ref().map(|l| l.answer.actions()) {
            Some(Ok(actions)) => actions,
            Some(Err(e)) => {
                tracing::error!(call = %s.call_sid, error = %e, "stored answer unreadable; answering with nothing");
                Vec::new()
            }
            None => Vec::new(),
        };
        Step {
            actions,
            replayed: true,
            audit,
            journaled: 0,
        }
    }

    /// A new step token: 64 bits from the injected CSPRNG, never 0 (the first webhook's). A
    /// fresh value per step, kept in the call's session and compared there: a token is good
    /// for one step of one call, and a call started again after a restart (the memory store
    /// forgets) never issues a token its earlier life did, so captured step URLs match nothing.
    fn fresh_token(&self) -> Result<u64, crate::clock::RandomError> {
        for _ in 0..4 {
            let mut raw = [0u8; 8];
            self.random.fill(&mut raw)?;
            let token = u64::from_le_bytes(raw);
            if token != 0 {
                return Ok(token);
            }
        }
        Err(crate::clock::RandomError)
    }

    /// An audit record about `s` now, at its current node.
    fn record(&self, s: &Session, event: Ev, outcome: Out) -> Record {
        let nanos = i128::from(self.clock.now_ms()) * 1_000_000;
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        // Every field at once: `Record::new` would fill in the unknown account only for it
        // to be replaced, an allocation per record.
        Record {
            id: None,
            time,
            event,
            call_id: s.call_sid.clone(),
            account: s
                .account
                .clone()
                .unwrap_or_else(|| resetline_audit::UNKNOWN_ACCOUNT.to_owned()),
            caller: MaskedNumber::mask(&s.caller).ok(),
            destination: None,
            factor: None,
            outcome,
            reason: String::new(),
            node: s.node.clone(),
            flow_id: s.flow_id.clone(),
            flow_version: s.flow_version.clone(),
            details: Default::default(),
        }
    }

    /// Records `event` about `s` now with `outcome` and `reason`, for the step's audit.
    fn audit(&self, s: &mut Session, event: Ev, outcome: Out, reason: &str) {
        let r = self.record(s, event, outcome).with_reason(reason);
        s.pending_audit.push(r);
    }
}

/// `user.mobile` -> `["user", "mobile"]`.
fn path_of(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_string).collect()
}
