//! security.md check 2: no sequence of webhooks reaches `set_secret` for an account with fewer
//! successful verifications *of that account* than the flow's `min_factors`. A property test:
//! random callers (IDs of two accounts and unknown ones, right and wrong PINs, the code last
//! texted and wrong codes, new PINs, menu keys, silence, the clock moving on) drive the engine with its
//! test doubles through the shipped flows and `tests/flows/reidentify.yaml` (which lets a
//! caller verify one account and then identify another). Ground truth comes from outside the
//! engine: the directory's own PIN answers and the codes the caller typed from the texts it
//! received; every new secret the directory is asked to set must be backed by it.

use crate::common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::{Call, Options, rig_with};
use proptest::prelude::*;
use resetline_engine::testing::{CallLog, MemoryDirectory, MemoryUser};
use resetline_engine::*;
use resetline_flow::model::{Kind, LookupBy};

const A: &str = "1004217";
const A_PIN: &str = "27182818";
const B: &str = "1004218";
const B_PIN: &str = "31415926";
const B_MOBILE: &str = "+15555550188";
const NEW_PIN: &str = "48319273";

/// What happened, in order: what the caller proved and what the directory was asked to set.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fact {
    /// The directory said this account's PIN was right.
    PinRight(String),
    /// The caller typed a code that was texted to this account's number, for the first time.
    CodeTyped(String),
    /// The directory was asked to set this account's secret.
    Set(String),
}

type Facts = Arc<Mutex<Vec<Fact>>>;

fn note(facts: &Facts, fact: Fact) {
    if let Ok(mut f) = facts.lock() {
        f.push(fact);
    }
}

/// The in-memory directory, with every PIN answer and every set written down.
#[derive(Debug)]
struct Watched {
    inner: MemoryDirectory,
    facts: Facts,
}

impl Directory for Watched {
    fn find<'a>(
        &'a self,
        by: LookupBy,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, BackendError>> {
        self.inner.find(by, value)
    }

    fn verify_pin<'a>(
        &'a self,
        account: &'a str,
        pin: &'a Secret,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let right = self.inner.verify_pin(account, pin).await?;
            if right {
                note(&self.facts, Fact::PinRight(account.to_string()));
            }
            Ok(right)
        })
    }

    fn set_secret<'a>(
        &'a self,
        account: &'a str,
        secret: &'a Secret,
    ) -> BoxFuture<'a, Result<(), SetSecretError>> {
        Box::pin(async move {
            note(&self.facts, Fact::Set(account.to_string()));
            self.inner.set_secret(account, secret).await
        })
    }
}

/// One thing the caller (or the clock) does.
#[derive(Clone, Debug)]
enum Act {
    Keys(&'static str),
    /// The code of the latest text message received, whichever account it was for.
    LatestCode,
    /// A new PIN typed twice (what `set_secret` asks for).
    NewPinTwice,
    Silence,
    Wait(u64),
}

/// What a caller might do at a node of this kind: mostly what it asks for, right or wrong
/// (another account's PIN, an old code, a wrong ID), sometimes something else entirely. Random
/// choices among these reach `set_secret` far more often than blind keys, so the property is
/// tested where it matters.
fn choices(kind: Option<&Kind>) -> Vec<Act> {
    use Act::*;
    let mut out = match kind {
        Some(Kind::Gather(_)) => vec![Keys(A), Keys(B), Keys("1009999")],
        Some(Kind::Menu(_)) => vec![Keys("1"), Keys("2"), Keys("3"), Keys("4")],
        Some(Kind::CodeVerify(_)) => vec![
            LatestCode,
            LatestCode,
            Keys("000000"),
            Keys("1"),
            Keys("2"),
            Keys("3"),
            Wait(31),
            Wait(601),
        ],
        Some(Kind::PinVerify(_)) => vec![Keys(A_PIN), Keys(B_PIN), Keys("11112222")],
        Some(Kind::SetSecret(_)) => vec![NewPinTwice, NewPinTwice, Keys("1234")],
        _ => vec![Wait(200)],
    };
    out.extend([Silence, LatestCode]);
    out
}

fn users() -> Vec<MemoryUser> {
    let a = MemoryDirectory::dana();
    let mut b = a.clone();
    b.account.id = B.into();
    b.account.name = "Sam Lee".into();
    b.account.mobile = Some(B_MOBILE.into());
    b.account.email = Some("sam@example.com".into());
    b.pin = Secret::new(B_PIN);
    assert_eq!(a.pin.expose(), A_PIN);
    vec![a, b]
}

/// The account whose number a text went to.
fn owner(to: &str) -> Option<&'static str> {
    match to {
        "+15555550199" | "dana@example.com" => Some(A),
        B_MOBILE | "sam@example.com" => Some(B),
        _ => None,
    }
}

