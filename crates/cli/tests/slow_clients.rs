//! Finding 2, slow and idle clients: the real `resetline serve` binary on a loopback port,
//! with its default connection limits unless a test says otherwise. A client that trickles
//! its headers, one that stops halfway through its body and an idle keep-alive connection are
//! each cut off within their timeout; 2,000 such clients at once leave the server's memory
//! bounded (resident set read from `/proc/<pid>/status`) and are all cut off.

mod support;

use std::time::Duration;

use support::{ACCOUNT, TOKEN, free_port, root};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Slack over a timeout for the server to notice and close (a loaded shared machine).
const SLACK: Duration = Duration::from_secs(4);
/// The defaults of `server.header_read_timeout_ms` and `server.body_read_timeout_ms`.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// `resetline serve` with the embedded demo directory and `extra` configuration lines.
async fn start(extra: &str) -> (support::Served, tempfile::TempDir) {
    let root = root();
    let port = free_port();
    let dead_api = free_port();
    let scratch = tempfile::tempdir().expect("tempdir");
    let users = scratch.path().join("users.yaml");
    std::fs::copy(root.join("examples/demo/users.yaml"), &users).expect("users");
    let yaml = format!(
        "listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
flows_dir: {flows}
prompts_dir: {prompts}
carrier: {{ account_sid: {ACCOUNT}, auth_token_env: T_TOKEN, api_base: \"http://127.0.0.1:{dead_api}\" }}
directory: {{ kind: embedded, path: {users} }}
audit: {{ dir: audit, key_env: T_KEY }}
hash_key_env: T_KEY
reload: {{ enabled: false }}
{extra}",
        flows = root.join("flows").display(),
        prompts = root.join("voice-prompts").display(),
        users = users.display(),
    );
    let key = "k".repeat(32);
    let server = support::serve(
        scratch.path(),
        port,
        &yaml,
        &[("T_TOKEN", TOKEN), ("T_KEY", &key)],
    )
    .await;
    (server, scratch)
}

/// Reads (and drops) what the server sends until it closes the connection: how long that
/// took, or `None` when it is still open after `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// `took` (from [`closed_within`]) is a cut-off at `timeout`: it happened, and not before
/// the timeout (less a second of timer slack).
fn assert_cut_off(took: Option<Duration>, timeout: Duration, who: &str) {
    let took = took.unwrap_or_else(|| panic!("{who} is still connected"));
    assert!(
        took >= timeout - Duration::from_secs(1),
        "{who} was cut off early: {took:?}"
    );
}

/// A webhook's head announcing a 64 KiB body.
fn head_of_a_large_body(port: u16) -> String {
    format!(
        "POST /voice/pin-reset HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: x\r\nContent-Length: 65536\r\n\r\n"
    )
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_headers_is_cut_off_at_the_header_timeout() {
    let (server, _dir) = start("").await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /voice/pin-reset HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    let (mut read, mut write) = stream.split();
    let mut buf = [0u8; 1024];
    // One more header byte a second, which never completes the head.
    let closed = tokio::time::timeout(HEADER_TIMEOUT + SLACK, async {
        loop {
            tokio::select! {
                n = read.read(&mut buf) => if matches!(n, Ok(0) | Err(_)) { return started.elapsed() },
                () = tokio::time::sleep(Duration::from_secs(1)) => { let _ = write.write_all(b"a").await; }
            }
        }
    })
    .await;
    assert_cut_off(closed.ok(), HEADER_TIMEOUT, "the trickling client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_halfway_through_its_body_is_cut_off_at_the_body_timeout() {
    let (server, _dir) = start("").await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let mut request = head_of_a_large_body(server.addr.port()).into_bytes();
    request.extend(std::iter::repeat_n(b'a', 32 * 1024));
    stream.write_all(&request).await.expect("write");
    let took = closed_within(&mut stream, BODY_TIMEOUT + SLACK).await;
    assert_cut_off(took, BODY_TIMEOUT, "the client with a half-sent body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (server, _dir) = start("server: { idle_timeout_ms: 1000 }\n").await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"ok\n") {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    closed_within(&mut stream, Duration::from_secs(1) + SLACK)
        .await
        .expect("the idle connection is still open");
}

/// 1,000 clients trickle headers and 1,000 stop after 32 KiB of a 64 KiB body. They add less
/// than 64 MiB to the server's resident memory (its peak, from before they connect until all
/// are gone): with the default limits at most 1,024 connections are open (16 KiB of buffer
/// each) and 256 requests in flight (each holding at most its 64 KiB body), about 36 MiB
/// with the allocator's slack. And every one of them is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slow_clients_add_under_64_mib_to_the_server_and_are_all_cut_off() {
    const BOUND_KIB: u64 = 64 * 1024;
    let (server, _dir) = start("").await;
    let pid = server.pid();
    let (start_rss, _) = memory_kib(pid);
    let head = head_of_a_large_body(server.addr.port());
    let mut half = head.into_bytes();
    half.extend(std::iter::repeat_n(b'a', 32 * 1024));
    let mut held = Vec::with_capacity(2_000);
    for i in 0..2_000 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let sent = if i % 2 == 0 {
            stream
                .write_all(b"POST /voice/pin-reset HTTP/1.1\r\nHost: x\r\nX-Slow: a")
                .await
        } else {
            stream.write_all(&half).await
        };
        // The server may already have refused (503 and closed) a request over its limits.
        let _ = sent;
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (held_rss, _) = memory_kib(pid);
    let everyone_cut_off = tokio::time::timeout(Duration::from_secs(40), async {
        for stream in &mut held {
            let mut buf = [0u8; 4096];
            while !matches!(stream.read(&mut buf).await, Ok(0) | Err(_)) {}
        }
    })
    .await;
    let (_, peak) = memory_kib(pid);
    eprintln!(
        "resident memory: {start_rss} KiB at start, {held_rss} KiB with 2,000 slow clients connected, peak {peak} KiB"
    );
    assert!(
        everyone_cut_off.is_ok(),
        "some slow clients were still connected after 40 s"
    );
    let added = peak.saturating_sub(start_rss);
    assert!(
        added < BOUND_KIB,
        "the slow clients added {added} KiB at the peak, over the {BOUND_KIB} KiB bound"
    );
}
