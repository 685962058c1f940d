//! The JSON Lines file sink: appends sealed records, fsyncs them by policy, rotates
//! segments, writes checkpoints, and resumes the chain after a restart or a crash.
//!
//! Durability contract: each `append` hands its whole line to the OS in one `write`, so a
//! killed process loses nothing it appended; an [`Ack`] says which records are also fsynced
//! (`durable_through`) and so survive a power loss. With [`FsyncPolicy::EveryRecord`] every
//! ack is durable; with [`FsyncPolicy::Batch`] records become durable when a batch fills,
//! when the interval (measured with the record times the caller passes, since the crate
//! reads no clock) has passed, on [`FileSink::tick`], [`FileSink::sync`], rotation,
//! checkpoints and [`FileSink::close`]. The new file of a rotation and the checkpoint file
//! are made durable in their directory too.
//!
//! Crash recovery on [`FileSink::open`]: a torn final line (the file ends without a newline)
//! can only be a record whose write never completed, so it was never acknowledged as
//! durable. The sink does not chain over it and does not silently drop it: it appends the
//! fragment, hex-encoded with its offset, to `<segment>.torn`, fsyncs that, cuts the segment
//! back to its last complete line, and lists the move in the [`OpenReport`] so the caller
//! can log it. The same is done for a torn checkpoint line. Anything worse (a complete last
//! line that does not verify under the key, a checkpoint ahead of the records, a gap in the
//! segment numbers) makes `open` fail: that needs a person and `verify`, not a guess.
//!
//! After a failed write the sink cuts the file back to its last complete line; if that or
//! an fsync fails, the sink refuses further work ([`SinkError::Poisoned`]) until reopened,
//! since after a failed fsync the state on disk is unknown.
//!
//! Idempotence: a record whose id is among the last [`SinkConfig::recent_ids`] records written
//! is not written again (the [`Ack`] says `duplicate` and gives the seq it has), so a caller
//! may retry a write whose outcome it does not know. The ids, and the intents still open,
//! are read back from the newest segments on `open` (module `recent`).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::{Date, OffsetDateTime};

use crate::checkpoint::{Checkpoint, open_checkpoint, seal_checkpoint};
use crate::error::SinkError;
use crate::files::{
    LineEnd, LineReader, Tail, TailError, checkpoint_name, first_gap, list_segments, lock_name,
    quarantine, read_tail, segment_name, sync_dir,
};
use crate::key::{AuditKey, ChainId, hex};
use crate::recent::Recent;
use crate::record::{MAX_LINE_LEN, Record, open_line, seal};

/// When appended records are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync after every record: every [`Ack`] is durable.
    EveryRecord,
    /// fsync once `max_records` records are pending, or when the oldest pending record is
    /// `max_interval` older than the newest record or the `now` given to
    /// [`FileSink::tick`]. Call `tick` from a timer so a quiet period does not leave records
    /// pending.
    Batch {
        /// Most records left pending (at least 1).
        max_records: u32,
        /// Longest time a record stays pending, by the caller's clock.
        max_interval: Duration,
    },
}

/// When a new segment file is started. The chain continues across segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Start a new segment before a record would make the current one larger than this
    /// (a segment always takes at least one record).
    pub max_bytes: Option<u64>,
    /// Start a new segment when a record's UTC date is later than every earlier record's in
    /// the segment (a clock stepping back does not rotate twice).
    pub daily: bool,
}

impl Default for Rotation {
    /// 64 MiB segments, and a new segment each UTC day.
    fn default() -> Self {
        Self {
            max_bytes: Some(64 * 1024 * 1024),
            daily: true,
        }
    }
}

/// How to open a [`FileSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// The directory of the chain's files (created if missing).
    pub dir: PathBuf,
    /// The chain's id: seeds the genesis value and prefixes the file names.
    pub chain: ChainId,
    /// When records are fsynced.
    pub fsync: FsyncPolicy,
    /// When segments rotate.
    pub rotation: Rotation,
    /// Write a checkpoint every this many records (0: only on rotation and close). A
    /// checkpoint forces an fsync first, so keep it at or above a batch size.
    pub checkpoint_every: u64,
    /// How many of the last records' ids are remembered (and read back on open), so a
    /// retried record is not written twice. Keep it above every retry buffer's size.
    pub recent_ids: usize,
}

impl SinkConfig {
    /// Defaults: fsync every record, default [`Rotation`], a checkpoint every 1000 records,
    /// the ids of the last 100,000 records remembered.
    pub fn new(dir: impl Into<PathBuf>, chain: ChainId) -> Self {
        Self {
            dir: dir.into(),
            chain,
            fsync: FsyncPolicy::EveryRecord,
            rotation: Rotation::default(),
            checkpoint_every: 1000,
            recent_ids: 100_000,
        }
    }
}

/// What an `append` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Ack {
    /// The seq given to the record.
    pub seq: u64,
    /// Every record with a seq up to this one is fsynced (0: none yet).
    pub durable_through: u64,
    /// The record's id was already written (at `seq`): nothing was written this time.
    pub duplicate: bool,
}

impl Ack {
    /// Whether this record itself is fsynced.
    pub fn is_durable(&self) -> bool {
        self.durable_through >= self.seq
    }
}

/// What `open` found and did. Log it: a torn tail means the last run ended in a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct OpenReport {
    /// No record existed: the chain starts at its genesis value.
    pub new_chain: bool,
    /// The seq the chain resumes after (0 for a new chain).
    pub last_seq: u64,
    /// The segment new records go to.
    pub segment: PathBuf,
    /// Torn tails moved aside.
    pub torn: Vec<TornTail>,
}

/// A torn final line found by `open` and moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment or checkpoint file it was cut from.
    pub file: PathBuf,
    /// Its byte offset in that file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// The `.torn` file it was saved to.
    pub saved_to: PathBuf,
}

