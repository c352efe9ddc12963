//! [`crate::code`]: which bytes are instructions decoded with certainty,
//! and which addresses count as branch targets.

use super::synth::*;
use crate::code::Code;
use iced_x86::Register;
use object::elf;

/// Branches and calls name their targets; the instruction after a plain
/// one is no target.
#[test]
fn direct_branch_and_call_targets_are_targets() {
    let mut a = Asm::at(TEXT);
    let f = a.here();
    a.raw(&PUSH_RBP);
    let after_push = a.raw(&MOV_RBP_RSP);
    let call_site = a.here() + 16;
    a.call(call_site); // call 1f
    a.je(TEXT + 0x40); // je 2f
    a.jmp(TEXT + 0x48); // jmp 3f
    a.ret();
    while a.here() < TEXT + 0x50 {
        a.raw(&[0x90]); // nop
    }
    a.ret();
    let data = Builder::exec().text(a.bytes.clone()).func("f", f, a.bytes.len() as u64).build();
    let (_, code) = analyse(&data);
    assert!(code.is_target(f), "a function's start");
    assert!(code.is_target(call_site) && code.is_target(TEXT + 0x40) && code.is_target(TEXT + 0x48));
    assert!(!code.is_target(after_push));
    assert_eq!(code.index_of(after_push), Some(1));
}

/// gcc's switch in position-independent code: `lea table(%rip)`, a 32-bit
/// entry added to the table's address, `jmp *%rax`. The cases are reached
/// by no direct branch: only the table says they are targets.
#[test]
fn pc_relative_jump_table_entries_are_targets() {
    fn file(with_lea: bool) -> (Vec<u8>, Vec<u64>) {
        let mut a = Asm::at(TEXT);
        if with_lea {
            a.lea_rip(Register::RDX, RODATA); // lea rdx, [rip+table]
        } else {
            a.raw(&[0x0f, 0x1f, 0x80, 0, 0, 0, 0]); // nop dword [rax+0] (7 bytes, as long)
        }
        a.raw(&[0x48, 0x63, 0x04, 0xba]); // movsxd rax, dword [rdx+rdi*4]
        a.raw(&[0x48, 0x01, 0xd0]); // add rax, rdx
        a.raw(&[0xff, 0xe0]); // jmp rax
        let mut cases = Vec::new();
        for k in 0..3u32 {
            cases.push(a.mov_eax(k)); // mov eax, k
            a.ret();
        }
        let table: Vec<u8> = cases.iter().flat_map(|&c| ((c as i64 - RODATA as i64) as i32).to_le_bytes()).collect();
        let data = Builder::dyn_().text(a.bytes.clone()).rodata(table).func("f", TEXT, a.bytes.len() as u64).build();
        (data, cases)
    }
    let (data, cases) = file(true);
    let (_, code) = analyse(&data);
    for c in &cases {
        assert!(code.is_target(*c), "case at {c:#x}");
    }
    // Control: the same bytes without the `lea` make none of them a target.
    let (data, cases) = file(false);
    let (_, code) = analyse(&data);
    assert!(cases.iter().all(|&c| !code.is_target(c)));
}

/// A code address used as an immediate or a RIP-relative operand is taken:
/// something may jump there later.
#[test]
fn taken_code_addresses_are_targets() {
    let mut a = Asm::at(TEXT);
    let imm_target = TEXT + 0x20;
    let rip_target = TEXT + 0x28;
    a.raw(&[0xbf]); // mov edi, imm_target
    a.bytes.extend((imm_target as u32).to_le_bytes());
    a.lea_rip(Register::RSI, rip_target); // lea rsi, [rip+rip_target]
    a.ret();
    a.pad();
    while a.here() < TEXT + 0x30 {
        a.raw(&[0x90]); // nop
    }
    a.ret();
    let data = Builder::exec().text(a.bytes.clone()).build();
    let (_, code) = analyse(&data);
    assert!(code.is_target(imm_target));
    assert!(code.is_target(rip_target));
    assert!(!code.is_target(TEXT + 0x24), "a nop nothing names");
}

