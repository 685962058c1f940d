//! The prompts pass: with the locale catalogs at hand, every prompt key a flow (or the engine,
//! for the kinds it speaks for) uses exists in every offered locale, with the parameters it
//! takes; and `prompts_of`, every prompt reference a node holds.
//!
//! Invariant: a call never reaches a prompt its locale's catalog lacks.

use crate::diagnostic::{Code, did_you_mean};
use crate::prompts::Catalogs;
use crate::spec;

use crate::model::*;

use super::Checker;

impl<'f> Checker<'f> {
    pub(super) fn prompts(&mut self, catalogs: &Catalogs) {
        let flow = self.flow;
        let dir = catalogs.dir.display().to_string();
        let mut offered = Vec::new();
        for l in &flow.settings.locales {
            if catalogs.get(&l.value).is_some() {
                offered.push(l.value.clone());
            } else {
                let d = self.d(
                    Code::LocaleNotOffered,
                    l.span,
                    format!(
                        "locale `{}` has no catalog `{dir}/{}.yaml`",
                        l.value, l.value
                    ),
                );
                d.notes.push(format!(
                    "catalogs found: {}",
                    catalogs
                        .by_locale
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for node in &flow.nodes {
            for p in prompts_of(&node.kind) {
                for item in &p.items {
                    let missing: Vec<&str> = offered
                        .iter()
                        .filter(|l| {
                            catalogs
                                .get(l)
                                .is_some_and(|c| !c.entries.contains_key(&item.key.value))
                        })
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        let hint = catalogs.get(&offered[0]).and_then(|c| {
                            did_you_mean(&item.key.value, c.entries.keys().map(String::as_str))
                        });
                        let d = self.d(
                            Code::MissingPrompt,
                            item.key.span,
                            format!(
                                "prompt `{}` is missing in {}",
                                item.key.value,
                                missing.join(", ")
                            ),
                        );
                        d.label = hint;
                        d.notes.push(format!(
                            "add it under `prompts:` in {}",
                            missing
                                .iter()
                                .map(|l| format!("{dir}/{l}.yaml"))
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ));
                    }
                    // Parameters: what the catalog text needs vs what the flow passes.
                    let passed: Vec<&str> =
                        item.with.iter().map(|(k, _)| k.value.as_str()).collect();
                    let mut reported = false;
                    for l in &offered {
                        let Some(entry) =
                            catalogs.get(l).and_then(|c| c.entries.get(&item.key.value))
                        else {
                            continue;
                        };
                        let needed = entry.params();
                        for n in &needed {
                            if !passed.contains(&n.as_str()) && !reported {
                                let d = self.d(Code::PromptParameter, item.key.span, format!("prompt `{}` in {l} uses `{{{{ {n} }}}}`, but node `{}` passes no `{n}`", item.key.value, node.id.value));
                                d.notes.push(format!("write `say: {{ prompt: {}, with: {{ {n}: \"{{{{ ... }}}}\" }} }}`", item.key.value));
                                reported = true;
                            }
                        }
                        for (k, _) in &item.with {
                            if !needed.contains(&k.value) && !reported {
                                self.d(
                                    Code::PromptParameter,
                                    k.span,
                                    format!(
                                        "prompt `{}` in {l} never uses `{}`",
                                        item.key.value, k.value
                                    ),
                                );
                                reported = true;
                            }
                        }
                    }
                }
            }
            if let Some((kind, keys)) = spec::KIND_PROMPTS
                .iter()
                .find(|(k, _)| *k == node.kind.name())
            {
                for l in &offered {
                    let Some(c) = catalogs.get(l) else { continue };
                    let missing: Vec<&str> = keys
                        .iter()
                        .copied()
                        .filter(|k| !c.entries.contains_key(*k))
                        .collect();
                    if !missing.is_empty() {
                        let d = self.d(
                            Code::MissingPrompt,
                            node.kind_span,
                            format!(
                                "`{kind}` needs prompts missing in {l}: {}",
                                missing.join(", ")
                            ),
                        );
                        d.notes.push(format!("the engine speaks these itself for `{kind}` nodes; add them to {dir}/{l}.yaml"));
                    }
                }
            }
        }
        for l in &offered {
            let Some(c) = catalogs.get(l) else { continue };
            let missing: Vec<&str> = spec::ENGINE_PROMPTS
                .iter()
                .copied()
                .filter(|k| !c.entries.contains_key(*k))
                .collect();
            if !missing.is_empty() {
                let span = flow
                    .settings
                    .locales
                    .iter()
                    .find(|x| x.value == *l)
                    .map_or(flow.settings.span, |x| x.span);
                let d = self.d(
                    Code::MissingPrompt,
                    span,
                    format!(
                        "prompts every flow needs are missing in {l}: {}",
                        missing.join(", ")
                    ),
                );
                d.notes.push(format!("add them to {dir}/{l}.yaml"));
            }
        }
    }
}

/// Every prompt reference a node kind holds.
pub(crate) fn prompts_of(kind: &Kind) -> Vec<&Prompt> {
    let mut out: Vec<&Prompt> = Vec::new();
    match kind {
        Kind::Say(p) => out.push(p),
        Kind::Menu(m) => {
            out.push(&m.say);
            out.extend(m.no_input_say.iter());
            out.extend(m.no_match_say.iter());
        }
        Kind::Gather(g) => {
            out.push(&g.say);
            out.extend(g.no_input_say.iter());
            out.extend(g.no_match_say.iter());
        }
        Kind::CodeSend(s) => out.extend(s.say.iter()),
        Kind::CodeVerify(v) => {
            out.push(&v.say);
            if let Some(w) = &v.wait {
                out.push(&w.hold);
                out.push(&w.menu);
            }
        }
        Kind::PinVerify(p) => out.push(&p.say),
        Kind::SetSecret(s) => {
            out.extend(s.say.iter());
            out.extend(s.confirm.iter());
        }
        Kind::Ticket(t) => out.extend(t.say.iter()),
        Kind::Notify(n) => out.push(&n.message),
        Kind::Transfer(t) => out.extend(t.say.iter()),
        Kind::Hangup(h) => out.extend(h.say.iter()),
        Kind::Branch(_)
        | Kind::Set(_)
        | Kind::DirectoryFind(_)
        | Kind::Secure(_)
        | Kind::Http(_) => {}
    }
    out
}
