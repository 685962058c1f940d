//! Verification of a whole chain and its checkpoints.
//!
//! Records are read in chain order, each line checked in this order: complete (ends with a
//! newline), printable ASCII, well-formed and canonical, `mac` valid under the key, `seq` the
//! next number, `prev` equal to the link of the line before (the genesis value for seq 1).
//! Each checkpoint must be signed under the key, name this chain, never count backwards,
//! and match the record at its count: same file, and that record's link equal to its head.
//! A checkpoint whose count is past the last record means the trail was truncated.
//!
//! The first problem in chain order is returned, naming file, line and seq. Record problems
//! come before checkpoint problems, except that a checkpoint disagreeing with a record is
//! reported when that record is reached. The reader streams: memory does not grow with the
//! trail (checkpoints are held in memory, a few per thousand records).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::checkpoint::{Checkpoint, open_checkpoint};
use crate::error::{CheckpointFault, CheckpointProblem, RecordFault, RecordProblem, VerifyError};
use crate::files::{
    LineEnd, LineReader, checkpoint_name, first_gap, list_quarantined, list_segments,
};
use crate::key::{AuditKey, ChainId, TAG_LEN, hex, tag_matches};
use crate::record::open_line;

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The chain verified.
    pub chain: ChainId,
    /// The segment files, in chain order.
    pub segments: Vec<PathBuf>,
    /// Number of records (also the last seq).
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
        let uncovered = self.records.saturating_sub(self.checkpointed);
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

/// Verifies chain `chain` in `dir`: segments `<chain>.000001.jsonl` onwards (numbered
/// without a gap from 1) and `<chain>.checkpoints.jsonl`, which must exist (it may be
/// empty if the writer died before its first checkpoint).
///
/// # Errors
/// The first problem found, as a [`VerifyError`] naming file, line and seq.
pub fn verify(dir: &Path, chain: &ChainId, key: &AuditKey) -> Result<Report, VerifyError> {
    let io = |source| VerifyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let segments = list_segments(dir, chain).map_err(io)?;
    if segments.is_empty() {
        return Err(VerifyError::NoSegments {
            dir: dir.to_path_buf(),
            chain: chain.as_str().to_owned(),
        });
    }
    if let Some(index) = first_gap(&segments, 1) {
        return Err(VerifyError::MissingSegment {
            dir: dir.to_path_buf(),
            index,
        });
    }
    let checkpoints = dir.join(checkpoint_name(chain));
    if !checkpoints.exists() {
        return Err(VerifyError::MissingCheckpoints { path: checkpoints });
    }
    let paths: Vec<PathBuf> = segments.into_iter().map(|(_, path)| path).collect();
    let mut report = verify_paths(chain, &paths, Some(&checkpoints), key)?;
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
    let (cps, cp_fault) = match checkpoints {
        Some(path) => read_checkpoints(path, chain, key)?,
        None => (Vec::new(), None),
    };
    let mut by_count: BTreeMap<u64, Vec<&(u64, Checkpoint)>> = BTreeMap::new();
    for entry in &cps {
        by_count.entry(entry.1.count).or_default().push(entry);
    }
    let cp_file = checkpoints.map(Path::to_path_buf).unwrap_or_default();
    let cp_fault_at = |line: u64, count: u64, problem| {
        VerifyError::Checkpoint(CheckpointFault {
            file: cp_file.clone(),
            line,
            count: Some(count),
            problem,
        })
    };

    let mut expected_seq: u64 = 1;
    let mut prev: [u8; TAG_LEN] = key.genesis(chain);
    let mut last_at: Option<(PathBuf, u64)> = None;
    let mut span: Option<(OffsetDateTime, OffsetDateTime)> = None;
    let mut buf = Vec::with_capacity(1024);
    for path in segments {
        let io = |source| VerifyError::Io {
            path: path.clone(),
            source,
        };
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let mut reader = LineReader::open(path).map_err(io)?;
        while let Some(end) = reader.next_line(&mut buf).map_err(io)? {
            let fault = |seq, problem| {
                VerifyError::Record(RecordFault {
                    file: path.clone(),
                    line: reader.line_no,
                    seq,
                    problem,
                })
            };
            match end {
                LineEnd::Complete => {}
                LineEnd::Torn => return Err(fault(None, RecordProblem::TornLine)),
                LineEnd::TooLong => return Err(fault(None, RecordProblem::TooLong)),
            }
            let stored =
                open_line(&buf, Some(key)).map_err(|(problem, seq)| fault(seq, problem))?;
            let seq = Some(stored.seq);
            if stored.seq != expected_seq {
                return Err(fault(
                    seq,
                    RecordProblem::SeqMismatch {
                        expected: expected_seq,
                        found: stored.seq,
                    },
                ));
            }
            if !tag_matches(&stored.prev, &prev) {
                return Err(fault(seq, RecordProblem::PrevMismatch));
            }
            let link = key.link(&buf);
            for (cp_line, cp) in by_count.get(&stored.seq).into_iter().flatten() {
                let at = (path.clone(), reader.line_no);
                if cp.file != file_name {
                    return Err(cp_fault_at(
                        *cp_line,
                        cp.count,
                        CheckpointProblem::WrongFile {
                            record_file: at.0,
                            record_line: at.1,
                        },
                    ));
                }
                if !tag_matches(&cp.head, &link) {
                    return Err(cp_fault_at(
                        *cp_line,
                        cp.count,
                        CheckpointProblem::HeadMismatch {
                            record_file: at.0,
                            record_line: at.1,
                        },
                    ));
                }
            }
            let time = stored.record.time;
            span = Some(span.map_or((time, time), |(first, _)| (first, time)));
            prev = link;
            last_at = Some((path.clone(), reader.line_no));
            expected_seq = expected_seq.saturating_add(1);
        }
    }
    let last_seq = expected_seq - 1;

    if let Some(fault) = cp_fault {
        return Err(VerifyError::Checkpoint(fault));
    }
    if let Some((cp_line, cp)) = cps.iter().find(|(_, cp)| cp.count > last_seq) {
        return Err(cp_fault_at(
            *cp_line,
            cp.count,
            CheckpointProblem::RecordsMissing { last_seq, last_at },
        ));
    }
    Ok(Report {
        chain: chain.clone(),
        segments: segments.to_vec(),
        records: last_seq,
        checkpoints: cps.len() as u64,
        checkpointed: cps.last().map_or(0, |(_, cp)| cp.count),
        head: (last_seq > 0).then(|| hex(&prev)),
        span,
        quarantined: Vec::new(),
    })
}

