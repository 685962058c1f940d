//! How the store reaches Redis, through redis-rs: one multiplexed connection to a standalone
//! server or to the master a Sentinel names ([`Link`]), or a Cluster connection (redis-rs's
//! `cluster-async`, which follows the slot map and reconnects its nodes itself).
//!
//! A [`Link`] connects on the first command (in a task of its own, awaited by every caller
//! that arrives meanwhile, so callers that give up do not cut the attempt short), and is
//! replaced when a command on it fails with a dead connection, times out, or meets a demoted
//! master (`READONLY`), and when the server closes it (its task reports that over RESP3, so
//! Redis 6 or later: a connection closed while idle, by Redis's `timeout`, a proxy, or a
//! Sentinel reconfiguring the old master, costs no command). With Sentinel every new
//! connection asks the Sentinels for the master again, so a failover is followed. A failed
//! attempt is retried after 50 ms, doubling up to 500 ms; until then commands fail at once
//! rather than wait for their timeout. TCP keepalive (60 s idle, 10 s between probes) notices
//! a peer that vanished; TLS is rustls with the system trust store (`SSL_CERT_FILE`).
//!
//! Invariants:
//! - **A caller that gave up never has its command sent later.** redis-rs queues a command in
//!   its connection's channel together with the sender of its reply; the connection task skips
//!   a command whose reply receiver is gone (the caller's future was dropped: its timeout
//!   passed, or it was cancelled) when it takes it from the channel, before writing it. A
//!   command is never moved to another connection: when a connection dies, the commands on it
//!   fail with it (redis-rs's multiplexed connection does not retry). Cluster retries a
//!   command after a redirect (`MOVED`, `ASK`) or a lost node connection only while its caller
//!   still waits, and not at all once the caller is gone (checked before each retry). After a
//!   lost node connection a command the node had already run may run twice: every write here
//!   is a compare-and-swap or counts at most one more hit, and a doubled lease grab only
//!   delays the call until the lease's expiry.
//! - **Bounded waits and queues**: a connection attempt is bounded by the timeout (the
//!   caller's own deadline bounds the command, see `RedisStore::run`); redis-rs's command
//!   channel holds at most [`PIPELINE_BUFFER`] commands per connection, further callers wait
//!   for room within their own timeout.
//! - No URL, password or argument reaches an error message or a log line (errors carry
//!   redis-rs's kind and the server's own words).
//! - Not bounded: the size of one reply. redis-rs reads a reply whole however large the
//!   server says it is (nesting is bounded); the store's replies are a session, a few numbers
//!   or `OK`, and the server is one the operator runs, reached over TLS when configured.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    ProtocolVersion, PushInfo, PushKind, RedisConnectionInfo, RedisError, RedisFuture, TlsMode,
    Value,
};

use crate::{RedisConfig, RedisEndpoint};
use tokio::time::Instant;

/// First wait after a failed connection attempt; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Commands waiting in one connection's channel before more callers wait for room.
pub(crate) const PIPELINE_BUFFER: usize = 1024;

