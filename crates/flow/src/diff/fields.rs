//! Flattens nodes, settings and policies into ordered `(field, value)` pairs without spans, so
//! two versions of a flow compare by meaning, not by where things were written.
//!
//! Invariant: edges (`next`, `on:`, key and case targets, `limit.then`, `secure.start`) and
//! prompt references are left out here: the diff reports them in their own groups, once.

use std::time::Duration;

use crate::model::{
    Channel, Digits, Flow, JsonTemplate, Kind, LookupBy, Node, PauseBehavior, Rule, SecretKind,
    SecretMode, Test, TransferTo, WaitKey, WhenAbsent,
};
use crate::span::Spanned;
use crate::template::{Part, Template};

/// Ordered `(field, value)` pairs.
pub(crate) type Fields = Vec<(String, String)>;

/// Collects fields; `None` values are left out (an unset optional field has no line).
#[derive(Default)]
struct F(Fields);

impl F {
    fn put(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }
    fn opt(&mut self, name: &str, value: Option<String>) {
        if let Some(v) = value {
            self.put(name, v);
        }
    }
    fn timing(&mut self, first: Duration, inter: Duration) {
        self.put("first_digit_timeout", dur(first));
        self.put("inter_digit_timeout", dur(inter));
    }
    fn assigns(&mut self, prefix: &str, set: &[(Spanned<String>, Spanned<Template>)]) {
        for (var, t) in set {
            self.put(format!("{prefix}{}", var.value), source(t));
        }
    }
}

/// The fields of a node, in a fixed order: `kind`, `description`, `limit.visits`, then the
/// fields of its kind.
pub(crate) fn node(n: &Node) -> Fields {
    let mut f = F::default();
    f.put("kind", n.kind.name());
    f.opt("description", n.description.clone());
    f.opt(
        "limit.visits",
        n.limit.as_ref().map(|l| l.visits.to_string()),
    );
    kind(&mut f, &n.kind);
    f.0
}

fn kind(f: &mut F, k: &Kind) {
    match k {
        Kind::Say(_) | Kind::Secure(_) => {}
        Kind::Menu(m) => menu(f, m),
        Kind::Gather(g) => {
            f.put("digits", digits(g.digits));
            f.put("into", g.into.value.clone());
            f.put("finish_on", key_or_none(g.finish_on));
            f.timing(g.first_digit_timeout, g.inter_digit_timeout);
            f.put("attempts", g.attempts.to_string());
            f.put("secret", g.secret.to_string());
        }
        Kind::Branch(cases) => {
            for (i, c) in cases.iter().enumerate() {
                f.put(format!("case {}", i + 1), condition(&c.var.value, &c.test));
            }
        }
        Kind::Set(set) => f.assigns("set.", set),
        Kind::DirectoryFind(d) => {
            f.put("by", lookup(d.by));
            f.put("value", source(&d.value));
            f.put("into", d.into.value.clone());
        }
        Kind::CodeSend(s) => {
            f.put("channel", channel(s.channel));
            f.put("to", s.to.value.clone());
            f.put("length", s.length.to_string());
            f.put("ttl", dur(s.ttl.value));
            f.put("resends", s.resends.to_string());
            f.put("cooldown", dur(s.cooldown));
        }
        Kind::CodeVerify(v) => code_verify(f, v),
        Kind::PinVerify(p) => {
            f.put("account", p.account.value.clone());
            f.put("digits", digits(p.digits));
            f.put("finish_on", key_or_none(p.finish_on));
            f.put("attempts", p.attempts.to_string());
            f.timing(p.first_digit_timeout, p.inter_digit_timeout);
        }
        Kind::SetSecret(s) => {
            f.put("policy", s.policy.value.clone());
            f.put("account", s.account.value.clone());
            let mode = match s.mode {
                SecretMode::Entered => "entered",
                SecretMode::Generated => "generated",
            };
            f.put("mode", mode);
            f.put("attempts", s.attempts.to_string());
            f.opt(
                "deliver",
                s.deliver
                    .as_ref()
                    .map(|(c, to)| format!("{} to {}", channel(*c), to.value)),
            );
        }
        Kind::Http(h) => http(f, h),
        Kind::Ticket(t) => {
            f.put("close", t.close.to_string());
            f.put("summary", source(&t.summary));
            f.opt("details", t.details.as_ref().map(|d| source(d)));
            f.opt("category", t.category.clone());
            f.put("into", t.into.value.clone());
        }
        Kind::Notify(n) => {
            f.put("channel", channel(n.channel));
            f.put("to", n.to.value.clone());
        }
        Kind::Transfer(t) => {
            let to = match &t.to {
                TransferTo::Queue(q) => format!("queue {q}"),
                TransferTo::Number(n) => format!("number {n}"),
            };
            f.put("to", to);
            f.opt("wait", t.wait.clone());
        }
        Kind::Hangup(h) => f.opt("outcome", h.outcome.clone()),
    }
}

