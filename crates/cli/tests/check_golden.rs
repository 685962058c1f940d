//! Golden tests for `resetline check`: one fixture per problem kind under `tests/check/`, each
//! with the exact expected output (`.stdout`) beside it, including line, column and carets.
//!
//! Fixture names start with the code they demonstrate (`E010-unknown-target.yaml`); the test
//! checks that code is really reported, so a fixture cannot silently stop testing its check.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p resetline --test
//! integration check_golden::`, then review the diff like code.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use resetline_testkit::root;

fn resetline(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_resetline"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run resetline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/check"))
        .expect("tests/check")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_fixture_matches_its_golden_output() {
    let mut failures = Vec::new();
    let mut codes = BTreeSet::new();
    for fixture in fixtures() {
        let stem = fixture
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let rel = format!("tests/check/{stem}.yaml");
        let (status, stdout, stderr) = resetline(&[
            "check",
            "--prompts",
            "voice-prompts",
            "--deny-warnings",
            &rel,
        ]);
        assert!(stderr.is_empty(), "{stem}: unexpected stderr: {stderr}");
        let want_status = if stem == "clean" { 0 } else { 1 };
        if status != want_status {
            failures.push(format!(
                "{stem}: exit status {status}, expected {want_status}\n{stdout}"
            ));
        }
        let code = stem.split('-').next().unwrap_or_default();
        if code.len() == 4 && (code.starts_with('E') || code.starts_with('W')) {
            if !stdout.contains(&format!("[{code}]")) {
                failures.push(format!("{stem}: output does not report {code}\n{stdout}"));
            }
            codes.insert(code.to_string());
        }
        let golden = root().join(format!("tests/check/{stem}.stdout"));
        if let Err(e) = resetline_testkit::golden::check(&golden, &stdout) {
            failures.push(format!("{stem}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        codes.len() >= 20,
        "only {} distinct problem kinds have fixtures: {codes:?}",
        codes.len()
    );
}

#[test]
fn a_broken_copy_reports_every_problem_at_once() {
    let (status, stdout, _) = resetline(&[
        "check",
        "--prompts",
        "voice-prompts",
        "tests/check/many-problems.yaml",
    ]);
    assert_eq!(status, 1);
    let codes: BTreeSet<&str> = stdout
        .lines()
        .filter_map(|l| {
            l.split_once('[')
                .and_then(|(_, r)| r.split_once(']'))
                .map(|(c, _)| c)
        })
        .collect();
    for want in [
        "E003", "E010", "E012", "E015", "E019", "E020", "E022", "E023", "E025", "E027", "E028",
        "E030", "W021",
    ] {
        assert!(codes.contains(want), "{want} missing from:\n{stdout}");
    }
}

#[test]
fn shipped_flows_check_clean_with_warnings_denied() {
    let (status, stdout, stderr) = resetline(&["check", "--deny-warnings", "flows/"]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("checked 2 flows: 0 errors, 0 warnings"),
        "{stdout}"
    );
}

#[test]
fn json_format_gives_positions_and_codes() {
    let (status, stdout, _) = resetline(&[
        "check",
        "--prompts",
        "voice-prompts",
        "--format",
        "json",
        "tests/check/E010-unknown-target.yaml",
    ]);
    assert_eq!(status, 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "E010");
    assert_eq!(d["name"], "unknown-target");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 27);
    assert_eq!(d["column"], 19);
    assert_eq!(d["end_column"], 24);
    assert_eq!(d["label"], "did you mean `agent`?");
    assert_eq!(doc["errors"], 1);
}

#[test]
fn warnings_pass_unless_denied() {
    let (status, _, _) = resetline(&[
        "check",
        "--prompts",
        "voice-prompts",
        "tests/check/W021-weak-secret-policy.yaml",
    ]);
    assert_eq!(status, 0);
    let (status, _, _) = resetline(&[
        "check",
        "--prompts",
        "voice-prompts",
        "--deny-warnings",
        "tests/check/W021-weak-secret-policy.yaml",
    ]);
    assert_eq!(status, 1);
}

#[test]
fn missing_path_is_exit_2() {
    let (status, _, stderr) = resetline(&["check", "no/such/flow.yaml"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("cannot read no/such/flow.yaml"), "{stderr}");
}

#[test]
fn committed_schema_is_current() {
    let (status, stdout, _) = resetline(&["schema"]);
    assert_eq!(status, 0);
    let committed = std::fs::read_to_string(root().join("schema/flow.schema.json"))
        .expect("schema/flow.schema.json");
    assert_eq!(
        committed, stdout,
        "schema/flow.schema.json is stale: run `cargo run -- schema > schema/flow.schema.json`"
    );
}

#[test]
fn shipped_flows_point_editors_at_the_schema() {
    for flow in ["flows/password-reset.yaml", "flows/pin-reset.yaml"] {
        let text = std::fs::read_to_string(root().join(flow)).expect("flow");
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/flow.schema.json\n"),
            "{flow}"
        );
    }
}

#[test]
fn graph_draws_secure_clusters_and_dashed_failures() {
    let (status, dot, _) = resetline(&["graph", "--format", "dot", "flows/password-reset.yaml"]);
    assert_eq!(status, 0);
    assert!(dot.contains("subgraph \"cluster_reset\""), "{dot}");
    assert!(
        dot.contains("\"lookup\" -> \"locked\" [label=\"locked\", style=dashed"),
        "{dot}"
    );
    assert!(
        dot.contains("\"welcome\" -> \"identify\" [label=\"next\"];"),
        "{dot}"
    );
    let (status, mermaid, _) = resetline(&["graph", "flows/password-reset.yaml"]);
    assert_eq!(status, 0);
    assert!(mermaid.starts_with("flowchart TD\n"));
    assert!(
        mermaid.contains("subgraph reset[\"secure: reset (recording paused)\"]"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("lookup -.->|not_found| id_not_found"),
        "{mermaid}"
    );
}
