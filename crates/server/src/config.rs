//! `resetline.yaml`: the server's configuration, read once at start and validated as a whole.
//!
//! Secrets are never written in the file: it names environment variables that hold them
//! (`auth_token_env`, `hash_key_env`). Invariant: a `Config` only exists when every field was
//! valid and every referenced variable was set; `load` reports all problems at once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use resetline_engine::Secret;
use serde::Deserialize;

mod connectors;
mod listeners;

pub use connectors::{BreakerConfig, HttpBackendConfig, IdpConfig};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "listeners::default_admin_listen")]
    admin_listen: String,
    #[serde(default)]
    server: listeners::RawServer,
    public_url: String,
    #[serde(default = "default_flows")]
    flows_dir: PathBuf,
    #[serde(default = "default_prompts")]
    prompts_dir: PathBuf,
    carrier: RawCarrier,
    directory: RawDirectory,
    audit: RawAudit,
    #[serde(default)]
    messages: RawMessages,
    #[serde(default)]
    tickets: Option<RawTickets>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    store: RawStore,
    hash_key_env: String,
    #[serde(default = "default_budget")]
    budget_ms: u64,
    #[serde(default)]
    reload: RawReload,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    breaker: connectors::RawBreaker,
    #[serde(default)]
    http: connectors::RawHttp,
    #[serde(default)]
    pin_hashing: RawPinHashing,
}

/// `pin_hashing:`: the process-wide bound on Argon2 work.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPinHashing {
    /// Hashes at once; default: the number of CPU cores.
    max_concurrent: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCarrier {
    #[serde(default = "default_kind")]
    kind: String,
    account_sid: String,
    auth_token_env: String,
    #[serde(default = "default_api")]
    api_base: String,
    #[serde(default = "default_api_timeout")]
    api_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    kind: String,
    path: Option<PathBuf>,
    // `kind: ldap` (see `resetline_connectors::ldap`):
    url: Option<String>,
    bind_dn: Option<String>,
    bind_password_env: Option<String>,
    base_dn: Option<String>,
    flavor: Option<String>,
    starttls: Option<bool>,
    ca_file: Option<PathBuf>,
    timeout_ms: Option<u64>,
    user_filter: Option<String>,
    allow_phone_reset: Option<bool>,
    attributes: Option<RawLdapAttributes>,
    lookup: Option<RawLdapLookup>,
    pin_check: Option<String>,
    pin_bind: Option<RawPinBind>,
    must_change_at_next_logon: Option<bool>,
    // `kind: scim | okta` (see `config::connectors`; `timeout_ms` above is theirs too):
    base_url: Option<String>,
    token_env: Option<String>,
    employee_id_attribute: Option<String>,
    pin_hash_attribute: Option<String>,
    unlock: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdapAttributes {
    id: Option<String>,
    name: Option<String>,
    mobile: Option<String>,
    email: Option<String>,
    birth_date: Option<String>,
    pin_hash: Option<String>,
}

/// `directory.pin_bind:` (only with `pin_check: bind_counts_toward_directory_lockout`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPinBind {
    policy_dn: Option<String>,
    max_failures: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdapLookup {
    employee_id: Option<Vec<String>>,
    username: Option<Vec<String>>,
    phone: Option<Vec<String>>,
    email: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default = "default_audit_kind")]
    kind: String,
    dir: Option<PathBuf>,
    url_env: Option<String>,
    #[serde(default = "default_chain")]
    chain: String,
    key_env: String,
    #[serde(default = "default_retention_days")]
    retention_days: u32,
    #[serde(default = "default_on_failure")]
    on_failure: String,
    #[serde(default = "default_buffer_records")]
    buffer_records: usize,
    spill_dir: Option<PathBuf>,
}

fn default_audit_kind() -> String {
    "file".into()
}
fn default_retention_days() -> u32 {
    365
}
fn default_on_failure() -> String {
    "continue".into()
}
fn default_buffer_records() -> usize {
    10_000
}

fn default_chain() -> String {
    "resetline".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessages {
    sms: Option<RawSms>,
    email: Option<RawEmail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSms {
    from: Option<String>,
    messaging_service_sid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    host: String,
    port: Option<u16>,
    #[serde(default = "default_tls")]
    tls: String,
    from: String,
    username: Option<String>,
    password_env: Option<String>,
}

fn default_tls() -> String {
    "starttls".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    sms_prefixes: Vec<String>,
    global_per_hour: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTickets {
    kind: String,
    base_url: String,
    username: Option<String>,
    password_env: Option<String>,
    token_env: Option<String>,
    assignment_group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    #[serde(default = "default_max_sessions")]
    max: usize,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            max: default_max_sessions(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_store_kind")]
    kind: String,
    url: Option<String>,
    url_env: Option<String>,
    cluster: Option<Vec<String>>,
    sentinel: Option<RawSentinel>,
    username: Option<String>,
    password_env: Option<String>,
    #[serde(default = "default_key_prefix")]
    key_prefix: String,
    #[serde(default = "default_store_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    tls: bool,
    #[serde(default = "default_ended_call_ttl")]
    ended_call_ttl_s: u64,
    ended_calls_max: Option<usize>,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            kind: default_store_kind(),
            url: None,
            url_env: None,
            cluster: None,
            sentinel: None,
            username: None,
            password_env: None,
            key_prefix: default_key_prefix(),
            timeout_ms: default_store_timeout(),
            tls: false,
            ended_call_ttl_s: default_ended_call_ttl(),
            ended_calls_max: None,
        }
    }
}

/// `store.sentinel`: the Sentinels and the name of the master they watch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSentinel {
    nodes: Vec<String>,
    service: String,
}

fn default_store_kind() -> String {
    "memory".into()
}
fn default_key_prefix() -> String {
    "resetline:".into()
}
fn default_store_timeout() -> u64 {
    500
}
fn default_ended_call_ttl() -> u64 {
    resetline_store::ENDED_CALL_TTL_MS / 1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReload {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default = "default_poll")]
    poll_ms: u64,
}

