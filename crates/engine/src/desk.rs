//! Service-desk operations on lockouts (`resetline lockout show|clear ACCOUNT`): read or clear
//! an account's PIN and one-time-code failures through the [`Lockouts`] trait, describe them
//! for a person, and build the audit record each operation leaves.
//!
//! Invariants: every operation, failed ones included, yields exactly one audit record naming
//! who asked (`details.by`), what was asked and the state it saw; `clear` forgets the failures
//! of both the PIN and the codes (a suspension included) and nothing else; an account id that
//! could widen or break a store key (empty, too long, spaces, control characters, braces) is
//! refused before any store is asked. Lockouts hold only counts and times, never a secret.

use std::fmt;

use resetline_audit::time::OffsetDateTime;
use resetline_audit::time::format_description::well_known::Rfc3339;
use resetline_audit::{EventType, Outcome, Record};

use crate::backend::{LockPolicy, LockState, Lockouts, StoreError, code_lockout_key};

/// Longest account id accepted (directory ids are far shorter).
const MAX_ACCOUNT: usize = 128;
/// Longest operator name accepted in `details.by`.
const MAX_BY: usize = 64;

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeskAction {
    /// Read the state.
    Show,
    /// Forget the failures (PIN and codes).
    Clear,
}

/// An operation could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeskError {
    /// The account id or operator name is not acceptable (why).
    Refused(String),
    /// The lockout store failed.
    Store(StoreError),
}

impl fmt::Display for DeskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeskError::Refused(why) => f.write_str(why),
            DeskError::Store(e) => write!(f, "lockout store: {e}"),
        }
    }
}

impl std::error::Error for DeskError {}

impl From<StoreError> for DeskError {
    fn from(e: StoreError) -> Self {
        DeskError::Store(e)
    }
}

/// One account's lockout state: its PIN checks and its one-time codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockoutView {
    /// PIN failures (policy [`LockPolicy::PIN`]).
    pub pin: LockState,
    /// One-time-code failures across calls (policy [`LockPolicy::CODE`]).
    pub code: LockState,
}

/// Checks an account id and an operator name before any store is asked.
pub fn check_names(account: &str, by: &str) -> Result<(), DeskError> {
    let plain = |s: &str, max: usize| {
        !s.is_empty()
            && s.chars().count() <= max
            && !s
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '{' || c == '}')
    };
    if !plain(account, MAX_ACCOUNT) {
        return Err(DeskError::Refused(format!(
            "the account id must be 1 to {MAX_ACCOUNT} characters without spaces, control characters or braces"
        )));
    }
    let printable =
        !by.trim().is_empty() && by.chars().count() <= MAX_BY && !by.chars().any(char::is_control);
    if !printable {
        return Err(DeskError::Refused(format!(
            "the operator name must be 1 to {MAX_BY} printable characters"
        )));
    }
    Ok(())
}

/// The account's PIN and code lockout state.
pub async fn show(lockouts: &dyn Lockouts, account: &str) -> Result<LockoutView, DeskError> {
    Ok(LockoutView {
        pin: lockouts.get(account).await?,
        code: lockouts.get(&code_lockout_key(account)).await?,
    })
}

/// Forgets the account's PIN and code failures (a suspension included); returns the state
/// before.
pub async fn clear(lockouts: &dyn Lockouts, account: &str) -> Result<LockoutView, DeskError> {
    let before = show(lockouts, account).await?;
    lockouts.success(account).await?;
    lockouts.success(&code_lockout_key(account)).await?;
    Ok(before)
}