/// Runs one caller through `flow`, the `n`-th choice picking among [`choices`] at the node
/// the call is at; returns the facts in order.
async fn run_choices(flow: &resetline_flow::Flow, picks: &[u8]) -> Vec<Fact> {
    run(flow, Script::Picks(picks)).await
}

/// A caller: fixed acts, or picks among [`choices`] where the call is.
enum Script<'a> {
    Acts(&'a [Act]),
    Picks(&'a [u8]),
}

/// Runs one caller through `flow`; returns the facts in order.
async fn run(flow: &resetline_flow::Flow, script: Script<'_>) -> Vec<Fact> {
    let facts: Facts = Arc::default();
    let log = Arc::new(CallLog::default());
    let directory = Watched {
        inner: MemoryDirectory::new(users(), log),
        facts: facts.clone(),
    };
    let rig = rig_with(
        Options {
            directory: Some(Arc::new(directory)),
            ..Options::default()
        },
        flow.clone(),
    );
    let (mut call, _) = Call::start(&rig, "CAprop").await;
    let mut typed: HashSet<String> = HashSet::new();
    let steps = match script {
        Script::Acts(acts) => acts.len(),
        Script::Picks(picks) => picks.len(),
    };
    for i in 0..steps {
        if call.session.ended.is_some() {
            break;
        }
        let a = match script {
            Script::Acts(acts) => acts[i].clone(),
            Script::Picks(picks) => {
                let options = choices(flow.node(&call.session.node).map(|n| &n.kind));
                options[usize::from(picks[i]) % options.len()].clone()
            }
        };
        match &a {
            Act::Keys(k) => {
                call.press(k).await;
            }
            Act::LatestCode => {
                let Some(last) = rig.messenger.sent().pop() else {
                    continue;
                };
                let Some(code) = rig.messenger.last_code() else {
                    continue;
                };
                if let Some(account) = owner(&last.to)
                    && typed.insert(code.clone())
                {
                    note(&facts, Fact::CodeTyped(account.to_string()));
                }
                call.press(&code).await;
            }
            Act::NewPinTwice => {
                call.press(NEW_PIN).await;
                call.press(NEW_PIN).await;
            }
            Act::Silence => {
                call.silence().await;
            }
            Act::Wait(secs) => rig.clock.advance(std::time::Duration::from_secs(*secs)),
        }
    }
    facts.lock().map(|f| f.clone()).unwrap_or_default()
}

/// The first `Set` not backed by `min` proofs of its own account, if any.
fn unbacked(facts: &[Fact], min: u32) -> Option<String> {
    let mut proofs: Vec<&str> = Vec::new();
    for f in facts {
        match f {
            Fact::PinRight(a) | Fact::CodeTyped(a) => proofs.push(a),
            Fact::Set(a) => {
                let have = proofs.iter().filter(|p| **p == a.as_str()).count();
                if have < min as usize {
                    return Some(format!(
                        "{a}'s secret set with {have} proof(s) of it: {facts:?}"
                    ));
                }
            }
        }
    }
    None
}

/// A runtime for one test (proptest cases are plain functions).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn flows() -> Vec<resetline_flow::Flow> {
    ["password-reset.yaml", "pin-reset.yaml", "reidentify.yaml"]
        .into_iter()
        .map(common::flow)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_webhook_sequence_sets_a_secret_without_verifying_that_account(
        picks in prop::collection::vec(any::<u8>(), 1..48)
    ) {
        let runtime = runtime();
        for flow in flows() {
            let min = flow.settings.min_factors.value;
            let facts = runtime.block_on(run_choices(&flow, &picks));
            prop_assert_eq!(unbacked(&facts, min), None, "flow {}", flow.id.value);
        }
    }
}

