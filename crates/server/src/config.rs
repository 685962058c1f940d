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

pub use connectors::{BreakerConfig, HttpBackendConfig, IdpConfig};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_listen")]
    listen: String,
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
    base_url: Option<String>,
    token_env: Option<String>,
    timeout_ms: Option<u64>,
    employee_id_attribute: Option<String>,
    pin_hash_attribute: Option<String>,
    unlock: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    dir: PathBuf,
    #[serde(default = "default_chain")]
    chain: String,
    key_env: String,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryConfig {
    /// A YAML file of users (`examples/demo/users.yaml` format).
    Embedded {
        /// The file.
        path: PathBuf,
    },
    /// A SCIM 2.0 service provider.
    Scim(IdpConfig),
    /// An Okta org.
    Okta(IdpConfig),
}

/// The audit trail: a hash-chained JSON Lines file set.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Directory of the chain's files (created if missing).
    pub dir: PathBuf,
    /// Chain id (file name prefix).
    pub chain: String,
    /// HMAC key for the chain and checkpoints (at least 32 characters).
    pub key: Secret,
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
        base_url: raw.directory.base_url,
        token_env: raw.directory.token_env,
        timeout_ms: raw.directory.timeout_ms,
        employee_id_attribute: raw.directory.employee_id_attribute,
        pin_hash_attribute: raw.directory.pin_hash_attribute,
        unlock: raw.directory.unlock,
    };
    if raw.directory.kind == "embedded" && idp.any() {
        problems.push("`directory`: base_url, token_env, timeout_ms, employee_id_attribute, pin_hash_attribute and unlock belong to the scim and okta kinds".into());
    }
    let directory = match (raw.directory.kind.as_str(), raw.directory.path) {
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
        ("embedded", Some(p)) => {
            let p = resolve(&p);
            if !p.is_file() {
                problems.push(format!("`directory.path`: {} is not a file", p.display()));
            }
            Some(DirectoryConfig::Embedded { path: p })
        }
        ("embedded", None) => {
            problems.push(
                "`directory.path`: the embedded directory needs the path of its users file".into(),
            );
            None
        }
        (other, _) => {
            problems.push(format!(
                "`directory.kind`: `{other}` is not supported (supported: embedded, scim, okta)"
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
    let audit_dir = resolve(&raw.audit.dir);
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
    if raw.reload.poll_ms < 100 {
        problems.push("`reload.poll_ms` must be at least 100".into());
    }
    match (listen, token, hash_key, directory, audit_key) {
        (Some(listen), Some(auth_token), Some(hash_key), Some(directory), Some(audit_key))
            if problems.is_empty() =>
        {
            Ok(Config {
                listen,
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
                    dir: audit_dir,
                    chain: raw.audit.chain,
                    key: audit_key,
                },
                sms,
                email,
                tickets,
                sms_prefixes: raw.limits.sms_prefixes,
                global_sends_per_hour: raw.limits.global_per_hour.unwrap_or(1000),
                max_sessions: raw.sessions.max,
                hash_key,
                budget_ms: raw.budget_ms,
                reload_poll_ms: raw.reload.enabled.then_some(raw.reload.poll_ms),
                log: raw.log.format,
                breaker,
                http_backends,
            })
        }
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
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = "listen: nowhere\npublic_url: ivr.example.com\ncarrier: { account_sid: AC12, auth_token_env: MISSING }\ndirectory: { kind: ldap }\nhash_key_env: SHORT\nbudget_ms: 20000\naudit: { dir: a, chain: \"no spaces\", key_env: SHORT }\n";
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

    #[test]
    fn unknown_fields_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(&write(dir.path(), &format!("{GOOD}lisen: 1\n")), &env)
            .expect_err("unknown field");
        assert!(err.to_string().contains("lisen"), "{err}");
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
        assert!(text.contains("belong to the scim and okta kinds"), "{text}");
    }
}
