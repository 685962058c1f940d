//! One connection to Redis shared by every caller of a process, with automatic pipelining: the
//! commands that concurrent webhooks issue within one scheduler tick go out in one write, and
//! their replies come back in order on the same connection.
//!
//! A caller hands over its commands already encoded ([`crate::resp::command`]) and waits for
//! their replies; one task owns the socket, writes what callers queued, reads replies and hands
//! each caller its own. That task connects when the first command arrives, authenticates and
//! selects the database, and after a failure fails what is in flight, waits a little (50 ms,
//! doubling up to 500 ms, failing new commands at once meanwhile) and connects again on the
//! next command.
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
//! - no URL, password or command argument appears in an error message or a log line.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use resetline_engine::Secret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::resp::{self, Arg, Reply};

/// First wait after a failed connection; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Bytes queued for writing before new commands wait for the socket.
const MAX_QUEUED: usize = 1024 * 1024;

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
    /// given, replace the URL's. Errors name the problem, never the URL or the password.
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
            user = username.map(str::to_string).or(user);
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
    bytes: Vec<u8>,
    replies: usize,
    reply: oneshot::Sender<Result<Vec<Reply>, ClientError>>,
}

/// A caller's commands written (or queued to be written) on the connection.
struct InFlight {
    remaining: usize,
    replies: Vec<Reply>,
    reply: oneshot::Sender<Result<Vec<Reply>, ClientError>>,
    /// When its batch was queued.
    since: Instant,
}

