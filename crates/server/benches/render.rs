//! What turning a step's actions into its TwiML document costs: `render::twiml` on the
//! actions of a typical step (the Gather that asks for a PIN, with its prompt, and the
//! Redirect that follows it on a timeout). Compared with `signed_gather_step_in_process`
//! (`benches/webhook.rs`), it says what share of a step the TwiML writer is (issue 31: the
//! TwiML is written with quick-xml unless that costs more than 5 % of a step).
//!
//! Run: `cargo bench -p resetline-server --bench render`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use resetline_engine::{Action, Spoken};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The actions of a PIN prompt step, as the engine gives them.
fn pin_prompt() -> Vec<Action> {
    let say = |text: Vec<Spoken>| Action::Say {
        text,
        locale: "en-US".into(),
        voice: Some("Polly.Joanna".into()),
    };
    vec![
        Action::Gather {
            num_digits: None,
            finish_on: Some('#'),
            timeout_s: 8,
            action: "/voice/pin-reset/step/3".into(),
            prompts: vec![
                say(vec![
                    Spoken::Text("Thanks. For the account ending in".into()),
                    Spoken::Digits("4821".into()),
                    Spoken::Text(
                        "please enter your new PIN of four to eight digits, then press pound."
                            .into(),
                    ),
                ]),
                Action::Pause { seconds: 1 },
            ],
        },
        Action::Redirect {
            url: "/voice/pin-reset/step/3/timeout".into(),
        },
    ]
}

fn bench(c: &mut Criterion) {
    let actions = pin_prompt();
    c.bench_function("render_pin_prompt_step", |b| {
        b.iter(|| {
            black_box(resetline_server::render::twiml(
                black_box("https://ivr.example.com"),
                black_box(&actions),
            ))
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
