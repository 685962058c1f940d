//! The HTTP/1.1 serve loop of both listeners (the public webhook port and the admin port):
//! hyper's connection driver with the limits a port open to the internet needs, so that slow
//! and idle clients cannot hold it ([`serve`]).
//!
//! Invariants, one [`Limits`] field each (configured under `server:`):
//! - **A request's head is complete within `header_read_timeout`** of its first byte (for a
//!   new connection: of its opening); otherwise the connection is closed without an answer.
//! - **A keep-alive connection with no request for `idle_timeout` is closed** (counted from
//!   when its last answer was ready, so a client that does not read its answer is closed too).
//! - **A request's body is complete within `body_read_timeout`** of its head: later, reading
//!   it fails (the handler answers 400) and the connection closes.
//! - **At most `max_connections` connections are open**: past it, new ones wait in the listen
//!   backlog, not accepted, until one closes.
//! - **At most `max_in_flight` requests are handled at once**: past it, a request is answered
//!   503 at once (its body unread), never queued.
//! - **Heads are at most [`MAX_HEAD`] bytes** (hyper's read buffer: larger get 431), so a
//!   held connection costs a bounded buffer.
//! - **Graceful shutdown**: when `shutdown` completes, nothing more is accepted, idle
//!   connections close at once, requests in progress finish (their own deadlines bound them)
//!   and [`serve`] returns when every connection is closed.
//!
//! Why a watchdog of its own and not hyper's `header_read_timeout`: hyper restarts that timer
//! whenever a keep-alive connection goes idle, so idle time and head time are one timer there,
//! and hyper has no body deadline. Each connection's [`Watch`] knows which phase it is in (the
//! service marks a request's start and end, the socket wrapper the first byte of the next
//! head) and one timer per connection closes it when the phase's time runs out.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Largest request head (request line and headers) accepted: hyper's read buffer. A
/// carrier's webhook head is under 4 KiB.
pub const MAX_HEAD: usize = 16 * 1024;

/// The limits of one listener (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest time from a request's first byte (or a new connection's opening) to the end of
    /// its head.
    pub header_read_timeout: Duration,
    /// Longest time from the end of a request's head to the end of its body.
    pub body_read_timeout: Duration,
    /// Longest time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most requests handled at once.
    pub max_in_flight: usize,
}

impl Default for Limits {
    /// The webhook port's defaults: 5 s for a head, 5 s for a body, 75 s idle (above the
    /// 60 s idle timeout of common load balancers, which must close first), 1,024
    /// connections, 256 requests in flight.
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(75),
            max_connections: 1024,
            max_in_flight: 256,
        }
    }
}

