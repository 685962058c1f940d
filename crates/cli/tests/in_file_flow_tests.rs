//! `resetline test` runs the `tests:` blocks inside flow files as well as `*.test.yaml` files,
//! reports them per file and case, fails on a failing in-file case with a clear message, and
//! refuses to run the tests of a flow whose tests block has a mistake, showing where it is.

use resetline_testkit::root;

/// `resetline ARGS` from the workspace root: its exit code and stdout.
fn resetline(args: &[&str]) -> (i32, String) {
    let (code, out, _) = crate::support::resetline(args);
    (code, out)
}

#[test]
fn the_tests_inside_a_shipped_flow_run_beside_its_test_file() {
    let (code, out) = resetline(&["test", "flows/"]);
    assert_eq!(code, 0, "{out}");
    let in_file = out
        .split("flows/pin-reset.yaml\n")
        .nth(1)
        .expect("flows/pin-reset.yaml is reported as a file with tests");
    assert!(
        in_file.starts_with("  ok   silence at the employee ID goes to an agent"),
        "{out}"
    );
    assert!(
        out.contains("flows/pin-reset.test.yaml\n  ok   change the PIN with the current PIN"),
        "{out}"
    );
}

#[test]
fn a_failing_case_inside_a_flow_file_fails_the_command_and_says_why() {
    let (code, out) = resetline(&["test", "tests/flowtest/failing-in-file.yaml"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  ok   the caller is greeted and transferred"),
        "{out}"
    );
    assert!(
        out.contains("  FAIL this case expects a prompt the flow never says"),
        "{out}"
    );
    assert!(
        out.contains("step 1 (say: …Welcome to the password line…): did not hear \"Welcome to the password line\""),
        "{out}"
    );
    let fixture = std::fs::read_to_string(root().join("tests/flowtest/failing-in-file.yaml"))
        .expect("fixture");
    let line = fixture
        .lines()
        .position(|l| l.contains("- name: this case expects a prompt"))
        .expect("the failing case")
        + 1;
    let after_fail = out
        .lines()
        .skip_while(|l| !l.starts_with("  FAIL this case expects"))
        .nth(1);
    assert_eq!(
        after_fail,
        Some(format!("       at tests/flowtest/failing-in-file.yaml:{line}").as_str()),
        "the failing case is shown at its file and line: {out}"
    );
    assert!(
        !out.contains("       at tests/flowtest/failing-in-file.yaml:14"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed in 1 file(s)"), "{out}");
}

#[test]
fn a_mistake_in_a_tests_block_stops_its_tests_and_shows_the_line() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let flow = std::fs::read_to_string(root().join("tests/flowtest/failing-in-file.yaml"))
        .expect("fixture")
        .replace("../../examples/demo/users.yaml", "users.yaml")
        .replace("      - hear: \"Welcome", "      - haer: \"Welcome");
    std::os::unix::fs::symlink(
        root().join("voice-prompts"),
        scratch.path().join("voice-prompts"),
    )
    .expect("symlink");
    let file = scratch.path().join("flow.yaml");
    std::fs::write(&file, &flow).expect("write");
    let line = flow
        .lines()
        .position(|l| l.contains("haer:"))
        .expect("the misspelt step")
        + 1;
    let (code, out) = resetline(&["test", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("could not run"), "{out}");
    assert!(out.contains("error[E003]: unknown field `haer`"), "{out}");
    assert!(out.contains(&format!("flow.yaml:{line}:9")), "{out}");
}

#[test]
fn a_flow_without_tests_given_by_name_says_it_has_none() {
    let (code, out) = resetline(&["test", "flows/password-reset.yaml"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no flow tests in it"), "{out}");
}
