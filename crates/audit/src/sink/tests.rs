use super::*;
use crate::key::tests::test_key;
use crate::record::tests::sample;
use crate::{ChainId, SinkError, verify};
use time::macros::datetime;

pub(crate) fn chain() -> ChainId {
    ChainId::new("node-a").expect("chain id")
}

pub(crate) fn config(dir: &Path) -> SinkConfig {
    SinkConfig {
        rotation: Rotation {
            max_bytes: None,
            daily: false,
        },
        ..SinkConfig::new(dir, chain())
    }
}

pub(crate) fn open(config: SinkConfig) -> (FileSink, OpenReport) {
    FileSink::open(config, test_key()).expect("open sink")
}

/// Writes `n` records (times 1 s apart) and closes the sink.
pub(crate) fn write_trail(config: SinkConfig, n: u64) {
    let (mut sink, _) = open(config);
    for i in 1..=n {
        let _ = sink.append(&sample(i)).expect("append");
    }
    sink.close(sample(n + 1).time).expect("close");
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn cp_counts(dir: &Path) -> Vec<u64> {
    lines(&dir.join("node-a.checkpoints.jsonl"))
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["count"].as_u64().expect("count")
        })
        .collect()
}

#[test]
fn every_record_acks_are_durable_and_the_trail_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, report) = open(config(dir.path()));
    assert!(report.new_chain);
    assert_eq!(report.last_seq, 0);
    assert!(report.torn.is_empty());
    for i in 1..=5 {
        let ack = sink.append(&sample(i)).expect("append");
        assert_eq!(
            ack,
            Ack {
                seq: i,
                durable_through: i,
                duplicate: false,
            }
        );
        assert!(ack.is_durable());
    }
    assert_eq!(sink.close(sample(9).time).expect("close"), 5);
    let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
    assert_eq!(
        (report.records, report.checkpoints, report.checkpointed),
        (5, 1, 5)
    );
    assert_eq!(report.segments.len(), 1);
    assert_eq!(report.span, Some((sample(1).time, sample(5).time)));
    let text = fs::read_to_string(dir.path().join("node-a.000001.jsonl")).expect("read");
    assert_eq!(text.matches('\n').count(), 5);
    assert!(text.ends_with('\n'));
}

#[test]
fn batch_acks_say_what_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fsync = FsyncPolicy::Batch {
        max_records: 4,
        max_interval: Duration::from_secs(60),
    };
    let (mut sink, _) = open(SinkConfig {
        fsync,
        ..config(dir.path())
    });
    let durable: Vec<u64> = (1..=6)
        .map(|i| sink.append(&sample(i)).expect("append").durable_through)
        .collect();
    assert_eq!(durable, [0, 0, 0, 4, 4, 4]);
    assert_eq!(sink.durable_through(), 4);
    assert_eq!(sink.sync().expect("sync"), 6);
    assert!(sink.append(&sample(7)).expect("append").durable_through == 6);
}

#[test]
fn batch_interval_follows_the_callers_times_and_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fsync = FsyncPolicy::Batch {
        max_records: 100,
        max_interval: Duration::from_secs(5),
    };
    let (mut sink, _) = open(SinkConfig {
        fsync,
        ..config(dir.path())
    });
    let t0 = datetime!(2025-03-01 09:00:00 UTC);
    let at = |s: i64| {
        let mut r = sample(1);
        r.time = t0 + time::Duration::seconds(s);
        r
    };
    assert_eq!(sink.append(&at(0)).expect("append").durable_through, 0);
    assert_eq!(sink.append(&at(4)).expect("append").durable_through, 0);
    assert_eq!(sink.append(&at(5)).expect("append").durable_through, 3);
    assert_eq!(sink.append(&at(7)).expect("append").durable_through, 3);
    assert_eq!(
        sink.tick(t0 + time::Duration::seconds(11)).expect("tick"),
        3
    );
    assert_eq!(
        sink.tick(t0 + time::Duration::seconds(12)).expect("tick"),
        4
    );
    // A clock that went backwards never counts as elapsed time.
    assert_eq!(sink.append(&at(-100)).expect("append").durable_through, 4);
}

#[test]
fn checkpoints_come_every_n_records_and_on_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trail(
        SinkConfig {
            checkpoint_every: 3,
            ..config(dir.path())
        },
        7,
    );
    assert_eq!(cp_counts(dir.path()), [3, 6, 7]);
    let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
    assert_eq!((report.checkpoints, report.checkpointed), (3, 7));
}

