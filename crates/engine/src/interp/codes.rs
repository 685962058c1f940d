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
use resetline_flow::model::{Channel, CodeSend, CodeVerify, Kind, Node, WaitKey};

use super::drive::onward;
use super::input::Reprompt;
use super::{Engine, Flowing, journal, path_of};
use crate::action::Action;
use crate::backend::{OutgoingMessage, SendError};
use crate::otp;
use crate::secret::{Secret, scrub_digits};
use crate::session::{Delivery, Otp, Session, Waiting};
use crate::step_url::{StepEvent, step_url};

/// What a send of a code came to, when it did not refuse.
enum CodeSent {
    /// The code went out (a new one, or the valid one again).
    Sent,
    /// Not sent again: the cooldown has not passed or the resends are used up.
    Held,
}

/// A `code.verify` check in progress: the code its `code.send` issued in this call, that
/// node, the key wrong entries count under (the account's code lockout), and when the check
/// started.
struct Check<'f> {
    otp: Otp,
    send: &'f CodeSend,
    lockout_key: String,
    now: u64,
}

impl Engine {
    /// A `code.send` node: sends the code, says the node's prompt when it went out, and goes
    /// on (or takes the refusal's edge).
    pub(super) async fn code_send<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        c: &CodeSend,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        match self.send_code(flow, s, &node.id.value, c).await {
            Ok(sent) => {
                if let (CodeSent::Sent, Some(p)) = (sent, &c.say) {
                    self.say(flow, s, p, out);
                }
                onward(node)
            }
            Err(outcome) => Flowing::Outcome(outcome),
        }
    }

    /// Sends (or re-sends) the one-time code of `code.send` node `node_id`. A valid code for
    /// the same node and account is sent again unchanged, unless its cooldown has not passed
    /// or its resends are used up; otherwise a new one is minted. `Err`: the outcome edge.
    async fn send_code(
        &self,
        flow: &Flow,
        s: &mut Session,
        node_id: &str,
        c: &CodeSend,
    ) -> Result<CodeSent, &'static str> {
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
                tracing::info!(call = %s.call_sid, node = %node_id, too_soon, spent, "code not sent again");
                return Ok(CodeSent::Held);
            }
        }
        if self.over_cap(s, node_id, c, &to, &account).await {
            return Err("rate_limited");
        }
        let o = match valid {
            Some(o) => *o,
            None => self.mint(node_id, &account, c, now).ok_or("error")?,
        };
        let message = self.code_message(flow, s, c, &o, to, now);
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
                self.keep_sent(s, node_id, o, sent.id, now);
                Ok(CodeSent::Sent)
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

    /// True (and audited) when a send cap refuses this send ([`Engine::send_refused`]).
    async fn over_cap(
        &self,
        s: &mut Session,
        node_id: &str,
        c: &CodeSend,
        to: &str,
        account: &str,
    ) -> bool {
        let Some(rule) = self.send_refused(s, c.channel, to, account).await else {
            return false;
        };
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
        true
    }

    /// A new code of `c` for `account`, issued `now` (`None`: no randomness for its nonce).
    fn mint(&self, node_id: &str, account: &str, c: &CodeSend, now: u64) -> Option<Otp> {
        let nonce = otp::nonce(self.random.as_ref()).ok()?;
        let ttl = u64::try_from(c.ttl.value.as_millis()).unwrap_or(600_000);
        Some(Otp {
            send_node: node_id.to_string(),
            account: account.to_string(),
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
        })
    }

    /// The message carrying code `o` to `to`: the code derived again from its nonce, and the
    /// minutes it has left.
    fn code_message(
        &self,
        flow: &Flow,
        s: &Session,
        c: &CodeSend,
        o: &Otp,
        to: String,
        now: u64,
    ) -> OutgoingMessage {
        let code = otp::derive(&self.hash_key, &s.call_sid, &o.account, &o.nonce, o.length);
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
        OutgoingMessage {
            channel: c.channel,
            to,
            subject: self.engine_text(flow, s, "code_email_subject", &[]),
            body: Secret::new(body),
            status_callback: (c.channel == Channel::Sms)
                .then(|| format!("/sms/status?call={}", s.call_sid)),
        }
    }

    /// Code `o` went out as message `message_id`: the session keeps it, counted as one more
    /// send, its delivery pending.
    fn keep_sent(&self, s: &mut Session, node_id: &str, mut o: Otp, message_id: String, now: u64) {
        o.sends += 1;
        o.last_send_ms = now;
        o.message_id = Some(message_id);
        o.delivery = Delivery::Pending;
        tracing::info!(call = %s.call_sid, node = %node_id, sends = o.sends, "code sent");
        s.otp = Some(Box::new(o));
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
    pub(super) async fn code_input<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        v: &'f CodeVerify,
        digits: Option<Secret>,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let now = self.clock.now_ms();
        let check = match self.check_of(flow, s, v, now).await {
            Ok(check) => check,
            Err(refusal) => return refusal,
        };
        let o = &check.otp;
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
            return self.code_silence(flow, s, node, v, now, out);
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
                Some(WaitKey::Enter) => {
                    self.prompt_input(flow, s, node, false, out);
                    return Flowing::Wait;
                }
                Some(WaitKey::Resend) => {
                    match self.send_code(flow, s, &v.from.value, check.send).await {
                        Ok(CodeSent::Sent) => self.say_key(flow, s, "code_resent", out),
                        Ok(CodeSent::Held) => self.say_key(flow, s, "code_resend_too_soon", out),
                        Err("undeliverable") => return Flowing::Outcome("delivery_failed"),
                        Err(outcome) => return Flowing::Outcome(outcome),
                    }
                    self.hold(flow, s, w, out);
                    return Flowing::Wait;
                }
                Some(WaitKey::Goto(t)) => return Flowing::Goto(&t.value),
                None => {}
            }
        }
        let o = &check.otp;
        let expected = otp::derive(&self.hash_key, &s.call_sid, &o.account, &o.nonce, o.length);
        if otp::matches(&d, &expected) {
            return self.code_right(s, node, &check).await;
        }
        self.code_wrong(flow, s, node, v, &check, out).await
    }

    /// The code a `code.verify` checks: the live one its `code.send` issued, if that was for
    /// the account the call is about now (a code does not count for another account), and
    /// unless that account's code checks are locked out. `Err`: the outcome edge.
    async fn check_of<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        v: &CodeVerify,
        now: u64,
    ) -> Result<Check<'f>, Flowing<'f>> {
        let Some(o) = s
            .otp
            .clone()
            .filter(|o| o.send_node == v.from.value && !o.dead)
        else {
            return Err(Flowing::Outcome("failed"));
        };
        // The code is bound to the account it was sent for: if the call identified another
        // account since, the code does not count for it.
        let Some(Kind::CodeSend(send)) = flow.node(&v.from.value).map(|n| &n.kind) else {
            return Err(Flowing::Outcome("error"));
        };
        let current = s
            .lookup(&[path_of(&send.to.value)[0].clone(), "id".into()])
            .unwrap_or_default();
        if o.account != current {
            self.audit(s, Ev::AuthnLoginFail, Out::Failure, "other_account");
            return Err(Flowing::Outcome("failed"));
        }
        let lockout_key = crate::backend::code_lockout_key(&o.account);
        self.locked_out(s, &lockout_key, CODE_LOCK, factor(send.channel), "failed")
            .await?;
        Ok(Check {
            otp: *o,
            send,
            lockout_key,
            now,
        })
    }

    /// Silence at a `code.verify`: asks again (and fails after `attempts`), or, with a comfort
    /// loop, holds until `give_up_after`.
    fn code_silence<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        v: &CodeVerify,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let Some(w) = &v.wait else {
            let say = Reprompt::Prompt(None);
            return self.retry(flow, s, node, out, say, (v.attempts, "failed"));
        };
        let since = *s.waiting_since_ms.get_or_insert(now);
        if now.saturating_sub(since)
            >= u64::try_from(w.give_up_after.as_millis()).unwrap_or(u64::MAX)
        {
            return Flowing::Outcome("gave_up");
        }
        self.hold(flow, s, w, out);
        Flowing::Wait
    }

    /// The right code: the account's code failures are forgiven, the code is spent, and the
    /// call has one more verification of the account.
    async fn code_right<'f>(
        &self,
        s: &mut Session,
        node: &'f Node,
        check: &Check<'_>,
    ) -> Flowing<'f> {
        if let Err(e) = self
            .within("lockouts", self.lockouts.success(&check.lockout_key))
            .await
        {
            tracing::warn!(call = %s.call_sid, error = %e, "code failures not reset");
        }
        s.otp = None;
        s.verified(&check.otp.account);
        s.waiting_since_ms = None;
        tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "verified", "code check");
        let r = self
            .record(s, Ev::AuthnLoginSuccess, Out::Success)
            .with_reason("verified")
            .with_factor(factor(check.send.channel));
        s.pending_audit.push(r);
        node.next
            .as_ref()
            .map_or(Flowing::Outcome("failed"), |n| Flowing::Goto(&n.value))
    }

    /// A wrong code: counted on the code (the last allowed one kills it) and on the account's
    /// code lockout; the caller is asked again unless either ran out.
    async fn code_wrong<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        v: &CodeVerify,
        check: &Check<'_>,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let (now, channel) = (check.now, check.send.channel);
        let wrong = check.otp.wrong + 1;
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
            .within(
                "lockouts",
                self.lockouts.failure(&check.lockout_key, now, CODE_LOCK),
            )
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
            action: step_url(flow, s.token, StepEvent::Digits),
            prompts,
        });
        out.push(Action::Redirect {
            url: step_url(flow, s.token, StepEvent::Timeout),
        });
        s.waiting = Waiting::Digits;
    }
}

/// The refusal of a send whose cap could not be checked (the counter store failed or did
/// not answer in time): no provider call, the `rate_limited` edge, audited with this reason.
const STORE_DOWN: &str = "counter_store_unavailable";

const CODE_LOCK: crate::backend::LockPolicy = crate::backend::LockPolicy::CODE;

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
