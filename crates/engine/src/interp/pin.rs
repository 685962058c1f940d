//! `pin.verify`, and the lockout check every verification passes first.
//!
//! Invariants: a locked-out account's checks are refused (audited, not counted), and so is
//! any check when the lockout store fails (fail closed); an attempt is counted before the slow
//! check and given back only when the check did not complete (`reserve.rs`); a decoy record
//! (enumeration-safe mode) runs the directory's dummy check, as slow as a real one, and never
//! matches.

use resetline_audit::{EventType as Ev, Factor, Outcome as Out};

use super::{Engine, Flowing};
use crate::session::Session;

impl Engine {
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
pub(super) const NO_ACCOUNT: &str = "resetline-no-such-account";
