//! Session stores. `MemoryStore` keeps sessions in a sharded concurrent map (dashmap) for one
//! box; `resetline-store-redis` implements the same traits on Redis so replicas share calls,
//! holding the same bytes (`encode`/`decode`).
//!
//! Invariants: a save succeeds only if the caller saw the latest revision (compare-and-swap),
//! so two concurrent webhooks of one call never both advance it; an expired session is never
//! returned; the store never holds more than `max_sessions` live sessions (a new call past
//! that is refused, not an old one dropped); a call whose ended session was saved is reported
//! ended for the ended-call ttl (`ended.rs`, bounded), though only until the process restarts.

mod ended;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::collections::VecDeque;

use resetline_engine::session::{CallHasher, CallKey};
use resetline_engine::{
    BackendError, BoxFuture, Clock, Counters, LockPolicy, LockState, Lockouts, Reservation,
    Session, SessionStore, StoreError,
};

use ended::EndedCalls;
pub use ended::{ENDED_CALL_TTL_MS, ENDED_CALLS_MAX};

#[derive(Debug)]
struct Slot {
    revision: u64,
    expires_ms: u64,
    /// The session encoded (`encode`): a fraction of the memory of the live struct, and the
    /// same bytes a shared store holds, so the format rule is exercised on every load.
    bytes: Box<[u8]>,
}

/// In-memory sessions with expiry and a size bound.
#[derive(Debug)]
pub struct MemoryStore {
    /// Keyed inline by CallSid: a lookup follows no pointer to compare keys, a save allocates
    /// no key.
    map: DashMap<CallKey, Slot, CallHasher>,
    clock: Arc<dyn Clock>,
    max_sessions: usize,
    ended: EndedCalls,
}

impl MemoryStore {
    /// A store holding at most `max_sessions` live sessions, remembering ended calls for
    /// [`ENDED_CALL_TTL_MS`], at most [`ENDED_CALLS_MAX`] of them.
    pub fn new(clock: Arc<dyn Clock>, max_sessions: usize) -> Self {
        MemoryStore {
            map: DashMap::with_hasher(CallHasher::default()),
            clock,
            max_sessions,
            ended: EndedCalls::new(ENDED_CALL_TTL_MS, ENDED_CALLS_MAX),
        }
    }

    /// The same store remembering ended calls for `ttl_ms`, at most `max` of them (the
    /// oldest forgotten first).
    #[must_use]
    pub fn with_ended_calls(mut self, ttl_ms: u64, max: usize) -> Self {
        self.ended = EndedCalls::new(ttl_ms, max);
        self
    }

    /// Removes expired sessions; returns how many. Run it periodically.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_ms();
        let before = self.map.len();
        self.map.retain(|_, slot| slot.expires_ms > now);
        before.saturating_sub(self.map.len())
    }
}

impl SessionStore for MemoryStore {
    fn load<'a>(
        &'a self,
        call_sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<(Session, u64)>, StoreError>> {
        let now = self.clock.now_ms();
        // A call id no key can hold was never saved.
        let found = CallKey::new(call_sid)
            .and_then(|key| self.map.get(&key))
            .filter(|slot| slot.expires_ms > now)
            .map(|slot| (decode(&slot.bytes), slot.revision));
        let result = match found {
            None => Ok(None),
            Some((Ok(session), revision)) => Ok(Some((session, revision))),
            Some((Err(e), _)) => Err(e),
        };
        Box::pin(async move { result })
    }

    fn save(
        &self,
        session: Session,
        expected: u64,
        ttl_ms: u64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let now = self.clock.now_ms();
        let result = (move || {
            let bytes = encode(&session)?.into_boxed_slice();
            if expected == 0 && self.map.len() >= self.max_sessions {
                self.sweep();
                if self.map.len() >= self.max_sessions {
                    return Err(StoreError::Backend(BackendError::new(
                        "sessions",
                        "session store is full",
                    )));
                }
            }
            let key = CallKey::new(&session.call_sid).ok_or_else(|| {
                StoreError::Backend(BackendError::new(
                    "sessions",
                    format!("call ids longer than {} bytes are not stored", CallKey::MAX),
                ))
            })?;
            let saved = match self.map.entry(key) {
                Entry::Occupied(mut e) => {
                    let live = e.get().expires_ms > now;
                    let current = if live { e.get().revision } else { 0 };
                    if current != expected {
                        return Err(StoreError::Conflict);
                    }
                    let revision = current + 1;
                    e.insert(Slot {
                        revision,
                        expires_ms: now.saturating_add(ttl_ms),
                        bytes,
                    });
                    Ok(revision)
                }
                Entry::Vacant(e) => {
                    if expected != 0 {
                        return Err(StoreError::Conflict);
                    }
                    e.insert(Slot {
                        revision: 1,
                        expires_ms: now.saturating_add(ttl_ms),
                        bytes,
                    });
                    Ok(1)
                }
            };
            if session.ended.is_some() {
                self.ended.insert(key, now);
            }
            saved
        })();
        Box::pin(async move { result })
    }