/// Pointers in data: in a fixed-address file every aligned word that lands
/// in code is a target; in a position-independent one only relocation
/// addends are (its pointers all have one).
#[test]
fn data_pointers_are_targets_as_the_file_type_says() {
    let mut a = Asm::at(TEXT);
    for _ in 0..0x20 {
        a.raw(&[0x90]); // nop
    }
    a.ret();
    let (word, reloc) = (TEXT + 0x8, TEXT + 0x10);
    let mut rela = Vec::new();
    rela.extend(DATA.to_le_bytes()); // r_offset
    rela.extend(u64::from(elf::R_X86_64_RELATIVE).to_le_bytes()); // r_info
    rela.extend(reloc.to_le_bytes()); // r_addend
    let build = |b: Builder| {
        b.text(a.bytes.clone())
            .data(word.to_le_bytes().to_vec())
            .section(".rela.dyn", elf::SHT_RELA, elf::SHF_ALLOC, RODATA, rela.clone())
            .build()
    };
    let fixed = build(Builder::exec());
    let (_, code) = analyse(&fixed);
    assert!(code.is_target(word));
    assert!(code.is_target(reloc));
    let pie = build(Builder::dyn_());
    let (_, code) = analyse(&pie);
    assert!(!code.is_target(word), "a PIE's plain data word is no pointer");
    assert!(code.is_target(reloc));
}

/// A position-independent file linked with `-z pack-relative-relocs` keeps
/// its pointers' values in the data words and lists only their addresses in
/// `.relr.dyn` (`SHT_RELR`): with no addend to read, those words are
/// pointers all the same.
#[test]
#[ignore = "known gap, not fixed yet: Code::analyse reads RELA addends only, not the words RELR relocates"]
fn relr_relocated_words_are_targets() {
    let mut a = Asm::at(TEXT);
    for _ in 0..0x20 {
        a.raw(&[0x90]); // nop
    }
    a.ret();
    let pointer = TEXT + 0x8;
    let data = Builder::dyn_()
        .text(a.bytes.clone())
        .section(".relr.dyn", elf::SHT_RELR, elf::SHF_ALLOC, RODATA, DATA.to_le_bytes().to_vec())
        .data(pointer.to_le_bytes().to_vec())
        .build();
    let (_, code) = analyse(&data);
    assert!(code.is_target(pointer));
}

/// Bytes that are no instruction make everything since the last known
/// start uncertain, up to the next known start, where decoding resumes.
#[test]
fn undecodable_bytes_make_their_region_uncertain() {
    let mut a = Asm::at(TEXT);
    let f = a.here();
    a.mov_eax(59);
    a.syscall();
    a.raw(&BAD);
    a.ret();
    let g = a.pad();
    a.mov_eax(60);
    a.syscall();
    a.ret();
    let data = Builder::exec().text(a.bytes.clone()).func("f", f, g - f).func("g", g, a.here() - g).build();
    let (_, code) = analyse(&data);
    assert!(!code.certain(f, f + 1), "f's first byte, before the bad one");
    assert!(!code.certain(g - 1, g), "f's last byte");
    assert!(code.certain(g, a.here()), "g, after the next known start");
    assert!(code.index_of(g).is_some());
    assert!(code.index_of(f + 7).is_none(), "the bad byte is no instruction");
    assert_eq!(code.syscalls().count(), 2, "both decoded; the planner checks certainty");
}

/// An instruction that would run across a known start (a symbol inside
/// it): the decoding before that start is not trusted.
#[test]
fn an_instruction_across_a_known_start_is_uncertain() {
    let mut a = Asm::at(TEXT);
    let f = a.here();
    a.raw(&PUSH_RBP);
    a.mov_eax(59); // mov eax, 59: b8 3b 00 00 00
    let g = f + 3; // inside the mov
    a.ret();
    let data = Builder::exec().text(a.bytes.clone()).func("f", f, 7).label("g", g).build();
    let (_, code) = analyse(&data);
    assert!(!code.certain(f, f + 1));
    assert!(code.index_of(f + 1).is_none(), "the mov across g is not an instruction");
    // Decoding restarts at g (`00 00` add [rax],al ; `00 c3` add bl,al).
    assert!(code.index_of(g).is_some());
    assert!(code.certain(g, a.here()));
    // Control: without the symbol inside it, the mov is certain.
    let data = Builder::exec().text(a.bytes.clone()).func("f", f, 7).build();
    let (_, code) = analyse(&data);
    assert!(code.certain(f, a.here()));
    assert!(code.index_of(f + 1).is_some());
}

/// A stripped file still knows its function starts from `.eh_frame_hdr`;
/// an instruction across one is uncertain as across a symbol.
#[test]
fn eh_frame_hdr_entries_are_known_starts() {
    let mut a = Asm::at(TEXT);
    a.raw(&PUSH_RBP);
    a.mov_eax(59);
    a.ret();
    let inside = TEXT + 3;
    // .eh_frame_hdr: version 1, eh_frame_ptr udata4|pcrel, count udata4,
    // table datarel|sdata4; count 1; (initial location, FDE) relative to the section.
    let hdr_at = RODATA;
    let mut hdr = vec![1, 0x1b, 0x03, 0x3b, 0, 0, 0, 0];
    hdr.extend(1u32.to_le_bytes());
    hdr.extend(((inside as i64 - hdr_at as i64) as i32).to_le_bytes());
    hdr.extend(0i32.to_le_bytes());
    let data = Builder::exec()
        .text(a.bytes.clone())
        .section(".eh_frame_hdr", elf::SHT_PROGBITS, elf::SHF_ALLOC, hdr_at, hdr)
        .build();
    let (e, code) = analyse(&data);
    assert_eq!(e.function_starts(), [inside]);
    assert!(e.section(".symtab").is_none());
    assert!(!code.certain(TEXT, TEXT + 1));
    assert!(code.is_target(inside));
}

