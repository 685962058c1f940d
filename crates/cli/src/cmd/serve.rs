//! `resetline serve` and `resetline demo`: wire configuration to backends and run the server
//! until SIGINT/SIGTERM, reloading flows on change or SIGHUP.
//!
//! What `serve` sets that is not in the file: the engine's step budget (all backend calls of
//! one step together, 12 s; each call gets `budget_ms`); a sweep of expired memory-store
//! sessions and idle per-call locks every 30 s; the audit retry task every second; retention
//! purges a minute after start and then every 6 hours. Before serving, the audit spill of the
//! last run is written and every intent a crash left open gets its `outcome_unknown` record.
//! The directory, recording control, each message channel and the ticket system sit behind
//! their own circuit breakers (`backends.rs`; state exported as
//! `resetline_backend_circuit_state`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use resetline_audit::Spill;
use resetline_audit_writer::{BufferPolicy, Buffered, FileAudit};
use resetline_config::{
    self as config, AuditStorage, DirectoryConfig, EndedCalls, LogFormat, SmsFrom, StoreConfig,
    TicketAuth,
};
use resetline_connectors::{
    ByChannel, EmbeddedDirectory, LdapDirectory, NoTickets, ServiceNowAuth, ServiceNowTickets,
    SmsSender, SmtpMailer, SmtpTls, TwilioMessages, TwilioRecording,
    dev::{LogRecording, Outbox},
};
use resetline_engine::{
    AuditSink, CallLeases, Counters, Directory, Engine, HttpActions, Lockouts, Messenger, OsRandom,
    Random, Recording, Secret, SessionStore, SystemClock, Tickets,
};
use resetline_server::{AppState, Limits, Registry, ReloadResult, admin_app, app};
use resetline_store::MemoryCounters;
use resetline_store::MemoryStore;
use resetline_store_redis::{RedisConfig, RedisStore};

use super::backends;

