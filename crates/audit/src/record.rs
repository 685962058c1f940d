//! What one audit record says, and how it becomes one sealed line.
//!
//! A [`Record`] is what the caller hands to a sink: only identifiers, outcomes and
//! already-masked contact data. Phone numbers enter only as [`MaskedNumber`] and e-mail
//! addresses only as [`MaskedEmail`], whose constructors keep nothing but the masked form;
//! no field is meant for a PIN, a code or a new secret, and callers must not put one in the
//! free-text fields (`reason`, `node`, `details`).
//!
//! The sink adds `seq`, `prev` and `mac` and writes the record as one JSON object on one line,
//! keys in this fixed order (`id`, the record's unique [`RecordId`], only when it has one:
//! records written before ids existed have none, and read back exactly as written):
//!
//! ```text
//! {"seq":1,"id":"<32 hex>","time":"2025-03-01T09:00:00Z","event":"session_created","call_id":"CA1",
//!  "account":"unknown","caller":"***0199","destination":null,"factor":null,
//!  "outcome":"info","reason":"","node":"welcome","flow_id":"password-reset",
//!  "flow_version":"3","details":{},"prev":"<64 hex>","mac":"<64 hex>"}
//! ```
//!
//! (shown wrapped; a real line has no newline). The line is canonical: writing the parsed
//! record again gives the same bytes, which `verify` checks.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};

use crate::error::{MaskError, RecordProblem};
use crate::id::RecordId;
use crate::json::{first_non_printable, to_ascii_json};
use crate::key::{AuditKey, TAG_LEN, hex, unhex_tag};

