//! Step tokens (issue 22, finding 5): each step's token is a fresh 64-bit value from the
//! injected CSPRNG, kept in that call's session, so a webhook captured from one call (or from
//! a previous process) never advances another; a retried webhook still gets its answer again
//! with no effect (security.md check 34), and anything else stale is refused and audited.

use crate::common;

use common::{Call, Options, said};
use resetline_engine::*;

fn rig() -> common::Rig {
    common::rig(Options::default())
}

/// `digits` typed, posted with step token `token`.
fn typed(token: u64, digits: &str) -> Event {
    Event::Digits {
        token,
        digits: Secret::new(digits),
    }
}

/// The tokens a call's answers name, in order: every action URL carries the session's token.
fn token_in(step: &Step) -> u64 {
    let url = step
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Gather { action, .. } => Some(action.clone()),
            _ => None,
        })
        .expect("an answer with a Gather");
    url.rsplit('/')
        .next()
        .and_then(|t| t.parse().ok())
        .expect("a numeric step token")
}

#[tokio::test]
async fn step_tokens_are_random_64_bit_values_not_a_count() {
    let r = rig();
    let mut firsts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for n in 0..64 {
        let (mut call, step) = Call::start(&r, &format!("CA{n:032}")).await;
        let first = token_in(&step);
        assert_eq!(
            first, call.session.token,
            "the URL carries the session's token"
        );
        let step = call.press("1004217").await;
        let second = token_in(&step);
        for t in [first, second] {
            assert_ne!(t, 0, "0 only ever means the first webhook");
            assert!(seen.insert(t), "a token came up twice: {t}");
        }
        assert_ne!(second, first.wrapping_add(1), "not the next number");
        firsts.push(first);
    }
    // Every bit of the 64 is set in some token and clear in another: not a count from 0, and
    // not a narrower random value (a bit never set in 64 fair draws: one chance in 2^64).
    let any = firsts.iter().fold(0u64, |acc, t| acc | t);
    let all = firsts.iter().fold(u64::MAX, |acc, t| acc & t);
    assert_eq!(any, u64::MAX, "{firsts:?}");
    assert_eq!(all, 0, "{firsts:?}");
}

#[tokio::test]
async fn a_token_from_one_call_never_advances_another() {
    let r = rig();
    let (mut a, _) = Call::start(&r, "CAa").await;
    let (mut b, _) = Call::start(&r, "CAb").await;
    let waiting = b.session.clone();
    // B posted with A's token: refused, audited, answered with B's own last answer.
    let stolen = a.session.token;
    let step = r
        .engine
        .step(&r.flow, &mut b.session, typed(stolen, "1004217"))
        .await;
    assert!(step.replayed, "nothing ran");
    let mut unchanged = waiting.clone();
    unchanged.pending_audit = Vec::new();
    assert_eq!(b.session, unchanged, "call B did not move");
    assert!(r.log.entries().is_empty(), "no backend was called");
    let refused: Vec<_> = step
        .audit
        .iter()
        .map(|e| {
            (
                e.event.as_str(),
                e.outcome.as_str(),
                e.reason.as_str(),
                e.call_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        vec![(
            "input_validation_fail",
            "failure",
            "stale_step_token",
            "CAb"
        )]
    );
    // Both calls still go on with their own tokens.
    assert!(said(&b.press("1004217").await).contains("current PIN"));
    assert!(said(&a.press("1004217").await).contains("current PIN"));
}

#[tokio::test]
async fn the_same_webhook_twice_replays_the_same_answer_and_runs_nothing_again() {
    let r = rig();
    let (mut call, start) = Call::start(&r, "CAretry").await;
    // The first webhook again.
    let again = r
        .engine
        .step(&r.flow, &mut call.session, Event::Start)
        .await;
    assert!(again.replayed && again.audit.is_empty());
    assert_eq!(again.actions, start.actions);

    let token = call.session.token;
    let first = r
        .engine
        .step(&r.flow, &mut call.session, typed(token, "1004217"))
        .await;
    let retry = r
        .engine
        .step(&r.flow, &mut call.session, typed(token, "1004217"))
        .await;
    assert!(!first.replayed && retry.replayed);
    assert_eq!(retry.actions, first.actions, "the identical answer");
    assert!(retry.audit.is_empty(), "a retry is no refusal");
    assert_eq!(r.log.count("find"), 1, "one lookup");
    assert_eq!(r.log.count("recording"), 1, "one pause");

    // After the call ended, its last webhook retried still gets the last answer; an older one
    // is refused as a step of an ended call.
    let older = token;
    call.press("27182818").await;
    call.press("48319273").await;
    let last_token = call.session.token;
    let goodbye = call.press("48319273").await;
    assert!(said(&goodbye).contains("Goodbye"), "{}", said(&goodbye));
    let retry = r
        .engine
        .step(&r.flow, &mut call.session, typed(last_token, "48319273"))
        .await;
    assert_eq!(retry.actions, goodbye.actions);
    assert!(retry.replayed && retry.audit.is_empty());
    let stale = r
        .engine
        .step(&r.flow, &mut call.session, typed(older, "1004217"))
        .await;
    assert!(stale.replayed);
    assert_eq!(
        stale
            .audit
            .iter()
            .map(|e| e.reason.as_str())
            .collect::<Vec<_>>(),
        vec!["ended_call"]
    );
    assert_eq!(r.log.count("set"), 1, "the PIN was set once");
}

/// No randomness, no token: the call ends with the technical-difficulty apology at once (a
/// predictable token is never issued).
#[tokio::test]
async fn without_randomness_a_call_ends_with_an_apology_instead_of_a_guessable_token() {
    #[derive(Debug)]
    struct Broken;
    impl Random for Broken {
        fn fill(&self, _: &mut [u8]) -> Result<(), clock::RandomError> {
            Err(clock::RandomError)
        }
    }
    let r = rig();
    let engine = Engine {
        random: std::sync::Arc::new(Broken),
        ..r.engine.clone()
    };
    let mut s = engine.new_session(&r.flow, "CAnorandom", "+15555550100");
    let step = engine.step(&r.flow, &mut s, Event::Start).await;
    assert_eq!(
        step.actions.last(),
        Some(&Action::Hangup),
        "{}",
        said(&step)
    );
    assert!(said(&step).contains("went wrong"), "{}", said(&step));
    assert_eq!(s.ended.as_deref(), Some("error"));
}
