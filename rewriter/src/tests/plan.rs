//! [`crate::plan`]: what a whole plan decides for a small static
//! executable, and the files it refuses.

use super::synth::*;
use crate::elf::{Phdr, EHDR_SIZE};
use crate::error::Error;
use crate::plan::{self, HookKind, Layer, PhdrTactic, Plan};
use crate::runtime::Runtime;
use dfpatch_policy::Policy;
use object::elf;

/// Every monitored call watched.
fn watch_all() -> Policy {
    Policy::parse("default = \"alert\"\n").unwrap()
}

fn make(data: &[u8]) -> crate::Result<Plan> {
    let e = parse(data);
    plan::make(&e, &Runtime::load().unwrap(), &watch_all(), None)
}

/// A static executable: `.text` holding `a`, `.data`, and the given symbols.
fn static_exe(a: &Asm, symbols: &[(&str, u64, u64)]) -> Builder {
    let mut b = Builder::exec().text(a.bytes.clone()).data(vec![0; 16]);
    for &(name, value, size) in symbols {
        b = if size == 0 { b.label(name, value) } else { b.func(name, value, size) };
    }
    b
}

/// No two rewritten windows share a byte.
fn assert_apart(p: &Plan) {
    let mut spans: Vec<(u64, u64)> = p.sites.iter().map(|s| (s.vaddr, s.vaddr + s.len as u64)).collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "sites {:x?} and {:x?} overlap", w[0], w[1]);
    }
}

/// Layers 3 and 4 of a static file: a detour at the monitored function's
/// entry, each monitored `syscall` moved; each site a `jmp` over exactly
/// the window, at the file offset of its address.
#[test]
fn a_static_plan_detours_entries_and_moves_syscalls() {
    let mut a = Asm::at(TEXT);
    let execve = a.raw(&ENDBR64);
    a.raw(&PUSH_RBP);
    a.raw(&MOV_RBP_RSP);
    a.raw(&SUB_RSP_16);
    a.mov_eax(59);
    let sys1 = a.syscall();
    a.raw(&[0xc9]); // leave
    a.ret();
    let g = a.pad();
    a.mov_eax(42);
    let sys2 = a.syscall();
    a.ret();
    let data = static_exe(&a, &[("execve", execve, g - execve), ("g", g, a.here() - g)]).build();
    let p = make(&data).unwrap();
    assert!(!p.flavour.dynamic && !p.flavour.pie);
    let hooks: Vec<(HookKind, &str, u64)> = p.hooks.iter().map(|h| (h.kind, h.api.as_str(), h.vaddr)).collect();
    assert_eq!(hooks.len(), 3, "{hooks:?}");
    assert_eq!((hooks[0].0, hooks[0].1), (HookKind::Detour, "execve"));
    assert_eq!(&hooks[1..], [(HookKind::Syscall, "execve", sys1), (HookKind::Syscall, "connect", sys2)]);
    let entry = &p.sites[0];
    assert_eq!((entry.layer, entry.vaddr, entry.len), (Layer::Entry, execve + 4, 8));
    for s in &p.sites {
        assert_eq!(s.offset, s.vaddr - BIAS);
        assert_eq!(s.bytes.len(), s.len);
        assert_eq!(s.bytes[0], 0xe9);
        assert!(s.bytes[5..].iter().all(|&b| b == 0xcc));
    }
    assert_apart(&p);
    assert!(p.refused.is_empty(), "{:?}", p.refused);
}

/// The detour's window holds the `mov` that sets the number: the `syscall`
/// after it cannot take it again, and alone it is too short.
#[test]
fn a_syscall_beside_a_detoured_entry_is_not_moved_twice() {
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    let sys = a.syscall();
    a.ret();
    a.pad();
    let data = static_exe(&a, &[("execve", TEXT, 8)]).build();
    let p = make(&data).unwrap();
    assert_eq!(p.sites.len(), 1);
    assert_eq!((p.sites[0].layer, p.sites[0].len), (Layer::Entry, 5));
    assert_eq!(p.refused.len(), 1, "{:?}", p.refused);
    assert_eq!((p.refused[0].layer, p.refused[0].vaddr), (Layer::Syscall, sys));
    assert_apart(&p);
}

/// The cancellation labels of a static libc are honoured by the plan.
#[test]
fn a_static_plan_leaves_the_cancellation_window_alone() {
    let mut a = Asm::at(TEXT);
    let begin = a.raw(&[0x8b, 0x07]); // mov eax, [rdi]
    a.mov_eax(59);
    let sys = a.syscall();
    let end = a.ret();
    let data = static_exe(&a, &[("__syscall_cp_asm", TEXT, 10), ("__cp_begin", begin, 0), ("__cp_end", end, 0)]);
    let p = make(&data.build()).unwrap();
    assert!(p.sites.is_empty(), "{:?}", p.sites);
    assert_eq!(p.refused[0].vaddr, sys);
    assert!(p.refused[0].reason.contains("cancellation"));
    // Control: the same code without the labels is moved.
    let p = make(&static_exe(&a, &[("__syscall_cp_asm", TEXT, 10)]).build()).unwrap();
    assert_eq!(p.sites.len(), 1);
}

