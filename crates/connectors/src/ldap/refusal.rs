//! What an LDAP server's answer means for the caller: to a password change, the ppolicy
//! response control (draft-behera-ldap-password-policy), OpenLDAP's diagnostic texts, Active
//! Directory's `unicodePwd` value, its policy-hints control and its error codes; to a PIN
//! check by bind, Active Directory's `data` codes.
//!
//! Invariant: a refusal always keeps the server's own words (result code, diagnostic text,
//! ppolicy error) in `reason` for logs and the audit trail, and picks the prompt key only from
//! [`PROMPTS`]; nothing here sees the new secret except `unicode_pwd`, which only encodes it.
//!
//! # Active Directory's words
//!
//! AD puts a Win32 error code at the head of its diagnostic text: `0000052D`
//! (ERROR_PASSWORD_RESTRICTION) for every policy refusal, as `constraintViolation` (Samba,
//! older Windows) or `unwillingToPerform` (Windows Server 2008 and later), so the code, not the
//! result code, says it is a policy refusal. Windows says no more; Samba adds which rule failed
//! ("the password is too short", "does not meet the complexity criteria", "was already used
//! (in history)", "is too young to change"), and then the caller hears that rule. AD checks
//! history on a reset only with the policy-hints control (`policy_hints`, Windows Server
//! 2012 and later; Samba 4.17 ignores it) and the minimum age never (it applies to a person's
//! own change), so `policy_reused` and `policy_too_recent` come from a Windows DC only as
//! `policy_rejected`, and from Samba not at all, on a reset. A bind refused with result 49
//! carries a `data` code: `52e` wrong password, `773` / `532` right password that must be
//! changed / has expired, `775` locked, `533` disabled, `701` account expired, `530` / `531`
//! / `52f` logon restrictions.

use ldap3::controls::RawControl;
use resetline_engine::{BackendError, Secret, SetSecretError};

use super::BACKEND;

/// OID of the password policy request/response control.
pub(crate) const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";

/// Prompt keys a directory refusal can be spoken as. `policy_complexity`, `policy_reused` and
/// `policy_too_recent` exist in the shipped catalogs; a catalog without them speaks
/// `policy_rejected` (the engine falls back when a flow's catalog lacks the key).
pub const PROMPTS: &[&str] = &[
    "policy_too_short",
    "policy_complexity",
    "policy_reused",
    "policy_too_recent",
    "policy_rejected",
];

/// OID of Active Directory's LDAP_SERVER_POLICY_HINTS_OID control ([MS-ADTS] 3.1.1.3.4.1.27).
const POLICY_HINTS_OID: &str = "1.2.840.113556.1.4.2239";

/// Win32 codes at the head of an AD diagnostic text this module names.
const ERROR_ACCESS_DENIED: u32 = 0x5;
const ERROR_PASSWORD_RESTRICTION: u32 = 0x52D;

/// LDAP result codes (RFC 4511 appendix A) this module names.
mod rc {
    pub(crate) const INVALID_CREDENTIALS: u32 = 49;
    pub(crate) const CONSTRAINT_VIOLATION: u32 = 19;
    pub(crate) const INSUFFICIENT_ACCESS: u32 = 50;
    pub(crate) const UNWILLING: u32 = 53;
    pub(crate) const NO_SUCH_OBJECT: u32 = 32;
}

pub(crate) use rc::INVALID_CREDENTIALS;

/// The `error` field of a ppolicy response control value, if it has one.
///
/// ```text
/// PasswordPolicyResponseValue ::= SEQUENCE {
///     warning [0] CHOICE { timeBeforeExpiration [0] INTEGER, graceAuthNsRemaining [1] INTEGER } OPTIONAL,
///     error   [1] ENUMERATED { passwordExpired (0), accountLocked (1), changeAfterReset (2),
///                  passwordModNotAllowed (3), mustSupplyOldPassword (4),
///                  insufficientPasswordQuality (5), passwordTooShort (6),
///                  passwordTooYoung (7), passwordInHistory (8) } OPTIONAL }
/// ```
pub(crate) fn ppolicy_error(value: &[u8]) -> Option<u8> {
    let (tag, body, _) = tlv(value)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = body;
    while !rest.is_empty() {
        let (tag, content, next) = tlv(rest)?;
        if tag == 0x81 && content.len() == 1 {
            return Some(content[0]);
        }
        rest = next;
    }
    None
}

/// One BER tag-length-value: (tag, content, the bytes after it). Definite lengths only, up to
/// two length bytes (a control value is tiny).
fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&l, rest) = rest.split_first()?;
            (usize::from(l), rest)
        }
        0x82 => {
            let (l, rest) = rest.split_at_checked(2)?;
            (usize::from(l[0]) << 8 | usize::from(l[1]), rest)
        }
        _ => return None,
    };
    let (content, after) = rest.split_at_checked(len)?;
    Some((tag, content, after))
}

