//! The flow-wide parts of a flow file: `settings:` and the named secret `policies:`.
//!
//! Invariant: a setting or policy field that is absent or cannot be read takes its default
//! from the vocabulary table (`spec.rs`), so the checker always sees a complete `Settings`.

use super::defaults::default_int;
use super::{Fields, Loader};
use crate::diagnostic::Code;
use crate::model::*;
use crate::span::{Span, Spanned};
use crate::spec::{self, Field};
use crate::template::is_identifier;
use crate::yaml::Node as Y;

impl Loader<'_> {
    /// `settings:` (`None`: not written); every setting not written, or refused, at its
    /// default.
    pub(super) fn settings(&mut self, node: Option<&Y>, owner: Span) -> Settings {
        let f = node
            .and_then(|n| self.fields(n, spec::SETTINGS, "`settings`", owner))
            .unwrap_or_else(|| Fields::empty(spec::SETTINGS, owner));
        let max_call_seconds = self.int_field(&f, "max_call_seconds");
        let min_factors = self.int_or_default(&f, "min_factors");
        let locales = self.locales(&f);
        let default_locale = match f
            .get("default_locale")
            .and_then(|n| self.locale(n, "`default_locale`"))
        {
            Some(l) => l,
            None => locales[0].clone(),
        };
        let voice = f
            .get("voice")
            .and_then(|n| self.string(n, "`voice`"))
            .map(|v| v.value);
        let enumeration_safe = self.bool_or_default(&f, "enumeration_safe");
        let on_error = f.get("on_error").and_then(|n| self.ident(n, "`on_error`"));
        let recording = self.recording(&f);
        Settings {
            max_call_seconds,
            min_factors,
            default_locale,
            locales,
            voice,
            enumeration_safe,
            on_error,
            recording,
            span: owner,
        }
    }

    /// `settings.locales`: never empty (its default when not written, or refused).
    fn locales(&mut self, f: &Fields<'_>) -> Vec<Spanned<String>> {
        let default = || {
            let words = f.field("locales").map(Field::default_words);
            let words = words.unwrap_or_default().into_iter();
            let locales: Vec<_> = words
                .map(|w| Spanned::new(w.to_string(), f.owner))
                .collect();
            if locales.is_empty() {
                vec![Spanned::new(String::new(), f.owner)]
            } else {
                locales
            }
        };
        let Some(list) = f.get("locales") else {
            return default();
        };
        let Some(items) = list.as_seq() else {
            self.error(
                Code::WrongType,
                list.span,
                format!("`locales` must be a list, found {}", list.shape()),
            );
            return default();
        };
        let locales: Vec<_> = items
            .iter()
            .filter_map(|i| self.locale(i, "a locale"))
            .collect();
        if locales.is_empty() {
            self.error(
                Code::InvalidValue,
                list.span,
                "`locales` must list at least one locale",
            );
            return default();
        }
        locales
    }

    /// `settings.recording`: how `secure` sections pause recording.
    fn recording(&mut self, f: &Fields<'_>) -> Recording {
        let spec = spec::field(spec::SETTINGS, "recording").map_or(&[][..], Field::object);
        let rf = f
            .get("recording")
            .and_then(|r| {
                let owner = f.key_span("recording").unwrap_or(f.owner);
                self.fields(r, spec, "`recording`", owner)
            })
            .unwrap_or_else(|| Fields::empty(spec, f.owner));
        let pause_behavior = match self.word_or_default(&rf, "pause_behavior").as_str() {
            "skip" => PauseBehavior::Skip,
            _ => PauseBehavior::Silence,
        };
        let when_absent = match self.word_or_default(&rf, "when_absent").as_str() {
            "fallback" => WhenAbsent::Fallback,
            _ => WhenAbsent::Proceed,
        };
        Recording {
            pause_behavior,
            when_absent,
        }
    }

    /// `policies:`, each named policy with every field not written (or refused) at its
    /// default.
    pub(super) fn policies(&mut self, node: &Y, owner: Span) -> Vec<Policy> {
        let Some(f) = self.map_with(node, "`policies`", owner, |_, _, _| true) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, k, v) in f.in_order() {
            let what = format!("policy `{name}`");
            let Some(pf) = self.fields(v, spec::POLICY_FIELDS, &what, k.span) else {
                continue;
            };
            let kind = match self.word_or_default(&pf, "kind").as_str() {
                "password" => SecretKind::Password,
                _ => SecretKind::Pin,
            };
            let min_length = self.int_or_default(&pf, "min_length");
            let max_length = match self.int_field(&pf, "max_length") {
                Some(m) => {
                    if m.value < min_length.value {
                        self.error(
                            Code::InvalidValue,
                            m.span,
                            format!(
                                "`max_length` {} is below `min_length` {}",
                                m.value, min_length.value
                            ),
                        );
                    }
                    m.value
                }
                None => default_int(&pf, "max_length").map_or(0, |m| m.value),
            };
            let reject = self.reject(&pf);
            if !is_identifier(name) {
                self.error(
                    Code::InvalidValue,
                    k.span,
                    format!("policy name `{name}` is not an identifier"),
                );
            }
            out.push(Policy {
                name: Spanned::new(name.to_string(), k.span),
                kind,
                min_length,
                max_length,
                reject,
            });
        }
        out
    }

    /// A policy's `reject:` rules; its default list when not written.
    fn reject(&mut self, pf: &Fields<'_>) -> Vec<Rule> {
        let field = pf.field("reject");
        let Some(list) = pf.get("reject") else {
            let words = field.map(Field::default_words).unwrap_or_default();
            return words.into_iter().map(rule).collect();
        };
        let Some(items) = list.as_seq() else {
            self.error(
                Code::WrongType,
                list.span,
                format!("`reject` must be a list, found {}", list.shape()),
            );
            return Vec::new();
        };
        let choices = field.map_or(&[][..], Field::choices);
        items
            .iter()
            .filter_map(|i| self.choice(i, "a rule", choices))
            .map(|r| rule(&r.value))
            .collect()
    }
}

/// The rule a word of `reject:` names.
fn rule(word: &str) -> Rule {
    match word {
        "repeated" => Rule::Repeated,
        "sequential" => Rule::Sequential,
        "keypad" => Rule::Keypad,
        "personal" => Rule::Personal,
        _ => Rule::Common,
    }
}
