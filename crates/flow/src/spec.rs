//! The language's vocabulary as data: every node kind, its fields, their types and defaults,
//! and the outcomes each kind can produce.
//!
//! One table serves three readers, so they cannot drift apart: the loader (unknown fields and
//! "did you mean"), the JSON Schema generator (`resetline schema`, editor completion), and a
//! test that `docs/flow-language.md` mentions every kind and field.

/// The type of a field, as far as the schema and the loader care.
#[derive(Debug)]
pub enum Ty {
    /// Free text.
    Str,
    /// An identifier: lowercase letters, digits, `_`.
    Ident,
    /// A flow id: lowercase letters, digits, `-`, `_` (it appears in URLs).
    FlowId,
    /// A flow variable path such as `user.mobile`.
    Path,
    /// Text with `{{ var | filter }}` expressions.
    Template,
    /// An integer in a range.
    Int(u32, u32),
    /// `true` or `false`.
    Bool,
    /// A duration: `500ms`, `5s`, `10m`, `1h`, or a whole number of seconds.
    Duration,
    /// A digit count `6` or range `6..8`.
    Digits,
    /// One DTMF key: `0`-`9`, `*` or `#`.
    Key,
    /// The id of another node.
    Target,
    /// A BCP 47 locale such as `en-US`.
    Locale,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// A prompt reference: a key, `{ prompt, with }`, or a list of those.
    Prompt,
    /// A mapping with the given fields.
    Object(&'static [Field]),
    /// A mapping from keys of the first type to values of the second.
    MapOf(&'static Ty, &'static Ty),
    /// A list.
    ListOf(&'static Ty),
    /// One of several shapes.
    OneOf(&'static [Ty]),
    /// Any JSON-like value (HTTP bodies); strings inside are templates.
    Json,
    /// A mapping from node id to node.
    Nodes,
}

/// One field of a mapping.
#[derive(Debug)]
pub struct Field {
    /// The field name as written.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Whether the field must be present.
    pub required: bool,
    /// The default, as written in YAML, when absent.
    pub default: Option<&'static str>,
    /// One line of documentation (shown by editors).
    pub doc: &'static str,
}

impl Field {
    /// The bounds of an integer field.
    pub fn bounds(&self) -> Option<(u32, u32)> {
        match self.ty {
            Ty::Int(min, max) => Some((min, max)),
            _ => None,
        }
    }

    /// The words a one-of-a-set field (or a list of such words) takes.
    pub fn choices(&self) -> &'static [&'static str] {
        match self.ty {
            Ty::Enum(words) => words,
            Ty::ListOf(Ty::Enum(words)) => words,
            _ => &[],
        }
    }

    /// The fields of a mapping-typed field.
    pub fn object(&self) -> &'static [Field] {
        match self.ty {
            Ty::Object(fields) => fields,
            _ => &[],
        }
    }

    /// The words of a list default such as `[a, b]`.
    pub fn default_words(&self) -> Vec<&'static str> {
        let list = self.default.unwrap_or_default();
        let inner = list.trim_start_matches('[').trim_end_matches(']');
        inner
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect()
    }
}

/// The field called `name` among `fields`.
pub fn field(fields: &'static [Field], name: &str) -> Option<&'static Field> {
    fields.iter().find(|f| f.name == name)
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: true,
        default: None,
        doc,
    }
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        default: None,
        doc,
    }
}

const fn def(name: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        default: Some(default),
        doc,
    }
}

/// Whether a kind's `next:` is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// `next:` must be given (it is the success path).
    Required,
    /// `next:` may be given.
    Optional,
    /// The kind ends the call or has its own exits; `next:` is an error.
    Forbidden,
}

/// How an outcome must be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// An `on:` edge is required.
    Required,
    /// Without an edge the outcome falls back to `settings.on_error`, which must then be set.
    Fallback,
    /// Without an edge the node behaves as documented (e.g. continues to `next`).
    Optional,
}

/// An outcome a node kind can produce, besides its `next` path.
#[derive(Debug)]
pub struct Outcome {
    /// The name used in `on:`.
    pub name: &'static str,
    /// How it must be handled.
    pub handling: Handling,
    /// When it happens.
    pub doc: &'static str,
}

