//! PIN attempts counted before their check, and given back when the check does not complete.
//!
//! A `pin.verify` counts the attempt as a failure *before* it asks the directory, so parallel
//! calls cannot each get a free guess during a lockout; a right PIN then forgives every
//! failure (`success`). Invariant: only a check that completed with an answer stays counted.
//! A check that failed at the directory, ran out of its time budget (a slow bind, a queue
//! for the hash pool) or was cancelled with its webhook gives back exactly the one attempt it
//! reserved ([`Lockouts::give_back`]): the caller learned nothing from it, and a directory
//! outage must not push real users toward the growing wait or the 100-failure suspension.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{LockPolicy, LockState, Lockouts, Reservation, StoreError};
use crate::session::Session;

use super::Engine;

/// An attempt counted before its check. Dropped while still armed (the step was cancelled
/// during the check), it gives the attempt back on a task of its own.
pub(super) struct Reserved {
    lockouts: Arc<dyn Lockouts>,
    account: String,
    reservation: Reservation,
    policy: LockPolicy,
    now_ms: u64,
    /// The longest the give-back of a cancelled step may take.
    budget: Duration,
    armed: bool,
}

impl Reserved {
    /// The check answered: the attempt stays counted. Returns the state counting it.
    pub(super) fn keep(mut self) -> LockState {
        self.armed = false;
        self.reservation.after
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("a cancelled PIN check stays counted: no runtime to give it back");
            return;
        };
        let (lockouts, account) = (self.lockouts.clone(), std::mem::take(&mut self.account));
        let (reservation, now, policy) = (self.reservation, self.now_ms, self.policy);
        let budget = self.budget;
        runtime.spawn(async move {
            let given = lockouts.give_back(&account, reservation, now, policy);
            match tokio::time::timeout(budget, given).await {
                Ok(Ok(_)) => tracing::info!("a cancelled PIN check was not counted"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "a cancelled PIN check stays counted")
                }
                Err(_) => tracing::warn!("a cancelled PIN check stays counted: store timed out"),
            }
        });
    }
}

impl Engine {
    /// Counts an attempt for `account` before its check; `before` is the state the lockout
    /// check just read.
    pub(super) async fn reserve(
        &self,
        account: &str,
        before: LockState,
        now_ms: u64,
        policy: LockPolicy,
    ) -> Result<Reserved, StoreError> {
        let after = self
            .within("lockouts", self.lockouts.failure(account, now_ms, policy))
            .await?;
        Ok(Reserved {
            lockouts: self.lockouts.clone(),
            account: account.to_string(),
            reservation: Reservation { before, after },
            policy,
            now_ms,
            budget: self.budget,
            armed: true,
        })
    }

    /// The check did not complete: gives the attempt back (within the step's time). If the
    /// store fails or the step is cancelled now, the attempt stays counted: it is never given
    /// back twice.
    pub(super) async fn give_back(&self, s: &Session, mut reserved: Reserved) {
        reserved.armed = false;
        let now = self.clock.now_ms();
        let given = self.lockouts.give_back(
            &reserved.account,
            reserved.reservation,
            now,
            reserved.policy,
        );
        match self.within("lockouts", given).await {
            Ok(_) => {
                tracing::info!(call = %s.call_sid, "the PIN check did not complete; not counted")
            }
            Err(e) => {
                tracing::warn!(call = %s.call_sid, error = %e, "the PIN check did not complete but stays counted")
            }
        }
    }
}
