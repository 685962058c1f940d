//! Shared state on Redis, so any replica serves any webhook of any call: call sessions
//! ([`SessionStore`]), windowed counters for send caps ([`Counters`]), PIN lockouts
//! ([`Lockouts`]) and per-call leases ([`CallLeases`]), on one Redis server, a Sentinel's
//! master or a Redis Cluster ([`RedisEndpoint`]), through redis-rs (`link.rs`).
//!
//! Invariants:
//! - **Every write that must not race is one Lua script on one hash slot**: a session save is
//!   a compare-and-swap on its revision (with its expiry), a counter hit counts only when
//!   allowed and never loses an increment, a lockout update is a compare-and-swap on the
//!   account's version (the rules themselves stay [`LockState::after_failure`] and
//!   [`LockState::after_give_back`]), a lease is
//!   `SET NX PX` with a token unique to its holder and is released only by that holder.
//!   Scripts run by SHA-1 (`EVALSHA`), sent whole on `NOSCRIPT` (redis-rs's `Script`).
//! - **Two round trips per webhook**: taking a call's lease also reads its session (one
//!   pipeline), and the session's save also gives the lease back (one script); a first
//!   webhook that finds no session asks once more whether the call already ended.
//! - **An ended call is remembered**: the save of an ended session also writes
//!   `<prefix>{CallSid}:ended` with its own expiry (`ended_call_ttl`, well past the session's),
//!   in the same script, so a replayed first webhook of the call is refused.
//! - **Nothing is kept for ever by accident**: counter keys expire with their window, lockout
//!   hashes when their state no longer matters ([`LockState::expires_at`]); only a
//!   suspension has no expiry, because it lasts until an operator clears it.
//! - **Cluster-safe keys**: a script or pipeline touches one key, or a call's keys, which
//!   share the hash tag `{CallSid}` so they live on one slot.
//! - **Nothing secret is stored**: sessions are the same versioned serialized bytes as the
//!   memory store (`resetline_store::encode`/`decode`, which refuse a newer format); they hold
//!   only keyed hashes of secrets, counters and lockouts are keyed by numbers and account ids.
//! - **Never waits longer than its timeout**: every operation (connecting, a script's
//!   `EVALSHA` and its `EVAL` fallback included) has one deadline; a slow or unreachable Redis
//!   is a [`StoreError::Backend`] (the caller hears an apology), and `healthy()` turns false
//!   until a command or the periodic health check succeeds again.
//!
//! # Keys
//!
//! | key | value | expiry |
//! | --- | --- | --- |
//! | `<prefix>{CallSid}:session` | `<revision>:<encoded session>`, one string | the session's ttl (PX) |
//! | `<prefix>{CallSid}:lease` | the holder's token | the lease ttl (PX) |
//! | `<prefix>{CallSid}:ended` | `1` | `store.ended_call_ttl_s` |
//! | `<prefix>counter:{key}` | sorted set of hit times | the window |
//! | `<prefix>lockout:{account}` | hash: `f` failures, `last`, `until`, `v` version | [`LockState::expires_at`]; none while suspended |
//!
//! Health: `serve` runs [`RedisStore::start_health_checks`] every second; `/readyz` reads the
//! cached flag, so readiness costs no round trip per request.

mod link;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use link::{Conn, Link};
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, RedisError, Script, ScriptInvocation, Value};
use resetline_engine::{
    BackendError, BoxFuture, CallLeases, Clock, Counters, LockPolicy, LockState, Lockouts, Random,
    Reservation, Secret, Session, SessionStore, StoreError,
};

