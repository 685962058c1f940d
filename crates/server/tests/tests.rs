//! The integration tests of `resetline-server`, one module per file, linked into one test binary
//! (`cargo test -p resetline-server --test integration`) instead of one per file: one link, not many.
//!
//! To add a test file: create `tests/<name>.rs` and add `mod <name>;` below, in order.
//! Shared helpers come from `resetline_testkit` (or a `mod` here, used as `crate::<mod>`).
//! One file's tests: `cargo test -p resetline-server --test integration <name>::`. `index_is_complete`
//! fails for a file under `tests/` that is neither here nor its own `[[test]]`.
//!
//! Their own binaries (a `[[test]]` each in Cargo.toml), because they own process-wide state:
//! - `pin_checks`: compares the timing of PIN checks; other tests running beside it would skew it.

mod no_secret_in_logs;
mod serve;
mod webhooks;

#[test]
fn index_is_complete() {
    resetline_testkit::index::assert_complete(env!("CARGO_MANIFEST_DIR"));
}