/// The property has teeth: a run that reaches `set_secret` exists for every flow (a random
/// search that never got there would prove nothing), and a set without a proof is named.
#[test]
fn the_property_reaches_set_secret_and_names_an_unbacked_one() {
    let runtime = runtime();
    let runs: [(&str, Vec<Act>); 3] = [
        (
            "password-reset.yaml",
            vec![
                Act::Keys("1"),
                Act::Keys(A),
                Act::Keys("3"),
                Act::Keys(A_PIN),
            ],
        ),
        ("pin-reset.yaml", vec![Act::Keys(A), Act::Keys(A_PIN)]),
        (
            "reidentify.yaml",
            vec![
                Act::Keys(A),
                Act::Keys("1"),
                Act::LatestCode,
                Act::Keys("1"),
            ],
        ),
    ];
    for (name, mut acts) in runs {
        acts.push(Act::NewPinTwice);
        let facts = runtime.block_on(run(&common::flow(name), Script::Acts(&acts)));
        assert!(facts.contains(&Fact::Set(A.into())), "{name}: {facts:?}");
        assert_eq!(unbacked(&facts, 1), None, "{name}");
    }
    let b_by_a = [Fact::PinRight(A.into()), Fact::Set(B.into())];
    assert!(unbacked(&b_by_a, 1).is_some());
}

/// The attack the property looks for, spelled out: A's code texted, the caller identifies as
/// B and types A's code at the code check ("I already have a code"), then asks for a new PIN.
#[test]
fn a_code_texted_to_one_account_never_verifies_another() {
    use Act::*;
    let runtime = runtime();
    let acts = [
        Keys(A),
        Keys("1"),
        Keys("3"),
        Keys("3"),
        Keys(B),
        Keys("4"),
        LatestCode,
        Keys("1"),
        NewPinTwice,
    ];
    let facts = runtime.block_on(run(&common::flow("reidentify.yaml"), Script::Acts(&acts)));
    assert_eq!(
        facts,
        vec![Fact::CodeTyped(A.into())],
        "B's secret is never set"
    );
}

/// What the engine does with a flow the checker refuses with E018 (say, checked by an older
/// release): a PIN check of A, then B identified, then `set_secret`. The engine itself keeps
/// verifications per account, so B's secret is not set.
#[test]
fn a_pin_check_of_one_account_never_lets_the_call_set_anothers_secret() {
    use Act::*;
    let text = std::fs::read_to_string(
        common::root().join("tests/check/E018-verified-account-changed.yaml"),
    )
    .expect("fixture");
    let compiled = resetline_flow::compile("E018.yaml", &text, None);
    assert!(
        compiled
            .diagnostics
            .iter()
            .all(|d| d.code == resetline_flow::Code::TooFewFactors),
        "{:?}",
        compiled.diagnostics
    );
    let flow = compiled.flow.expect("flow");
    let runtime = runtime();
    let acts = [
        Keys(A),
        Keys(A_PIN),
        Keys("2"),
        Keys(B),
        Keys("1"),
        NewPinTwice,
    ];
    let facts = runtime.block_on(run(&flow, Script::Acts(&acts)));
    assert_eq!(
        facts,
        vec![Fact::PinRight(A.into())],
        "B's secret is never set"
    );
}