    fn ended<'a>(&'a self, call_sid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = self.clock.now_ms();
        let ended = CallKey::new(call_sid).is_some_and(|key| self.ended.contains(&key, now));
        Box::pin(async move { Ok(ended) })
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A session as every store keeps it: postcard (compact, positional binary) whose first
/// value is the `format` varint (the Redis store holds the same bytes). About a third of the
/// work of JSON per webhook, and half its size.
pub fn encode(session: &Session) -> Result<Vec<u8>, StoreError> {
    resetline_engine::session::to_postcard(session)
        .map_err(|e| StoreError::Backend(BackendError::new("sessions", e.to_string())))
}

/// Reads a stored session; refuses one written in a newer format (rolling upgrades: an old
/// replica must not misread a newer replica's session). Older formats are still read into
/// today's struct, so calls saved before an upgrade go on: format 3 (today's layout, its
/// answers without SSML pieces), format 2 (postcard, the last answer as actions) and format 1
/// (JSON, always starting with `{`, the same fields as 2).
pub fn decode(bytes: &[u8]) -> Result<Session, StoreError> {
    use resetline_engine::session::{FORMAT, LastV2, READS_UP_TO};
    // Saved again, an older session is written in today's format, and says so.
    let upgraded = |old: Session<LastV2>| {
        let mut session = old.map_last(Into::into);
        session.format = FORMAT;
        session
    };
    if bytes.first() == Some(&b'{') {
        let session: Session<LastV2> = serde_json::from_slice(bytes).map_err(|e| unreadable(&e))?;
        if session.format != 1 {
            return Err(unreadable(&"a JSON session must be format 1"));
        }
        return Ok(upgraded(session));
    }
    let (format, _) = postcard::take_from_bytes::<u32>(bytes).map_err(|e| unreadable(&e))?;
    match format {
        2 => whole(postcard::take_from_bytes::<Session<LastV2>>(bytes)).map(upgraded),
        f if f > READS_UP_TO => Err(StoreError::Backend(BackendError::new(
            "sessions",
            format!("session format {f} is newer than this build reads ({READS_UP_TO})"),
        ))),
        FORMAT => whole(postcard::take_from_bytes::<Session>(bytes)),
        3 => whole(postcard::take_from_bytes::<Session>(bytes)).map(|mut session| {
            session.format = FORMAT;
            session
        }),
        f => Err(unreadable(&format_args!(
            "format {f} is not a postcard session format"
        ))),
    }
}

fn unreadable(e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Backend(BackendError::new(
        "sessions",
        format!("unreadable session: {e}"),
    ))
}

/// A session that filled the stored bytes exactly (nothing after it).
fn whole<T>(result: postcard::Result<(T, &[u8])>) -> Result<T, StoreError> {
    match result {
        Ok((session, [])) => Ok(session),
        Ok(_) => Err(unreadable(&"trailing bytes after the session")),
        Err(e) => Err(unreadable(&e)),
    }
}

/// How often (by the injected clock) the memory counters and lockouts drop what has expired,
/// on the first update after that much time: no task to run, and a key outlives its window by
/// at most this long.
const SWEEP_EVERY_MS: u64 = 60_000;

/// True once per [`SWEEP_EVERY_MS`] at `now`: the caller sweeps (one caller wins a race).
fn sweep_due(next: &AtomicU64, now_ms: u64) -> bool {
    let due = next.load(Ordering::Relaxed);
    now_ms >= due
        && next
            .compare_exchange(
                due,
                now_ms.saturating_add(SWEEP_EVERY_MS),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
}

/// Windowed counters in memory (send caps, rate limits) for one box. Invariant: a refused hit
/// is not counted, hits older than the window never count, and a key whose last hit left its
/// window is dropped (within [`SWEEP_EVERY_MS`]), so callers never heard from again leave
/// nothing behind.
#[derive(Debug)]
pub struct MemoryCounters {
    map: DashMap<String, Window>,
    clock: Arc<dyn Clock>,
    next_sweep_ms: AtomicU64,
}

/// One key's hits inside its window.
#[derive(Debug, Default)]
struct Window {
    hits: VecDeque<u64>,
    window_ms: u64,
}

impl Window {
    /// No hit is inside the window any more: the key can go.
    fn spent(&self, now_ms: u64) -> bool {
        self.hits
            .back()
            .is_none_or(|&t| now_ms.saturating_sub(t) >= self.window_ms)
    }
}

impl MemoryCounters {
    /// Empty counters.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryCounters {
            map: DashMap::new(),
            clock,
            next_sweep_ms: AtomicU64::new(0),
        }
    }

