//! `directory.find`: who the caller says they are, and the enumeration-safe decoy.
//!
//! Invariant: with `enumeration_safe`, an unknown, locked, disabled or not-allowed account
//! takes the same path as an active one, with a decoy record no verification ever accepts and
//! no account named in the session.

use std::collections::BTreeMap;

use resetline_audit::{EventType as Ev, Outcome as Out};
use resetline_flow::Flow;
use resetline_flow::model::{DirectoryFind, Node};

use super::drive::onward;
use super::{Engine, Flowing};
use crate::backend::{Account, AccountState};
use crate::session::{Session, Var};

impl Engine {
    /// `directory.find`: looks the claimed value up and binds the record (`into`), or takes
    /// the account's outcome edge; a decoy instead in enumeration-safe mode.
    pub(super) async fn find<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        f: &DirectoryFind,
    ) -> Flowing<'f> {
        let value = match self.render_text(s, &f.value.value) {
            Ok(v) => v,
            Err(_) if flow.settings.enumeration_safe => {
                return self.decoy(s, f, "", onward(node));
            }
            Err(_) => return Flowing::Outcome("not_found"),
        };
        match self
            .within("directory", self.directory.find(f.by, &value))
            .await
        {
            Ok(None) => {
                self.audit(s, Ev::Identify, Out::Failure, "not_found");
                if flow.settings.enumeration_safe {
                    return self.decoy(s, f, &value, onward(node));
                }
                Flowing::Outcome("not_found")
            }
            Ok(Some(acc)) => self.found(flow, s, node, f, &value, acc),
            Err(e) => {
                tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %e, "directory lookup failed");
                self.audit(
                    s,
                    Ev::Identify,
                    Out::Error,
                    if e.timeout { "timeout" } else { "backend" },
                );
                Flowing::Outcome("error")
            }
        }
    }

    /// An account was found: bound as a record, audited, and its state's edge taken (or a
    /// decoy's path, in enumeration-safe mode).
    fn found<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        f: &DirectoryFind,
        value: &str,
        acc: Account,
    ) -> Flowing<'f> {
        let outcome = match acc.state {
            AccountState::Locked => Some("locked"),
            AccountState::Disabled => Some("disabled"),
            AccountState::Active if !acc.allow_phone_reset => Some("not_allowed"),
            AccountState::Active => None,
        };
        let state = match acc.state {
            AccountState::Active => "active",
            AccountState::Locked => "locked",
            AccountState::Disabled => "disabled",
        };
        s.account = Some(acc.id.clone());
        s.vars
            .insert(f.into.value.clone(), Var::Record(record(acc, state)));
        tracing::info!(call = %s.call_sid, node = %node.id.value, outcome = outcome.unwrap_or("found"), "directory lookup");
        self.audit(
            s,
            Ev::Identify,
            if outcome.is_none() {
                Out::Success
            } else {
                Out::Failure
            },
            outcome.unwrap_or("found"),
        );
        match outcome {
            Some(_) if flow.settings.enumeration_safe => self.decoy(s, f, value, onward(node)),
            Some(o) => Flowing::Outcome(o),
            None => onward(node),
        }
    }

    /// Enumeration-safe mode: an ID that is unknown, locked, disabled or not allowed goes on
    /// to `next` like an active one, with a decoy record (the claimed value as its `id`, so
    /// lockouts count on it as on a real account) that no verification ever accepts. The
    /// session names no account, so what follows is audited for the unknown account.
    pub(super) fn decoy<'f>(
        &self,
        s: &mut Session,
        f: &DirectoryFind,
        claimed: &str,
        next: Flowing<'f>,
    ) -> Flowing<'f> {
        let mut rec = BTreeMap::new();
        rec.insert(DECOY.to_string(), "1".to_string());
        rec.insert("id".to_string(), claimed.to_string());
        s.vars.insert(f.into.value.clone(), Var::Record(rec));
        s.account = None;
        next
    }
}

/// The record field that marks an enumeration-safe decoy (not a field flows can name).
pub(super) const DECOY: &str = "decoy";

/// The record `directory.find` binds: the account's fields that have a value.
fn record(acc: Account, state: &str) -> BTreeMap<String, String> {
    let mut rec = BTreeMap::new();
    for (field, value) in [
        ("birth_date", acc.birth_date),
        ("email", acc.email),
        ("id", Some(acc.id)),
        ("mobile", acc.mobile),
        ("name", Some(acc.name)),
        ("state", Some(state.to_string())),
    ] {
        if let Some(v) = value {
            rec.insert(field.to_string(), v);
        }
    }
    rec
}
