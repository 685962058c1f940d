//! Intents and their outcomes: how the trail shows an irreversible effect a crash cut short.
//!
//! Before a credential change or a message leaves, the engine writes an intent record
//! (`outcome: intent`, with an id) and waits until it is durable; the effect's outcome record
//! names the intent in `details.intent`. An outcome is written after its intent, so in chain
//! order an intent is open from its own record until a record names it. [`OpenIntents`]
//! follows a chain's records and keeps the open ones; after a restart, an intent still open
//! from before it gets an [`outcome_unknown`] record: the effect may or may not have happened.
//!
//! Invariant: memory is bounded: at most [`OpenIntents::MAX`] open intents are kept, the
//! oldest forgotten first (an intent stays open only while its step runs, a few seconds).

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use crate::id::RecordId;
use crate::record::{Outcome, Record};

/// The detail of an outcome record (or an `outcome_unknown` record) naming its intent's id.
pub const INTENT_DETAIL: &str = "intent";

/// The intents of a chain that no record names yet (see the module doc).
#[derive(Debug, Default, Clone)]
pub struct OpenIntents {
    by_seq: BTreeMap<u64, Record>,
    seq_of: HashMap<RecordId, u64>,
}

impl OpenIntents {
    /// Most open intents kept.
    pub const MAX: usize = 65_536;

    /// Follows one record of the chain, at `seq` (records are given in chain order).
    pub fn see(&mut self, seq: u64, record: &Record) {
        if let Some(named) = record.details.get(INTENT_DETAIL) {
            self.named(named);
        }
        if record.outcome == Outcome::Intent
            && let Some(id) = record.id
        {
            self.seq_of.insert(id, seq);
            self.by_seq.insert(seq, record.clone());
            while self.by_seq.len() > Self::MAX {
                if let Some((_, oldest)) = self.by_seq.pop_first()
                    && let Some(id) = oldest.id
                {
                    self.seq_of.remove(&id);
                }
            }
        }
    }

    /// A record named the intent `id` (the text of its `details.intent`): it is closed.
    pub(crate) fn named(&mut self, id: &str) {
        if let Ok(id) = id.parse::<RecordId>()
            && let Some(at) = self.seq_of.remove(&id)
        {
            self.by_seq.remove(&at);
        }
    }

    /// The open intents, oldest first.
    pub fn open(&self) -> Vec<Record> {
        self.by_seq.values().cloned().collect()
    }

    /// Whether no intent is open.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }
}

/// The record that closes `intent` when its outcome was never written (the process stopped
/// in between): the same event, call, account, caller, destination, factor and node, outcome
/// `unknown`, reason `outcome_unknown`, `details.intent` naming it, dated `now`.
pub fn outcome_unknown(intent: &Record, now: OffsetDateTime) -> Record {
    let mut out = Record::new(
        now,
        intent.event,
        Outcome::Unknown,
        intent.call_id.clone(),
        intent.flow_id.clone(),
        intent.flow_version.clone(),
    )
    .with_account(intent.account.clone())
    .with_reason("outcome_unknown")
    .with_node(intent.node.clone());
    out.caller = intent.caller.clone();
    out.destination = intent.destination.clone();
    out.factor = intent.factor;
    if let Some(id) = intent.id {
        out = out.with_detail(INTENT_DETAIL, id.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EventType;
    use crate::record::tests::sample;

    fn intent(n: u128) -> Record {
        let mut r = sample(1);
        r.event = EventType::AuthnPasswordChange;
        r.outcome = Outcome::Intent;
        r.with_id(RecordId::from_bytes(n.to_be_bytes()))
    }

    #[test]
    fn an_intent_stays_open_until_a_record_names_it() {
        let mut open = OpenIntents::default();
        open.see(1, &intent(7));
        open.see(2, &sample(2));
        open.see(3, &intent(8));
        assert_eq!(open.open().len(), 2);
        let id7 = RecordId::from_bytes(7u128.to_be_bytes()).to_string();
        let outcome = sample(4).with_detail(INTENT_DETAIL, id7.clone());
        open.see(4, &outcome);
        let left = open.open();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, Some(RecordId::from_bytes(8u128.to_be_bytes())));

        let unknown = outcome_unknown(&intent(7), sample(9).time);
        assert_eq!(
            (unknown.event, unknown.outcome, unknown.reason.as_str()),
            (
                EventType::AuthnPasswordChange,
                Outcome::Unknown,
                "outcome_unknown"
            )
        );
        assert_eq!(unknown.details.get(INTENT_DETAIL), Some(&id7));
        assert_eq!(unknown.id, None, "its own id is given when it is appended");
    }

    #[test]
    fn open_intents_are_bounded() {
        let mut open = OpenIntents::default();
        for n in 0..(OpenIntents::MAX as u128 + 10) {
            open.see(n as u64 + 1, &intent(n));
        }
        let left = open.open();
        assert_eq!(left.len(), OpenIntents::MAX);
        assert_eq!(
            left[0].id,
            Some(RecordId::from_bytes(10u128.to_be_bytes())),
            "the oldest are forgotten first"
        );
    }
}
