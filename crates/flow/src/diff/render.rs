//! `resetline diff` output: text for people (one line per change, grouped) and JSON for tools.
//!
//! Invariant: the JSON shape is documented in docs/flow-language.md ("Comparing two versions")
//! and only grows; both formats list changes in the order of the [`FlowDiff`].

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{FieldChange, FlowDiff, SectionChangeKind, Side, TestOutcome};

/// Output format of `resetline diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffFormat {
    /// Grouped lines: `+` added, `-` removed, `~` changed.
    Text,
    /// One JSON document.
    Json,
}

/// Renders the diff.
pub fn render(diff: &FlowDiff, format: DiffFormat) -> String {
    match format {
        DiffFormat::Text => text(diff),
        DiffFormat::Json => {
            let mut s = serde_json::to_string_pretty(&to_json(diff)).unwrap_or_default();
            s.push('\n');
            s
        }
    }
}

fn count(diff: &FlowDiff) -> usize {
    let prompts: usize = diff
        .prompts
        .iter()
        .map(|p| p.added.len() + p.removed.len() + p.params.len() + usize::from(p.order.is_some()))
        .sum();
    let fields: usize = diff.changed.iter().map(|c| c.fields.len()).sum();
    diff.flow.len()
        + diff.added.len()
        + diff.removed.len()
        + fields
        + diff.edges.len()
        + prompts
        + diff.prompt_texts.len()
        + diff.sections.len()
        + diff.settings.len()
        + diff.tests.len()
}

fn value(v: Option<&String>) -> &str {
    v.map_or("(none)", String::as_str)
}

fn field_line(out: &mut String, prefix: &str, c: &FieldChange) {
    let _ = writeln!(
        out,
        "  ~ {prefix}{}: {} -> {}",
        c.field,
        value(c.old.as_ref()),
        value(c.new.as_ref())
    );
}

fn outcome(o: &TestOutcome) -> String {
    let verdict = if o.passed { "passed" } else { "FAILED" };
    let mut s = format!("{verdict} ({}", o.end);
    // A transfer records the outcome `transferred`: said once.
    if let Some(x) = o.outcome.as_ref().filter(|x| **x != o.end) {
        let _ = write!(s, ", {x}");
    }
    s.push(')');
    if let Some(f) = &o.failure {
        let _ = write!(s, ": {f}");
    }
    s
}

fn text(d: &FlowDiff) -> String {
    let mut out = String::new();
    let side = |s: &Side| format!("{} (flow `{}`, version {})", s.file, s.flow, s.version);
    let _ = writeln!(out, "--- {}", side(&d.old));
    let _ = writeln!(out, "+++ {}", side(&d.new));
    let group = |out: &mut String, title: &str, lines: String| {
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{title}");
            out.push_str(&lines);
        }
    };
    let mut lines = String::new();
    for c in &d.flow {
        field_line(&mut lines, "", c);
    }
    group(&mut out, "flow", lines);
    group(&mut out, "nodes", node_lines(d));
    let mut lines = String::new();
    for e in &d.edges {
        let _ = match (&e.old, &e.new) {
            (None, Some(n)) => writeln!(lines, "  + {} --{}--> {n}", e.node, e.edge),
            (Some(o), None) => writeln!(lines, "  - {} --{}--> {o}", e.node, e.edge),
            (o, n) => writeln!(
                lines,
                "  ~ {} --{}--> {} (was {})",
                e.node,
                e.edge,
                value(n.as_ref()),
                value(o.as_ref())
            ),
        };
    }
    group(&mut out, "edges", lines);
    group(&mut out, "prompts", prompt_lines(d));
    let mut lines = String::new();
    for s in &d.sections {
        let node = s.node.as_deref().unwrap_or_default();
        let _ = match s.change {
            SectionChangeKind::Added => writeln!(lines, "  + section {} added", s.section),
            SectionChangeKind::Removed => writeln!(lines, "  - section {} removed", s.section),
            SectionChangeKind::Entered => writeln!(
                lines,
                "  + {node} enters section {} (recording paused)",
                s.section
            ),
            SectionChangeKind::Left => writeln!(
                lines,
                "  - {node} leaves section {} (recording no longer paused)",
                s.section
            ),
        };
    }
    group(&mut out, "secure sections", lines);
    let mut lines = String::new();
    for c in &d.settings {
        field_line(&mut lines, "", c);
    }
    group(&mut out, "settings", lines);
    let mut lines = String::new();
    for t in &d.tests {
        let _ = writeln!(
            lines,
            "  ~ {}: {}: {} -> {}",
            t.file,
            t.case,
            outcome(&t.old),
            outcome(&t.new)
        );
    }
    group(&mut out, "tests", lines);
    let n = count(d);
    let _ = match n {
        0 => writeln!(out, "\nno differences"),
        1 => writeln!(out, "\n1 difference"),
        n => writeln!(out, "\n{n} differences"),
    };
    out
}

