//! The checked shape of a flow: what the loader builds and the engine interprets.
//!
//! Every value that came from the file keeps its span. Defaults are filled in by the loader,
//! so the engine never has to know them. Invariant: a `Flow` only exists after the loader and
//! the checker found no error, so node ids in edges always resolve.

use std::collections::HashMap;

/// Node id -> position in `Flow::nodes`. Ids come from the flow file (the architects' own
/// input, checked), never from a caller, so a fast non-keyed hash is safe here; a step looks
/// nodes up a dozen times.
pub(crate) type NodeIndex = HashMap<String, usize, rustc_hash::FxBuildHasher>;
use std::time::Duration;

use crate::span::{Span, Spanned};
use crate::template::Template;

/// A loaded flow.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The file it came from, as named by the user.
    pub file: String,
    /// `flow:` id.
    pub id: Spanned<String>,
    /// `version:` label, if any.
    pub version: Option<String>,
    /// First 16 hex digits of the SHA-256 of the file without its `tests:` block: the version
    /// calls are pinned to (tests are not behaviour).
    pub digest: String,
    /// `description:`.
    pub description: Option<String>,
    /// `start:` node.
    pub start: Spanned<String>,
    /// `settings:`.
    pub settings: Settings,
    /// `policies:` by name.
    pub policies: Vec<Policy>,
    /// Every node, including those inside `secure` sections, in file order.
    pub nodes: Vec<Node>,
    pub(crate) index: NodeIndex,
    /// Nodes that failed to load (only in a flow with errors).
    pub(crate) broken: Vec<String>,
    /// Variables the broken nodes seem to bind.
    pub(crate) loose_vars: Vec<String>,
    /// The cases of `tests:` by name, each spanned at the case (its first line is the case's), so
    /// `resetline test` can say where a failing case is; empty without `tests:`.
    pub test_cases: Vec<Spanned<String>>,
    /// Node ids that the `tests:` cases expect visited or not, with the case's name, for the
    /// checker; the rest of `tests:` is the simulator's, never the engine's.
    pub(crate) test_nodes: Vec<(String, Spanned<String>)>,
}

impl Flow {
    /// The node with id `id`.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.index.get(id).and_then(|&i| self.nodes.get(i))
    }

    /// The policy named `name`.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name.value == name)
    }

    /// The version string calls are pinned to: `label+digest` or just the digest.
    pub fn version_key(&self) -> String {
        match &self.version {
            Some(v) => format!("{v}+{}", self.digest),
            None => self.digest.clone(),
        }
    }
}

/// `settings:`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Longest call in seconds (`None` only in a flow that failed the check).
    pub max_call_seconds: Option<Spanned<u32>>,
    /// Verifications needed before any `set_secret`.
    pub min_factors: Spanned<u32>,
    /// The locale a call starts in.
    pub default_locale: Spanned<String>,
    /// Locales offered.
    pub locales: Vec<Spanned<String>>,
    /// TTS voice.
    pub voice: Option<String>,
    /// Unknown, locked and disabled accounts take the same path.
    pub enumeration_safe: bool,
    /// Fallback for backend errors without their own edge.
    pub on_error: Option<Spanned<String>>,
    /// Recording pause behaviour.
    pub recording: Recording,
    /// The `settings:` key.
    pub span: Span,
}

/// How a `secure` section pauses recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recording {
    /// Silence or skip the paused interval.
    pub pause_behavior: PauseBehavior,
    /// What to do when the call has no recording.
    pub when_absent: WhenAbsent,
}

/// Twilio `PauseBehavior`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseBehavior {
    /// Paused time is silence in the recording.
    Silence,
    /// Paused time is cut from the recording.
    Skip,
}

/// A call without a recording to pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenAbsent {
    /// Nothing to pause: go on.
    Proceed,
    /// Take `pause_failed`.
    Fallback,
}

/// A named secret policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Its name.
    pub name: Spanned<String>,
    /// PIN (digits) or password.
    pub kind: SecretKind,
    /// Shortest accepted, with the span of the value (or the policy name when defaulted).
    pub min_length: Spanned<u32>,
    /// Longest accepted.
    pub max_length: u32,
    /// Patterns refused.
    pub reject: Vec<Rule>,
}

/// What kind of secret a policy governs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// Digits on the keypad.
    Pin,
    /// A password (generated mode, or typed via an alphabet scheme).
    Password,
}