const fn out(name: &'static str, handling: Handling, doc: &'static str) -> Outcome {
    Outcome {
        name,
        handling,
        doc,
    }
}

/// One node kind.
#[derive(Debug)]
pub struct KindSpec {
    /// The action key, e.g. `code.send`.
    pub name: &'static str,
    /// What it does, in one line.
    pub doc: &'static str,
    /// The type of the action key's value.
    pub body: Ty,
    /// Whether `next:` is needed.
    pub next: Next,
    /// The outcomes it can produce (besides `next`).
    pub outcomes: &'static [Outcome],
}

impl KindSpec {
    /// The body's fields, when the body is a mapping.
    pub fn fields(&self) -> &'static [Field] {
        match self.body {
            Ty::Object(fields) => fields,
            _ => &[],
        }
    }
}

/// Fields every node may have besides its action key.
pub const NODE_FIELDS: &[Field] = &[
    opt(
        "next",
        Ty::Target,
        "Where the call goes on the kind's success path.",
    ),
    opt(
        "on",
        Ty::MapOf(&Ty::Ident, &Ty::Target),
        "Edges by outcome name, e.g. `{ not_found: identify, locked: agent }`.",
    ),
    opt(
        "limit",
        Ty::Object(LIMIT),
        "Bounds how often a call may enter this node; required on some node of every failure loop.",
    ),
    opt("description", Ty::Str, "Free text for readers and graphs."),
];

const LIMIT: &[Field] = &[
    req(
        "visits",
        Ty::Int(1, 20),
        "How many times a call may enter the node.",
    ),
    req(
        "then",
        Ty::Target,
        "Where the call goes on the entry after the last allowed one.",
    ),
];

const PROMPT_ITEM: &[Field] = &[
    req(
        "prompt",
        Ty::Ident,
        "The prompt key in `voice-prompts/<locale>.yaml`.",
    ),
    opt(
        "with",
        Ty::MapOf(&Ty::Ident, &Ty::Template),
        "Parameters the catalog text uses, as templates.",
    ),
];

/// The fields of `{ prompt, with }`, for the schema of prompt references.
pub const PROMPT_FIELDS: &[Field] = PROMPT_ITEM;

const MENU_KEY: &[Field] = &[
    opt(
        "next",
        Ty::Target,
        "Where this key goes; defaults to the node's `next`.",
    ),
    opt(
        "locale",
        Ty::Locale,
        "Switches the call's language (must be in `settings.locales`).",
    ),
    opt(
        "set",
        Ty::MapOf(&Ty::Ident, &Ty::Template),
        "Variables to set when this key is pressed.",
    ),
];

const MENU: &[Field] = &[
    req("say", Ty::Prompt, "The menu prompt."),
    req(
        "keys",
        Ty::MapOf(&Ty::Key, &Ty::OneOf(&[Ty::Target, Ty::Object(MENU_KEY)])),
        "Each key: a target node, or `{ next, locale, set }`.",
    ),
    def(
        "attempts",
        Ty::Int(1, 10),
        "3",
        "How many times the menu is offered before `no_input` / `no_match`.",
    ),
    def("timeout", Ty::Duration, "5s", "How long to wait for a key."),
    opt(
        "no_input_say",
        Ty::Prompt,
        "Said before re-prompting after silence.",
    ),
    opt(
        "no_match_say",
        Ty::Prompt,
        "Said before re-prompting after an unknown key.",
    ),
];

const GATHER: &[Field] = &[
    req("say", Ty::Prompt, "The prompt that asks for the digits."),
    req("digits", Ty::Digits, "How many digits: `6` or `6..8`."),
    req("into", Ty::Ident, "The variable that receives the digits."),
    def(
        "finish_on",
        Ty::Str,
        "#",
        "Key that ends entry early (`#`, `*`, or `\"\"` for none).",
    ),
    def(
        "first_digit_timeout",
        Ty::Duration,
        "5s",
        "Silence allowed before the first digit.",
    ),
    def(
        "inter_digit_timeout",
        Ty::Duration,
        "3s",
        "Silence allowed between digits.",
    ),
    def(
        "attempts",
        Ty::Int(1, 10),
        "3",
        "How many tries before `no_input` / `no_match`.",
    ),
    def(
        "secret",
        Ty::Bool,
        "false",
        "The digits are a secret: typed `secret`, only inside `secure`, never in prompts or logs.",
    ),
    opt(
        "no_input_say",
        Ty::Prompt,
        "Said before re-prompting after silence.",
    ),
    opt(
        "no_match_say",
        Ty::Prompt,
        "Said before re-prompting after too few / too many digits.",
    ),
];

