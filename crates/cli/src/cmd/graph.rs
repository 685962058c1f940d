//! `resetline graph`: draw a flow as Mermaid or DOT, or (`--diff OLD NEW`) draw NEW with the
//! changes since OLD marked.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use resetline_flow::SourceMap;
use resetline_flow::diff::{self, DiffCatalogs};
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
    print!("{}", graph::render(&flow, language(format)));
    Ok(ExitCode::SUCCESS)
}

/// Draws NEW with the changes since OLD; exit 2 when either does not load.
pub(crate) fn run_diff(old: &Path, new: &Path, format: GraphFormat) -> anyhow::Result<ExitCode> {
    let (Some(a), Some(b)) = super::diff::load_both(old, new)? else {
        return Ok(ExitCode::from(2));
    };
    let changes = diff::diff(&a, &b, DiffCatalogs::default());
    let overlay = diff::overlay(&a, &b, &changes);
    print!("{}", graph::render_with(&b, language(format), &overlay));
    Ok(ExitCode::SUCCESS)
}

fn language(format: GraphFormat) -> Format {
    match format {
        GraphFormat::Mermaid => Format::Mermaid,
        GraphFormat::Dot => Format::Dot,
    }
}
