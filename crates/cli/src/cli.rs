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
    /// Serve the flows in production: `resetline.yaml` names flows, prompts, carrier and
    /// directory; secrets come from environment variables.
    Serve {
        /// The configuration file.
        #[arg(long, default_value = "resetline.yaml")]
        config: PathBuf,
    },
    /// Serve the shipped flows on 127.0.0.1 with embedded defaults (demo users, recording
    /// stand-in, in-memory sessions) and a generated webhook token. Not for production.
    Demo {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Flow files.
        #[arg(long, default_value = "flows")]
        flows: PathBuf,
        /// Prompt catalogs and audio.
        #[arg(long, default_value = "voice-prompts")]
        prompts: PathBuf,
        /// Demo users (copied to a temporary file; the original is never changed).
        #[arg(long, default_value = "examples/demo/users.yaml")]
        users: PathBuf,
    },
    /// Compute the X-Twilio-Signature of a webhook (for curl tests and debugging proxies).
    Sign {
        /// Auth token (default: $TWILIO_AUTH_TOKEN).
        #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
        token: String,
        /// The full public URL the carrier requests.
        url: String,
        /// Form parameters as key=value.
        params: Vec<String>,
    },
    /// Read a PIN from standard input and print its Argon2id hash for a users file.
    HashPin,
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the hash chain and signed checkpoints; name the first bad record.
    ///
    /// Exit status: 0 intact, 1 tampered or damaged, 2 could not run.
    Verify {
        /// The audit directory (`audit.dir` in resetline.yaml).
        dir: PathBuf,
        /// The chain id (`audit.chain`).
        #[arg(long, default_value = "resetline")]
        chain: String,
        /// The audit key (default: $RESETLINE_AUDIT_KEY).
        #[arg(long, env = "RESETLINE_AUDIT_KEY", hide_env_values = true)]
        key: String,
    },
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
