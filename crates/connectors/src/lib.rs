//! Resetline backends that implement the engine's traits against real systems.
//!
//! - [`embedded`]: [`EmbeddedDirectory`], a YAML file of users for one-box deployments and the
//!   demo, with Argon2id PIN hashes and atomic, never-lossy writes.
//! - [`twilio_recording`]: [`TwilioRecording`], call-recording pause and resume over Twilio's
//!   REST API (reqwest + rustls).
//!
//! Invariant: nothing in this crate prints, logs or puts into an error a PIN, a PIN hash or
//! an auth token; secrets stay in [`resetline_engine::Secret`] until the one call that needs
//! them, and every failure reaches the engine as a [`resetline_engine::BackendError`] (or a
//! [`resetline_engine::SetSecretError`]), never as a panic.

pub mod dev;
pub mod embedded;
pub mod twilio_recording;

pub use embedded::{EmbeddedDirectory, HashError, LoadError, Problem, hash_pin};
pub use twilio_recording::{ConfigError, TwilioRecording};