struct Setup {
    listen: SocketAddr,
    /// Where `/metrics` and `/readyz` are served (never on `listen`).
    admin_listen: SocketAddr,
    /// The webhook port's connection limits.
    connection_limits: Limits,
    public_url: Option<String>,
    auth_token: Secret,
    hash_key: Secret,
    directory: Arc<dyn Directory>,
    recording: Arc<dyn Recording>,
    messenger: Arc<dyn Messenger>,
    tickets: Arc<dyn Tickets>,
    http: Arc<dyn HttpActions>,
    /// Circuit breakers to export as metrics, by label.
    circuits: Vec<(String, Arc<resetline_connectors::Breaker>)>,
    outbox: Option<Arc<Outbox>>,
    audit: AuditOpen,
    audit_policy: BufferPolicy,
    /// Where the retry buffer spills: directory, chain, key.
    audit_spill: (PathBuf, String, resetline_audit::AuditKey),
    retention_days: Option<u32>,
    limits: resetline_engine::SendLimits,
    flows_dir: PathBuf,
    prompts_dir: PathBuf,
    max_sessions: usize,
    store: StoreConfig,
    ended_calls: EndedCalls,
    budget: Duration,
    poll: Option<Duration>,
    demo_banner: bool,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub(crate) fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg =
        config::load(path, &|name| std::env::var(name).ok()).map_err(|e| anyhow::anyhow!("{e}"))?;
    init_tracing(cfg.log);
    let clock: Arc<dyn resetline_engine::Clock> = Arc::new(SystemClock);
    let breakers = backends::Breakers::new(backends::policy(&cfg.breaker), clock.clone());
    resetline_connectors::PinHashing::configure_shared(cfg.pin_hashing_max_concurrent)
        .map_err(|e| anyhow::anyhow!("pin_hashing: {e}"))?;
    let directory: Arc<dyn Directory> = match &cfg.directory {
        DirectoryConfig::Embedded { path } => {
            Arc::new(EmbeddedDirectory::load(path).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        DirectoryConfig::Ldap(ldap) => Arc::new(
            LdapDirectory::new((**ldap).clone()).map_err(|e| anyhow::anyhow!("directory: {e}"))?,
        ),
        DirectoryConfig::Scim(c) => backends::scim(c)?,
        DirectoryConfig::Okta(c) => backends::okta(c, clock.clone())?,
    };
    let directory = breakers.directory(directory);
    let http = backends::http(&cfg.http_backends, breakers.policy, clock.clone())?;
    let recording = TwilioRecording::new(&cfg.carrier.account_sid, cfg.carrier.auth_token.clone())
        .and_then(|r| r.with_base_url(&cfg.carrier.api_base))
        .map(|r| r.with_timeout(Duration::from_millis(cfg.carrier.api_timeout_ms)))
        .map_err(|e| anyhow::anyhow!("carrier: {e}"))?;
    let api_timeout = Duration::from_millis(cfg.carrier.api_timeout_ms);
    let mut messenger = ByChannel::new();
    if let Some(from) = &cfg.sms {
        let sender = match from {
            SmsFrom::Number(n) => SmsSender::From(n.clone()),
            SmsFrom::Service(m) => SmsSender::MessagingService(m.clone()),
        };
        let sms = TwilioMessages::new(
            &cfg.carrier.account_sid,
            cfg.carrier.auth_token.clone(),
            sender,
        )
        .and_then(|m| m.with_base_url(&cfg.carrier.api_base))
        .and_then(|m| m.with_public_url(&cfg.public_url))
        .map(|m| m.with_timeout(api_timeout))
        .map_err(|e| anyhow::anyhow!("messages.sms: {e}"))?;
        messenger = messenger.sms(breakers.messenger(Arc::new(sms)));
    }
    if let Some(e) = &cfg.email {
        let tls: SmtpTls = e
            .tls
            .parse()
            .map_err(|err| anyhow::anyhow!("messages.email: {err}"))?;
        let mut mailer =
            SmtpMailer::new(&e.host, e.port.unwrap_or(tls.default_port()), tls, &e.from)
                .map_err(|err| anyhow::anyhow!("messages.email: {err}"))?;
        if let Some((user, password)) = &e.credentials {
            mailer = mailer
                .with_credentials(user, password.clone())
                .map_err(|err| anyhow::anyhow!("messages.email: {err}"))?;
        }
        messenger = messenger.email(breakers.messenger(Arc::new(mailer)));
    }
    let tickets: Arc<dyn Tickets> = match &cfg.tickets {
        Some(t) => {
            let auth = match &t.auth {
                TicketAuth::Basic(user, password) => ServiceNowAuth::Basic {
                    user: user.clone(),
                    password: password.clone(),
                },
                TicketAuth::Bearer(token) => ServiceNowAuth::Bearer(token.clone()),
            };
            let mut sn = ServiceNowTickets::new(&t.base_url, auth)
                .map_err(|e| anyhow::anyhow!("tickets: {e}"))?;
            if let Some(group) = &t.assignment_group {
                sn = sn
                    .with_assignment_group(group)
                    .map_err(|e| anyhow::anyhow!("tickets: {e}"))?;
            }
            breakers.tickets(Arc::new(sn.with_timeout(api_timeout)))
        }
        None => Arc::new(NoTickets),
    };
    let audit_key = resetline_audit::AuditKey::new(cfg.audit.key.expose().as_bytes())
        .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
    let audit = match &cfg.audit.storage {
        AuditStorage::File { dir } => AuditOpen::Ready(Arc::new(open_audit(
            dir,
            &cfg.audit.chain,
            &audit_key,
            cfg.audit.buffer_records,
        )?)),
        AuditStorage::Postgres { url } => AuditOpen::Postgres(Box::new((
            resetline_audit_postgres::PgConfig {
                db: resetline_audit_postgres::parse_url(url.expose())
                    .map_err(|e| anyhow::anyhow!("audit: {e}"))?,
                chain: resetline_audit::ChainId::new(&cfg.audit.chain)
                    .map_err(|e| anyhow::anyhow!("audit chain: {e}"))?,
                checkpoint_every: 1000,
            },
            audit_key.clone(),
        ))),
    };
    if cfg.sms.is_none() || cfg.email.is_none() || cfg.tickets.is_none() {
        tracing::warn!(
            sms = cfg.sms.is_some(),
            email = cfg.email.is_some(),
            tickets = cfg.tickets.is_some(),
            "some backends are not configured; nodes that need them take their error path"
        );
    }
    run(Setup {
        listen: cfg.listen,
        admin_listen: cfg.admin_listen,
        connection_limits: cfg.server_limits,
        public_url: Some(cfg.public_url),
        auth_token: cfg.carrier.auth_token,
        hash_key: cfg.hash_key,
        directory,
        recording: breakers.recording(Arc::new(recording)),
        messenger: Arc::new(messenger),
        tickets,
        circuits: breakers.all(&http),
        http: Arc::new(http),
        outbox: None,
        audit,
        audit_policy: BufferPolicy {
            capacity: cfg.audit.buffer_records,
            on_failure: cfg.audit.on_failure,
        },
        audit_spill: (
            cfg.audit.spill_dir.clone(),
            cfg.audit.chain.clone(),
            audit_key,
        ),
        retention_days: Some(cfg.audit.retention_days),
        limits: resetline_engine::SendLimits {
            sms_prefixes: cfg.sms_prefixes.clone(),
            global: (cfg.global_sends_per_hour, 3_600_000),
            ..Default::default()
        },
        flows_dir: cfg.flows_dir,
        prompts_dir: cfg.prompts_dir,
        max_sessions: cfg.max_sessions,
        store: cfg.store,
        ended_calls: cfg.ended_calls,
        budget: Duration::from_millis(cfg.budget_ms),
        poll: cfg.reload_poll_ms.map(Duration::from_millis),
        demo_banner: false,
    })
}

pub(crate) fn demo(
    (port, admin_port): (u16, u16),
    flows: &Path,
    prompts: &Path,
    users: &Path,
) -> anyhow::Result<ExitCode> {
    init_tracing(LogFormat::Text);
    for (what, p) in [("flows", flows), ("prompts", prompts)] {
        if !p.is_dir() {
            bail!(
                "{what} directory {} not found; run `resetline demo` from the repository root or pass --{what}",
                p.display()
            );
        }
    }
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let users_copy = scratch.path().join("users.yaml");
    std::fs::copy(users, &users_copy)
        .with_context(|| format!("cannot copy demo users from {}", users.display()))?;
    let directory = EmbeddedDirectory::load(&users_copy).map_err(|e| anyhow::anyhow!("{e}"))?;
    let outbox = Arc::new(Outbox::new());
    let random = OsRandom;
    let audit_dir = scratch.path().join("audit");
    let hex = |n: usize| -> anyhow::Result<String> {
        let mut buf = vec![0u8; n];
        random.fill(&mut buf).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
    };
    let audit_key = Secret::new(hex(32)?);
    let key = resetline_audit::AuditKey::new(audit_key.expose().as_bytes())
        .map_err(|e| anyhow::anyhow!("audit key: {e}"))?;
    let audit = open_audit(
        &audit_dir,
        "resetline",
        &key,
        BufferPolicy::default().capacity,
    )?;
    eprintln!(
        "  Audit trail: {} (check it while the demo runs: RESETLINE_AUDIT_KEY={} resetline audit verify {})",
        audit_dir.display(),
        audit_key.expose(),
        audit_dir.display()
    );
    let code = run(Setup {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], admin_port)),
        connection_limits: Limits::default(),
        public_url: None,
        auth_token: Secret::new(hex(16)?),
        hash_key: Secret::new(hex(32)?),
        directory: Arc::new(directory),
        recording: Arc::new(LogRecording),
        messenger: outbox.clone(),
        tickets: Arc::new(resetline_engine::testing::MemoryTickets::new(Arc::new(
            Default::default(),
        ))),
        http: Arc::new(resetline_engine::testing::NoHttp),
        circuits: Vec::new(),
        outbox: Some(outbox),
        audit: AuditOpen::Ready(Arc::new(audit)),
        audit_policy: BufferPolicy::default(),
        audit_spill: (audit_dir.join("spill"), "resetline".into(), key),
        retention_days: None,
        limits: Default::default(),
        flows_dir: flows.to_path_buf(),
        prompts_dir: prompts.to_path_buf(),
        max_sessions: 10_000,
        store: StoreConfig::Memory,
        ended_calls: EndedCalls::default(),
        budget: Duration::from_secs(4),
        poll: Some(Duration::from_secs(1)),
        demo_banner: true,
    });
    drop(scratch);
    code
}

