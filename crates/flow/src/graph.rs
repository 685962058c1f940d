//! The flow as a graph: its edges, strongly connected components, and drawings.
//!
//! `edges` is the one place that knows every way a call can move between nodes (`next`, `on:`,
//! menu keys, branch cases, comfort-loop keys, `limit.then`, `secure.start`, and the implied
//! `settings.on_error` fallback). The checker's graph passes and the Mermaid/DOT export both
//! use it, so what is checked is what is drawn.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::model::{Flow, Kind, Node, WaitKey};
use crate::span::Spanned;
use crate::spec::{self, Handling};

/// One way out of a node.
#[derive(Clone, Debug)]
pub struct EdgeRef<'f> {
    /// What the edge is labelled with: `next`, an outcome, `key 1`, `case 2`, `limit`, `start`.
    pub label: String,
    /// The target node id (with its span in the file; `None` for the implied `on_error`).
    pub target: &'f Spanned<String>,
    /// A failure path (drawn dashed; counts for the retry-bound check).
    pub failure: bool,
    /// Taken only after a successful verification (counts towards `min_factors`).
    pub verified: bool,
    /// Implied by `settings.on_error`, not written on the node.
    pub implied: bool,
}

/// Every edge out of `node`.
pub fn edges<'f>(flow: &'f Flow, node: &'f Node) -> Vec<EdgeRef<'f>> {
    let mut out = Vec::new();
    let verify = matches!(node.kind, Kind::CodeVerify(_) | Kind::PinVerify(_));
    let edge = |label: String, target: &'f Spanned<String>, failure: bool| EdgeRef {
        label,
        target,
        failure,
        verified: false,
        implied: false,
    };
    if let Some(next) = &node.next {
        out.push(EdgeRef {
            label: "next".into(),
            target: next,
            failure: false,
            verified: verify,
            implied: false,
        });
    }
    match &node.kind {
        Kind::Menu(m) => {
            for k in &m.keys {
                if let Some(n) = &k.next {
                    out.push(edge(format!("key {}", k.key.value), n, false));
                }
            }
        }
        Kind::Branch(cases) => {
            for (i, c) in cases.iter().enumerate() {
                out.push(edge(format!("case {}", i + 1), &c.next, false));
            }
        }
        Kind::CodeVerify(v) => {
            if let Some(w) = &v.wait {
                for (key, action) in &w.keys {
                    if let WaitKey::Goto(t) = action {
                        out.push(edge(format!("key {}", key.value), t, false));
                    }
                }
            }
        }
        Kind::Secure(s) => out.push(edge("start".into(), &s.start, false)),
        _ => {}
    }
    for e in &node.on {
        let failure = !(e.outcome.value.starts_with('2') || e.outcome.value.starts_with('3'));
        out.push(edge(e.outcome.value.clone(), &e.target, failure));
    }
    if let Some(l) = &node.limit {
        out.push(edge("limit".into(), &l.then, true));
    }
    if let Some(on_error) = &flow.settings.on_error
        && let Some(spec) = spec::kind(node.kind.name())
    {
        let falls_back = spec
            .outcomes
            .iter()
            .any(|o| o.handling == Handling::Fallback && node.on(o.name).is_none());
        if falls_back {
            out.push(EdgeRef {
                label: "error".into(),
                target: on_error,
                failure: true,
                verified: false,
                implied: true,
            });
        }
    }
    out
}

/// Adjacency by node index, keeping only edges whose target exists.
pub(crate) fn adjacency(flow: &Flow) -> Vec<Vec<(usize, EdgeRef<'_>)>> {
    flow.nodes
        .iter()
        .map(|n| {
            edges(flow, n)
                .into_iter()
                .filter_map(|e| flow.index.get(&e.target.value).map(|&t| (t, e)))
                .collect()
        })
        .collect()
}

