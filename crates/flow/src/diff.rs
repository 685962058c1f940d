//! A semantic diff of two versions of a flow (`resetline diff`, `resetline graph --diff`):
//! nodes added, removed and changed, edges rewired, prompts, secure sections, settings and
//! policies, and (filled in by the caller, who can run them) flow tests whose result changes.
//!
//! Invariants: pure (two compiled flows and optional catalogs in, a [`FlowDiff`] out, no I/O);
//! spans never take part, so moving or reformatting a node is no change; every list is in a
//! deterministic order, sorted by node id (then by field or edge in the order the node
//! declares them). Flows hold no secrets, so nothing here can print one.

mod fields;
mod overlay;
mod render;

use std::collections::{BTreeMap, BTreeSet};

use crate::graph;
use crate::model::{Flow, Kind, Node};
use crate::prompts::{Catalogs, PromptBody, ssml};

pub use overlay::overlay;
pub use render::{DiffFormat, render};

/// One file's identity in the diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    /// The file as named by the user.
    pub file: String,
    /// `flow:` id.
    pub flow: String,
    /// The version calls are pinned to (`label+digest`).
    pub version: String,
}

/// A value that changed; `None` on one side means absent there (added or removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// The field, e.g. `attempts`, `settings.min_factors`, `policies.pin.min_length`.
    pub field: String,
    /// The old value.
    pub old: Option<String>,
    /// The new value.
    pub new: Option<String>,
}

/// A node that exists on one side only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSummary {
    /// Its id.
    pub id: String,
    /// Its action key (`say`, `menu`, ...).
    pub kind: String,
    /// The enclosing `secure` section, if any.
    pub section: Option<String>,
}

/// A node on both sides whose own fields differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeChange {
    /// Its id.
    pub id: String,
    /// What changed.
    pub fields: Vec<FieldChange>,
}

/// An edge of a node present on both sides that was added, removed or points elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeChange {
    /// The node the edge leaves.
    pub node: String,
    /// The edge: `next`, an outcome, `key 1`, `case 2`, `limit`, `start`.
    pub edge: String,
    /// The old target (`None`: the edge is new).
    pub old: Option<String>,
    /// The new target (`None`: the edge was removed).
    pub new: Option<String>,
}

/// Prompt references of a node present on both sides that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptChange {
    /// The node.
    pub node: String,
    /// Keys it now says that it did not.
    pub added: Vec<String>,
    /// Keys it no longer says.
    pub removed: Vec<String>,
    /// Keys said on both sides with different parameters (`field` is the key).
    pub params: Vec<FieldChange>,
    /// The same keys said in another order or split differently between the node's prompts
    /// (`field` is `order`; values list the keys, `|` between prompts). Only when no key was
    /// added or removed.
    pub order: Option<FieldChange>,
}

/// A catalog text that changed for a key one of the flows says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptTextChange {
    /// The prompt key.
    pub key: String,
    /// The locale.
    pub locale: String,
    /// The old text (`None`: not in the old catalog).
    pub old: Option<String>,
    /// The new text (`None`: not in the new catalog).
    pub new: Option<String>,
}

/// How a secure section changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SectionChangeKind {
    /// A new section.
    Added,
    /// A section that is gone.
    Removed,
    /// A node of both versions now inside the section (recording paused while it runs).
    Entered,
    /// A node of both versions no longer inside the section.
    Left,
}

impl SectionChangeKind {
    /// The word used in both output formats.
    pub fn name(self) -> &'static str {
        match self {
            SectionChangeKind::Added => "added",
            SectionChangeKind::Removed => "removed",
            SectionChangeKind::Entered => "entered",
            SectionChangeKind::Left => "left",
        }
    }
}

/// One change to a secure section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionChange {
    /// The section (its `secure` node id).
    pub section: String,
    /// What happened.
    pub change: SectionChangeKind,
    /// The node that entered or left (`None` for added/removed sections).
    pub node: Option<String>,
}

