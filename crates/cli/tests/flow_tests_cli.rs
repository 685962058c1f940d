//! `resetline test` through the real binary: the shipped flow tests pass, and a deliberately
//! broken copy of the reference flow (the code-verify success edge pointing at the ticket
//! instead of the reset) fails with exit code 1 and a transcript diff that shows the prompt
//! that was expected and the one that came instead.

use resetline_testkit::root;

/// `resetline ARGS` from the workspace root: its exit code and stdout.
fn resetline(args: &[&str]) -> (i32, String) {
    let (code, out, _) = crate::support::resetline(args);
    (code, out)
}

#[test]
fn the_shipped_flow_tests_pass_with_a_summary_and_a_report() {
    let (code, out) = resetline(&["test", "--report", "flows/"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  ok   reset by text message"), "{out}");
    // password-reset.test.yaml, pin-reset.test.yaml and the `tests:` block of pin-reset.yaml
    assert!(out.contains(" passed, 0 failed in 3 file(s)"), "{out}");
    assert!(
        out.contains("total s") && out.contains("password-reset: reset by text message "),
        "{out}"
    );
}

#[test]
fn a_wrong_target_on_the_code_verify_success_edge_fails_with_a_transcript_diff() {
    let root = root();
    let scratch = tempfile::tempdir().expect("tempdir");
    let flows = scratch.path().join("flows");
    std::fs::create_dir(&flows).expect("mkdir");
    let flow = std::fs::read_to_string(root.join("flows/password-reset.yaml")).expect("flow");
    let good = "      give_up_after: 3m\n    next: reset\n";
    assert!(
        flow.contains(good),
        "the reference flow changed; update this test"
    );
    let broken = flow.replace(good, "      give_up_after: 3m\n    next: open_ticket\n");
    std::fs::write(flows.join("password-reset.yaml"), broken).expect("write flow");
    let tests = std::fs::read_to_string(root.join("flows/password-reset.test.yaml"))
        .expect("tests")
        .replace(
            "users: ../examples/demo/users.yaml",
            &format!(
                "users: {}\nprompts: {}",
                root.join("examples/demo/users.yaml").display(),
                root.join("voice-prompts").display()
            ),
        );
    std::fs::write(flows.join("password-reset.test.yaml"), tests).expect("write tests");

    let (code, out) = resetline(&["test", flows.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  FAIL reset by text message"), "{out}");
    assert!(
        out.contains("did not hear \"Please enter your new PIN\""),
        "{out}"
    );
    assert!(
        out.contains("  - say: …Please enter your new PIN…"),
        "the diff names the missing prompt: {out}"
    );
    assert!(
        out.contains("  + say: Your ticket number is"),
        "the diff shows what came instead: {out}"
    );
    assert!(out.contains("    press: $code"), "{out}");
    assert!(out.contains(" failed in 1 file(s)"), "{out}");
}

#[test]
fn a_test_file_that_cannot_run_exits_2_and_says_why() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("x.test.yaml");
    std::fs::write(
        &file,
        "users: users.yaml\ntests:\n  - name: t\n    steps: [{ pres: \"1\" }]\n",
    )
    .expect("write");
    let (code, out) = resetline(&["test", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("could not run") && out.contains("pres"),
        "{out}"
    );
}
