//! The walk through the flow within one step: from node to node until the call waits for the
//! caller or the carrier, or ends.
//!
//! Invariants: at most [`MAX_HOPS`] nodes per step (the checker forbids cycles without input;
//! this only guards against a bug spinning a request); an outcome without an edge apologises
//! and ends the call rather than leave the caller in silence; entering a node applies its
//! `limit`, and entering or leaving a `secure` section pauses or resumes recording
//! (`secure.rs`) before anything else happens there; every way the call ends resumes a paused
//! recording first.

use std::collections::{BTreeMap, HashMap};

use resetline_audit::{EventType as Ev, Factor, Outcome as Out};
use resetline_flow::Flow;
use resetline_flow::model::{Kind, Node, SecretMode, WhenAbsent};

use super::codes::masked_destination;
use super::pin::PIN_LOCK;
use super::{Engine, Flowing, journal, path_of, step_url};
use crate::action::Action;
use crate::backend::{AccountState, NewTicket, OutgoingMessage, RecordingAck, RecordingChange};
use crate::secret::{Secret, scrub_digits};
use crate::session::{Session, Var, Waiting};

impl Engine {
    /// Follows moves until the call waits or ends.
    pub(super) async fn drive<'f>(
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
    pub(super) async fn enter<'f>(
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

    pub(super) async fn run_node<'f>(
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
                        let mut rec = BTreeMap::new();
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
                let action = step_url(flow, s.token, "/transfer");
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
                        let mut rec = BTreeMap::new();
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

    /// The call ended (status callback): resume recording if paused, remember where.
    pub(super) async fn hangup(&self, _flow: &Flow, s: &mut Session) {
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

    pub(super) async fn end(
        &self,
        _flow: &Flow,
        s: &mut Session,
        outcome: &str,
        out: &mut Vec<Action>,
    ) {
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
}

/// Most nodes one step may pass through; the checker forbids cycles without input, so this is
/// only a guard against a bug ever spinning a request.
pub(super) const MAX_HOPS: usize = 200;

/// The target of `outcome` at `node`: its own edge, `exhausted` for input failures, then
/// `settings.on_error` for backend errors.
pub(super) fn edge<'f>(flow: &'f Flow, node: &'f Node, outcome: &str) -> Option<&'f str> {
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