/// Longest record line accepted, in bytes, without its newline.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// Defines a fieldless enum that is written as a fixed lowercase word.
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $word:literal, )+ }
        what = $what:literal;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word written in the trail.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word,)+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(word: &str) -> Result<Self, UnknownWord> {
                match word {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord { what: $what }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let word = String::deserialize(d)?;
                word.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

word_enum! {
    /// What happened. Names follow the OWASP Logging Vocabulary where one fits; the others
    /// are Resetline's own. Each call gives exactly one record per event below; an
    /// irreversible effect (a credential change, a message sent) gives two of its event: the
    /// intent, written before the effect, and the outcome after it.
    pub enum EventType {
        /// A call started: flow id and version are set (OWASP `session_created`).
        SessionCreated => "session_created",
        /// Directory lookup of the caller's ID; `reason` is `found`, `not_found`, `locked`
        /// or `disabled`. `account` is set only when found (never the digits typed).
        Identify => "identify",
        /// A one-time code was sent (`reason` `sent`) or the same code re-sent (`resend`);
        /// `factor` gives the channel and `destination` the masked number or address
        /// (OWASP `authn_token_created`).
        AuthnTokenCreated => "authn_token_created",
        /// A code or PIN check passed; `factor` says which (OWASP `authn_login_success`).
        AuthnLoginSuccess => "authn_login_success",
        /// A code or PIN check failed; `factor` says which, `reason` why (`wrong`,
        /// `expired`, `reused`, ...) (OWASP `authn_login_fail`).
        AuthnLoginFail => "authn_login_fail",
        /// The attempt cap was reached: the code is dead (OWASP `authn_login_fail_max`).
        AuthnLoginFailMax => "authn_login_fail_max",
        /// Lockout: checks for the account are suspended for a while or until an operator
        /// acts; `reason` says which rule (OWASP `authn_login_lock`).
        AuthnLoginLock => "authn_login_lock",
        /// A send or lookup cap refused an action: per number, prefix, country, account or
        /// the global budget (OWASP `excess_rate_limit_exceeded`).
        ExcessRateLimitExceeded => "excess_rate_limit_exceeded",
        /// The SIM-swap hook reported a recent swap: SMS was disabled for the call.
        SimSwapDetected => "sim_swap_detected",
        /// Call recording was paused before a secret prompt (`outcome` failure if the
        /// carrier refused, in which case no secret is collected).
        RecordingPaused => "recording_paused",
        /// Call recording was resumed; `details.paused_ms` holds the suppressed interval.
        RecordingResumed => "recording_resumed",
        /// A new secret was set at the backend (OWASP `authn_password_change`).
        AuthnPasswordChange => "authn_password_change",
        /// Setting a new secret failed: mismatch, policy or backend refusal, in `reason`
        /// (OWASP `authn_password_change_fail`).
        AuthnPasswordChangeFail => "authn_password_change_fail",
        /// A ticket was opened; `details.ticket` holds its number.
        TicketOpened => "ticket_opened",
        /// The call was handed to an agent or queue; `details.target` names it.
        CallTransferred => "call_transferred",
        /// A webhook failed its signature check (`reason` `signature`) or another input
        /// check (OWASP `input_validation_fail`).
        InputValidationFail => "input_validation_fail",
        /// The call ended before the flow did: `reason` `hangup`, `timeout` or
        /// `max_duration`, `node` where (OWASP `session_expired`).
        SessionExpired => "session_expired",
        /// The flow reached an end; `reason` gives the result (`reset_done`, `ticket`,
        /// `transferred`, ...). A call ends with this or with `session_expired`, not both.
        CallEnded => "call_ended",
        /// The retention job purged records older than the configured period;
        /// `details.before` and `details.removed` say what.
        RetentionPurge => "retention_purge",
        /// A service-desk operator read an account's lockout state (`resetline lockout
        /// show`); `details.by` names the operator, the other details what was shown.
        LockoutShown => "lockout_shown",
        /// A service-desk operator cleared an account's PIN and code failures (`resetline
        /// lockout clear`); `details.by` names the operator, the other details the state
        /// before.
        LockoutCleared => "lockout_cleared",
        /// A notice (e.g. "your PIN was changed") was sent; `destination` is masked.
        NotificationSent => "notification_sent",
    }
    what = "event type";
}

word_enum! {
    /// How the event turned out.
    pub enum Outcome {
        /// The action succeeded (a check passed, a code was sent, a secret was set).
        Success => "success",
        /// The caller's attempt failed (wrong code, not found, policy refusal).
        Failure => "failure",
        /// The system could not act (a backend or carrier error), not the caller's doing.
        Error => "error",
        /// A fact with no pass/fail meaning (call started, call ended, recording resumed).
        Info => "info",
        /// Written durably before an irreversible effect (a credential change, a message
        /// sent): the effect is about to happen. Its outcome record names it in
        /// `details.intent`.
        Intent => "intent",
        /// The process stopped between an intent and its outcome: the effect may or may not
        /// have happened (reason `outcome_unknown`, `details.intent` names the intent).
        Unknown => "unknown",
    }
    what = "outcome";
}

word_enum! {
    /// The verification factor or code channel an event is about.
    pub enum Factor {
        /// A one-time code sent by SMS.
        SmsCode => "sms_code",
        /// A one-time code sent by e-mail.
        EmailCode => "email_code",
        /// The account's PIN.
        Pin => "pin",
    }
    what = "factor";
}

/// A word in the trail that is not one this version knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    what: &'static str,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {}", self.what)
    }
}

impl std::error::Error for UnknownWord {}

/// A phone number reduced to its last four digits, written `***0199`.
///
/// The only ways to get one are [`MaskedNumber::mask`], which drops everything but the last
/// four digits, and reading a stored record, which accepts only the masked form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MaskedNumber(String);

impl MaskedNumber {
    /// Fewest digits a full number must have: with fewer, four digits would reveal most of it.
    pub const MIN_DIGITS: usize = 7;
    /// Most digits a full number may have (E.164).
    pub const MAX_DIGITS: usize = 15;

    /// Masks a full number such as `+1 (415) 555-0199` to `***0199`.
    ///
    /// Accepts digits, one leading `+`, spaces, `-`, `.`, `(` and `)`.
    ///
    /// # Errors
    /// [`MaskError`] when the text is not a phone number of 7 to 15 digits. The error never
    /// contains the input.
    pub fn mask(full: &str) -> Result<Self, MaskError> {
        let mut count = 0usize;
        // The last four digits seen, oldest first once four were seen.
        let mut last4 = [b'0'; 4];
        for (at, b) in full.bytes().enumerate() {
            match b {
                b'0'..=b'9' => {
                    last4[count % 4] = b;
                    count += 1;
                }
                b'+' if at == 0 => {}
                b' ' | b'-' | b'.' | b'(' | b')' => {}
                _ => return Err(MaskError::NotAPhoneNumber),
            }
        }
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&count) {
            return Err(MaskError::NotAPhoneNumber);
        }
        let mut masked = String::with_capacity(7);
        masked.push_str("***");
        for i in 0..4 {
            masked.push(char::from(last4[(count + i) % 4]));
        }
        Ok(Self(masked))
    }

    /// The masked form, e.g. `***0199`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last four digits, e.g. `0199` (for "the number ending in 0-1-9-9").
    pub fn last_four(&self) -> &str {
        self.0.get(3..).unwrap_or_default()
    }

    fn from_masked(text: &str) -> Option<Self> {
        let digits = text.strip_prefix("***")?;
        (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(text.to_owned()))
    }
}