const CONDITION: &[Field] = &[
    req("var", Ty::Path, "The variable to test."),
    opt("equals", Ty::Str, "True when the value equals this text."),
    opt(
        "not_equals",
        Ty::Str,
        "True when the value differs from this text.",
    ),
    opt(
        "in",
        Ty::ListOf(&Ty::Str),
        "True when the value is one of these.",
    ),
    opt(
        "not_in",
        Ty::ListOf(&Ty::Str),
        "True when the value is none of these.",
    ),
    opt(
        "exists",
        Ty::Bool,
        "True when the variable is (or is not) set.",
    ),
];

const CASE: &[Field] = &[
    req(
        "when",
        Ty::Object(CONDITION),
        "The condition: `var` and exactly one test.",
    ),
    req(
        "next",
        Ty::Target,
        "Where the call goes when the condition holds.",
    ),
];

const DIRECTORY_FIND: &[Field] = &[
    req(
        "by",
        Ty::Enum(&["employee_id", "username", "phone", "email"]),
        "Which directory attribute to search.",
    ),
    req(
        "value",
        Ty::Template,
        "The value to search for, e.g. `\"{{ employee_id }}\"`.",
    ),
    def(
        "into",
        Ty::Ident,
        "user",
        "The variable that receives the record (`id`, `name`, `mobile`, `email`, `state`).",
    ),
];

const CODE_SEND: &[Field] = &[
    req(
        "channel",
        Ty::Enum(&["sms", "email"]),
        "How the code travels.",
    ),
    req(
        "to",
        Ty::Path,
        "The destination: a field of a directory record (`user.mobile`, `user.email`), never caller input.",
    ),
    def(
        "length",
        Ty::Int(6, 10),
        "6",
        "Digits in the code (at least 6).",
    ),
    def(
        "ttl",
        Ty::Duration,
        "10m",
        "How long the code is valid (at most 10 minutes).",
    ),
    def(
        "resends",
        Ty::Int(0, 4),
        "2",
        "How many times the caller may have the same code sent again.",
    ),
    def(
        "cooldown",
        Ty::Duration,
        "30s",
        "Minimum time between two sends.",
    ),
    opt(
        "say",
        Ty::Prompt,
        "Said after the code is sent (e.g. the masked number).",
    ),
];

const WAIT_KEY: Ty = Ty::OneOf(&[Ty::Enum(&["enter", "resend"]), Ty::Target]);

const WAIT: &[Field] = &[
    req(
        "hold",
        Ty::Prompt,
        "Hold audio or text played while the message is on its way.",
    ),
    def(
        "hold_for",
        Ty::Duration,
        "10s",
        "How long one round of hold lasts before the key menu.",
    ),
    req(
        "menu",
        Ty::Prompt,
        "The key menu, e.g. \"press 1 to enter your code, 2 to send it again\".",
    ),
    req(
        "keys",
        Ty::MapOf(&Ty::Key, &WAIT_KEY),
        "Each key: `enter`, `resend`, or a target node.",
    ),
    def(
        "give_up_after",
        Ty::Duration,
        "3m",
        "Total wait before the `gave_up` outcome.",
    ),
];

const CODE_VERIFY: &[Field] = &[
    req(
        "from",
        Ty::Target,
        "The `code.send` node whose code is checked (and re-sent).",
    ),
    req("say", Ty::Prompt, "The prompt that asks for the code."),
    def(
        "attempts",
        Ty::Int(1, 5),
        "5",
        "Wrong entries allowed; the last one kills the code.",
    ),
    def(
        "first_digit_timeout",
        Ty::Duration,
        "5s",
        "Silence allowed before the first digit.",
    ),
    def(
        "inter_digit_timeout",
        Ty::Duration,
        "3s",
        "Silence allowed between digits.",
    ),
    opt(
        "wait",
        Ty::Object(WAIT),
        "The comfort loop while a late message arrives.",
    ),
];

