//! Records/s appended to PostgreSQL by the audit sink: starts its own PostgreSQL 15 on
//! 127.0.0.1 (fsync on, as in production; the test harness in `tests/support`), appends N
//! records one call at a time (each its own INSERT and commit, as `serve` does), and prints
//! the rate. Run:
//!
//! ```text
//! cargo run --release -p resetline-audit-postgres --example pg_append -- 5000
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
    let pg = support::Postgres::start_with_fsync(true);
    let config = PgConfig {
        db: parse_url(&pg.url())?,
        chain: ChainId::new("bench")?,
        checkpoint_every: 1000,
    };
    let (sink, _) = PgAudit::open(config, AuditKey::new(&[7u8; 32])?).await?;
    let t0 = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    for i in 0..n {
        let record = Record::new(
            t0,
            EventType::AuthnLoginFail,
            Outcome::Failure,
            format!("CA{i:032x}"),
            "password-reset",
            "3",
        )
        .with_account("E1234")
        .with_reason("wrong")
        .with_node("verify_code");
        sink.append_records(&[record]).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    sink.close_at(time::OffsetDateTime::now_utc()).await?;
    println!(
        "appended {n} records to PostgreSQL in {secs:.2} s: {:.0} records/s (one INSERT and commit each, fsync on)",
        f64::from(n) / secs
    );
    Ok(())
}
