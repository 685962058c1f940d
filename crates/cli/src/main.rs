//! The `resetline` binary: parses arguments and dispatches. All behaviour lives in the library
//! crates and in `cmd/`; this file only turns a command's result into an exit code.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: less memory per live call and less allocator contention than the system
/// allocator under webhook load (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match cmd::run(cli::Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("resetline: {error:#}");
            ExitCode::from(2)
        }
    }
}