/// How one flow test ended against one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutcome {
    /// Every step and expectation held.
    pub passed: bool,
    /// How the call ended (`completed`, `transferred`, ... or `not run`).
    pub end: String,
    /// The flow outcome recorded, if any.
    pub outcome: Option<String>,
    /// The first failure, when it failed.
    pub failure: Option<String>,
}

/// A flow test that passes against one version and fails against the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestChange {
    /// The test file.
    pub file: String,
    /// The case name.
    pub case: String,
    /// Against the old flow.
    pub old: TestOutcome,
    /// Against the new flow.
    pub new: TestOutcome,
}

/// Everything that differs between two versions of a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowDiff {
    /// The old file.
    pub old: Side,
    /// The new file.
    pub new: Side,
    /// `flow`, `version`, `description`, `start`.
    pub flow: Vec<FieldChange>,
    /// Nodes only in the new version.
    pub added: Vec<NodeSummary>,
    /// Nodes only in the old version.
    pub removed: Vec<NodeSummary>,
    /// Nodes on both sides with different fields.
    pub changed: Vec<NodeChange>,
    /// Edges added, removed or rewired on nodes present on both sides.
    pub edges: Vec<EdgeChange>,
    /// Prompt references changed on nodes present on both sides.
    pub prompts: Vec<PromptChange>,
    /// Catalog texts changed (only when both catalogs were given).
    pub prompt_texts: Vec<PromptTextChange>,
    /// Secure sections added, removed, entered, left.
    pub sections: Vec<SectionChange>,
    /// `settings:` and `policies:`.
    pub settings: Vec<FieldChange>,
    /// Flow tests whose result differs; [`diff`] leaves this empty (running tests is I/O),
    /// the caller fills it in.
    pub tests: Vec<TestChange>,
}

impl FlowDiff {
    /// True when nothing differs (the version digest is not compared: reformatting a file
    /// changes it without changing the flow).
    pub fn is_empty(&self) -> bool {
        self.flow.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.edges.is_empty()
            && self.prompts.is_empty()
            && self.prompt_texts.is_empty()
            && self.sections.is_empty()
            && self.settings.is_empty()
            && self.tests.is_empty()
    }

    /// The ids of nodes added, removed, changed in fields or prompts, or moved between
    /// sections (what `graph --diff` highlights).
    pub fn touched(&self) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = self.changed.iter().map(|c| c.id.as_str()).collect();
        out.extend(self.prompts.iter().map(|p| p.node.as_str()));
        out.extend(self.sections.iter().filter_map(|s| s.node.as_deref()));
        out
    }
}

/// The catalogs each side's prompt keys resolve in, when known.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiffCatalogs<'a> {
    /// For the old flow.
    pub old: Option<&'a Catalogs>,
    /// For the new flow.
    pub new: Option<&'a Catalogs>,
}

/// Compares two versions of a flow.
pub fn diff(old: &Flow, new: &Flow, catalogs: DiffCatalogs<'_>) -> FlowDiff {
    let both: Vec<(&Node, &Node)> = sorted(new)
        .into_iter()
        .filter_map(|n| old.node(&n.id.value).map(|o| (o, n)))
        .collect();
    let summary = |n: &Node| NodeSummary {
        id: n.id.value.clone(),
        kind: n.kind.name().to_string(),
        section: n.section.clone(),
    };
    let only = |a: &Flow, b: &Flow| -> Vec<NodeSummary> {
        sorted(a)
            .into_iter()
            .filter(|n| b.node(&n.id.value).is_none())
            .map(summary)
            .collect()
    };
    FlowDiff {
        old: side(old),
        new: side(new),
        flow: compare(&fields::flow(old), &fields::flow(new)),
        added: only(new, old),
        removed: only(old, new),
        changed: both
            .iter()
            .filter_map(|(o, n)| {
                let fields = compare(&fields::node(o), &fields::node(n));
                (!fields.is_empty()).then(|| NodeChange {
                    id: n.id.value.clone(),
                    fields,
                })
            })
            .collect(),
        edges: both
            .iter()
            .flat_map(|(o, n)| edge_changes(old, o, new, n))
            .collect(),
        prompts: both
            .iter()
            .filter_map(|(o, n)| prompt_change(o, n))
            .collect(),
        prompt_texts: prompt_texts(old, new, catalogs),
        sections: sections(old, new),
        settings: compare(&fields::settings(old), &fields::settings(new)),
        tests: Vec::new(),
    }
}

