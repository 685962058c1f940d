//! From a spanned YAML tree to the flow model, reporting every shape problem at once.
//!
//! The loader checks what one field can tell on its own: types, ranges, unknown fields, missing
//! fields, duplicate ids. Cross-node questions (targets, reachability, secrets, factors) belong
//! to `check`. Invariant: the loader never stops at the first problem and never panics; a field
//! it cannot read is reported and left at its default so later checks still run.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::model::*;
use crate::span::{Pos, Span, Spanned};
use crate::spec::{self, Field, KindSpec, Ty};
use crate::template::{Template, is_identifier};
use crate::yaml::{self, Node as Y, Value};

/// Loads `text` (the contents of `file`). Returns the flow when the file could be read far
/// enough to build one (possibly with problems), and every problem found.
pub(crate) fn load(file: &str, text: &str) -> (Option<Flow>, Vec<Diagnostic>) {
    let mut l = Loader::new(file);
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            l.error(
                Code::MissingField,
                Span::point(Pos { line: 1, col: 1 }),
                "the file is empty: a flow needs `flow`, `start`, `settings` and `nodes`",
            );
            return (None, l.diags);
        }
        Err(e) => {
            l.error(Code::Syntax, e.span, format!("YAML syntax: {}", e.message));
            return (None, l.diags);
        }
    };
    let flow = l.flow(&root, text);
    (flow, l.diags)
}

/// Loads a standalone YAML file for another reader (prompt catalogs).
pub(crate) struct Loader<'a> {
    pub(crate) file: &'a str,
    pub(crate) diags: Vec<Diagnostic>,
    /// Ids of nodes that could not be loaded, so edges to them are not reported as missing.
    broken: Vec<String>,
    /// Variables that broken nodes appear to bind (`into:`), so uses are not reported.
    loose_vars: Vec<String>,
}

/// The fields of one mapping, checked against a spec.
pub(crate) struct Fields<'n> {
    entries: HashMap<&'n str, (&'n Y, &'n Y)>,
    /// Span of the key that owns this mapping (for "missing field" errors).
    owner: Span,
}

impl<'n> Fields<'n> {
    pub(crate) fn get(&self, name: &str) -> Option<&'n Y> {
        self.entries
            .get(name)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }

    pub(crate) fn key_span(&self, name: &str) -> Option<Span> {
        self.entries.get(name).map(|(k, _)| k.span)
    }
}

fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl<'a> Loader<'a> {
    pub(crate) fn new(file: &'a str) -> Self {
        Loader {
            file,
            diags: Vec::new(),
            broken: Vec::new(),
            loose_vars: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, code: Code, span: Span, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(code, self.file, span, message));
    }

    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Checks that `node` is a mapping whose keys are unique and all in `spec`, and that the
    /// required ones are present. `what` names the mapping in messages.
    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Y,
        spec: &[Field],
        what: &str,
        owner: Span,
    ) -> Option<Fields<'n>> {
        let names: Vec<&str> = spec.iter().map(|f| f.name).collect();
        let fields = self.map_with(node, what, owner, |l, key, _| {
            if names.contains(&key.0) {
                return true;
            }
            let mut d = Diagnostic::new(
                Code::UnknownField,
                l.file,
                key.1,
                format!("unknown field `{}` in {what}", key.0),
            );
            if let Some(hint) = did_you_mean(key.0, names.iter().copied()) {
                d = d.label(hint);
            } else {
                d = d.note(format!("{what} takes: {}", names.join(", ")));
            }
            l.push(d);
            false
        })?;
        for f in spec.iter().filter(|f| f.required) {
            if !fields.entries.contains_key(f.name) || fields.get(f.name).is_none() {
                let span = fields.key_span(f.name).unwrap_or(owner);
                self.error(
                    Code::MissingField,
                    span,
                    format!("{what} needs `{}`", f.name),
                );
                if let Some(d) = self.diags.last_mut() {
                    d.notes.push(format!("`{}`: {}", f.name, f.doc))
                }
            }
        }
        Some(fields)
    }

    /// A mapping with unique scalar keys; `accept` decides per key whether it is kept.
    fn map_with<'n>(
        &mut self,
        node: &'n Y,
        what: &str,
        owner: Span,
        mut accept: impl FnMut(&mut Self, (&str, Span), &'n Y) -> bool,
    ) -> Option<Fields<'n>> {
        let Some(entries) = node.as_map() else {
            if node.is_null() {
                return Some(Fields {
                    entries: HashMap::new(),
                    owner,
                });
            }
            self.error(
                Code::WrongType,
                node.span,
                format!("{what} must be a mapping, found {}", node.shape()),
            );
            return None;
        };
        let mut out: HashMap<&'n str, (&'n Y, &'n Y)> = HashMap::new();
        for (k, v) in entries {
            let Some(name) = k.as_scalar() else {
                self.error(
                    Code::WrongType,
                    k.span,
                    format!("keys in {what} must be plain words, found {}", k.shape()),
                );
                continue;
            };
            if let Some((first, _)) = out.get(name) {
                let line = first.span.start.line;
                let d = Diagnostic::new(
                    Code::Duplicate,
                    self.file,
                    k.span,
                    format!("`{name}` is written twice in {what}"),
                )
                .label(format!("first written on line {line}"));
                self.push(d);
                continue;
            }
            if accept(self, (name, k.span), v) {
                out.insert(name, (k, v));
            }
        }
        Some(Fields {
            entries: out,
            owner,
        })
    }

    // ---- scalars -------------------------------------------------------------------------

    pub(crate) fn string(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
        self.scalar(node, what, "text", false)
    }

    /// A non-null scalar; with `plain_only`, quoted scalars (always strings in YAML) are a
    /// type error too, for numbers and booleans.
    fn scalar(
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

    fn ident(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
        let s = self.string(node, what)?;
        if is_identifier(&s.value) {
            Some(s)
        } else {
            self.error(Code::InvalidValue, s.span, format!("{what} `{}` is not an identifier (lowercase letters, digits and `_`, starting with a letter)", s.value));
            None
        }
    }

    fn flow_id(&mut self, node: &Y) -> Option<Spanned<String>> {
        let s = self.string(node, "`flow`")?;
        if is_flow_id(&s.value) {
            Some(s)
        } else {
            self.error(Code::InvalidValue, s.span, format!("flow id `{}` must be 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter (it appears in webhook URLs)", s.value));
            None
        }
    }

    fn path(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
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

    fn int(&mut self, node: &Y, what: &str, min: u32, max: u32) -> Option<Spanned<u32>> {
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

    fn boolean(&mut self, node: &Y, what: &str) -> Option<bool> {
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
    fn scalar_plain(&mut self, node: &Y, what: &str, expected: &str) -> Option<Spanned<String>> {
        self.scalar(node, what, expected, true)
    }

    fn duration(&mut self, node: &Y, what: &str) -> Option<Spanned<Duration>> {
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

    fn digits(&mut self, node: &Y, what: &str) -> Option<Digits> {
        let s = self.string(node, what)?;
        let parsed = match s.value.split_once("..") {
            Some((a, b)) => a
                .trim()
                .parse::<u32>()
                .ok()
                .zip(b.trim().parse::<u32>().ok()),
            None => s.value.trim().parse::<u32>().ok().map(|n| (n, n)),
        };
        match parsed {
            Some((min, max)) if min >= 1 && min <= max && max <= 64 => Some(Digits { min, max }),
            _ => {
                self.error(
                    Code::InvalidValue,
                    s.span,
                    format!(
                        "{what} `{}` must be a count `6` or a range `6..8` between 1 and 64",
                        s.value
                    ),
                );
                None
            }
        }
    }

    fn key(&mut self, node: &Y, what: &str) -> Option<Spanned<char>> {
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

    fn finish_on(&mut self, node: Option<&Y>, what: &str) -> Option<char> {
        let Some(node) = node else { return Some('#') };
        let s = self
            .string(node, what)
            .unwrap_or_else(|| Spanned::new("#".into(), node.span));
        match s.value.as_str() {
            "" => None,
            "#" => Some('#'),
            "*" => Some('*'),
            other => {
                self.error(
                    Code::InvalidValue,
                    s.span,
                    format!("{what} `{other}` must be `#`, `*`, or \"\" for none"),
                );
                Some('#')
            }
        }
    }

    fn locale(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
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

    fn choice(&mut self, node: &Y, what: &str, choices: &[&str]) -> Option<Spanned<String>> {
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

    fn prompt(&mut self, node: &Y, what: &str) -> Option<Prompt> {
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

    fn prompt_item(&mut self, node: &Y, what: &str) -> Option<PromptItem> {
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

    fn template_map(
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

    // ---- the flow ------------------------------------------------------------------------

    fn flow(&mut self, root: &Y, text: &str) -> Option<Flow> {
        let top = Span::point(Pos { line: 1, col: 1 });
        let f = self.fields(root, spec::FLOW, "the flow file", top)?;
        let id = f.get("flow").and_then(|n| self.flow_id(n));
        let start = f.get("start").and_then(|n| self.ident(n, "`start`"));
        let version = f
            .get("version")
            .and_then(|n| self.string(n, "`version`"))
            .map(|s| s.value);
        let description = f
            .get("description")
            .and_then(|n| self.string(n, "`description`"))
            .map(|s| s.value);
        let settings = self.settings(f.get("settings"), f.key_span("settings").unwrap_or(top));
        let policies = f
            .get("policies")
            .map(|p| self.policies(p, f.key_span("policies").unwrap_or(top)))
            .unwrap_or_default();
        let mut nodes = Vec::new();
        let mut index = NodeIndex::default();
        if let Some(n) = f.get("nodes") {
            self.nodes(
                n,
                f.key_span("nodes").unwrap_or(top),
                None,
                &mut nodes,
                &mut index,
            );
        }
        Some(Flow {
            file: self.file.to_string(),
            id: id.unwrap_or_else(|| Spanned::new(String::new(), top)),
            version,
            digest: digest(text),
            description,
            start: start.unwrap_or_else(|| Spanned::new(String::new(), top)),
            settings,
            policies,
            nodes,
            index,
            broken: std::mem::take(&mut self.broken),
            loose_vars: std::mem::take(&mut self.loose_vars),
        })
    }

    fn settings(&mut self, node: Option<&Y>, owner: Span) -> Settings {
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

    fn policies(&mut self, node: &Y, owner: Span) -> Vec<Policy> {
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

    fn nodes(
        &mut self,
        node: &Y,
        _owner: Span,
        section: Option<&str>,
        out: &mut Vec<Node>,
        index: &mut NodeIndex,
    ) -> Vec<String> {
        let what = match section {
            Some(s) => format!("the nodes of secure section `{s}`"),
            None => "`nodes`".to_string(),
        };
        let Some(entries) = node.as_map() else {
            self.error(
                Code::WrongType,
                node.span,
                format!(
                    "{what} must be a mapping of node ids to nodes, found {}",
                    node.shape()
                ),
            );
            return Vec::new();
        };
        let mut ids = Vec::new();
        for (k, v) in entries {
            let Some(id) = k.as_scalar() else {
                self.error(
                    Code::WrongType,
                    k.span,
                    format!("node ids must be words, found {}", k.shape()),
                );
                continue;
            };
            let id = Spanned::new(id.to_string(), k.span);
            if !is_identifier(&id.value) {
                self.error(Code::InvalidValue, id.span, format!("node id `{}` is not an identifier (lowercase letters, digits and `_`, starting with a letter)", id.value));
            }
            if let Some(&first) = index.get(&id.value) {
                let first_line = out.get(first).map_or(0, |n: &Node| n.id.span.start.line);
                let d = Diagnostic::new(
                    Code::Duplicate,
                    self.file,
                    id.span,
                    format!("node `{}` is defined twice", id.value),
                )
                .label(format!("first defined on line {first_line}"));
                self.push(d);
                continue;
            }
            if let Some(n) = self.node(&id, v, section, out, index) {
                index.insert(n.id.value.clone(), out.len());
                ids.push(n.id.value.clone());
                out.push(n);
            } else {
                // Keep the id known so edges to it are not reported as missing, and keep what
                // it seems to bind so uses are not reported as unknown.
                self.broken.push(id.value.clone());
                let bodies = v
                    .as_map()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, body)| body.as_map());
                for body in bodies {
                    for (k, val) in body {
                        if k.as_scalar() == Some("into")
                            && let Some(var) = val.as_scalar()
                        {
                            self.loose_vars.push(var.to_string());
                        }
                    }
                }
            }
        }
        ids
    }

    fn node(
        &mut self,
        id: &Spanned<String>,
        v: &Y,
        section: Option<&str>,
        out: &mut Vec<Node>,
        index: &mut NodeIndex,
    ) -> Option<Node> {
        let what = format!("node `{}`", id.value);
        let Some(entries) = v.as_map() else {
            self.error(Code::WrongType, v.span, format!("{what} must be a mapping with one action such as `say:` or `gather:`, found {}", v.shape()));
            return None;
        };
        let common: Vec<&str> = spec::NODE_FIELDS.iter().map(|f| f.name).collect();
        let kind_names: Vec<&str> = spec::KINDS.iter().map(|k| k.name).collect();
        let mut kind: Option<(&KindSpec, &Y, &Y)> = None;
        let mut several = false;
        let mut unknown: Vec<(&str, Span)> = Vec::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for (k, val) in entries {
            let Some(name) = k.as_scalar() else {
                self.error(
                    Code::WrongType,
                    k.span,
                    format!("keys in {what} must be words"),
                );
                continue;
            };
            if let Some(first) = seen.insert(name, k.span) {
                let d = Diagnostic::new(
                    Code::Duplicate,
                    self.file,
                    k.span,
                    format!("`{name}` is written twice in {what}"),
                )
                .label(format!("first written on line {}", first.start.line));
                self.push(d);
                continue;
            }
            if let Some(spec) = spec::kind(name) {
                match kind {
                    None => kind = Some((spec, k, val)),
                    Some((first, _, _)) => {
                        let d = Diagnostic::new(
                            Code::SeveralKinds,
                            self.file,
                            k.span,
                            format!("{what} has two actions, `{}` and `{name}`", first.name),
                        )
                        .note("one action per node: split it into two nodes joined by `next`");
                        self.push(d);
                        several = true;
                    }
                }
            } else if !common.contains(&name) {
                unknown.push((name, k.span));
            }
        }
        for (name, span) in &unknown {
            let all = kind_names.iter().chain(common.iter()).copied();
            let (code, message) = if kind.is_none() {
                (
                    Code::UnknownKind,
                    format!("unknown node kind `{name}` in {what}"),
                )
            } else {
                (
                    Code::UnknownField,
                    format!("unknown field `{name}` in {what}"),
                )
            };
            let mut d = Diagnostic::new(code, self.file, *span, message);
            match did_you_mean(name, all) {
                Some(h) => d = d.label(h),
                None if kind.is_none() => {
                    d = d.note(format!("node kinds: {}", kind_names.join(", ")))
                }
                None => {
                    d = d.note(format!(
                        "besides its action a node takes: {}",
                        common.join(", ")
                    ))
                }
            }
            self.push(d);
        }
        if several {
            return None;
        }
        let Some((spec, kind_key, body)) = kind else {
            if unknown.is_empty() {
                let d = Diagnostic::new(
                    Code::NoKind,
                    self.file,
                    id.span,
                    format!("{what} has no action"),
                )
                .note(format!("give it one of: {}", kind_names.join(", ")));
                self.push(d);
            }
            return None;
        };
        let field = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_scalar() == Some(name))
                .map(|(k, v)| (k, v))
        };
        let next = field("next").and_then(|(_, n)| {
            if n.is_null() {
                None
            } else {
                self.ident(n, "`next`")
            }
        });
        let mut on = Vec::new();
        if let Some((ok, onv)) = field("on")
            && let Some(f) = self.map_with(onv, "`on`", ok.span, |_, _, _| true)
        {
            let mut edges: Vec<_> = f.entries.into_iter().collect();
            edges.sort_by_key(|(_, (k, _))| k.span.start);
            for (name, (k, target)) in edges {
                if self.outcome_known(spec, name, k.span, &what)
                    && let Some(t) = self.ident(target, "an edge target")
                {
                    on.push(Edge {
                        outcome: Spanned::new(name.to_string(), k.span),
                        target: t,
                    });
                }
            }
        }
        let limit = field("limit").and_then(|(lk, lv)| {
            let f = self.fields(
                lv,
                spec::NODE_FIELDS
                    .iter()
                    .find(|f| f.name == "limit")
                    .map_or(&[], |f| match f.ty {
                        Ty::Object(o) => o,
                        _ => &[],
                    }),
                "`limit`",
                lk.span,
            )?;
            let visits = self.int(f.get("visits")?, "`visits`", 1, 20)?;
            let then = self.ident(f.get("then")?, "`then`")?;
            Some(Limit {
                visits: visits.value,
                then,
            })
        });
        let description = field("description")
            .and_then(|(_, d)| self.string(d, "`description`"))
            .map(|s| s.value);
        let kind = self.kind(spec, id, kind_key, body, section, out, index)?;
        Some(Node {
            id: id.clone(),
            kind,
            kind_span: kind_key.span,
            next,
            on,
            limit,
            section: section.map(str::to_string),
            description,
        })
    }

    fn outcome_known(&mut self, spec: &KindSpec, name: &str, span: Span, what: &str) -> bool {
        if spec.outcomes.iter().any(|o| o.name == name)
            || (spec.name == "http" && is_status_pattern(name))
        {
            return true;
        }
        let mut d = Diagnostic::new(
            Code::UnknownOutcome,
            self.file,
            span,
            format!(
                "`{}` nodes never produce outcome `{name}` ({what})",
                spec.name
            ),
        );
        let names: Vec<&str> = spec.outcomes.iter().map(|o| o.name).collect();
        if let Some(h) = did_you_mean(name, names.iter().copied()) {
            d = d.label(h);
        } else if names.is_empty() {
            d = d.note(format!("`{}` nodes only have `next`", spec.name));
        } else {
            d = d.note(format!("`{}` outcomes: {}", spec.name, names.join(", ")));
        }
        self.push(d);
        false
    }

    #[allow(clippy::too_many_arguments)]
    fn kind(
        &mut self,
        spec: &KindSpec,
        id: &Spanned<String>,
        key: &Y,
        body: &Y,
        section: Option<&str>,
        out: &mut Vec<Node>,
        index: &mut NodeIndex,
    ) -> Option<Kind> {
        let what = format!("`{}` of node `{}`", spec.name, id.value);
        let owner = key.span;
        Some(match spec.name {
            "say" => Kind::Say(self.prompt(body, &what)?),
            "set" => {
                if body.as_map().is_none() {
                    self.error(
                        Code::WrongType,
                        body.span,
                        format!(
                            "{what} must be a mapping of variable names to templates, found {}",
                            body.shape()
                        ),
                    );
                    return None;
                }
                Kind::Set(self.template_map(body, &what, owner))
            }
            "branch" => {
                let Some(items) = body.as_seq() else {
                    self.error(
                        Code::WrongType,
                        body.span,
                        format!(
                            "{what} must be a list of `{{ when, next }}` cases, found {}",
                            body.shape()
                        ),
                    );
                    return None;
                };
                let case_fields = match &spec.body {
                    Ty::ListOf(Ty::Object(f)) => *f,
                    _ => &[],
                };
                let cond_fields =
                    case_fields
                        .iter()
                        .find(|f| f.name == "when")
                        .map_or(&[][..], |f| match f.ty {
                            Ty::Object(o) => o,
                            _ => &[],
                        });
                let mut cases = Vec::new();
                for item in items {
                    let Some(cf) = self.fields(item, case_fields, "a branch case", item.span)
                    else {
                        continue;
                    };
                    let next = cf.get("next").and_then(|n| self.ident(n, "`next`"));
                    let Some(when) = cf.get("when") else { continue };
                    let Some(w) = self.fields(
                        when,
                        cond_fields,
                        "`when`",
                        cf.key_span("when").unwrap_or(item.span),
                    ) else {
                        continue;
                    };
                    let var = w.get("var").and_then(|n| self.path(n, "`var`"));
                    let tests: Vec<&str> = ["equals", "not_equals", "in", "not_in", "exists"]
                        .into_iter()
                        .filter(|t| w.get(t).is_some())
                        .collect();
                    if tests.len() != 1 {
                        self.error(Code::InvalidValue, w.owner, format!("`when` needs exactly one test of equals, not_equals, in, not_in, exists; found {}", tests.len()));
                        continue;
                    }
                    let list = |l: &mut Self, n: &Y| -> Option<Vec<String>> {
                        match n.as_seq() {
                            Some(items) => Some(
                                items
                                    .iter()
                                    .filter_map(|i| l.string(i, "a value"))
                                    .map(|s| s.value)
                                    .collect(),
                            ),
                            None => {
                                l.error(
                                    Code::WrongType,
                                    n.span,
                                    format!("expected a list, found {}", n.shape()),
                                );
                                None
                            }
                        }
                    };
                    let t = tests[0];
                    let n = w.get(t)?;
                    let test = match t {
                        "equals" => Test::Equals(self.string(n, "`equals`")?.value),
                        "not_equals" => Test::NotEquals(self.string(n, "`not_equals`")?.value),
                        "in" => Test::In(list(self, n)?),
                        "not_in" => Test::NotIn(list(self, n)?),
                        _ => Test::Exists(self.boolean(n, "`exists`")?),
                    };
                    if let (Some(var), Some(next)) = (var, next) {
                        cases.push(Case { var, test, next });
                    }
                }
                Kind::Branch(cases)
            }
            _ => {
                let f = self.fields(body, spec.fields(), &what, owner)?;
                self.object_kind(spec, id, &f, section, out, index)?
            }
        })
    }

    fn object_kind(
        &mut self,
        spec: &KindSpec,
        id: &Spanned<String>,
        f: &Fields<'_>,
        section: Option<&str>,
        out: &mut Vec<Node>,
        index: &mut NodeIndex,
    ) -> Option<Kind> {
        let owner = f.owner;
        let dur = |l: &mut Self, name: &str, default: u64| -> Duration {
            f.get(name)
                .and_then(|n| l.duration(n, &format!("`{name}`")))
                .map_or(Duration::from_secs(default), |d| d.value)
        };
        let int = |l: &mut Self, name: &str, min: u32, max: u32, default: u32| -> u32 {
            f.get(name)
                .and_then(|n| l.int(n, &format!("`{name}`"), min, max))
                .map_or(default, |v| v.value)
        };
        let prompt = |l: &mut Self, name: &str| -> Option<Prompt> {
            f.get(name).and_then(|n| l.prompt(n, &format!("`{name}`")))
        };
        let channel = |l: &mut Self, n: Option<&Y>| -> Option<Channel> {
            let c = l.choice(n?, "`channel`", &["sms", "email"])?;
            Some(if c.value == "sms" {
                Channel::Sms
            } else {
                Channel::Email
            })
        };
        let default_path = |l: &mut Self, name: &str, default: &str| -> Spanned<String> {
            f.get(name)
                .and_then(|n| l.path(n, &format!("`{name}`")))
                .unwrap_or_else(|| Spanned::new(default.to_string(), owner))
        };
        Some(match spec.name {
            "menu" => {
                let say = prompt(self, "say");
                let mut keys = Vec::new();
                if let Some(kn) = f.get("keys")
                    && let Some(kf) = self.map_with(
                        kn,
                        "`keys`",
                        f.key_span("keys").unwrap_or(owner),
                        |_, _, _| true,
                    )
                {
                    let mut entries: Vec<_> = kf.entries.into_iter().collect();
                    entries.sort_by_key(|(_, (k, _))| k.span.start);
                    let key_fields = match spec
                        .fields()
                        .iter()
                        .find(|x| x.name == "keys")
                        .map(|x| &x.ty)
                    {
                        Some(Ty::MapOf(_, Ty::OneOf([_, Ty::Object(o)]))) => *o,
                        _ => &[],
                    };
                    for (_, (k, v)) in entries {
                        let Some(key) = self.key(k, "a menu key") else {
                            continue;
                        };
                        if v.as_map().is_some() {
                            let Some(mf) = self.fields(v, key_fields, "a menu key", k.span) else {
                                continue;
                            };
                            let next = mf.get("next").and_then(|n| self.ident(n, "`next`"));
                            let locale = mf.get("locale").and_then(|n| self.locale(n, "`locale`"));
                            let set = mf
                                .get("set")
                                .map(|s| {
                                    self.template_map(
                                        s,
                                        "`set`",
                                        mf.key_span("set").unwrap_or(k.span),
                                    )
                                })
                                .unwrap_or_default();
                            keys.push(MenuKey {
                                key,
                                next,
                                locale,
                                set,
                            });
                        } else if let Some(next) = self.ident(v, "a menu key's target") {
                            keys.push(MenuKey {
                                key,
                                next: Some(next),
                                locale: None,
                                set: Vec::new(),
                            });
                        }
                    }
                }
                if keys.is_empty() && f.get("keys").is_some() {
                    self.error(
                        Code::InvalidValue,
                        f.key_span("keys").unwrap_or(owner),
                        "a menu needs at least one key",
                    );
                }
                Kind::Menu(Menu {
                    say: say?,
                    keys,
                    attempts: int(self, "attempts", 1, 10, 3),
                    timeout: dur(self, "timeout", 5),
                    no_input_say: prompt(self, "no_input_say"),
                    no_match_say: prompt(self, "no_match_say"),
                })
            }
            "gather" => {
                let say = prompt(self, "say");
                let digits = f.get("digits").and_then(|n| self.digits(n, "`digits`"));
                let into = f.get("into").and_then(|n| self.ident(n, "`into`"));
                let finish_on = self.finish_on(f.get("finish_on"), "`finish_on`");
                let secret = f
                    .get("secret")
                    .and_then(|n| self.boolean(n, "`secret`"))
                    .unwrap_or(false);
                Kind::Gather(Gather {
                    say: say?,
                    digits: digits?,
                    into: into?,
                    finish_on,
                    first_digit_timeout: dur(self, "first_digit_timeout", 5),
                    inter_digit_timeout: dur(self, "inter_digit_timeout", 3),
                    attempts: int(self, "attempts", 1, 10, 3),
                    secret,
                    no_input_say: prompt(self, "no_input_say"),
                    no_match_say: prompt(self, "no_match_say"),
                })
            }
            "directory.find" => {
                let by = f.get("by").and_then(|n| {
                    self.choice(n, "`by`", &["employee_id", "username", "phone", "email"])
                });
                let value = f.get("value").and_then(|n| self.template(n, "`value`"));
                let into = f
                    .get("into")
                    .and_then(|n| self.ident(n, "`into`"))
                    .unwrap_or_else(|| Spanned::new("user".into(), owner));
                let by = match by?.value.as_str() {
                    "employee_id" => LookupBy::EmployeeId,
                    "username" => LookupBy::Username,
                    "phone" => LookupBy::Phone,
                    _ => LookupBy::Email,
                };
                Kind::DirectoryFind(DirectoryFind {
                    by,
                    value: value?,
                    into,
                })
            }
            "code.send" => {
                let ch = channel(self, f.get("channel"));
                let to = f.get("to").and_then(|n| self.path(n, "`to`"));
                let ttl = f
                    .get("ttl")
                    .and_then(|n| self.duration(n, "`ttl`"))
                    .unwrap_or_else(|| Spanned::new(Duration::from_secs(600), owner));
                let length = f.get("length").and_then(|n| {
                    let s = self.scalar_plain(n, "`length`", "a whole number")?;
                    match s.value.parse::<u32>() {
                        Ok(v) if v < 6 => {
                            let d = Diagnostic::new(Code::CodeTooShort, self.file, s.span, format!("a one-time code of {v} digits is too short"))
                                .label("at least 6")
                                .note("NIST SP 800-63B 5.1.3.2 and OWASP ASVS 6.5.3 ask for at least 6 random digits");
                            self.push(d);
                            None
                        }
                        Ok(v) if v <= 10 => Some(v),
                        _ => {
                            self.error(Code::InvalidValue, s.span, format!("`length` must be a whole number from 6 to 10, found `{}`", s.value));
                            None
                        }
                    }
                });
                Kind::CodeSend(CodeSend {
                    channel: ch?,
                    to: to?,
                    length: length.unwrap_or(6),
                    ttl,
                    resends: int(self, "resends", 0, 4, 2),
                    cooldown: dur(self, "cooldown", 30),
                    say: prompt(self, "say"),
                })
            }
            "code.verify" => {
                let from = f.get("from").and_then(|n| self.ident(n, "`from`"));
                let say = prompt(self, "say");
                let wait = match f.get("wait") {
                    None => None,
                    Some(wn) => self.wait(wn, spec, f.key_span("wait").unwrap_or(owner)),
                };
                Kind::CodeVerify(CodeVerify {
                    from: from?,
                    say: say?,
                    attempts: int(self, "attempts", 1, 5, 5),
                    first_digit_timeout: dur(self, "first_digit_timeout", 5),
                    inter_digit_timeout: dur(self, "inter_digit_timeout", 3),
                    wait,
                })
            }
            "pin.verify" => {
                let say = prompt(self, "say");
                let digits = f
                    .get("digits")
                    .and_then(|n| self.digits(n, "`digits`"))
                    .unwrap_or(Digits { min: 4, max: 12 });
                Kind::PinVerify(PinVerify {
                    say: say?,
                    account: default_path(self, "account", "user"),
                    digits,
                    finish_on: self.finish_on(f.get("finish_on"), "`finish_on`"),
                    attempts: int(self, "attempts", 1, 5, 3),
                    first_digit_timeout: dur(self, "first_digit_timeout", 5),
                    inter_digit_timeout: dur(self, "inter_digit_timeout", 3),
                })
            }
            "set_secret" => {
                let policy = f.get("policy").and_then(|n| self.ident(n, "`policy`"));
                let mode = match f
                    .get("mode")
                    .and_then(|n| self.choice(n, "`mode`", &["entered", "generated"]))
                {
                    Some(m) if m.value == "generated" => SecretMode::Generated,
                    _ => SecretMode::Entered,
                };
                let say = prompt(self, "say");
                let confirm = prompt(self, "confirm");
                let deliver = match f.get("deliver") {
                    None => None,
                    Some(dn) => {
                        let fields = match spec
                            .fields()
                            .iter()
                            .find(|x| x.name == "deliver")
                            .map(|x| &x.ty)
                        {
                            Some(Ty::Object(o)) => *o,
                            _ => &[],
                        };
                        let df = self.fields(
                            dn,
                            fields,
                            "`deliver`",
                            f.key_span("deliver").unwrap_or(owner),
                        );
                        df.and_then(|df| {
                            let ch = channel(self, df.get("channel"));
                            let to = df.get("to").and_then(|n| self.path(n, "`to`"));
                            ch.zip(to)
                        })
                    }
                };
                if mode == SecretMode::Entered {
                    for (name, p) in [("say", &say), ("confirm", &confirm)] {
                        if p.is_none() && f.get(name).is_none() {
                            self.error(
                                Code::MissingField,
                                owner,
                                format!(
                                    "`set_secret` in mode `entered` needs `{name}` (node `{}`)",
                                    id.value
                                ),
                            );
                        }
                    }
                } else if deliver.is_none() && f.get("deliver").is_none() {
                    self.error(
                        Code::MissingField,
                        owner,
                        format!(
                            "`set_secret` in mode `generated` needs `deliver` (node `{}`)",
                            id.value
                        ),
                    );
                }
                Kind::SetSecret(SetSecret {
                    policy: policy?,
                    account: default_path(self, "account", "user"),
                    mode,
                    say,
                    confirm,
                    attempts: int(self, "attempts", 1, 5, 3),
                    deliver,
                })
            }
            "secure" => {
                if let Some(outer) = section {
                    let d = Diagnostic::new(
                        Code::SecureBoundary,
                        self.file,
                        owner,
                        format!(
                            "secure section `{}` is nested inside secure section `{outer}`",
                            id.value
                        ),
                    )
                    .note("one secure section covers the whole stretch; join them");
                    self.push(d);
                    return None;
                }
                let start = f.get("start").and_then(|n| self.ident(n, "`start`"));
                let nodes = match f.get("nodes") {
                    Some(n) => self.nodes(
                        n,
                        f.key_span("nodes").unwrap_or(owner),
                        Some(&id.value),
                        out,
                        index,
                    ),
                    None => Vec::new(),
                };
                Kind::Secure(Secure {
                    start: start?,
                    nodes,
                })
            }
            "http" => {
                let method = f
                    .get("method")
                    .and_then(|n| {
                        self.choice(n, "`method`", &["GET", "POST", "PUT", "PATCH", "DELETE"])
                    })
                    .map_or("POST".to_string(), |m| m.value);
                let url = f.get("url").and_then(|n| self.template(n, "`url`"));
                let headers = f.get("headers").map(|h| {
                    self.map_with(
                        h,
                        "`headers`",
                        f.key_span("headers").unwrap_or(owner),
                        |_, _, _| true,
                    )
                    .map(|hf| {
                        let mut e: Vec<_> = hf.entries.into_iter().collect();
                        e.sort_by_key(|(_, (k, _))| k.span.start);
                        e.into_iter()
                            .filter_map(|(name, (_, v))| {
                                self.template(v, &format!("header `{name}`"))
                                    .map(|t| (name.to_string(), t))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
                });
                let body = f.get("body").map(|b| self.json(b));
                let secrets = match f.get("secrets") {
                    None => Vec::new(),
                    Some(s) => match s.as_seq() {
                        Some(items) => items
                            .iter()
                            .filter_map(|i| self.string(i, "a JSON pointer"))
                            .collect(),
                        None => {
                            self.error(
                                Code::WrongType,
                                s.span,
                                format!(
                                    "`secrets` must be a list of JSON pointers, found {}",
                                    s.shape()
                                ),
                            );
                            Vec::new()
                        }
                    },
                };
                for p in &secrets {
                    if !p.value.starts_with('/') {
                        self.error(
                            Code::InvalidValue,
                            p.span,
                            format!(
                                "`{}` is not a JSON pointer; write e.g. `/password`",
                                p.value
                            ),
                        );
                    }
                }
                let map = f.get("map").map(|m| {
                    self.map_with(m, "`map`", f.key_span("map").unwrap_or(owner), |_, _, _| {
                        true
                    })
                    .map(|mf| {
                        let mut e: Vec<_> = mf.entries.into_iter().collect();
                        e.sort_by_key(|(_, (k, _))| k.span.start);
                        e.into_iter()
                            .filter_map(|(name, (k, v))| {
                                if !is_identifier(name) {
                                    self.error(
                                        Code::InvalidValue,
                                        k.span,
                                        format!("`{name}` is not a variable name"),
                                    );
                                    return None;
                                }
                                let p = self.string(v, "a JSON pointer")?;
                                if !p.value.is_empty() && !p.value.starts_with('/') {
                                    self.error(
                                        Code::InvalidValue,
                                        p.span,
                                        format!(
                                            "`{}` is not a JSON pointer; write e.g. `/result/id`",
                                            p.value
                                        ),
                                    );
                                    return None;
                                }
                                Some((Spanned::new(name.to_string(), k.span), p.value))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
                });
                let sign = f.get("sign").and_then(|s| {
                    let fields = match spec
                        .fields()
                        .iter()
                        .find(|x| x.name == "sign")
                        .map(|x| &x.ty)
                    {
                        Some(Ty::Object(o)) => *o,
                        _ => &[],
                    };
                    let sf =
                        self.fields(s, fields, "`sign`", f.key_span("sign").unwrap_or(owner))?;
                    let env = self.string(sf.get("token_env")?, "`token_env`")?.value;
                    let header = sf
                        .get("header")
                        .and_then(|h| self.string(h, "`header`"))
                        .map_or("X-Resetline-Signature".to_string(), |h| h.value);
                    Some((env, header))
                });
                Kind::Http(Http {
                    method,
                    url: url?,
                    headers: headers.unwrap_or_default(),
                    body,
                    secrets,
                    map: map.unwrap_or_default(),
                    timeout: dur(self, "timeout", 3),
                    retries: int(self, "retries", 0, 3, 0),
                    sign,
                })
            }
            "ticket" => {
                let close = f
                    .get("action")
                    .and_then(|n| self.choice(n, "`action`", &["open", "open_and_close"]))
                    .is_some_and(|a| a.value == "open_and_close");
                let summary = f.get("summary").and_then(|n| self.template(n, "`summary`"));
                Kind::Ticket(Ticket {
                    close,
                    summary: summary?,
                    details: f.get("details").and_then(|n| self.template(n, "`details`")),
                    category: f
                        .get("category")
                        .and_then(|n| self.string(n, "`category`"))
                        .map(|s| s.value),
                    into: f
                        .get("into")
                        .and_then(|n| self.ident(n, "`into`"))
                        .unwrap_or_else(|| Spanned::new("ticket".into(), owner)),
                    say: prompt(self, "say"),
                })
            }
            "notify" => {
                let ch = channel(self, f.get("channel"));
                let to = f.get("to").and_then(|n| self.path(n, "`to`"));
                let message = prompt(self, "message");
                Kind::Notify(Notify {
                    channel: ch?,
                    to: to?,
                    message: message?,
                })
            }
            "transfer" => {
                let queue = f.get("queue").and_then(|n| self.string(n, "`queue`"));
                let number = f.get("number").and_then(|n| self.string(n, "`number`"));
                let to = match (queue, number) {
                    (Some(q), None) => {
                        if q.value.chars().count() > 64 || q.value.is_empty() {
                            self.error(
                                Code::InvalidValue,
                                q.span,
                                "a queue name has 1 to 64 characters (Twilio `<Enqueue>`)",
                            );
                        }
                        TransferTo::Queue(q.value)
                    }
                    (None, Some(n)) => {
                        let ok = n.value.starts_with('+')
                            && n.value.len() >= 8
                            && n.value.len() <= 16
                            && n.value[1..].chars().all(|c| c.is_ascii_digit());
                        if !ok {
                            self.error(
                                Code::InvalidValue,
                                n.span,
                                format!(
                                    "`{}` is not an E.164 number such as `+15551230000`",
                                    n.value
                                ),
                            );
                        }
                        TransferTo::Number(n.value)
                    }
                    (Some(_), Some(n)) => {
                        self.error(
                            Code::InvalidValue,
                            n.span,
                            "`transfer` takes `queue` or `number`, not both",
                        );
                        return None;
                    }
                    (None, None) => {
                        self.error(
                            Code::MissingField,
                            owner,
                            format!(
                                "`transfer` of node `{}` needs `queue` or `number`",
                                id.value
                            ),
                        );
                        return None;
                    }
                };
                Kind::Transfer(Transfer {
                    say: prompt(self, "say"),
                    to,
                    wait: f
                        .get("wait")
                        .and_then(|n| self.string(n, "`wait`"))
                        .map(|s| s.value),
                })
            }
            "hangup" => Kind::Hangup(Hangup {
                say: prompt(self, "say"),
                outcome: f
                    .get("outcome")
                    .and_then(|n| self.ident(n, "`outcome`"))
                    .map(|s| s.value),
            }),
            _ => return None,
        })
    }

    fn wait(&mut self, node: &Y, spec: &KindSpec, owner: Span) -> Option<Wait> {
        let fields = match spec
            .fields()
            .iter()
            .find(|x| x.name == "wait")
            .map(|x| &x.ty)
        {
            Some(Ty::Object(o)) => *o,
            _ => &[],
        };
        let f = self.fields(node, fields, "`wait`", owner)?;
        let hold = f.get("hold").and_then(|n| self.prompt(n, "`hold`"));
        let menu = f.get("menu").and_then(|n| self.prompt(n, "`menu`"));
        let hold_for = f
            .get("hold_for")
            .and_then(|n| self.duration(n, "`hold_for`"))
            .map_or(Duration::from_secs(10), |d| d.value);
        let give_up_after = f
            .get("give_up_after")
            .and_then(|n| self.duration(n, "`give_up_after`"))
            .map_or(Duration::from_secs(180), |d| d.value);
        let mut keys = Vec::new();
        if let Some(kn) = f.get("keys")
            && let Some(kf) = self.map_with(
                kn,
                "`keys`",
                f.key_span("keys").unwrap_or(owner),
                |_, _, _| true,
            )
        {
            let mut entries: Vec<_> = kf.entries.into_iter().collect();
            entries.sort_by_key(|(_, (k, _))| k.span.start);
            for (_, (k, v)) in entries {
                let Some(key) = self.key(k, "a wait key") else {
                    continue;
                };
                let Some(t) = self.ident(v, "a wait key's action") else {
                    continue;
                };
                let action = match t.value.as_str() {
                    "enter" => WaitKey::Enter,
                    "resend" => WaitKey::Resend,
                    _ => WaitKey::Goto(t),
                };
                keys.push((key, action));
            }
        }
        if !keys.iter().any(|(_, a)| *a == WaitKey::Enter) && f.get("keys").is_some() {
            self.error(Code::InvalidValue, f.key_span("keys").unwrap_or(owner), "the comfort loop needs a key that does `enter`, or callers holding the code cannot type it");
        }
        Some(Wait {
            hold: hold?,
            hold_for,
            menu: menu?,
            keys,
            give_up_after,
        })
    }

    fn json(&mut self, node: &Y) -> JsonTemplate {
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

/// Flow ids appear in URLs (`/voice/{flow}`): `[a-z][a-z0-9_-]{0,63}`.
pub(crate) fn is_flow_id(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// HTTP status edges: `"404"` or a class `"4xx"`.
pub(crate) fn is_status_pattern(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 3
        && (b'1'..=b'5').contains(&b[0])
        && ((b[1].is_ascii_digit() && b[2].is_ascii_digit()) || (b[1] == b'x' && b[2] == b'x'))
}

/// `500ms`, `5s`, `10m`, `1h`, or a whole number of seconds.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "s" => n.checked_mul(1000)?,
        "ms" => n,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// The span of characters `offset..offset+len` inside a scalar, when the scalar sits on one
/// line and its source width can be mapped back; otherwise the whole scalar.
pub(crate) fn sub_span(node: &Y, text: &str, offset: usize, len: usize) -> Span {
    let s = node.span;
    let chars = text.chars().count();
    if s.start.line != s.end.line {
        return s;
    }
    let width = s.end.col.saturating_sub(s.start.col);
    let lead = if width == chars {
        0
    } else if width == chars + 2 {
        1
    } else {
        return s;
    };
    let col = s.start.col + lead + offset;
    Span::new(
        Pos {
            line: s.start.line,
            col,
        },
        Pos {
            line: s.start.line,
            col: col + len.max(1),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("5 s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }

    #[test]
    fn status_patterns() {
        assert!(is_status_pattern("404"));
        assert!(is_status_pattern("5xx"));
        assert!(!is_status_pattern("4x4"));
        assert!(!is_status_pattern("600"));
    }
}
