//! The flow as a graph: its edges, strongly connected components, and drawings.
//!
//! `edges` is the one place that knows every way a call can move between nodes (`next`, `on:`,
//! menu keys, branch cases, comfort-loop keys, `limit.then`, `secure.start`, and the implied
//! `settings.on_error` fallback). The checker's graph passes and the Mermaid/DOT export both
//! use it, so what is checked is what is drawn. `render_with` draws the same graph with an
//! [`Overlay`] of marks (`resetline graph --diff`); without one the drawing is unchanged.

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

/// How a drawing marks a node or an edge (`resetline graph --diff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Only in the new version: drawn bold green.
    Added,
    /// On both sides, different: filled yellow.
    Changed,
    /// Only in the old version: drawn dashed grey.
    Removed,
}

impl Mark {
    fn word(self) -> &'static str {
        match self {
            Mark::Added => "added",
            Mark::Changed => "changed",
            Mark::Removed => "removed",
        }
    }
}

/// One edge as drawn: from, label, to.
pub type EdgeKey = (String, String, String);

/// The drawn edge from the start marker to the `start` node (`__start`, `start`, the node).
pub fn start_edge(start: &str) -> EdgeKey {
    ("__start".into(), "start".into(), start.into())
}

/// Marks laid over the drawing of a flow. Empty for a plain `resetline graph`.
#[derive(Clone, Debug, Default)]
pub struct Overlay {
    /// A comment line at the top (what was compared).
    pub note: Option<String>,
    /// Marks of the flow's own nodes, by id.
    pub nodes: HashMap<String, Mark>,
    /// Nodes of another version drawn as removed (inside their section when it is drawn).
    pub ghosts: Vec<Node>,
    /// Marks of the flow's own edges.
    pub edges: HashMap<EdgeKey, Mark>,
    /// Edges of another version drawn as removed, with whether each is a failure path.
    pub ghost_edges: Vec<(EdgeKey, bool)>,
}

impl Overlay {
    fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.ghosts.is_empty() && self.edges.is_empty()
    }
}

/// Draws the flow. Secure sections are clusters; failure edges are dashed; the start node is
/// marked; edges into missing nodes are left out.
pub fn render(flow: &Flow, format: Format) -> String {
    render_with(flow, format, &Overlay::default())
}

/// Draws the flow with `overlay`'s marks and removed nodes and edges.
pub fn render_with(flow: &Flow, format: Format, overlay: &Overlay) -> String {
    let mut d = Drawing {
        out: String::new(),
        format,
        links: 0,
        link_styles: Vec::new(),
        marked: Vec::new(),
    };
    d.header(flow, overlay);
    let clusters: Vec<&str> = flow
        .nodes
        .iter()
        .filter(|n| matches!(n.kind, Kind::Secure(_)) && n.section.is_none())
        .map(|n| n.id.value.as_str())
        .collect();
    let mark = |n: &Node| overlay.nodes.get(&n.id.value).copied();
    for n in flow.nodes.iter().filter(|n| n.section.is_none()) {
        if let Kind::Secure(s) = &n.kind {
            d.open_cluster(&n.id.value, mark(n));
            for inner in s.nodes.iter().filter_map(|id| flow.node(id)) {
                d.node(inner, "    ", mark(inner));
            }
            for ghost in overlay
                .ghosts
                .iter()
                .filter(|g| g.section.as_deref() == Some(n.id.value.as_str()))
            {
                d.node(ghost, "    ", Some(Mark::Removed));
            }
            d.close_cluster();
        } else {
            d.node(n, "  ", mark(n));
        }
    }
    for ghost in overlay
        .ghosts
        .iter()
        .filter(|g| g.section.as_deref().is_none_or(|s| !clusters.contains(&s)))
    {
        d.node(ghost, "  ", Some(Mark::Removed));
    }
    for n in &flow.nodes {
        for e in edges(flow, n) {
            if flow.node(&e.target.value).is_none() {
                continue;
            }
            let key = (n.id.value.clone(), e.label, e.target.value.clone());
            let mark = overlay.edges.get(&key).copied();
            d.edge(&key, e.failure, mark);
        }
    }
    for (key, failure) in &overlay.ghost_edges {
        d.edge(key, *failure, Some(Mark::Removed));
    }
    d.footer(!overlay.is_empty());
    d.out
}

/// The drawing being written, in one of the two languages.
struct Drawing {
    out: String,
    format: Format,
    /// Mermaid: edges written so far (`linkStyle` counts them).
    links: usize,
    /// Mermaid: `linkStyle` lines for marked edges.
    link_styles: Vec<String>,
    /// Mermaid: nodes with a mark, for `class` lines.
    marked: Vec<(String, Mark)>,
}

impl Drawing {
    fn header(&mut self, flow: &Flow, overlay: &Overlay) {
        let out = &mut self.out;
        match self.format {
            Format::Mermaid => {
                let _ = writeln!(out, "flowchart TD");
                let _ = writeln!(out, "  %% flow {} ({})", flow.id.value, flow.version_key());
                if let Some(note) = &overlay.note {
                    let _ = writeln!(out, "  %% {note}");
                }
            }
            Format::Dot => {
                let _ = writeln!(out, "digraph \"{}\" {{", flow.id.value);
                if let Some(note) = &overlay.note {
                    let _ = writeln!(out, "  // {note}");
                }
                let _ = writeln!(
                    out,
                    "  rankdir=TB; node [shape=box, fontname=\"Helvetica\"];"
                );
                let _ = writeln!(out, "  __start [shape=circle, label=\"start\"];");
            }
        }
        let key = start_edge(&flow.start.value);
        match overlay.edges.get(&key).copied() {
            Some(mark) => {
                if self.format == Format::Mermaid {
                    let _ = writeln!(self.out, "  __start([start])");
                }
                self.edge(&key, false, Some(mark));
            }
            None => {
                let _ = match self.format {
                    Format::Mermaid => writeln!(self.out, "  __start([start]) --> {}", key.2),
                    Format::Dot => writeln!(self.out, "  __start -> \"{}\";", key.2),
                };
                self.links += 1;
            }
        }
    }

