//! The flow-test example in `docs/flow-language.md` ("Flow tests") uses every field of the
//! format, parses with unknown fields refused, and passes against the reference flow.

use resetline_simulator::flowtest::{TestFile, run_file};

use resetline_testkit::root;

fn example() -> String {
    let doc = std::fs::read_to_string(root().join("docs/flow-language.md")).expect("doc");
    let section = doc
        .split("## Flow tests")
        .nth(1)
        .expect("a Flow tests section");
    let start = section
        .find("```yaml\n# flows/password-reset.test.yaml")
        .expect("the example")
        + "```yaml\n".len();
    let len = section[start..].find("```").expect("end of the example");
    section[start..start + len].to_string()
}

#[test]
fn the_example_uses_every_field() {
    let file: TestFile = serde_saphyr::from_str(&example()).expect("the example parses");
    assert!(file.flow.is_some() && file.prompts.is_some() && file.from.is_some());
    let t = &file.tests[0];
    assert!(t.from.is_some() && !t.sms.is_empty() && !t.refuse_sms_to.is_empty());
    let s = &t.sms[2];
    assert!(s.delay.is_some() && s.outcome.is_some() && s.error_code.is_some());
    let steps = file.tests.iter().flat_map(|t| &t.steps);
    let used = |f: &dyn Fn(&resetline_simulator::flowtest::Step) -> bool| steps.clone().any(f);
    assert!(used(&|s| s.hear.is_some()));
    assert!(used(&|s| s.press.is_some() && s.after.is_some()));
    assert!(used(&|s| s.silence.is_some()));
    assert!(used(&|s| s.wait_for_message.is_some()));
    assert!(used(&|s| s.message.is_some()));
    assert!(used(&|s| s.jump.is_some()));
    assert!(used(&|s| s.hangup.is_some()));
    let e = &t.expect;
    assert!(e.end.is_some() && e.outcome.is_some() && !e.visits.is_empty());
    assert!(!e.not_visits.is_empty() && e.recording.is_some() && e.messages.is_some());
    assert!(!e.audit.is_empty() && e.max_duration.is_some());
    let text = example();
    assert!(t.transfer_result.is_some());
    for flag in ["no_recording:", "sms_provider_down:", "retry_webhooks:"] {
        assert!(text.contains(flag), "{flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_passes_against_the_reference_flow() {
    let root = root();
    let text = example()
        .replace(
            "flow: password-reset.yaml",
            &format!("flow: {}", root.join("flows/password-reset.yaml").display()),
        )
        .replace(
            "users: ../examples/demo/users.yaml",
            &format!("users: {}", root.join("examples/demo/users.yaml").display()),
        )
        .replace(
            "prompts: ../voice-prompts",
            &format!("prompts: {}", root.join("voice-prompts").display()),
        );
    let scratch = tempfile::tempdir().expect("tempdir");
    let path = scratch.path().join("example.test.yaml");
    std::fs::write(&path, text).expect("write");
    let result = run_file(&path, &mut |_| {}).await.expect("runs");
    for c in &result.cases {
        let transcript: String = c.transcript.iter().map(|e| format!("{e}\n")).collect();
        assert!(
            c.passed(),
            "{}: {:?}\n{}\n{transcript}",
            c.name,
            c.failures,
            c.diff.clone().unwrap_or_default()
        );
    }
}
