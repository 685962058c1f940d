//! `resetline audit verify`: an intact trail passes (exit 0); a flipped byte is named with its
//! record (exit 1); a missing directory cannot run (exit 2).

use std::process::Command;

use resetline_audit::{AuditKey, ChainId, EventType, FileSink, Outcome, Record, SinkConfig};

const KEY: &str = "0123456789abcdef0123456789abcdef-audit";

fn verify(dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_resetline"))
        .args(["audit", "verify"])
        .arg(dir)
        .env("RESETLINE_AUDIT_KEY", KEY)
        .output()
        .expect("run resetline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn intact_then_tampered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = ChainId::new("resetline").expect("chain");
    let key = AuditKey::new(KEY.as_bytes()).expect("key");
    let (mut sink, _) = FileSink::open(SinkConfig::new(dir.path(), chain), key).expect("sink");
    for i in 0..5 {
        let r = Record::new(
            resetline_audit::time::OffsetDateTime::UNIX_EPOCH,
            EventType::Identify,
            Outcome::Success,
            format!("CA{i}"),
            "password-reset",
            "1",
        )
        .with_reason("found");
        let _ack = sink.append(&r).expect("append");
    }
    sink.sync().expect("sync");
    drop(sink);
    let (status, stdout, _) = verify(dir.path());
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.starts_with("ok: 5 records"), "{stdout}");

    let segment = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("000001.jsonl"))
        .expect("segment");
    let text = std::fs::read_to_string(&segment).expect("read");
    std::fs::write(&segment, text.replacen("\"CA2\"", "\"CA9\"", 1)).expect("write");
    let (status, stdout, _) = verify(dir.path());
    assert_eq!(status, 1, "{stdout}");
    assert!(
        stdout.contains("TAMPERED") && stdout.contains("jsonl:3 (seq 3)"),
        "{stdout}"
    );

    let (status, _, stderr) = verify(&dir.path().join("missing"));
    assert_eq!(status, 2, "{stderr}");
}

#[test]
fn query_tail_and_timeline_filter_the_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = ChainId::new("resetline").expect("chain");
    let key = AuditKey::new(KEY.as_bytes()).expect("key");
    let (mut sink, _) = FileSink::open(SinkConfig::new(dir.path(), chain), key).expect("sink");
    let t0 =
        resetline_audit::time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
    let events = [
        (
            "CA1",
            EventType::SessionCreated,
            Outcome::Info,
            "incoming_call",
            0,
        ),
        ("CA1", EventType::Identify, Outcome::Success, "found", 5),
        ("CA2", EventType::Identify, Outcome::Failure, "not_found", 7),
        (
            "CA1",
            EventType::AuthnLoginFail,
            Outcome::Failure,
            "wrong",
            20,
        ),
    ];
    for (call, event, outcome, reason, secs) in events {
        let r = Record::new(
            t0 + resetline_audit::time::Duration::seconds(secs),
            event,
            outcome,
            call,
            "password-reset",
            "1",
        )
        .with_reason(reason)
        .with_node("lookup");
        let r = if call == "CA1" && secs > 0 {
            r.with_account("100001")
        } else {
            r
        };
        let _ack = sink.append(&r).expect("append");
    }
    drop(sink);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_resetline"))
            .args(["audit"])
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let d = dir.path().to_str().expect("utf-8 path");
    let (status, out) = run(&["query", d, "--outcome", "failure"]);
    assert_eq!(status, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, out) = run(&[
        "query",
        d,
        "--account",
        "100001",
        "--event",
        "authn_login_fail",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(doc["reason"], "wrong");
    let (_, out) = run(&["tail", d, "-n", "1"]);
    assert!(
        out.contains("authn_login_fail") && out.lines().count() == 1,
        "{out}"
    );
    let (_, out) = run(&["query", d, "--since", "2027-01-15T08:00:06Z"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (status, out) = run(&["timeline", d, "CA1"]);
    assert_eq!(status, 0);
    assert!(out.contains("+   20.0s  authn_login_fail"), "{out}");
    let (_, out) = run(&["query", d, "--outcome", "sideways"]);
    assert!(out.is_empty());
}
