//! The crate's error types, each with a hand-written `Display`.
//!
//! None of them ever carries a full phone number, an e-mail address or key material: masking
//! errors do not echo their input, and verification errors name places (file, line, seq),
//! not record contents.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A full number or address could not be masked. Deliberately says nothing about the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskError {
    /// Not a phone number of 7 to 15 digits with ordinary separators.
    NotAPhoneNumber,
    /// Not a plain ASCII `local@domain.tld` address.
    NotAnEmail,
}

impl fmt::Display for MaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskError::NotAPhoneNumber => f.write_str("not a phone number of 7 to 15 digits"),
            MaskError::NotAnEmail => f.write_str("not a plain ASCII e-mail address"),
        }
    }
}

impl std::error::Error for MaskError {}

/// What is wrong with one record line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// The file ends in the middle of a line (no final newline): a write cut short by a
    /// crash, or a truncated file.
    TornLine,
    /// The line is longer than [`crate::MAX_LINE_LEN`].
    TooLong,
    /// A byte outside printable ASCII at this 1-based column.
    NotAscii {
        /// 1-based byte column.
        column: usize,
    },
    /// Not a well-formed record.
    Malformed {
        /// What the parser said (capped in length).
        detail: String,
    },
    /// Well-formed, but not byte for byte what the writer produces (spacing, key order,
    /// escapes): the line was edited.
    NotCanonical,
    /// The `mac` does not match the content: the record was altered or forged, or the key
    /// is not the one it was written with.
    BadMac,
    /// Authentic, but out of place: a record before it is missing, or records were swapped,
    /// duplicated or inserted.
    SeqMismatch {
        /// The seq that belongs here.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// Authentic and numbered right, but `prev` does not match the record before it: the
    /// chain was spliced (or, for record 1, a different chain id or a removed prefix).
    PrevMismatch,
    /// The trail starts after seq 1 (older records were purged) but no valid checkpoint
    /// at the seq before its first record matches that record's `prev`.
    Unanchored,
    /// Authentic and in place, but its id is the id of an earlier record: one record was
    /// written twice (a retry that should have been recognised).
    DuplicateId {
        /// The seq of the record that carried the id first.
        first_seq: u64,
    },
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordProblem::TornLine => f.write_str("torn line: the file ends without a newline"),
            RecordProblem::TooLong => {
                write!(f, "line longer than {} bytes", crate::MAX_LINE_LEN)
            }
            RecordProblem::NotAscii { column } => {
                write!(f, "byte outside printable ASCII at column {column}")
            }
            RecordProblem::Malformed { detail } => write!(f, "malformed record: {detail}"),
            RecordProblem::NotCanonical => {
                f.write_str("record is not in canonical form (the line was edited)")
            }
            RecordProblem::BadMac => {
                f.write_str("record MAC does not verify (altered or forged record, or another key)")
            }
            RecordProblem::SeqMismatch { expected, found } => write!(
                f,
                "expected seq {expected} but found seq {found} \
                 (records deleted, swapped, duplicated or inserted)"
            ),
            RecordProblem::Unanchored => f.write_str(
                "the first record after a purge is not anchored: no signed checkpoint at the \
                 seq before it carries its prev (records removed outside a purge)",
            ),
            RecordProblem::PrevMismatch => f.write_str(
                "prev does not match the record before it (chain spliced, or wrong chain id)",
            ),
            RecordProblem::DuplicateId { first_seq } => write!(
                f,
                "record id already used by seq {first_seq}: the same record was written twice"
            ),
        }
    }
}

/// The first bad record found by [`crate::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFault {
    /// The segment file.
    pub file: PathBuf,
    /// 1-based line number in that file.
    pub line: u64,
    /// The record's seq, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: RecordProblem,
}

