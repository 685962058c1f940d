//! The interpreter: one step of a call per carrier event.
//!
//! A step validates the event's step token (a retried webhook replays the stored answer and
//! repeats no effect; any other token is refused and audited), then walks the flow from the
//! current node: nodes that need no caller input run at once (lookups, branches, prompts), and
//! the walk stops at the first node that waits for the caller, a transfer, or the end of the
//! call. Transitions keep the rules that cannot live in the flow file: `limit` visits,
//! recording paused before the first node of a `secure` section and resumed on every way out,
//! and `max_call_seconds`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use resetline_flow::model::{Digits, Kind, Node, Prompt, SecretMode, WhenAbsent};
use resetline_flow::prompts::PromptBody;
use resetline_flow::template::{Part, Segment, Template};
use resetline_flow::{Catalogs, Flow};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::action::{Action, Spoken};
use crate::backend::{
    AccountState, BackendError, Counters, Directory, Messenger, NewTicket, OutgoingMessage,
    Recording, RecordingAck, RecordingChange, SendError, SetSecretError, Tickets,
};
use crate::clock::{Clock, Random};
use crate::otp;
use crate::policy::{self, Personal};
use crate::secret::{Secret, scrub_digits};
use crate::session::{Answer, Last, Session, Var, Waiting};
use crate::session::{Delivery, Otp};
use crate::step_url::{StepEvent, step_url};
use resetline_audit::{
    Destination, EventType as Ev, Factor, MaskedEmail, MaskedNumber, Outcome as Out, Record,
};

mod http;
mod journal;
mod reserve;

tokio::task_local! {
    /// When the step in progress must have answered (set by [`Engine::step`], and by
    /// [`finish_by`] for the steps inside it).
    static DEADLINE: tokio::time::Instant;
}

/// Runs `work` with every step in it ending by `by` at the latest (a step still ends
/// `step_budget` after it started when that comes first): the caller's deadline, e.g. what is
/// left of a webhook's time once it waited for its call's lock.
pub async fn finish_by<F: std::future::Future>(by: tokio::time::Instant, work: F) -> F::Output {
    DEADLINE.scope(by, work).await
}

/// `fut`'s output if it is ready by `by`, `None` when `by` passed first. Polled once before
/// any timer is armed: a future that is ready at once (an in-memory store) costs no timer,
/// and is answered even when `by` has passed.
pub async fn until<F: std::future::Future>(by: tokio::time::Instant, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await;
    match first {
        Some(out) => Some(out),
        None => tokio::time::timeout_at(by, fut).await.ok(),
    }
}

/// Most nodes one step may pass through; the checker forbids cycles without input, so this is
/// only a guard against a bug ever spinning a request.
const MAX_HOPS: usize = 200;

/// The record field that marks an enumeration-safe decoy (not a field flows can name).
const DECOY: &str = "decoy";