impl fmt::Display for MaskedNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for MaskedNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MaskedNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_masked(&text)
            .ok_or_else(|| serde::de::Error::custom("caller is not a masked number (***dddd)"))
    }
}

/// An e-mail address reduced to its first letter and its domain: `j***@example.com`.
///
/// Like [`MaskedNumber`], it can only be made by masking a full address or by reading a
/// stored record that holds the masked form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MaskedEmail(String);

impl MaskedEmail {
    /// Masks `jane.doe@Example.com` to `j***@example.com` (a first character that is not an
    /// ASCII letter or digit becomes `*`).
    ///
    /// # Errors
    /// [`MaskError`] when the text is not a plain ASCII address `local@domain.tld`. The error
    /// never contains the input.
    pub fn mask(full: &str) -> Result<Self, MaskError> {
        let (local, domain) = full.split_once('@').ok_or(MaskError::NotAnEmail)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local.bytes().all(|b| b.is_ascii_graphic() && b != b'@');
        if !local_ok || !domain_ok(domain) {
            return Err(MaskError::NotAnEmail);
        }
        let first = local
            .chars()
            .next()
            .filter(char::is_ascii_alphanumeric)
            .unwrap_or('*');
        Ok(Self(format!(
            "{}***@{}",
            first.to_ascii_lowercase(),
            domain.to_ascii_lowercase()
        )))
    }

    /// The masked form, e.g. `j***@example.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn from_masked(text: &str) -> Option<Self> {
        let (local, domain) = text.split_once('@')?;
        let mut chars = local.chars();
        let first = chars.next()?;
        let first_ok = first == '*' || first.is_ascii_lowercase() || first.is_ascii_digit();
        let shape_ok = first_ok && chars.as_str() == "***";
        (shape_ok && domain_ok(domain) && domain == domain.to_ascii_lowercase())
            .then(|| Self(text.to_owned()))
    }
}

fn domain_ok(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && !domain.contains("..")
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl fmt::Display for MaskedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a one-time code was sent, masked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A phone number of record.
    Phone(MaskedNumber),
    /// An e-mail address of record.
    Email(MaskedEmail),
}

impl Destination {
    /// The masked form as written in the trail.
    pub fn as_str(&self) -> &str {
        match self {
            Destination::Phone(n) => n.as_str(),
            Destination::Email(e) => e.as_str(),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = if text.contains('@') {
            MaskedEmail::from_masked(&text).map(Destination::Email)
        } else {
            MaskedNumber::from_masked(&text).map(Destination::Phone)
        };
        parsed.ok_or_else(|| {
            serde::de::Error::custom("destination is not a masked number or address")
        })
    }
}

/// The `account` value when the caller is not (yet) tied to a directory account.
pub const UNKNOWN_ACCOUNT: &str = "unknown";

/// One audit event, as the caller describes it. The sink adds `seq`, `prev` and `mac`.
///
/// Every field is non-secret by construction or by contract: contact data only in masked
/// types; `account` only once the directory confirmed it (never the digits a caller typed,
/// which may be a mistyped PIN); free text holds identifiers and reasons chosen by the code,
/// never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's unique id, given when it first enters the audit machinery; a sink never
    /// writes one id twice. `None` in records written before ids existed.
    pub id: Option<RecordId>,
    /// When the event happened, given by the caller (the crate reads no clock). Written in
    /// UTC, RFC 3339.
    pub time: OffsetDateTime,
    /// What happened.
    pub event: EventType,
    /// The carrier's call id (e.g. Twilio `CallSid`); empty for events outside a call.
    pub call_id: String,
    /// The directory account id, or [`UNKNOWN_ACCOUNT`].
    pub account: String,
    /// The caller's number, masked; `None` when withheld or not a number.
    pub caller: Option<MaskedNumber>,
    /// Where a code was sent, masked.
    pub destination: Option<Destination>,
    /// The factor or channel concerned.
    pub factor: Option<Factor>,
    /// How it turned out.
    pub outcome: Outcome,
    /// Why, as a short code word chosen by the engine (`not_found`, `wrong`, `hangup`, ...).
    pub reason: String,
    /// Path of the flow node where it happened.
    pub node: String,
    /// The flow's id.
    pub flow_id: String,
    /// The flow's version.
    pub flow_version: String,
    /// Extra non-secret details, e.g. `ticket`, `target`, `paused_ms`.
    pub details: BTreeMap<String, String>,
}