const PIN_VERIFY: &[Field] = &[
    req("say", Ty::Prompt, "The prompt that asks for the PIN."),
    def(
        "account",
        Ty::Path,
        "user",
        "The directory record whose PIN is checked.",
    ),
    def("digits", Ty::Digits, "4..12", "Accepted PIN length."),
    def("finish_on", Ty::Str, "#", "Key that ends entry early."),
    def(
        "attempts",
        Ty::Int(1, 5),
        "3",
        "Wrong entries allowed in this call.",
    ),
    def(
        "first_digit_timeout",
        Ty::Duration,
        "5s",
        "Silence allowed before the first digit.",
    ),
    def(
        "inter_digit_timeout",
        Ty::Duration,
        "3s",
        "Silence allowed between digits.",
    ),
];

const DELIVER: &[Field] = &[
    req(
        "channel",
        Ty::Enum(&["sms", "email"]),
        "How the generated password travels.",
    ),
    req("to", Ty::Path, "A field of the directory record."),
];

const SET_SECRET: &[Field] = &[
    req(
        "policy",
        Ty::Ident,
        "The name of a policy under the flow's `policies:`.",
    ),
    def(
        "account",
        Ty::Path,
        "user",
        "The directory record whose secret is set.",
    ),
    def(
        "mode",
        Ty::Enum(&["entered", "generated"]),
        "entered",
        "`entered`: the caller types it twice; `generated`: a strong password is generated and delivered.",
    ),
    opt(
        "say",
        Ty::Prompt,
        "Asks for the new secret (mode `entered`).",
    ),
    opt("confirm", Ty::Prompt, "Asks for it again (mode `entered`)."),
    def(
        "attempts",
        Ty::Int(1, 5),
        "3",
        "Refusals (policy or mismatch) before `failed`.",
    ),
    opt(
        "deliver",
        Ty::Object(DELIVER),
        "Where a generated password is sent (mode `generated`).",
    ),
];

const SECURE: &[Field] = &[
    req("start", Ty::Target, "The first node inside the section."),
    req(
        "nodes",
        Ty::Nodes,
        "The nodes inside the section (any kind but `secure`).",
    ),
];

const SIGN: &[Field] = &[
    req(
        "token_env",
        Ty::Str,
        "Environment variable holding the shared signing token.",
    ),
    def(
        "header",
        Ty::Str,
        "X-Resetline-Signature",
        "Header carrying `t=<unix>,v1=<hex HMAC-SHA256(token, t + body)>`.",
    ),
];

const HTTP: &[Field] = &[
    def(
        "method",
        Ty::Enum(&["GET", "POST", "PUT", "PATCH", "DELETE"]),
        "POST",
        "HTTP method.",
    ),
    req(
        "url",
        Ty::Template,
        "The URL; templates allowed, secrets never.",
    ),
    opt(
        "headers",
        Ty::MapOf(&Ty::Str, &Ty::Template),
        "Request headers; secrets never.",
    ),
    opt("body", Ty::Json, "JSON body; string leaves are templates."),
    opt(
        "secrets",
        Ty::ListOf(&Ty::Str),
        "JSON pointers into `body` that may carry a secret variable (e.g. `/password`).",
    ),
    opt(
        "map",
        Ty::MapOf(&Ty::Ident, &Ty::Str),
        "Variables to set from the response, by JSON pointer.",
    ),
    def("timeout", Ty::Duration, "3s", "Time budget per try."),
    def(
        "retries",
        Ty::Int(0, 3),
        "0",
        "Extra tries on timeout or 5xx.",
    ),
    opt(
        "sign",
        Ty::Object(SIGN),
        "Sign the request with HMAC-SHA256 over timestamp + body.",
    ),
];

const TICKET: &[Field] = &[
    def(
        "action",
        Ty::Enum(&["open", "open_and_close"]),
        "open",
        "Open a ticket for follow-up, or open and close one for the record.",
    ),
    req("summary", Ty::Template, "Short description."),
    opt("details", Ty::Template, "Longer description."),
    opt("category", Ty::Str, "Ticket category."),
    def(
        "into",
        Ty::Ident,
        "ticket",
        "The variable that receives `number`.",
    ),
    opt(
        "say",
        Ty::Prompt,
        "Said after opening (e.g. the number, digit by digit).",
    ),
];