/// Reads the checkpoint file: the good checkpoints up to the first bad one, and that fault.
type Checkpoints = (Vec<(u64, Checkpoint)>, Option<CheckpointFault>);

fn read_checkpoints(
    path: &Path,
    chain: &ChainId,
    key: &AuditKey,
) -> Result<Checkpoints, VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = LineReader::open(path).map_err(io)?;
    let mut buf = Vec::with_capacity(512);
    let mut good: Vec<(u64, Checkpoint)> = Vec::new();
    while let Some(end) = reader.next_line(&mut buf).map_err(io)? {
        let fault = |count, problem| CheckpointFault {
            file: path.to_path_buf(),
            line: reader.line_no,
            count,
            problem,
        };
        let checked = match end {
            LineEnd::Complete => open_checkpoint(&buf, key),
            LineEnd::Torn => Err((CheckpointProblem::TornLine, None)),
            LineEnd::TooLong => Err((CheckpointProblem::TooLong, None)),
        };
        let cp = match checked {
            Ok(cp) => cp,
            Err((problem, count)) => return Ok((good, Some(fault(count, problem)))),
        };
        if cp.chain != chain.as_str() {
            let problem = CheckpointProblem::WrongChain { found: cp.chain };
            return Ok((good, Some(fault(Some(cp.count), problem))));
        }
        if let Some((_, before)) = good.last()
            && cp.count < before.count
        {
            let problem = CheckpointProblem::CountWentBack {
                previous: before.count,
            };
            return Ok((good, Some(fault(Some(cp.count), problem))));
        }
        good.push((reader.line_no, cp));
    }
    Ok((good, None))
}

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