/// A pattern a secret policy refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// All the same digit (`1111`).
    Repeated,
    /// Ascending or descending runs (`1234`, `9876`).
    Sequential,
    /// Keypad shapes (`2580`, `1397`).
    Keypad,
    /// The caller's ID, phone number or birth date.
    Personal,
    /// In the shipped list of common PINs.
    Common,
}

/// A prompt reference: one or more catalog prompts said in order.
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    /// The prompts.
    pub items: Vec<PromptItem>,
}

/// One catalog prompt with its parameters.
#[derive(Clone, Debug)]
pub struct PromptItem {
    /// The catalog key.
    pub key: Spanned<String>,
    /// Parameters passed to the catalog text.
    pub with: Vec<(Spanned<String>, Spanned<Template>)>,
}

/// A node.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its id, with the span of the key.
    pub id: Spanned<String>,
    /// What it does.
    pub kind: Kind,
    /// The span of the action key.
    pub kind_span: Span,
    /// The success path.
    pub next: Option<Spanned<String>>,
    /// Edges by outcome.
    pub on: Vec<Edge>,
    /// Visit limit.
    pub limit: Option<Limit>,
    /// The enclosing `secure` node, if any.
    pub section: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

impl Node {
    /// The edge for `outcome`, if written.
    pub fn on(&self, outcome: &str) -> Option<&Spanned<String>> {
        self.on
            .iter()
            .find(|e| e.outcome.value == outcome)
            .map(|e| &e.target)
    }
}

/// An `on:` edge.
#[derive(Clone, Debug)]
pub struct Edge {
    /// The outcome name.
    pub outcome: Spanned<String>,
    /// The target node.
    pub target: Spanned<String>,
}

/// `limit: { visits, then }`.
#[derive(Clone, Debug)]
pub struct Limit {
    /// Entries allowed.
    pub visits: u32,
    /// Where the call goes after that.
    pub then: Spanned<String>,
}

/// A digit count range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digits {
    /// Fewest digits.
    pub min: u32,
    /// Most digits.
    pub max: u32,
}

/// What a node does.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `say:`.
    Say(Prompt),
    /// `menu:`.
    Menu(Menu),
    /// `gather:`.
    Gather(Gather),
    /// `branch:`.
    Branch(Vec<Case>),
    /// `set:`.
    Set(Vec<(Spanned<String>, Spanned<Template>)>),
    /// `directory.find:`.
    DirectoryFind(DirectoryFind),
    /// `code.send:`.
    CodeSend(CodeSend),
    /// `code.verify:`.
    CodeVerify(CodeVerify),
    /// `pin.verify:`.
    PinVerify(PinVerify),
    /// `set_secret:`.
    SetSecret(SetSecret),
    /// `secure:`.
    Secure(Secure),
    /// `http:`.
    Http(Http),
    /// `ticket:`.
    Ticket(Ticket),
    /// `notify:`.
    Notify(Notify),
    /// `transfer:`.
    Transfer(Transfer),
    /// `hangup:`.
    Hangup(Hangup),
}

impl Kind {
    /// The action key of this kind.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Say(_) => "say",
            Kind::Menu(_) => "menu",
            Kind::Gather(_) => "gather",
            Kind::Branch(_) => "branch",
            Kind::Set(_) => "set",
            Kind::DirectoryFind(_) => "directory.find",
            Kind::CodeSend(_) => "code.send",
            Kind::CodeVerify(_) => "code.verify",
            Kind::PinVerify(_) => "pin.verify",
            Kind::SetSecret(_) => "set_secret",
            Kind::Secure(_) => "secure",
            Kind::Http(_) => "http",
            Kind::Ticket(_) => "ticket",
            Kind::Notify(_) => "notify",
            Kind::Transfer(_) => "transfer",
            Kind::Hangup(_) => "hangup",
        }
    }

    /// Whether the node waits for the caller (keys or a timed wait). A cycle through such a
    /// node cannot spin without the caller or the clock.
    pub fn takes_input(&self) -> bool {
        matches!(
            self,
            Kind::Menu(_) | Kind::Gather(_) | Kind::CodeVerify(_) | Kind::PinVerify(_)
        ) || matches!(self, Kind::SetSecret(s) if s.mode == SecretMode::Entered)
    }

    /// Whether the node collects a long-lived secret from the caller and so must sit in a
    /// `secure` section.
    pub fn collects_secret(&self) -> bool {
        match self {
            Kind::Gather(g) => g.secret,
            Kind::PinVerify(_) => true,
            Kind::SetSecret(s) => s.mode == SecretMode::Entered,
            _ => false,
        }
    }
}