const NOTIFY: &[Field] = &[
    req(
        "channel",
        Ty::Enum(&["sms", "email"]),
        "How the notification travels.",
    ),
    req("to", Ty::Path, "A field of a directory record."),
    req(
        "message",
        Ty::Prompt,
        "The message text (from the prompt catalog); never a secret.",
    ),
];

const TRANSFER: &[Field] = &[
    opt("say", Ty::Prompt, "Said before transferring."),
    opt(
        "queue",
        Ty::Str,
        "Enqueue into this queue (at most 64 characters).",
    ),
    opt("number", Ty::Str, "Dial this E.164 number."),
    opt("wait", Ty::Str, "Hold music URL while queued."),
];

const HANGUP: &[Field] = &[
    opt("say", Ty::Prompt, "Said before hanging up."),
    opt(
        "outcome",
        Ty::Ident,
        "The call outcome recorded in the audit trail (e.g. `reset_done`).",
    ),
];

use Handling::{Fallback, Optional, Required};

/// Every node kind.
pub const KINDS: &[KindSpec] = &[
    KindSpec {
        name: "say",
        doc: "Speaks or plays a prompt, then goes on.",
        body: Ty::Prompt,
        next: Next::Required,
        outcomes: &[],
    },
    KindSpec {
        name: "menu",
        doc: "Offers keys and goes where the pressed key says.",
        body: Ty::Object(MENU),
        next: Next::Optional,
        outcomes: &[
            out("no_input", Required, "No key after the last attempt."),
            out(
                "no_match",
                Required,
                "Only unknown keys, after the last attempt.",
            ),
            out(
                "exhausted",
                Optional,
                "Shorthand covering both `no_input` and `no_match`.",
            ),
        ],
    },
    KindSpec {
        name: "gather",
        doc: "Collects DTMF digits into a variable.",
        body: Ty::Object(GATHER),
        next: Next::Required,
        outcomes: &[
            out("no_input", Required, "Silence after the last attempt."),
            out(
                "no_match",
                Required,
                "Wrong number of digits after the last attempt.",
            ),
            out(
                "exhausted",
                Optional,
                "Shorthand covering both `no_input` and `no_match`.",
            ),
        ],
    },
    KindSpec {
        name: "branch",
        doc: "Goes to the first case whose condition holds, else to `next`.",
        body: Ty::ListOf(&Ty::Object(CASE)),
        next: Next::Required,
        outcomes: &[],
    },
    KindSpec {
        name: "set",
        doc: "Sets variables from templates.",
        body: Ty::MapOf(&Ty::Ident, &Ty::Template),
        next: Next::Required,
        outcomes: &[],
    },
    KindSpec {
        name: "directory.find",
        doc: "Looks the caller up in the directory.",
        body: Ty::Object(DIRECTORY_FIND),
        next: Next::Required,
        outcomes: &[
            out("not_found", Required, "No account matches."),
            out("locked", Required, "The account is locked."),
            out("disabled", Required, "The account is disabled."),
            out(
                "not_allowed",
                Required,
                "Phone reset is not allowed for this account (or globally).",
            ),
            out("error", Fallback, "The directory failed or was too slow."),
        ],
    },
    KindSpec {
        name: "code.send",
        doc: "Sends a one-time code to a directory record's phone or email.",
        body: Ty::Object(CODE_SEND),
        next: Next::Required,
        outcomes: &[
            out(
                "undeliverable",
                Required,
                "The provider refused the destination (e.g. Twilio 21211, 21614).",
            ),
            out(
                "rate_limited",
                Required,
                "A send cap, cooldown, or destination rule blocked the send (no provider call).",
            ),
            out("error", Fallback, "The provider failed or was too slow."),
        ],
    },
    KindSpec {
        name: "code.verify",
        doc: "Checks a one-time code, with an optional comfort loop while the message is late.",
        body: Ty::Object(CODE_VERIFY),
        next: Next::Required,
        outcomes: &[
            out(
                "failed",
                Required,
                "Too many wrong codes; the code is dead.",
            ),
            out("expired", Required, "The code's time to live ran out."),
            out(
                "gave_up",
                Optional,
                "The comfort loop's `give_up_after` ran out (required when `wait` is set).",
            ),
            out(
                "delivery_failed",
                Required,
                "The delivery report said failed or undelivered.",
            ),
            out("error", Fallback, "A backend failed."),
        ],
    },
    KindSpec {
        name: "pin.verify",
        doc: "Checks the account's PIN, with lockout across calls.",
        body: Ty::Object(PIN_VERIFY),
        next: Next::Required,
        outcomes: &[
            out("failed", Required, "Too many wrong PINs in this call."),
            out(
                "locked_out",
                Required,
                "The account's PIN checks are locked out (growing wait).",
            ),
            out("error", Fallback, "The directory failed."),
        ],
    },
    KindSpec {
        name: "set_secret",
        doc: "Sets a new PIN or password: entered twice and checked by a policy, or generated.",
        body: Ty::Object(SET_SECRET),
        next: Next::Required,
        outcomes: &[
            out(
                "failed",
                Required,
                "The caller's entries were refused `attempts` times.",
            ),
            out(
                "rejected",
                Required,
                "The directory refused the new secret (its reason is spoken).",
            ),
            out(
                "locked",
                Required,
                "The directory reports the account locked.",
            ),
            out("error", Fallback, "The directory failed."),
        ],
    },
    KindSpec {
        name: "secure",
        doc: "A section that pauses call recording on entry and resumes it on every exit.",
        body: Ty::Object(SECURE),
        next: Next::Forbidden,
        outcomes: &[out(
            "pause_failed",
            Required,
            "The carrier did not acknowledge the pause; no secret is collected.",
        )],
    },
    KindSpec {
        name: "http",
        doc: "Calls an HTTP data action and maps the response into variables.",
        body: Ty::Object(HTTP),
        next: Next::Required,
        outcomes: &[out(
            "error",
            Fallback,
            "Timeout, connection failure, or a status with no edge. Status edges: `\"404\"`, `\"4xx\"`, `\"5xx\"`.",
        )],
    },
    KindSpec {
        name: "ticket",
        doc: "Opens (and optionally closes) a service-desk ticket.",
        body: Ty::Object(TICKET),
        next: Next::Required,
        outcomes: &[out("error", Fallback, "The ticket system failed.")],
    },
    KindSpec {
        name: "notify",
        doc: "Sends a notification (never a secret) to a directory record's phone or email.",
        body: Ty::Object(NOTIFY),
        next: Next::Required,
        outcomes: &[out(
            "error",
            Optional,
            "Sending failed; without an edge the call continues to `next`.",
        )],
    },
    KindSpec {
        name: "transfer",
        doc: "Transfers to an agent queue or a service-desk number.",
        body: Ty::Object(TRANSFER),
        next: Next::Forbidden,
        outcomes: &[out(
            "failed",
            Optional,
            "The queue or number could not take the call; without an edge the caller hears an apology and the call ends.",
        )],
    },
    KindSpec {
        name: "hangup",
        doc: "Says goodbye and ends the call.",
        body: Ty::Object(HANGUP),
        next: Next::Forbidden,
        outcomes: &[],
    },
];

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.name == name)
}

