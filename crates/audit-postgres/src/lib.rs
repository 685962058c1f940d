//! The Resetline audit trail in PostgreSQL: the engine's [`AuditSink`] on tokio-postgres.
//!
//! Records are sealed by [`resetline_audit::ChainHead`] into exactly the lines the file sink
//! writes; a row keeps the line (`line`, what the `mac` covers, and `record`, the same JSON
//! as `jsonb` for queries) beside the chain columns (`chain`, `seq`, `prev`, `mac`) and a
//! few columns copied from it for indexes (`time`, `event`, `call_id`, `account`,
//! `outcome`). Signed checkpoints go to `audit_checkpoints`. [`verify`] feeds both to the
//! same [`resetline_audit::ChainCheck`] as the file verifier, and also checks that the copied
//! columns agree with the line.
//!
//! # Invariants
//!
//! - **One writer per chain.** The writer holds a session advisory lock on its chain for as
//!   long as its connection lives; a second writer (another replica configured with the same
//!   `chain`) is refused at start, so two replicas never interleave one chain. Give every
//!   replica its own `chain`.
//! - **The chain is linear and gap-free.** `(chain, seq)` is the primary key; a record is
//!   inserted with `ON CONFLICT DO NOTHING`, and when its seq is taken the stored line must
//!   be byte-identical (a retry of a write whose commit was not acknowledged) or the write
//!   fails as a fork. After any error the writer drops its connection and, before the next
//!   write, reconnects, retakes the lock and re-reads the head from the table.
//! - **A record id is written once** (migration 2): `record_id`, generated from the line, has
//!   a unique index, and an insert whose id is already stored is skipped (the chain does not
//!   move): a retry of a write whose commit went through unacknowledged, re-sealed at the
//!   next seq after the head was re-read, is recognised, not written twice.
//! - **Append-only in the database.** Triggers refuse UPDATE, DELETE and TRUNCATE on both
//!   tables (`insufficient_privilege`), except DELETE of records inside
//!   `resetline_audit_purge(chain, through_seq)`, the retention path, which sets a
//!   transaction-local flag the trigger checks. The triggers stop mistakes and the
//!   application role; a database superuser can still disable them, which the chain and the
//!   checkpoints then reveal. For defence in depth, grant the application role only
//!   `INSERT, SELECT` on the tables and `EXECUTE` on the purge function.
//! - **The database must be up at start** (the schema is migrated and the head read then);
//!   later outages only make writes fail, and the server's retry buffer keeps the records.
//!   After a network break the chain's lock is free again once PostgreSQL has noticed the old
//!   session is gone; until then writes keep waiting in the buffer.
//! - **A purge is one transaction**: the deletion (only through a seq that a signed
//!   checkpoint covers, so the rest is anchored), the `retention_purge` record saying what was
//!   removed, and a checkpoint after it. Checkpoints are never deleted (they are small).
//!   The writer checkpoints every `checkpoint_every` records, before the first record of each
//!   UTC day (so retention can cut at day boundaries), after a purge and on close.
//!
//! - **Group commit**: appends that arrive while a write is in flight wait for it, and the
//!   next writer takes all of them at once: their records go in, in arrival order, in one
//!   transaction with one commit (one fsync) for the lot, through one prepared INSERT. An
//!   append returns only once its records are committed; when a batch fails, none of it is
//!   written and every append in it gets the error (the server's retry buffer keeps them).
//!
//! # Why not a connection pool
//!
//! A chain has one writer and its appends are sequential by construction (each carries the
//! hash of the one before), so a pool of N connections would serve one insert at a time
//! anyway. The writer keeps one connection, which also holds the chain's advisory lock (the
//! database's equivalent of the file sink's lock file), and replaces it when it breaks;
//! that replacement is what a pool would add. Readers (`resetline audit verify`) open their
//! own connection. So no deadpool/bb8 dependency.
//!
//! # TLS
//!
//! None: the crate is built without a TLS connector, for a database on loopback or a private
//! network. `sslmode=disable` and `prefer` (the default) connect in plain text;
//! `sslmode=require` is refused at start with a clear error rather than failing later.
//!
//! # Tests and figures
//!
//! `tests/` run against a real PostgreSQL 15 on 127.0.0.1 started by `tests/support`;
//! `examples/pg_append.rs` measures appends one at a time and with group commit
//! (BENCHMARKS.md).

