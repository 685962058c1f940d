//! A retry buffer's copy on disk: records that wait for a sink survive a crash.
//!
//! One file per chain, `<spill_dir>/<chain>.spill.jsonl`, holding every record queued since
//! the buffer was last empty, in order. Each line is sealed like a trail line under the audit
//! key (a chain of its own, restarted whenever the file is emptied), so a record that was
//! edited, forged or reordered in the spill is refused at start rather than replayed into the
//! trail. Every push is written and fsynced before the caller goes on; the file is emptied
//! when the buffer drains and rewritten from the buffer when it holds more than twice what
//! waits (records already written stay in it until then; replaying them is harmless: the
//! sink recognises their ids).
//!
//! Invariant: what `open` returns is exactly, in order, the records pushed since the last
//! `clear` (a push torn by a crash, never acknowledged, is cut off and counted).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::chain::{ChainHead, open_record};
use crate::files::sync_dir;
use crate::key::{AuditKey, ChainId};
use crate::record::Record;

/// The spill of one chain (see the module doc).
#[derive(Debug)]
pub struct Spill {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    key: AuditKey,
    /// The chain id the spill's lines are sealed under.
    chain: ChainId,
    head: ChainHead,
    lines: usize,
}

/// What `Spill::open` found.
#[derive(Debug)]
pub struct Spilled {
    /// The records waiting, oldest first.
    pub records: Vec<Record>,
    /// Bytes of a torn last line (a push cut short by a crash) that were cut off.
    pub torn_bytes: u64,
}

fn invalid(path: &Path, line: usize, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}:{line}: {what}; the audit spill was altered: check it, move it aside, and restart",
            path.display()
        ),
    )
}

impl Spill {
    /// Opens (or creates) the spill of `chain` in `dir`, reading back what waits.
    ///
    /// # Errors
    /// I/O errors, or a line that does not verify under `key` or is out of order.
    pub fn open(dir: &Path, chain: &str, key: AuditKey) -> io::Result<(Self, Spilled)> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{chain}.spill.jsonl"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)?;
        let chain = ChainId::new("spill").map_err(io::Error::other)?;
        let mut head = ChainHead::genesis(key.clone(), chain.clone());
        let mut records = Vec::new();
        let mut complete = 0u64;
        let mut reader = BufReader::new(file.try_clone()?);
        reader.seek(SeekFrom::Start(0))?;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break;
            }
            let line = buf.get(..buf.len() - 1).unwrap_or_default();
            let number = records.len() + 1;
            let stored =
                open_record(line, &key).map_err(|p| invalid(&path, number, &p.to_string()))?;
            if stored.seq != head.seq() + 1 || stored.prev != head.link() {
                return Err(invalid(&path, number, "line out of order"));
            }
            head = ChainHead::resume(key.clone(), chain.clone(), line)
                .map_err(|p| invalid(&path, number, &p.to_string()))?;
            records.push(stored.record);
            complete += n as u64;
        }
        let len = file.metadata()?.len();
        if len > complete {
            file.set_len(complete)?;
            file.sync_data()?;
        }
        sync_dir(dir)?;
        let lines = records.len();
        let spill = Spill {
            path,
            dir: dir.to_path_buf(),
            file,
            key,
            chain,
            head,
            lines,
        };
        Ok((
            spill,
            Spilled {
                records,
                torn_bytes: len - complete,
            },
        ))
    }

    /// Appends `records` and fsyncs them.
    ///
    /// # Errors
    /// I/O or sealing errors; the file is cut back to what it held before.
    pub fn push(&mut self, records: &[Record]) -> io::Result<()> {
        let before = self.file.metadata()?.len();
        let mut head = self.head.clone();
        let bytes = seal_all(&mut head, records.iter())?;
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(before);
            return Err(e);
        }
        self.head = head;
        self.lines += records.len();
        Ok(())
    }

    /// Empties the file (the buffer drained).
    ///
    /// # Errors
    /// I/O errors.
    pub fn clear(&mut self) -> io::Result<()> {
        if self.lines == 0 {
            return Ok(());
        }
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.head = ChainHead::genesis(self.key.clone(), self.chain.clone());
        self.lines = 0;
        Ok(())
    }

    /// Replaces the file's content with `waiting` when it holds more than twice as many
    /// lines (written atomically: a new file, fsynced, renamed over the old one).
    ///
    /// # Errors
    /// I/O or sealing errors; the old file is then kept.
    pub fn compact<'a>(
        &mut self,
        waiting: impl ExactSizeIterator<Item = &'a Record>,
    ) -> io::Result<()> {
        let len = waiting.len();
        if self.lines <= 2 * len.max(1) {
            return Ok(());
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut head = ChainHead::genesis(self.key.clone(), self.chain.clone());
        let bytes = seal_all(&mut head, waiting)?;
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        fs::rename(&tmp, &self.path)?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&self.path)?;
        self.head = head;
        self.lines = len;
        Ok(())
    }

    /// Lines in the file.
    pub fn lines(&self) -> usize {
        self.lines
    }
}