/// `menu:`.
#[derive(Clone, Debug)]
pub struct Menu {
    /// The menu prompt.
    pub say: Prompt,
    /// The keys.
    pub keys: Vec<MenuKey>,
    /// Offers before giving up.
    pub attempts: u32,
    /// Wait for a key.
    pub timeout: Duration,
    /// Said after silence.
    pub no_input_say: Option<Prompt>,
    /// Said after an unknown key.
    pub no_match_say: Option<Prompt>,
}

/// One menu key.
#[derive(Clone, Debug)]
pub struct MenuKey {
    /// The DTMF key.
    pub key: Spanned<char>,
    /// Where it goes (else the node's `next`).
    pub next: Option<Spanned<String>>,
    /// Locale switch.
    pub locale: Option<Spanned<String>>,
    /// Variables set.
    pub set: Vec<(Spanned<String>, Spanned<Template>)>,
}

/// `gather:`.
#[derive(Clone, Debug)]
pub struct Gather {
    /// The prompt.
    pub say: Prompt,
    /// Accepted digit count.
    pub digits: Digits,
    /// The variable set.
    pub into: Spanned<String>,
    /// Finish key, `None` for none.
    pub finish_on: Option<char>,
    /// Silence before the first digit.
    pub first_digit_timeout: Duration,
    /// Silence between digits.
    pub inter_digit_timeout: Duration,
    /// Tries.
    pub attempts: u32,
    /// The digits are a secret.
    pub secret: bool,
    /// Said after silence.
    pub no_input_say: Option<Prompt>,
    /// Said after a wrong count.
    pub no_match_say: Option<Prompt>,
}

/// One `branch:` case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The variable tested.
    pub var: Spanned<String>,
    /// The test.
    pub test: Test,
    /// Where the call goes when it holds.
    pub next: Spanned<String>,
}

/// A condition's test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// Value equals.
    Equals(String),
    /// Value differs.
    NotEquals(String),
    /// Value is one of.
    In(Vec<String>),
    /// Value is none of.
    NotIn(Vec<String>),
    /// Variable is (or is not) set.
    Exists(bool),
}

/// Directory attribute searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupBy {
    /// Employee ID.
    EmployeeId,
    /// Username.
    Username,
    /// Phone number (a claim, never proof).
    Phone,
    /// Email.
    Email,
}

/// `directory.find:`.
#[derive(Clone, Debug)]
pub struct DirectoryFind {
    /// Attribute searched.
    pub by: LookupBy,
    /// Value searched.
    pub value: Spanned<Template>,
    /// Record variable.
    pub into: Spanned<String>,
}

/// Message channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// SMS.
    Sms,
    /// Email.
    Email,
}

/// `code.send:`.
#[derive(Clone, Debug)]
pub struct CodeSend {
    /// Channel.
    pub channel: Channel,
    /// Destination path (a record field).
    pub to: Spanned<String>,
    /// Digits.
    pub length: u32,
    /// Validity.
    pub ttl: Spanned<Duration>,
    /// Same-code resends allowed.
    pub resends: u32,
    /// Minimum time between sends.
    pub cooldown: Duration,
    /// Said after sending.
    pub say: Option<Prompt>,
}

/// `code.verify:`.
#[derive(Clone, Debug)]
pub struct CodeVerify {
    /// The `code.send` node.
    pub from: Spanned<String>,
    /// The prompt.
    pub say: Prompt,
    /// Wrong entries allowed.
    pub attempts: u32,
    /// Silence before the first digit.
    pub first_digit_timeout: Duration,
    /// Silence between digits.
    pub inter_digit_timeout: Duration,
    /// Comfort loop.
    pub wait: Option<Wait>,
}

/// The comfort loop.
#[derive(Clone, Debug)]
pub struct Wait {
    /// Hold audio.
    pub hold: Prompt,
    /// One round of hold.
    pub hold_for: Duration,
    /// The key menu.
    pub menu: Prompt,
    /// Keys.
    pub keys: Vec<(Spanned<char>, WaitKey)>,
    /// Total wait.
    pub give_up_after: Duration,
}

/// What a comfort-loop key does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitKey {
    /// Enter the code now.
    Enter,
    /// Send the same code again.
    Resend,
    /// Leave to another node.
    Goto(Spanned<String>),
}

