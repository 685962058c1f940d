//! The checker: named passes over a loaded flow, each adding diagnostics, none stopping early.
//!
//! Passes: settings, targets, kinds (next / outcomes / per-kind rules), secure sections,
//! variables and templates (secrets, masking), prompts against the locale catalogs, and the
//! graph passes (reachability, cycles without input, unbounded retries, no new code sent by
//! itself after the last wrong one, verification factors) and the enumeration-safe pass
//! (`check/enumeration.rs`).
//! Invariant: the checker reports every problem it can see in one run; a pass never assumes an
//! earlier pass succeeded (a missing target is skipped by later passes, not unwrapped).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::graph::{self, EdgeRef};
use crate::model::*;
use crate::prompts::Catalogs;
use crate::span::{Span, Spanned};
use crate::spec::{self, Handling, Next};
use crate::template::{Expr, Template};

mod contact;
mod enumeration;

use contact::field_ty;

/// Longest a one-time code may live (NIST SP 800-63B 5.1.3.2 as adopted in security.md).
const MAX_CODE_TTL: Duration = Duration::from_secs(600);

/// What a variable holds, for the template checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VarTy {
    /// Digits the caller typed.
    Digits,
    /// A secret the caller typed: never in a template except the one HTTP field meant for it.
    Secret,
    /// A directory record.
    Record,
    /// A ticket (`number`).
    Ticket,
    /// Text (from `set`, HTTP mapping, builtins).
    Text,
    /// A full phone number or email: a record's `mobile` or `email`, `caller.number`, or a
    /// variable that may hold one of them unmasked. It leaves the engine only through `last4`
    /// or `mask`; like a secret, the type follows the value through `set` and `http`.
    Contact,
    /// Bound by a node that failed to load: not checked further.
    Unknown,
}

/// Where a template is used.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Site {
    /// A prompt parameter: spoken, or texted by `notify`.
    Prompt,
    /// Any other template; the string says which field.
    Field(&'static str),
    /// An HTTP body leaf at this JSON pointer.
    HttpBody(String),
}

impl Site {
    /// Where a full contact value would leave the engine: spoken or texted, written into a
    /// ticket, or put in a URL or header (kept by proxies and access logs). `set` values and
    /// `directory.find` values stay inside; an HTTP body goes to the flow's own backend, and
    /// what comes back is typed as contact (`contact_flow`).
    fn exposes_contact(&self) -> bool {
        match self {
            Site::Prompt => true,
            Site::Field(f) => matches!(*f, "summary" | "details" | "url" | "headers"),
            Site::HttpBody(_) => false,
        }
    }

    /// The site in words, for messages.
    fn place(&self) -> String {
        match self {
            Site::Prompt => "a prompt".to_string(),
            Site::Field(f @ ("summary" | "details")) => format!("the ticket's `{f}`"),
            Site::Field(f) => format!("`{f}`"),
            Site::HttpBody(p) => format!("HTTP body field `{p}`"),
        }
    }
}

pub(crate) fn check(flow: &Flow, catalogs: Option<&Catalogs>) -> Vec<Diagnostic> {
    let mut c = Checker {
        flow,
        diags: Vec::new(),
        vars: HashMap::new(),
        contact_from: HashMap::new(),
    };
    c.settings();
    c.targets();
    c.kinds();
    c.secure();
    c.bind_variables();
    c.templates();
    if let Some(catalogs) = catalogs {
        c.prompts(catalogs);
    }
    c.graph();
    c.enumeration_safe();
    c.diags
}

struct Checker<'f> {
    flow: &'f Flow,
    diags: Vec<Diagnostic>,
    vars: HashMap<String, (VarTy, Span)>,
    /// Variables typed `Contact` by a node that set them: how, as a note for the diagnostic.
    contact_from: HashMap<String, String>,
}

