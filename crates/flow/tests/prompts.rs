//! Prompt catalogs as loaded from a directory: a recording missing on disk is a W040 warning
//! at its line and column (its text is spoken instead), structured SSML parts load typed and
//! bounded (a bad `emphasis`, `rate` or `break` is an E009 at the value), and a prompt key one
//! locale lacks is an E022 naming that locale.

use std::path::Path;

use resetline_flow::prompts::ssml::Part;
use resetline_flow::prompts::{Catalogs, PromptBody};
use resetline_flow::{Code, Diagnostic, Severity, SourceMap, compile};

/// Engine prompts every offered locale needs, so the tests see only their own problems.
const ENGINE: &str = "  call_time_limit: \"Time is up.\"\n  technical_difficulty: \"Sorry.\"\n  call_not_found: \"Bye.\"\n";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn load(dir: &Path) -> (Catalogs, Vec<Diagnostic>, SourceMap) {
    let mut sources = SourceMap::new();
    let (catalogs, diags) = Catalogs::load_dir(dir, &mut sources);
    (catalogs, diags, sources)
}

#[test]
fn a_missing_recording_is_a_warning_at_its_value_and_is_spoken_instead() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "audio/en-US/here.wav", "RIFF");
    write(dir.path(), "audio/shared.wav", "RIFF");
    write(
        dir.path(),
        "en-US.yaml",
        &format!(
            "locale: en-US\nprompts:\n{ENGINE}  here: {{ play: here.wav, text: \"Here.\" }}\n  shared: {{ play: shared.wav }}\n  remote: {{ play: \"https://cdn.example.com/x.mp3\" }}\n  hold: {{ play: gone.wav, text: \"Please hold.\" }}\n  mute:\n    play: also-gone.wav\n"
        ),
    );
    let (catalogs, diags, sources) = load(dir.path());
    let file = dir.path().join("en-US.yaml").display().to_string();
    let audio = dir.path().join("audio").display().to_string();
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert!(diags.iter().all(|d| d.code == Code::MissingAudio));
    assert!(diags.iter().all(|d| d.severity() == Severity::Warning));
    assert_eq!(
        diags[0].render(&sources),
        format!(
            "warning[W040]: prompt `hold` plays `gone.wav`, which is not in {audio}/en-US/ or {audio}/\n --> {file}:9:17\n  |\n9 |   hold: {{ play: gone.wav, text: \"Please hold.\" }}\n  |                 ^^^^^^^^\n  = note: callers hear its `text` spoken instead until the file is added\n"
        )
    );
    assert!(
        diags[1]
            .render(&sources)
            .contains(&format!(" --> {file}:11:11\n")),
        "{}",
        diags[1].render(&sources)
    );
    assert!(diags[1].notes[0].contains("callers hear nothing"));
    let c = catalogs.get("en-US").expect("en-US loads: warnings only");
    assert_eq!(
        c.missing_audio
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["hold", "mute"]
    );
    // Parsed without a directory, nothing is looked up.
    let text = std::fs::read_to_string(dir.path().join("en-US.yaml")).expect("read");
    let (parsed, d) = resetline_flow::prompts::parse("en-US.yaml", &text);
    assert!(d.is_empty(), "{d:?}");
    assert!(parsed.expect("parses").missing_audio.is_empty());
}

#[test]
fn ssml_parts_load_typed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "en-US.yaml",
        &format!(
            "locale: en-US\nprompts:\n{ENGINE}  code:\n    say:\n      - \"Your code is \"\n      - {{ rate: slow, text: \"{{{{ code }}}}\" }}\n      - {{ break: 500ms }}\n      - {{ emphasis: strong, text: \"Do not share it.\" }}\n      - {{ rate: 80%, text: \"Goodbye.\" }}\n"
        ),
    );
    let (catalogs, diags, _) = load(dir.path());
    assert!(diags.is_empty(), "{diags:?}");
    let entry = &catalogs.get("en-US").expect("en-US").entries["code"];
    let PromptBody::Ssml(parts) = &entry.body else {
        panic!("not SSML: {:?}", entry.body)
    };
    assert_eq!(parts.len(), 5);
    assert!(matches!(&parts[0], Part::Text(_)));
    assert!(matches!(&parts[1], Part::Rate { rate, .. } if rate == "slow"));
    assert!(matches!(parts[2], Part::Break(d) if d.as_millis() == 500));
    assert!(matches!(&parts[3], Part::Emphasis { level, .. } if level == "strong"));
    assert!(matches!(&parts[4], Part::Rate { rate, .. } if rate == "80%"));
    assert_eq!(entry.params(), ["code"]);
    assert_eq!(
        entry
            .plain_text(&|p| (p == ["code"]).then(|| "42".to_string()))
            .as_deref(),
        Some("Your code is 42 Do not share it. Goodbye.")
    );
}