mod schema;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use resetline_audit::{
    AuditKey, ChainCheck, ChainHead, ChainId, Record, Report, SinkError, VerifyError,
};
use resetline_engine::{AuditSink, BackendError, BoxFuture};
use subtle::ConstantTimeEq;
use time::{Date, OffsetDateTime, UtcOffset};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

pub use schema::migrate;

/// The PostgreSQL audit sink failed.
#[derive(Debug)]
pub enum PgError {
    /// The connection string does not parse (its text is not repeated: it may hold a
    /// password).
    BadUrl,
    /// `sslmode=require`: this build has no TLS.
    TlsUnsupported,
    /// A database error.
    Db(tokio_postgres::Error),
    /// The batch this append was part of failed (another append in it found the error; its
    /// text is here). Nothing of the batch was written.
    Batch(String),
    /// Another writer holds the chain's lock.
    Locked {
        /// The chain.
        chain: String,
    },
    /// The seq was taken by a different record: another writer, or a restored backup.
    Fork {
        /// The chain.
        chain: String,
        /// The seq.
        seq: u64,
    },
    /// The stored chain cannot be resumed (its last record does not verify, or records
    /// are gone while checkpoints remain).
    Corrupt {
        /// The chain.
        chain: String,
        /// What is wrong.
        detail: String,
    },
    /// Sealing a record failed.
    Seal(SinkError),
    /// The chain does not verify.
    Verify(VerifyError),
    /// A column copied from the line disagrees with it (edited behind the chain's back).
    ColumnMismatch {
        /// The row's seq.
        seq: u64,
        /// The column.
        column: &'static str,
    },
    /// The chain has no records.
    Empty {
        /// The chain.
        chain: String,
    },
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::BadUrl => f.write_str("the PostgreSQL connection string does not parse"),
            PgError::TlsUnsupported => f.write_str(
                "sslmode=require is not supported: this build connects without TLS \
                 (use a loopback or private-network database with sslmode=disable)",
            ),
            PgError::Db(e) => match e.as_db_error() {
                Some(db) => write!(f, "PostgreSQL: {}", db.message()),
                None => write!(f, "PostgreSQL: {e}"),
            },
            PgError::Batch(detail) => write!(f, "audit batch not written: {detail}"),
            PgError::Locked { chain } => write!(
                f,
                "another writer holds audit chain {chain:?} (give each replica its own `audit.chain`)"
            ),
            PgError::Fork { chain, seq } => write!(
                f,
                "audit chain {chain:?}: seq {seq} is already taken by a different record"
            ),
            PgError::Corrupt { chain, detail } => {
                write!(f, "audit chain {chain:?} cannot be resumed: {detail}")
            }
            PgError::Seal(e) => write!(f, "{e}"),
            PgError::Verify(e) => write!(f, "{e}"),
            PgError::ColumnMismatch { seq, column } => write!(
                f,
                "row seq {seq}: column `{column}` does not match the sealed line (edited)"
            ),
            PgError::Empty { chain } => write!(f, "audit chain {chain:?} has no records"),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgError::Db(e) => Some(e),
            PgError::Seal(e) => Some(e),
            PgError::Verify(e) => Some(e),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Db(e)
    }
}

/// The name verification reports and checkpoints use for a chain's rows: the verifier's
/// `file` (`audit_records.<chain>`); the line number in its reports is the row's seq.
pub fn source_name(chain: &ChainId) -> String {
    format!("audit_records.{chain}")
}

/// Parses a connection string, refusing what this build cannot do.
///
/// # Errors
/// [`PgError::BadUrl`] or [`PgError::TlsUnsupported`].
pub fn parse_url(url: &str) -> Result<Config, PgError> {
    let mut config: Config = url.parse().map_err(|_| PgError::BadUrl)?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(PgError::TlsUnsupported);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("resetline-audit");
    }
    Ok(config)
}

/// Connects (no TLS) and drives the connection on a task.
///
/// # Errors
/// [`PgError::Db`] when the database cannot be reached or refuses the login.
pub async fn connect(config: &Config) -> Result<Client, PgError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "audit database connection ended");
        }
    });
    Ok(client)
}

