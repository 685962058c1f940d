//! The traits backends implement. The engine depends on these, never on an implementation:
//! directories (embedded YAML, LDAP, SCIM, Okta), recording control (Twilio REST), session
//! stores (memory, Redis). Invariant: no trait here takes or returns a secret except as
//! [`Secret`], and every call can fail with a [`BackendError`] the flow turns into a path.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::secret::{Secret, scrub_digits};
use crate::session::Session;

/// A boxed, sendable future: what trait methods return so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend failed. The message is for logs; callers hear the flow's error path. It may
/// quote what the backend was sent, so it is printed (`Display` and `Debug`) only through
/// [`scrub_digits`](crate::secret::scrub_digits).
#[derive(Clone, PartialEq, Eq)]
pub struct BackendError {
    /// Which backend (e.g. `directory`, `recording`).
    pub backend: &'static str,
    /// What went wrong, for logs.
    pub message: String,
    /// The backend did not answer within its time budget.
    pub timeout: bool,
}

impl BackendError {
    /// A failure of `backend`.
    pub fn new(backend: &'static str, message: impl Into<String>) -> Self {
        BackendError {
            backend,
            message: message.into(),
            timeout: false,
        }
    }

    /// `backend` was slower than its budget.
    pub fn timeout(backend: &'static str) -> Self {
        BackendError {
            backend,
            message: "no answer within the time budget".into(),
            timeout: true,
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.backend, scrub_digits(&self.message))
    }
}

impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendError")
            .field("backend", &self.backend)
            .field("message", &scrub_digits(&self.message))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl std::error::Error for BackendError {}

/// Account state as the directory reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountState {
    /// Usable.
    Active,
    /// Locked (e.g. too many failed logins): goes to an agent.
    Locked,
    /// Disabled: cannot be reset by phone.
    Disabled,
}

/// A directory record. Contact fields are full values: the engine masks them before they
/// are spoken, logged or audited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account id (e.g. employee ID).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Mobile number of record (E.164).
    pub mobile: Option<String>,
    /// Email of record.
    pub email: Option<String>,
    /// State.
    pub state: AccountState,
    /// May this account reset by phone (per-user flag and global flag combined).
    pub allow_phone_reset: bool,
    /// Birth date `YYYY-MM-DD`, when known (only used to refuse it as a PIN).
    pub birth_date: Option<String>,
}

/// Why a directory refused a new secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetSecretError {
    /// The directory's own policy refused it; the reason is spoken (mapped to a prompt key
    /// when it matches one, e.g. `policy_too_short`).
    Rejected {
        /// A prompt key for the spoken reason (`policy_rejected` when unknown).
        prompt: String,
        /// The backend's reason, for logs and the audit trail.
        reason: String,
    },
    /// The account is locked at the directory.
    Locked,
    /// The directory failed.
    Backend(BackendError),
}

/// The identity store.
pub trait Directory: Send + Sync + fmt::Debug {
    /// Finds an account by an attribute; `Ok(None)` when there is none.
    fn find<'a>(
        &'a self,
        by: resetline_flow::model::LookupBy,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, BackendError>>;
    /// Checks a PIN. `Ok(false)` for a wrong PIN.
    fn verify_pin<'a>(
        &'a self,
        account: &'a str,
        pin: &'a Secret,
    ) -> BoxFuture<'a, Result<bool, BackendError>>;
    /// Sets a new secret.
    fn set_secret<'a>(
        &'a self,
        account: &'a str,
        secret: &'a Secret,
    ) -> BoxFuture<'a, Result<(), SetSecretError>>;
}

/// Recording states the engine asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingChange {
    /// Pause; `skip` cuts the paused time instead of writing silence.
    Pause {
        /// Twilio `PauseBehavior=skip`.
        skip: bool,
    },
    /// Resume.
    Resume,
}

/// What the carrier answered to a recording change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingAck {
    /// Done.
    Done,
    /// The call has no active recording (Twilio 404).
    NoRecording,
}

