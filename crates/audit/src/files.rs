//! File layout of a chain, and the low-level reading every other module shares.
//!
//! A chain `C` lives in one directory:
//!
//! | file | content |
//! | --- | --- |
//! | `C.000001.jsonl`, `C.000002.jsonl`, ... | segments: the records, in chain order |
//! | `C.checkpoints.jsonl` | signed checkpoints |
//! | `C.lock` | held (OS file lock) by the one open sink |
//! | `C.000001.jsonl.torn`, `C.checkpoints.jsonl.torn` | torn tails set aside by a sink reopening after a crash |
//!
//! The order of segments comes from the number in their names (at least six digits, read
//! as a number, no manifest to keep in step): rotation creates segment n+1 and its first
//! record chains to the last record of segment n, so the chain runs unbroken across files.
//! Only canonical names count as segments; anything else in the directory is ignored.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::json::to_ascii_json;
use crate::key::{ChainId, hex};
use crate::record::MAX_LINE_LEN;

pub(crate) fn segment_name(chain: &ChainId, index: u64) -> String {
    format!("{chain}.{index:06}.jsonl")
}

pub(crate) fn checkpoint_name(chain: &ChainId) -> String {
    format!("{chain}.checkpoints.jsonl")
}

pub(crate) fn lock_name(chain: &ChainId) -> String {
    format!("{chain}.lock")
}

/// The segment index in `file_name`, if it is a canonical segment name of `chain`.
pub(crate) fn segment_index(chain: &ChainId, file_name: &str) -> Option<u64> {
    let digits = file_name
        .strip_prefix(chain.as_str())?
        .strip_prefix('.')?
        .strip_suffix(".jsonl")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u64 = digits.parse().ok()?;
    (index >= 1 && segment_name(chain, index) == file_name).then_some(index)
}

/// The chain's segments in `dir`, ordered by index.
pub(crate) fn list_segments(dir: &Path, chain: &ChainId) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(index) = name.to_str().and_then(|n| segment_index(chain, n)) {
            found.push((index, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Quarantine files of the chain in `dir`, sorted.
pub(crate) fn list_quarantined(dir: &Path, chain: &ChainId) -> io::Result<Vec<PathBuf>> {
    let prefix = format!("{chain}.");
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".torn"))
        {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The first index missing from a run that should count up by one from `start`.
pub(crate) fn first_gap(segments: &[(u64, PathBuf)], start: u64) -> Option<u64> {
    let mut expected = start;
    for (index, _) in segments {
        if *index != expected {
            return Some(expected);
        }
        expected = expected.saturating_add(1);
    }
    None
}

/// How one read line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineEnd {
    /// Ended with `\n` (removed from the buffer).
    Complete,
    /// The file ended first.
    Torn,
    /// Longer than the limit; reading should stop.
    TooLong,
}

/// Reads lines of at most [`MAX_LINE_LEN`] bytes, counting them from 1.
#[derive(Debug)]
pub(crate) struct LineReader {
    reader: BufReader<File>,
    pub(crate) line_no: u64,
}

impl LineReader {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            reader: BufReader::with_capacity(64 * 1024, File::open(path)?),
            line_no: 0,
        })
    }

    /// The next line into `buf`, or `None` at the end of the file.
    pub(crate) fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<LineEnd>> {
        buf.clear();
        let limit = MAX_LINE_LEN as u64 + 1;
        let n = (&mut self.reader).take(limit).read_until(b'\n', buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            return Ok(Some(LineEnd::Complete));
        }
        if n as u64 >= limit {
            return Ok(Some(LineEnd::TooLong));
        }
        Ok(Some(LineEnd::Torn))
    }
}

/// The end of a file of lines, read without scanning the whole file.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Offset and bytes (no newline) of the last complete line.
    pub(crate) last_line: Option<(u64, Vec<u8>)>,
    /// Offset and bytes of a final fragment without a newline.
    pub(crate) torn: Option<(u64, Vec<u8>)>,
    /// Length of the file up to and including the last newline.
    pub(crate) complete_len: u64,
}

#[derive(Debug)]
pub(crate) enum TailError {
    Io(io::Error),
    /// No newline where one must be: a line longer than the limit.
    LineTooLong {
        offset: u64,
    },
}

impl From<io::Error> for TailError {
    fn from(e: io::Error) -> Self {
        TailError::Io(e)
    }
}

pub(crate) fn read_tail(path: &Path) -> Result<Tail, TailError> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let window = len.min(2 * (MAX_LINE_LEN as u64 + 1));
    let start = len - window;
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(window).read_to_end(&mut buf)?;
    let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
        if start != 0 {
            return Err(TailError::LineTooLong { offset: start });
        }
        let torn = (!buf.is_empty()).then_some((0, buf));
        return Ok(Tail {
            last_line: None,
            torn,
            complete_len: 0,
        });
    };
    let fragment = buf.get(last_nl + 1..).unwrap_or_default();
    let torn = (!fragment.is_empty()).then(|| (start + last_nl as u64 + 1, fragment.to_vec()));
    let before = buf.get(..last_nl).unwrap_or_default();
    let last_line = match before.iter().rposition(|b| *b == b'\n') {
        Some(nl) => (
            start + nl as u64 + 1,
            before.get(nl + 1..).unwrap_or_default().to_vec(),
        ),
        None if start == 0 => (0, before.to_vec()),
        None => return Err(TailError::LineTooLong { offset: start }),
    };
    Ok(Tail {
        last_line: Some(last_line),
        torn,
        complete_len: start + last_nl as u64 + 1,
    })
}

