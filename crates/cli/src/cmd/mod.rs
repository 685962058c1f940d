//! One module per subcommand; `run` dispatches.

mod check;
mod graph;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { paths, prompts, format, deny_warnings } => check::run(&paths, prompts.as_deref(), format, deny_warnings),
        Command::Graph { flow, format } => graph::run(&flow, format),
        Command::Schema => {
            let schema = resetline_flow::schema::schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