/// The audit sink, or what is needed to open it inside the runtime (PostgreSQL).
enum AuditOpen {
    Ready(Arc<dyn AuditSink>),
    Postgres(
        Box<(
            resetline_audit_postgres::PgConfig,
            resetline_audit::AuditKey,
        )>,
    ),
}

impl AuditOpen {
    async fn open(self) -> anyhow::Result<Arc<dyn AuditSink>> {
        match self {
            AuditOpen::Ready(sink) => Ok(sink),
            AuditOpen::Postgres(boxed) => {
                let (config, key) = *boxed;
                let chain = config.chain.clone();
                let (sink, resumed) = resetline_audit_postgres::PgAudit::open(config, key)
                    .await
                    .map_err(|e| anyhow::anyhow!("audit database: {e}"))?;
                tracing::info!(chain = %chain, resumes_after = resumed, "audit trail open (PostgreSQL)");
                Ok(Arc::new(sink))
            }
        }
    }
}

/// Opens (or resumes) the hash-chained audit files and starts their writer thread. The sink
/// remembers the ids of at least four retry buffers' worth of records, so a record the
/// buffer (or its spill) retries is recognised as written.
fn open_audit(
    dir: &Path,
    chain: &str,
    key: &resetline_audit::AuditKey,
    buffer_records: usize,
) -> anyhow::Result<FileAudit> {
    let chain =
        resetline_audit::ChainId::new(chain).map_err(|e| anyhow::anyhow!("audit chain: {e}"))?;
    let config = resetline_audit::SinkConfig {
        recent_ids: buffer_records.saturating_mul(4).max(100_000),
        ..resetline_audit::SinkConfig::new(dir, chain)
    };
    let (audit, report) = FileAudit::open(config, key.clone())
        .map_err(|e| anyhow::anyhow!("audit trail in {}: {e}", dir.display()))?;
    for torn in &report.torn {
        tracing::warn!(?torn, "a torn last audit line (crash) was moved aside");
    }
    tracing::info!(dir = %dir.display(), resumes_after = report.last_seq, "audit trail open");
    Ok(audit)
}

