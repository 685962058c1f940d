//! `application/x-www-form-urlencoded` parsing and serialising.
//!
//! Twilio sends webhook parameters as a form body (POST) or query string
//! (GET). [`parse`] turns either into an ordered list of decoded pairs, the
//! shape [`crate::signature`] signs. It follows the WHATWG URL standard's
//! urlencoded parser with two differences: the input size is capped, and
//! invalid UTF-8 after percent-decoding is an error instead of U+FFFD.
//!
//! * Pairs are split on `&`; empty pieces (`a=1&&b=2`) are skipped.
//! * A piece without `=` is a key with an empty value.
//! * `+` is a space; `%XX` is a byte; a `%` not followed by two hex digits
//!   is kept literally (as browsers and Python do).
//! * Order and duplicate keys are preserved.
//!
//! [`parse_borrowed`] also caps the number of pairs: a body that is nothing but separators
//! (`a&a&a&...`) is thousands of pairs, each costing more to sort and sign than its two bytes
//! cost to send; past the cap it stops and refuses, without reading the rest.

use std::borrow::Cow;
use std::fmt;

/// A reasonable cap for Twilio webhook bodies (a few kB in practice).
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

/// Why a form body could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamsError {
    /// The input is longer than the caller's limit.
    TooLarge {
        /// Input length in bytes.
        bytes: usize,
        /// The limit that was passed to [`parse`].
        limit: usize,
    },
    /// A key or value is not UTF-8 after percent-decoding.
    InvalidUtf8 {
        /// Zero-based index of the offending pair among the non-empty pairs.
        pair: usize,
    },
    /// More non-empty pairs than the caller's limit.
    TooManyPairs {
        /// The limit that was passed to [`parse_borrowed`].
        limit: usize,
    },
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamsError::TooLarge { bytes, limit } => {
                write!(f, "form body is {bytes} bytes, over the limit of {limit}")
            }
            ParamsError::InvalidUtf8 { pair } => {
                write!(f, "form pair {pair} is not valid UTF-8 after decoding")
            }
            ParamsError::TooManyPairs { limit } => {
                write!(f, "form body has more than {limit} pairs")
            }
        }
    }
}

impl std::error::Error for ParamsError {}