#[test]
fn reopening_resumes_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut sink, _) = open(config(dir.path()));
        for i in 1..=3 {
            let _ = sink.append(&sample(i)).expect("append");
        }
        // Dropped without close, as after a kill.
    }
    let (mut sink, report) = open(config(dir.path()));
    assert!(!report.new_chain);
    assert_eq!(report.last_seq, 3);
    assert!(report.torn.is_empty());
    assert_eq!(sink.append(&sample(4)).expect("append").seq, 4);
    sink.close(sample(5).time).expect("close");
    let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
    assert_eq!(report.records, 4);
}

#[test]
fn a_torn_tail_is_set_aside_reported_and_never_chained_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trail(config(dir.path()), 3);
    let segment = dir.path().join("node-a.000001.jsonl");
    let clean_len = fs::metadata(&segment).expect("stat").len();
    let torn = seal(&test_key(), 4, &sample(4), "x").expect("seal");
    let mut file = OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open");
    file.write_all(&torn[..100]).expect("write");
    drop(file);

    let err = verify(dir.path(), &chain(), &test_key()).expect_err("torn");
    assert!(
        matches!(&err, crate::VerifyError::Record(f) if f.line == 4 && f.problem == crate::RecordProblem::TornLine),
        "{err}"
    );

    let (mut sink, report) = open(config(dir.path()));
    assert_eq!(report.last_seq, 3);
    assert_eq!(report.torn.len(), 1);
    let t = &report.torn[0];
    assert_eq!(
        (t.file.as_path(), t.offset, t.len),
        (segment.as_path(), clean_len, 100)
    );
    assert_eq!(fs::metadata(&segment).expect("stat").len(), clean_len);
    let saved = fs::read_to_string(&t.saved_to).expect("saved");
    assert!(
        saved.contains(&format!("\"offset\":{clean_len},\"len\":100,")),
        "{saved}"
    );

    assert_eq!(sink.append(&sample(4)).expect("append").seq, 4);
    sink.close(sample(5).time).expect("close");
    let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
    assert_eq!(report.records, 4);
    assert_eq!(report.quarantined, std::slice::from_ref(&t.saved_to));
}

#[test]
fn a_torn_checkpoint_line_is_set_aside_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trail(config(dir.path()), 2);
    let cp_path = dir.path().join("node-a.checkpoints.jsonl");
    let mut file = OpenOptions::new()
        .append(true)
        .open(&cp_path)
        .expect("open");
    file.write_all(b"{\"chain\":\"node-a\",\"cou")
        .expect("write");
    drop(file);
    let (sink, report) = open(config(dir.path()));
    assert_eq!(report.torn.len(), 1);
    assert_eq!(report.torn[0].file, cp_path);
    drop(sink);
    verify(dir.path(), &chain(), &test_key()).expect("verify");
}

#[test]
fn a_damaged_last_record_or_another_key_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trail(config(dir.path()), 3);
    let other = AuditKey::new(&[9u8; 32]).expect("key");
    let err = FileSink::open(config(dir.path()), other).expect_err("wrong key");
    assert!(matches!(err, SinkError::Corrupt { .. }), "{err}");

    let segment = dir.path().join("node-a.000001.jsonl");
    let text = fs::read_to_string(&segment).expect("read");
    let last_start = text[..text.len() - 1].rfind('\n').expect("newline") + 1;
    fs::write(
        &segment,
        format!(
            "{}{}",
            &text[..last_start],
            text[last_start..].replace("wrong", "right")
        ),
    )
    .expect("write");
    let err = FileSink::open(config(dir.path()), test_key()).expect_err("damaged");
    match err {
        SinkError::Corrupt { offset, .. } => assert_eq!(offset, last_start as u64),
        other => panic!("{other}"),
    }
}

