//! Ties the loader to the vocabulary table (`spec.rs`): every field the table gives a default
//! loads as that default when a flow leaves it out, and every whole-number field takes
//! exactly the table's bounds. The JSON Schema and the docs are generated from or checked
//! against the same table, so when these tests pass, what a flow author reads is what runs.
//!
//! Each test walks the whole table, so a field added to it with a default or bounds fails
//! here until `observed` says where the loaded flow keeps it.

use std::collections::BTreeMap;
use std::time::Duration;

use resetline_flow::model::*;
use resetline_flow::spec::{self, Field, Ty};
use resetline_flow::{Code, Flow, compile};

/// A value as the table writes it and as the loaded model holds it.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Int(u32),
    Dur(Duration),
    Bool(bool),
    Text(String),
    Words(Vec<String>),
    Digits(u32, u32),
}

/// The mappings of a flow with nothing but the required fields, by the table path of each
/// (the path `observed` and `table` use); `render` writes them as a flow file.
fn required() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("settings", vec![("max_call_seconds", "300")]),
        ("policies", vec![]),
        ("menu", vec![("say", "p"), ("keys", "{ \"1\": hangup }")]),
        ("gather", vec![("say", "p"), ("digits", "4"), ("into", "x")]),
        ("directory.find", vec![("by", "username"), ("value", "x")]),
        ("code.send", vec![("channel", "sms"), ("to", "user.mobile")]),
        (
            "code.verify",
            vec![
                ("from", "code_send"),
                ("say", "p"),
                ("wait", "{ hold: p, menu: p, keys: { \"1\": enter } }"),
            ],
        ),
        ("pin.verify", vec![("say", "p")]),
        (
            "set_secret",
            vec![("policy", "pin"), ("say", "p"), ("confirm", "p")],
        ),
        (
            "http",
            vec![
                ("url", "https://example.test"),
                ("sign", "{ token_env: T }"),
            ],
        ),
        ("ticket", vec![("summary", "s")]),
        ("hangup", vec![]),
        ("node.limit", vec![("visits", "1"), ("then", "hangup")]),
    ]
}

/// A flow file with every mapping of `required()`, and field `set.1` of mapping `set.0`
/// written as `set.2` (replacing a required one of the same name).
fn render(set: Option<(&str, &str, &str)>) -> String {
    let mut text = String::from("flow: defaults\nstart: hangup\n");
    for (at, mut fields) in required() {
        if let Some((_, name, value)) = set.filter(|(path, _, _)| *path == at) {
            fields.retain(|(n, _)| *n != name);
            fields.push((name, value));
        }
        let body: Vec<String> = fields.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        let body = format!("{{ {} }}", body.join(", "));
        match at {
            "settings" => text.push_str(&format!("settings: {body}\n")),
            "policies" => text.push_str(&format!("policies:\n  pin: {body}\nnodes:\n")),
            // A field every node takes: written on the node before it.
            "node.limit" => text.push_str(&format!("    limit: {body}\n")),
            kind => {
                let id = kind.replace('.', "_");
                text.push_str(&format!("  {id}:\n    {kind}: {body}\n"));
            }
        }
    }
    text
}

fn load(text: &str) -> Flow {
    compile("defaults.yaml", text, None)
        .flow
        .expect("the flow loads")
}

fn node<'f>(flow: &'f Flow, kind: &str) -> &'f Kind {
    &flow
        .node(&kind.replace('.', "_"))
        .unwrap_or_else(|| panic!("node of kind {kind} loaded"))
        .kind
}

fn text(s: impl ToString) -> Val {
    Val::Text(s.to_string())
}

/// `Debug` of a unit variant as the table's word (`Silence` -> `silence`).
fn word(v: impl std::fmt::Debug) -> Val {
    text(format!("{v:?}").to_lowercase())
}

fn finish(key: Option<char>) -> Val {
    text(key.map(String::from).unwrap_or_default())
}