/// The account a decoy's PIN is checked against: no directory holds it, so the directory runs
/// the dummy check it runs for any unknown account, as slow as a real one.
const NO_ACCOUNT: &str = "resetline-no-such-account";

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

    /// Runs a backend call within the time left for it ([`Engine::remaining`], counted from
    /// now); `None` when it ran out. A call that is ready when first polled (the in-memory
    /// stores, the embedded directory) returns at once and arms no timer; one that has to wait
    /// gets a timer for what is left of its time.
    async fn bounded<F: std::future::Future>(&self, fut: F) -> Option<F::Output> {
        until(self.call_deadline(), fut).await
    }

    /// The time left for the next backend call: `budget`, cut to what remains of the step.
    fn remaining(&self) -> Duration {
        self.left_at(tokio::time::Instant::now())
    }

    /// When the next backend call must have answered: [`Engine::remaining`] from now (one
    /// reading of the clock).
    fn call_deadline(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        now + self.left_at(now)
    }

    /// The time a backend call started at `now` has: `budget`, cut to what remains of the step.
    fn left_at(&self, now: tokio::time::Instant) -> Duration {
        DEADLINE
            .try_with(|step| step.saturating_duration_since(now))
            .unwrap_or(self.budget)
            .min(self.budget)
    }

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

    fn audit(&self, s: &mut Session, event: Ev, outcome: Out, reason: &str) {
        let r = self.record(s, event, outcome).with_reason(reason);
        s.pending_audit.push(r);
    }

    /// Follows moves until the call waits or ends.
    async fn drive<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        mut mv: Flowing<'f>,
        out: &mut Vec<Action>,
        secrets: &mut HashMap<String, Secret>,
    ) {
        for _ in 0..MAX_HOPS {
            mv = match mv {
                Flowing::Wait | Flowing::End => return,
                Flowing::Outcome(outcome) => {
                    match flow.node(&s.node).and_then(|n| edge(flow, n, outcome)) {
                        Some(t) => Flowing::Goto(t),
                        None => {
                            tracing::error!(call = %s.call_sid, node = %s.node, outcome, "no edge for outcome");
                            self.say_key(flow, s, "technical_difficulty", out);
                            self.end(flow, s, "error", out).await;
                            Flowing::End
                        }
                    }
                }
                Flowing::Goto(target) => {
                    tracing::debug!(call = %s.call_sid, from = %s.node, to = %target, "transition");
                    match self.enter(flow, s, target).await {
                        Ok(()) => match flow.node(&s.node) {
                            Some(node) => self.run_node(flow, s, node, out, secrets).await,
                            None => Flowing::End,
                        },
                        Err(m) => m,
                    }
                }
            };
        }
        tracing::error!(call = %s.call_sid, node = %s.node, "too many hops in one step");
        self.say_key(flow, s, "technical_difficulty", out);
        self.end(flow, s, "error", out).await;
    }

    /// Moves the call to `target`, applying limits and secure-section entry and exit.
    async fn enter<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        target: &'f str,
    ) -> Result<(), Flowing<'f>> {
        let mut target = target;
        for _ in 0..MAX_HOPS {
            let Some(node) = flow.node(target) else {
                return Err(Flowing::End);
            };
            // Leaving a secure section: resume recording first.
            let from_section = flow.node(&s.node).and_then(|n| n.section.as_deref());
            if from_section.is_some()
                && from_section != node.section.as_deref()
                && s.recording_paused_ms.is_some()
            {
                self.resume(s).await;
            }
            let visits = match s.visits.get_mut(target) {
                Some(n) => {
                    *n += 1;
                    *n
                }
                None => {
                    s.visits.insert(target.to_owned(), 1);
                    1
                }
            };
            if let Some(limit) = &node.limit
                && visits > limit.visits
            {
                tracing::info!(call = %s.call_sid, node = %target, "visit limit reached");
                target = &limit.then.value;
                continue;
            }
            // Reuses the session's buffer: a hop allocates nothing.
            s.node.clear();
            s.node.push_str(target);
            s.waiting = Waiting::Nothing;
            s.attempts = 0;
            s.pending_secret = None;
            if let Kind::Secure(sec) = &node.kind {
                let skip = flow.settings.recording.pause_behavior
                    == resetline_flow::model::PauseBehavior::Skip;
                let ack = self
                    .within(
                        "recording",
                        self.recording
                            .change(&s.call_sid, RecordingChange::Pause { skip }),
                    )
                    .await;
                match ack {
                    Ok(RecordingAck::Done) => {
                        s.recording_paused_ms = Some(self.clock.now_ms());
                        tracing::info!(call = %s.call_sid, section = %target, "recording paused");
                        self.audit(s, Ev::RecordingPaused, Out::Success, "paused");
                    }
                    Ok(RecordingAck::NoRecording)
                        if flow.settings.recording.when_absent == WhenAbsent::Proceed =>
                    {
                        tracing::info!(call = %s.call_sid, section = %target, "no recording to pause");
                        self.audit(s, Ev::RecordingPaused, Out::Info, "no_recording");
                    }
                    Ok(RecordingAck::NoRecording) => {
                        self.audit(s, Ev::RecordingPaused, Out::Failure, "no_recording");
                        return Err(Flowing::Outcome("pause_failed"));
                    }
                    Err(e) => {
                        tracing::warn!(call = %s.call_sid, section = %target, error = %e, "recording pause failed");
                        self.audit(
                            s,
                            Ev::RecordingPaused,
                            Out::Error,
                            if e.timeout {
                                "timeout"
                            } else {
                                "carrier_error"
                            },
                        );
                        return Err(Flowing::Outcome("pause_failed"));
                    }
                }
                target = &sec.start.value;
                continue;
            }
            return Ok(());
        }
        Err(Flowing::End)
    }

    async fn run_node<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        out: &mut Vec<Action>,
        secrets: &mut HashMap<String, Secret>,
    ) -> Flowing<'f> {
        let next = || {
            node.next
                .as_ref()
                .map_or(Flowing::Outcome("next"), |n| Flowing::Goto(&n.value))
        };
        match &node.kind {
            Kind::Say(p) => {
                self.say(flow, s, p, out);
                next()
            }
            Kind::Set(vars) => {
                for (name, t) in vars {
                    match self.render_text(s, &t.value) {
                        Ok(v) => {
                            s.vars.insert(name.value.clone(), Var::Text(v));
                        }
                        Err(missing) => {
                            tracing::warn!(call = %s.call_sid, node = %node.id.value, missing, "template variable not set");
                            return Flowing::Outcome("error");
                        }
                    }
                }
                next()
            }
            Kind::Branch(cases) => {
                for c in cases {
                    let path: Vec<String> = c.var.value.split('.').map(str::to_string).collect();
                    let value = s.lookup(&path);
                    let holds = match &c.test {
                        resetline_flow::model::Test::Equals(v) => {
                            value.as_deref() == Some(v.as_str())
                        }
                        resetline_flow::model::Test::NotEquals(v) => {
                            value.as_deref() != Some(v.as_str())
                        }
                        resetline_flow::model::Test::In(vs) => {
                            value.as_ref().is_some_and(|x| vs.contains(x))
                        }
                        resetline_flow::model::Test::NotIn(vs) => {
                            value.as_ref().is_none_or(|x| !vs.contains(x))
                        }
                        resetline_flow::model::Test::Exists(e) => value.is_some() == *e,
                    };
                    if holds {
                        return Flowing::Goto(&c.next.value);
                    }
                }
                next()
            }
            Kind::DirectoryFind(f) => {
                let value = match self.render_text(s, &f.value.value) {
                    Ok(v) => v,
                    Err(_) if flow.settings.enumeration_safe => {
                        return self.decoy(s, f, "", next());
                    }
                    Err(_) => return Flowing::Outcome("not_found"),
                };
                match self
                    .within("directory", self.directory.find(f.by, &value))
                    .await
                {
                    Ok(None) => {
                        self.audit(s, Ev::Identify, Out::Failure, "not_found");
                        if flow.settings.enumeration_safe {
                            return self.decoy(s, f, &value, next());
                        }
                        Flowing::Outcome("not_found")
                    }
                    Ok(Some(acc)) => {
                        let outcome = match acc.state {
                            AccountState::Locked => Some("locked"),
                            AccountState::Disabled => Some("disabled"),
                            AccountState::Active if !acc.allow_phone_reset => Some("not_allowed"),
                            AccountState::Active => None,
                        };
                        let state = match acc.state {
                            AccountState::Active => "active",
                            AccountState::Locked => "locked",
                            AccountState::Disabled => "disabled",
                        };
                        s.account = Some(acc.id.clone());
                        // Fields in key order: each goes to the end of the record.
                        let mut rec = crate::vecmap::VecMap::with_capacity(6);
                        for (field, value) in [
                            ("birth_date", acc.birth_date),
                            ("email", acc.email),
                            ("id", Some(acc.id)),
                            ("mobile", acc.mobile),
                            ("name", Some(acc.name)),
                            ("state", Some(state.to_string())),
                        ] {
                            if let Some(v) = value {
                                rec.insert(field.to_string(), v);
                            }
                        }
                        s.vars.insert(f.into.value.clone(), Var::Record(rec));
                        tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = outcome.unwrap_or("found"), "directory lookup");
                        self.audit(
                            s,
                            Ev::Identify,
                            if outcome.is_none() {
                                Out::Success
                            } else {
                                Out::Failure
                            },
                            outcome.unwrap_or("found"),
                        );
                        match outcome {
                            Some(_) if flow.settings.enumeration_safe => {
                                self.decoy(s, f, &value, next())
                            }
                            Some(o) => Flowing::Outcome(o),
                            None => next(),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %e, "directory lookup failed");
                        self.audit(
                            s,
                            Ev::Identify,
                            Out::Error,
                            if e.timeout { "timeout" } else { "backend" },
                        );
                        Flowing::Outcome("error")
                    }
                }
            }
            Kind::Hangup(h) => {
                if let Some(p) = &h.say {
                    self.say(flow, s, p, out);
                }
                let outcome = h.outcome.clone().unwrap_or_else(|| "completed".into());
                self.end(flow, s, &outcome, out).await;
                Flowing::End
            }
            Kind::Transfer(t) => {
                if let Some(p) = &t.say {
                    self.say(flow, s, p, out);
                }
                let action = step_url(flow, s.token, StepEvent::Transfer);
                let target = match &t.to {
                    resetline_flow::model::TransferTo::Queue(q) => format!("queue:{q}"),
                    resetline_flow::model::TransferTo::Number(n) => format!("number:{n}"),
                };
                let r = self
                    .record(s, Ev::CallTransferred, Out::Info)
                    .with_reason("transfer")
                    .with_detail("target", target);
                s.pending_audit.push(r);
                match &t.to {
                    resetline_flow::model::TransferTo::Queue(q) => out.push(Action::Enqueue {
                        queue: q.clone(),
                        wait_url: t.wait.clone(),
                        action,
                    }),
                    resetline_flow::model::TransferTo::Number(n) => out.push(Action::Dial {
                        number: n.clone(),
                        action,
                    }),
                }
                if s.recording_paused_ms.is_some() {
                    self.resume(s).await;
                }
                s.waiting = Waiting::Transfer;
                Flowing::Wait
            }
            Kind::SetSecret(x) if x.mode == SecretMode::Generated => {
                self.generated_secret(flow, s, node, x, out).await
            }
            Kind::Menu(_)
            | Kind::Gather(_)
            | Kind::PinVerify(_)
            | Kind::SetSecret(_)
            | Kind::CodeVerify(_) => {
                if let Kind::PinVerify(p) = &node.kind {
                    let account = s
                        .lookup(&[p.account.value.clone(), "id".into()])
                        .unwrap_or_default();
                    if let Err(refusal) = self
                        .locked_out(s, &account, PIN_LOCK, Factor::Pin, "locked_out")
                        .await
                    {
                        return refusal;
                    }
                }
                s.waiting_since_ms = None;
                self.prompt_input(flow, s, node, false, out);
                Flowing::Wait
            }
            Kind::Secure(sec) => Flowing::Goto(&sec.start.value),
            Kind::CodeSend(c) => match self.send_code(flow, s, &node.id.value, c, false, out).await
            {
                Ok(_) => next(),
                Err(outcome) => Flowing::Outcome(outcome),
            },
            Kind::Notify(n) => {
                let mut said = Vec::new();
                self.say(flow, s, &n.message, &mut said);
                let body = crate::action::transcript(&said).join(" ");
                let to = s.lookup(&path_of(&n.to.value)).unwrap_or_default();
                let subject = self.engine_text(flow, s, "notify_email_subject", &[]);
                let mut planned = self
                    .record(s, Ev::NotificationSent, Out::Intent)
                    .with_reason("sent");
                planned.destination = masked_destination(n.channel, &to);
                let message = OutgoingMessage {
                    channel: n.channel,
                    to,
                    subject,
                    body: Secret::new(body),
                    status_callback: None,
                };
                let (intent, sent) = self.send_recorded(s, planned.clone(), message).await;
                s.pending_audit
                    .push(journal::sent_outcome(&intent, planned, &sent));
                match sent {
                    Ok(_) => next(),
                    Err(e) => {
                        tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %scrub_digits(&format!("{e:?}")), "notification not sent");
                        match node.on("error") {
                            Some(t) => Flowing::Goto(&t.value),
                            None => next(),
                        }
                    }
                }
            }
            Kind::Ticket(t) => {
                let summary = self.render_text(s, &t.summary.value).unwrap_or_default();
                let details = t
                    .details
                    .as_ref()
                    .and_then(|d| self.render_text(s, &d.value).ok());
                let new = NewTicket {
                    summary,
                    details,
                    category: t.category.clone(),
                    call_sid: s.call_sid.clone(),
                };
                match self.within("tickets", self.tickets.open(new)).await {
                    Ok(r) => {
                        tracing::info!(call = %s.call_sid, node = %node.id.value, ticket = %r.number, "ticket opened");
                        let rec = self
                            .record(s, Ev::TicketOpened, Out::Success)
                            .with_reason(if t.close { "recorded" } else { "follow_up" })
                            .with_detail("ticket", &r.number);
                        s.pending_audit.push(rec);
                        if t.close
                            && let Err(e) = self
                                .within(
                                    "tickets",
                                    self.tickets
                                        .close(&r, "Recorded by Resetline; no follow-up needed."),
                                )
                                .await
                        {
                            tracing::warn!(call = %s.call_sid, ticket = %r.number, error = %e, "ticket not closed");
                        }
                        let mut rec = crate::vecmap::VecMap::new();
                        rec.insert("number".to_string(), r.number.clone());
                        s.vars.insert(t.into.value.clone(), Var::Record(rec));
                        if let Some(p) = &t.say {
                            self.say(flow, s, p, out);
                        }
                        next()
                    }
                    Err(e) => {
                        tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %e, "ticket not opened");
                        self.audit(
                            s,
                            Ev::TicketOpened,
                            Out::Error,
                            if e.timeout { "timeout" } else { "backend" },
                        );
                        Flowing::Outcome("error")
                    }
                }
            }
            Kind::Http(h) => self.http_node(s, node, h, secrets).await,
        }
    }

    /// Enumeration-safe mode: an ID that is unknown, locked, disabled or not allowed goes on
    /// to `next` like an active one, with a decoy record (the claimed value as its `id`, so
    /// lockouts count on it as on a real account) that no verification ever accepts. The
    /// session names no account, so what follows is audited for the unknown account.
    fn decoy<'f>(
        &self,
        s: &mut Session,
        f: &resetline_flow::model::DirectoryFind,
        claimed: &str,
        next: Flowing<'f>,
    ) -> Flowing<'f> {
        let mut rec = crate::vecmap::VecMap::with_capacity(2);
        rec.insert(DECOY.to_string(), "1".to_string());
        rec.insert("id".to_string(), claimed.to_string());
        s.vars.insert(f.into.value.clone(), Var::Record(rec));
        s.account = None;
        next
    }

    /// Checks of `key` (an account's PIN, or its one-time codes) are refused while it is
    /// locked out (growing wait, or suspended after 100 consecutive failures); the refused
    /// attempt is audited and not counted. A lockout store failure refuses too (fail closed).
    /// Otherwise the state read, for a reservation to restore.
    async fn locked_out<'f>(
        &self,
        s: &mut Session,
        key: &str,
        policy: crate::backend::LockPolicy,
        f: Factor,
        outcome: &'static str,
    ) -> Result<crate::backend::LockState, Flowing<'f>> {
        let now = self.clock.now_ms();
        match self.within("lockouts", self.lockouts.get(key)).await {
            Ok(state) if state.locked(now, &policy) => {
                let r = self
                    .record(s, Ev::AuthnLoginLock, Out::Failure)
                    .with_reason("attempt_during_lockout")
                    .with_factor(f);
                s.pending_audit.push(r);
                Err(Flowing::Outcome(outcome))
            }
            Ok(state) => Ok(state),
            Err(e) => {
                tracing::warn!(call = %s.call_sid, error = %e, "lockout state unavailable");
                Err(Flowing::Outcome("error"))
            }
        }
    }

    /// Sends (or re-sends) the one-time code of `code.send` node `node_id`. A valid code for
    /// the same node and account is sent again unchanged; otherwise a new one is minted.
    /// `resend` is a caller's request from the comfort loop: cooldown and the resend count
    /// apply, and a refusal is spoken instead of leaving the node.
    async fn send_code(
        &self,
        flow: &Flow,
        s: &mut Session,
        node_id: &str,
        c: &resetline_flow::model::CodeSend,
        resend: bool,
        out: &mut Vec<Action>,
    ) -> Result<(), &'static str> {
        let now = self.clock.now_ms();
        let path = path_of(&c.to.value);
        let Some(to) = s.lookup(&path).filter(|v| !v.is_empty()) else {
            tracing::info!(call = %s.call_sid, node = %node_id, "no destination of record");
            return Err("undeliverable");
        };
        let account = s
            .lookup(&[path[0].clone(), "id".into()])
            .unwrap_or_default();
        let valid = s
            .otp
            .as_ref()
            .filter(|o| {
                o.send_node == node_id && o.account == account && !o.dead && now < o.expires_ms
            })
            .cloned();
        let cooldown_ms = u64::try_from(c.cooldown.as_millis()).unwrap_or(u64::MAX);
        if let Some(o) = &valid {
            let too_soon = now.saturating_sub(o.last_send_ms) < cooldown_ms;
            let spent = o.sends > c.resends;
            if too_soon || spent {
                if resend {
                    self.say_key(flow, s, "code_resend_too_soon", out);
                }
                tracing::info!(call = %s.call_sid, node = %node_id, too_soon, spent, "code not sent again");
                return Ok(());
            }
        }
        if let Some(rule) = self.send_refused(s, c.channel, &to, &account).await {
            tracing::warn!(call = %s.call_sid, node = %node_id, rule, "send limit reached");
            // A cap that could not be checked refuses too, as the system's failure.
            let outcome = if rule == STORE_DOWN {
                Out::Error
            } else {
                Out::Failure
            };
            let r = self
                .record(s, Ev::ExcessRateLimitExceeded, outcome)
                .with_reason(rule)
                .with_factor(factor(c.channel));
            s.pending_audit.push(r);
            return Err("rate_limited");
        }
        let mut o = match valid {
            Some(o) => *o,
            None => {
                let Ok(nonce) = otp::nonce(self.random.as_ref()) else {
                    return Err("error");
                };
                let ttl = u64::try_from(c.ttl.value.as_millis()).unwrap_or(600_000);
                Otp {
                    send_node: node_id.to_string(),
                    account: account.clone(),
                    nonce,
                    length: c.length,
                    issued_ms: now,
                    expires_ms: now.saturating_add(ttl),
                    wrong: 0,
                    sends: 0,
                    last_send_ms: 0,
                    message_id: None,
                    delivery: Delivery::Pending,
                    dead: false,
                }
            }
        };
        let code = otp::derive(&self.hash_key, &s.call_sid, &account, &o.nonce, o.length);
        let minutes = o
            .expires_ms
            .saturating_sub(now)
            .div_ceil(60_000)
            .to_string();
        let body = self.engine_text(
            flow,
            s,
            "code_message",
            &[("code", code.expose()), ("minutes", &minutes)],
        );
        drop(code);
        let message = OutgoingMessage {
            channel: c.channel,
            to,
            subject: self.engine_text(flow, s, "code_email_subject", &[]),
            body: Secret::new(body),
            status_callback: (c.channel == resetline_flow::model::Channel::Sms)
                .then(|| format!("/sms/status?call={}", s.call_sid)),
        };
        let mut planned = self
            .record(s, Ev::AuthnTokenCreated, Out::Intent)
            .with_factor(factor(c.channel))
            .with_reason(if o.sends > 0 { "resend" } else { "sent" });
        planned.destination = masked_destination(c.channel, &message.to);
        let (intent, sent) = self.send_recorded(s, planned.clone(), message).await;
        s.pending_audit
            .push(journal::sent_outcome(&intent, planned, &sent));
        match sent {
            Ok(sent) => {
                o.sends += 1;
                o.last_send_ms = now;
                o.message_id = Some(sent.id);
                o.delivery = Delivery::Pending;
                tracing::info!(call = %s.call_sid, node = %node_id, sends = o.sends, "code sent");
                s.otp = Some(Box::new(o));
                if resend {
                    self.say_key(flow, s, "code_resent", out);
                } else if let Some(p) = &c.say {
                    self.say(flow, s, p, out);
                }
                Ok(())
            }
            Err(SendError::Undeliverable { code, reason }) => {
                tracing::info!(call = %s.call_sid, node = %node_id, provider_code = ?code, reason = %scrub_digits(&reason), "destination refused");
                Err("undeliverable")
            }
            Err(SendError::Backend(e)) => {
                tracing::warn!(call = %s.call_sid, node = %node_id, error = %e, "code not sent");
                Err("error")
            }
        }
    }

    /// The first send limit that refuses a code to `to`, if any: the SMS country allowlist,
    /// then the windowed caps per destination, destination prefix, account, caller and in
    /// total. No provider call happens after a refusal. (A cap passed before a later one
    /// refuses keeps its count: limits err on the side of fewer sends.) A cap whose counter
    /// store fails or does not answer in time refuses ([`STORE_DOWN`]): caps fail closed.
    async fn send_refused(
        &self,
        s: &Session,
        channel: resetline_flow::model::Channel,
        to: &str,
        account: &str,
    ) -> Option<&'static str> {
        let l = &self.limits;
        let sms = channel == resetline_flow::model::Channel::Sms;
        if sms
            && !l.sms_prefixes.is_empty()
            && !l.sms_prefixes.iter().any(|p| to.starts_with(p.as_str()))
        {
            return Some("country_not_allowed");
        }
        let digits: String = to.chars().filter(char::is_ascii_digit).collect();
        let prefix = if sms && digits.len() > 4 {
            Some(format!("send-prefix:{}", &digits[..digits.len() - 4]))
        } else {
            None
        };
        let keys: [(Option<String>, (u32, u64), &'static str); 5] = [
            (Some(format!("send:{to}")), l.per_destination, "send_cap"),
            (prefix, l.per_prefix, "prefix_cap"),
            (
                (!account.is_empty()).then(|| format!("send-account:{account}")),
                l.per_account,
                "account_cap",
            ),
            (
                (!s.caller.is_empty()).then(|| format!("send-caller:{}", s.caller)),
                l.per_caller,
                "caller_cap",
            ),
            (Some("send-global".to_string()), l.global, "global_budget"),
        ];
        for (key, (limit, window), rule) in keys {
            let Some(key) = key else { continue };
            match self.bounded(self.counters.hit(&key, window, limit)).await {
                Some(Ok(true)) => {}
                Some(Ok(false)) => return Some(rule),
                Some(Err(e)) => {
                    tracing::warn!(call = %s.call_sid, rule, error = %e, "counter store failed; not sending");
                    return Some(STORE_DOWN);
                }
                None => {
                    tracing::warn!(call = %s.call_sid, rule, "counter store timed out; not sending");
                    return Some(STORE_DOWN);
                }
            }
        }
        None
    }

    /// Input (or silence) at a `code.verify` node, including the comfort loop.
    async fn code_input<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        v: &'f resetline_flow::model::CodeVerify,
        digits: Option<Secret>,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let now = self.clock.now_ms();
        let Some(o) = s
            .otp
            .clone()
            .filter(|o| o.send_node == v.from.value && !o.dead)
        else {
            return Flowing::Outcome("failed");
        };
        // The code is bound to the account it was sent for: if the call identified another
        // account since, the code does not count for it.
        let Some(Kind::CodeSend(send)) = flow.node(&v.from.value).map(|n| &n.kind) else {
            return Flowing::Outcome("error");
        };
        let channel = send.channel;
        let current = s
            .lookup(&[path_of(&send.to.value)[0].clone(), "id".into()])
            .unwrap_or_default();
        if o.account != current {
            self.audit(s, Ev::AuthnLoginFail, Out::Failure, "other_account");
            return Flowing::Outcome("failed");
        }
        let code_key = crate::backend::code_lockout_key(&o.account);
        if let Err(refusal) = self
            .locked_out(s, &code_key, CODE_LOCK, factor(channel), "failed")
            .await
        {
            return refusal;
        }
        // A late failure report of a resend must not lock out a right code typed now.
        let typed_right = digits.as_ref().is_some_and(|d| {
            now < o.expires_ms
                && otp::matches(
                    d,
                    &otp::derive(&self.hash_key, &s.call_sid, &o.account, &o.nonce, o.length),
                )
        });
        if o.delivery == Delivery::Failed && !typed_right {
            return Flowing::Outcome("delivery_failed");
        }
        if now >= o.expires_ms {
            s.otp = None;
            if digits.is_some() {
                self.audit(s, Ev::AuthnLoginFail, Out::Failure, "expired");
            }
            return Flowing::Outcome("expired");
        }
        let Some(d) = digits else {
            let Some(w) = &v.wait else {
                s.attempts += 1;
                if s.attempts >= v.attempts {
                    return Flowing::Outcome("failed");
                }
                self.prompt_input(flow, s, node, false, out);
                return Flowing::Wait;
            };
            let since = *s.waiting_since_ms.get_or_insert(now);
            if now.saturating_sub(since)
                >= u64::try_from(w.give_up_after.as_millis()).unwrap_or(u64::MAX)
            {
                return Flowing::Outcome("gave_up");
            }
            self.hold(flow, s, w, out);
            return Flowing::Wait;
        };
        // One key in the comfort loop: a menu choice.
        if let (Some(w), 1) = (&v.wait, d.len()) {
            let key = d.expose().chars().next();
            match w
                .keys
                .iter()
                .find(|(k, _)| Some(k.value) == key)
                .map(|(_, a)| a)
            {
                Some(resetline_flow::model::WaitKey::Enter) => {
                    self.prompt_input(flow, s, node, false, out);
                    return Flowing::Wait;
                }
                Some(resetline_flow::model::WaitKey::Resend) => {
                    if let Err(outcome) = self
                        .send_code(flow, s, &v.from.value, send, true, out)
                        .await
                    {
                        return Flowing::Outcome(if outcome == "undeliverable" {
                            "delivery_failed"
                        } else {
                            outcome
                        });
                    }
                    self.hold(flow, s, w, out);
                    return Flowing::Wait;
                }
                Some(resetline_flow::model::WaitKey::Goto(t)) => {
                    return Flowing::Goto(&t.value);
                }
                None => {}
            }
        }
        let expected = otp::derive(&self.hash_key, &s.call_sid, &o.account, &o.nonce, o.length);
        if otp::matches(&d, &expected) {
            if let Err(e) = self
                .within("lockouts", self.lockouts.success(&code_key))
                .await
            {
                tracing::warn!(call = %s.call_sid, error = %e, "code failures not reset");
            }
            s.otp = None;
            s.verified(&o.account);
            s.waiting_since_ms = None;
            tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "verified", "code check");
            let r = self
                .record(s, Ev::AuthnLoginSuccess, Out::Success)
                .with_reason("verified")
                .with_factor(factor(channel));
            s.pending_audit.push(r);
            return node
                .next
                .as_ref()
                .map_or(Flowing::Outcome("failed"), |n| Flowing::Goto(&n.value));
        }
        let wrong = o.wrong + 1;
        let dead = wrong >= v.attempts;
        if let Some(stored) = s.otp.as_mut() {
            stored.wrong = wrong;
            stored.dead = dead;
        }
        tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "wrong", wrong, dead, "code check");
        let r = self
            .record(s, Ev::AuthnLoginFail, Out::Failure)
            .with_reason("wrong")
            .with_factor(factor(channel))
            .with_detail("attempt", wrong.to_string());
        s.pending_audit.push(r);
        if dead {
            let r = self
                .record(s, Ev::AuthnLoginFailMax, Out::Failure)
                .with_reason("code_attempts")
                .with_factor(factor(channel));
            s.pending_audit.push(r);
        }
        let counted = self
            .within("lockouts", self.lockouts.failure(&code_key, now, CODE_LOCK))
            .await;
        if dead {
            return Flowing::Outcome("failed");
        }
        match counted {
            Ok(state) if state.locked(now, &CODE_LOCK) => {
                let r = self
                    .record(s, Ev::AuthnLoginLock, Out::Failure)
                    .with_reason(if state.failures >= CODE_LOCK.suspend_at {
                        "suspended"
                    } else {
                        "growing_wait"
                    })
                    .with_factor(factor(channel))
                    .with_detail("failures", state.failures.to_string());
                s.pending_audit.push(r);
                return Flowing::Outcome("failed");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(call = %s.call_sid, error = %e, "code failure not recorded");
                return Flowing::Outcome("error");
            }
        }
        self.say_key(flow, s, "code_wrong", out);
        self.prompt_input(flow, s, node, false, out);
        Flowing::Wait
    }

    /// One round of the comfort loop: hold audio, then the key menu, listening throughout (a
    /// code typed during the hold is taken as the code).
    fn hold(
        &self,
        flow: &Flow,
        s: &mut Session,
        w: &resetline_flow::model::Wait,
        out: &mut Vec<Action>,
    ) {
        let mut prompts: Vec<Action> = std::mem::take(out);
        self.say(flow, s, &w.hold, &mut prompts);
        let secs = u32::try_from(w.hold_for.as_secs()).unwrap_or(u32::MAX);
        if secs > 0 {
            prompts.push(Action::Pause { seconds: secs });
        }
        self.say(flow, s, &w.menu, &mut prompts);
        out.push(Action::Gather {
            num_digits: None,
            finish_on: Some('#'),
            timeout_s: 3,
            action: step_url(flow, s.token, StepEvent::Digits),
            prompts,
        });
        out.push(Action::Redirect {
            url: step_url(flow, s.token, StepEvent::Timeout),
        });
        s.waiting = Waiting::Digits;
    }

    /// An engine prompt (`code_message`, subjects) rendered as plain text with `params`.
    fn engine_text(&self, flow: &Flow, s: &Session, key: &str, params: &[(&str, &str)]) -> String {
        let Some(entry) = self.catalog(flow, s).and_then(|c| c.entries.get(key)) else {
            tracing::error!(locale = %s.locale, prompt = key, "engine prompt missing from catalog");
            return String::new();
        };
        let t = match &entry.body {
            PromptBody::Say(t) => t,
            PromptBody::Play { text: Some(t), .. } => t,
            PromptBody::Play { text: None, .. } => return String::new(),
        };
        let lookup = |p: &[String]| {
            params
                .iter()
                .find(|(k, _)| p.len() == 1 && p[0] == *k)
                .map(|(_, v)| v.to_string())
        };
        t.render(&lookup)
            .map(|segs| resetline_flow::template::plain_text(&segs))
            .unwrap_or_default()
    }

    /// Emits the gather for the current input node. `confirm` asks for the second entry of a
    /// new secret.
    fn prompt_input(
        &self,
        flow: &Flow,
        s: &mut Session,
        node: &Node,
        confirm: bool,
        out: &mut Vec<Action>,
    ) {
        let (prompt, digits, finish_on, first, inter) = match &node.kind {
            Kind::Menu(m) => (
                Some(&m.say),
                Digits { min: 1, max: 1 },
                None,
                m.timeout,
                m.timeout,
            ),
            Kind::Gather(g) => (
                Some(&g.say),
                g.digits,
                g.finish_on,
                g.first_digit_timeout,
                g.inter_digit_timeout,
            ),
            Kind::PinVerify(p) => (
                Some(&p.say),
                p.digits,
                p.finish_on,
                p.first_digit_timeout,
                p.inter_digit_timeout,
            ),
            Kind::CodeVerify(v) => {
                let length = match flow.node(&v.from.value).map(|n| &n.kind) {
                    Some(Kind::CodeSend(c)) => c.length,
                    _ => 6,
                };
                (
                    Some(&v.say),
                    Digits {
                        min: length,
                        max: length,
                    },
                    Some('#'),
                    v.first_digit_timeout,
                    v.inter_digit_timeout,
                )
            }
            Kind::SetSecret(x) => {
                let policy = flow.policy(&x.policy.value);
                let d = Digits {
                    min: policy.map_or(1, |p| p.min_length.value.min(64)).max(1),
                    max: policy.map_or(64, |p| p.max_length),
                };
                let p = if confirm {
                    x.confirm.as_ref()
                } else {
                    x.say.as_ref()
                };
                (
                    p,
                    Digits { min: 1, max: d.max },
                    Some('#'),
                    Duration::from_secs(8),
                    Duration::from_secs(4),
                )
            }
            _ => return,
        };
        let mut prompts: Vec<Action> = std::mem::take(out);
        if let Some(p) = prompt {
            self.say(flow, s, p, &mut prompts);
        }
        let extra = first.saturating_sub(inter).as_secs();
        if extra > 0 {
            prompts.push(Action::Pause {
                seconds: u32::try_from(extra).unwrap_or(u32::MAX),
            });
        }
        let fixed = (digits.min == digits.max).then_some(digits.max);
        out.push(Action::Gather {
            num_digits: fixed,
            finish_on: if fixed.is_some()
                && finish_on == Some('#')
                && matches!(node.kind, Kind::Menu(_))
            {
                None
            } else {
                finish_on
            },
            timeout_s: u32::try_from(inter.as_secs().max(1)).unwrap_or(u32::MAX),
            action: step_url(flow, s.token, StepEvent::Digits),
            prompts,
        });
        out.push(Action::Redirect {
            url: step_url(flow, s.token, StepEvent::Timeout),
        });
        s.waiting = if confirm {
            Waiting::Confirm
        } else {
            Waiting::Digits
        };
    }

    /// Handles input (or its absence) at the current node.
    async fn input<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        digits: Option<Secret>,
        out: &mut Vec<Action>,
        secrets: &mut HashMap<String, Secret>,
    ) -> Flowing<'f> {
        let Some(node) = flow.node(&s.node) else {
            return Flowing::End;
        };
        let digits = digits.filter(|d| !d.is_empty());
        if s.waiting == Waiting::Nothing || s.waiting == Waiting::Transfer {
            return Flowing::Wait;
        }
        let retry = |engine: &Self,
                     s: &mut Session,
                     out: &mut Vec<Action>,
                     say: Option<&Prompt>,
                     say_key: Option<&str>,
                     max: u32,
                     exhausted: &'static str| {
            s.attempts += 1;
            if let Some(p) = say {
                engine.say(flow, s, p, out);
            }
            if let Some(k) = say_key {
                engine.say_key(flow, s, k, out);
            }
            if s.attempts >= max {
                return Flowing::Outcome(exhausted);
            }
            engine.prompt_input(flow, s, node, false, out);
            Flowing::Wait
        };
        match &node.kind {
            Kind::Menu(m) => {
                let Some(d) = digits else {
                    return retry(
                        self,
                        s,
                        out,
                        m.no_input_say.as_ref(),
                        None,
                        m.attempts,
                        "no_input",
                    );
                };
                let key = d.expose().chars().next();
                match m.keys.iter().find(|k| Some(k.key.value) == key) {
                    Some(k) => {
                        if let Some(l) = &k.locale {
                            s.locale = l.value.clone();
                        }
                        for (name, t) in &k.set {
                            if let Ok(v) = self.render_text(s, &t.value) {
                                s.vars.insert(name.value.clone(), Var::Text(v));
                            }
                        }
                        match k.next.as_ref().or(node.next.as_ref()) {
                            Some(n) => Flowing::Goto(&n.value),
                            None => Flowing::Outcome("no_match"),
                        }
                    }
                    None => retry(
                        self,
                        s,
                        out,
                        m.no_match_say.as_ref(),
                        None,
                        m.attempts,
                        "no_match",
                    ),
                }
            }
            Kind::Gather(g) => {
                let Some(d) = digits else {
                    return retry(
                        self,
                        s,
                        out,
                        g.no_input_say.as_ref(),
                        None,
                        g.attempts,
                        "no_input",
                    );
                };
                if !fits(&d, g.digits) {
                    return retry(
                        self,
                        s,
                        out,
                        g.no_match_say.as_ref(),
                        None,
                        g.attempts,
                        "no_match",
                    );
                }
                if g.secret {
                    secrets.insert(g.into.value.clone(), d);
                } else {
                    s.vars
                        .insert(g.into.value.clone(), Var::Text(d.expose().to_string()));
                }
                node.next
                    .as_ref()
                    .map_or(Flowing::Outcome("no_match"), |n| Flowing::Goto(&n.value))
            }
            Kind::PinVerify(p) => {
                let Some(d) = digits.filter(|d| fits(d, p.digits)) else {
                    return retry(self, s, out, None, Some("pin_wrong"), p.attempts, "failed");
                };
                let account = s
                    .lookup(&[p.account.value.clone(), "id".into()])
                    .unwrap_or_default();
                let before = match self
                    .locked_out(s, &account, PIN_LOCK, Factor::Pin, "locked_out")
                    .await
                {
                    Ok(state) => state,
                    Err(refusal) => return refusal,
                };
                // The attempt is counted before the (slow) check and forgiven on success, so
                // parallel calls cannot each get a free guess during a lockout; a check that
                // does not complete gives it back (`reserve.rs`).
                let now = self.clock.now_ms();
                let guard = match self.reserve(&account, before, now, PIN_LOCK).await {
                    Ok(guard) => guard,
                    Err(e) => {
                        tracing::warn!(call = %s.call_sid, error = %e, "lockout state not recorded");
                        return Flowing::Outcome("error");
                    }
                };
                let decoy = s.lookup(&[p.account.value.clone(), DECOY.into()]).is_some();
                let checked = if decoy {
                    // The same work as a real wrong PIN (the directory's dummy check for an
                    // account it does not hold), and never a match.
                    self.within("directory", self.directory.verify_pin(NO_ACCOUNT, &d))
                        .await
                        .map(|_| false)
                } else {
                    self.within("directory", self.directory.verify_pin(&account, &d))
                        .await
                };
                match checked {
                    Ok(true) => {
                        guard.keep();
                        if let Err(e) = self
                            .within("lockouts", self.lockouts.success(&account))
                            .await
                        {
                            tracing::warn!(call = %s.call_sid, error = %e, "lockout state not reset");
                        }
                        s.verified(&account);
                        tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "verified", "pin check");
                        let r = self
                            .record(s, Ev::AuthnLoginSuccess, Out::Success)
                            .with_reason("verified")
                            .with_factor(Factor::Pin);
                        s.pending_audit.push(r);
                        node.next
                            .as_ref()
                            .map_or(Flowing::Outcome("failed"), |n| Flowing::Goto(&n.value))
                    }
                    Ok(false) => {
                        let reserved = guard.keep();
                        tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "wrong", attempt = s.attempts + 1, "pin check");
                        let r = self
                            .record(s, Ev::AuthnLoginFail, Out::Failure)
                            .with_reason("wrong")
                            .with_factor(Factor::Pin)
                            .with_detail("attempt", (s.attempts + 1).to_string());
                        s.pending_audit.push(r);
                        let policy = PIN_LOCK;
                        match Ok::<_, crate::backend::StoreError>(reserved) {
                            Ok(state) if state.locked(now, &policy) => {
                                let suspended = state.failures >= policy.suspend_at;
                                let r = self
                                    .record(s, Ev::AuthnLoginLock, Out::Failure)
                                    .with_reason(if suspended {
                                        "suspended"
                                    } else {
                                        "growing_wait"
                                    })
                                    .with_factor(Factor::Pin)
                                    .with_detail("failures", state.failures.to_string())
                                    .with_detail(
                                        "locked_for_s",
                                        (state.locked_until_ms.saturating_sub(now) / 1000)
                                            .to_string(),
                                    );
                                s.pending_audit.push(r);
                                self.say_key(flow, s, "pin_wrong", out);
                                return Flowing::Outcome("locked_out");
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(call = %s.call_sid, error = %e, "lockout state not recorded");
                                return Flowing::Outcome("error");
                            }
                        }
                        let next =
                            retry(self, s, out, None, Some("pin_wrong"), p.attempts, "failed");
                        if matches!(next, Flowing::Outcome("failed")) {
                            let r = self
                                .record(s, Ev::AuthnLoginFailMax, Out::Failure)
                                .with_reason("pin_attempts")
                                .with_factor(Factor::Pin);
                            s.pending_audit.push(r);
                        }
                        next
                    }
                    Err(e) => {
                        // Any error (outage, timeout, a busy hash pool): not an answer.
                        self.give_back(s, guard).await;
                        tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %e, "pin check failed");
                        let r = self
                            .record(s, Ev::AuthnLoginFail, Out::Error)
                            .with_reason(if e.timeout { "timeout" } else { "backend" })
                            .with_factor(Factor::Pin);
                        s.pending_audit.push(r);
                        Flowing::Outcome("error")
                    }
                }
            }
            Kind::SetSecret(x) => self.new_secret(flow, s, node, x, digits, out).await,
            Kind::CodeVerify(v) => self.code_input(flow, s, node, v, digits, out).await,
            _ => Flowing::Wait,
        }
    }

    /// `set_secret` in `generated` mode (seed 001): a strong password is generated, delivered
    /// to the record's phone or email first, and only then set at the directory. If delivery
    /// fails nothing is changed, so there is never a credential nobody received to restore.
    async fn generated_secret<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        x: &resetline_flow::model::SetSecret,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let (Some(policy), Some((channel, to_path))) =
            (flow.policy(&x.policy.value), x.deliver.as_ref())
        else {
            return Flowing::Outcome("error");
        };
        let length = policy
            .min_length
            .value
            .max(12)
            .min(policy.max_length.max(12)) as usize;
        let Some(password) = generate_password(self.random.as_ref(), length) else {
            return Flowing::Outcome("error");
        };
        let account = s
            .lookup(&[x.account.value.clone(), "id".into()])
            .unwrap_or_default();
        if self.unverified(flow, s, node, &account) {
            return Flowing::Outcome("error");
        }
        let to = s.lookup(&path_of(&to_path.value)).unwrap_or_default();
        let body = self.engine_text(
            flow,
            s,
            "password_message",
            &[("password", password.expose())],
        );
        let message = OutgoingMessage {
            channel: *channel,
            to: to.clone(),
            subject: self.engine_text(flow, s, "password_email_subject", &[]),
            body: Secret::new(body),
            status_callback: None,
        };
        // One intent covers the delivery and the change that follows it.
        let planned = self
            .record(s, Ev::AuthnPasswordChange, Out::Intent)
            .with_reason("generated");
        let (intent, delivered) = if to.is_empty() {
            (None, false)
        } else {
            let (intent, sent) = self.send_recorded(s, planned, message).await;
            (Some(intent), sent.is_ok())
        };
        if !delivered {
            tracing::info!(call = %s.call_sid, node = %node.id.value, "generated password not delivered; nothing changed");
            let (outcome, why) = match &intent {
                Some(i) if !i.recorded => (Out::Error, "audit_unavailable"),
                _ => (Out::Failure, "not_delivered"),
            };
            let r = self
                .record(s, Ev::AuthnPasswordChangeFail, outcome)
                .with_reason(why);
            s.pending_audit.push(match intent {
                Some(i) => i.names(r),
                None => r,
            });
            self.say_key(flow, s, "password_not_delivered", out);
            return Flowing::Outcome("failed");
        }
        match self
            .apply_secret(flow, s, node, &account, &password, "generated", intent)
            .await
        {
            Applied::Set => node
                .next
                .as_ref()
                .map_or(Flowing::Outcome("error"), |n| Flowing::Goto(&n.value)),
            Applied::Refused(key) => {
                self.say_key(flow, s, &key, out);
                Flowing::Outcome("rejected")
            }
            Applied::Outcome(outcome) => Flowing::Outcome(outcome),
        }
    }

    /// Sets `secret` at the directory for `account` within the step's time, after recording
    /// its intent (or under `intent`, recorded already), audits the result (success reason
    /// `reason`) and maps it: set, refused by the directory (with the prompt key that speaks
    /// why), or an outcome edge (`locked`, `error`). The one place a new secret reaches the
    /// directory.
    #[allow(clippy::too_many_arguments)] // the change, and the intent it may already have
    async fn apply_secret(
        &self,
        flow: &Flow,
        s: &mut Session,
        node: &Node,
        account: &str,
        secret: &Secret,
        reason: &str,
        intent: Option<journal::Intent>,
    ) -> Applied {
        if self.unverified(flow, s, node, account) {
            return Applied::Outcome("error");
        }
        let planned = self
            .record(s, Ev::AuthnPasswordChange, Out::Intent)
            .with_reason(reason);
        let (intent, result) = self.set_recorded(s, intent, planned, account, secret).await;
        let audit = |s: &mut Session, event, outcome, why: &str| {
            let r = intent.names(self.record(s, event, outcome).with_reason(why));
            s.pending_audit.push(r);
        };
        match result {
            Ok(()) => {
                tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "set", "new secret");
                audit(s, Ev::AuthnPasswordChange, Out::Success, reason);
                Applied::Set
            }
            Err(SetSecretError::Rejected { prompt, reason }) => {
                // The directory's own words; one that quotes the refused value must not put it
                // in the log (a generated password whole, a PIN or any digit run by `scrub_digits`).
                let reason = if secret.expose().is_empty() {
                    scrub_digits(&reason)
                } else {
                    scrub_digits(&reason.replace(secret.expose(), "***"))
                };
                tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "rejected", reason = %reason, "new secret");
                let r = self
                    .record(s, Ev::AuthnPasswordChangeFail, Out::Failure)
                    .with_reason("directory_rejected")
                    .with_detail("spoken", &prompt);
                s.pending_audit.push(intent.names(r));
                Applied::Refused(if self.has_prompt(flow, s, &prompt) {
                    prompt
                } else {
                    "policy_rejected".to_string()
                })
            }
            Err(SetSecretError::Locked) => {
                audit(s, Ev::AuthnPasswordChangeFail, Out::Failure, "locked");
                Applied::Outcome("locked")
            }
            Err(SetSecretError::Backend(e)) => {
                tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %e, "setting the new secret failed");
                let why = match journal::backend_reason(&e) {
                    "timeout" => "timeout_outcome_unknown",
                    other => other,
                };
                audit(s, Ev::AuthnPasswordChangeFail, Out::Error, why);
                Applied::Outcome("error")
            }
        }
    }

    /// True (and audited) when the call has fewer than `min_factors` successful verifications
    /// of `account`: the checker proves every path has them, and this keeps it so at run time
    /// whatever the path (a check of A never lets the call set B's secret).
    fn unverified(&self, flow: &Flow, s: &mut Session, node: &Node, account: &str) -> bool {
        let have = s.verifications_of(account);
        if have >= flow.settings.min_factors.value {
            return false;
        }
        tracing::warn!(call = %s.call_sid, node = %node.id.value, verifications = have, "new secret refused: this account is not verified in this call");
        self.audit(s, Ev::AuthnPasswordChangeFail, Out::Failure, "not_verified");
        true
    }

    async fn new_secret<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        x: &resetline_flow::model::SetSecret,
        digits: Option<Secret>,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let Some(policy) = flow.policy(&x.policy.value) else {
            return Flowing::Outcome("error");
        };
        let refuse = |engine: &Self, s: &mut Session, out: &mut Vec<Action>, key: &str| {
            s.attempts += 1;
            s.pending_secret = None;
            engine.say_key(flow, s, key, out);
            if s.attempts >= x.attempts {
                return Flowing::Outcome("failed");
            }
            engine.prompt_input(flow, s, node, false, out);
            Flowing::Wait
        };
        let Some(d) = digits else {
            return refuse(self, s, out, "policy_too_short");
        };
        if s.waiting == Waiting::Confirm {
            let Some(first) = s.pending_secret.clone() else {
                return refuse(self, s, out, "policy_mismatch");
            };
            let second = self.keyed_hash(&s.call_sid, &d);
            if !bool::from(first.as_bytes().ct_eq(second.as_bytes())) {
                tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "mismatch", "new secret");
                self.audit(s, Ev::AuthnPasswordChangeFail, Out::Failure, "mismatch");
                return refuse(self, s, out, "policy_mismatch");
            }
            let account = s
                .lookup(&[x.account.value.clone(), "id".into()])
                .unwrap_or_default();
            s.pending_secret = None;
            return match self
                .apply_secret(flow, s, node, &account, &d, "set", None)
                .await
            {
                Applied::Set => node
                    .next
                    .as_ref()
                    .map_or(Flowing::Outcome("error"), |n| Flowing::Goto(&n.value)),
                Applied::Refused(key) => {
                    s.attempts += 1;
                    self.say_key(flow, s, &key, out);
                    if s.attempts >= x.attempts {
                        return Flowing::Outcome("rejected");
                    }
                    self.prompt_input(flow, s, node, false, out);
                    Flowing::Wait
                }
                Applied::Outcome(outcome) => Flowing::Outcome(outcome),
            };
        }
        let record = s.vars.get(&x.account.value).cloned();
        let mut values: Vec<String> = Vec::new();
        if let Some(Var::Record(r)) = &record {
            values.extend(
                ["id", "mobile", "birth_date"]
                    .iter()
                    .filter_map(|f| r.get(*f).cloned()),
            );
            if let Some(b) = r.get("birth_date") {
                values.extend(policy::date_forms(b));
            }
        }
        values.push(s.caller.clone());
        let personal = Personal {
            values: values.iter().map(String::as_str).collect(),
        };
        if let Err(refusal) = policy::check(policy, &d, &personal) {
            tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "refused", rule = refusal.name(), "new secret");
            let r = self
                .record(s, Ev::AuthnPasswordChangeFail, Out::Failure)
                .with_reason("policy")
                .with_detail("rule", refusal.name());
            s.pending_audit.push(r);
            return refuse(self, s, out, refusal.prompt());
        }
        s.pending_secret = Some(self.keyed_hash(&s.call_sid, &d));
        self.prompt_input(flow, s, node, true, out);
        Flowing::Wait
    }

    fn transfer_result<'f>(&self, flow: &'f Flow, s: &mut Session, result: &str) -> Flowing<'f> {
        if s.waiting != Waiting::Transfer {
            return Flowing::Wait;
        }
        let ok = matches!(
            result,
            "bridged" | "completed" | "answered" | "hangup" | "leave" | "redirected"
        );
        if ok {
            s.ended = Some("transferred".into());
            self.audit(s, Ev::CallEnded, Out::Info, "transferred");
            return Flowing::End;
        }
        tracing::warn!(call = %s.call_sid, node = %s.node, result, "transfer did not connect");
        match flow.node(&s.node).and_then(|n| n.on("failed")) {
            Some(t) => Flowing::Goto(&t.value),
            None => Flowing::Outcome("failed"),
        }
    }

    /// The call ended (status callback): resume recording if paused, remember where.
    async fn hangup(&self, _flow: &Flow, s: &mut Session) {
        if s.ended.is_some() {
            return;
        }
        if s.recording_paused_ms.is_some() {
            self.resume(s).await;
        }
        tracing::info!(call = %s.call_sid, node = %s.node, "caller hung up");
        self.audit(s, Ev::SessionExpired, Out::Info, "hangup");
        s.ended = Some(format!("hangup@{}", s.node));
    }

    async fn end(&self, _flow: &Flow, s: &mut Session, outcome: &str, out: &mut Vec<Action>) {
        if s.recording_paused_ms.is_some() {
            self.resume(s).await;
        }
        out.push(Action::Hangup);
        s.ended = Some(outcome.to_string());
        s.waiting = Waiting::Nothing;
        tracing::info!(call = %s.call_sid, node = %s.node, outcome, "call ended");
        if outcome == "time_limit" {
            self.audit(s, Ev::SessionExpired, Out::Info, "max_duration");
        } else {
            self.audit(
                s,
                Ev::CallEnded,
                if outcome == "error" {
                    Out::Error
                } else {
                    Out::Info
                },
                outcome,
            );
        }
    }

    async fn resume(&self, s: &mut Session) {
        let paused_for = s
            .recording_paused_ms
            .map(|p| self.clock.now_ms().saturating_sub(p));
        match self
            .within(
                "recording",
                self.recording.change(&s.call_sid, RecordingChange::Resume),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(call = %s.call_sid, paused_ms = paused_for.unwrap_or(0), "recording resumed");
                let r = self
                    .record(s, Ev::RecordingResumed, Out::Info)
                    .with_reason("resumed")
                    .with_detail("paused_ms", paused_for.unwrap_or(0).to_string());
                s.pending_audit.push(r);
            }
            Err(e) => {
                tracing::warn!(call = %s.call_sid, error = %e, "recording resume failed");
                let r = self
                    .record(s, Ev::RecordingResumed, Out::Error)
                    .with_reason(if e.timeout {
                        "timeout"
                    } else {
                        "carrier_error"
                    })
                    .with_detail("paused_ms", paused_for.unwrap_or(0).to_string());
                s.pending_audit.push(r);
            }
        }
        s.recording_paused_ms = None;
    }

    /// A call to `backend` within its time ([`Engine::bounded`]); its timeout error when it
    /// ran out.
    async fn within<T, E: From<BackendError>>(
        &self,
        backend: &'static str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.bounded(fut)
            .await
            .unwrap_or_else(|| Err(BackendError::timeout(backend).into()))
    }

    fn keyed_hash(&self, call_sid: &str, secret: &Secret) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.hash_key.expose().as_bytes()) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(call_sid.as_bytes());
        mac.update(&[0]);
        mac.update(secret.expose().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    // ---- prompts -------------------------------------------------------------------------

    fn catalog<'a>(
        &'a self,
        flow: &Flow,
        s: &Session,
    ) -> Option<&'a resetline_flow::prompts::Catalog> {
        self.catalogs
            .get(&s.locale)
            .or_else(|| self.catalogs.get(&flow.settings.default_locale.value))
    }

    fn has_prompt(&self, flow: &Flow, s: &Session, key: &str) -> bool {
        self.catalog(flow, s)
            .is_some_and(|c| c.entries.contains_key(key))
    }

    fn say_key(&self, flow: &Flow, s: &Session, key: &str, out: &mut Vec<Action>) {
        let item = resetline_flow::model::PromptItem {
            key: resetline_flow::Spanned::new(key.to_string(), Default::default()),
            with: Vec::new(),
        };
        self.say(flow, s, &Prompt { items: vec![item] }, out);
    }

    fn say(&self, flow: &Flow, s: &Session, prompt: &Prompt, out: &mut Vec<Action>) {
        let Some(catalog) = self.catalog(flow, s) else {
            tracing::error!(locale = %s.locale, "no prompt catalog for locale");
            return;
        };
        let voice = catalog
            .voice
            .clone()
            .or_else(|| flow.settings.voice.clone());
        for item in &prompt.items {
            let Some(entry) = catalog.entries.get(&item.key.value) else {
                tracing::error!(locale = %s.locale, prompt = %item.key.value, "prompt missing from catalog");
                continue;
            };
            let mut params: Vec<(&str, Vec<Segment>)> = Vec::with_capacity(item.with.len());
            for (name, t) in &item.with {
                match t.value.render(&|p| s.lookup(p)) {
                    Ok(segs) => {
                        params.push((&name.value, segs));
                    }
                    Err(missing) => {
                        tracing::warn!(call = %s.call_sid, prompt = %item.key.value, missing, "prompt parameter not set")
                    }
                }
            }
            match &entry.body {
                PromptBody::Say(t) => out.push(Action::Say {
                    text: fill(t, &params).into_iter().map(Spoken::from).collect(),
                    locale: catalog.locale.clone(),
                    voice: voice.clone(),
                }),
                PromptBody::Play { file, text } => {
                    let url = if file.starts_with("https://") || file.starts_with("http://") {
                        file.clone()
                    } else {
                        format!("/prompts/{}/{}", catalog.locale, file)
                    };
                    let text = text
                        .as_ref()
                        .map(|t| resetline_flow::template::plain_text(&fill(t, &params)))
                        .unwrap_or_default();
                    out.push(Action::Play { url, text });
                }
            }
        }
    }

    fn render_text(&self, s: &Session, t: &Template) -> Result<String, String> {
        t.render(&|p| s.lookup(p))
            .map(|segs| resetline_flow::template::plain_text(&segs))
    }
}

