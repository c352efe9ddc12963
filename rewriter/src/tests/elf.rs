//! [`crate::elf`]: malformed headers are errors naming the part, never panics.

use super::synth::*;
use crate::elf::{Elf, SHDR_SIZE};
use crate::error::Error;
use object::elf;

fn good() -> Vec<u8> {
    let mut a = Asm::at(TEXT);
    a.ret();
    Builder::exec().text(a.bytes.clone()).data(vec![0; 8]).func("f", TEXT, 1).build()
}

/// The error's message, which must contain `what`.
fn malformed(data: &[u8], what: &str) {
    match Elf::parse(data) {
        Err(Error::Malformed(m)) => assert!(m.contains(what), "{m:?} does not say {what:?}"),
        Err(e) => panic!("{e} is not a Malformed({what:?})"),
        Ok(_) => panic!("parsed, expected Malformed({what:?})"),
    }
}

fn with(mut data: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    data[at..at + bytes.len()].copy_from_slice(bytes);
    data
}

#[test]
fn the_synthetic_file_parses() {
    let data = good();
    let e = parse(&data);
    assert_eq!((e.e_type, e.e_entry), (elf::ET_EXEC, TEXT));
    assert_eq!(e.loads().count(), 2);
    assert_eq!(e.symbols().len(), 1);
    assert_eq!(e.function_starts(), [TEXT]);
    assert_eq!(e.offset_of(TEXT, 1), Some(TEXT - BIAS));
    assert_eq!(e.offset_of(TEXT, 2), None, "past the end of the segment's file bytes");
}

#[test]
fn identification_errors() {
    let data = good();
    assert!(matches!(Elf::parse(b"\x7fEL"), Err(Error::NotElf)));
    assert!(matches!(Elf::parse(&with(data.clone(), 4, &[1])), Err(Error::Not64Bit)));
    assert!(matches!(Elf::parse(&with(data.clone(), 5, &[2])), Err(Error::BigEndian)));
    malformed(&with(data.clone(), 4, &[3]), "bad ELF class byte");
    assert!(matches!(Elf::parse(&with(data.clone(), 18, &[3, 0])), Err(Error::NotX86_64(3))));
    assert!(matches!(Elf::parse(&with(data.clone(), 16, &[1, 0])), Err(Error::Relocatable)));
    assert!(matches!(Elf::parse(&with(data.clone(), 16, &[4, 0])), Err(Error::Core)));
    assert!(matches!(Elf::parse(&with(data, 16, &[9, 0])), Err(Error::UnsupportedType(9))));
}

#[test]
fn a_truncated_header_is_malformed() {
    let data = good();
    for len in [6, 40, 63] {
        malformed(&data[..len], "shorter than the 64-byte ELF header");
    }
    // The header is whole, the program headers are cut off.
    malformed(&data[..100], "program headers");
}

#[test]
fn bad_program_headers_are_malformed() {
    let data = good();
    malformed(&with(data.clone(), 54, &32u16.to_le_bytes()), "program header entry size is not 56");
    malformed(&with(data.clone(), 32, &(data.len() as u64).to_le_bytes()), "program headers");
    // The first PT_LOAD (.text): its file size beyond the file, then above its memory size.
    let ph = 64;
    malformed(
        &with(data.clone(), ph + 32, &(data.len() as u64).to_le_bytes()),
        "a PT_LOAD segment lies outside the file",
    );
    malformed(&with(data.clone(), ph + 40, &0u64.to_le_bytes()), "a PT_LOAD segment lies outside the file");
    malformed(&with(data, ph + 16, &u64::MAX.to_le_bytes()), "a PT_LOAD segment wraps around");
}

#[test]
fn bad_section_headers_are_malformed() {
    let data = good();
    let e = parse(&data);
    let shoff = e.e_shoff as usize;
    let text = e.section(".text").unwrap().index;
    malformed(&with(data.clone(), 58, &40u16.to_le_bytes()), "section header entry size is not 64");
    malformed(&with(data.clone(), 40, &(data.len() as u64 - 8).to_le_bytes()), "section headers");
    let name_at = shoff + text * SHDR_SIZE;
    malformed(&with(data.clone(), name_at, &0xffffu32.to_le_bytes()), "name outside the section name table");
    let symtab = e.section(".symtab").unwrap().index as u16;
    malformed(&with(data.clone(), 62, &symtab.to_le_bytes()), "is not a string table");
    // A section whose bytes are not in the file parses, and is an error when read.
    let size_at = shoff + text * SHDR_SIZE + 32;
    let bad = with(data, size_at, &(1u64 << 40).to_le_bytes());
    let e = parse(&bad);
    let s = e.section(".text").unwrap();
    assert!(e.section_data(s).is_err());
    assert!(crate::code::Code::analyse(&e).is_err());
}

/// The GNU build ID, which identifies a library at run time.
#[test]
fn the_build_id_note() {
    let mut note = Vec::new();
    note.extend(4u32.to_le_bytes()); // namesz
    note.extend(6u32.to_le_bytes()); // descsz
    note.extend(elf::NT_GNU_BUILD_ID.to_le_bytes());
    note.extend(b"GNU\0");
    note.extend([1, 2, 3, 4, 5, 6, 0, 0]); // desc, padded to 4
    let mut a = Asm::at(TEXT);
    a.ret();
    let data = Builder::exec()
        .section(".note.gnu.build-id", elf::SHT_NOTE, elf::SHF_ALLOC, 0x40_0800, note)
        .text(a.bytes.clone())
        .phdr(ExtraPhdr::Covering(elf::PT_NOTE, ".note.gnu.build-id".into()))
        .build();
    assert_eq!(parse(&data).build_id(), Some(&[1u8, 2, 3, 4, 5, 6][..]));
    assert_eq!(parse(&good()).build_id(), None);
}
