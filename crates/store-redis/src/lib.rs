//! Shared state on Redis, so any replica serves any webhook of any call: call sessions
//! ([`SessionStore`]), windowed counters for send caps ([`Counters`]), PIN lockouts
//! ([`Lockouts`]) and per-call leases ([`CallLeases`]).
//!
//! Invariants:
//! - **Every write that must not race is one Lua script on one hash slot**: a session save is
//!   a compare-and-swap on its revision (with its expiry), a counter hit counts only when
//!   allowed and never loses an increment, a lockout update is a compare-and-swap on the
//!   account's version (the rules themselves stay [`LockState::after_failure`] and
//!   [`LockState::after_give_back`]), a lease is
//!   `SET NX PX` with a token unique to its holder and is released only by that holder.
//! - **Two round trips per webhook**: taking a call's lease also reads its session (one
//!   pipeline), and the session's save also gives the lease back (one script); a first
//!   webhook that finds no session asks once more whether the call already ended.
//! - **An ended call is remembered**: the save of an ended session also writes
//!   `<prefix>{CallSid}:ended` with its own expiry (`ended_call_ttl`, well past the session's),
//!   in the same script, so a replayed first webhook of the call is refused.
//! - **Nothing is kept for ever by accident**: counter keys expire with their window, lockout
//!   hashes when their state no longer matters ([`LockState::expires_at`]); only a
//!   suspension has no expiry, because it lasts until an operator clears it.
//! - **Cluster-ready keys**: a script touches one key, or a call's keys, which share the hash
//!   tag `{CallSid}` so they live on one slot.
//! - **Nothing secret is stored**: sessions are the same versioned serialized bytes as the
//!   memory store (`resetline_store::encode`/`decode`, which refuse a newer format); they hold
//!   only keyed hashes of secrets, counters and lockouts are keyed by numbers and account ids.
//! - **Never waits longer than its timeout**: every command is bounded; a slow or unreachable
//!   Redis is a [`StoreError::Backend`] (the caller hears an apology), and `healthy()` turns
//!   false until a command or the periodic health check succeeds again.
//!
//! The client is this crate's own (`client.rs`, `resp.rs`): one shared connection, commands of
//! concurrent webhooks pipelined into one write, RESP2 parsed in place, TLS through rustls. A
//! general-purpose client cost a webhook about as many instructions again as the whole engine
//! step (BENCHMARKS.md).

mod client;
mod resp;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use resetline_engine::{
    BackendError, BoxFuture, CallLeases, Clock, Counters, LockPolicy, LockState, Lockouts, Random,
    Reservation, Secret, Session, SessionStore, StoreError,
};
use resp::{Arg, Pipeline, Reply};
use tokio::time::Instant;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` (TLS). A `Secret` because it may carry a password.
    pub url: Secret,
    /// Password given apart from the URL (from the environment); replaces the URL's.
    pub password: Option<Secret>,
    /// Username for Redis ACLs; replaces the URL's, and needs a password (here or in the URL).
    pub username: Option<String>,
    /// Use TLS even when the URL says `redis://`.
    pub tls: bool,
    /// Prefix of every key (e.g. `resetline:`); must not contain `{` or `}`.
    pub key_prefix: String,
    /// Longest wait for one command (connecting included).
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

/// Sessions, counters, lockouts and leases on one Redis (cheap to clone: one shared,
/// multiplexed, self-reconnecting connection; concurrent callers' commands go out as one
/// pipeline, see `client.rs`).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: client::Client,
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

/// A Lua script, run by its SHA-1 (`EVALSHA`); sent whole (`EVAL`, which also caches it) when
/// the server does not know it yet (`NOSCRIPT`: first use, or after a restart).
struct Script {
    body: &'static str,
    sha: String,
}

