//! The head of a chain without any storage: what a sink other than [`crate::FileSink`] (the
//! PostgreSQL sink) needs to seal records and checkpoints exactly as the file sink does.
//!
//! A [`ChainHead`] knows the seq and link of the last record. [`ChainHead::seal`] turns the
//! next record into its line without changing the head; the caller stores the line and only
//! then calls [`ChainHead::advance`], so a failed store never moves the chain. The lines are
//! byte for byte what the file sink writes, so [`crate::ChainCheck`] verifies both.

use time::OffsetDateTime;

use crate::checkpoint::{Checkpoint, seal_checkpoint};
use crate::error::{RecordProblem, SinkError};
use crate::key::{AuditKey, ChainId, hex};
use crate::record::{MAX_LINE_LEN, Record, StoredRecord, open_line, seal};

/// One record sealed as the next link of a chain, not yet stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Its seq.
    pub seq: u64,
    /// Its line (no newline): the exact bytes to store.
    pub line: Vec<u8>,
    /// Hex `prev` it carries.
    pub prev: String,
    /// Hex `mac` it carries.
    pub mac: String,
    /// Hex link of its line: the next record's `prev`.
    pub link: String,
}

/// The seq and link of a chain's last record, and the key to extend it.
#[derive(Debug, Clone)]
pub struct ChainHead {
    key: AuditKey,
    chain: ChainId,
    seq: u64,
    prev: String,
}

impl ChainHead {
    /// An empty chain: the next record is seq 1 with the genesis `prev`.
    pub fn genesis(key: AuditKey, chain: ChainId) -> Self {
        let prev = hex(&key.genesis(&chain));
        Self {
            key,
            chain,
            seq: 0,
            prev,
        }
    }

    /// Resumes after `last_line`, the stored line of the chain's last record, which must
    /// verify under the key.
    ///
    /// # Errors
    /// The [`RecordProblem`] of a line that is not an authentic record.
    pub fn resume(key: AuditKey, chain: ChainId, last_line: &[u8]) -> Result<Self, RecordProblem> {
        let stored = open_line(last_line, Some(&key)).map_err(|(problem, _)| problem)?;
        let prev = hex(&key.link(last_line));
        Ok(Self {
            key,
            chain,
            seq: stored.seq,
            prev,
        })
    }

    /// Seals `record` as seq `self.seq() + 1`. The head does not move until
    /// [`ChainHead::advance`].
    ///
    /// # Errors
    /// [`SinkError::Encode`], [`SinkError::RecordTooLarge`] or [`SinkError::Rejected`] (seq
    /// exhausted).
    pub fn seal(&self, record: &Record) -> Result<Sealed, SinkError> {
        let seq = self.seq.checked_add(1).ok_or(SinkError::Rejected {
            detail: "seq exhausted",
        })?;
        let line = seal(&self.key, seq, record, &self.prev)
            .map_err(|detail| SinkError::Encode { detail })?;
        if line.len() > MAX_LINE_LEN {
            return Err(SinkError::RecordTooLarge { len: line.len() });
        }
        let link = hex(&self.key.link(&line));
        // The line ends with `"mac":"<64 hex>"}`.
        let mac = line
            .len()
            .checked_sub(66)
            .and_then(|start| line.get(start..start + 64))
            .map(|hex| String::from_utf8_lossy(hex).into_owned())
            .unwrap_or_default();
        Ok(Sealed {
            seq,
            line,
            prev: self.prev.clone(),
            mac,
            link,
        })
    }

    /// Moves the head to `sealed`, once it is stored.
    pub fn advance(&mut self, sealed: &Sealed) {
        self.seq = sealed.seq;
        self.prev.clone_from(&sealed.link);
    }

    /// A signed checkpoint line of the head (count = seq, head = link of the last record),
    /// naming `file` as the place of that record, at time `now`.
    ///
    /// # Errors
    /// [`SinkError::Encode`] when `now` cannot be written.
    pub fn checkpoint(&self, file: &str, now: OffsetDateTime) -> Result<Vec<u8>, SinkError> {
        let cp = Checkpoint {
            chain: self.chain.as_str().to_owned(),
            count: self.seq,
            head: self.prev.clone(),
            file: file.to_owned(),
            time: now,
        };
        seal_checkpoint(&self.key, &cp).map_err(|detail| SinkError::Encode { detail })
    }

    /// The seq of the last record (0 for an empty chain).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Hex link of the last record (the genesis value for an empty chain).
    pub fn link(&self) -> &str {
        &self.prev
    }

    /// The chain's id.
    pub fn chain(&self) -> &ChainId {
        &self.chain
    }
}

/// Reads a stored line and checks it under `key` (form, canonical bytes, `mac`); chain
/// position is not checked here (that is [`crate::ChainCheck`]'s job).
///
/// # Errors
/// The [`RecordProblem`] found.
pub fn open_record(line: &[u8], key: &AuditKey) -> Result<StoredRecord, RecordProblem> {
    open_line(line, Some(key)).map_err(|(problem, _)| problem)
}

/// Reads a checkpoint line and checks its signature under `key`: its chain, count and hex
/// head, or `None` when it is not an authentic checkpoint.
pub fn open_checkpoint_line(line: &[u8], key: &AuditKey) -> Option<(String, u64, String)> {
    crate::checkpoint::open_checkpoint(line, key)
        .ok()
        .map(|cp| (cp.chain, cp.count, cp.head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::tests::test_key;
    use crate::record::tests::sample;
    use crate::sink::tests::{chain, config, open};

    #[test]
    fn a_chain_head_seals_exactly_what_the_file_sink_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sink, _) = open(config(dir.path()));
        let mut head = ChainHead::genesis(test_key(), chain());
        for i in 1..=3 {
            let sealed = head.seal(&sample(i)).expect("seal");
            let text = String::from_utf8(sealed.line.clone()).expect("ascii");
            assert!(
                text.ends_with(&format!("\"mac\":\"{}\"}}", sealed.mac)),
                "{text}"
            );
            assert_eq!(sealed.mac.len(), 64);
            assert_eq!(head.seq(), i - 1, "sealing does not move the head");
            head.advance(&sealed);
            let _ = sink.append(&sample(i)).expect("append");
        }
        drop(sink);
        let text = std::fs::read_to_string(dir.path().join("node-a.000001.jsonl")).expect("read");
        let last = text.lines().last().expect("line");
        let resumed = ChainHead::resume(test_key(), chain(), last.as_bytes()).expect("resume");
        assert_eq!((resumed.seq(), resumed.link()), (3, head.link()));
        let mut bad = last.to_owned();
        bad = bad.replace("wrong", "right");
        assert!(ChainHead::resume(test_key(), chain(), bad.as_bytes()).is_err());
    }
}