impl fmt::Display for RecordFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// What is wrong with one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointProblem {
    /// The checkpoint file ends in the middle of a line.
    TornLine,
    /// The line is longer than [`crate::MAX_LINE_LEN`].
    TooLong,
    /// A byte outside printable ASCII at this 1-based column.
    NotAscii {
        /// 1-based byte column.
        column: usize,
    },
    /// Not a well-formed checkpoint.
    Malformed {
        /// What the parser said (capped in length).
        detail: String,
    },
    /// Well-formed but not byte for byte what the writer produces.
    NotCanonical,
    /// The signature does not verify: the checkpoint was altered or forged, or another key.
    BadSignature,
    /// The checkpoint belongs to another chain.
    WrongChain {
        /// The chain it names.
        found: String,
    },
    /// Its count is lower than the checkpoint before it.
    CountWentBack {
        /// The previous checkpoint's count.
        previous: u64,
    },
    /// The checkpoint covers more records than exist: the trail was truncated. The first
    /// missing record is seq `last_seq + 1`.
    RecordsMissing {
        /// The last seq present in the chain (0 if none).
        last_seq: u64,
        /// File and line of that last record, if any.
        last_at: Option<(PathBuf, u64)>,
    },
    /// The record at the checkpoint's count does not hash to the checkpoint's head: the
    /// chain was rewritten (by someone holding the key) after the checkpoint was made.
    HeadMismatch {
        /// Where the record with seq = count is.
        record_file: PathBuf,
        /// Its 1-based line.
        record_line: u64,
    },
    /// The record at the checkpoint's count is in another file than the checkpoint names.
    WrongFile {
        /// Where the record with seq = count really is.
        record_file: PathBuf,
        /// Its 1-based line.
        record_line: u64,
    },
}

impl fmt::Display for CheckpointProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointProblem::TornLine => {
                f.write_str("torn line: the checkpoint file ends without a newline")
            }
            CheckpointProblem::TooLong => {
                write!(f, "line longer than {} bytes", crate::MAX_LINE_LEN)
            }
            CheckpointProblem::NotAscii { column } => {
                write!(f, "byte outside printable ASCII at column {column}")
            }
            CheckpointProblem::Malformed { detail } => write!(f, "malformed checkpoint: {detail}"),
            CheckpointProblem::NotCanonical => {
                f.write_str("checkpoint is not in canonical form (the line was edited)")
            }
            CheckpointProblem::BadSignature => f.write_str(
                "checkpoint signature does not verify (altered or forged, or another key)",
            ),
            CheckpointProblem::WrongChain { found } => {
                write!(f, "checkpoint belongs to chain {found:?}")
            }
            CheckpointProblem::CountWentBack { previous } => {
                write!(
                    f,
                    "count is lower than the previous checkpoint's {previous}"
                )
            }
            CheckpointProblem::RecordsMissing { last_seq, last_at } => {
                write!(
                    f,
                    "records missing: first missing is seq {}",
                    last_seq.saturating_add(1)
                )?;
                match last_at {
                    Some((file, line)) => {
                        write!(f, ", after {}:{} (seq {last_seq})", file.display(), line)
                    }
                    None => f.write_str(" (no records at all)"),
                }?;
                f.write_str(" — the trail was truncated after this checkpoint")
            }
            CheckpointProblem::HeadMismatch {
                record_file,
                record_line,
            } => write!(
                f,
                "head does not match the record at {}:{} (chain rewritten after the checkpoint)",
                record_file.display(),
                record_line
            ),
            CheckpointProblem::WrongFile {
                record_file,
                record_line,
            } => write!(
                f,
                "names another file than the one holding its head record, {}:{}",
                record_file.display(),
                record_line
            ),
        }
    }
}

/// The first bad checkpoint found by [`crate::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFault {
    /// The checkpoint file.
    pub file: PathBuf,
    /// 1-based line number in it.
    pub line: u64,
    /// The record count it claims, when it could be read.
    pub count: Option<u64>,
    /// What is wrong.
    pub problem: CheckpointProblem,
}

