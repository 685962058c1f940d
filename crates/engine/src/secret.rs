//! `Secret`: PINs, codes and new passwords as the caller typed them, and [`scrub_digits`], which keeps
//! them out of the text backends send back.
//!
//! Invariant: a `Secret` cannot be printed (its `Debug` says `Secret(***)` and there is no
//! `Display`), is zeroed when dropped, and compares only in constant time: it has no
//! `PartialEq`, so `==` on it does not compile; [`Secret::ct_eq`] is the one comparison. The only way to read
//! it is [`Secret::expose`], which is greppable: every call site is a place a secret leaves.
//! Backend text (error messages, refusal reasons) may echo what it was sent, a new PIN or a
//! code included; it reaches a log, an audit detail or a prompt only through [`scrub_digits`].

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A secret value. See the module docs for its guarantees.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value. Call this at the edge, as soon as the value arrives.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The value. Each call site is a place where the secret leaves the type: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in characters (safe to log).
    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Whether two secrets are equal, in constant time for equal lengths. `Secret` has no
    /// `PartialEq`, so `==` on a secret does not compile: every comparison is this one.
    pub fn ct_eq(&self, other: &Secret) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

/// Backend text made safe to log, audit or speak: every run of 4 or more ASCII digits (a `-`
/// between digits continues the run, as in `555-123-0199`) is replaced by `***`. PINs and
/// codes are digits, and a backend may quote the value it refused or failed on; shorter runs
/// (HTTP statuses, counts) stay readable. Idempotent.
pub fn scrub_digits(text: &str) -> String {
    const MIN_DIGITS: usize = 4;
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let (mut j, mut digits) = (i, 0);
        while j < chars.len() {
            if chars[j].is_ascii_digit() {
                digits += 1;
            } else if !(chars[j] == '-' && chars.get(j + 1).is_some_and(char::is_ascii_digit)) {
                break;
            }
            j += 1;
        }
        if digits >= MIN_DIGITS {
            out.push_str("***");
        } else {
            out.extend(&chars[i..j]);
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_digits_drops_every_digit_run_of_four_or_more() {
        assert_eq!(
            scrub_digits("PIN 91827364 refused (history), HTTP 400"),
            "PIN *** refused (history), HTTP 400"
        );
        assert_eq!(scrub_digits("4242"), "***");
        assert_eq!(scrub_digits("424"), "424");
        assert_eq!(scrub_digits("+15551230199 or 0199."), "+*** or ***.");
        assert_eq!(scrub_digits("a1234b12c"), "a***b12c");
        assert_eq!(scrub_digits("(415) 555-0199, 12-34-56"), "(415) ***, ***");
        assert_eq!(scrub_digits("1-2 x- -3"), "1-2 x- -3");
        assert_eq!(scrub_digits("ünï 123456 ü"), "ünï *** ü");
        assert_eq!(scrub_digits(""), "");
        let once = scrub_digits("code 123456: 1 of 5");
        assert_eq!(scrub_digits(&once), once);
    }

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("91827364");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
    }

    #[test]
    fn compares_by_value() {
        assert!(Secret::new("1234").ct_eq(&Secret::new("1234")));
        assert!(!Secret::new("1234").ct_eq(&Secret::new("1235")));
        assert!(!Secret::new("1234").ct_eq(&Secret::new("12345")));
    }
}