impl Default for RawReload {
    fn default() -> Self {
        RawReload {
            enabled: true,
            poll_ms: default_poll(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_flows() -> PathBuf {
    "flows".into()
}
fn default_prompts() -> PathBuf {
    "voice-prompts".into()
}
fn default_kind() -> String {
    "twilio".into()
}
fn default_api() -> String {
    "https://api.twilio.com".into()
}
fn default_api_timeout() -> u64 {
    3000
}
fn default_max_sessions() -> usize {
    100_000
}
fn default_budget() -> u64 {
    4000
}
fn default_true() -> bool {
    true
}
fn default_poll() -> u64 {
    2000
}

/// Which directory backs lookups.
#[derive(Clone, Debug)]
pub enum DirectoryConfig {
    /// A YAML file of users (`examples/demo/users.yaml` format).
    Embedded {
        /// The file.
        path: PathBuf,
    },
    /// An LDAP directory (OpenLDAP or Active Directory), already checked.
    Ldap(Box<resetline_connectors::LdapConfig>),
    /// A SCIM 2.0 service provider.
    Scim(IdpConfig),
    /// An Okta org.
    Okta(IdpConfig),
}

/// Where sessions, send counters, lockouts and call leases live.
#[derive(Clone, Debug, Default)]
pub enum StoreConfig {
    /// In this process (one box; the default).
    #[default]
    Memory,
    /// Redis, shared by every replica.
    Redis(RedisStoreConfig),
}

/// How long (and, in memory, how many) ended calls the store remembers, so a replayed first
/// webhook of a call that already ended is refused (`store.ended_call_ttl_s`,
/// `store.ended_calls_max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndedCalls {
    /// How long an ended call is remembered, ms.
    pub ttl_ms: u64,
    /// Most ended calls the memory store holds (the oldest go first); Redis holds them all.
    pub max: usize,
}

impl Default for EndedCalls {
    fn default() -> Self {
        EndedCalls {
            ttl_ms: resetline_store::ENDED_CALL_TTL_MS,
            max: resetline_store::ENDED_CALLS_MAX,
        }
    }
}

/// Which Redis: one server, a Cluster, or the master a Sentinel names.
#[derive(Clone, Debug)]
pub enum RedisEndpoint {
    /// `redis://` or `rediss://` URL (`url`, `url_env`); a `Secret` because a URL from
    /// `url_env` may carry a password.
    Url(Secret),
    /// `cluster`: URLs of some of the Cluster's nodes.
    Cluster(Vec<String>),
    /// `sentinel`: URLs of the Sentinels, and the name of the master they watch.
    Sentinel {
        /// The Sentinels.
        nodes: Vec<String>,
        /// `sentinel monitor <service> ...`.
        service: String,
    },
}

/// A Redis store.
#[derive(Clone, Debug)]
pub struct RedisStoreConfig {
    /// Where Redis is.
    pub endpoint: RedisEndpoint,
    /// ACL username (with `password`).
    pub username: Option<String>,
    /// Password from `password_env`.
    pub password: Option<Secret>,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Longest wait for one Redis command.
    pub timeout_ms: u64,
    /// TLS (also implied by a `rediss://` URL, or a Cluster node's).
    pub tls: bool,
}

/// The audit trail.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Where the chain is stored.
    pub storage: AuditStorage,
    /// Chain id (file name prefix, or the `chain` column). One writer per chain: give each
    /// replica its own.
    pub chain: String,
    /// HMAC key for the chain and checkpoints (at least 32 characters).
    pub key: Secret,
    /// Records older than this many days are purged (default 365).
    pub retention_days: u32,
    /// Whether new calls go on while the sink is down.
    pub on_failure: crate::audit::OnFailure,
    /// Most records kept for a retry while the sink is down (default 10,000).
    pub buffer_records: usize,
    /// Where records waiting for a retry are kept on disk, so a crash does not lose them
    /// (default: `<dir>/spill` for files, `audit-spill` next to the configuration for
    /// PostgreSQL).
    pub spill_dir: PathBuf,
}

/// Where audit records are stored.
#[derive(Clone, Debug)]
pub enum AuditStorage {
    /// Hash-chained JSON Lines files (`kind: file`).
    File {
        /// Directory of the chain's files (created if missing).
        dir: PathBuf,
    },
    /// PostgreSQL (`kind: postgres`).
    Postgres {
        /// Connection string (`postgres://user:password@host:port/db?sslmode=disable` or
        /// `host=... user=...`), from the variable `url_env` names.
        url: Secret,
    },
}

/// Where SMS come from (Twilio Messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsFrom {
    /// A Twilio number (E.164).
    Number(String),
    /// A Messaging Service (`MG...`).
    Service(String),
}

/// Email over SMTP.
#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// SMTP host.
    pub host: String,
    /// Port (default by TLS mode).
    pub port: Option<u16>,
    /// `none` (loopback only), `starttls` or `tls`.
    pub tls: String,
    /// From address.
    pub from: String,
    /// Login, when the server needs one.
    pub credentials: Option<(String, Secret)>,
}

/// Ticket system authentication.
#[derive(Clone, Debug)]
pub enum TicketAuth {
    /// HTTP Basic.
    Basic(String, Secret),
    /// Bearer token.
    Bearer(Secret),
}

/// ServiceNow-shaped ticket system.
#[derive(Clone, Debug)]
pub struct TicketsConfig {
    /// Instance base URL.
    pub base_url: String,
    /// Credentials.
    pub auth: TicketAuth,
    /// Optional assignment group.
    pub assignment_group: Option<String>,
}

/// The carrier account (Twilio).
#[derive(Clone, Debug)]
pub struct CarrierConfig {
    /// `AC...`.
    pub account_sid: String,
    /// Auth token: signs webhooks and authenticates REST calls.
    pub auth_token: Secret,
    /// REST base URL (tests point it at a local fake).
    pub api_base: String,
    /// REST request timeout.
    pub api_timeout_ms: u64,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where the admin routes (`/metrics`, `/readyz`) listen (default 127.0.0.1:9090).
    pub admin_listen: SocketAddr,
    /// The webhook port's connection limits (`server:`).
    pub server_limits: crate::serve::Limits,
    /// The base URL carriers use (no trailing slash); signatures are checked against it.
    pub public_url: String,
    /// Flow files.
    pub flows_dir: PathBuf,
    /// Prompt catalogs and audio.
    pub prompts_dir: PathBuf,
    /// Carrier account.
    pub carrier: CarrierConfig,
    /// Directory backend.
    pub directory: DirectoryConfig,
    /// Audit trail.
    pub audit: AuditConfig,
    /// SMS sender, when codes or notices go by SMS.
    pub sms: Option<SmsFrom>,
    /// SMTP, when codes or notices go by email.
    pub email: Option<EmailConfig>,
    /// Ticket system (none: ticket nodes take their error path).
    pub tickets: Option<TicketsConfig>,
    /// E.164 prefixes SMS may go to (empty: all).
    pub sms_prefixes: Vec<String>,
    /// Most code sends per hour in total (default 1000).
    pub global_sends_per_hour: u32,
    /// Most live calls.
    pub max_sessions: usize,
    /// Session store (memory or Redis).
    pub store: StoreConfig,
    /// Ended calls the store remembers.
    pub ended_calls: EndedCalls,
    /// Key for keyed hashes of secrets held between webhooks.
    pub hash_key: Secret,
    /// Time budget per backend call.
    pub budget_ms: u64,
    /// Hot reload by polling (SIGHUP always reloads).
    pub reload_poll_ms: Option<u64>,
    /// Log format.
    pub log: LogFormat,
    /// The circuit breaker in front of every backend.
    pub breaker: BreakerConfig,
    /// Backends `http` nodes may call.
    pub http_backends: Vec<HttpBackendConfig>,
    /// Most Argon2 hashes (PIN checks, new PIN hashes) at once in the process.
    pub pin_hashing_max_concurrent: usize,
}

