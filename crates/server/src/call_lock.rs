//! One request per call at a time: the per-call lock in this process and, with a store shared
//! by several replicas, the call's lease there.
//!
//! [`CallLocks::take`] gives a request its call's [`CallGuard`] and the call's stored session.
//! The lock map holds only calls with a request running or waiting: a guard's drop removes the
//! entry under the shard's write lock when no other request holds a clone (so a waiter keeps
//! it); [`CallLocks::forget_idle`], run every 30 s, catches a request cancelled while it
//! waited. The lock guards the call's [`AuditTail`], so a call's audit records reach the sink
//! in step order.
//!
//! With a shared store the guard also holds the call's lease: taken in the same round trip as
//! the session's load (`CallLeases::acquire_and_load`; [`LEASE_TTL_MS`], renewed every
//! [`LEASE_RENEW`] while the step runs, [`CallGuard::renewing`]) and given back with the
//! session's save ([`CallGuard::save`], `save_and_release`), or on drop. A request that finds
//! the lease taken polls it (5 to 50 ms apart) and then reads what the other replica saved, so
//! two replicas never run a step of one call at once. A replica that dies mid-step stops
//! renewing, and the call is free again within 3 s. Every wait ends by the webhook's step
//! deadline (`deadline::step_by`).
//!
//! The lease ends at the save, before the step's audit records are appended. A step a dead
//! replica did not save runs again on the carrier's retry, so the effects of a crashed step
//! (a text sent, a backend called) are at-least-once; its saved state is exactly-once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use resetline_engine::session::{CallHasher, CallKey};
use resetline_engine::{BackendError, CallLeases, Random, Session, SessionStore, StoreError};

use crate::deadline;

/// How long a call's lease outlives its last renewal: a replica that dies mid-step frees the
/// call this long after (its holder renews it every [`LEASE_RENEW`] while the step runs).
pub(crate) const LEASE_TTL_MS: u64 = 3_000;
/// How often a held lease is renewed while a step runs.
pub(crate) const LEASE_RENEW: Duration = Duration::from_secs(1);
/// The backend name of a call's in-process lock in a wait that timed out.
pub(crate) const CALL_LOCK: &str = "call lock";

/// What a call's lock guards: the append of the call's audit records that was still running
/// when an earlier webhook of the call had to answer (`deadline`). The next webhook's records
/// are appended after it, so a call's records reach the sink in step order.
#[derive(Debug, Default)]
pub(crate) struct AuditTail(pub(crate) Option<tokio::task::JoinHandle<()>>);

impl AuditTail {
    fn pending(&self) -> bool {
        self.0.as_ref().is_some_and(|task| !task.is_finished())
    }
}

type Lock = Arc<tokio::sync::Mutex<AuditTail>>;

/// The calls with a request running or waiting in this process, and the shared store's leases.
#[derive(Debug, Default)]
pub(crate) struct CallLocks {
    map: DashMap<CallKey, Lock, CallHasher>,
    leases: std::sync::OnceLock<Leases>,
}

/// The shared store's call leases, and this process's holder id: a lease token is
/// `<holder>-<n>`, unique across replicas (random holder) and requests (counter).
#[derive(Debug)]
struct Leases {
    store: Arc<dyn CallLeases>,
    holder: String,
    next: AtomicU64,
}

/// A lease this request holds.
struct Held {
    store: Arc<dyn CallLeases>,
    call: String,
    token: String,
}

/// Exclusive hold of one call for one request: the in-process lock, and with a shared store
/// the call's lease (given back with the session's save, or on drop).
pub(crate) struct CallGuard {
    local: Option<tokio::sync::OwnedMutexGuard<AuditTail>>,
    lease: Option<Held>,
    /// Where the call's lock lives and its key: on drop the lock leaves the map unless
    /// another request holds or waits for it.
    locks: Arc<CallLocks>,
    key: CallKey,
}

/// A session as the store holds it, with its revision (for the compare-and-swap save).
pub(crate) type Stored = Option<(Session, u64)>;

