//! Records/s appended to PostgreSQL by the audit sink: starts its own PostgreSQL 15 on
//! 127.0.0.1 (fsync on, as in production; the test harness in `tests/support`), appends N
//! records one append at a time (each its own transaction and commit), then N more from
//! CONCURRENCY appenders at once (as concurrent webhooks do: waiting appends share the next
//! commit), and prints both rates. Run:
//!
//! ```text
//! cargo run --release -p resetline-audit-postgres --example pg_append -- 5000 64
//! ```

#![allow(clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use resetline_audit::{AuditKey, ChainId, EventType, Outcome, Record};
use resetline_audit_postgres::{PgAudit, PgConfig, parse_url};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5000);
    let concurrency: u32 = std::env::args()
        .nth(2)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(64);
    let pg = support::Postgres::start_with_fsync(true);
    let config = PgConfig {
        db: parse_url(&pg.url())?,
        chain: ChainId::new("bench")?,
        checkpoint_every: 1000,
    };
    let (sink, _) = PgAudit::open(config, AuditKey::new(&[7u8; 32])?).await?;
    let sink = std::sync::Arc::new(sink);
    let t0 = time::OffsetDateTime::now_utc();
    let record = move |i: u32| {
        Record::new(
            t0,
            EventType::AuthnLoginFail,
            Outcome::Failure,
            format!("CA{i:032x}"),
            "password-reset",
            "3",
        )
        .with_account("E1234")
        .with_reason("wrong")
        .with_node("verify_code")
    };
    let started = Instant::now();
    for i in 0..n {
        sink.append_records(&[record(i)]).await?;
    }
    let sequential = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let sink = sink.clone();
        tasks.spawn(async move {
            let mut i = n + w;
            while i < 2 * n {
                sink.append_records(&[record(i)]).await?;
                i += concurrency;
            }
            Ok::<(), resetline_audit_postgres::PgError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let concurrent = started.elapsed().as_secs_f64();
    sink.close_at(time::OffsetDateTime::now_utc()).await?;
    println!(
        "appended {n} records to PostgreSQL one append at a time in {sequential:.2} s: {:.0} records/s (a commit each, fsync on)",
        f64::from(n) / sequential
    );
    println!(
        "appended {n} records from {concurrency} concurrent appenders in {concurrent:.2} s: {:.0} records/s (group commit, fsync on)",
        f64::from(n) / concurrent
    );
    Ok(())
}