/// The lines of `records` sealed after `head`, which moves past them.
fn seal_all<'a>(
    head: &mut ChainHead,
    records: impl Iterator<Item = &'a Record>,
) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for record in records {
        let sealed = head.seal(record).map_err(io::Error::other)?;
        bytes.extend_from_slice(&sealed.line);
        bytes.push(b'\n');
        head.advance(&sealed);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::RecordId;
    use crate::key::tests::test_key as key;
    use crate::record::tests::sample;

    fn rec(n: u8) -> Record {
        let mut r = sample(u64::from(n));
        r.call_id = format!("CA{n}");
        r.with_id(RecordId::from_bytes([n; 16]))
    }

    fn calls(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.call_id.clone()).collect()
    }

    #[test]
    fn what_was_pushed_is_read_back_in_order_until_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spill, found) = Spill::open(dir.path(), "c", key()).expect("open");
        assert!(found.records.is_empty());
        spill.push(&[rec(1), rec(2)]).expect("push");
        spill.push(&[rec(3)]).expect("push");
        drop(spill);
        let (mut spill, found) = Spill::open(dir.path(), "c", key()).expect("reopen");
        assert_eq!(found.records, vec![rec(1), rec(2), rec(3)]);
        spill.push(&[rec(4)]).expect("push after reopen");
        drop(spill);
        let (mut spill, found) = Spill::open(dir.path(), "c", key()).expect("reopen");
        assert_eq!(calls(&found.records), ["CA1", "CA2", "CA3", "CA4"]);
        spill.clear().expect("clear");
        drop(spill);
        let (_, found) = Spill::open(dir.path(), "c", key()).expect("reopen");
        assert!(found.records.is_empty());
    }

    #[test]
    fn a_torn_push_is_cut_off_and_an_edited_line_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spill, _) = Spill::open(dir.path(), "c", key()).expect("open");
        spill.push(&[rec(1), rec(2)]).expect("push");
        drop(spill);
        let path = dir.path().join("c.spill.jsonl");
        let text = fs::read_to_string(&path).expect("read");
        let torn = "{\"seq\":3,\"id";
        fs::write(&path, format!("{text}{torn}")).expect("tear");
        let (_, found) = Spill::open(dir.path(), "c", key()).expect("reopen");
        assert_eq!(calls(&found.records), ["CA1", "CA2"]);
        assert_eq!(found.torn_bytes, torn.len() as u64);
        assert_eq!(fs::read_to_string(&path).expect("read"), text);

        fs::write(&path, text.replace("CA2", "CA9")).expect("edit");
        let err = Spill::open(dir.path(), "c", key()).expect_err("edited");
        assert!(err.to_string().contains("c.spill.jsonl:2"), "{err}");
        let lines: Vec<&str> = text.lines().collect();
        fs::write(&path, format!("{}\n{}\n", lines[1], lines[0])).expect("swap");
        assert!(Spill::open(dir.path(), "c", key()).is_err(), "reordered");
    }

    #[test]
    fn a_spill_holding_much_more_than_waits_is_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spill, _) = Spill::open(dir.path(), "c", key()).expect("open");
        let all: Vec<Record> = (1..=6).map(rec).collect();
        spill.push(&all).expect("push");
        spill.compact(all[4..].iter()).expect("compact");
        assert_eq!(spill.lines(), 2);
        spill.push(&[rec(7)]).expect("push");
        drop(spill);
        let (_, found) = Spill::open(dir.path(), "c", key()).expect("reopen");
        assert_eq!(calls(&found.records), ["CA5", "CA6", "CA7"]);
    }
}