    /// Drops keys with no hit inside their window (each key's own). Hits run it by themselves
    /// once a minute.
    pub fn sweep(&self) {
        let now = self.clock.now_ms();
        self.map.retain(|_, w| !w.spent(now));
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Counters for MemoryCounters {
    fn hit<'a>(
        &'a self,
        key: &'a str,
        window_ms: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = self.clock.now_ms();
        if sweep_due(&self.next_sweep_ms, now) {
            self.sweep();
        }
        let mut w = self.map.entry(key.to_string()).or_default();
        w.window_ms = window_ms;
        while w
            .hits
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= window_ms)
        {
            w.hits.pop_front();
        }
        let allowed = w.hits.len() < usize::try_from(limit).unwrap_or(usize::MAX);
        if allowed {
            w.hits.push_back(now);
        }
        drop(w);
        Box::pin(async move { Ok(allowed) })
    }
}

/// PIN lockout state in memory for one box (survives calls, not restarts: use Redis for that).
/// Invariants: each update is atomic per account (dashmap entry lock); a state is dropped once
/// it no longer matters ([`LockState::expires_at`]: 12 h after the last failure, or when its
/// wait ends if later; within [`SWEEP_EVERY_MS`]), except a suspension, which stays until an
/// operator clears it.
#[derive(Debug, Default)]
pub struct MemoryLockouts {
    map: DashMap<String, Held>,
    next_sweep_ms: AtomicU64,
}

/// An account's state and until when it matters (`None`: for ever).
#[derive(Debug, Clone, Copy)]
struct Held {
    state: LockState,
    expires_ms: Option<u64>,
}

impl Held {
    fn new(state: LockState, policy: &LockPolicy) -> Self {
        Held {
            state,
            expires_ms: state.expires_at(policy),
        }
    }
}

impl MemoryLockouts {
    /// No failures yet.
    pub fn new() -> Self {
        MemoryLockouts::default()
    }

    /// Drops states that no longer matter at `now`. Failures run it by themselves once a
    /// minute.
    pub fn sweep(&self, now_ms: u64) {
        self.map
            .retain(|_, held| held.expires_ms.is_none_or(|at| at > now_ms));
    }

    /// Accounts held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no account is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn sweep_if_due(&self, now_ms: u64) {
        if sweep_due(&self.next_sweep_ms, now_ms) {
            self.sweep(now_ms);
        }
    }
}

impl Lockouts for MemoryLockouts {
    fn get<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<LockState, StoreError>> {
        let state = self.map.get(account).map(|h| h.state).unwrap_or_default();
        Box::pin(async move { Ok(state) })
    }

