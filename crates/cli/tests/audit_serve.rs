//! The audit trail of a spawned `resetline serve`, and the `audit verify | purge` commands.
//!
//! - SIGKILL during a burst: `serve` (file audit sink) takes concurrent signed calls and is
//!   killed mid-burst. Every webhook answered 200 before the kill had its audit records
//!   appended before the answer, so each one is in the trail; after the torn last line (if
//!   any) is set aside by reopening, `resetline audit verify` passes.
//! - `serve` with `audit.kind: postgres` against a real PostgreSQL (the audit-postgres test
//!   harness), then `audit verify --postgres-url-env`, `audit purge` and tamper detection.
//! - `audit purge DIR` on files.

use resetline_testkit::webhook::Signed;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resetline_audit::{AuditKey, ChainId, EventType, FileSink, Filter, SinkConfig};

use crate::pg as support;
use crate::support as webhooks;

const TOKEN: &str = "kill-test-token";
const KEY: &str = "0123456789abcdef0123456789abcdef-kill";

use resetline_testkit::root;

use resetline_testkit::free_port;

/// Kills the server if the test fails before it does.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POSTs a signed webhook; the HTTP status and the path the answer's `<Gather>` posts to
/// (empty without one), or `None` when the server is gone.
fn post(addr: SocketAddr, path: &str, params: &[(&str, &str)]) -> Option<(u16, String)> {
    let signed = Signed::new(TOKEN, &format!("http://{addr}"), path, params);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = signed.request(addr);
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    // A status line without the whole body is not an acknowledgement.
    (text.contains("\r\n\r\n") && (status != 200 || text.ends_with("</Response>"))).then(|| {
        let next = if text.contains("action=\"") {
            webhooks::next_action(&text)
        } else {
            String::new()
        };
        (status, next)
    })
}

fn get_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// A `resetline.yaml` for `serve` on `port` with the given `audit:` value; copies the demo
/// users into `dir`.
fn config(port: u16, dir: &Path, audit: &str) -> String {
    std::fs::copy(
        root().join("examples/demo/users.yaml"),
        dir.join("users.yaml"),
    )
    .expect("users");
    format!(
        "listen: 127.0.0.1:{port}\npublic_url: http://127.0.0.1:{port}\nflows_dir: {flows}\nprompts_dir: {prompts}\n\
         carrier: {{ account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: KILL_TOKEN, api_base: \"http://127.0.0.1:9\", api_timeout_ms: 500 }}\n\
         directory: {{ kind: embedded, path: users.yaml }}\nhash_key_env: KILL_KEY\n\
         audit: {audit}\nreload: {{ enabled: false }}\n",
        flows = root().join("flows").display(),
        prompts = root().join("voice-prompts").display(),
    )
}

/// Writes the config into `dir` (with an `admin_listen` on a free port), spawns `resetline
/// serve` and waits until it is ready (`/readyz` on the admin port).
fn spawn_serve(dir: &Path, config: &str, _addr: SocketAddr, env: &[(&str, &str)]) -> Server {
    let config_path = dir.join("resetline.yaml");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::write(&config_path, format!("{config}admin_listen: {admin}\n")).expect("config");
    let log = std::fs::File::create(dir.join("serve.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_resetline"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("KILL_TOKEN", TOKEN)
        .env("KILL_KEY", KEY)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn resetline serve");
    let mut server = Server(child);
    let started = Instant::now();
    while !get_ok(admin, "/readyz") {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!(
                "resetline serve exited early: {status}\n{}",
                std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Runs `resetline audit ARGS` with the audit key; (exit code, stdout + stderr).
fn audit_cmd(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_resetline"))
        .arg("audit")
        .args(args)
        .env("RESETLINE_AUDIT_KEY", KEY)
        .envs(env.iter().copied())
        .output()
        .expect("run resetline audit");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_record_acknowledged_before_a_sigkill_is_in_a_trail_that_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let audit_dir = dir.path().join("audit");
    let config = config(
        port,
        dir.path(),
        &format!("{{ dir: {}, key_env: KILL_KEY }}", audit_dir.display()),
    );
    let mut server = spawn_serve(dir.path(), &config, addr, &[]);
    let started = Instant::now();

    // The burst: 8 workers, each placing calls (first webhook, then the employee ID).
    let acked: Arc<Mutex<Vec<(String, EventType)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let sid = format!("CA{w:02}{n:030}");
                    let first = post(
                        addr,
                        "/voice/pin-reset",
                        &[
                            ("CallSid", &sid),
                            ("From", "+15555550100"),
                            ("To", "+15555550000"),
                        ],
                    );
                    let Some((200, next)) = first else {
                        continue;
                    };
                    if let Ok(mut a) = acked.lock() {
                        a.push((sid.clone(), EventType::SessionCreated));
                    }
                    let second = post(addr, &next, &[("CallSid", &sid), ("Digits", "100001")]);
                    if second.is_some_and(|(status, _)| status == 200)
                        && let Ok(mut a) = acked.lock()
                    {
                        a.push((sid, EventType::Identify));
                    }
                }
            })
        })
        .collect();
    // Let the burst run, then SIGKILL mid-flight.
    while acked.lock().map(|a| a.len()).unwrap_or(0) < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "burst too slow"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.0.kill().expect("SIGKILL");
    let _ = server.0.wait();
    let acked_at_kill: Vec<(String, EventType)> = acked.lock().expect("lock").clone();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    assert!(acked_at_kill.len() >= 200);

    // Reopening sets a torn last line aside (the crash recovery `serve` does at start).
    let chain = ChainId::new("resetline").expect("chain");
    let key = AuditKey::new(KEY.as_bytes()).expect("key");
    let (sink, _) =
        FileSink::open(SinkConfig::new(&audit_dir, chain.clone()), key).expect("reopen");
    drop(sink);
    let (code, out) = audit_cmd(&["verify", audit_dir.to_str().expect("utf8")], &[]);
    assert_eq!(code, 0, "{out}");

    let records = resetline_audit::query(&audit_dir, &chain, &Filter::default()).expect("read");
    let present: std::collections::HashSet<(String, EventType)> = records
        .iter()
        .map(|r| (r.record.call_id.clone(), r.record.event))
        .collect();
    let missing: Vec<_> = acked_at_kill
        .iter()
        .filter(|a| !present.contains(*a))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged webhooks have no audit record: {:?}",
        missing.len(),
        acked_at_kill.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
}