/// Code is decoded from its section's bytes and rewritten where its
/// segment loads it: a section whose offset disagrees is refused.
#[test]
fn a_code_section_not_where_its_segment_loads_it_is_refused() {
    let mut a = Asm::at(TEXT);
    a.ret();
    a.ret();
    let mut data = Builder::exec().text(a.bytes.clone()).build();
    let e = parse(&data);
    let text = e.section(".text").unwrap().clone();
    let at = e.e_shoff as usize + text.index * crate::elf::SHDR_SIZE + 24;
    data[at..at + 8].copy_from_slice(&(text.sh_offset + 1).to_le_bytes());
    let e = parse(&data);
    let err = Code::analyse(&e).err().expect("refused");
    assert!(err.to_string().contains("not at the file offset its program header loads it from"), "{err}");
}

/// The `syscall` instructions, indexed.
#[test]
fn syscall_instructions_are_listed() {
    let mut a = Asm::at(TEXT);
    a.mov_eax(39);
    let s1 = a.syscall();
    a.raw(&[0x48, 0x8d, 0x04, 0x05, 0x0f, 0x05, 0, 0]); // lea rax, [rax+0x50f]: 0f 05 inside, no syscall
    let s2 = a.syscall();
    a.ret();
    let data = Builder::exec().text(a.bytes.clone()).build();
    let (_, code) = analyse(&data);
    let found: Vec<u64> = code.syscalls().map(|i| code.insn(i).unwrap().ip()).collect();
    assert_eq!(found, [s1, s2]);
}

/// Data the symbol table puts in code (a constant table in hand-written
/// assembly, `.type t,@object` in `.text`) is never moved: its bytes are
/// uncertain, even where they decode (here as a `syscall`), and the code
/// around it stays certain.
#[test]
fn data_objects_in_code_are_uncertain() {
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    let real = a.syscall();
    a.ret();
    let table = a.raw(&[0xb8, 0x3b, 0, 0, 0, 0x0f, 0x05, 0x90]); // mov eax,59; syscall; nop, as data
    let after = a.ret();
    let end = a.here();
    let data = Builder::exec()
        .text(a.bytes.clone())
        .func("f", TEXT, table - TEXT)
        .symbol("k", elf::STT_OBJECT, table, 8)
        .func("g", after, end - after)
        .build();
    let (_, code) = analyse(&data);
    assert!(code.certain(TEXT, real + 2), "the function before it");
    assert!(!code.certain(table + 5, table + 7), "the table's 0f 05");
    assert!(!code.certain(table, table + 1));
    assert!(code.certain(after, end), "the function after it");
    // The planner's own question: the table's "syscall" is refused, the real one moves.
    let (sites, refused, _) = crate::syscalls::syscall_sites(&code, |_| true, &[], &[], false, false);
    let moved: Vec<u64> = sites.iter().map(|s| s.window.insns[s.window.at].ip()).collect();
    assert_eq!(moved, [real]);
    assert_eq!(refused.iter().map(|r| r.vaddr).collect::<Vec<_>>(), [table + 5]);
}

/// Uncertain ranges that overlap (an object over undecodable bytes) are
/// merged, so a look-up between them is still right.
#[test]
fn overlapping_uncertain_ranges_are_merged() {
    let mut a = Asm::at(TEXT);
    a.ret();
    let obj = a.raw(&[0x90; 16]);
    a.ret();
    let end = a.here();
    let data = Builder::exec()
        .text(a.bytes.clone())
        .func("f", TEXT, 1)
        .symbol("k1", elf::STT_OBJECT, obj, 16)
        .symbol("k2", elf::STT_OBJECT, obj + 2, 2)
        .symbol("k3", elf::STT_OBJECT, obj + 5, 1)
        .build();
    let (_, code) = analyse(&data);
    // Unmerged, the search by end would step past k1 (ends 16, 4, 6).
    assert!(!code.certain(obj + 12, obj + 13), "inside k1, after the two objects within it");
    assert!(code.certain(obj + 16, end));
}