fn side(flow: &Flow) -> Side {
    Side {
        file: flow.file.clone(),
        flow: flow.id.value.clone(),
        version: flow.version_key(),
    }
}

fn sorted(flow: &Flow) -> Vec<&Node> {
    let mut nodes: Vec<&Node> = flow.nodes.iter().collect();
    nodes.sort_by(|a, b| a.id.value.cmp(&b.id.value));
    nodes
}

/// Where a change sorts: the index in `new` of the field at or before it, 0 for that field
/// itself or 1 for a removed field after it, and the removed field's index in `old`.
type Place = (Option<usize>, u8, usize);

/// Field changes between two ordered field lists, in the new list's order; a field only in
/// the old list comes right after the field that preceded it there.
fn compare(old: &[(String, String)], new: &[(String, String)]) -> Vec<FieldChange> {
    let position = |list: &[(String, String)], name: &str| list.iter().position(|(k, _)| k == name);
    let mut keyed: Vec<(Place, FieldChange)> = Vec::new();
    for (i, (name, value)) in new.iter().enumerate() {
        let was = position(old, name).map(|j| old[j].1.clone());
        if was.as_ref() != Some(value) {
            let change = FieldChange {
                field: name.clone(),
                old: was,
                new: Some(value.clone()),
            };
            keyed.push(((Some(i), 0, 0), change));
        }
    }
    for (j, (name, value)) in old.iter().enumerate() {
        if position(new, name).is_none() {
            let after = old[..j].iter().rev().find_map(|(k, _)| position(new, k));
            let change = FieldChange {
                field: name.clone(),
                old: Some(value.clone()),
                new: None,
            };
            keyed.push(((after, 1, j), change));
        }
    }
    keyed.sort_by_key(|(key, _)| *key);
    keyed.into_iter().map(|(_, change)| change).collect()
}

/// Written edges (not the implied `settings.on_error` fallback, which a settings change
/// reports) as `(label, target)`, in the node's order.
fn written_edges(flow: &Flow, node: &Node) -> Vec<(String, String)> {
    graph::edges(flow, node)
        .into_iter()
        .filter(|e| !e.implied)
        .map(|e| (e.label, e.target.value.clone()))
        .collect()
}

fn edge_changes(old: &Flow, o: &Node, new: &Flow, n: &Node) -> Vec<EdgeChange> {
    compare(&written_edges(old, o), &written_edges(new, n))
        .into_iter()
        .map(|c| EdgeChange {
            node: n.id.value.clone(),
            edge: c.field,
            old: c.old,
            new: c.new,
        })
        .collect()
}

fn prompt_change(o: &Node, n: &Node) -> Option<PromptChange> {
    let (ok, nk) = (fields::prompt_keys(o), fields::prompt_keys(n));
    let has = |list: &[(String, String)], key: &str| list.iter().any(|(k, _)| k == key);
    let mut change = PromptChange {
        node: n.id.value.clone(),
        added: nk
            .iter()
            .filter(|(k, _)| !has(&ok, k))
            .map(|(k, _)| k.clone())
            .collect(),
        removed: ok
            .iter()
            .filter(|(k, _)| !has(&nk, k))
            .map(|(k, _)| k.clone())
            .collect(),
        params: compare(&ok, &nk)
            .into_iter()
            .filter(|c| c.old.is_some() && c.new.is_some())
            .collect(),
        order: None,
    };
    let (was, now) = (fields::prompt_sequence(o), fields::prompt_sequence(n));
    if change.added.is_empty() && change.removed.is_empty() && was != now {
        change.order = Some(FieldChange {
            field: "order".into(),
            old: Some(was),
            new: Some(now),
        });
    }
    let empty = change.added.is_empty()
        && change.removed.is_empty()
        && change.params.is_empty()
        && change.order.is_none();
    (!empty).then_some(change)
}

