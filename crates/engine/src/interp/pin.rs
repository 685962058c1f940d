//! `pin.verify`, and the lockout check every verification passes first.
//!
//! Invariants: a locked-out account's checks are refused (audited, not counted), and so is
//! any check when the lockout store fails (fail closed); an attempt is counted before the slow
//! check and given back only when the check did not complete (`reserve.rs`); a decoy record
//! (enumeration-safe mode) runs the directory's dummy check, as slow as a real one, and never
//! matches.

use resetline_audit::{EventType as Ev, Factor, Outcome as Out};
use resetline_flow::Flow;
use resetline_flow::model::{Node, PinVerify};

use super::directory::DECOY;
use super::input::{Reprompt, fits};
use super::{Engine, Flowing};
use crate::action::Action;
use crate::backend::{BackendError, LockState};
use crate::secret::Secret;
use crate::session::Session;

impl Engine {
    /// Digits (or silence) at a `pin.verify`: the lockout check, the attempt counted before
    /// the check ([`Engine::reserve`]), the check, then its answer.
    pub(super) async fn pin_input<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        p: &PinVerify,
        digits: Option<Secret>,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let Some(d) = digits.filter(|d| fits(d, p.digits)) else {
            let say = Reprompt::Key("pin_wrong");
            return self.retry(flow, s, node, out, say, (p.attempts, "failed"));
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
        match self.check_pin(s, p, &account, &d).await {
            Ok(true) => {
                guard.keep();
                self.pin_right(s, node, &account).await
            }
            Ok(false) => {
                let reserved = guard.keep();
                self.pin_wrong(s, node);
                if self.pin_locked(s, &reserved, now) {
                    self.say_key(flow, s, "pin_wrong", out);
                    return Flowing::Outcome("locked_out");
                }
                let say = Reprompt::Key("pin_wrong");
                let next = self.retry(flow, s, node, out, say, (p.attempts, "failed"));
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

    /// Asks the directory whether `pin` is `account`'s PIN. A decoy record gets the same work
    /// as a real wrong PIN (the directory's dummy check for an account it does not hold), and
    /// never a match.
    async fn check_pin(
        &self,
        s: &Session,
        p: &PinVerify,
        account: &str,
        pin: &Secret,
    ) -> Result<bool, BackendError> {
        let decoy = s.lookup(&[p.account.value.clone(), DECOY.into()]).is_some();
        if decoy {
            self.within("directory", self.directory.verify_pin(NO_ACCOUNT, pin))
                .await
                .map(|_| false)
        } else {
            self.within("directory", self.directory.verify_pin(account, pin))
                .await
        }
    }

    /// The right PIN: every failure of `account` is forgiven, and the call has one more
    /// verification of it.
    async fn pin_right<'f>(&self, s: &mut Session, node: &'f Node, account: &str) -> Flowing<'f> {
        if let Err(e) = self
            .within("lockouts", self.lockouts.success(account))
            .await
        {
            tracing::warn!(call = %s.call_sid, error = %e, "lockout state not reset");
        }
        s.verified(account);
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

    /// A wrong PIN, logged and audited with its attempt number in this call.
    fn pin_wrong(&self, s: &mut Session, node: &Node) {
        tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = "wrong", attempt = s.attempts + 1, "pin check");
        let r = self
            .record(s, Ev::AuthnLoginFail, Out::Failure)
            .with_reason("wrong")
            .with_factor(Factor::Pin)
            .with_detail("attempt", (s.attempts + 1).to_string());
        s.pending_audit.push(r);
    }

    /// True (and audited) when the count `state` that kept a wrong PIN locks the account out
    /// at `now`: a growing wait, or suspended.
    fn pin_locked(&self, s: &mut Session, state: &LockState, now: u64) -> bool {
        if !state.locked(now, &PIN_LOCK) {
            return false;
        }
        let suspended = state.failures >= PIN_LOCK.suspend_at;
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
                (state.locked_until_ms.saturating_sub(now) / 1000).to_string(),
            );
        s.pending_audit.push(r);
        true
    }

    /// Checks of `key` (an account's PIN, or its one-time codes) are refused while it is
    /// locked out (growing wait, or suspended after 100 consecutive failures); the refused
    /// attempt is audited and not counted. A lockout store failure refuses too (fail closed).
    /// Otherwise the state read, for a reservation to restore.
    pub(super) async fn locked_out<'f>(
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
}

pub(super) const PIN_LOCK: crate::backend::LockPolicy = crate::backend::LockPolicy::PIN;

/// The account a decoy's PIN is checked against: no directory holds it, so the directory runs
/// the dummy check it runs for any unknown account, as slow as a real one.
const NO_ACCOUNT: &str = "resetline-no-such-account";
