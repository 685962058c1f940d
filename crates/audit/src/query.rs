//! Reading the trail for people: filter records by account, call, time range, outcome and
//! event (`resetline audit query|tail|timeline`). Reading does not verify: run
//! [`crate::verify`] to know the records are authentic. Invariant: reading never writes and
//! never stops at an unreadable line silently; it reports the file and line.

use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::RecordProblem;
use crate::files::list_segments;
use crate::key::ChainId;
use crate::record::{EventType, Outcome, Record, StoredRecord};

/// Which records to keep. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Directory account id.
    pub account: Option<String>,
    /// Call id (CallSid).
    pub call: Option<String>,
    /// At or after this time.
    pub since: Option<OffsetDateTime>,
    /// Before this time.
    pub until: Option<OffsetDateTime>,
    /// Outcome.
    pub outcome: Option<Outcome>,
    /// Event type.
    pub event: Option<EventType>,
}

impl Filter {
    /// Whether `r` passes the filter.
    pub fn matches(&self, r: &Record) -> bool {
        self.account.as_ref().is_none_or(|a| &r.account == a)
            && self.call.as_ref().is_none_or(|c| &r.call_id == c)
            && self.since.is_none_or(|t| r.time >= t)
            && self.until.is_none_or(|t| r.time < t)
            && self.outcome.is_none_or(|o| r.outcome == o)
            && self.event.is_none_or(|e| r.event == e)
    }
}

/// A trail that could not be read.
#[derive(Debug)]
pub enum QueryError {
    /// A file or directory could not be read.
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not a record.
    Line {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        problem: RecordProblem,
    },
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            QueryError::Line {
                file,
                line,
                problem,
            } => write!(f, "{}:{line}: not a record: {problem}", file.display()),
        }
    }
}

impl std::error::Error for QueryError {}

/// Every record of `chain` in `dir` that passes `filter`, in chain order.
pub fn query(
    dir: &Path,
    chain: &ChainId,
    filter: &Filter,
) -> Result<Vec<StoredRecord>, QueryError> {
    let segments = list_segments(dir, chain).map_err(|source| QueryError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (_, file) in segments {
        let text = std::fs::read_to_string(&file).map_err(|source| QueryError::Io {
            path: file.clone(),
            source,
        })?;
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let stored = StoredRecord::parse(line).map_err(|problem| QueryError::Line {
                file: file.clone(),
                line: i + 1,
                problem,
            })?;
            if filter.matches(&stored.record) {
                out.push(stored);
            }
        }
    }
    Ok(out)
}