/// Appends records to a chain of JSON Lines files. One writer per chain (an OS file lock
/// on `<chain>.lock` keeps a second one out).
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    chain: ChainId,
    key: AuditKey,
    fsync: FsyncPolicy,
    rotation: Rotation,
    checkpoint_every: u64,
    _lock: File,
    file: File,
    segment_index: u64,
    segment_path: PathBuf,
    segment_len: u64,
    segment_date: Option<Date>,
    checkpoints: File,
    checkpoints_path: PathBuf,
    checkpoints_len: u64,
    seq: u64,
    prev: String,
    durable_through: u64,
    pending_since: Option<OffsetDateTime>,
    checkpointed: u64,
    recent: Recent,
    poisoned: bool,
    closed: bool,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SinkError + 'a {
    move |source| SinkError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl FileSink {
    /// Opens the chain in `config.dir`, creating it if empty, recovering a torn tail, and
    /// resuming after the last record on disk.
    ///
    /// # Errors
    /// [`SinkError`] for a bad configuration, I/O failures, a held lock, or files that do
    /// not verify under `key` (see the module doc for which states are refused).
    pub fn open(config: SinkConfig, key: AuditKey) -> Result<(Self, OpenReport), SinkError> {
        let SinkConfig {
            dir,
            chain,
            fsync,
            rotation,
            checkpoint_every,
            recent_ids,
        } = config;
        if let FsyncPolicy::Batch { max_records: 0, .. } = fsync {
            return Err(SinkError::Config {
                detail: "batch max_records must be at least 1",
            });
        }
        if rotation.max_bytes == Some(0) {
            return Err(SinkError::Config {
                detail: "rotation max_bytes must be at least 1",
            });
        }
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;

        let lock_path = dir.join(lock_name(&chain));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(SinkError::Locked { path: lock_path }),
            Err(TryLockError::Error(source)) => {
                return Err(SinkError::Io {
                    op: "lock",
                    path: lock_path,
                    source,
                });
            }
        }

        let mut torn = Vec::new();
        let checkpoints_path = dir.join(checkpoint_name(&chain));
        let last_checkpoint = recover_checkpoints(&checkpoints_path, &chain, &key, &mut torn)?;

        let segments = list_segments(&dir, &chain).map_err(io_err("list", &dir))?;
        if let Some((first, _)) = segments.first()
            && let Some(index) = first_gap(&segments, *first)
        {
            return Err(SinkError::MissingSegment { dir, index });
        }
        let mut last = None;
        for (position, (_, path)) in segments.iter().enumerate().rev() {
            let newest = position + 1 == segments.len();
            if let Some(found) = last_record(path, &key, newest, &mut torn)? {
                last = Some(found);
                break;
            }
        }

        let (segment_index, segment_path) = match segments.last() {
            Some((index, path)) => (*index, path.clone()),
            None => {
                let path = dir.join(segment_name(&chain, 1));
                create_segment(&path, &dir)?;
                (1, path)
            }
        };
        let (seq, prev, segment_date) = match &last {
            Some(found) => (
                found.seq,
                found.link.clone(),
                found.date.filter(|_| found.newest),
            ),
            None => (0, hex(&key.genesis(&chain)), None),
        };
        if let Some(cp) = &last_checkpoint
            && cp.count > seq
        {
            return Err(SinkError::CheckpointAhead {
                checkpoint: cp.count,
                last_seq: seq,
            });
        }

        let file = OpenOptions::new()
            .append(true)
            .open(&segment_path)
            .map_err(io_err("open segment", &segment_path))?;
        let segment_len = file
            .metadata()
            .map_err(io_err("stat", &segment_path))?
            .len();
        let existed = checkpoints_path.exists();
        let checkpoints = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&checkpoints_path)
            .map_err(io_err("open checkpoint file", &checkpoints_path))?;
        if !existed {
            sync_dir(&dir).map_err(io_err("sync directory", &dir))?;
        }
        let checkpoints_len = checkpoints
            .metadata()
            .map_err(io_err("stat", &checkpoints_path))?
            .len();

        let recent = Recent::load(&segments, &key, recent_ids).map_err(io_err("read", &dir))?;
        let report = OpenReport {
            new_chain: last.is_none(),
            last_seq: seq,
            segment: segment_path.clone(),
            torn,
        };
        let sink = Self {
            dir,
            chain,
            key,
            fsync,
            rotation,
            checkpoint_every,
            _lock: lock,
            file,
            segment_index,
            segment_path,
            segment_len,
            segment_date,
            checkpoints,
            checkpoints_path,
            checkpoints_len,
            seq,
            prev,
            durable_through: seq,
            pending_since: None,
            checkpointed: last_checkpoint.map_or(0, |cp| cp.count),
            recent,
            poisoned: false,
            closed: false,
        };
        Ok((sink, report))
    }

    /// Seals `record` as the next link of the chain and appends it; a record whose id was
    /// written recently is not written again (see the module doc).
    ///
    /// # Errors
    /// [`SinkError`]; the record is then not acknowledged (see [`SinkError`] for retrying).
    pub fn append(&mut self, record: &Record) -> Result<Ack, SinkError> {
        self.usable()?;
        if let Some(seq) = record.id.and_then(|id| self.recent.written(id)) {
            return Ok(Ack {
                seq,
                durable_through: self.durable_through,
                duplicate: true,
            });
        }
        let seq = self.seq.checked_add(1).ok_or(SinkError::Rejected {
            detail: "seq exhausted",
        })?;
        let date = record.utc_date().ok_or(SinkError::Encode {
            detail: "time out of range".to_owned(),
        })?;
        let mut line = seal(&self.key, seq, record, &self.prev)
            .map_err(|detail| SinkError::Encode { detail })?;
        if line.len() > MAX_LINE_LEN {
            return Err(SinkError::RecordTooLarge { len: line.len() });
        }
        let link = hex(&self.key.link(&line));
        line.push(b'\n');
        let len = line.len() as u64;

        if self.needs_rotation(len, date) {
            self.rotate(record.time)?;
        }
        if let Err(source) = self.file.write_all(&line) {
            // Cut a partial line back off so the chain never holds a torn record mid-file.
            if self.file.set_len(self.segment_len).is_err() {
                self.poisoned = true;
            }
            return Err(SinkError::Io {
                op: "write",
                path: self.segment_path.clone(),
                source,
            });
        }
        self.seq = seq;
        self.prev = link;
        self.segment_len += len;
        self.recent.note(seq, record);
        // The latest date seen, so a clock step back does not cause a second rotation.
        self.segment_date = Some(self.segment_date.map_or(date, |last| last.max(date)));
        let since = *self.pending_since.get_or_insert(record.time);

        let due = match self.fsync {
            FsyncPolicy::EveryRecord => true,
            FsyncPolicy::Batch {
                max_records,
                max_interval,
            } => {
                self.seq - self.durable_through >= u64::from(max_records)
                    || elapsed(since, record.time) >= max_interval
            }
        };
        if due {
            self.sync_pending()?;
        }
        if self.checkpoint_every > 0 && seq % self.checkpoint_every == 0 {
            self.checkpoint(record.time)?;
        }
        Ok(Ack {
            seq,
            durable_through: self.durable_through,
            duplicate: false,
        })
    }

    /// Fsyncs every pending record. Returns the seq durable through.
    ///
    /// # Errors
    /// [`SinkError::Io`] (the sink is then poisoned) or [`SinkError::Poisoned`].
    pub fn sync(&mut self) -> Result<u64, SinkError> {
        self.usable()?;
        self.sync_pending()?;
        Ok(self.durable_through)
    }

    /// For [`FsyncPolicy::Batch`]: fsyncs if the oldest pending record is `max_interval`
    /// older than `now`. Call it from a timer. Returns the seq durable through.
    ///
    /// # Errors
    /// As [`FileSink::sync`].
    pub fn tick(&mut self, now: OffsetDateTime) -> Result<u64, SinkError> {
        self.usable()?;
        if let (FsyncPolicy::Batch { max_interval, .. }, Some(since)) =
            (self.fsync, self.pending_since)
            && elapsed(since, now) >= max_interval
        {
            self.sync_pending()?;
        }
        Ok(self.durable_through)
    }

    /// Fsyncs, writes a final checkpoint (time `now`) if records came after the last one,
    /// and releases the lock. Returns the last seq.
    ///
    /// # Errors
    /// As [`FileSink::sync`], plus checkpoint write failures.
    pub fn close(mut self, now: OffsetDateTime) -> Result<u64, SinkError> {
        self.usable()?;
        self.sync_pending()?;
        if self.seq > self.checkpointed {
            self.checkpoint(now)?;
        }
        self.closed = true;
        Ok(self.seq)
    }

    /// The intents in the recent records that no record names yet, oldest first: after a
    /// restart, effects whose outcome was never written.
    pub fn open_intents(&self) -> Vec<Record> {
        self.recent.open_intents()
    }

    /// The seq of the last appended record (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Every record up to this seq is fsynced.
    pub fn durable_through(&self) -> u64 {
        self.durable_through
    }

    /// The segment file new records go to.
    pub fn segment_path(&self) -> &Path {
        &self.segment_path
    }

    /// The chain's id.
    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    fn usable(&self) -> Result<(), SinkError> {
        if self.poisoned {
            Err(SinkError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn sync_pending(&mut self) -> Result<(), SinkError> {
        if self.durable_through < self.seq {
            if let Err(source) = self.file.sync_data() {
                self.poisoned = true;
                return Err(SinkError::Io {
                    op: "fsync",
                    path: self.segment_path.clone(),
                    source,
                });
            }
            self.durable_through = self.seq;
        }
        self.pending_since = None;
        Ok(())
    }

    fn needs_rotation(&self, len: u64, date: Date) -> bool {
        if self.segment_len == 0 {
            return false;
        }
        let by_size = self
            .rotation
            .max_bytes
            .is_some_and(|max| self.segment_len.saturating_add(len) > max);
        let by_day = self.rotation.daily && self.segment_date.is_some_and(|last| date > last);
        by_size || by_day
    }

    /// Closes the current segment with a checkpoint and starts the next one.
    fn rotate(&mut self, now: OffsetDateTime) -> Result<(), SinkError> {
        self.sync_pending()?;
        if self.seq > self.checkpointed {
            self.checkpoint(now)?;
        }
        let index = self.segment_index.saturating_add(1);
        let path = self.dir.join(segment_name(&self.chain, index));
        // If this fails the new file may exist half-made: stop, and let a reopen sort it out.
        let file = create_segment(&path, &self.dir).inspect_err(|_| self.poisoned = true)?;
        self.file = file;
        self.segment_index = index;
        self.segment_path = path;
        self.segment_len = 0;
        self.segment_date = None;
        Ok(())
    }

    /// Writes a checkpoint of all records so far (fsyncing them first).
    fn checkpoint(&mut self, now: OffsetDateTime) -> Result<(), SinkError> {
        self.sync_pending()?;
        let file_name = self
            .segment_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let cp = Checkpoint {
            chain: self.chain.as_str().to_owned(),
            count: self.seq,
            head: self.prev.clone(),
            file: file_name.to_owned(),
            time: now,
        };
        let mut line =
            seal_checkpoint(&self.key, &cp).map_err(|detail| SinkError::Encode { detail })?;
        line.push(b'\n');
        let path = &self.checkpoints_path;
        if let Err(source) = self.checkpoints.write_all(&line) {
            if self.checkpoints.set_len(self.checkpoints_len).is_err() {
                self.poisoned = true;
            }
            return Err(SinkError::Io {
                op: "write",
                path: path.clone(),
                source,
            });
        }
        if let Err(source) = self.checkpoints.sync_data() {
            self.poisoned = true;
            return Err(SinkError::Io {
                op: "fsync",
                path: path.clone(),
                source,
            });
        }
        self.checkpoints_len += line.len() as u64;
        self.checkpointed = self.seq;
        Ok(())
    }
}

/// What a retention purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct PurgeReport {
    /// Records older than this were due for removal.
    pub cutoff: OffsetDateTime,
    /// Records removed (0: nothing was old enough, or nothing could be removed safely).
    pub removed: u64,
    /// The first seq kept.
    pub first_seq: u64,
    /// The seq of the `retention_purge` record written (none when nothing was removed).
    pub record_seq: Option<u64>,
    /// Segment files removed.
    pub files: Vec<PathBuf>,
}

impl FileSink {
    /// Retention: removes whole segments whose every record is older than `cutoff`, never the
    /// segment being written, and only up to a segment boundary a signed checkpoint covers
    /// (rotation writes one), so the remaining trail is anchored. Before removing anything it
    /// appends a `retention_purge` record (cut-off, count, first seq kept) and a checkpoint:
    /// a crash in between leaves the record and the old files, and the next purge finishes.
    /// Files are removed oldest first, so what remains is always a contiguous run.
    ///
    /// # Errors
    /// [`SinkError`] from reading the segments, appending the record or removing files.
    pub fn purge(
        &mut self,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<PurgeReport, SinkError> {
        self.usable()?;
        let segments = list_segments(&self.dir, &self.chain).map_err(io_err("list", &self.dir))?;
        let checkpoints = read_checkpoint_heads(&self.checkpoints_path, &self.key)?;
        let mut first_seq = None;
        let mut boundary: Option<(usize, u64)> = None;
        for (position, (index, path)) in segments.iter().enumerate() {
            if *index >= self.segment_index {
                break;
            }
            let Some((seq, time, link, first)) = segment_span(path, &self.key)? else {
                continue;
            };
            first_seq.get_or_insert(first);
            if time >= cutoff {
                break;
            }
            if checkpoints
                .get(&seq)
                .is_some_and(|heads| heads.contains(&link))
            {
                boundary = Some((position, seq));
            }
        }
        let first_kept = first_seq.unwrap_or(1);
        let Some((last_removed, through)) = boundary else {
            return Ok(PurgeReport {
                cutoff,
                removed: 0,
                first_seq: first_kept,
                record_seq: None,
                files: Vec::new(),
            });
        };
        let removed = through + 1 - first_kept;
        let record = crate::purge_record(now, cutoff, removed, through + 1);
        let ack = self.append(&record)?;
        self.sync_pending()?;
        self.checkpoint(now)?;
        let mut files = Vec::new();
        for (_, path) in segments.iter().take(last_removed + 1) {
            fs::remove_file(path).map_err(io_err("remove", path))?;
            files.push(path.clone());
        }
        sync_dir(&self.dir).map_err(io_err("sync directory", &self.dir))?;
        Ok(PurgeReport {
            cutoff,
            removed,
            first_seq: through + 1,
            record_seq: Some(ack.seq),
            files,
        })
    }
}

/// For each checkpointed count, the heads signed for it (checkpoints that do not verify
/// are skipped: they can anchor nothing).
fn read_checkpoint_heads(
    path: &Path,
    key: &AuditKey,
) -> Result<std::collections::BTreeMap<u64, Vec<String>>, SinkError> {
    let mut heads: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    let mut reader = LineReader::open(path).map_err(io_err("read", path))?;
    let mut buf = Vec::new();
    while let Some(end) = reader.next_line(&mut buf).map_err(io_err("read", path))? {
        if end != LineEnd::Complete {
            continue;
        }
        if let Ok(cp) = open_checkpoint(&buf, key) {
            heads.entry(cp.count).or_default().push(cp.head);
        }
    }
    Ok(heads)
}

/// A closed segment's last seq, last record time and link, and first seq; `None` if empty.
/// Every line must verify under the key: a purge never removes what it cannot vouch for.
fn segment_span(
    path: &Path,
    key: &AuditKey,
) -> Result<Option<(u64, OffsetDateTime, String, u64)>, SinkError> {
    let mut reader = LineReader::open(path).map_err(io_err("read", path))?;
    let mut buf = Vec::new();
    let mut found = None;
    let mut first = None;
    let mut offset = 0u64;
    while let Some(end) = reader.next_line(&mut buf).map_err(io_err("read", path))? {
        if end != LineEnd::Complete {
            return Err(corrupt(path, offset, "torn or overlong line".to_owned()));
        }
        let stored = open_line(&buf, Some(key))
            .map_err(|(problem, _)| corrupt(path, offset, problem.to_string()))?;
        first.get_or_insert(stored.seq);
        offset += buf.len() as u64 + 1;
        found = Some((stored.seq, stored.record.time, hex(&key.link(&buf))));
    }
    Ok(found.map(|(seq, time, link)| (seq, time, link, first.unwrap_or(seq))))
}

impl Drop for FileSink {
    /// Best effort: fsyncs pending records. Errors cannot be reported here; call
    /// [`FileSink::close`] to know.
    fn drop(&mut self) {
        if !self.closed && !self.poisoned && self.durable_through < self.seq {
            let _ = self.file.sync_data();
        }
    }
}

/// How long after `since` `now` is, as a std duration (zero if `now` is earlier).
fn elapsed(since: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let diff = now - since;
    Duration::try_from(diff).unwrap_or(Duration::ZERO)
}

fn create_segment(path: &Path, dir: &Path) -> Result<File, SinkError> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .map_err(io_err("create segment", path))?;
    sync_dir(dir).map_err(io_err("sync directory", dir))?;
    Ok(file)
}

/// Checks the checkpoint file's tail; moves a torn last line aside. Returns the last
/// checkpoint.
fn recover_checkpoints(
    path: &Path,
    chain: &ChainId,
    key: &AuditKey,
    torn: &mut Vec<TornTail>,
) -> Result<Option<Checkpoint>, SinkError> {
    if !path.exists() {
        return Ok(None);
    }
    let tail = tail_of(path)?;
    if let Some((offset, bytes)) = &tail.torn {
        torn.push(set_aside(path, *offset, bytes, tail.complete_len)?);
    }
    let Some((offset, line)) = tail.last_line else {
        return Ok(None);
    };
    let cp = open_checkpoint(&line, key)
        .map_err(|(problem, _)| corrupt(path, offset, problem.to_string()))?;
    if cp.chain != chain.as_str() {
        return Err(corrupt(
            path,
            offset,
            format!("checkpoint of chain {:?}", cp.chain),
        ));
    }
    Ok(Some(cp))
}

/// The tail of a file on disk, its read errors as the sink reports them.
fn tail_of(path: &Path) -> Result<Tail, SinkError> {
    read_tail(path).map_err(|e| match e {
        TailError::Io(source) => SinkError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        },
        TailError::LineTooLong { offset } => corrupt(path, offset, "line too long".to_owned()),
    })
}

