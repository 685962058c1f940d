//! `resetline.yaml`: the configuration of `resetline serve` (and `demo`, `lockout`), read once
//! at start and checked as a whole.
//!
//! Secrets are never written in the file: it names environment variables that hold them
//! (`auth_token_env`, `hash_key_env`). Invariant: a [`Config`] only exists when every field was
//! valid and every referenced variable was set; [`load`] reports all problems at once (each
//! section's check adds to one list and never stops early).
//!
//! One module per section: `listeners` (`listen`, `admin_listen`, `server:`), `carrier`,
//! `directory` (and `pin_hashing:`), `audit`, `messages` (and `limits:`), `tickets`, `store`,
//! `connectors` (SCIM/Okta settings, `breaker:`, `http:` backends). Each part owns the type
//! its settings fill and their defaults (the server's [`resetline_server::Limits`], the
//! connectors' `LdapConfig`, the audit writer's `OnFailure`); this crate maps the file onto
//! them, so the parts themselves never read YAML and the server does not depend on the
//! connectors.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use resetline_engine::Secret;
use serde::Deserialize;

mod audit;
mod carrier;
mod connectors;
mod directory;
mod listeners;
mod messages;
mod store;
mod tickets;

pub use audit::{AuditConfig, AuditStorage};
pub use carrier::CarrierConfig;
pub use connectors::{BreakerConfig, HttpBackendConfig, IdpConfig};
pub use directory::DirectoryConfig;
pub use messages::{EmailConfig, SmsFrom};
pub use store::{EndedCalls, RedisEndpoint, RedisStoreConfig, StoreConfig};
pub use tickets::{TicketAuth, TicketSystem, TicketsConfig};

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
    #[serde(default)]
    tls: Option<listeners::RawTls>,
    public_url: String,
    #[serde(default = "default_flows")]
    flows_dir: PathBuf,
    #[serde(default = "default_prompts")]
    prompts_dir: PathBuf,
    carrier: carrier::RawCarrier,
    directory: directory::RawDirectory,
    audit: audit::RawAudit,
    #[serde(default)]
    messages: messages::RawMessages,
    #[serde(default)]
    tickets: Option<tickets::RawTickets>,
    #[serde(default)]
    limits: messages::RawLimits,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    store: store::RawStore,
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
    pin_hashing: directory::RawPinHashing,
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

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where the admin routes (`/metrics`, `/readyz`) listen (default 127.0.0.1:9090).
    pub admin_listen: SocketAddr,
    /// The webhook port's connection limits (`server:`).
    pub server_limits: resetline_server::Limits,
    /// HTTPS on the webhook port (`tls:`; none: plain HTTP, for TLS ended in front).
    pub tls: Option<resetline_server::TlsFiles>,
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
    let listen = listeners::listen(&raw.listen, &mut problems);
    let admin_listen = listeners::admin_listen(&raw.admin_listen, listen, &mut problems);
    let server_limits = listeners::limits(raw.server, &mut problems);
    let public_url = listeners::public_url(&raw.public_url, &mut problems);
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let tls = listeners::tls(raw.tls, &resolve, &mut problems);
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
    let carrier = carrier::carrier(raw.carrier, env, &mut problems);
    let hash_key = secret_env(env, &raw.hash_key_env, "`hash_key_env`", 32, &mut problems);
    let (directory, pin_hashing_max_concurrent) =
        directory::directory(raw.directory, raw.pin_hashing, &resolve, env, &mut problems);
    let audit = audit::audit(raw.audit, &resolve, env, &mut problems);
    let (sms, email) = messages::messages(raw.messages, env, &mut problems);
    let tickets = tickets::tickets(raw.tickets, env, &mut problems);
    let (sms_prefixes, global_sends_per_hour) = messages::limits(raw.limits, &mut problems);
    directory::within_budget(directory.as_ref(), raw.budget_ms, &mut problems);
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
    let ended_calls = store::validate_ended_calls(&raw.store, &mut problems);
    let store = store::validate_store(raw.store, env, &mut problems);
    if raw.reload.poll_ms < 100 {
        problems.push("`reload.poll_ms` must be at least 100".into());
    }
    match (
        listen.zip(admin_listen),
        carrier,
        hash_key,
        directory,
        audit,
    ) {
        (
            Some((listen, admin_listen)),
            Some(carrier),
            Some(hash_key),
            Some(directory),
            Some(audit),
        ) if problems.is_empty() => Ok(Config {
            listen,
            admin_listen,
            server_limits,
            tls,
            public_url,
            flows_dir,
            prompts_dir,
            carrier,
            directory,
            audit,
            sms,
            email,
            tickets,
            sms_prefixes,
            global_sends_per_hour,
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

/// What the tests of every section share: a configuration file in a scratch directory (with
/// the flows, prompts and users file it names) and the variables it reads.
#[cfg(test)]
mod testing {
    use std::path::{Path, PathBuf};

    pub(crate) fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("flows")).ok();
        std::fs::create_dir_all(dir.join("voice-prompts")).ok();
        std::fs::write(dir.join("users.yaml"), "users: []\n").ok();
        let p = dir.join("resetline.yaml");
        std::fs::write(&p, text).ok();
        p
    }

    /// A valid file with the embedded directory.
    pub(crate) const GOOD: &str = "public_url: https://ivr.example.com/\ncarrier: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TOKEN }\ndirectory: { kind: embedded, path: users.yaml }\nhash_key_env: KEY\naudit: { dir: audit, key_env: KEY }\n";

    /// Every required section but `directory:`.
    pub(crate) const BASE: &str = "public_url: https://ivr.example.com/\ncarrier: { account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TOKEN }\nhash_key_env: KEY\naudit: { dir: audit, key_env: KEY }\n";

    pub(crate) fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" | "IDP_TOKEN" | "HR_TOKEN" => Some("tok".into()),
            "KEY" | "HR_SIGNING" => Some("k".repeat(32)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{GOOD, env, write};

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
    fn unknown_fields_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(&write(dir.path(), &format!("{GOOD}lisen: 1\n")), &env)
            .expect_err("unknown field");
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn the_deploy_example_loads() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/resetline.example.yaml");
        let c = load(&example, &|_| Some("e".repeat(40))).expect("the example is valid");
        assert_eq!(c.breaker.failures, 5);
        assert_eq!(c.http_backends[0].name, "hr");
    }
}