/// The audit sink behind the retry buffer and its spill. Before anything is served, what
/// the last run spilled is written, then an `outcome_unknown` record for every effect a
/// crash cut short (while the sink is down, the retry task does both first).
async fn open_buffer(
    audit: AuditOpen,
    policy: BufferPolicy,
    (dir, chain, key): &(PathBuf, String, resetline_audit::AuditKey),
    clock: Arc<SystemClock>,
) -> anyhow::Result<Arc<Buffered>> {
    let sink = audit.open().await?;
    let buffered =
        Buffered::new(sink, policy, &OsRandom).map_err(|e| anyhow::anyhow!("audit: {e}"))?;
    let (spill, found) = Spill::open(dir, chain, key.clone())
        .with_context(|| format!("audit spill in {}", dir.display()))?;
    if found.torn_bytes > 0 {
        tracing::warn!(dir = %dir.display(), bytes = found.torn_bytes, "a torn last line of the audit spill (crash while spilling) was cut off");
    }
    if !found.records.is_empty() {
        tracing::warn!(
            records = found.records.len(),
            "audit records the last run could not write are written first"
        );
    }
    let buffered = Arc::new(buffered.with_spill(spill, found.records));
    let waiting = buffered.recover(clock).await;
    if waiting > 0 {
        tracing::error!(
            waiting,
            "the audit sink is down at start; spilled records wait for a retry"
        );
    }
    Ok(buffered)
}

