//! `resetline simulate FLOW`: an interactive simulated call in the terminal.

use std::path::Path;
use std::process::ExitCode;

pub(crate) fn run(
    flow: &Path,
    users: &Path,
    prompts: Option<&Path>,
    from: &str,
) -> anyhow::Result<ExitCode> {
    let _ = (flow, users, prompts, from);
    anyhow::bail!("not built yet")
}