/// The new segment's program header: a PT_NULL if there is one, else a
/// PT_NOTE (not the one PT_GNU_PROPERTY also names), else the table moves.
#[test]
fn the_spare_program_header() {
    let mut a = Asm::at(TEXT);
    a.ret();
    let note = |b: Builder| {
        b.section(".note.a", elf::SHT_NOTE, elf::SHF_ALLOC, 0x40_0800, vec![0; 16]).section(
            ".note.b",
            elf::SHT_NOTE,
            elf::SHF_ALLOC,
            0x40_0900,
            vec![0; 16],
        )
    };
    let tactic = |b: Builder| make(&b.build()).unwrap().layout.phdrs;
    // Two notes, the second also PT_GNU_PROPERTY: the first is reused (index 0).
    let b = note(static_exe(&a, &[]))
        .phdr(ExtraPhdr::Covering(elf::PT_NOTE, ".note.a".into()))
        .phdr(ExtraPhdr::Covering(elf::PT_NOTE, ".note.b".into()))
        .phdr(ExtraPhdr::Covering(elf::PT_GNU_PROPERTY, ".note.b".into()));
    assert_eq!(tactic(b), PhdrTactic::Reuse { index: 0, was: "PT_NOTE" });
    // Without the property, the last note.
    let b = note(static_exe(&a, &[]))
        .phdr(ExtraPhdr::Covering(elf::PT_NOTE, ".note.a".into()))
        .phdr(ExtraPhdr::Covering(elf::PT_NOTE, ".note.b".into()));
    assert_eq!(tactic(b), PhdrTactic::Reuse { index: 1, was: "PT_NOTE" });
    // A PT_NULL first.
    let null = Phdr {
        p_type: elf::PT_NULL,
        p_flags: 0,
        p_offset: 0,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: 0,
        p_memsz: 0,
        p_align: 0,
    };
    let b =
        note(static_exe(&a, &[])).phdr(ExtraPhdr::Covering(elf::PT_NOTE, ".note.a".into())).phdr(ExtraPhdr::Raw(null));
    assert_eq!(tactic(b), PhdrTactic::Reuse { index: 1, was: "PT_NULL" });
    // Neither: the table is copied into the new segment.
    assert_eq!(tactic(static_exe(&a, &[])), PhdrTactic::MoveTable);
}

/// Files the planner refuses, each with its reason.
#[test]
fn files_the_plan_refuses() {
    let mut a = Asm::at(TEXT);
    a.ret();
    // A position-independent file with no PT_INTERP and no PIE flag: a library.
    let b = Builder::dyn_().text(a.bytes.clone()).data(vec![0; 8]);
    assert!(matches!(make(&b.build()), Err(Error::SharedLibrary)));
    // A static Go program is not refused: it is known as one.
    let b = static_exe(&a, &[]).section(".gopclntab", elf::SHT_PROGBITS, elf::SHF_ALLOC, RODATA, vec![0; 8]);
    assert!(make(&b.build()).is_ok_and(|p| p.flavour.go));
    // Already patched.
    let b = static_exe(&a, &[]).section(".dfpatch", elf::SHT_PROGBITS, 0, 0, vec![0; 8]);
    assert!(matches!(make(&b.build()), Err(Error::AlreadyPatched { .. })));
    // The highest segment is not writable: nowhere for the runtime's state.
    let b = Builder::exec().text(a.bytes.clone());
    assert!(matches!(make(&b.build()), Err(Error::LastSegmentNotWritable)));
    // No section headers.
    let mut data = static_exe(&a, &[]).build();
    data[40..48].fill(0); // e_shoff
    data[60..64].fill(0); // e_shnum, e_shstrndx
    assert!(matches!(make(&data), Err(Error::NoSectionHeaders)));
    // A section over the ELF header, which is rewritten in place.
    let mut data = static_exe(&a, &[]).section(".comment", elf::SHT_PROGBITS, 0, 0, vec![0; 8]).build();
    let e = parse(&data);
    let s = e.section(".comment").unwrap();
    let at = e.e_shoff as usize + s.index * crate::elf::SHDR_SIZE + 24;
    data[at..at + 8].copy_from_slice(&(EHDR_SIZE as u64 - 4).to_le_bytes());
    let err = make(&data).err().unwrap();
    assert!(err.to_string().contains("section .comment overlaps the ELF or program headers"), "{err}");
}
