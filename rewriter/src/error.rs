//! Every way the rewriter can refuse a file, each with a one-line reason.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("not an ELF file (no \\x7fELF magic)")]
    NotElf,
    #[error("truncated or malformed ELF: {0}")]
    Malformed(String),
    #[error("32-bit ELF files are not supported: dfpatch rewrites x86-64 (ELFCLASS64) executables")]
    Not64Bit,
    #[error("big-endian ELF files are not supported: dfpatch rewrites x86-64 executables")]
    BigEndian,
    #[error("unsupported machine {0:#x}: dfpatch rewrites x86-64 (EM_X86_64) executables only")]
    NotX86_64(u16),
    #[error("a relocatable object (ET_REL), not an executable: link it first, then patch the result")]
    Relocatable,
    #[error("a core dump (ET_CORE), not an executable")]
    Core,
    #[error("unsupported ELF type {0}: only ET_EXEC and ET_DYN executables can be patched")]
    UnsupportedType(u16),
    #[error("a shared library, not an executable (it has a DT_SONAME or no PT_INTERP, and is not flagged PIE): patch the program that loads it")]
    SharedLibrary,
    #[error("no section headers (stripped with sstrip?): dfpatch needs them to find code and the PLT safely")]
    NoSectionHeaders,
    #[error("already patched by dfpatch {version} (policy sha256 {policy_hash}): run `dfpatch restore FILE` to get the original back, or pass --force to re-patch it from the original")]
    AlreadyPatched { version: String, policy_hash: String },
    #[error("no spare program header: no PT_NULL or PT_NOTE entry to reuse, and the program header table cannot be moved: {0}")]
    NoSpareHeader(String),
    #[error("addresses out of range: {0}")]
    OutOfRange(String),
    #[error(
        "the highest loadable segment is not writable, so there is nowhere to put the runtime's zero-initialised state"
    )]
    LastSegmentNotWritable,
    #[error("not patched by dfpatch: nothing to restore")]
    NotPatched,
    #[error("damaged dfpatch restore data: {0}")]
    BadRestoreData(String),
    #[error("the embedded runtime image is unusable: {0}")]
    Runtime(String),
    #[error("{0}")]
    Policy(#[from] dfpatch_policy::PolicyError),
    #[error("internal error, nothing was written: {0} (a dfpatch bug: please report it with the input file)")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a malformed-file error naming the ELF part.
pub fn malformed(what: impl Into<String>) -> Error {
    Error::Malformed(what.into())
}