/// The shared connection: cheap to clone; the connection task ends with the last clone.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    jobs: mpsc::UnboundedSender<Job>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("replies", &self.replies)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the connection task on the current tokio runtime. `timeout` bounds connecting
    /// and how long a command may stay unanswered before the connection is given up.
    pub(crate) fn start(target: Target, timeout: Duration) -> Client {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(drive(target, timeout, queue));
        Client { jobs }
    }

    /// Sends `bytes` (`replies` encoded commands) and waits for their replies. Unbounded in
    /// time by itself: callers put their own timeout around it.
    pub(crate) async fn request(
        &self,
        bytes: Vec<u8>,
        replies: usize,
    ) -> Result<Vec<Reply>, ClientError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ClientError::new("the Redis connection task stopped");
        self.jobs
            .send(Job {
                bytes,
                replies,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// How a connection ended.
enum Ended {
    /// Every client is gone.
    Closed,
    /// It failed; the callers on it were told.
    Failed(ClientError),
}

/// Connects on demand, serves the connection until it fails, backs off, and again.
async fn drive(target: Target, timeout: Duration, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut waiting = VecDeque::from([first]);
        let connected = tokio::time::timeout(timeout, connect(&target)).await;
        if matches!(connected, Ok(Ok(_))) {
            backoff = MIN_BACKOFF;
        }
        let error = match connected {
            Ok(Ok(Stream::Plain(s))) => serve(s, &mut queue, waiting, timeout).await,
            Ok(Ok(Stream::Tls(s))) => serve(*s, &mut queue, waiting, timeout).await,
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

/// TCP (and TLS), then `AUTH` and `SELECT` as the target asks.
async fn connect(target: &Target) -> Result<Stream, ClientError> {
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| ClientError::io("connecting to redis", &e))?;
    tcp.set_nodelay(true)
        .map_err(|e| ClientError::io("connecting to redis", &e))?;
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
    let mut hello = Vec::new();
    let mut expected = 0;
    if let Some(password) = &target.password {
        let pass = password.expose().as_bytes();
        match &target.username {
            Some(user) => resp::command(
                &mut hello,
                &["AUTH".into(), user.as_str().into(), Arg::Bytes(pass)],
            ),
            None => resp::command(&mut hello, &["AUTH".into(), Arg::Bytes(pass)]),
        }
        expected += 1;
    }
    if target.db != 0 {
        resp::command(&mut hello, &["SELECT".into(), u64::from(target.db).into()]);
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
    stream
        .write_all(bytes)
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

/// Serves one connection until it fails or every client is gone.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    queue: &mut mpsc::UnboundedReceiver<Job>,
    mut waiting: VecDeque<Job>,
    timeout: Duration,
) -> Ended {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut input: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut watch = tokio::time::interval(timeout.max(Duration::from_millis(20)) / 2);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let now = Instant::now();
    for job in waiting.drain(..) {
        take(job, &mut out, &mut in_flight, now);
    }
    let failed = |in_flight: &mut VecDeque<InFlight>, e: ClientError| {
        for f in in_flight.drain(..) {
            let _ = f.reply.send(Err(e.clone()));
        }
        Ended::Failed(e)
    };
    loop {
        tokio::select! {
            biased;
            read = rd.read_buf(&mut input) => {
                match read {
                    Ok(0) => return failed(&mut in_flight, ClientError::new("redis closed the connection")),
                    Err(e) => return failed(&mut in_flight, ClientError::io("reading from redis", &e)),
                    Ok(_) => {}
                }
                let mut at = 0;
                loop {
                    match resp::parse(&input[at..]) {
                        Ok(Some((reply, used))) => {
                            at += used;
                            let Some(front) = in_flight.front_mut() else {
                                return failed(&mut in_flight, ClientError::new("redis sent a reply nobody asked for"));
                            };
                            front.replies.push(reply);
                            front.remaining -= 1;
                            if front.remaining == 0
                                && let Some(done) = in_flight.pop_front()
                            {
                                let _ = done.reply.send(Ok(done.replies));
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return failed(&mut in_flight, ClientError::new(e.to_string())),
                    }
                }
                input.drain(..at);
            }
            written = wr.write(&out), if !out.is_empty() => match written {
                Ok(0) => return failed(&mut in_flight, ClientError::new("redis closed the connection")),
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) => return failed(&mut in_flight, ClientError::io("writing to redis", &e)),
            },
            job = queue.recv(), if out.len() < MAX_QUEUED => {
                let Some(job) = job else {
                    failed(&mut in_flight, ClientError::new("the Redis client was dropped"));
                    return Ended::Closed;
                };
                // Let every task that is ready now run (and queue its commands) first: they all
                // go out in one write.
                tokio::task::yield_now().await;
                let now = Instant::now();
                take(job, &mut out, &mut in_flight, now);
                while let Ok(job) = queue.try_recv() {
                    take(job, &mut out, &mut in_flight, now);
                    if out.len() >= MAX_QUEUED {
                        break;
                    }
                }
            }
            _ = watch.tick(), if !in_flight.is_empty() => {
                if in_flight.front().is_some_and(|f| f.since.elapsed() > timeout) {
                    return failed(&mut in_flight, ClientError::timeout("redis did not answer in time; reconnecting"));
                }
            }
        }
    }
}

/// Queues a job's commands for writing, unless its caller has already given up.
fn take(job: Job, out: &mut Vec<u8>, in_flight: &mut VecDeque<InFlight>, now: Instant) {
    if job.reply.is_closed() {
        return;
    }
    if job.replies == 0 {
        let _ = job.reply.send(Ok(Vec::new()));
        return;
    }
    out.extend_from_slice(&job.bytes);
    in_flight.push_back(InFlight {
        remaining: job.replies,
        replies: Vec::with_capacity(job.replies),
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

    fn cmd(args: &[&str]) -> Vec<u8> {
        let list: Vec<Arg<'_>> = args.iter().map(|a| Arg::from(*a)).collect();
        let mut out = Vec::new();
        resp::command(&mut out, &list);
        out
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
    async fn read_command(
        socket: &mut tokio::net::TcpStream,
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
        let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
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
        let first = client.request(cmd(&["PING"]), 1);
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            client.request(cmd(&["SET", "late", "x"]), 1),
        );
        let (first, gave_up) = tokio::join!(first, gave_up);
        assert!(gave_up.is_err(), "the SET's caller timed out");
        assert_eq!(first, Ok(vec![Reply::Simple("OK".into())]));
        let after = client.request(cmd(&["GET", "k"]), 1).await;
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
        let stuck = client.request(cmd(&["PING"]), 1).await;
        assert!(matches!(stuck, Err(ref e) if e.timeout), "{stuck:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "given up after about the timeout"
        );
        // After the backoff a new connection answers.
        let mut answered = None;
        for _ in 0..20 {
            if let Ok(r) = client.request(cmd(&["PING"]), 1).await {
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
        let lost = client.request(cmd(&["INCR", "n"]), 1).await;
        assert!(
            matches!(lost, Err(ref e) if !e.timeout && e.message.contains("closed")),
            "{lost:?}"
        );
        let mut again = None;
        for _ in 0..20 {
            if let Ok(r) = client.request(cmd(&["INCR", "n"]), 1).await {
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
        let e = client
            .request(cmd(&["PING"]), 1)
            .await
            .expect_err("refused");
        assert!(
            e.message.contains("WRONGPASS") && !e.message.contains("pw"),
            "{e}"
        );
        let fast = Instant::now();
        assert!(client.request(cmd(&["PING"]), 1).await.is_err());
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
            client.request(cmd(&["PING"]), 1).await,
            Ok(vec![Reply::Simple("PONG".into())])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            client.request(cmd(&["PING"]), 1).await,
            Ok(vec![Reply::Simple("PONG".into())]),
            "answered on a new connection"
        );
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the connection that sent an unasked-for reply was dropped"
        );
    }
}
