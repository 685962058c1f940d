//! Integration tests through the public API only: a whole call's trail, and a writer killed
//! with SIGKILL mid-burst.

use std::path::Path;

use resetline_audit::{
    AuditKey, ChainId, Destination, EventType, Factor, FileSink, FsyncPolicy, MaskedEmail,
    MaskedNumber, Outcome, Record, SinkConfig, StoredRecord, verify,
};
use time::OffsetDateTime;
use time::macros::datetime;

fn key() -> AuditKey {
    AuditKey::new(b"an audit key of thirty-two bytes!").expect("key")
}

fn chain() -> ChainId {
    ChainId::new("it").expect("chain")
}

fn at(seconds: i64) -> OffsetDateTime {
    datetime!(2025-03-01 09:00:00 UTC) + time::Duration::seconds(seconds)
}

fn read_back(dir: &Path) -> Vec<StoredRecord> {
    let text = std::fs::read_to_string(dir.join("it.000001.jsonl")).expect("read");
    text.lines()
        .map(|l| StoredRecord::parse(l).expect("parse"))
        .collect()
}

mod call_trail {
    use super::*;

    #[test]
    fn a_reset_call_leaves_one_verifiable_record_per_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sink, _) =
            FileSink::open(SinkConfig::new(dir.path(), chain()), key()).expect("open");
        let caller = MaskedNumber::mask("+1 415 555 0199").expect("mask");
        let base = |t, event, outcome| {
            Record::new(at(t), event, outcome, "CA0001", "password-reset", "3")
                .with_caller(caller.clone())
        };
        let events = [
            base(0, EventType::SessionCreated, Outcome::Info).with_node("welcome"),
            base(5, EventType::Identify, Outcome::Success)
                .with_account("E1234")
                .with_reason("found")
                .with_node("identify"),
            base(6, EventType::AuthnTokenCreated, Outcome::Success)
                .with_account("E1234")
                .with_factor(Factor::EmailCode)
                .with_destination(Destination::Email(
                    MaskedEmail::mask("jane.doe@example.com").expect("mask"),
                ))
                .with_reason("sent"),
            base(30, EventType::AuthnLoginFail, Outcome::Failure)
                .with_account("E1234")
                .with_factor(Factor::EmailCode)
                .with_reason("wrong"),
            base(40, EventType::AuthnLoginSuccess, Outcome::Success)
                .with_account("E1234")
                .with_factor(Factor::EmailCode),
            base(41, EventType::RecordingPaused, Outcome::Success).with_account("E1234"),
            base(60, EventType::AuthnPasswordChange, Outcome::Success).with_account("E1234"),
            base(61, EventType::RecordingResumed, Outcome::Info)
                .with_account("E1234")
                .with_detail("paused_ms", "20000"),
            base(62, EventType::CallEnded, Outcome::Success)
                .with_account("E1234")
                .with_reason("reset_done")
                // A caller-controlled value trying to forge a second record.
                .with_detail(
                    "caller_name",
                    "Eve\n{\"event\":\"authn_login_success\"}\u{1b}[2K",
                ),
        ];
        for (i, record) in events.iter().enumerate() {
            let ack = sink.append(record).expect("append");
            assert_eq!(ack.seq, i as u64 + 1);
            assert!(ack.is_durable());
        }
        sink.close(at(63)).expect("close");

        let report = verify(dir.path(), &chain(), &key()).expect("verify");
        assert_eq!(report.records, events.len() as u64);
        let stored = read_back(dir.path());
        assert_eq!(stored.len(), events.len());
        for (i, (got, want)) in stored.iter().zip(&events).enumerate() {
            assert_eq!(got.seq, i as u64 + 1);
            assert_eq!(&got.record, want);
        }
        let text = std::fs::read_to_string(dir.path().join("it.000001.jsonl")).expect("read");
        assert!(!text.contains("4155550199") && !text.contains("jane.doe"));
        assert!(
            text.contains("\"caller\":\"***0199\"")
                && text.contains("\"destination\":\"j***@example.com\"")
        );
    }
}

mod kill {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use super::*;

    const CHILD_ENV: &str = "RESETLINE_AUDIT_KILL_TEST_DIR";

    /// Child side: runs only when the parent test starts this binary with the env var set;
    /// appends records until killed, printing each acknowledged seq.
    #[test]
    fn child_writer() {
        let Some(dir) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let config = SinkConfig {
            fsync: FsyncPolicy::Batch {
                max_records: 64,
                max_interval: std::time::Duration::from_millis(50),
            },
            checkpoint_every: 256,
            ..SinkConfig::new(dir, chain())
        };
        let (mut sink, _) = FileSink::open(config, key()).expect("open");
        for i in 0..1_000_000 {
            let record = Record::new(
                at(i),
                EventType::AuthnLoginFail,
                Outcome::Failure,
                format!("CA{i}"),
                "f",
                "1",
            );
            let ack = sink.append(&record).expect("append");
            println!("ACK {} {}", ack.seq, ack.durable_through);
        }
    }

    #[test]
    fn every_acknowledged_record_survives_sigkill_and_the_chain_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "kill::child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut acked = 0u64;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            if let Some(rest) = line.split("ACK ").nth(1) {
                acked = rest
                    .split(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("seq");
                if acked >= 2000 {
                    break;
                }
            }
        }
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
        let _ = child.wait();
        assert!(acked >= 2000, "child stopped early at {acked}");

        // A process kill loses nothing handed to the OS: every ack, durable or not, is there.
        let (sink, report) =
            FileSink::open(SinkConfig::new(dir.path(), chain()), key()).expect("reopen");
        assert!(report.last_seq >= acked, "{} < {acked}", report.last_seq);
        drop(sink);
        let verified = verify(dir.path(), &chain(), &key()).expect("verify");
        assert!(verified.records >= acked);
    }
}