#[test]
fn records_lost_behind_a_checkpoint_refuse_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trail(config(dir.path()), 3);
    let segment = dir.path().join("node-a.000001.jsonl");
    let kept: String = lines(&segment)[..2]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&segment, kept).expect("write");
    let err = FileSink::open(config(dir.path()), test_key()).expect_err("ahead");
    assert!(
        matches!(
            err,
            SinkError::CheckpointAhead {
                checkpoint: 3,
                last_seq: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn rotation_by_size_continues_the_chain_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line_len = seal(&test_key(), 1, &sample(1), &"0".repeat(64))
        .expect("seal")
        .len() as u64
        + 1;
    let rotation = Rotation {
        max_bytes: Some(line_len * 3 + 10),
        daily: false,
    };
    write_trail(
        SinkConfig {
            rotation,
            ..config(dir.path())
        },
        8,
    );
    let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
    assert_eq!(report.records, 8);
    assert_eq!(report.segments.len(), 3);
    assert_eq!(lines(&report.segments[0]).len(), 3);
    assert_eq!(lines(&report.segments[2]).len(), 2);
    // Rotation closes each segment with a checkpoint naming it.
    assert_eq!(cp_counts(dir.path()), [3, 6, 8]);

    // Reopening appends to the newest segment and keeps rotating.
    let (mut sink, report) = open(SinkConfig {
        rotation,
        ..config(dir.path())
    });
    assert_eq!(report.segment, dir.path().join("node-a.000003.jsonl"));
    for i in 9..=10 {
        let _ = sink.append(&sample(i)).expect("append");
    }
    assert_eq!(sink.segment_path(), dir.path().join("node-a.000004.jsonl"));
    sink.close(sample(11).time).expect("close");
    assert_eq!(
        verify(dir.path(), &chain(), &test_key())
            .expect("verify")
            .records,
        10
    );
}

#[test]
fn rotation_by_day_uses_the_record_dates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rotation = Rotation {
        max_bytes: None,
        daily: true,
    };
    let (mut sink, _) = open(SinkConfig {
        rotation,
        ..config(dir.path())
    });
    let on = |t: OffsetDateTime| {
        let mut r = sample(1);
        r.time = t;
        r
    };
    let day1 = datetime!(2025-03-01 23:59:59 UTC);
    let day2 = datetime!(2025-03-02 00:00:00 UTC);
    for t in [
        day1,
        day2,
        day1,
        datetime!(2025-03-02 01:30:00 +02:00),
        day2,
    ] {
        let _ = sink.append(&on(t)).expect("append");
    }
    // Back to day 1 (a clock step back) stays in the day-2 segment; 01:30+02:00 is
    // 2025-03-01 23:30 UTC, so UTC is what counts.
    assert_eq!(sink.segment_path(), dir.path().join("node-a.000002.jsonl"));
    sink.close(day2).expect("close");
    let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
    assert_eq!((report.records, report.segments.len()), (5, 2));
}

#[test]
fn an_empty_newest_segment_is_used_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trail(config(dir.path()), 2);
    fs::write(dir.path().join("node-a.000002.jsonl"), b"").expect("create");
    let (mut sink, report) = open(config(dir.path()));
    assert_eq!(report.last_seq, 2);
    assert_eq!(sink.append(&sample(3)).expect("append").seq, 3);
    sink.close(sample(4).time).expect("close");
    let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
    assert_eq!((report.records, report.segments.len()), (3, 2));
}

#[test]
fn a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = open(config(dir.path()));
    let err = FileSink::open(config(dir.path()), test_key()).expect_err("locked");
    assert!(matches!(err, SinkError::Locked { .. }), "{err}");
    drop(first);
    let _reopened = open(config(dir.path()));
}

#[test]
fn refused_records_write_nothing_and_take_no_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, _) = open(config(dir.path()));
    let huge = sample(1).with_detail("blob", "x".repeat(MAX_LINE_LEN));
    assert!(matches!(
        sink.append(&huge),
        Err(SinkError::RecordTooLarge { .. })
    ));
    let mut ancient = sample(1);
    ancient.time = datetime!(-0001-01-01 00:00:00 UTC);
    assert!(matches!(
        sink.append(&ancient),
        Err(SinkError::Encode { .. })
    ));
    assert_eq!(sink.append(&sample(1)).expect("append").seq, 1);
    sink.close(sample(2).time).expect("close");
    assert_eq!(
        verify(dir.path(), &chain(), &test_key())
            .expect("verify")
            .records,
        1
    );
}

#[test]
fn impossible_configurations_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fsync = FsyncPolicy::Batch {
        max_records: 0,
        max_interval: Duration::ZERO,
    };
    let err = FileSink::open(
        SinkConfig {
            fsync,
            ..config(dir.path())
        },
        test_key(),
    )
    .expect_err("config");
    assert!(matches!(err, SinkError::Config { .. }), "{err}");
    let rotation = Rotation {
        max_bytes: Some(0),
        daily: false,
    };
    let err = FileSink::open(
        SinkConfig {
            rotation,
            ..config(dir.path())
        },
        test_key(),
    )
    .expect_err("config");
    assert!(matches!(err, SinkError::Config { .. }), "{err}");
}