impl<'f> Checker<'f> {
    fn d(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::new(code, &self.flow.file, span, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn exists(&self, id: &str) -> bool {
        self.flow.node(id).is_some() || self.flow.broken.iter().any(|b| b == id)
    }

    // ---- settings ------------------------------------------------------------------------

    fn settings(&mut self) {
        let s = &self.flow.settings;
        if s.max_call_seconds.is_none() {
            self.d(Code::NoMaxCallSeconds, s.span, "the flow does not set `settings.max_call_seconds`")
                .notes
                .push("without a maximum, timeouts can keep a call looping for ever; 600 (ten minutes) is a good start".into());
        }
        if !s.locales.iter().any(|l| l.value == s.default_locale.value) {
            let span = s.default_locale.span;
            let msg = format!(
                "default locale `{}` is not in `settings.locales`",
                s.default_locale.value
            );
            self.d(Code::LocaleNotOffered, span, msg);
        }
        let mut seen = HashSet::new();
        for l in &s.locales {
            if !seen.insert(&l.value) {
                self.d(
                    Code::Duplicate,
                    l.span,
                    format!("locale `{}` is listed twice", l.value),
                );
            }
        }
    }

    // ---- targets -------------------------------------------------------------------------

    fn unknown_target(&mut self, target: &Spanned<String>, context: &str) {
        if target.value.is_empty() || self.exists(&target.value) {
            return;
        }
        let ids = self.flow.nodes.iter().map(|n| n.id.value.as_str());
        let hint = did_you_mean(&target.value, ids);
        let d = self.d(
            Code::UnknownTarget,
            target.span,
            format!("{context} goes to `{}`, which is not a node", target.value),
        );
        if let Some(h) = hint {
            d.label = Some(h);
        }
    }

    fn targets(&mut self) {
        let flow = self.flow;
        if flow.start.value.is_empty() {
            // The loader already reported the missing field.
        } else {
            self.unknown_target(&flow.start, "`start`");
        }
        if let Some(e) = &flow.settings.on_error {
            self.unknown_target(e, "`settings.on_error`");
        }
        for node in &flow.nodes {
            for e in graph::edges(flow, node) {
                if !e.implied {
                    self.unknown_target(
                        e.target,
                        &format!("node `{}` ({})", node.id.value, e.label),
                    );
                }
            }
            if let Kind::CodeVerify(v) = &node.kind {
                self.unknown_target(&v.from, &format!("`from` of node `{}`", node.id.value));
            }
        }
    }

    // ---- kinds ---------------------------------------------------------------------------

    fn kinds(&mut self) {
        let flow = self.flow;
        for node in &flow.nodes {
            let Some(spec) = spec::kind(node.kind.name()) else {
                continue;
            };
            let id = &node.id.value;
            match (spec.next, &node.next) {
                (Next::Required, None) => {
                    let d = self.d(
                        Code::MissingField,
                        node.id.span,
                        format!("node `{id}` needs `next`"),
                    );
                    d.notes.push(format!(
                        "`next` is where a `{}` node goes on success",
                        spec.name
                    ));
                }
                (Next::Forbidden, Some(n)) => {
                    let d = self.d(
                        Code::InvalidValue,
                        n.span,
                        format!("`{}` node `{id}` never takes `next`", spec.name),
                    );
                    d.notes.push(match node.kind {
                        Kind::Secure(_) => {
                            "a secure section's exits are the edges of its inner nodes".to_string()
                        }
                        _ => "this node ends the call".to_string(),
                    });
                }
                _ => {}
            }
            // Outcomes.
            for o in spec.outcomes {
                if node.on(o.name).is_some() {
                    continue;
                }
                let input_kind = matches!(node.kind, Kind::Menu(_) | Kind::Gather(_));
                if input_kind && (o.name == "no_input" || o.name == "no_match") {
                    if node.on("exhausted").is_none() {
                        let what = if o.name == "no_input" {
                            "silence"
                        } else {
                            "wrong entries"
                        };
                        let d = self.d(
                            Code::UnhandledInput,
                            node.kind_span,
                            format!("`{}` node `{id}` has no `{}` path", spec.name, o.name),
                        );
                        d.notes.push(format!("add `on: {{ {}: <node> }}` (or `exhausted:` for both) so {what} after the last attempt goes somewhere", o.name));
                    }
                    continue;
                }
                let required = match (o.handling, &node.kind) {
                    (_, Kind::CodeVerify(v)) if o.name == "gave_up" => v.wait.is_some(),
                    (_, Kind::DirectoryFind(_))
                        if flow.settings.enumeration_safe
                            && enumeration::DECOYED.contains(&o.name) =>
                    {
                        false
                    }
                    (Handling::Required, _) => true,
                    (Handling::Fallback, _) => flow.settings.on_error.is_none(),
                    (Handling::Optional, _) => false,
                };
                if !required {
                    continue;
                }
                if matches!(node.kind, Kind::Secure(_)) {
                    let d = self.d(
                        Code::PauseFailedUnhandled,
                        node.kind_span,
                        format!("secure section `{id}` has no `pause_failed` path"),
                    );
                    d.notes.push("if the carrier does not confirm the recording pause, no secret may be collected: send the caller to an agent or another method".into());
                    continue;
                }
                let d = self.d(
                    Code::UnhandledOutcome,
                    node.kind_span,
                    format!("node `{id}` does not say where outcome `{}` goes", o.name),
                );
                d.notes.push(format!("`{}`: {}", o.name, o.doc));
                if o.handling == Handling::Fallback {
                    d.notes.push(
                        "add an `on:` edge, or set `settings.on_error` for every backend failure"
                            .into(),
                    );
                }
            }
            self.kind_rules(node);
        }
    }

    fn kind_rules(&mut self, node: &'f Node) {
        let flow = self.flow;
        let id = &node.id.value;
        match &node.kind {
            Kind::Menu(m) => {
                if node.next.is_none() {
                    for k in m.keys.iter().filter(|k| k.next.is_none()) {
                        self.d(
                            Code::MissingField,
                            k.key.span,
                            format!(
                                "key `{}` of menu `{id}` has no `next`, and the node has none",
                                k.key.value
                            ),
                        );
                    }
                }
                for k in &m.keys {
                    if let Some(l) = &k.locale {
                        self.locale_offered(l);
                    }
                }
                let mut seen = HashSet::new();
                for k in &m.keys {
                    if !seen.insert(k.key.value) {
                        self.d(
                            Code::Duplicate,
                            k.key.span,
                            format!("key `{}` is used twice in menu `{id}`", k.key.value),
                        );
                    }
                }
            }
            Kind::CodeSend(s) => {
                if s.ttl.value > MAX_CODE_TTL {
                    let d = self.d(
                        Code::CodeTtlTooLong,
                        s.ttl.span,
                        format!(
                            "code `ttl` of node `{id}` is {}s, over 10 minutes",
                            s.ttl.value.as_secs()
                        ),
                    );
                    d.label = Some("at most 10m".into());
                    d.notes.push(
                        "NIST SP 800-63B 5.1.3.2: out-of-band secrets expire within 10 minutes"
                            .into(),
                    );
                }
                if s.ttl.value < s.cooldown {
                    self.d(Code::InvalidValue, s.ttl.span, format!("code `ttl` of node `{id}` is shorter than its `cooldown`: a resend could never happen"));
                }
            }
            Kind::CodeVerify(v) => {
                if let Some(from) = flow.node(&v.from.value)
                    && !matches!(from.kind, Kind::CodeSend(_))
                {
                    let msg = format!(
                        "`from` of node `{id}` names `{}`, a `{}` node; it must name a `code.send` node",
                        v.from.value,
                        from.kind.name()
                    );
                    self.d(Code::WrongNodeReference, v.from.span, msg);
                }
                if let Some(w) = &v.wait {
                    let resend = w.keys.iter().any(|(_, a)| *a == WaitKey::Resend);
                    let can_resend = match flow.node(&v.from.value).map(|n| &n.kind) {
                        Some(Kind::CodeSend(s)) => s.resends > 0,
                        _ => true,
                    };
                    if resend
                        && !can_resend
                        && let Some((k, _)) = w.keys.iter().find(|(_, a)| *a == WaitKey::Resend)
                    {
                        self.d(
                            Code::InvalidValue,
                            k.span,
                            format!(
                                "key `{}` offers a resend, but `{}` allows `resends: 0`",
                                k.value, v.from.value
                            ),
                        );
                    }
                }
            }
            Kind::SetSecret(s) => match flow.policy(&s.policy.value) {
                None => {
                    let hint = did_you_mean(
                        &s.policy.value,
                        flow.policies.iter().map(|p| p.name.value.as_str()),
                    );
                    let d = self.d(
                        Code::UnknownPolicy,
                        s.policy.span,
                        format!(
                            "policy `{}` is not defined under `policies:`",
                            s.policy.value
                        ),
                    );
                    d.label = hint;
                }
                Some(p) => {
                    if s.mode == SecretMode::Entered
                        && p.min_length.value < 8
                        && !self
                            .diags
                            .iter()
                            .any(|d| d.code == Code::WeakPinPolicy && d.span == p.min_length.span)
                    {
                        let d = self.d(
                            Code::WeakPinPolicy,
                            p.min_length.span,
                            format!(
                                "policy `{}` lets callers choose a secret of {} characters",
                                p.name.value, p.min_length.value
                            ),
                        );
                        d.label = Some("below 8".into());
                        d.notes.push("NIST SP 800-63B 5.1.1.2: memorized secrets chosen by the subscriber are at least 8 characters".into());
                    }
                    if s.mode == SecretMode::Generated
                        && p.kind == SecretKind::Password
                        && p.min_length.value < 10
                    {
                        self.d(Code::InvalidValue, p.min_length.span, format!("generated passwords need at least 10 characters; policy `{}` allows {}", p.name.value, p.min_length.value));
                    }
                }
            },
            _ => {}
        }
    }

    fn locale_offered(&mut self, l: &Spanned<String>) {
        if !self
            .flow
            .settings
            .locales
            .iter()
            .any(|x| x.value == l.value)
        {
            let hint = did_you_mean(
                &l.value,
                self.flow.settings.locales.iter().map(|x| x.value.as_str()),
            );
            let d = self.d(
                Code::LocaleNotOffered,
                l.span,
                format!("locale `{}` is not in `settings.locales`", l.value),
            );
            d.label = hint;
        }
    }

    // ---- secure sections -----------------------------------------------------------------

    fn secure(&mut self) {
        let flow = self.flow;
        if let Some(start) = flow.node(&flow.start.value)
            && let Some(sec) = &start.section
        {
            self.d(
                Code::SecureBoundary,
                flow.start.span,
                format!("`start` jumps into secure section `{sec}`; start at the section itself"),
            );
        }
        for node in &flow.nodes {
            if let Kind::Secure(s) = &node.kind {
                if s.nodes.is_empty() {
                    self.d(
                        Code::InvalidValue,
                        node.kind_span,
                        format!("secure section `{}` has no nodes", node.id.value),
                    );
                }
                if self.exists(&s.start.value) && !s.nodes.contains(&s.start.value) {
                    self.d(
                        Code::SecureBoundary,
                        s.start.span,
                        format!(
                            "`start` of secure section `{}` must be one of its own nodes",
                            node.id.value
                        ),
                    );
                }
            }
            if let (Kind::Transfer(_), Some(sec)) = (&node.kind, &node.section) {
                let msg = format!(
                    "transfer `{}` is inside secure section `{sec}`",
                    node.id.value
                );
                let d = self.d(Code::SecureBoundary, node.kind_span, msg);
                d.notes.push("a transfer resumes recording; if it fails and the call goes on inside the section, secrets would be recorded. Leave the section first".into());
            }
            if node.kind.collects_secret() && node.section.is_none() {
                let what = match &node.kind {
                    Kind::Gather(_) => "gathers secret digits",
                    Kind::PinVerify(_) => "collects the caller's PIN",
                    _ => "collects a new secret",
                };
                let d = self.d(
                    Code::SecretOutsideSecure,
                    node.kind_span,
                    format!("node `{}` {what} outside a `secure` section", node.id.value),
                );
                d.notes.push("wrap it in `secure: {{ start, nodes }}` so recording is paused while the caller types (PCI DSS 3.3.1, Amazon Connect and Genesys secure flows)".into());
            }
            for e in graph::edges(flow, node) {
                let Some(target) = flow.node(&e.target.value) else {
                    continue;
                };
                let Some(sec) = &target.section else { continue };
                let from_inside = node.section.as_deref() == Some(sec.as_str());
                let from_section_node = node.id.value == *sec && e.label == "start";
                if !from_inside && !from_section_node {
                    let msg = format!(
                        "node `{}` jumps into secure section `{sec}` at `{}`",
                        node.id.value, target.id.value
                    );
                    let d = self.d(Code::SecureBoundary, e.target.span, msg);
                    d.notes.push(format!(
                        "enter through `{sec}` so recording is paused first"
                    ));
                }
            }
        }
    }

    // ---- variables and templates ---------------------------------------------------------

    fn bind_variables(&mut self) {
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

    fn templates(&mut self) {
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

    // ---- prompts -------------------------------------------------------------------------

    fn prompts(&mut self, catalogs: &Catalogs) {
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

    // ---- graph ---------------------------------------------------------------------------

    fn graph(&mut self) {
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

        // Reachability.
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

        // Cycles that never wait for the caller.
        let no_input = |i: usize| !flow.nodes[i].kind.takes_input();
        for comp in graph::cyclic_components(&adj, &no_input) {
            let first = comp[0];
            let hop = adj[first]
                .iter()
                .find(|(t, _)| comp.binary_search(t).is_ok())
                .map_or(first, |(t, _)| *t);
            let cycle = graph::cycle_through(&adj, &comp, first, hop);
            let names = path_names(flow, &cycle);
            let node = &flow.nodes[first];
            let d = self.d(
                Code::InputlessCycle,
                node.id.span,
                format!("the cycle {names} never waits for the caller"),
            );
            d.notes.push("a call could spin here until `max_call_seconds`; put a menu, gather or wait on the loop".into());
        }

        // Failure loops need a bound.
        let all = |_: usize| true;
        for comp in graph::cyclic_components(&adj, &all) {
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
            let cycle = graph::cycle_through(&adj, &comp, u, v);
            let names = path_names(flow, &cycle);
            let from = &flow.nodes[u].id.value;
            let msg = format!(
                "`{}` of node `{from}` leads back into a loop that nothing bounds: {names}",
                e.label
            );
            let d = self.d(Code::UnboundedRetry, e.target.span, msg);
            d.notes.push("add `limit: { visits: 3, then: <node> }` to a node on the loop, e.g. the first prompt".into());
        }

        // A dead code is replaced only when the caller asks for it.
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
            let Some(path) = unasked_send(flow, &adj, to) else {
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

        // Verification factors of the account set, on every path to set_secret.
        let min = flow.settings.min_factors.value;
        let n = flow.nodes.len();
        let plain = factors(flow, &adj, start, None);
        let mut by_account: HashMap<&str, (Vec<u32>, Vec<Option<usize>>)> = HashMap::new();
        for (i, node) in flow.nodes.iter().enumerate() {
            let Kind::SetSecret(x) = &node.kind else {
                continue;
            };
            let account = x.account.value.as_str();
            let (dist, prev) = by_account
                .entry(account)
                .or_insert_with(|| factors(flow, &adj, start, Some(account)));
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
            path.extend(hops(&adj, start, cur));
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
