//! [`Buffered`] wraps any [`AuditSink`] (the file, PostgreSQL) with the retry buffer:
//! every record gets its id here (`resetline_audit::RecordIds`, a random prefix per
//! process); a record that fails to write is kept, in order, in a bounded queue, copied to
//! an fsynced [`Spill`] file, and retried before anything newer, so the chain stays
//! linear; `/readyz` is unhealthy and [`AuditStats::pending`] is non-zero while anything
//! waits; with [`OnFailure::Refuse`] new calls are refused (they hear the
//! technical-difficulty apology) until the queue is empty. A full queue refuses new calls
//! whatever the policy and drops further records with an error log and a counter — never
//! silently. At start, [`Buffered::recover`] writes what the spill kept, then an
//! `outcome_unknown` record for every intent a crash left without an outcome.
//!
//! Invariants: records reach the sink in the order they were appended — within an append,
//! and behind whatever waits for a retry (concurrent appends from different calls are
//! written side by side, so a sink can commit them together; a call's webhooks run one at a
//! time, so its records keep their order); `append` returns `Ok` only once the sink accepted
//! the records under its durability policy, and `append_by` never waits past its deadline
//! (what is not written by then waits for a retry); a record the sink cannot encode is
//! replaced by a stand-in saying so (`resetline_audit::stand_in`), so it cannot block the
//! queue. A record is never written twice: a write whose outcome is unknown (a timeout, an
//! fsync that failed after the write) is retried under the same id, which the sink
//! recognises. A record waiting for a retry is on disk in the spill (when one is
//! configured) before `append` returns; only a spill write that fails leaves it in memory
//! alone, and that is logged as an error.
//!
//! # Parameters
//!
//! - The queue holds at most `audit.buffer_records` records; a full queue is counted in
//!   `resetline_audit_dropped_total`, a waiting one in `resetline_audit_pending` (the
//!   server's `/metrics`).
//! - A sink that writes batches atomically (`AuditSink::atomic_batches`, the PostgreSQL sink)
//!   gets each append's records in one call and up to `RETRY_BATCH` (256) records per retry,
//!   so a backlog drains in few commits; other sinks get one record at a time. No lock is held
//!   across a write, so concurrent webhooks reach the sink together.
//! - One write waits at most `WRITE_TIMEOUT` (2 s) from `append` (or until `append_by`'s
//!   deadline); a write is never cancelled from outside: one out of time waits for a retry
//!   under its ids. `serve` runs [`Buffered::spawn_retry`] every second.
//! - The spill is `<audit.spill_dir>/<chain>.spill.jsonl`; `serve` writes what it holds, and
//!   then the `outcome_unknown` records, before it serves anything.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use resetline_audit::{Record, RecordIds, Spill};
use resetline_engine::{AuditSink, AuditStats, BackendError, BoxFuture, Clock, Random};
use time::OffsetDateTime;

/// Whether calls go on while the audit sink is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Calls continue; their records wait in the retry buffer.
    #[default]
    Continue,
    /// New calls are refused (the caller hears the technical-difficulty apology) while
    /// anything waits; calls in progress continue, their records buffered.
    Refuse,
}

/// The retry buffer's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferPolicy {
    /// Most records kept while the sink is down.
    pub capacity: usize,
    /// Whether new calls go on while anything waits.
    pub on_failure: OnFailure,
}

impl Default for BufferPolicy {
    /// 10,000 records, calls continue.
    fn default() -> Self {
        Self {
            capacity: 10_000,
            on_failure: OnFailure::Continue,
        }
    }
}

/// What waits for the sink: the queue, and its copy on disk.
#[derive(Debug, Default)]
struct Backlog {
    queue: VecDeque<Record>,
    spill: Option<Spill>,
}

/// The intents open in the trail at start, to close with `outcome_unknown` once what the
/// spill kept is written (it may hold their outcomes).
#[derive(Debug)]
struct Recovery {
    candidates: Vec<Record>,
    clock: Arc<dyn Clock>,
}

/// Any [`AuditSink`] behind the retry buffer (see the module doc).
#[derive(Debug)]
pub struct Buffered {
    inner: Arc<dyn AuditSink>,
    policy: BufferPolicy,
    ids: RecordIds,
    backlog: std::sync::Mutex<Backlog>,
    /// Held by the one retry in progress (and by purges), so the backlog is written in order.
    draining: tokio::sync::Mutex<()>,
    recovery: std::sync::Mutex<Option<Recovery>>,
    pending: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    write_failures: AtomicU64,
}

