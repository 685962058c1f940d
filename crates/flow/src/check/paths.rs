//! The graph passes: reachability, cycles that never wait for input, unbounded retries, no
//! new code sent by itself after the last wrong one, and verification factors on every path
//! to `set_secret`.
//!
//! Invariant: every path from `start` to a `set_secret` passes `settings.min_factors`
//! successful verifications of the record whose secret it sets, counted after the
//! `directory.find` that last set that record.

use std::collections::{HashMap, VecDeque};

use crate::diagnostic::Code;
use crate::graph::{self, EdgeRef};

use crate::model::*;

use super::Checker;

impl<'f> Checker<'f> {
    /// The graph passes, once every node loaded (else they would only echo the load errors).
    pub(super) fn graph(&mut self) {
        let flow = self.flow;
        if !flow.broken.is_empty() {
            // The graph is incomplete; reachability and path checks would only echo the
            // load errors. They run once every node loads.
            return;
        }
        let adj = graph::adjacency(flow);
        let Some(&start) = flow.index.get(&flow.start.value) else {
            return;
        };
        self.reachability(&adj, start);
        self.inputless_cycles(&adj);
        self.unbounded_retries(&adj);
        self.resent_codes(&adj);
        self.too_few_factors(&adj, start);
    }

    /// Every node is reached from `start` (a section's inner nodes when the section is).
    fn reachability(&mut self, adj: &[Vec<(usize, EdgeRef<'_>)>], start: usize) {
        let flow = self.flow;
        let mut seen = vec![false; flow.nodes.len()];
        let mut queue = VecDeque::from([start]);
        seen[start] = true;
        while let Some(v) = queue.pop_front() {
            for (w, _) in &adj[v] {
                if !seen[*w] {
                    seen[*w] = true;
                    queue.push_back(*w);
                }
            }
        }
        for (i, node) in flow.nodes.iter().enumerate() {
            let section_unreachable = node
                .section
                .as_ref()
                .and_then(|s| flow.index.get(s))
                .is_some_and(|&s| !seen[s]);
            if !seen[i] && !section_unreachable {
                self.d(
                    Code::Unreachable,
                    node.id.span,
                    format!(
                        "node `{}` is never reached from `start` (`{}`)",
                        node.id.value, flow.start.value
                    ),
                );
            }
        }
    }

    /// No cycle of nodes that never waits for the caller.
    fn inputless_cycles(&mut self, adj: &[Vec<(usize, EdgeRef<'_>)>]) {
        let flow = self.flow;
        let no_input = |i: usize| !flow.nodes[i].kind.takes_input();
        for comp in graph::cyclic_components(adj, &no_input) {
            let first = comp[0];
            let hop = adj[first]
                .iter()
                .find(|(t, _)| comp.binary_search(t).is_ok())
                .map_or(first, |(t, _)| *t);
            let cycle = graph::cycle_through(adj, &comp, first, hop);
            let names = path_names(flow, &cycle);
            let node = &flow.nodes[first];
            let d = self.d(
                Code::InputlessCycle,
                node.id.span,
                format!("the cycle {names} never waits for the caller"),
            );
            d.notes.push("a call could spin here until `max_call_seconds`; put a menu, gather or wait on the loop".into());
        }
    }

    /// Every loop a failure edge leads back into is bounded by a `limit`.
    fn unbounded_retries(&mut self, adj: &[Vec<(usize, EdgeRef<'_>)>]) {
        let flow = self.flow;
        let all = |_: usize| true;
        for comp in graph::cyclic_components(adj, &all) {
            if comp.iter().any(|&i| flow.nodes[i].limit.is_some()) {
                continue;
            }
            let mut found: Option<(usize, usize, &EdgeRef<'_>)> = None;
            for &u in &comp {
                for (v, e) in &adj[u] {
                    if e.failure && comp.binary_search(v).is_ok() {
                        found = Some((u, *v, e));
                        break;
                    }
                }
                if found.is_some() {
                    break;
                }
            }
            let Some((u, v, e)) = found else { continue };
            let cycle = graph::cycle_through(adj, &comp, u, v);
            let names = path_names(flow, &cycle);
            let from = &flow.nodes[u].id.value;
            let msg = format!(
                "`{}` of node `{from}` leads back into a loop that nothing bounds: {names}",
                e.label
            );
            let d = self.d(Code::UnboundedRetry, e.target.span, msg);
            d.notes.push("add `limit: { visits: 3, then: <node> }` to a node on the loop, e.g. the first prompt".into());
        }
    }

    /// After the last wrong code, no path sends a new code without the caller asking.
    fn resent_codes(&mut self, adj: &[Vec<(usize, EdgeRef<'_>)>]) {
        let flow = self.flow;
        for node in &flow.nodes {
            if !matches!(node.kind, Kind::CodeVerify(_)) {
                continue;
            }
            let Some(failed) = node.on("failed") else {
                continue;
            };
            let Some(&to) = flow.index.get(&failed.value) else {
                continue;
            };
            let Some(path) = unasked_send(flow, adj, to) else {
                continue;
            };
            let msg = format!(
                "after the last wrong code, node `{}` sends a new code without the caller asking: {}",
                node.id.value,
                path_names(flow, &path)
            );
            let d = self.d(Code::CodeResentAfterFailure, failed.span, msg);
            d.label = Some("reaches a `code.send` with no menu in between".into());
            d.notes.push("the last wrong code kills the code and no new one is sent automatically (Twilio Verify 60202); offer a `menu` with a key for a new code, or go to an agent".into());
        }
    }

    /// On every path to a `set_secret`, `min_factors` successful verifications of its record.
    fn too_few_factors(&mut self, adj: &[Vec<(usize, EdgeRef<'_>)>], start: usize) {
        let flow = self.flow;
        let min = flow.settings.min_factors.value;
        let n = flow.nodes.len();
        let plain = factors(flow, adj, start, None);
        let mut by_account: HashMap<&str, (Vec<u32>, Vec<Option<usize>>)> = HashMap::new();
        for (i, node) in flow.nodes.iter().enumerate() {
            let Kind::SetSecret(x) = &node.kind else {
                continue;
            };
            let account = x.account.value.as_str();
            let (dist, prev) = by_account
                .entry(account)
                .or_insert_with(|| factors(flow, adj, start, Some(account)));
            if dist[i] == u32::MAX || dist[i] >= min {
                continue;
            }
            // Back to where the count last started (the start or a `directory.find` of the
            // account), then any way there from the start.
            let mut path = vec![i];
            let mut cur = i;
            while let Some(p) = prev[cur] {
                path.push(p);
                cur = p;
                if finds(&flow.nodes[p], account) || path.len() > n {
                    break;
                }
            }
            path.pop();
            path.extend(hops(adj, start, cur));
            path.reverse();
            let names = path_names(flow, &path);
            let got = dist[i];
            let msg = format!(
                "node `{}` sets a new secret after {got} successful verification{} on some path; `min_factors` is {min}",
                node.id.value,
                if got == 1 { "" } else { "s" }
            );
            let d = self.d(Code::TooFewFactors, node.kind_span, msg);
            d.notes.push(format!("path: {names}"));
            if plain.0[i] >= min {
                d.notes.push(format!("only verifications of `{account}` count, made after `directory.find` last set `{account}`: a check of another record, or of the record found before, never counts for this one"));
            }
            d.notes.push("caller ID is a claim, never a factor; pass through `code.verify` or `pin.verify` first (NIST SP 800-63B 6.1.2.3)".into());
        }
    }
}

/// The fewest successful verifications on any path from `start` to each node (`u32::MAX`
/// when unreachable), with the predecessor on such a path. With `account`, only
/// verifications of that record count, and a `directory.find` into it starts the count
/// again (a check of A never counts for B found later); without, every verification counts.
/// A label-correcting 0-1 BFS: a node is queued again whenever its count drops.
fn factors(
    flow: &Flow,
    adj: &[Vec<(usize, EdgeRef<'_>)>],
    start: usize,
    account: Option<&str>,
) -> (Vec<u32>, Vec<Option<usize>>) {
    let n = flow.nodes.len();
    let mut dist = vec![u32::MAX; n];
    let mut prev: Vec<Option<usize>> = vec![None; n];
    let mut dq = VecDeque::from([start]);
    dist[start] = 0;
    while let Some(v) = dq.pop_front() {
        let (counts, resets) = match account {
            None => (true, false),
            Some(a) => (verifies(flow, &flow.nodes[v], a), finds(&flow.nodes[v], a)),
        };
        let base = if resets { 0 } else { dist[v] };
        for (w, e) in &adj[v] {
            let cost = u32::from(e.verified && counts);
            let nd = base.saturating_add(cost);
            if nd < dist[*w] {
                dist[*w] = nd;
                prev[*w] = Some(v);
                if cost == 0 {
                    dq.push_front(*w)
                } else {
                    dq.push_back(*w)
                }
            }
        }
    }
    (dist, prev)
}

/// The nodes of a shortest path (by hops) from `start` to `to`, from `to` back to `start`.
fn hops(adj: &[Vec<(usize, EdgeRef<'_>)>], start: usize, to: usize) -> Vec<usize> {
    let mut parent: Vec<Option<usize>> = vec![None; adj.len()];
    let mut seen = vec![false; adj.len()];
    let mut queue = VecDeque::from([start]);
    seen[start] = true;
    while let Some(v) = queue.pop_front() {
        if v == to {
            break;
        }
        for (w, _) in &adj[v] {
            if !seen[*w] {
                seen[*w] = true;
                parent[*w] = Some(v);
                queue.push_back(*w);
            }
        }
    }
    let mut out = vec![to];
    let mut cur = to;
    while let Some(p) = parent[cur] {
        out.push(p);
        cur = p;
    }
    out
}

/// Whether `node` verifies the record in variable `account`: a `pin.verify` of it, or a
/// `code.verify` of a code sent to one of its fields. A reference that names no record at all
/// is another problem (E019, E034), reported there, so it counts here rather than cascade.
fn verifies(flow: &Flow, node: &Node, account: &str) -> bool {
    let of = |var: &str| var == account || !flow.nodes.iter().any(|n| finds(n, var));
    match &node.kind {
        Kind::PinVerify(p) => of(&p.account.value),
        Kind::CodeVerify(v) => match flow.node(&v.from.value).map(|n| &n.kind) {
            Some(Kind::CodeSend(s)) => of(s.to.value.split('.').next().unwrap_or_default()),
            _ => true,
        },
        _ => false,
    }
}

/// Whether `node` binds the record variable `account` (a new identification).
fn finds(node: &Node, account: &str) -> bool {
    matches!(&node.kind, Kind::DirectoryFind(f) if f.into.value == account)
}

fn path_names(flow: &Flow, path: &[usize]) -> String {
    path.iter()
        .map(|&i| flow.nodes[i].id.value.as_str())
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// A shortest path from node `from` to a `code.send` on which the caller makes no choice:
/// menus are not passed through, nor the keys of a comfort loop.
fn unasked_send(flow: &Flow, adj: &[Vec<(usize, EdgeRef<'_>)>], from: usize) -> Option<Vec<usize>> {
    let mut prev: Vec<Option<usize>> = vec![None; flow.nodes.len()];
    let mut seen = vec![false; flow.nodes.len()];
    let mut queue = VecDeque::from([from]);
    seen[from] = true;
    while let Some(v) = queue.pop_front() {
        match &flow.nodes[v].kind {
            Kind::CodeSend(_) => {
                let mut path = vec![v];
                while let Some(p) = prev[*path.last()?] {
                    path.push(p);
                }
                path.reverse();
                return Some(path);
            }
            Kind::Menu(_) => continue,
            _ => {}
        }
        let comfort = matches!(flow.nodes[v].kind, Kind::CodeVerify(_));
        for (w, e) in &adj[v] {
            let choice = comfort && e.label.starts_with("key ");
            if !seen[*w] && !choice {
                seen[*w] = true;
                prev[*w] = Some(v);
                queue.push_back(*w);
            }
        }
    }
    None
}
