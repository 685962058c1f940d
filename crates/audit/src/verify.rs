//! Verification of a whole chain and its checkpoints.
//!
//! Records are read in chain order, each line checked in this order: complete (ends with a
//! newline), printable ASCII, well-formed and canonical, `mac` valid under the key, `seq` the
//! next number, `prev` equal to the link of the line before (the genesis value for seq 1).
//! Each checkpoint must be signed under the key, name this chain, never count backwards,
//! and match the record at its count: same file, and that record's link equal to its head.
//! A checkpoint whose count is past the last record means the trail was truncated.
//!
//! A record id may appear once: a second record with the id of an earlier one is reported
//! as [`RecordProblem::DuplicateId`], naming both (the second by file, line and seq, the
//! first by seq). Records without an id (written before ids existed) are not compared.
//!
//! The first problem in chain order is returned, naming file, line and seq. Record problems
//! come before checkpoint problems, except that a checkpoint disagreeing with a record is
//! reported when that record is reached. The reader streams the records; memory grows only
//! by the checkpoints (a few per thousand records) and by the ids seen, about 40 bytes per
//! record with an id (some 400 MB for ten million records).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::checkpoint::{Checkpoint, open_checkpoint};
use crate::error::{CheckpointFault, CheckpointProblem, RecordFault, RecordProblem, VerifyError};
use crate::files::{
    LineEnd, LineReader, checkpoint_name, first_gap, list_quarantined, list_segments,
};
use crate::id::RecordId;
use crate::key::{AuditKey, ChainId, TAG_LEN, hex, tag_matches, unhex_tag};
use crate::record::{EventType, open_line};

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The chain verified.
    pub chain: ChainId,
    /// The segment files, in chain order.
    pub segments: Vec<PathBuf>,
    /// The seq of the first record: 1, or later after a retention purge.
    pub first_seq: u64,
    /// Number of records verified (the last seq is `first_seq + records - 1`).
    pub records: u64,
    /// Number of checkpoints checked.
    pub checkpoints: u64,
    /// Records covered by the last checkpoint (0 if none). Records after it are chained
    /// but not protected against truncation until the next checkpoint.
    pub checkpointed: u64,
    /// Hex link of the last record (what the next record's `prev` will be).
    pub head: Option<String>,
    /// Time of the first and last record.
    pub span: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Torn tails that a sink set aside after a crash (`.torn` files). Not part of the
    /// chain; listed so they are seen.
    pub quarantined: Vec<PathBuf>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain {}: {} records in {} segment(s) verified; {} checkpoint(s), the last covering {} records",
            self.chain,
            self.records,
            self.segments.len(),
            self.checkpoints,
            self.checkpointed
        )?;
        if self.first_seq > 1 {
            write!(
                f,
                "; starts at seq {} (older records removed by a retention purge, anchored by a checkpoint)",
                self.first_seq
            )?;
        }
        let last_seq = (self.first_seq + self.records).saturating_sub(1);
        let uncovered = last_seq.saturating_sub(self.checkpointed);
        if uncovered > 0 {
            write!(
                f,
                "; {uncovered} record(s) after it not yet protected against truncation"
            )?;
        }
        if !self.quarantined.is_empty() {
            write!(
                f,
                "; {} torn-tail file(s) set aside after crashes",
                self.quarantined.len()
            )?;
        }
        Ok(())
    }
}