#[test]
fn a_gap_in_segment_numbers_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trail(config(dir.path()), 1);
    fs::write(dir.path().join("node-a.000003.jsonl"), b"").expect("create");
    let err = FileSink::open(config(dir.path()), test_key()).expect_err("gap");
    assert!(
        matches!(err, SinkError::MissingSegment { index: 2, .. }),
        "{err}"
    );
}

/// Records on days 1..=4 (three per day), daily rotation: one segment per day.
fn daily_trail(dir: &Path) -> SinkConfig {
    let cfg = SinkConfig {
        rotation: Rotation {
            max_bytes: None,
            daily: true,
        },
        ..config(dir)
    };
    let (mut sink, _) = open(cfg.clone());
    for day in 1..=4i64 {
        for i in 0..3i64 {
            let mut r = sample((day * 10 + i) as u64);
            r.time = datetime!(2025-03-01 09:00:00 UTC)
                + time::Duration::days(day - 1)
                + time::Duration::minutes(i);
            let _ = sink.append(&r).expect("append");
        }
    }
    sink.close(datetime!(2025-03-04 12:00:00 UTC))
        .expect("close");
    cfg
}

#[test]
fn a_purge_removes_old_segments_records_itself_and_the_rest_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = daily_trail(dir.path());
    let (mut sink, _) = open(cfg.clone());
    let now = datetime!(2025-03-05 00:00:00 UTC);
    // Days 1 and 2 are entirely older than the cut-off; day 3 is not.
    let report = sink
        .purge(datetime!(2025-03-03 09:01:00 UTC), now)
        .expect("purge");
    assert_eq!((report.removed, report.first_seq), (6, 7));
    assert_eq!(report.record_seq, Some(13));
    assert_eq!(
        report.files,
        [
            dir.path().join("node-a.000001.jsonl"),
            dir.path().join("node-a.000002.jsonl")
        ]
    );
    assert!(!report.files[0].exists());
    // Nothing more is old enough: a second run removes nothing and writes nothing.
    let again = sink
        .purge(datetime!(2025-03-03 09:01:00 UTC), now)
        .expect("purge");
    assert_eq!((again.removed, again.record_seq), (0, None));
    sink.close(now).expect("close");

    let report = verify(dir.path(), &chain(), &test_key()).expect("verify after purge");
    assert_eq!((report.first_seq, report.records), (7, 7));
    assert!(report.to_string().contains("starts at seq 7"), "{report}");
    // The purge record is dated `now`, a new day: it opened segment 5.
    let text = fs::read_to_string(dir.path().join("node-a.000005.jsonl")).expect("read");
    let purge = StoredRecordLine::last(&text);
    assert!(
        purge.contains(r#""event":"retention_purge""#)
            && purge.contains(r#""first_seq":"7""#)
            && purge.contains(r#""removed":"6""#)
            && purge.contains(r#""before":"2025-03-03T09:01:00Z""#),
        "{purge}"
    );
}

/// The last line of a segment's text.
struct StoredRecordLine;
impl StoredRecordLine {
    fn last(text: &str) -> String {
        text.lines().last().expect("a line").to_owned()
    }
}

#[test]
fn tampering_after_a_purge_is_still_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = daily_trail(dir.path());
    let (mut sink, _) = open(cfg);
    let now = datetime!(2025-03-05 00:00:00 UTC);
    let _ = sink
        .purge(datetime!(2025-03-03 09:01:00 UTC), now)
        .expect("purge");
    sink.close(now).expect("close");
    verify(dir.path(), &chain(), &test_key()).expect("intact");

    // A flipped byte in what remains.
    let third = dir.path().join("node-a.000003.jsonl");
    let saved = fs::read_to_string(&third).expect("read");
    fs::write(&third, saved.replacen("wrong", "wronG", 1)).expect("write");
    let err = verify(dir.path(), &chain(), &test_key()).expect_err("flipped");
    assert!(
        matches!(&err, crate::VerifyError::Record(f) if f.seq == Some(7) && f.problem == crate::RecordProblem::BadMac),
        "{err}"
    );
    fs::write(&third, &saved).expect("restore");

    // The first remaining record deleted: the start is no longer anchored.
    let rest: String = saved.lines().skip(1).map(|l| format!("{l}\n")).collect();
    fs::write(&third, rest).expect("write");
    let err = verify(dir.path(), &chain(), &test_key()).expect_err("cut");
    assert!(
        matches!(&err, crate::VerifyError::Record(f) if f.problem == crate::RecordProblem::Unanchored),
        "{err}"
    );
    fs::write(&third, &saved).expect("restore");

    // A whole further segment removed "as if purged": rotation anchors it, but the
    // purge record says the trail starts at seq 7.
    fs::remove_file(&third).expect("remove");
    let err = verify(dir.path(), &chain(), &test_key()).expect_err("removed");
    assert!(
        matches!(
            err,
            crate::VerifyError::PurgeMismatch {
                first_seq: 10,
                stated: Some(7)
            }
        ),
        "{err}"
    );
}

#[test]
fn removing_the_oldest_segment_without_a_purge_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _ = daily_trail(dir.path());
    fs::remove_file(dir.path().join("node-a.000001.jsonl")).expect("remove");
    let err = verify(dir.path(), &chain(), &test_key()).expect_err("removed");
    assert!(
        matches!(
            err,
            crate::VerifyError::PurgeMismatch {
                first_seq: 4,
                stated: None
            }
        ),
        "{err}"
    );
    // And the sink still opens and continues the chain (it is the verifier's call).
    let (sink, report) = open(SinkConfig {
        rotation: Rotation {
            max_bytes: None,
            daily: true,
        },
        ..config(dir.path())
    });
    assert_eq!(report.last_seq, 12);
    drop(sink);
}

#[test]
fn a_purge_never_removes_the_segment_being_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trail(config(dir.path()), 3);
    let (mut sink, _) = open(config(dir.path()));
    let report = sink
        .purge(
            datetime!(2030-01-01 00:00:00 UTC),
            datetime!(2030-01-01 00:00:00 UTC),
        )
        .expect("purge");
    assert_eq!((report.removed, report.first_seq), (0, 1));
    assert!(report.files.is_empty());
    drop(sink);
    assert_eq!(
        verify(dir.path(), &chain(), &test_key())
            .expect("verify")
            .records,
        3
    );
}

