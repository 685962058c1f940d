//! `resetline audit query | tail | timeline`: read the audit trail with filters.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use resetline_audit::time::OffsetDateTime;
use resetline_audit::time::format_description::well_known::Rfc3339;
use resetline_audit::{ChainId, Filter, StoredRecord};

use crate::cli::AuditFilter;

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
    let chain = ChainId::new(&f.chain).map_err(|e| anyhow!("--chain: {e}"))?;
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
    let records = resetline_audit::query(&f.dir, &chain, &filter).map_err(|e| anyhow!("{e}"))?;
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