/// `pin.verify:`.
#[derive(Clone, Debug)]
pub struct PinVerify {
    /// The prompt.
    pub say: Prompt,
    /// Record path.
    pub account: Spanned<String>,
    /// Accepted length.
    pub digits: Digits,
    /// Finish key.
    pub finish_on: Option<char>,
    /// Wrong entries allowed.
    pub attempts: u32,
    /// Silence before the first digit.
    pub first_digit_timeout: Duration,
    /// Silence between digits.
    pub inter_digit_timeout: Duration,
}

/// How `set_secret` obtains the new secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMode {
    /// Typed twice by the caller.
    Entered,
    /// Generated and delivered.
    Generated,
}

/// `set_secret:`.
#[derive(Clone, Debug)]
pub struct SetSecret {
    /// Policy name.
    pub policy: Spanned<String>,
    /// Record path.
    pub account: Spanned<String>,
    /// Entered or generated.
    pub mode: SecretMode,
    /// First prompt.
    pub say: Option<Prompt>,
    /// Confirmation prompt.
    pub confirm: Option<Prompt>,
    /// Refusals allowed.
    pub attempts: u32,
    /// Delivery of a generated secret.
    pub deliver: Option<(Channel, Spanned<String>)>,
}

/// `secure:`.
#[derive(Clone, Debug)]
pub struct Secure {
    /// First inner node.
    pub start: Spanned<String>,
    /// Inner node ids.
    pub nodes: Vec<String>,
}

/// A JSON body whose string leaves are templates.
#[derive(Clone, Debug)]
pub enum JsonTemplate {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A templated string.
    String(Spanned<Template>),
    /// An array.
    Array(Vec<JsonTemplate>),
    /// An object.
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Every string leaf with its JSON pointer.
    pub fn leaves(&self) -> Vec<(String, &Spanned<Template>)> {
        let mut out = Vec::new();
        let mut stack: Vec<(String, &JsonTemplate)> = vec![(String::new(), self)];
        while let Some((pointer, value)) = stack.pop() {
            match value {
                JsonTemplate::String(t) => out.push((pointer, t)),
                JsonTemplate::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        stack.push((format!("{pointer}/{i}"), v));
                    }
                }
                JsonTemplate::Object(fields) => {
                    for (k, v) in fields {
                        let k = k.replace('~', "~0").replace('/', "~1");
                        stack.push((format!("{pointer}/{k}"), v));
                    }
                }
                JsonTemplate::Null | JsonTemplate::Bool(_) | JsonTemplate::Number(_) => {}
            }
        }
        out
    }
}

/// `http:`.
#[derive(Clone, Debug)]
pub struct Http {
    /// Method.
    pub method: String,
    /// URL.
    pub url: Spanned<Template>,
    /// Headers.
    pub headers: Vec<(String, Spanned<Template>)>,
    /// Body.
    pub body: Option<JsonTemplate>,
    /// Body pointers allowed to carry secrets.
    pub secrets: Vec<Spanned<String>>,
    /// Response mapping: variable <- JSON pointer.
    pub map: Vec<(Spanned<String>, String)>,
    /// Per-try budget.
    pub timeout: Duration,
    /// Extra tries.
    pub retries: u32,
    /// Request signing.
    pub sign: Option<(String, String)>,
}

/// `ticket:`.
#[derive(Clone, Debug)]
pub struct Ticket {
    /// Close right after opening.
    pub close: bool,
    /// Short description.
    pub summary: Spanned<Template>,
    /// Longer description.
    pub details: Option<Spanned<Template>>,
    /// Category.
    pub category: Option<String>,
    /// Variable receiving `number`.
    pub into: Spanned<String>,
    /// Said after opening.
    pub say: Option<Prompt>,
}

/// `notify:`.
#[derive(Clone, Debug)]
pub struct Notify {
    /// Channel.
    pub channel: Channel,
    /// Destination path.
    pub to: Spanned<String>,
    /// Message.
    pub message: Prompt,
}

/// Where `transfer` sends the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferTo {
    /// `<Enqueue>` into a queue.
    Queue(String),
    /// `<Dial><Number>`.
    Number(String),
}

/// `transfer:`.
#[derive(Clone, Debug)]
pub struct Transfer {
    /// Said first.
    pub say: Option<Prompt>,
    /// Destination.
    pub to: TransferTo,
    /// Hold music URL while queued.
    pub wait: Option<String>,
}

/// `hangup:`.
#[derive(Clone, Debug)]
pub struct Hangup {
    /// Said first.
    pub say: Option<Prompt>,
    /// Audit outcome.
    pub outcome: Option<String>,
}
