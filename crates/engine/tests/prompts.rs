//! What the engine says from a catalog: structured SSML parts kept typed (break, emphasis,
//! rate) with their parameters filled, a recording the catalog load found missing (W040)
//! spoken from its text instead of played, and each locale's own voice (else the flow's).

use crate::common;

use std::path::Path;

use common::{Call, Options, rig_with, said};
use resetline_engine::*;

const FLOW: &str = r#"flow: prompts-demo
start: lang
settings:
  max_call_seconds: 120
  locales: [en-US, es-US]
  voice: Polly.Matthew
nodes:
  lang:
    menu:
      say:
        - { prompt: warning, with: { who: "{{ call.locale }}" } }
        - hold
        - silent
        - chime
      keys:
        "1": { locale: en-US }
        "2": { locale: es-US }
      attempts: 1
    next: greet
    on: { exhausted: bye }
  greet:
    say: [greet, hold]
    next: bye
  bye:
    hangup: { say: bye }
"#;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn catalog(locale: &str, voice: &str, hold: &str, greet: &str) -> String {
    format!(
        "locale: {locale}\n{voice}prompts:\n  call_time_limit: \"Time.\"\n  technical_difficulty: \"Sorry.\"\n  call_not_found: \"Unknown.\"\n  hold: {{ play: missing.wav, text: \"{hold}\" }}\n  silent: {{ play: missing-too.wav }}\n  chime: {{ play: chime.wav, text: \"(chime)\" }}\n  greet: \"{greet}\"\n  bye: \"Bye.\"\n  warning:\n    say:\n      - \"Now \"\n      - {{ emphasis: moderate, text: \"listen\" }}\n      - {{ break: 2s }}\n      - {{ rate: x-slow, text: \"in {{{{ who }}}}\" }}\n"
    )
}

fn says(actions: &[Action]) -> Vec<(Vec<Spoken>, Option<String>)> {
    let mut out = Vec::new();
    for a in actions {
        match a {
            Action::Say { text, voice, .. } => out.push((text.clone(), voice.clone())),
            Action::Gather { prompts, .. } => out.extend(says(prompts)),
            _ => {}
        }
    }
    out
}

fn plays(actions: &[Action]) -> Vec<String> {
    let mut out = Vec::new();
    for a in actions {
        match a {
            Action::Play { url, .. } => out.push(url.clone()),
            Action::Gather { prompts, .. } => out.extend(plays(prompts)),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn ssml_parts_spoken_fallback_and_voice_per_locale() {
    let prompts = tempfile::tempdir().expect("tempdir");
    write(prompts.path(), "audio/chime.wav", "RIFF");
    write(
        prompts.path(),
        "en-US.yaml",
        &catalog("en-US", "", "Please hold.", "Hello."),
    );
    write(
        prompts.path(),
        "es-US.yaml",
        &catalog("es-US", "voice: Polly.Lupe\n", "Espere.", "Hola."),
    );
    let compiled = resetline_flow::compile("prompts-demo.yaml", FLOW, None);
    assert!(compiled.is_ok(), "{:?}", compiled.diagnostics);
    let rig = rig_with(
        Options {
            prompts: Some(prompts.path().to_path_buf()),
            ..Options::default()
        },
        compiled.flow.expect("flow"),
    );
    let (mut call, first) = Call::start(&rig, "CAprompts").await;
    let matthew = Some("Polly.Matthew".to_string());
    let text = |t: &str| Spoken::Text(t.to_string());
    assert_eq!(
        says(&first.actions),
        [
            (
                vec![
                    text("Now "),
                    Spoken::Emphasis {
                        level: "moderate".into(),
                        text: vec![text("listen")],
                    },
                    Spoken::Break(2000),
                    Spoken::Rate {
                        rate: "x-slow".into(),
                        text: vec![text("in "), text("en-US")],
                    },
                ],
                matthew.clone(),
            ),
            // `hold`'s recording is missing: its text, in the locale's voice.
            (vec![text("Please hold.")], matthew.clone()),
        ]
    );
    // `silent` is missing too and has no text: nothing. `chime` is on disk: played.
    assert_eq!(plays(&first.actions), ["/prompts/en-US/chime.wav"]);
    assert_eq!(said(&first), "Now listen in en-US | Please hold. | (chime)");

    let second = call.press("2").await;
    let lupe = Some("Polly.Lupe".to_string());
    assert_eq!(
        says(&second.actions),
        [
            (vec![text("Hola.")], lupe.clone()),
            (vec![text("Espere.")], lupe.clone()),
            (vec![text("Bye.")], lupe),
        ]
    );
    assert!(plays(&second.actions).is_empty());
}