/// Strongly connected components (iterative Kosaraju), restricted to nodes where `keep` is
/// true. Returns the components that contain a cycle.
pub(crate) fn cyclic_components(
    adj: &[Vec<(usize, EdgeRef<'_>)>],
    keep: &dyn Fn(usize) -> bool,
) -> Vec<Vec<usize>> {
    let n = adj.len();
    let succ: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            if keep(i) {
                adj[i]
                    .iter()
                    .map(|(t, _)| *t)
                    .filter(|&t| keep(t))
                    .collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut pred: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, s) in succ.iter().enumerate() {
        for &t in s {
            pred[t].push(i);
        }
    }
    // First pass: finishing order.
    let mut visited = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for root in (0..n).filter(|&i| keep(i)) {
        if visited[root] {
            continue;
        }
        visited[root] = true;
        let mut stack = vec![(root, 0usize)];
        while let Some((v, i)) = stack.pop() {
            if i < succ[v].len() {
                stack.push((v, i + 1));
                let w = succ[v][i];
                if !visited[w] {
                    visited[w] = true;
                    stack.push((w, 0));
                }
            } else {
                order.push(v);
            }
        }
    }
    // Second pass on the transposed graph.
    let mut comp = vec![usize::MAX; n];
    let mut out = Vec::new();
    for &root in order.iter().rev() {
        if comp[root] != usize::MAX {
            continue;
        }
        let id = out.len();
        let mut members = vec![root];
        comp[root] = id;
        let mut stack = vec![root];
        while let Some(v) = stack.pop() {
            for &w in &pred[v] {
                if comp[w] == usize::MAX {
                    comp[w] = id;
                    members.push(w);
                    stack.push(w);
                }
            }
        }
        out.push(members);
    }
    out.into_iter()
        .filter(|m| m.len() > 1 || m.first().is_some_and(|&v| succ[v].contains(&v)))
        .map(|mut m| {
            m.sort_unstable();
            m
        })
        .collect()
}

/// A cycle through `members` starting at `from`, as node indices (first == last).
pub(crate) fn cycle_through(
    adj: &[Vec<(usize, EdgeRef<'_>)>],
    members: &[usize],
    from: usize,
    first_hop: usize,
) -> Vec<usize> {
    // BFS inside the component from `first_hop` back to `from`.
    let inside = |v: usize| members.binary_search(&v).is_ok();
    let mut prev: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([first_hop]);
    prev.insert(first_hop, from);
    while let Some(v) = queue.pop_front() {
        if v == from {
            break;
        }
        for (w, _) in &adj[v] {
            if inside(*w) && !prev.contains_key(w) {
                prev.insert(*w, v);
                queue.push_back(*w);
            }
        }
    }
    let mut path = vec![from];
    let mut cur = from;
    let mut guard = 0;
    while let Some(&p) = prev.get(&cur) {
        path.push(p);
        if p == from || guard > members.len() {
            break;
        }
        cur = p;
        guard += 1;
    }
    path.reverse();
    path
}

/// Output format for `resetline graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Mermaid `flowchart`.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// Draws the flow. Secure sections are clusters; failure edges are dashed; the start node is
/// marked; edges into missing nodes are left out.
pub fn render(flow: &Flow, format: Format) -> String {
    let mut out = String::new();
    let label = |n: &Node| format!("{}\\n{}", n.id.value, n.kind.name());
    match format {
        Format::Mermaid => {
            let _ = writeln!(out, "flowchart TD");
            let _ = writeln!(out, "  %% flow {} ({})", flow.id.value, flow.version_key());
            let _ = writeln!(out, "  __start([start]) --> {}", flow.start.value);
            let write_node = |out: &mut String, n: &Node, indent: &str| {
                let text = label(n).replace("\\n", "<br/>");
                let shape = match n.kind {
                    Kind::Hangup(_) | Kind::Transfer(_) => format!("([\"{text}\"])"),
                    Kind::Branch(_) => format!("{{\"{text}\"}}"),
                    _ => format!("[\"{text}\"]"),
                };
                let _ = writeln!(out, "{indent}{}{shape}", n.id.value);
            };
            for n in flow.nodes.iter().filter(|n| n.section.is_none()) {
                if let Kind::Secure(s) = &n.kind {
                    let _ = writeln!(
                        out,
                        "  subgraph {}[\"secure: {} (recording paused)\"]",
                        n.id.value, n.id.value
                    );
                    for inner in s.nodes.iter().filter_map(|id| flow.node(id)) {
                        write_node(&mut out, inner, "    ");
                    }
                    let _ = writeln!(out, "  end");
                } else {
                    write_node(&mut out, n, "  ");
                }
            }
            for n in &flow.nodes {
                for e in edges(flow, n) {
                    if flow.node(&e.target.value).is_none() {
                        continue;
                    }
                    let arrow = if e.failure { "-.->" } else { "-->" };
                    let _ = writeln!(
                        out,
                        "  {} {arrow}|{}| {}",
                        n.id.value, e.label, e.target.value
                    );
                }
            }
        }
        Format::Dot => {
            let _ = writeln!(out, "digraph \"{}\" {{", flow.id.value);
            let _ = writeln!(
                out,
                "  rankdir=TB; node [shape=box, fontname=\"Helvetica\"];"
            );
            let _ = writeln!(out, "  __start [shape=circle, label=\"start\"];");
            let _ = writeln!(out, "  __start -> \"{}\";", flow.start.value);
            let write_node = |out: &mut String, n: &Node, indent: &str| {
                let shape = match n.kind {
                    Kind::Hangup(_) | Kind::Transfer(_) => ", shape=oval",
                    Kind::Branch(_) => ", shape=diamond",
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "{indent}\"{}\" [label=\"{}\"{shape}];",
                    n.id.value,
                    label(n)
                );
            };
            for n in flow.nodes.iter().filter(|n| n.section.is_none()) {
                if let Kind::Secure(s) = &n.kind {
                    let _ = writeln!(out, "  subgraph \"cluster_{}\" {{", n.id.value);
                    let _ = writeln!(
                        out,
                        "    label=\"secure: {} (recording paused)\"; style=filled; color=\"#fde2e2\";",
                        n.id.value
                    );
                    let _ = writeln!(
                        out,
                        "    \"{}\" [label=\"{}\", shape=point];",
                        n.id.value, n.id.value
                    );
                    for inner in s.nodes.iter().filter_map(|id| flow.node(id)) {
                        write_node(&mut out, inner, "    ");
                    }
                    let _ = writeln!(out, "  }}");
                } else {
                    write_node(&mut out, n, "  ");
                }
            }
            for n in &flow.nodes {
                for e in edges(flow, n) {
                    if flow.node(&e.target.value).is_none() {
                        continue;
                    }
                    let style = if e.failure {
                        ", style=dashed, color=\"#b00020\""
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "  \"{}\" -> \"{}\" [label=\"{}\"{style}];",
                        n.id.value, e.target.value, e.label
                    );
                }
            }
            let _ = writeln!(out, "}}");
        }
    }
    out
}
