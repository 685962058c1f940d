//! RESP2, the Redis protocol, as far as the store speaks it: commands go out as arrays of bulk
//! strings ([`command`], several at once in a [`Pipeline`]); replies come back as simple strings, errors, integers, bulk strings
//! and arrays ([`parse`]).
//!
//! Invariants: [`parse`] never reads past a complete reply and never panics, whatever the
//! bytes; an incomplete reply is `Ok(None)` (read more and parse again from the same start);
//! sizes are bounded ([`MAX_BULK`], [`MAX_ELEMENTS`], [`MAX_DEPTH`]), so a misbehaving server
//! cannot make the client allocate without limit.

use std::borrow::Cow;
use std::fmt;

/// Largest bulk string accepted in a reply (sessions are a few hundred bytes).
pub(crate) const MAX_BULK: usize = 16 * 1024 * 1024;
/// Most elements in one reply array.
pub(crate) const MAX_ELEMENTS: usize = 1024 * 1024;
/// Deepest nesting of arrays in a reply.
pub(crate) const MAX_DEPTH: usize = 8;

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A nil bulk string or nil array (`$-1`, `*-1`).
    Nil,
    /// `+OK` and the like (`OK` itself, the usual one, without an allocation).
    Simple(Cow<'static, str>),
    /// `-ERR ...`: the server refused this command (the others of a pipeline stand).
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `*2\r\n...`.
    Array(Vec<Reply>),
}

/// The server sent something that is not RESP2 (or exceeds the limits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProtocolError(pub(crate) &'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a Redis reply: {}", self.0)
    }
}

/// One argument of a command.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    /// Text or bytes, sent as they are.
    Bytes(&'a [u8]),
    /// Pieces sent one after the other as one argument (a key from its parts, a value behind
    /// its revision): nothing is joined in a buffer of its own first.
    Joined(&'a [&'a [u8]]),
    /// A number, sent in decimal.
    Int(u64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Bytes(s.as_bytes())
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(b: &'a [u8]) -> Self {
        Arg::Bytes(b)
    }
}

impl From<u64> for Arg<'_> {
    fn from(n: u64) -> Self {
        Arg::Int(n)
    }
}