    fn failure<'a>(
        &'a self,
        account: &'a str,
        now_ms: u64,
        policy: LockPolicy,
    ) -> BoxFuture<'a, Result<LockState, StoreError>> {
        self.sweep_if_due(now_ms);
        let mut entry = self
            .map
            .entry(account.to_string())
            .or_insert(Held::new(LockState::default(), &policy));
        let next = entry.state.after_failure(now_ms, &policy);
        *entry = Held::new(next, &policy);
        drop(entry);
        Box::pin(async move { Ok(next) })
    }

    fn success<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.map.remove(account);
        Box::pin(async { Ok(()) })
    }

    fn give_back<'a>(
        &'a self,
        account: &'a str,
        reserved: Reservation,
        now_ms: u64,
        policy: LockPolicy,
    ) -> BoxFuture<'a, Result<LockState, StoreError>> {
        self.sweep_if_due(now_ms);
        // Nothing stored (a success forgave everything since): nothing to give back.
        let next = match self.map.get_mut(account) {
            Some(mut held) => {
                let next = held.state.after_give_back(&reserved, &policy);
                *held = Held::new(next, &policy);
                next
            }
            None => LockState::default(),
        };
        Box::pin(async move { Ok(next) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resetline_engine::FakeClock;
    use std::time::Duration;

    fn session(sid: &str) -> Session {
        Session::new(sid, "f", "v", "+15555550100", 0, "en-US")
    }

    #[tokio::test]
    async fn compare_and_swap_refuses_a_stale_writer() {
        let clock = FakeClock::at(1000);
        let store = MemoryStore::new(Arc::new(clock), 10);
        let s = session("CA1");
        assert_eq!(store.save(s.clone(), 0, 60_000).await, Ok(1));
        assert_eq!(
            store.save(s.clone(), 0, 60_000).await,
            Err(StoreError::Conflict),
            "a second creator loses"
        );
        assert_eq!(store.save(s.clone(), 1, 60_000).await, Ok(2));
        assert_eq!(
            store.save(s, 1, 60_000).await,
            Err(StoreError::Conflict),
            "a writer that saw revision 1 loses"
        );
    }

    #[tokio::test]
    async fn expired_sessions_are_gone() {
        let clock = FakeClock::at(1000);
        let store = MemoryStore::new(Arc::new(clock.clone()), 10);
        store.save(session("CA1"), 0, 5_000).await.ok();
        assert!(store.load("CA1").await.ok().flatten().is_some());
        clock.advance(Duration::from_secs(6));
        assert!(store.load("CA1").await.ok().flatten().is_none());
        assert_eq!(store.sweep(), 1);
        assert_eq!(store.len(), 0);
    }

    #[tokio::test]
    async fn an_ended_call_is_remembered_after_its_session_expired_until_its_ttl() {
        let clock = FakeClock::at(1000);
        let store = MemoryStore::new(Arc::new(clock.clone()), 10).with_ended_calls(3_600_000, 10);
        let mut s = session("CA1");
        store.save(s.clone(), 0, 5_000).await.ok();
        assert_eq!(store.ended("CA1").await, Ok(false), "a live call");
        s.ended = Some("reset_done".into());
        assert_eq!(store.save(s, 1, 5_000).await, Ok(2));
        clock.advance(Duration::from_secs(6));
        assert!(
            store.load("CA1").await.ok().flatten().is_none(),
            "the session expired"
        );
        assert_eq!(store.ended("CA1").await, Ok(true), "the end is remembered");
        assert_eq!(store.ended("CA2").await, Ok(false));
        clock.advance(Duration::from_secs(3_600));
        assert_eq!(store.ended("CA1").await, Ok(false), "for the ttl only");
    }

    #[tokio::test]
    async fn a_full_store_refuses_new_calls_but_serves_old_ones() {
        let clock = FakeClock::at(1000);
        let store = MemoryStore::new(Arc::new(clock), 2);
        store.save(session("CA1"), 0, 60_000).await.ok();
        store.save(session("CA2"), 0, 60_000).await.ok();
        assert!(matches!(
            store.save(session("CA3"), 0, 60_000).await,
            Err(StoreError::Backend(_))
        ));
        assert_eq!(store.save(session("CA1"), 1, 60_000).await, Ok(2));
    }

    #[tokio::test]
    async fn the_sixth_send_in_ten_minutes_is_refused_and_the_window_slides() {
        let clock = FakeClock::at(1000);
        let counters = MemoryCounters::new(Arc::new(clock.clone()));
        for _ in 0..5 {
            assert_eq!(
                counters.hit("send:+15555550199", 600_000, 5).await,
                Ok(true)
            );
            clock.advance(Duration::from_secs(60));
        }
        assert_eq!(
            counters.hit("send:+15555550199", 600_000, 5).await,
            Ok(false)
        );
        assert_eq!(
            counters.hit("send:+15555550100", 600_000, 5).await,
            Ok(true),
            "other keys are separate"
        );
        clock.advance(Duration::from_secs(300));
        assert_eq!(
            counters.hit("send:+15555550199", 600_000, 5).await,
            Ok(true),
            "the oldest hit left the window"
        );
    }

    #[test]
    fn sessions_round_trip_in_the_binary_format_which_starts_with_the_format() {
        let mut s = session("CA1");
        s.vars.insert(
            "employee_id".into(),
            resetline_engine::session::Var::Text("1004217".into()),
        );
        s.last = Some(resetline_engine::session::Last {
            token: 3,
            answer: resetline_engine::session::Answer::of(&answer()),
        });
        let bytes = encode(&s).expect("encodes");
        assert_eq!(
            bytes.first().copied(),
            u8::try_from(resetline_engine::session::FORMAT).ok(),
            "the format varint comes first"
        );
        let read = decode(&bytes).expect("reads");
        assert_eq!(read, s);
        let replayed = read.last.map(|l| l.answer.actions());
        assert_eq!(replayed, Some(Ok(answer())), "the kept answer reads back");
        assert!(
            decode(&bytes[..bytes.len() / 2]).is_err(),
            "a truncated session is refused"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err(), "so is one with bytes after it");
    }

    /// A last answer with some of everything an answer holds.
    fn answer() -> Vec<resetline_engine::Action> {
        use resetline_engine::{Action, Spoken};
        vec![
            Action::Gather {
                num_digits: Some(6),
                finish_on: Some('#'),
                timeout_s: 5,
                action: "/voice/f/step/2".into(),
                prompts: vec![Action::Say {
                    text: vec![
                        Spoken::Text("Enter your ID".into()),
                        Spoken::Digits("0199".into()),
                        Spoken::Break(500),
                        Spoken::Emphasis {
                            level: "strong".into(),
                            text: vec![Spoken::Text("now".into())],
                        },
                        Spoken::Rate {
                            rate: "80%".into(),
                            text: vec![Spoken::Digits("42".into())],
                        },
                    ],
                    locale: "en-US".into(),
                    voice: Some("Polly.Joanna".into()),
                }],
            },
            Action::Redirect {
                url: "/voice/f/step/2/timeout".into(),
            },
        ]
    }

    /// A session as formats 1 and 2 held it: the last answer as actions.
    fn old_session(format: u32) -> (Session<resetline_engine::session::LastV2>, Session) {
        let mut today = session("CA1");
        today.vars.insert(
            "employee_id".into(),
            resetline_engine::session::Var::Text("1004217".into()),
        );
        today.last = Some(resetline_engine::session::Last {
            token: 3,
            answer: resetline_engine::session::Answer::of(&answer()),
        });
        let mut old = today
            .clone()
            .map_last(|l| resetline_engine::session::LastV2 {
                token: l.token,
                actions: answer(),
            });
        old.format = format;
        (old, today)
    }

    #[test]
    fn a_format_1_json_session_saved_before_an_upgrade_is_still_read() {
        let (old, today) = old_session(1);
        let json = serde_json::to_vec(&old).expect("json");
        assert!(
            String::from_utf8_lossy(&json).contains("\"actions\":[{\"gather\""),
            "format 1 holds the actions themselves"
        );
        let read = decode(&json).expect("read");
        assert_eq!(
            read.format,
            resetline_engine::session::FORMAT,
            "saved again, it says what it is written in"
        );
        assert_eq!(read, today, "the same call, the answer kept encoded");
        assert!(
            decode(&encode(&read).expect("encodes")).is_ok(),
            "and reads back as today's format"
        );
    }

    #[test]
    fn a_format_2_session_saved_before_an_upgrade_is_still_read() {
        let (old, today) = old_session(2);
        let bytes = postcard::to_allocvec(&old).expect("format 2");
        assert_eq!(bytes.first(), Some(&2));
        let read = decode(&bytes).expect("read");
        assert_eq!(read.format, resetline_engine::session::FORMAT);
        assert_eq!(read, today);
        assert_eq!(
            read.last.map(|l| l.answer.actions()),
            Some(Ok(answer())),
            "a retry after the upgrade replays the answer given before it"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            decode(&longer).is_err(),
            "trailing bytes are refused in format 2 too"
        );
    }

    #[test]
    fn a_format_3_session_saved_before_an_upgrade_is_still_read() {
        let (_, today) = old_session(3);
        let mut old = today.clone();
        old.format = 3;
        let bytes = postcard::to_allocvec(&old).expect("format 3");
        assert_eq!(bytes.first(), Some(&3));
        let read = decode(&bytes).expect("read");
        assert_eq!(read.format, resetline_engine::session::FORMAT);
        assert_eq!(read, today);
        assert_eq!(
            read.last.map(|l| l.answer.actions()),
            Some(Ok(answer())),
            "a retry after the upgrade replays the answer given before it"
        );
    }

    #[test]
    fn a_session_claiming_format_1_in_binary_is_refused() {
        let mut s = session("CA1");
        s.format = 1;
        let bytes = postcard::to_allocvec(&s).expect("encodes");
        assert!(decode(&bytes).is_err(), "format 1 is JSON only");
    }

    #[tokio::test]
    async fn a_session_from_a_newer_format_is_refused_not_misread() {
        let store = MemoryStore::new(Arc::new(FakeClock::at(1000)), 10);
        let mut s = session("CA1");
        s.format = resetline_engine::session::READS_UP_TO + 1;
        store.save(s, 0, 60_000).await.ok();
        assert!(matches!(
            store.load("CA1").await,
            Err(StoreError::Backend(_))
        ));
    }
}
