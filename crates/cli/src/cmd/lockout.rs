//! `resetline lockout show|clear ACCOUNT`: the service desk's view of an account's PIN and
//! code lockouts, in the store `serve` uses, every use audited. Glue only: the operations,
//! the description and the audit record are `resetline_engine::desk`.
//!
//! The record goes to the configured audit storage (same directory or database, same key),
//! in a chain of its own, `<audit.chain>-desk`: a running `serve` holds its own chain's lock
//! (one writer per chain), and the desk must be able to act while it runs. The trail is
//! opened before the store is touched, so an operation never happens unaudited because the
//! trail was unavailable. With `store: memory` the lockouts live inside the `serve` process,
//! out of this command's reach: it refuses and says why.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use resetline_audit::time::OffsetDateTime;
use resetline_audit::{AuditKey, ChainId, Record, SinkConfig, SinkError};
use resetline_config::{self as config, AuditConfig, AuditStorage, StoreConfig};
use resetline_engine::desk::{self, DeskAction};
use resetline_engine::{Lockouts, SystemClock};

use crate::cli::LockoutArgs;

/// Why nothing can be done with in-memory lockouts.
const IN_MEMORY: &str = "this configuration keeps lockouts in memory (`store: { kind: memory }`), \
inside the running `resetline serve` process, where this command cannot reach them: nothing was \
shown or cleared. Restarting `serve` forgets every in-memory lockout (and ends the calls in \
progress). For lockouts the service desk can show and clear, and that survive a restart, use \
`store: { kind: redis }`";

/// How long to wait for another desk command holding the desk chain's lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn run(action: DeskAction, args: &LockoutArgs) -> anyhow::Result<ExitCode> {
    let cfg =
        config::load(&args.config, &|name| std::env::var(name).ok()).map_err(|e| anyhow!("{e}"))?;
    let by = operator(args.by.as_deref())?;
    let account = args.account.as_str();
    desk::check_names(account, &by)?;
    let StoreConfig::Redis(redis) = &cfg.store else {
        bail!("{IN_MEMORY}");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let trail = Trail::open(&cfg.audit).await?;
        let store = super::serve::redis_store(
            redis,
            Duration::from_millis(cfg.ended_calls.ttl_ms),
            Arc::new(SystemClock),
        )?;
        let lockouts: &dyn Lockouts = &store;
        let result = match action {
            DeskAction::Show => desk::show(lockouts, account).await,
            DeskAction::Clear => desk::clear(lockouts, account).await,
        };
        let now = OffsetDateTime::now_utc();
        let record = desk::record(action, account, &by, now, &result);
        trail.write(record, now).await.with_context(|| {
            format!(
                "the {} was NOT recorded in the audit trail",
                if action == DeskAction::Clear && result.is_ok() {
                    "lockout clear was done but"
                } else {
                    "operation"
                }
            )
        })?;
        let view = result?;
        if action == DeskAction::Clear {
            println!("cleared (recorded as `lockout_cleared` by {by}); before, it was:");
        }
        print!("{}", desk::describe(account, &view, now));
        Ok(ExitCode::SUCCESS)
    })
}

/// `--by`, else the OS user; an operation is never recorded as nobody's.
fn operator(by: Option<&str>) -> anyhow::Result<String> {
    by.map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| {
            anyhow!("the OS user is unknown ($USER and $LOGNAME are unset): give --by NAME")
        })
}

/// The desk's chain in the configured audit storage, open for one record (boxed: the sinks
/// differ much in size).
enum Trail {
    File(Box<resetline_audit::FileSink>),
    Postgres(Box<resetline_audit_postgres::PgAudit>),
}

impl Trail {
    async fn open(audit: &AuditConfig) -> anyhow::Result<Trail> {
        let chain = ChainId::new(&format!("{}-desk", audit.chain))
            .map_err(|e| anyhow!("the desk chain `{}-desk`: {e}", audit.chain))?;
        let key =
            AuditKey::new(audit.key.expose().as_bytes()).map_err(|e| anyhow!("audit key: {e}"))?;
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            let opened = match &audit.storage {
                AuditStorage::File { dir } => resetline_audit::FileSink::open(
                    SinkConfig::new(dir, chain.clone()),
                    key.clone(),
                )
                .map(|(sink, _)| Trail::File(Box::new(sink)))
                .map_err(|e| (matches!(e, SinkError::Locked { .. }), anyhow!("{e}"))),
                AuditStorage::Postgres { url } => {
                    let db = resetline_audit_postgres::parse_url(url.expose())
                        .map_err(|e| anyhow!("audit: {e}"))?;
                    let config = resetline_audit_postgres::PgConfig {
                        db,
                        chain: chain.clone(),
                        checkpoint_every: 1000,
                    };
                    resetline_audit_postgres::PgAudit::open(config, key.clone())
                        .await
                        .map(|(sink, _)| Trail::Postgres(Box::new(sink)))
                        .map_err(|e| {
                            let locked =
                                matches!(e, resetline_audit_postgres::PgError::Locked { .. });
                            (locked, anyhow!("{e}"))
                        })
                }
            };
            match opened {
                Ok(trail) => return Ok(trail),
                // Another desk command is writing: wait for it, a little.
                Err((true, _)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err((_, e)) => return Err(e.context(format!("audit chain `{chain}`"))),
            }
        }
    }

    /// Appends `record` durably and closes the chain (a signed checkpoint).
    async fn write(self, record: Record, now: OffsetDateTime) -> anyhow::Result<()> {
        match self {
            Trail::File(mut sink) => {
                let ack = sink.append(&record).map_err(|e| anyhow!("{e}"))?;
                sink.close(now).map_err(|e| anyhow!("{e}"))?;
                debug_assert!(ack.is_durable());
            }
            Trail::Postgres(sink) => {
                sink.append_records(&[record])
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                sink.close_at(now).await.map_err(|e| anyhow!("{e}"))?;
            }
        }
        Ok(())
    }
}