const RECORDING: &[Field] = &[
    def(
        "pause_behavior",
        Ty::Enum(&["silence", "skip"]),
        "silence",
        "Twilio `PauseBehavior`: keep the paused time as silence or skip it.",
    ),
    def(
        "when_absent",
        Ty::Enum(&["proceed", "fallback"]),
        "proceed",
        "When the call has no recording to pause (404): go on, or take `pause_failed`.",
    ),
];

/// Fields of `settings:`.
pub const SETTINGS: &[Field] = &[
    opt(
        "max_call_seconds",
        Ty::Int(30, 7200),
        "Longest call; required (checker error when absent).",
    ),
    def(
        "min_factors",
        Ty::Int(1, 3),
        "1",
        "Successful verifications needed on every path to `set_secret`.",
    ),
    opt(
        "default_locale",
        Ty::Locale,
        "The locale a call starts in; defaults to the first of `locales`.",
    ),
    def(
        "locales",
        Ty::ListOf(&Ty::Locale),
        "[en-US]",
        "Locales offered; each needs `voice-prompts/<locale>.yaml`.",
    ),
    opt(
        "voice",
        Ty::Str,
        "TTS voice for `<Say>`, e.g. `Polly.Joanna`; a catalog's own `voice` wins.",
    ),
    def(
        "enumeration_safe",
        Ty::Bool,
        "false",
        "Unknown, locked and disabled accounts must take the same path.",
    ),
    opt(
        "on_error",
        Ty::Target,
        "Where any backend `error` without its own edge goes.",
    ),
    opt(
        "recording",
        Ty::Object(RECORDING),
        "How `secure` sections pause recording.",
    ),
];