/// How to open a [`PgAudit`].
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Parsed connection settings ([`parse_url`]).
    pub db: Config,
    /// The chain this writer owns.
    pub chain: ChainId,
    /// Write a checkpoint every this many records (0: only at day changes, purges, close).
    pub checkpoint_every: u64,
}

struct Writer {
    client: Option<Client>,
    /// The record INSERT, prepared on the current connection.
    insert: Option<tokio_postgres::Statement>,
    head: Option<ChainHead>,
    last_date: Option<Date>,
    since_checkpoint: u64,
    closed: bool,
}

/// Audit records appended to PostgreSQL (see the crate doc).
pub struct PgAudit {
    config: PgConfig,
    key: AuditKey,
    writer: tokio::sync::Mutex<Writer>,
    /// Appends waiting for the next batch (group commit), in arrival order.
    queue: std::sync::Mutex<Vec<Queued>>,
    healthy: AtomicBool,
}

/// An append waiting for a batch: its records, and where its batch's outcome goes.
struct Queued {
    records: Vec<Record>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// A batch being written, holding the writer. Dropped before its answers went out (the
/// appender writing it was cancelled mid-transaction), it drops the connection — PostgreSQL
/// rolls the open transaction back, and the next write re-reads the chain head — and tells
/// every append of the batch that it failed, so each keeps its records for a retry.
struct Batch<'a> {
    sink: &'a PgAudit,
    w: tokio::sync::MutexGuard<'a, Writer>,
    answers: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.answers.is_empty() {
            return;
        }
        self.sink.reset(&mut self.w);
        for done in self.answers.drain(..) {
            let _ = done.send(Err("the write was cancelled before its commit".into()));
        }
    }
}

/// Skips a row whose seq or record id is taken (the writer then tells which).
const INSERT_RECORD: &str = "INSERT INTO audit_records \
     (chain, seq, time, event, call_id, account, outcome, prev, mac, line) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT DO NOTHING";

/// How many of the newest records `open_intents` looks at (as the file sink's window).
const INTENT_WINDOW: i64 = 100_000;

impl fmt::Debug for PgAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgAudit")
            .field("chain", &self.config.chain)
            .finish_non_exhaustive()
    }
}

/// What [`PgAudit::purge_before`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgPurge {
    /// Records removed.
    pub removed: u64,
    /// The first seq kept.
    pub first_seq: u64,
    /// The seq of the `retention_purge` record (none when nothing was removed).
    pub record_seq: Option<u64>,
}