fn with_id(n: u64) -> Record {
    sample(n).with_id(crate::RecordId::from_bytes(u128::from(n).to_be_bytes()))
}

#[test]
fn a_retried_record_is_not_written_twice_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, _) = open(config(dir.path()));
    let first = sink.append(&with_id(1)).expect("append");
    let _ = sink.append(&with_id(2)).expect("append");
    let again = sink.append(&with_id(1)).expect("retry");
    assert_eq!((again.seq, again.duplicate), (first.seq, true));
    assert_eq!(sink.last_seq(), 2, "nothing written for the retry");
    drop(sink);
    // After a restart the ids are read back from the tail.
    let (mut sink, _) = open(config(dir.path()));
    assert!(sink.append(&with_id(2)).expect("retry").duplicate);
    let new = sink.append(&with_id(3)).expect("append");
    assert_eq!((new.seq, new.duplicate), (3, false));
    // Records without an id (older writers) are always written.
    let _ = sink.append(&sample(4)).expect("append");
    let _ = sink.append(&sample(4)).expect("append");
    assert_eq!(sink.last_seq(), 5);
    sink.close(sample(9).time).expect("close");
    let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
    assert_eq!(report.records, 5);
}

#[test]
fn only_the_recent_ids_are_remembered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = SinkConfig {
        recent_ids: 2,
        ..config(dir.path())
    };
    let (mut sink, _) = open(small.clone());
    for n in 1..=3 {
        let _ = sink.append(&with_id(n)).expect("append");
    }
    assert!(sink.append(&with_id(3)).expect("retry").duplicate);
    drop(sink);
    let (mut sink, _) = open(small);
    assert!(sink.append(&with_id(2)).expect("retry").duplicate);
    assert!(
        !sink.append(&with_id(1)).expect("append").duplicate,
        "outside the window"
    );
}

#[test]
fn intents_without_an_outcome_are_found_again_after_a_restart() {
    use crate::{EventType, INTENT_DETAIL, Outcome};
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sink, _) = open(config(dir.path()));
    let intent = |n: u64| {
        let mut r = with_id(n);
        r.event = EventType::AuthnPasswordChange;
        r.outcome = Outcome::Intent;
        r
    };
    let _ = sink.append(&intent(10)).expect("append");
    let _ = sink.append(&intent(11)).expect("append");
    let done = with_id(12).with_detail(INTENT_DETAIL, intent(10).id.expect("id").to_string());
    let _ = sink.append(&done).expect("append");
    assert_eq!(sink.open_intents(), vec![intent(11)]);
    drop(sink);
    let (sink, _) = open(config(dir.path()));
    assert_eq!(sink.open_intents(), vec![intent(11)]);
}
