//! What an LDAP server's answer to a password change means for the caller: the ppolicy
//! response control (draft-behera-ldap-password-policy), OpenLDAP's diagnostic texts, Active
//! Directory's `unicodePwd` value and its error codes.
//!
//! Invariant: a refusal always keeps the server's own words (result code, diagnostic text,
//! ppolicy error) in `reason` for logs and the audit trail, and picks the prompt key only from
//! [`PROMPTS`]; nothing here sees the new secret except [`unicode_pwd`], which only encodes it.

use resetline_engine::{BackendError, Secret, SetSecretError};

use super::BACKEND;

/// OID of the password policy request/response control.
pub(crate) const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";

/// Prompt keys a directory refusal can be spoken as. `policy_reused` and `policy_too_recent`
/// exist in the shipped catalogs; a catalog without them speaks `policy_rejected` (the engine
/// falls back when a flow's catalog lacks the key).
pub const PROMPTS: &[&str] = &[
    "policy_too_short",
    "policy_reused",
    "policy_too_recent",
    "policy_rejected",
];

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
    let lower = text.to_ascii_lowercase();
    match rc {
        rc::CONSTRAINT_VIOLATION => {
            if lower.contains("too short") {
                rejected("policy_too_short")
            } else if lower.contains("history") || lower.contains("not being changed") {
                rejected("policy_reused")
            } else if lower.contains("too young") || lower.contains("too recently") {
                rejected("policy_too_recent")
            } else {
                rejected("policy_rejected")
            }
        }
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

/// Maps a refused Active Directory `unicodePwd` replace. AD says only that a constraint
/// failed (`0000052D`: length, complexity, history or minimum age alike), so every policy
/// refusal is spoken as `policy_rejected`.
pub(crate) fn active_directory(rc: u32, text: &str) -> SetSecretError {
    let reason = format!("{text} (LDAP result {rc})");
    match rc {
        rc::CONSTRAINT_VIOLATION => SetSecretError::Rejected {
            prompt: "policy_rejected".into(),
            reason,
        },
        rc::UNWILLING => SetSecretError::Backend(BackendError::new(
            BACKEND,
            format!(
                "Active Directory refused the change; it only accepts unicodePwd over an encrypted connection (ldaps:// or starttls): {reason}"
            ),
        )),
        rc::INSUFFICIENT_ACCESS => SetSecretError::Backend(BackendError::new(
            BACKEND,
            format!("the service account lacks the Reset Password right: {reason}"),
        )),
        rc::NO_SUCH_OBJECT => SetSecretError::Backend(BackendError::new(
            BACKEND,
            format!("the account's entry is gone: {reason}"),
        )),
        _ => SetSecretError::Backend(BackendError::new(
            BACKEND,
            format!("password change failed: {reason}"),
        )),
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
