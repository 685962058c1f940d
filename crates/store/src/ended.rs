//! Calls that ended, remembered by the memory store past their sessions' expiry, so a
//! replayed first webhook of an ended call is refused rather than started again (issue 22,
//! finding 5; `store.ended_call_ttl_s`).
//!
//! Invariants: a call is reported ended only until its ttl from the first time it was
//! remembered; at most `max` calls are held, and when full the oldest goes first (all share
//! one ttl, so the oldest is also the next to expire): the window shrinks under a flood, the
//! memory does not grow. In this process only: a restart forgets them all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use resetline_engine::session::{CallHasher, CallKey};

/// How long the store remembers an ended call by default: a day, longer than a carrier's
/// realistic window for resending a webhook (Twilio retries within seconds to minutes).
pub const ENDED_CALL_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// How many ended calls the memory store remembers by default (about 200 bytes each).
pub const ENDED_CALLS_MAX: usize = 100_000;

/// Ended call ids with the time each is forgotten.
#[derive(Debug)]
pub(crate) struct EndedCalls {
    held: Mutex<Held>,
    ttl_ms: u64,
    max: usize,
}

#[derive(Debug, Default)]
struct Held {
    until: HashMap<CallKey, u64, CallHasher>,
    /// Oldest first: the order they expire in.
    order: VecDeque<CallKey>,
}

impl Held {
    fn forget_oldest(&mut self) {
        if let Some(oldest) = self.order.pop_front() {
            self.until.remove(&oldest);
        }
    }
}

impl EndedCalls {
    /// Calls remembered for `ttl_ms`, at most `max` at once.
    pub(crate) fn new(ttl_ms: u64, max: usize) -> Self {
        EndedCalls {
            held: Mutex::new(Held::default()),
            ttl_ms,
            max,
        }
    }

    /// Remembers `call` as ended at `now_ms`; a call already remembered keeps its first time.
    pub(crate) fn insert(&self, call: CallKey, now_ms: u64) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(oldest) = held.order.front() {
            if held.until.get(oldest).is_some_and(|&until| until > now_ms) {
                break;
            }
            held.forget_oldest();
        }
        if self.max == 0 || held.until.contains_key(&call) {
            return;
        }
        while held.until.len() >= self.max {
            held.forget_oldest();
        }
        held.until.insert(call, now_ms.saturating_add(self.ttl_ms));
        held.order.push_back(call);
    }

    /// Whether `call` ended less than the ttl before `now_ms`.
    pub(crate) fn contains(&self, call: &CallKey, now_ms: u64) -> bool {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.until.get(call).is_some_and(|&until| until > now_ms)
    }

    /// How many calls are held (expired ones included until an insert drops them).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .until
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> CallKey {
        CallKey::new(&format!("CA{n:032}")).expect("fits")
    }

    #[test]
    fn an_ended_call_is_remembered_for_its_ttl_from_its_first_end() {
        let ended = EndedCalls::new(1_000, 10);
        ended.insert(key(1), 5_000);
        ended.insert(key(1), 5_900); // the status callback saves it again
        assert!(ended.contains(&key(1), 5_999));
        assert!(!ended.contains(&key(1), 6_000));
        assert!(!ended.contains(&key(2), 5_500));
    }

    #[test]
    fn a_full_list_forgets_the_oldest_first_and_never_grows() {
        let ended = EndedCalls::new(60_000, 3);
        for n in 0..10 {
            ended.insert(key(n), 1_000 + u64::from(n));
            assert!(ended.len() <= 3);
        }
        assert!(!ended.contains(&key(6), 2_000));
        for n in 7..10 {
            assert!(ended.contains(&key(n), 2_000), "{n}");
        }
    }

    #[test]
    fn expired_calls_leave_when_the_next_one_ends() {
        let ended = EndedCalls::new(1_000, 10);
        for n in 0..5 {
            ended.insert(key(n), 0);
        }
        ended.insert(key(9), 1_000);
        assert_eq!(ended.len(), 1);
    }
}
