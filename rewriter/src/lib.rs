//! dfpatch: rewrite an x86-64 ELF executable so that a monitoring runtime
//! inside the file reports, and per policy refuses, sensitive behaviour.
//!
//! The pipeline is read ([`elf`]) → plan ([`plan`], using [`plt`]; every
//! range of the new segment reserved in a [`segment::SegmentMap`]) → apply
//! ([`inject`], using [`x86`], into an [`output::Output`]) → write
//! ([`fsio`]). `inspect` stops after planning; `restore` reads [`restore`] data.
#![deny(unsafe_code)]

pub mod code;
pub mod detour;
pub mod dynamic;
pub mod elf;
pub mod error;
pub mod fsio;
pub mod inject;
pub mod libplan;
pub mod moved;
pub mod output;
pub mod plan;
pub mod plt;
pub mod restore;
pub mod runtime;
pub mod segment;
pub mod syscalls;
pub mod x86;

pub use error::{Error, Result};

#[cfg(test)]
mod tests;

use dfpatch_policy::Policy;

/// A finished patch, borrowing the input bytes.
pub struct Patch<'a> {
    pub plan: plan::Plan,
    pub patched: inject::Patched<'a>,
}

/// Plans without writing anything: what `inspect` shows.
pub fn plan(data: &[u8], policy: &Policy) -> Result<plan::Plan> {
    plan_file(data, policy, None)
}

/// As [`plan`], for the file at `path` (then the libraries it needs are
/// found and their raw system calls planned too).
pub fn plan_file(data: &[u8], policy: &Policy, path: Option<&std::path::Path>) -> Result<plan::Plan> {
    let e = elf::Elf::parse(data)?;
    let rt = runtime::Runtime::load()?;
    plan::make(&e, &rt, policy, path)
}

/// Plans and applies a patch to `data`.
pub fn patch<'a>(data: &'a [u8], policy: &Policy) -> Result<Patch<'a>> {
    patch_file(data, policy, None)
}

/// As [`patch`], for the file at `path` (see [`plan_file`]).
pub fn patch_file<'a>(data: &'a [u8], policy: &Policy, path: Option<&std::path::Path>) -> Result<Patch<'a>> {
    let e = elf::Elf::parse(data)?;
    let rt = runtime::Runtime::load()?;
    let plan = plan::make(&e, &rt, policy, path)?;
    let patched = inject::apply(&e, &rt, &plan)?;
    Ok(Patch { plan, patched })
}

/// Whether `data` is a file dfpatch patched.
pub fn is_patched(data: &[u8]) -> bool {
    elf::Elf::parse(data).map(|e| e.last_section(".dfpatch").is_some()).unwrap_or(false)
}

/// The original bytes of a patched file.
pub fn restore(data: &[u8]) -> Result<Vec<u8>> {
    restore::restore(&elf::Elf::parse(data)?)
}
