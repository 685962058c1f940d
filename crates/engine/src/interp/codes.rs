//! One-time codes: `code.send` (and re-send from the comfort loop) and `code.verify`.
//!
//! Invariants: the code is never stored, only the nonce it is derived from (`otp.rs`); a code
//! is bound to the call, the account it was sent for and the node that sent it; every send
//! passes the send caps first, which fail closed ([`STORE_DOWN`]); the message's intent is
//! journaled before it is sent; wrong codes count against the account across calls (the code
//! lockout) and kill the code after `attempts`; a late failure report never rejects a right
//! code typed now.

use resetline_audit::{
    Destination, EventType as Ev, Factor, MaskedEmail, MaskedNumber, Outcome as Out,
};
use resetline_flow::Flow;
use resetline_flow::model::{Kind, Node};

use super::{Engine, Flowing, journal, path_of, step_url};
use crate::action::Action;
use crate::backend::{OutgoingMessage, SendError};
use crate::otp;
use crate::secret::{Secret, scrub_digits};
use crate::session::{Delivery, Otp, Session, Waiting};

impl Engine {
    /// Sends (or re-sends) the one-time code of `code.send` node `node_id`. A valid code for
    /// the same node and account is sent again unchanged; otherwise a new one is minted.
    /// `resend` is a caller's request from the comfort loop: cooldown and the resend count
    /// apply, and a refusal is spoken instead of leaving the node.
    pub(super) async fn send_code(
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
    pub(super) async fn send_refused(
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
    pub(super) async fn code_input<'f>(
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
    pub(super) fn hold(
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
            action: step_url(flow, s.token, ""),
            prompts,
        });
        out.push(Action::Redirect {
            url: step_url(flow, s.token, "/timeout"),
        });
        s.waiting = Waiting::Digits;
    }
}

/// The refusal of a send whose cap could not be checked (the counter store failed or did
/// not answer in time): no provider call, the `rate_limited` edge, audited with this reason.
pub(super) const STORE_DOWN: &str = "counter_store_unavailable";

pub(super) const CODE_LOCK: crate::backend::LockPolicy = crate::backend::LockPolicy::CODE;

/// The audit factor of a code channel.
pub(super) fn factor(channel: resetline_flow::model::Channel) -> Factor {
    match channel {
        resetline_flow::model::Channel::Sms => Factor::SmsCode,
        resetline_flow::model::Channel::Email => Factor::EmailCode,
    }
}

/// A destination of record, masked for the audit trail.
pub(super) fn masked_destination(
    channel: resetline_flow::model::Channel,
    to: &str,
) -> Option<Destination> {
    match channel {
        resetline_flow::model::Channel::Sms => MaskedNumber::mask(to).ok().map(Destination::Phone),
        resetline_flow::model::Channel::Email => MaskedEmail::mask(to).ok().map(Destination::Email),
    }
}
