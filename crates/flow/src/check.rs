//! The checker: named passes over a loaded flow, each adding diagnostics, none stopping early.
//!
//! Passes, in the order they run: settings, targets, kinds (next / outcomes / per-kind rules)
//! and secure sections (here); variables and templates, secrets and masking
//! (`check/templates.rs`, contact values in `check/contact.rs`); prompts against the locale
//! catalogs (`check/prompts.rs`); the graph passes (`check/paths.rs`: reachability, cycles
//! without input, unbounded retries, no new code sent by itself after the last wrong one,
//! verification factors); and the enumeration-safe pass (`check/enumeration.rs`).
//! Invariant: the checker reports every problem it can see in one run; a pass never assumes an
//! earlier pass succeeded (a missing target is skipped by later passes, not unwrapped).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::graph;
use crate::model::*;
use crate::prompts::Catalogs;
use crate::span::{Span, Spanned};
use crate::spec::{self, Handling, KindSpec, Next};

mod contact;
mod enumeration;
mod paths;
mod prompts;
mod templates;

pub(crate) use prompts::prompts_of;

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
        for (test, id) in &flow.test_nodes {
            self.unknown_target(id, &format!("test `{test}` expects that a call"));
        }
    }

    // ---- kinds ---------------------------------------------------------------------------

    fn kinds(&mut self) {
        let flow = self.flow;
        for node in &flow.nodes {
            let Some(spec) = spec::kind(node.kind.name()) else {
                continue;
            };
            self.next_rule(node, spec);
            self.outcomes(node, spec);
            self.kind_rules(node);
        }
    }

    /// `next:` where the kind `spec` needs it, and never where it forbids it.
    fn next_rule(&mut self, node: &Node, spec: &KindSpec) {
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
    }

    /// An `on:` edge for every outcome of the kind `spec` that needs one (input kinds: one for
    /// silence and wrong entries, or `exhausted`).
    fn outcomes(&mut self, node: &Node, spec: &KindSpec) {
        let flow = self.flow;
        let id = &node.id.value;
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
                    if flow.settings.enumeration_safe && enumeration::DECOYED.contains(&o.name) =>
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
    }

    /// The rules of one kind that the vocabulary table cannot say.
    fn kind_rules(&mut self, node: &'f Node) {
        match &node.kind {
            Kind::Menu(m) => self.menu_rules(node, m),
            Kind::CodeSend(s) => self.code_send_rules(node, s),
            Kind::CodeVerify(v) => self.code_verify_rules(node, v),
            Kind::SetSecret(s) => self.set_secret_rules(s),
            _ => {}
        }
    }

    /// A menu: every key goes somewhere, in an offered locale, and no key is used twice.
    fn menu_rules(&mut self, node: &Node, m: &Menu) {
        let id = &node.id.value;
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

    /// A `code.send`: a code lives at most 10 minutes, and longer than its resend cooldown.
    fn code_send_rules(&mut self, node: &Node, s: &CodeSend) {
        let id = &node.id.value;
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
                "NIST SP 800-63B 5.1.3.2: out-of-band secrets expire within 10 minutes".into(),
            );
        }
        if s.ttl.value < s.cooldown {
            self.d(Code::InvalidValue, s.ttl.span, format!("code `ttl` of node `{id}` is shorter than its `cooldown`: a resend could never happen"));
        }
    }

    /// A `code.verify`: `from` names a `code.send`, which allows the resends its keys offer.
    fn code_verify_rules(&mut self, node: &Node, v: &CodeVerify) {
        let flow = self.flow;
        let id = &node.id.value;
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

    /// A `set_secret`: its policy exists, and is strong enough for the mode.
    fn set_secret_rules(&mut self, s: &SetSecret) {
        let flow = self.flow;
        match flow.policy(&s.policy.value) {
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
}
