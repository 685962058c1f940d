//! The one JSON writer of the trail: compact, and printable ASCII only.
//!
//! serde_json already escapes `"`, `\` and every control character below U+0020, so a
//! newline, a carriage return or an ANSI escape (ESC, U+001B) inside a caller-controlled
//! string is written as `\n`, `\r`, `\u001b` and can never end a line or reach a terminal.
//! This formatter goes further and writes every other character outside printable ASCII as a
//! `\uXXXX` escape (UTF-16 surrogate pairs above U+FFFF): DEL, the C1 controls (U+0085 NEL,
//! U+009B CSI), the Unicode line and paragraph separators U+2028/U+2029 that some readers
//! treat as line ends, the bidi overrides that reorder text on screen, and all other non-ASCII
//! text. Every line of the trail is therefore bytes `0x20..=0x7E` plus its final `\n`, which
//! `verify` checks. Parsing the line gives back exactly the original strings.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// Compact JSON whose output is printable ASCII (see the module doc); every other method
/// keeps serde_json's compact default.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AsciiFormatter;

impl Formatter for AsciiFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        let mut start = 0;
        for (at, ch) in fragment.char_indices() {
            if (' '..='~').contains(&ch) {
                continue;
            }
            writer.write_all(fragment.get(start..at).unwrap_or_default().as_bytes())?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = at + ch.len_utf8();
        }
        writer.write_all(fragment.get(start..).unwrap_or_default().as_bytes())
    }
}

/// Serialises `value` as one line of printable-ASCII JSON (no trailing newline).
pub(crate) fn to_ascii_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(512);
    let mut ser = Serializer::with_formatter(&mut out, AsciiFormatter);
    value.serialize(&mut ser).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Index of the first byte outside printable ASCII, if any.
pub(crate) fn first_non_printable(line: &[u8]) -> Option<usize> {
    line.iter().position(|b| !(0x20..=0x7e).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_character_is_escaped_into_ascii() {
        let nasty = "a\nb\rc\u{1b}[31mred\u{7f}\u{85}\u{9b}\u{2028}\u{2029}\u{202e}\"\\é😀\t\0";
        let out = to_ascii_json(nasty).expect("serialise");
        assert_eq!(
            first_non_printable(&out),
            None,
            "{}",
            String::from_utf8_lossy(&out)
        );
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text,
            r#""a\nb\rc\u001b[31mred\u007f\u0085\u009b\u2028\u2029\u202e\"\\\u00e9\ud83d\ude00\t\u0000""#
        );
        let back: String = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, nasty);
    }
}