/// Call-recording control (Twilio: `POST .../Calls/{CallSid}/Recordings/Twilio.CURRENT.json`).
pub trait Recording: Send + Sync + fmt::Debug {
    /// Applies `change` to the call's current recording and returns once the carrier answered.
    fn change<'a>(
        &'a self,
        call_sid: &'a str,
        change: RecordingChange,
    ) -> BoxFuture<'a, Result<RecordingAck, BackendError>>;
}

/// A session store failed or lost a race.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// Another request changed the session first (compare-and-swap failed).
    Conflict,
    /// The store failed.
    Backend(BackendError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("the session changed concurrently"),
            StoreError::Backend(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {}

/// Where call sessions live between webhooks. Sessions are keyed by CallSid and expire.
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// The session of `call_sid` with its revision, if it exists and has not expired.
    fn load<'a>(
        &'a self,
        call_sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<(Session, u64)>, StoreError>>;
    /// Saves `session` if its stored revision is still `expected` (0 = must not exist), and
    /// bumps the revision. Expires `ttl_ms` after this save. Takes the session by value: the
    /// store keeps it (or its serialized form) without another copy.
    fn save(
        &self,
        session: Session,
        expected: u64,
        ttl_ms: u64,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Whether the call `call_sid` ended within the store's ended-call ttl, even when its
    /// session has expired since: a save of a session whose call has ended (`Session::ended`)
    /// also remembers the call id for that long, so a replayed first webhook of an ended call
    /// is refused instead of starting the call again.
    fn ended<'a>(&'a self, call_sid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// How many live sessions there are (for metrics and `/readyz`).
    fn len(&self) -> usize;
    /// True when no session is live.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// False while the store cannot be reached (`/readyz` reports it). A cached answer: it
    /// must not cost a round trip.
    fn healthy(&self) -> bool {
        true
    }
}

/// Cross-replica mutual exclusion per call, kept by a session store shared by replicas for
/// its own sessions: while one replica holds a call's lease, no other replica runs a step of
/// that call (so a webhook posted to two replicas at once has one effect). A lease expires by
/// itself after its ttl unless its holder renews it, so a crashed holder blocks nobody for
/// long. A webhook takes the lease and loads the session together (`acquire_and_load`) and
/// saves and gives the lease back together (`save_and_release`): a store that can do each in
/// one round trip overrides them.
pub trait CallLeases: SessionStore {
    /// Takes the lease of `call_sid` with `token` for `ttl_ms` if nobody holds it:
    /// `Ok(true)` taken, `Ok(false)` held by someone else.
    fn try_acquire<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Extends the lease to `ttl_ms` from now if `token` still holds it: `Ok(false)` when it
    /// was lost (expired, maybe taken by someone else).
    fn renew<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Gives the lease back if `token` still holds it (a lease that expired and was taken by
    /// another holder is left alone).
    fn release<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// `try_acquire`, then, when taken, `load`: `Ok(None)` when someone else holds the lease,
    /// `Ok(Some(loaded))` when it is now `token`'s. A failed load gives the lease back.
    #[allow(clippy::type_complexity)] // Option<Option<..>>: busy, or taken with what `load` says
    fn acquire_and_load<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Option<(Session, u64)>>, StoreError>> {
        Box::pin(async move {
            if !self.try_acquire(call_sid, token, ttl_ms).await? {
                return Ok(None);
            }
            let loaded = self.load(call_sid).await;
            loaded_or_released(self, call_sid, token, loaded).await
        })
    }
    /// `save`, then `release` whatever the save's outcome (the request is over either way; a
    /// lease that could not be given back expires by itself, so only the save's result counts).
    fn save_and_release<'a>(
        &'a self,
        session: Session,
        expected: u64,
        ttl_ms: u64,
        token: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let call_sid = session.call_sid.clone();
            let saved = self.save(session, expected, ttl_ms).await;
            if let Err(e) = self.release(&call_sid, token).await {
                tracing::warn!(call = %call_sid, error = %e, "call lease not released; it expires by itself");
            }
            saved
        })
    }
}

