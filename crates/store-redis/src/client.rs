//! One connection to Redis shared by every caller of a process, with automatic pipelining: the
//! commands that concurrent webhooks issue within one scheduler tick go out in one write, and
//! their replies come back in order on the same connection.
//!
//! A caller hands over its commands already encoded ([`crate::resp::Pipeline`]) and waits for
//! their replies; one task owns the socket, writes what callers queued, reads replies and hands
//! each caller its own. That task connects when the first command arrives (TCP keepalive on,
//! so a peer that vanished is noticed), authenticates and selects the database, and after a
//! failure fails what is in flight, waits a little (50 ms, doubling up to 500 ms, failing new
//! commands at once meanwhile) and connects again on the next command. A connection the server
//! closes while nothing is in flight (Redis's `timeout`, a proxy's idle limit) is no failure:
//! the next command connects again at once.
//!
//! Inside the task, commands wait in three places: the channel (a queue behind a lock held only
//! to push or take a request; bounded: a caller finds it full and fails at once rather than
//! queueing without limit), `pending` (taken from the channel,
//! not yet encoded into the write buffer) and `out` (the write buffer, refilled from `pending`
//! only when it is empty, one chunk at a time). A command counts as in flight, and its timeout
//! runs, from when it enters `out`.
//!
//! Invariants:
//! - each caller gets exactly the replies to its own commands, in its order, and one caller's
//!   commands are contiguous on the wire (a two-command "acquire then read" keeps its meaning);
//!   commands of different callers are independent (each command or script is atomic on its
//!   own, none relies on another caller's being next);
//! - a server error (`-ERR`) answers only the command that caused it; a failed connection fails
//!   every caller whose commands were queued or in flight on it;
//! - a command whose caller has given up (its timeout passed, its future was dropped) before
//!   the command was written is never written;
//! - a connection with a command unanswered for longer than the timeout is given up and a new
//!   one made (a server that stopped answering is not waited for forever);
//! - every byte written is flushed before the task waits for anything else (TLS buffers
//!   records: a write alone may leave a command in the buffer);
//! - memory is bounded: at most [`MAX_WAITING`] requests in the channel, [`MAX_QUEUED`] bytes
//!   pending, and [`MAX_INPUT`] bytes of unparsed reply (beyond it the connection fails);
//! - no URL, password or command argument appears in an error message or a log line.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use resetline_engine::Secret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::resp::{self, Arg, Pipeline, Reply};

/// First wait after a failed connection; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Bytes taken from the channel but not yet written before new commands wait in the channel.
const MAX_QUEUED: usize = 1024 * 1024;
/// Requests waiting in the channel before new ones fail at once.
const MAX_WAITING: usize = 65_536;
/// Bytes moved into the write buffer at a time (a caller that gives up while its command waits
/// behind a chunk is still skipped).
const CHUNK: usize = 64 * 1024;
/// Unparsed reply bytes held before the connection is given up (a reply is at most
/// [`resp::MAX_BULK`] per string).
const MAX_INPUT: usize = 64 * 1024 * 1024;
/// Idle time before the first TCP keepalive probe, and the time between probes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Bounds of the period at which unanswered commands are checked (half the timeout).
const MIN_WATCH: Duration = Duration::from_millis(20);
const MAX_WATCH: Duration = Duration::from_secs(3600);

/// Why a request failed (never carries the URL, a password or an argument).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientError {
    /// No answer in time (Redis slow or unreachable).
    pub(crate) timeout: bool,
    /// What went wrong.
    pub(crate) message: String,
}

impl ClientError {
    fn new(message: impl Into<String>) -> Self {
        ClientError {
            timeout: false,
            message: message.into(),
        }
    }

    fn timeout(message: impl Into<String>) -> Self {
        ClientError {
            timeout: true,
            message: message.into(),
        }
    }

