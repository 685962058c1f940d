//! The audit sink the server gives the engine: a hash-chained JSON Lines file
//! (`resetline_audit::FileSink`) owned by one writer thread.
//!
//! Invariant: records reach the file in the order they were appended; `append` returns only
//! after the writer accepted them under the sink's fsync policy; a failure is returned (and
//! counted by the server), never dropped silently. `close` writes the final signed checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use resetline_audit::{FileSink, Record};
use resetline_engine::{AuditSink, BackendError, BoxFuture};

type Reply = tokio::sync::oneshot::Sender<Result<(), String>>;

enum Job {
    Append(Vec<Record>, Reply),
    Close(Reply),
}

/// Audit records appended to a [`FileSink`] on a dedicated thread.
#[derive(Debug)]
pub struct FileAudit {
    jobs: mpsc::Sender<Job>,
    healthy: Arc<AtomicBool>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Append(..) => "Append",
            Job::Close(_) => "Close",
        })
    }
}

impl FileAudit {
    /// Starts the writer thread owning `sink`.
    pub fn start(sink: FileSink) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        std::thread::Builder::new()
            .name("resetline-audit".into())
            .spawn(move || {
                let mut sink = Some(sink);
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Append(records, reply) => {
                            let result = match sink.as_mut() {
                                Some(sink) => records
                                    .iter()
                                    .try_for_each(|r| sink.append(r).map(|_| ()))
                                    .map_err(|e| e.to_string()),
                                None => Err("the audit trail is closed".to_string()),
                            };
                            flag.store(result.is_ok(), Ordering::Relaxed);
                            let _ = reply.send(result);
                        }
                        Job::Close(reply) => {
                            let result = match sink.take() {
                                Some(s) => s
                                    .close(time::OffsetDateTime::now_utc())
                                    .map(|_| ())
                                    .map_err(|e| e.to_string()),
                                None => Ok(()),
                            };
                            let _ = reply.send(result);
                        }
                    }
                }
                if let Some(mut s) = sink {
                    let _ = s.sync();
                }
            })?;
        Ok(FileAudit { jobs, healthy })
    }

    async fn ask(&self, job: impl FnOnce(Reply) -> Job) -> Result<(), BackendError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(job(tx))
            .map_err(|_| BackendError::new("audit", "the audit writer stopped"))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BackendError::new("audit", e)),
            Err(_) => Err(BackendError::new("audit", "the audit writer stopped")),
        }
    }
}

impl AuditSink for FileAudit {
    fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            self.ask(|reply| Job::Append(records, reply)).await
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.ask(Job::Close))
    }

    /// False after the last write failed.
    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resetline_audit::{AuditKey, ChainId, EventType, Outcome, SinkConfig};

    #[tokio::test]
    async fn appends_in_order_and_closes_with_a_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = ChainId::new("t").expect("chain");
        let key = AuditKey::new(&[7u8; 32]).expect("key");
        let (sink, _) =
            FileSink::open(SinkConfig::new(dir.path(), chain.clone()), key.clone()).expect("sink");
        let audit = FileAudit::start(sink).expect("start");
        for i in 0..3 {
            let r = Record::new(
                time::OffsetDateTime::UNIX_EPOCH,
                EventType::Identify,
                Outcome::Success,
                format!("CA{i}"),
                "f",
                "v",
            );
            audit.append(vec![r]).await.expect("append");
        }
        audit.close().await.expect("close");
        assert!(
            audit
                .append(vec![Record::new(
                    time::OffsetDateTime::UNIX_EPOCH,
                    EventType::CallEnded,
                    Outcome::Info,
                    "CA9",
                    "f",
                    "v"
                )])
                .await
                .is_err(),
            "closed"
        );
        let report = resetline_audit::verify(dir.path(), &chain, &key).expect("verify");
        assert_eq!(report.records, 3);
        assert_eq!(report.checkpointed, 3, "the close wrote a final checkpoint");
    }
}