/// Verifies chain `chain` in `dir`: segments `<chain>.000001.jsonl` onwards, numbered
/// without a gap (after a retention purge the run starts later, anchored by a checkpoint),
/// and `<chain>.checkpoints.jsonl`, which must exist (it may be empty if the writer died
/// before its first checkpoint).
///
/// # Errors
/// The first problem found, as a [`VerifyError`] naming file, line and seq.
pub fn verify(dir: &Path, chain: &ChainId, key: &AuditKey) -> Result<Report, VerifyError> {
    let io = |source| VerifyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let segments = list_segments(dir, chain).map_err(io)?;
    let Some((first, _)) = segments.first() else {
        return Err(VerifyError::NoSegments {
            dir: dir.to_path_buf(),
            chain: chain.as_str().to_owned(),
        });
    };
    if let Some(index) = first_gap(&segments, *first) {
        return Err(VerifyError::MissingSegment {
            dir: dir.to_path_buf(),
            index,
        });
    }
    let purged_start = *first > 1;
    let checkpoints = dir.join(checkpoint_name(chain));
    if !checkpoints.exists() {
        return Err(VerifyError::MissingCheckpoints { path: checkpoints });
    }
    let paths: Vec<PathBuf> = segments.into_iter().map(|(_, path)| path).collect();
    let mut check = ChainCheck::new(chain.clone(), key.clone()).purged_start(purged_start);
    check.read_checkpoint_file(&checkpoints)?;
    for path in &paths {
        check.read_segment(path)?;
    }
    let mut report = check.finish(paths)?;
    report.quarantined = list_quarantined(dir, chain).map_err(io)?;
    Ok(report)
}

/// Verifies the given segment files, taken in the order given as the whole chain from its
/// first record, against `checkpoints` if given.
///
/// # Errors
/// The first problem found, as a [`VerifyError`] naming file, line and seq.
pub fn verify_paths(
    chain: &ChainId,
    segments: &[PathBuf],
    checkpoints: Option<&Path>,
    key: &AuditKey,
) -> Result<Report, VerifyError> {
    let mut check = ChainCheck::new(chain.clone(), key.clone());
    if let Some(path) = checkpoints {
        check.read_checkpoint_file(path)?;
    }
    for path in segments {
        check.read_segment(path)?;
    }
    check.finish(segments.to_vec())
}

/// The verifier as a stream, for any storage: give it every checkpoint line, then every
/// record line in chain order, then [`ChainCheck::finish`]. The file verifier and the
/// PostgreSQL sink's verifier are both this, so the rules are written once.
///
/// `source` names where a line came from (a file, or a table and chain) and `line_no` its
/// position there; both only appear in the error that names the first bad line. A record's
/// checkpoints must name `source`'s file name as their `file`.
#[derive(Debug)]
pub struct ChainCheck {
    chain: ChainId,
    key: AuditKey,
    purged_start: bool,
    cp_source: PathBuf,
    cps: Vec<(u64, Checkpoint)>,
    cp_fault: Option<CheckpointFault>,
    by_count: BTreeMap<u64, Vec<usize>>,
    first_seq: Option<u64>,
    expected_seq: u64,
    prev: [u8; TAG_LEN],
    last_at: Option<(PathBuf, u64)>,
    span: Option<(OffsetDateTime, OffsetDateTime)>,
    purge_stated: Option<u64>,
    records: u64,
    ids: HashMap<RecordId, u64>,
}

impl ChainCheck {
    /// A check of chain `chain` under `key`, expecting the chain to start at seq 1.
    pub fn new(chain: ChainId, key: AuditKey) -> Self {
        let prev = key.genesis(&chain);
        Self {
            chain,
            key,
            purged_start: false,
            cp_source: PathBuf::new(),
            cps: Vec::new(),
            cp_fault: None,
            by_count: BTreeMap::new(),
            first_seq: None,
            expected_seq: 1,
            prev,
            last_at: None,
            span: None,
            purge_stated: None,
            records: 0,
            ids: HashMap::new(),
        }
    }

    /// Whether the trail may start after seq 1 because a retention purge removed the oldest
    /// records. It then must start at a record whose `prev` is the head of a signed
    /// checkpoint at the seq before it, and the newest `retention_purge` record must say the
    /// trail starts there.
    #[must_use]
    pub fn purged_start(mut self, allowed: bool) -> Self {
        self.purged_start = allowed;
        self
    }

    fn read_checkpoint_file(&mut self, path: &Path) -> Result<(), VerifyError> {
        let io = |source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = LineReader::open(path).map_err(io)?;
        let mut buf = Vec::with_capacity(512);
        while let Some(end) = reader.next_line(&mut buf).map_err(io)? {
            let line = match end {
                LineEnd::Complete => Ok(buf.as_slice()),
                LineEnd::Torn => Err(CheckpointProblem::TornLine),
                LineEnd::TooLong => Err(CheckpointProblem::TooLong),
            };
            self.checkpoint_result(path, reader.line_no, line);
        }
        Ok(())
    }

