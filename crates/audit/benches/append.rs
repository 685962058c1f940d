//! Records per second appended to the file sink, with an fsync per record and with an fsync
//! every 64 records. Files go under cargo's target tmp dir (a real disk, not tmpfs).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-audit cargo bench -p resetline-audit -- --warm-up-time 1 --measurement-time 3`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resetline_audit::{
    AuditKey, ChainId, EventType, Factor, FileSink, FsyncPolicy, MaskedNumber, Outcome, Record,
    SinkConfig,
};
use time::macros::datetime;

fn record() -> Record {
    Record::new(
        datetime!(2025-03-01 09:00:00 UTC),
        EventType::AuthnLoginFail,
        Outcome::Failure,
        "CA0123456789abcdef0123456789abcdef",
        "password-reset",
        "3",
    )
    .with_account("E1234")
    .with_caller(MaskedNumber::mask("+14155550199").expect("mask"))
    .with_factor(Factor::SmsCode)
    .with_reason("wrong")
    .with_node("secure/verify_code")
    .with_detail("attempt", "2")
}

fn append(c: &mut Criterion) {
    let key = AuditKey::new(&[7u8; 32]).expect("key");
    let mut group = c.benchmark_group("file_sink_append");
    group.throughput(Throughput::Elements(1));
    let policies = [
        ("fsync_every_record", FsyncPolicy::EveryRecord),
        (
            "fsync_batch_64",
            FsyncPolicy::Batch {
                max_records: 64,
                max_interval: Duration::from_secs(1),
            },
        ),
        // Reference only: sealing and writing without waiting for the disk.
        (
            "no_fsync_reference",
            FsyncPolicy::Batch {
                max_records: u32::MAX,
                max_interval: Duration::MAX,
            },
        ),
    ];
    for (name, fsync) in policies {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let config = SinkConfig {
            fsync,
            ..SinkConfig::new(dir.path(), ChainId::new("bench").expect("id"))
        };
        let (mut sink, _) = FileSink::open(config, key.clone()).expect("open");
        let record = record();
        group.bench_function(name, |b| b.iter(|| sink.append(&record).expect("append")));
        drop(sink);
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
