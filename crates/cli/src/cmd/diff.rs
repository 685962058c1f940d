//! `resetline diff OLD NEW`: the semantic diff of two flow versions, with the flow's tests run
//! against both. Exit status as diff(1): 0 no differences, 1 differences, 2 could not run.
//!
//! Invariant: each version runs its tests alone in a scratch directory (the simulator loads
//! every flow beside the one under test), so the two versions never share a registry.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use resetline_flow::diff::{self, DiffCatalogs, DiffFormat, TestChange, TestOutcome};
use resetline_flow::{Catalogs, Flow, SourceMap};
use resetline_simulator::flowtest::{self, CaseResult, FileResult};

use crate::cli::DiffOutput;

pub(crate) fn run(
    old: &Path,
    new: &Path,
    format: DiffOutput,
    tests: Option<&Path>,
    no_tests: bool,
) -> anyhow::Result<ExitCode> {
    let (Some(a), Some(b)) = load_both(old, new)? else {
        return Ok(ExitCode::from(2));
    };
    let test_files = match (tests, no_tests) {
        (_, true) => Vec::new(),
        (Some(p), _) => {
            let files = flowtest::find_test_files(&[p.to_path_buf()]);
            anyhow::ensure!(
                !files.is_empty(),
                "no *.test.yaml files under {}",
                p.display()
            );
            files
        }
        (None, _) => {
            let mut files: Vec<PathBuf> = beside(old).into_iter().collect();
            files.extend(beside(new).filter(|n| !files.contains(n)));
            files
        }
    };
    let (old_catalogs, new_catalogs) = (catalogs(old), catalogs(new));
    let mut changes = diff::diff(
        &a,
        &b,
        DiffCatalogs {
            old: old_catalogs.as_ref(),
            new: new_catalogs.as_ref(),
        },
    );
    changes.tests = run_tests(&test_files, old, new)?;
    let format = match format {
        DiffOutput::Text => DiffFormat::Text,
        DiffOutput::Json => DiffFormat::Json,
    };
    print!("{}", diff::render(&changes, format));
    Ok(if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Loads and checks both files; prints every diagnostic of a file that does not check clean
/// (with file:line:col, as `resetline check` does) to standard error and gives `None` for it.
pub(crate) fn load_both(old: &Path, new: &Path) -> anyhow::Result<(Option<Flow>, Option<Flow>)> {
    Ok((load(old)?, load(new)?))
}

fn load(path: &Path) -> anyhow::Result<Option<Flow>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    let compiled = resetline_flow::compile(&name, &text, None);
    if compiled.is_ok() {
        return Ok(compiled.flow);
    }
    let mut sources = SourceMap::new();
    sources.add(&name, &text);
    for d in &compiled.diagnostics {
        eprintln!("{}", d.render(&sources));
    }
    eprintln!("resetline: {name} does not load; nothing compared");
    Ok(None)
}

/// The prompt catalogs nearest the flow, when there are any.
fn catalogs(flow: &Path) -> Option<Catalogs> {
    let dir = super::check::find_prompts_dir(flow)?;
    Some(Catalogs::load_dir(&dir, &mut SourceMap::new()).0)
}

/// `x.test.yaml` beside `x.yaml`, if it exists.
fn beside(flow: &Path) -> Option<PathBuf> {
    let name = flow.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))?;
    let path = flow.with_file_name(format!("{stem}.test.yaml"));
    path.is_file().then_some(path)
}

/// Runs every test file against both versions; the cases whose result differs.
fn run_tests(files: &[PathBuf], old: &Path, new: &Path) -> anyhow::Result<Vec<TestChange>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (old_dir, old_copy) = alone(old)?;
    let (new_dir, new_copy) = alone(new)?;
    let mut out = Vec::new();
    for file in files {
        let run = |flow: &Path| {
            runtime.block_on(flowtest::run_file_against(
                file,
                flow,
                &mut |_: &CaseResult| {},
            ))
        };
        let (was, now) = (run(&old_copy), run(&new_copy));
        if let (Err(e), Err(_)) = (&was, &now) {
            anyhow::bail!("cannot run {}: {e}", file.display());
        }
        out.extend(compare(&file.display().to_string(), &was, &now));
    }
    drop((old_dir, new_dir));
    Ok(out)
}

/// A copy of `flow` alone in a scratch directory.
fn alone(flow: &Path) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().context("cannot create a scratch directory")?;
    let copy = dir
        .path()
        .join(flow.file_name().context("a flow file name")?);
    std::fs::copy(flow, &copy).with_context(|| format!("cannot copy {}", flow.display()))?;
    Ok((dir, copy))
}

type Run = Result<FileResult, flowtest::LoadError>;

fn outcome(c: &CaseResult) -> TestOutcome {
    TestOutcome {
        passed: c.passed(),
        end: c.end.clone(),
        outcome: c.outcome.clone(),
        failure: c.failures.first().cloned(),
    }
}

fn not_run(e: &flowtest::LoadError) -> TestOutcome {
    TestOutcome {
        passed: false,
        end: "not run".into(),
        outcome: None,
        failure: Some(e.to_string()),
    }
}

/// Cases (matched by position; both runs read the same test file) that pass against one
/// version and fail against the other.
fn compare(file: &str, was: &Run, now: &Run) -> Vec<TestChange> {
    let names: Vec<&str> = match (was, now) {
        (Ok(r), _) | (_, Ok(r)) => r.cases.iter().map(|c| c.name.as_str()).collect(),
        (Err(_), Err(_)) => Vec::new(),
    };
    let side = |run: &Run, i: usize| match run {
        Ok(r) => r.cases.get(i).map(outcome),
        Err(e) => Some(not_run(e)),
    };
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let (old, new) = (side(was, i)?, side(now, i)?);
            (old.passed != new.passed).then(|| TestChange {
                file: file.to_string(),
                case: (*name).to_string(),
                old,
                new,
            })
        })
        .collect()
}