impl Record {
    /// A record with the required fields; the account is [`UNKNOWN_ACCOUNT`] and the optional
    /// fields empty until set with the `with_*` methods.
    pub fn new(
        time: OffsetDateTime,
        event: EventType,
        outcome: Outcome,
        call_id: impl Into<String>,
        flow_id: impl Into<String>,
        flow_version: impl Into<String>,
    ) -> Self {
        Self {
            id: None,
            time,
            event,
            call_id: call_id.into(),
            account: UNKNOWN_ACCOUNT.to_owned(),
            caller: None,
            destination: None,
            factor: None,
            outcome,
            reason: String::new(),
            node: String::new(),
            flow_id: flow_id.into(),
            flow_version: flow_version.into(),
            details: BTreeMap::new(),
        }
    }

    /// Sets the record's id.
    #[must_use]
    pub fn with_id(mut self, id: RecordId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the directory-confirmed account id.
    #[must_use]
    pub fn with_account(mut self, account: impl Into<String>) -> Self {
        self.account = account.into();
        self
    }

    /// Sets the masked caller number.
    #[must_use]
    pub fn with_caller(mut self, caller: MaskedNumber) -> Self {
        self.caller = Some(caller);
        self
    }

    /// Sets the masked code destination.
    #[must_use]
    pub fn with_destination(mut self, destination: Destination) -> Self {
        self.destination = Some(destination);
        self
    }

    /// Sets the factor or channel.
    #[must_use]
    pub fn with_factor(mut self, factor: Factor) -> Self {
        self.factor = Some(factor);
        self
    }

    /// Sets the reason word.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Sets the node path.
    #[must_use]
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// Adds one non-secret detail.
    #[must_use]
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// The UTC calendar date of the event (used for daily rotation).
    pub(crate) fn utc_date(&self) -> Option<Date> {
        self.time
            .checked_to_offset(UtcOffset::UTC)
            .map(OffsetDateTime::date)
    }
}

/// A record as read back from the trail, with the fields the sink added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Position in the chain, from 1, contiguous across files.
    pub seq: u64,
    /// The record itself.
    pub record: Record,
    /// Hex keyed hash of the previous record's line (or the chain's genesis value).
    pub prev: String,
    /// Hex keyed hash of this record's line without `mac`.
    pub mac: String,
}

impl StoredRecord {
    /// Parses one line (without its newline) WITHOUT checking the key: for reading and
    /// filtering a trail. Use [`crate::verify`] to know it is authentic.
    ///
    /// # Errors
    /// The [`RecordProblem`] that makes the line unreadable or not canonical.
    pub fn parse(line: &str) -> Result<Self, RecordProblem> {
        open_line(line.as_bytes(), None).map_err(|(problem, _)| problem)
    }
}

/// Formats a time as RFC 3339 in UTC (the only form the trail writes).
pub(crate) fn format_time(time: OffsetDateTime) -> Result<String, String> {
    time.checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| "time out of range".to_owned())?
        .format(&Rfc3339)
        .map_err(|e| format!("time not representable in RFC 3339: {e}"))
}

pub(crate) fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("time: {e}"))
}

#[derive(Serialize)]
struct BodyOut<'a> {
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<RecordId>,
    time: &'a str,
    event: EventType,
    call_id: &'a str,
    account: &'a str,
    caller: Option<&'a MaskedNumber>,
    destination: Option<&'a Destination>,
    factor: Option<Factor>,
    outcome: Outcome,
    reason: &'a str,
    node: &'a str,
    flow_id: &'a str,
    flow_version: &'a str,
    details: &'a BTreeMap<String, String>,
    prev: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    seq: u64,
    #[serde(default)]
    id: Option<RecordId>,
    time: String,
    event: EventType,
    call_id: String,
    account: String,
    caller: Option<MaskedNumber>,
    destination: Option<Destination>,
    factor: Option<Factor>,
    outcome: Outcome,
    reason: String,
    node: String,
    flow_id: String,
    flow_version: String,
    details: BTreeMap<String, String>,
    prev: String,
    mac: String,
}

