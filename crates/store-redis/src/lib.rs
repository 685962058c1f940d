//! Shared state on Redis, so any replica serves any webhook of any call: call sessions
//! ([`SessionStore`]), windowed counters for send caps ([`Counters`]), PIN lockouts
//! ([`Lockouts`]) and per-call leases ([`CallLeases`]).
//!
//! Invariants:
//! - **Every write that must not race is one Lua script on one hash slot**: a session save is
//!   a compare-and-swap on its revision (with its expiry), a counter hit counts only when
//!   allowed and never loses an increment, a lockout update is a compare-and-swap on the
//!   account's version (the rule itself stays [`LockState::after_failure`]), a lease is
//!   `SET NX PX` with a token unique to its holder and is released only by that holder.
//! - **Two round trips per webhook**: taking a call's lease also reads its session (one
//!   pipeline), and the session's save also gives the lease back (one script).
//! - **Cluster-ready keys**: a script touches one key, or a call's keys, which share the hash
//!   tag `{CallSid}` so they live on one slot.
//! - **Nothing secret is stored**: sessions are the same versioned serialized bytes as the
//!   memory store (`resetline_store::encode`/`decode`, which refuse a newer format); they hold
//!   only keyed hashes of secrets, counters and lockouts are keyed by numbers and account ids.
//! - **Never waits longer than its timeout**: every command is bounded; a slow or unreachable
//!   Redis is a [`StoreError::Backend`] (the caller hears an apology), and `healthy()` turns
//!   false until a command or the periodic health check succeeds again.

mod batch;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisResult, Script};
use resetline_engine::{
    BackendError, BoxFuture, CallLeases, Clock, Counters, LockPolicy, LockState, Lockouts, Random,
    Secret, Session, SessionStore, StoreError,
};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` (TLS). A `Secret` because it may carry a password.
    pub url: Secret,
    /// Password (and optional username) given apart from the URL, from the environment.
    pub password: Option<Secret>,
    /// Username for Redis ACLs (with `password`).
    pub username: Option<String>,
    /// Use TLS even when the URL says `redis://`.
    pub tls: bool,
    /// Prefix of every key (e.g. `resetline:`); must not contain `{` or `}`.
    pub key_prefix: String,
    /// Longest wait for one command (connecting included).
    pub timeout: Duration,
}

/// Redis could not be configured (bad URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfigError(pub String);

impl fmt::Display for RedisConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis: {}", self.0)
    }
}

impl std::error::Error for RedisConfigError {}

/// Sessions, counters, lockouts and leases on one Redis (cheap to clone: one shared,
/// multiplexed, self-reconnecting connection; concurrent callers' commands go out as one
/// pipeline, see `batch.rs`).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: batch::Batched,
    prefix: String,
    timeout: Duration,
    healthy: AtomicBool,
    clock: Arc<dyn Clock>,
    /// Makes counter members unique across replicas (random per process) and hits.
    instance: String,
    seq: AtomicU64,
    scripts: Scripts,
}

