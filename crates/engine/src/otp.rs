//! One-time codes: derivation and comparison.
//!
//! A code is `HMAC-SHA256(hash_key, "otp" | call | account | nonce)` reduced to `length` decimal
//! digits. The nonce comes from the OS CSPRNG for every new code; the session stores the nonce,
//! never the code, so a dump of the session store does not reveal it, yet a resend can send the
//! same code while it is valid (security.md: "resend re-sends the SAME code"). Invariant: codes
//! are compared in constant time, and a code is bound to one call and one account.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::clock::{Random, RandomError};
use crate::secret::Secret;

/// A fresh nonce (16 random bytes, hex).
pub fn nonce(random: &dyn Random) -> Result<String, RandomError> {
    let mut buf = [0u8; 16];
    random.fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The code for `nonce`, bound to `call` and `account`.
pub fn derive(key: &Secret, call: &str, account: &str, nonce: &str, length: u32) -> Secret {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()) else {
        return Secret::default();
    };
    for part in ["otp", call, account, nonce] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    let bytes = mac.finalize().into_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    // 10^length <= 10^10 against 2^64: the modulo bias is below 1e-9.
    let modulus = 10u64.pow(length.clamp(6, 10));
    let value = u64::from_be_bytes(first) % modulus;
    Secret::new(format!(
        "{value:0width$}",
        width = length.clamp(6, 10) as usize
    ))
}

/// Constant-time comparison of an entered code with the expected one.
pub fn matches(entered: &Secret, expected: &Secret) -> bool {
    let (a, b) = (entered.expose().as_bytes(), expected.expose().as_bytes());
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;

    #[test]
    fn codes_are_bound_to_call_account_and_nonce() {
        let key = Secret::new("k".repeat(32));
        let a = derive(&key, "CA1", "100001", "00ff", 6);
        assert_eq!(a.len(), 6);
        assert!(
            matches(&a, &derive(&key, "CA1", "100001", "00ff", 6)),
            "same inputs, same code (resend)"
        );
        let long = |call: &str, account: &str| derive(&key, call, account, "00ff", 10);
        assert!(
            !matches(&long("CA1", "100001"), &long("CA2", "100001")),
            "another call, another code"
        );
        assert!(
            !matches(&long("CA1", "100001"), &long("CA1", "100002")),
            "another account, another code"
        );
        let other_key = Secret::new("j".repeat(32));
        assert_ne!(
            derive(&key, "CA1", "100001", "00ff", 8).expose(),
            derive(&other_key, "CA1", "100001", "00ff", 8).expose()
        );
    }

    /// Uniform digits (security.md check 4): chi-square over 10^6 digits from fresh nonces.
    #[test]
    fn digits_are_uniform() {
        let key = Secret::new("k".repeat(32));
        let mut counts = [0u64; 10];
        let codes = 1_000_000 / 6 + 1;
        for i in 0..codes {
            let n = nonce(&OsRandom).unwrap_or_else(|_| format!("{i:032x}"));
            for b in derive(&key, "CA1", "100001", &n, 6).expose().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / 10.0;
        let chi: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        // 9 degrees of freedom: p = 0.001 at 27.88.
        assert!(chi < 27.88, "chi-square {chi} over {counts:?}");
    }
}