impl Buffered {
    /// Wraps `inner`. Record ids start with a random prefix drawn from `random`.
    ///
    /// # Errors
    /// When `random` fails: ids could then repeat, and a sink would skip records.
    pub fn new(
        inner: Arc<dyn AuditSink>,
        policy: BufferPolicy,
        random: &dyn Random,
    ) -> Result<Self, BackendError> {
        let mut prefix = [0u8; 8];
        random
            .fill(&mut prefix)
            .map_err(|e| BackendError::new("audit", e.to_string()))?;
        Ok(Self {
            inner,
            policy,
            ids: RecordIds::new(u64::from_be_bytes(prefix)),
            backlog: std::sync::Mutex::default(),
            draining: tokio::sync::Mutex::new(()),
            recovery: std::sync::Mutex::new(None),
            pending: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
        })
    }

    /// Keeps the backlog in `spill` too, and queues what it held (records a previous run
    /// could not write), in order, before anything new. [`Buffered::recover`] writes them.
    #[must_use]
    pub fn with_spill(self, spill: Spill, waiting: Vec<Record>) -> Self {
        {
            let mut backlog = self.lock_backlog();
            backlog.queue.extend(waiting);
            backlog.spill = Some(spill);
            self.pending
                .store(backlog.queue.len() as u64, Ordering::Relaxed);
        }
        self
    }