/// Which Redis to use.
#[derive(Debug, Clone)]
pub enum RedisEndpoint {
    /// One server (or a managed primary): `redis://host:port/db` or `rediss://` (TLS). A
    /// `Secret` because it may carry a password.
    Url(Secret),
    /// A Redis Cluster, found through any of these nodes (`redis://host:port`, `rediss://`).
    Cluster(Vec<String>),
    /// The master of `service`, as the Sentinels at `nodes` (`redis://host:port`) name it now.
    Sentinel {
        /// The Sentinels.
        nodes: Vec<String>,
        /// The monitored master's name (`sentinel monitor <service> ...`).
        service: String,
    },
}

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The server, Cluster or Sentinel-managed master.
    pub endpoint: RedisEndpoint,
    /// Password given apart from the URL (from the environment); replaces the URL's.
    pub password: Option<Secret>,
    /// Username for Redis ACLs; replaces the URL's, and needs a password (here or in the URL).
    pub username: Option<String>,
    /// Use TLS even when the URL says `redis://`.
    pub tls: bool,
    /// Prefix of every key (e.g. `resetline:`); must not contain `{` or `}`.
    pub key_prefix: String,
    /// Longest wait for one operation (connecting included).
    pub timeout: Duration,
    /// How long an ended call is remembered (its `:ended` key), after its last save.
    pub ended_call_ttl: Duration,
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

/// Sessions, counters, lockouts and leases on Redis (cheap to clone: one shared, multiplexed,
/// self-replacing connection, or one Cluster connection; concurrent callers' commands share
/// writes).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

/// What commands go through.
enum Backend {
    /// A standalone server or a Sentinel's master.
    Single(Arc<Link>),
    Cluster(ClusterConnection),
}

struct Inner {
    backend: Backend,
    prefix: String,
    /// What each kind of key starts with, up to its hash tag: `<prefix>{`, `<prefix>counter:{`,
    /// `<prefix>lockout:{`.
    opens: KeyOpens,
    timeout: Duration,
    /// Expiry of a call's `:ended` key, ms.
    ended_ttl_ms: u64,
    healthy: AtomicBool,
    clock: Arc<dyn Clock>,
    /// Makes counter members unique across replicas (random per process) and hits.
    instance: String,
    seq: AtomicU64,
    scripts: Scripts,
}

struct KeyOpens {
    call: String,
    counter: String,
    lockout: String,
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

/// Saves a session if its revision is still the expected one: 1 saved, 0 a conflict. The
/// value is `<revision>:<serialized session>` (one string: less memory than a hash once the
/// session outgrows a listpack), built by the caller with the next revision, so the script
/// compares two short strings and stores its argument as it is (no number formatting and no
/// concatenation of the session inside Lua). KEYS[1] session; ARGV expected revision (decimal),
/// value, ttl ms. With KEYS[2] (the call's lease) and ARGV[4] (the holder's token) it also
/// gives the lease back, saved or not: the request is over either way. With KEYS[3] (the
/// call's `:ended` key) and ARGV[5] (its ttl ms), for a session whose call ended, a save also
/// marks the call ended.
const SAVE: &str = r"
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
local head = redis.call('GETRANGE', KEYS[1], 0, 20)
local cur = '0'
if head ~= '' then cur = string.match(head, '^(%d+):') end
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if KEYS[3] then redis.call('SET', KEYS[3], '1', 'PX', ARGV[5]) end
return 1
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

/// Writes a lockout state if the account's version is unchanged, with its expiry. KEYS[1]
/// lockout; ARGV expected version, failures, last failure ms, locked until ms, ttl ms (`0`:
/// none, for a suspension).
const LOCK_CAS: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'f', ARGV[2], 'last', ARGV[3], 'until', ARGV[4], 'v', v + 1)
if ARGV[5] == '0' then redis.call('PERSIST', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return 1
";

/// How long Redis keeps a lockout state written at `now`: until it no longer matters
/// ([`LockState::expires_at`]: the 12 h reset, or the end of its wait if later), `0` for ever
/// (a suspension lasts until an operator clears it).
fn lock_ttl(state: &LockState, now_ms: u64, policy: &LockPolicy) -> u64 {
    state
        .expires_at(policy)
        .map_or(0, |at| at.saturating_sub(now_ms).max(1))
}

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

/// What closes the hash tag of a call's session key, and the rest of the key.
const SESSION: &str = "}:session";
/// What closes the hash tag of a call's lease key, and the rest of the key.
const LEASE: &str = "}:lease";
/// What closes the hash tag of a call's ended-call key, and the rest of the key.
const ENDED: &str = "}:ended";

/// `SET <lease> <token> NX PX <ttl>`: takes a call's lease if nobody holds it.
fn take_lease(lease: &str, token: &str, ttl_ms: u64) -> redis::Cmd {
    let mut set = redis::cmd("SET");
    set.arg(lease)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms.max(1));
    set
}

