//! The webhook listener over TLS (`resetline_server::tls`): a real rustls client against a CA
//! the test makes with rcgen; TLS 1.2 and 1.3 served, plain HTTP refused, a certificate
//! replaced while a connection stays open, and the start-up errors for a certificate that
//! expired, is not yet valid, or does not match its key.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::get;
use resetline_server::{Limits, Tls, TlsError, TlsFiles, serve_tls};
use resetline_testkit::tls::{Pem, TestCa, connect, healthz, plain_http, served_subject};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn files(pem: Pem) -> TlsFiles {
    TlsFiles {
        cert: pem.cert,
        key: pem.key,
    }
}

/// Serves a `/healthz` answering "ok" over `tls`; returns the address.
async fn start(tls: Arc<Tls>) -> std::net::SocketAddr {
    start_with(tls, Limits::default()).await
}

async fn start_with(tls: Arc<Tls>, limits: Limits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move {
        serve_tls(listener, &tls, app, limits, std::future::pending()).await;
    });
    addr
}

#[tokio::test]
async fn serves_tls_1_2_and_1_3_and_refuses_plain_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let tls =
        Arc::new(Tls::load(files(ca.valid(dir.path(), "first")), SystemTime::now()).expect("load"));
    let addr = start(tls).await;

    for (versions, expected) in [
        (
            &[&rustls::version::TLS13][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ] {
        let mut stream = connect(&ca.client(versions), addr).await;
        assert_eq!(stream.get_ref().1.protocol_version(), Some(expected));
        assert_eq!(stream.get_ref().1.alpn_protocol(), None);
        assert_eq!(healthz(&mut stream).await, "HTTP/1.1 200 OK ok");
    }

    // Plain HTTP on the TLS port: no HTTP answer, the connection is closed.
    let got = plain_http(addr).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&got)
    );

    // The listener still serves TLS after the refused plain request.
    let mut stream = connect(&ca.client(&[&rustls::version::TLS13]), addr).await;
    assert_eq!(healthz(&mut stream).await, "HTTP/1.1 200 OK ok");
}

#[tokio::test]
async fn a_client_that_stalls_in_the_handshake_is_cut_off_at_the_head_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let tls =
        Arc::new(Tls::load(files(ca.valid(dir.path(), "first")), SystemTime::now()).expect("load"));
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let addr = start_with(tls, limits).await;
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "a silent client was not cut off");
    assert!(got.is_empty());
}

#[tokio::test]
async fn a_new_certificate_serves_new_connections_and_open_ones_carry_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let first = files(ca.valid(dir.path(), "first"));
    let tls = Arc::new(Tls::load(first.clone(), SystemTime::now()).expect("load"));
    let addr = start(tls.clone()).await;
    let client = ca.client(&[&rustls::version::TLS13]);
    let mut open = connect(&client, addr).await;
    assert_eq!(served_subject(&open), "CN=first");
    assert_eq!(healthz(&mut open).await, "HTTP/1.1 200 OK ok");
    assert!(!tls.files_changed());

    // The files are replaced in place (as a renewal does): the change is seen and reloaded.
    let second = files(ca.valid(dir.path(), "second"));
    std::fs::copy(&second.cert, &first.cert).expect("copy cert");
    std::fs::copy(&second.key, &first.key).expect("copy key");
    assert!(tls.files_changed());
    let info = tls.reload(SystemTime::now()).expect("reload");
    assert_eq!(info.subject, "CN=second");
    assert!(!tls.files_changed());

    let mut fresh = connect(&client, addr).await;
    assert_eq!(served_subject(&fresh), "CN=second");
    assert_eq!(healthz(&mut fresh).await, "HTTP/1.1 200 OK ok");
    // The connection opened before the reload still answers, on the first certificate.
    assert_eq!(healthz(&mut open).await, "HTTP/1.1 200 OK ok");
    assert_eq!(served_subject(&open), "CN=first");
}

#[tokio::test]
async fn a_bad_reload_keeps_the_certificate_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let first = files(ca.valid(dir.path(), "first"));
    let tls = Arc::new(Tls::load(first.clone(), SystemTime::now()).expect("load"));
    let addr = start(tls.clone()).await;
    // Half a renewal: the new certificate is written, its key not yet.
    let second = files(ca.valid(dir.path(), "second"));
    std::fs::copy(&second.cert, &first.cert).expect("copy cert");
    assert!(matches!(
        tls.reload(SystemTime::now()),
        Err(TlsError::KeyMismatch { .. })
    ));
    assert_eq!(tls.info().subject, "CN=first");
    let mut stream = connect(&ca.client(&[&rustls::version::TLS13]), addr).await;
    assert_eq!(served_subject(&stream), "CN=first");
    assert_eq!(healthz(&mut stream).await, "HTTP/1.1 200 OK ok");
}

#[tokio::test]
async fn keep_fresh_reloads_when_the_files_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let first = files(ca.valid(dir.path(), "first"));
    let tls = Arc::new(Tls::load(first.clone(), SystemTime::now()).expect("load"));
    tokio::spawn(resetline_server::tls::keep_fresh(
        tls.clone(),
        SystemTime::now,
        Duration::from_millis(20),
        std::future::pending(),
    ));
    let second = files(ca.valid(dir.path(), "second"));
    // A rename over the files, as a Kubernetes Secret update does.
    std::fs::rename(&second.key, &first.key).expect("rename key");
    std::fs::rename(&second.cert, &first.cert).expect("rename cert");
    for _ in 0..250 {
        if tls.info().subject == "CN=second" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not reloaded: {:?}", tls.info());
}

#[test]
fn start_up_refuses_a_certificate_outside_its_validity_or_not_matching_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let expired = files(ca.leaf(
        dir.path(),
        "expired",
        time::Duration::days(-30),
        time::Duration::days(-1),
    ));
    let err = Tls::load(expired, SystemTime::now()).expect_err("expired");
    assert!(matches!(err, TlsError::NotValidNow { .. }), "{err:?}");
    assert!(
        err.to_string().contains("the certificate expired on"),
        "{err}"
    );

    let future = files(ca.leaf(
        dir.path(),
        "future",
        time::Duration::days(1),
        time::Duration::days(30),
    ));
    let err = Tls::load(future, SystemTime::now()).expect_err("not yet valid");
    assert!(err.to_string().contains("is not valid before"), "{err}");

    let a = files(ca.valid(dir.path(), "a"));
    let b = files(ca.valid(dir.path(), "b"));
    let crossed = TlsFiles {
        cert: a.cert.clone(),
        key: b.key,
    };
    let err = Tls::load(crossed, SystemTime::now()).expect_err("mismatch");
    assert!(
        err.to_string()
            .contains("does not belong to the certificate"),
        "{err}"
    );

    let missing = TlsFiles {
        cert: dir.path().join("nowhere.pem"),
        key: a.key.clone(),
    };
    let err = Tls::load(missing, SystemTime::now()).expect_err("missing");
    assert!(err.to_string().contains("cannot read"), "{err}");

    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").expect("write");
    let empty = TlsFiles {
        cert: dir.path().join("empty.pem"),
        key: a.key,
    };
    let err = Tls::load(empty, SystemTime::now()).expect_err("no certificate");
    assert!(err.to_string().contains("holds no certificate"), "{err}");

    // The same expired files load when the (injected) clock says they are still valid.
    let expired = TlsFiles {
        cert: dir.path().join("expired.pem"),
        key: dir.path().join("expired.key"),
    };
    let earlier = SystemTime::now() - Duration::from_secs(10 * 86_400);
    assert!(Tls::load(expired, earlier).is_ok());
}