fn prompt_texts(old: &Flow, new: &Flow, catalogs: DiffCatalogs<'_>) -> Vec<PromptTextChange> {
    let (Some(oc), Some(nc)) = (catalogs.old, catalogs.new) else {
        return Vec::new();
    };
    let keys: BTreeSet<String> = [old, new]
        .iter()
        .flat_map(|f| f.nodes.iter().flat_map(fields::prompt_keys))
        .map(|(k, _)| k)
        .collect();
    let locales: BTreeSet<&String> = oc.by_locale.keys().chain(nc.by_locale.keys()).collect();
    let text = |c: &Catalogs, locale: &str, key: &str| {
        c.get(locale)
            .and_then(|cat| cat.entries.get(key))
            .map(|e| body(&e.body))
    };
    let mut out = Vec::new();
    for key in &keys {
        for locale in &locales {
            let (was, now) = (text(oc, locale, key), text(nc, locale, key));
            if was != now {
                out.push(PromptTextChange {
                    key: key.clone(),
                    locale: (*locale).clone(),
                    old: was,
                    new: now,
                });
            }
        }
    }
    out
}

fn body(b: &PromptBody) -> String {
    match b {
        PromptBody::Say(t) => fields::source(t),
        PromptBody::Play { file, text } => match text {
            Some(t) => format!("[{file}] {}", fields::source(t)),
            None => format!("[{file}]"),
        },
        PromptBody::Ssml(parts) => parts
            .iter()
            .map(|p| match p {
                ssml::Part::Text(t) => fields::source(t),
                ssml::Part::Break(d) => format!("[break {} ms]", d.as_millis()),
                ssml::Part::Emphasis { level, text } => {
                    format!("[emphasis {level}: {}]", fields::source(text))
                }
                ssml::Part::Rate { rate, text } => {
                    format!("[rate {rate}: {}]", fields::source(text))
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Section id -> its member ids.
fn members(flow: &Flow) -> BTreeMap<&str, BTreeSet<&str>> {
    flow.nodes
        .iter()
        .filter_map(|n| match &n.kind {
            Kind::Secure(s) => Some((
                n.id.value.as_str(),
                s.nodes.iter().map(String::as_str).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn sections(old: &Flow, new: &Flow) -> Vec<SectionChange> {
    let (was, now) = (members(old), members(new));
    let empty = BTreeSet::new();
    let ids: BTreeSet<&str> = was.keys().chain(now.keys()).copied().collect();
    let mut out = Vec::new();
    for id in ids {
        let change = |change, node: Option<&str>| SectionChange {
            section: id.to_string(),
            change,
            node: node.map(str::to_string),
        };
        match (was.contains_key(id), now.contains_key(id)) {
            (false, true) => out.push(change(SectionChangeKind::Added, None)),
            (true, false) => out.push(change(SectionChangeKind::Removed, None)),
            _ => {}
        }
        // Only nodes in both versions move: an added or removed node is listed with its
        // section under nodes.
        let on_both = |n: &&&str| old.node(n).is_some() && new.node(n).is_some();
        let (a, b) = (was.get(id).unwrap_or(&empty), now.get(id).unwrap_or(&empty));
        out.extend(
            b.difference(a)
                .filter(on_both)
                .map(|n| change(SectionChangeKind::Entered, Some(n))),
        );
        out.extend(
            a.difference(b)
                .filter(on_both)
                .map(|n| change(SectionChangeKind::Left, Some(n))),
        );
    }
    out
}

#[cfg(test)]
mod tests;