    fn lock_backlog(&self) -> std::sync::MutexGuard<'_, Backlog> {
        self.backlog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// At start, before serving: writes what the spill kept, then closes every intent left
    /// open by a crash (in the trail or in the spill) with an `outcome_unknown` record dated
    /// by `clock`. While the sink is down this waits for the retry task's first success.
    /// Returns how many records still wait.
    pub async fn recover(&self, clock: Arc<dyn Clock>) -> usize {
        let mut candidates = match self.inner.open_intents().await {
            Ok(open) => open,
            Err(e) => {
                tracing::warn!(error = %e, "open intents could not be read; none are closed as unknown");
                Vec::new()
            }
        };
        let spilled = self.lock_backlog().queue.clone();
        let mut spilled_intents = resetline_audit::OpenIntents::default();
        for (n, record) in spilled.iter().enumerate() {
            spilled_intents.see(n as u64 + 1, record);
        }
        candidates.extend(spilled_intents.open());
        if !candidates.is_empty() {
            *self
                .recovery
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Recovery { candidates, clock });
        }
        self.flush().await
    }

    /// Writes `outcome_unknown` for the recovery's candidates still open in the trail.
    async fn close_unfinished(&self, recovery: Recovery) {
        let open = match self.inner.open_intents().await {
            Ok(open) => open,
            Err(e) => {
                tracing::warn!(error = %e, "open intents could not be read; retried later");
                *self
                    .recovery
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(recovery);
                return;
            }
        };
        let ids: std::collections::HashSet<_> =
            recovery.candidates.iter().filter_map(|r| r.id).collect();
        let now = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(recovery.clock.now_ms()) * 1_000_000,
        )
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let unknown: Vec<Record> = open
            .iter()
            .filter(|i| i.id.is_some_and(|id| ids.contains(&id)))
            .map(|intent| {
                tracing::warn!(event = %intent.event, call = %intent.call_id, "an effect was cut short by a stop: its outcome is recorded as unknown");
                resetline_audit::outcome_unknown(intent, now)
            })
            .collect();
        if let Err(e) = self.append(unknown).await {
            tracing::error!(error = %e, "outcome_unknown records wait for a retry");
        }
    }

    /// Retries the buffered records, oldest first, until one fails. Returns how many wait.
    pub async fn flush(&self) -> usize {
        let turn = self.draining.lock().await;
        let _ = self.drain(&turn).await;
        drop(turn);
        let recovery = self
            .recovery
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_if(|_| self.pending.load(Ordering::Relaxed) == 0);
        if let Some(recovery) = recovery {
            self.close_unfinished(recovery).await;
        }
        self.lock_backlog().queue.len()
    }

    /// Retries every `every` while anything waits, until the sink is dropped.
    pub fn spawn_retry(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = weak.upgrade() else { return };
                if this.pending.load(Ordering::Relaxed) > 0 {
                    let left = this.flush().await;
                    if left == 0 {
                        tracing::info!("audit sink recovered; every buffered record is written");
                    }
                }
            }
        })
    }

    /// Records to the sink in one call, given until `deadline`: a sink that hangs counts as
    /// failed and the records are retried. A write whose outcome is unknown (the time ran
    /// out during a commit) is retried under the same ids, so the sink does not write it
    /// twice; the PostgreSQL sink also rolls back a batch whose writer was cancelled before
    /// its commit.
    async fn write(
        &self,
        records: Vec<Record>,
        deadline: tokio::time::Instant,
    ) -> Result<(), BackendError> {
        match tokio::time::timeout_at(deadline, self.inner.append(records)).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::timeout("audit")),
        }
    }

    /// Writes what waits, oldest first: up to [`RETRY_BATCH`] records per sink call when the
    /// sink writes batches atomically (one commit for many), else one record per call. The
    /// caller holds `draining`.
    async fn drain(&self, _turn: &tokio::sync::MutexGuard<'_, ()>) -> Result<(), BackendError> {
        let per_call = if self.inner.atomic_batches() {
            RETRY_BATCH
        } else {
            1
        };
        loop {
            let batch: Vec<Record> = {
                let backlog = self.lock_backlog();
                let n = per_call.min(backlog.queue.len());
                backlog.queue.range(..n).cloned().collect()
            };
            if batch.is_empty() {
                return Ok(());
            }
            let n = batch.len();
            let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
            if let Err(e) = self.write(batch, deadline).await {
                self.write_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            let mut backlog = self.lock_backlog();
            backlog.queue.drain(..n);
            self.retried.fetch_add(n as u64, Ordering::Relaxed);
            self.pending
                .store(backlog.queue.len() as u64, Ordering::Relaxed);
            let Backlog { queue, spill } = &mut *backlog;
            if let Some(spill) = spill {
                let tidied = if queue.is_empty() {
                    spill.clear()
                } else {
                    spill.compact(queue.iter())
                };
                if let Err(e) = tidied {
                    tracing::warn!(error = %e, "audit spill not tidied; what it holds is replayed at the next start and recognised as written");
                }
            }
        }
    }

    /// Queues records behind the ones waiting, and spills them to disk; past the capacity
    /// they are dropped, loudly.
    fn keep(&self, backlog: &mut Backlog, records: Vec<Record>) {
        let room = self.policy.capacity.saturating_sub(backlog.queue.len());
        let mut records = records;
        let over = records.split_off(room.min(records.len()));
        if !over.is_empty() {
            for record in &over {
                tracing::error!(event = %record.event, call = %record.call_id, "audit retry buffer full: record dropped");
            }
            self.dropped.fetch_add(over.len() as u64, Ordering::Relaxed);
        }
        if let Some(spill) = backlog.spill.as_mut()
            && !records.is_empty()
            && let Err(e) = spill.push(&records)
        {
            tracing::error!(error = %e, records = records.len(), "audit records could not be spilled to disk: they wait in memory only");
        }
        backlog.queue.extend(records);
        self.pending
            .store(backlog.queue.len() as u64, Ordering::Relaxed);
    }

    /// Gives every record without an id one.
    fn with_ids(&self, mut records: Vec<Record>) -> Vec<Record> {
        for record in &mut records {
            if record.id.is_none() {
                record.id = Some(self.ids.next_id());
            }
        }
        records
    }
}

/// Most records one retry hands to a sink that writes batches atomically.
const RETRY_BATCH: usize = 256;

/// Longest wait for one audit write before the record goes to the retry queue.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

