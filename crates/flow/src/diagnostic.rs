//! Diagnostics: what the checker says, where, and how it is printed.
//!
//! Every problem carries a stable code (documented in `docs/flow-language.md`), a severity, the
//! file and span it is about, and optional notes. Human output follows rustc/just: a headline,
//! `--> file:line:col`, the source line and carets under the offending text. Machine output is
//! one JSON array. Invariant: rendering never fails and never panics, even when a span points
//! outside the text it was given.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use crate::span::Span;

/// How bad a problem is. Warnings do not fail `resetline check` unless `--deny-warnings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The flow must not run.
    Error,
    /// The flow runs, but goes below a reference (NIST, OWASP) or looks like a mistake.
    Warning,
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $slug:literal, $sev:ident, $doc:literal;)*) => {
        /// Stable problem codes. The numbers never change meaning; new checks get new numbers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $(#[doc = $doc] $variant,)*
        }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as printed, e.g. `E010`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// A short kebab-case name, e.g. `unknown-target`.
            pub fn slug(self) -> &'static str {
                match self { $(Code::$variant => $slug,)* }
            }

            /// Whether this code is an error or a warning.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev,)* }
            }

            /// One-line description of the check.
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => $doc,)* }
            }
        }
    };
}

codes! {
    Syntax = "E001", "yaml-syntax", Error, "The file is not valid YAML.";
    WrongType = "E002", "wrong-type", Error, "A field holds the wrong kind of value (e.g. a list where a mapping is expected).";
    UnknownField = "E003", "unknown-field", Error, "A field that the language does not know.";
    UnknownKind = "E004", "unknown-node-kind", Error, "A node whose action is not a known node kind.";
    SeveralKinds = "E005", "several-kinds", Error, "A node with more than one action: one action per node.";
    NoKind = "E006", "missing-kind", Error, "A node without an action.";
    Duplicate = "E007", "duplicate", Error, "A key written twice, or two nodes with the same id.";
    MissingField = "E008", "missing-field", Error, "A required field is absent.";
    InvalidValue = "E009", "invalid-value", Error, "A value outside what the field accepts (duration, digits range, key, identifier...).";
    UnknownTarget = "E010", "unknown-target", Error, "An edge goes to a node that does not exist.";
    Unreachable = "E011", "unreachable-node", Error, "A node that no path from `start` reaches.";
    UnhandledInput = "E012", "unhandled-no-input", Error, "A gather or menu without a no-input or no-match path.";
    UnboundedRetry = "E013", "unbounded-retry", Error, "A failure edge leads back into a loop that nothing bounds.";
    InputlessCycle = "E014", "cycle-without-input", Error, "A cycle that can repeat without any caller input or wait.";
    NoMaxCallSeconds = "E015", "missing-max-call-seconds", Error, "The flow does not set `settings.max_call_seconds`.";
    SecretLeak = "E016", "secret-leak", Error, "A secret value can reach a prompt, template, log field or HTTP field not meant for it.";
    SecretOutsideSecure = "E017", "secret-outside-secure", Error, "A node that collects a secret is not inside a `secure` section.";
    TooFewFactors = "E018", "too-few-factors", Error, "A set-secret node is reachable with fewer successful verifications than `min_factors`.";
    CallerTypedDestination = "E019", "caller-typed-destination", Error, "A one-time code is sent to a destination that is not a directory record.";
    CodeTtlTooLong = "E020", "code-ttl-too-long", Error, "A one-time code lives longer than 10 minutes (NIST SP 800-63B 5.1.3.2).";
    WeakPinPolicy = "W021", "weak-secret-policy", Warning, "A user-chosen secret may be shorter than 8 characters (NIST SP 800-63B 5.1.1.2).";
    MissingPrompt = "E022", "missing-prompt", Error, "A prompt key is missing in a locale's catalog under `voice-prompts/`.";
    UnknownVariable = "E023", "unknown-variable", Error, "A template names a variable that no node sets.";
    UnknownFilter = "E024", "unknown-filter", Error, "A template uses a filter that does not exist, or on a value it cannot take.";
    UnmaskedContact = "E025", "unmasked-contact", Error, "A full phone number or email would be spoken or texted; mask it (`last4`, `mask`).";
    UnhandledOutcome = "E026", "unhandled-outcome", Error, "A node outcome has no edge (and no `settings.on_error` fallback applies).";
    UnknownOutcome = "E027", "unknown-outcome", Error, "An `on:` edge names an outcome that the node kind never produces.";
    LocaleNotOffered = "E028", "locale-not-offered", Error, "A locale is used but not listed in `settings.locales`, or has no catalog.";
    SecureBoundary = "E029", "secure-boundary", Error, "An edge jumps into a `secure` section from outside, sections are nested, or a transfer sits inside one.";
    PauseFailedUnhandled = "E030", "pause-failed-unhandled", Error, "A `secure` section without a `pause_failed` edge.";
    EnumerationLeak = "E031", "enumeration-leak", Error, "In enumeration-safe mode, something before the first PIN check could tell an unknown, locked or disabled ID from an active one.";
    PromptParameter = "E032", "prompt-parameter", Error, "A catalog prompt needs a parameter the flow does not pass, or the flow passes one it never uses.";
    CodeTooShort = "E033", "code-too-short", Error, "A one-time code shorter than 6 digits (NIST SP 800-63B 5.1.3.2).";
    WrongNodeReference = "E034", "wrong-node-reference", Error, "A field names a node of the wrong kind (e.g. `code.verify` `from:` is not a `code.send`).";
    Catalog = "E035", "prompt-catalog", Error, "A prompt catalog file is malformed.";
    UnknownPolicy = "E036", "unknown-policy", Error, "`set_secret` names a policy that `policies:` does not define.";
    ContactLeak = "E037", "contact-leak", Error, "A full phone number or email reaches a prompt, message, ticket, HTTP header or URL through a variable, or a ticket, header or URL directly; mask it (`last4`, `mask`).";
    SecretLeavesSection = "E038", "secret-leaves-section", Error, "A secret is sent by an `http` node outside the `secure` section that collected it.";
    CodeResentAfterFailure = "E039", "code-resent-after-failure", Error, "A `code.verify` node's `failed` path reaches a `code.send` without the caller choosing it in a menu.";
    MissingAudio = "W040", "missing-audio", Warning, "A catalog `play` file is not in the audio directory: callers hear the entry's `text` spoken instead.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a flow or prompt catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// The headline, one sentence without a trailing period.
    pub message: String,
    /// The file the span is in, as the user named it.
    pub file: String,
    /// Where in `file`.
    pub span: Span,
    /// Short text printed after the carets (e.g. "did you mean `agent`?").
    pub label: Option<String>,
    /// Extra lines printed as `= note: ...`.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic with no label and no notes.
    pub fn new(code: Code, file: &str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            file: file.to_string(),
            span,
            label: None,
            notes: Vec::new(),
        }
    }

    /// Adds the caret label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a note line.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The severity of this diagnostic's code.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// Renders the diagnostic for a terminal, with the source line and carets.
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        let kind = match self.severity() {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{kind}[{}]: {}", self.code, self.message);
        let line_no = self.span.start.line.max(1);
        let gutter = " ".repeat(line_no.to_string().len());
        let _ = writeln!(
            out,
            "{gutter}--> {}:{}:{}",
            self.file,
            line_no,
            self.span.start.col.max(1)
        );
        if let Some(line) = sources.line(&self.file, line_no) {
            let line = line.replace('\t', " ");
            let start = self.span.start.col.max(1);
            let len = line.chars().count();
            let end = if self.span.end.line == self.span.start.line && self.span.end.col > start {
                self.span.end.col
            } else if self.span.end.line > self.span.start.line {
                (len + 1).max(start + 1)
            } else {
                start + 1
            };
            let width = end - start;
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{line_no} | {line}");
            let _ = write!(
                out,
                "{gutter} | {}{}",
                " ".repeat(start - 1),
                "^".repeat(width.max(1))
            );
            if let Some(label) = &self.label {
                let _ = write!(out, " {label}");
            }
            out.push('\n');
        } else if let Some(label) = &self.label {
            let _ = writeln!(out, "{gutter} = {label}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "{gutter} = note: {note}");
        }
        out
    }

    /// The diagnostic as a JSON object for `--format json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code.as_str(),
            "name": self.code.slug(),
            "severity": match self.severity() { Severity::Error => "error", Severity::Warning => "warning" },
            "message": self.message,
            "file": self.file,
            "line": self.span.start.line,
            "column": self.span.start.col,
            "end_line": self.span.end.line,
            "end_column": self.span.end.col,
            "label": self.label,
            "notes": self.notes,
        })
    }
}