/// The end of an `acquire_and_load` whose lease was taken: the load's answer, or, when the
/// load failed, its error after giving the lease back (the request ends there).
#[allow(clippy::type_complexity)] // as `acquire_and_load`
pub async fn loaded_or_released<L: CallLeases + ?Sized>(
    leases: &L,
    call_sid: &str,
    token: &str,
    loaded: Result<Option<(Session, u64)>, StoreError>,
) -> Result<Option<Option<(Session, u64)>>, StoreError> {
    match loaded {
        Ok(loaded) => Ok(Some(loaded)),
        Err(e) => {
            let _ = leases.release(call_sid, token).await;
            Err(e)
        }
    }
}

/// A message to send: a one-time code, or a notice after a reset.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// SMS or email.
    pub channel: resetline_flow::model::Channel,
    /// E.164 number or email address of record (full: only the sender sees it).
    pub to: String,
    /// Email subject (ignored for SMS).
    pub subject: String,
    /// The text. A `Secret` because it may carry a one-time code.
    pub body: Secret,
    /// Engine-relative URL the provider posts delivery reports to (`/sms/status?...`), when
    /// the channel has delivery reports.
    pub status_callback: Option<String>,
}

/// A provider accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The provider's id (Twilio `SM...`), to match delivery reports.
    pub id: String,
}

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The provider refused the destination (Twilio 21211 invalid number, 21614 not a mobile,
    /// 21610 unsubscribed, ...): the flow's `undeliverable` path.
    Undeliverable {
        /// Provider error code, when given.
        code: Option<u32>,
        /// Provider message, for logs (no secret: bodies are never echoed).
        reason: String,
    },
    /// The provider failed or timed out.
    Backend(BackendError),
}

/// Sends SMS and email.
pub trait Messenger: Send + Sync + fmt::Debug {
    /// Sends `message` and returns once the provider accepted or refused it.
    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<SentMessage, SendError>>;
}

/// A ticket to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    /// Short description.
    pub summary: String,
    /// Longer description.
    pub details: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// The call, for correlation.
    pub call_sid: String,
}

/// An opened ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRef {
    /// Human-facing number read back to the caller (ServiceNow `number`, e.g. `INC0012345`).
    pub number: String,
    /// System id used to update it (ServiceNow `sys_id`).
    pub id: String,
}

/// The service-desk ticket system.
pub trait Tickets: Send + Sync + fmt::Debug {
    /// Opens a ticket.
    fn open(&self, ticket: NewTicket) -> BoxFuture<'_, Result<TicketRef, BackendError>>;
    /// Closes (resolves) a ticket opened by `open`.
    fn close<'a>(
        &'a self,
        ticket: &'a TicketRef,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// Counters with a time window, shared across calls (and replicas, with Redis): send caps and
/// rate limits. Keys never contain a secret.
pub trait Counters: Send + Sync + fmt::Debug {
    /// Counts one event for `key` in the window of `window_ms` ending now, if fewer than
    /// `limit` were counted; returns whether it was allowed (a refused hit is not counted).
    fn hit<'a>(
        &'a self,
        key: &'a str,
        window_ms: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// Where audit records go (hash-chained files or PostgreSQL, behind the server's retry
/// buffer). `append` returns once the records are written per the sink's durability policy.
/// The engine holds one too, its journal: before an irreversible effect it appends the
/// effect's intent and waits for it (`append_by`), and the effect happens only if that
/// succeeded.
pub trait AuditSink: Send + Sync + fmt::Debug {
    /// Appends records in order.
    fn append(
        &self,
        records: Vec<resetline_audit::Record>,
    ) -> BoxFuture<'_, Result<(), BackendError>>;

