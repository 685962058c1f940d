//! Fields a file may leave out: each takes its default, and a number its bounds, from the
//! vocabulary table (`spec.rs`), so the loader, the JSON Schema (`resetline schema`) and the
//! docs cannot disagree about them.
//!
//! Invariant: a field the file omits, or gives a value that is refused (and reported), is the
//! table's default; nothing here writes a default, a bound or a word list of its own. A field
//! the table gives no default reads as its type's zero value; the tests that tie the loader
//! to the table (`tests/spec_defaults.rs`) keep that from happening.

use std::time::Duration;

use super::{Fields, Loader, parse_digits, parse_duration};
use crate::model::Digits;
use crate::span::Spanned;
use crate::spec::Field;
use crate::yaml::Node as Y;

/// The default the table gives field `name` of `f`, read as `parse` reads a written value, at
/// the span of the mapping that lacks it.
fn default_of<T>(
    f: &Fields<'_>,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<Spanned<T>> {
    let text = f.field(name)?.default?;
    parse(text).map(|v| Spanned::new(v, f.owner))
}

/// Field `name` of `f` as `read` reads it (reporting what is wrong), else its default.
fn or_default<'a, T: Default>(
    l: &mut Loader<'a>,
    f: &Fields<'_>,
    name: &str,
    read: impl FnOnce(&mut Loader<'a>, &Y, &str) -> Option<Spanned<T>>,
    parse: impl Fn(&str) -> Option<T>,
) -> Spanned<T> {
    read_or_default(l, f, name, read, parse).unwrap_or_else(|| Spanned::new(T::default(), f.owner))
}

/// Field `name` of `f` as `read` reads it, else its default (`None`: the table has none).
fn read_or_default<'a, T>(
    l: &mut Loader<'a>,
    f: &Fields<'_>,
    name: &str,
    read: impl FnOnce(&mut Loader<'a>, &Y, &str) -> Option<Spanned<T>>,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<Spanned<T>> {
    f.get(name)
        .and_then(|n| read(l, n, &format!("`{name}`")))
        .or_else(|| default_of(f, name, parse))
}

/// A written text as is.
fn text(s: &str) -> Option<String> {
    Some(s.to_string())
}

impl Loader<'_> {
    /// Whole-number field `name` of `f` within its bounds; `None` when absent or refused.
    pub(super) fn int_field(&mut self, f: &Fields<'_>, name: &str) -> Option<Spanned<u32>> {
        let (min, max) = f.field(name).and_then(Field::bounds)?;
        let node = f.get(name)?;
        self.int(node, &format!("`{name}`"), min, max)
    }

    /// Whole-number field `name` of `f` within its bounds, else its default.
    pub(super) fn int_or_default(&mut self, f: &Fields<'_>, name: &str) -> Spanned<u32> {
        self.int_field(f, name)
            .or_else(|| default_int(f, name))
            .unwrap_or_else(|| Spanned::new(0, f.owner))
    }

    /// Duration field `name` of `f`, else its default.
    pub(super) fn duration_or_default(&mut self, f: &Fields<'_>, name: &str) -> Spanned<Duration> {
        or_default(self, f, name, Loader::duration, parse_duration)
    }

    /// One-word field `name` of `f` (one of the table's words); `None` when absent or refused.
    pub(super) fn word(&mut self, f: &Fields<'_>, name: &str) -> Option<Spanned<String>> {
        let choices = f.field(name).map_or(&[][..], Field::choices);
        self.choice(f.get(name)?, &format!("`{name}`"), choices)
    }

    /// One-word field `name` of `f`, else its default.
    pub(super) fn word_or_default(&mut self, f: &Fields<'_>, name: &str) -> String {
        self.word(f, name)
            .or_else(|| default_of(f, name, text))
            .map(|w| w.value)
            .unwrap_or_default()
    }

    /// Identifier field `name` of `f` (a variable it binds), else its default.
    pub(super) fn ident_or_default(&mut self, f: &Fields<'_>, name: &str) -> Spanned<String> {
        or_default(self, f, name, Loader::ident, text)
    }

    /// Variable-path field `name` of `f`, else its default.
    pub(super) fn path_or_default(&mut self, f: &Fields<'_>, name: &str) -> Spanned<String> {
        or_default(self, f, name, Loader::path, text)
    }

    /// Text field `name` of `f`, else its default.
    pub(super) fn string_or_default(&mut self, f: &Fields<'_>, name: &str) -> String {
        or_default(self, f, name, Loader::string, text).value
    }

    /// `true`/`false` field `name` of `f`, else its default.
    pub(super) fn bool_or_default(&mut self, f: &Fields<'_>, name: &str) -> bool {
        let read = |l: &mut Loader<'_>, n: &Y, what: &str| {
            l.boolean(n, what).map(|b| Spanned::new(b, n.span))
        };
        or_default(self, f, name, read, |t| t.parse().ok()).value
    }

    /// Digit-count field `name` of `f`, else its default (without one, any count the
    /// language takes).
    pub(super) fn digits_or_default(&mut self, f: &Fields<'_>, name: &str) -> Digits {
        let read = |l: &mut Loader<'_>, n: &Y, what: &str| {
            l.digits(n, what).map(|d| Spanned::new(d, n.span))
        };
        read_or_default(self, f, name, read, parse_digits)
            .map_or(Digits { min: 1, max: 64 }, |d| d.value)
    }

    /// The key that ends entry early (field `finish_on` of `f`): `#`, `*`, or `""` for none;
    /// its default when absent or refused.
    pub(super) fn finish_on(&mut self, f: &Fields<'_>) -> Option<char> {
        let default = default_of(f, "finish_on", finish_key).and_then(|k| k.value);
        let Some(s) = f
            .get("finish_on")
            .and_then(|n| self.string(n, "`finish_on`"))
        else {
            return default;
        };
        match finish_key(&s.value) {
            Some(key) => key,
            None => {
                self.error(
                    crate::diagnostic::Code::InvalidValue,
                    s.span,
                    format!(
                        "`finish_on` `{}` must be `#`, `*`, or \"\" for none",
                        s.value
                    ),
                );
                default
            }
        }
    }
}

/// The default of whole-number field `name` of `f`.
pub(super) fn default_int(f: &Fields<'_>, name: &str) -> Option<Spanned<u32>> {
    default_of(f, name, |t| t.parse().ok())
}

/// A `finish_on` value: `Some(None)` for `""` (no key), `None` when it is not one.
fn finish_key(s: &str) -> Option<Option<char>> {
    match s {
        "" => Some(None),
        "#" => Some(Some('#')),
        "*" => Some(Some('*')),
        _ => None,
    }
}
