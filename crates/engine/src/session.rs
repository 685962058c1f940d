//! The state of one call between webhooks.
//!
//! Invariants: a session holds no secret (a first new-secret entry is kept only as a keyed
//! hash, see `pending_secret`); it is pinned to the flow id and version it started on; its
//! stored form starts with `format` so replicas of different versions can tell whether they
//! can read it. The stored encoding (`resetline_store::encode`) is positional (postcard), so
//! the rule is: adding, removing, reordering or changing the meaning of any field of
//! `Session` or of a type it holds bumps `FORMAT`, and a replica refuses sessions with a
//! newer format than `READS_UP_TO` (ARCHITECTURE.md, rolling upgrades).

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::action::Action;

/// The session format this build writes: 4 = format 3 whose kept answer may hold the SSML
/// pieces of a catalog prompt ([`crate::Spoken`]'s `Break`, `Emphasis` and `Rate`, appended
/// variants: a format 3 session reads unchanged as 4, and a replica that reads only 3 refuses
/// a 4 instead of failing to replay its answer). Still read: 3 = postcard with the last answer
/// kept encoded ([`Answer`]), 2 = postcard with the last answer as actions ([`LastV2`]), 1 =
/// JSON (the same fields as 2). Formats 2, 3 and 4 each shipped in one step (no release
/// existed yet), so a replica that reads only the older format refuses the newer. Step tokens
/// became random without a format change: the token's type, place and meaning are unchanged,
/// and a replica of the counting release reads and compares it, then issues `token + 1` for
/// that one step. A call waiting at its first Gather is about 363 bytes (BENCHMARKS.md).
pub const FORMAT: u32 = 4;

/// The newest session format this build reads. Equal to `FORMAT`, except during a format
/// change, when one release reads `FORMAT + 1` while still writing `FORMAT` (rolling upgrades,
/// ARCHITECTURE.md); stores refuse anything newer.
pub const READS_UP_TO: u32 = FORMAT;

/// A CallSid as a map key, held inline (no heap allocation, compared and hashed without a
/// pointer to follow): the in-process session store and the per-call locks key calls by it.
/// Call ids are at most [`CallKey::MAX`] bytes (the server refuses longer ones); Twilio's are 34.
#[derive(Clone, Copy)]
pub struct CallKey {
    len: u8,
    bytes: [u8; CallKey::MAX],
}

impl CallKey {
    /// Longest call id a key holds.
    pub const MAX: usize = 64;

    /// The key of `call_sid`; `None` when it is longer than [`CallKey::MAX`] bytes.
    pub fn new(call_sid: &str) -> Option<Self> {
        let len = u8::try_from(call_sid.len())
            .ok()
            .filter(|&n| usize::from(n) <= Self::MAX)?;
        let mut bytes = [0u8; Self::MAX];
        bytes[..call_sid.len()].copy_from_slice(call_sid.as_bytes());
        Some(CallKey { len, bytes })
    }

    /// The call id.
    pub fn as_str(&self) -> &str {
        // Built from a `&str` cut at its own length: always UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl PartialEq for CallKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for CallKey {}

impl std::hash::Hash for CallKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

/// How maps keyed by [`CallKey`] hash (FxHash: a few instructions per key, where SipHash costs
/// a few hundred). A keyed hash is not needed against collision flooding here: a call id gets
/// into such a map only from a request whose signature checked, that is, as the carrier minted
/// it; nobody without the auth token chooses the keys.
pub type CallHasher = rustc_hash::FxBuildHasher;

impl std::fmt::Debug for CallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CallKey").field(&self.as_str()).finish()
    }
}

/// A variable's value. Secrets are never variables in a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Var {
    /// Text.
    Text(String),
    /// A record (directory account, ticket): field -> text.
    Record(BTreeMap<String, String>),
}

/// What the call is waiting for at its current node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// Nothing: the node has not been entered yet (or the call ended).
    #[default]
    Nothing,
    /// Digits for the current input node.
    Digits,
    /// The second entry of a new secret (`set_secret`).
    Confirm,
    /// The outcome of a transfer.
    Transfer,
}

/// Delivery state of the last message carrying a one-time code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Sent, no report yet.
    #[default]
    Pending,
    /// The provider reported it delivered.
    Delivered,
    /// The provider reported `failed` or `undelivered`.
    Failed,
}

