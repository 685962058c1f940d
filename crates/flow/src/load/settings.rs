//! The flow-wide parts of a flow file: `settings:` and the named secret `policies:`.
//!
//! Invariant: a setting or policy field that is absent or cannot be read takes its default
//! from the vocabulary table (`spec.rs`), so the checker always sees a complete `Settings`.

use super::Loader;
use crate::diagnostic::Code;
use crate::model::*;
use crate::span::{Span, Spanned};
use crate::spec::{self, Ty};
use crate::template::is_identifier;
use crate::yaml::Node as Y;

impl Loader<'_> {
    pub(super) fn settings(&mut self, node: Option<&Y>, owner: Span) -> Settings {
        let mut s = Settings {
            max_call_seconds: None,
            min_factors: Spanned::new(1, owner),
            default_locale: Spanned::new("en-US".into(), owner),
            locales: vec![Spanned::new("en-US".into(), owner)],
            voice: None,
            enumeration_safe: false,
            on_error: None,
            recording: Recording {
                pause_behavior: PauseBehavior::Silence,
                when_absent: WhenAbsent::Proceed,
            },
            span: owner,
        };
        let Some(node) = node else { return s };
        let Some(f) = self.fields(node, spec::SETTINGS, "`settings`", owner) else {
            return s;
        };
        s.max_call_seconds = f
            .get("max_call_seconds")
            .and_then(|n| self.int(n, "`max_call_seconds`", 30, 7200));
        if let Some(n) = f
            .get("min_factors")
            .and_then(|n| self.int(n, "`min_factors`", 1, 3))
        {
            s.min_factors = n;
        }
        if let Some(list) = f.get("locales") {
            match list.as_seq() {
                Some(items) => {
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
                    } else {
                        s.locales = locales;
                    }
                }
                None => self.error(
                    Code::WrongType,
                    list.span,
                    format!("`locales` must be a list, found {}", list.shape()),
                ),
            }
        }
        s.default_locale = match f
            .get("default_locale")
            .and_then(|n| self.locale(n, "`default_locale`"))
        {
            Some(l) => l,
            None => s.locales[0].clone(),
        };
        s.voice = f
            .get("voice")
            .and_then(|n| self.string(n, "`voice`"))
            .map(|v| v.value);
        s.enumeration_safe = f
            .get("enumeration_safe")
            .and_then(|n| self.boolean(n, "`enumeration_safe`"))
            .unwrap_or(false);
        s.on_error = f.get("on_error").and_then(|n| self.ident(n, "`on_error`"));
        if let Some(r) = f.get("recording")
            && let Some(rf) = self.fields(
                r,
                spec::SETTINGS
                    .iter()
                    .find(|x| x.name == "recording")
                    .and_then(|x| match x.ty {
                        Ty::Object(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(&[]),
                "`recording`",
                f.key_span("recording").unwrap_or(owner),
            )
        {
            if let Some(v) = rf
                .get("pause_behavior")
                .and_then(|n| self.choice(n, "`pause_behavior`", &["silence", "skip"]))
            {
                s.recording.pause_behavior = if v.value == "skip" {
                    PauseBehavior::Skip
                } else {
                    PauseBehavior::Silence
                };
            }
            if let Some(v) = rf
                .get("when_absent")
                .and_then(|n| self.choice(n, "`when_absent`", &["proceed", "fallback"]))
            {
                s.recording.when_absent = if v.value == "fallback" {
                    WhenAbsent::Fallback
                } else {
                    WhenAbsent::Proceed
                };
            }
        }
        s
    }

    pub(super) fn policies(&mut self, node: &Y, owner: Span) -> Vec<Policy> {
        let Some(f) = self.map_with(node, "`policies`", owner, |_, _, _| true) else {
            return Vec::new();
        };
        let mut entries: Vec<_> = f.entries.into_iter().collect();
        entries.sort_by_key(|(_, (k, _))| k.span.start);
        let mut out = Vec::new();
        for (name, (k, v)) in entries {
            let what = format!("policy `{name}`");
            let Some(pf) = self.fields(v, spec::POLICY_FIELDS, &what, k.span) else {
                continue;
            };
            let kind = match pf
                .get("kind")
                .and_then(|n| self.choice(n, "`kind`", &["pin", "password"]))
            {
                Some(k) if k.value == "password" => SecretKind::Password,
                _ => SecretKind::Pin,
            };
            let min_length = pf
                .get("min_length")
                .and_then(|n| self.int(n, "`min_length`", 4, 64))
                .unwrap_or_else(|| Spanned::new(8, k.span));
            let max_length = pf
                .get("max_length")
                .and_then(|n| self.int(n, "`max_length`", 4, 64))
                .map_or(64, |m| {
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
                });
            let reject = match pf.get("reject") {
                None => vec![
                    Rule::Repeated,
                    Rule::Sequential,
                    Rule::Keypad,
                    Rule::Personal,
                    Rule::Common,
                ],
                Some(list) => match list.as_seq() {
                    Some(items) => items
                        .iter()
                        .filter_map(|i| {
                            self.choice(
                                i,
                                "a rule",
                                &["repeated", "sequential", "keypad", "personal", "common"],
                            )
                        })
                        .map(|r| match r.value.as_str() {
                            "repeated" => Rule::Repeated,
                            "sequential" => Rule::Sequential,
                            "keypad" => Rule::Keypad,
                            "personal" => Rule::Personal,
                            _ => Rule::Common,
                        })
                        .collect(),
                    None => {
                        self.error(
                            Code::WrongType,
                            list.span,
                            format!("`reject` must be a list, found {}", list.shape()),
                        );
                        Vec::new()
                    }
                },
            };
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
}
