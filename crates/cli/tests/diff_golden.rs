//! Golden tests for `resetline diff` and `resetline graph --diff`: one pair of flows per kind of
//! change under `tests/diff/<case>/{old,new}.yaml`, with the exact expected output beside it
//! (`expected.txt`, `expected.json`, `graph.dot`, `graph.mmd`).
//!
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p resetline --test
//! integration diff_golden::`, then review the diff like code.

use resetline_testkit::root;

use crate::support::resetline;

fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("tests/diff"))
        .expect("tests/diff")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// `actual` against the golden file `path` (relative to the workspace root).
fn golden(failures: &mut Vec<String>, path: &str, actual: &str) {
    if let Err(e) = resetline_testkit::golden::check(&root().join(path), actual) {
        failures.push(e);
    }
}

#[test]
fn every_pair_of_flow_versions_diffs_as_its_golden_output() {
    let mut failures = Vec::new();
    let cases = cases();
    for case in &cases {
        let (old, new) = (
            format!("tests/diff/{case}/old.yaml"),
            format!("tests/diff/{case}/new.yaml"),
        );
        let want_status = if case == "no-change" { 0 } else { 1 };
        for (format, file) in [("text", "expected.txt"), ("json", "expected.json")] {
            let (status, stdout, stderr) = resetline(&["diff", "--format", format, &old, &new]);
            assert!(stderr.is_empty(), "{case}: unexpected stderr: {stderr}");
            if status != want_status {
                failures.push(format!("{case}: exit {status}, expected {want_status}"));
            }
            golden(&mut failures, &format!("tests/diff/{case}/{file}"), &stdout);
        }
        for (format, file) in [("dot", "graph.dot"), ("mermaid", "graph.mmd")] {
            let (status, stdout, stderr) =
                resetline(&["graph", "--format", format, "--diff", &old, &new]);
            assert_eq!(status, 0, "{case}: {stderr}");
            golden(&mut failures, &format!("tests/diff/{case}/{file}"), &stdout);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    for want in [
        "no-change",
        "nodes",
        "prompts",
        "rewired-edge",
        "secure-section",
        "settings",
        "test-outcome",
    ] {
        assert!(cases.iter().any(|c| c == want), "no tests/diff/{want}");
    }
}

#[test]
fn a_test_whose_result_changes_is_reported_with_both_results() {
    let (status, stdout, _) = resetline(&[
        "diff",
        "--format",
        "json",
        "tests/diff/test-outcome/old.yaml",
        "tests/diff/test-outcome/new.yaml",
    ]);
    assert_eq!(status, 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let tests = doc["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 1, "{stdout}");
    assert_eq!(
        tests[0]["case"],
        "a weak new PIN is refused and the caller may try again"
    );
    assert_eq!(tests[0]["old"]["passed"], true);
    assert_eq!(tests[0]["new"]["passed"], false);
    assert_eq!(tests[0]["new"]["end"], "transferred");
}

#[test]
fn a_version_that_does_not_load_is_exit_2_with_its_diagnostics() {
    let (status, stdout, stderr) = resetline(&[
        "diff",
        "flows/pin-reset.yaml",
        "tests/check/E010-unknown-target.yaml",
    ]);
    assert_eq!(status, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("tests/check/E010-unknown-target.yaml:27:19"),
        "{stderr}"
    );
    assert!(stderr.contains("[E010]"), "{stderr}");
    let (status, stdout, stderr) = resetline(&[
        "graph",
        "--diff",
        "tests/check/E010-unknown-target.yaml",
        "flows/pin-reset.yaml",
    ]);
    assert_eq!(status, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("tests/check/E010-unknown-target.yaml:27:19"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_exit_2() {
    let (status, _, stderr) = resetline(&["diff", "flows/pin-reset.yaml", "no/such.yaml"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("cannot read no/such.yaml"), "{stderr}");
}

#[test]
fn a_shipped_flow_compared_with_itself_has_no_differences_and_exit_0() {
    let (status, stdout, stderr) = resetline(&[
        "diff",
        "--no-tests",
        "flows/password-reset.yaml",
        "flows/password-reset.yaml",
    ]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert!(stdout.ends_with("\nno differences\n"), "{stdout}");
}

#[test]
fn no_tests_skips_the_flow_tests_and_tests_names_them() {
    let pair = [
        "tests/diff/test-outcome/old.yaml",
        "tests/diff/test-outcome/new.yaml",
    ];
    let (status, stdout, stderr) = resetline(&["diff", "--no-tests", pair[0], pair[1]]);
    assert_eq!(status, 1, "{stderr}");
    assert!(!stdout.contains("\ntests\n"), "{stdout}");
    assert!(stdout.ends_with("\n1 difference\n"), "{stdout}");
    let (status, _, stderr) = resetline(&["diff", "--tests", "tests/diff/nodes", pair[0], pair[1]]);
    assert_eq!(status, 2);
    assert!(
        stderr.contains("no *.test.yaml files under tests/diff/nodes"),
        "{stderr}"
    );
}
