//! The loader and checker never panic, whatever the bytes (security.md check 39).
//!
//! Three generators: arbitrary bytes; YAML-shaped text built from the language's own
//! vocabulary (so the checker's deeper passes are reached, not just the YAML parser); and
//! mutations of the shipped reference flow (lines deleted, duplicated, swapped, characters
//! changed). Each case runs `compile` with the shipped prompt catalogs.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use resetline_flow::{Catalogs, SourceMap, compile};

fn catalogs() -> &'static Catalogs {
    static C: OnceLock<Catalogs> = OnceLock::new();
    C.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../voice-prompts");
        Catalogs::load_dir(&dir, &mut SourceMap::new()).0
    })
}

fn reference() -> &'static str {
    static R: OnceLock<String> = OnceLock::new();
    R.get_or_init(|| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/password-reset.yaml"),
        )
        .expect("reference flow")
    })
}

/// Renders every diagnostic too, so a span pointing outside the text would be caught.
fn run(text: &str) {
    let compiled = compile("fuzz.yaml", text, Some(catalogs()));
    let mut sources = SourceMap::new();
    sources.add("fuzz.yaml", text);
    for d in &compiled.diagnostics {
        let _ = d.render(&sources);
        let _ = d.to_json();
    }
    if let Some(flow) = &compiled.flow {
        let _ = resetline_flow::graph::render(flow, resetline_flow::graph::Format::Dot);
    }
}

const WORDS: &[&str] = &[
    "flow",
    "start",
    "settings",
    "nodes",
    "policies",
    "max_call_seconds",
    "min_factors",
    "locales",
    "on_error",
    "enumeration_safe",
    "say",
    "menu",
    "gather",
    "branch",
    "set",
    "directory.find",
    "code.send",
    "code.verify",
    "pin.verify",
    "set_secret",
    "secure",
    "http",
    "ticket",
    "notify",
    "transfer",
    "hangup",
    "next",
    "on",
    "limit",
    "visits",
    "then",
    "keys",
    "digits",
    "into",
    "secret",
    "attempts",
    "from",
    "wait",
    "hold",
    "menu",
    "give_up_after",
    "channel",
    "to",
    "ttl",
    "length",
    "policy",
    "nodes",
    "body",
    "secrets",
    "url",
    "when",
    "var",
    "equals",
    "in",
    "exists",
    "prompt",
    "with",
    "exhausted",
    "no_input",
    "not_found",
    "error",
    "user.mobile",
    "employee_id",
    "welcome",
    "identify",
    "agent",
    "a",
    "b",
    "\"{{ user.mobile | last4 | digits }}\"",
    "\"{{ x | nope }}\"",
    "\"{{\"",
    "6..8",
    "10m",
    "99999999999999999999",
    "true",
    "sms",
    "email",
    "en-US",
    "\"#\"",
    "\"\"",
    "&anchor",
    "*anchor",
    "!!str",
    "~",
    "null",
    "-1",
    "[",
    "]",
    "{",
    "}",
    ",",
    "- ",
    "? ",
    "|",
    ">",
];

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        proptest::sample::select(WORDS).prop_map(str::to_string),
        Just(": ".to_string()),
        Just("\n".to_string()),
        (0usize..8).prop_map(|n| format!("\n{}", "  ".repeat(n))),
        "[a-z_]{1,8}",
    ];
    proptest::collection::vec(token, 0..200).prop_map(|t| t.concat())
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, char),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), proptest::char::any()).prop_map(|(a, c)| Mutation::Replace(a, c)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *m {
            Mutation::Delete(i) => {
                lines.remove(i % n);
            }
            Mutation::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Swap(a, b) => lines.swap(a % n, b % n),
            Mutation::Replace(i, c) => {
                let line = &mut lines[i % n];
                let chars: Vec<char> = line.chars().collect();
                if !chars.is_empty() {
                    let at = i % chars.len();
                    *line = chars
                        .iter()
                        .enumerate()
                        .map(|(j, ch)| if j == at { c } else { *ch })
                        .collect();
                }
            }
            Mutation::Truncate(i) => lines.truncate(i % n),
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        run(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yaml_shaped_text(text in yamlish()) {
        run(&text);
    }

    #[test]
    fn mutated_reference_flow(mutations in proptest::collection::vec(mutation(), 1..6)) {
        run(&mutate(reference(), &mutations));
    }
}

#[test]
fn pathological_inputs() {
    for text in [
        "[".repeat(10_000),
        "{".repeat(10_000),
        "- ".repeat(10_000),
        "a: &a [*a]".to_string(),
        "\u{feff}flow: x".to_string(),
        "flow: x\nnodes:\n  a:\n    say: \"\u{202e}\u{0}\"\n".to_string(),
        "nodes: !!binary aGVsbG8=".to_string(),
        "\t\tflow: x".to_string(),
    ] {
        run(&text);
    }
}