/// The first webhook and the employee ID of one call, both answered 200.
fn call(addr: SocketAddr, sid: &str) {
    let first = post(
        addr,
        "/voice/pin-reset",
        &[
            ("CallSid", sid),
            ("From", "+15555550100"),
            ("To", "+15555550000"),
        ],
    );
    let Some((200, next)) = first else {
        panic!("the first webhook was not answered 200: {first:?}");
    };
    let second = post(addr, &next, &[("CallSid", sid), ("Digits", "100001")]);
    assert_eq!(second.map(|(status, _)| status), Some(200));
}

/// SIGTERM, so `serve` closes the trail (final checkpoint) and exits.
fn stop(mut server: Server) {
    let pid = server.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = server.0.wait();
}

#[test]
fn serve_with_a_postgres_sink_then_verify_purge_and_tamper_from_the_command_line() {
    let pg = support::Postgres::start();
    let url = pg.url();
    let env = [("KILL_PGURL", url.as_str())];
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let audit = "{ kind: postgres, url_env: KILL_PGURL, key_env: KILL_KEY, chain: replica-1 }";
    let server = spawn_serve(dir.path(), &config(port, dir.path(), audit), addr, &env);
    for i in 0..3 {
        call(addr, &format!("CA{i:032}"));
    }

    // A second server on the same chain is refused: one writer per chain.
    let other = tempfile::tempdir().expect("tempdir");
    let port2 = free_port();
    std::fs::write(
        other.path().join("resetline.yaml"),
        config(port2, other.path(), audit),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_resetline"))
        .args(["serve", "--config"])
        .arg(other.path().join("resetline.yaml"))
        .env("KILL_TOKEN", TOKEN)
        .env("KILL_KEY", KEY)
        .envs(env)
        .output()
        .expect("second serve");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("another writer holds audit chain"), "{text}");
    stop(server);

    let chain = ["--postgres-url-env", "KILL_PGURL", "--chain", "replica-1"];
    let (code, out) = audit_cmd(&[&["verify"][..], &chain].concat(), &env);
    assert_eq!(code, 0, "{out}");
    let records: u64 = out
        .strip_prefix("ok: ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(records >= 6, "two records per call at least: {out}");
    assert!(
        out.contains("checkpoint(s); the last checkpoint covers"),
        "{out}"
    );

    let (code, out) = audit_cmd(
        &[&["query"][..], &chain, &["--event", "identify", "--json"]].concat(),
        &env,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 3, "one identify per call: {out}");
    assert!(
        out.lines().all(|l| l.contains("\"event\":\"identify\"")),
        "{out}"
    );

    let (code, out) = audit_cmd(&[&["purge"][..], &chain].concat(), &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to purge"), "{out}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let db = resetline_audit_postgres::parse_url(&url).expect("url");
        let client = resetline_audit_postgres::connect(&db)
            .await
            .expect("connect");
        client
            .batch_execute(
                "ALTER TABLE audit_records DISABLE TRIGGER USER; \
                 DELETE FROM audit_records WHERE chain = 'replica-1' AND seq = 2;",
            )
            .await
            .expect("tamper");
    });
    let (code, out) = audit_cmd(&[&["verify"][..], &chain].concat(), &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TAMPERED") && out.contains("audit_records.replica-1:3 (seq 3)"),
        "{out}"
    );
}

#[test]
fn audit_purge_on_files_removes_old_segments_and_verify_starts_after_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = ChainId::new("resetline").expect("chain");
    let key = AuditKey::new(KEY.as_bytes()).expect("key");
    let (mut sink, _) = FileSink::open(SinkConfig::new(dir.path(), chain), key).expect("sink");
    let now = resetline_audit::time::OffsetDateTime::now_utc();
    for (i, days_ago) in [400i64, 399, 5, 0].iter().enumerate() {
        let r = resetline_audit::Record::new(
            now - resetline_audit::time::Duration::days(*days_ago),
            EventType::Identify,
            resetline_audit::Outcome::Success,
            format!("CA{i}"),
            "pin-reset",
            "1",
        );
        let _ = sink.append(&r).expect("append");
    }
    sink.close(now).expect("close");
    let path = dir.path().to_str().expect("utf8");

    let (code, out) = audit_cmd(&["purge", path, "--retention-days", "30"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("purged 2 record(s)") && out.contains("starts at seq 3"),
        "{out}"
    );
    let (code, out) = audit_cmd(&["verify", path], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("from seq 3"), "{out}");

    // Removing the next segment by hand is not a purge.
    std::fs::remove_file(dir.path().join("resetline.000003.jsonl")).expect("remove");
    let (code, out) = audit_cmd(&["verify", path], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("outside a purge"), "{out}");
}