fn menu(f: &mut F, m: &crate::model::Menu) {
    f.put("attempts", m.attempts.to_string());
    f.put("timeout", dur(m.timeout));
    for key in &m.keys {
        let name = format!("key {}", key.key.value);
        f.put(name.clone(), "offered");
        let locale = key.locale.as_ref().map(|l| l.value.clone());
        f.opt(&format!("{name}.locale"), locale);
        f.assigns(&format!("{name}.set."), &key.set);
    }
}

fn code_verify(f: &mut F, v: &crate::model::CodeVerify) {
    f.put("from", v.from.value.clone());
    f.put("attempts", v.attempts.to_string());
    f.timing(v.first_digit_timeout, v.inter_digit_timeout);
    if let Some(w) = &v.wait {
        f.put("wait.hold_for", dur(w.hold_for));
        f.put("wait.give_up_after", dur(w.give_up_after));
        for (key, action) in &w.keys {
            let what = match action {
                WaitKey::Enter => "enter",
                WaitKey::Resend => "resend",
                WaitKey::Goto(_) => "go to a node",
            };
            f.put(format!("wait.key {}", key.value), what);
        }
    }
}

fn http(f: &mut F, h: &crate::model::Http) {
    f.put("method", h.method.clone());
    f.put("url", source(&h.url));
    for (name, value) in &h.headers {
        f.put(format!("header {name}"), source(value));
    }
    f.opt("body", h.body.as_ref().map(json));
    let secrets: Vec<&str> = h.secrets.iter().map(|s| s.value.as_str()).collect();
    if !secrets.is_empty() {
        f.put("secrets", secrets.join(", "));
    }
    for (var, pointer) in &h.map {
        f.put(format!("map.{}", var.value), pointer.clone());
    }
    f.put("timeout", dur(h.timeout));
    f.put("retries", h.retries.to_string());
    f.opt("sign", h.sign.as_ref().map(|(a, b)| format!("{a} {b}")));
}

/// The flow-level fields: id, version, description, start.
pub(crate) fn flow(flow: &Flow) -> Fields {
    let mut f = F::default();
    f.put("flow", flow.id.value.clone());
    f.opt("version", flow.version.clone());
    f.opt("description", flow.description.clone());
    f.put("start", flow.start.value.clone());
    f.0
}

/// `settings:` and `policies:` as `settings.*` and `policies.<name>.*` fields.
pub(crate) fn settings(flow: &Flow) -> Fields {
    let s = &flow.settings;
    let mut f = F::default();
    f.opt(
        "settings.max_call_seconds",
        s.max_call_seconds.as_ref().map(|m| m.value.to_string()),
    );
    f.put("settings.min_factors", s.min_factors.value.to_string());
    f.put("settings.default_locale", s.default_locale.value.clone());
    let locales: Vec<&str> = s.locales.iter().map(|l| l.value.as_str()).collect();
    f.put("settings.locales", locales.join(", "));
    f.opt("settings.voice", s.voice.clone());
    f.put("settings.enumeration_safe", s.enumeration_safe.to_string());
    f.opt(
        "settings.on_error",
        s.on_error.as_ref().map(|e| e.value.clone()),
    );
    let pause = match s.recording.pause_behavior {
        PauseBehavior::Silence => "silence",
        PauseBehavior::Skip => "skip",
    };
    f.put("settings.recording.pause_behavior", pause);
    let absent = match s.recording.when_absent {
        WhenAbsent::Proceed => "proceed",
        WhenAbsent::Fallback => "fallback",
    };
    f.put("settings.recording.when_absent", absent);
    for p in &flow.policies {
        let name = format!("policies.{}", p.name.value);
        let kind = match p.kind {
            SecretKind::Pin => "pin",
            SecretKind::Password => "password",
        };
        f.put(format!("{name}.kind"), kind);
        f.put(format!("{name}.min_length"), p.min_length.value.to_string());
        f.put(format!("{name}.max_length"), p.max_length.to_string());
        let reject: Vec<&str> = p.reject.iter().map(|r| rule(*r)).collect();
        f.put(format!("{name}.reject"), reject.join(", "));
    }
    f.0
}