    fn read_segment(&mut self, path: &Path) -> Result<(), VerifyError> {
        let io = |source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = LineReader::open(path).map_err(io)?;
        let mut buf = Vec::with_capacity(1024);
        while let Some(end) = reader.next_line(&mut buf).map_err(io)? {
            let fault = |problem| {
                VerifyError::Record(RecordFault {
                    file: path.to_path_buf(),
                    line: reader.line_no,
                    seq: None,
                    problem,
                })
            };
            match end {
                LineEnd::Complete => {}
                LineEnd::Torn => return Err(fault(RecordProblem::TornLine)),
                LineEnd::TooLong => return Err(fault(RecordProblem::TooLong)),
            }
            self.record(path, reader.line_no, &buf)?;
        }
        Ok(())
    }

    /// Adds one checkpoint line (no newline). Give all of them before the first record.
    /// A bad one is remembered and reported by [`ChainCheck::finish`], after record faults.
    pub fn checkpoint(&mut self, source: &Path, line_no: u64, line: &[u8]) {
        self.checkpoint_result(source, line_no, Ok(line));
    }

    fn checkpoint_result(
        &mut self,
        source: &Path,
        line_no: u64,
        line: Result<&[u8], CheckpointProblem>,
    ) {
        source.clone_into(&mut self.cp_source);
        if self.cp_fault.is_some() {
            return;
        }
        let fault = |count, problem| CheckpointFault {
            file: source.to_path_buf(),
            line: line_no,
            count,
            problem,
        };
        let cp = match line
            .map_err(|p| (p, None))
            .and_then(|l| open_checkpoint(l, &self.key))
        {
            Ok(cp) => cp,
            Err((problem, count)) => {
                self.cp_fault = Some(fault(count, problem));
                return;
            }
        };
        if cp.chain != self.chain.as_str() {
            let problem = CheckpointProblem::WrongChain { found: cp.chain };
            self.cp_fault = Some(fault(Some(cp.count), problem));
            return;
        }
        if let Some((_, before)) = self.cps.last()
            && cp.count < before.count
        {
            let problem = CheckpointProblem::CountWentBack {
                previous: before.count,
            };
            self.cp_fault = Some(fault(Some(cp.count), problem));
            return;
        }
        self.by_count
            .entry(cp.count)
            .or_default()
            .push(self.cps.len());
        self.cps.push((line_no, cp));
    }

    fn cp_fault_at(&self, cp_line: u64, count: u64, problem: CheckpointProblem) -> VerifyError {
        VerifyError::Checkpoint(CheckpointFault {
            file: self.cp_source.clone(),
            line: cp_line,
            count: Some(count),
            problem,
        })
    }

