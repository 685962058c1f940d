//! The Resetline audit trail: one record per security-relevant event of a reset call,
//! tamper-evident, verifiable, and free of secrets.
//!
//! Security teams and auditors read this trail (NIST 800-53 AU-3, PCI DSS 10.2, ASVS 16).
//! The crate provides the record model ([`Record`], [`EventType`]), the masked contact types
//! ([`MaskedNumber`], [`MaskedEmail`]), the JSON Lines [`FileSink`] with its hash chain,
//! rotation and signed checkpoints, and [`verify`], which checks a whole trail and names the
//! first bad record. Records carry unique ids ([`RecordId`]) so a retried write is never
//! written twice; [`OpenIntents`] finds effects whose outcome a crash cut off; [`Spill`]
//! keeps records that wait for a sink on disk.
//!
//! # Invariant
//!
//! A record, once acknowledged by `append`, is on disk per the fsync policy and chained:
//! handed to the OS in full before `append` returns, fsynced by the time its [`Ack`] says so,
//! and bound by HMAC-SHA256 to every record before it. No record ever contains a secret or a
//! full phone number or e-mail address: callers pass already-masked values, phone numbers and
//! addresses can only enter through types whose constructors mask them, and the record type
//! has no field meant to hold a PIN, a code or a new secret. (The free-text fields —
//! `reason`, `node`, `details` — are for identifiers and reason words chosen by the engine;
//! keeping secrets out of them is the caller's contract, which the engine's secret type,
//! having no `Display`, makes hard to break by accident.)
//!
//! # The chain
//!
//! Each record line carries `prev`, the hex HMAC-SHA256 of the previous record's exact line
//! (for record 1, a genesis value derived from the key and the [`ChainId`]), and `mac`, the
//! HMAC of its own line without `mac`. Every N records, on rotation and on close, a signed
//! checkpoint (count, head, file, time) goes to a separate file. Deleting, reordering,
//! inserting or editing a record breaks the chain; truncating after a checkpoint contradicts
//! it. What remains undetectable without a copy of the checkpoints kept elsewhere: removing
//! the newest records together with the newest checkpoints, or rewriting everything with the
//! key. Details in the `key`, `checkpoint`, `files` and `sink` module docs.
//!
//! # Line format and injection safety
//!
//! Each record is one line of compact JSON made of printable ASCII only: serde_json escapes
//! quotes, backslashes and control characters (newline, carriage return, ESC of ANSI
//! sequences), and the crate's formatter escapes everything else outside printable ASCII as
//! `\uXXXX`, including DEL, the C1 controls, the Unicode separators U+2028/U+2029 and bidi
//! overrides. Caller-controlled strings therefore always stay inside one escaped line and read
//! back unchanged.
//!
//! # Time
//!
//! The crate reads no clock: every record, checkpoint, rotation day and batch interval uses
//! times the caller passes, so tests run on fixed times.

mod chain;
mod checkpoint;
mod error;
mod files;
mod id;
mod intent;
mod json;
mod key;
mod query;
mod recent;
mod record;
mod sink;
mod spill;
mod verify;

pub use chain::{ChainHead, Sealed, open_checkpoint_line, open_record};
pub use error::{
    CheckpointFault, CheckpointProblem, MaskError, RecordFault, RecordProblem, SinkError,
    VerifyError,
};
pub use id::{BadRecordId, RecordId, RecordIds};
pub use intent::{INTENT_DETAIL, OpenIntents, outcome_unknown};
pub use key::{AuditKey, ChainId, ChainIdError, KeyError};
pub use query::{Filter, QueryError, query};
pub use record::{
    Destination, EventType, Factor, MAX_LINE_LEN, MaskedEmail, MaskedNumber, Outcome, Record,
    StoredRecord, UNKNOWN_ACCOUNT, UnknownWord,
};
pub use sink::{
    Ack, FileSink, FsyncPolicy, OpenReport, PurgeReport, Rotation, SinkConfig, TornTail,
};
pub use spill::{Spill, Spilled};
/// The `time` crate, re-exported so callers build [`Record`] times with the same version.
pub use time;
pub use verify::{ChainCheck, PURGE_FIRST_SEQ, Report, verify, verify_paths};

/// The `retention_purge` record a purge appends: cut-off, records removed, first seq kept.
/// The verifier reads `first_seq` back to tell a purge from a deletion.
pub fn purge_record(
    now: time::OffsetDateTime,
    cutoff: time::OffsetDateTime,
    removed: u64,
    first_seq: u64,
) -> Record {
    let before = record::format_time(cutoff).unwrap_or_default();
    Record::new(now, EventType::RetentionPurge, Outcome::Info, "", "", "")
        .with_reason("retention")
        .with_detail("before", before)
        .with_detail("removed", removed.to_string())
        .with_detail(PURGE_FIRST_SEQ, first_seq.to_string())
}

/// The record a sink writes in place of one it cannot encode (too long, time out of range):
/// the same event, outcome, call, account, caller and factor, the reason
/// `unwritable_record` and `details.problem`, so no event disappears silently. Strings are
/// cut to 128 characters and an unwritable time becomes `fallback_time`. It keeps the
/// record's id, so a retry of the record is still recognised.
pub fn stand_in(record: &Record, problem: &str, fallback_time: time::OffsetDateTime) -> Record {
    let cut = |s: &str| s.chars().take(128).collect::<String>();
    let time = if record::format_time(record.time).is_ok() {
        record.time
    } else {
        fallback_time
    };
    let mut out = Record::new(
        time,
        record.event,
        record.outcome,
        cut(&record.call_id),
        cut(&record.flow_id),
        cut(&record.flow_version),
    )
    .with_account(cut(&record.account))
    .with_reason("unwritable_record")
    .with_node(cut(&record.node))
    .with_detail("problem", cut(problem));
    out.caller = record.caller.clone();
    out.factor = record.factor;
    out.id = record.id;
    out
}
