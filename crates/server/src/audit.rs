//! The audit sink the server gives the engine: a hash-chained JSON Lines file
//! (`resetline_audit::FileSink`) owned by one writer thread.
//!
//! Invariant: records reach the file in the order they were appended; `append` returns only
//! after the writer accepted them under the sink's fsync policy; a failure is returned (and
//! counted by the server), never dropped silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use resetline_audit::{FileSink, Record};
use resetline_engine::{AuditSink, BackendError, BoxFuture};

type Job = (
    Vec<Record>,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

/// Audit records appended to a [`FileSink`] on a dedicated thread.
#[derive(Debug)]
pub struct FileAudit {
    jobs: mpsc::Sender<Job>,
    healthy: Arc<AtomicBool>,
}

impl FileAudit {
    /// Starts the writer thread owning `sink`.
    pub fn start(mut sink: FileSink) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        std::thread::Builder::new()
            .name("resetline-audit".into())
            .spawn(move || {
                while let Ok((records, ack)) = rx.recv() {
                    let mut result = Ok(());
                    for r in &records {
                        if let Err(e) = sink.append(r) {
                            result = Err(e.to_string());
                            break;
                        }
                    }
                    flag.store(result.is_ok(), Ordering::Relaxed);
                    let _ = ack.send(result);
                }
                let _ = sink.sync();
            })?;
        Ok(FileAudit { jobs, healthy })
    }

    /// False after the last write failed.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

impl AuditSink for FileAudit {
    fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.jobs
                .send((records, tx))
                .map_err(|_| BackendError::new("audit", "the audit writer stopped"))?;
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(BackendError::new("audit", e)),
                Err(_) => Err(BackendError::new("audit", "the audit writer stopped")),
            }
        })
    }
}
