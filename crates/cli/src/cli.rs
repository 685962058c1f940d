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
    /// Draw a flow as a Mermaid or Graphviz DOT graph, or (--diff OLD NEW) the changes to it.
    Graph {
        /// The flow file.
        #[arg(required_unless_present = "diff")]
        flow: Option<PathBuf>,
        /// Graph language.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
        /// Draw NEW with the changes since OLD: added nodes and edges bold green, changed
        /// nodes yellow, removed ones (from OLD) dashed grey.
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], conflicts_with = "flow")]
        diff: Option<Vec<PathBuf>>,
    },
    /// Compare two versions of a flow: nodes added, removed and changed, edges rewired,
    /// prompts, secure sections, settings and policies, and flow tests that pass against one
    /// version and fail against the other.
    ///
    /// Exit status (as diff(1)): 0 no differences, 1 differences, 2 could not run (a version
    /// that does not check has its diagnostics printed).
    Diff {
        /// The old version.
        old: PathBuf,
        /// The new version.
        new: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DiffOutput::Text)]
        format: DiffOutput,
        /// Flow tests to run against both versions (a *.test.yaml file or a directory);
        /// default: the *.test.yaml beside OLD, and the one beside NEW.
        #[arg(long)]
        tests: Option<PathBuf>,
        /// Do not run flow tests.
        #[arg(long, conflicts_with = "tests")]
        no_tests: bool,
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
        /// Port on 127.0.0.1 of the admin routes, `/metrics` and `/readyz` (0 picks a free one).
        #[arg(long, default_value_t = 9090)]
        admin_port: u16,
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
    /// Service desk: show or clear an account's PIN and one-time-code lockout in the store
    /// `serve` uses (`store: redis`). Every use is audited, with who asked, in the chain
    /// `<audit.chain>-desk` of the configured audit trail.
    #[command(subcommand)]
    Lockout(LockoutCommand),
    /// Run flow tests (`*.test.yaml` beside each flow, and flows' own `tests:` blocks) against
    /// an in-process server and a simulated carrier.
    ///
    /// Exit status: 0 all passed, 1 a test failed, 2 could not run.
    Test {
        /// Test files, flow files with `tests:`, or directories (searched for both).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the caller-experience table (simulated time, keypresses, prompts per path).
        #[arg(long)]
        report: bool,
        /// Print every call's transcript.
        #[arg(long)]
        verbose: bool,
    },
    /// Place a simulated call to a flow from the terminal: prompts as text, keys from
    /// standard input, SMS inbox and recording state shown, the path printed at the end.
    Simulate {
        /// The flow file.
        flow: PathBuf,
        /// Demo users for the embedded directory (copied; the original is never changed).
        #[arg(long, default_value = "examples/demo/users.yaml")]
        users: PathBuf,
        /// Prompt catalogs; default: the nearest `voice-prompts/` above the flow.
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// Caller id.
        #[arg(long, default_value = "+15555550100")]
        from: String,
    },
}

/// Where an audit command reads or works: a directory, or a chain in PostgreSQL.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditSource {
    /// The audit directory (`audit.dir` in resetline.yaml, for `kind: file`).
    #[arg(required_unless_present = "postgres_url_env")]
    pub(crate) dir: Option<PathBuf>,
    /// For `kind: postgres`: the environment variable holding the connection string
    /// (`audit.url_env`); the chain's rows are used instead of a directory.
    #[arg(long, conflicts_with = "dir", value_name = "VAR")]
    pub(crate) postgres_url_env: Option<String>,
    /// The chain id (`audit.chain`).
    #[arg(long, default_value = "resetline")]
    pub(crate) chain: String,
}

impl AuditSource {
    /// The directory, for the commands that have no PostgreSQL path of their own.
    pub(crate) fn directory(&self) -> anyhow::Result<&std::path::Path> {
        self.dir
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("give the audit directory or --postgres-url-env"))
    }
}

/// Filters shared by `audit query`, `audit tail` and `audit timeline`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditFilter {
    #[command(flatten)]
    pub(crate) trail: AuditSource,
    /// Only this account id.
    #[arg(long)]
    pub(crate) account: Option<String>,
    /// Only this call (CallSid).
    #[arg(long)]
    pub(crate) call: Option<String>,
    /// At or after this time (RFC 3339, e.g. 2026-11-23T00:00:00Z).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Only this outcome: success, failure, error, info, intent, unknown.
    #[arg(long)]
    pub(crate) outcome: Option<String>,
    /// Only this event type (e.g. authn_login_fail).
    #[arg(long)]
    pub(crate) event: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Records that match the filters, oldest first. Reading does not verify: use `verify`.
    Query(AuditFilter),
    /// The last records that match the filters.
    Tail {
        #[command(flatten)]
        filter: AuditFilter,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// One call's records as a timeline (seconds from the call's first record).
    Timeline {
        /// The audit directory.
        dir: PathBuf,
        /// The call (CallSid).
        call: String,
        /// The chain id.
        #[arg(long, default_value = "resetline")]
        chain: String,
    },
    /// Verify the hash chain and signed checkpoints; name the first bad record.
    ///
    /// Exit status: 0 intact, 1 tampered or damaged, 2 could not run.
    Verify {
        #[command(flatten)]
        trail: AuditTrail,
    },
    /// Retention: remove records older than the retention period and record that it was
    /// done (a `retention_purge` record). `serve` does this by itself every 6 hours; while it
    /// runs it holds the chain's lock, so this command is for a stopped server.
    Purge {
        #[command(flatten)]
        trail: AuditTrail,
        /// Keep this many days (`audit.retention_days`).
        #[arg(long, default_value_t = 365)]
        retention_days: u32,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LockoutCommand {
    /// Show the account's consecutive PIN and code failures, and any wait or suspension.
    Show(LockoutArgs),
    /// Forget the account's PIN and code failures: lifts a wait or a suspension.
    Clear(LockoutArgs),
}

/// The account and where its lockouts live.
#[derive(Debug, clap::Args)]
pub(crate) struct LockoutArgs {
    /// The account id as the directory knows it (e.g. the employee ID).
    pub(crate) account: String,
    /// The configuration `serve` runs with (its store and audit trail; the environment
    /// variables it names must be set, as for `serve`).
    #[arg(long, default_value = "resetline.yaml")]
    pub(crate) config: PathBuf,
    /// Who is asking, for the audit trail (default: the OS user from $USER or $LOGNAME).
    #[arg(long)]
    pub(crate) by: Option<String>,
}

/// Which trail `audit verify` and `audit purge` work on: a directory, or a PostgreSQL chain.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditTrail {
    #[command(flatten)]
    pub(crate) source: AuditSource,
    /// The audit key (default: $RESETLINE_AUDIT_KEY).
    #[arg(long, env = "RESETLINE_AUDIT_KEY", hide_env_values = true)]
    pub(crate) key: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Diagnostics with source lines and carets.
    Human,
    /// One JSON document on standard output.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DiffOutput {
    /// One line per change, grouped.
    Text,
    /// One JSON document (shape in docs/flow-language.md).
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormat {
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}
