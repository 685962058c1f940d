//! One module per subcommand; `run` dispatches.

mod audit;
mod backends;
mod check;
mod diff;
mod graph;
mod lockout;
mod serve;
mod simulate;
mod test;

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{AuditCommand, Cli, Command, LockoutCommand};

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check {
            paths,
            prompts,
            format,
            deny_warnings,
        } => check::run(&paths, prompts.as_deref(), format, deny_warnings),
        Command::Graph { flow, format, diff } => match (diff.as_deref(), flow) {
            (Some([old, new]), _) => graph::run_diff(old, new, format),
            (_, Some(flow)) => graph::run(&flow, format),
            _ => anyhow::bail!("give a flow file, or --diff OLD NEW"),
        },
        Command::Diff {
            old,
            new,
            format,
            tests,
            no_tests,
        } => diff::run(&old, &new, format, tests.as_deref(), no_tests),
        Command::Schema => {
            let schema = resetline_flow::schema::schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => serve::serve(&config),
        Command::Demo {
            port,
            admin_port,
            flows,
            prompts,
            users,
        } => serve::demo((port, admin_port), &flows, &prompts, &users),
        Command::Sign { token, url, params } => {
            let mut pairs = Vec::new();
            for p in &params {
                let (k, v) = p
                    .split_once('=')
                    .with_context(|| format!("`{p}` is not key=value"))?;
                pairs.push((k.to_string(), v.to_string()));
            }
            println!(
                "{}",
                resetline_twiml::signature::compute(token.as_bytes(), &url, &pairs)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { trail }) => audit::verify(&trail),
        Command::Audit(AuditCommand::Purge {
            trail,
            retention_days,
        }) => audit::purge(&trail, retention_days),
        Command::Lockout(LockoutCommand::Show(args)) => {
            lockout::run(resetline_engine::desk::DeskAction::Show, &args)
        }
        Command::Lockout(LockoutCommand::Clear(args)) => {
            lockout::run(resetline_engine::desk::DeskAction::Clear, &args)
        }
        Command::Test {
            paths,
            report,
            verbose,
        } => test::run(&paths, report, verbose),
        Command::Simulate {
            flow,
            users,
            prompts,
            from,
        } => simulate::run(&flow, &users, prompts.as_deref(), &from),
        Command::Audit(AuditCommand::Query(filter)) => audit::query(&filter, None),
        Command::Audit(AuditCommand::Tail { filter, lines }) => audit::query(&filter, Some(lines)),
        Command::Audit(AuditCommand::Timeline { dir, call, chain }) => {
            audit::timeline(&dir, &call, &chain)
        }
        Command::HashPin => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the PIN from standard input")?;
            let pin = resetline_engine::Secret::new(line.trim_end_matches(['\r', '\n']));
            line.clear();
            let hash = resetline_connectors::hash_pin(&pin).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{hash}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
