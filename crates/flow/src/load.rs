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
use crate::spec::{self, Field, KindSpec};
use crate::template::is_identifier;
use crate::yaml::{self, Node as Y};

mod defaults;
mod kinds;
mod scalars;
mod settings;
mod test_block;
mod verify;

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
    /// The vocabulary entries of the fields (defaults, bounds, words); empty for a mapping
    /// with free keys.
    spec: &'static [Field],
}

impl<'n> Fields<'n> {
    /// A mapping with none of `spec`'s fields written (every field at its default).
    fn empty(spec: &'static [Field], owner: Span) -> Self {
        Fields {
            entries: HashMap::new(),
            owner,
            spec,
        }
    }

    /// The value of field `name`, unless absent or null.
    pub(crate) fn get(&self, name: &str) -> Option<&'n Y> {
        self.entries
            .get(name)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }

    /// Where field `name`'s key is written.
    pub(crate) fn key_span(&self, name: &str) -> Option<Span> {
        self.entries.get(name).map(|(k, _)| k.span)
    }

    /// The vocabulary entry of field `name`.
    fn field(&self, name: &str) -> Option<&'static Field> {
        spec::field(self.spec, name)
    }

    /// The entries in the order they are written: name, key, value.
    fn in_order(self) -> Vec<(&'n str, &'n Y, &'n Y)> {
        let mut entries: Vec<_> = self
            .entries
            .into_iter()
            .map(|(name, (k, v))| (name, k, v))
            .collect();
        entries.sort_by_key(|(_, k, _)| k.span.start);
        entries
    }
}

