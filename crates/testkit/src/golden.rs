//! Golden files: an output compared byte for byte with the file beside the test that holds
//! it, or written there when `UPDATE_GOLDEN` is set (then review the diff like code).

use std::path::Path;

/// Whether this run rewrites golden files (`UPDATE_GOLDEN=1`).
pub fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// `actual` against the golden file at `path`: `Ok` when they match (or the file was just
/// rewritten under `UPDATE_GOLDEN`), otherwise what differs, to report with other failures.
pub fn check(path: &Path, actual: &str) -> Result<(), String> {
    if updating() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        return std::fs::write(path, actual).map_err(|e| format!("{}: {e}", path.display()));
    }
    match std::fs::read_to_string(path) {
        Ok(want) if want == actual => Ok(()),
        Ok(want) => Err(format!(
            "{} differs (UPDATE_GOLDEN=1 to regenerate, then review)\n--- expected\n{want}\n--- actual\n{actual}",
            path.display()
        )),
        Err(_) => Err(format!(
            "no golden file {} (run with UPDATE_GOLDEN=1)",
            path.display()
        )),
    }
}

/// [`check`], panicking with the difference.
pub fn assert(path: &Path, actual: &str) {
    if let Err(e) = check(path, actual) {
        panic!("{e}");
    }
}