impl CallLocks {
    /// With a store shared by several replicas: every request also takes the call's lease
    /// there. Fails only without randomness for this process's holder id.
    pub(crate) fn use_leases(
        &self,
        shared: Arc<dyn CallLeases>,
        random: &dyn Random,
    ) -> Result<(), BackendError> {
        let mut raw = [0u8; 8];
        random.fill(&mut raw).map_err(|_| {
            BackendError::new("call lease", "no randomness for the lease holder id")
        })?;
        let _ = self.leases.set(Leases {
            store: shared,
            holder: raw.iter().map(|b| format!("{b:02x}")).collect(),
            next: AtomicU64::new(0),
        });
        Ok(())
    }

    /// Calls with a request in progress or waiting.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Drops locks no request holds (left by a request cancelled while it waited, or by a call
    /// whose late audit append has finished); returns how many.
    pub(crate) fn forget_idle(&self) -> usize {
        let before = self.map.len();
        self.map.retain(|_, lock| {
            Arc::strong_count(lock) > 1 || lock.try_lock().map_or(true, |tail| tail.pending())
        });
        before.saturating_sub(self.map.len())
    }

    /// Takes `call_sid` for this request (one request per call at a time, across replicas
    /// too) and loads its session from `store`. A request that finds another replica running
    /// the call waits until that one saved, then runs against the saved session: a retried
    /// webhook then gets the stored answer replayed. Every wait ends by the webhook's step
    /// deadline: the lock's with a [`CALL_LOCK`] timeout, the lease's and the load's with
    /// theirs.
    pub(crate) async fn take(
        self: &Arc<Self>,
        store: &dyn SessionStore,
        call_sid: &str,
    ) -> Result<(CallGuard, Stored), StoreError> {
        // The server only takes calls whose id passed its check (at most 64 bytes).
        let key = CallKey::new(call_sid).ok_or_else(|| {
            StoreError::Backend(BackendError::new("sessions", "call id too long"))
        })?;
        let lock = match self.map.get(&key) {
            Some(lock) => lock.clone(),
            None => self.map.entry(key).or_default().clone(),
        };
        let by = deadline::step_by();
        let local = resetline_engine::until(by, lock.lock_owned())
            .await
            .ok_or_else(|| StoreError::Backend(BackendError::timeout(CALL_LOCK)))?;
        let mut guard = CallGuard {
            local: Some(local),
            lease: None,
            locks: self.clone(),
            key,
        };
        let loaded = match self.leases.get() {
            None => deadline::store(by, "sessions", store.load(call_sid)).await?,
            Some(leases) => leases.take(&mut guard, call_sid, by).await?,
        };
        Ok((guard, loaded))
    }
}

impl Leases {
    /// Takes the call's lease for `guard` and loads the session with it.
    async fn take(
        &self,
        guard: &mut CallGuard,
        call_sid: &str,
        by: tokio::time::Instant,
    ) -> Result<Stored, StoreError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let token = format!("{}-{n:x}", self.holder);
        let held = |token| Held {
            store: self.store.clone(),
            call: call_sid.to_string(),
            token,
        };
        // The usual case, a free call: lease and session in one round trip.
        let free = self.store.acquire_and_load(call_sid, &token, LEASE_TTL_MS);
        if let Some(loaded) = deadline::store(by, "call lease", free).await? {
            guard.lease = Some(held(token));
            return Ok(loaded);
        }
        // Another replica runs a step of this call: wait for its lease (without reading the
        // session each time), then read what it saved.
        let mut pause = Duration::from_millis(5);
        loop {
            if tokio::time::Instant::now() + pause >= by {
                return Err(StoreError::Backend(BackendError::timeout("call lease")));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            let taken = self.store.try_acquire(call_sid, &token, LEASE_TTL_MS);
            if deadline::store(by, "call lease", taken).await? {
                guard.lease = Some(held(token));
                return deadline::store(by, "sessions", self.store.load(call_sid)).await;
            }
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        // A call whose records are still being written keeps its lock (and so the order of
        // its records) until the periodic sweep finds the append done.
        let pending = self.local.as_ref().is_some_and(|tail| tail.pending());
        drop(self.local.take());
        // Under the shard's write lock: nobody can clone the lock between the count and the
        // removal, and a request that cloned it before keeps the entry (count > 1).
        if !pending {
            self.locks
                .map
                .remove_if(&self.key, |_, lock| Arc::strong_count(lock) == 1);
        }
        if let Some(Held { store, call, token }) = self.lease.take() {
            tokio::spawn(async move {
                if let Err(e) = store.release(&call, &token).await {
                    tracing::warn!(call = %call, error = %e, "call lease not released; it expires by itself");
                }
            });
        }
    }
}

impl CallGuard {
    /// The call's audit tail, for appending after the call's earlier records.
    pub(crate) fn tail(&mut self) -> Option<&mut AuditTail> {
        self.local.as_deref_mut()
    }

