//! Seeds for the `policy_table` target: compiles each policy file given and
//! writes its table, as the rewriter embeds it, to OUT_DIR/<file name>.table.
//! Files that are not valid policies are skipped with a note (the policy seeds
//! include invalid ones on purpose); an unreadable file or a failed write fails.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_table_seeds -- OUT_DIR POLICY.toml...`
//! (`fuzz/make-seeds.sh` runs it.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(out_dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: make_table_seeds OUT_DIR POLICY.toml...");
        return ExitCode::from(2);
    };
    let mut failed = false;
    for file in args.map(PathBuf::from) {
        match compile(&file, &out_dir) {
            Ok(Outcome::Written(out)) => println!("{} -> {}", file.display(), out.display()),
            Ok(Outcome::Skipped(why)) => println!("{}: skipped, not a valid policy ({why})", file.display()),
            Err(e) => {
                eprintln!("make_table_seeds: {}: {e}", file.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn compile(file: &Path, out_dir: &Path) -> Result<Outcome, String> {
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    let policy = match dfpatch_policy::Policy::parse_bytes(&bytes) {
        Ok(policy) => policy,
        Err(e) => return Ok(Outcome::Skipped(e.to_string())),
    };
    let name = file.file_name().ok_or("no file name")?.to_string_lossy();
    let out = out_dir.join(format!("{name}.table"));
    std::fs::write(&out, policy.compile()).map_err(|e| e.to_string())?;
    Ok(Outcome::Written(out))
}

enum Outcome {
    Written(PathBuf),
    Skipped(String),
}
