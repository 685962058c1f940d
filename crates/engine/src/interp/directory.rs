//! `directory.find`: who the caller says they are, and the enumeration-safe decoy.
//!
//! Invariant: with `enumeration_safe`, an unknown, locked, disabled or not-allowed account
//! takes the same path as an active one, with a decoy record no verification ever accepts and
//! no account named in the session.

use std::collections::BTreeMap;

use super::{Engine, Flowing};
use crate::session::{Session, Var};

impl Engine {
    /// Enumeration-safe mode: an ID that is unknown, locked, disabled or not allowed goes on
    /// to `next` like an active one, with a decoy record (the claimed value as its `id`, so
    /// lockouts count on it as on a real account) that no verification ever accepts. The
    /// session names no account, so what follows is audited for the unknown account.
    pub(super) fn decoy<'f>(
        &self,
        s: &mut Session,
        f: &resetline_flow::model::DirectoryFind,
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
