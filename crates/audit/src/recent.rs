//! What a file sink remembers of its chain's tail: the ids of the records written last (so a
//! retried record is recognised and not written twice) and the intents still open (so a
//! restart can say which effects have no outcome).
//!
//! Invariant: bounded by the window: the ids of the last `window` records with an id, and
//! at most [`OpenIntents::MAX`] intents. On open the sink reads them back from the last
//! `window` lines of the newest segments, so the memory survives a restart. A line is only
//! glanced at (its `seq`, `id`, `outcome` and `details.intent`); an intent is read in full
//! and checked under the key (one that does not verify is left out: `verify` names it).
//! Ids are unpredictable, so a forged line cannot make a future record look written.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::files::{LineEnd, LineReader};
use crate::id::RecordId;
use crate::intent::OpenIntents;
use crate::key::AuditKey;
use crate::record::{Outcome, Record, open_line};

/// What the tail read needs of a line (other fields are skipped unread).
#[derive(Deserialize)]
struct Glance {
    seq: u64,
    #[serde(default)]
    id: Option<RecordId>,
    outcome: Outcome,
    #[serde(default)]
    details: GlanceDetails,
}

#[derive(Deserialize, Default)]
struct GlanceDetails {
    #[serde(default)]
    intent: Option<String>,
}

/// The tail's ids and open intents (see the module doc).
#[derive(Debug)]
pub(crate) struct Recent {
    window: usize,
    seq_of: HashMap<RecordId, u64>,
    order: VecDeque<RecordId>,
    intents: OpenIntents,
}

impl Recent {
    pub(crate) fn new(window: usize) -> Self {
        Self {
            window,
            seq_of: HashMap::new(),
            order: VecDeque::new(),
            intents: OpenIntents::default(),
        }
    }

    /// Reads the tail of a chain from its segments (oldest first).
    pub(crate) fn load(
        segments: &[(u64, PathBuf)],
        key: &AuditKey,
        window: usize,
    ) -> io::Result<Self> {
        let mut recent = Self::new(window);
        if window == 0 {
            return Ok(recent);
        }
        let mut first = segments.len();
        let mut lines = 0u64;
        while first > 0 && lines < window as u64 {
            first -= 1;
            if let Some((_, path)) = segments.get(first) {
                lines += count_lines(path)?;
            }
        }
        let mut skip = lines.saturating_sub(window as u64);
        let mut buf = Vec::with_capacity(1024);
        for (_, path) in segments.iter().skip(first) {
            let mut reader = LineReader::open(path)?;
            while let Some(end) = reader.next_line(&mut buf)? {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if end == LineEnd::Complete {
                    recent.glance(&buf, key);
                }
            }
        }
        Ok(recent)
    }

    /// Notes one stored line (see the module doc).
    fn glance(&mut self, line: &[u8], key: &AuditKey) {
        let Ok(glance) = serde_json::from_slice::<Glance>(line) else {
            return;
        };
        if glance.outcome == Outcome::Intent {
            if let Ok(stored) = open_line(line, Some(key)) {
                self.note(stored.seq, &stored.record);
            }
            return;
        }
        if let Some(named) = &glance.details.intent {
            self.intents.named(named);
        }
        if let Some(id) = glance.id {
            self.note_id(glance.seq, id);
        }
    }

    /// The seq `id` was written at, if it is among the recent records.
    pub(crate) fn written(&self, id: RecordId) -> Option<u64> {
        self.seq_of.get(&id).copied()
    }

    /// Remembers a record just written (or read back) at `seq`.
    pub(crate) fn note(&mut self, seq: u64, record: &Record) {
        self.intents.see(seq, record);
        if let Some(id) = record.id {
            self.note_id(seq, id);
        }
    }

    fn note_id(&mut self, seq: u64, id: RecordId) {
        if self.window == 0 {
            return;
        }
        if self.seq_of.insert(id, seq).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.window {
            if let Some(old) = self.order.pop_front() {
                self.seq_of.remove(&old);
            }
        }
    }

    /// The intents no record names yet, oldest first.
    pub(crate) fn open_intents(&self) -> Vec<Record> {
        self.intents.open()
    }
}

/// Newlines in a file, read in blocks.
fn count_lines(path: &Path) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let mut block = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = file.read(&mut block)?;
        if got == 0 {
            return Ok(n);
        }
        n += block
            .get(..got)
            .unwrap_or_default()
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
    }
}
