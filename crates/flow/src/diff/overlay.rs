//! The marks `resetline graph --diff` lays over the drawing of the new flow: added nodes and
//! edges, changed nodes, and the old version's removed nodes and edges drawn as ghosts. A new
//! `start` node is the start marker's edge rewired.
//!
//! Invariant: an edge is compared as (from, label, to), so a rewired edge shows as its old
//! route removed and its new route added, exactly as the text diff reports it.

use std::collections::HashSet;

use super::FlowDiff;
use crate::graph::{self, EdgeKey, Mark, Overlay};
use crate::model::Flow;

/// Every drawn edge of `flow` (target present) with whether it is a failure path.
fn drawn(flow: &Flow) -> Vec<(EdgeKey, bool)> {
    flow.nodes
        .iter()
        .flat_map(|n| {
            graph::edges(flow, n)
                .into_iter()
                .filter(|e| flow.node(&e.target.value).is_some())
                .map(|e| {
                    (
                        (n.id.value.clone(), e.label, e.target.value.clone()),
                        e.failure,
                    )
                })
        })
        .collect()
}

/// The overlay for drawing `new` with the changes `diff` found since `old`.
pub fn overlay(old: &Flow, new: &Flow, diff: &FlowDiff) -> Overlay {
    let mut o = Overlay {
        note: Some(format!(
            "diff: {} ({}) -> {} ({})",
            diff.old.file, diff.old.version, diff.new.file, diff.new.version
        )),
        ..Overlay::default()
    };
    for id in diff.touched() {
        o.nodes.insert(id.to_string(), Mark::Changed);
    }
    for n in &diff.added {
        o.nodes.insert(n.id.clone(), Mark::Added);
    }
    o.ghosts = diff
        .removed
        .iter()
        .filter_map(|r| old.node(&r.id).cloned())
        .collect();
    let (mut before, mut after) = (drawn(old), drawn(new));
    before.push((graph::start_edge(&old.start.value), false));
    after.push((graph::start_edge(&new.start.value), false));
    let had: HashSet<&EdgeKey> = before.iter().map(|(k, _)| k).collect();
    let has: HashSet<&EdgeKey> = after.iter().map(|(k, _)| k).collect();
    for (key, _) in &after {
        if !had.contains(key) {
            o.edges.insert(key.clone(), Mark::Added);
        }
    }
    o.ghost_edges = before
        .iter()
        .filter(|(k, _)| !has.contains(k))
        .cloned()
        .collect();
    o
}
