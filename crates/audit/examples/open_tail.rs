//! How long `FileSink::open` takes to read back the ids of the newest records (what lets a
//! restarted sink recognise a retried record): writes a trail of N records (default 200,000,
//! one segment) and opens it with and without the id window.
//!
//! `cargo run --release -p resetline-audit --example open_tail [N]`

use std::error::Error;
use std::time::{Duration, Instant};

use resetline_audit::{
    AuditKey, ChainId, EventType, FileSink, FsyncPolicy, Outcome, Record, RecordIds, Rotation,
    SinkConfig,
};

fn main() -> Result<(), Box<dyn Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir()?;
    let key = AuditKey::new(&[1u8; 32])?;
    let config = SinkConfig {
        fsync: FsyncPolicy::Batch {
            max_records: 10_000,
            max_interval: Duration::from_secs(60),
        },
        rotation: Rotation {
            max_bytes: None,
            daily: false,
        },
        ..SinkConfig::new(dir.path(), ChainId::new("c")?)
    };
    let (mut sink, _) = FileSink::open(config.clone(), key.clone())?;
    let ids = RecordIds::new(42);
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    for i in 0..n {
        let record = Record::new(
            at,
            EventType::Identify,
            Outcome::Success,
            format!("CA{i:032}"),
            "pin-reset",
            "1+0123456789abcdef",
        )
        .with_reason("found")
        .with_node("lookup")
        .with_id(ids.next_id());
        let _ = sink.append(&record)?;
    }
    sink.close(at)?;
    for window in [0usize, 100_000] {
        let started = Instant::now();
        let (sink, _) = FileSink::open(
            SinkConfig {
                recent_ids: window,
                ..config.clone()
            },
            key.clone(),
        )?;
        println!(
            "{n} records; open with recent_ids {window}: {:?}",
            started.elapsed()
        );
        drop(sink);
    }
    Ok(())
}