/// The text of every file a diagnostic may point into, so rendering can show source lines.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: BTreeMap<String, String>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        SourceMap::default()
    }

    /// Remembers the text of `file`.
    pub fn add(&mut self, file: &str, text: &str) {
        self.files.insert(file.to_string(), text.to_string());
    }

    /// Line `line` (1-based) of `file`, without its line ending.
    pub fn line(&self, file: &str, line: usize) -> Option<&str> {
        let text = self.files.get(file)?;
        text.split('\n')
            .nth(line.checked_sub(1)?)
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
    }
}

/// Orders diagnostics by file, position, then code, so output is stable.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.span.start, a.code, &a.message).cmp(&(
            &b.file,
            b.span.start,
            b.code,
            &b.message,
        ))
    });
}

/// "did you mean `x`?" for the closest of `candidates` to `word`, if any is close enough.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = strsim::jaro_winkler(word, candidate);
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Pos;

    #[test]
    fn renders_carets_under_the_span() {
        let mut sources = SourceMap::new();
        sources.add("f.yaml", "a: 1\n    on: { locked: agnet }\n");
        let d = Diagnostic::new(
            Code::UnknownTarget,
            "f.yaml",
            Span::new(Pos { line: 2, col: 19 }, Pos { line: 2, col: 24 }),
            "no node `agnet`",
        )
        .label("did you mean `agent`?");
        assert_eq!(
            d.render(&sources),
            "error[E010]: no node `agnet`\n --> f.yaml:2:19\n  |\n2 |     on: { locked: agnet }\n  |                   ^^^^^ did you mean `agent`?\n"
        );
    }

    #[test]
    fn rendering_survives_spans_outside_the_text() {
        let sources = SourceMap::new();
        let d = Diagnostic::new(Code::Syntax, "missing.yaml", Span::default(), "x");
        assert!(d.render(&sources).contains("missing.yaml:1:1"));
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(seen.insert(code.slug()), "{} twice", code.slug());
        }
    }

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            did_you_mean("agnet", ["agent", "welcome"]).as_deref(),
            Some("did you mean `agent`?")
        );
        assert_eq!(did_you_mean("zzz", ["agent", "welcome"]), None);
    }
}