impl Script {
    fn new(body: &'static str) -> Self {
        use sha1::Digest as _;
        let digest = sha1::Sha1::digest(body.as_bytes());
        Script {
            body,
            sha: digest.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// `EVALSHA` (or `EVAL` with `whole`) of this script with `keys` and `args`.
    fn command(&self, whole: bool, keys: &[Arg<'_>], args: &[Arg<'_>]) -> Pipeline {
        let (verb, script) = if whole {
            ("EVAL", self.body)
        } else {
            ("EVALSHA", self.sha.as_str())
        };
        let head = [verb.into(), script.into(), Arg::Int(keys.len() as u64)];
        Pipeline::joined(&[&head, keys, args])
    }
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
fn take_lease<'a>(lease: &'a [&'a [u8]; 3], token: &'a str, ttl_ms: u64) -> [Arg<'a>; 6] {
    [
        "SET".into(),
        Arg::Joined(lease),
        token.into(),
        "NX".into(),
        "PX".into(),
        ttl_ms.max(1).into(),
    ]
}

/// A failure of backend `what` from the client (its messages name the kind of failure and the
/// server's reply, never the URL or a password).
fn failed(what: &'static str, e: &client::ClientError) -> StoreError {
    if e.timeout {
        return StoreError::Backend(BackendError::timeout(what));
    }
    StoreError::Backend(BackendError::new(what, format!("redis: {e}")))
}

/// A reply that should not be there.
fn unexpected(what: &'static str, reply: &Reply) -> StoreError {
    let message = match reply {
        Reply::Error(e) => format!("redis: {e}"),
        _ => "redis: unexpected reply".to_string(),
    };
    StoreError::Backend(BackendError::new(what, message))
}

fn int(what: &'static str, reply: Reply) -> Result<i64, StoreError> {
    match reply {
        Reply::Int(n) => Ok(n),
        other => Err(unexpected(what, &other)),
    }
}

/// A bulk string, or nothing (`nil`).
fn bulk(what: &'static str, reply: Reply) -> Result<Option<Vec<u8>>, StoreError> {
    match reply {
        Reply::Bulk(b) => Ok(Some(b)),
        Reply::Nil => Ok(None),
        other => Err(unexpected(what, &other)),
    }
}

/// `+OK` (a `SET` that happened) or `nil` (a `SET NX` that did not).
fn set_done(what: &'static str, reply: Reply) -> Result<bool, StoreError> {
    match reply {
        Reply::Simple(ok) if ok == "OK" => Ok(true),
        Reply::Nil => Ok(false),
        other => Err(unexpected(what, &other)),
    }
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
        let target = client::Target::new(
            config.url.expose(),
            config.tls,
            config.username.as_deref(),
            config.password.as_ref(),
        )
        .map_err(RedisConfigError)?;
        let mut id = [0u8; 8];
        random
            .fill(&mut id)
            .map_err(|_| RedisConfigError("no randomness for the instance id".into()))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client: client::Client::start(target, config.timeout),
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

    /// Checks Redis now (one PING within the timeout) and records the answer for
    /// [`SessionStore::healthy`].
    pub async fn check(&self) -> bool {
        self.request("sessions", Pipeline::one(&["PING".into()]), self.deadline())
            .await
            .is_ok()
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

    /// `<prefix><kind>{<tag>}<suffix>` in three pieces (`open` is `<prefix><kind>{`, `close`
    /// the `}` and the suffix): the braces make `tag` the hash tag, so a call's keys (or one
    /// account's, one counter's) share a cluster slot. Sent as one [`Arg::Joined`] argument,
    /// never joined in a `String` of its own.
    fn key<'a>(open: &'a str, tag: &'a str, close: &'static str) -> [&'a [u8]; 3] {
        [open.as_bytes(), tag.as_bytes(), close.as_bytes()]
    }

    /// The key of a call's session (for tests and operators).
    pub fn session_key(&self, call_sid: &str) -> String {
        [self.inner.opens.call.as_str(), call_sid, SESSION].concat()
    }

    fn session<'a>(&'a self, call_sid: &'a str) -> [&'a [u8]; 3] {
        Self::key(&self.inner.opens.call, call_sid, SESSION)
    }

    fn lease<'a>(&'a self, call_sid: &'a str) -> [&'a [u8]; 3] {
        Self::key(&self.inner.opens.call, call_sid, LEASE)
    }

    fn ended_key<'a>(&'a self, call_sid: &'a str) -> [&'a [u8]; 3] {
        Self::key(&self.inner.opens.call, call_sid, ENDED)
    }