/// The last record found on disk when opening.
struct LastRecord {
    seq: u64,
    /// Hex link of its line: the next record's `prev`.
    link: String,
    date: Option<Date>,
    /// Whether it is in the newest segment.
    newest: bool,
}

/// The last record of a segment, after moving a torn tail of the newest segment aside.
/// `None` if the segment holds no complete record.
fn last_record(
    path: &Path,
    key: &AuditKey,
    newest: bool,
    torn: &mut Vec<TornTail>,
) -> Result<Option<LastRecord>, SinkError> {
    let tail = tail_of(path)?;
    if let Some((offset, bytes)) = &tail.torn {
        if !newest {
            // Rotation fsyncs a segment before leaving it: a torn line here is not a crash.
            return Err(corrupt(
                path,
                *offset,
                "torn line in a closed segment".to_owned(),
            ));
        }
        torn.push(set_aside(path, *offset, bytes, tail.complete_len)?);
    }
    let Some((offset, line)) = tail.last_line else {
        return Ok(None);
    };
    let stored = open_line(&line, Some(key))
        .map_err(|(problem, _)| corrupt(path, offset, problem.to_string()))?;
    let link = hex(&key.link(&line));
    Ok(Some(LastRecord {
        seq: stored.seq,
        link,
        date: stored.record.utc_date(),
        newest,
    }))
}