/// A prompt reference as written: `key(param={{ x }}, ...)` for each item.
pub(crate) fn prompt_item(item: &crate::model::PromptItem) -> String {
    let params: Vec<String> = item
        .with
        .iter()
        .map(|(k, v)| format!("{}={}", k.value, source(v)))
        .collect();
    params.join(", ")
}

/// Every prompt key a node says, in order, without repeats.
pub(crate) fn prompt_keys(n: &Node) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for p in crate::check::prompts_of(&n.kind) {
        for item in &p.items {
            if !out.iter().any(|(k, _)| *k == item.key.value) {
                out.push((item.key.value.clone(), prompt_item(item)));
            }
        }
    }
    out
}

/// The keys a node says in order, `, ` within a prompt and ` | ` between its prompts (`say`,
/// then the no-input and no-match prompts, ...).
pub(crate) fn prompt_sequence(n: &Node) -> String {
    let prompts: Vec<String> = crate::check::prompts_of(&n.kind)
        .iter()
        .map(|p| {
            let keys: Vec<&str> = p.items.iter().map(|i| i.key.value.as_str()).collect();
            keys.join(", ")
        })
        .collect();
    prompts.join(" | ")
}

/// Template text as it would be written: literal text and `{{ path | filter }}`.
pub(crate) fn source(t: &Template) -> String {
    let mut out = String::new();
    for part in &t.parts {
        match part {
            Part::Text(s) => out.push_str(s),
            Part::Expr(e) => {
                out.push_str("{{ ");
                out.push_str(&e.dotted());
                for filter in &e.filters {
                    out.push_str(" | ");
                    out.push_str(filter.name());
                }
                out.push_str(" }}");
            }
        }
    }
    out
}

fn json(j: &JsonTemplate) -> String {
    match j {
        JsonTemplate::Null => "null".into(),
        JsonTemplate::Bool(b) => b.to_string(),
        JsonTemplate::Number(n) => n.clone(),
        JsonTemplate::String(t) => serde_json::Value::String(source(t)).to_string(),
        JsonTemplate::Array(items) => {
            let items: Vec<String> = items.iter().map(json).collect();
            format!("[{}]", items.join(", "))
        }
        JsonTemplate::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}: {}", serde_json::Value::String(k.clone()), json(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// A duration as written in flows: `500ms`, `8s`, `10m`.
pub(crate) fn dur(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms >= 60_000 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

fn digits(d: Digits) -> String {
    if d.min == d.max {
        d.min.to_string()
    } else {
        format!("{}..{}", d.min, d.max)
    }
}

fn key_or_none(k: Option<char>) -> String {
    k.map_or_else(|| "none".to_string(), |c| c.to_string())
}

fn condition(var: &str, test: &Test) -> String {
    match test {
        Test::Equals(v) => format!("{var} == {v}"),
        Test::NotEquals(v) => format!("{var} != {v}"),
        Test::In(vs) => format!("{var} in [{}]", vs.join(", ")),
        Test::NotIn(vs) => format!("{var} not in [{}]", vs.join(", ")),
        Test::Exists(true) => format!("{var} is set"),
        Test::Exists(false) => format!("{var} is not set"),
    }
}

fn lookup(by: LookupBy) -> &'static str {
    match by {
        LookupBy::EmployeeId => "employee_id",
        LookupBy::Username => "username",
        LookupBy::Phone => "phone",
        LookupBy::Email => "email",
    }
}

fn channel(c: Channel) -> &'static str {
    match c {
        Channel::Sms => "sms",
        Channel::Email => "email",
    }
}

fn rule(r: Rule) -> &'static str {
    match r {
        Rule::Repeated => "repeated",
        Rule::Sequential => "sequential",
        Rule::Keypad => "keypad",
        Rule::Personal => "personal",
        Rule::Common => "common",
    }
}