    fn node(&mut self, n: &Node, indent: &str, mark: Option<Mark>) {
        let mut text = format!("{}\\n{}", n.id.value, n.kind.name());
        if let Some(m) = mark {
            let _ = write!(text, "\\n({})", m.word());
        }
        let out = &mut self.out;
        match self.format {
            Format::Mermaid => {
                let text = text.replace("\\n", "<br/>");
                let shape = match n.kind {
                    Kind::Hangup(_) | Kind::Transfer(_) => format!("([\"{text}\"])"),
                    Kind::Branch(_) => format!("{{\"{text}\"}}"),
                    _ => format!("[\"{text}\"]"),
                };
                let _ = writeln!(out, "{indent}{}{shape}", n.id.value);
                if let Some(m) = mark {
                    self.marked.push((n.id.value.clone(), m));
                }
            }
            Format::Dot => {
                let shape = match n.kind {
                    Kind::Hangup(_) | Kind::Transfer(_) => ", shape=oval",
                    Kind::Branch(_) => ", shape=diamond",
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "{indent}\"{}\" [label=\"{text}\"{shape}{}];",
                    n.id.value,
                    dot_node_style(mark)
                );
            }
        }
    }

    fn open_cluster(&mut self, id: &str, mark: Option<Mark>) {
        let out = &mut self.out;
        let note = mark.map(|m| format!(", {}", m.word())).unwrap_or_default();
        match self.format {
            Format::Mermaid => {
                let _ = writeln!(
                    out,
                    "  subgraph {id}[\"secure: {id} (recording paused{note})\"]"
                );
            }
            Format::Dot => {
                let _ = writeln!(out, "  subgraph \"cluster_{id}\" {{");
                let _ = writeln!(
                    out,
                    "    label=\"secure: {id} (recording paused{note})\"; style=filled; color=\"#fde2e2\";"
                );
                let _ = writeln!(out, "    \"{id}\" [label=\"{id}\", shape=point];");
            }
        }
    }

    fn close_cluster(&mut self) {
        let _ = match self.format {
            Format::Mermaid => writeln!(self.out, "  end"),
            Format::Dot => writeln!(self.out, "  }}"),
        };
    }

    fn edge(&mut self, (from, label, to): &EdgeKey, failure: bool, mark: Option<Mark>) {
        let label = match mark {
            Some(m) => format!("{label} ({})", m.word()),
            None => label.clone(),
        };
        // Mermaid reads parentheses in an edge label as syntax unless it is quoted.
        let quoted = match mark {
            Some(_) => format!("\"{label}\""),
            None => label.clone(),
        };
        let out = &mut self.out;
        match self.format {
            Format::Mermaid => {
                let arrow = if failure || mark == Some(Mark::Removed) {
                    "-.->"
                } else {
                    "-->"
                };
                let _ = writeln!(out, "  {from} {arrow}|{quoted}| {to}");
                if let Some(m) = mark {
                    let style = match m {
                        Mark::Removed => "stroke:#9e9e9e,stroke-dasharray:5 5",
                        Mark::Added | Mark::Changed => "stroke:#1b7f3b,stroke-width:3px",
                    };
                    self.link_styles
                        .push(format!("  linkStyle {} {style}", self.links));
                }
                self.links += 1;
            }
            Format::Dot => {
                let style = match (mark, failure) {
                    (Some(Mark::Removed), _) => {
                        ", style=dashed, color=\"#9e9e9e\", fontcolor=\"#9e9e9e\""
                    }
                    (Some(_), true) => ", style=dashed, color=\"#1b7f3b\", penwidth=2",
                    (Some(_), false) => ", color=\"#1b7f3b\", penwidth=2",
                    (None, true) => ", style=dashed, color=\"#b00020\"",
                    (None, false) => "",
                };
                let _ = writeln!(out, "  \"{from}\" -> \"{to}\" [label=\"{label}\"{style}];");
            }
        }
    }

    fn footer(&mut self, marked: bool) {
        let out = &mut self.out;
        match self.format {
            Format::Mermaid => {
                if marked {
                    let _ = writeln!(out, "  classDef added stroke:#1b7f3b,stroke-width:3px");
                    let _ = writeln!(out, "  classDef changed fill:#fff3b0");
                    let _ = writeln!(
                        out,
                        "  classDef removed stroke:#9e9e9e,stroke-dasharray:5 5,color:#9e9e9e"
                    );
                }
                for (id, m) in &self.marked {
                    let _ = writeln!(out, "  class {id} {}", m.word());
                }
                for line in &self.link_styles {
                    let _ = writeln!(out, "{line}");
                }
            }
            Format::Dot => {
                let _ = writeln!(out, "}}");
            }
        }
    }
}

fn dot_node_style(mark: Option<Mark>) -> &'static str {
    match mark {
        None => "",
        Some(Mark::Added) => ", color=\"#1b7f3b\", penwidth=2",
        Some(Mark::Changed) => ", style=filled, fillcolor=\"#fff3b0\"",
        Some(Mark::Removed) => ", style=dashed, color=\"#9e9e9e\", fontcolor=\"#9e9e9e\"",
    }
}
