//! The variables and templates pass: which node binds each variable and its type (digits,
//! secret, record, contact, ...), and every template read against them: unknown variables,
//! secrets outside the one place meant for them, unmasked contact values, and codes and
//! notices sent anywhere but a directory record's own phone or email.
//!
//! Invariant: a variable bound by a node that failed to load is `Unknown` and never reported
//! again; a secret typed by the caller is readable only inside its secure section.

use std::collections::HashMap;

use crate::diagnostic::{Code, did_you_mean};
use crate::span::{Span, Spanned};
use crate::spec;
use crate::template::{Expr, Template};

use crate::model::*;

use super::contact::field_ty;
use super::{Checker, Site, VarTy, prompts_of};

impl<'f> Checker<'f> {
    pub(super) fn bind_variables(&mut self) {
        let flow = self.flow;
        let bind =
            |vars: &mut HashMap<String, (VarTy, Span)>, name: &Spanned<String>, ty: VarTy| {
                vars.entry(name.value.clone()).or_insert((ty, name.span));
            };
        for node in &flow.nodes {
            match &node.kind {
                Kind::Gather(g) => bind(
                    &mut self.vars,
                    &g.into,
                    if g.secret {
                        VarTy::Secret
                    } else {
                        VarTy::Digits
                    },
                ),
                Kind::DirectoryFind(f) => bind(&mut self.vars, &f.into, VarTy::Record),
                Kind::Ticket(t) => bind(&mut self.vars, &t.into, VarTy::Ticket),
                Kind::Set(vars) => vars
                    .iter()
                    .for_each(|(n, _)| bind(&mut self.vars, n, VarTy::Text)),
                Kind::Http(h) => h
                    .map
                    .iter()
                    .for_each(|(n, _)| bind(&mut self.vars, n, VarTy::Text)),
                Kind::Menu(m) => m
                    .keys
                    .iter()
                    .flat_map(|k| &k.set)
                    .for_each(|(n, _)| bind(&mut self.vars, n, VarTy::Text)),
                _ => {}
            }
        }
        // A secret variable bound twice with different types is ambiguous: report it.
        for node in &flow.nodes {
            if let Kind::Gather(g) = &node.kind {
                let want = if g.secret {
                    VarTy::Secret
                } else {
                    VarTy::Digits
                };
                if let Some((ty, span)) = self.vars.get(&g.into.value).copied()
                    && ty != want
                    && span != g.into.span
                {
                    self.d(Code::InvalidValue, g.into.span, format!("variable `{}` is bound elsewhere with another type; secret and non-secret values never share a name", g.into.value));
                }
            }
        }
        for var in &flow.loose_vars {
            self.vars
                .entry(var.clone())
                .or_insert((VarTy::Unknown, Span::default()));
        }
        for builtin in spec::BUILTINS {
            self.vars
                .insert(builtin.0.to_string(), (VarTy::Text, Span::default()));
        }
        self.contact_flow();
    }

    /// The type of a path, reporting unknown variables and fields. `None` when unknown.
    fn resolve(&mut self, path: &[String], span: Span) -> Option<VarTy> {
        let root = path.first()?;
        let Some((ty, _)) = self.vars.get(root).copied() else {
            if !self.flow.broken.is_empty() {
                // A node that failed to load may have set it; its error is already reported.
                return None;
            }
            let names: Vec<String> = self.vars.keys().cloned().collect();
            let hint = did_you_mean(root, names.iter().map(String::as_str));
            let d = self.d(
                Code::UnknownVariable,
                span,
                format!("no node sets a variable `{root}`"),
            );
            d.label = hint;
            return None;
        };
        if ty == VarTy::Unknown {
            return None;
        }
        let fields: Option<&[&str]> = match (ty, spec::BUILTINS.iter().find(|b| b.0 == root)) {
            (_, Some(b)) => Some(b.1),
            (VarTy::Record, _) => Some(spec::RECORD_FIELDS),
            (VarTy::Ticket, _) => Some(&["number"]),
            _ => None,
        };
        match (fields, path.get(1), path.len()) {
            (Some(_), None, _) => {
                let list = fields.map(|f| f.join(", ")).unwrap_or_default();
                self.d(
                    Code::UnknownVariable,
                    span,
                    format!("`{root}` has fields; name one of: {list}"),
                );
                None
            }
            (Some(f), Some(field), 2) if f.contains(&field.as_str()) => {
                Some(field_ty(root, ty, field))
            }
            (Some(f), Some(field), _) => {
                let hint = did_you_mean(field, f.iter().copied());
                let d = self.d(
                    Code::UnknownVariable,
                    span,
                    format!("`{root}` has no field `{}`", path[1..].join(".")),
                );
                d.label = hint.or_else(|| Some(format!("fields: {}", f.join(", "))));
                None
            }
            (None, Some(_), _) => {
                self.d(
                    Code::UnknownVariable,
                    span,
                    format!(
                        "`{root}` is a plain value; it has no field `{}`",
                        path[1..].join(".")
                    ),
                );
                None
            }
            (None, None, _) => Some(ty),
        }
    }