/// A one-time code issued in this call. The code itself is never stored: it is derived from
/// `nonce` with the server's hash key (HMAC-SHA256), so a dump of the store does not contain
/// it, while a resend can send the same code again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Otp {
    /// The `code.send` node that issued it.
    pub send_node: String,
    /// The account it was issued for (binds the code to call + account).
    pub account: String,
    /// Random per-code value (hex) the code is derived from.
    pub nonce: String,
    /// Digits in the code.
    pub length: u32,
    /// When it was issued (ms).
    pub issued_ms: u64,
    /// When it stops being accepted (ms).
    pub expires_ms: u64,
    /// Wrong entries so far.
    pub wrong: u32,
    /// Times it was sent (first send included).
    pub sends: u32,
    /// When it was last sent (ms).
    pub last_send_ms: u64,
    /// Provider id of the last message, to match delivery reports.
    pub message_id: Option<String>,
    /// Delivery state of the last message.
    pub delivery: Delivery,
    /// Killed by too many wrong entries; never accepted again.
    pub dead: bool,
}

/// The last answer sent, so a retried webhook gets the identical answer and no effect repeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Last {
    /// The step token the answered request carried.
    pub token: u64,
    /// What was answered.
    pub answer: Answer,
}

/// Actions as the session keeps them between webhooks: encoded (postcard), because they are
/// read back only when a webhook is retried. Loading and saving a session then copies these
/// bytes instead of decoding and re-encoding every prompt of the last answer, and a step does
/// not clone its actions to keep them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Answer(Box<[u8]>);

impl Answer {
    /// `actions`, encoded.
    pub fn of(actions: &[Action]) -> Self {
        // Encoding actions (plain data) into memory cannot fail; an empty answer would replay
        // as silence, so say so if it ever did.
        match to_postcard(actions) {
            Ok(bytes) => Answer(bytes.into_boxed_slice()),
            Err(e) => {
                tracing::error!(error = %e, "answer not kept: a retry of this webhook gets no actions");
                Answer::default()
            }
        }
    }

    /// The actions again.
    ///
    /// # Errors
    /// When the bytes are not encoded actions (a damaged session).
    pub fn actions(&self) -> Result<Vec<Action>, postcard::Error> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        postcard::from_bytes(&self.0)
    }
}

