//! The one copy of what the workspace's tests share: the workspace root, a free loopback
//! port, signed carrier webhooks (over TCP or in process), log capture, the golden-file
//! check, the `resetline serve` starter and fakes of the Twilio and ServiceNow REST APIs.
//!
//! Dev-only: crates list it under `[dev-dependencies]` and never under `[dependencies]`, so
//! nothing here ships in a product binary. The product crates' own `testing` features
//! (connectors, store-redis, engine) are harnesses other crates' tests reuse; they cannot
//! depend on this crate without making it a normal dependency, so each keeps what it needs.

pub mod golden;
pub mod index;
pub mod logs;
pub mod providers;
pub mod serve;
pub mod webhook;

use std::path::PathBuf;

/// The workspace root (where `flows/`, `voice-prompts/` and `examples/` are).
pub fn root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A free port on 127.0.0.1 (bound, read and released: a later bind may race, as ever).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