fn node_lines(d: &FlowDiff) -> String {
    let mut lines = String::new();
    let place = |section: &Option<String>| match section {
        Some(s) => format!(", in secure section {s}"),
        None => String::new(),
    };
    for n in &d.added {
        let _ = writeln!(lines, "  + {} ({}{})", n.id, n.kind, place(&n.section));
    }
    for n in &d.removed {
        let _ = writeln!(lines, "  - {} ({}{})", n.id, n.kind, place(&n.section));
    }
    for c in &d.changed {
        for f in &c.fields {
            field_line(&mut lines, &format!("{} ", c.id), f);
        }
    }
    lines
}

fn prompt_lines(d: &FlowDiff) -> String {
    let mut lines = String::new();
    for p in &d.prompts {
        for k in &p.added {
            let _ = writeln!(lines, "  + {} says {k}", p.node);
        }
        for k in &p.removed {
            let _ = writeln!(lines, "  - {} no longer says {k}", p.node);
        }
        for c in &p.params {
            field_line(&mut lines, &format!("{} parameters of ", p.node), c);
        }
        if let Some(c) = &p.order {
            field_line(&mut lines, &format!("{} prompt ", p.node), c);
        }
    }
    for t in &d.prompt_texts {
        let q = |v: &Option<String>| v.as_ref().map(|s| format!("\"{s}\""));
        let _ = writeln!(
            lines,
            "  ~ {} [{}]: {} -> {}",
            t.key,
            t.locale,
            value(q(&t.old).as_ref()),
            value(q(&t.new).as_ref())
        );
    }
    lines
}

fn changes(list: &[FieldChange], name: &str) -> Value {
    list.iter()
        .map(|c| json!({ name: c.field, "old": c.old, "new": c.new }))
        .collect()
}

fn test_outcome(o: &TestOutcome) -> Value {
    json!({ "passed": o.passed, "end": o.end, "outcome": o.outcome, "failure": o.failure })
}

/// The JSON document (shape documented in docs/flow-language.md).
pub(crate) fn to_json(d: &FlowDiff) -> Value {
    let side = |s: &Side| json!({ "file": s.file, "flow": s.flow, "version": s.version });
    let node = |n: &super::NodeSummary| json!({ "id": n.id, "kind": n.kind, "section": n.section });
    json!({
        "old": side(&d.old),
        "new": side(&d.new),
        "differences": count(d),
        "flow": changes(&d.flow, "field"),
        "nodes": {
            "added": d.added.iter().map(node).collect::<Vec<_>>(),
            "removed": d.removed.iter().map(node).collect::<Vec<_>>(),
            "changed": d.changed.iter().map(|c| json!({
                "id": c.id,
                "fields": changes(&c.fields, "field"),
            })).collect::<Vec<_>>(),
        },
        "edges": d.edges.iter().map(|e| json!({
            "node": e.node, "edge": e.edge, "old": e.old, "new": e.new,
        })).collect::<Vec<_>>(),
        "prompts": {
            "nodes": d.prompts.iter().map(|p| json!({
                "node": p.node,
                "added": p.added,
                "removed": p.removed,
                "params": changes(&p.params, "key"),
                "order": p.order.as_ref().map(|c| json!({ "old": c.old, "new": c.new })),
            })).collect::<Vec<_>>(),
            "texts": d.prompt_texts.iter().map(|t| json!({
                "key": t.key, "locale": t.locale, "old": t.old, "new": t.new,
            })).collect::<Vec<_>>(),
        },
        "secure_sections": d.sections.iter().map(|s| json!({
            "section": s.section, "change": s.change.name(), "node": s.node,
        })).collect::<Vec<_>>(),
        "settings": changes(&d.settings, "setting"),
        "tests": d.tests.iter().map(|t| json!({
            "file": t.file,
            "case": t.case,
            "old": test_outcome(&t.old),
            "new": test_outcome(&t.new),
        })).collect::<Vec<_>>(),
    })
}