impl AuditSink for Buffered {
    fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), BackendError>> {
        self.append_by(records, tokio::time::Instant::now() + WRITE_TIMEOUT)
    }

    /// Never cancels a write from outside: each sink call gets what is left until
    /// `deadline` (at most [`WRITE_TIMEOUT`]), and records not written by then wait for a
    /// retry under their ids, so a write that completes late is not written twice.
    fn append_by(
        &self,
        records: Vec<Record>,
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let records = self.with_ids(records);
            let deadline = deadline.min(tokio::time::Instant::now() + WRITE_TIMEOUT);
            // While records wait, new ones queue behind them at once: the retry task drains
            // the backlog, so a hung sink never makes every webhook wait its turn.
            {
                let mut backlog = self.lock_backlog();
                if !backlog.queue.is_empty() {
                    self.keep(&mut backlog, records);
                    return Err(BackendError::new(
                        "audit",
                        format!("{} record(s) wait for a retry", backlog.queue.len()),
                    ));
                }
            }
            // No backlog: written without holding the queue, so concurrent webhooks reach the
            // sink together (the PostgreSQL sink commits them in one transaction). Order is
            // kept within an append, and so per call (a call's webhooks run one at a time).
            let (failure, unwritten) = if self.inner.atomic_batches() {
                match self.write(records.clone(), deadline).await {
                    Ok(()) => return Ok(()),
                    Err(e) => (e, records),
                }
            } else {
                let mut records = records.into_iter();
                loop {
                    let Some(record) = records.next() else {
                        return Ok(());
                    };
                    if let Err(e) = self.write(vec![record.clone()], deadline).await {
                        break (e, std::iter::once(record).chain(records).collect());
                    }
                }
            };
            self.write_failures.fetch_add(1, Ordering::Relaxed);
            let mut backlog = self.lock_backlog();
            self.keep(&mut backlog, unwritten);
            Err(BackendError::new(
                "audit",
                format!(
                    "{}; {} record(s) buffered for retry",
                    failure.message,
                    backlog.queue.len()
                ),
            ))
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let left = self.flush().await;
            let closed = self.inner.close().await;
            if left > 0 {
                return Err(BackendError::new(
                    "audit",
                    format!(
                        "{left} buffered record(s) could not be written before shutdown{}",
                        if self.lock_backlog().spill.is_some() {
                            "; they are spilled to disk and written at the next start"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            closed
        })
    }

    fn healthy(&self) -> bool {
        self.pending.load(Ordering::Relaxed) == 0 && self.inner.healthy()
    }

    fn stats(&self) -> AuditStats {
        AuditStats {
            pending: self.pending.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            write_failures: self.write_failures.load(Ordering::Relaxed),
        }
    }

    fn refuses_new_calls(&self) -> bool {
        let pending = self.pending.load(Ordering::Relaxed);
        pending > 0
            && (self.policy.on_failure == OnFailure::Refuse
                || pending >= self.policy.capacity as u64)
    }

    fn open_intents(&self) -> BoxFuture<'_, Result<Vec<Record>, BackendError>> {
        self.inner.open_intents()
    }

    /// Purges in the retry's turn, after writing what waits, so the purge record takes its
    /// place in order.
    fn purge(&self, cutoff: OffsetDateTime) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(async move {
            let turn = self.draining.lock().await;
            self.drain(&turn).await?;
            self.inner.purge(cutoff).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileAudit;
    use resetline_audit::{AuditKey, ChainId, EventType, Outcome, SinkConfig};

    fn buffered(inner: Arc<dyn AuditSink>, policy: BufferPolicy) -> Buffered {
        Buffered::new(inner, policy, &resetline_engine::OsRandom).expect("ids")
    }

    fn rec(i: u32) -> Record {
        Record::new(
            time::OffsetDateTime::UNIX_EPOCH,
            EventType::Identify,
            Outcome::Success,
            format!("CA{i}"),
            "f",
            "v",
        )
    }

    fn calls(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.call_id.clone()).collect()
    }

    #[tokio::test]
    async fn a_sink_that_fails_then_recovers_loses_nothing_and_keeps_the_order() {
        let inner = Arc::new(resetline_engine::testing::MemoryAudit::default());
        let buffered = buffered(inner.clone(), BufferPolicy::default());
        buffered.append(vec![rec(1)]).await.expect("written");
        assert!(buffered.healthy());

        inner.set_failing(true);
        let err = buffered
            .append(vec![rec(2), rec(3)])
            .await
            .expect_err("buffered");
        assert!(err.message.contains("2 record(s) buffered"), "{err}");
        assert!(!buffered.healthy(), "unhealthy while records wait");
        assert!(!buffered.refuses_new_calls(), "on_failure: continue");
        assert!(buffered.append(vec![rec(4)]).await.is_err());
        assert_eq!(buffered.stats().pending, 3);
        assert_eq!(buffered.flush().await, 3, "still down");

        inner.set_failing(false);
        // A new record queues behind what waits (no webhook drains the backlog); the retry
        // (here called directly) writes everything in order.
        assert!(buffered.append(vec![rec(5)]).await.is_err(), "queued");
        assert_eq!(buffered.stats().pending, 4);
        assert_eq!(buffered.flush().await, 0, "recovered");
        assert!(buffered.healthy());
        assert_eq!(calls(&inner.records()), ["CA1", "CA2", "CA3", "CA4", "CA5"]);
        let stats = buffered.stats();
        assert_eq!((stats.pending, stats.retried, stats.dropped), (0, 4, 0));
        assert!(stats.write_failures >= 2);
    }

    /// A sink whose appends wait until `meet` of them are inside it at once, and which
    /// (optionally) writes batches atomically.
    #[derive(Debug)]
    struct Meeting {
        barrier: tokio::sync::Barrier,
        atomic: bool,
        seen: std::sync::Mutex<Vec<usize>>,
    }

    impl AuditSink for Meeting {
        fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), BackendError>> {
            Box::pin(async move {
                if let Ok(mut seen) = self.seen.lock() {
                    seen.push(records.len());
                }
                self.barrier.wait().await;
                Ok(())
            })
        }

        fn atomic_batches(&self) -> bool {
            self.atomic
        }
    }

    #[tokio::test]
    async fn concurrent_appends_reach_the_sink_together_and_atomic_sinks_get_whole_batches() {
        for atomic in [false, true] {
            let inner = Arc::new(Meeting {
                barrier: tokio::sync::Barrier::new(2),
                atomic,
                seen: std::sync::Mutex::new(Vec::new()),
            });
            let buffered = buffered(inner.clone(), BufferPolicy::default());
            // Each append waits inside the sink for the other: written one after the other
            // (the queue held across the write), both would time out.
            let (a, b) = tokio::join!(
                buffered.append(vec![rec(1), rec(2)]),
                buffered.append(vec![rec(3), rec(4)])
            );
            if atomic {
                assert_eq!((a, b), (Ok(()), Ok(())));
                assert_eq!(
                    *inner.seen.lock().expect("seen"),
                    [2, 2],
                    "one call per append"
                );
            } else {
                // One record per call: the first records meet, then the second ones.
                assert_eq!((a, b), (Ok(()), Ok(())));
                assert_eq!(*inner.seen.lock().expect("seen"), [1, 1, 1, 1]);
            }
            assert!(buffered.healthy());
        }
    }

    #[tokio::test]
    async fn a_failed_atomic_batch_is_kept_whole_and_retried_in_order() {
        /// Keeps the size of every batch it wrote.
        #[derive(Debug, Default)]
        struct Atomic(
            resetline_engine::testing::MemoryAudit,
            std::sync::Mutex<Vec<usize>>,
        );
        impl Atomic {
            fn batches(&self) -> Vec<usize> {
                self.1.lock().map(|b| b.clone()).unwrap_or_default()
            }
        }
        impl AuditSink for Atomic {
            fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), BackendError>> {
                let n = records.len();
                Box::pin(async move {
                    let written = self.0.append(records).await;
                    if written.is_ok()
                        && let Ok(mut b) = self.1.lock()
                    {
                        b.push(n);
                    }
                    written
                })
            }
            fn atomic_batches(&self) -> bool {
                true
            }
        }
        let inner = Arc::new(Atomic::default());
        let buffered = buffered(inner.clone(), BufferPolicy::default());
        inner.0.set_failing(true);
        assert!(buffered.append(vec![rec(1), rec(2)]).await.is_err());
        assert_eq!(
            buffered.stats().pending,
            2,
            "both records of the batch wait"
        );
        assert!(
            buffered.append(vec![rec(3)]).await.is_err(),
            "queued behind"
        );
        inner.0.set_failing(false);
        assert_eq!(buffered.flush().await, 0);
        assert_eq!(
            inner.batches(),
            [3],
            "the retry wrote the backlog as one batch"
        );
        buffered.append(vec![rec(4)]).await.expect("written");
        assert_eq!(calls(&inner.0.records()), ["CA1", "CA2", "CA3", "CA4"]);
    }

    #[tokio::test]
    async fn the_retry_task_writes_what_waits_without_new_traffic() {
        let inner = Arc::new(resetline_engine::testing::MemoryAudit::failing());
        let buffered = Arc::new(buffered(inner.clone(), BufferPolicy::default()));
        let _ = buffered.append(vec![rec(1), rec(2)]).await;
        let task = buffered.spawn_retry(Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!buffered.healthy());
        inner.set_failing(false);
        for _ in 0..200 {
            if buffered.healthy() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(buffered.healthy());
        assert_eq!(calls(&inner.records()), ["CA1", "CA2"]);
        task.abort();
    }

    #[tokio::test]
    async fn refuse_policy_and_a_full_buffer_refuse_new_calls_and_count_drops() {
        let inner = Arc::new(resetline_engine::testing::MemoryAudit::failing());
        let refuse = buffered(
            inner.clone(),
            BufferPolicy {
                capacity: 10,
                on_failure: OnFailure::Refuse,
            },
        );
        assert!(!refuse.refuses_new_calls(), "nothing waits yet");
        let _ = refuse.append(vec![rec(1)]).await;
        assert!(refuse.refuses_new_calls());

        let small = buffered(
            inner.clone(),
            BufferPolicy {
                capacity: 2,
                on_failure: OnFailure::Continue,
            },
        );
        let _ = small.append(vec![rec(1)]).await;
        assert!(!small.refuses_new_calls(), "continue, and room left");
        let _ = small.append(vec![rec(2), rec(3), rec(4)]).await;
        let stats = small.stats();
        assert_eq!((stats.pending, stats.dropped), (2, 2));
        assert!(
            small.refuses_new_calls(),
            "a full buffer refuses whatever the policy"
        );
        inner.set_failing(false);
        assert_eq!(small.flush().await, 0);
        assert_eq!(calls(&inner.records()), ["CA1", "CA2"]);
        assert!(!small.refuses_new_calls());
    }

    #[tokio::test]
    async fn purge_through_the_buffer_and_the_writer_thread() {
        use resetline_audit::{Rotation, SinkConfig};
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = ChainId::new("t").expect("chain");
        let key = AuditKey::new(&[7u8; 32]).expect("key");
        let config = SinkConfig {
            rotation: Rotation {
                max_bytes: None,
                daily: true,
            },
            ..SinkConfig::new(dir.path(), chain.clone())
        };
        let (file, _) = FileAudit::open(config, key.clone()).expect("open");
        let audit = buffered(Arc::new(file), BufferPolicy::default());
        let old = time::OffsetDateTime::now_utc() - time::Duration::days(400);
        for i in 0..3 {
            let mut r = rec(i);
            r.time = old + time::Duration::days(i64::from(i));
            audit.append(vec![r]).await.expect("append");
        }
        let mut recent = rec(9);
        recent.time = time::OffsetDateTime::now_utc();
        audit.append(vec![recent]).await.expect("append");
        let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(365);
        assert_eq!(audit.purge(cutoff).await.expect("purge"), 3);
        audit.close().await.expect("close");
        let report = resetline_audit::verify(dir.path(), &chain, &key).expect("verify");
        assert_eq!((report.first_seq, report.records), (4, 2));
    }

    /// `chattr +i` makes writes to an already open file fail (EPERM) on ext4 as root: a real
    /// disk-level write failure, then recovery.
    fn immutable(path: &std::path::Path, on: bool) -> bool {
        std::process::Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    }

    #[tokio::test]
    async fn a_file_sink_that_cannot_write_is_reopened_and_nothing_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = ChainId::new("t").expect("chain");
        let key = AuditKey::new(&[7u8; 32]).expect("key");
        let (file, _) =
            FileAudit::open(SinkConfig::new(dir.path(), chain.clone()), key.clone()).expect("open");
        let audit = buffered(Arc::new(file), BufferPolicy::default());
        audit.append(vec![rec(1)]).await.expect("append");
        let segment = dir.path().join("t.000001.jsonl");
        if !immutable(&segment, true) {
            eprintln!("skipped: chattr +i is not available here (needs root on ext4)");
            return;
        }
        let failed = audit.append(vec![rec(2), rec(3)]).await;
        let flushed_while_down = audit.flush().await;
        immutable(&segment, false);
        assert!(
            failed.is_err(),
            "the write must fail while the file is immutable"
        );
        assert_eq!(flushed_while_down, 2);
        assert!(!audit.healthy());
        assert_eq!(audit.flush().await, 0, "reopened and written");
        assert!(audit.healthy());
        audit.append(vec![rec(4)]).await.expect("append");
        audit.close().await.expect("close");
        let report = resetline_audit::verify(dir.path(), &chain, &key).expect("verify");
        assert_eq!(report.records, 4);
        let records =
            resetline_audit::query(dir.path(), &chain, &Default::default()).expect("read");
        let calls: Vec<String> = records.iter().map(|r| r.record.call_id.clone()).collect();
        assert_eq!(calls, ["CA1", "CA2", "CA3", "CA4"]);
    }

    /// A sink whose appends wait `delay` before they reach `inner` (a write that lands
    /// after its caller gave up).
    #[derive(Debug)]
    struct Late {
        inner: Arc<dyn AuditSink>,
        delay: std::sync::Mutex<Duration>,
    }

    impl AuditSink for Late {
        fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), BackendError>> {
            let delay = self
                .delay
                .lock()
                .map(|mut d| std::mem::take(&mut *d))
                .unwrap_or_default();
            let inner = self.inner.clone();
            // The write goes ahead whatever the caller does (as a job already handed to the
            // file writer's thread does).
            let write = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                inner.append(records).await
            });
            Box::pin(async move {
                write
                    .await
                    .unwrap_or_else(|_| Err(BackendError::new("audit", "lost")))
            })
        }
    }

    #[tokio::test]
    async fn a_write_that_times_out_is_retried_but_never_written_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = ChainId::new("t").expect("chain");
        let key = AuditKey::new(&[7u8; 32]).expect("key");
        let (file, _) =
            FileAudit::open(SinkConfig::new(dir.path(), chain.clone()), key.clone()).expect("open");
        let late = Arc::new(Late {
            inner: Arc::new(file),
            delay: std::sync::Mutex::new(Duration::from_millis(300)),
        });
        let audit = buffered(late.clone(), BufferPolicy::default());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(
            audit.append_by(vec![rec(1)], deadline).await.is_err(),
            "not written by the deadline: kept for a retry"
        );
        assert!(
            tokio::time::Instant::now() < deadline + Duration::from_millis(200),
            "the caller's deadline holds"
        );
        assert_eq!(audit.stats().pending, 1);
        tokio::time::sleep(Duration::from_millis(400)).await; // the late write lands
        assert_eq!(audit.flush().await, 0, "the retry succeeds");
        audit.append(vec![rec(2)]).await.expect("append");
        audit.close().await.expect("close");
        let report = resetline_audit::verify(dir.path(), &chain, &key).expect("verify");
        let records =
            resetline_audit::query(dir.path(), &chain, &Default::default()).expect("read");
        assert_eq!(
            records
                .iter()
                .map(|r| r.record.call_id.as_str())
                .collect::<Vec<_>>(),
            ["CA1", "CA2"],
            "the retried record is in the trail once"
        );
        assert_eq!(report.records, 2);
    }

    #[tokio::test]
    async fn records_waiting_for_a_retry_survive_a_crash_and_are_written_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = AuditKey::new(&[7u8; 32]).expect("key");
        let down = Arc::new(resetline_engine::testing::MemoryAudit::failing());
        let (spill, found) = Spill::open(dir.path(), "t", key.clone()).expect("spill");
        let audit = buffered(down, BufferPolicy::default()).with_spill(spill, found.records);
        assert!(audit.append(vec![rec(1), rec(2)]).await.is_err());
        assert!(audit.append(vec![rec(3)]).await.is_err());
        drop(audit); // the process dies with three records waiting

        let up = Arc::new(resetline_engine::testing::MemoryAudit::default());
        let (spill, found) = Spill::open(dir.path(), "t", key.clone()).expect("spill");
        assert_eq!(found.records.len(), 3, "all three were on disk");
        let audit = buffered(up.clone(), BufferPolicy::default()).with_spill(spill, found.records);
        let clock: Arc<dyn Clock> = Arc::new(resetline_engine::SystemClock);
        assert_eq!(audit.recover(clock).await, 0);
        audit.append(vec![rec(4)]).await.expect("append");
        assert_eq!(calls(&up.records()), ["CA1", "CA2", "CA3", "CA4"]);
        drop(audit);
        let (_, found) = Spill::open(dir.path(), "t", key).expect("spill");
        assert!(
            found.records.is_empty(),
            "the spill is emptied once written"
        );
    }

    #[tokio::test]
    async fn a_spill_replayed_after_a_partial_write_adds_no_duplicate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = AuditKey::new(&[7u8; 32]).expect("key");
        let sink = Arc::new(resetline_engine::testing::MemoryAudit::failing());
        let (spill, found) = Spill::open(dir.path(), "t", key.clone()).expect("spill");
        let audit =
            buffered(sink.clone(), BufferPolicy::default()).with_spill(spill, found.records);
        assert!(audit.append(vec![rec(1), rec(2)]).await.is_err());
        // The sink comes back; the records are written, but the process dies before the
        // spill is emptied: the next start replays records already in the trail.
        sink.set_failing(false);
        let (_, again) = Spill::open(dir.path(), "t", key.clone()).expect("spill copy");
        sink.append(again.records.clone()).await.expect("written");
        drop(audit);
        let (spill, found) = Spill::open(dir.path(), "t", key).expect("spill");
        let audit =
            buffered(sink.clone(), BufferPolicy::default()).with_spill(spill, found.records);
        let clock: Arc<dyn Clock> = Arc::new(resetline_engine::SystemClock);
        assert_eq!(audit.recover(clock).await, 0);
        assert_eq!(calls(&sink.records()), ["CA1", "CA2"], "each record once");
    }

    #[tokio::test]
    async fn an_intent_left_open_by_a_crash_is_closed_as_unknown_at_start() {
        use resetline_audit::INTENT_DETAIL;
        let intent = |n: u8| {
            let mut r = rec(u32::from(n));
            r.event = EventType::AuthnPasswordChange;
            r.outcome = Outcome::Intent;
            r.with_id(resetline_audit::RecordId::from_bytes([n; 16]))
        };
        let outcome_of = |n: u8| {
            rec(u32::from(n)).with_detail(INTENT_DETAIL, intent(n).id.expect("id").to_string())
        };
        let sink = Arc::new(resetline_engine::testing::MemoryAudit::default());
        // Before the crash: intent 1 finished; intents 2 and 3 were written, and the outcome
        // of 3 waited in the spill; intent 4 was itself still in the spill.
        sink.append(vec![intent(1), outcome_of(1), intent(2), intent(3)])
            .await
            .expect("trail");
        let dir = tempfile::tempdir().expect("tempdir");
        let key = AuditKey::new(&[7u8; 32]).expect("key");
        let (mut spill, _) = Spill::open(dir.path(), "t", key.clone()).expect("spill");
        spill.push(&[outcome_of(3), intent(4)]).expect("push");
        drop(spill);

        let (spill, found) = Spill::open(dir.path(), "t", key).expect("spill");
        let audit =
            buffered(sink.clone(), BufferPolicy::default()).with_spill(spill, found.records);
        let clock: Arc<dyn Clock> = Arc::new(resetline_engine::FakeClock::at(1_700_000_000_000));
        assert_eq!(audit.recover(clock).await, 0);
        let unknown: Vec<String> = sink
            .records()
            .iter()
            .filter(|r| r.outcome == Outcome::Unknown)
            .map(|r| {
                assert_eq!(r.reason, "outcome_unknown");
                assert!(r.id.is_some(), "it gets its own id");
                r.details.get(INTENT_DETAIL).cloned().unwrap_or_default()
            })
            .collect();
        let expected: Vec<String> = [2u8, 4]
            .iter()
            .map(|n| intent(*n).id.expect("id").to_string())
            .collect();
        assert_eq!(unknown, expected, "only the intents with no outcome");
        // A second start finds nothing left open.
        let again = buffered(sink.clone(), BufferPolicy::default());
        let before = sink.records().len();
        let clock: Arc<dyn Clock> = Arc::new(resetline_engine::SystemClock);
        assert_eq!(again.recover(clock).await, 0);
        assert_eq!(sink.records().len(), before);
    }
}
