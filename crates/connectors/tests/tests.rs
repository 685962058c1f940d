//! The integration tests of `resetline-connectors`, one module per file, linked into one test binary
//! (`cargo test -p resetline-connectors --test integration`) instead of one per file: one link, not many.
//!
//! To add a test file: create `tests/<name>.rs` and add `mod <name>;` below, in order.
//! Shared helpers come from `resetline_testkit` (or a `mod` here, used as `crate::<mod>`).
//! One file's tests: `cargo test -p resetline-connectors --test integration <name>::`. `index_is_complete`
//! fails for a file under `tests/` that is neither here nor its own `[[test]]`.
//!
//! Their own binaries (a `[[test]]` each in Cargo.toml), because they own process-wide state:
//! - `argon2_rss`: measures the process RSS of Argon2 hashing; other tests' memory would blur it.
//! - `outbox_logs`: installs a global tracing subscriber, once per process.

mod ad_samba;
mod ldap_slapd;

#[test]
fn index_is_complete() {
    resetline_testkit::index::assert_complete(env!("CARGO_MANIFEST_DIR"));
}
