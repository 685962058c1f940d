//! `schema/flow.schema.json` agrees with the loader, checked with a real JSON Schema validator
//! (the `jsonschema` crate, draft 2020-12, as editors use it): every shipped flow, the docs'
//! example flows and every fixture meant to load cleanly (the checker's, the engine's, the
//! flow-test ones) validates, and fixtures with a shape problem do not.
//!
//! Invariant: an editor that uses the schema never underlines a correct file, and flags the
//! shape problems the loader reports (unknown kinds and fields, wrong types).

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator() -> jsonschema::Validator {
    let schema = resetline_flow::schema::schema();
    jsonschema::draft202012::new(&schema)
        .expect("the generated schema is a valid draft 2020-12 schema")
}

/// A YAML document as the JSON an editor's YAML language server validates (YAML 1.2: `on` is
/// a string, mapping keys are strings).
fn json(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
}

/// Instance paths of every error (`/nodes/greet`), empty when `instance` is valid.
fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} ({e})", e.instance_path()))
        .collect()
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    files.sort();
    files
}

/// `tests/check` fixtures whose problem is one of shape, which the schema sees too; the other
/// fixtures there are well-formed flows with a problem only the checker can find.
const SHAPE_PROBLEMS: &[&str] = &[
    "E001", // not YAML at all
    "E002",
    "E003",
    "E004",
    "E005",
    "E006",
    "E008",
    "E009",
    "E027",
    "E033",
    "many-problems",
];
/// Left out both ways: a key written twice is a YAML-level question.
const NEITHER: &[&str] = &["E007"];

fn is_in(path: &Path, list: &[&str]) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    list.iter().any(|p| name.starts_with(p))
}

/// The flow examples in `docs/flow-language.md`: YAML blocks with a top-level `flow:`.
fn doc_flows() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(root().join("docs/flow-language.md")).expect("docs");
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match &mut block {
            None if line.trim_start() == "```yaml" => block = Some((i + 2, String::new())),
            Some((start, text)) if line.trim_start() == "```" => {
                // a flow, not a test file (which names its flow under `flow:` too)
                let top = |key: &str| text.lines().any(|l| l.starts_with(key));
                if top("flow:") && top("nodes:") {
                    out.push((format!("docs/flow-language.md:{start}"), text.clone()));
                }
                block = None;
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(out.len() >= 2, "the docs' flow examples were not found");
    out
}

#[test]
fn every_shipped_flow_and_clean_fixture_validates_against_the_schema() {
    let v = validator();
    let mut sources: Vec<(String, String)> = Vec::new();
    let mut files = yaml_files("flows");
    assert!(files.len() >= 2, "flows/ has the shipped flows");
    files.extend(yaml_files("crates/engine/tests/flows"));
    files.extend(yaml_files("tests/flowtest"));
    files.extend(
        yaml_files("tests/check")
            .into_iter()
            .filter(|p| !is_in(p, SHAPE_PROBLEMS) && !is_in(p, NEITHER)),
    );
    for f in files {
        let text = std::fs::read_to_string(&f).expect("fixture");
        sources.push((f.display().to_string(), text));
    }
    sources.extend(doc_flows());
    let mut failed = Vec::new();
    for (what, text) in &sources {
        let errs = errors(&v, &json(text, what));
        if !errs.is_empty() {
            failed.push(format!("{what}:\n  {}", errs.join("\n  ")));
        }
    }
    assert!(
        failed.is_empty(),
        "the schema rejects files the loader accepts:\n{}",
        failed.join("\n")
    );
}

#[test]
fn the_comfort_loop_words_enter_and_resend_are_valid_keys() {
    let v = validator();
    let text = r#"
flow: wait
start: send
settings: { max_call_seconds: 120 }
nodes:
  send:
    code.send: { channel: sms, to: user.mobile }
    next: verify
  verify:
    code.verify:
      from: send
      say: enter_code
      wait: { hold: hold_music, menu: wait_menu, keys: { "1": enter, "2": resend, "0": agent } }
    next: agent
  agent:
    transfer: { queue: desk }
"#;
    assert_eq!(errors(&v, &json(text, "wait")), Vec::<String>::new());
}

/// Fixtures under `tests/schema/invalid/`, each with a first line
/// `# schema-error-at: <JSON pointer>` naming where the schema must object (`(root)`: the
/// document itself).
#[test]
fn fixtures_with_a_shape_problem_fail_validation_where_the_problem_is() {
    let v = validator();
    let files = yaml_files("tests/schema/invalid");
    assert!(files.len() >= 4, "tests/schema/invalid has its fixtures");
    let mut wrong = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("fixture");
        let at = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# schema-error-at:"))
            .unwrap_or_else(|| panic!("{}: first line names the error's place", f.display()))
            .trim()
            .replace("(root)", "");
        let errs = errors(&v, &json(&text, &f.display().to_string()));
        if !errs.iter().any(|e| e.starts_with(&format!("{at} ("))) {
            wrong.push(format!(
                "{}: expected an error at {at}, got {errs:?}",
                f.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn checker_fixtures_with_a_shape_problem_fail_validation() {
    let v = validator();
    let files: Vec<PathBuf> = yaml_files("tests/check")
        .into_iter()
        .filter(|p| is_in(p, SHAPE_PROBLEMS) && !is_in(p, &["E001"]))
        .collect();
    assert!(files.len() >= 9);
    let accepted: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("fixture");
            errors(&v, &json(&text, &f.display().to_string())).is_empty()
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(accepted.is_empty(), "the schema accepts: {accepted:?}");
}