/// Where new connections come from.
pub(crate) enum Source {
    /// One server.
    Server(redis::Client),
    /// The master a Sentinel names now (asked again for every connection).
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// A self-replacing connection to one server (standalone, or a Sentinel's master).
pub(crate) struct Link {
    source: Source,
    config: AsyncConnectionConfig,
    timeout: Duration,
    state: Mutex<State>,
}

/// A connection attempt, awaited by every caller that needs it.
type Attempt = Shared<BoxFuture<'static, Result<(MultiplexedConnection, u64), RedisError>>>;

struct State {
    phase: Phase,
    backoff: Duration,
    /// Numbers connections, so a failure reported on an old one does not drop a new one.
    next_id: u64,
}

enum Phase {
    /// No connection: the next caller starts one.
    Idle,
    Connecting(u64, Attempt),
    Up(u64, MultiplexedConnection),
    /// The last attempt failed: callers hear `why` until `until`.
    Down {
        until: Instant,
        why: RedisError,
    },
}

impl Link {
    pub(crate) fn new(source: Source, timeout: Duration) -> Arc<Link> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None)
            .set_pipeline_buffer_size(PIPELINE_BUFFER);
        Arc::new(Link {
            source,
            config,
            timeout,
            state: Mutex::new(State {
                phase: Phase::Idle,
                backoff: MIN_BACKOFF,
                next_id: 0,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current connection and its number, connecting first if there is none.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<(MultiplexedConnection, u64), RedisError> {
        let attempt = {
            let mut state = self.state();
            match &state.phase {
                Phase::Up(id, conn) => return Ok((conn.clone(), *id)),
                Phase::Connecting(_, attempt) => attempt.clone(),
                Phase::Down { until, why } if Instant::now() < *until => return Err(why.clone()),
                Phase::Idle | Phase::Down { .. } => self.start(&mut state),
            }
        };
        attempt.await
    }

    /// Starts a connection attempt in a task of its own (it runs to its end even when every
    /// caller waiting for it gives up).
    fn start(self: &Arc<Self>, state: &mut State) -> Attempt {
        let id = state.next_id;
        state.next_id += 1;
        let link = self.clone();
        // The connection's task reports its end (the server closed it, even while idle), so
        // the next caller connects again instead of failing on a dead connection.
        let watcher = Arc::downgrade(self);
        let config = self.config.clone().set_push_sender(move |info: PushInfo| {
            if info.kind == PushKind::Disconnection
                && let Some(link) = watcher.upgrade()
            {
                link.replace(id);
            }
            Ok::<(), std::convert::Infallible>(())
        });
        let attempt: Attempt = async move {
            let opened = match tokio::time::timeout(link.timeout, link.open(&config)).await {
                Ok(opened) => opened,
                Err(_) => Err(RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                ))),
            };
            link.settle(id, &opened);
            opened.map(|conn| (conn, id))
        }
        .boxed()
        .shared();
        tokio::spawn(attempt.clone());
        state.phase = Phase::Connecting(id, attempt.clone());
        attempt
    }

    async fn open(
        &self,
        config: &AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, RedisError> {
        match &self.source {
            Source::Server(client) => {
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await
            }
            Source::Sentinel(sentinel) => {
                let master = sentinel.lock().await.async_get_client().await?;
                master
                    .get_multiplexed_async_connection_with_config(config)
                    .await
            }
        }
    }

    /// Records how attempt `id` ended.
    fn settle(&self, id: u64, opened: &Result<MultiplexedConnection, RedisError>) {
        let mut state = self.state();
        if !matches!(state.phase, Phase::Connecting(current, _) if current == id) {
            return;
        }
        state.phase = match opened {
            Ok(conn) => {
                state.backoff = MIN_BACKOFF;
                Phase::Up(id, conn.clone())
            }
            Err(why) => {
                let wait = state.backoff;
                state.backoff = (wait * 2).min(MAX_BACKOFF);
                tracing::warn!(error = %describe(why), retry_in_ms = wait.as_millis() as u64, "redis connection failed");
                Phase::Down {
                    until: Instant::now() + wait,
                    why: why.clone(),
                }
            }
        };
    }

    /// Connection `id` is of no more use (dead, stuck, or no longer the master): the next
    /// caller connects again.
    pub(crate) fn replace(&self, id: u64) {
        let mut state = self.state();
        if matches!(state.phase, Phase::Up(current, _) if current == id) {
            tracing::debug!("redis connection closed or replaced");
            state.phase = Phase::Idle;
        }
    }
}

/// Idle time before the first TCP keepalive probe, and the time between probes (a peer that
/// vanished is noticed even with nothing in flight).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Retries of a Cluster command after a redirect or a lost node connection (within the
/// caller's deadline, and only while the caller waits).
const CLUSTER_RETRIES: u32 = 3;

/// What [`open`] made of a configuration.
pub(crate) enum Opened {
    /// Boxed: built once at start, and much larger than a Cluster handle.
    Single(Box<Source>),
    Cluster(ClusterConnection),
}

/// Builds the clients `config` names (nothing is connected yet: a Cluster connects in the
/// background, a [`Link`] on its first command). Errors name the problem, never a URL or a
/// password.
pub(crate) fn open(config: &RedisConfig) -> Result<Opened, String> {
    let tcp = TcpSettings::default().set_nodelay(true).set_keepalive(
        socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL),
    );
    let login = |mut info: RedisConnectionInfo| -> Result<RedisConnectionInfo, String> {
        if let Some(password) = &config.password {
            info = info.set_password(password.expose());
        }
        if let Some(user) = &config.username {
            info = info.set_username(user);
        }
        if info.username().is_some() && info.password().is_none() {
            return Err("a Redis username needs a password".into());
        }
        Ok(info)
    };
    let endpoint = |url: &str| -> Result<ConnectionInfo, String> {
        let info = node(url, config.tls)?.set_tcp_settings(tcp.clone());
        let redis = login(info.redis_settings().clone())?;
        Ok(info.set_redis_settings(redis))
    };
    // RESP3 (Redis 6 or later) on a Link's connections: its task then reports a connection the
    // server closed (see `Link::start`).
    let resp3 = |info: ConnectionInfo| {
        let redis = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        info.set_redis_settings(redis)
    };
    if config.tls || has_tls(&config.endpoint) {
        // redis-rs builds its rustls configuration with the process's provider: the aws-lc-rs
        // one the workspace already builds (an error only means one is installed already).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    match &config.endpoint {
        RedisEndpoint::Url(url) => {
            let client =
                redis::Client::open(resp3(endpoint(url.expose())?)).map_err(|e| describe(&e))?;
            Ok(Opened::Single(Box::new(Source::Server(client))))
        }
        RedisEndpoint::Cluster(nodes) => {
            let nodes = nodes
                .iter()
                .map(|n| endpoint(n))
                .collect::<Result<Vec<_>, _>>()?;
            let client = ClusterClientBuilder::new(nodes)
                .tcp_settings(tcp)
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .retries(CLUSTER_RETRIES)
                .build()
                .map_err(|e| format!("cluster: {}", describe(&e)))?;
            Ok(Opened::Cluster(
                client.get_pending_async_connection_with_config(ClusterConfig::default()),
            ))
        }
        RedisEndpoint::Sentinel { nodes, service } => {
            let sentinels = nodes
                .iter()
                .map(|n| node(n, false).map(|i| i.set_tcp_settings(tcp.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            let mut master = SentinelNodeConnectionInfo::default()
                .set_tcp_settings(tcp)
                .set_redis_connection_info(
                    login(RedisConnectionInfo::default())?.set_protocol(ProtocolVersion::RESP3),
                );
            if config.tls {
                master = master.set_tls_mode(TlsMode::Secure);
            }
            let client =
                SentinelClient::build(sentinels, service, Some(master), SentinelServerType::Master)
                    .map_err(|e| format!("sentinel: {}", describe(&e)))?;
            Ok(Opened::Single(Box::new(Source::Sentinel(
                tokio::sync::Mutex::new(client),
            ))))
        }
    }
}

/// Whether any URL of `endpoint` asks for TLS.
fn has_tls(endpoint: &RedisEndpoint) -> bool {
    let tls = |u: &str| u.starts_with("rediss://");
    match endpoint {
        RedisEndpoint::Url(url) => tls(url.expose()),
        RedisEndpoint::Cluster(nodes) | RedisEndpoint::Sentinel { nodes, .. } => {
            nodes.iter().any(|n| tls(n))
        }
    }
}

/// One `redis://` or `rediss://` URL (`tls` forces TLS): host, port, database and any login.
fn node(url: &str, tls: bool) -> Result<ConnectionInfo, String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("the URL is not a redis:// or rediss:// URL".into());
    }
    if url.contains(['?', '#']) {
        return Err("the URL may not have a query or fragment".into());
    }
    let info = url
        .into_connection_info()
        .map_err(|_| "the URL is not a valid redis:// URL (host, port, database)".to_string())?;
    let addr = match info.addr().clone() {
        ConnectionAddr::Tcp(host, port) if tls => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        },
        ConnectionAddr::Unix(_) => return Err("the URL is not a redis:// or rediss:// URL".into()),
        addr => addr,
    };
    Ok(info.set_addr(addr))
}

/// Whether `e` means the connection it came from should be replaced: it died, or it reached
/// a master that was demoted (Sentinel failover).
pub(crate) fn is_broken(e: &RedisError) -> bool {
    e.is_unrecoverable_error()
        || e.is_timeout()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

/// A redis-rs error in words safe to log: the server's own reply (`WRONGPASS ...`,
/// `NOSCRIPT ...`), or the kind of failure; never an address or a password.
pub(crate) fn describe(e: &RedisError) -> String {
    if let Some(code) = e.code() {
        return match e.detail() {
            Some(detail) => format!("{code} {detail}"),
            None => code.to_string(),
        };
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_io_error() {
        return match e.kind() {
            redis::ErrorKind::Io if e.is_connection_refusal() => "connection refused".into(),
            _ if e.is_connection_dropped() => "connection closed".into(),
            _ => "I/O error".into(),
        };
    }
    e.category().to_string()
}

/// A connection as the store uses it: to one server, or to a Cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use resetline_engine::Secret;

    use super::*;

    fn config(url: &str, username: Option<&str>, password: Option<&str>) -> RedisConfig {
        RedisConfig {
            endpoint: RedisEndpoint::Url(Secret::new(url.to_string())),
            password: password.map(|p| Secret::new(p.to_string())),
            username: username.map(str::to_string),
            tls: false,
            key_prefix: "t:".into(),
            timeout: Duration::from_millis(500),
            ended_call_ttl: Duration::from_secs(60),
        }
    }

    /// The login a server client would use.
    fn login(config: &RedisConfig) -> (Option<String>, Option<String>, i64) {
        let Ok(Opened::Single(source)) = open(config) else {
            panic!("a server client")
        };
        let Source::Server(client) = *source else {
            panic!("a server client")
        };
        let info = client.get_connection_info().redis_settings();
        (
            info.username().map(str::to_string),
            info.password().map(str::to_string),
            info.db(),
        )
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        for (url, why) in [
            ("http://h", "not a redis://"),
            ("redis://h?db=1", "query"),
            ("redis://h#insecure", "fragment"),
            ("redis://h:sekrit", "not a valid"),
            ("redis://h/sekrit", "not a valid"),
            ("redis://[::1:6379", "not a valid"),
        ] {
            let Err(e) = open(&config(url, None, None)) else {
                panic!("{url}: accepted")
            };
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("sekrit"), "{url}: {e}");
        }
    }

    #[test]
    fn a_configured_login_replaces_the_urls_and_a_username_needs_a_password() {
        assert_eq!(
            login(&config("redis://u%40x:p%3Aw@127.0.0.1:6380/3", None, None)),
            (Some("u@x".into()), Some("p:w".into()), 3)
        );
        assert_eq!(
            login(&config("redis://u:url-pw@h", Some("app"), None)),
            (Some("app".into()), Some("url-pw".into()), 0)
        );
        assert_eq!(
            login(&config("redis://u:url-pw@h", None, Some("from-env"))),
            (Some("u".into()), Some("from-env".into()), 0)
        );
        for (url, user) in [("redis://h", Some("app")), ("redis://app@h", None)] {
            let Err(e) = open(&config(url, user, None)) else {
                panic!("{url}: accepted")
            };
            assert!(e.contains("username needs a password"), "{url}: {e}");
        }
    }
}