    /// `append`, answered by `deadline`: `Ok` only once the records are written. A sink
    /// that keeps records for a retry (the server's retry buffer) keeps them when the time
    /// runs out, and gives up its own wait rather than being cancelled, so nothing is lost;
    /// the records carry ids, so a write that completes late is not written twice. The
    /// default cancels `append` at the deadline.
    fn append_by(
        &self,
        records: Vec<resetline_audit::Record>,
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            tokio::time::timeout_at(deadline, self.append(records))
                .await
                .unwrap_or_else(|_| Err(BackendError::timeout("audit")))
        })
    }

    /// The intents among the trail's recent records that no record names yet (effects whose
    /// outcome was never written, after a crash), oldest first. Sinks that cannot tell
    /// answer none.
    fn open_intents(&self) -> BoxFuture<'_, Result<Vec<resetline_audit::Record>, BackendError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Flushes and closes the trail at shutdown (a final signed checkpoint for file sinks).
    fn close(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }

    /// False while the sink cannot write (`/readyz` reports it).
    fn healthy(&self) -> bool {
        true
    }

    /// True when an `append` that fails has written none of its records (one transaction):
    /// a caller may then hand over several records at once and retry them all. False (the
    /// default): records before the failing one may be written, so a caller that retries
    /// hands them over one at a time.
    fn atomic_batches(&self) -> bool {
        false
    }
    /// Counters for metrics (records waiting for a retry, retried, dropped).
    fn stats(&self) -> AuditStats {
        AuditStats::default()
    }

    /// True while new calls must be refused because their records could not be kept
    /// (`audit.on_failure: refuse` with the sink down, or the retry buffer full).
    fn refuses_new_calls(&self) -> bool {
        false
    }

    /// Retention: removes records older than `cutoff` and appends a `retention_purge`
    /// record saying so. Returns how many records were removed.
    fn purge(
        &self,
        cutoff: resetline_audit::time::OffsetDateTime,
    ) -> BoxFuture<'_, Result<u64, BackendError>> {
        let _ = cutoff;
        Box::pin(async { Err(BackendError::new("audit", "this sink cannot purge")) })
    }
}

/// What a buffering audit sink reports for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Records accepted but not yet written (waiting for a retry).
    pub pending: u64,
    /// Records written by a retry after a failed first attempt.
    pub retried: u64,
    /// Records refused because the retry buffer was full (each one logged as an error).
    pub dropped: u64,
    /// Failed write attempts.
    pub write_failures: u64,
}

/// PIN failures of one account across calls (and replicas, with Redis).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockState {
    /// Consecutive failures (reset by a success, or after 12 h without one).
    pub failures: u32,
    /// When the last failure happened (ms).
    pub last_failure_ms: u64,
    /// PIN checks are refused until then (ms).
    pub locked_until_ms: u64,
}

/// Growing-wait lockout policy (security.md checks 12-14, Keycloak-style defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    /// Failures allowed before waits start.
    pub free: u32,
    /// Wait added per failure past `free`.
    pub step_ms: u64,
    /// Longest wait.
    pub max_wait_ms: u64,
    /// Failures are forgotten after this long without one.
    pub reset_after_ms: u64,
    /// Consecutive failures that suspend PIN checks until an operator resets them.
    pub suspend_at: u32,
}

impl LockPolicy {
    /// PINs: waits start at the third consecutive failure.
    pub const PIN: LockPolicy = LockPolicy {
        free: 2,
        step_ms: 60_000,
        max_wait_ms: 15 * 60_000,
        reset_after_ms: 12 * 3_600_000,
        suspend_at: 100,
    };
    /// One-time codes across calls: each code already dies at its own attempt cap, so waits
    /// start once more than a whole code's worth of consecutive failures is reached.
    pub const CODE: LockPolicy = LockPolicy {
        free: 5,
        ..LockPolicy::PIN
    };
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy::PIN
    }
}