impl Limits {
    /// The admin port's: the same times, 64 connections, 16 requests in flight.
    pub fn admin() -> Self {
        Limits {
            max_connections: 64,
            max_in_flight: 16,
            ..Limits::default()
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then shuts down
/// gracefully (see the module doc) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, None, app, limits, shutdown).await;
}

/// [`serve`] over TLS only ([`crate::tls`]): each connection's handshake must end within
/// `header_read_timeout`; one that fails (plain HTTP, say) is closed without an answer.
pub async fn serve_tls(
    listener: TcpListener,
    tls: &crate::tls::Tls,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, Some(tls.acceptor()), app, limits, shutdown).await;
}

async fn serve_with(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let served = connection(
            stream,
            tls.clone(),
            app.clone(),
            limits,
            in_flight.clone(),
            stopping.clone(),
        );
        tokio::spawn(async move {
            served.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection gives its permit back when it closes.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = open.acquire_many(all).await;
}

/// A failed `accept`: a connection the peer gave up on is no problem; anything else (out of
/// file descriptors) is logged and accepting pauses for a second rather than spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Drives one connection (after its TLS handshake, with `tls`) until it ends, is cut off by
/// its [`Watch`], or has finished after a graceful shutdown.
async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    in_flight: Arc<Semaphore>,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let watch = Arc::new(Watch::new(limits));
    let watched = Watched {
        stream,
        watch: watch.clone(),
    };
    let Some(acceptor) = tls else {
        return drive(watched, watch, app, limits, in_flight, stopping).await;
    };
    // The handshake is part of the first head's time: the watch is in that phase.
    let tls = tokio::select! {
        shaken = acceptor.accept(watched) => match shaken {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed; connection closed");
                return;
            }
        },
        () = watch.expired() => {
            tracing::debug!("connection cut off: TLS handshake not finished in time");
            return;
        }
    };
    drive(tls, watch, app, limits, in_flight, stopping).await;
}

/// Serves HTTP/1.1 on one connection's (plain or TLS) stream.
async fn drive<S>(
    stream: S,
    watch: Arc<Watch>,
    app: Router,
    limits: Limits,
    in_flight: Arc<Semaphore>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let service = hyper::service::service_fn({
        let watch = watch.clone();
        move |req: Request<Incoming>| {
            handle(
                req,
                app.clone(),
                in_flight.clone(),
                watch.clone(),
                limits.body_read_timeout,
            )
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(MAX_HEAD)
        .header_read_timeout(None)
        .keep_alive(true);
    let mut conn = std::pin::pin!(builder.serve_connection(io, service));
    let mut graceful = *stopping.borrow();
    if graceful {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = watch.expired() => {
                tracing::debug!("connection cut off: no complete request head in time, or idle");
                return;
            }
            _ = stopping.changed(), if !graceful => {
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request: 503 at once past the in-flight cap; else the app, with the body under its
/// deadline, in a task of its own: a client that disconnects mid-request does not cancel it
/// (a step runs to its end: its session saved, its audit records written). The connection is
/// busy (no watchdog time runs) until the answer is ready.
async fn handle(
    req: Request<Incoming>,
    app: Router,
    in_flight: Arc<Semaphore>,
    watch: Arc<Watch>,
    body_read_timeout: Duration,
) -> Result<Response, Infallible> {
    watch.busy();
    let response = match in_flight.try_acquire_owned() {
        Ok(permit) => {
            let by = Instant::now() + body_read_timeout;
            let req = req.map(|body| DeadlineBody {
                inner: body,
                by,
                timer: None,
            });
            let answered = tokio::spawn(async move {
                let response = app.oneshot(req).await;
                drop(permit);
                response
            });
            match answered.await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(e) => {
                    tracing::error!(error = %e, "request handler failed");
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        }
        Err(_) => {
            tracing::debug!("request refused: too many in flight");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "too many requests in progress\n",
            )
                .into_response()
        }
    };
    watch.idle();
    Ok(response)
}

/// Where a connection is, and so how long it may stay as it is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request is being handled, since `since`; `head` once a byte of the next request's
    /// head arrived (or from the opening, for a new connection): then the head's time runs,
    /// else the idle time.
    Waiting { since: Instant, head: bool },
    /// A request is being handled.
    Busy,
}

/// A connection's phase and its watchdog (see the module doc).
#[derive(Debug)]
struct Watch {
    limits: Limits,
    phase: std::sync::Mutex<Phase>,
    /// True exactly while idle with no byte of a next head: the socket wrapper reads only
    /// this on every read, and takes the lock only for the first byte after an idle time.
    idle: AtomicBool,
    changed: Notify,
}

impl Watch {
    fn new(limits: Limits) -> Self {
        Watch {
            limits,
            phase: std::sync::Mutex::new(Phase::Waiting {
                since: Instant::now(),
                head: true,
            }),
            idle: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
        self.idle.store(
            matches!(phase, Phase::Waiting { head: false, .. }),
            Ordering::Relaxed,
        );
        self.changed.notify_one();
    }

    fn busy(&self) {
        self.set(Phase::Busy);
    }

    fn idle(&self) {
        self.set(Phase::Waiting {
            since: Instant::now(),
            head: false,
        });
    }

    /// Bytes arrived: after an idle time, the next request's head has started.
    fn bytes_arrived(&self) {
        if self.idle.load(Ordering::Relaxed) {
            self.set(Phase::Waiting {
                since: Instant::now(),
                head: true,
            });
        }
    }

    /// When the connection must be closed unless its phase changes first; none while busy.
    fn deadline(&self) -> Option<Instant> {
        match *self.phase.lock().unwrap_or_else(|e| e.into_inner()) {
            Phase::Waiting { since, head: true } => Some(since + self.limits.header_read_timeout),
            Phase::Waiting { since, head: false } => Some(since + self.limits.idle_timeout),
            Phase::Busy => None,
        }
    }

    /// Completes when the connection's time in its phase has run out.
    async fn expired(&self) {
        loop {
            let changed = self.changed.notified();
            match self.deadline() {
                None => changed.await,
                Some(at) if Instant::now() >= at => return,
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// The socket, telling its [`Watch`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A request body that fails once its deadline has passed. The timer is armed only when the
/// body has to be waited for (a body that came with its head, the usual case, arms none).
struct DeadlineBody {
    inner: Incoming,
    by: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error a body read gets after its deadline.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body not complete within its time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let by = this.by;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(by)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}
