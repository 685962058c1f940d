//! `resetline test`: runs flow tests (`*.test.yaml` files and flows' `tests:` blocks) with the
//! simulator and reports progress per file and case, failures with transcript diffs, a
//! summary, and optionally the caller-experience table.

use std::path::PathBuf;
use std::process::ExitCode;

use resetline_simulator::flowtest::{self, CaseResult};

pub(crate) fn run(paths: &[PathBuf], report: bool, verbose: bool) -> anyhow::Result<ExitCode> {
    let files = flowtest::find_test_files(paths);
    if files.is_empty() {
        anyhow::bail!(
            "no flow tests under the given paths (no *.test.yaml file, no flow with `tests:`)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut results = Vec::new();
    let mut broken = false;
    for file in &files {
        println!("{}", file.display());
        let mut progress = |c: &CaseResult| {
            let mark = if c.passed() { "ok  " } else { "FAIL" };
            println!(
                "  {mark} {} ({:.1} s simulated, {} keys)",
                c.name,
                c.elapsed_ms as f64 / 1000.0,
                c.keypresses
            );
            if let (false, Some(line)) = (c.passed(), c.line) {
                println!("       at {}:{line}", file.display());
            }
            for f in &c.failures {
                println!("       {f}");
            }
            if let Some(d) = &c.diff {
                println!("       expected (-) vs actual (+) transcript:");
                for line in d.lines() {
                    println!("     {line}");
                }
            }
            if verbose || !c.passed() {
                println!("       transcript:");
                for e in &c.transcript {
                    println!("         {e}");
                }
            }
        };
        match runtime.block_on(flowtest::run_file(file, &mut progress)) {
            Ok(r) => {
                for c in &r.cases {
                    if c.passed() {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                }
                results.push(r);
            }
            Err(e) => {
                println!("  could not run: {e}");
                broken = true;
            }
        }
    }
    if report {
        println!();
        print!("{}", flowtest::report(&results));
    }
    println!(
        "\n{} passed, {} failed in {} file(s)",
        passed,
        failed,
        files.len()
    );
    Ok(if broken {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