impl fmt::Display for CheckpointFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(count) = self.count {
            write!(f, " (checkpoint of {count} records)")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Why [`crate::verify`] failed.
#[derive(Debug)]
pub enum VerifyError {
    /// A file or directory could not be read.
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// No segment of the chain was found.
    NoSegments {
        /// Where it looked.
        dir: PathBuf,
        /// The chain id it looked for.
        chain: String,
    },
    /// Segment files are not numbered 1, 2, 3, ... without a gap.
    MissingSegment {
        /// Where it looked.
        dir: PathBuf,
        /// The first missing index.
        index: u64,
    },
    /// The checkpoint file is gone. A sink creates it when it opens the chain, so with
    /// segments present its absence means it was removed.
    MissingCheckpoints {
        /// Where it should be.
        path: PathBuf,
    },
    /// A record is bad; it is the first bad one in chain order.
    Record(RecordFault),
    /// The records are sound but a checkpoint is bad or disagrees with them.
    Checkpoint(CheckpointFault),
    /// The trail starts at `first_seq` (older records purged), but the newest
    /// `retention_purge` record in it says the purge kept records from `stated`
    /// (`None`: no purge record at all). Records were removed outside a purge.
    PurgeMismatch {
        /// The seq the remaining trail starts at.
        first_seq: u64,
        /// What the newest purge record says the trail starts at.
        stated: Option<u64>,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            VerifyError::NoSegments { dir, chain } => {
                write!(f, "no segment of chain {chain:?} in {}", dir.display())
            }
            VerifyError::MissingSegment { dir, index } => {
                write!(
                    f,
                    "segment {index} of the chain is missing from {}",
                    dir.display()
                )
            }
            VerifyError::MissingCheckpoints { path } => {
                write!(f, "checkpoint file {} is missing", path.display())
            }
            VerifyError::Record(fault) => write!(f, "bad record at {fault}"),
            VerifyError::Checkpoint(fault) => write!(f, "bad checkpoint at {fault}"),
            VerifyError::PurgeMismatch { first_seq, stated } => match stated {
                Some(stated) => write!(
                    f,
                    "the trail starts at seq {first_seq} but the last retention purge kept \
                     records from seq {stated}: records were removed outside a purge"
                ),
                None => write!(
                    f,
                    "the trail starts at seq {first_seq} but holds no retention_purge record: \
                     records were removed outside a purge"
                ),
            },
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VerifyError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a [`crate::FileSink`] operation failed.
///
/// After any error from `append`, the record is NOT acknowledged. Unless the error is
/// [`SinkError::RecordTooLarge`], [`SinkError::Encode`] or [`SinkError::Rejected`] (nothing
/// was written), reopen the sink before retrying: reopening resumes from what is on disk, so
/// a retried record may then appear twice, each copy with its own seq.
#[derive(Debug)]
pub enum SinkError {
    /// An I/O operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The configuration cannot work.
    Config {
        /// What is wrong.
        detail: &'static str,
    },
    /// Another sink holds the chain's lock file.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// Segment files are not numbered without a gap.
    MissingSegment {
        /// The directory.
        dir: PathBuf,
        /// The first missing index.
        index: u64,
    },
    /// The last complete record or checkpoint on disk does not verify: the files were damaged
    /// or altered, or the key is not the one they were written with. Run `verify`.
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Byte offset of the bad line.
        offset: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// The last checkpoint covers more records than are on disk: records were lost or
    /// removed. Run `verify`.
    CheckpointAhead {
        /// The checkpoint's count.
        checkpoint: u64,
        /// The last seq on disk.
        last_seq: u64,
    },
    /// The sealed record is longer than [`crate::MAX_LINE_LEN`]; nothing was written.
    RecordTooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The record could not be encoded (e.g. a time outside years 0-9999); nothing was written.
    Encode {
        /// What went wrong.
        detail: String,
    },
    /// A record was refused before writing; nothing was written.
    Rejected {
        /// Why.
        detail: &'static str,
    },
    /// An earlier write or fsync failed; the state on disk is uncertain. Reopen the sink.
    Poisoned,
    /// A retention purge could not be done safely (e.g. no checkpoint anchors the boundary).
    Purge {
        /// What is wrong.
        detail: String,
    },
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Io { op, path, source } => {
                write!(f, "audit sink: {op} {} failed: {source}", path.display())
            }
            SinkError::Config { detail } => write!(f, "audit sink configuration: {detail}"),
            SinkError::Locked { path } => write!(
                f,
                "audit chain is locked by another writer ({})",
                path.display()
            ),
            SinkError::MissingSegment { dir, index } => {
                write!(f, "audit segment {index} is missing from {}", dir.display())
            }
            SinkError::Corrupt {
                file,
                offset,
                problem,
            } => write!(
                f,
                "audit file {} is damaged at byte {offset}: {problem}; run verify",
                file.display()
            ),
            SinkError::CheckpointAhead {
                checkpoint,
                last_seq,
            } => write!(
                f,
                "audit checkpoint covers {checkpoint} records but only {last_seq} are on disk; \
                 run verify"
            ),
            SinkError::RecordTooLarge { len } => write!(
                f,
                "audit record of {len} bytes exceeds the {} byte limit",
                crate::MAX_LINE_LEN
            ),
            SinkError::Encode { detail } => write!(f, "audit record cannot be encoded: {detail}"),
            SinkError::Rejected { detail } => write!(f, "audit record refused: {detail}"),
            SinkError::Poisoned => {
                f.write_str("audit sink stopped after a failed write or fsync; reopen it")
            }
            SinkError::Purge { detail } => write!(f, "audit purge refused: {detail}"),
        }
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SinkError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
