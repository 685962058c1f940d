//! The integration tests of `resetline-engine`, one module per file, linked into one test binary
//! (`cargo test -p resetline-engine --test integration`) instead of one per file: one link, not many.
//!
//! To add a test file: create `tests/<name>.rs` and add `mod <name>;` below, in order.
//! Shared helpers come from `resetline_testkit` (or a `mod` here, used as `crate::<mod>`).
//! One file's tests: `cargo test -p resetline-engine --test integration <name>::`. `index_is_complete`
//! fails for a file under `tests/` that is neither here nor its own `[[test]]`.

mod common;

mod factors_property;
mod http_node;
mod intents;
mod lockout_counting;
mod no_plain_equality_on_secrets;
mod password_reset;
mod pin_reset;
mod send_caps_fail_closed;
mod step_tokens;

#[test]
fn index_is_complete() {
    resetline_testkit::index::assert_complete(env!("CARGO_MANIFEST_DIR"));
}