/// `+OK` (a `SET` that happened) or `nil` (a `SET NX` that did not).
fn set_done(what: &'static str, reply: &Value) -> Result<bool, StoreError> {
    match reply {
        Value::Okay => Ok(true),
        Value::SimpleString(ok) if ok == "OK" => Ok(true),
        Value::Nil => Ok(false),
        _ => Err(StoreError::Backend(BackendError::new(
            what,
            "redis: unexpected reply",
        ))),
    }
}

/// One command, pipeline or script run by [`RedisStore::run`].
enum Request<'a> {
    Cmd(redis::Cmd),
    Pipe(redis::Pipeline),
    Script(ScriptInvocation<'a>),
}

impl Request<'_> {
    async fn send<T: FromRedisValue>(&self, conn: &mut Conn) -> Result<T, RedisError> {
        match self {
            Request::Cmd(cmd) => cmd.query_async(conn).await,
            Request::Pipe(pipe) => pipe.query_async(conn).await,
            Request::Script(script) => script.invoke_async(conn).await,
        }
    }
}

/// No connection was used (yet) by a request.
const NO_CONNECTION: u64 = u64::MAX;

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
        let backend = match link::open(config).map_err(RedisConfigError)? {
            link::Opened::Single(source) => Backend::Single(Link::new(*source, config.timeout)),
            link::Opened::Cluster(cluster) => Backend::Cluster(cluster),
        };
        let mut id = [0u8; 8];
        random
            .fill(&mut id)
            .map_err(|_| RedisConfigError("no randomness for the instance id".into()))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                backend,
                prefix: config.key_prefix.clone(),
                opens: KeyOpens {
                    call: format!("{}{{", config.key_prefix),
                    counter: format!("{}counter:{{", config.key_prefix),
                    lockout: format!("{}lockout:{{", config.key_prefix),
                },
                timeout: config.timeout,
                ended_ttl_ms: u64::try_from(config.ended_call_ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
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

    /// Checks Redis now (one PING within the timeout, on every Cluster master) and records the
    /// answer for [`SessionStore::healthy`]. A connection the server closed while idle (its
    /// `timeout`, a proxy's idle limit) fails one PING: a second one, on a new connection,
    /// decides.
    pub async fn check(&self) -> bool {
        let ping = || self.run::<Value>("sessions", Request::Cmd(redis::cmd("PING")));
        ping().await.is_ok() || ping().await.is_ok()
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

    /// `<prefix><kind>{<tag>}<suffix>` (`open` is `<prefix><kind>{`, `close` the `}` and the
    /// suffix): the braces make `tag` the hash tag, so a call's keys (or one account's, one
    /// counter's) share a cluster slot.
    fn key(open: &str, tag: &str, close: &str) -> String {
        [open, tag, close].concat()
    }

    /// The key of a call's session (for tests and operators).
    pub fn session_key(&self, call_sid: &str) -> String {
        Self::key(&self.inner.opens.call, call_sid, SESSION)
    }

    /// The key of a call's lease (for tests and operators).
    pub fn lease_key(&self, call_sid: &str) -> String {
        Self::key(&self.inner.opens.call, call_sid, LEASE)
    }

    /// The key that marks a call ended (for tests and operators).
    pub fn ended_key(&self, call_sid: &str) -> String {
        Self::key(&self.inner.opens.call, call_sid, ENDED)
    }

    fn counter(&self, key: &str) -> String {
        Self::key(&self.inner.opens.counter, key, "}")
    }

    fn lockout(&self, account: &str) -> String {
        Self::key(&self.inner.opens.lockout, account, "}")
    }

    /// Runs `request` within the timeout (connecting included), maps errors and records
    /// health: any failure marks Redis unhealthy, and a connection that died, stalled past the
    /// timeout or reached a demoted master is replaced.
    async fn run<T: FromRedisValue>(
        &self,
        what: &'static str,
        request: Request<'_>,
    ) -> Result<T, StoreError> {
        let used = AtomicU64::new(NO_CONNECTION);
        let attempt = async {
            let mut conn = match &self.inner.backend {
                Backend::Single(link) => {
                    let (conn, id) = link.get().await?;
                    used.store(id, Ordering::Relaxed);
                    Conn::Single(conn)
                }
                Backend::Cluster(cluster) => Conn::Cluster(cluster.clone()),
            };
            request.send(&mut conn).await
        };
        let outcome = tokio::time::timeout(self.inner.timeout, attempt).await;
        if let Ok(Ok(value)) = outcome {
            self.inner.healthy.store(true, Ordering::Relaxed);
            return Ok(value);
        }
        self.inner.healthy.store(false, Ordering::Relaxed);
        let replace = match &outcome {
            Err(_) => true,
            Ok(Err(e)) => link::is_broken(e),
            Ok(Ok(_)) => false,
        };
        let id = used.load(Ordering::Relaxed);
        if let (true, Backend::Single(link), false) =
            (replace, &self.inner.backend, id == NO_CONNECTION)
        {
            link.replace(id);
        }
        Err(StoreError::Backend(match outcome {
            Ok(Err(e)) if !e.is_timeout() => {
                BackendError::new(what, format!("redis: {}", link::describe(&e)))
            }
            _ => BackendError::timeout(what),
        }))
    }

    async fn load_session(&self, call_sid: &str) -> Result<Option<(Session, u64)>, StoreError> {
        let mut get = redis::cmd("GET");
        get.arg(self.session_key(call_sid));
        let value: Option<Vec<u8>> = self.run("sessions", Request::Cmd(get)).await?;
        value.map(|v| stored_session(&v)).transpose()
    }

    /// Saves with the compare-and-swap; with `lease` (the holder's token) gives the call's
    /// lease back in the same script.
    async fn save_session(
        &self,
        mut session: Session,
        expected: u64,
        ttl_ms: u64,
        lease: Option<&str>,
    ) -> Result<u64, StoreError> {
        let encoded = resetline_store::encode(&session)?;
        let ended = session.ended.is_some();
        // Only the call id is kept (for the keys) while the script runs.
        let call_sid = std::mem::take(&mut session.call_sid);
        drop(session);
        let next = expected.checked_add(1).ok_or_else(|| {
            StoreError::Backend(BackendError::new(
                "sessions",
                "the session's revision cannot go higher",
            ))
        })?;
        let mut value = format!("{next}:").into_bytes();
        value.extend_from_slice(&encoded);
        drop(encoded);
        let mut save = self.inner.scripts.save.prepare_invoke();
        save.key(self.session_key(&call_sid))
            .arg(expected)
            .arg(value)
            .arg(ttl_ms.max(1));
        // Without a lease: the session's key and the first three arguments; the lease's key
        // and an empty token (no holder's) only when the ended call is marked too.
        if lease.is_some() || ended {
            save.key(self.lease_key(&call_sid))
                .arg(lease.unwrap_or_default());
        }
        if ended {
            save.key(self.ended_key(&call_sid))
                .arg(self.inner.ended_ttl_ms);
        }
        let saved: i64 = self.run("sessions", Request::Script(save)).await?;
        if saved == 1 {
            Ok(next)
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn lock_state(&self, key: &str) -> Result<(LockState, u64), StoreError> {
        let mut get = redis::cmd("HMGET");
        get.arg(key).arg("f").arg("last").arg("until").arg("v");
        let fields: Vec<Option<Vec<u8>>> = self.run("lockouts", Request::Cmd(get)).await?;
        let mut numbers = [0u64; 4];
        for (slot, field) in numbers.iter_mut().zip(fields) {
            if let Some(text) = field {
                *slot = std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| {
                        StoreError::Backend(BackendError::new(
                            "lockouts",
                            "redis: lockout field is not a number",
                        ))
                    })?;
            }
        }
        let [failures, last, until, version] = numbers;
        Ok((
            LockState {
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
                last_failure_ms: last,
                locked_until_ms: until,
            },
            version,
        ))
    }

    /// Applies `rule` to an account's lockout state as a compare-and-swap on its version
    /// (retried when another replica wrote first), with the expiry of the new state.
    async fn update_lock(
        &self,
        account: &str,
        now_ms: u64,
        policy: LockPolicy,
        rule: impl Fn(LockState) -> LockState,
    ) -> Result<LockState, StoreError> {
        let key = self.lockout(account);
        for _ in 0..LOCK_RETRIES {
            let (state, version) = self.lock_state(&key).await?;
            let next = rule(state);
            if next == state {
                return Ok(next);
            }
            let mut cas = self.inner.scripts.lock_cas.prepare_invoke();
            cas.key(&key)
                .arg(version)
                .arg(next.failures)
                .arg(next.last_failure_ms)
                .arg(next.locked_until_ms)
                .arg(lock_ttl(&next, now_ms, &policy));
            let written: i64 = self.run("lockouts", Request::Script(cas)).await?;
            if written == 1 {
                return Ok(next);
            }
        }
        Err(StoreError::Conflict)
    }

    /// Runs a lease script (`renew`, `release`) for the holder `token`: 1 done, 0 not the
    /// holder.
    async fn lease_script(
        &self,
        script: &Script,
        call_sid: &str,
        token: &str,
        ttl_ms: Option<u64>,
    ) -> Result<i64, StoreError> {
        let mut run = script.prepare_invoke();
        run.key(self.lease_key(call_sid)).arg(token);
        if let Some(ttl) = ttl_ms {
            run.arg(ttl.max(1));
        }
        self.run("call lease", Request::Script(run)).await
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

    fn ended<'a>(&'a self, call_sid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(self.ended_key(call_sid));
            let found: i64 = self.run("sessions", Request::Cmd(exists)).await?;
            Ok(found == 1)
        })
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
        Box::pin(async move {
            let mut hit = self.inner.scripts.hit.prepare_invoke();
            hit.key(self.counter(key))
                .arg(now)
                .arg(window_ms.max(1))
                .arg(limit)
                .arg(member);
            let allowed: i64 = self.run("counters", Request::Script(hit)).await?;
            Ok(allowed == 1)
        })
    }
}

