//! The integration tests of `resetline-flow`, one module per file, linked into one test binary
//! (`cargo test -p resetline-flow --test integration`) instead of one per file: one link, not many.
//!
//! To add a test file: create `tests/<name>.rs` and add `mod <name>;` below, in order.
//! Shared helpers come from `resetline_testkit` (or a `mod` here, used as `crate::<mod>`).
//! One file's tests: `cargo test -p resetline-flow --test integration <name>::`. `index_is_complete`
//! fails for a file under `tests/` that is neither here nor its own `[[test]]`.

mod checker_holes;
mod docs;
mod in_file_tests;
mod no_panic;
mod no_security_questions;
mod prompts;
mod schema_validation;
mod spec_defaults;

#[test]
fn index_is_complete() {
    resetline_testkit::index::assert_complete(env!("CARGO_MANIFEST_DIR"));
}
