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