struct Scripts {
    save: Script,
    hit: Script,
    lock_cas: Script,
    renew: Script,
    release: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("healthy", &self.inner.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Saves a session if its revision is still the expected one; returns the new revision, or 0
/// on a conflict. The value is `<revision>:<serialized session>` (one string: less memory
/// than a hash once the session outgrows a listpack). KEYS[1] session; ARGV expected
/// revision, bytes, ttl ms. With KEYS[2] (the call's lease) and ARGV[4] (the holder's
/// token) it also gives the lease back, saved or not: the request is over either way.
const SAVE: &str = r"
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
local head = redis.call('GETRANGE', KEYS[1], 0, 20)
local cur = 0
if head ~= '' then cur = tonumber(string.match(head, '^(%d+):')) or -1 end
if cur ~= tonumber(ARGV[1]) then return 0 end
local nxt = cur + 1
redis.call('SET', KEYS[1], nxt .. ':' .. ARGV[2], 'PX', ARGV[3])
return nxt
";

/// Sliding-window counter: drops hits older than the window, counts this one only if fewer
/// than the limit remain. KEYS[1] counter; ARGV now ms, window ms, limit, unique member.
const HIT: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return 1
end
return 0
";

/// Writes a lockout state if the account's version is unchanged. KEYS[1] lockout; ARGV
/// expected version, failures, last failure ms, locked until ms.
const LOCK_CAS: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'f', ARGV[2], 'last', ARGV[3], 'until', ARGV[4], 'v', v + 1)
return 1
";

/// Compare-and-expire: only the lease's holder extends it. KEYS[1] lease; ARGV token, ttl ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Compare-and-delete: only the lease's holder releases it. KEYS[1] lease; ARGV token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A failure of backend `what` from a Redis error (no URL or password in the message: the
/// client's errors name the kind and the server's reply).
fn failed(what: &'static str, e: &redis::RedisError) -> StoreError {
    if e.is_timeout() {
        return StoreError::Backend(BackendError::timeout(what));
    }
    StoreError::Backend(BackendError::new(what, format!("redis: {e}")))
}

impl RedisStore {
    /// A store for `config`. Connects lazily (in the background, within the current tokio
    /// runtime): a Redis that is down at start makes the store unhealthy, not the process fail.
    pub fn connect(
        config: &RedisConfig,
        clock: Arc<dyn Clock>,
        random: &dyn Random,
    ) -> Result<Self, RedisConfigError> {
        if config.key_prefix.contains(['{', '}']) {
            return Err(RedisConfigError(
                "key_prefix must not contain `{` or `}` (they mark hash tags)".into(),
            ));
        }
        let mut url = config.url.expose().to_string();
        if config.tls
            && let Some(rest) = url.strip_prefix("redis://")
        {
            url = format!("rediss://{rest}");
        }
        if url.starts_with("rediss://") {
            // The redis client builds its rustls config from the process-wide provider; make
            // sure there is one (aws-lc-rs, as reqwest uses) whatever features others enable.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let mut info = url
            .as_str()
            .into_connection_info()
            .map_err(|_| RedisConfigError("the URL is not a redis:// or rediss:// URL".into()))?;
        if let Some(password) = &config.password {
            let mut settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            if let Some(user) = &config.username {
                settings = settings.set_username(user);
            }
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)
            .map_err(|e| RedisConfigError(format!("cannot use the URL: {e}")))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| RedisConfigError(format!("cannot start the connection: {e}")))?;
        let mut id = [0u8; 8];
        random
            .fill(&mut id)
            .map_err(|_| RedisConfigError("no randomness for the instance id".into()))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn: batch::Batched::start(conn, config.timeout),
                prefix: config.key_prefix.clone(),
                timeout: config.timeout,
                healthy: AtomicBool::new(false),
                clock,
                instance: id.iter().map(|b| format!("{b:02x}")).collect(),
                seq: AtomicU64::new(0),
                scripts: Scripts {
                    save: Script::new(SAVE),
                    hit: Script::new(HIT),
                    lock_cas: Script::new(LOCK_CAS),
                    renew: Script::new(RENEW),
                    release: Script::new(RELEASE),
                },
            }),
        })
    }

    /// Checks Redis now (one PING within the timeout) and records the answer for
    /// [`SessionStore::healthy`].
    pub async fn check(&self) -> bool {
        let mut conn = self.inner.conn.clone();
        let ping = async move { redis::cmd("PING").query_async::<String>(&mut conn).await };
        self.run("sessions", ping).await.is_ok()
    }

    /// Runs [`RedisStore::check`] every `every` until the returned task is aborted; this is
    /// what `/readyz` reads, so readiness costs no round trip per request.
    pub fn start_health_checks(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let was = store.inner.healthy.load(Ordering::Relaxed);
                let now = store.check().await;
                if was != now {
                    if now {
                        tracing::info!("redis reachable");
                    } else {
                        tracing::error!("redis unreachable");
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    fn key(&self, tag: &str, suffix: &str) -> String {
        format!("{}{{{tag}}}{suffix}", self.inner.prefix)
    }

    /// The key of a call's session (for tests and operators).
    pub fn session_key(&self, call_sid: &str) -> String {
        self.key(call_sid, ":session")
    }

    fn lease_key(&self, call_sid: &str) -> String {
        self.key(call_sid, ":lease")
    }

    fn counter_key(&self, key: &str) -> String {
        format!("{}counter:{{{key}}}", self.inner.prefix)
    }

    fn lockout_key(&self, account: &str) -> String {
        format!("{}lockout:{{{account}}}", self.inner.prefix)
    }

    /// Bounds `fut` by the timeout, maps errors, and records health.
    async fn run<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(v)) => {
                self.inner.healthy.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                self.inner.healthy.store(false, Ordering::Relaxed);
                Err(failed(what, &e))
            }
            Err(_) => {
                self.inner.healthy.store(false, Ordering::Relaxed);
                Err(StoreError::Backend(BackendError::timeout(what)))
            }
        }
    }

    async fn load_session(&self, call_sid: &str) -> Result<Option<(Session, u64)>, StoreError> {
        let key = self.session_key(call_sid);
        let mut conn = self.inner.conn.clone();
        let value: Option<Vec<u8>> = self
            .run("sessions", async move {
                redis::cmd("GET").arg(&key).query_async(&mut conn).await
            })
            .await?;
        value.map(|v| stored_session(&v)).transpose()
    }

    /// Saves with the compare-and-swap; with `lease` (the holder's token) gives the call's
    /// lease back in the same script.
    async fn save_session(
        &self,
        session: Session,
        expected: u64,
        ttl_ms: u64,
        lease: Option<&str>,
    ) -> Result<u64, StoreError> {
        let bytes = resetline_store::encode(&session)?;
        let key = self.session_key(&session.call_sid);
        let lease_key = lease.map(|_| self.lease_key(&session.call_sid));
        drop(session);
        let mut conn = self.inner.conn.clone();
        let script = &self.inner.scripts.save;
        let revision: u64 = self
            .run("sessions", async move {
                let mut call = script.key(&key);
                call.arg(expected).arg(bytes).arg(ttl_ms.max(1));
                if let (Some(lease_key), Some(token)) = (lease_key, lease) {
                    call.key(lease_key).arg(token);
                }
                call.invoke_async(&mut conn).await
            })
            .await?;
        if revision == 0 {
            Err(StoreError::Conflict)
        } else {
            Ok(revision)
        }
    }

    async fn lock_state(&self, key: &str) -> Result<(LockState, u64), StoreError> {
        let mut conn = self.inner.conn.clone();
        let (f, last, until, v): (Option<u32>, Option<u64>, Option<u64>, Option<u64>) = self
            .run("lockouts", async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("f")
                    .arg("last")
                    .arg("until")
                    .arg("v")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok((
            LockState {
                failures: f.unwrap_or(0),
                last_failure_ms: last.unwrap_or(0),
                locked_until_ms: until.unwrap_or(0),
            },
            v.unwrap_or(0),
        ))
    }
}