    /// Checks the next record line (no newline) of the chain.
    ///
    /// # Errors
    /// The record's fault, or a checkpoint at its seq that contradicts it.
    pub fn record(&mut self, source: &Path, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        let fault = |seq, problem| {
            VerifyError::Record(RecordFault {
                file: source.to_path_buf(),
                line: line_no,
                seq,
                problem,
            })
        };
        let stored =
            open_line(line, Some(&self.key)).map_err(|(problem, seq)| fault(seq, problem))?;
        let seq = Some(stored.seq);
        if self.first_seq.is_none() && stored.seq > 1 && self.purged_start {
            let anchor = self
                .by_count
                .get(&(stored.seq - 1))
                .into_iter()
                .flatten()
                .filter_map(|i| self.cps.get(*i))
                .find(|(_, cp)| unhex_tag(&cp.head).is_some_and(|h| tag_matches(&stored.prev, &h)))
                .and_then(|(_, cp)| unhex_tag(&cp.head));
            match anchor {
                Some(head) => {
                    self.prev = head;
                    self.expected_seq = stored.seq;
                }
                None => return Err(fault(seq, RecordProblem::Unanchored)),
            }
        }
        if stored.seq != self.expected_seq {
            return Err(fault(
                seq,
                RecordProblem::SeqMismatch {
                    expected: self.expected_seq,
                    found: stored.seq,
                },
            ));
        }
        if !tag_matches(&stored.prev, &self.prev) {
            return Err(fault(seq, RecordProblem::PrevMismatch));
        }
        if let Some(id) = stored.record.id
            && let Some(first_seq) = self.ids.insert(id, stored.seq)
        {
            return Err(fault(seq, RecordProblem::DuplicateId { first_seq }));
        }
        let link = self.key.link(line);
        let file_name = source
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        for i in self.by_count.get(&stored.seq).into_iter().flatten() {
            let Some((cp_line, cp)) = self.cps.get(*i) else {
                continue;
            };
            let at = (source.to_path_buf(), line_no);
            if cp.file != file_name {
                return Err(self.cp_fault_at(
                    *cp_line,
                    cp.count,
                    CheckpointProblem::WrongFile {
                        record_file: at.0,
                        record_line: at.1,
                    },
                ));
            }
            if !tag_matches(&cp.head, &link) {
                return Err(self.cp_fault_at(
                    *cp_line,
                    cp.count,
                    CheckpointProblem::HeadMismatch {
                        record_file: at.0,
                        record_line: at.1,
                    },
                ));
            }
        }
        if stored.record.event == EventType::RetentionPurge
            && let Some(first) = stored
                .record
                .details
                .get(PURGE_FIRST_SEQ)
                .and_then(|v| v.parse::<u64>().ok())
        {
            self.purge_stated = Some(self.purge_stated.map_or(first, |s| s.max(first)));
        }
        let time = stored.record.time;
        self.span = Some(self.span.map_or((time, time), |(first, _)| (first, time)));
        self.first_seq.get_or_insert(stored.seq);
        self.prev = link;
        self.last_at = Some((source.to_path_buf(), line_no));
        self.expected_seq = self.expected_seq.saturating_add(1);
        self.records += 1;
        Ok(())
    }

    /// Ends the check: checkpoint faults, checkpoints past the last record (truncation),
    /// and, for a trail that starts after seq 1, the purge record's agreement.
    ///
    /// # Errors
    /// The first problem left.
    pub fn finish(self, segments: Vec<PathBuf>) -> Result<Report, VerifyError> {
        let last_seq = self.expected_seq - 1;
        if let Some(fault) = self.cp_fault {
            return Err(VerifyError::Checkpoint(fault));
        }
        if let Some((cp_line, cp)) = self.cps.iter().find(|(_, cp)| cp.count > last_seq) {
            return Err(self.cp_fault_at(
                *cp_line,
                cp.count,
                CheckpointProblem::RecordsMissing {
                    last_seq,
                    last_at: self.last_at.clone(),
                },
            ));
        }
        let first_seq = self.first_seq.unwrap_or(1);
        if first_seq > 1 && self.purge_stated != Some(first_seq) {
            return Err(VerifyError::PurgeMismatch {
                first_seq,
                stated: self.purge_stated,
            });
        }
        Ok(Report {
            chain: self.chain,
            segments,
            first_seq,
            records: self.records,
            checkpoints: self.cps.len() as u64,
            checkpointed: self.cps.last().map_or(0, |(_, cp)| cp.count),
            head: (self.records > 0).then(|| hex(&self.prev)),
            span: self.span,
            quarantined: Vec::new(),
        })
    }
}

