//! `resetline audit query | tail | timeline`: read the audit trail with filters;
//! `audit verify` and `audit purge` on a directory or a PostgreSQL chain.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use resetline_audit::time::OffsetDateTime;
use resetline_audit::time::format_description::well_known::Rfc3339;
use resetline_audit::{ChainId, Filter, StoredRecord};

use crate::cli::{AuditFilter, AuditTrail};

fn time(text: &Option<String>, flag: &str) -> anyhow::Result<Option<OffsetDateTime>> {
    text.as_deref()
        .map(|t| {
            OffsetDateTime::parse(t, &Rfc3339).with_context(|| {
                format!("--{flag} `{t}` is not an RFC 3339 time such as 2026-11-23T00:00:00Z")
            })
        })
        .transpose()
}

fn line(r: &StoredRecord) -> String {
    let rec = &r.record;
    let when = rec.time.format(&Rfc3339).unwrap_or_default();
    let mut extra: Vec<String> = rec
        .details
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if let Some(d) = &rec.destination {
        extra.insert(0, format!("to={}", d.as_str()));
    }
    if let Some(f) = &rec.factor {
        extra.insert(0, format!("factor={}", f.as_str()));
    }
    format!(
        "{when}  {:<6} {:<34} {:<10} {:<28} {:<8} {:<22} node={} {}",
        r.seq,
        rec.call_id,
        rec.account,
        rec.event.as_str(),
        rec.outcome.as_str(),
        rec.reason,
        rec.node,
        extra.join(" ")
    )
    .trim_end()
    .to_string()
}

fn json(r: &StoredRecord) -> String {
    let rec = &r.record;
    serde_json::json!({
        "seq": r.seq,
        "time": rec.time.format(&Rfc3339).unwrap_or_default(),
        "event": rec.event.as_str(),
        "call_id": rec.call_id,
        "account": rec.account,
        "caller": rec.caller.as_ref().map(|c| c.as_str()),
        "destination": rec.destination.as_ref().map(|d| d.as_str()),
        "factor": rec.factor.as_ref().map(|f| f.as_str()),
        "outcome": rec.outcome.as_str(),
        "reason": rec.reason,
        "node": rec.node,
        "flow_id": rec.flow_id,
        "flow_version": rec.flow_version,
        "details": rec.details,
    })
    .to_string()
}

