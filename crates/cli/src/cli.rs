//! Command-line arguments, as the user wrote them.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Resetline: a self-hosted engine for password and PIN reset phone calls.
#[derive(Debug, Parser)]
#[command(name = "resetline", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check flow files and report every problem at once.
    ///
    /// Exit status: 0 clean, 1 problems found, 2 could not run.
    Check {
        /// Flow files or directories (searched for *.yaml, *.yml).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Prompt catalogs directory; default: the nearest `voice-prompts/` above each flow.
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Draw a flow as a Mermaid or Graphviz DOT graph.
    Graph {
        /// The flow file.
        flow: PathBuf,
        /// Graph language.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Print the JSON Schema of flow files (for editor completion).
    Schema,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Diagnostics with source lines and carets.
    Human,
    /// One JSON document on standard output.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormat {
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}
