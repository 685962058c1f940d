//! The audit key, the chain id, and the keyed hashes that bind the trail together.
//!
//! Every tag in the trail is HMAC-SHA256 under one key, with a domain label fed first so a
//! tag made for one purpose can never stand in for another:
//!
//! | purpose | input after the label |
//! | --- | --- |
//! | genesis (the `prev` of record 1) | the chain id |
//! | `mac` of a record | the record's line without its `mac` field |
//! | link (the `prev` of the next record, the `head` of a checkpoint) | the record's whole line |
//! | `sig` of a checkpoint | the checkpoint's line without its `sig` field |
//!
//! Every label ends with `\n`, a byte no line contains, so the domains cannot overlap.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of every tag (HMAC-SHA256 output).
pub(crate) const TAG_LEN: usize = 32;

/// The secret key that makes the chain tamper-evident.
///
/// Anyone holding it can write a valid chain, so it belongs in the secret store, not next to
/// the files. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct AuditKey {
    // A keyed HMAC state: cloned for each tag so the key pads are hashed once.
    mac: HmacSha256,
}

impl AuditKey {
    /// The shortest key accepted, in bytes (256 bits, the HMAC-SHA256 output size).
    pub const MIN_LEN: usize = 32;

    /// Builds a key from raw bytes (decode hex or base64 from config before calling).
    ///
    /// # Errors
    /// [`KeyError`] when the key is shorter than [`AuditKey::MIN_LEN`].
    pub fn new(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(KeyError { len: bytes.len() });
        }
        let mac = HmacSha256::new_from_slice(bytes).map_err(|_| KeyError { len: bytes.len() })?;
        Ok(Self { mac })
    }

    fn tag(&self, domain: Domain, data: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(domain.label());
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `expected` against the tag of `data`.
    fn check(&self, domain: Domain, data: &[u8], expected: &[u8; TAG_LEN]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(domain.label());
        mac.update(data);
        mac.verify_slice(expected).is_ok()
    }

    /// The `prev` value of record 1 of `chain`.
    pub(crate) fn genesis(&self, chain: &ChainId) -> [u8; TAG_LEN] {
        self.tag(Domain::Genesis, chain.as_str().as_bytes())
    }

    /// The `mac` of a record, over its line without the `mac` field.
    pub(crate) fn record_mac(&self, body: &[u8]) -> [u8; TAG_LEN] {
        self.tag(Domain::Record, body)
    }

    pub(crate) fn check_record_mac(&self, body: &[u8], mac: &[u8; TAG_LEN]) -> bool {
        self.check(Domain::Record, body, mac)
    }

    /// The link of a record: the keyed hash of its exact line (without the newline).
    pub(crate) fn link(&self, line: &[u8]) -> [u8; TAG_LEN] {
        self.tag(Domain::Link, line)
    }

    /// The `sig` of a checkpoint, over its line without the `sig` field.
    pub(crate) fn checkpoint_sig(&self, body: &[u8]) -> [u8; TAG_LEN] {
        self.tag(Domain::Checkpoint, body)
    }

    pub(crate) fn check_checkpoint_sig(&self, body: &[u8], sig: &[u8; TAG_LEN]) -> bool {
        self.check(Domain::Checkpoint, body, sig)
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

#[derive(Clone, Copy)]
enum Domain {
    Genesis,
    Record,
    Link,
    Checkpoint,
}

impl Domain {
    fn label(self) -> &'static [u8] {
        match self {
            Domain::Genesis => b"resetline-audit/v1/genesis\n",
            Domain::Record => b"resetline-audit/v1/record\n",
            Domain::Link => b"resetline-audit/v1/link\n",
            Domain::Checkpoint => b"resetline-audit/v1/checkpoint\n",
        }
    }
}

/// The key given to [`AuditKey::new`] is too short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Length of the rejected key in bytes.
    pub len: usize,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit key is {} bytes; at least {} are required",
            self.len,
            AuditKey::MIN_LEN
        )
    }
}