/// Parses a form body (or a query string without its `?`) into decoded
/// `(key, value)` pairs, in input order.
///
/// # Errors
/// [`ParamsError::TooLarge`] when `input.len() > max_bytes` (checked before
/// any work), [`ParamsError::InvalidUtf8`] when a decoded key or value is not
/// UTF-8.
pub fn parse(input: &[u8], max_bytes: usize) -> Result<Vec<(String, String)>, ParamsError> {
    Ok(parse_borrowed(input, max_bytes, usize::MAX)?
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// A decoded `(key, value)` pair that borrows from the input where it can.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// [`parse`] without copying: a key or value that needs no decoding (no `+`, no `%`) borrows
/// from `input`, the usual case for Twilio's parameters. The same rules and errors, and at
/// most `max_pairs` non-empty pairs.
///
/// # Errors
/// As [`parse`]; [`ParamsError::TooManyPairs`] as soon as a pair past `max_pairs` starts
/// (the rest of the input is not looked at).
pub fn parse_borrowed(
    input: &[u8],
    max_bytes: usize,
    max_pairs: usize,
) -> Result<Vec<Pair<'_>>, ParamsError> {
    if input.len() > max_bytes {
        return Err(ParamsError::TooLarge {
            bytes: input.len(),
            limit: max_bytes,
        });
    }
    // The body is checked as UTF-8 once as a whole (always so, in practice); then one pass
    // finds where pieces, keys and values start and end and whether they need decoding, and
    // cuts them from it as borrowed pieces without checking each again.
    let whole = std::str::from_utf8(input).ok();
    let text = |range: std::ops::Range<usize>, encoded: bool, pair: usize| {
        let invalid = ParamsError::InvalidUtf8 { pair };
        if encoded {
            String::from_utf8(percent_decode(&input[range]))
                .map(Cow::Owned)
                .map_err(|_| invalid)
        } else if let Some(whole) = whole {
            // Cut at `&` and `=`, which are never inside a character.
            whole.get(range).map(Cow::Borrowed).ok_or(invalid)
        } else {
            std::str::from_utf8(&input[range])
                .map(Cow::Borrowed)
                .map_err(|_| invalid)
        }
    };
    // Twilio's pairs average about 18 bytes: room for all of a webhook's at once, but not
    // thousands ahead of time for a large body that has not passed its signature check yet.
    let mut pairs = Vec::with_capacity((input.len() / 16 + 1).min(64));
    let mut piece = |start: usize, end: usize, equals: Option<usize>, encoded: [bool; 2]| {
        if end > start {
            let pair = pairs.len();
            if pair == max_pairs {
                return Err(ParamsError::TooManyPairs { limit: max_pairs });
            }
            let (key, value) = match equals {
                Some(e) => (start..e, e + 1..end),
                None => (start..end, end..end),
            };
            pairs.push((text(key, encoded[0], pair)?, text(value, encoded[1], pair)?));
        }
        Ok(())
    };
    let mut start = 0;
    let mut equals: Option<usize> = None;
    let mut encoded = [false; 2]; // key, value
    for (i, &b) in input.iter().enumerate() {
        if !SPECIAL[usize::from(b)] {
            continue;
        }
        match b {
            b'&' => {
                piece(start, i, equals, encoded)?;
                start = i + 1;
                equals = None;
                encoded = [false; 2];
            }
            b'=' if equals.is_none() => equals = Some(i),
            b'=' => {}
            _ => encoded[usize::from(equals.is_some())] = true, // `+` or `%`
        }
    }
    piece(start, input.len(), equals, encoded)?;
    Ok(pairs)
}

/// Bytes that end a piece (`&`), end a key (`=`) or need decoding (`+`, `%`): the parser looks
/// at every byte through this table, one load and one test each.
const SPECIAL: [bool; 256] = {
    let mut special = [false; 256];
    special[b'&' as usize] = true;
    special[b'=' as usize] = true;
    special[b'+' as usize] = true;
    special[b'%' as usize] = true;
    special
};

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex_value);
                let lo = raw.get(i + 2).copied().and_then(hex_value);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// Serialises pairs as a form body, the WHATWG way: `A-Z a-z 0-9 * - . _`
/// stay as they are, space becomes `+`, every other byte `%XX` (upper case).
/// `parse(serialize(p))` returns `p`.
pub fn serialize(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, key);
        out.push('=');
        encode_into(&mut out, value);
    }
    out
}

