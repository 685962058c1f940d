//! The walk through the flow within one step: from node to node until the call waits for the
//! caller or the carrier, or ends.
//!
//! Invariants: at most [`MAX_HOPS`] nodes per step (the checker forbids cycles without input;
//! this only guards against a bug spinning a request); an outcome without an edge apologises
//! and ends the call rather than leave the caller in silence; entering a node applies its
//! `limit`, and entering or leaving a `secure` section pauses or resumes recording
//! (`secure.rs`) before anything else happens there; every way the call ends resumes a paused
//! recording first.

use std::collections::HashMap;

use resetline_audit::{EventType as Ev, Outcome as Out};
use resetline_flow::model::{Case, Kind, Node, SecretMode};
use resetline_flow::template::Template;
use resetline_flow::{Flow, Spanned};

use super::{Engine, Flowing};
use crate::action::Action;
use crate::secret::Secret;
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
                self.pause(flow, s, target).await?;
                target = &sec.start.value;
                continue;
            }
            return Ok(());
        }
        Err(Flowing::End)
    }

    /// Runs the node the call just entered; each family of kinds has its own module.
    async fn run_node<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        out: &mut Vec<Action>,
        secrets: &mut HashMap<String, Secret>,
    ) -> Flowing<'f> {
        match &node.kind {
            Kind::Say(p) => {
                self.say(flow, s, p, out);
                onward(node)
            }
            Kind::Set(vars) => self.set(s, node, vars),
            Kind::Branch(cases) => branch(s, node, cases),
            Kind::DirectoryFind(f) => self.find(flow, s, node, f).await,
            Kind::Hangup(h) => {
                if let Some(p) = &h.say {
                    self.say(flow, s, p, out);
                }
                let outcome = h.outcome.clone().unwrap_or_else(|| "completed".into());
                self.end(flow, s, &outcome, out).await;
                Flowing::End
            }
            Kind::Transfer(t) => self.transfer(flow, s, t, out).await,
            Kind::SetSecret(x) if x.mode == SecretMode::Generated => {
                self.generated_secret(flow, s, node, x, out).await
            }
            Kind::Menu(_)
            | Kind::Gather(_)
            | Kind::PinVerify(_)
            | Kind::SetSecret(_)
            | Kind::CodeVerify(_) => self.ask(flow, s, node, out).await,
            Kind::Secure(sec) => Flowing::Goto(&sec.start.value),
            Kind::CodeSend(c) => self.code_send(flow, s, node, c, out).await,
            Kind::Notify(n) => self.notify(flow, s, node, n).await,
            Kind::Ticket(t) => self.ticket(flow, s, node, t, out).await,
            Kind::Http(h) => self.http_node(s, node, h, secrets).await,
        }
    }

    /// `set`: each variable from its template; one that names an unset variable is an error.
    fn set<'f>(
        &self,
        s: &mut Session,
        node: &'f Node,
        vars: &[(Spanned<String>, Spanned<Template>)],
    ) -> Flowing<'f> {
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
        onward(node)
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

    /// Ends the call with `outcome` (resuming a paused recording first) and audits it.
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
const MAX_HOPS: usize = 200;

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

/// Where `node` goes on its success path: its `next`, else the `next` outcome (which has no
/// edge: the call apologises and ends).
pub(super) fn onward(node: &Node) -> Flowing<'_> {
    node.next
        .as_ref()
        .map_or(Flowing::Outcome("next"), |n| Flowing::Goto(&n.value))
}

/// Where `node` goes when its work is done: its `next`, else the `error` outcome (a node
/// whose success leads nowhere is a flow fault).
pub(super) fn onward_or_error(node: &Node) -> Flowing<'_> {
    node.next
        .as_ref()
        .map_or(Flowing::Outcome("error"), |n| Flowing::Goto(&n.value))
}

/// `branch`: the first case whose condition holds, else `next`.
fn branch<'f>(s: &Session, node: &'f Node, cases: &'f [Case]) -> Flowing<'f> {
    for c in cases {
        let path: Vec<String> = c.var.value.split('.').map(str::to_string).collect();
        let value = s.lookup(&path);
        let holds = match &c.test {
            resetline_flow::model::Test::Equals(v) => value.as_deref() == Some(v.as_str()),
            resetline_flow::model::Test::NotEquals(v) => value.as_deref() != Some(v.as_str()),
            resetline_flow::model::Test::In(vs) => value.as_ref().is_some_and(|x| vs.contains(x)),
            resetline_flow::model::Test::NotIn(vs) => {
                value.as_ref().is_none_or(|x| !vs.contains(x))
            }
            resetline_flow::model::Test::Exists(e) => value.is_some() == *e,
        };
        if holds {
            return Flowing::Goto(&c.next.value);
        }
    }
    onward(node)
}
