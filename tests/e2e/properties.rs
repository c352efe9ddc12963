//! Property tests of the ELF layer: random bytes and mutated real ELF files
//! never panic the reader, planner or patcher; they patch or give an error.

use crate::common::*;
use proptest::prelude::*;

fn default_policy() -> dfpatch_policy::Policy {
    dfpatch_policy::default_policy()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = dfpatch::plan(&bytes, &default_policy());
        let _ = dfpatch::patch(&bytes, &default_policy()).map(|p| p.patched.output.to_vec());
    }

    #[test]
    fn random_bytes_behind_a_valid_ident_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut bytes = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
        bytes.extend_from_slice(&tail);
        let _ = dfpatch::patch(&bytes, &default_policy()).map(|p| p.patched.output.to_vec());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Flip bytes of a real executable's headers and tables.
    #[test]
    fn mutated_real_elf_never_panics(edits in proptest::collection::vec((0usize..0x3000, any::<u8>()), 1..12)) {
        let mut bytes = std::fs::read(sample("behaviours", "pie")).unwrap();
        let shoff = u64::from_le_bytes(bytes[40..48].try_into().unwrap()) as usize;
        for (i, (at, v)) in edits.iter().enumerate() {
            // Half the edits hit the start of the file, half the section headers.
            let pos = if i % 2 == 0 { *at } else { shoff + at % (bytes.len() - shoff) };
            if pos < bytes.len() {
                bytes[pos] = *v;
            }
        }
        if let Ok(p) = dfpatch::patch(&bytes, &default_policy()) {
            let out = p.patched.output.to_vec();
            prop_assert!(out.len() > bytes.len());
            // Whatever was patched can be read back and restored.
            prop_assert_eq!(dfpatch::restore(&out).ok(), Some(bytes.clone()));
        }
    }
}
