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
pub(crate) mod tests;