/// Maps a refused OpenLDAP password change (result code, diagnostic text, ppolicy error) to
/// what the engine does with it.
pub(crate) fn openldap(rc: u32, text: &str, ppolicy: Option<u8>) -> SetSecretError {
    let reason = match ppolicy {
        Some(e) => format!("{text} (LDAP result {rc}, ppolicy error {e})"),
        None => format!("{text} (LDAP result {rc})"),
    };
    let rejected = |prompt: &str| SetSecretError::Rejected {
        prompt: prompt.to_owned(),
        reason: reason.clone(),
    };
    match ppolicy {
        Some(1) => return SetSecretError::Locked,
        Some(3) | Some(4) => {
            return SetSecretError::Backend(BackendError::new(
                BACKEND,
                format!("the directory does not let the service account set passwords: {reason}"),
            ));
        }
        Some(5) => return rejected("policy_rejected"),
        Some(6) => return rejected("policy_too_short"),
        Some(7) => return rejected("policy_too_recent"),
        Some(8) => return rejected("policy_reused"),
        _ => {}
    }
    match rc {
        rc::CONSTRAINT_VIOLATION => rejected(spoken(text)),
        rc::INSUFFICIENT_ACCESS => SetSecretError::Backend(BackendError::new(
            BACKEND,
            format!("the service account may not write the password (check the ACL): {reason}"),
        )),
        _ => SetSecretError::Backend(BackendError::new(
            BACKEND,
            format!("password change failed: {reason}"),
        )),
    }
}

/// The prompt for a policy refusal, from the rule the server's text names.
fn spoken(text: &str) -> &'static str {
    let lower = text.to_ascii_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if says(&["too short"]) {
        "policy_too_short"
    } else if says(&["complexity"]) {
        "policy_complexity"
    } else if says(&[
        "history",
        "already used",
        "not being changed",
        "not changed",
    ]) {
        "policy_reused"
    } else if says(&["too young", "too recently"]) {
        "policy_too_recent"
    } else {
        "policy_rejected"
    }
}

/// The Win32 code at the head of an Active Directory diagnostic text (`0000052D: ...`).
fn win32_code(text: &str) -> Option<u32> {
    let (head, _) = text.split_once(':')?;
    (head.len() == 8)
        .then(|| u32::from_str_radix(head, 16).ok())
        .flatten()
}

/// Maps a refused Active Directory `unicodePwd` replace (result code and diagnostic text) to
/// what the engine does with it: see the module docs.
pub fn active_directory(rc: u32, text: &str) -> SetSecretError {
    let reason = format!("{text} (LDAP result {rc})");
    let backend =
        |why: &str| SetSecretError::Backend(BackendError::new(BACKEND, format!("{why}: {reason}")));
    let code = win32_code(text);
    if code == Some(ERROR_PASSWORD_RESTRICTION) || rc == rc::CONSTRAINT_VIOLATION {
        return SetSecretError::Rejected {
            prompt: spoken(text).into(),
            reason,
        };
    }
    if code == Some(ERROR_ACCESS_DENIED) || rc == rc::INSUFFICIENT_ACCESS {
        return backend(
            "the service account lacks the Reset Password right on the user (or write on pwdLastSet, which must_change_at_next_logon needs)",
        );
    }
    match rc {
        rc::UNWILLING => backend(
            "Active Directory refused the change; it only accepts unicodePwd over an encrypted connection (ldaps:// or starttls)",
        ),
        rc::NO_SUCH_OBJECT => backend("the account's entry is gone"),
        _ => backend("password change failed"),
    }
}

/// The policy-hints control (flags 1: check the password history as for a change),
/// non-critical: a DC that does not know it ignores it.
pub(crate) fn policy_hints() -> RawControl {
    RawControl {
        ctype: POLICY_HINTS_OID.to_owned(),
        crit: false,
        // PolicyHintsRequestValue ::= SEQUENCE { Flags INTEGER } with Flags 1.
        val: Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
    }
}

/// What a PIN check by bind learns from Active Directory's refusal (result 49) of a bind:
/// `Ok(false)` a wrong password, `Ok(true)` the right one that the person must change (or
/// that has expired: the bind fails, yet AD counts no bad password), an error when the
/// account cannot log in whatever is typed (locked, disabled, expired, restricted).
pub(crate) fn ad_bind(text: &str) -> Result<bool, BackendError> {
    let lower = text.to_ascii_lowercase();
    let data = lower.split_once("data ").map(|(_, rest)| {
        rest.split(|c: char| !c.is_ascii_hexdigit())
            .next()
            .unwrap_or("")
    });
    let cannot = |why: &str| {
        Err(BackendError::new(
            BACKEND,
            format!("PIN check by bind: the account {why} at the directory: {text}"),
        ))
    };
    match data {
        Some("773") | Some("532") => {
            tracing::info!(
                "PIN check by bind: the password is right but must be changed at the directory"
            );
            Ok(true)
        }
        Some("775") => cannot("is locked"),
        Some("533") => cannot("is disabled"),
        Some("701") => cannot("has expired"),
        Some("530") | Some("531") | Some("52f") => {
            cannot("may not log on now (logon restrictions)")
        }
        _ => Ok(false),
    }
}

/// Active Directory's `unicodePwd` value: the password in double quotes, UTF-16LE
/// ([MS-ADTS] 3.1.1.3.1.5.1). The buffer holds the secret: it goes only into the modify request.
pub(crate) fn unicode_pwd(secret: &Secret) -> Vec<u8> {
    let quoted = std::iter::once('"')
        .chain(secret.expose().chars())
        .chain(std::iter::once('"'));
    let mut units = [0u16; 2];
    let mut out = Vec::with_capacity(2 * (secret.expose().len() + 2));
    for c in quoted {
        for unit in c.encode_utf16(&mut units) {
            out.extend_from_slice(&unit.to_le_bytes());
        }
    }
    out
}
