//! Fuzz target `policy_table`: see `dfpatch_fuzz::harness::policy_table` for what one input goes through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dfpatch_fuzz::harness::policy_table(data));
