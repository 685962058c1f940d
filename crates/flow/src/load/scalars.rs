//! Reading one YAML value as a language type: text, identifiers, variable paths, numbers in a
//! range, durations, digit counts, keys, locales, one word of a set, templates, prompt
//! references, JSON bodies.
//!
//! Invariant: every reader reports what is wrong with the value (its type or its range, with
//! the value's own span) and returns `None`, never a guess; callers keep the field's default.

use std::time::Duration;

use super::{Loader, is_flow_id, parse_digits, parse_duration, sub_span};
use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::model::*;
use crate::span::{Span, Spanned};
use crate::spec;
use crate::template::{Template, is_identifier};
use crate::yaml::{Node as Y, Value};

impl Loader<'_> {
    pub(crate) fn string(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
        self.scalar(node, what, "text", false)
    }

    /// A non-null scalar; with `plain_only`, quoted scalars (always strings in YAML) are a
    /// type error too, for numbers and booleans.
    pub(super) fn scalar(
        &mut self,
        node: &Y,
        what: &str,
        expected: &str,
        plain_only: bool,
    ) -> Option<Spanned<String>> {
        match &node.value {
            Value::Scalar { text, plain } if !node.is_null() && (*plain || !plain_only) => {
                Some(Spanned::new(text.clone(), node.span))
            }
            _ => {
                self.error(
                    Code::WrongType,
                    node.span,
                    format!("{what} must be {expected}, found {}", node.shape()),
                );
                None
            }
        }
    }

    pub(super) fn ident(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
        let s = self.string(node, what)?;
        if is_identifier(&s.value) {
            Some(s)
        } else {
            self.error(Code::InvalidValue, s.span, format!("{what} `{}` is not an identifier (lowercase letters, digits and `_`, starting with a letter)", s.value));
            None
        }
    }

    pub(super) fn flow_id(&mut self, node: &Y) -> Option<Spanned<String>> {
        let s = self.string(node, "`flow`")?;
        if is_flow_id(&s.value) {
            Some(s)
        } else {
            self.error(Code::InvalidValue, s.span, format!("flow id `{}` must be 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter (it appears in webhook URLs)", s.value));
            None
        }
    }

    pub(super) fn path(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
        let s = self.string(node, what)?;
        if !s.value.is_empty() && s.value.split('.').all(is_identifier) {
            Some(s)
        } else {
            self.error(
                Code::InvalidValue,
                s.span,
                format!(
                    "{what} `{}` is not a variable path such as `user.mobile`",
                    s.value
                ),
            );
            None
        }
    }

    pub(super) fn int(&mut self, node: &Y, what: &str, min: u32, max: u32) -> Option<Spanned<u32>> {
        let s = self.scalar_plain(node, what, "a whole number")?;
        match s.value.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Some(Spanned::new(n, s.span)),
            _ => {
                self.error(
                    Code::InvalidValue,
                    s.span,
                    format!(
                        "{what} must be a whole number from {min} to {max}, found `{}`",
                        s.value
                    ),
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, node: &Y, what: &str) -> Option<bool> {
        let s = self.scalar_plain(node, what, "`true` or `false`")?;
        match s.value.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            other => {
                self.error(
                    Code::InvalidValue,
                    s.span,
                    format!("{what} must be `true` or `false`, found `{other}`"),
                );
                None
            }
        }
    }

    /// A scalar that must be written plain (numbers, booleans): quoting one is a type error.
    pub(super) fn scalar_plain(
        &mut self,
        node: &Y,
        what: &str,
        expected: &str,
    ) -> Option<Spanned<String>> {
        self.scalar(node, what, expected, true)
    }

    pub(crate) fn duration(&mut self, node: &Y, what: &str) -> Option<Spanned<Duration>> {
        let s = self.string(node, what)?;
        match parse_duration(&s.value) {
            Some(d) => Some(Spanned::new(d, s.span)),
            None => {
                self.error(
                    Code::InvalidValue,
                    s.span,
                    format!(
                        "{what} `{}` is not a duration; write e.g. `500ms`, `5s`, `10m`",
                        s.value
                    ),
                );
                None
            }
        }
    }

    pub(super) fn digits(&mut self, node: &Y, what: &str) -> Option<Digits> {
        let s = self.string(node, what)?;
        let digits = parse_digits(&s.value);
        if digits.is_none() {
            self.error(
                Code::InvalidValue,
                s.span,
                format!(
                    "{what} `{}` must be a count `6` or a range `6..8` between 1 and 64",
                    s.value
                ),
            );
        }
        digits
    }

    pub(super) fn key(&mut self, node: &Y, what: &str) -> Option<Spanned<char>> {
        let s = self.string(node, what)?;
        let mut chars = s.value.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => {
                Some(Spanned::new(c, s.span))
            }
            _ => {
                self.error(
                    Code::InvalidValue,
                    s.span,
                    format!(
                        "{what} `{}` is not a keypad key (`0`-`9`, `*`, `#`)",
                        s.value
                    ),
                );
                None
            }
        }
    }

    pub(super) fn locale(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
        let s = self.string(node, what)?;
        let ok = s.value.split('-').count() <= 3
            && s.value.split('-').enumerate().all(|(i, part)| {
                (2..=8).contains(&part.len())
                    && if i == 0 {
                        part.chars().all(|c| c.is_ascii_lowercase())
                    } else {
                        part.chars().all(|c| c.is_ascii_alphanumeric())
                    }
            });
        if ok {
            Some(s)
        } else {
            self.error(
                Code::InvalidValue,
                s.span,
                format!("{what} `{}` is not a locale such as `en-US`", s.value),
            );
            None
        }
    }

    pub(crate) fn choice(
        &mut self,
        node: &Y,
        what: &str,
        choices: &[&str],
    ) -> Option<Spanned<String>> {
        let s = self.string(node, what)?;
        if choices.contains(&s.value.as_str()) {
            return Some(s);
        }
        let mut d = Diagnostic::new(
            Code::InvalidValue,
            self.file,
            s.span,
            format!("{what} `{}` is not one of: {}", s.value, choices.join(", ")),
        );
        if let Some(h) = did_you_mean(&s.value, choices.iter().copied()) {
            d = d.label(h);
        }
        self.push(d);
        None
    }

    pub(crate) fn template(&mut self, node: &Y, what: &str) -> Option<Spanned<Template>> {
        let s = self.string(node, what)?;
        match Template::parse(&s.value) {
            Ok(t) => Some(Spanned::new(t, s.span)),
            Err(errors) => {
                for e in errors {
                    let span = sub_span(node, &s.value, e.offset, e.len);
                    let code = if e.message.starts_with("unknown filter") {
                        Code::UnknownFilter
                    } else {
                        Code::InvalidValue
                    };
                    self.error(code, span, format!("{what}: {}", e.message));
                }
                None
            }
        }
    }

    pub(super) fn prompt(&mut self, node: &Y, what: &str) -> Option<Prompt> {
        match &node.value {
            Value::Seq(items) => {
                let items: Vec<PromptItem> = items
                    .iter()
                    .filter_map(|i| self.prompt_item(i, what))
                    .collect();
                if items.is_empty() {
                    self.error(
                        Code::InvalidValue,
                        node.span,
                        format!("{what} is an empty list of prompts"),
                    );
                    return None;
                }
                Some(Prompt { items })
            }
            _ => self
                .prompt_item(node, what)
                .map(|i| Prompt { items: vec![i] }),
        }
    }

    pub(super) fn prompt_item(&mut self, node: &Y, what: &str) -> Option<PromptItem> {
        if node.as_map().is_some() {
            let f = self.fields(node, spec::PROMPT_FIELDS, what, node.span)?;
            let key = self.ident(f.get("prompt")?, "a prompt key")?;
            let with = match f.get("with") {
                Some(w) => self.template_map(w, "`with`", f.key_span("with").unwrap_or(node.span)),
                None => Vec::new(),
            };
            return Some(PromptItem { key, with });
        }
        let key = self.ident(node, what)?;
        Some(PromptItem {
            key,
            with: Vec::new(),
        })
    }

    pub(super) fn template_map(
        &mut self,
        node: &Y,
        what: &str,
        owner: Span,
    ) -> Vec<(Spanned<String>, Spanned<Template>)> {
        let Some(f) = self.map_with(node, what, owner, |_, _, _| true) else {
            return Vec::new();
        };
        let mut out: Vec<(Spanned<String>, Spanned<Template>)> = Vec::new();
        let mut entries: Vec<_> = f.entries.into_iter().collect();
        entries.sort_by_key(|(_, (k, _))| k.span.start);
        for (name, (k, v)) in entries {
            let key = Spanned::new(name.to_string(), k.span);
            if !is_identifier(name) {
                self.error(
                    Code::InvalidValue,
                    k.span,
                    format!("`{name}` is not a variable name (lowercase letters, digits, `_`)"),
                );
                continue;
            }
            // A template with syntax errors (already reported) still counts as passed, so the
            // prompt-parameter check does not report it a second time.
            let t = self
                .template(v, &format!("`{name}`"))
                .unwrap_or_else(|| Spanned::new(Template::default(), v.span));
            out.push((key, t));
        }
        out
    }

    pub(super) fn json(&mut self, node: &Y) -> JsonTemplate {
        match &node.value {
            _ if node.is_null() => JsonTemplate::Null,
            Value::Scalar { text, plain: true } if text == "true" || text == "false" => {
                JsonTemplate::Bool(text == "true")
            }
            Value::Scalar { text, plain: true } if text.parse::<f64>().is_ok() => {
                JsonTemplate::Number(text.clone())
            }
            Value::Scalar { .. } => match self.template(node, "a body value") {
                Some(t) => JsonTemplate::String(t),
                None => JsonTemplate::Null,
            },
            Value::Seq(items) => JsonTemplate::Array(items.iter().map(|i| self.json(i)).collect()),
            Value::Map(entries) => JsonTemplate::Object(
                entries
                    .iter()
                    .filter_map(|(k, v)| {
                        let key = self.string(k, "a body key")?.value;
                        Some((key, self.json(v)))
                    })
                    .collect(),
            ),
        }
    }
}
