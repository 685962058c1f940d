//! Send caps fail closed (issue 22, finding 4): when the counter store behind the caps fails
//! or hangs, no code is sent, the call takes `code.send`'s `rate_limited` edge, and the
//! refusal is audited as `counter_store_unavailable`.

use crate::common;

use std::sync::Arc;

use common::{Call, Options, Rig, rig, said};
use resetline_engine::testing::BrokenCounters;

/// The reference flow with the counter store `broken`.
fn with_counters(broken: fn(Arc<resetline_engine::testing::CallLog>) -> BrokenCounters) -> Rig {
    let mut r = rig(Options {
        flow: "password-reset.yaml",
        ..Options::default()
    });
    r.engine.counters = Arc::new(broken(r.log.clone()));
    r
}

/// Identifies Dana and chooses a code by text message.
async fn ask_for_a_text(r: &Rig, sid: &str) -> resetline_engine::Step {
    let (mut call, _) = Call::start(r, sid).await;
    call.press("1").await;
    call.press("1004217").await;
    call.press("1").await
}

const REFUSED: &str = "Too many codes were sent to this number. Please choose another way. | To get a code by text message, press 1. By email, press 2. To use your current PIN, press 3.";

fn refusal_reasons(step: &resetline_engine::Step) -> Vec<String> {
    step.audit
        .iter()
        .filter(|e| e.event.as_str() == "excess_rate_limit_exceeded")
        .map(|e| e.reason.clone())
        .collect()
}

#[tokio::test]
async fn a_failing_counter_store_sends_no_code_and_takes_the_rate_limited_edge() {
    let r = with_counters(BrokenCounters::failing);
    let step = ask_for_a_text(&r, "CAfail1").await;
    assert_eq!(said(&step), REFUSED);
    assert!(r.messenger.sent().is_empty(), "no provider call");
    assert_eq!(r.log.count("send"), 0);
    assert!(r.log.count("counter") >= 1, "the cap was asked");
    assert_eq!(refusal_reasons(&step), vec!["counter_store_unavailable"]);
}

/// A store that never answers is cut by the engine's budget (paused clock: deterministic),
/// and the call goes on in time without a send.
#[tokio::test(start_paused = true)]
async fn a_hanging_counter_store_is_cut_by_the_budget_and_sends_no_code() {
    let r = with_counters(BrokenCounters::hanging);
    let started = tokio::time::Instant::now();
    let step = ask_for_a_text(&r, "CAhang1").await;
    assert_eq!(said(&step), REFUSED);
    assert!(r.messenger.sent().is_empty(), "no provider call");
    assert_eq!(refusal_reasons(&step), vec!["counter_store_unavailable"]);
    assert!(
        started.elapsed() < r.engine.step_budget,
        "answered within the step budget"
    );
}