pub(crate) fn query(f: &AuditFilter, last: Option<usize>) -> anyhow::Result<ExitCode> {
    let chain = ChainId::new(&f.trail.chain).map_err(|e| anyhow!("--chain: {e}"))?;
    let filter = Filter {
        account: f.account.clone(),
        call: f.call.clone(),
        since: time(&f.since, "since")?,
        until: time(&f.until, "until")?,
        outcome: f
            .outcome
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow!("--outcome: {e}"))?,
        event: f
            .event
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow!("--event: {e}"))?,
    };
    let records = match (&f.trail.postgres_url_env, &f.trail.dir) {
        (Some(var), _) => {
            let (runtime, config) = postgres(var)?;
            let all = runtime.block_on(async {
                let client = resetline_audit_postgres::connect(&config.db)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                resetline_audit_postgres::records(&client, &chain)
                    .await
                    .map_err(|e| anyhow!("{e}"))
            })?;
            all.into_iter()
                .filter(|r| filter.matches(&r.record))
                .collect()
        }
        (None, Some(dir)) => {
            resetline_audit::query(dir, &chain, &filter).map_err(|e| anyhow!("{e}"))?
        }
        (None, None) => return Err(anyhow!("give the audit directory or --postgres-url-env")),
    };
    let skip = last.map_or(0, |n| records.len().saturating_sub(n));
    for r in records.iter().skip(skip) {
        println!("{}", if f.json { json(r) } else { line(r) });
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn timeline(dir: &Path, call: &str, chain: &str) -> anyhow::Result<ExitCode> {
    let chain = ChainId::new(chain).map_err(|e| anyhow!("--chain: {e}"))?;
    let filter = Filter {
        call: Some(call.to_string()),
        ..Filter::default()
    };
    let records = resetline_audit::query(dir, &chain, &filter).map_err(|e| anyhow!("{e}"))?;
    let Some(first) = records.first() else {
        println!("no records for call {call}");
        return Ok(ExitCode::from(1));
    };
    let start = first.record.time;
    println!(
        "call {call}  flow {} {}  caller {}",
        first.record.flow_id,
        first.record.flow_version,
        first
            .record
            .caller
            .as_ref()
            .map_or("unknown", |c| c.as_str())
    );
    for r in &records {
        let offset = (r.record.time - start).as_seconds_f64();
        println!(
            "  +{offset:>7.1}s  {:<28} {:<8} {:<22} {}",
            r.record.event.as_str(),
            r.record.outcome.as_str(),
            r.record.reason,
            r.record.node
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The chain id and key of `trail`.
fn chain_and_key(trail: &AuditTrail) -> anyhow::Result<(ChainId, resetline_audit::AuditKey)> {
    let chain = ChainId::new(&trail.source.chain).map_err(|e| anyhow!("--chain: {e}"))?;
    let key = resetline_audit::AuditKey::new(trail.key.as_bytes())
        .map_err(|e| anyhow!("audit key: {e}"))?;
    Ok((chain, key))
}

/// A runtime and a connection to the trail's database.
fn postgres(
    var: &str,
) -> anyhow::Result<(tokio::runtime::Runtime, resetline_audit_postgres::PgConfig)> {
    let url = std::env::var(var)
        .map_err(|_| anyhow!("--postgres-url-env: environment variable `{var}` is not set"))?;
    let db = resetline_audit_postgres::parse_url(&url).map_err(|e| anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok((
        runtime,
        resetline_audit_postgres::PgConfig {
            db,
            chain: ChainId::new("unused").map_err(|e| anyhow!("{e}"))?,
            checkpoint_every: 1000,
        },
    ))
}

#[allow(clippy::print_stdout)]
fn tampered(problem: &dyn std::fmt::Display) -> anyhow::Result<ExitCode> {
    println!("TAMPERED OR DAMAGED: {problem}");
    Ok(ExitCode::from(1))
}

#[allow(clippy::print_stdout)]
fn show(report: &resetline_audit::Report) -> anyhow::Result<ExitCode> {
    let from = if report.first_seq > 1 {
        format!(
            " from seq {} (older records removed by a retention purge)",
            report.first_seq
        )
    } else {
        String::new()
    };
    println!(
        "ok: {} records{from} in {} segment(s), {} checkpoint(s); the last checkpoint covers {} record(s)",
        report.records,
        report.segments.len(),
        report.checkpoints,
        report.checkpointed
    );
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`: 0 intact, 1 tampered or damaged, an error (2) when it could not run.
pub(crate) fn verify(trail: &AuditTrail) -> anyhow::Result<ExitCode> {
    let (chain, key) = chain_and_key(trail)?;
    if let Some(var) = &trail.source.postgres_url_env {
        let (runtime, config) = postgres(var)?;
        return runtime.block_on(async {
            let client = resetline_audit_postgres::connect(&config.db)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            match resetline_audit_postgres::verify(&client, &chain, &key).await {
                Ok(report) => show(&report),
                Err(
                    e @ (resetline_audit_postgres::PgError::Db(_)
                    | resetline_audit_postgres::PgError::Empty { .. }),
                ) => Err(anyhow!("{e}")),
                Err(e) => tampered(&e),
            }
        });
    }
    let dir = trail.source.directory()?;
    match resetline_audit::verify(dir, &chain, &key) {
        Ok(report) => show(&report),
        Err(
            e @ (resetline_audit::VerifyError::Io { .. }
            | resetline_audit::VerifyError::NoSegments { .. }),
        ) => Err(anyhow!("{e}")),
        Err(e) => tampered(&e),
    }
}

/// `audit purge`: removes records older than `days` and records the purge.
#[allow(clippy::print_stdout)]
pub(crate) fn purge(trail: &AuditTrail, days: u32) -> anyhow::Result<ExitCode> {
    if days == 0 {
        return Err(anyhow!("--retention-days must be at least 1"));
    }
    let (chain, key) = chain_and_key(trail)?;
    let now = OffsetDateTime::now_utc();
    let cutoff = now - resetline_audit::time::Duration::days(i64::from(days));
    let (removed, first_seq) = if let Some(var) = &trail.source.postgres_url_env {
        let (runtime, config) = postgres(var)?;
        runtime.block_on(async {
            let config = resetline_audit_postgres::PgConfig { chain, ..config };
            let (sink, _) = resetline_audit_postgres::PgAudit::open(config, key)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let done = sink
                .purge_before(cutoff, now)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            sink.close_at(now).await.map_err(|e| anyhow!("{e}"))?;
            anyhow::Ok((done.removed, done.first_seq))
        })?
    } else {
        let dir = trail.source.directory()?;
        let (mut sink, _) =
            resetline_audit::FileSink::open(resetline_audit::SinkConfig::new(dir, chain), key)
                .map_err(|e| match e {
                    resetline_audit::SinkError::Locked { .. } => anyhow!(
                        "{e}: a running `resetline serve` holds this trail and purges it by itself every 6 hours"
                    ),
                    e => anyhow!("{e}"),
                })?;
        let done = sink.purge(cutoff, now).map_err(|e| anyhow!("{e}"))?;
        sink.close(now).map_err(|e| anyhow!("{e}"))?;
        (done.removed, done.first_seq)
    };
    let before = cutoff.format(&Rfc3339).unwrap_or_default();
    if removed == 0 {
        println!("nothing to purge: no removable records older than {before}");
    } else {
        println!(
            "purged {removed} record(s) older than {before}; the trail now starts at seq {first_seq}"
        );
    }
    Ok(ExitCode::SUCCESS)
}
