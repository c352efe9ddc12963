//! [`crate::dynamic`]: when the runtime can start from `DT_PREINIT_ARRAY`,
//! and the edits that make it so.

use super::synth::*;
use crate::dynamic::{preinit_edits, Dynamic, Preinit};
use object::elf;

const DYNAMIC: u64 = 0x40_4000;
const RELA: u64 = 0x40_3000;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_JMPREL: u64 = 23;
const DT_PLTRELSZ: u64 = 2;
const DT_PREINIT_ARRAY: u64 = 32;
const DT_PREINIT_ARRAYSZ: u64 = 33;
const DT_DEBUG: u64 = 21;

/// A dynamic executable (ET_EXEC, or ET_DYN for `pie`) whose dynamic
/// section holds `entries` then `nulls` DT_NULL entries, with a 24-byte
/// relocation table at [`RELA`].
fn file(pie: bool, entries: &[(u64, u64)], nulls: usize) -> Vec<u8> {
    let mut dynamic: Vec<u8> =
        entries.iter().flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect();
    dynamic.resize(dynamic.len() + 16 * nulls, 0);
    let mut rela = Vec::new();
    rela.extend(0x40_5000u64.to_le_bytes());
    rela.extend(u64::from(elf::R_X86_64_RELATIVE).to_le_bytes());
    rela.extend(TEXT.to_le_bytes());
    let mut a = Asm::at(TEXT);
    a.ret();
    let b = if pie { Builder::dyn_() } else { Builder::exec() };
    b.text(a.bytes.clone())
        .section(".rela.dyn", elf::SHT_RELA, elf::SHF_ALLOC, RELA, rela)
        .section(".dynamic", elf::SHT_DYNAMIC, elf::SHF_ALLOC | elf::SHF_WRITE, DYNAMIC, dynamic)
        .phdr(ExtraPhdr::Covering(elf::PT_DYNAMIC, ".dynamic".into()))
        .build()
}

fn preinit(pie: bool, entries: &[(u64, u64)], nulls: usize) -> Preinit {
    Preinit::plan(&parse(&file(pie, entries, nulls)), true).unwrap()
}

fn skipped(p: Preinit, why: &str) {
    match p {
        Preinit::Skipped(m) => assert!(m.contains(why), "{m:?} does not say {why:?}"),
        other => panic!("{other:?}, expected Skipped({why:?})"),
    }
}

#[test]
fn when_the_preinit_array_can_be_added() {
    let rela = [(DT_RELA, RELA), (DT_RELASZ, 24), (DT_RELAENT, 24)];
    assert_eq!(preinit(false, &[(DT_DEBUG, 0)], 3), Preinit::Direct);
    assert_eq!(preinit(true, &rela, 3), Preinit::Relocated { rela_vaddr: RELA, rela_size: 24 });
    // Two entries and the terminator: three DT_NULLs.
    skipped(preinit(false, &[(DT_DEBUG, 0)], 2), "no two spare DT_NULL entries");
    skipped(preinit(false, &[(DT_PREINIT_ARRAY, TEXT), (DT_PREINIT_ARRAYSZ, 8)], 3), "already has a DT_PREINIT_ARRAY");
    skipped(Preinit::plan(&parse(&file(false, &[(DT_DEBUG, 0)], 3)), false).unwrap(), "only glibc");
    skipped(preinit(true, &[(DT_DEBUG, 0)], 3), "without a DT_RELA table");
    skipped(preinit(true, &[(DT_RELA, RELA), (DT_RELASZ, 24), (DT_RELAENT, 16)], 3), "unusual DT_RELAENT");
    skipped(preinit(true, &[(DT_RELA, RELA), (DT_RELASZ, 20)], 3), "unusual DT_RELAENT");
    skipped(
        preinit(true, &[(DT_RELA, RELA), (DT_RELASZ, 24), (DT_JMPREL, RELA + 8), (DT_PLTRELSZ, 24)], 3),
        "DT_RELA overlaps DT_JMPREL",
    );
    skipped(preinit(true, &[(DT_RELA, 0x90_0000), (DT_RELASZ, 24)], 3), "DT_RELA is not in the file");
    // A static file has no dynamic section.
    let mut a = Asm::at(TEXT);
    a.ret();
    skipped(Preinit::plan(&parse(&Builder::exec().text(a.bytes.clone()).build()), true).unwrap(), "no dynamic section");
}

/// PIE: `DT_RELA` points at a copy of the table with one `RELATIVE` entry
/// for the array's element appended; the array and its size go in the
/// first two DT_NULLs, and the dynamic section keeps its size and end.
#[test]
fn the_preinit_edits_of_a_pie() {
    let data = file(true, &[(DT_RELA, RELA), (DT_RELASZ, 24), (DT_RELAENT, 24)], 3);
    let e = parse(&data);
    let how = Preinit::plan(&e, true).unwrap();
    let (array, new_rela, target) = (0x80_0000, 0x80_1000, 0x80_2000);
    let edits = preinit_edits(&e, &how, array, new_rela, target).unwrap().unwrap();
    assert_eq!(edits.dynamic_offset, DYNAMIC - BIAS);
    let before = Dynamic::read(&e).unwrap().unwrap();
    let after = Dynamic {
        offset: edits.dynamic_offset,
        entries: edits
            .dynamic
            .chunks(16)
            .map(|c| (u64::from_le_bytes(c[..8].try_into().unwrap()), u64::from_le_bytes(c[8..].try_into().unwrap())))
            .collect(),
    };
    assert_eq!(after.entries.len(), before.entries.len());
    assert_eq!(after.entries.last(), Some(&(0, 0)), "still terminated");
    assert_eq!(after.get(DT_RELA), Some(new_rela));
    assert_eq!(after.get(DT_RELASZ), Some(48));
    assert_eq!(after.get(DT_PREINIT_ARRAY), Some(array));
    assert_eq!(after.get(DT_PREINIT_ARRAYSZ), Some(8));
    assert_eq!(&edits.rela[..24], &data[(RELA - BIAS) as usize..][..24], "the old entries, unchanged");
    let mut added = Vec::new();
    added.extend(array.to_le_bytes());
    added.extend(u64::from(elf::R_X86_64_RELATIVE).to_le_bytes());
    added.extend(target.to_le_bytes());
    assert_eq!(&edits.rela[24..], &added[..]);
    // Non-PIE: the dynamic section only.
    let data = file(false, &[(DT_DEBUG, 0)], 3);
    let e = parse(&data);
    let edits = preinit_edits(&e, &Preinit::Direct, array, new_rela, target).unwrap().unwrap();
    assert!(edits.rela.is_empty());
    assert_eq!(edits.dynamic.len(), 4 * 16);
    assert_eq!(&edits.dynamic[16..32], [DT_PREINIT_ARRAY.to_le_bytes(), array.to_le_bytes()].concat());
}
