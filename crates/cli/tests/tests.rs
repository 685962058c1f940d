//! The integration tests of `resetline`, one module per file, linked into one test binary
//! (`cargo test -p resetline --test integration`) instead of one per file: one link, not many.
//!
//! To add a test file: create `tests/<name>.rs` and add `mod <name>;` below, in order.
//! Shared helpers come from `resetline_testkit` (or a `mod` here, used as `crate::<mod>`).
//! One file's tests: `cargo test -p resetline --test integration <name>::`. `index_is_complete`
//! fails for a file under `tests/` that is neither here nor its own `[[test]]`.
//!
//! Their own binaries (a `[[test]]` each in Cargo.toml), because they own process-wide state:
//! - `slow_clients`: measures the RSS of the served process under slow clients; other tests' servers and load would blur it.
//! - `no_secret_anywhere`: installs a global tracing subscriber (to see worker and blocking threads), once per process.
//! - `http_data_action`: installs a global tracing subscriber (to see worker and blocking threads), once per process.

#[path = "../../audit-postgres/tests/support/mod.rs"]
mod pg;
mod support;

mod ad_directory;
mod audit_intent;
mod audit_serve;
mod audit_verify;
mod check_golden;
mod deploy_files;
mod diff_golden;
mod directory_down;
mod flow_tests_cli;
mod http_tickets_serve;
mod in_file_flow_tests;
mod ldap_directory;
mod lockout_desk;
mod lockouts_in_memory;
mod okta_reset;
mod reference_flow_over_http;
mod replay_after_restart;
mod replicas_over_redis;
mod simulate_cli;
mod tls_serve;

#[test]
fn index_is_complete() {
    resetline_testkit::index::assert_complete(env!("CARGO_MANIFEST_DIR"));
}
