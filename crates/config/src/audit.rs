//! `audit:`: where the tamper-evident trail is stored (files or PostgreSQL), its chain and key,
//! retention, and what the retry buffer does while the sink is down. Problems are added to
//! the caller's list, like every other section's.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use resetline_engine::Secret;

use crate::secret_env;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
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
    pub on_failure: resetline_audit_writer::OnFailure,
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

/// Checks `audit:`; `None` when the key or the storage is unusable (a problem says why).
/// Relative paths are resolved by `resolve` (against the configuration file's directory).
pub(crate) fn audit(
    raw: RawAudit,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<AuditConfig> {
    let audit_key = secret_env(env, &raw.key_env, "`audit.key_env`", 32, problems);
    if raw.chain.is_empty()
        || raw.chain.len() > 64
        || !raw
            .chain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push(format!(
            "`audit.chain`: `{}` must be 1 to 64 letters, digits, `-` or `_`",
            raw.chain
        ));
    }
    let spill_dir = match (&raw.spill_dir, &raw.dir) {
        (Some(dir), _) => resolve(dir),
        (None, Some(dir)) if raw.kind == "file" => resolve(dir).join("spill"),
        (None, _) => resolve(Path::new("audit-spill")),
    };
    let audit_storage = match (raw.kind.as_str(), raw.dir, raw.url_env) {
        ("file", Some(dir), None) => Some(AuditStorage::File { dir: resolve(&dir) }),
        ("file", None, _) => {
            problems.push("`audit.dir`: the file audit sink needs the directory of its files".into());
            None
        }
        ("file", Some(_), Some(_)) => {
            problems.push("`audit.url_env`: only for `kind: postgres`".into());
            None
        }
        ("postgres", None, Some(url_env)) => secret_env(env, &url_env, "`audit.url_env`", 1, problems)
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
    if !(1..=36_500).contains(&raw.retention_days) {
        problems.push(format!(
            "`audit.retention_days`: {} must be between 1 and 36500",
            raw.retention_days
        ));
    }
    let on_failure = match raw.on_failure.as_str() {
        "continue" => resetline_audit_writer::OnFailure::Continue,
        "refuse" => resetline_audit_writer::OnFailure::Refuse,
        other => {
            problems.push(format!(
                "`audit.on_failure`: `{other}` must be continue or refuse"
            ));
            resetline_audit_writer::OnFailure::Continue
        }
    };
    if raw.buffer_records == 0 {
        problems.push("`audit.buffer_records` must be at least 1".into());
    }
    Some(AuditConfig {
        storage: audit_storage?,
        chain: raw.chain,
        key: audit_key?,
        retention_days: raw.retention_days,
        on_failure,
        buffer_records: raw.buffer_records,
        spill_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load;
    use crate::testing::{GOOD, env, write};

    #[test]
    fn audit_sinks_retention_and_failure_policy_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&write(dir.path(), GOOD), &env).expect("config");
        assert!(matches!(c.audit.storage, AuditStorage::File { .. }));
        assert_eq!(c.audit.retention_days, 365);
        assert_eq!(
            c.audit.on_failure,
            resetline_audit_writer::OnFailure::Continue
        );
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
        assert_eq!(
            c.audit.on_failure,
            resetline_audit_writer::OnFailure::Refuse
        );
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