impl LockPolicy {
    /// When checks may start again after `failures` consecutive failures, the last at
    /// `last_ms` (0: not locked by a wait).
    fn locked_until(&self, failures: u32, last_ms: u64) -> u64 {
        let over = u64::from(failures.saturating_sub(self.free));
        if over == 0 {
            return 0;
        }
        last_ms.saturating_add(over.saturating_mul(self.step_ms).min(self.max_wait_ms))
    }
}

/// The lockout key of an account's one-time codes (its PIN's key is the account id itself).
pub fn code_lockout_key(account: &str) -> String {
    format!("code:{account}")
}

/// A failure counted before a check whose result was not known yet (so parallel calls cannot
/// each get a free guess during a lockout): the state read before it and the state
/// [`Lockouts::failure`] returned. A check that did not complete gives it back with
/// [`Lockouts::give_back`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reservation {
    /// The state the caller read before counting (its lockout check).
    pub before: LockState,
    /// The state counting the failure returned.
    pub after: LockState,
}

impl LockState {
    /// Whether checks are refused at `now`.
    pub fn locked(&self, now_ms: u64, policy: &LockPolicy) -> bool {
        self.suspended(policy) || now_ms < self.locked_until_ms
    }

    /// Checks are refused until an operator clears the failures (`resetline lockout clear`).
    pub fn suspended(&self, policy: &LockPolicy) -> bool {
        self.failures >= policy.suspend_at
    }

    /// The state after one more failure at `now` (the same rule for every store).
    pub fn after_failure(self, now_ms: u64, policy: &LockPolicy) -> LockState {
        let failures = if now_ms.saturating_sub(self.last_failure_ms) >= policy.reset_after_ms {
            1
        } else {
            self.failures.saturating_add(1)
        };
        LockState {
            failures,
            last_failure_ms: now_ms,
            locked_until_ms: policy.locked_until(failures, now_ms),
        }
    }

    /// The state after giving back `reserved`'s failure (the same rule for every store; `self`
    /// is the stored state now). When nothing changed since it was counted, and nothing
    /// between the caller's read and the count, exactly the state before it. Otherwise
    /// (parallel calls counted or forgave in between) one failure fewer, with the wait the
    /// remaining failures earned at the last one, never longer than the current wait: a give
    /// back never locks anyone for longer and never forgives another call's failure.
    pub fn after_give_back(self, reserved: &Reservation, policy: &LockPolicy) -> LockState {
        let untouched = self == reserved.after
            && reserved
                .before
                .after_failure(reserved.after.last_failure_ms, policy)
                == reserved.after;
        if untouched {
            return reserved.before;
        }
        let failures = self.failures.saturating_sub(1);
        LockState {
            failures,
            last_failure_ms: self.last_failure_ms,
            locked_until_ms: self
                .locked_until_ms
                .min(policy.locked_until(failures, self.last_failure_ms)),
        }
    }

    /// Until when the state matters (ms), `None` for ever (a suspension lasts until an
    /// operator clears it). After that it behaves exactly as no state at all: the failures
    /// are forgotten (12 h after the last one) and any wait is over, so a store may drop it.
    pub fn expires_at(&self, policy: &LockPolicy) -> Option<u64> {
        if self.suspended(policy) {
            return None;
        }
        Some(
            self.last_failure_ms
                .saturating_add(policy.reset_after_ms)
                .max(self.locked_until_ms),
        )
    }
}