/// What the keys of a node's mapping say (`Loader::node_keys`).
struct NodeKeys<'n> {
    /// The action: its kind, key and body (the first, when several).
    kind: Option<(&'static KindSpec, &'n Y, &'n Y)>,
    /// More than one action was written (reported).
    several: bool,
    /// Keys that are neither an action nor a node field.
    unknown: Vec<(&'n str, Span)>,
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
        spec: &'static [Field],
        what: &str,
        owner: Span,
    ) -> Option<Fields<'n>> {
        let names: Vec<&str> = spec.iter().map(|f| f.name).collect();
        let mut fields = self.map_with(node, what, owner, |l, key, _| {
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
        fields.spec = spec;
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

    /// The entries of field `name` of `f`, a mapping with free keys, in the order written;
    /// none when absent or not a mapping (reported).
    pub(crate) fn free_map<'n>(
        &mut self,
        f: &Fields<'n>,
        name: &str,
    ) -> Vec<(&'n str, &'n Y, &'n Y)> {
        let Some(node) = f.get(name) else {
            return Vec::new();
        };
        let owner = f.key_span(name).unwrap_or(f.owner);
        self.map_with(node, &format!("`{name}`"), owner, |_, _, _| true)
            .map(Fields::in_order)
            .unwrap_or_default()
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
                return Some(Fields::empty(&[], owner));
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
            spec: &[],
        })
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
        let tests = f
            .get("tests")
            .map(|t| self.tests(t, f.key_span("tests").unwrap_or(top)))
            .unwrap_or_default();
        Some(Flow {
            file: self.file.to_string(),
            id: id.unwrap_or_else(|| Spanned::new(String::new(), top)),
            version,
            digest: digest(&test_block::without_tests(text, root)),
            description,
            start: start.unwrap_or_else(|| Spanned::new(String::new(), top)),
            settings,
            policies,
            nodes,
            index,
            broken: std::mem::take(&mut self.broken),
            loose_vars: std::mem::take(&mut self.loose_vars),
            test_cases: tests.cases,
            test_nodes: tests.nodes,
        })
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

    /// Node `id` (mapping `v`): its one action, `next`, edges, limit and description; `None`
    /// when it cannot be loaded (reported).
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
        let keys = self.node_keys(entries, &what);
        self.unknown_keys(&keys.unknown, keys.kind.is_some(), &what);
        if keys.several {
            return None;
        }
        let Some((spec, kind_key, body)) = keys.kind else {
            if keys.unknown.is_empty() {
                let kind_names: Vec<&str> = spec::KINDS.iter().map(|k| k.name).collect();
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
        let on = field("on").map_or_else(Vec::new, |(k, v)| self.edges(spec, k, v, &what));
        let limit = field("limit").and_then(|(k, v)| self.limit(k, v));
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

    /// The keys of a node's mapping (`what` names the node): its action, whether it has more
    /// than one (reported), and the keys that are neither an action nor a node field.
    fn node_keys<'n>(&mut self, entries: &'n [(Y, Y)], what: &str) -> NodeKeys<'n> {
        let common: Vec<&str> = spec::NODE_FIELDS.iter().map(|f| f.name).collect();
        let mut keys = NodeKeys {
            kind: None,
            several: false,
            unknown: Vec::new(),
        };
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
                match keys.kind {
                    None => keys.kind = Some((spec, k, val)),
                    Some((first, _, _)) => {
                        let d = Diagnostic::new(
                            Code::SeveralKinds,
                            self.file,
                            k.span,
                            format!("{what} has two actions, `{}` and `{name}`", first.name),
                        )
                        .note("one action per node: split it into two nodes joined by `next`");
                        self.push(d);
                        keys.several = true;
                    }
                }
            } else if !common.contains(&name) {
                keys.unknown.push((name, k.span));
            }
        }
        keys
    }

    /// Reports the `unknown` keys of node `what`: unknown kinds when it has no action
    /// (`has_kind`), else unknown fields; each with the nearest name, or the list.
    fn unknown_keys(&mut self, unknown: &[(&str, Span)], has_kind: bool, what: &str) {
        let common: Vec<&str> = spec::NODE_FIELDS.iter().map(|f| f.name).collect();
        let kind_names: Vec<&str> = spec::KINDS.iter().map(|k| k.name).collect();
        for (name, span) in unknown {
            let all = kind_names.iter().chain(common.iter()).copied();
            let (code, message) = if !has_kind {
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
                None if !has_kind => d = d.note(format!("node kinds: {}", kind_names.join(", "))),
                None => {
                    d = d.note(format!(
                        "besides its action a node takes: {}",
                        common.join(", ")
                    ))
                }
            }
            self.push(d);
        }
    }

    /// A node's `on:` (key `k`, mapping `v`): an edge per outcome the kind `spec` produces.
    fn edges(&mut self, spec: &KindSpec, k: &Y, v: &Y, what: &str) -> Vec<Edge> {
        let mut on = Vec::new();
        let Some(f) = self.map_with(v, "`on`", k.span, |_, _, _| true) else {
            return on;
        };
        for (name, k, target) in f.in_order() {
            if self.outcome_known(spec, name, k.span, what)
                && let Some(t) = self.ident(target, "an edge target")
            {
                on.push(Edge {
                    outcome: Spanned::new(name.to_string(), k.span),
                    target: t,
                });
            }
        }
        on
    }

    /// A node's `limit:` (key `k`, mapping `v`): visits within the table's bounds, and where
    /// the call goes after the last.
    fn limit(&mut self, k: &Y, v: &Y) -> Option<Limit> {
        let fields = spec::field(spec::NODE_FIELDS, "limit").map_or(&[][..], Field::object);
        let f = self.fields(v, fields, "`limit`", k.span)?;
        let visits = self.int_field(&f, "visits")?;
        let then = self.ident(f.get("then")?, "`then`")?;
        Some(Limit {
            visits: visits.value,
            then,
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

/// A digit count `6` or range `6..8`, between 1 and 64.
pub(crate) fn parse_digits(s: &str) -> Option<Digits> {
    let (min, max) = match s.split_once("..") {
        Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
        None => {
            let n = s.trim().parse::<u32>().ok()?;
            (n, n)
        }
    };
    (min >= 1 && min <= max && max <= 64).then_some(Digits { min, max })
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