/// Why the configuration cannot be used: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// Each problem, one line each.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} problem{} in the configuration",
            self.file,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates `path`. `env` looks up environment variables (tests pass a map).
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let fail = |problems: Vec<String>| ConfigError {
        file: file.clone(),
        problems,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(vec![format!("cannot read: {e}")]))?;
    let raw: Raw = serde_saphyr::from_str(&text).map_err(|e| fail(vec![e.to_string()]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(raw, base, env).map_err(fail)
}

fn validate(
    raw: Raw,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<String>> {
    let mut problems = Vec::new();
    let listen = raw
        .listen
        .parse::<SocketAddr>()
        .map_err(|_| {
            problems.push(format!(
                "`listen`: `{}` is not an address such as 127.0.0.1:8080",
                raw.listen
            ))
        })
        .ok();
    let admin_listen = listeners::admin_listen(&raw.admin_listen, listen, &mut problems);
    let server_limits = listeners::limits(raw.server, &mut problems);
    let public_url = raw.public_url.trim_end_matches('/').to_string();
    if !(public_url.starts_with("https://") || public_url.starts_with("http://"))
        || public_url.contains('?')
        || public_url.contains('#')
    {
        problems.push(format!("`public_url`: `{}` must be the http(s) base URL carriers call, without query or fragment", raw.public_url));
    }
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let flows_dir = resolve(&raw.flows_dir);
    if !flows_dir.is_dir() {
        problems.push(format!(
            "`flows_dir`: {} is not a directory",
            flows_dir.display()
        ));
    }
    let prompts_dir = resolve(&raw.prompts_dir);
    if !prompts_dir.is_dir() {
        problems.push(format!(
            "`prompts_dir`: {} is not a directory",
            prompts_dir.display()
        ));
    }
    if raw.carrier.kind != "twilio" {
        problems.push(format!(
            "`carrier.kind`: `{}` is not supported (supported: twilio)",
            raw.carrier.kind
        ));
    }
    let sid = &raw.carrier.account_sid;
    if !(sid.len() == 34
        && sid.starts_with("AC")
        && sid[2..].chars().all(|c| c.is_ascii_hexdigit()))
    {
        problems.push("`carrier.account_sid`: must be `AC` followed by 32 hex digits".to_string());
    }
    let token = secret_env(
        env,
        &raw.carrier.auth_token_env,
        "`carrier.auth_token_env`",
        1,
        &mut problems,
    );
    if !(raw.carrier.api_base.starts_with("https://")
        || raw.carrier.api_base.starts_with("http://"))
    {
        problems.push(format!(
            "`carrier.api_base`: `{}` is not an http(s) URL",
            raw.carrier.api_base
        ));
    }
    let hash_key = secret_env(env, &raw.hash_key_env, "`hash_key_env`", 32, &mut problems);
    let idp = connectors::RawIdp {
        base_url: raw.directory.base_url.clone(),
        token_env: raw.directory.token_env.clone(),
        timeout_ms: raw.directory.timeout_ms,
        employee_id_attribute: raw.directory.employee_id_attribute.clone(),
        pin_hash_attribute: raw.directory.pin_hash_attribute.clone(),
        unlock: raw.directory.unlock,
    };
    if raw.directory.kind != "ldap"
        && (raw.directory.pin_check.is_some() || raw.directory.pin_bind.is_some())
    {
        problems.push("`directory.pin_check` and `directory.pin_bind` are for `kind: ldap`; the other directories check PINs against a hash attribute only".into());
    }
    if raw.directory.kind != "ldap" && raw.directory.must_change_at_next_logon.is_some() {
        problems.push("`directory.must_change_at_next_logon` is for `kind: ldap` with `flavor: active_directory`".into());
    }
    let pin_hashing_max_concurrent = raw
        .pin_hashing
        .max_concurrent
        .unwrap_or_else(resetline_connectors::PinHashing::default_limit);
    if !(1..=256).contains(&pin_hashing_max_concurrent) {
        problems.push(format!(
            "`pin_hashing.max_concurrent`: {pin_hashing_max_concurrent} must be between 1 and 256 (each hash holds 19 MiB at the shipped cost)"
        ));
    }
    let directory = match (
        raw.directory.kind.clone().as_str(),
        raw.directory.path.clone(),
    ) {
        (kind @ ("scim" | "okta"), path) => {
            if path.is_some() {
                problems.push(format!(
                    "`directory.path`: the {kind} directory has no users file"
                ));
            }
            connectors::idp(kind, idp, env, &mut problems).map(|c| {
                if kind == "scim" {
                    DirectoryConfig::Scim(c)
                } else {
                    DirectoryConfig::Okta(c)
                }
            })
        }
        ("embedded", path) => {
            if raw.directory.url.is_some() || raw.directory.bind_dn.is_some() {
                problems.push(
                    "`directory`: `url` and `bind_dn` are for `kind: ldap`, not the embedded directory".into(),
                );
            }
            if idp.any() {
                problems.push("`directory`: base_url, token_env, timeout_ms, employee_id_attribute, pin_hash_attribute and unlock belong to the ldap, scim and okta kinds, not the embedded directory".into());
            }
            match path {
                Some(p) => {
                    let p = resolve(&p);
                    if !p.is_file() {
                        problems.push(format!("`directory.path`: {} is not a file", p.display()));
                    }
                    Some(DirectoryConfig::Embedded { path: p })
                }
                None => {
                    problems.push(
                        "`directory.path`: the embedded directory needs the path of its users file"
                            .into(),
                    );
                    None
                }
            }
        }
        ("ldap", path) => {
            if path.is_some() {
                problems.push("`directory.path` is for `kind: embedded`; an LDAP directory takes `url`, `bind_dn`, `bind_password_env` and `base_dn`".into());
            }
            ldap_directory(raw.directory, &resolve, env, &mut problems)
        }
        (other, _) => {
            problems.push(format!(
                "`directory.kind`: `{other}` is not supported (supported: embedded, ldap, scim, okta)"
            ));
            None
        }
    };
    let audit_key = secret_env(
        env,
        &raw.audit.key_env,
        "`audit.key_env`",
        32,
        &mut problems,
    );
    if raw.audit.chain.is_empty()
        || raw.audit.chain.len() > 64
        || !raw
            .audit
            .chain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push(format!(
            "`audit.chain`: `{}` must be 1 to 64 letters, digits, `-` or `_`",
            raw.audit.chain
        ));
    }
    let spill_dir = match (&raw.audit.spill_dir, &raw.audit.dir) {
        (Some(dir), _) => resolve(dir),
        (None, Some(dir)) if raw.audit.kind == "file" => resolve(dir).join("spill"),
        (None, _) => resolve(Path::new("audit-spill")),
    };
    let audit_storage = match (raw.audit.kind.as_str(), raw.audit.dir, raw.audit.url_env) {
        ("file", Some(dir), None) => Some(AuditStorage::File { dir: resolve(&dir) }),
        ("file", None, _) => {
            problems.push("`audit.dir`: the file audit sink needs the directory of its files".into());
            None
        }
        ("file", Some(_), Some(_)) => {
            problems.push("`audit.url_env`: only for `kind: postgres`".into());
            None
        }
        ("postgres", None, Some(url_env)) => secret_env(env, &url_env, "`audit.url_env`", 1, &mut problems)
            .and_then(|url| {
                let u = url.expose();
                if u.starts_with("postgres://") || u.starts_with("postgresql://") || u.contains("host=") {
                    Some(AuditStorage::Postgres { url })
                } else {
                    problems.push(format!("`audit.url_env`: environment variable `{url_env}` must hold a PostgreSQL connection string (postgres://... or host=...)"));
                    None
                }
            }),
        ("postgres", _, None) => {
            problems.push("`audit.url_env`: the postgres audit sink needs the environment variable holding its connection string".into());
            None
        }
        ("postgres", Some(_), Some(_)) => {
            problems.push("`audit.dir`: only for `kind: file`".into());
            None
        }
        (other, _, _) => {
            problems.push(format!("`audit.kind`: `{other}` is not supported (supported: file, postgres)"));
            None
        }
    };
    if !(1..=36_500).contains(&raw.audit.retention_days) {
        problems.push(format!(
            "`audit.retention_days`: {} must be between 1 and 36500",
            raw.audit.retention_days
        ));
    }
    let on_failure = match raw.audit.on_failure.as_str() {
        "continue" => crate::audit::OnFailure::Continue,
        "refuse" => crate::audit::OnFailure::Refuse,
        other => {
            problems.push(format!(
                "`audit.on_failure`: `{other}` must be continue or refuse"
            ));
            crate::audit::OnFailure::Continue
        }
    };
    if raw.audit.buffer_records == 0 {
        problems.push("`audit.buffer_records` must be at least 1".into());
    }
    let sms = match raw.messages.sms {
        None => None,
        Some(RawSms {
            from: Some(n),
            messaging_service_sid: None,
        }) if n.starts_with('+') && n.len() >= 8 && n[1..].chars().all(|c| c.is_ascii_digit()) => {
            Some(SmsFrom::Number(n))
        }
        Some(RawSms {
            from: None,
            messaging_service_sid: Some(m),
        }) if m.len() == 34 && m.starts_with("MG") => Some(SmsFrom::Service(m)),
        Some(_) => {
            problems.push("`messages.sms`: give exactly one of `from` (an E.164 number) or `messaging_service_sid` (MG + 32 hex digits)".into());
            None
        }
    };
    let email = match raw.messages.email {
        None => None,
        Some(e) => {
            if !matches!(e.tls.as_str(), "none" | "starttls" | "tls") {
                problems.push(format!(
                    "`messages.email.tls`: `{}` must be none, starttls or tls",
                    e.tls
                ));
            }
            if !e.from.contains('@') {
                problems.push(format!(
                    "`messages.email.from`: `{}` is not an email address",
                    e.from
                ));
            }
            let credentials = match (e.username, e.password_env) {
                (Some(u), Some(env_name)) => secret_env(
                    env,
                    &env_name,
                    "`messages.email.password_env`",
                    1,
                    &mut problems,
                )
                .map(|p| (u, p)),
                (None, None) => None,
                _ => {
                    problems
                        .push("`messages.email`: `username` and `password_env` go together".into());
                    None
                }
            };
            Some(EmailConfig {
                host: e.host,
                port: e.port,
                tls: e.tls,
                from: e.from,
                credentials,
            })
        }
    };
    let tickets = match raw.tickets {
        None => None,
        Some(t) => {
            if t.kind != "servicenow" {
                problems.push(format!(
                    "`tickets.kind`: `{}` is not supported (supported: servicenow)",
                    t.kind
                ));
            }
            if !(t.base_url.starts_with("https://") || t.base_url.starts_with("http://")) {
                problems.push(format!(
                    "`tickets.base_url`: `{}` is not an http(s) URL",
                    t.base_url
                ));
            }
            let auth = match (t.username, t.password_env, t.token_env) {
                (Some(u), Some(p), None) => {
                    secret_env(env, &p, "`tickets.password_env`", 1, &mut problems)
                        .map(|p| TicketAuth::Basic(u, p))
                }
                (None, None, Some(tok)) => {
                    secret_env(env, &tok, "`tickets.token_env`", 1, &mut problems)
                        .map(TicketAuth::Bearer)
                }
                _ => {
                    problems
                        .push("`tickets`: give `username` + `password_env`, or `token_env`".into());
                    None
                }
            };
            auth.map(|auth| TicketsConfig {
                base_url: t.base_url.trim_end_matches('/').to_string(),
                auth,
                assignment_group: t.assignment_group,
            })
        }
    };
    for p in &raw.limits.sms_prefixes {
        if !(p.starts_with('+')
            && p.len() >= 2
            && p.len() <= 8
            && p[1..].chars().all(|c| c.is_ascii_digit()))
        {
            problems.push(format!(
                "`limits.sms_prefixes`: `{p}` is not an E.164 prefix such as `+1` or `+44`"
            ));
        }
    }
    if raw.limits.global_per_hour == Some(0) {
        problems.push("`limits.global_per_hour` must be at least 1".into());
    }
    if let Some(DirectoryConfig::Ldap(l)) = &directory
        && l.timeout.as_millis() >= u128::from(raw.budget_ms)
    {
        problems.push(format!(
            "`directory.timeout_ms`: {} must be below `budget_ms` ({}), or a slow directory uses up the whole backend budget",
            l.timeout.as_millis(),
            raw.budget_ms
        ));
    }
    if !(500..=12_000).contains(&raw.budget_ms) {
        problems.push(format!(
            "`budget_ms`: {} must be between 500 and 12000 (the carrier gives up at 15000)",
            raw.budget_ms
        ));
    }
    if raw.sessions.max == 0 {
        problems.push("`sessions.max` must be at least 1".into());
    }
    let breaker = connectors::breaker(raw.breaker, &mut problems);
    let http_backends = connectors::http(raw.http, env, &mut problems);
    let ended_calls = validate_ended_calls(&raw.store, &mut problems);
    let store = validate_store(raw.store, env, &mut problems);
    if raw.reload.poll_ms < 100 {
        problems.push("`reload.poll_ms` must be at least 100".into());
    }
    match (
        listen.zip(admin_listen),
        token,
        hash_key,
        directory,
        audit_key,
        audit_storage,
    ) {
        (
            Some((listen, admin_listen)),
            Some(auth_token),
            Some(hash_key),
            Some(directory),
            Some(audit_key),
            Some(audit_storage),
        ) if problems.is_empty() => Ok(Config {
            listen,
            admin_listen,
            server_limits,
            public_url,
            flows_dir,
            prompts_dir,
            carrier: CarrierConfig {
                account_sid: raw.carrier.account_sid,
                auth_token,
                api_base: raw.carrier.api_base.trim_end_matches('/').to_string(),
                api_timeout_ms: raw.carrier.api_timeout_ms,
            },
            directory,
            audit: AuditConfig {
                storage: audit_storage,
                chain: raw.audit.chain,
                key: audit_key,
                retention_days: raw.audit.retention_days,
                on_failure,
                buffer_records: raw.audit.buffer_records,
                spill_dir,
            },
            sms,
            email,
            tickets,
            sms_prefixes: raw.limits.sms_prefixes,
            global_sends_per_hour: raw.limits.global_per_hour.unwrap_or(1000),
            max_sessions: raw.sessions.max,
            store,
            ended_calls,
            hash_key,
            budget_ms: raw.budget_ms,
            reload_poll_ms: raw.reload.enabled.then_some(raw.reload.poll_ms),
            log: raw.log.format,
            breaker,
            http_backends,
            pin_hashing_max_concurrent,
        }),
        _ => Err(problems),
    }
}

/// `store.ended_call_ttl_s` (one minute to 30 days) and `store.ended_calls_max` (memory only).
fn validate_ended_calls(raw: &RawStore, problems: &mut Vec<String>) -> EndedCalls {
    if !(60..=2_592_000).contains(&raw.ended_call_ttl_s) {
        problems.push(format!(
            "`store.ended_call_ttl_s`: {} must be between 60 and 2592000 (30 days)",
            raw.ended_call_ttl_s
        ));
    }
    if raw.kind != "memory" && raw.ended_calls_max.is_some() {
        problems.push(
            "`store.ended_calls_max` is for `kind: memory` (Redis expires each ended call by itself)"
                .into(),
        );
    }
    let max = raw
        .ended_calls_max
        .unwrap_or(resetline_store::ENDED_CALLS_MAX);
    if !(1..=10_000_000).contains(&max) {
        problems.push(format!(
            "`store.ended_calls_max`: {max} must be between 1 and 10000000"
        ));
    }
    EndedCalls {
        ttl_ms: raw.ended_call_ttl_s.saturating_mul(1000),
        max,
    }
}

/// A `redis://` or `rediss://` URL written in the config under `key`: never with credentials
/// (they go through `password_env`, or the whole URL through `url_env`), never repeated in a
/// problem (a mistyped URL may still carry a password).
fn config_redis_url(url: &str, key: &str, problems: &mut Vec<String>) -> bool {
    if url.contains('@') {
        problems.push(format!("`{key}`: must not carry credentials; give the password through `password_env` (or the whole URL through `url_env`)"));
        false
    } else if !is_redis_url(url) {
        problems.push(format!("`{key}`: not a redis:// or rediss:// URL"));
        false
    } else {
        true
    }
}

fn is_redis_url(u: &str) -> bool {
    u.starts_with("redis://") || u.starts_with("rediss://")
}

/// `store.cluster` or `store.sentinel.nodes`: 1 to 64 node URLs.
fn config_redis_nodes(nodes: Vec<String>, key: &str, problems: &mut Vec<String>) -> Vec<String> {
    if !(1..=64).contains(&nodes.len()) {
        problems.push(format!("`{key}`: give 1 to 64 node URLs"));
    }
    let mut good = true;
    for node in &nodes {
        good &= config_redis_url(node, key, problems);
    }
    if good { nodes } else { Vec::new() }
}

/// Which Redis `store:` names: exactly one of `url`, `url_env`, `cluster`, `sentinel`.
fn validate_redis_endpoint(
    raw: &mut RawStore,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<RedisEndpoint> {
    match (
        raw.url.take(),
        raw.url_env.take(),
        raw.cluster.take(),
        raw.sentinel.take(),
    ) {
        (Some(url), None, None, None) => config_redis_url(&url, "store.url", problems)
            .then(|| RedisEndpoint::Url(Secret::new(url))),
        (None, Some(name), None, None) => match env(&name) {
            Some(v) if is_redis_url(&v) => Some(RedisEndpoint::Url(Secret::new(v))),
            Some(_) => {
                problems.push(format!("`store.url_env`: environment variable `{name}` does not hold a redis:// or rediss:// URL"));
                None
            }
            None => {
                problems.push(format!(
                    "`store.url_env`: environment variable `{name}` is not set"
                ));
                None
            }
        },
        (None, None, Some(nodes), None) => {
            let nodes = config_redis_nodes(nodes, "store.cluster", problems);
            (!nodes.is_empty()).then_some(RedisEndpoint::Cluster(nodes))
        }
        (None, None, None, Some(sentinel)) => {
            let nodes = config_redis_nodes(sentinel.nodes, "store.sentinel.nodes", problems);
            let service = sentinel.service;
            if service.is_empty()
                || service.len() > 128
                || service.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                problems
                    .push("`store.sentinel.service`: 1 to 128 characters without spaces".into());
                return None;
            }
            (!nodes.is_empty()).then_some(RedisEndpoint::Sentinel { nodes, service })
        }
        _ => {
            problems.push(
                "`store`: `kind: redis` needs exactly one of `url` or `url_env` (or `cluster`, or `sentinel`)".into(),
            );
            None
        }
    }
}

fn validate_store(
    mut raw: RawStore,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> StoreConfig {
    match raw.kind.as_str() {
        "memory" => {
            if raw.url.is_some()
                || raw.url_env.is_some()
                || raw.cluster.is_some()
                || raw.sentinel.is_some()
                || raw.username.is_some()
                || raw.password_env.is_some()
                || raw.tls
            {
                problems.push(
                    "`store`: `url`, `url_env`, `cluster`, `sentinel`, `username`, `password_env` and `tls` are for `kind: redis`"
                        .into(),
                );
            }
            StoreConfig::Memory
        }
        "redis" => {
            let endpoint = validate_redis_endpoint(&mut raw, env, problems);
            let password = raw
                .password_env
                .as_deref()
                .and_then(|name| secret_env(env, name, "`store.password_env`", 1, problems));
            if raw.username.is_some() && raw.password_env.is_none() {
                problems.push("`store.username` needs `password_env`".into());
            }
            if raw.key_prefix.is_empty()
                || raw.key_prefix.len() > 64
                || raw
                    .key_prefix
                    .chars()
                    .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
            {
                problems.push(format!(
                    "`store.key_prefix`: `{}` must be 1 to 64 characters without spaces, `{{` or `}}`",
                    raw.key_prefix
                ));
            }
            if !(10..=5_000).contains(&raw.timeout_ms) {
                problems.push(format!(
                    "`store.timeout_ms`: {} must be between 10 and 5000",
                    raw.timeout_ms
                ));
            }
            match endpoint {
                Some(endpoint) => StoreConfig::Redis(RedisStoreConfig {
                    tls: raw.tls
                        || match &endpoint {
                            RedisEndpoint::Url(url) => url.expose().starts_with("rediss://"),
                            RedisEndpoint::Cluster(nodes) => {
                                nodes.iter().any(|n| n.starts_with("rediss://"))
                            }
                            RedisEndpoint::Sentinel { .. } => false,
                        },
                    endpoint,
                    username: raw.username,
                    password,
                    key_prefix: raw.key_prefix,
                    timeout_ms: raw.timeout_ms,
                }),
                None => StoreConfig::Memory,
            }
        }
        other => {
            problems.push(format!(
                "`store.kind`: `{other}` is not supported (supported: memory, redis)"
            ));
            StoreConfig::Memory
        }
    }
}

/// Checks `directory:` for `kind: ldap`: the required keys, then every rule of
/// [`resetline_connectors::LdapConfig::problems`], all reported together.
fn ldap_directory(
    raw: RawDirectory,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<DirectoryConfig> {
    use resetline_connectors::ldap::{
        Attributes, BIND_MODE, BindGuard, Flavor, LdapConfig, Lookups, PinCheck,
    };
    let mut required = |key: &str, value: Option<String>, example: &str| {
        if value.is_none() {
            problems.push(format!(
                "`directory.{key}`: required for `kind: ldap` (e.g. {example})"
            ));
        }
        value
    };
    let url = required("url", raw.url, "ldaps://ldap.example.com");
    let bind_dn = required(
        "bind_dn",
        raw.bind_dn,
        "cn=resetline,ou=services,dc=example,dc=com",
    );
    let base_dn = required("base_dn", raw.base_dn, "ou=people,dc=example,dc=com");
    let password_env = required(
        "bind_password_env",
        raw.bind_password_env,
        "LDAP_BIND_PASSWORD",
    );
    let flavor = match raw.flavor.as_deref() {
        None => Some(Flavor::OpenLdap),
        Some(word) => {
            let f = Flavor::parse(word);
            if f.is_none() {
                problems.push(format!(
                    "`directory.flavor`: `{word}` must be openldap or active_directory"
                ));
            }
            f
        }
    };
    let password = password_env
        .and_then(|name| secret_env(env, &name, "`directory.bind_password_env`", 1, problems));
    let (Some(url), Some(bind_dn), Some(base_dn), Some(flavor)) = (url, bind_dn, base_dn, flavor)
    else {
        return None;
    };
    // A missing password is already reported; the other keys are still checked.
    let usable = password.is_some();
    let password = password.unwrap_or_else(|| Secret::new(""));
    let mut cfg = LdapConfig::new(&url, &bind_dn, password, &base_dn, flavor);
    cfg.starttls = raw.starttls.unwrap_or(false);
    cfg.ca_file = raw.ca_file.as_deref().map(resolve);
    if let Some(ms) = raw.timeout_ms {
        cfg.timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(f) = raw.user_filter {
        cfg.user_filter = f;
    }
    cfg.allow_phone_reset = raw.allow_phone_reset.unwrap_or(true);
    cfg.must_change_at_next_logon = raw.must_change_at_next_logon.unwrap_or(false);
    let a = raw.attributes.unwrap_or_default();
    let d = Attributes::defaults(flavor);
    cfg.attributes = Attributes {
        id: a.id.unwrap_or(d.id),
        name: a.name.unwrap_or(d.name),
        mobile: a.mobile.unwrap_or(d.mobile),
        email: a.email.unwrap_or(d.email),
        birth_date: a.birth_date,
        pin_hash: a.pin_hash,
    };
    cfg.pin_check = match (raw.pin_check.as_deref(), raw.pin_bind) {
        (None | Some("hash"), None) => PinCheck::Hash,
        (Some("none"), None) => PinCheck::Off,
        (Some(BIND_MODE), bind) => {
            let bind = bind.unwrap_or_default();
            PinCheck::BindCountsTowardDirectoryLockout(BindGuard {
                policy_dn: bind.policy_dn,
                max_failures: bind.max_failures,
            })
        }
        (Some("hash" | "none") | None, Some(_)) => {
            problems.push(format!(
                "`directory.pin_bind` is only read with `pin_check: {BIND_MODE}`"
            ));
            PinCheck::Hash
        }
        (Some(other), _) => {
            problems.push(format!(
                "`directory.pin_check`: `{other}` must be hash, none or {BIND_MODE}"
            ));
            PinCheck::Hash
        }
    };
    let l = raw.lookup.unwrap_or_default();
    let d = Lookups::defaults(flavor);
    cfg.lookup = Lookups {
        employee_id: l.employee_id.unwrap_or(d.employee_id),
        username: l.username.unwrap_or(d.username),
        phone: l.phone.unwrap_or(d.phone),
        email: l.email.unwrap_or(d.email),
    };
    let found = cfg.problems();
    if found.is_empty() && usable {
        Some(DirectoryConfig::Ldap(Box::new(cfg)))
    } else {
        problems.extend(found);
        None
    }
}

fn secret_env(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    field: &str,
    min_len: usize,
    problems: &mut Vec<String>,
) -> Option<Secret> {
    match env(name) {
        Some(v) if v.len() >= min_len => Some(Secret::new(v)),
        Some(_) => {
            problems.push(format!(
                "{field}: environment variable `{name}` must hold at least {min_len} characters"
            ));
            None
        }
        None => {
            problems.push(format!("{field}: environment variable `{name}` is not set (the server refuses to start without it; `resetline demo` is the explicit unsigned-friendly mode)"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("flows")).ok();
        std::fs::create_dir_all(dir.join("voice-prompts")).ok();
        std::fs::write(dir.join("users.yaml"), "users: []\n").ok();
        let p = dir.join("resetline.yaml");
        std::fs::write(&p, text).ok();
        p
    }

    const GOOD: &str = "public_url: https://ivr.example.com/\ncarrier: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TOKEN }\ndirectory: { kind: embedded, path: users.yaml }\nhash_key_env: KEY\naudit: { dir: audit, key_env: KEY }\n";

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("tok".into()),
            "KEY" => Some("k".repeat(32)),
            _ => None,
        }
    }

    #[test]
    fn a_good_file_loads_with_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&write(dir.path(), GOOD), &env).expect("config");
        assert_eq!(c.public_url, "https://ivr.example.com");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.budget_ms, 4000);
        assert_eq!(c.carrier.auth_token.expose(), "tok");
        assert_eq!(
            c.pin_hashing_max_concurrent,
            resetline_connectors::PinHashing::default_limit()
        );
    }

    #[test]
    fn the_admin_listener_and_the_webhook_ports_limits_have_defaults_and_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&write(dir.path(), GOOD), &env).expect("config");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(c.server_limits, crate::serve::Limits::default());
        let tuned = format!(
            "{GOOD}admin_listen: 10.0.0.5:9100\nserver: {{ header_read_timeout_ms: 2000, body_read_timeout_ms: 3000, idle_timeout_ms: 60000, max_connections: 4096, max_requests_in_flight: 512 }}\n"
        );
        let c = load(&write(dir.path(), &tuned), &env).expect("config");
        assert_eq!(c.admin_listen.to_string(), "10.0.0.5:9100");
        assert_eq!(
            c.server_limits,
            crate::serve::Limits {
                header_read_timeout: std::time::Duration::from_secs(2),
                body_read_timeout: std::time::Duration::from_secs(3),
                idle_timeout: std::time::Duration::from_secs(60),
                max_connections: 4096,
                max_in_flight: 512,
            }
        );
        let bad = format!(
            "{GOOD}listen: 0.0.0.0:9090\nserver: {{ header_read_timeout_ms: 0, body_read_timeout_ms: 9000, idle_timeout_ms: 50, max_connections: 0, max_requests_in_flight: 100000 }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`admin_listen`: 127.0.0.1:9090 is the webhook port",
            "`server.header_read_timeout_ms`: 0",
            "`server.body_read_timeout_ms`: 9000",
            "`server.idle_timeout_ms`: 50",
            "`server.max_connections`: 0",
            "`server.max_requests_in_flight`: 100000",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = "listen: nowhere\npublic_url: ivr.example.com\ncarrier: { account_sid: AC12, auth_token_env: MISSING }\ndirectory: { kind: nis }\nhash_key_env: SHORT\nbudget_ms: 20000\naudit: { dir: a, chain: \"no spaces\", key_env: SHORT }\n";
        let err = load(&write(dir.path(), bad), &|n| {
            (n == "SHORT").then(|| "x".to_string())
        })
        .expect_err("invalid");
        let text = err.to_string();
        for want in [
            "`listen`",
            "`public_url`",
            "`carrier.account_sid`",
            "MISSING",
            "`directory.kind`",
            "at least 32",
            "`budget_ms`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert!(!text.contains("`x`"), "no secret value echoed");
    }

    #[test]
    fn messages_and_tickets_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = format!(
            "{GOOD}messages: {{ sms: {{ from: \"+15555550000\" }}, email: {{ host: 127.0.0.1, port: 2525, tls: none, from: desk@example.com }} }}\ntickets: {{ kind: servicenow, base_url: http://127.0.0.1:9/, token_env: TOKEN }}\n"
        );
        let c = load(&write(dir.path(), &good), &env).expect("config");
        assert_eq!(c.sms, Some(SmsFrom::Number("+15555550000".into())));
        assert_eq!(c.email.map(|e| e.port), Some(Some(2525)));
        assert_eq!(
            c.tickets.map(|t| t.base_url),
            Some("http://127.0.0.1:9".to_string())
        );
        let bad = format!(
            "{GOOD}messages: {{ sms: {{ from: \"+1555\", messaging_service_sid: MG1 }}, email: {{ host: h, tls: ssl, from: nobody }} }}\ntickets: {{ kind: jira, base_url: x }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`messages.sms`",
            "`messages.email.tls`",
            "`messages.email.from`",
            "`tickets.kind`",
            "`tickets.base_url`",
            "`tickets`: give",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }

    const LDAP: &str = "public_url: https://ivr.example.com/\ncarrier: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TOKEN }\nhash_key_env: KEY\naudit: { dir: audit, key_env: KEY }\n";

    #[test]
    fn an_ldap_directory_loads_with_flavor_defaults_and_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), "x").ok();
        let text = format!(
            "{LDAP}directory:\n  kind: ldap\n  url: ldaps://dc1.corp.example.com\n  bind_dn: CN=svc-resetline,OU=Services,DC=corp,DC=example,DC=com\n  bind_password_env: TOKEN\n  base_dn: OU=Staff,DC=corp,DC=example,DC=com\n  flavor: active_directory\n  ca_file: ca.pem\n  timeout_ms: 1500\n  attributes: {{ mobile: otherMobile, pin_hash: resetlinePinHash }}\n  lookup: {{ phone: [otherMobile] }}\n  must_change_at_next_logon: true\n"
        );
        let c = load(&write(dir.path(), &text), &env).expect("config");
        let DirectoryConfig::Ldap(l) = c.directory else {
            panic!("not ldap");
        };
        assert_eq!(l.flavor, resetline_connectors::Flavor::ActiveDirectory);
        assert!(l.must_change_at_next_logon);
        assert_eq!(l.bind_password.expose(), "tok");
        assert_eq!(l.timeout.as_millis(), 1500);
        assert_eq!(l.attributes.id, "sAMAccountName", "flavor default");
        assert_eq!(l.attributes.mobile, "otherMobile", "override");
        assert_eq!(l.lookup.phone, vec!["otherMobile".to_string()]);
        assert_eq!(l.lookup.employee_id, vec!["employeeID".to_string()]);
        assert_eq!(
            l.ca_file,
            Some(dir.path().join("ca.pem")),
            "relative to the file"
        );
    }

    #[test]
    fn ldap_pins_are_checked_against_a_hash_unless_bind_mode_is_named() {
        use resetline_connectors::{BindGuard, PinCheck};
        let dir = tempfile::tempdir().expect("tempdir");
        let ldap = |extra: &str| {
            format!(
                "{LDAP}directory: {{ kind: ldap, url: \"ldaps://ldap.example.com\", bind_dn: \"cn=r,dc=x\", bind_password_env: TOKEN, base_dn: \"dc=x\"{extra} }}\n"
            )
        };
        let pin_check = |extra: &str| {
            let c = load(&write(dir.path(), &ldap(extra)), &env).unwrap_or_else(|e| panic!("{e}"));
            let DirectoryConfig::Ldap(l) = c.directory else {
                panic!("not ldap");
            };
            l.pin_check
        };
        assert_eq!(
            pin_check(", attributes: { pin_hash: resetlinePinHash }"),
            PinCheck::Hash
        );
        assert_eq!(pin_check(", pin_check: none"), PinCheck::Off);
        assert_eq!(
            pin_check(
                ", pin_check: bind_counts_toward_directory_lockout, pin_bind: { policy_dn: \"cn=default,ou=policies,dc=x\", max_failures: 5 }"
            ),
            PinCheck::BindCountsTowardDirectoryLockout(BindGuard {
                policy_dn: Some("cn=default,ou=policies,dc=x".into()),
                max_failures: Some(5),
            })
        );
        let problems = |extra: &str| {
            load(&write(dir.path(), &ldap(extra)), &env)
                .expect_err("invalid")
                .to_string()
        };
        let text = problems("");
        assert!(
            text.contains("`directory.attributes.pin_hash`")
                && text.contains("pin_check: none")
                && text.contains("counts every wrong PIN toward the directory's own lockout"),
            "{text}"
        );
        for (extra, want) in [
            (", pin_check: bind", "`directory.pin_check`: `bind` must be"),
            (
                ", pin_check: bind_counts_toward_directory_lockout",
                "`directory.pin_bind`: `pin_check: bind_counts_toward_directory_lockout` needs",
            ),
            (
                ", attributes: { pin_hash: h }, pin_bind: { max_failures: 5 }",
                "`directory.pin_bind` is only read with",
            ),
        ] {
            let text = problems(extra);
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let embedded = format!(
            "{LDAP}directory: {{ kind: embedded, path: users.yaml, pin_check: none }}\npin_hashing: {{ max_concurrent: 0 }}\n"
        );
        let text = load(&write(dir.path(), &embedded), &env)
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("`directory.pin_check` and `directory.pin_bind` are for `kind: ldap`")
                && text.contains("`pin_hashing.max_concurrent`: 0"),
            "{text}"
        );
    }

    #[test]
    fn every_ldap_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing =
            format!("{LDAP}directory: {{ kind: ldap, path: users.yaml, flavor: novell }}\n");
        let text = load(&write(dir.path(), &missing), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`directory.path` is for `kind: embedded`",
            "`directory.url`: required",
            "`directory.bind_dn`: required",
            "`directory.base_dn`: required",
            "`directory.bind_password_env`: required",
            "`directory.flavor`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let bad = format!(
            "{LDAP}directory: {{ kind: ldap, url: \"ldap://ldap.example.com\", bind_dn: resetline, bind_password_env: UNSET, base_dn: \"dc=example,dc=com\", timeout_ms: 50, ca_file: nope.pem, attributes: {{ id: \"uid)(x\" }}, lookup: {{ email: [] }} }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`directory.bind_password_env`",
            "UNSET",
            "`directory.timeout_ms`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let bad = bad.replace("UNSET", "TOKEN");
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`directory.url`: `ldap://ldap.example.com` would send passwords unencrypted",
            "`directory.bind_dn`",
            "`directory.timeout_ms`",
            "`directory.ca_file`",
            "`directory.attributes.id`",
            "`directory.lookup.email`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let slow = format!(
            "{LDAP}budget_ms: 2000\ndirectory: {{ kind: ldap, url: \"ldaps://ldap.example.com\", bind_dn: \"cn=r,dc=x\", bind_password_env: TOKEN, base_dn: \"dc=x\", timeout_ms: 2000, pin_check: none }}\n"
        );
        let text = load(&write(dir.path(), &slow), &env)
            .expect_err("invalid")
            .to_string();
        assert!(text.contains("must be below `budget_ms`"), "{text}");
        let embedded_with_url = format!(
            "{LDAP}directory: {{ kind: embedded, path: users.yaml, url: \"ldaps://x\" }}\n"
        );
        let text = load(&write(dir.path(), &embedded_with_url), &env)
            .expect_err("invalid")
            .to_string();
        assert!(text.contains("are for `kind: ldap`"), "{text}");
    }

    #[test]
    fn the_example_ldap_section_loads() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let text = std::fs::read_to_string(deploy.join("resetline.example.yaml")).expect("example");
        let (mut out, mut block, mut skip) = (String::new(), false, false);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().copied().enumerate() {
            if line.starts_with("directory:") {
                skip = true;
                continue;
            }
            // The commented LDAP example (other commented directories follow it).
            if line.starts_with("# directory:")
                && lines
                    .get(i + 1)
                    .is_some_and(|n| n.trim_start_matches(['#', ' ']) == "kind: ldap")
            {
                block = true;
                skip = false;
            }
            if block && line.is_empty() {
                block = false;
            }
            if block {
                if !line.contains("ca_file:") {
                    out.push_str(line.strip_prefix("# ").unwrap_or(line));
                    out.push('\n');
                }
            } else if !(skip && line.starts_with("  ")) {
                skip = false;
                out.push_str(line);
                out.push('\n');
            }
        }
        let raw: Raw = serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        let c = validate(raw, &deploy, &|_| Some("k".repeat(40)))
            .unwrap_or_else(|p| panic!("{p:?}\n{out}"));
        let DirectoryConfig::Ldap(l) = c.directory else {
            panic!("the example's LDAP section did not load as ldap:\n{out}");
        };
        assert_eq!(l.url, "ldaps://ldap.example.com");
        assert_eq!(
            l.lookup.phone,
            vec!["mobile".to_string(), "telephoneNumber".to_string()]
        );
    }

    #[test]
    fn the_store_is_memory_by_default_and_redis_is_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&write(dir.path(), GOOD), &env).expect("config");
        assert!(matches!(c.store, StoreConfig::Memory));
        let good = format!(
            "{GOOD}store: {{ kind: redis, url: \"redis://10.0.0.5:6379/2\", password_env: TOKEN, key_prefix: \"rl:\", timeout_ms: 300 }}\n"
        );
        let c = load(&write(dir.path(), &good), &env).expect("config");
        let StoreConfig::Redis(r) = c.store else {
            panic!("redis expected")
        };
        assert!(
            matches!(&r.endpoint, RedisEndpoint::Url(u) if u.expose() == "redis://10.0.0.5:6379/2")
        );
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("tok"));
        assert_eq!(
            (r.key_prefix.as_str(), r.timeout_ms, r.tls),
            ("rl:", 300, false)
        );
        let from_env = format!("{GOOD}store: {{ kind: redis, url_env: REDIS_URL }}\n");
        let c = load(&write(dir.path(), &from_env), &|n| {
            if n == "REDIS_URL" {
                Some("rediss://:hunter2@cache:6380".into())
            } else {
                env(n)
            }
        })
        .expect("config");
        assert!(
            matches!(c.store, StoreConfig::Redis(ref r) if r.tls),
            "rediss implies TLS"
        );

        let bad = format!(
            "{GOOD}store: {{ kind: redis, url: \"redis://:hunter2@cache:6379\", key_prefix: \"a{{b\", timeout_ms: 0 }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "must not carry credentials",
            "`store.key_prefix`",
            "`store.timeout_ms`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert!(!text.contains("hunter2"), "no password echoed: {text}");
        for (bad, want) in [
            ("{ kind: postgres }", "`store.kind`"),
            ("{ kind: redis }", "exactly one of `url` or `url_env`"),
            ("{ kind: redis, url_env: NOPE }", "`NOPE` is not set"),
            ("{ kind: redis, url: \"http://cache\" }", "not a redis://"),
            (
                "{ kind: memory, url: \"redis://cache\" }",
                "are for `kind: redis`",
            ),
        ] {
            let text = load(&write(dir.path(), &format!("{GOOD}store: {bad}\n")), &env)
                .expect_err(bad)
                .to_string();
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }

    #[test]
    fn a_redis_cluster_or_sentinel_is_validated_with_the_other_problems() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = format!(
            "{GOOD}store: {{ kind: redis, cluster: [\"redis://10.0.0.5:6379\", \"rediss://10.0.0.6:6379\"] }}\n"
        );
        let c = load(&write(dir.path(), &cluster), &env).expect("config");
        let StoreConfig::Redis(r) = c.store else {
            panic!("redis expected")
        };
        assert!(matches!(&r.endpoint, RedisEndpoint::Cluster(n) if n.len() == 2));
        assert!(r.tls, "a rediss:// node implies TLS");
        let sentinel = format!(
            "{GOOD}store: {{ kind: redis, sentinel: {{ nodes: [\"redis://10.0.0.7:26379\"], service: mymaster }}, password_env: TOKEN }}\n"
        );
        let c = load(&write(dir.path(), &sentinel), &env).expect("config");
        let StoreConfig::Redis(r) = c.store else {
            panic!("redis expected")
        };
        assert!(
            matches!(&r.endpoint, RedisEndpoint::Sentinel { nodes, service } if nodes.len() == 1 && service == "mymaster")
        );
        assert!(r.password.is_some() && !r.tls);
        for (bad, want) in [
            (
                "{ kind: redis, url: \"redis://cache\", cluster: [\"redis://a:1\"] }",
                "exactly one of `url` or `url_env` (or `cluster`, or `sentinel`)",
            ),
            (
                "{ kind: redis, cluster: [] }",
                "`store.cluster`: give 1 to 64",
            ),
            (
                "{ kind: redis, cluster: [\"redis://:hunter2@a:1\"] }",
                "`store.cluster`: must not carry credentials",
            ),
            (
                "{ kind: redis, sentinel: { nodes: [\"http://s:26379\"], service: m } }",
                "`store.sentinel.nodes`: not a redis://",
            ),
            (
                "{ kind: redis, sentinel: { nodes: [\"redis://s:26379\"], service: \"\" } }",
                "`store.sentinel.service`",
            ),
            (
                "{ kind: memory, sentinel: { nodes: [\"redis://s:26379\"], service: m } }",
                "are for `kind: redis`",
            ),
        ] {
            let text = load(&write(dir.path(), &format!("{GOOD}store: {bad}\n")), &env)
                .expect_err(bad)
                .to_string();
            assert!(text.contains(want), "{want} missing from:\n{text}");
            assert!(!text.contains("hunter2"), "no password echoed: {text}");
        }
    }

    #[test]
    fn ended_calls_are_remembered_a_day_by_default_and_the_keys_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&write(dir.path(), GOOD), &env).expect("config");
        assert_eq!(
            c.ended_calls,
            EndedCalls {
                ttl_ms: 86_400_000,
                max: 100_000
            }
        );
        let set = format!("{GOOD}store: {{ ended_call_ttl_s: 3600, ended_calls_max: 500 }}\n");
        let c = load(&write(dir.path(), &set), &env).expect("config");
        assert_eq!(
            c.ended_calls,
            EndedCalls {
                ttl_ms: 3_600_000,
                max: 500
            }
        );
        let bad = format!(
            "{GOOD}store: {{ kind: redis, url: \"redis://cache\", ended_call_ttl_s: 5, ended_calls_max: 10 }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in ["`store.ended_call_ttl_s`", "`store.ended_calls_max` is for"] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let text = load(
            &write(
                dir.path(),
                &format!("{GOOD}store: {{ ended_calls_max: 0 }}\n"),
            ),
            &env,
        )
        .expect_err("invalid")
        .to_string();
        assert!(text.contains("`store.ended_calls_max`: 0"), "{text}");
    }

    #[test]
    fn the_example_configuration_loads_with_either_store() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let example =
            std::fs::read_to_string(deploy.join("resetline.example.yaml")).expect("example");
        let env = |_: &str| Some("x".repeat(32));
        let c = load(&deploy.join("resetline.example.yaml"), &env).expect("the example loads");
        assert!(matches!(c.store, StoreConfig::Memory));
        let redis = example.replacen(
            "  kind: memory ",
            "  kind: redis\n  url: redis://redis.internal:6379/0\n  tls: true\n ",
            1,
        );
        assert_ne!(redis, example);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("redis.yaml");
        let rebased = redis.replace("../", &format!("{}/../", deploy.display()));
        std::fs::write(&p, rebased).expect("write");
        let c = load(&p, &env).expect("the example with Redis loads");
        let StoreConfig::Redis(r) = c.store else {
            panic!("redis expected")
        };
        assert_eq!(
            (r.key_prefix.as_str(), r.timeout_ms, r.tls),
            ("resetline:", 500, true)
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(&write(dir.path(), &format!("{GOOD}lisen: 1\n")), &env)
            .expect_err("unknown field");
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn audit_sinks_retention_and_failure_policy_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&write(dir.path(), GOOD), &env).expect("config");
        assert!(matches!(c.audit.storage, AuditStorage::File { .. }));
        assert_eq!(c.audit.retention_days, 365);
        assert_eq!(c.audit.on_failure, crate::audit::OnFailure::Continue);
        assert_eq!(c.audit.buffer_records, 10_000);
        assert_eq!(
            c.audit.spill_dir,
            dir.path().join("audit/spill"),
            "the spill defaults to a directory beside the audit files"
        );
        let elsewhere = GOOD.replace(
            "audit: { dir: audit, key_env: KEY }",
            "audit: { dir: audit, key_env: KEY, spill_dir: /var/lib/resetline/spill }",
        );
        let c = load(&write(dir.path(), &elsewhere), &env).expect("config");
        assert_eq!(
            c.audit.spill_dir,
            Path::new("/var/lib/resetline/spill"),
            "as configured"
        );

        let pg = GOOD.replace(
            "audit: { dir: audit, key_env: KEY }",
            "audit: { kind: postgres, url_env: PGURL, key_env: KEY, chain: node-1, retention_days: 30, on_failure: refuse }",
        );
        let with_url = |name: &str| match name {
            "PGURL" => Some("postgres://resetline:pw@127.0.0.1:5432/resetline".to_string()),
            other => env(other),
        };
        let c = load(&write(dir.path(), &pg), &with_url).expect("postgres config");
        match &c.audit.storage {
            AuditStorage::Postgres { url } => assert!(url.expose().starts_with("postgres://")),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.audit.on_failure, crate::audit::OnFailure::Refuse);
        assert_eq!(c.audit.retention_days, 30);
        assert_eq!(c.audit.spill_dir, dir.path().join("audit-spill"));

        let text = load(&write(dir.path(), &pg), &env)
            .expect_err("unset url")
            .to_string();
        assert!(
            text.contains("`audit.url_env`") && text.contains("PGURL"),
            "{text}"
        );
        let not_a_url = |name: &str| match name {
            "PGURL" => Some("secret-password".to_string()),
            other => env(other),
        };
        let text = load(&write(dir.path(), &pg), &not_a_url)
            .expect_err("not a url")
            .to_string();
        assert!(text.contains("connection string"), "{text}");
        assert!(!text.contains("secret-password"), "no value echoed: {text}");

        let bad = GOOD.replace(
            "audit: { dir: audit, key_env: KEY }",
            "audit: { kind: s3, key_env: KEY, retention_days: 0, on_failure: panic, buffer_records: 0 }",
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`audit.kind`",
            "`audit.retention_days`",
            "`audit.on_failure`",
            "`audit.buffer_records`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let no_url = GOOD.replace(
            "audit: { dir: audit, key_env: KEY }",
            "audit: { kind: postgres, key_env: KEY }",
        );
        let text = load(&write(dir.path(), &no_url), &env)
            .expect_err("no url_env")
            .to_string();
        assert!(text.contains("needs the environment variable"), "{text}");
    }
}