fn encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
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
        parse(input.as_bytes(), DEFAULT_MAX_BYTES).unwrap_or_else(|e| panic!("{input}: {e}"))
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
    fn invalid_utf8_is_an_error() {
        assert_eq!(
            parse(b"ok=1&bad=%FF", 100),
            Err(ParamsError::InvalidUtf8 { pair: 1 })
        );
        assert_eq!(
            parse(b"%C3=1", 100),
            Err(ParamsError::InvalidUtf8 { pair: 0 })
        );
        assert_eq!(
            parse(b"raw=\xff", 100),
            Err(ParamsError::InvalidUtf8 { pair: 0 })
        );
    }

    #[test]
    fn size_guard() {
        assert_eq!(parse(b"a=12", 4), Ok(kv(&[("a", "12")])));
        assert_eq!(
            parse(b"a=123", 4),
            Err(ParamsError::TooLarge { bytes: 5, limit: 4 })
        );
        assert_eq!(
            ParamsError::TooLarge { bytes: 5, limit: 4 }.to_string(),
            "form body is 5 bytes, over the limit of 4"
        );
    }

    #[test]
    fn a_body_of_more_pairs_than_the_cap_is_refused_without_reading_the_rest() {
        let body = b"a=1&&b=2&c=3&d";
        assert_eq!(
            parse_borrowed(body, DEFAULT_MAX_BYTES, 4).map(|p| p.len()),
            Ok(4),
            "empty pieces do not count"
        );
        assert_eq!(
            parse_borrowed(body, DEFAULT_MAX_BYTES, 3),
            Err(ParamsError::TooManyPairs { limit: 3 })
        );
        // Refused at the pair past the cap: the invalid UTF-8 after it is never read.
        assert_eq!(
            parse_borrowed(b"a&a&a&\xFF", DEFAULT_MAX_BYTES, 2),
            Err(ParamsError::TooManyPairs { limit: 2 })
        );
        let flood = "a&".repeat(32 * 1024);
        assert_eq!(
            parse_borrowed(flood.as_bytes(), DEFAULT_MAX_BYTES, 128),
            Err(ParamsError::TooManyPairs { limit: 128 })
        );
        assert_eq!(
            ParamsError::TooManyPairs { limit: 128 }.to_string(),
            "form body has more than 128 pairs"
        );
    }

    #[test]
    fn serialize_matches_whatwg() {
        assert_eq!(
            serialize(&kv(&[("Body", "It's 1+1 & ñ"), ("k*-._", "~")])),
            "Body=It%27s+1%2B1+%26+%C3%B1&k*-._=%7E"
        );
        assert_eq!(serialize(&[]), "");
    }

    #[test]
    fn plain_values_are_borrowed_and_encoded_ones_decoded() {
        let body = b"CallSid=CA1&From=%2B1415&Body=a+b";
        let pairs = parse_borrowed(body, DEFAULT_MAX_BYTES, usize::MAX).expect("parses");
        assert!(matches!(pairs[0].1, Cow::Borrowed("CA1")));
        assert!(matches!(&pairs[1].1, Cow::Owned(v) if v == "+1415"));
        assert!(matches!(&pairs[2].1, Cow::Owned(v) if v == "a b"));
        assert!(matches!(
            parse_borrowed(b"a=%FF", DEFAULT_MAX_BYTES, usize::MAX),
            Err(ParamsError::InvalidUtf8 { pair: 0 })
        ));
        assert!(
            matches!(
                parse_borrowed(b"ok=1&\xFF=1", DEFAULT_MAX_BYTES, usize::MAX),
                Err(ParamsError::InvalidUtf8 { pair: 1 }),
            ),
            "raw bytes that are not UTF-8 are refused too"
        );
    }

    /// Reference: every key and value through percent_decode, never borrowed, pieces cut a
    /// byte at a time.
    fn reference(bytes: &[u8]) -> Result<Vec<(String, String)>, ParamsError> {
        bytes
            .split(|&b| b == b'&')
            .filter(|piece| !piece.is_empty())
            .enumerate()
            .map(|(pair, piece)| {
                let (k, v) = match piece.iter().position(|&b| b == b'=') {
                    Some(i) => (&piece[..i], &piece[i + 1..]),
                    None => (piece, &[][..]),
                };
                let d = |raw| {
                    String::from_utf8(percent_decode(raw))
                        .map_err(|_| ParamsError::InvalidUtf8 { pair })
                };
                Ok((d(k)?, d(v)?))
            })
            .collect()
    }

    proptest! {
        #[test]
        fn the_borrowing_fast_path_decodes_as_percent_decoding_does(
            bytes in proptest::collection::vec(prop_oneof![Just(b'&'), Just(b'='), Just(b'%'), Just(b'+'), Just(b'4'), Just(b'1'), any::<u8>()], 0..64)
        ) {
            prop_assert_eq!(parse(&bytes, 64), reference(&bytes));
        }

        /// Bodies that are UTF-8 as a whole (the usual case, cut into borrowed pieces without
        /// a check per piece), with multi-byte characters next to the separators.
        #[test]
        fn utf8_bodies_parse_as_the_reference_does(
            pieces in proptest::collection::vec(("[a-zé%+=ñ€😀2B]{0,6}", prop_oneof![Just("&"), Just("="), Just("&&"), Just("")]), 0..10)
        ) {
            let body: String = pieces.iter().map(|(p, sep)| format!("{p}{sep}")).collect();
            prop_assert_eq!(parse(body.as_bytes(), usize::MAX), reference(body.as_bytes()));
        }

        #[test]
        fn round_trip(pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..8)) {
            let body = serialize(&pairs);
            prop_assert_eq!(parse(body.as_bytes(), usize::MAX), Ok(pairs));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes, 64);
        }
    }
}