    fn expr_span(t: &Spanned<Template>, e: &Expr) -> Span {
        // Map the expression's character offset into the file when the template sits on one
        // line; otherwise point at the whole value.
        let s = t.span;
        if s.start.line != s.end.line {
            return s;
        }
        let text_len: usize = t
            .value
            .parts
            .iter()
            .map(|p| match p {
                crate::template::Part::Text(x) => x.chars().count(),
                crate::template::Part::Expr(x) => x.len,
            })
            .sum();
        let width = s.end.col.saturating_sub(s.start.col);
        let lead = if width == text_len {
            0
        } else if width == text_len + 2 {
            1
        } else {
            return s;
        };
        let col = s.start.col + lead + e.offset;
        Span::new(
            crate::span::Pos {
                line: s.start.line,
                col,
            },
            crate::span::Pos {
                line: s.start.line,
                col: col + e.len,
            },
        )
    }

    fn template(&mut self, node: &Node, site: Site, t: &Spanned<Template>) {
        for e in t.value.exprs() {
            let span = Self::expr_span(t, e);
            let Some(ty) = self.resolve(&e.path, span) else {
                continue;
            };
            let dotted = e.dotted();
            if ty == VarTy::Secret {
                let allowed = match (&site, &node.kind) {
                    (Site::HttpBody(p), Kind::Http(h)) => h.secrets.iter().any(|s| s.value == *p),
                    _ => false,
                };
                if allowed {
                    self.secret_section(node, &e.path[0], span);
                } else {
                    let place = match &site {
                        Site::HttpBody(_) => {
                            format!("{}, which `secrets:` does not list", site.place())
                        }
                        _ => site.place(),
                    };
                    let d = self.d(
                        Code::SecretLeak,
                        span,
                        format!(
                            "secret `{dotted}` would reach {place} in node `{}`",
                            node.id.value
                        ),
                    );
                    d.label = Some("secret".into());
                    d.notes.push("secret values go only to the one HTTP body field listed under `secrets:`, never to prompts, URLs, headers, tickets or variables".into());
                }
                continue;
            }
            if ty == VarTy::Contact
                && site.exposes_contact()
                && !e.filters.iter().any(|f| f.masks())
            {
                self.contact_leak(node, &site, e, span);
            }
        }
    }

    /// A secret leaves only from the secure section whose `gather` collected it: outside it,
    /// recording runs again and the section's guarantees no longer hold.
    fn secret_section(&mut self, node: &Node, var: &str, span: Span) {
        let flow = self.flow;
        let collected = flow.nodes.iter().find_map(|g| match &g.kind {
            Kind::Gather(x) if x.secret && x.into.value == var && g.section != node.section => {
                g.section.clone()
            }
            _ => None,
        });
        let Some(section) = collected else { return };
        let msg = match &node.section {
            None => format!(
                "secret `{var}` is collected in secure section `{section}`, and node `{}` sends it from outside any section",
                node.id.value
            ),
            Some(other) => format!(
                "secret `{var}` is collected in secure section `{section}`, and node `{}` sends it from section `{other}`",
                node.id.value
            ),
        };
        let d = self.d(Code::SecretLeavesSection, span, msg);
        d.label = Some("secret".into());
        d.notes.push(format!("a secret may leave only from the section that collected it: move node `{}` into `{section}`, right after the `gather`", node.id.value));
    }