/// Retention: purges records older than `days` a minute after start, then every 6 hours.
async fn retention(audit: Arc<dyn AuditSink>, clock: Arc<SystemClock>, days: u32) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::time::sleep(wait).await;
        wait = Duration::from_secs(6 * 3600);
        let now_ms = resetline_engine::Clock::now_ms(clock.as_ref());
        let now = resetline_audit::time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(now_ms) * 1_000_000,
        )
        .unwrap_or(resetline_audit::time::OffsetDateTime::UNIX_EPOCH);
        let cutoff = now - resetline_audit::time::Duration::days(i64::from(days));
        match audit.purge(cutoff).await {
            Ok(0) => tracing::debug!(retention_days = days, "audit retention: nothing to purge"),
            Ok(removed) => {
                tracing::info!(removed, retention_days = days, "audit retention purge done")
            }
            Err(e) => tracing::warn!(error = %e, "audit retention purge failed; retried later"),
        }
    }
}

fn report(results: &[ReloadResult]) {
    for r in results {
        match r {
            ReloadResult::Installed { flow, version } => {
                tracing::info!(flow = %flow, version = %version, "flow installed")
            }
            ReloadResult::Unchanged => {}
            ReloadResult::Refused { file, reason } => {
                tracing::error!(file = %file, "flow refused; the previous version (if any) keeps serving:\n{reason}")
            }
        }
    }
}