/// How many times a lockout update retries after losing a race to another replica.
const LOCK_RETRIES: usize = 64;

impl Lockouts for RedisStore {
    fn get<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<LockState, StoreError>> {
        Box::pin(async move { Ok(self.lock_state(&self.lockout(account)).await?.0) })
    }

    fn failure<'a>(
        &'a self,
        account: &'a str,
        now_ms: u64,
        policy: LockPolicy,
    ) -> BoxFuture<'a, Result<LockState, StoreError>> {
        Box::pin(self.update_lock(account, now_ms, policy, move |state| {
            state.after_failure(now_ms, &policy)
        }))
    }

    fn give_back<'a>(
        &'a self,
        account: &'a str,
        reserved: Reservation,
        now_ms: u64,
        policy: LockPolicy,
    ) -> BoxFuture<'a, Result<LockState, StoreError>> {
        Box::pin(self.update_lock(account, now_ms, policy, move |state| {
            state.after_give_back(&reserved, &policy)
        }))
    }

    fn success<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut del = redis::cmd("DEL");
            del.arg(self.lockout(account));
            let _: i64 = self.run("lockouts", Request::Cmd(del)).await?;
            Ok(())
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
        Box::pin(async move {
            let set = take_lease(&self.lease_key(call_sid), token, ttl_ms);
            let reply: Value = self.run("call lease", Request::Cmd(set)).await?;
            set_done("call lease", &reply)
        })
    }

    fn renew<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let renew = &self.inner.scripts.renew;
            Ok(self
                .lease_script(renew, call_sid, token, Some(ttl_ms))
                .await?
                == 1)
        })
    }

    fn release<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let release = &self.inner.scripts.release;
            self.lease_script(release, call_sid, token, None)
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
        Box::pin(async move {
            // One pipeline, not a script: `SET NX` then `GET` run in order, and the session
            // read after the lease was taken is what a separate read would see (a writer
            // without the lease still loses the save's compare-and-swap). A script would cost
            // Redis several times the CPU of the two commands.
            let mut both = redis::pipe();
            both.add_command(take_lease(&self.lease_key(call_sid), token, ttl_ms))
                .cmd("GET")
                .arg(self.session_key(call_sid));
            let (taken, value): (Value, Option<Vec<u8>>) =
                self.run("call lease", Request::Pipe(both)).await?;
            if !set_done("call lease", &taken)? {
                return Ok(None);
            }
            let loaded = value.map(|v| stored_session(&v)).transpose();
            resetline_engine::loaded_or_released(self, call_sid, token, loaded).await
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