/// The line without its `mac` field: what the `mac` covers.
fn body(seq: u64, record: &Record, prev: &str) -> Result<Vec<u8>, String> {
    let time = format_time(record.time)?;
    to_ascii_json(&BodyOut {
        seq,
        id: record.id,
        time: &time,
        event: record.event,
        call_id: &record.call_id,
        account: &record.account,
        caller: record.caller.as_ref(),
        destination: record.destination.as_ref(),
        factor: record.factor,
        outcome: record.outcome,
        reason: &record.reason,
        node: &record.node,
        flow_id: &record.flow_id,
        flow_version: &record.flow_version,
        details: &record.details,
        prev,
    })
}

/// Appends `,"name":"<hex tag>"}` to a serialised object in place of its closing brace.
pub(crate) fn attach_tag(
    mut body: Vec<u8>,
    name: &str,
    tag: &[u8; TAG_LEN],
) -> Result<Vec<u8>, String> {
    if body.pop() != Some(b'}') {
        return Err("serialised value is not an object".to_owned());
    }
    if body.len() > 1 {
        body.push(b',');
    }
    body.extend_from_slice(format!("\"{name}\":\"{}\"}}", hex(tag)).as_bytes());
    Ok(body)
}

/// Seals a record: its line (no newline) with `seq`, `prev` and `mac`.
pub(crate) fn seal(
    key: &AuditKey,
    seq: u64,
    record: &Record,
    prev: &str,
) -> Result<Vec<u8>, String> {
    let body = body(seq, record, prev)?;
    let mac = key.record_mac(&body);
    attach_tag(body, "mac", &mac)
}

/// Reads one record line (no newline): printable ASCII, well-formed, canonical and, when a
/// key is given, carrying a valid `mac`. On failure also gives the seq if it could be read.
pub(crate) fn open_line(
    line: &[u8],
    key: Option<&AuditKey>,
) -> Result<StoredRecord, (RecordProblem, Option<u64>)> {
    if line.len() > MAX_LINE_LEN {
        return Err((RecordProblem::TooLong, None));
    }
    if let Some(column) = first_non_printable(line) {
        return Err((RecordProblem::NotAscii { column: column + 1 }, None));
    }
    let parsed: LineIn = serde_json::from_slice(line).map_err(|e| {
        (
            RecordProblem::Malformed {
                detail: short(&e.to_string()),
            },
            None,
        )
    })?;
    let seq = Some(parsed.seq);
    let time = parse_time(&parsed.time).map_err(|detail| {
        (
            RecordProblem::Malformed {
                detail: short(&detail),
            },
            seq,
        )
    })?;
    let mac = unhex_tag(&parsed.mac).ok_or((
        RecordProblem::Malformed {
            detail: "mac is not 64 lowercase hex digits".to_owned(),
        },
        seq,
    ))?;
    let record = Record {
        id: parsed.id,
        time,
        event: parsed.event,
        call_id: parsed.call_id,
        account: parsed.account,
        caller: parsed.caller,
        destination: parsed.destination,
        factor: parsed.factor,
        outcome: parsed.outcome,
        reason: parsed.reason,
        node: parsed.node,
        flow_id: parsed.flow_id,
        flow_version: parsed.flow_version,
        details: parsed.details,
    };
    let body = body(parsed.seq, &record, &parsed.prev).map_err(|detail| {
        (
            RecordProblem::Malformed {
                detail: short(&detail),
            },
            seq,
        )
    })?;
    let rebuilt = attach_tag(body.clone(), "mac", &mac)
        .map_err(|detail| (RecordProblem::Malformed { detail }, seq))?;
    if rebuilt != line {
        return Err((RecordProblem::NotCanonical, seq));
    }
    if let Some(key) = key
        && !key.check_record_mac(&body, &mac)
    {
        return Err((RecordProblem::BadMac, seq));
    }
    Ok(StoredRecord {
        seq: parsed.seq,
        record,
        prev: parsed.prev,
        mac: parsed.mac,
    })
}