/// A stored `<revision>:<encoded session>` value -> (session, revision).
fn stored_session(value: &[u8]) -> Result<(Session, u64), StoreError> {
    let split = value.iter().position(|&b| b == b':').and_then(|colon| {
        let rev = std::str::from_utf8(&value[..colon]).ok()?.parse().ok()?;
        Some((rev, &value[colon + 1..]))
    });
    let Some((rev, bytes)) = split else {
        return Err(StoreError::Backend(BackendError::new(
            "sessions",
            "stored session has no revision",
        )));
    };
    Ok((resetline_store::decode(bytes)?, rev))
}

impl SessionStore for RedisStore {
    fn load<'a>(
        &'a self,
        call_sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<(Session, u64)>, StoreError>> {
        Box::pin(self.load_session(call_sid))
    }

    fn save(
        &self,
        session: Session,
        expected: u64,
        ttl_ms: u64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.save_session(session, expected, ttl_ms, None))
    }

    /// Not tracked with Redis (counting keys would cost a scan): always 0. Redis's own
    /// keyspace metrics give the figure.
    fn len(&self) -> usize {
        0
    }

    fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }
}

impl Counters for RedisStore {
    fn hit<'a>(
        &'a self,
        key: &'a str,
        window_ms: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = self.inner.clock.now_ms();
        let member = format!(
            "{now}-{}-{}",
            self.inner.instance,
            self.inner.seq.fetch_add(1, Ordering::Relaxed)
        );
        let key = self.counter_key(key);
        let mut conn = self.inner.conn.clone();
        let script = &self.inner.scripts.hit;
        Box::pin(async move {
            let allowed: u8 = self
                .run("counters", async move {
                    script
                        .key(&key)
                        .arg(now)
                        .arg(window_ms.max(1))
                        .arg(limit)
                        .arg(member)
                        .invoke_async(&mut conn)
                        .await
                })
                .await?;
            Ok(allowed == 1)
        })
    }
}