fn utc_date(t: OffsetDateTime) -> Option<Date> {
    t.checked_to_offset(UtcOffset::UTC)
        .map(OffsetDateTime::date)
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

impl PgAudit {
    /// Connects, migrates the schema, takes the chain's lock and resumes after its last
    /// record. Returns the sink and the seq it resumes after.
    ///
    /// # Errors
    /// [`PgError`] when any of that fails.
    pub async fn open(config: PgConfig, key: AuditKey) -> Result<(Self, u64), PgError> {
        let sink = PgAudit {
            config,
            key,
            writer: tokio::sync::Mutex::new(Writer {
                client: None,
                insert: None,
                head: None,
                last_date: None,
                since_checkpoint: 0,
                closed: false,
            }),
            queue: std::sync::Mutex::new(Vec::new()),
            healthy: AtomicBool::new(true),
        };
        let resumed = {
            let mut w = sink.writer.lock().await;
            let mut client = connect(&sink.config.db).await?;
            migrate(&mut client).await?;
            w.client = Some(client);
            sink.ensure(&mut w).await?;
            w.head.as_ref().map_or(0, ChainHead::seq)
        };
        Ok((sink, resumed))
    }

    /// The chain this sink writes.
    pub fn chain(&self) -> &ChainId {
        &self.config.chain
    }

    /// Connects (and locks, and reads the head) when there is no live connection.
    async fn ensure(&self, w: &mut Writer) -> Result<(), PgError> {
        if w.closed {
            return Err(PgError::Corrupt {
                chain: self.config.chain.to_string(),
                detail: "the sink is closed".into(),
            });
        }
        let live = w.client.as_ref().is_some_and(|c| !c.is_closed()) && w.head.is_some();
        if live {
            return Ok(());
        }
        let chain = self.config.chain.as_str();
        let client = match w.client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => connect(&self.config.db).await?,
        };
        let lock_name = format!("resetline-audit:{chain}");
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&lock_name],
            )
            .await?
            .get(0);
        if !locked {
            return Err(PgError::Locked {
                chain: chain.to_owned(),
            });
        }
        let last = client
            .query_opt(
                "SELECT line FROM audit_records WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
                &[&chain],
            )
            .await?;
        let checkpointed: i64 = client
            .query_one(
                "SELECT coalesce(max(count), 0) FROM audit_checkpoints WHERE chain = $1",
                &[&chain],
            )
            .await?
            .get(0);
        let checkpointed = u64::try_from(checkpointed).unwrap_or(0);
        let (head, last_date) = match last {
            None if checkpointed > 0 => {
                return Err(PgError::Corrupt {
                    chain: chain.to_owned(),
                    detail: "checkpoints exist but every record is gone".into(),
                });
            }
            None => (
                ChainHead::genesis(self.key.clone(), self.config.chain.clone()),
                None,
            ),
            Some(row) => {
                let line: String = row.get(0);
                let corrupt = |p: resetline_audit::RecordProblem| PgError::Corrupt {
                    chain: chain.to_owned(),
                    detail: format!("its last record: {p}"),
                };
                let stored =
                    resetline_audit::open_record(line.as_bytes(), &self.key).map_err(corrupt)?;
                let head =
                    ChainHead::resume(self.key.clone(), self.config.chain.clone(), line.as_bytes())
                        .map_err(corrupt)?;
                (head, utc_date(stored.record.time))
            }
        };
        if checkpointed > head.seq() {
            return Err(PgError::Corrupt {
                chain: chain.to_owned(),
                detail: format!(
                    "a checkpoint covers {checkpointed} records but the last is seq {}",
                    head.seq()
                ),
            });
        }
        w.insert = Some(client.prepare(INSERT_RECORD).await?);
        w.since_checkpoint = head.seq() - checkpointed;
        w.head = Some(head);
        w.last_date = last_date;
        w.client = Some(client);
        Ok(())
    }

    async fn checkpoint(&self, w: &mut Writer, now: OffsetDateTime) -> Result<(), PgError> {
        let (Some(client), Some(head)) = (w.client.as_ref(), w.head.as_ref()) else {
            return Ok(());
        };
        if head.seq() == 0 {
            return Ok(());
        }
        let line = head
            .checkpoint(&source_name(&self.config.chain), now)
            .map_err(PgError::Seal)?;
        let line = String::from_utf8_lossy(&line).into_owned();
        client
            .execute(
                "INSERT INTO audit_checkpoints (chain, count, time, line) VALUES ($1, $2, $3, $4)",
                &[
                    &self.config.chain.as_str(),
                    &seq_i64(head.seq()),
                    &now,
                    &line,
                ],
            )
            .await?;
        w.since_checkpoint = 0;
        Ok(())
    }

    async fn append_one(&self, w: &mut Writer, record: &Record) -> Result<(), PgError> {
        let date = utc_date(record.time);
        if let (Some(last), Some(date)) = (w.last_date, date)
            && date > last
            && w.since_checkpoint > 0
        {
            self.checkpoint(w, record.time).await?;
        }
        let (Some(client), Some(insert), Some(head)) =
            (w.client.as_ref(), w.insert.as_ref(), w.head.as_mut())
        else {
            return Err(self.not_connected());
        };
        let (sealed, stored) = match head.seal(record) {
            Ok(sealed) => (sealed, record.clone()),
            Err(e @ (SinkError::Encode { .. } | SinkError::RecordTooLarge { .. })) => {
                tracing::error!(error = %e, event = %record.event, "audit record cannot be encoded; a stand-in is written");
                let stand_in =
                    resetline_audit::stand_in(record, &e.to_string(), OffsetDateTime::now_utc());
                (head.seal(&stand_in).map_err(PgError::Seal)?, stand_in)
            }
            Err(e) => return Err(PgError::Seal(e)),
        };
        let line = String::from_utf8_lossy(&sealed.line).into_owned();
        let chain = self.config.chain.as_str();
        let seq = seq_i64(sealed.seq);
        let inserted = client
            .execute(
                insert,
                &[
                    &chain,
                    &seq,
                    &stored.time,
                    &stored.event.as_str(),
                    &stored.call_id,
                    &stored.account,
                    &stored.outcome.as_str(),
                    &sealed.prev,
                    &sealed.mac,
                    &line,
                ],
            )
            .await?;
        if inserted == 0 {
            let existing: Option<String> = client
                .query_opt(
                    "SELECT line FROM audit_records WHERE chain = $1 AND seq = $2",
                    &[&chain, &seq],
                )
                .await?
                .map(|row| row.get(0));
            if existing.as_deref() != Some(line.as_str()) {
                if let Some(id) = stored.id
                    && let Some(row) = client
                        .query_opt(
                            "SELECT chain, seq FROM audit_records WHERE record_id = $1",
                            &[&id.to_string()],
                        )
                        .await?
                {
                    let (at_chain, at_seq): (String, i64) = (row.get(0), row.get(1));
                    tracing::info!(chain = %at_chain, seq = at_seq, event = %stored.event, "audit record already written (a retry); not written again");
                    return Ok(());
                }
                return Err(PgError::Fork {
                    chain: chain.to_owned(),
                    seq: sealed.seq,
                });
            }
        }
        head.advance(&sealed);
        w.last_date = match (w.last_date, date) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        w.since_checkpoint += 1;
        let every = self.config.checkpoint_every;
        if every > 0 && w.since_checkpoint >= every {
            self.checkpoint(w, record.time).await?;
        }
        Ok(())
    }

    /// After an error: forget the connection and the head, so the next write reconnects,
    /// relocks and re-reads the head from the table.
    fn reset(&self, w: &mut Writer) {
        w.client = None;
        w.insert = None;
        w.head = None;
        self.healthy.store(false, Ordering::Relaxed);
    }

    /// Appends records in order, committed together with whatever other appends are waiting
    /// (group commit); returns once they are committed.
    ///
    /// # Errors
    /// [`PgError`]; nothing of the failed batch is written ([`PgError::Batch`] when another
    /// append of the batch met the error).
    pub async fn append_records(&self, records: &[Record]) -> Result<(), PgError> {
        let (done, mut outcome) = tokio::sync::oneshot::channel();
        self.lock_queue().push(Queued {
            records: records.to_vec(),
            done,
        });
        let w = self.writer.lock().await;
        match outcome.try_recv() {
            // The writer before us took these records into its batch.
            Ok(result) => return result.map_err(PgError::Batch),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                return Err(PgError::Batch("its writer stopped before answering".into()));
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
        }
        // Appends that gave up waiting (their caller timed out or went away, and keeps the
        // records for a retry) are left out, so they are not written twice.
        let mut records = Vec::new();
        let mut answers = Vec::new();
        for queued in std::mem::take(&mut *self.lock_queue()) {
            if !queued.done.is_closed() {
                records.extend(queued.records);
                answers.push(queued.done);
            }
        }
        let mut batch = Batch {
            sink: self,
            w,
            answers,
        };
        let result = self.write_batch(&mut batch.w, &records).await;
        if result.is_err() {
            self.reset(&mut batch.w);
        } else {
            self.healthy.store(true, Ordering::Relaxed);
        }
        // Outcomes go out before the writer is released: the next writer must find its
        // records answered if this batch took them.
        let shared = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        for done in std::mem::take(&mut batch.answers) {
            let _ = done.send(shared.clone());
        }
        drop(batch);
        result
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One transaction for `records`, in order.
    async fn write_batch(&self, w: &mut Writer, records: &[Record]) -> Result<(), PgError> {
        self.ensure(w).await?;
        self.execute_on(w, "BEGIN").await?;
        for record in records {
            self.append_one(w, record).await?;
        }
        self.execute_on(w, "COMMIT").await
    }

    /// The writer has no live connection where it needs one.
    fn not_connected(&self) -> PgError {
        PgError::Corrupt {
            chain: self.config.chain.to_string(),
            detail: "not connected".into(),
        }
    }

    async fn execute_on(&self, w: &Writer, sql: &str) -> Result<(), PgError> {
        let Some(client) = w.client.as_ref() else {
            return Err(self.not_connected());
        };
        Ok(client.batch_execute(sql).await?)
    }

    /// Retention: in one transaction, deletes the oldest records up to the newest signed
    /// checkpoint whose records are all older than `cutoff`, appends the `retention_purge`
    /// record and a checkpoint. `now` dates the record.
    ///
    /// # Errors
    /// [`PgError`]; nothing is removed then.
    pub async fn purge_before(
        &self,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<PgPurge, PgError> {
        let mut w = self.writer.lock().await;
        let result = async {
            self.ensure(&mut w).await?;
            self.purge_locked(&mut w, cutoff, now).await
        }
        .await;
        if result.is_err() {
            // Reconnect before the next write; health follows writes, not purges (a quiet
            // server must not look unready because a purge failed).
            w.client = None;
            w.head = None;
        }
        result
    }

    async fn purge_locked(
        &self,
        w: &mut Writer,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<PgPurge, PgError> {
        let chain = self.config.chain.as_str();
        let (Some(client), Some(head)) = (w.client.as_mut(), w.head.as_mut()) else {
            return Err(self.not_connected());
        };
        let first: Option<i64> = client
            .query_one(
                "SELECT min(seq) FROM audit_records WHERE chain = $1",
                &[&chain],
            )
            .await?
            .get(0);
        let first = first.and_then(|f| u64::try_from(f).ok()).unwrap_or(1);
        let young: Option<i64> = client
            .query_one(
                "SELECT min(seq) FROM audit_records WHERE chain = $1 AND time >= $2",
                &[&chain, &cutoff],
            )
            .await?
            .get(0);
        let limit = young.map_or(seq_i64(head.seq()) + 1, |y| y);
        let candidates = client
            .query(
                "SELECT c.line, r.line FROM audit_checkpoints c \
                 JOIN audit_records r ON r.chain = c.chain AND r.seq = c.count \
                 WHERE c.chain = $1 AND c.count < $2 ORDER BY c.count DESC, c.id DESC",
                &[&chain, &limit],
            )
            .await?;
        let mut through = None;
        for row in candidates {
            let cp_line: String = row.get(0);
            let record_line: String = row.get(1);
            let Some((cp_chain, count, cp_head)) =
                resetline_audit::open_checkpoint_line(cp_line.as_bytes(), &self.key)
            else {
                continue;
            };
            let Ok(at) = ChainHead::resume(
                self.key.clone(),
                self.config.chain.clone(),
                record_line.as_bytes(),
            ) else {
                continue;
            };
            if cp_chain == chain && at.seq() == count && at.link() == cp_head {
                through = Some(count);
                break;
            }
        }
        let Some(through) = through else {
            return Ok(PgPurge {
                removed: 0,
                first_seq: first,
                record_seq: None,
            });
        };
        let tx = client.transaction().await?;
        let removed: i64 = tx
            .query_one(
                "SELECT resetline_audit_purge($1, $2)",
                &[&chain, &seq_i64(through)],
            )
            .await?
            .get(0);
        let removed = u64::try_from(removed).unwrap_or(0);
        let record = resetline_audit::purge_record(now, cutoff, removed, through + 1);
        let sealed = head.seal(&record).map_err(PgError::Seal)?;
        let line = String::from_utf8_lossy(&sealed.line).into_owned();
        tx.execute(
            "INSERT INTO audit_records \
             (chain, seq, time, event, call_id, account, outcome, prev, mac, line) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &chain,
                &seq_i64(sealed.seq),
                &record.time,
                &record.event.as_str(),
                &record.call_id,
                &record.account,
                &record.outcome.as_str(),
                &sealed.prev,
                &sealed.mac,
                &line,
            ],
        )
        .await?;
        let mut after = head.clone();
        after.advance(&sealed);
        let cp = after
            .checkpoint(&source_name(&self.config.chain), now)
            .map_err(PgError::Seal)?;
        tx.execute(
            "INSERT INTO audit_checkpoints (chain, count, time, line) VALUES ($1, $2, $3, $4)",
            &[
                &chain,
                &seq_i64(sealed.seq),
                &now,
                &String::from_utf8_lossy(&cp).into_owned(),
            ],
        )
        .await?;
        tx.commit().await?;
        head.advance(&sealed);
        w.since_checkpoint = 0;
        tracing::info!(chain, removed, first_seq = through + 1, cutoff = %cutoff, "audit retention purge");
        Ok(PgPurge {
            removed,
            first_seq: through + 1,
            record_seq: Some(sealed.seq),
        })
    }

    /// The intents among the chain's newest records (the last 100,000) that no record names
    /// yet, oldest first. Rows that do not verify under the key are left out (`verify`
    /// names them).
    ///
    /// # Errors
    /// [`PgError`] when the database cannot be read.
    pub async fn unfinished(&self) -> Result<Vec<Record>, PgError> {
        let mut w = self.writer.lock().await;
        self.ensure(&mut w).await?;
        let Some(client) = w.client.as_ref() else {
            return Err(self.not_connected());
        };
        let chain = self.config.chain.as_str();
        let rows = client
            .query(
                "SELECT seq, line FROM audit_records WHERE chain = $1 \
                 AND seq > (SELECT coalesce(max(seq), 0) FROM audit_records WHERE chain = $1) - $2 \
                 AND (outcome = 'intent' OR record->'details' ? 'intent') ORDER BY seq",
                &[&chain, &INTENT_WINDOW],
            )
            .await?;
        let mut open = resetline_audit::OpenIntents::default();
        for row in rows {
            let seq: i64 = row.get(0);
            let line: &str = row.get(1);
            if let Ok(stored) = resetline_audit::open_record(line.as_bytes(), &self.key) {
                open.see(u64::try_from(seq).unwrap_or(0), &stored.record);
            }
        }
        Ok(open.open())
    }

    /// Writes a final checkpoint (time `now`) if records came after the last one, and
    /// closes the connection (releasing the chain's lock).
    ///
    /// # Errors
    /// [`PgError`] when the checkpoint cannot be written.
    pub async fn close_at(&self, now: OffsetDateTime) -> Result<(), PgError> {
        let mut w = self.writer.lock().await;
        let result = if w.since_checkpoint > 0 {
            match self.ensure(&mut w).await {
                Ok(()) => self.checkpoint(&mut w, now).await,
                Err(e) => Err(e),
            }
        } else {
            Ok(())
        };
        w.closed = true;
        w.client = None;
        w.head = None;
        result
    }
}

impl AuditSink for PgAudit {
    fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.append_records(&records)
                .await
                .map_err(|e| BackendError::new("audit", e.to_string()))
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.close_at(OffsetDateTime::now_utc())
                .await
                .map_err(|e| BackendError::new("audit", e.to_string()))
        })
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// One transaction per batch: all of an append's records, or none.
    fn atomic_batches(&self) -> bool {
        true
    }

    fn open_intents(&self) -> BoxFuture<'_, Result<Vec<Record>, BackendError>> {
        Box::pin(async move {
            self.unfinished()
                .await
                .map_err(|e| BackendError::new("audit", e.to_string()))
        })
    }

    fn purge(&self, cutoff: OffsetDateTime) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(async move {
            self.purge_before(cutoff, OffsetDateTime::now_utc())
                .await
                .map(|p| p.removed)
                .map_err(|e| BackendError::new("audit", e.to_string()))
        })
    }
}

