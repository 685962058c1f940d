//! Structured SSML in a catalog entry: `say:` as a list of parts, each plain text, a `break`,
//! an `emphasis` or a `rate` (SSML `<prosody rate>`) around a text. Catalogs never hold raw
//! SSML strings: every part is a typed value, so the TwiML writer escapes every text and the
//! markup comes from the renderer alone.
//!
//! Invariant: a loaded part is within the bounds below (a break of 1 ms to 10 s, an emphasis
//! level and a rate from the fixed lists, a percentage rate of 20 to 200); anything else is
//! an E009 naming the value, with its span.

use std::time::Duration;

use crate::diagnostic::Code;
use crate::load::Loader;
use crate::span::Spanned;
use crate::spec::{Field, Ty};
use crate::template::Template;
use crate::yaml::Node as Y;

/// The longest `break` (Twilio's and Amazon Polly's limit for `<break time>`).
pub const MAX_BREAK: Duration = Duration::from_secs(10);

/// `emphasis` levels `<Say>` takes.
pub const EMPHASIS_LEVELS: &[&str] = &["strong", "moderate", "reduced"];

/// Named `rate` values `<prosody rate>` takes; a percentage `20%`..`200%` is allowed too.
pub const RATES: &[&str] = &["x-slow", "slow", "medium", "fast", "x-fast"];

/// The slowest and fastest percentage rates (Amazon Polly's bounds).
pub const RATE_PERCENT: (u32, u32) = (20, 200);

/// One part of a structured `say:` entry.
#[derive(Clone, Debug)]
pub enum Part {
    /// Text, spoken as written (`{{ param }}` placeholders filled from the flow's `with:`).
    Text(Template),
    /// Silence (`<break time>`).
    Break(Duration),
    /// Text spoken with `<emphasis level>`.
    Emphasis {
        /// One of [`EMPHASIS_LEVELS`].
        level: String,
        /// What is said.
        text: Template,
    },
    /// Text spoken at a `<prosody rate>`.
    Rate {
        /// One of [`RATES`] or a percentage `N%` within [`RATE_PERCENT`].
        rate: String,
        /// What is said.
        text: Template,
    },
}

impl Part {
    /// The text this part says, if any.
    pub fn template(&self) -> Option<&Template> {
        match self {
            Part::Text(t) | Part::Emphasis { text: t, .. } | Part::Rate { text: t, .. } => Some(t),
            Part::Break(_) => None,
        }
    }
}

/// Whether `rate` is a named rate or a percentage within bounds.
pub fn rate_is_valid(rate: &str) -> bool {
    if RATES.contains(&rate) {
        return true;
    }
    rate.strip_suffix('%')
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| (RATE_PERCENT.0..=RATE_PERCENT.1).contains(&n))
}

/// The fields of one mapping part of `say:`.
pub const PART: &[Field] = &[
    Field {
        name: "break",
        ty: Ty::Duration,
        required: false,
        default: None,
        doc: "Silence, 1ms to 10s (`<break time>`).",
    },
    Field {
        name: "emphasis",
        ty: Ty::Enum(EMPHASIS_LEVELS),
        required: false,
        default: None,
        doc: "Say `text` with `<emphasis level>`.",
    },
    Field {
        name: "rate",
        ty: Ty::Str,
        required: false,
        default: None,
        doc: "Say `text` at `<prosody rate>`: x-slow, slow, medium, fast, x-fast, or 20% to 200%.",
    },
    Field {
        name: "text",
        ty: Ty::Template,
        required: false,
        default: None,
        doc: "The words of an `emphasis` or `rate` part.",
    },
];

impl Loader<'_> {
    /// The parts of a structured `say:` (a list); `None` when it is not a non-empty list.
    pub(crate) fn ssml_parts(&mut self, node: &Y, key: &str) -> Option<Vec<Part>> {
        let Some(items) = node.as_seq() else {
            self.error(
                Code::WrongType,
                node.span,
                format!(
                    "`say` of prompt `{key}` must be a list of parts, found {}",
                    node.shape()
                ),
            );
            return None;
        };
        if items.is_empty() {
            self.error(
                Code::InvalidValue,
                node.span,
                format!("`say` of prompt `{key}` has no parts"),
            );
            return None;
        }
        let mut parts = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match self.ssml_part(item, key) {
                Some(p) => parts.push(p),
                None => ok = false,
            }
        }
        ok.then_some(parts)
    }

    /// One part: text, `{ break }`, `{ emphasis, text }` or `{ rate, text }`.
    fn ssml_part(&mut self, item: &Y, key: &str) -> Option<Part> {
        let what = format!("a part of prompt `{key}`");
        if item.as_map().is_none() {
            return self.template(item, &what).map(|t| Part::Text(t.value));
        }
        let f = self.fields(item, PART, &what, item.span)?;
        let written: Vec<&str> = ["break", "emphasis", "rate"]
            .into_iter()
            .filter(|n| f.get(n).is_some())
            .collect();
        if written.len() != 1 {
            self.error(
                Code::InvalidValue,
                item.span,
                format!("{what} needs exactly one of `break`, `emphasis`, `rate`"),
            );
            return None;
        }
        let text = f.get("text");
        if written[0] == "break" {
            if let Some(t) = text {
                self.error(Code::InvalidValue, t.span, "a `break` part takes no `text`");
                return None;
            }
            let d = self.duration(f.get("break")?, "`break`")?;
            return self.break_within_bounds(d);
        }
        let Some(text) = text else {
            self.error(
                Code::MissingField,
                item.span,
                format!("{what} with `{}` needs `text`", written[0]),
            );
            return None;
        };
        let text = self.template(text, "`text`")?.value;
        if let Some(level) = f.get("emphasis") {
            let level = self.choice(level, "`emphasis`", EMPHASIS_LEVELS)?;
            return Some(Part::Emphasis {
                level: level.value,
                text,
            });
        }
        let rate = self.string(f.get("rate")?, "`rate`")?;
        if !rate_is_valid(&rate.value) {
            let (lo, hi) = RATE_PERCENT;
            self.error(
                Code::InvalidValue,
                rate.span,
                format!(
                    "`rate` `{}` is not one of: {}, or a percentage {lo}% to {hi}%",
                    rate.value,
                    RATES.join(", ")
                ),
            );
            return None;
        }
        Some(Part::Rate {
            rate: rate.value,
            text,
        })
    }

    fn break_within_bounds(&mut self, d: Spanned<Duration>) -> Option<Part> {
        if d.value.is_zero() || d.value > MAX_BREAK {
            self.error(
                Code::InvalidValue,
                d.span,
                format!(
                    "`break` must be 1ms to {}s, found {}ms",
                    MAX_BREAK.as_secs(),
                    d.value.as_millis()
                ),
            );
            return None;
        }
        Some(Part::Break(d.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_named_or_percent_within_bounds() {
        for ok in ["slow", "x-fast", "20%", "100%", "200%"] {
            assert!(rate_is_valid(ok), "{ok}");
        }
        for bad in [
            "", "%", "19%", "201%", "-5%", "1.5%", "slower", "50 %", "\"fast\"",
        ] {
            assert!(!rate_is_valid(bad), "{bad}");
        }
    }
}
