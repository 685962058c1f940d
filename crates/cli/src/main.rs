//! The `resetline` binary: parses arguments and dispatches. All behaviour lives in the library
//! crates and in `cmd/`; this file only turns a command's result into an exit code.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match cmd::run(cli::Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("resetline: {error:#}");
            ExitCode::from(2)
        }
    }
}
