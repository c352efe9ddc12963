//! Inputs kept from fuzzing, replayed in normal CI.
//!
//! Every file under `fuzz/regressions/<target>/` (and, for the policy
//! targets, the hand-written seeds in `fuzz/seeds/policy/`) goes through the
//! very function its fuzz target calls (`fuzz/src/harness.rs`, included
//! here by path): it must return, whatever the library answered, without
//! panicking. `fuzz/regressions/README.md` says what each input once broke.

#[path = "../../fuzz/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files directly in `dir`, sorted; none if `dir` does not exist (a
/// target with no kept input has no folder).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs `check` on every file of `dirs`; fails naming every input that
/// panicked, and fails when `dirs` hold no input at all (a moved or emptied
/// corpus must not pass by replaying nothing).
fn replay(dirs: &[PathBuf], check: fn(&[u8])) {
    assert!(fuzz_dir().join("regressions").is_dir(), "fuzz/regressions/ is missing");
    let mut failed = Vec::new();
    let mut count = 0;
    for file in dirs.iter().flat_map(|d| inputs(d)) {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        count += 1;
        if let Err(panic) = std::panic::catch_unwind(|| check(&bytes)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {message}", file.display()));
        }
    }
    let listed: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    assert!(count > 0, "no input to replay in {}", listed.join(", "));
    assert!(failed.is_empty(), "{} of {count} inputs panicked:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn elf_inputs() {
    replay(&[fuzz_dir().join("regressions/elf")], harness::elf);
}

#[test]
fn policy_inputs() {
    replay(&[fuzz_dir().join("regressions/policy"), fuzz_dir().join("seeds/policy")], harness::policy);
}

#[test]
fn policy_table_inputs() {
    replay(&[fuzz_dir().join("regressions/policy_table")], harness::policy_table);
}
