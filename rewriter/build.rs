//! Builds the runtime image (`runtime/blob`) for `x86_64-unknown-none` with a
//! nested cargo and hands its path to the crate as `DFPATCH_RUNTIME_IMAGE`, so
//! the rewriter carries the runtime inside itself.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let runtime = manifest_dir.join("../runtime");
    let blob = runtime.join("blob");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out_dir.join("runtime-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    for dir in [runtime.join("src"), blob.join("src")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    for file in [runtime.join("Cargo.toml"), blob.join("Cargo.toml"), blob.join("link.ld"), blob.join("build.rs")] {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let mut cmd = Command::new(cargo);
    cmd.current_dir(&blob)
        .args(["build", "--release", "--offline", "--target", "x86_64-unknown-none"])
        .arg("--manifest-path")
        .arg(blob.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are not the runtime's: it has its own target,
    // profile and flags.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" || key == "RUSTC_WRAPPER" {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().expect("could not run cargo to build the runtime image");
    if !status.success() {
        panic!(
            "building the runtime image failed; is the target installed? \
             run: rustup target add x86_64-unknown-none"
        );
    }
    let image = target_dir.join("x86_64-unknown-none/release/dfpatch-runtime");
    println!("cargo:rustc-env=DFPATCH_RUNTIME_IMAGE={}", image.display());
}