    pub(super) fn templates(&mut self) {
        let flow = self.flow;
        for node in &flow.nodes {
            for p in prompts_of(&node.kind) {
                for item in &p.items {
                    for (_, t) in &item.with {
                        self.template(node, Site::Prompt, t);
                    }
                }
            }
            match &node.kind {
                Kind::Set(vars) => vars
                    .iter()
                    .for_each(|(_, t)| self.template(node, Site::Field("set"), t)),
                Kind::Menu(m) => m
                    .keys
                    .iter()
                    .flat_map(|k| &k.set)
                    .for_each(|(_, t)| self.template(node, Site::Field("set"), t)),
                Kind::DirectoryFind(f) => self.template(node, Site::Field("value"), &f.value),
                Kind::Ticket(t) => {
                    self.template(node, Site::Field("summary"), &t.summary);
                    if let Some(d) = &t.details {
                        self.template(node, Site::Field("details"), d);
                    }
                }
                Kind::Http(h) => {
                    self.template(node, Site::Field("url"), &h.url);
                    h.headers
                        .iter()
                        .for_each(|(_, t)| self.template(node, Site::Field("headers"), t));
                    if let Some(body) = &h.body {
                        for (pointer, t) in body.leaves() {
                            self.template(node, Site::HttpBody(pointer), t);
                        }
                    }
                    for s in &h.secrets {
                        let found = h
                            .body
                            .as_ref()
                            .is_some_and(|b| b.leaves().iter().any(|(p, _)| *p == s.value));
                        if !found {
                            self.d(
                                Code::InvalidValue,
                                s.span,
                                format!(
                                    "`secrets` names `{}`, which is not a string field of the body",
                                    s.value
                                ),
                            );
                        }
                    }
                }
                Kind::Branch(cases) => {
                    for c in cases {
                        let path: Vec<String> =
                            c.var.value.split('.').map(str::to_string).collect();
                        if self.resolve(&path, c.var.span) == Some(VarTy::Secret) {
                            let d = self.d(
                                Code::SecretLeak,
                                c.var.span,
                                format!(
                                    "branch on secret `{}` in node `{}`",
                                    c.var.value, node.id.value
                                ),
                            );
                            d.notes.push("comparing a secret in the flow leaks it through the path taken; verify secrets with `pin.verify` or a backend".into());
                        }
                    }
                }
                _ => {}
            }
            // Destinations and accounts must be directory records.
            let dests: Vec<(&Spanned<String>, Channel)> = match &node.kind {
                Kind::CodeSend(s) => vec![(&s.to, s.channel)],
                Kind::Notify(n) => vec![(&n.to, n.channel)],
                Kind::SetSecret(s) => s.deliver.iter().map(|(c, t)| (t, *c)).collect(),
                _ => Vec::new(),
            };
            for (to, channel) in dests {
                self.destination(node, to, channel);
            }
            let accounts: Vec<&Spanned<String>> = match &node.kind {
                Kind::PinVerify(p) => vec![&p.account],
                Kind::SetSecret(s) => vec![&s.account],
                _ => Vec::new(),
            };
            for a in accounts {
                match self.vars.get(&a.value).copied() {
                    Some((VarTy::Record, _)) => {}
                    Some(_) => {
                        self.d(Code::WrongNodeReference, a.span, format!("`account` of node `{}` must be a directory record set by `directory.find`, and `{}` is not", node.id.value, a.value));
                    }
                    None => {
                        let path = vec![a.value.clone()];
                        let _ = self.resolve(&path, a.span);
                    }
                }
            }
        }
    }

    fn destination(&mut self, node: &Node, to: &Spanned<String>, channel: Channel) {
        let path: Vec<&str> = to.value.split('.').collect();
        let root_ty = self.vars.get(path[0]).map(|(t, _)| *t);
        let want = match channel {
            Channel::Sms => "mobile",
            Channel::Email => "email",
        };
        let is_record_field = root_ty == Some(VarTy::Record)
            && path.len() == 2
            && spec::BUILTINS.iter().all(|b| b.0 != path[0]);
        if !is_record_field {
            let why = match root_ty {
                Some(VarTy::Digits | VarTy::Secret) => "typed by the caller",
                _ if path[0] == "caller" => "the caller ID, which is a claim, not a record",
                None => "not set by any node",
                _ => "not a directory record",
            };
            let d = self.d(
                Code::CallerTypedDestination,
                to.span,
                format!("node `{}` sends to `{}`, {why}", node.id.value, to.value),
            );
            d.label = Some(format!("use a record field such as `user.{want}`"));
            d.notes.push("codes and notices go only to the phone or email of record (NIST SP 800-63B 5.1.3.3, ASVS 6.6.1)".into());
            return;
        }
        if path[1] != want {
            let d = self.d(
                Code::CallerTypedDestination,
                to.span,
                format!(
                    "{} goes to `{}.{want}`, not `{}`",
                    if channel == Channel::Sms {
                        "an SMS"
                    } else {
                        "an email"
                    },
                    path[0],
                    to.value
                ),
            );
            d.label = Some(format!("`{}.{want}`", path[0]));
        }
    }
}