const POLICY: &[Field] = &[
    def(
        "kind",
        Ty::Enum(&["pin", "password"]),
        "pin",
        "`pin`: digits only, typed on the keypad.",
    ),
    def(
        "min_length",
        Ty::Int(4, 64),
        "8",
        "Shortest accepted secret.",
    ),
    def(
        "max_length",
        Ty::Int(4, 64),
        "64",
        "Longest accepted secret (never truncated).",
    ),
    def(
        "reject",
        Ty::ListOf(&Ty::Enum(&[
            "repeated",
            "sequential",
            "keypad",
            "personal",
            "common",
        ])),
        "[repeated, sequential, keypad, personal, common]",
        "Patterns refused, each with its spoken reason.",
    ),
];

/// Top-level fields of a flow file.
pub const FLOW: &[Field] = &[
    req(
        "flow",
        Ty::FlowId,
        "The flow id, used in webhook URLs: `/voice/{flow}`.",
    ),
    opt(
        "version",
        Ty::Str,
        "A label for humans; the engine also keys calls on the file's digest.",
    ),
    opt("description", Ty::Str, "What the flow is for."),
    req("start", Ty::Target, "The first node."),
    req("settings", Ty::Object(SETTINGS), "Flow-wide settings."),
    opt(
        "policies",
        Ty::MapOf(&Ty::Ident, &Ty::Object(POLICY)),
        "Named secret policies for `set_secret`.",
    ),
    req("nodes", Ty::Nodes, "The nodes, keyed by id."),
    opt(
        "tests",
        Ty::ListOf(&Ty::Object(TEST_CASE)),
        "Flow tests run by `resetline test`, as in a `*.test.yaml` file; never run by a call, and left out of the version digest.",
    ),
];

// The flow-test case format, shared by `tests:` in a flow file and `*.test.yaml` files (read
// by `resetline_simulator::flowtest`, whose unit test ties its fields to these tables).
// Durations here are the simulator's (`500ms`, `5s`, `10m`, `1h`: a unit is required).

/// How one SMS of a test is delivered.
pub const TEST_SMS: &[Field] = &[
    opt(
        "delay",
        Ty::Str,
        "Simulated time until it arrives or fails (`2s`).",
    ),
    opt(
        "outcome",
        Ty::Enum(&["delivered", "failed", "undelivered", "lost"]),
        "How the delivery report ends.",
    ),
    opt(
        "error_code",
        Ty::Int(0, u32::MAX),
        "Error code in a failure report (30003).",
    ),
];

/// One step of a test: exactly one of the fields (`press` may have `after`).
pub const TEST_STEP: &[Field] = &[
    opt(
        "hear",
        Ty::Str,
        "A prompt since the caller's last action contains this.",
    ),
    opt(
        "press",
        Ty::Str,
        "Keys pressed at the waiting gather; `$code`, `$first_code`.",
    ),
    opt(
        "after",
        Ty::Str,
        "With `press`: start pressing this long into the gather.",
    ),
    opt(
        "silence",
        Ty::Int(0, u32::MAX),
        "Stay silent at this many gathers in a row.",
    ),
    opt(
        "wait_for_message",
        Ty::Bool,
        "Stay silent until a new message reaches the handset.",
    ),
    opt(
        "message",
        Ty::Str,
        "A new message on the handset contains this.",
    ),
    opt("jump", Ty::Str, "Move the shared clock forward (`11m`)."),
    opt("hangup", Ty::Bool, "Hang up at the waiting gather."),
];

