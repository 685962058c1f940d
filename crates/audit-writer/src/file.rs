//! [`FileAudit`]: the hash-chained JSON Lines file (`resetline_audit::FileSink`) owned by one
//! writer thread. After a failed write it drops the sink and reopens it from disk before the
//! next write (reopening cuts a torn tail off and resumes the chain). At close it writes a
//! final signed checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use resetline_audit::{AuditKey, FileSink, OpenReport, Record, SinkConfig, SinkError};
use resetline_engine::{AuditSink, BackendError, BoxFuture};
use time::OffsetDateTime;

type Reply<T = ()> = tokio::sync::oneshot::Sender<Result<T, String>>;

enum Job {
    Append(Vec<Record>, Reply),
    Purge(OffsetDateTime, Reply<u64>),
    OpenIntents(Reply<Vec<Record>>),
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
            Job::Purge(..) => "Purge",
            Job::OpenIntents(_) => "OpenIntents",
            Job::Close(_) => "Close",
        })
    }
}

/// The writer thread's state.
struct Writer {
    sink: Option<FileSink>,
    reopen: Option<(SinkConfig, AuditKey)>,
    closed: bool,
}

impl Writer {
    fn sink(&mut self) -> Result<&mut FileSink, String> {
        if self.closed {
            return Err("the audit trail is closed".to_string());
        }
        if self.sink.is_none() {
            let Some((config, key)) = &self.reopen else {
                return Err("the audit trail failed and cannot be reopened".to_string());
            };
            let (sink, report) =
                FileSink::open(config.clone(), key.clone()).map_err(|e| e.to_string())?;
            for torn in &report.torn {
                tracing::warn!(?torn, "a torn last audit line was moved aside on reopen");
            }
            tracing::info!(resumes_after = report.last_seq, "audit trail reopened");
            self.sink = Some(sink);
        }
        self.sink
            .as_mut()
            .ok_or_else(|| "the audit trail is not open".to_string())
    }

    /// After a failure the sink is dropped, to be reopened from disk by the next job.
    fn failed(&mut self, e: &SinkError) -> String {
        if self.reopen.is_some() {
            self.sink = None;
        }
        e.to_string()
    }

    fn append(&mut self, records: &[Record]) -> Result<(), String> {
        for record in records {
            let sink = self.sink()?;
            let result = match sink.append(record) {
                Err(e @ (SinkError::Encode { .. } | SinkError::RecordTooLarge { .. })) => {
                    tracing::error!(error = %e, event = %record.event, "audit record cannot be encoded; a stand-in is written");
                    let stand_in = resetline_audit::stand_in(
                        record,
                        &e.to_string(),
                        OffsetDateTime::now_utc(),
                    );
                    sink.append(&stand_in)
                }
                other => other,
            };
            match result {
                Err(e) => return Err(self.failed(&e)),
                Ok(ack) if ack.duplicate => {
                    tracing::info!(seq = ack.seq, event = %record.event, "audit record already written (a retry); not written again");
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    fn purge(&mut self, cutoff: OffsetDateTime) -> Result<u64, String> {
        let sink = self.sink()?;
        match sink.purge(cutoff, OffsetDateTime::now_utc()) {
            Ok(report) => {
                if report.removed > 0 {
                    tracing::info!(removed = report.removed, first_seq = report.first_seq, files = report.files.len(), cutoff = %cutoff, "audit retention purge");
                }
                Ok(report.removed)
            }
            Err(e) => Err(self.failed(&e)),
        }
    }
}

impl FileAudit {
    /// Opens (or resumes) the chain and starts its writer thread, which reopens the chain
    /// from disk after a failed write.
    ///
    /// # Errors
    /// [`SinkError`] from opening the chain, or an I/O error starting the thread.
    pub fn open(config: SinkConfig, key: AuditKey) -> Result<(Self, OpenReport), SinkError> {
        let (sink, report) = FileSink::open(config.clone(), key.clone())?;
        let writer = Writer {
            sink: Some(sink),
            reopen: Some((config.clone(), key)),
            closed: false,
        };
        let audit = Self::spawn(writer).map_err(|source| SinkError::Io {
            op: "start writer thread for",
            path: config.dir,
            source,
        })?;
        Ok((audit, report))
    }

    /// Starts the writer thread owning `sink` (no reopen after a failure).
    pub fn start(sink: FileSink) -> std::io::Result<Self> {
        Self::spawn(Writer {
            sink: Some(sink),
            reopen: None,
            closed: false,
        })
    }

    fn spawn(mut writer: Writer) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        std::thread::Builder::new()
            .name("resetline-audit".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Append(records, reply) => {
                            let result = writer.append(&records);
                            flag.store(result.is_ok(), Ordering::Relaxed);
                            let _ = reply.send(result);
                        }
                        Job::Purge(cutoff, reply) => {
                            let _ = reply.send(writer.purge(cutoff));
                        }
                        Job::OpenIntents(reply) => {
                            let _ = reply.send(writer.sink().map(|s| s.open_intents()));
                        }
                        Job::Close(reply) => {
                            let result = match writer.sink.take() {
                                Some(s) => s
                                    .close(OffsetDateTime::now_utc())
                                    .map(|_| ())
                                    .map_err(|e| e.to_string()),
                                None => Ok(()),
                            };
                            writer.closed = true;
                            let _ = reply.send(result);
                        }
                    }
                }
                if let Some(mut s) = writer.sink.take() {
                    let _ = s.sync();
                }
            })?;
        Ok(FileAudit { jobs, healthy })
    }

    async fn ask<T: Send + 'static>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
    ) -> Result<T, BackendError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(job(tx))
            .map_err(|_| BackendError::new("audit", "the audit writer stopped"))?;
        match rx.await {
            Ok(Ok(value)) => Ok(value),
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

    fn purge(&self, cutoff: OffsetDateTime) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(self.ask(move |reply| Job::Purge(cutoff, reply)))
    }

    fn open_intents(&self) -> BoxFuture<'_, Result<Vec<Record>, BackendError>> {
        Box::pin(self.ask(Job::OpenIntents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resetline_audit::{ChainId, EventType, Outcome};

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