/// How many times a lockout update retries after losing a race to another replica.
const LOCK_RETRIES: usize = 64;

impl Lockouts for RedisStore {
    fn get<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<LockState, StoreError>> {
        Box::pin(async move {
            let key = self.lockout_key(account);
            Ok(self.lock_state(&key).await?.0)
        })
    }

    fn failure<'a>(
        &'a self,
        account: &'a str,
        now_ms: u64,
        policy: LockPolicy,
    ) -> BoxFuture<'a, Result<LockState, StoreError>> {
        Box::pin(async move {
            let key = self.lockout_key(account);
            for _ in 0..LOCK_RETRIES {
                let (state, version) = self.lock_state(&key).await?;
                let next = state.after_failure(now_ms, &policy);
                let mut conn = self.inner.conn.clone();
                let script = &self.inner.scripts.lock_cas;
                let key = key.as_str();
                let written: u8 = self
                    .run("lockouts", async move {
                        script
                            .key(key)
                            .arg(version)
                            .arg(next.failures)
                            .arg(next.last_failure_ms)
                            .arg(next.locked_until_ms)
                            .invoke_async(&mut conn)
                            .await
                    })
                    .await?;
                if written == 1 {
                    return Ok(next);
                }
            }
            Err(StoreError::Conflict)
        })
    }

    fn success<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = self.lockout_key(account);
        let mut conn = self.inner.conn.clone();
        Box::pin(async move {
            self.run("lockouts", async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<u64>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
        })
    }
}

impl CallLeases for RedisStore {
    fn try_acquire<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let key = self.lease_key(call_sid);
        let mut conn = self.inner.conn.clone();
        Box::pin(async move {
            let set: Option<String> = self
                .run("call lease", async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(token)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms.max(1))
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            Ok(set.is_some())
        })
    }

    fn renew<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let key = self.lease_key(call_sid);
        let mut conn = self.inner.conn.clone();
        let script = &self.inner.scripts.renew;
        Box::pin(async move {
            let renewed: u8 = self
                .run("call lease", async move {
                    script
                        .key(key)
                        .arg(token)
                        .arg(ttl_ms.max(1))
                        .invoke_async(&mut conn)
                        .await
                })
                .await?;
            Ok(renewed == 1)
        })
    }

    fn release<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = self.lease_key(call_sid);
        let mut conn = self.inner.conn.clone();
        let script = &self.inner.scripts.release;
        Box::pin(async move {
            self.run("call lease", async move {
                script
                    .key(key)
                    .arg(token)
                    .invoke_async::<u8>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
        })
    }

    fn acquire_and_load<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Option<(Session, u64)>>, StoreError>> {
        let lease = self.lease_key(call_sid);
        let session = self.session_key(call_sid);
        let mut conn = self.inner.conn.clone();
        Box::pin(async move {
            // One pipeline, not a script: `SET NX` then `GET` run in order, and the session
            // read after the lease was taken is what a separate read would see (a writer
            // without the lease still loses the save's compare-and-swap). A script would cost
            // Redis several times the CPU of the two commands.
            let (taken, value): (Option<String>, Option<Vec<u8>>) = self
                .run("call lease", async move {
                    redis::pipe()
                        .cmd("SET")
                        .arg(lease)
                        .arg(token)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms.max(1))
                        .cmd("GET")
                        .arg(session)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            if taken.is_none() {
                return Ok(None);
            }
            match value.map(|v| stored_session(&v)).transpose() {
                Ok(loaded) => Ok(Some(loaded)),
                Err(e) => {
                    let _ = self.release(call_sid, token).await;
                    Err(e)
                }
            }
        })
    }

    fn save_and_release<'a>(
        &'a self,
        session: Session,
        expected: u64,
        ttl_ms: u64,
        token: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.save_session(session, expected, ttl_ms, Some(token)))
    }
}

#[cfg(feature = "testing")]
pub mod testing;
