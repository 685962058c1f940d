//! The Resetline flow language: load a YAML call flow with every source position kept, check it
//! in named passes that report every problem at once, export it as a JSON Schema or a graph,
//! and compare two versions of it.
//!
//! Architecture invariant: this crate does no I/O beyond reading the files it is asked to read
//! (flows and prompt catalogs). It knows nothing of HTTP, carriers or backends; the engine
//! interprets the [`Flow`] it produces.
//!
//! ```
//! let text = "flow: tiny\nstart: bye\nsettings: { max_call_seconds: 60 }\nnodes:\n  bye:\n    hangup: {}\n";
//! let compiled = resetline_flow::compile("tiny.yaml", text, None);
//! assert!(compiled.is_ok());
//! assert_eq!(compiled.flow.unwrap().id.value, "tiny");
//! ```

mod check;
pub mod diagnostic;
pub mod diff;
pub mod graph;
mod load;
pub mod model;
pub mod prompts;
pub mod schema;
pub mod span;
pub mod spec;
pub mod template;
mod yaml;

pub use diagnostic::{Code, Diagnostic, Severity, SourceMap};
pub use model::Flow;
pub use prompts::Catalogs;
pub use span::{Pos, Span, Spanned};

/// The result of loading and checking one flow file.
#[derive(Debug)]
pub struct Compiled {
    /// The flow, when the file could be read far enough to build one. Only run it when
    /// [`Compiled::is_ok`] is true.
    pub flow: Option<Flow>,
    /// Every problem found, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// True when there is a flow and no error (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.flow.is_some() && self.errors() == 0
    }

    /// The number of errors.
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity() == Severity::Error)
            .count()
    }

    /// The number of warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity() == Severity::Warning)
            .count()
    }
}

/// Loads and checks a flow. `file` names it in diagnostics; `catalogs`, when given, lets the
/// checker verify every prompt key and parameter in every locale. Never panics.
pub fn compile(file: &str, text: &str, catalogs: Option<&Catalogs>) -> Compiled {
    let (flow, mut diagnostics) = load::load(file, text);
    if let Some(flow) = &flow {
        diagnostics.extend(check::check(flow, catalogs));
    }
    diagnostic::sort(&mut diagnostics);
    diagnostics.dedup();
    Compiled { flow, diagnostics }
}
