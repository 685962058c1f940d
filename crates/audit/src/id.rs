//! Record ids: what makes a retried write recognisable, so no record is ever written twice.
//!
//! A [`RecordId`] is 128 bits written as 32 lowercase hex digits (`"id"` in a record line,
//! right after `seq`). It is given once, when a record first enters the audit machinery, and
//! travels with the record through every retry and spill; a sink that meets an id it already
//! wrote does not write it again, and the verifier names an id that appears twice. Records
//! written before ids existed (and the `retention_purge` records a sink writes itself, which
//! are never retried) have none, and still verify.
//!
//! Invariant: ids are unique. [`RecordIds`] makes them from a 64-bit random prefix drawn once
//! per process (by the caller, from its injected randomness) and a 64-bit counter; an id for
//! an effect's intent is 128 random bits. The crate itself reads no RNG.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A record's unique id (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(u128);

impl RecordId {
    /// The id made of these 16 bytes (big-endian): e.g. 16 random bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_be_bytes(bytes))
    }

    /// The id's 128 bits.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Text that is not 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRecordId;

impl fmt::Display for BadRecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("record id is not 32 lowercase hex digits")
    }
}

impl std::error::Error for BadRecordId {}

impl FromStr for RecordId {
    type Err = BadRecordId;

    /// Only the canonical form: 32 lowercase hex digits.
    fn from_str(text: &str) -> Result<Self, BadRecordId> {
        let canonical =
            text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !canonical {
            return Err(BadRecordId);
        }
        u128::from_str_radix(text, 16)
            .map(Self)
            .map_err(|_| BadRecordId)
    }
}

impl Serialize for RecordId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Gives out unique ids: a random prefix (drawn once by the caller) and a counter.
#[derive(Debug)]
pub struct RecordIds {
    prefix: u64,
    next: AtomicU64,
}

impl RecordIds {
    /// Ids starting with `prefix`, which must be random (64 bits from a CSPRNG), so two
    /// processes, or two runs of one, never give the same id.
    pub fn new(prefix: u64) -> Self {
        Self {
            prefix,
            next: AtomicU64::new(0),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> RecordId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        RecordId((u128::from(self.prefix) << 64) | u128::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_only_in_their_canonical_form() {
        let id = RecordId::from_bytes([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(16));
        assert_eq!(text.parse::<RecordId>(), Ok(id));
        for bad in [
            "",
            "AB".repeat(16).as_str(),
            "ab".repeat(15).as_str(),
            "ab".repeat(17).as_str(),
            "+bababababababababababababababab",
            "zzabababababababababababababababab",
        ] {
            assert_eq!(bad.parse::<RecordId>(), Err(BadRecordId), "{bad:?}");
        }
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(serde_json::from_str::<RecordId>(&json).expect("back"), id);
    }

    #[test]
    fn ids_from_one_source_never_repeat_and_differ_by_prefix() {
        let a = RecordIds::new(1);
        let b = RecordIds::new(2);
        let first = a.next_id();
        assert_ne!(first, a.next_id());
        assert_ne!(first, b.next_id());
        assert_eq!(first.to_string(), format!("{:016x}{:016x}", 1, 0));
    }
}
