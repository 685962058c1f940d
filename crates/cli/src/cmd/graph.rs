//! `resetline graph`: draw a flow as Mermaid or DOT.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use resetline_flow::SourceMap;
use resetline_flow::graph::{self, Format};

use crate::cli::GraphFormat;

pub(crate) fn run(path: &Path, format: GraphFormat) -> anyhow::Result<ExitCode> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    let compiled = resetline_flow::compile(&name, &text, None);
    let Some(flow) = compiled.flow else {
        let mut sources = SourceMap::new();
        sources.add(&name, &text);
        for d in &compiled.diagnostics {
            eprintln!("{}", d.render(&sources));
        }
        return Ok(ExitCode::from(1));
    };
    let format = match format {
        GraphFormat::Mermaid => Format::Mermaid,
        GraphFormat::Dot => Format::Dot,
    };
    print!("{}", graph::render(&flow, format));
    Ok(ExitCode::SUCCESS)
}