    /// Runs `work` (a step: backend calls of up to 12 s) while renewing the call's lease every
    /// [`LEASE_RENEW`], so it does not lapse under a slow step. A lost lease is logged and the
    /// work finishes: the save's compare-and-swap still guards the session.
    pub(crate) async fn renewing<F: std::future::Future>(&self, work: F) -> F::Output {
        let Some(held) = &self.lease else {
            return work.await;
        };
        let mut work = std::pin::pin!(work);
        let renew = async {
            loop {
                tokio::time::sleep(LEASE_RENEW).await;
                let renewed = held.store.renew(&held.call, &held.token, LEASE_TTL_MS);
                match renewed.await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(call = %held.call, "call lease lost while held; the save's compare-and-swap still guards the session");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(call = %held.call, error = %e, "call lease not renewed");
                    }
                }
            }
        };
        tokio::select! {
            biased;
            out = &mut work => out,
            () = renew => work.await,
        }
    }

    /// Saves `session` to `store` within the webhook's deadline, for `ttl_ms`. With a lease,
    /// the save gives it back too (unless the store failed: then the guard's drop tries
    /// again; the guard keeps it until here, so a request cancelled during the save still
    /// releases it on drop).
    pub(crate) async fn save(
        &mut self,
        store: &dyn SessionStore,
        session: Session,
        revision: u64,
        ttl_ms: u64,
    ) -> Result<u64, StoreError> {
        let by = deadline::answer_by();
        let Some(held) = &self.lease else {
            return deadline::store(by, "sessions", store.save(session, revision, ttl_ms)).await;
        };
        let saved = held
            .store
            .save_and_release(session, revision, ttl_ms, &held.token);
        let saved = deadline::store(by, "sessions", saved).await;
        if !matches!(saved, Err(StoreError::Backend(_))) {
            self.lease = None;
        }
        saved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three requests of one call: the second waits for the first; when the first is done the
    /// lock stays (the second holds it), so the third waits for the second instead of taking
    /// a fresh lock; the last one out removes it.
    #[tokio::test]
    async fn a_calls_lock_outlives_its_holder_while_a_request_waits() {
        let clock = Arc::new(resetline_engine::FakeClock::at(1_700_000_000_000));
        let store: Arc<dyn SessionStore> = Arc::new(resetline_store::MemoryStore::new(clock, 10));
        let locks = Arc::new(CallLocks::default());
        let take = |locks: &Arc<CallLocks>| {
            let (locks, store) = (locks.clone(), store.clone());
            tokio::spawn(async move { locks.take(store.as_ref(), "CA1").await.map(|(g, _)| g) })
        };
        let (first, _) = locks.take(store.as_ref(), "CA1").await.expect("first");
        let second = take(&locks);
        tokio::task::yield_now().await; // the second is now waiting for the lock
        assert!(!second.is_finished());
        drop(first);
        let second = second.await.expect("task").expect("second");
        assert_eq!(locks.len(), 1, "the waiter kept the call's lock");
        let third = take(&locks);
        tokio::task::yield_now().await;
        assert!(
            !third.is_finished(),
            "a third request waits for the second (same lock), it does not take a new one"
        );
        drop(second);
        drop(third.await.expect("task").expect("third"));
        assert_eq!(locks.len(), 0, "the last holder removed the lock");
    }
}