/// Verifies chain `chain` in the database: its checkpoints, then its records in seq order,
/// through the same [`ChainCheck`] as the file verifier (a trail may start after seq 1 if a
/// retention purge says so), and that each row's copied columns match its line. Errors name
/// `audit_records.<chain>:<seq>`.
///
/// # Errors
/// [`PgError::Verify`] for the first bad record or checkpoint, [`PgError::ColumnMismatch`],
/// [`PgError::Empty`], or [`PgError::Db`].
pub async fn verify(client: &Client, chain: &ChainId, key: &AuditKey) -> Result<Report, PgError> {
    // One snapshot: a purge or appends running meanwhile cannot make a false alarm.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let result = verify_snapshot(client, chain, key).await;
    client.batch_execute("ROLLBACK").await?;
    result
}

async fn verify_snapshot(
    client: &Client,
    chain: &ChainId,
    key: &AuditKey,
) -> Result<Report, PgError> {
    let source = PathBuf::from(source_name(chain));
    let mut check = ChainCheck::new(chain.clone(), key.clone()).purged_start(true);
    for row in client
        .query(
            "SELECT id, line FROM audit_checkpoints WHERE chain = $1 ORDER BY id",
            &[&chain.as_str()],
        )
        .await?
    {
        let id: i64 = row.get(0);
        let line: String = row.get(1);
        check.checkpoint(&source, u64::try_from(id).unwrap_or(0), line.as_bytes());
    }
    let mut after: i64 = 0;
    let mut any = false;
    loop {
        let rows = client
            .query(
                "SELECT seq, line, time, event, call_id, account, outcome, prev, mac \
                 FROM audit_records WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT 5000",
                &[&chain.as_str(), &after],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            any = true;
            let seq: i64 = row.get(0);
            let line: String = row.get(1);
            let useq = u64::try_from(seq).unwrap_or(0);
            check
                .record(&source, useq, line.as_bytes())
                .map_err(PgError::Verify)?;
            let stored = resetline_audit::open_record(line.as_bytes(), key).map_err(|problem| {
                PgError::Verify(VerifyError::Record(resetline_audit::RecordFault {
                    file: source.clone(),
                    line: useq,
                    seq: Some(useq),
                    problem,
                }))
            })?;
            let mismatch = |column| PgError::ColumnMismatch { seq: useq, column };
            let r = &stored.record;
            if stored.seq != useq {
                return Err(mismatch("seq"));
            }
            // timestamptz keeps microseconds; the line keeps the full time.
            if (row.get::<_, OffsetDateTime>(2) - r.time).abs() >= time::Duration::microseconds(1) {
                return Err(mismatch("time"));
            }
            if row.get::<_, &str>(3) != r.event.as_str() {
                return Err(mismatch("event"));
            }
            if row.get::<_, &str>(4) != r.call_id {
                return Err(mismatch("call_id"));
            }
            if row.get::<_, &str>(5) != r.account {
                return Err(mismatch("account"));
            }
            if row.get::<_, &str>(6) != r.outcome.as_str() {
                return Err(mismatch("outcome"));
            }
            // MACs compare in constant time, here too (security.md check 10).
            let same = |a: &str, b: &str| bool::from(a.as_bytes().ct_eq(b.as_bytes()));
            if !same(row.get::<_, &str>(7), &stored.prev) {
                return Err(mismatch("prev"));
            }
            if !same(row.get::<_, &str>(8), &stored.mac) {
                return Err(mismatch("mac"));
            }
            after = seq;
        }
    }
    if !any {
        return Err(PgError::Empty {
            chain: chain.to_string(),
        });
    }
    check.finish(vec![source]).map_err(PgError::Verify)
}

