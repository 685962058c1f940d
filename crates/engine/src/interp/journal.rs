//! The journal: an irreversible effect's intent is written, and acknowledged, before the
//! effect happens (issue 22, finding 9).
//!
//! A credential change (`Directory::set_secret`) and a message (`Messenger::send`: codes,
//! generated passwords, notices) cannot be taken back, and a process can die at any moment
//! after one. So before each, the engine appends an intent record (`outcome: intent`, a
//! 128-bit random id from the injected [`crate::Random`]) to its journal, together with the
//! records the step made so far (so a call's records keep their order in the trail), and
//! waits for it within the call's time. The effect's outcome record names the intent in
//! `details.intent`; if the process dies in between, the server writes `outcome_unknown`
//! for it at the next start.
//!
//! Invariant: no effect happens unless its intent was acknowledged. When the journal refuses
//! or runs out of time, the effect is skipped, the outcome record says `audit_unavailable`,
//! and the flow takes its error path (a spoken next step). Records handed to the journal are
//! counted in `Session::journaled` and never handed to it again.

use resetline_audit::{INTENT_DETAIL, Outcome as Out, Record, RecordId};

use super::Engine;
use crate::backend::{BackendError, OutgoingMessage, SendError, SentMessage, SetSecretError};
use crate::secret::Secret;
use crate::session::Session;

/// The `backend` of the error an effect skipped for want of a recorded intent reports.
const JOURNAL: &str = "audit journal";

/// The error of an effect skipped because its intent was not recorded.
fn not_recorded() -> BackendError {
    BackendError::new(
        JOURNAL,
        "the intent could not be recorded; nothing was done",
    )
}

/// The reason word of an outcome record for a backend error: `audit_unavailable` (the
/// effect was skipped), `timeout` or `backend`.
pub(super) fn backend_reason(e: &BackendError) -> &'static str {
    if e.backend == JOURNAL {
        "audit_unavailable"
    } else if e.timeout {
        "timeout"
    } else {
        "backend"
    }
}

/// The outcome record of a message sent after `intent` (`planned` is the intent as built,
/// with the reason a success keeps): success, failure (`undeliverable`) or error.
pub(super) fn sent_outcome(
    intent: &Intent,
    planned: Record,
    sent: &Result<SentMessage, SendError>,
) -> Record {
    let mut rec = intent.names(planned);
    rec.id = None;
    match sent {
        Ok(_) => rec.outcome = Out::Success,
        Err(SendError::Undeliverable { .. }) => {
            rec.outcome = Out::Failure;
            rec.reason = "undeliverable".into();
        }
        Err(SendError::Backend(e)) => {
            rec.outcome = Out::Error;
            rec.reason = backend_reason(e).into();
        }
    }
    rec
}

/// An effect's intent as the journal took it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Intent {
    /// Its id (none when no randomness was available: then nothing was handed over).
    id: Option<RecordId>,
    /// The journal acknowledged it: the effect may happen.
    pub(super) recorded: bool,
}

impl Intent {
    /// `outcome`, naming this intent.
    pub(super) fn names(&self, outcome: Record) -> Record {
        match self.id {
            Some(id) => outcome.with_detail(INTENT_DETAIL, id.to_string()),
            None => outcome,
        }
    }
}

impl Engine {
    /// Appends `intent` (its outcome set to `intent`, a fresh id given), after the step's
    /// records not yet journaled, and waits for the journal within the call's time. The
    /// caller runs the effect only if [`Intent::recorded`].
    pub(super) async fn intend(&self, s: &mut Session, mut intent: Record) -> Intent {
        let mut bytes = [0u8; 16];
        if self.random.fill(&mut bytes).is_err() {
            tracing::error!(call = %s.call_sid, "no randomness for an intent id; the effect does not happen");
            return Intent {
                id: None,
                recorded: false,
            };
        }
        let id = RecordId::from_bytes(bytes);
        intent.outcome = Out::Intent;
        intent.id = Some(id);
        s.pending_audit.push(intent);
        let batch = s
            .pending_audit
            .get(s.journaled..)
            .unwrap_or_default()
            .to_vec();
        s.journaled = s.pending_audit.len();
        let recorded = match self.journal.append_by(batch, self.call_deadline()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(call = %s.call_sid, error = %e, "intent not recorded; the effect does not happen");
                false
            }
        };
        Intent {
            id: Some(id),
            recorded,
        }
    }

    /// Sends `message` once `planned` is recorded as its intent; skipped (an error naming
    /// the journal) when it is not.
    pub(super) async fn send_recorded(
        &self,
        s: &mut Session,
        planned: Record,
        message: OutgoingMessage,
    ) -> (Intent, Result<SentMessage, SendError>) {
        let intent = self.intend(s, planned).await;
        if !intent.recorded {
            return (intent, Err(SendError::Backend(not_recorded())));
        }
        let sent = self.within("messages", self.messenger.send(message)).await;
        (intent, sent)
    }

    /// Sets `secret` at the directory once its intent is recorded: `intent` when one was
    /// recorded already for this change (a generated password, before its delivery), else
    /// `planned`. Skipped (an error naming the journal) when it is not recorded.
    pub(super) async fn set_recorded(
        &self,
        s: &mut Session,
        intent: Option<Intent>,
        planned: Record,
        account: &str,
        secret: &Secret,
    ) -> (Intent, Result<(), SetSecretError>) {
        let intent = match intent {
            Some(intent) => intent,
            None => self.intend(s, planned).await,
        };
        if !intent.recorded {
            return (intent, Err(SetSecretError::Backend(not_recorded())));
        }
        let set = self
            .within("directory", self.directory.set_secret(account, secret))
            .await;
        (intent, set)
    }
}
