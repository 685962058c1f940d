//! Argon2id PIN hashing and verification for the embedded directory.
//!
//! Invariant: every hash this module writes is Argon2id v19 with m=19456 KiB, t=2, p=1 and a
//! fresh 16-byte salt from the OS CSPRNG; verification compares in constant time (the argon2
//! crate's `PasswordVerifier`); neither the PIN nor the hash ever appears in an error.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use resetline_engine::Secret;

/// Argon2id memory cost in KiB (OWASP Password Storage Cheat Sheet; security check 26).
pub(crate) const M_COST: u32 = 19_456;
/// Argon2id iterations.
pub(crate) const T_COST: u32 = 2;
/// Argon2id parallelism.
pub(crate) const P_COST: u32 = 1;

/// Largest memory cost a stored hash may ask for (1 GiB): a hand-edited file cannot make a
/// verification exhaust the host's memory.
const MAX_M_COST: u32 = 1024 * 1024;
/// Largest iteration count a stored hash may ask for.
const MAX_T_COST: u32 = 16;
/// Largest parallelism a stored hash may ask for.
const MAX_P_COST: u32 = 16;

/// The hash of a value recorded nowhere, with the production parameters. PINs for unknown
/// accounts (or accounts without a PIN) are checked against it so that the answer takes as
/// long as a real check.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$4Ymcy6FaPfxD3rUfLqlJfQ$gei7DN39EbXiLamJrqdOWUV86J4XBtp8JrMzE5dcPBI";

/// Hashing a PIN failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashError {
    /// The PIN is empty.
    Empty,
    /// The OS random source failed, so no salt could be made.
    Random,
    /// The argon2 crate refused (its message; never contains the PIN).
    Argon2(String),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::Empty => f.write_str("cannot hash an empty PIN"),
            HashError::Random => f.write_str("the OS random source failed: no salt"),
            HashError::Argon2(m) => write!(f, "argon2 failed: {m}"),
        }
    }
}

impl std::error::Error for HashError {}

/// The hasher with the production parameters.
fn hasher() -> Result<Argon2<'static>, HashError> {
    let params =
        Params::new(M_COST, T_COST, P_COST, None).map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `pin` as an Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) with
/// a fresh random salt: the value to put in a user's `pin_hash`. CPU-heavy (tens of
/// milliseconds): call it off the async runtime.
pub fn hash_pin(pin: &Secret) -> Result<String, HashError> {
    if pin.is_empty() {
        return Err(HashError::Empty);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| HashError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Argon2(e.to_string()))?;
    let hash = hasher()?
        .hash_password(pin.expose().as_bytes(), &salt)
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks `pin` against a stored PHC string in constant time, with the parameters the hash
/// names. `Ok(false)` for a wrong PIN; `Err` (a message without the hash) when the stored
/// value cannot be used.
pub(crate) fn verify(pin: &Secret, stored: &str) -> Result<bool, String> {
    let parsed =
        PasswordHash::new(stored).map_err(|e| format!("stored PIN hash unreadable: {e}"))?;
    match Argon2::default().verify_password(pin.expose().as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(format!("PIN check failed: {e}")),
    }
}

/// Checks that `stored` is an Argon2id v19 PHC string at least as strong as the production
/// parameters and not absurdly expensive. The message never quotes the value.
pub(crate) fn validate_hash(stored: &str) -> Result<(), String> {
    const SHAPE: &str =
        "expected an Argon2id PHC string like $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>";
    let parsed =
        PasswordHash::new(stored).map_err(|e| format!("not a PHC string ({e}); {SHAPE}"))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!(
            "algorithm `{}` is not argon2id; {SHAPE}",
            parsed.algorithm
        ));
    }
    if parsed.version != Some(0x13) {
        return Err(format!("version must be v=19; {SHAPE}"));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(format!("salt or hash part missing; {SHAPE}"));
    }
    let params = Params::try_from(&parsed).map_err(|e| format!("bad parameters ({e}); {SHAPE}"))?;
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m < M_COST || t < T_COST {
        return Err(format!(
            "parameters m={m},t={t} are weaker than the minimum m={M_COST},t={T_COST}; re-hash with `resetline hash-pin`"
        ));
    }
    if m > MAX_M_COST || t > MAX_T_COST || p > MAX_P_COST {
        return Err(format!(
            "parameters m={m},t={t},p={p} exceed the limits m={MAX_M_COST},t={MAX_T_COST},p={MAX_P_COST}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_with_production_parameters_and_unique_salts() {
        let pin = Secret::new("48213579");
        let a = hash_pin(&pin).unwrap();
        let b = hash_pin(&pin).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        let salt = |h: &str| h.split('$').nth(4).unwrap().to_owned();
        assert_ne!(salt(&a), salt(&b));
        assert_ne!(a, b);
        assert!(!a.contains("48213579"));
        validate_hash(&a).unwrap();
        assert!(verify(&pin, &a).unwrap());
        assert!(!verify(&Secret::new("48213578"), &a).unwrap());
    }

    #[test]
    fn refuses_an_empty_pin() {
        assert_eq!(hash_pin(&Secret::new("")), Err(HashError::Empty));
    }

    #[test]
    fn dummy_hash_is_valid_and_matches_nothing_typed() {
        validate_hash(DUMMY_HASH).unwrap();
        assert!(!verify(&Secret::new("0000"), DUMMY_HASH).unwrap());
    }

    #[test]
    fn validation_names_the_problem_without_the_value() {
        let weak = "$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$4hBhhHdw6Vhz1yZjPk8zfyEawSTxE3yJ8gfAE3wEnDs";
        let e = validate_hash(weak).unwrap_err();
        assert!(e.contains("weaker"), "{e}");
        assert!(!e.contains("c29tZXNhbHRzb21lc2FsdA"), "{e}");
        let e = validate_hash("$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4hBhhHdw6Vhz1yZjPk8zfyEawSTxE3yJ8gfAE3wEnDs").unwrap_err();
        assert!(e.contains("not argon2id"), "{e}");
        assert!(
            validate_hash("48213579")
                .unwrap_err()
                .contains("not a PHC string")
        );
        assert!(!validate_hash("48213579").unwrap_err().contains("48213579"));
    }
}
