//! Prompts as the carrier receives them, through `app(state)`: each locale's own voice on every
//! `<Say>`, a recording missing on disk spoken with text-to-speech instead of played, and
//! structured SSML (break, emphasis, prosody rate) rendered with every text escaped, so hostile
//! text in a catalog or a parameter never becomes markup.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use resetline_engine::testing::{CallLog, MemoryAudit, MemoryDirectory};
use resetline_engine::{FakeClock, Secret};
use resetline_server::{AppState, Registry, ReloadResult, app};
use resetline_store::MemoryStore;
use resetline_testkit::webhook::{Signed, form};
use tower::ServiceExt;

const PUBLIC: &str = "https://ivr.example.com";
const TOKEN: &str = "12345";
const SID: &str = "CA0123456789abcdef0123456789abcdef";

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
        - choose
        - { prompt: warning, with: { who: "</emphasis><break time='99s'/>&" } }
        - hold
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

/// Engine prompts and the flow's, in one locale; `hold` plays a file that is not on disk.
fn catalog(locale: &str, voice: &str, words: [&str; 5]) -> String {
    let [choose, hold, greet, bye, warning] = words;
    format!(
        "locale: {locale}\n{voice}prompts:\n  call_time_limit: \"Time.\"\n  technical_difficulty: \"Sorry.\"\n  call_not_found: \"Unknown.\"\n  choose: \"{choose}\"\n  hold: {{ play: missing.wav, text: \"{hold}\" }}\n  chime: {{ play: chime.wav, text: \"(chime)\" }}\n  greet: \"{greet}\"\n  bye: \"{bye}\"\n  warning:\n    say:\n      - {{ emphasis: strong, text: \"{warning}\" }}\n      - {{ break: 750ms }}\n      - {{ rate: 80%, text: \"{{{{ who }}}} <prosody rate='x-fast'>\" }}\n"
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn state(flows: &Path, prompts: &Path) -> AppState {
    let log = Arc::new(CallLog::default());
    let clock = Arc::new(FakeClock::at(1_700_000_000_000));
    let engine = resetline_engine::testing::engine(
        vec![MemoryDirectory::dana()],
        &log,
        clock.clone(),
        Arc::new(resetline_store::MemoryLockouts::new()),
    );
    let registry = Arc::new(Registry::default());
    let results = registry.load_dir(flows, prompts);
    assert!(
        matches!(&results[..], [ReloadResult::Installed { flow, .. }] if flow == "prompts-demo"),
        "a missing recording is a warning, not a refusal: {results:?}"
    );
    AppState::new(
        PUBLIC,
        Secret::new(TOKEN),
        engine,
        registry,
        Arc::new(MemoryStore::new(clock, 100)),
        Arc::new(MemoryAudit::default()),
        prompts.to_path_buf(),
    )
}

async fn post(state: &AppState, path: &str, params: &[(&str, &str)]) -> String {
    let signature = Signed::new(TOKEN, PUBLIC, path, params).signature;
    let req = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(Body::from(form(params)))
        .expect("request");
    let resp = app(state.clone()).oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn voices_per_locale_spoken_fallback_and_escaped_ssml_in_the_twiml() {
    let flows = tempfile::tempdir().expect("tempdir");
    let prompts = tempfile::tempdir().expect("tempdir");
    write(flows.path(), "prompts-demo.yaml", FLOW);
    write(prompts.path(), "audio/chime.wav", "RIFF");
    // en-US sets no voice (the flow's `settings.voice` speaks); es-US its own.
    write(
        prompts.path(),
        "en-US.yaml",
        &catalog(
            "en-US",
            "",
            [
                "Press 1 or 2.",
                "Please hold.",
                "Hello.",
                "Goodbye.",
                "Careful </emphasis>",
            ],
        ),
    );
    write(
        prompts.path(),
        "es-US.yaml",
        &catalog(
            "es-US",
            "voice: Polly.Lupe\n",
            [
                "Oprima 1 o 2.",
                "Espere, por favor.",
                "Hola.",
                "Adiós.",
                "Cuidado",
            ],
        ),
    );
    let state = state(flows.path(), prompts.path());

    let first = post(
        &state,
        "/voice/prompts-demo",
        &[
            ("CallSid", SID),
            ("From", "+15555550100"),
            ("To", "+15555550000"),
        ],
    )
    .await;
    let en = "<Say language=\"en-US\" voice=\"Polly.Matthew\">";
    // The menu's prompts, in order: text; SSML with the catalog's and the parameter's hostile
    // text escaped inside the only markup there is; the missing recording spoken; the
    // recording on disk played.
    let expected = format!(
        "{en}Press 1 or 2.</Say>\
         {en}<emphasis level=\"strong\">Careful &lt;/emphasis&gt;</emphasis><break time=\"750ms\" /><prosody rate=\"80%\">&lt;/emphasis&gt;&lt;break time='99s'/&gt;&amp; &lt;prosody rate='x-fast'&gt;</prosody></Say>\
         {en}Please hold.</Say>\
         <Play>{PUBLIC}/prompts/en-US/chime.wav</Play></Gather>"
    );
    assert!(first.contains(&expected), "{first}");
    assert!(!first.contains("missing.wav"), "{first}");
    assert_eq!(first.matches("<emphasis").count(), 1, "{first}");
    assert_eq!(first.matches("<prosody").count(), 1, "{first}");
    assert_eq!(first.matches("<break").count(), 1, "{first}");

    // Español: every <Say> carries es-US's own voice, the missing recording spoken in Spanish.
    let next = resetline_engine::testing::next_action(&first).expect("a Gather");
    let second = post(&state, &next, &[("CallSid", SID), ("Digits", "2")]).await;
    let es = "<Say language=\"es-US\" voice=\"Polly.Lupe\">";
    assert!(
        second.contains(&format!(
            "{es}Hola.</Say>{es}Espere, por favor.</Say>{es}Adi&#243;s.</Say><Hangup />"
        )),
        "{second}"
    );
    assert!(!second.contains("Polly.Matthew"), "{second}");
    assert!(!second.contains("<Play>"), "{second}");
}
