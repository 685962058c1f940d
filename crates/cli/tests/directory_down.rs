//! "A connector that is down": the real `resetline serve` binary, configured by file with a
//! SCIM directory whose server accepts connections and never answers. Every call still ends
//! with an agent transfer (the reference flow's error path), never silence; after
//! `breaker.failures` slow failures the breaker is open and the next call gets the same
//! answer at once, without touching the directory, and `/metrics` shows it open.

use crate::support as serve_common;
use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serve_common::{ACCOUNT, TOKEN, free_port, root};
use tokio::io::AsyncReadExt;

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

/// One call up to the directory lookup; returns the lookup's answer and how long it took.
async fn call_until_lookup(server: &serve_common::Served, sid: &str) -> (String, Duration) {
    let first = server.start_call("password-reset", sid).await;
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
    let menu = server
        .post(
            &support::next_action(&first),
            &[("CallSid", sid), ("Digits", "1")],
        )
        .await;
    let started = Instant::now();
    let answer = server
        .post(
            &support::next_action(&menu),
            &[("CallSid", sid), ("Digits", "100001")],
        )
        .await;
    (answer, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_never_answers_ends_calls_with_an_agent_and_the_breaker_makes_it_fast() {
    let root = root();
    let (scim, connections) = black_hole().await;
    let dead_api = free_port();
    let port = free_port();
    let scratch = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
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
    );
    let key = "k".repeat(32);
    let server = serve_common::serve(
        scratch.path(),
        port,
        &yaml,
        &[
            ("T_TOKEN", TOKEN),
            ("T_SCIM", "scim-token"),
            ("T_KEY", &key),
        ],
    )
    .await;

    for (i, sid) in [
        "CA00000000000000000000000000000001",
        "CA00000000000000000000000000000002",
    ]
    .iter()
    .enumerate()
    {
        let (answer, took) = call_until_lookup(&server, sid).await;
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
    let (answer, took) = call_until_lookup(&server, "CA00000000000000000000000000000003").await;
    assert!(answer.contains("<Enqueue"), "{answer}");
    assert!(took < Duration::from_millis(400), "failed fast: {took:?}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "not called while open"
    );

    // The open breaker is visible in the metrics (on the admin port).
    let metrics = server.admin_get("/metrics").await;
    assert!(
        metrics.contains("resetline_backend_circuit_state{backend=\"directory\"} 1"),
        "{metrics}"
    );
    let log = server.log();
    assert!(log.contains("circuit open"), "{log}");
    assert!(!log.contains("scim-token"), "the token is never logged");
}