/// Every record of `chain` still stored, in seq order, parsed (not verified: use [`verify`]).
///
/// # Errors
/// [`PgError::Db`], or [`PgError::Verify`] for a row that does not parse.
pub async fn records(
    client: &Client,
    chain: &ChainId,
) -> Result<Vec<resetline_audit::StoredRecord>, PgError> {
    let rows = client
        .query(
            "SELECT line FROM audit_records WHERE chain = $1 ORDER BY seq",
            &[&chain.as_str()],
        )
        .await?;
    let source = PathBuf::from(source_name(chain));
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let line: &str = row.get(0);
            resetline_audit::StoredRecord::parse(line).map_err(|problem| {
                PgError::Verify(VerifyError::Record(resetline_audit::RecordFault {
                    file: source.clone(),
                    line: i as u64 + 1,
                    seq: None,
                    problem,
                }))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_are_checked_without_echoing_them() {
        let ok = parse_url("postgres://resetline:pw@127.0.0.1:5432/audit?sslmode=disable")
            .expect("plain");
        assert_eq!(ok.get_ssl_mode(), SslMode::Disable);
        assert_eq!(ok.get_connect_timeout(), Some(&Duration::from_secs(5)));
        assert!(parse_url("host=127.0.0.1 user=resetline dbname=audit").is_ok());
        assert!(matches!(
            parse_url("postgres://u:pw@db.example/audit?sslmode=require"),
            Err(PgError::TlsUnsupported)
        ));
        let err = parse_url("postgres://u:hunter2@[::1/audit?sslmode=bogus").expect_err("bad");
        assert!(matches!(err, PgError::BadUrl));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