/// The detail of a `retention_purge` record giving the first seq the purge kept.
pub const PURGE_FIRST_SEQ: &str = "first_seq";

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::checkpoint::seal_checkpoint;
    use crate::key::tests::test_key;
    use crate::record::seal;
    use crate::record::tests::sample;
    use crate::sink::tests::{chain, config, write_trail};
    use crate::{Rotation, SinkConfig};

    struct Trail {
        dir: tempfile::TempDir,
    }

    impl Trail {
        /// `n` records, a checkpoint every `every` and on close.
        fn new(n: u64, every: u64) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            write_trail(
                SinkConfig {
                    checkpoint_every: every,
                    ..config(dir.path())
                },
                n,
            );
            Self { dir }
        }

        fn segment(&self, index: u64) -> PathBuf {
            self.dir.path().join(format!("node-a.{index:06}.jsonl"))
        }

        fn checkpoints(&self) -> PathBuf {
            self.dir.path().join("node-a.checkpoints.jsonl")
        }

        fn lines(path: &Path) -> Vec<String> {
            fs::read_to_string(path)
                .expect("read")
                .lines()
                .map(str::to_owned)
                .collect()
        }

        fn edit(path: &Path, change: impl FnOnce(&mut Vec<String>)) {
            let mut lines = Self::lines(path);
            change(&mut lines);
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            fs::write(path, text).expect("write");
        }

        fn verify(&self) -> Result<Report, VerifyError> {
            verify(self.dir.path(), &chain(), &test_key())
        }

        fn record_fault(&self) -> RecordFault {
            match self.verify() {
                Err(VerifyError::Record(fault)) => fault,
                other => panic!("expected a record fault, got {other:?}"),
            }
        }

        fn checkpoint_fault(&self) -> CheckpointFault {
            match self.verify() {
                Err(VerifyError::Checkpoint(fault)) => fault,
                other => panic!("expected a checkpoint fault, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_untouched_trail_verifies() {
        let trail = Trail::new(10, 4);
        let report = trail.verify().expect("verify");
        assert_eq!(
            (report.records, report.checkpoints, report.checkpointed),
            (10, 3, 10)
        );
        assert!(report.head.as_ref().is_some_and(|h| h.len() == 64));
        assert!(report.quarantined.is_empty());
        assert_eq!(
            report.to_string(),
            "chain node-a: 10 records in 1 segment(s) verified; 3 checkpoint(s), the last covering 10 records"
        );
    }

    #[test]
    fn a_flipped_byte_in_a_record_is_named() {
        let trail = Trail::new(6, 0);
        let path = trail.segment(1);
        Trail::edit(&path, |l| l[3] = l[3].replace("\"wrong\"", "\"wrpng\""));
        let fault = trail.record_fault();
        assert_eq!(
            (fault.file, fault.line, fault.seq, fault.problem),
            (path, 4, Some(4), RecordProblem::BadMac)
        );
    }

    #[test]
    fn a_flipped_byte_in_prev_mac_or_syntax_is_named() {
        for (what, edit) in [
            (
                "prev",
                Box::new(|l: &mut String| {
                    let at = l.find("\"prev\":\"").expect("prev") + 8;
                    let flipped = if &l[at..=at] == "0" { "1" } else { "0" };
                    l.replace_range(at..=at, flipped);
                }) as Box<dyn Fn(&mut String)>,
            ),
            (
                "mac",
                Box::new(|l: &mut String| {
                    let at = l.len() - 3;
                    let flipped = if &l[at..=at] == "0" { "1" } else { "0" };
                    l.replace_range(at..=at, flipped);
                }),
            ),
            (
                "syntax",
                Box::new(|l: &mut String| l.replace_range(0..1, "[")),
            ),
            (
                "high bit",
                Box::new(|l: &mut String| *l = l.replace("wrong", "wr\u{f6}ng")),
            ),
        ] {
            let trail = Trail::new(4, 0);
            Trail::edit(&trail.segment(1), |l| edit(&mut l[1]));
            let fault = trail.record_fault();
            assert_eq!(fault.line, 2, "{what}");
            match what {
                "prev" | "mac" => assert_eq!(fault.problem, RecordProblem::BadMac, "{what}"),
                "syntax" => assert!(matches!(fault.problem, RecordProblem::Malformed { .. })),
                _ => assert!(
                    matches!(fault.problem, RecordProblem::NotAscii { .. }),
                    "{what}"
                ),
            }
        }
    }

    #[test]
    fn a_deleted_record_is_named() {
        let trail = Trail::new(6, 0);
        Trail::edit(&trail.segment(1), |l| {
            l.remove(2);
        });
        let fault = trail.record_fault();
        assert_eq!(
            (fault.line, fault.seq, fault.problem),
            (
                3,
                Some(4),
                RecordProblem::SeqMismatch {
                    expected: 3,
                    found: 4
                }
            )
        );
    }

    #[test]
    fn a_record_written_twice_under_one_id_is_named_with_both_seqs() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A sink that remembers no ids writes a retried record again.
        let forgetful = SinkConfig {
            recent_ids: 0,
            ..config(dir.path())
        };
        let (mut sink, _) = crate::sink::tests::open(forgetful);
        let once = sample(1).with_id(crate::RecordId::from_bytes([7; 16]));
        for record in [&once, &sample(2), &once] {
            let _ = sink.append(record).expect("append");
        }
        sink.close(sample(9).time).expect("close");
        match verify(dir.path(), &chain(), &test_key()) {
            Err(VerifyError::Record(fault)) => {
                assert_eq!(
                    (fault.line, fault.seq, fault.problem.clone()),
                    (3, Some(3), RecordProblem::DuplicateId { first_seq: 1 })
                );
                let shown = VerifyError::Record(fault).to_string();
                assert!(
                    shown.contains("(seq 3)") && shown.contains("already used by seq 1"),
                    "{shown}"
                );
            }
            other => panic!("expected the duplicate to be named, got {other:?}"),
        }
    }

    #[test]
    fn swapped_records_are_named() {
        let trail = Trail::new(6, 0);
        Trail::edit(&trail.segment(1), |l| l.swap(1, 2));
        let fault = trail.record_fault();
        assert_eq!(
            (fault.line, fault.seq, fault.problem),
            (
                2,
                Some(3),
                RecordProblem::SeqMismatch {
                    expected: 2,
                    found: 3
                }
            )
        );
    }

    #[test]
    fn an_inserted_forged_record_is_named() {
        let trail = Trail::new(6, 0);
        let forger = crate::AuditKey::new(&[1u8; 32]).expect("key");
        let lines = Trail::lines(&trail.segment(1));
        let prev = serde_json::from_str::<serde_json::Value>(&lines[1]).expect("json")["prev"]
            .as_str()
            .expect("prev")
            .to_owned();
        let forged =
            String::from_utf8(seal(&forger, 3, &sample(3), &prev).expect("seal")).expect("utf8");
        Trail::edit(&trail.segment(1), |l| l.insert(2, forged));
        let fault = trail.record_fault();
        assert_eq!(
            (fault.line, fault.seq, fault.problem),
            (3, Some(3), RecordProblem::BadMac)
        );
    }

    #[test]
    fn a_replayed_copy_of_a_genuine_record_is_named() {
        let trail = Trail::new(6, 0);
        Trail::edit(&trail.segment(1), |l| {
            let copy = l[1].clone();
            l.insert(2, copy);
        });
        let fault = trail.record_fault();
        assert_eq!(
            (fault.line, fault.problem),
            (
                3,
                RecordProblem::SeqMismatch {
                    expected: 3,
                    found: 2
                }
            )
        );
    }

    #[test]
    fn truncation_after_a_checkpoint_is_named() {
        let trail = Trail::new(10, 4);
        let path = trail.segment(1);
        Trail::edit(&path, |l| l.truncate(6));
        let fault = trail.checkpoint_fault();
        assert_eq!(fault.file, trail.checkpoints());
        // Checkpoints say 4, 8, 10: the first one past the end names the loss.
        assert_eq!(fault.line, 2);
        assert_eq!(fault.count, Some(8));
        assert_eq!(
            fault.problem,
            CheckpointProblem::RecordsMissing {
                last_seq: 6,
                last_at: Some((path.clone(), 6))
            }
        );
        let shown = VerifyError::Checkpoint(fault).to_string();
        assert!(shown.contains("first missing is seq 7"), "{shown}");
        assert!(
            shown.contains(&format!("after {}:6", path.display())),
            "{shown}"
        );
    }

    #[test]
    fn truncation_past_the_last_checkpoint_is_the_known_blind_spot() {
        // Checkpoint at 4 (and 8), no close: cutting records 9 and 10 contradicts nothing on
        // this box. The report says how many records are not yet covered.
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut sink, _) = crate::sink::tests::open(SinkConfig {
                checkpoint_every: 4,
                ..config(dir.path())
            });
            for i in 1..=10 {
                let _ = sink.append(&sample(i)).expect("append");
            }
        }
        let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
        assert_eq!((report.records, report.checkpointed), (10, 8));
        assert!(
            report
                .to_string()
                .contains("2 record(s) after it not yet protected")
        );
    }

    #[test]
    fn a_tampered_checkpoint_signature_is_named() {
        let trail = Trail::new(8, 4);
        Trail::edit(&trail.checkpoints(), |l| {
            let at = l[0].len() - 3;
            let flipped = if &l[0][at..=at] == "0" { "1" } else { "0" };
            l[0].replace_range(at..=at, flipped);
        });
        let fault = trail.checkpoint_fault();
        assert_eq!(
            (fault.line, fault.count, fault.problem),
            (1, Some(4), CheckpointProblem::BadSignature)
        );
    }

    #[test]
    fn a_checkpoint_with_a_raised_count_is_named() {
        let trail = Trail::new(8, 4);
        Trail::edit(&trail.checkpoints(), |l| {
            l[0] = l[0].replace("\"count\":4", "\"count\":5")
        });
        let fault = trail.checkpoint_fault();
        assert_eq!(
            (fault.line, fault.problem),
            (1, CheckpointProblem::BadSignature)
        );
    }

    #[test]
    fn a_torn_final_line_is_named() {
        let trail = Trail::new(5, 0);
        let path = trail.segment(1);
        let text = fs::read_to_string(&path).expect("read");
        fs::write(&path, &text[..text.len() - 40]).expect("write");
        let fault = trail.record_fault();
        assert_eq!(
            (fault.line, fault.seq, fault.problem),
            (5, None, RecordProblem::TornLine)
        );
    }

    #[test]
    fn a_torn_checkpoint_line_is_named() {
        let trail = Trail::new(5, 0);
        let path = trail.checkpoints();
        let text = fs::read_to_string(&path).expect("read");
        fs::write(&path, &text[..text.len() - 1]).expect("write");
        assert_eq!(
            trail.checkpoint_fault().problem,
            CheckpointProblem::TornLine
        );
    }

    #[test]
    fn a_rewrite_by_a_key_holder_contradicts_the_checkpoint() {
        // With the key, records 1..=4 are re-sealed with other content: the chain is valid
        // again, but the checkpoint made before still names the old head.
        let trail = Trail::new(4, 4);
        let key = test_key();
        let mut prev = hex(&key.genesis(&chain()));
        let mut rewritten = Vec::new();
        for i in 1..=4 {
            let line = seal(&key, i, &sample(i).with_reason("right"), &prev).expect("seal");
            prev = hex(&key.link(&line));
            rewritten.push(String::from_utf8(line).expect("utf8"));
        }
        Trail::edit(&trail.segment(1), |l| *l = rewritten);
        let fault = trail.checkpoint_fault();
        assert_eq!(
            (fault.line, fault.problem),
            (
                1,
                CheckpointProblem::HeadMismatch {
                    record_file: trail.segment(1),
                    record_line: 4
                }
            )
        );
    }

    #[test]
    fn a_checkpoint_naming_the_wrong_file_or_chain_or_going_back_is_named() {
        let trail = Trail::new(4, 2);
        let lines = Trail::lines(&trail.checkpoints());
        let cp_of = |line: &str| open_checkpoint(line.as_bytes(), &test_key()).expect("cp");
        let key = test_key();
        let resign = |cp: Checkpoint| {
            String::from_utf8(seal_checkpoint(&key, &cp).expect("seal")).expect("utf8")
        };

        let mut wrong_file = cp_of(&lines[0]);
        wrong_file.file = "node-a.000009.jsonl".to_owned();
        Trail::edit(&trail.checkpoints(), |l| l[0] = resign(wrong_file));
        assert!(matches!(
            trail.checkpoint_fault().problem,
            CheckpointProblem::WrongFile { record_line: 2, .. }
        ));

        let mut wrong_chain = cp_of(&lines[0]);
        wrong_chain.chain = "node-b".to_owned();
        Trail::edit(&trail.checkpoints(), |l| l[0] = resign(wrong_chain));
        assert_eq!(
            trail.checkpoint_fault().problem,
            CheckpointProblem::WrongChain {
                found: "node-b".to_owned()
            }
        );

        Trail::edit(&trail.checkpoints(), |l| {
            l[0] = lines[1].clone();
            l[1] = lines[0].clone();
        });
        let fault = trail.checkpoint_fault();
        assert_eq!(
            (fault.line, fault.problem),
            (2, CheckpointProblem::CountWentBack { previous: 4 })
        );
    }

    #[test]
    fn another_key_or_chain_fails_at_the_first_record() {
        let trail = Trail::new(3, 0);
        let other = crate::AuditKey::new(&[2u8; 32]).expect("key");
        match verify(trail.dir.path(), &chain(), &other) {
            Err(VerifyError::Record(f)) => {
                assert_eq!((f.line, f.problem), (1, RecordProblem::BadMac))
            }
            other => panic!("{other:?}"),
        }
        let renamed = ChainId::new("node-b").expect("id");
        let paths = [trail.segment(1)];
        match verify_paths(&renamed, &paths, None, &test_key()) {
            Err(VerifyError::Record(f)) => {
                assert_eq!((f.line, f.problem), (1, RecordProblem::PrevMismatch))
            }
            other => panic!("{other:?}"),
        }
    }

    fn rotated_trail() -> Trail {
        let dir = tempfile::tempdir().expect("tempdir");
        let rotation = Rotation {
            max_bytes: Some(1500),
            daily: false,
        };
        write_trail(
            SinkConfig {
                rotation,
                checkpoint_every: 0,
                ..config(dir.path())
            },
            9,
        );
        let trail = Trail { dir };
        assert!(trail.segment(3).exists(), "expected at least 3 segments");
        trail
    }

    #[test]
    fn missing_or_reordered_segments_are_named() {
        let trail = rotated_trail();
        trail.verify().expect("intact");

        let middle = trail.segment(2);
        let saved = fs::read(&middle).expect("read");
        fs::remove_file(&middle).expect("remove");
        assert!(matches!(
            trail.verify(),
            Err(VerifyError::MissingSegment { index: 2, .. })
        ));

        // Segment 2's content put in segment 3's place and the other way round.
        let third = fs::read(trail.segment(3)).expect("read");
        fs::write(&middle, &third).expect("write");
        fs::write(trail.segment(3), &saved).expect("write");
        let fault = trail.record_fault();
        assert_eq!(fault.file, middle);
        assert_eq!(fault.line, 1);
        assert!(matches!(fault.problem, RecordProblem::SeqMismatch { .. }));
    }

    #[test]
    fn a_deleted_last_segment_contradicts_the_closing_checkpoint() {
        let trail = rotated_trail();
        let mut last = 1;
        while trail.segment(last + 1).exists() {
            last += 1;
        }
        fs::remove_file(trail.segment(last)).expect("remove");
        assert!(matches!(
            trail.checkpoint_fault().problem,
            CheckpointProblem::RecordsMissing { .. }
        ));
    }

    #[test]
    fn a_removed_checkpoint_file_is_named() {
        let trail = Trail::new(3, 0);
        fs::remove_file(trail.checkpoints()).expect("remove");
        assert!(matches!(
            trail.verify(),
            Err(VerifyError::MissingCheckpoints { .. })
        ));
        // An empty one (writer killed before its first checkpoint) is fine.
        fs::write(trail.checkpoints(), b"").expect("write");
        assert_eq!(trail.verify().expect("verify").checkpointed, 0);
    }

    #[test]
    fn no_segments_is_an_error_not_an_empty_success() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = verify(dir.path(), &chain(), &test_key()).expect_err("empty");
        assert!(matches!(err, VerifyError::NoSegments { .. }));
        assert!(
            err.to_string().contains("no segment of chain \"node-a\""),
            "{err}"
        );
    }

    #[test]
    fn errors_name_file_line_and_seq() {
        let trail = Trail::new(3, 0);
        Trail::edit(&trail.segment(1), |l| l.swap(0, 1));
        let shown = trail.verify().expect_err("swapped").to_string();
        assert_eq!(
            shown,
            format!(
                "bad record at {}:1 (seq 2): expected seq 1 but found seq 2 \
                 (records deleted, swapped, duplicated or inserted)",
                trail.segment(1).display()
            )
        );
    }
}
