//! `serve`, the loop behind both listeners, on a real loopback port with small limits: the
//! cap on requests in flight answers 503 at once instead of queueing, the cap on connections
//! leaves new ones unaccepted until one closes, and a graceful shutdown lets the request in
//! progress finish while it closes idle connections. (The head, body and idle timeouts are
//! tested against the `resetline serve` binary, `crates/cli/tests/slow_clients.rs`.)

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use resetline_server::{Limits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// A router whose `/held` answers only when the test adds a permit to `gate`, and whose
/// `/now` answers at once.
fn gated(gate: Arc<Semaphore>) -> Router {
    Router::new()
        .route(
            "/held",
            get(move || {
                let gate = gate.clone();
                async move {
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    "released\n"
                }
            }),
        )
        .route("/now", get(|| async { "now\n" }))
}

/// Serves `app` within `limits` on a free port until `stop` gets a permit; the address and
/// the serve task.
async fn start(
    app: Router,
    limits: Limits,
    stop: Arc<Semaphore>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = tokio::spawn(serve(listener, app, limits, async move {
        let _ = stop.acquire().await;
    }));
    (addr, served)
}

/// Sends a keep-alive GET of `path` on `stream`.
async fn request(stream: &mut TcpStream, path: &str) {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
}

/// Reads one answer (headers and a body of known length) from `stream`.
async fn answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before a whole answer: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

fn limits(max_connections: usize, max_in_flight: usize) -> Limits {
    Limits {
        max_connections,
        max_in_flight,
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

#[tokio::test]
async fn requests_past_the_in_flight_cap_get_503_at_once_and_are_not_queued() {
    let gate = Arc::new(Semaphore::new(0));
    let stop = Arc::new(Semaphore::new(0));
    let (addr, served) = start(gated(gate.clone()), limits(16, 2), stop.clone()).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        request(&mut stream, "/held").await;
        held.push(stream);
    }
    // Both held requests have reached the handler once a third is refused; retry until then.
    let mut refused = String::new();
    for _ in 0..100 {
        let mut third = TcpStream::connect(addr).await.expect("connect");
        request(&mut third, "/now").await;
        refused = answer(&mut third).await;
        if refused.starts_with("HTTP/1.1 503") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    gate.add_permits(2);
    for stream in &mut held {
        assert!(answer(stream).await.ends_with("released\n"));
    }
    let mut after = TcpStream::connect(addr).await.expect("connect");
    request(&mut after, "/now").await;
    assert!(answer(&mut after).await.starts_with("HTTP/1.1 200"));
    stop.add_permits(1);
    drop((held, after));
    served.await.expect("serve returns");
}

#[tokio::test]
async fn a_connection_past_the_cap_is_not_accepted_until_one_closes() {
    let stop = Arc::new(Semaphore::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (addr, served) = start(gated(gate), limits(1, 8), stop.clone()).await;
    let mut first = TcpStream::connect(addr).await.expect("connect");
    request(&mut first, "/now").await;
    assert!(answer(&mut first).await.starts_with("HTTP/1.1 200"));
    // The second connection completes its handshake in the listen backlog; nothing serves it.
    let mut second = TcpStream::connect(addr).await.expect("connect");
    request(&mut second, "/now").await;
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(early.is_err(), "served past the connection cap: {early:?}");
    drop(first);
    assert!(answer(&mut second).await.starts_with("HTTP/1.1 200"));
    stop.add_permits(1);
    drop(second);
    served.await.expect("serve returns");
}

#[tokio::test]
async fn a_graceful_shutdown_finishes_the_request_in_progress_and_closes_idle_connections() {
    let gate = Arc::new(Semaphore::new(0));
    let stop = Arc::new(Semaphore::new(0));
    let (addr, served) = start(gated(gate.clone()), limits(16, 16), stop.clone()).await;
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    request(&mut idle, "/now").await;
    assert!(answer(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut busy = TcpStream::connect(addr).await.expect("connect");
    request(&mut busy, "/held").await;
    tokio::time::sleep(Duration::from_millis(100)).await; // the request reached its handler

    stop.add_permits(1);
    let mut buf = [0u8; 64];
    assert!(
        matches!(idle.read(&mut buf).await, Ok(0) | Err(_)),
        "the idle connection is closed"
    );
    assert!(!served.is_finished(), "a request is still in progress");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connection is accepted"
    );
    gate.add_permits(1);
    assert!(answer(&mut busy).await.ends_with("released\n"));
    served
        .await
        .expect("serve returns once every connection closed");
}