/// The refusal of a send whose cap could not be checked (the counter store failed or did
/// not answer in time): no provider call, the `rate_limited` edge, audited with this reason.
const STORE_DOWN: &str = "counter_store_unavailable";

const PIN_LOCK: crate::backend::LockPolicy = crate::backend::LockPolicy::PIN;
const CODE_LOCK: crate::backend::LockPolicy = crate::backend::LockPolicy::CODE;

/// Characters of generated passwords: no look-alikes (0/O, 1/l/I), easy to read from a text.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A random password of `length` characters from the OS CSPRNG (rejection sampling, so every
/// character is uniform) with at least one upper-case letter, lower-case letter and digit.
fn generate_password(random: &dyn crate::clock::Random, length: usize) -> Option<Secret> {
    let n = PASSWORD_ALPHABET.len();
    let limit = 256 - 256 % n;
    for _ in 0..64 {
        let mut out = String::with_capacity(length);
        let mut buf = [0u8; 64];
        while out.len() < length {
            random.fill(&mut buf).ok()?;
            for &b in &buf {
                if usize::from(b) < limit && out.len() < length {
                    out.push(char::from(PASSWORD_ALPHABET[usize::from(b) % n]));
                }
            }
        }
        let ok = out.bytes().any(|c| c.is_ascii_uppercase())
            && out.bytes().any(|c| c.is_ascii_lowercase())
            && out.bytes().any(|c| c.is_ascii_digit());
        if ok {
            return Some(Secret::new(out));
        }
    }
    None
}

