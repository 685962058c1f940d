//! SIGKILL during a burst: a spawned `resetline serve` (file audit sink) takes concurrent
//! signed calls and is killed mid-burst. Every webhook answered 200 before the kill had its
//! audit records appended before the answer, so each one is in the trail; after the torn
//! last line (if any) is set aside by reopening, `resetline audit verify` passes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resetline_audit::{AuditKey, ChainId, EventType, FileSink, Filter, SinkConfig};

const TOKEN: &str = "kill-test-token";
const KEY: &str = "0123456789abcdef0123456789abcdef-kill";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// Kills the server if the test fails before it does.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// POSTs a signed webhook; the HTTP status, or `None` when the server is gone.
fn post(addr: SocketAddr, path: &str, params: &[(&str, &str)]) -> Option<u16> {
    let public = format!("http://{addr}");
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig =
        resetline_twiml::signature::compute(TOKEN.as_bytes(), &format!("{public}{path}"), &owned);
    let body: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let body = body.join("&");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    // A status line without the whole body is not an acknowledgement.
    (text.contains("\r\n\r\n") && (status != 200 || text.ends_with("</Response>")))
        .then_some(status)
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

#[test]
fn every_record_acknowledged_before_a_sigkill_is_in_a_trail_that_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    std::fs::copy(
        root().join("examples/demo/users.yaml"),
        dir.path().join("users.yaml"),
    )
    .expect("users");
    let audit_dir = dir.path().join("audit");
    let config = format!(
        "listen: 127.0.0.1:{port}\npublic_url: http://127.0.0.1:{port}\nflows_dir: {flows}\nprompts_dir: {prompts}\n\
         carrier: {{ account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: KILL_TOKEN, api_base: \"http://127.0.0.1:9\", api_timeout_ms: 500 }}\n\
         directory: {{ kind: embedded, path: users.yaml }}\nhash_key_env: KILL_KEY\n\
         audit: {{ dir: {audit}, key_env: KILL_KEY }}\nreload: {{ enabled: false }}\n",
        flows = root().join("flows").display(),
        prompts = root().join("voice-prompts").display(),
        audit = audit_dir.display(),
    );
    let config_path = dir.path().join("resetline.yaml");
    std::fs::write(&config_path, config).expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_resetline"))
        .arg("serve")
        .arg(&config_path)
        .env("KILL_TOKEN", TOKEN)
        .env("KILL_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn resetline serve");
    let mut server = Server(child);
    let started = Instant::now();
    while !get_ok(addr, "/readyz") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not become ready"
        );
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("resetline serve exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

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
                        &[("CallSid", &sid), ("From", "+15555550100"), ("To", "+15555550000")],
                    );
                    if first != Some(200) {
                        continue;
                    }
                    if let Ok(mut a) = acked.lock() {
                        a.push((sid.clone(), EventType::SessionCreated));
                    }
                    let second = post(
                        addr,
                        "/voice/pin-reset/step/1",
                        &[("CallSid", &sid), ("Digits", "100001")],
                    );
                    if second == Some(200)
                        && let Ok(mut a) = acked.lock()
                    {
                        a.push((sid, EventType::Identify));
                    }
                }
            })
        })
        .collect();
    // Let the burst run, then SIGKILL mid-flight.
    while acked.lock().map(|a| a.len()).unwrap_or(0) < 60 {
        assert!(started.elapsed() < Duration::from_secs(120), "burst too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.0.kill().expect("SIGKILL");
    let _ = server.0.wait();
    let acked_at_kill: Vec<(String, EventType)> = acked.lock().expect("lock").clone();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    assert!(acked_at_kill.len() >= 60);

    // Reopening sets a torn last line aside (the crash recovery `serve` does at start).
    let chain = ChainId::new("resetline").expect("chain");
    let key = AuditKey::new(KEY.as_bytes()).expect("key");
    let (sink, _) = FileSink::open(SinkConfig::new(&audit_dir, chain.clone()), key).expect("reopen");
    drop(sink);
    let out = Command::new(env!("CARGO_BIN_EXE_resetline"))
        .args(["audit", "verify"])
        .arg(&audit_dir)
        .env("RESETLINE_AUDIT_KEY", KEY)
        .output()
        .expect("verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");

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