/// What a test expects when the call is over.
pub const TEST_EXPECT: &[Field] = &[
    opt(
        "end",
        Ty::Str,
        "How the call ended: `completed`, `caller_hung_up`, `transferred`, `failed`.",
    ),
    opt("outcome", Ty::Str, "The outcome the flow recorded."),
    opt(
        "visits",
        Ty::ListOf(&Ty::Target),
        "Nodes the call must have entered.",
    ),
    opt(
        "not_visits",
        Ty::ListOf(&Ty::Target),
        "Nodes the call must not have entered.",
    ),
    opt(
        "recording",
        Ty::ListOf(&Ty::Str),
        "The recording's state changes, in order.",
    ),
    opt(
        "messages",
        Ty::Int(0, u32::MAX),
        "Messages the carrier accepted.",
    ),
    opt(
        "audit",
        Ty::ListOf(&Ty::Str),
        "Audit events that must appear, in this order.",
    ),
    opt(
        "max_duration",
        Ty::Str,
        "The call takes at most this long in simulated time.",
    ),
];

/// One flow-test case (a scripted call).
pub const TEST_CASE: &[Field] = &[
    req(
        "name",
        Ty::Str,
        "Shown in the progress line and the summary.",
    ),
    opt(
        "users",
        Ty::Str,
        "Users file for the embedded directory, relative to the file (required in a flow's `tests:`).",
    ),
    opt("from", Ty::Str, "Caller id for this call."),
    opt(
        "sms",
        Ty::ListOf(&Ty::Object(TEST_SMS)),
        "How the carrier treats the 1st, 2nd... SMS (the last repeats).",
    ),
    opt(
        "refuse_sms_to",
        Ty::ListOf(&Ty::Str),
        "Numbers the Messages API refuses (21614).",
    ),
    opt(
        "no_recording",
        Ty::Bool,
        "The call has no recording (pausing answers 404).",
    ),
    opt(
        "sms_provider_down",
        Ty::Bool,
        "The Messages API answers HTTP 500.",
    ),
    opt(
        "tickets_down",
        Ty::Bool,
        "The ticket system fails every call.",
    ),
    opt(
        "retry_webhooks",
        Ty::Bool,
        "Post every webhook twice, as a carrier retry.",
    ),
    opt(
        "transfer_result",
        Ty::Str,
        "How transfers end: `bridged` (default), `queue-full`, `error`, `hangup`, `busy`, `no-answer`, `failed`.",
    ),
    req(
        "steps",
        Ty::ListOf(&Ty::Object(TEST_STEP)),
        "What the caller hears and does, in order.",
    ),
    opt(
        "expect",
        Ty::Object(TEST_EXPECT),
        "What must hold when the call is over.",
    ),
];

/// Fields of a policy under `policies:`.
pub const POLICY_FIELDS: &[Field] = POLICY;

/// Prompt keys the engine itself speaks for some node kinds, which every offered locale's
/// catalog must define when the flow uses that kind (e.g. the spoken reason for each refused
/// secret).
pub const KIND_PROMPTS: &[(&str, &[&str])] = &[
    (
        "code.verify",
        &["code_wrong", "code_resent", "code_resend_too_soon"],
    ),
    ("pin.verify", &["pin_wrong"]),
    (
        "set_secret",
        &[
            "policy_too_short",
            "policy_too_long",
            "policy_repeated",
            "policy_sequential",
            "policy_keypad",
            "policy_personal",
            "policy_common",
            "policy_mismatch",
            "policy_rejected",
            "password_message",
            "password_email_subject",
            "password_not_delivered",
        ],
    ),
];

/// Prompt keys the engine may speak in any flow: the call-time limit, the apology when a
/// backend fails before the flow's own error path can speak, and the answer to a webhook for a
/// call the engine no longer knows (expired or unknown CallSid).
pub const ENGINE_PROMPTS: &[&str] = &["call_time_limit", "technical_difficulty", "call_not_found"];

/// Variables every call has.
pub const BUILTINS: &[(&str, &[&str])] = &[
    ("caller", &["number", "country"]),
    ("call", &["sid", "locale"]),
    ("flow", &["id"]),
];

/// Fields of a directory record bound by `directory.find`.
pub const RECORD_FIELDS: &[&str] = &["id", "name", "mobile", "email", "state"];
/// Record fields that are contact data: spoken or texted only through a masking filter.
pub const CONTACT_FIELDS: &[&str] = &["mobile", "email"];
