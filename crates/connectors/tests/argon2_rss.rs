//! The process-wide bound on Argon2 work, measured: 200 PIN checks started at once against the
//! embedded directory (production cost, 19 MiB each) raise this process's peak RSS by less
//! than `BOUND_MIB`. The bound is set to 2 hashes at once, and each of its 2 worker threads
//! computes in one reused buffer, so Argon2 holds 2 x 19 MiB (measured: 38 MiB of growth); the
//! rest of the allowance is for the 200 waiting tasks and the runtime. Without the bound the
//! blocking pool ran them all side by side (3.7 GiB of growth on the base commit).
//!
//! Alone in its test binary: nothing else runs in the process while RSS is read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use resetline_connectors::{EmbeddedDirectory, PinHashing, hash_pin};
use resetline_engine::{Directory, Secret};

const CHECKS: usize = 200;
const LIMIT: usize = 2;
/// Peak RSS growth allowed while the checks run.
const BOUND_MIB: u64 = 64;

/// A field of /proc/self/status in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a kB value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_pin_checks_keep_rss_under_a_bound() {
    PinHashing::configure_shared(LIMIT).expect("first use of the bound in this process");
    let scratch = tempfile::tempdir().expect("tempdir");
    let hash = hash_pin(&Secret::new("48213579")).expect("hash");
    let path = scratch.path().join("users.yaml");
    std::fs::write(
        &path,
        format!("allow_phone_reset: true\nusers:\n  - id: \"100001\"\n    name: A\n    state: active\n    pin_hash: \"{hash}\"\n"),
    )
    .expect("users");
    let directory = Arc::new(EmbeddedDirectory::load(&path).expect("load"));

    let before = status_kib("VmRSS");
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while running.load(Ordering::Relaxed) {
                peak = peak.max(status_kib("VmRSS"));
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let checks: Vec<_> = (0..CHECKS)
        .map(|i| {
            let directory = directory.clone();
            tokio::spawn(async move {
                let pin = Secret::new(if i % 2 == 0 { "48213579" } else { "48213570" });
                directory.verify_pin("100001", &pin).await
            })
        })
        .collect();
    for (i, check) in checks.into_iter().enumerate() {
        let matched = check.await.expect("task").expect("check");
        assert_eq!(matched, i % 2 == 0, "check {i}");
    }
    running.store(false, Ordering::Relaxed);
    let sampled = sampler.join().expect("sampler");
    let peak = sampled.max(status_kib("VmHWM"));
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "RSS before {} MiB, peak {} MiB, growth {grew_mib} MiB for {CHECKS} checks, {LIMIT} at once",
        before / 1024,
        peak / 1024
    );
    assert!(
        grew_mib < BOUND_MIB,
        "peak RSS grew by {grew_mib} MiB (bound {BOUND_MIB} MiB)"
    );
}
