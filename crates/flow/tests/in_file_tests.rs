//! A flow file's `tests:` block: the loader accepts it, reports a mistake in it with its
//! position like any other problem, and leaves it out of the version digest (tests are not
//! behaviour, and the digest pins running calls to what they run).

use resetline_flow::{Code, compile};

const CLEAN: &str = include_str!("../../../tests/check/clean.yaml");

const TESTS: &str = r#"tests:
  - name: silence goes to an agent
    users: users.yaml
    steps:
      - silence: 3
      - hear: "Please hold"
    expect: { end: transferred, visits: [agent], not_visits: [lookup] }
"#;

fn digest(text: &str) -> String {
    let c = compile("flow.yaml", text, None);
    assert!(c.is_ok(), "{:?}", c.diagnostics);
    c.flow.expect("flow").digest
}

#[test]
fn a_tests_block_loads_clean_and_does_not_change_the_version() {
    let with_tests = format!("{CLEAN}\n# the flow's own tests\n{TESTS}");
    assert_eq!(digest(CLEAN), digest(&with_tests));
    let other_tests = with_tests.replace("silence: 3", "silence: 2");
    assert_eq!(digest(CLEAN), digest(&other_tests));
}

#[test]
fn a_tests_block_before_other_keys_is_left_out_of_the_version_too() {
    let (head, nodes) = CLEAN.split_at(CLEAN.find("nodes:").expect("nodes"));
    let moved = format!("{head}{TESTS}{nodes}");
    assert_eq!(digest(CLEAN), digest(&moved));
}

#[test]
fn a_change_outside_the_tests_block_changes_the_version() {
    let with_tests = format!("{CLEAN}{TESTS}");
    let changed = with_tests.replace("max_call_seconds: 300", "max_call_seconds: 301");
    assert_ne!(digest(&with_tests), digest(&changed));
}

#[test]
fn a_mistake_in_a_test_is_reported_at_its_line_and_column() {
    let text = format!(
        "{CLEAN}{}",
        TESTS
            .replace("- hear:", "- haer:")
            .replace("silence: 3", "silence: three")
            .replace("[lookup]", "[lokup]")
    );
    let c = compile("flow.yaml", &text, None);
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .expect(needle)
    };
    let found = |code: Code, needle: &str| {
        c.diagnostics
            .iter()
            .any(|d| d.code == code && d.span.start.line == line_of(needle) && d.span.start.col > 1)
    };
    assert!(found(Code::UnknownField, "haer:"), "{:#?}", c.diagnostics);
    assert!(
        found(Code::InvalidValue, "silence: three"),
        "{:#?}",
        c.diagnostics
    );
    assert!(
        found(Code::UnknownTarget, "[lokup]"),
        "{:#?}",
        c.diagnostics
    );
    assert_eq!(c.errors(), 3, "{:#?}", c.diagnostics);
}

#[test]
fn a_test_in_a_flow_file_names_its_users_file() {
    let text = format!("{CLEAN}{}", TESTS.replace("    users: users.yaml\n", ""));
    let c = compile("flow.yaml", &text, None);
    assert!(
        c.diagnostics
            .iter()
            .any(|d| d.code == Code::MissingField && d.message.contains("needs `users`")),
        "{:#?}",
        c.diagnostics
    );
}

#[test]
fn tests_must_be_a_list_of_cases() {
    let c = compile("flow.yaml", &format!("{CLEAN}tests: {{ name: x }}\n"), None);
    assert!(
        c.diagnostics.iter().any(|d| d.code == Code::WrongType),
        "{:#?}",
        c.diagnostics
    );
}
