//! Writing the audit trail while Resetline runs: the [`AuditSink`]s `serve` gives the engine
//! and the server.
//!
//! - [`FileAudit`] (`file.rs`): the hash-chained JSON Lines file (`resetline_audit::FileSink`)
//!   owned by one writer thread, reopened from disk after a failed write.
//! - [`Buffered`] (`buffer.rs`): the retry buffer in front of any sink (the file,
//!   PostgreSQL): record ids, a bounded queue spilled to disk, retries in order, the
//!   `audit.on_failure` policy, and the recovery of intents a crash left open.
//!
//! Why a crate of its own: these implement the engine's [`AuditSink`] (and use its `Clock`
//! and `Random`), while `resetline-audit`, the trail's format, is a dependency of the engine;
//! and they have nothing to do with HTTP, so the server does not hold them. Invariants are in
//! each module's doc.
//!
//! [`AuditSink`]: resetline_engine::AuditSink

mod buffer;
mod file;

pub use buffer::{BufferPolicy, Buffered, OnFailure};
pub use file::FileAudit;
