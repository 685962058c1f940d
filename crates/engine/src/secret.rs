//! `Secret`: PINs, codes and new passwords as the caller typed them.
//!
//! Invariant: a `Secret` cannot be printed (its `Debug` says `Secret(***)` and there is no
//! `Display`), is zeroed when dropped, and compares only in constant time. The only way to read
//! it is [`Secret::expose`], which is greppable: every call site is a place a secret leaves.

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

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("91827364");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
    }

    #[test]
    fn compares_by_value() {
        assert_eq!(Secret::new("1234"), Secret::new("1234"));
        assert_ne!(Secret::new("1234"), Secret::new("1235"));
        assert_ne!(Secret::new("1234"), Secret::new("12345"));
    }
}