    fn counter<'a>(&'a self, key: &'a str) -> [&'a [u8]; 3] {
        Self::key(&self.inner.opens.counter, key, "}")
    }

    fn lockout<'a>(&'a self, account: &'a str) -> [&'a [u8]; 3] {
        Self::key(&self.inner.opens.lockout, account, "}")
    }

    /// When a request started now must have its answer.
    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.timeout
    }

    /// Sends `commands` and returns their replies by `deadline`; maps errors and records
    /// health. A server error reply (`-ERR`) is returned as a reply, for the caller to judge.
    async fn request(
        &self,
        what: &'static str,
        commands: Pipeline,
        deadline: Instant,
    ) -> Result<Vec<Reply>, StoreError> {
        let count = commands.commands();
        let sent = self.inner.client.request(commands);
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(replies)) if replies.len() == count => {
                self.inner.healthy.store(true, Ordering::Relaxed);
                Ok(replies)
            }
            Ok(Ok(_)) => {
                self.inner.healthy.store(false, Ordering::Relaxed);
                Err(StoreError::Backend(BackendError::new(
                    what,
                    "redis: wrong number of replies",
                )))
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

    /// One command's reply within the timeout; a server error reply is an error (and marks
    /// Redis unhealthy).
    async fn one(&self, what: &'static str, command: Pipeline) -> Result<Reply, StoreError> {
        self.one_by(what, command, self.deadline()).await
    }

    /// [`RedisStore::one`] by `deadline`.
    async fn one_by(
        &self,
        what: &'static str,
        command: Pipeline,
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let reply = self
            .request(what, command, deadline)
            .await?
            .pop()
            .unwrap_or(Reply::Nil);
        if matches!(reply, Reply::Error(_)) {
            self.inner.healthy.store(false, Ordering::Relaxed);
            return Err(unexpected(what, &reply));
        }
        Ok(reply)
    }

    /// Runs `script` with `keys` and `args` (by SHA-1; sent whole once if Redis does not have
    /// it), both attempts within one timeout.
    async fn script(
        &self,
        what: &'static str,
        script: &Script,
        keys: &[Arg<'_>],
        args: &[Arg<'_>],
    ) -> Result<Reply, StoreError> {
        let deadline = self.deadline();
        let reply = self
            .request(what, script.command(false, keys, args), deadline)
            .await?
            .pop()
            .unwrap_or(Reply::Nil);
        match reply {
            Reply::Error(e) if e.starts_with("NOSCRIPT") => {
                self.one_by(what, script.command(true, keys, args), deadline)
                    .await
            }
            Reply::Error(_) => {
                self.inner.healthy.store(false, Ordering::Relaxed);
                Err(unexpected(what, &reply))
            }
            reply => Ok(reply),
        }
    }

    async fn load_session(&self, call_sid: &str) -> Result<Option<(Session, u64)>, StoreError> {
        let get = Pipeline::one(&["GET".into(), Arg::Joined(&self.session(call_sid))]);
        let value = bulk("sessions", self.one("sessions", get).await?)?;
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
        let mut digits = [0u8; 20];
        let value = [resp::decimal(next, &mut digits), b":", &encoded];
        let (session_key, lease_key, ended_key) = (
            self.session(&call_sid),
            self.lease(&call_sid),
            self.ended_key(&call_sid),
        );
        let keys = [
            Arg::Joined(&session_key),
            Arg::Joined(&lease_key),
            Arg::Joined(&ended_key),
        ];
        let args = [
            Arg::Int(expected),
            Arg::Joined(&value),
            Arg::Int(ttl_ms.max(1)),
            lease.unwrap_or_default().into(),
            Arg::Int(self.inner.ended_ttl_ms),
        ];
        // Without a lease: the session's key and the first three arguments; the lease's key
        // and an empty token (no holder's) only when the ended call is marked too.
        let (keys, args) = match (lease, ended) {
            (_, true) => (&keys[..], &args[..]),
            (Some(_), false) => (&keys[..2], &args[..4]),
            (None, false) => (&keys[..1], &args[..3]),
        };
        let saved = int(
            "sessions",
            self.script("sessions", &self.inner.scripts.save, keys, args)
                .await?,
        )?;
        if saved == 1 {
            Ok(next)
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn lock_state(&self, key: Arg<'_>) -> Result<(LockState, u64), StoreError> {
        let reply = self
            .one(
                "lockouts",
                Pipeline::one(&[
                    "HMGET".into(),
                    key,
                    "f".into(),
                    "last".into(),
                    "until".into(),
                    "v".into(),
                ]),
            )
            .await?;
        let Reply::Array(fields) = reply else {
            return Err(unexpected("lockouts", &reply));
        };
        let mut numbers = [0u64; 4];
        for (slot, field) in numbers.iter_mut().zip(fields) {
            if let Some(text) = bulk("lockouts", field)? {
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
}

impl RedisStore {
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
        let key = Arg::Joined(&key);
        for _ in 0..LOCK_RETRIES {
            let (state, version) = self.lock_state(key).await?;
            let next = rule(state);
            if next == state {
                return Ok(next);
            }
            let written = self
                .script(
                    "lockouts",
                    &self.inner.scripts.lock_cas,
                    &[key],
                    &[
                        version.into(),
                        u64::from(next.failures).into(),
                        next.last_failure_ms.into(),
                        next.locked_until_ms.into(),
                        lock_ttl(&next, now_ms, &policy).into(),
                    ],
                )
                .await?;
            if int("lockouts", written)? == 1 {
                return Ok(next);
            }
        }
        Err(StoreError::Conflict)
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
            let exists = Pipeline::one(&["EXISTS".into(), Arg::Joined(&self.ended_key(call_sid))]);
            Ok(int("sessions", self.one("sessions", exists).await?)? == 1)
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
            let allowed = self
                .script(
                    "counters",
                    &self.inner.scripts.hit,
                    &[Arg::Joined(&self.counter(key))],
                    &[
                        now.into(),
                        window_ms.max(1).into(),
                        u64::from(limit).into(),
                        member.as_str().into(),
                    ],
                )
                .await?;
            Ok(int("counters", allowed)? == 1)
        })
    }
}

/// How many times a lockout update retries after losing a race to another replica.
const LOCK_RETRIES: usize = 64;

impl Lockouts for RedisStore {
    fn get<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<LockState, StoreError>> {
        Box::pin(async move {
            let key = self.lockout(account);
            Ok(self.lock_state(Arg::Joined(&key)).await?.0)
        })
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
            let del = Pipeline::one(&["DEL".into(), Arg::Joined(&self.lockout(account))]);
            let deleted = self.one("lockouts", del).await?;
            int("lockouts", deleted).map(|_| ())
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
            let lease = self.lease(call_sid);
            let set = self
                .one(
                    "call lease",
                    Pipeline::one(&take_lease(&lease, token, ttl_ms)),
                )
                .await?;
            set_done("call lease", set)
        })
    }

    fn renew<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let renewed = self
                .script(
                    "call lease",
                    &self.inner.scripts.renew,
                    &[Arg::Joined(&self.lease(call_sid))],
                    &[token.into(), ttl_ms.max(1).into()],
                )
                .await?;
            Ok(int("call lease", renewed)? == 1)
        })
    }

    fn release<'a>(
        &'a self,
        call_sid: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let released = self
                .script(
                    "call lease",
                    &self.inner.scripts.release,
                    &[Arg::Joined(&self.lease(call_sid))],
                    &[token.into()],
                )
                .await?;
            int("call lease", released).map(|_| ())
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
            let lease = self.lease(call_sid);
            let commands = Pipeline::new(&[
                &take_lease(&lease, token, ttl_ms),
                &["GET".into(), Arg::Joined(&self.session(call_sid))],
            ]);
            let mut replies = self
                .request("call lease", commands, self.deadline())
                .await?
                .into_iter();
            let (Some(taken), Some(value)) = (replies.next(), replies.next()) else {
                return Err(StoreError::Backend(BackendError::new(
                    "call lease",
                    "redis: wrong number of replies",
                )));
            };
            if !set_done("call lease", taken)? {
                return Ok(None);
            }
            match bulk("sessions", value).and_then(|v| v.map(|v| stored_session(&v)).transpose()) {
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
