//! Signed checkpoints: "the chain had `count` records and its head hashed to `head`".
//!
//! Checkpoints go to their own file, `<chain>.checkpoints.jsonl`, one JSON line each:
//!
//! ```text
//! {"chain":"node-a","count":1000,"head":"<64 hex>","file":"node-a.000001.jsonl",
//!  "time":"2025-03-01T09:00:00Z","sig":"<64 hex>"}
//! ```
//!
//! `head` is the link of record `count` (the keyed hash of its whole line, the value the next
//! record carries as `prev`), `file` the segment holding that record, `time` the time the
//! caller passed with the record or call that triggered it, and `sig` the keyed hash of the
//! line without `sig`. A checkpoint is written only after every record it covers is fsynced,
//! so on disk a checkpoint never runs ahead of the records; `verify` treats one that does as
//! truncation. The file can also be copied off the box (syslog, WORM storage) so that
//! deleting both the tail records and the tail checkpoints is detectable too.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::CheckpointProblem;
use crate::json::{first_non_printable, to_ascii_json};
use crate::key::{AuditKey, unhex_tag};
use crate::record::{MAX_LINE_LEN, attach_tag, format_time, parse_time, short};

/// One checkpoint as read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) chain: String,
    pub(crate) count: u64,
    pub(crate) head: String,
    pub(crate) file: String,
    pub(crate) time: OffsetDateTime,
}

#[derive(Serialize)]
struct BodyOut<'a> {
    chain: &'a str,
    count: u64,
    head: &'a str,
    file: &'a str,
    time: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    chain: String,
    count: u64,
    head: String,
    file: String,
    time: String,
    sig: String,
}

fn body(cp: &Checkpoint) -> Result<Vec<u8>, String> {
    let time = format_time(cp.time)?;
    to_ascii_json(&BodyOut {
        chain: &cp.chain,
        count: cp.count,
        head: &cp.head,
        file: &cp.file,
        time: &time,
    })
}

/// The checkpoint's line (no newline), signed.
pub(crate) fn seal_checkpoint(key: &AuditKey, cp: &Checkpoint) -> Result<Vec<u8>, String> {
    let body = body(cp)?;
    let sig = key.checkpoint_sig(&body);
    attach_tag(body, "sig", &sig)
}

/// Reads one checkpoint line (no newline) and checks its form and signature.
pub(crate) fn open_checkpoint(
    line: &[u8],
    key: &AuditKey,
) -> Result<Checkpoint, (CheckpointProblem, Option<u64>)> {
    if line.len() > MAX_LINE_LEN {
        return Err((CheckpointProblem::TooLong, None));
    }
    if let Some(column) = first_non_printable(line) {
        return Err((CheckpointProblem::NotAscii { column: column + 1 }, None));
    }
    let malformed = |detail: String, count| {
        (
            CheckpointProblem::Malformed {
                detail: short(&detail),
            },
            count,
        )
    };
    let parsed: LineIn =
        serde_json::from_slice(line).map_err(|e| malformed(e.to_string(), None))?;
    let count = Some(parsed.count);
    let time = parse_time(&parsed.time).map_err(|d| malformed(d, count))?;
    let sig = unhex_tag(&parsed.sig)
        .ok_or_else(|| malformed("sig is not 64 lowercase hex digits".to_owned(), count))?;
    let cp = Checkpoint {
        chain: parsed.chain,
        count: parsed.count,
        head: parsed.head,
        file: parsed.file,
        time,
    };
    let body = body(&cp).map_err(|d| malformed(d, count))?;
    let rebuilt = attach_tag(body.clone(), "sig", &sig).map_err(|d| malformed(d, count))?;
    if rebuilt != line {
        return Err((CheckpointProblem::NotCanonical, count));
    }
    if !key.check_checkpoint_sig(&body, &sig) {
        return Err((CheckpointProblem::BadSignature, count));
    }
    if cp.count == 0 {
        return Err(malformed("count is 0".to_owned(), count));
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::tests::test_key;
    use time::macros::datetime;

    fn cp() -> Checkpoint {
        Checkpoint {
            chain: "node-a".to_owned(),
            count: 64,
            head: "ab".repeat(32),
            file: "node-a.000001.jsonl".to_owned(),
            time: datetime!(2025-03-01 09:00:00 UTC),
        }
    }

    #[test]
    fn checkpoints_round_trip_and_have_the_documented_shape() {
        let key = test_key();
        let line = seal_checkpoint(&key, &cp()).expect("seal");
        let text = String::from_utf8(line.clone()).expect("utf8");
        assert!(text.starts_with(r#"{"chain":"node-a","count":64,"head":"abab"#));
        assert!(
            text.contains(
                r#"","file":"node-a.000001.jsonl","time":"2025-03-01T09:00:00Z","sig":""#
            )
        );
        assert_eq!(open_checkpoint(&line, &key), Ok(cp()));
    }

    #[test]
    fn altered_or_foreign_checkpoints_are_refused() {
        let key = test_key();
        let text = String::from_utf8(seal_checkpoint(&key, &cp()).expect("seal")).expect("utf8");
        let raised = text.replace("\"count\":64", "\"count\":65");
        assert_eq!(
            open_checkpoint(raised.as_bytes(), &key).map_err(|e| e.0),
            Err(CheckpointProblem::BadSignature)
        );
        let other = crate::AuditKey::new(&[9u8; 32]).expect("key");
        assert_eq!(
            open_checkpoint(text.as_bytes(), &other).map_err(|e| e.0),
            Err(CheckpointProblem::BadSignature)
        );
        assert!(matches!(
            open_checkpoint(b"{\"count\":1}", &key),
            Err((CheckpointProblem::Malformed { .. }, None))
        ));
    }
}