fn run(setup: Setup) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(setup.listen)
            .await
            .with_context(|| format!("cannot listen on {}", setup.listen))?;
        let addr = listener.local_addr()?;
        let admin = tokio::net::TcpListener::bind(setup.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin_listen)", setup.admin_listen))?;
        let admin_addr = admin.local_addr()?;
        let public_url = setup
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let clock = Arc::new(SystemClock);
        let shared = Shared::open(&setup, clock.clone())?;
        let buffered = open_buffer(
            setup.audit,
            setup.audit_policy,
            &setup.audit_spill,
            clock.clone(),
        )
        .await?;
        let _retry = buffered.spawn_retry(Duration::from_secs(1));
        let audit: Arc<dyn AuditSink> = buffered;
        if let Some(days) = setup.retention_days {
            tokio::spawn(retention(audit.clone(), clock.clone(), days));
        }
        let engine = Engine {
            catalogs: Arc::new(Default::default()),
            directory: setup.directory.clone(),
            recording: setup.recording.clone(),
            messenger: setup.messenger.clone(),
            tickets: setup.tickets.clone(),
            http: setup.http.clone(),
            counters: shared.counters.clone(),
            limits: Arc::new(setup.limits.clone()),
            lockouts: shared.lockouts.clone(),
            clock: clock.clone(),
            random: Arc::new(OsRandom),
            journal: audit.clone(),
            hash_key: Arc::new(setup.hash_key.clone()),
            budget: setup.budget,
            step_budget: Duration::from_secs(12),
        };
        let registry = Arc::new(Registry::default());
        let results = registry.load_dir(&setup.flows_dir, &setup.prompts_dir);
        report(&results);
        let mut state = AppState::new(
            &public_url,
            setup.auth_token.clone(),
            engine,
            registry.clone(),
            shared.sessions.clone(),
            audit.clone(),
            setup.prompts_dir.clone(),
        );
        if let Some(leases) = shared.leases.clone() {
            state = state.with_leases(leases)?;
        }

        for (label, breaker) in &setup.circuits {
            let breaker = breaker.clone();
            state.metrics().circuit(
                label.clone(),
                resetline_server::metrics::CircuitProbe(Box::new(move || {
                    breaker.state().as_gauge()
                })),
            );
        }

        // Hot reload: poll for changes, and reload on SIGHUP.
        let (flows_dir, prompts_dir, metrics) = (
            setup.flows_dir.clone(),
            setup.prompts_dir.clone(),
            state.metrics().clone(),
        );
        let reload_registry = registry.clone();
        let poll = setup.poll;
        tokio::spawn(async move {
            let mut last = resetline_server::registry::fingerprint(&[&flows_dir, &prompts_dir]);
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let tick = tokio::time::sleep(poll.unwrap_or(Duration::from_secs(3600)));
                #[cfg(unix)]
                let forced = match hup.as_mut() {
                    Some(h) => tokio::select! { _ = tick => false, _ = h.recv() => true },
                    None => {
                        tick.await;
                        false
                    }
                };
                #[cfg(not(unix))]
                let forced = {
                    tick.await;
                    false
                };
                let now = resetline_server::registry::fingerprint(&[&flows_dir, &prompts_dir]);
                if forced || (poll.is_some() && now != last) {
                    last = now;
                    let results = reload_registry.load_dir(&flows_dir, &prompts_dir);
                    for r in &results {
                        metrics.reload(match r {
                            ReloadResult::Installed { .. } => "installed",
                            ReloadResult::Unchanged => "unchanged",
                            ReloadResult::Refused { .. } => "refused",
                        });
                    }
                    report(&results);
                }
            }
        });
        // Expired sessions and idle per-call locks are swept every 30 s.
        let (sweeper, locks) = (shared.memory.clone(), state.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let expired = sweeper.as_ref().map_or(0, |m| m.sweep());
                let idle = locks.forget_idle_locks();
                if expired + idle > 0 {
                    tracing::debug!(expired, idle_locks = idle, "swept");
                }
            }
        });

        if setup.demo_banner {
            banner(
                &public_url,
                setup.auth_token.expose(),
                &registry,
                admin_addr,
            );
        }
        if let Some(outbox) = setup.outbox.clone() {
            tokio::spawn(show_outbox(outbox));
        }
        tracing::info!(
            listen = %addr,
            admin_listen = %admin_addr,
            public_url = %public_url,
            "resetline is serving"
        );
        // One shutdown signal for both listeners; each finishes its requests in progress.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown().await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let webhooks = app(state.clone());
        let admin_routes = admin_app(state.clone());
        tokio::join!(
            resetline_server::serve(
                listener,
                webhooks,
                setup.connection_limits,
                until_stopped(stopped.clone())
            ),
            resetline_server::serve(admin, admin_routes, Limits::admin(), until_stopped(stopped)),
        );
        let unwritten = state.settle(Duration::from_secs(5)).await;
        if unwritten > 0 {
            tracing::error!(
                appends = unwritten,
                "audit records still being written at shutdown"
            );
        }
        if let Err(e) = audit.close().await {
            tracing::error!(error = %e, "audit trail not closed cleanly");
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The state shared between webhooks: in this process, or in Redis for every replica.
struct Shared {
    sessions: Arc<dyn SessionStore>,
    counters: Arc<dyn Counters>,
    lockouts: Arc<dyn Lockouts>,
    /// Cross-replica call leases (Redis only; in memory the per-process lock suffices).
    leases: Option<Arc<dyn CallLeases>>,
    /// The memory store, to sweep expired sessions (Redis expires them itself).
    memory: Option<Arc<MemoryStore>>,
}

impl Shared {
    /// Must run inside the runtime (the Redis connection and its health checks live there).
    fn open(setup: &Setup, clock: Arc<SystemClock>) -> anyhow::Result<Shared> {
        match &setup.store {
            StoreConfig::Memory => {
                tracing::warn!(
                    "sessions, send counters and PIN and code lockouts live in memory: a restart forgets every lockout, the 100-failure suspension included; use `store: {{ kind: redis }}` in production"
                );
                let memory = Arc::new(
                    MemoryStore::new(clock.clone(), setup.max_sessions)
                        .with_ended_calls(setup.ended_calls.ttl_ms, setup.ended_calls.max),
                );
                Ok(Shared {
                    sessions: memory.clone(),
                    counters: Arc::new(MemoryCounters::new(clock)),
                    lockouts: Arc::new(resetline_store::MemoryLockouts::new()),
                    leases: None,
                    memory: Some(memory),
                })
            }
            StoreConfig::Redis(r) => {
                let redis = redis_store(r, Duration::from_millis(setup.ended_calls.ttl_ms), clock)?;
                redis.start_health_checks(Duration::from_secs(1));
                let mode = match r.endpoint {
                    config::RedisEndpoint::Url(_) => "server",
                    config::RedisEndpoint::Cluster(_) => "cluster",
                    config::RedisEndpoint::Sentinel { .. } => "sentinel",
                };
                tracing::info!(prefix = %r.key_prefix, tls = r.tls, mode, "sessions, counters and lockouts in Redis");
                let redis = Arc::new(redis);
                Ok(Shared {
                    sessions: redis.clone(),
                    counters: redis.clone(),
                    lockouts: redis.clone(),
                    leases: Some(redis),
                    memory: None,
                })
            }
        }
    }
}

/// The Redis store `store: { kind: redis }` names: one server, a Cluster or a Sentinel's master
/// (connects lazily, in the current runtime).
pub(crate) fn redis_store(
    r: &config::RedisStoreConfig,
    ended_call_ttl: Duration,
    clock: Arc<dyn resetline_engine::Clock>,
) -> anyhow::Result<RedisStore> {
    RedisStore::connect(
        &RedisConfig {
            endpoint: r.endpoint.clone(),
            password: r.password.clone(),
            username: r.username.clone(),
            tls: r.tls,
            key_prefix: r.key_prefix.clone(),
            timeout: Duration::from_millis(r.timeout_ms),
            ended_call_ttl,
        },
        clock,
        &OsRandom,
    )
    .map_err(|e| anyhow::anyhow!("store: {e}"))
}

/// Demo only: prints each message the outbox accepted (one-time codes included: that is
/// how a demo caller gets the code) to the console, never to the log.
#[allow(clippy::print_stderr)]
async fn show_outbox(outbox: Arc<Outbox>) {
    let mut shown = std::collections::HashSet::new();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for m in outbox.messages() {
            if shown.insert(m.id.clone()) {
                let kind = match m.channel {
                    resetline_flow::model::Channel::Sms => "SMS",
                    resetline_flow::model::Channel::Email => "email",
                };
                eprintln!("  [demo outbox] {kind} to {}: {}", m.to, m.body.expose());
            }
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[allow(clippy::print_stderr)]
fn banner(public_url: &str, token: &str, registry: &Registry, admin: SocketAddr) {
    let flows = registry.list();
    let line = "=".repeat(78);
    eprintln!("{line}");
    eprintln!("  DEMO MODE: not for real calls.");
    eprintln!("  Webhooks must be signed with this generated auth token (it changes every run):");
    eprintln!("      TWILIO_AUTH_TOKEN={token}");
    eprintln!(
        "  Directory: a temporary copy of examples/demo/users.yaml (PINs in examples/demo/README.md)."
    );
    eprintln!("  Recording control: logged only. Sessions: in memory.");
    eprintln!(
        "  Metrics and readiness (admin port): http://{admin}/metrics, http://{admin}/readyz"
    );
    eprintln!("{line}");
    if flows.is_empty() {
        eprintln!("  No flow could be loaded; see the errors above.");
        return;
    }
    for (id, version) in &flows {
        eprintln!("  serving flow `{id}` ({version}) at POST {public_url}/voice/{id}");
    }
    if let Some(id) = flows.keys().next() {
        let sid = "CA00000000000000000000000000000001";
        eprintln!();
        eprintln!("  Place a simulated call (first webhook):");
        eprintln!("    export TWILIO_AUTH_TOKEN={token}");
        eprintln!("    URL={public_url}/voice/{id}");
        eprintln!(
            "    SIG=$(resetline sign \"$URL\" CallSid={sid} From=+15555550100 To=+15555550000)"
        );
        eprintln!(
            "    curl -s \"$URL\" -H \"X-Twilio-Signature: $SIG\" --data-urlencode CallSid={sid} --data-urlencode From=+15555550100 --data-urlencode To=+15555550000"
        );
        eprintln!(
            "  Then answer each <Gather> by posting Digits to its action URL, signed the same way:"
        );
        eprintln!("    URL=<the action URL of the last answer's <Gather>>");
        eprintln!("    SIG=$(resetline sign \"$URL\" CallSid={sid} Digits=100001)");
        eprintln!(
            "    curl -s \"$URL\" -H \"X-Twilio-Signature: $SIG\" --data-urlencode CallSid={sid} --data-urlencode Digits=100001"
        );
    }
    eprintln!("{line}");
}