#[test]
fn a_bad_emphasis_rate_or_break_is_an_error_at_the_value() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "{ emphasis: loud, text: \"Hi.\" }",
            "5:21",
            "`emphasis` `loud` is not one of: strong, moderate, reduced",
        ),
        (
            "{ rate: faster, text: \"Hi.\" }",
            "5:17",
            "`rate` `faster` is not one of: x-slow, slow, medium, fast, x-fast, or a percentage 20% to 200%",
        ),
        (
            "{ rate: 250%, text: \"Hi.\" }",
            "5:17",
            "`rate` `250%` is not one of",
        ),
        (
            "{ break: 11s }",
            "5:18",
            "`break` must be 1ms to 10s, found 11000ms",
        ),
        ("{ break: 0ms }", "5:18", "`break` must be 1ms to 10s"),
        (
            "{ break: 1s, text: \"Hi.\" }",
            "5:28",
            "a `break` part takes no `text`",
        ),
        (
            "{ emphasis: strong, rate: slow, text: \"Hi.\" }",
            "5:9",
            "needs exactly one of `break`, `emphasis`, `rate`",
        ),
    ];
    for (part, at, message) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "en-US.yaml",
            &format!("locale: en-US\nprompts:\n  hi:\n    say:\n      - {part}\n"),
        );
        let (catalogs, diags, _) = load(dir.path());
        assert_eq!(diags.len(), 1, "{part}: {diags:?}");
        let d = &diags[0];
        assert_eq!(d.code, Code::InvalidValue, "{part}");
        assert_eq!(d.severity(), Severity::Error, "{part}");
        assert!(d.message.contains(message), "{part}: {}", d.message);
        let pos = format!("{}:{}", d.span.start.line, d.span.start.col);
        assert_eq!(&pos, at, "{part}: {}", d.message);
        assert!(
            !catalogs
                .get("en-US")
                .expect("en-US")
                .entries
                .contains_key("hi"),
            "{part}: a refused entry is not loaded"
        );
    }
    // A part with `emphasis` needs its words.
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "en-US.yaml",
        "locale: en-US\nprompts:\n  hi: { say: [ { emphasis: strong } ] }\n",
    );
    let (_, diags, _) = load(dir.path());
    assert_eq!(
        diags.iter().map(|d| d.code).collect::<Vec<_>>(),
        [Code::MissingField]
    );
}

#[test]
fn a_key_one_locale_lacks_is_an_error_naming_that_locale() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "en-US.yaml",
        &format!("locale: en-US\nprompts:\n{ENGINE}  greet: \"Hello.\"\n  bye: \"Goodbye.\"\n"),
    );
    write(
        dir.path(),
        "es-US.yaml",
        &format!("locale: es-US\nprompts:\n{ENGINE}  greet: \"Hola.\"\n"),
    );
    let (catalogs, diags, _) = load(dir.path());
    assert!(diags.is_empty(), "{diags:?}");
    let flow = "flow: hello\nstart: greet\nsettings:\n  max_call_seconds: 120\n  locales: [en-US, es-US]\nnodes:\n  greet:\n    say: greet\n    next: bye\n  bye:\n    hangup: { say: bye }\n";
    let compiled = compile("hello.yaml", flow, Some(&catalogs));
    let errors: Vec<&Diagnostic> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.severity() == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let d = errors[0];
    assert_eq!(d.code, Code::MissingPrompt);
    assert_eq!(d.message, "prompt `bye` is missing in es-US");
    assert_eq!((d.span.start.line, d.span.start.col), (11, 20));
    let es = dir.path().join("es-US.yaml").display().to_string();
    assert_eq!(d.notes, [format!("add it under `prompts:` in {es}")]);
}