/// Where PIN lockout state lives. Updates are atomic per account.
pub trait Lockouts: Send + Sync + fmt::Debug {
    /// The account's state.
    fn get<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<LockState, StoreError>>;
    /// Counts a failure at `now` and returns the new state.
    fn failure<'a>(
        &'a self,
        account: &'a str,
        now_ms: u64,
        policy: LockPolicy,
    ) -> BoxFuture<'a, Result<LockState, StoreError>>;
    /// A success: forgets the failures.
    fn success<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Gives back the one failure `reserved` counted, for a check that did not complete (a
    /// backend error, a timeout, a cancelled step): [`LockState::after_give_back`] applied
    /// atomically at `now`. Unlike `success`, other failures stay counted.
    fn give_back<'a>(
        &'a self,
        account: &'a str,
        reserved: Reservation,
        now_ms: u64,
        policy: LockPolicy,
    ) -> BoxFuture<'a, Result<LockState, StoreError>>;
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn waits_grow_by_a_minute_up_to_fifteen_and_reset_after_twelve_hours() {
        let p = LockPolicy::default();
        let mut s = LockState::default();
        let mut now = 1_000_000u64;
        let mut waits = Vec::new();
        for _ in 0..20 {
            s = s.after_failure(now, &p);
            waits.push(s.locked_until_ms.saturating_sub(now) / 60_000);
            now = s.locked_until_ms.max(now) + 1;
        }
        assert_eq!(&waits[..6], &[0, 0, 1, 2, 3, 4]);
        assert_eq!(waits[19], 15, "capped at 15 minutes");
        let later = s.after_failure(now + p.reset_after_ms, &p);
        assert_eq!(later.failures, 1, "forgotten after 12 h");
        let suspended = LockState {
            failures: 100,
            ..LockState::default()
        };
        assert!(
            suspended.locked(u64::MAX - 1, &p),
            "100 consecutive failures suspend checks"
        );
    }

    /// Counts a failure on `stored` at `now` as the engine does: read, then count.
    fn reserve(stored: LockState, now: u64) -> Reservation {
        Reservation {
            before: stored,
            after: stored.after_failure(now, &LockPolicy::PIN),
        }
    }

    #[test]
    fn a_give_back_with_nothing_in_between_restores_exactly_the_state_before() {
        let p = LockPolicy::PIN;
        let mut s = LockState::default();
        for t in [1_000_000, 1_000_001, 1_000_002] {
            s = s.after_failure(t, &p);
        }
        // The wait of the third failure is over; a fourth attempt errors at the directory.
        let now = s.locked_until_ms + 5;
        let r = reserve(s, now);
        assert!(r.after.locked(now + 1, &p), "counted, it would lock");
        assert_eq!(r.after.after_give_back(&r, &p), s, "exactly as before");
    }

    #[test]
    fn a_give_back_after_other_calls_removes_one_failure_and_never_lengthens_the_wait() {
        let p = LockPolicy::PIN;
        let start = LockState::default().after_failure(1_000_000, &p);
        let ours = reserve(start, 1_000_100);
        // Another call's wrong PIN is counted after ours.
        let theirs = ours.after.after_failure(1_000_200, &p);
        let given = theirs.after_give_back(&ours, &p);
        assert_eq!(
            given,
            start.after_failure(1_000_200, &p),
            "as if only their failure had been counted"
        );
        // Two reservations both give back: the count returns to where it was, unlocked.
        let second = reserve(ours.after, 1_000_150);
        let both = second.after.after_give_back(&ours, &p);
        let both = both.after_give_back(&second, &p);
        assert_eq!(both.failures, start.failures);
        assert!(!both.locked(1_000_151, &p), "no wait from errors alone");
        // A success in between forgave everything: nothing to give back.
        assert_eq!(
            LockState::default().after_give_back(&ours, &p),
            LockState::default()
        );
    }

    #[test]
    fn a_give_back_lifts_a_suspension_only_its_own_failure_caused() {
        let p = LockPolicy::PIN;
        let mut s = LockState::default();
        for _ in 1..p.suspend_at {
            s = s.after_failure(1_000_000, &p);
        }
        let r = reserve(s, 1_000_000);
        assert!(r.after.suspended(&p));
        assert!(!r.after.after_give_back(&r, &p).suspended(&p));
        let one_more = r.after.after_failure(1_000_001, &p);
        assert!(
            one_more.after_give_back(&r, &p).suspended(&p),
            "another call's 100th failure still suspends"
        );
    }

    #[test]
    fn a_state_expires_when_it_no_longer_matters_but_a_suspension_never_does() {
        let p = LockPolicy::PIN;
        let s = LockState::default().after_failure(1_000_000, &p);
        let at = s.expires_at(&p).expect("expires");
        assert_eq!(at, 1_000_000 + p.reset_after_ms);
        assert_eq!(
            s.after_failure(at, &p),
            LockState::default().after_failure(at, &p),
            "from then on it behaves as no state at all"
        );
        let suspended = LockState {
            failures: p.suspend_at,
            ..s
        };
        assert_eq!(suspended.expires_at(&p), None);
    }
}