#[cfg(test)]
mod connector_tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("flows")).ok();
        std::fs::create_dir_all(dir.join("voice-prompts")).ok();
        let p = dir.join("resetline.yaml");
        std::fs::write(&p, text).ok();
        p
    }

    const BASE: &str = "public_url: https://ivr.example.com/\ncarrier: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TOKEN }\nhash_key_env: KEY\naudit: { dir: audit, key_env: KEY }\n";

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" | "IDP_TOKEN" | "HR_TOKEN" => Some("tok".into()),
            "KEY" | "HR_SIGNING" => Some("k".repeat(32)),
            _ => None,
        }
    }

    #[test]
    fn scim_okta_breaker_and_http_backends_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "{BASE}directory: {{ kind: okta, base_url: https://acme.okta.com/, token_env: IDP_TOKEN, timeout_ms: 2000, employee_id_attribute: employeeNumber, pin_hash_attribute: resetlinePinHash, unlock: true }}\nbreaker: {{ failures: 3, cool_down_ms: 10000 }}\nhttp: {{ backends: [ {{ name: hr, base_url: https://hr.example.com/api, token_env: HR_TOKEN, signing_key_env: HR_SIGNING }} ] }}\n"
        );
        let c = load(&write(dir.path(), &text), &env).expect("config");
        let DirectoryConfig::Okta(okta) = &c.directory else {
            panic!("{:?}", c.directory)
        };
        assert_eq!(okta.base_url, "https://acme.okta.com");
        assert_eq!(okta.token.expose(), "tok");
        assert_eq!(okta.timeout_ms, 2000);
        assert!(okta.unlock);
        assert_eq!(
            c.breaker,
            BreakerConfig {
                failures: 3,
                cool_down_ms: 10_000
            }
        );
        assert_eq!(c.http_backends.len(), 1);
        assert_eq!(c.http_backends[0].name, "hr");
        assert_eq!(
            c.http_backends[0].signing.as_ref().map(|(n, _)| n.as_str()),
            Some("HR_SIGNING")
        );
        let text = format!(
            "{BASE}directory: {{ kind: scim, base_url: \"http://127.0.0.1:9/scim/v2\", token_env: IDP_TOKEN }}\n"
        );
        let c = load(&write(dir.path(), &text), &env).expect("config");
        assert!(
            matches!(&c.directory, DirectoryConfig::Scim(s) if s.timeout_ms == 3000 && !s.unlock)
        );
        assert_eq!(c.breaker.failures, 5);
    }

    #[test]
    fn the_deploy_example_loads() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/resetline.example.yaml");
        let c = load(&example, &|_| Some("e".repeat(40))).expect("the example is valid");
        assert_eq!(c.breaker.failures, 5);
        assert_eq!(c.http_backends[0].name, "hr");
    }

    #[test]
    fn every_connector_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "{BASE}directory: {{ kind: scim, path: users.yaml, base_url: \"http://idp.example.com\", timeout_ms: 50, employee_id_attribute: \"a b\", unlock: true }}\nbreaker: {{ failures: 0, cool_down_ms: 5 }}\nhttp: {{ backends: [ {{ name: \"h r\", base_url: ftp://x, token_env: NOPE, signing_key_env: HR_TOKEN }}, {{ name: \"h r\", base_url: https://x.example }} ] }}\n"
        );
        let text = load(&write(dir.path(), &text), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`directory.path`: the scim directory has no users file",
            "`directory.base_url`: `http://idp.example.com` plain http",
            "`directory.token_env`: the scim directory needs",
            "`directory.timeout_ms`: 50",
            "`directory.employee_id_attribute`: `a b`",
            "`directory.unlock`: only the okta",
            "`breaker.failures`",
            "`breaker.cool_down_ms`",
            "`http.backends[0]`.name",
            "`http.backends[0]`.base_url: `ftp://x` is not an http(s) URL",
            "`http.backends[0]`.token_env: environment variable `NOPE` is not set",
            "`http.backends[0]`.signing_key_env: environment variable `HR_TOKEN` must hold at least 16",
            "`http.backends[1]`.name: `h r` is used twice",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert!(!text.contains("tok`"), "no secret echoed");
        let text = format!(
            "{BASE}directory: {{ kind: embedded, path: users.yaml, base_url: https://x.example }}\n"
        );
        std::fs::write(dir.path().join("users.yaml"), "users: []\n").ok();
        let text = load(&write(dir.path(), &text), &env)
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("belong to the ldap, scim and okta kinds"),
            "{text}"
        );
    }
}