/// The audit factor of a code channel.
fn factor(channel: resetline_flow::model::Channel) -> Factor {
    match channel {
        resetline_flow::model::Channel::Sms => Factor::SmsCode,
        resetline_flow::model::Channel::Email => Factor::EmailCode,
    }
}

/// A destination of record, masked for the audit trail.
fn masked_destination(channel: resetline_flow::model::Channel, to: &str) -> Option<Destination> {
    match channel {
        resetline_flow::model::Channel::Sms => MaskedNumber::mask(to).ok().map(Destination::Phone),
        resetline_flow::model::Channel::Email => MaskedEmail::mask(to).ok().map(Destination::Email),
    }
}

/// What setting a new secret at the directory came to.
enum Applied {
    /// The directory took it.
    Set,
    /// The directory refused it; the prompt key speaks why.
    Refused(String),
    /// Take this outcome edge.
    Outcome(&'static str),
}

/// `user.mobile` -> `["user", "mobile"]`.
fn path_of(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_string).collect()
}

/// Fills a catalog template with rendered parameters, keeping digit segments as such.
/// `t` with its expressions replaced by the prompt's parameters (`params`: name, value).
fn fill(t: &Template, params: &[(&str, Vec<Segment>)]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for part in &t.parts {
        match part {
            Part::Text(x) => out.push(Segment::Text(x.clone())),
            Part::Expr(e) => {
                let Some((_, value)) = params.iter().find(|(name, _)| e.is_dotted(name)) else {
                    continue;
                };
                if e.filters.is_empty() {
                    out.extend(value.iter().cloned());
                } else {
                    let plain = resetline_flow::template::plain_text(value);
                    let single = Template {
                        parts: vec![Part::Expr(resetline_flow::template::Expr {
                            path: vec!["v".into()],
                            filters: e.filters.clone(),
                            offset: 0,
                            len: 0,
                        })],
                    };
                    if let Ok(segs) = single.render(&|_| Some(plain.clone())) {
                        out.extend(segs);
                    }
                }
            }
        }
    }
    out
}