/// Limits on sending one-time codes, checked before any provider call (security.md checks
/// 16-17). Each is a count within a window, shared across calls through [`Counters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendLimits {
    /// Per destination number or address (Twilio Verify: 5 per 10 minutes).
    pub per_destination: (u32, u64),
    /// Per destination prefix: the number without its last 4 digits (pumping through a range).
    pub per_prefix: (u32, u64),
    /// Per account.
    pub per_account: (u32, u64),
    /// Per caller number (the carrier's claim).
    pub per_caller: (u32, u64),
    /// All sends of this engine.
    pub global: (u32, u64),
    /// E.164 prefixes SMS may go to (`+1`, `+44`...); empty allows every country.
    pub sms_prefixes: Vec<String>,
}

impl Default for SendLimits {
    fn default() -> Self {
        const TEN_MIN: u64 = 600_000;
        const HOUR: u64 = 3_600_000;
        SendLimits {
            per_destination: (5, TEN_MIN),
            per_prefix: (20, TEN_MIN),
            per_account: (10, HOUR),
            per_caller: (10, HOUR),
            global: (1000, HOUR),
            sms_prefixes: Vec::new(),
        }
    }
}

/// Request signing asked for by an `http` node's `sign:` (seed 004).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSigning {
    /// The environment variable naming the shared token; the connector holds the tokens it
    /// was configured with and refuses names it does not know.
    pub token_env: String,
    /// The header that carries `t=<unix seconds>,v1=<hex HMAC-SHA256(token, t + body)>`.
    pub header: String,
}

/// One try of an `http` node, rendered from the flow's templates.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The URL (never carries a secret: the checker refuses it, E016).
    pub url: String,
    /// Request headers (never carry a secret).
    pub headers: Vec<(String, String)>,
    /// The JSON body, if any. A `Secret` because the fields the flow lists under `secrets:`
    /// may carry one.
    pub body: Option<Secret>,
    /// The budget of this try.
    pub timeout: std::time::Duration,
    /// Sign the request.
    pub sign: Option<HttpSigning>,
}

/// What the remote answered.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// The body when it is JSON (`None` when empty or not JSON).
    pub body: Option<serde_json::Value>,
}

/// Why an HTTP data action has no answer. The variant says whether a retry is safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Refused before sending (URL not under a configured backend, unknown signing token,
    /// circuit open): a retry would be refused too.
    Refused(BackendError),
    /// The request never left (connection refused, DNS): a retry is safe for any method.
    NotSent(BackendError),
    /// Sent, no usable answer (timeout, connection reset): it may have taken effect, so only
    /// idempotent methods are retried.
    Failed(BackendError),
}

impl HttpError {
    /// The underlying error.
    pub fn backend(&self) -> &BackendError {
        match self {
            HttpError::Refused(e) | HttpError::NotSent(e) | HttpError::Failed(e) => e,
        }
    }
}

/// Generic HTTP data actions (`http` nodes): one try per call; the engine owns retries,
/// time budgets and the mapping of the answer into the flow.
pub trait HttpActions: Send + Sync + fmt::Debug {
    /// Sends `request` once.
    fn call(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>>;
}

/// A backend failure (a timeout, say) in the place of any of the errors that carry one.
macro_rules! from_backend_error {
    ($($error:ident),*) => {$(
        impl From<BackendError> for $error {
            fn from(e: BackendError) -> Self {
                $error::Backend(e)
            }
        }
    )*};
}
from_backend_error!(StoreError, SendError, SetSecretError);