/// Decimal digits of `n` in `buf`, returned as the used tail.
pub(crate) fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Bytes [`command`] appends for `args` (at most; a buffer of this capacity never grows).
pub(crate) fn encoded_len(args: &[Arg<'_>]) -> usize {
    // `*<n>\r\n`, then `$<len>\r\n<arg>\r\n` each: 20 digits at most for a count or length.
    23 + args
        .iter()
        .map(|a| {
            25 + match a {
                Arg::Bytes(b) => b.len(),
                Arg::Joined(pieces) => pieces.iter().map(|p| p.len()).sum(),
                Arg::Int(_) => 20,
            }
        })
        .sum::<usize>()
}

/// `<marker><n>\r\n`: the head of an array (`*`) or a bulk string (`$`).
fn head(out: &mut Vec<u8>, marker: u8, n: usize) {
    match u8::try_from(n) {
        Ok(n) if n < 10 => out.extend_from_slice(&[marker, b'0' + n, b'\r', b'\n']),
        Ok(n) if n < 100 => {
            out.extend_from_slice(&[marker, b'0' + n / 10, b'0' + n % 10, b'\r', b'\n']);
        }
        _ => {
            let mut digits = [0u8; 20];
            out.push(marker);
            out.extend_from_slice(decimal(n as u64, &mut digits));
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Appends `args` as one command (`*<n>\r\n` then `$<len>\r\n<arg>\r\n` for each).
pub(crate) fn command(out: &mut Vec<u8>, args: &[Arg<'_>]) {
    command_of(out, &[args]);
}

/// Appends one command whose arguments are those of `parts`, one part after the other.
fn command_of(out: &mut Vec<u8>, parts: &[&[Arg<'_>]]) {
    head(out, b'*', parts.iter().map(|p| p.len()).sum());
    for arg in parts.iter().flat_map(|p| p.iter()) {
        match *arg {
            Arg::Bytes(b) => {
                head(out, b'$', b.len());
                out.extend_from_slice(b);
            }
            Arg::Joined(pieces) => {
                head(out, b'$', pieces.iter().map(|p| p.len()).sum());
                for piece in pieces {
                    out.extend_from_slice(piece);
                }
            }
            Arg::Int(n) => {
                let mut digits = [0u8; 20];
                let digits = decimal(n, &mut digits);
                head(out, b'$', digits.len());
                out.extend_from_slice(digits);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Commands encoded to go out together, and how many they are (so the replies to expect are
/// counted where the commands are written, never passed separately).
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    bytes: Vec<u8>,
    commands: usize,
}

impl Pipeline {
    /// Several commands (each a list of arguments), in one buffer sized once.
    pub(crate) fn new(commands: &[&[Arg<'_>]]) -> Pipeline {
        let mut bytes = Vec::with_capacity(commands.iter().map(|c| encoded_len(c)).sum());
        for args in commands {
            command(&mut bytes, args);
        }
        Pipeline {
            bytes,
            commands: commands.len(),
        }
    }

    /// One command.
    pub(crate) fn one(args: &[Arg<'_>]) -> Pipeline {
        Pipeline::new(&[args])
    }

    /// One command whose arguments are those of `parts`, one part after the other (a script's
    /// name, its keys, its arguments), without gathering them in a list first.
    pub(crate) fn joined(parts: &[&[Arg<'_>]]) -> Pipeline {
        let len = parts.iter().map(|p| encoded_len(p)).sum::<usize>();
        let mut bytes = Vec::with_capacity(len);
        command_of(&mut bytes, parts);
        Pipeline { bytes, commands: 1 }
    }

    /// How many commands (and so replies).
    pub(crate) fn commands(&self) -> usize {
        self.commands
    }

    /// The encoded commands.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Parses one reply from the front of `buf`: `Ok(Some((reply, bytes used)))`, `Ok(None)` when
/// `buf` does not hold a whole reply yet.
///
/// # Errors
/// [`ProtocolError`] when the bytes are not a RESP2 reply or exceed the limits.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut at = 0;
    Ok(reply(buf, &mut at, 0)?.map(|r| (r, at)))
}

/// The line starting at `*at` (without `\r\n`), moving `*at` past it.
fn line<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, ProtocolError> {
    let rest = buf.get(*at..).unwrap_or_default();
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        if rest.len() > MAX_BULK {
            return Err(ProtocolError("line too long"));
        }
        return Ok(None);
    };
    if end == 0 || rest[end - 1] != b'\r' {
        return Err(ProtocolError("line not ended by CRLF"));
    }
    *at += end + 1;
    Ok(Some(&rest[..end - 1]))
}

/// A decimal integer, as `i64::from_str` reads one: an optional sign, then at least one digit,
/// within `i64`.
fn number(text: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(ProtocolError("bad number"));
    }
    let mut magnitude: u64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(ProtocolError("bad number"));
        }
        magnitude = magnitude
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(digit)))
            .ok_or(ProtocolError("bad number"))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
    .ok_or(ProtocolError("bad number"))
}

/// A length: -1 is nil (`None`), anything else must be within `max`.
fn length(text: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    match number(text)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .map(Some)
            .ok_or(ProtocolError("length out of range")),
    }
}

fn reply(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Reply>, ProtocolError> {
    let start = *at;
    let Some(&kind) = buf.get(start) else {
        return Ok(None);
    };
    *at += 1;
    let Some(text) = line(buf, at)? else {
        *at = start;
        return Ok(None);
    };
    let text_string = || String::from_utf8_lossy(text).into_owned();
    let parsed = match kind {
        b'+' if text == b"OK" => Reply::Simple(Cow::Borrowed("OK")),
        b'+' => Reply::Simple(Cow::Owned(text_string())),
        b'-' => Reply::Error(text_string()),
        b':' => Reply::Int(number(text)?),
        b'$' => match length(text, MAX_BULK)? {
            None => Reply::Nil,
            Some(len) => {
                let end = *at + len;
                if buf.len() < end + 2 {
                    *at = start;
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(ProtocolError("bulk string not ended by CRLF"));
                }
                let bytes = buf[*at..end].to_vec();
                *at = end + 2;
                Reply::Bulk(bytes)
            }
        },
        b'*' => match length(text, MAX_ELEMENTS)? {
            None => Reply::Nil,
            Some(_) if depth >= MAX_DEPTH => return Err(ProtocolError("arrays nested too deep")),
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    match reply(buf, at, depth + 1)? {
                        Some(item) => items.push(item),
                        None => {
                            *at = start;
                            return Ok(None);
                        }
                    }
                }
                Reply::Array(items)
            }
        },
        _ => return Err(ProtocolError("unknown reply type")),
    };
    Ok(Some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(args: &[Arg<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        command(&mut out, args);
        out
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encoded(&[
                "SET".into(),
                "k".into(),
                Arg::Bytes(b"a\r\nb"),
                1500u64.into(),
                0u64.into()
            ]),
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n$4\r\n1500\r\n$1\r\n0\r\n"
        );
        assert_eq!(encoded(&[]), b"*0\r\n");
        assert_eq!(
            encoded(&["GET".into(), Arg::Joined(&[b"p:", b"{CA1}", b":session"])]),
            b"*2\r\n$3\r\nGET\r\n$15\r\np:{CA1}:session\r\n"
        );
        let long = [b'x'; 100];
        let mut want = b"*1\r\n$100\r\n".to_vec();
        want.extend_from_slice(&long);
        want.extend_from_slice(b"\r\n");
        assert_eq!(encoded(&[Arg::Bytes(&long)]), want);
        assert_eq!(
            encoded(&[u64::MAX.into()]),
            b"*1\r\n$20\r\n18446744073709551615\r\n"
        );
    }

    #[test]
    fn a_joined_command_is_its_parts_in_order_and_a_pipeline_counts_its_commands() {
        let keys = [Arg::from("k1"), Arg::Joined(&[b"k", b"2"])];
        let joined =
            Pipeline::joined(&[&["EVALSHA".into(), "abc".into(), 2u64.into()], &keys, &[]]);
        assert_eq!(
            joined.bytes(),
            encoded(&[
                "EVALSHA".into(),
                "abc".into(),
                2u64.into(),
                "k1".into(),
                "k2".into()
            ])
        );
        assert_eq!(joined.commands(), 1);
        let two = Pipeline::new(&[&["PING".into()], &["GET".into(), "k".into()]]);
        assert_eq!(
            two.bytes(),
            b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
        assert_eq!(two.commands(), 2);
    }

    #[test]
    fn the_encoded_length_is_an_upper_bound() {
        let args: [Arg<'_>; 4] = [
            "SET".into(),
            Arg::Bytes(&[7; 700]),
            u64::MAX.into(),
            Arg::Joined(&[&[1; 90], &[2; 30]]),
        ];
        let bytes = encoded(&args);
        assert!(
            bytes.len() <= encoded_len(&args),
            "{} > {}",
            bytes.len(),
            encoded_len(&args)
        );
        assert!(encoded(&[]).len() <= encoded_len(&[]));
    }

    #[test]
    fn every_reply_type_parses_and_says_how_much_it_used() {
        let cases: Vec<(&[u8], Reply)> = vec![
            (b"+OK\r\n", Reply::Simple("OK".into())),
            (
                b"-NOSCRIPT No matching script\r\n",
                Reply::Error("NOSCRIPT No matching script".into()),
            ),
            (b":-12\r\n", Reply::Int(-12)),
            (b"$3\r\na\nb\r\n", Reply::Bulk(b"a\nb".to_vec())),
            (b"$0\r\n\r\n", Reply::Bulk(Vec::new())),
            (b"$-1\r\n", Reply::Nil),
            (b"*-1\r\n", Reply::Nil),
            (
                b"*3\r\n$1\r\n7\r\n$-1\r\n*1\r\n:1\r\n",
                Reply::Array(vec![
                    Reply::Bulk(b"7".to_vec()),
                    Reply::Nil,
                    Reply::Array(vec![Reply::Int(1)]),
                ]),
            ),
        ];
        for (bytes, want) in cases {
            let mut with_next = bytes.to_vec();
            with_next.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(
                parse(&with_next),
                Ok(Some((want, bytes.len()))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn numbers_at_the_edges_of_i64() {
        assert_eq!(number(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(number(b"+9223372036854775807"), Ok(i64::MAX));
        assert_eq!(number(b"-0"), Ok(0));
        for bad in [
            &b""[..],
            b"-",
            b"+",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"18446744073709551616",
            b"1 ",
            b"--1",
        ] {
            assert!(number(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_reply_cut_anywhere_is_incomplete_not_wrong() {
        let whole = b"*3\r\n$5\r\nhello\r\n:42\r\n*2\r\n+OK\r\n$-1\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(parse(whole), Ok(Some((_, n))) if n == whole.len()));
    }

    #[test]
    fn what_is_not_resp_is_refused() {
        for bad in [
            &b"?what\r\n"[..],
            b"+OK\n",
            b":12x\r\n",
            b"$3\r\nabcd\r\n",
            b"$-2\r\n",
            b"*-5\r\n",
            b"$99999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err(), "nesting is bounded");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_claims_more_than_it_was_given(
            bytes in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b'\r'), proptest::strategy::Just(b'\n'), proptest::strategy::Just(b'*'),
                proptest::strategy::Just(b'$'), proptest::strategy::Just(b':'), proptest::strategy::Just(b'-'),
                proptest::strategy::Just(b'1'), proptest::strategy::Just(b'2'), proptest::num::u8::ANY
            ], 0..48)
        ) {
            if let Ok(Some((_, used))) = parse(&bytes) {
                proptest::prop_assert!(used <= bytes.len());
            }
        }

        #[test]
        fn a_number_reads_as_i64_from_str_reads_it(
            n in proptest::num::i64::ANY,
            text in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b'-'), proptest::strategy::Just(b'+'),
                proptest::strategy::Just(b'0'), proptest::strategy::Just(b'9'),
                proptest::num::u8::ANY
            ], 0..24)
        ) {
            proptest::prop_assert_eq!(number(n.to_string().as_bytes()), Ok(n));
            let std = std::str::from_utf8(&text).ok().and_then(|t| t.parse::<i64>().ok());
            proptest::prop_assert_eq!(number(&text).ok(), std);
        }

        #[test]
        fn a_command_reads_back_as_the_array_of_its_arguments(
            args in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..12), 0..6)
        ) {
            let list: Vec<Arg<'_>> = args.iter().map(|a| Arg::Bytes(a)).collect();
            let bytes = encoded(&list);
            let want = Reply::Array(args.iter().map(|a| Reply::Bulk(a.clone())).collect());
            proptest::prop_assert_eq!(parse(&bytes), Ok(Some((want, bytes.len()))));
        }
    }
}