fn set_aside(path: &Path, offset: u64, bytes: &[u8], keep_len: u64) -> Result<TornTail, SinkError> {
    let saved_to = quarantine(path, offset, bytes, keep_len)
        .map_err(io_err("set aside torn tail of", path))?;
    Ok(TornTail {
        file: path.to_path_buf(),
        offset,
        len: bytes.len() as u64,
        saved_to,
    })
}

fn corrupt(path: &Path, offset: u64, problem: String) -> SinkError {
    SinkError::Corrupt {
        file: path.to_path_buf(),
        offset,
        problem,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::key::tests::test_key;
    use crate::record::tests::sample;
    use crate::{ChainId, SinkError, verify};
    use time::macros::datetime;

    pub(crate) fn chain() -> ChainId {
        ChainId::new("node-a").expect("chain id")
    }

    pub(crate) fn config(dir: &Path) -> SinkConfig {
        SinkConfig {
            rotation: Rotation {
                max_bytes: None,
                daily: false,
            },
            ..SinkConfig::new(dir, chain())
        }
    }

    pub(crate) fn open(config: SinkConfig) -> (FileSink, OpenReport) {
        FileSink::open(config, test_key()).expect("open sink")
    }

    /// Writes `n` records (times 1 s apart) and closes the sink.
    pub(crate) fn write_trail(config: SinkConfig, n: u64) {
        let (mut sink, _) = open(config);
        for i in 1..=n {
            let _ = sink.append(&sample(i)).expect("append");
        }
        sink.close(sample(n + 1).time).expect("close");
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn cp_counts(dir: &Path) -> Vec<u64> {
        lines(&dir.join("node-a.checkpoints.jsonl"))
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                v["count"].as_u64().expect("count")
            })
            .collect()
    }

    #[test]
    fn every_record_acks_are_durable_and_the_trail_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sink, report) = open(config(dir.path()));
        assert!(report.new_chain);
        assert_eq!(report.last_seq, 0);
        assert!(report.torn.is_empty());
        for i in 1..=5 {
            let ack = sink.append(&sample(i)).expect("append");
            assert_eq!(
                ack,
                Ack {
                    seq: i,
                    durable_through: i,
                    duplicate: false,
                }
            );
            assert!(ack.is_durable());
        }
        assert_eq!(sink.close(sample(9).time).expect("close"), 5);
        let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
        assert_eq!(
            (report.records, report.checkpoints, report.checkpointed),
            (5, 1, 5)
        );
        assert_eq!(report.segments.len(), 1);
        assert_eq!(report.span, Some((sample(1).time, sample(5).time)));
        let text = fs::read_to_string(dir.path().join("node-a.000001.jsonl")).expect("read");
        assert_eq!(text.matches('\n').count(), 5);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn batch_acks_say_what_is_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fsync = FsyncPolicy::Batch {
            max_records: 4,
            max_interval: Duration::from_secs(60),
        };
        let (mut sink, _) = open(SinkConfig {
            fsync,
            ..config(dir.path())
        });
        let durable: Vec<u64> = (1..=6)
            .map(|i| sink.append(&sample(i)).expect("append").durable_through)
            .collect();
        assert_eq!(durable, [0, 0, 0, 4, 4, 4]);
        assert_eq!(sink.durable_through(), 4);
        assert_eq!(sink.sync().expect("sync"), 6);
        assert!(sink.append(&sample(7)).expect("append").durable_through == 6);
    }

    #[test]
    fn batch_interval_follows_the_callers_times_and_tick() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fsync = FsyncPolicy::Batch {
            max_records: 100,
            max_interval: Duration::from_secs(5),
        };
        let (mut sink, _) = open(SinkConfig {
            fsync,
            ..config(dir.path())
        });
        let t0 = datetime!(2025-03-01 09:00:00 UTC);
        let at = |s: i64| {
            let mut r = sample(1);
            r.time = t0 + time::Duration::seconds(s);
            r
        };
        assert_eq!(sink.append(&at(0)).expect("append").durable_through, 0);
        assert_eq!(sink.append(&at(4)).expect("append").durable_through, 0);
        assert_eq!(sink.append(&at(5)).expect("append").durable_through, 3);
        assert_eq!(sink.append(&at(7)).expect("append").durable_through, 3);
        assert_eq!(
            sink.tick(t0 + time::Duration::seconds(11)).expect("tick"),
            3
        );
        assert_eq!(
            sink.tick(t0 + time::Duration::seconds(12)).expect("tick"),
            4
        );
        // A clock that went backwards never counts as elapsed time.
        assert_eq!(sink.append(&at(-100)).expect("append").durable_through, 4);
    }

    #[test]
    fn checkpoints_come_every_n_records_and_on_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_trail(
            SinkConfig {
                checkpoint_every: 3,
                ..config(dir.path())
            },
            7,
        );
        assert_eq!(cp_counts(dir.path()), [3, 6, 7]);
        let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
        assert_eq!((report.checkpoints, report.checkpointed), (3, 7));
    }

    #[test]
    fn reopening_resumes_the_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut sink, _) = open(config(dir.path()));
            for i in 1..=3 {
                let _ = sink.append(&sample(i)).expect("append");
            }
            // Dropped without close, as after a kill.
        }
        let (mut sink, report) = open(config(dir.path()));
        assert!(!report.new_chain);
        assert_eq!(report.last_seq, 3);
        assert!(report.torn.is_empty());
        assert_eq!(sink.append(&sample(4)).expect("append").seq, 4);
        sink.close(sample(5).time).expect("close");
        let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
        assert_eq!(report.records, 4);
    }

    #[test]
    fn a_torn_tail_is_set_aside_reported_and_never_chained_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_trail(config(dir.path()), 3);
        let segment = dir.path().join("node-a.000001.jsonl");
        let clean_len = fs::metadata(&segment).expect("stat").len();
        let torn = seal(&test_key(), 4, &sample(4), "x").expect("seal");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("open");
        file.write_all(&torn[..100]).expect("write");
        drop(file);

        let err = verify(dir.path(), &chain(), &test_key()).expect_err("torn");
        assert!(
            matches!(&err, crate::VerifyError::Record(f) if f.line == 4 && f.problem == crate::RecordProblem::TornLine),
            "{err}"
        );

        let (mut sink, report) = open(config(dir.path()));
        assert_eq!(report.last_seq, 3);
        assert_eq!(report.torn.len(), 1);
        let t = &report.torn[0];
        assert_eq!(
            (t.file.as_path(), t.offset, t.len),
            (segment.as_path(), clean_len, 100)
        );
        assert_eq!(fs::metadata(&segment).expect("stat").len(), clean_len);
        let saved = fs::read_to_string(&t.saved_to).expect("saved");
        assert!(
            saved.contains(&format!("\"offset\":{clean_len},\"len\":100,")),
            "{saved}"
        );

        assert_eq!(sink.append(&sample(4)).expect("append").seq, 4);
        sink.close(sample(5).time).expect("close");
        let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
        assert_eq!(report.records, 4);
        assert_eq!(report.quarantined, std::slice::from_ref(&t.saved_to));
    }

    #[test]
    fn a_torn_checkpoint_line_is_set_aside_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_trail(config(dir.path()), 2);
        let cp_path = dir.path().join("node-a.checkpoints.jsonl");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&cp_path)
            .expect("open");
        file.write_all(b"{\"chain\":\"node-a\",\"cou")
            .expect("write");
        drop(file);
        let (sink, report) = open(config(dir.path()));
        assert_eq!(report.torn.len(), 1);
        assert_eq!(report.torn[0].file, cp_path);
        drop(sink);
        verify(dir.path(), &chain(), &test_key()).expect("verify");
    }

    #[test]
    fn a_damaged_last_record_or_another_key_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_trail(config(dir.path()), 3);
        let other = AuditKey::new(&[9u8; 32]).expect("key");
        let err = FileSink::open(config(dir.path()), other).expect_err("wrong key");
        assert!(matches!(err, SinkError::Corrupt { .. }), "{err}");

        let segment = dir.path().join("node-a.000001.jsonl");
        let text = fs::read_to_string(&segment).expect("read");
        let last_start = text[..text.len() - 1].rfind('\n').expect("newline") + 1;
        fs::write(
            &segment,
            format!(
                "{}{}",
                &text[..last_start],
                text[last_start..].replace("wrong", "right")
            ),
        )
        .expect("write");
        let err = FileSink::open(config(dir.path()), test_key()).expect_err("damaged");
        match err {
            SinkError::Corrupt { offset, .. } => assert_eq!(offset, last_start as u64),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn records_lost_behind_a_checkpoint_refuse_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_trail(config(dir.path()), 3);
        let segment = dir.path().join("node-a.000001.jsonl");
        let kept: String = lines(&segment)[..2]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&segment, kept).expect("write");
        let err = FileSink::open(config(dir.path()), test_key()).expect_err("ahead");
        assert!(
            matches!(
                err,
                SinkError::CheckpointAhead {
                    checkpoint: 3,
                    last_seq: 2
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rotation_by_size_continues_the_chain_across_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let line_len = seal(&test_key(), 1, &sample(1), &"0".repeat(64))
            .expect("seal")
            .len() as u64
            + 1;
        let rotation = Rotation {
            max_bytes: Some(line_len * 3 + 10),
            daily: false,
        };
        write_trail(
            SinkConfig {
                rotation,
                ..config(dir.path())
            },
            8,
        );
        let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
        assert_eq!(report.records, 8);
        assert_eq!(report.segments.len(), 3);
        assert_eq!(lines(&report.segments[0]).len(), 3);
        assert_eq!(lines(&report.segments[2]).len(), 2);
        // Rotation closes each segment with a checkpoint naming it.
        assert_eq!(cp_counts(dir.path()), [3, 6, 8]);

        // Reopening appends to the newest segment and keeps rotating.
        let (mut sink, report) = open(SinkConfig {
            rotation,
            ..config(dir.path())
        });
        assert_eq!(report.segment, dir.path().join("node-a.000003.jsonl"));
        for i in 9..=10 {
            let _ = sink.append(&sample(i)).expect("append");
        }
        assert_eq!(sink.segment_path(), dir.path().join("node-a.000004.jsonl"));
        sink.close(sample(11).time).expect("close");
        assert_eq!(
            verify(dir.path(), &chain(), &test_key())
                .expect("verify")
                .records,
            10
        );
    }

    #[test]
    fn rotation_by_day_uses_the_record_dates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rotation = Rotation {
            max_bytes: None,
            daily: true,
        };
        let (mut sink, _) = open(SinkConfig {
            rotation,
            ..config(dir.path())
        });
        let on = |t: OffsetDateTime| {
            let mut r = sample(1);
            r.time = t;
            r
        };
        let day1 = datetime!(2025-03-01 23:59:59 UTC);
        let day2 = datetime!(2025-03-02 00:00:00 UTC);
        for t in [
            day1,
            day2,
            day1,
            datetime!(2025-03-02 01:30:00 +02:00),
            day2,
        ] {
            let _ = sink.append(&on(t)).expect("append");
        }
        // Back to day 1 (a clock step back) stays in the day-2 segment; 01:30+02:00 is
        // 2025-03-01 23:30 UTC, so UTC is what counts.
        assert_eq!(sink.segment_path(), dir.path().join("node-a.000002.jsonl"));
        sink.close(day2).expect("close");
        let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
        assert_eq!((report.records, report.segments.len()), (5, 2));
    }

    #[test]
    fn an_empty_newest_segment_is_used_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_trail(config(dir.path()), 2);
        fs::write(dir.path().join("node-a.000002.jsonl"), b"").expect("create");
        let (mut sink, report) = open(config(dir.path()));
        assert_eq!(report.last_seq, 2);
        assert_eq!(sink.append(&sample(3)).expect("append").seq, 3);
        sink.close(sample(4).time).expect("close");
        let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
        assert_eq!((report.records, report.segments.len()), (3, 2));
    }

    #[test]
    fn a_second_writer_is_locked_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, _) = open(config(dir.path()));
        let err = FileSink::open(config(dir.path()), test_key()).expect_err("locked");
        assert!(matches!(err, SinkError::Locked { .. }), "{err}");
        drop(first);
        let _reopened = open(config(dir.path()));
    }

    #[test]
    fn refused_records_write_nothing_and_take_no_seq() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sink, _) = open(config(dir.path()));
        let huge = sample(1).with_detail("blob", "x".repeat(MAX_LINE_LEN));
        assert!(matches!(
            sink.append(&huge),
            Err(SinkError::RecordTooLarge { .. })
        ));
        let mut ancient = sample(1);
        ancient.time = datetime!(-0001-01-01 00:00:00 UTC);
        assert!(matches!(
            sink.append(&ancient),
            Err(SinkError::Encode { .. })
        ));
        assert_eq!(sink.append(&sample(1)).expect("append").seq, 1);
        sink.close(sample(2).time).expect("close");
        assert_eq!(
            verify(dir.path(), &chain(), &test_key())
                .expect("verify")
                .records,
            1
        );
    }

    #[test]
    fn impossible_configurations_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fsync = FsyncPolicy::Batch {
            max_records: 0,
            max_interval: Duration::ZERO,
        };
        let err = FileSink::open(
            SinkConfig {
                fsync,
                ..config(dir.path())
            },
            test_key(),
        )
        .expect_err("config");
        assert!(matches!(err, SinkError::Config { .. }), "{err}");
        let rotation = Rotation {
            max_bytes: Some(0),
            daily: false,
        };
        let err = FileSink::open(
            SinkConfig {
                rotation,
                ..config(dir.path())
            },
            test_key(),
        )
        .expect_err("config");
        assert!(matches!(err, SinkError::Config { .. }), "{err}");
    }

    #[test]
    fn a_gap_in_segment_numbers_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_trail(config(dir.path()), 1);
        fs::write(dir.path().join("node-a.000003.jsonl"), b"").expect("create");
        let err = FileSink::open(config(dir.path()), test_key()).expect_err("gap");
        assert!(
            matches!(err, SinkError::MissingSegment { index: 2, .. }),
            "{err}"
        );
    }

    /// Records on days 1..=4 (three per day), daily rotation: one segment per day.
    fn daily_trail(dir: &Path) -> SinkConfig {
        let cfg = SinkConfig {
            rotation: Rotation {
                max_bytes: None,
                daily: true,
            },
            ..config(dir)
        };
        let (mut sink, _) = open(cfg.clone());
        for day in 1..=4i64 {
            for i in 0..3i64 {
                let mut r = sample((day * 10 + i) as u64);
                r.time = datetime!(2025-03-01 09:00:00 UTC)
                    + time::Duration::days(day - 1)
                    + time::Duration::minutes(i);
                let _ = sink.append(&r).expect("append");
            }
        }
        sink.close(datetime!(2025-03-04 12:00:00 UTC))
            .expect("close");
        cfg
    }

    #[test]
    fn a_purge_removes_old_segments_records_itself_and_the_rest_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = daily_trail(dir.path());
        let (mut sink, _) = open(cfg.clone());
        let now = datetime!(2025-03-05 00:00:00 UTC);
        // Days 1 and 2 are entirely older than the cut-off; day 3 is not.
        let report = sink
            .purge(datetime!(2025-03-03 09:01:00 UTC), now)
            .expect("purge");
        assert_eq!((report.removed, report.first_seq), (6, 7));
        assert_eq!(report.record_seq, Some(13));
        assert_eq!(
            report.files,
            [
                dir.path().join("node-a.000001.jsonl"),
                dir.path().join("node-a.000002.jsonl")
            ]
        );
        assert!(!report.files[0].exists());
        // Nothing more is old enough: a second run removes nothing and writes nothing.
        let again = sink
            .purge(datetime!(2025-03-03 09:01:00 UTC), now)
            .expect("purge");
        assert_eq!((again.removed, again.record_seq), (0, None));
        sink.close(now).expect("close");

        let report = verify(dir.path(), &chain(), &test_key()).expect("verify after purge");
        assert_eq!((report.first_seq, report.records), (7, 7));
        assert!(report.to_string().contains("starts at seq 7"), "{report}");
        // The purge record is dated `now`, a new day: it opened segment 5.
        let text = fs::read_to_string(dir.path().join("node-a.000005.jsonl")).expect("read");
        let purge = StoredRecordLine::last(&text);
        assert!(
            purge.contains(r#""event":"retention_purge""#)
                && purge.contains(r#""first_seq":"7""#)
                && purge.contains(r#""removed":"6""#)
                && purge.contains(r#""before":"2025-03-03T09:01:00Z""#),
            "{purge}"
        );
    }

    /// The last line of a segment's text.
    struct StoredRecordLine;
    impl StoredRecordLine {
        fn last(text: &str) -> String {
            text.lines().last().expect("a line").to_owned()
        }
    }

    #[test]
    fn tampering_after_a_purge_is_still_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = daily_trail(dir.path());
        let (mut sink, _) = open(cfg);
        let now = datetime!(2025-03-05 00:00:00 UTC);
        let _ = sink
            .purge(datetime!(2025-03-03 09:01:00 UTC), now)
            .expect("purge");
        sink.close(now).expect("close");
        verify(dir.path(), &chain(), &test_key()).expect("intact");

        // A flipped byte in what remains.
        let third = dir.path().join("node-a.000003.jsonl");
        let saved = fs::read_to_string(&third).expect("read");
        fs::write(&third, saved.replacen("wrong", "wronG", 1)).expect("write");
        let err = verify(dir.path(), &chain(), &test_key()).expect_err("flipped");
        assert!(
            matches!(&err, crate::VerifyError::Record(f) if f.seq == Some(7) && f.problem == crate::RecordProblem::BadMac),
            "{err}"
        );
        fs::write(&third, &saved).expect("restore");

        // The first remaining record deleted: the start is no longer anchored.
        let rest: String = saved.lines().skip(1).map(|l| format!("{l}\n")).collect();
        fs::write(&third, rest).expect("write");
        let err = verify(dir.path(), &chain(), &test_key()).expect_err("cut");
        assert!(
            matches!(&err, crate::VerifyError::Record(f) if f.problem == crate::RecordProblem::Unanchored),
            "{err}"
        );
        fs::write(&third, &saved).expect("restore");

        // A whole further segment removed "as if purged": rotation anchors it, but the
        // purge record says the trail starts at seq 7.
        fs::remove_file(&third).expect("remove");
        let err = verify(dir.path(), &chain(), &test_key()).expect_err("removed");
        assert!(
            matches!(
                err,
                crate::VerifyError::PurgeMismatch {
                    first_seq: 10,
                    stated: Some(7)
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn removing_the_oldest_segment_without_a_purge_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = daily_trail(dir.path());
        fs::remove_file(dir.path().join("node-a.000001.jsonl")).expect("remove");
        let err = verify(dir.path(), &chain(), &test_key()).expect_err("removed");
        assert!(
            matches!(
                err,
                crate::VerifyError::PurgeMismatch {
                    first_seq: 4,
                    stated: None
                }
            ),
            "{err}"
        );
        // And the sink still opens and continues the chain (it is the verifier's call).
        let (sink, report) = open(SinkConfig {
            rotation: Rotation {
                max_bytes: None,
                daily: true,
            },
            ..config(dir.path())
        });
        assert_eq!(report.last_seq, 12);
        drop(sink);
    }

    #[test]
    fn a_purge_never_removes_the_segment_being_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_trail(config(dir.path()), 3);
        let (mut sink, _) = open(config(dir.path()));
        let report = sink
            .purge(
                datetime!(2030-01-01 00:00:00 UTC),
                datetime!(2030-01-01 00:00:00 UTC),
            )
            .expect("purge");
        assert_eq!((report.removed, report.first_seq), (0, 1));
        assert!(report.files.is_empty());
        drop(sink);
        assert_eq!(
            verify(dir.path(), &chain(), &test_key())
                .expect("verify")
                .records,
            3
        );
    }

    fn with_id(n: u64) -> Record {
        sample(n).with_id(crate::RecordId::from_bytes(u128::from(n).to_be_bytes()))
    }

    #[test]
    fn a_retried_record_is_not_written_twice_even_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sink, _) = open(config(dir.path()));
        let first = sink.append(&with_id(1)).expect("append");
        let _ = sink.append(&with_id(2)).expect("append");
        let again = sink.append(&with_id(1)).expect("retry");
        assert_eq!((again.seq, again.duplicate), (first.seq, true));
        assert_eq!(sink.last_seq(), 2, "nothing written for the retry");
        drop(sink);
        // After a restart the ids are read back from the tail.
        let (mut sink, _) = open(config(dir.path()));
        assert!(sink.append(&with_id(2)).expect("retry").duplicate);
        let new = sink.append(&with_id(3)).expect("append");
        assert_eq!((new.seq, new.duplicate), (3, false));
        // Records without an id (older writers) are always written.
        let _ = sink.append(&sample(4)).expect("append");
        let _ = sink.append(&sample(4)).expect("append");
        assert_eq!(sink.last_seq(), 5);
        sink.close(sample(9).time).expect("close");
        let report = verify(dir.path(), &chain(), &test_key()).expect("verify");
        assert_eq!(report.records, 5);
    }

    #[test]
    fn only_the_recent_ids_are_remembered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = SinkConfig {
            recent_ids: 2,
            ..config(dir.path())
        };
        let (mut sink, _) = open(small.clone());
        for n in 1..=3 {
            let _ = sink.append(&with_id(n)).expect("append");
        }
        assert!(sink.append(&with_id(3)).expect("retry").duplicate);
        drop(sink);
        let (mut sink, _) = open(small);
        assert!(sink.append(&with_id(2)).expect("retry").duplicate);
        assert!(
            !sink.append(&with_id(1)).expect("append").duplicate,
            "outside the window"
        );
    }

    #[test]
    fn intents_without_an_outcome_are_found_again_after_a_restart() {
        use crate::{EventType, INTENT_DETAIL, Outcome};
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sink, _) = open(config(dir.path()));
        let intent = |n: u64| {
            let mut r = with_id(n);
            r.event = EventType::AuthnPasswordChange;
            r.outcome = Outcome::Intent;
            r
        };
        let _ = sink.append(&intent(10)).expect("append");
        let _ = sink.append(&intent(11)).expect("append");
        let done = with_id(12).with_detail(INTENT_DETAIL, intent(10).id.expect("id").to_string());
        let _ = sink.append(&done).expect("append");
        assert_eq!(sink.open_intents(), vec![intent(11)]);
        drop(sink);
        let (sink, _) = open(config(dir.path()));
        assert_eq!(sink.open_intents(), vec![intent(11)]);
    }
}