impl std::error::Error for KeyError {}

/// The name of one chain: it seeds the genesis value and prefixes every file of the chain.
///
/// 1 to 64 characters from `A-Z a-z 0-9 _ -` (no dot, so file names parse unambiguously).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId(String);

impl ChainId {
    /// The longest chain id accepted.
    pub const MAX_LEN: usize = 64;

    /// Checks and wraps a chain id.
    ///
    /// # Errors
    /// [`ChainIdError`] when the id is empty, too long or has a character outside
    /// `A-Z a-z 0-9 _ -`.
    pub fn new(id: &str) -> Result<Self, ChainIdError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if id.is_empty() || id.len() > Self::MAX_LEN || !id.chars().all(ok_char) {
            return Err(ChainIdError);
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chain id was rejected by [`ChainId::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainIdError;

impl fmt::Display for ChainIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain id must be 1 to {} characters from A-Z a-z 0-9 _ -",
            ChainId::MAX_LEN
        )
    }
}

impl std::error::Error for ChainIdError {}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Parses exactly 64 lowercase hex digits (the only form the trail writes).
pub(crate) fn unhex_tag(text: &str) -> Option<[u8; TAG_LEN]> {
    let digits = text.as_bytes();
    if digits.len() != TAG_LEN * 2 {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; TAG_LEN];
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (nibble(*hi)?, nibble(*lo)?),
            _ => return None,
        };
        *slot = (hi << 4) | lo;
    }
    Some(out)
}

/// Constant-time equality of a hex tag as written in a line and an expected tag.
pub(crate) fn tag_matches(written_hex: &str, expected: &[u8; TAG_LEN]) -> bool {
    match unhex_tag(written_hex) {
        Some(written) => bool::from(written.ct_eq(expected)),
        None => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn test_key() -> AuditKey {
        AuditKey::new(&[7u8; 32]).expect("32-byte key")
    }

    #[test]
    fn short_keys_are_refused_and_debug_hides_the_key() {
        assert_eq!(AuditKey::new(&[1u8; 31]).err(), Some(KeyError { len: 31 }));
        let key = AuditKey::new(&[0x41u8; 40]).expect("key");
        let shown = format!("{key:?}");
        assert_eq!(shown, "AuditKey(<redacted>)");
        assert!(!shown.contains("AAAA"));
    }

    #[test]
    fn chain_ids_are_checked() {
        assert!(ChainId::new("node-a_1").is_ok());
        for bad in ["", "a.b", "a/b", "a b", "é", &"x".repeat(65)] {
            assert_eq!(ChainId::new(bad), Err(ChainIdError), "{bad:?}");
        }
    }

    #[test]
    fn hex_round_trips_and_rejects_uppercase() {
        let tag = test_key().link(b"x");
        let text = hex(&tag);
        assert_eq!(unhex_tag(&text), Some(tag));
        assert_eq!(unhex_tag(&text.to_uppercase()), None);
        assert_eq!(unhex_tag(&text[1..]), None);
        assert!(tag_matches(&text, &tag));
        assert!(!tag_matches(&text, &[0u8; TAG_LEN]));
    }

    #[test]
    fn domains_and_inputs_separate_tags() {
        let key = test_key();
        let a = ChainId::new("a").expect("id");
        let b = ChainId::new("b").expect("id");
        assert_ne!(key.genesis(&a), key.genesis(&b));
        assert_ne!(key.record_mac(b"a"), key.link(b"a"));
        assert_ne!(key.link(b"a"), key.checkpoint_sig(b"a"));
        let other = AuditKey::new(&[8u8; 32]).expect("key");
        assert_ne!(key.genesis(&a), other.genesis(&a));
        assert!(key.check_record_mac(b"body", &key.record_mac(b"body")));
        assert!(!key.check_record_mac(b"body", &other.record_mac(b"body")));
    }
}