impl Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Answer;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("encoded actions")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Answer, E> {
                Ok(Answer(v.into()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Answer, E> {
                Ok(Answer(v.into_boxed_slice()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Answer, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Ok(Answer(bytes.into_boxed_slice()))
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// `value` in postcard, in a vector of exactly its size: encoded into a per-thread scratch
/// buffer first and copied once, where growing a fresh vector took several reallocations (eight
/// for a ~700-byte session). Sessions and kept answers are encoded this way on every webhook.
///
/// # Errors
/// When `value` cannot be encoded (postcard's error).
pub fn to_postcard<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
    }
    SCRATCH.with(|scratch| {
        let mut buf = std::mem::take(&mut *scratch.borrow_mut());
        buf.clear();
        let encoded = postcard::to_extend(value, buf)?;
        let exact = encoded.to_vec();
        // A rare huge value does not stay allocated with the thread.
        if encoded.capacity() <= 64 * 1024 {
            *scratch.borrow_mut() = encoded;
        }
        Ok(exact)
    })
}

/// `last` as formats 1 and 2 stored it: the actions themselves. Read into a session of today's
/// shape by [`Session::map_last`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastV2 {
    /// The step token the answered request carried.
    pub token: u64,
    /// What was answered.
    pub actions: Vec<Action>,
}

impl From<LastV2> for Last {
    fn from(old: LastV2) -> Self {
        Last {
            token: old.token,
            answer: Answer::of(&old.actions),
        }
    }
}

/// One call. `L` is how the last answer is held: [`Last`] in this build; formats 1 and 2 are
/// read as `Session<LastV2>` and converted with [`Session::map_last`] (one struct, so the
/// stored formats cannot drift apart field by field).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "L: Serialize", deserialize = "L: Deserialize<'de>"))]
pub struct Session<L = Last> {
    /// Serialization format (see module docs).
    pub format: u32,
    /// The carrier's call id.
    pub call_sid: String,
    /// Flow id.
    pub flow_id: String,
    /// Flow version key the call is pinned to.
    pub flow_version: String,
    /// Caller number as the carrier claims it (never proof).
    pub caller: String,
    /// Start time, ms since the epoch.
    pub started_ms: u64,
    /// Token the next request must carry to advance the call: 0 until the first webhook, then
    /// a fresh random value per step (unguessable, never a count). Chosen this way since format
    /// 3; the field's type, place and meaning are unchanged, so the format is too (a replica
    /// that counts still reads and compares it).
    pub token: u64,
    /// Current node.
    pub node: String,
    /// What the current node waits for.
    pub waiting: Waiting,
    /// Attempts used at the current input node.
    pub attempts: u32,
    /// Current locale.
    pub locale: String,
    /// Flow variables (never secrets).
    #[serde(default)]
    pub vars: BTreeMap<String, Var>,
    /// Entries per node (for `limit`).
    #[serde(default)]
    pub visits: BTreeMap<String, u32>,
    /// Successful verifications so far, all of `verified_account`.
    #[serde(default)]
    pub verifications: u32,
    /// The account `verifications` counts for (see [`Session::verified`]).
    #[serde(default)]
    pub verified_account: Option<String>,
    /// When recording was paused (ms), while inside a secure section.
    #[serde(default)]
    pub recording_paused_ms: Option<u64>,
    /// Keyed hash (hex HMAC-SHA256) of the first entry of a new secret, awaiting confirmation.
    #[serde(default)]
    pub pending_secret: Option<String>,
    /// The call's end, once it ended: the outcome name.
    #[serde(default)]
    pub ended: Option<String>,
    /// The last answer sent.
    #[serde(default)]
    pub last: Option<L>,
    /// The one-time code issued in this call, if any.
    #[serde(default)]
    pub otp: Option<Box<Otp>>,
    /// When the comfort loop at the current node started (ms).
    #[serde(default)]
    pub waiting_since_ms: Option<u64>,
    /// The account the directory confirmed for this call (for the audit trail).
    #[serde(default)]
    pub account: Option<String>,
    /// Audit records of the step in progress; taken into `Step::audit`, never stored.
    #[serde(skip)]
    pub pending_audit: Vec<resetline_audit::Record>,
    /// How many of `pending_audit` went to the journal already (with an effect's intent);
    /// taken into `Step::journaled`, never stored.
    #[serde(skip)]
    pub journaled: usize,
}

impl<L> Session<L> {
    /// The same session with its last answer converted by `f` (reading older formats).
    pub fn map_last<M>(self, f: impl FnOnce(L) -> M) -> Session<M> {
        let Session {
            format,
            call_sid,
            flow_id,
            flow_version,
            caller,
            started_ms,
            token,
            node,
            waiting,
            attempts,
            locale,
            vars,
            visits,
            verifications,
            verified_account,
            recording_paused_ms,
            pending_secret,
            ended,
            otp,
            waiting_since_ms,
            account,
            pending_audit,
            journaled,
            last,
        } = self;
        Session {
            format,
            call_sid,
            flow_id,
            flow_version,
            caller,
            started_ms,
            token,
            node,
            waiting,
            attempts,
            locale,
            vars,
            visits,
            verifications,
            verified_account,
            recording_paused_ms,
            pending_secret,
            ended,
            otp,
            waiting_since_ms,
            account,
            pending_audit,
            journaled,
            last: last.map(f),
        }
    }
}

impl Session {
    /// A new call at no node yet; the first step moves it to the flow's `start`.
    pub fn new(
        call_sid: &str,
        flow_id: &str,
        flow_version: &str,
        caller: &str,
        started_ms: u64,
        locale: &str,
    ) -> Self {
        Session {
            format: FORMAT,
            call_sid: call_sid.to_string(),
            flow_id: flow_id.to_string(),
            flow_version: flow_version.to_string(),
            caller: caller.to_string(),
            started_ms,
            token: 0,
            node: String::new(),
            waiting: Waiting::Nothing,
            attempts: 0,
            locale: locale.to_string(),
            vars: BTreeMap::new(),
            visits: BTreeMap::new(),
            verifications: 0,
            verified_account: None,
            recording_paused_ms: None,
            pending_secret: None,
            ended: None,
            last: None,
            otp: None,
            waiting_since_ms: None,
            account: None,
            pending_audit: Vec::new(),
            journaled: 0,
        }
    }

    /// Counts one successful verification of `account`. A verification of another account
    /// than the one counted so far starts the count again: checks of A never count for B.
    pub fn verified(&mut self, account: &str) {
        if self.verified_account.as_deref() != Some(account) {
            self.verified_account = Some(account.to_string());
            self.verifications = 0;
        }
        self.verifications += 1;
    }

    /// Successful verifications of `account` in this call.
    pub fn verifications_of(&self, account: &str) -> u32 {
        if self.verified_account.as_deref() == Some(account) {
            self.verifications
        } else {
            0
        }
    }

    /// A text variable's value.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.vars.get(name) {
            Some(Var::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// A path (`user.mobile`, `employee_id`, `caller.number`) as text.
    pub fn lookup(&self, path: &[String]) -> Option<String> {
        let root = path.first()?;
        match (root.as_str(), path.get(1).map(String::as_str)) {
            ("caller", Some("number")) => return Some(self.caller.clone()),
            ("caller", Some("country")) => return None,
            ("call", Some("sid")) => return Some(self.call_sid.clone()),
            ("call", Some("locale")) => return Some(self.locale.clone()),
            ("flow", Some("id")) => return Some(self.flow_id.clone()),
            _ => {}
        }
        match (self.vars.get(root)?, path.get(1)) {
            (Var::Text(t), None) => Some(t.clone()),
            (Var::Record(r), Some(field)) => r.get(field).cloned(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Answer, CallKey, Delivery, Last, Otp, Session, Var, Waiting, to_postcard};

    /// A call part-way through: variables (text and a directory record) and visit counts
    /// inserted out of key order, a code issued, an answer kept.
    fn mid_call() -> Session {
        let mut s = Session::new(
            "CA42",
            "pin-reset",
            "v1:abcd",
            "+15551230000",
            1_700_000_000_000,
            "en-US",
        );
        s.token = 0x1234_5678_9abc_def0;
        s.node = "verify_pin".into();
        s.waiting = Waiting::Digits;
        s.attempts = 1;
        s.vars
            .insert("employee_id".into(), Var::Text("12345".into()));
        let record = [
            ("state", "active"),
            ("id", "jdoe"),
            ("mobile", "+15551230000"),
            ("name", "Jane Doe"),
        ];
        s.vars.insert(
            "user".into(),
            Var::Record(
                record
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        );
        s.vars.insert("choice".into(), Var::Text("1".into()));
        for (node, visits) in [("verify_pin", 1), ("identify", 2), ("menu", 1)] {
            s.visits.insert(node.into(), visits);
        }
        s.verified("jdoe");
        s.account = Some("jdoe".into());
        s.otp = Some(Box::new(Otp {
            send_node: "send_code".into(),
            account: "jdoe".into(),
            nonce: "00ff".into(),
            length: 6,
            issued_ms: 1_700_000_001_000,
            expires_ms: 1_700_000_601_000,
            wrong: 1,
            sends: 1,
            last_send_ms: 1_700_000_001_000,
            message_id: Some("SM1".into()),
            delivery: Delivery::Delivered,
            dead: false,
        }));
        s.last = Some(Last {
            token: 7,
            answer: Answer::of(&[crate::Action::Hangup]),
        });
        s
    }

    /// [`mid_call`] as the build before the session maps became `BTreeMap`s stored it (format
    /// 3; its maps were sorted vectors written as maps in key order), in hex.
    const STORED: &str = concat!(
        "0304434134320970696e2d72657365740776313a616263640c2b313535353132333030303080d095",
        "ffbc31f0bdf3d589cf959a120a7665726966795f70696e010105656e2d5553030663686f69636500",
        "01310b656d706c6f7965655f69640005313233343504757365720104026964046a646f65066d6f62",
        "696c650c2b3135353531323330303030046e616d65084a616e6520446f6505737461746506616374",
        "69766503086964656e7469667902046d656e75010a7665726966795f70696e010101046a646f6500",
        "00000107020107010973656e645f636f6465046a646f65043030666606e8d795ffbc31a8a7baffbc",
        "310101e8d795ffbc310103534d3101000001046a646f65",
    );

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn a_session_stored_before_the_maps_changed_reads_back_and_is_stored_again_byte_for_byte() {
        let stored = unhex(STORED);
        let read: Session = postcard::from_bytes(&stored).expect("reads");
        let mut want = mid_call();
        want.format = 3;
        assert_eq!(read, want);
        assert_eq!(to_postcard(&read).expect("encodes"), stored);
    }

    #[test]
    fn call_keys_hold_ids_up_to_64_bytes_and_compare_by_content() {
        let a = CallKey::new("CA0123456789abcdef0123456789abcdef").expect("fits");
        assert_eq!(a.as_str(), "CA0123456789abcdef0123456789abcdef");
        assert_eq!(Some(a), CallKey::new("CA0123456789abcdef0123456789abcdef"));
        assert_ne!(CallKey::new("CA1"), CallKey::new("CA12"));
        assert!(CallKey::new(&"x".repeat(64)).is_some());
        assert!(CallKey::new(&"x".repeat(65)).is_none());
        let mut set = std::collections::HashSet::new();
        set.insert(a);
        assert!(set.contains(&CallKey::new("CA0123456789abcdef0123456789abcdef").expect("fits")));
    }
}
