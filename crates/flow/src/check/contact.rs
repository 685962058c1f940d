//! Contact values as a type: which variables may hold a full phone number or email, and the
//! diagnostics where one would leave the engine unmasked (E025, E037).
//!
//! Invariant: like a secret, the type follows the value. A record's `mobile` / `email` and
//! `caller.number` are contact values; so is every variable a `set` (or menu `set`) fills from
//! one without `last4` / `mask`, and every `http` answer whose request carried one or whose
//! pointer names contact data. Types only rise, so the fixed point is reached; every prompt,
//! ticket, URL or header that reads a contact value unmasked is reported.

use crate::diagnostic::Code;
use crate::model::{Kind, Node};
use crate::span::{Span, Spanned};
use crate::spec;
use crate::template::{Expr, Template};

use super::{Checker, Site, VarTy};

impl Checker<'_> {
    /// Types as `Contact` every variable that may hold a full phone number or email, to a fixed
    /// point: a `set` (or menu `set`) value that reads one unmasked, and an `http` answer when
    /// the request carried one (the answer may echo it) or the answer's pointer names contact
    /// data. Types only rise (text or digits to contact), so the loop ends.
    pub(super) fn contact_flow(&mut self) {
        let flow = self.flow;
        loop {
            let mut rising: Vec<(&Spanned<String>, String)> = Vec::new();
            for node in &flow.nodes {
                let id = node.id.value.as_str();
                let sets: Vec<&(Spanned<String>, Spanned<Template>)> = match &node.kind {
                    Kind::Set(vars) => vars.iter().collect(),
                    Kind::Menu(m) => m.keys.iter().flat_map(|k| &k.set).collect(),
                    _ => Vec::new(),
                };
                for (name, t) in sets {
                    if self.carries_contact(&t.value) {
                        let why = format!(
                            "`{}` takes a full contact value in node `{id}`; mask it there or here",
                            name.value
                        );
                        rising.push((name, why));
                    }
                }
                if let Kind::Http(h) = &node.kind {
                    let request = std::iter::once(&h.url)
                        .chain(h.headers.iter().map(|(_, t)| t))
                        .chain(
                            h.body
                                .iter()
                                .flat_map(|b| b.leaves().into_iter().map(|(_, t)| t)),
                        )
                        .any(|t| self.carries_contact(&t.value));
                    for (name, pointer) in &h.map {
                        let why = if request {
                            format!(
                                "`{}` is an answer of node `{id}`, whose request carries a full contact value the answer may echo; mask it in the request or here",
                                name.value
                            )
                        } else if names_contact(pointer) {
                            format!(
                                "`{}` is an answer of node `{id}` at `{pointer}`, which names contact data",
                                name.value
                            )
                        } else {
                            continue;
                        };
                        rising.push((name, why));
                    }
                }
            }
            let mut changed = false;
            for (name, why) in rising {
                if let Some(entry) = self.vars.get_mut(&name.value)
                    && matches!(entry.0, VarTy::Text | VarTy::Digits)
                {
                    *entry = (VarTy::Contact, name.span);
                    self.contact_from.insert(name.value.clone(), why);
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// Whether the template reads a full contact value without `last4` or `mask`.
    fn carries_contact(&self, t: &Template) -> bool {
        t.exprs().any(|e| {
            !e.filters.iter().any(|f| f.masks()) && self.peek(&e.path) == Some(VarTy::Contact)
        })
    }

    /// The type of a path without reporting anything (`None` when it does not resolve).
    fn peek(&self, path: &[String]) -> Option<VarTy> {
        let root = path.first()?;
        let (ty, _) = self.vars.get(root).copied()?;
        Some(match path.get(1) {
            None => ty,
            Some(field) => field_ty(root, ty, field),
        })
    }
    /// Reports a full contact value at a site where it would leave the engine: E025 for a
    /// record field or the caller ID in a prompt (the original check), E037 for everything the
    /// type flow adds (through a variable, or into a ticket, URL or header).
    pub(super) fn contact_leak(&mut self, node: &Node, site: &Site, e: &Expr, span: Span) {
        let dotted = e.dotted();
        let from = self.contact_from.get(&e.path[0]).cloned();
        if from.is_none() && *site == Site::Prompt {
            let d = self.d(
                Code::UnmaskedContact,
                span,
                format!(
                    "`{dotted}` would be spoken or texted in full (node `{}`)",
                    node.id.value
                ),
            );
            d.label = Some("add `| last4` or `| mask`".into());
            d.notes.push("say \"the number ending in {{ user.mobile | last4 | digits }}\"; full numbers never leave the engine".into());
            return;
        }
        let holds = if from.is_some() { "may hold" } else { "is" };
        let d = self.d(
            Code::ContactLeak,
            span,
            format!(
                "`{dotted}` {holds} a full phone number or email and would reach {} in node `{}`",
                site.place(),
                node.id.value
            ),
        );
        d.label = Some("add `| last4` or `| mask`".into());
        if let Some(why) = from {
            d.notes.push(why);
        }
        d.notes.push(if *site == Site::Prompt {
            "full numbers and addresses are never spoken or texted, whichever variable carries them".into()
        } else {
            "tickets, URLs and headers are kept by other systems (ticket history, proxy and access logs); full numbers and addresses never leave the engine".into()
        });
    }
}

/// The type of field `field` of variable `root` of type `ty`: contact fields of a record and
/// the caller ID are `Contact`; a record's `id` is text.
pub(super) fn field_ty(root: &str, ty: VarTy, field: &str) -> VarTy {
    let contact = (ty == VarTy::Record && spec::CONTACT_FIELDS.contains(&field))
        || (root == "caller" && field == "number");
    match ty {
        _ if contact => VarTy::Contact,
        VarTy::Record if field == "id" => VarTy::Text,
        _ => ty,
    }
}

/// Whether an `http` answer's JSON pointer names contact data (its last segment mentions a
/// phone, mobile, email or MSISDN): the backend may hand back a full number or address.
fn names_contact(pointer: &str) -> bool {
    let last = pointer
        .rsplit('/')
        .next()
        .unwrap_or(pointer)
        .to_ascii_lowercase();
    ["phone", "mobile", "email", "msisdn"]
        .iter()
        .any(|w| last.contains(w))
}
