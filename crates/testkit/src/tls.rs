//! A private CA made with rcgen for the HTTPS tests, and a rustls client that trusts it:
//! leaf certificates for 127.0.0.1 with any validity period, written as PEM files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A leaf's PEM files.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A private CA that signs server certificates for 127.0.0.1.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    /// A new CA ("CN=Resetline test CA").
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Resetline test CA");
        let der = params.self_signed(&key).expect("CA").der().clone();
        TestCa { params, key, der }
    }

    /// A leaf for 127.0.0.1 named `CN=<name>`, valid from now + `from` to now + `to`, written
    /// with its key as `<dir>/<name>.pem` and `<dir>/<name>.key`.
    pub fn leaf(&self, dir: &Path, name: &str, from: time::Duration, to: time::Duration) -> Pem {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let now = OffsetDateTime::now_utc();
        params.not_before = now + from;
        params.not_after = now + to;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf");
        let pem = Pem {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&pem.cert, cert.pem()).expect("write cert");
        std::fs::write(&pem.key, key.serialize_pem()).expect("write key");
        pem
    }

    /// A leaf valid from an hour ago for 30 days.
    pub fn valid(&self, dir: &Path, name: &str) -> Pem {
        self.leaf(
            dir,
            name,
            time::Duration::hours(-1),
            time::Duration::days(30),
        )
    }

    /// A client trusting only this CA, speaking only `versions`, with full handshakes only (a
    /// resumed session would show the certificate of its first handshake).
    pub fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        TlsConnector::from(Arc::new(config))
    }
}

/// A TLS connection to `addr` (checked against its IP address).
pub async fn connect(client: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::IpAddress(addr.ip().into());
    client.connect(name, tcp).await.expect("TLS handshake")
}

/// One keep-alive `GET /healthz` on `stream`: the answer's status line and its body's last
/// two bytes (`ok`), as "HTTP/1.1 200 OK ok".
pub async fn healthz(stream: &mut TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.trim_ascii_end().ends_with(b"ok") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "connection closed mid-answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(answer).expect("utf-8");
    format!("{} ok", text.lines().next().unwrap_or_default())
}

/// The subject of the certificate the server showed on `stream` ("CN=name").
pub fn served_subject(stream: &TlsStream<TcpStream>) -> String {
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a peer certificate")
        .clone();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).expect("parse");
    cert.subject().to_string()
}

/// Sends a plain HTTP request to `addr` and reads until the server closes: what came back
/// (empty, or a TLS alert, from a TLS-only listener).
pub async fn plain_http(addr: SocketAddr) -> Vec<u8> {
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut got))
        .await
        .expect("closed in time");
    got
}
