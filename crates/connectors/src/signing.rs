//! Request signing for HTTP data actions (seed 004): the sender puts
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(token, t + body)>` in a header; the receiver checks
//! the MAC in constant time and refuses a timestamp outside its window, so a captured
//! request cannot be replayed later. [`verify`] is the receiver's side, for services written
//! in Rust and as the reference for others.
//!
//! Invariant: the MAC covers the exact body bytes sent, prefixed by the decimal timestamp;
//! verification never short-circuits on the MAC bytes (`hmac::Mac::verify_slice`).

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The MAC over `timestamp + body`; `None` only if the key were refused, which HMAC never
/// does (any key length is accepted).
fn mac(token: &[u8], timestamp: u64, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(token).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(body);
    Some(mac)
}

/// The header value for `body` sent at `timestamp` (unix seconds). `None` never happens for
/// HMAC-SHA256; callers treat it as a refusal.
pub fn sign(token: &[u8], timestamp: u64, body: &[u8]) -> Option<String> {
    let tag = mac(token, timestamp, body)?.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("t={timestamp},v1={hex}"))
}

/// Why a signed request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The header is not `t=<digits>,v1=<64 hex digits>`.
    Malformed,
    /// The timestamp is outside the window (too old, or too far in the future).
    Stale,
    /// The MAC does not match the body and timestamp.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Malformed => "malformed signature header",
            SignatureError::Stale => "signature timestamp outside the accepted window",
            SignatureError::Mismatch => "signature does not match",
        })
    }
}

impl std::error::Error for SignatureError {}

/// Checks `header` (the value of the signature header) for `body` at `now_s` (unix
/// seconds): the timestamp must be within `window` of now, either way, and the MAC must
/// match.
pub fn verify(
    token: &[u8],
    header: &str,
    body: &[u8],
    now_s: u64,
    window: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut tag = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                timestamp = v.parse::<u64>().ok();
            }
            Some(("v1", v)) if v.len() == 64 => tag = decode_hex(v),
            _ => return Err(SignatureError::Malformed),
        }
    }
    let (Some(timestamp), Some(tag)) = (timestamp, tag) else {
        return Err(SignatureError::Malformed);
    };
    if now_s.abs_diff(timestamp) > window.as_secs() {
        return Err(SignatureError::Stale);
    }
    mac(token, timestamp, body)
        .ok_or(SignatureError::Mismatch)?
        .verify_slice(&tag)
        .map_err(|_| SignatureError::Mismatch)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"shared-signing-token";
    const BODY: &[u8] = br#"{"employee":"100001"}"#;

    #[test]
    fn a_known_vector() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"key",b"1700000000hello",hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"key", 1_700_000_000, b"hello").as_deref(),
            Some(
                "t=1700000000,v1=f30faaa771c136857a1210416bb0dc2f9be64efa386265d3581f5316db8b4934"
            )
        );
    }

    #[test]
    fn the_receiver_accepts_fresh_signatures_and_refuses_the_rest() {
        let window = Duration::from_secs(300);
        let header = sign(TOKEN, 1_700_000_000, BODY).expect("signs");
        assert_eq!(verify(TOKEN, &header, BODY, 1_700_000_000, window), Ok(()));
        assert_eq!(verify(TOKEN, &header, BODY, 1_700_000_300, window), Ok(()));
        assert_eq!(
            verify(TOKEN, &header, BODY, 1_700_000_301, window),
            Err(SignatureError::Stale),
            "older than the window"
        );
        assert_eq!(
            verify(TOKEN, &header, BODY, 1_699_999_000, window),
            Err(SignatureError::Stale),
            "from the future"
        );
        assert_eq!(
            verify(
                TOKEN,
                &header,
                br#"{"employee":"100002"}"#,
                1_700_000_000,
                window
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other-token", &header, BODY, 1_700_000_000, window),
            Err(SignatureError::Mismatch)
        );
        let moved = header.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(TOKEN, &moved, BODY, 1_700_000_000, window),
            Err(SignatureError::Mismatch),
            "the timestamp is signed"
        );
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            &format!("{header},x=1"),
        ] {
            assert_eq!(
                verify(TOKEN, bad, BODY, 1_700_000_000, window),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }
}
