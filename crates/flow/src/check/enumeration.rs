//! The enumeration-safe pass (E031): with `settings.enumeration_safe`, every ID a caller types
//! takes the same prompts until a verification fails (security.md check 1).
//!
//! The engine sends unknown, locked, disabled and not-allowed IDs on to `next` of
//! `directory.find` with a decoy record that no `pin.verify` accepts (a dummy check of the
//! same cost). This pass makes the flow keep that promise: a `directory.find` has no
//! `not_found` / `locked` / `disabled` / `not_allowed` edges (they are never taken), and
//! between its `next` and the first `pin.verify` of its record no node can behave
//! differently for a decoy: none reads the record (templates, branches), sends or notifies,
//! opens a ticket, calls HTTP, sets a secret or verifies a code. Invariant: a flow that
//! checks clean here answers a decoy and an active ID alike up to that `pin.verify`'s result.

use std::collections::VecDeque;

use crate::diagnostic::Code;
use crate::graph;
use crate::model::{Kind, Node};
use crate::span::{Span, Spanned};
use crate::template::Template;

use super::{Checker, prompts_of};

/// The `directory.find` outcomes enumeration-safe mode never takes.
pub(crate) const DECOYED: [&str; 4] = ["not_found", "locked", "disabled", "not_allowed"];

impl Checker<'_> {
    pub(super) fn enumeration_safe(&mut self) {
        let flow = self.flow;
        if !flow.settings.enumeration_safe {
            return;
        }
        for node in &flow.nodes {
            let Kind::DirectoryFind(_) = &node.kind else {
                continue;
            };
            for outcome in DECOYED {
                if let Some(edge) = node.on(outcome) {
                    let msg = format!(
                        "in enumeration-safe mode `{outcome}` is never taken: every ID goes on to `next` of `{}` and fails at its first `pin.verify`; remove `on.{outcome}`",
                        node.id.value
                    );
                    let d = self.d(Code::EnumerationLeak, edge.span, msg);
                    d.notes.push("a caller must not be able to tell an unknown, locked or disabled ID from an active one (OWASP Forgot Password cheat sheet)".into());
                }
            }
        }
        if flow.broken.is_empty() {
            self.before_first_pin_check();
        }
    }

    /// Walks from each `directory.find`'s `next` to the first `pin.verify` of its record.
    fn before_first_pin_check(&mut self) {
        let flow = self.flow;
        let adj = graph::adjacency(flow);
        for node in &flow.nodes {
            let (Kind::DirectoryFind(f), Some(next)) = (&node.kind, &node.next) else {
                continue;
            };
            let Some(&first) = flow.index.get(&next.value) else {
                continue;
            };
            let record = f.into.value.as_str();
            let mut seen = vec![false; flow.nodes.len()];
            let mut queue = VecDeque::from([first]);
            seen[first] = true;
            while let Some(i) = queue.pop_front() {
                let n = &flow.nodes[i];
                let verifies = matches!(&n.kind, Kind::PinVerify(p) if p.account.value == record);
                let differs = matches!(
                    n.kind,
                    Kind::CodeSend(_)
                        | Kind::CodeVerify(_)
                        | Kind::Notify(_)
                        | Kind::Ticket(_)
                        | Kind::Http(_)
                        | Kind::SetSecret(_)
                        | Kind::PinVerify(_)
                );
                if differs && !verifies {
                    let msg = format!(
                        "`{}` node `{}` runs between `{}` and the first `pin.verify` of `{record}`; in enumeration-safe mode it would tell an unknown ID from an active one",
                        n.kind.name(),
                        n.id.value,
                        node.id.value
                    );
                    let d = self.d(Code::EnumerationLeak, n.kind_span, msg);
                    d.notes.push(format!("check the current PIN first (`pin.verify: {{ account: {record} }}`); every ID hears the same prompts until it fails"));
                    continue;
                }
                if let Some(span) = reads(n, record) {
                    let msg = format!(
                        "node `{}` uses `{record}` before `pin.verify` has checked it; in enumeration-safe mode an unknown ID has no such record",
                        n.id.value
                    );
                    self.d(Code::EnumerationLeak, span, msg);
                }
                if verifies || matches!(n.kind, Kind::DirectoryFind(_)) {
                    // The verification decides from here; another lookup is checked on its own.
                    continue;
                }
                for (t, _) in &adj[i] {
                    if !seen[*t] {
                        seen[*t] = true;
                        queue.push_back(*t);
                    }
                }
            }
        }
    }
}