/// Digits within the accepted count, all keypad digits.
fn fits(d: &Secret, digits: Digits) -> bool {
    let s = d.expose();
    let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
    n >= digits.min && n <= digits.max && s.bytes().all(|b| b.is_ascii_digit())
}

/// The target of `outcome` at `node`: its own edge, `exhausted` for input failures, then
/// `settings.on_error` for backend errors.
fn edge<'f>(flow: &'f Flow, node: &'f Node, outcome: &str) -> Option<&'f str> {
    if outcome == "next" {
        return node.next.as_ref().map(|n| n.value.as_str());
    }
    if let Some(t) = node.on(outcome) {
        return Some(t.value.as_str());
    }
    if matches!(outcome, "no_input" | "no_match")
        && let Some(t) = node.on("exhausted")
    {
        return Some(t.value.as_str());
    }
    let secure_parent = node.section.as_ref().and_then(|sec| flow.node(sec));
    if outcome == "pause_failed" {
        return None;
    }
    if outcome == "error" {
        return flow
            .settings
            .on_error
            .as_ref()
            .map(|t| t.value.as_str())
            .or_else(|| {
                secure_parent
                    .and_then(|p| p.on("pause_failed"))
                    .map(|t| t.value.as_str())
            });
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{DEADLINE, Engine, finish_by};
    use crate::backend::{BoxFuture, LockPolicy, LockState, Lockouts, StoreError};

    /// No lockouts (the in-memory store lives in `resetline-store`, which depends on this crate).
    #[derive(Debug)]
    struct Open;

    impl Lockouts for Open {
        fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<LockState, StoreError>> {
            Box::pin(async { Ok(LockState::default()) })
        }
        fn failure<'a>(
            &'a self,
            _: &'a str,
            _: u64,
            _: LockPolicy,
        ) -> BoxFuture<'a, Result<LockState, StoreError>> {
            Box::pin(async { Ok(LockState::default()) })
        }
        fn success<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn give_back<'a>(
            &'a self,
            _: &'a str,
            _: crate::backend::Reservation,
            _: u64,
            _: LockPolicy,
        ) -> BoxFuture<'a, Result<LockState, StoreError>> {
            Box::pin(async { Ok(LockState::default()) })
        }
    }

    fn engine() -> Engine {
        let log = Arc::new(crate::testing::CallLog::default());
        let clock = Arc::new(crate::FakeClock::at(1_700_000_000_000));
        crate::testing::engine(vec![], &log, clock, Arc::new(Open))
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_ready_at_once_is_answered_even_when_the_step_is_out_of_time() {
        let engine = engine();
        let past = tokio::time::Instant::now() - Duration::from_secs(1);
        let out = DEADLINE
            .scope(past, engine.bounded(std::future::ready(7)))
            .await;
        assert_eq!(out, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_callers_deadline_cuts_a_backend_calls_budget_short() {
        let engine = engine(); // 500 ms per backend call
        let started = tokio::time::Instant::now();
        let by = started + Duration::from_millis(200);
        let out = finish_by(by, engine.bounded(std::future::pending::<()>())).await;
        assert_eq!(out, None);
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        let step = finish_by(by, async { DEADLINE.try_with(|d| *d) }).await;
        assert_eq!(step, Ok(by), "steps inside see the caller's deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_waits_gets_its_budget_counted_from_before_its_first_poll() {
        let engine = engine(); // 500 ms per backend call
        let started = tokio::time::Instant::now();
        let out = engine
            .bounded(async {
                // The first poll itself takes 200 ms of the budget, then the call waits.
                tokio::time::advance(Duration::from_millis(200)).await;
                std::future::pending::<()>().await
            })
            .await;
        assert_eq!(out, None, "it ran out");
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(500),
            "at its budget from the start, not 500 ms after the first poll"
        );
        let late = engine
            .bounded(async {
                tokio::time::sleep(Duration::from_millis(499)).await;
                "answered"
            })
            .await;
        assert_eq!(
            late,
            Some("answered"),
            "one that answers within its budget is waited for"
        );
    }
}
