//! Fuzz target `elf`: see `dfpatch_fuzz::harness::elf` for what one input goes through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dfpatch_fuzz::harness::elf(data));
