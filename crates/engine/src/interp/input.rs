//! Input nodes: the gather the engine emits for the node the call waits at, and what the
//! caller's digits (or silence) do there: `menu` and `gather` here, the verifications and the
//! new secret in their own modules.
//!
//! Invariant: a node counts its attempts and takes its exhausted outcome (`no_input`,
//! `no_match`, `failed`) after the last one; digits outside the accepted count or not keypad
//! digits are a no-match; a `secret: true` gather keeps its digits only for this step (never
//! in the session).

use std::collections::HashMap;
use std::time::Duration;

use resetline_audit::{EventType as Ev, Factor, Outcome as Out};
use resetline_flow::Flow;
use resetline_flow::model::{Digits, Kind, Node, Prompt};

use super::directory::DECOY;
use super::pin::{NO_ACCOUNT, PIN_LOCK};
use super::{Engine, Flowing, step_url};
use crate::action::Action;
use crate::secret::Secret;
use crate::session::{Session, Var, Waiting};

impl Engine {
    /// Entering an input node: asks (the gather) and waits for the caller. A `pin.verify` of
    /// a locked-out account is refused before anything is asked.
    pub(super) async fn ask<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
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

    /// Emits the gather for the current input node. `confirm` asks for the second entry of a
    /// new secret.
    pub(super) fn prompt_input(
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
            action: step_url(flow, s.token, ""),
            prompts,
        });
        out.push(Action::Redirect {
            url: step_url(flow, s.token, "/timeout"),
        });
        s.waiting = if confirm {
            Waiting::Confirm
        } else {
            Waiting::Digits
        };
    }

    /// Handles input (or its absence) at the current node.
    pub(super) async fn input<'f>(
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
}

/// Digits within the accepted count, all keypad digits.
pub(super) fn fits(d: &Secret, digits: Digits) -> bool {
    let s = d.expose();
    let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
    n >= digits.min && n <= digits.max && s.bytes().all(|b| b.is_ascii_digit())
}
