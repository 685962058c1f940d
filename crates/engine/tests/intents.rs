//! An irreversible effect is journaled before it happens, and does not happen when its intent
//! cannot be recorded (issue 22, finding 9): credential changes, codes, notices and generated
//! passwords, through the shipped flows and the engine's journal.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Call, Options, rig, said};
use resetline_engine::testing::{CallLog, MemoryAudit};
use resetline_engine::*;

/// A journal that logs each record it takes into the backends' call log (so the log shows
/// whether an intent came before the backend call), then keeps it in memory.
#[derive(Debug)]
struct Logged(Arc<CallLog>, MemoryAudit);

impl AuditSink for Logged {
    fn append(
        &self,
        records: Vec<resetline_audit::Record>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        for r in &records {
            self.0.push(format!("journal {} {}", r.event, r.outcome));
        }
        self.1.append(records)
    }
}

/// A journal that never answers.
#[derive(Debug)]
struct Hung;

impl AuditSink for Hung {
    fn append(&self, _: Vec<resetline_audit::Record>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(std::future::pending())
    }
}

/// The pin-reset call up to the confirmation of the new PIN.
async fn to_confirmation<'r>(r: &'r common::Rig, sid: &str) -> Call<'r> {
    let (mut call, _) = Call::start(r, sid).await;
    call.press("1004217").await;
    call.press("27182818").await;
    let step = call.press("48319273").await;
    assert_eq!(said(&step), "Please enter the new PIN again.");
    call
}

#[tokio::test]
async fn a_pin_change_is_journaled_before_the_directory_changes_it() {
    let log = Arc::new(CallLog::default());
    let journal = Arc::new(Logged(log.clone(), MemoryAudit::default()));
    let mut r = rig(Options {
        journal: Some(journal.clone()),
        ..Options::default()
    });
    // The rig's backends log into their own call log: share the journal's.
    r.engine.directory = Arc::new(resetline_engine::testing::MemoryDirectory::new(
        vec![resetline_engine::testing::MemoryDirectory::dana()],
        log.clone(),
    ));
    let mut call = to_confirmation(&r, "CAj1").await;
    let step = call.press("48319273").await;
    assert_eq!(said(&step), "Your PIN has been changed. Goodbye.");
    let entries = log.entries();
    let intent = entries
        .iter()
        .position(|e| e == "journal authn_password_change intent")
        .expect("the intent was journaled");
    let set = entries
        .iter()
        .position(|e| e.starts_with("set "))
        .expect("the PIN was set");
    assert!(intent < set, "intent first: {entries:?}");
    // The step's earlier records went with the intent; the outcome is the caller's to append.
    let journaled = &step.audit[..step.journaled];
    assert_eq!(journaled.last().map(|r| r.outcome.as_str()), Some("intent"));
    let rest = &step.audit[step.journaled..];
    let outcome = rest
        .iter()
        .find(|r| r.event.as_str() == "authn_password_change")
        .expect("outcome");
    assert_eq!(outcome.outcome.as_str(), "success");
    let id = journaled.last().and_then(|r| r.id).expect("id").to_string();
    assert_eq!(outcome.details.get("intent"), Some(&id));
    assert_eq!(
        journal.1.records().len(),
        step.journaled,
        "only the journaled records were written by the engine"
    );
}

#[tokio::test]
async fn no_pin_is_set_when_its_intent_cannot_be_recorded() {
    for (journal, what) in [
        (
            Arc::new(MemoryAudit::failing()) as Arc<dyn AuditSink>,
            "failing",
        ),
        (Arc::new(Hung), "hung"),
    ] {
        let r = rig(Options {
            journal: Some(journal),
            budgets: Some((Duration::from_millis(200), Duration::from_secs(2))),
            ..Options::default()
        });
        let mut call = to_confirmation(&r, "CAj2").await;
        let step = call.press("48319273").await;
        assert_eq!(
            r.log.count("set"),
            0,
            "{what}: no change without a recorded intent"
        );
        assert!(
            said(&step).ends_with("Please hold while I transfer you to the service desk."),
            "{what}: the flow's error path: {}",
            said(&step)
        );
        let fail = step
            .audit
            .iter()
            .find(|e| e.event.as_str() == "authn_password_change_fail")
            .expect("the refusal is audited");
        assert_eq!(
            (fail.outcome.as_str(), fail.reason.as_str()),
            ("error", "audit_unavailable"),
            "{what}"
        );
        assert!(fail.details.contains_key("intent"), "{what}");
    }
}

#[tokio::test]
async fn no_code_is_sent_when_its_intent_cannot_be_recorded() {
    let r = rig(Options {
        flow: "password-reset.yaml",
        journal: Some(Arc::new(MemoryAudit::failing())),
        ..Options::default()
    });
    let (mut call, _) = Call::start(&r, "CAj3").await;
    call.press("1").await;
    call.press("1004217").await;
    let step = call.press("1").await;
    assert!(
        r.messenger.sent().is_empty(),
        "no SMS without a recorded intent"
    );
    let token = step
        .audit
        .iter()
        .find(|e| e.event.as_str() == "authn_token_created" && e.outcome.as_str() != "intent")
        .expect("audited");
    assert_eq!(
        (token.outcome.as_str(), token.reason.as_str()),
        ("error", "audit_unavailable")
    );
    assert!(!said(&step).is_empty(), "the caller hears a next step");
}

/// A journal that refuses intents of one event and keeps everything else.
#[derive(Debug, Default)]
struct RefusesIntentsOf(&'static str, MemoryAudit);

impl AuditSink for RefusesIntentsOf {
    fn append(
        &self,
        records: Vec<resetline_audit::Record>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        let refused = records
            .iter()
            .any(|r| r.event.as_str() == self.0 && r.outcome.as_str() == "intent");
        if refused {
            return Box::pin(async { Err(BackendError::new("audit", "disk full")) });
        }
        self.1.append(records)
    }
}

#[tokio::test]
async fn no_generated_password_leaves_when_its_intent_cannot_be_recorded() {
    let journal = Arc::new(RefusesIntentsOf(
        "authn_password_change",
        MemoryAudit::default(),
    ));
    let r = rig(Options {
        flow: "generated.yaml",
        journal: Some(journal.clone()),
        ..Options::default()
    });
    let (mut call, _) = Call::start(&r, "CAj4").await;
    call.press("1004217").await;
    let code = r
        .messenger
        .last_code()
        .expect("the code's intent was recorded");
    let step = call.press(&code).await;
    assert_eq!(
        r.messenger.sent().len(),
        1,
        "only the code left, no password"
    );
    assert_eq!(r.log.count("set"), 0);
    assert!(
        said(&step).starts_with("We couldn't send your new password"),
        "{}",
        said(&step)
    );
    let fail = step
        .audit
        .iter()
        .find(|e| e.event.as_str() == "authn_password_change_fail")
        .expect("audited");
    assert_eq!(fail.reason, "audit_unavailable");
}
