//! "A connector that is down": the real `resetline serve` binary, configured by file with a
//! SCIM directory whose server accepts connections and never answers. Every call still ends
//! with an agent transfer (the reference flow's error path), never silence; after
//! `breaker.failures` slow failures the breaker is open and the next call gets the same
//! answer at once, without touching the directory.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";

/// The server process, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A SCIM server that accepts connections, reads, and never answers. Counts connections.
async fn black_hole() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await;
            held.push(stream);
        }
    });
    (addr, seen)
}

async fn post(addr: SocketAddr, path: &str, params: &[(&str, &str)]) -> String {
    let public = format!("http://{addr}");
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig =
        resetline_twiml::signature::compute(TOKEN.as_bytes(), &format!("{public}{path}"), &owned);
    let body = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// One call up to the directory lookup; returns the lookup's answer and how long it took.
async fn call_until_lookup(addr: SocketAddr, sid: &str) -> (String, Duration) {
    let base = "/voice/password-reset";
    let first = post(
        addr,
        base,
        &[
            ("CallSid", sid),
            ("AccountSid", ACCOUNT),
            ("From", "+15555550100"),
            ("To", "+15555550000"),
        ],
    )
    .await;
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
    post(
        addr,
        &format!("{base}/step/1"),
        &[("CallSid", sid), ("Digits", "1")],
    )
    .await;
    let started = Instant::now();
    let answer = post(
        addr,
        &format!("{base}/step/2"),
        &[("CallSid", sid), ("Digits", "100001")],
    )
    .await;
    (answer, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_never_answers_ends_calls_with_an_agent_and_the_breaker_makes_it_fast() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (scim, connections) = black_hole().await;
    let dead_api = free_port();
    let port = free_port();
    let scratch = tempfile::tempdir().expect("tempdir");
    let config = scratch.path().join("resetline.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
flows_dir: {flows}
prompts_dir: {prompts}
carrier: {{ account_sid: {ACCOUNT}, auth_token_env: T_TOKEN, api_base: \"http://127.0.0.1:{dead_api}\" }}
directory: {{ kind: scim, base_url: \"http://{scim}/scim/v2\", token_env: T_SCIM, timeout_ms: 800 }}
breaker: {{ failures: 2, cool_down_ms: 60000 }}
audit: {{ dir: audit, key_env: T_KEY }}
hash_key_env: T_KEY
budget_ms: 4000
reload: {{ enabled: false }}
",
            flows = root.join("flows").display(),
            prompts = root.join("voice-prompts").display(),
        ),
    )
    .expect("config");
    let stderr = std::fs::File::create(scratch.path().join("stderr.log")).expect("log");
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_resetline"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("T_TOKEN", TOKEN)
            .env("T_SCIM", "scim-token")
            .env("T_KEY", "k".repeat(32))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("resetline serve"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            let mut log = String::new();
            let _ = std::fs::File::open(scratch.path().join("stderr.log"))
                .and_then(|mut f| f.read_to_string(&mut log));
            panic!("the server did not start:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for (i, sid) in [
        "CA00000000000000000000000000000001",
        "CA00000000000000000000000000000002",
    ]
    .iter()
    .enumerate()
    {
        let (answer, took) = call_until_lookup(addr, sid).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(
            answer.contains("Sorry, we&apos;re having technical trouble.")
                || answer.contains("Sorry, we're having technical trouble."),
            "{answer}"
        );
        assert!(answer.contains("<Enqueue"), "ends with an agent: {answer}");
        assert!(answer.contains(">service-desk</Enqueue>"), "{answer}");
        assert!(
            took >= Duration::from_millis(700),
            "call {i} waited for the directory: {took:?}"
        );
        assert!(took < Duration::from_secs(4), "within the budget: {took:?}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    // The breaker is open: the same answer, at once, and the directory is not asked.
    let (answer, took) = call_until_lookup(addr, "CA00000000000000000000000000000003").await;
    assert!(answer.contains("<Enqueue"), "{answer}");
    assert!(took < Duration::from_millis(400), "failed fast: {took:?}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "not called while open"
    );

    // The open breaker is visible in the metrics.
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut metrics = String::new();
    stream.read_to_string(&mut metrics).await.expect("read");
    assert!(
        metrics.contains("resetline_backend_circuit_state{backend=\"directory\"} 1"),
        "{metrics}"
    );

    let mut log = String::new();
    std::fs::File::open(scratch.path().join("stderr.log"))
        .and_then(|mut f| f.read_to_string(&mut log))
        .expect("log");
    assert!(log.contains("circuit open"), "{log}");
    assert!(!log.contains("scim-token"), "the token is never logged");
}