/// Every defaulted or bounded field of the loaded `flow`, by table path.
fn observed(flow: &Flow) -> BTreeMap<String, Val> {
    let s = &flow.settings;
    let p = flow.policy("pin").expect("policy pin loaded");
    let mut out: Vec<(&str, Val)> = vec![
        (
            "settings.max_call_seconds",
            Val::Int(s.max_call_seconds.as_ref().map_or(0, |m| m.value)),
        ),
        ("settings.min_factors", Val::Int(s.min_factors.value)),
        (
            "settings.locales",
            Val::Words(s.locales.iter().map(|l| l.value.clone()).collect()),
        ),
        ("settings.enumeration_safe", Val::Bool(s.enumeration_safe)),
        (
            "settings.recording.pause_behavior",
            word(s.recording.pause_behavior),
        ),
        (
            "settings.recording.when_absent",
            word(s.recording.when_absent),
        ),
        ("policies.kind", word(p.kind)),
        ("policies.min_length", Val::Int(p.min_length.value)),
        ("policies.max_length", Val::Int(p.max_length)),
        (
            "policies.reject",
            Val::Words(
                p.reject
                    .iter()
                    .map(|r| format!("{r:?}").to_lowercase())
                    .collect(),
            ),
        ),
    ];
    let limit = flow.node("hangup").and_then(|n| n.limit.as_ref());
    out.push(("node.limit.visits", Val::Int(limit.map_or(0, |l| l.visits))));
    if let Kind::Menu(m) = node(flow, "menu") {
        out.push(("menu.attempts", Val::Int(m.attempts)));
        out.push(("menu.timeout", Val::Dur(m.timeout)));
    }
    if let Kind::Gather(g) = node(flow, "gather") {
        out.push(("gather.finish_on", finish(g.finish_on)));
        out.push((
            "gather.first_digit_timeout",
            Val::Dur(g.first_digit_timeout),
        ));
        out.push((
            "gather.inter_digit_timeout",
            Val::Dur(g.inter_digit_timeout),
        ));
        out.push(("gather.attempts", Val::Int(g.attempts)));
        out.push(("gather.secret", Val::Bool(g.secret)));
    }
    if let Kind::DirectoryFind(d) = node(flow, "directory.find") {
        out.push(("directory.find.into", text(&d.into.value)));
    }
    if let Kind::CodeSend(c) = node(flow, "code.send") {
        out.push(("code.send.length", Val::Int(c.length)));
        out.push(("code.send.ttl", Val::Dur(c.ttl.value)));
        out.push(("code.send.resends", Val::Int(c.resends)));
        out.push(("code.send.cooldown", Val::Dur(c.cooldown)));
    }
    if let Kind::CodeVerify(c) = node(flow, "code.verify") {
        out.push(("code.verify.attempts", Val::Int(c.attempts)));
        out.push((
            "code.verify.first_digit_timeout",
            Val::Dur(c.first_digit_timeout),
        ));
        out.push((
            "code.verify.inter_digit_timeout",
            Val::Dur(c.inter_digit_timeout),
        ));
        if let Some(w) = &c.wait {
            out.push(("code.verify.wait.hold_for", Val::Dur(w.hold_for)));
            out.push(("code.verify.wait.give_up_after", Val::Dur(w.give_up_after)));
        }
    }
    if let Kind::PinVerify(v) = node(flow, "pin.verify") {
        out.push(("pin.verify.account", text(&v.account.value)));
        out.push(("pin.verify.digits", Val::Digits(v.digits.min, v.digits.max)));
        out.push(("pin.verify.finish_on", finish(v.finish_on)));
        out.push(("pin.verify.attempts", Val::Int(v.attempts)));
        out.push((
            "pin.verify.first_digit_timeout",
            Val::Dur(v.first_digit_timeout),
        ));
        out.push((
            "pin.verify.inter_digit_timeout",
            Val::Dur(v.inter_digit_timeout),
        ));
    }
    if let Kind::SetSecret(v) = node(flow, "set_secret") {
        out.push(("set_secret.account", text(&v.account.value)));
        out.push(("set_secret.mode", word(v.mode)));
        out.push(("set_secret.attempts", Val::Int(v.attempts)));
    }
    if let Kind::Http(h) = node(flow, "http") {
        out.push(("http.method", text(&h.method)));
        out.push(("http.timeout", Val::Dur(h.timeout)));
        out.push(("http.retries", Val::Int(h.retries)));
        if let Some((_, header)) = &h.sign {
            out.push(("http.sign.header", text(header)));
        }
    }
    if let Kind::Ticket(t) = node(flow, "ticket") {
        let action = if t.close { "open_and_close" } else { "open" };
        out.push(("ticket.action", text(action)));
        out.push(("ticket.into", text(&t.into.value)));
    }
    out.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Every field of the table with a default or bounds, by path: the flow's own fields, the
/// fields every node takes (`node.`), then each kind's.
fn table() -> Vec<(String, &'static Field)> {
    fn walk(prefix: &str, ty: &'static Ty, out: &mut Vec<(String, &'static Field)>) {
        match ty {
            Ty::Object(fields) => {
                // `tests:` is the simulator's format: the model keeps none of its values.
                for f in fields
                    .iter()
                    .filter(|f| !(prefix.is_empty() && f.name == "tests"))
                {
                    let path = format!("{prefix}{}", f.name);
                    if f.default.is_some() || f.bounds().is_some() {
                        out.push((path.clone(), f));
                    }
                    walk(&format!("{path}."), &f.ty, out);
                }
            }
            Ty::MapOf(_, inner) | Ty::ListOf(inner) => walk(prefix, inner, out),
            Ty::OneOf(tys) => tys.iter().for_each(|t| walk(prefix, t, out)),
            _ => {}
        }
    }
    static FLOW: Ty = Ty::Object(spec::FLOW);
    static NODE: Ty = Ty::Object(spec::NODE_FIELDS);
    let mut out = Vec::new();
    walk("", &FLOW, &mut out);
    walk("node.", &NODE, &mut out);
    for k in spec::KINDS {
        walk(&format!("{}.", k.name), &k.body, &mut out);
    }
    out
}

