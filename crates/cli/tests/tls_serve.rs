//! `resetline serve` with `tls:` (issue 24, item 1): HTTPS on the webhook port from PEM files
//! named relative to the config, plain HTTP refused there, SIGHUP loading a renewed
//! certificate without closing open connections, and a certificate that expired or does not
//! match its key stopping start-up with a clear error.

use std::process::Command;

use crate::support::{BIN, Served, TOKEN, embedded_config, free_port};
use resetline_testkit::tls::{TestCa, connect, healthz, plain_http, served_subject};

const TLS: &str = "tls: { cert: tls/server.pem, key: tls/server.key }";

/// Writes a leaf named `name` as `<dir>/tls/server.{pem,key}` (as a renewal overwrites them).
fn install(
    ca: &TestCa,
    dir: &std::path::Path,
    name: &str,
    from: time::Duration,
    to: time::Duration,
) {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    let pem = ca.leaf(&tls, name, from, to);
    std::fs::rename(pem.cert, tls.join("server.pem")).expect("cert");
    std::fs::rename(pem.key, tls.join("server.key")).expect("key");
}

fn env() -> Vec<(&'static str, String)> {
    vec![("T_TOKEN", TOKEN.to_owned()), ("T_KEY", "k".repeat(32))]
}

#[tokio::test]
async fn serves_https_refuses_plain_http_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let day = time::Duration::days(1);
    install(&ca, dir.path(), "first", -day, day * 30);
    let port = free_port();
    let yaml = embedded_config(dir.path(), port, TLS);
    let env = env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let served = Served::start(BIN, dir.path(), port, &yaml, &env).await;

    let client = ca.client(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    let mut open = connect(&client, served.addr).await;
    assert_eq!(served_subject(&open), "CN=first");
    assert_eq!(healthz(&mut open).await, "HTTP/1.1 200 OK ok");
    let got = plain_http(served.addr).await;
    assert!(!got.starts_with(b"HTTP/"), "plain HTTP answered");

    // A renewal, then SIGHUP (the file watch would also see it, within 5 s).
    install(&ca, dir.path(), "second", -day, day * 30);
    let hup = Command::new("kill")
        .args(["-HUP", &served.pid().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let mut subject = String::new();
    for _ in 0..100 {
        let fresh = connect(&client, served.addr).await;
        subject = served_subject(&fresh);
        if subject == "CN=second" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(subject, "CN=second", "{}", served.log());
    let log = served.log();
    assert!(
        log.contains("TLS certificate reloaded") && log.contains("SIGHUP"),
        "{log}"
    );
    // The connection opened before the reload was not dropped.
    assert_eq!(healthz(&mut open).await, "HTTP/1.1 200 OK ok");
}

#[test]
fn an_expired_or_mismatched_certificate_stops_start_up_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let day = time::Duration::days(1);
    install(&ca, dir.path(), "old", -day * 60, -day);
    let config = dir.path().join("resetline.yaml");
    std::fs::write(&config, embedded_config(dir.path(), free_port(), TLS)).expect("config");
    let run = || {
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .envs(env())
            .output()
            .expect("run")
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot serve HTTPS"), "{stderr}");
    assert!(stderr.contains("the certificate expired on"), "{stderr}");

    // A valid certificate with another certificate's key.
    install(&ca, dir.path(), "new", -day, day * 30);
    let other = ca.valid(dir.path(), "other");
    std::fs::copy(other.key, dir.path().join("tls/server.key")).expect("key");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );

    // A missing file is a config problem, reported with the others.
    std::fs::remove_file(dir.path().join("tls/server.key")).expect("rm");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("`tls.key`"), "{stderr}");
}
