//! Zeroing what a webhook brought in (issue 22, finding 11): the digits a caller typed (a PIN,
//! a new PIN, a code) must not linger in memory Resetline frees.
//!
//! What is zeroed, when the request is dropped: the body, when Resetline holds its only
//! reference (a body that arrived in pieces, joined into a buffer of Resetline's own sized
//! once so it is never copied by growing; a body built in process); the decoded copies of
//! parameters (values with `%` or `+`); the signature check's buffer of the signed parameters
//! (`resetline_twiml::signature`); the digits themselves travel as a `Secret`, zeroed on drop.
//!
//! What is not, because Resetline does not own it: a body that arrived in one piece is a view
//! into hyper's read buffer for the connection (shared; hyper reuses it for the connection's
//! next request and frees it when the connection closes); the kernel's socket buffers; a TLS
//! terminator's buffers in front of Resetline; the hash function's internal block in the
//! signature check (on the stack, overwritten by the next call); the intermediate copy
//! `form_urlencoded` makes of a value with both `+` and `%` (spaces put back before the
//! percent-decoding; the digits a caller types never contain a space).

use std::borrow::Cow;

use axum::body::Bytes;
use zeroize::Zeroize;

/// Zeroes `body` in place when this is its only reference (it stays, all zeros); `false`
/// when the bytes are shared (a view of hyper's buffer) and were left as they are.
pub(crate) fn body(body: &mut Bytes) -> bool {
    match std::mem::take(body).try_into_mut() {
        Ok(mut owned) => {
            owned[..].zeroize();
            *body = owned.freeze();
            true
        }
        Err(shared) => {
            *body = shared;
            false
        }
    }
}

/// Zeroes the decoded (owned) keys and values among `params`; borrowed ones are views of the
/// body and go with it.
pub(crate) fn params<'a>(params: &mut [(Cow<'a, str>, Cow<'a, str>)]) {
    for (key, value) in params {
        for part in [key, value] {
            if let Cow::Owned(decoded) = part {
                decoded.zeroize();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_resetline_owns_is_zeroed_in_place_and_a_shared_one_is_left_alone() {
        let mut owned = Bytes::from(b"CallSid=CA1&Digits=48319273".to_vec());
        let at = owned.as_ptr();
        assert!(body(&mut owned));
        assert_eq!(owned.as_ptr(), at, "the same buffer, not a copy");
        assert!(owned.iter().all(|b| *b == 0), "{owned:?}");

        let mut shared = Bytes::from(b"Digits=48319273".to_vec());
        let other = shared.clone();
        assert!(!body(&mut shared), "not ours alone");
        assert_eq!(&shared[..], b"Digits=48319273");
        drop(other);
    }

    #[test]
    fn decoded_parameter_copies_are_zeroed_and_borrowed_ones_left_to_the_body() {
        let text = String::from("Digits=4831%39273&From=%2B1555");
        let mut parsed = resetline_twiml::params::parse(text.as_bytes(), 8).expect("form");
        params(&mut parsed);
        assert_eq!(parsed[0].0, "Digits", "borrowed: a view of the body");
        assert_eq!(parsed[0].1, "", "decoded copy zeroed and emptied");
        assert_eq!(parsed[1].1, "");
    }
}