/// Where `node` reads variable `root` (its first use), if it does.
fn reads(node: &Node, root: &str) -> Option<Span> {
    let uses = |t: &Spanned<Template>| {
        t.value
            .exprs()
            .any(|e| e.path.first().is_some_and(|p| p == root))
    };
    let prompt_use = prompts_of(&node.kind)
        .into_iter()
        .flat_map(|p| &p.items)
        .flat_map(|i| &i.with)
        .find(|(_, t)| uses(t))
        .map(|(_, t)| t.span);
    if prompt_use.is_some() {
        return prompt_use;
    }
    match &node.kind {
        Kind::Set(vars) => vars.iter().find(|(_, t)| uses(t)).map(|(_, t)| t.span),
        Kind::Menu(m) => m
            .keys
            .iter()
            .flat_map(|k| &k.set)
            .find(|(_, t)| uses(t))
            .map(|(_, t)| t.span),
        Kind::Branch(cases) => cases
            .iter()
            .find(|c| c.var.value.split('.').next() == Some(root))
            .map(|c| c.var.span),
        Kind::DirectoryFind(f) if uses(&f.value) => Some(f.value.span),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::diagnostic::Code;

    /// The E031 messages of an enumeration-safe flow whose lookup goes on to `between`, then
    /// to `check` (a `pin.verify` of `user`) and, when that fails, to `after`.
    fn leaks(lookup_on: &str, between: &str, after: &str) -> Vec<String> {
        let text = format!(
            r#"flow: f
start: identify
settings: {{ max_call_seconds: 300, locales: [en-US], on_error: agent, enumeration_safe: true }}
nodes:
  identify:
    gather: {{ say: enter_employee_id, digits: 6..8, into: employee_id }}
    next: lookup
    on: {{ exhausted: agent }}
  lookup:
    directory.find: {{ by: employee_id, value: "{{{{ employee_id }}}}" }}
    next: between
{lookup_on}
  between:
{between}
  secure_check:
    secure:
      start: check
      nodes:
        check:
          pin.verify: {{ say: enter_current_pin, account: user }}
          next: bye
          on: {{ failed: after, locked_out: agent }}
    on: {{ pause_failed: agent }}
  after:
{after}
  bye:
    hangup: {{ say: reset_success }}
  agent:
    transfer: {{ say: transferring, queue: service-desk }}
"#
        );
        crate::compile("f.yaml", &text, None)
            .diagnostics
            .into_iter()
            .filter(|d| d.code == Code::EnumerationLeak)
            .map(|d| d.message)
            .collect()
    }

    const SAY: &str = "    say: welcome_pin_only\n    next: secure_check";

    #[test]
    fn prompts_before_the_pin_check_and_anything_after_its_failure_are_fine() {
        let after = "    code.send: { channel: sms, to: user.mobile }\n    next: agent\n    on: { undeliverable: agent, rate_limited: agent }";
        assert_eq!(leaks("", SAY, after), Vec::<String>::new());
    }

    #[test]
    fn outcomes_a_decoy_never_takes_are_refused() {
        let got = leaks(
            "    on: { not_found: agent, disabled: agent }",
            SAY,
            "    say: cannot_help\n    next: agent",
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("`not_found` is never taken"), "{got:?}");
    }

    #[test]
    fn the_record_or_a_telling_node_before_the_pin_check_is_refused() {
        let named = "    say: { prompt: welcome_pin_only, with: { name: \"{{ user.name }}\" } }\n    next: secure_check";
        let got = leaks("", named, "    say: cannot_help\n    next: agent");
        assert!(
            got.iter()
                .any(|m| m.contains("uses `user` before `pin.verify`")),
            "{got:?}"
        );
        let branch = "    branch:\n      - { when: { var: user.state, equals: locked }, next: agent }\n    next: secure_check";
        let got = leaks("", branch, "    say: cannot_help\n    next: agent");
        assert!(got.iter().any(|m| m.contains("uses `user`")), "{got:?}");
        let ticket = "    ticket: { summary: \"PIN reset\" }\n    next: secure_check\n    on: { error: agent }";
        let got = leaks("", ticket, "    say: cannot_help\n    next: agent");
        assert!(
            got.iter()
                .any(|m| m.contains("`ticket` node `between` runs between `lookup`")),
            "{got:?}"
        );
    }
}