    fn io(what: &str, e: &std::io::Error) -> Self {
        let timeout = e.kind() == std::io::ErrorKind::TimedOut;
        ClientError {
            timeout,
            message: format!("{what}: {}", e.kind()),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where Redis is and how to log in: from a `redis://` or `rediss://` URL,
/// `[scheme]://[[user][:password]@]host[:port][/db]`.
#[derive(Clone)]
pub(crate) struct Target {
    host: String,
    port: u16,
    db: u32,
    username: Option<String>,
    password: Option<Secret>,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// `%XX` escapes of a URL's user or password.
fn percent_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Target {
    /// Reads `url`; `tls` forces TLS for a `redis://` URL; `username` and `password`, when
    /// given, replace the URL's (each on its own). A username needs a password (Redis has no
    /// login by name alone). Errors name the problem, never the URL or the password.
    pub(crate) fn new(
        url: &str,
        tls: bool,
        username: Option<&str>,
        password: Option<&Secret>,
    ) -> Result<Target, String> {
        let (rest, secure) = if let Some(rest) = url.strip_prefix("rediss://") {
            (rest, true)
        } else if let Some(rest) = url.strip_prefix("redis://") {
            (rest, tls)
        } else {
            return Err("the URL is not a redis:// or rediss:// URL".into());
        };
        if rest.contains(['?', '#']) {
            return Err("the URL may not have a query or fragment".into());
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("the URL's IPv6 host has no `]`")?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let port = match port {
            None | Some("") => 6379,
            Some(p) => p.parse().map_err(|_| "the URL's port is not a number")?,
        };
        let db = match path {
            "" => 0,
            p => p
                .parse()
                .map_err(|_| "the URL's database is not a number")?,
        };
        let (mut user, mut pass) = (None, None);
        if let Some(info) = userinfo {
            let (u, p) = info.split_once(':').unwrap_or((info, ""));
            let decode =
                |s: &str| percent_decoded(s).ok_or("the URL's user or password is badly escaped");
            if !u.is_empty() {
                user = Some(decode(u)?);
            }
            if !p.is_empty() {
                pass = Some(Secret::new(decode(p)?));
            }
        }
        if let Some(p) = password {
            pass = Some(p.clone());
        }
        if let Some(u) = username {
            user = Some(u.to_string());
        }
        if user.is_some() && pass.is_none() {
            return Err("a Redis username needs a password".into());
        }
        let tls = if secure { Some(tls_connector()?) } else { None };
        Ok(Target {
            host: host.to_string(),
            port,
            db,
            username: user,
            password: pass,
            tls,
        })
    }
}

/// TLS with the system's trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), through
/// rustls with the aws-lc-rs provider the workspace already builds.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("TLS: no trusted CA certificates found (set SSL_CERT_FILE)".into());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Commands of one caller and where their replies go.
struct Job {
    commands: Pipeline,
    reply: oneshot::Sender<Result<Vec<Reply>, ClientError>>,
}

/// A caller's commands written (or queued to be written) on the connection.
struct InFlight {
    remaining: usize,
    replies: Vec<Reply>,
    reply: oneshot::Sender<Result<Vec<Reply>, ClientError>>,
    /// When its commands entered the write buffer.
    since: Instant,
}

/// The shared connection: cheap to clone; the connection task ends with the last clone.
pub(crate) struct Client {
    jobs: Arc<Channel>,
}

/// Where callers leave requests for the connection task: a queue behind a lock held only to
/// push or take a request (never across an `await`), and the task's waker. Bounded: at most
/// [`MAX_WAITING`] requests wait in it.
struct Channel {
    state: Mutex<ChannelState>,
    /// Live [`Client`]s: the last one gone closes the channel.
    clients: AtomicUsize,
}

struct ChannelState {
    jobs: VecDeque<Job>,
    /// The connection task's, when it waits for a request.
    waker: Option<Waker>,
    /// Every client is gone: no request comes any more.
    clients_gone: bool,
    /// The connection task is gone: no request would be served.
    task_gone: bool,
}

impl Channel {
    fn new() -> Self {
        Channel {
            state: Mutex::new(ChannelState {
                jobs: VecDeque::new(),
                waker: None,
                clients_gone: false,
                task_gone: false,
            }),
            clients: AtomicUsize::new(1),
        }
    }

    /// The state (the lock is never held where a panic could poison it; a poisoned lock is
    /// used as it is).
    fn state(&self) -> MutexGuard<'_, ChannelState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The connection task's end of the [`Channel`]; dropping it fails what still waits in it.
struct Queue {
    channel: Arc<Channel>,
}

impl Queue {
    /// The oldest request, `None` once every client is gone and nothing waits, or `Pending`
    /// (with the task's waker left for the next request).
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Job>> {
        let mut state = self.channel.state();
        if let Some(job) = state.jobs.pop_front() {
            return Poll::Ready(Some(job));
        }
        if state.clients_gone {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The oldest request, if one waits.
    fn try_recv(&mut self) -> Option<Job> {
        let mut state = self.channel.state();
        let job = state.jobs.pop_front();
        if state.jobs.is_empty() && state.jobs.capacity() > 4 * 1024 {
            // After a burst, do not keep room for thousands of requests.
            state.jobs.shrink_to(256);
        }
        job
    }

    async fn recv(&mut self) -> Option<Job> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let jobs = {
            let mut state = self.channel.state();
            state.task_gone = true;
            std::mem::take(&mut state.jobs)
        };
        // Their callers hear that the task stopped (their reply senders are dropped).
        drop(jobs);
    }
}

impl Clone for Client {
    fn clone(&self) -> Self {
        self.jobs.clients.fetch_add(1, Ordering::Relaxed);
        Client {
            jobs: self.jobs.clone(),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.jobs.clients.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = {
                let mut state = self.jobs.state();
                state.clients_gone = true;
                state.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// A channel and its two ends.
fn channel() -> (Client, Queue) {
    let channel = Arc::new(Channel::new());
    (
        Client {
            jobs: channel.clone(),
        },
        Queue { channel },
    )
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("commands", &self.commands.commands())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the connection task on the current tokio runtime. `timeout` bounds connecting
    /// and how long a command may stay unanswered before the connection is given up.
    pub(crate) fn start(target: Target, timeout: Duration) -> Client {
        let (client, queue) = channel();
        tokio::spawn(drive(target, timeout, queue));
        client
    }

    /// Sends `commands` and waits for their replies. Unbounded in time by itself: callers put
    /// their own timeout around it. Fails at once when [`MAX_WAITING`] requests are already
    /// waiting for the connection.
    pub(crate) async fn request(&self, commands: Pipeline) -> Result<Vec<Reply>, ClientError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ClientError::new("the Redis connection task stopped");
        let waker = {
            let mut state = self.jobs.state();
            if state.task_gone {
                return Err(stopped());
            }
            if state.jobs.len() >= MAX_WAITING {
                return Err(ClientError::new("too many Redis commands waiting"));
            }
            state.jobs.push_back(Job { commands, reply });
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        answer.await.map_err(|_| stopped())?
    }
}

/// How a connection ended.
enum Ended {
    /// Every client is gone.
    Closed,
    /// It failed; the callers on it were told.
    Failed(ClientError),
    /// The server closed it with nothing in flight; these requests (if any) were not yet
    /// written and go out on the next connection.
    Idle(VecDeque<Job>),
}

/// Connects on demand, serves the connection until it fails, backs off, and again.
async fn drive(target: Target, timeout: Duration, mut queue: Queue) {
    let mut backoff = MIN_BACKOFF;
    let mut waiting = VecDeque::new();
    loop {
        if waiting.is_empty() {
            let Some(first) = queue.recv().await else {
                return;
            };
            waiting.push_back(first);
        }
        let connected = tokio::time::timeout(timeout, connect(&target)).await;
        if matches!(connected, Ok(Ok(_))) {
            backoff = MIN_BACKOFF;
        }
        let error = match connected {
            Ok(Ok(Stream::Plain(s))) => {
                serve(s, &mut queue, std::mem::take(&mut waiting), timeout).await
            }
            Ok(Ok(Stream::Tls(s))) => {
                serve(*s, &mut queue, std::mem::take(&mut waiting), timeout).await
            }
            Ok(Err(e)) => {
                fail(&mut waiting, &e);
                Ended::Failed(e)
            }
            Err(_) => {
                let e = ClientError::timeout("connecting to redis timed out");
                fail(&mut waiting, &e);
                Ended::Failed(e)
            }
        };
        let error = match error {
            Ended::Closed => return,
            Ended::Idle(unwritten) => {
                tracing::debug!(
                    waiting = unwritten.len(),
                    "redis closed an idle connection; connecting again on the next command"
                );
                waiting = unwritten;
                continue;
            }
            Ended::Failed(e) => e,
        };
        tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "redis connection failed");
        // Until the next attempt, new commands fail at once (their callers hear an apology
        // now rather than at their timeout).
        let retry_at = Instant::now() + backoff;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(retry_at) => break,
                job = queue.recv() => match job {
                    None => return,
                    Some(job) => {
                        let _ = job.reply.send(Err(ClientError::new(format!("redis unreachable: {}", error.message))));
                    }
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

/// TCP (no delay, keepalive) and TLS, then `AUTH` and `SELECT` as the target asks.
async fn connect(target: &Target) -> Result<Stream, ClientError> {
    let setup = |e: std::io::Error| ClientError::io("connecting to redis", &e);
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(setup)?;
    tcp.set_nodelay(true).map_err(setup)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    socket2::SockRef::from(&tcp)
        .set_tcp_keepalive(&keepalive)
        .map_err(setup)?;
    let mut stream = match &target.tls {
        None => Stream::Plain(tcp),
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| ClientError::new("redis TLS: the host is not a valid server name"))?;
            let tls = connector.connect(name, tcp).await.map_err(|e| {
                ClientError::new(format!("redis TLS handshake failed: {}", tls_reason(&e)))
            })?;
            Stream::Tls(Box::new(tls))
        }
    };
    let auth: Option<Vec<Arg<'_>>> = target.password.as_ref().map(|password| {
        let pass = Arg::Bytes(password.expose().as_bytes());
        match &target.username {
            Some(user) => vec!["AUTH".into(), user.as_str().into(), pass],
            None => vec!["AUTH".into(), pass],
        }
    });
    let select = [Arg::from("SELECT"), u64::from(target.db).into()];
    // Sized once, so the password is never left behind in a reallocated buffer; zeroed on drop.
    let mut hello = Zeroizing::new(Vec::with_capacity(
        auth.as_deref().map_or(0, resp::encoded_len) + resp::encoded_len(&select),
    ));
    let mut expected = 0;
    if let Some(auth) = &auth {
        resp::command(&mut hello, auth);
        expected += 1;
    }
    if target.db != 0 {
        resp::command(&mut hello, &select);
        expected += 1;
    }
    if expected > 0 {
        let replies = match &mut stream {
            Stream::Plain(s) => exchange(s, &hello, expected).await?,
            Stream::Tls(s) => exchange(s.as_mut(), &hello, expected).await?,
        };
        for reply in replies {
            if let Reply::Error(e) = reply {
                // Redis's own words (`WRONGPASS invalid username-password pair ...`): never
                // the password.
                return Err(ClientError::new(format!("redis refused the login: {e}")));
            }
        }
    }
    Ok(stream)
}

/// The reason of a TLS failure, without addresses (the kind of I/O error, or rustls's
/// description of the certificate problem).
fn tls_reason(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => e.kind().to_string(),
    }
}

/// Writes `bytes` and reads `count` replies (the login, before the connection is shared).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    count: usize,
) -> Result<Vec<Reply>, ClientError> {
    let written = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    written
        .await
        .map_err(|e| ClientError::io("writing to redis", &e))?;
    let mut buf = Vec::with_capacity(256);
    let mut replies = Vec::with_capacity(count);
    let mut at = 0;
    while replies.len() < count {
        match resp::parse(&buf[at..]) {
            Ok(Some((reply, used))) => {
                at += used;
                replies.push(reply);
            }
            Ok(None) => {
                let n = stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| ClientError::io("reading from redis", &e))?;
                if n == 0 {
                    return Err(ClientError::new("redis closed the connection"));
                }
            }
            Err(e) => return Err(ClientError::new(e.to_string())),
        }
    }
    if at < buf.len() {
        return Err(ClientError::new("redis sent a reply nobody asked for"));
    }
    Ok(replies)
}

/// Tells every caller in `jobs` that `e` happened.
fn fail(jobs: &mut VecDeque<Job>, e: &ClientError) {
    for job in jobs.drain(..) {
        let _ = job.reply.send(Err(e.clone()));
    }
}

/// Tells every caller in flight or pending on a connection that `e` ended it.
fn failed(
    in_flight: &mut VecDeque<InFlight>,
    pending: &mut VecDeque<Job>,
    e: ClientError,
) -> Ended {
    for f in in_flight.drain(..) {
        let _ = f.reply.send(Err(e.clone()));
    }
    fail(pending, &e);
    Ended::Failed(e)
}

/// Serves one connection until it fails, the server closes it idle, or every client is gone.
///
/// The task polls the stream itself (no split halves, no lock between them): one pass reads
/// and hands out replies, writes or flushes, takes new requests and checks the oldest command's
/// age, and the task sleeps only when none of them can go on. A request taken from the channel
/// first lets every task that is ready now run (and queue its commands): they all go out in
/// one write.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    queue: &mut Queue,
    pending: VecDeque<Job>,
    timeout: Duration,
) -> Ended {
    let mut conn = Connection::new(stream, pending, timeout);
    loop {
        match std::future::poll_fn(|cx| conn.poll(cx, queue)).await {
            Woke::Ended(ended) => return ended,
            Woke::Job(job) => {
                tokio::task::yield_now().await;
                conn.queue(job);
                while conn.pending_bytes < MAX_QUEUED
                    && let Some(job) = queue.try_recv()
                {
                    conn.queue(job);
                }
            }
        }
    }
}

/// Why [`Connection::poll`] returned.
enum Woke {
    /// A request arrived (the others that are ready are taken after a yield).
    Job(Job),
    /// The connection is over.
    Ended(Ended),
}

/// One connection's state, polled by [`serve`].
struct Connection<S> {
    stream: S,
    /// Encoded commands not yet written.
    out: Vec<u8>,
    /// Reply bytes: `input[..filled]` is read and not yet parsed; the rest is room to read into
    /// (initialised once, so reads need no `unsafe`; grown up to `MAX_INPUT + 1`).
    input: Vec<u8>,
    filled: usize,
    in_flight: VecDeque<InFlight>,
    pending: VecDeque<Job>,
    pending_bytes: usize,
    /// Bytes were written since the last flush.
    unflushed: bool,
    watch: tokio::time::Interval,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn new(stream: S, pending: VecDeque<Job>, timeout: Duration) -> Self {
        let pending_bytes = pending.iter().map(|j| j.commands.bytes().len()).sum();
        let mut watch = tokio::time::interval(timeout.clamp(MIN_WATCH, MAX_WATCH) / 2);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Connection {
            stream,
            out: Vec::with_capacity(16 * 1024),
            input: vec![0; 16 * 1024],
            filled: 0,
            in_flight: VecDeque::new(),
            pending,
            pending_bytes,
            unflushed: false,
            watch,
            timeout,
        }
    }

    /// Takes a request from the channel (to be written when the write buffer is next empty).
    fn queue(&mut self, job: Job) {
        self.pending_bytes += job.commands.bytes().len();
        self.pending.push_back(job);
    }

    /// Tells every caller in flight or pending that `e` ended the connection.
    fn failed(&mut self, e: ClientError) -> Poll<Woke> {
        Poll::Ready(Woke::Ended(failed(
            &mut self.in_flight,
            &mut self.pending,
            e,
        )))
    }

    /// Moves the connection on as far as it goes without waiting: `Pending` once every source
    /// it waits on (the socket, the channel, the watch) has its waker. A source that answered
    /// `Pending` keeps the waker it was given and is not asked again in this call.
    fn poll(&mut self, cx: &mut Context<'_>, queue: &mut Queue) -> Poll<Woke> {
        let (mut reading, mut writing, mut receiving, mut watching) = (true, true, true, true);
        loop {
            let mut progress = false;
            // Read before moving waiting commands into flight: a server that closed an idle
            // connection is then seen as idle, and the waiting commands go out on a new one.
            if reading {
                if self.filled == self.input.len() {
                    // Full of an unfinished reply: room for more, up to one byte past the bound.
                    let grown = (self.input.len() * 2).min(MAX_INPUT + 1);
                    self.input.resize(grown, 0);
                }
                let mut room = ReadBuf::new(self.input.get_mut(self.filled..).unwrap_or_default());
                match Pin::new(&mut self.stream).poll_read(cx, &mut room) {
                    Poll::Pending => reading = false,
                    Poll::Ready(read) => {
                        let n = room.filled().len();
                        match read {
                            Ok(()) | Err(_) if n == 0 && self.in_flight.is_empty() => {
                                let unwritten = std::mem::take(&mut self.pending);
                                return Poll::Ready(Woke::Ended(Ended::Idle(unwritten)));
                            }
                            Err(e) => {
                                return self.failed(ClientError::io("reading from redis", &e));
                            }
                            Ok(()) if n == 0 => {
                                return self
                                    .failed(ClientError::new("redis closed the connection"));
                            }
                            Ok(()) => {}
                        }
                        self.filled += n;
                        if let Err(e) = self.replies() {
                            return self.failed(e);
                        }
                        progress = true;
                    }
                }
            }
            if self.out.is_empty() && !self.pending.is_empty() {
                fill(
                    &mut self.pending,
                    &mut self.pending_bytes,
                    &mut self.out,
                    &mut self.in_flight,
                );
            }
            // One of write (while there is something to write) or flush (after the last write).
            if writing && !self.out.is_empty() {
                match Pin::new(&mut self.stream).poll_write(cx, &self.out) {
                    Poll::Ready(Ok(0)) => {
                        return self.failed(ClientError::new("redis closed the connection"));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.out.drain(..n);
                        self.unflushed = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        return self.failed(ClientError::io("writing to redis", &e));
                    }
                    Poll::Pending => writing = false,
                }
            } else if writing && self.unflushed {
                match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.unflushed = false;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        return self.failed(ClientError::io("writing to redis", &e));
                    }
                    Poll::Pending => writing = false,
                }
            }
            if receiving && self.pending_bytes < MAX_QUEUED {
                match queue.poll_recv(cx) {
                    Poll::Ready(Some(job)) => return Poll::Ready(Woke::Job(job)),
                    Poll::Ready(None) => {
                        failed(
                            &mut self.in_flight,
                            &mut self.pending,
                            ClientError::new("the Redis client was dropped"),
                        );
                        return Poll::Ready(Woke::Ended(Ended::Closed));
                    }
                    Poll::Pending => receiving = false,
                }
            }
            if watching && !self.in_flight.is_empty() {
                match self.watch.poll_tick(cx) {
                    Poll::Ready(_) => {
                        if self
                            .in_flight
                            .front()
                            .is_some_and(|f| f.since.elapsed() > self.timeout)
                        {
                            return self.failed(ClientError::timeout(
                                "redis did not answer in time; reconnecting",
                            ));
                        }
                        // Asked again, so the next tick has the waker.
                        progress = true;
                    }
                    Poll::Pending => watching = false,
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Hands out the replies complete in `input[..filled]`, keeps the rest at the start.
    fn replies(&mut self) -> Result<(), ClientError> {
        let mut at = 0;
        let unparsed = self.input.get(..self.filled).unwrap_or_default();
        loop {
            match resp::parse(unparsed.get(at..).unwrap_or_default()) {
                Ok(Some((reply, used))) => {
                    at += used;
                    let Some(front) = self.in_flight.front_mut() else {
                        return Err(ClientError::new("redis sent a reply nobody asked for"));
                    };
                    front.replies.push(reply);
                    front.remaining -= 1;
                    if front.remaining == 0
                        && let Some(done) = self.in_flight.pop_front()
                    {
                        let _ = done.reply.send(Ok(done.replies));
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(ClientError::new(e.to_string())),
            }
        }
        if at == self.filled {
            self.filled = 0;
        } else if at > 0 {
            self.input.copy_within(at..self.filled, 0);
            self.filled -= at;
        }
        if self.filled > MAX_INPUT {
            return Err(ClientError::new(
                "redis sent a reply larger than the client accepts",
            ));
        }
        Ok(())
    }
}

/// Moves pending requests into the (empty) write buffer: at least one, up to [`CHUNK`] bytes.
fn fill(
    pending: &mut VecDeque<Job>,
    pending_bytes: &mut usize,
    out: &mut Vec<u8>,
    in_flight: &mut VecDeque<InFlight>,
) {
    let now = Instant::now();
    while let Some(job) = pending.pop_front() {
        *pending_bytes -= job.commands.bytes().len();
        take(job, out, in_flight, now);
        if out.len() >= CHUNK {
            break;
        }
    }
}

/// Puts a job's commands in the write buffer, unless its caller has already given up.
fn take(job: Job, out: &mut Vec<u8>, in_flight: &mut VecDeque<InFlight>, now: Instant) {
    if job.reply.is_closed() {
        return;
    }
    let count = job.commands.commands();
    if count == 0 {
        let _ = job.reply.send(Ok(Vec::new()));
        return;
    }
    out.extend_from_slice(job.commands.bytes());
    in_flight.push_back(InFlight {
        remaining: count,
        replies: Vec::with_capacity(count),
        reply: job.reply,
        since: now,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<Target, String> {
        Target::new(url, false, None, None)
    }

    fn cmd(args: &[&str]) -> Pipeline {
        let list: Vec<Arg<'_>> = args.iter().map(|a| Arg::from(*a)).collect();
        Pipeline::one(&list)
    }

    /// A fake Redis on loopback: hands each accepted connection to `script`.
    async fn fake<F, Fut>(script: F) -> (Target, tokio::task::JoinHandle<()>)
    where
        F: Fn(tokio::net::TcpStream, usize) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut n = 0;
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(script(socket, n));
                n += 1;
            }
        });
        let url = format!("redis://:pw@127.0.0.1:{port}");
        (target(&url).expect("url"), task)
    }

    /// Reads one command (an array of bulk strings) from `socket`.
    async fn read_command<S: AsyncRead + Unpin>(
        socket: &mut S,
        buf: &mut Vec<u8>,
    ) -> Option<Vec<String>> {
        loop {
            if let Ok(Some((Reply::Array(items), used))) = resp::parse(buf) {
                buf.drain(..used);
                return Some(
                    items
                        .into_iter()
                        .map(|i| match i {
                            Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                            _ => String::new(),
                        })
                        .collect(),
                );
            }
            if socket.read_buf(buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    #[tokio::test]
    async fn a_command_whose_caller_gave_up_before_it_was_written_is_never_written() {
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (target, _server) = fake(move |mut socket, _| {
            let seen = seen_tx.clone();
            async move {
                let mut buf = Vec::new();
                // The login is answered late: the SET below waits behind it meanwhile.
                let login = read_command(&mut socket, &mut buf).await.expect("auth");
                assert_eq!(login[0], "AUTH");
                tokio::time::sleep(Duration::from_millis(300)).await;
                socket.write_all(b"+OK\r\n").await.expect("write");
                while let Some(c) = read_command(&mut socket, &mut buf).await {
                    let _ = seen.send(c.join(" "));
                    socket.write_all(b"+OK\r\n").await.expect("write");
                }
            }
        })
        .await;
        let client = Client::start(target, Duration::from_secs(2));
        let first = client.request(cmd(&["PING"]));
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            client.request(cmd(&["SET", "late", "x"])),
        );
        let (first, gave_up) = tokio::join!(first, gave_up);
        assert!(gave_up.is_err(), "the SET's caller timed out");
        assert_eq!(first, Ok(vec![Reply::Simple("OK".into())]));
        let after = client.request(cmd(&["GET", "k"])).await;
        assert_eq!(after, Ok(vec![Reply::Simple("OK".into())]));
        let mut commands = Vec::new();
        while let Ok(c) = seen.try_recv() {
            commands.push(c);
        }
        assert_eq!(
            commands,
            ["PING", "GET k"],
            "the abandoned SET never reached the server"
        );
    }

    #[tokio::test]
    async fn a_connection_that_stops_answering_is_replaced() {
        let (target, _server) = fake(|mut socket, n| async move {
            let mut buf = Vec::new();
            let _login = read_command(&mut socket, &mut buf).await;
            socket.write_all(b"+OK\r\n").await.expect("write");
            while read_command(&mut socket, &mut buf).await.is_some() {
                if n > 0 {
                    socket.write_all(b"+PONG\r\n").await.expect("write");
                }
                // The first connection swallows every command.
            }
        })
        .await;
        let client = Client::start(target, Duration::from_millis(200));
        let started = Instant::now();
        let stuck = client.request(cmd(&["PING"])).await;
        assert!(matches!(stuck, Err(ref e) if e.timeout), "{stuck:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "given up after about the timeout"
        );
        // After the backoff a new connection answers.
        let mut answered = None;
        for _ in 0..20 {
            if let Ok(r) = client.request(cmd(&["PING"])).await {
                answered = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(answered, Some(vec![Reply::Simple("PONG".into())]));
    }

    #[tokio::test]
    async fn a_closed_connection_fails_its_callers_and_the_next_command_reconnects() {
        let (target, _server) = fake(|mut socket, n| async move {
            let mut buf = Vec::new();
            let _login = read_command(&mut socket, &mut buf).await;
            socket.write_all(b"+OK\r\n").await.expect("write");
            if n == 0 {
                let _ = read_command(&mut socket, &mut buf).await;
                return; // closes with the command unanswered
            }
            while read_command(&mut socket, &mut buf).await.is_some() {
                socket.write_all(b":7\r\n").await.expect("write");
            }
        })
        .await;
        let client = Client::start(target, Duration::from_secs(2));
        let lost = client.request(cmd(&["INCR", "n"])).await;
        assert!(
            matches!(lost, Err(ref e) if !e.timeout && e.message.contains("closed")),
            "{lost:?}"
        );
        let mut again = None;
        for _ in 0..20 {
            if let Ok(r) = client.request(cmd(&["INCR", "n"])).await {
                again = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(again, Some(vec![Reply::Int(7)]));
    }

    #[tokio::test]
    async fn a_refused_login_is_an_error_that_names_no_password() {
        let (target, _server) = fake(|mut socket, _| async move {
            let mut buf = Vec::new();
            let _login = read_command(&mut socket, &mut buf).await;
            socket
                .write_all(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
                .await
                .expect("write");
        })
        .await;
        let client = Client::start(target, Duration::from_secs(2));
        let e = client.request(cmd(&["PING"])).await.expect_err("refused");
        assert!(
            e.message.contains("WRONGPASS") && !e.message.contains("pw"),
            "{e}"
        );
        let fast = Instant::now();
        assert!(client.request(cmd(&["PING"])).await.is_err());
        assert!(
            fast.elapsed() < Duration::from_millis(100),
            "fails at once while backing off"
        );
    }

    #[tokio::test]
    async fn a_reply_nobody_asked_for_ends_the_connection() {
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let (target, _server) = fake(move |mut socket, n| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let mut buf = Vec::new();
                let _login = read_command(&mut socket, &mut buf).await;
                socket.write_all(b"+OK\r\n").await.expect("write");
                let _ = read_command(&mut socket, &mut buf).await;
                socket.write_all(b"+PONG\r\n").await.expect("write");
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    socket.write_all(b"+EXTRA\r\n").await.expect("write");
                }
                while read_command(&mut socket, &mut buf).await.is_some() {
                    socket.write_all(b"+PONG\r\n").await.expect("write");
                }
            }
        })
        .await;
        let client = Client::start(target, Duration::from_secs(2));
        assert_eq!(
            client.request(cmd(&["PING"])).await,
            Ok(vec![Reply::Simple("PONG".into())])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            client.request(cmd(&["PING"])).await,
            Ok(vec![Reply::Simple("PONG".into())]),
            "answered on a new connection"
        );
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the connection that sent an unasked-for reply was dropped"
        );
    }

    #[test]
    fn a_url_gives_host_port_database_and_login() {
        let t = target("redis://u%40x:p%3Aw@[::1]:6380/3").expect("url");
        assert_eq!((t.host.as_str(), t.port, t.db), ("::1", 6380, 3));
        assert_eq!(t.username.as_deref(), Some("u@x"));
        assert_eq!(t.password.as_ref().map(|p| p.expose()), Some("p:w"));
        assert!(t.tls.is_none());
        let t = target("redis://cache.internal").expect("url");
        assert_eq!((t.host.as_str(), t.port, t.db), ("cache.internal", 6379, 0));
        assert!(t.username.is_none() && t.password.is_none());
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        for (url, why) in [
            ("http://h", "not a redis://"),
            ("redis://h?db=1", "query"),
            ("redis://:6379", "no host"),
            ("redis://h:sekrit", "port"),
            ("redis://h/sekrit", "database"),
            ("redis://u:sekrit%zz@h", "badly escaped"),
            ("redis://[::1:6379", "`]`"),
        ] {
            let e = target(url).expect_err(url);
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("sekrit"), "{url}: {e}");
        }
    }

    #[test]
    fn a_configured_login_replaces_the_urls_and_a_username_needs_a_password() {
        let pw = Secret::new("from-env".to_string());
        let t = Target::new("redis://u:url-pw@h", false, Some("app"), None).expect("url");
        assert_eq!(
            t.username.as_deref(),
            Some("app"),
            "applies with the URL's password"
        );
        assert_eq!(t.password.as_ref().map(|p| p.expose()), Some("url-pw"));
        let t = Target::new("redis://u:url-pw@h", false, None, Some(&pw)).expect("url");
        assert_eq!(t.username.as_deref(), Some("u"));
        assert_eq!(t.password.as_ref().map(|p| p.expose()), Some("from-env"));
        for (url, user) in [("redis://h", Some("app")), ("redis://app@h", None)] {
            let e = Target::new(url, false, user, None).expect_err(url);
            assert!(e.contains("username needs a password"), "{url}: {e}");
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_idle_is_no_failure() {
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let (target, _server) = fake(move |mut socket, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let mut buf = Vec::new();
                let _login = read_command(&mut socket, &mut buf).await;
                socket.write_all(b"+OK\r\n").await.expect("write");
                // Answers one command, then closes as Redis's `timeout` would.
                let _ = read_command(&mut socket, &mut buf).await;
                socket.write_all(b"+PONG\r\n").await.expect("write");
            }
        })
        .await;
        let client = Client::start(target, Duration::from_secs(2));
        for round in 0..3 {
            assert_eq!(
                client.request(cmd(&["PING"])).await,
                Ok(vec![Reply::Simple("PONG".into())]),
                "round {round}"
            );
            // Let the close arrive while nothing is in flight (a failure would now be backing
            // off for `MIN_BACKOFF`, failing this next command at once).
            tokio::time::sleep(MIN_BACKOFF / 2).await;
        }
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "each command after an idle close connected again at once, no backoff, no error"
        );
    }

    #[tokio::test]
    async fn a_full_queue_fails_new_requests_at_once() {
        // The login is never answered: the connection task sits in `connect` and takes
        // nothing more from the channel.
        let (target, _server) = fake(|mut socket, _| async move {
            let mut buf = Vec::new();
            let _login = read_command(&mut socket, &mut buf).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
        .await;
        let client = Client::start(target, Duration::from_millis(500));
        let first = tokio::spawn({
            let client = client.clone();
            async move { client.request(cmd(&["PING"])).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let extra = 10;
        let mut tasks = Vec::with_capacity(MAX_WAITING + extra);
        for _ in 0..MAX_WAITING + extra {
            let client = client.clone();
            tasks.push(tokio::spawn(
                async move { client.request(cmd(&["PING"])).await },
            ));
        }
        let mut full = 0;
        for task in tasks {
            if let Err(e) = task.await.expect("task") {
                full += usize::from(e.message == "too many Redis commands waiting");
            }
        }
        assert_eq!(
            full, extra,
            "exactly the requests beyond the bound were refused"
        );
        assert!(first.await.expect("task").is_err(), "the login timed out");
    }

    #[tokio::test]
    async fn a_reply_larger_than_the_bound_fails_the_connection() {
        let (target, _server) = fake(|mut socket, _| async move {
            let mut buf = Vec::new();
            let _login = read_command(&mut socket, &mut buf).await;
            socket.write_all(b"+OK\r\n").await.expect("write");
            let _ = read_command(&mut socket, &mut buf).await;
            // An array of five 15 MiB strings: each string within `MAX_BULK`, the whole reply
            // beyond `MAX_INPUT`.
            let part = 15 * 1024 * 1024;
            let chunk = vec![b'x'; part];
            let mut reply = b"*5\r\n".to_vec();
            for _ in 0..5 {
                reply.extend_from_slice(format!("${part}\r\n").as_bytes());
                reply.extend_from_slice(&chunk);
                reply.extend_from_slice(b"\r\n");
            }
            let _ = socket.write_all(&reply).await;
        })
        .await;
        let client = Client::start(target, Duration::from_secs(5));
        let e = client
            .request(cmd(&["LRANGE", "k", "0", "-1"]))
            .await
            .expect_err("too large");
        assert!(e.message.contains("larger than the client accepts"), "{e}");
    }

    #[tokio::test]
    async fn the_channel_closes_with_its_last_client_and_fails_callers_once_its_task_is_gone() {
        let (client, mut queue) = channel();
        let other = client.clone();
        drop(client);
        let waiting = tokio::spawn({
            let other = other.clone();
            async move { other.request(cmd(&["PING"])).await }
        });
        let job = queue.recv().await.expect("a request, while a client lives");
        assert_eq!(job.commands.commands(), 1);
        drop(job);
        assert!(
            matches!(waiting.await.expect("task"), Err(e) if e.message.contains("stopped")),
            "a request dropped unanswered is a failure for its caller"
        );
        drop(other);
        assert!(
            queue.recv().await.is_none(),
            "every client is gone: no request comes any more"
        );

        let (client, queue) = channel();
        let queued = tokio::spawn({
            let client = client.clone();
            async move { client.request(cmd(&["PING"])).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            queue.channel.state().jobs.len(),
            1,
            "the request waits in the queue when the queue goes"
        );
        drop(queue);
        let stopped = |r: Result<Vec<Reply>, ClientError>| matches!(r, Err(e) if e.message == "the Redis connection task stopped");
        assert!(
            stopped(queued.await.expect("task")),
            "the waiting request was failed"
        );
        assert!(
            stopped(client.request(cmd(&["PING"])).await),
            "a new one fails at once"
        );
    }

    #[tokio::test]
    async fn what_is_written_is_flushed_even_on_a_stream_that_buffers() {
        // A `BufWriter` keeps small writes until flushed, as TLS keeps records: without the
        // flush the PING would sit in its buffer and never be answered.
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let (client, mut queue) = channel();
        let _connection = tokio::spawn(async move {
            let stream = tokio::io::BufWriter::new(ours);
            serve(stream, &mut queue, VecDeque::new(), Duration::from_secs(5)).await;
        });
        let _server = tokio::spawn(async move {
            let mut buf = Vec::new();
            while read_command(&mut theirs, &mut buf).await.is_some() {
                theirs.write_all(b"+PONG\r\n").await.expect("write");
            }
        });
        for _ in 0..3 {
            let answer =
                tokio::time::timeout(Duration::from_secs(1), client.request(cmd(&["PING"])))
                    .await
                    .expect("answered: the command was flushed, not left in a buffer");
            assert_eq!(answer, Ok(vec![Reply::Simple("PONG".into())]));
        }
    }
}
