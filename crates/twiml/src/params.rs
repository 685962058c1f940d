//! Webhook parameters from a form body (POST) or a query string (GET), through the
//! `form_urlencoded` crate (the WHATWG `application/x-www-form-urlencoded` parser): pairs split
//! on `&`, empty pieces (`a=1&&b=2`) skipped, a piece without `=` a key with an empty value,
//! `+` a space, `%XX` a byte (a `%` without two hex digits kept as it is), order and repeated
//! keys kept; bytes that are not UTF-8 after decoding become U+FFFD. A key or value that needs
//! no decoding is borrowed from the input, the usual case for Twilio's parameters.
//!
//! [`parse`] also caps the number of pairs: a body that is nothing but separators
//! (`a&a&a&...`) is thousands of pairs, each costing more to sort and sign than its two bytes
//! cost to send; past the cap it stops and refuses, without looking at the rest. These pairs
//! are what [`crate::signature`] signs.

use std::borrow::Cow;
use std::fmt;

/// A decoded `(key, value)` pair that borrows from the input where it can.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// A form body with more pairs than the caller's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyPairs {
    /// The cap that was passed to [`parse`].
    pub limit: usize,
}

impl fmt::Display for TooManyPairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "form body has more than {} pairs", self.limit)
    }
}

impl std::error::Error for TooManyPairs {}

/// The decoded pairs of `input` (a form body, or a query string without its `?`), in order,
/// at most `max_pairs` of them.
///
/// # Errors
/// [`TooManyPairs`] as soon as a pair past `max_pairs` is found (the rest of the input is not
/// looked at).
pub fn parse(input: &[u8], max_pairs: usize) -> Result<Vec<Pair<'_>>, TooManyPairs> {
    // Twilio's pairs average about 18 bytes: room for all of a webhook's at once, but not
    // thousands ahead of time for a large body that has not passed its signature check yet.
    let mut pairs = Vec::with_capacity((input.len() / 16 + 1).min(64).min(max_pairs));
    for pair in form_urlencoded::parse(input) {
        if pairs.len() == max_pairs {
            return Err(TooManyPairs { limit: max_pairs });
        }
        pairs.push(pair);
    }
    Ok(pairs)
}

/// Every pair of `input`, decoded into owned strings (no cap): for the carrier simulator and
/// tests, which sign and compare them.
pub fn parse_owned(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input).into_owned().collect()
}

/// Serialises pairs as a form body, the WHATWG way: `A-Z a-z 0-9 * - . _` stay as they are,
/// space becomes `+`, every other byte `%XX` (upper case). `parse_owned(serialize(p))` is `p`.
pub fn serialize<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ok(input: &str) -> Vec<(String, String)> {
        parse_owned(input.as_bytes())
    }

    #[test]
    fn twilio_style_body() {
        assert_eq!(
            ok("CallSid=CA123&From=%2B14158675309&Digits=1234&FinishedOnKey="),
            kv(&[
                ("CallSid", "CA123"),
                ("From", "+14158675309"),
                ("Digits", "1234"),
                ("FinishedOnKey", ""),
            ])
        );
    }

    #[test]
    fn plus_percent_and_utf8() {
        assert_eq!(
            ok("Body=It%27s+amazing&City=S%C3%A3o+Paulo&raw=ñ"),
            kv(&[
                ("Body", "It's amazing"),
                ("City", "São Paulo"),
                ("raw", "ñ")
            ])
        );
        // A literal plus must arrive as %2B.
        assert_eq!(ok("a=1%2B1+2"), kv(&[("a", "1+1 2")]));
    }

    #[test]
    fn keys_without_equals_and_empty_pieces() {
        assert_eq!(
            ok("flag&&a=1&=v&k=&x=y=z&"),
            kv(&[("flag", ""), ("a", "1"), ("", "v"), ("k", ""), ("x", "y=z")])
        );
        assert_eq!(ok(""), Vec::new());
        assert_eq!(ok("&&&"), Vec::new());
    }

    #[test]
    fn duplicate_keys_keep_order() {
        assert_eq!(
            ok("Digits=5678&Digits=1234&Digits=1234"),
            kv(&[("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")])
        );
    }

    #[test]
    fn malformed_percent_is_literal() {
        assert_eq!(
            ok("a=100%&b=%zz&c=%4&d=%%41"),
            kv(&[("a", "100%"), ("b", "%zz"), ("c", "%4"), ("d", "%A")])
        );
    }

    #[test]
    fn a_body_of_more_pairs_than_the_cap_is_refused_without_reading_the_rest() {
        let body = b"a=1&&b=2&c=3&d";
        assert_eq!(
            parse(body, 4).map(|p| p.len()),
            Ok(4),
            "empty pieces do not count"
        );
        assert_eq!(parse(body, 3), Err(TooManyPairs { limit: 3 }));
        let flood = "a&".repeat(32 * 1024);
        assert_eq!(
            parse(flood.as_bytes(), 128),
            Err(TooManyPairs { limit: 128 })
        );
        assert_eq!(
            TooManyPairs { limit: 128 }.to_string(),
            "form body has more than 128 pairs"
        );
    }

    #[test]
    fn serialize_matches_whatwg() {
        assert_eq!(
            serialize(&kv(&[("Body", "It's 1+1 & ñ"), ("k*-._", "~")])),
            "Body=It%27s+1%2B1+%26+%C3%B1&k*-._=%7E"
        );
        assert_eq!(serialize::<&str, &str>(&[]), "");
    }

    #[test]
    fn plain_values_are_borrowed_and_encoded_ones_decoded() {
        let body = b"CallSid=CA1&From=%2B1415&Body=a+b";
        let pairs = parse(body, usize::MAX).expect("parses");
        assert!(matches!(pairs[0].1, Cow::Borrowed("CA1")));
        assert!(matches!(&pairs[1].1, Cow::Owned(v) if v == "+1415"));
        assert!(matches!(&pairs[2].1, Cow::Owned(v) if v == "a b"));
    }

    proptest! {
        #[test]
        fn round_trip(pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..8)) {
            let body = serialize(&pairs);
            prop_assert_eq!(parse_owned(body.as_bytes()), pairs);
        }
    }
}
