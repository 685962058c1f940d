//! The guard of a crate's test index: with `autotests = false`, a file under `tests/` that is
//! neither a `mod` of `tests/tests.rs` nor a `[[test]]` of its own in Cargo.toml would never
//! run. Each crate's `tests/tests.rs` calls [`assert_complete`] in a test.

use std::path::Path;

/// Panics naming every `tests/*.rs` of the crate at `manifest_dir` that neither `tests.rs`
/// declares (`mod name;`) nor Cargo.toml builds as its own `[[test]]`.
pub fn assert_complete(manifest_dir: &str) {
    let dir = Path::new(manifest_dir);
    let index = std::fs::read_to_string(dir.join("tests/tests.rs")).expect("tests/tests.rs");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir.join("tests")).expect("tests/") {
        let path = entry.expect("entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_none_or(|x| x != "rs") || stem == "tests" {
            continue;
        }
        let declared = index.lines().any(|l| l.trim() == format!("mod {stem};"));
        let own = manifest.contains(&format!("path = \"tests/{stem}.rs\""));
        if !declared && !own {
            missing.push(format!("tests/{stem}.rs"));
        }
    }
    assert!(
        missing.is_empty(),
        "not in tests/tests.rs (add `mod <name>;`) nor a [[test]] in Cargo.toml: {missing:?}"
    );
}
