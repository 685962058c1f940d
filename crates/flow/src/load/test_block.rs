//! A flow file's `tests:` block: flow-test cases beside the flow, in the `*.test.yaml` case
//! format (`spec::TEST_CASE`). The loader checks their shape against the vocabulary, so a
//! mistake in a test is a diagnostic with file, line and column like any other; the simulator
//! runs them (`resetline test`); the engine never sees them.
//!
//! Invariant: nothing here reaches the `Flow` a call runs but the cases' names and positions
//! (for `resetline test` to say where a failing case is) and the node ids the cases name (for
//! the checker's unknown-target pass), and the block is left out of the version digest
//! ([`without_tests`]).

use super::Loader;
use crate::diagnostic::Code;
use crate::span::{Span, Spanned};
use crate::spec::{self, Field, Ty};
use crate::yaml::Node as Y;

/// What the loader keeps of a `tests:` block.
#[derive(Default)]
pub(super) struct TestsBlock {
    /// Each case's name, spanned at the case.
    pub(super) cases: Vec<Spanned<String>>,
    /// Node ids cases expect visited or not, with the case's name.
    pub(super) nodes: Vec<(String, Spanned<String>)>,
}

impl Loader<'_> {
    /// Checks `tests:` (value `node`, key at `owner`); returns each case's name spanned at the
    /// case, and the node ids that cases expect to be visited or not, each with the case's name.
    pub(super) fn tests(&mut self, node: &Y, owner: Span) -> TestsBlock {
        let mut block = TestsBlock::default();
        let Some(cases) = node.as_seq() else {
            self.error(
                Code::WrongType,
                node.span,
                format!(
                    "`tests` must be a list of test cases, found {}",
                    node.shape()
                ),
            );
            return block;
        };
        for case in cases {
            let Some(f) = self.fields(case, spec::TEST_CASE, "a test case", owner) else {
                continue;
            };
            let name = f
                .get("name")
                .and_then(|n| self.string(n, "a test's `name`"))
                .map_or_else(String::new, |s| s.value);
            block.cases.push(Spanned::new(name.clone(), case.span));
            if f.get("users").is_none() {
                let span = f.key_span("name").unwrap_or(case.span);
                self.error(
                    Code::MissingField,
                    span,
                    format!("test `{name}` needs `users`: the users file for the embedded directory, relative to this file"),
                );
            }
            for field in spec::TEST_CASE.iter().filter(|f| f.name != "name") {
                if let Some(v) = f.get(field.name) {
                    self.shape(v, &field.ty, &format!("`{}` of test `{name}`", field.name));
                }
            }
            for list in ["visits", "not_visits"] {
                let ids = f
                    .get("expect")
                    .and_then(Y::as_map)
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| k.as_scalar() == Some(list))
                    .filter_map(|(_, v)| v.as_seq())
                    .flatten()
                    .filter_map(|n| n.as_scalar().map(|s| Spanned::new(s.to_string(), n.span)));
                block.nodes.extend(ids.map(|id| (name.clone(), id)));
            }
        }
        block
    }

    /// Checks that `node` has the shape `ty` says (types, ranges, words, fields), reporting
    /// each problem; used for the test format, whose values the loader does not keep.
    fn shape(&mut self, node: &Y, ty: &Ty, what: &str) {
        match ty {
            Ty::Int(min, max) => {
                let _ = self.int(node, what, *min, *max);
            }
            Ty::Bool => {
                let _ = self.boolean(node, what);
            }
            Ty::Enum(words) => {
                let _ = self.choice(node, what, words);
            }
            Ty::Target | Ty::Ident => {
                let _ = self.ident(node, what);
            }
            Ty::ListOf(item) => match node.as_seq() {
                Some(items) => items.iter().for_each(|i| self.shape(i, item, what)),
                None => self.error(
                    Code::WrongType,
                    node.span,
                    format!("{what} must be a list, found {}", node.shape()),
                ),
            },
            Ty::Object(fields) => self.object_shape(node, fields, what),
            _ => {
                let _ = self.string(node, what);
            }
        }
    }

    fn object_shape(&mut self, node: &Y, fields: &'static [Field], what: &str) {
        let Some(f) = self.fields(node, fields, what, node.span) else {
            return;
        };
        for field in fields {
            if let Some(v) = f.get(field.name) {
                self.shape(v, &field.ty, &format!("`{}` in {what}", field.name));
            }
        }
    }
}

/// `text` without the lines of the root's `tests:` entry (from its key to the next top-level
/// key or the end, with the blank and comment lines just above it), so adding or editing a
/// flow's tests does not change the version calls are pinned to. `root` is the parsed document.
pub(super) fn without_tests(text: &str, root: &Y) -> String {
    let Some(entries) = root.as_map() else {
        return text.to_string();
    };
    let Some(i) = entries
        .iter()
        .position(|(k, _)| k.as_scalar() == Some("tests"))
    else {
        return text.to_string();
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut from = entries[i].0.span.start.line;
    while from > 1
        && lines.get(from - 2).is_some_and(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        })
    {
        from -= 1;
    }
    let to = entries
        .get(i + 1)
        .map_or(usize::MAX, |(k, _)| k.span.start.line);
    lines
        .iter()
        .enumerate()
        .filter(|(n, _)| !(from..to).contains(&(n + 1)))
        .map(|(_, line)| *line)
        .collect()
}
