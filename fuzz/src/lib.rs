//! The fuzz targets' shared code: see [`harness`]. The crate exists for
//! cargo-fuzz (`fuzz_targets/`); it is not part of the root workspace.

pub mod harness;