/// The audit record of `action` on `account` by `by` at `time`, whatever its result (for
/// `clear`, the state before it).
pub fn record(
    action: DeskAction,
    account: &str,
    by: &str,
    time: OffsetDateTime,
    result: &Result<LockoutView, DeskError>,
) -> Record {
    let (event, done) = match action {
        DeskAction::Show => (EventType::LockoutShown, Outcome::Info),
        DeskAction::Clear => (EventType::LockoutCleared, Outcome::Success),
    };
    let outcome = if result.is_ok() { done } else { Outcome::Error };
    let mut r = Record::new(time, event, outcome, "", "", "")
        .with_account(account)
        .with_reason("service_desk")
        .with_detail("by", by);
    match result {
        Ok(view) => {
            for (name, state, policy) in [
                ("pin", view.pin, LockPolicy::PIN),
                ("code", view.code, LockPolicy::CODE),
            ] {
                r = r
                    .with_detail(format!("{name}_failures"), state.failures.to_string())
                    .with_detail(format!("{name}_state"), word(&state, time, &policy));
            }
        }
        Err(e) => r = r.with_detail("error", e.to_string()),
    }
    r
}

/// `none`, `counting`, `waiting` or `suspended` at `now`.
fn word(state: &LockState, now: OffsetDateTime, policy: &LockPolicy) -> &'static str {
    if state.suspended(policy) {
        "suspended"
    } else if state.locked(ms(now), policy) {
        "waiting"
    } else if state.failures > 0 {
        "counting"
    } else {
        "none"
    }
}

fn ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn when(at_ms: u64) -> String {
    i128::from(at_ms)
        .checked_mul(1_000_000)
        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{at_ms} ms"))
}

/// What a person reads: one line per kind of check.
pub fn describe(account: &str, view: &LockoutView, now: OffsetDateTime) -> String {
    let now_ms = ms(now);
    let line = |state: &LockState, policy: &LockPolicy| {
        let last = when(state.last_failure_ms);
        let failures = match state.failures {
            1 => "1 failure".to_string(),
            n => format!("{n} consecutive failures"),
        };
        if state.failures == 0 {
            "no failures".to_string()
        } else if state.suspended(policy) {
            format!(
                "SUSPENDED after {failures} (last {last}); stays until `resetline lockout clear`"
            )
        } else if state.locked(now_ms, policy) {
            format!(
                "{failures} (last {last}); checks refused for {} s more, until {}",
                state.locked_until_ms.saturating_sub(now_ms).div_ceil(1000),
                when(state.locked_until_ms)
            )
        } else {
            format!(
                "{failures} (last {last}); not locked; forgotten at {}",
                when(state.expires_at(policy).unwrap_or(state.last_failure_ms))
            )
        }
    };
    format!(
        "account {account}\n  PIN:            {}\n  one-time codes: {}\n",
        line(&view.pin, &LockPolicy::PIN),
        line(&view.code, &LockPolicy::CODE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_break_a_store_key_or_a_record_are_refused() {
        assert!(check_names("1004217", "alice").is_ok());
        for account in ["", "a b", "x}y", "{x}", "a\nb", &"9".repeat(129)] {
            assert!(check_names(account, "alice").is_err(), "{account:?}");
        }
        for by in ["", " ", "a\u{1b}[31m", &"b".repeat(65)] {
            assert!(check_names("1004217", by).is_err(), "{by:?}");
        }
    }

    #[test]
    fn the_record_names_the_operator_and_the_state_it_saw() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let suspended = LockState {
            failures: 100,
            last_failure_ms: 1_699_999_000_000,
            locked_until_ms: 0,
        };
        let view = LockoutView {
            pin: suspended,
            code: LockState::default(),
        };
        let r = record(DeskAction::Clear, "1004217", "alice", now, &Ok(view));
        assert_eq!(r.event, EventType::LockoutCleared);
        assert_eq!(r.outcome, Outcome::Success);
        assert_eq!(r.account, "1004217");
        assert_eq!(r.details.get("by").map(String::as_str), Some("alice"));
        assert_eq!(
            r.details.get("pin_state").map(String::as_str),
            Some("suspended")
        );
        assert_eq!(
            r.details.get("code_state").map(String::as_str),
            Some("none")
        );
        let failed = record(
            DeskAction::Show,
            "1004217",
            "alice",
            now,
            &Err(DeskError::Store(StoreError::Conflict)),
        );
        assert_eq!(failed.outcome, Outcome::Error);
        assert!(describe("1004217", &view, now).contains("SUSPENDED after 100"));
    }
}