/// Caps an error detail so a hostile line cannot make a huge message.
pub(crate) fn short(detail: &str) -> String {
    const MAX: usize = 200;
    match detail.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", detail.get(..at).unwrap_or_default()),
        None => detail.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::key::tests::test_key;
    use proptest::prelude::*;
    use time::macros::datetime;

    pub(crate) fn sample(n: u64) -> Record {
        Record::new(
            datetime!(2025-03-01 09:00:00 UTC) + time::Duration::seconds(n as i64),
            EventType::AuthnLoginFail,
            Outcome::Failure,
            format!("CA{n:032x}"),
            "password-reset",
            "3",
        )
        .with_account("E1234")
        .with_caller(MaskedNumber::mask("+1 415 555 0199").expect("number"))
        .with_factor(Factor::SmsCode)
        .with_reason("wrong")
        .with_node("verify_code")
        .with_detail("attempt", n.to_string())
    }

    #[test]
    fn numbers_are_masked_to_the_last_four_digits() {
        let m = MaskedNumber::mask("+1 (415) 555-0199").expect("mask");
        assert_eq!(m.as_str(), "***0199");
        assert_eq!(m.last_four(), "0199");
        assert_eq!(format!("{m} {m:?}"), "***0199 MaskedNumber(\"***0199\")");
        assert_eq!(
            MaskedNumber::mask("4155550199").expect("mask").as_str(),
            "***0199"
        );
        for (full, masked) in [
            ("5550123", "***0123"),
            ("+123456789012345", "***2345"),
            ("+1.234.567-89(01)", "***8901"),
        ] {
            assert_eq!(
                MaskedNumber::mask(full).expect(full).as_str(),
                masked,
                "{full}"
            );
        }
        assert!(
            MaskedNumber::mask("+1234567890123456").is_err(),
            "16 digits"
        );
        assert!(
            MaskedNumber::mask("1+234567890").is_err(),
            "a plus not in front"
        );
    }

    #[test]
    fn non_numbers_and_short_numbers_are_refused_without_echo() {
        for bad in [
            "",
            "12345",
            "123456",
            "anonymous",
            "+1 415 555 0199 x2",
            "1+4155550199",
            "1234567890123456",
            "41555501\n99",
            "٤١٥٥٥٥٠١٩٩",
        ] {
            let err = MaskedNumber::mask(bad).expect_err(bad);
            assert_eq!(err, MaskError::NotAPhoneNumber);
            assert!(!err.to_string().contains("0199"));
        }
    }

    #[test]
    fn masked_numbers_read_back_only_in_masked_form() {
        for good in ["***0199", "***0000"] {
            let parsed: MaskedNumber = serde_json::from_str(&format!("\"{good}\"")).expect(good);
            assert_eq!(parsed.as_str(), good);
        }
        for bad in [
            "+14155550199",
            "***01999",
            "**0199",
            "***01a9",
            "4155550199",
        ] {
            assert!(
                serde_json::from_str::<MaskedNumber>(&format!("\"{bad}\"")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn emails_are_masked_to_first_letter_and_domain() {
        let m = MaskedEmail::mask("Jane.Doe@Example.COM").expect("mask");
        assert_eq!(m.as_str(), "j***@example.com");
        assert_eq!(
            MaskedEmail::mask("_x@a.io").expect("mask").as_str(),
            "****@a.io"
        );
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@localhost",
            "ja ne@x.com",
            "jane@x..com",
            "jane@ex\u{e4}mple.com",
            "a@b@c.com",
        ] {
            assert_eq!(
                MaskedEmail::mask(bad),
                Err(MaskError::NotAnEmail),
                "{bad:?}"
            );
        }
        let d: Destination = serde_json::from_str("\"j***@example.com\"").expect("email");
        assert_eq!(d, Destination::Email(m));
        let d: Destination = serde_json::from_str("\"***0199\"").expect("phone");
        assert!(matches!(d, Destination::Phone(_)));
        for bad in [
            "\"jane@example.com\"",
            "\"ja***@example.com\"",
            "\"+14155550199\"",
        ] {
            assert!(serde_json::from_str::<Destination>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_names_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for event in EventType::ALL {
            assert!(seen.insert(event.as_str()), "duplicate {event}");
            assert_eq!(event.as_str().parse::<EventType>(), Ok(*event));
            let json = serde_json::to_string(event).expect("serialise");
            assert_eq!(json, format!("\"{event}\""));
        }
        for owasp in [
            "authn_login_success",
            "authn_login_fail",
            "authn_login_fail_max",
            "authn_login_lock",
            "authn_password_change",
            "authn_password_change_fail",
            "authn_token_created",
            "session_created",
            "session_expired",
            "input_validation_fail",
            "excess_rate_limit_exceeded",
        ] {
            assert!(seen.contains(owasp), "{owasp}");
        }
        assert!("authn_login_faiL".parse::<EventType>().is_err());
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(*o));
        }
        for f in Factor::ALL {
            assert_eq!(f.as_str().parse::<Factor>(), Ok(*f));
        }
    }

    #[test]
    fn a_sealed_line_has_the_documented_shape_and_reads_back() {
        let key = test_key();
        let record = Record::new(
            datetime!(2025-03-01 09:00:00 UTC),
            EventType::SessionCreated,
            Outcome::Info,
            "CA1",
            "password-reset",
            "3",
        )
        .with_caller(MaskedNumber::mask("+14155550199").expect("mask"))
        .with_node("welcome");
        let prev = "0".repeat(64);
        let line = seal(&key, 1, &record, &prev).expect("seal");
        let text = String::from_utf8(line.clone()).expect("utf8");
        let expected_start = concat!(
            r#"{"seq":1,"time":"2025-03-01T09:00:00Z","event":"session_created","call_id":"CA1","#,
            r#""account":"unknown","caller":"***0199","destination":null,"factor":null,"#,
            r#""outcome":"info","reason":"","node":"welcome","flow_id":"password-reset","#,
            r#""flow_version":"3","details":{},"prev":"0000"#
        );
        assert!(text.starts_with(expected_start), "{text}");
        assert!(text.contains(r#"","mac":""#));
        let back = open_line(&line, Some(&key)).expect("open");
        assert_eq!(back.seq, 1);
        assert_eq!(back.record, record);
        assert_eq!(back.prev, prev);
        assert_eq!(StoredRecord::parse(&text).expect("parse").record, record);
    }

    #[test]
    fn a_record_id_follows_seq_and_lines_without_one_still_read_back() {
        let key = test_key();
        let id = crate::RecordId::from_bytes([0x5a; 16]);
        let line = seal(&key, 4, &sample(4).with_id(id), "p").expect("seal");
        let text = String::from_utf8(line.clone()).expect("ascii");
        assert!(
            text.starts_with(&format!("{{\"seq\":4,\"id\":\"{id}\",\"time\":")),
            "{text}"
        );
        assert_eq!(
            open_line(&line, Some(&key)).expect("open").record.id,
            Some(id)
        );
        // A line from before ids existed: no `id` key, read back as it is.
        let old = seal(&key, 5, &sample(5), "p").expect("seal");
        assert!(!String::from_utf8_lossy(&old).contains("\"id\""));
        assert_eq!(open_line(&old, Some(&key)).expect("open").record.id, None);
        // `null` or a non-canonical id is not what the writer makes.
        let null = String::from_utf8(old).expect("ascii").replacen(
            "{\"seq\":5,",
            "{\"seq\":5,\"id\":null,",
            1,
        );
        assert!(matches!(
            open_line(null.as_bytes(), None),
            Err((RecordProblem::NotCanonical, Some(5)))
        ));
        let upper = text.replace(&id.to_string(), &id.to_string().to_uppercase());
        assert!(matches!(
            open_line(upper.as_bytes(), None),
            Err((RecordProblem::Malformed { .. }, None))
        ));
    }

    #[test]
    fn times_are_written_in_utc_with_their_fraction() {
        let key = test_key();
        let mut record = sample(0);
        record.time = datetime!(2025-03-01 11:30:00.25 +02:30);
        let line = seal(&key, 1, &record, "p").expect("seal");
        let text = String::from_utf8(line.clone()).expect("utf8");
        assert!(
            text.contains(r#""time":"2025-03-01T09:00:00.25Z""#),
            "{text}"
        );
        assert_eq!(
            open_line(&line, Some(&key)).expect("open").record.time,
            record.time
        );
        record.time = datetime!(-0001-01-01 00:00:00 UTC);
        assert!(seal(&key, 1, &record, "p").is_err());
    }

    #[test]
    fn injected_newlines_escapes_and_json_specials_stay_one_escaped_line() {
        let key = test_key();
        let hostile = "x\n{\"seq\":99,\"event\":\"authn_login_success\"}\r\n\u{1b}[2J\u{1b}]0;pwn\u{7}\
                       \u{2028}\u{2029}\u{85}\u{9b}31m\u{202e}\"},\"mac\":\"00\"\t\0\\";
        let record = sample(1)
            .with_reason(hostile)
            .with_node(hostile)
            .with_detail(hostile, hostile);
        let mut record = record;
        record.call_id = hostile.to_owned();
        record.account = hostile.to_owned();
        record.flow_id = hostile.to_owned();
        let line = seal(&key, 7, &record, "prev").expect("seal");
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r') && !line.contains(&0x1b));
        assert_eq!(first_non_printable(&line), None);
        let text = String::from_utf8(line.clone()).expect("ascii");
        assert!(text.contains(r#"x\n{\"seq\":99"#), "{text}");
        assert!(text.contains(r#"\u001b[2J"#));
        assert!(text.contains(r#"\u2028\u2029\u0085\u009b"#));
        let back = open_line(&line, Some(&key)).expect("open");
        assert_eq!(back.seq, 7);
        assert_eq!(back.record, record);
    }

    #[test]
    fn reading_rejects_non_ascii_unknown_fields_and_non_canonical_lines() {
        let key = test_key();
        let line = seal(&key, 1, &sample(1), "p").expect("seal");
        let text = String::from_utf8(line).expect("utf8");

        let raw_unicode = text.replace("wrong", "wr\u{f6}ng");
        assert!(matches!(
            open_line(raw_unicode.as_bytes(), Some(&key)),
            Err((RecordProblem::NotAscii { .. }, None))
        ));
        let extra = text.replacen("{\"seq\"", "{\"pin\":\"1234\",\"seq\"", 1);
        assert!(matches!(
            open_line(extra.as_bytes(), Some(&key)),
            Err((RecordProblem::Malformed { .. }, None))
        ));
        let spaced = text.replacen("\"seq\":1", "\"seq\": 1", 1);
        assert!(matches!(
            open_line(spaced.as_bytes(), Some(&key)),
            Err((RecordProblem::NotCanonical, Some(1)))
        ));
        let dup = text.replacen("{\"seq\":1,", "{\"seq\":1,\"seq\":1,", 1);
        assert!(open_line(dup.as_bytes(), Some(&key)).is_err());
        let changed = text.replace("wrong", "wronG");
        assert!(matches!(
            open_line(changed.as_bytes(), Some(&key)),
            Err((RecordProblem::BadMac, Some(1)))
        ));
        // Without a key the same line parses: `parse` is for reading, not for trust.
        assert!(StoredRecord::parse(&changed).is_ok());
    }

    fn hostile_string() -> impl Strategy<Value = String> {
        let special = prop_oneof![
            Just('\n'),
            Just('\r'),
            Just('\u{1b}'),
            Just('"'),
            Just('\\'),
            Just('\0'),
            Just('\u{7f}'),
            Just('\u{85}'),
            Just('\u{2028}'),
            Just('\u{2029}'),
            Just('{'),
            Just('}'),
            Just('\u{feff}'),
            Just('\u{202e}'),
        ];
        let one = prop_oneof![3 => any::<char>(), 1 => special];
        proptest::collection::vec(one, 0..40).prop_map(String::from_iter)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn caller_controlled_strings_make_exactly_one_line_that_reads_back(
            call_id in hostile_string(),
            reason in hostile_string(),
            node in hostile_string(),
            key_text in hostile_string(),
            value in hostile_string(),
            seq in 1u64..u64::MAX,
        ) {
            let key = test_key();
            let mut record = sample(3).with_reason(reason).with_node(node).with_detail(key_text, value);
            record.call_id = call_id;
            let line = seal(&key, seq, &record, "prev").expect("seal");
            prop_assert_eq!(first_non_printable(&line), None);
            let mut with_newline = line.clone();
            with_newline.push(b'\n');
            prop_assert_eq!(with_newline.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(), 1);
            let text = String::from_utf8(line.clone()).expect("ascii");
            prop_assert_eq!(text.lines().count(), 1);
            let back = open_line(&line, Some(&key)).expect("reads back");
            prop_assert_eq!(back.seq, seq);
            prop_assert_eq!(back.record, record);
        }
    }
}