/// A duration as the table writes it: `500ms`, `5s`, `10m`, `1h`.
fn duration(s: &str) -> Duration {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().expect("a number");
    match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => panic!("unit {unit}"),
    }
}

/// The table's default of `f`, read as its type says.
fn default_of(f: &Field) -> Option<Val> {
    let d = f.default?;
    Some(match &f.ty {
        Ty::Int(..) => Val::Int(d.parse().expect("a whole number")),
        Ty::Duration => Val::Dur(duration(d)),
        Ty::Bool => Val::Bool(d.parse().expect("true or false")),
        Ty::Digits => {
            let (min, max) = d.split_once("..").unwrap_or((d, d));
            Val::Digits(min.parse().expect("min"), max.parse().expect("max"))
        }
        Ty::ListOf(_) => Val::Words(f.default_words().iter().map(|w| w.to_string()).collect()),
        _ => text(d),
    })
}

#[test]
fn every_field_a_flow_leaves_out_loads_as_the_default_the_spec_documents() {
    let flow = load(&render(None));
    let seen = observed(&flow);
    let mut wrong = Vec::new();
    for (path, f) in table() {
        let Some(default) = default_of(f) else {
            continue;
        };
        match seen.get(&path) {
            Some(v) if *v == default => {}
            Some(v) => wrong.push(format!("{path}: loads as {v:?}, the spec says {default:?}")),
            None => wrong.push(format!(
                "{path}: not in `observed` (say where the model keeps it)"
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_whole_number_field_takes_exactly_the_bounds_of_the_spec() {
    let mut wrong = Vec::new();
    for (path, f) in table() {
        let Some((min, max)) = f.bounds() else {
            continue;
        };
        let (at, name) = path.rsplit_once('.').expect("a field of a mapping");
        let default = default_of(f).unwrap_or(Val::Int(0));
        let mut cases = vec![(min, true), (max, true), (max + 1, false)];
        if min > 0 {
            cases.push((min - 1, false));
        }
        for (n, accepted) in cases {
            let value = n.to_string();
            let compiled = compile("bounds.yaml", &render(Some((at, name, &value))), None);
            let refused = compiled.diagnostics.iter().any(|d| match d.code {
                Code::CodeTooShort => true,
                Code::InvalidValue => d.message.ends_with(&format!("found `{n}`")),
                _ => false,
            });
            let Some(flow) = compiled.flow else {
                wrong.push(format!("{path} = {n}: the flow did not load"));
                continue;
            };
            let v = observed(&flow).remove(&path);
            let expect = if accepted {
                Val::Int(n)
            } else {
                default.clone()
            };
            if v.as_ref() != Some(&expect) || refused == accepted {
                wrong.push(format!(
                    "{path} = {n}: loads as {v:?}, refused: {refused}; the spec's bounds are \
                     {min}..={max} and default {default:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
