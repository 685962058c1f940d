//! `resetline check`: load and check flow files, print diagnostics, exit 0 / 1 / 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use resetline_flow::{Catalogs, Compiled, Severity, SourceMap};

use crate::cli::OutputFormat;

pub(crate) fn run(
    paths: &[PathBuf],
    prompts: Option<&Path>,
    format: OutputFormat,
    deny_warnings: bool,
) -> anyhow::Result<ExitCode> {
    let files = flow_files(paths)?;
    if files.is_empty() {
        bail!(
            "no flow files (*.yaml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut sources = SourceMap::new();
    let mut catalogs: BTreeMap<PathBuf, (Catalogs, Vec<resetline_flow::Diagnostic>)> =
        BTreeMap::new();
    let mut results: Vec<(String, Compiled, Option<PathBuf>)> = Vec::new();
    for file in &files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
        sources.add(&name, &text);
        let dir = match prompts {
            Some(p) => Some(p.to_path_buf()),
            None => find_prompts_dir(file),
        };
        let catalog = match &dir {
            Some(d) => {
                if !catalogs.contains_key(d) {
                    let loaded = Catalogs::load_dir(d, &mut sources);
                    catalogs.insert(d.clone(), loaded);
                }
                catalogs.get(d).map(|(c, _)| c)
            }
            None => None,
        };
        let compiled = resetline_flow::compile(&name, &text, catalog);
        results.push((name, compiled, dir));
    }
    let mut all = Vec::new();
    for (_, diags) in catalogs.values() {
        all.extend(diags.iter().cloned());
    }
    for (_, c, _) in &results {
        all.extend(c.diagnostics.iter().cloned());
    }
    let errors = all
        .iter()
        .filter(|d| d.severity() == Severity::Error)
        .count();
    let warnings = all.len() - errors;
    match format {
        OutputFormat::Json => {
            let doc = serde_json::json!({
                "files": results.iter().map(|(name, c, dir)| serde_json::json!({
                    "file": name,
                    "flow": c.flow.as_ref().map(|f| f.id.value.clone()),
                    "version": c.flow.as_ref().map(|f| f.version_key()),
                    "prompts": dir.as_ref().map(|d| d.display().to_string()),
                    "errors": c.errors(),
                    "warnings": c.warnings(),
                })).collect::<Vec<_>>(),
                "diagnostics": all.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
                "errors": errors,
                "warnings": warnings,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        OutputFormat::Human => {
            for d in &all {
                println!("{}", d.render(&sources));
            }
            for (name, c, dir) in &results {
                if dir.is_none() {
                    println!(
                        "note: no voice-prompts/ directory found above {name}; prompt keys were not checked (use --prompts DIR)"
                    );
                }
                if c.is_ok()
                    && c.warnings() == 0
                    && let Some(f) = &c.flow
                {
                    println!(
                        "ok: {name} (flow `{}`, version {})",
                        f.id.value,
                        f.version_key()
                    );
                }
            }
            println!("{}", summary(results.len(), errors, warnings));
        }
    }
    let failed = errors > 0 || (deny_warnings && warnings > 0);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn summary(files: usize, errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "checked {}: {}, {}",
        plural(files, "flow"),
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

/// Expands directories into their flow files (sorted; `*.test.yaml` are flow tests, skipped).
fn flow_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .with_context(|| format!("cannot list {}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                for e in entries {
                    if e.is_dir() {
                        stack.push(e);
                    } else if is_flow_file(&e) {
                        out.push(e);
                    }
                }
            }
        } else {
            out.push(path.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn is_flow_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.ends_with(".test.yaml")
}

/// The nearest `voice-prompts/` directory in the flow's directory or above it.
pub(crate) fn find_prompts_dir(flow: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(flow).ok()?;
    let mut dir = absolute.parent();
    while let Some(d) = dir {
        let candidate = d.join("voice-prompts");
        if candidate.is_dir() {
            // Keep the path relative when the flow path was relative, for short messages.
            let rel = pathdiff(&candidate);
            return Some(rel);
        }
        dir = d.parent();
    }
    None
}

fn pathdiff(path: &Path) -> PathBuf {
    match std::env::current_dir() {
        Ok(cwd) => match path.strip_prefix(&cwd) {
            Ok(rel) => rel.to_path_buf(),
            Err(_) => path.to_path_buf(),
        },
        Err(_) => path.to_path_buf(),
    }
}