/// Makes a new or renamed directory entry durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[derive(Serialize)]
struct TornEntry<'a> {
    file: &'a str,
    offset: u64,
    len: usize,
    hex: &'a str,
}

/// Moves a torn tail out of `path`: appends it (hex, with its offset) to `<path>.torn`,
/// fsyncs that, then cuts `path` back to `keep_len` and fsyncs it. Returns the `.torn` path.
pub(crate) fn quarantine(
    path: &Path,
    offset: u64,
    bytes: &[u8],
    keep_len: u64,
) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    let torn_path = path.with_file_name(format!("{name}.torn"));
    let entry = TornEntry {
        file: name,
        offset,
        len: bytes.len(),
        hex: &hex(bytes),
    };
    let mut line = to_ascii_json(&entry).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&torn_path)?;
    out.write_all(&line)?;
    out.sync_all()?;
    if let Some(dir) = torn_path.parent() {
        sync_dir(dir)?;
    }
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(keep_len)?;
    file.sync_all()?;
    Ok(torn_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_parse_only_in_canonical_form() {
        let chain = ChainId::new("node-a").expect("id");
        assert_eq!(segment_name(&chain, 7), "node-a.000007.jsonl");
        assert_eq!(segment_index(&chain, "node-a.000007.jsonl"), Some(7));
        assert_eq!(
            segment_index(&chain, "node-a.1234567.jsonl"),
            Some(1_234_567)
        );
        for bad in [
            "node-a.0000007.jsonl",
            "node-a.000000.jsonl",
            "node-a.7.jsonl",
            "node-b.000007.jsonl",
            "node-a.checkpoints.jsonl",
            "node-a.000007.jsonl.torn",
            "node-a.+00007.jsonl",
        ] {
            assert_eq!(segment_index(&chain, bad), None, "{bad}");
        }
    }

    #[test]
    fn gaps_are_found() {
        let seg = |i| (i, PathBuf::new());
        assert_eq!(first_gap(&[seg(1), seg(2)], 1), None);
        assert_eq!(first_gap(&[seg(2), seg(3)], 1), Some(1));
        assert_eq!(first_gap(&[seg(1), seg(3)], 1), Some(2));
    }

    #[test]
    fn tails_find_the_last_line_and_a_torn_fragment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let tail = |content: &[u8]| {
            fs::write(&path, content).expect("write");
            read_tail(&path).expect("tail")
        };
        assert_eq!(tail(b""), Tail::default());
        assert_eq!(
            tail(b"abc"),
            Tail {
                last_line: None,
                torn: Some((0, b"abc".to_vec())),
                complete_len: 0
            }
        );
        assert_eq!(
            tail(b"one\ntwo\n"),
            Tail {
                last_line: Some((4, b"two".to_vec())),
                torn: None,
                complete_len: 8
            }
        );
        assert_eq!(
            tail(b"one\ntwo\nthr"),
            Tail {
                last_line: Some((4, b"two".to_vec())),
                torn: Some((8, b"thr".to_vec())),
                complete_len: 8
            }
        );
        let mut long = vec![b'x'; 3 * MAX_LINE_LEN];
        long.push(b'\n');
        fs::write(&path, &long).expect("write");
        assert!(matches!(
            read_tail(&path),
            Err(TailError::LineTooLong { .. })
        ));
    }

    #[test]
    fn quarantine_keeps_the_fragment_and_cuts_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.000001.jsonl");
        fs::write(&path, b"one\ntw").expect("write");
        let torn = quarantine(&path, 4, b"tw", 4).expect("quarantine");
        assert_eq!(fs::read(&path).expect("read"), b"one\n");
        let saved = fs::read_to_string(&torn).expect("read torn");
        assert_eq!(
            saved,
            "{\"file\":\"c.000001.jsonl\",\"offset\":4,\"len\":2,\"hex\":\"7477\"}\n"
        );
    }

    #[test]
    fn the_line_reader_reports_torn_and_overlong_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut content = b"a\n\nb".to_vec();
        fs::write(&path, &content).expect("write");
        let mut reader = LineReader::open(&path).expect("open");
        let mut buf = Vec::new();
        assert_eq!(
            reader.next_line(&mut buf).expect("read"),
            Some(LineEnd::Complete)
        );
        assert_eq!(buf, b"a");
        assert_eq!(
            reader.next_line(&mut buf).expect("read"),
            Some(LineEnd::Complete)
        );
        assert_eq!(buf, b"");
        assert_eq!(
            reader.next_line(&mut buf).expect("read"),
            Some(LineEnd::Torn)
        );
        assert_eq!((buf.as_slice(), reader.line_no), (&b"b"[..], 3));
        assert_eq!(reader.next_line(&mut buf).expect("read"), None);
        content = vec![b'x'; MAX_LINE_LEN + 5];
        fs::write(&path, &content).expect("write");
        let mut reader = LineReader::open(&path).expect("open");
        assert_eq!(
            reader.next_line(&mut buf).expect("read"),
            Some(LineEnd::TooLong)
        );
    }
}
