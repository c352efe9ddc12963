//! [`crate::libplan`]: what is planned in the libraries a dynamic
//! executable needs (small synthetic libraries in a temporary folder, found
//! through `DT_RUNPATH=$ORIGIN`).

use super::synth::*;
use crate::libplan::{plan, Identity, LibraryPlan, Skipped, TRAMP_BASE};
use dfpatch_runtime::contract::r11;
use iced_x86::{Decoder, DecoderOptions, Register};
use object::elf;
use std::path::Path;

const DT_NEEDED: u64 = 1;
const DT_RUNPATH: u64 = 29;

/// A dynamic section and its string table for these needed names and runpath.
fn with_dynamic(b: Builder, needed: &[&str], runpath: &str) -> Builder {
    let mut strings = vec![0u8];
    let mut entries = Vec::new();
    let mut add = |tag: u64, s: &str| {
        entries.push((tag, strings.len() as u64));
        strings.extend(s.as_bytes());
        strings.push(0);
    };
    for n in needed {
        add(DT_NEEDED, n);
    }
    add(DT_RUNPATH, runpath);
    let mut dynamic: Vec<u8> =
        entries.iter().flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect();
    dynamic.resize(dynamic.len() + 16, 0);
    b.section(".dynstr", elf::SHT_STRTAB, elf::SHF_ALLOC, RODATA, strings)
        .section(".dynamic", elf::SHT_DYNAMIC, elf::SHF_ALLOC | elf::SHF_WRITE, DATA, dynamic)
        .link(".dynamic", ".dynstr")
        .phdr(ExtraPhdr::Covering(elf::PT_DYNAMIC, ".dynamic".into()))
}

/// A GNU build-ID note at 0x400800, and its PT_NOTE.
fn with_build_id(b: Builder, id: &[u8]) -> Builder {
    let mut note = Vec::new();
    note.extend(4u32.to_le_bytes());
    note.extend((id.len() as u32).to_le_bytes());
    note.extend(elf::NT_GNU_BUILD_ID.to_le_bytes());
    note.extend(b"GNU\0");
    note.extend(id);
    note.resize(note.len().div_ceil(4) * 4, 0);
    b.section(".note.gnu.build-id", elf::SHT_NOTE, elf::SHF_ALLOC, 0x40_0800, note)
        .phdr(ExtraPhdr::Covering(elf::PT_NOTE, ".note.gnu.build-id".into()))
}

/// Writes the executable (needing `needed`, libraries next to it) and the
/// libraries into `dir`, and plans them with every call watched, without
/// the backstop.
fn plan_in(
    dir: &Path,
    needed: &[&str],
    interp: Option<&str>,
    libs: &[(&str, Vec<u8>)],
) -> (Vec<LibraryPlan>, Vec<Skipped>) {
    plan_files(dir, needed, interp, libs, false)
}

/// As [`plan_in`]; `every_site`: as with the backstop.
fn plan_files(
    dir: &Path,
    needed: &[&str],
    interp: Option<&str>,
    libs: &[(&str, Vec<u8>)],
    every_site: bool,
) -> (Vec<LibraryPlan>, Vec<Skipped>) {
    let mut a = Asm::at(TEXT);
    a.ret();
    let mut b = with_dynamic(Builder::dyn_().text(a.bytes.clone()), needed, "$ORIGIN");
    if let Some(i) = interp {
        let mut path = i.as_bytes().to_vec();
        path.push(0);
        b = b
            .section(".interp", elf::SHT_PROGBITS, elf::SHF_ALLOC, 0x40_0800, path)
            .phdr(ExtraPhdr::Covering(elf::PT_INTERP, ".interp".into()));
    }
    let exe = b.build();
    let exe_path = dir.join("exe");
    std::fs::write(&exe_path, &exe).unwrap();
    for (name, data) in libs {
        std::fs::write(dir.join(name), data).unwrap();
    }
    plan(&parse(&exe), &exe_path, &|_| true, every_site)
}

/// An ordinary library's `syscall` sites move with neighbours that mean the
/// same anywhere; one beside a RIP-relative operand is refused.
#[test]
fn a_library_syscall_moves_only_with_position_independent_neighbours() {
    let mut a = Asm::at(TEXT);
    let f = a.mov_eax(59);
    let neighbour = a.raw(&MOV_EDI_1);
    let sys = a.syscall();
    a.ret();
    let g = a.pad();
    a.mov_eax(42);
    a.lea_rip(Register::RSI, RODATA); // lea rsi, [rip+...]
    let refused_at = a.syscall();
    a.ret();
    let lib = with_build_id(Builder::dyn_(), &[0xab; 20])
        .text(a.bytes.clone())
        .rodata(vec![0; 8])
        .func("f", f, g - f)
        .func("g", g, a.here() - g)
        .build();
    let dir = tempfile::tempdir().unwrap();
    let (plans, skipped) = plan_in(dir.path(), &["libx.so"], None, &[("libx.so", lib.clone())]);
    assert!(skipped.is_empty(), "{skipped:?}");
    let p = &plans[0];
    assert_eq!(p.name, "libx.so");
    assert!(!p.defines_monitored);
    assert!(matches!(&p.identity, Identity::BuildId(id) if id == &[0xab; 20]));
    assert_eq!(p.sites.len(), 1);
    let s = &p.sites[0];
    assert_eq!((s.vaddr, s.len, s.syscall, s.nr), (neighbour, 7, sys, Some(59)));
    let off = (s.vaddr - BIAS) as usize;
    assert_eq!(s.original, &lib[off..off + s.len]);
    // The trampoline: the neighbour's own bytes, then the hook sequence.
    assert_eq!(&s.tramp[..5], &MOV_EDI_1);
    let number = u32::from_le_bytes(s.tramp[s.number_at..s.number_at + 4].try_into().unwrap());
    assert_eq!(u64::from(number), r11::LIB_SITE);
    // Two slots last: dfp_sys_hook's, then the thunk's, which the `jmp`
    // just before `resume_at` goes through.
    assert_eq!((s.slot_at % 8, s.slot_at + 16), (0, s.tramp.len()));
    assert_eq!(&s.tramp[s.resume_at - 6..s.resume_at - 4], &[0xff, 0x25]);
    let disp = i32::from_le_bytes(s.tramp[s.resume_at - 4..s.resume_at].try_into().unwrap());
    assert_eq!(s.resume_at as i64 + disp as i64, s.slot_at as i64 + 8);
    assert!(s.back_at.is_some());
    assert_eq!(p.refused.len(), 1);
    assert_eq!(p.refused[0].vaddr, refused_at);
}

/// libc: the entries of its monitored functions are planned (their
/// trampolines' outward rel32 fields listed for the runtime to fix), and
/// every `syscall` instruction, whatever its number: the `syscall()`
/// function's, one whose `mov $N,%eax` is not just before it, an aligned
/// `mov $N,%eax; syscall` (which the backstop could rewrite at run time, but
/// only after a trap in every new process), one whose `mov` crosses an
/// 8-byte boundary. A trampoline asks the runtime unless its number is known
/// and not one the dispatcher looks at (`getpid`'s).
#[test]
fn libc_plans_entries_and_every_syscall() {
    let mut a = Asm::at(TEXT);
    let system = a.raw(&PUSH_RBP);
    let lea = a.lea_rip(Register::RDI, RODATA); // lea rdi, [rip+"sh"]
    a.raw(&MOV_RBP_RSP);
    a.raw(&[0xc9]); // leave
    a.ret();
    let generic = a.pad();
    a.raw(&[0x48, 0x89, 0xf8]); // mov rax, rdi
    a.raw(&[0x48, 0x89, 0xf7]); // mov rdi, rsi
    a.raw(&[0x4c, 0x8b, 0x4c, 0x24, 0x08]); // mov r9, [rsp+8]
    let generic_sys = a.syscall();
    a.ret();
    let other = a.pad();
    a.mov_eax(59);
    a.raw(&MOV_EDI_1);
    let other_sys = a.syscall();
    a.ret();
    // mov $39,%eax at an 8-aligned address.
    let patterned = a.pad();
    a.mov_eax(39);
    let patterned_sys = a.syscall();
    a.ret();
    // The same mov across an 8-byte boundary: planned.
    let crossing = a.pad();
    a.raw(&MOV_EDI_1);
    a.mov_eax(39);
    let crossing_sys = a.syscall();
    a.ret();
    let lib = Builder::dyn_()
        .text(a.bytes.clone())
        .rodata(b"sh\0".to_vec())
        .func("system", system, generic - system)
        .func("syscall", generic, other - generic)
        .func("execve_internal", other, patterned - other)
        .func("getpid_internal", patterned, crossing - patterned)
        .func("getpid_crossing", crossing, a.here() - crossing)
        .build();
    let dir = tempfile::tempdir().unwrap();
    let (plans, skipped) = plan_in(dir.path(), &["libc.so.6"], None, &[("libc.so.6", lib.clone())]);
    assert!(skipped.is_empty(), "{skipped:?}");
    let p = &plans[0];
    assert!(p.defines_monitored);
    assert!(matches!(p.identity, Identity::File { size, .. } if size == lib.len() as u64), "no build ID");
    let found: Vec<(Option<&str>, u64)> = p.sites.iter().map(|s| (s.api, s.syscall)).collect();
    assert_eq!(patterned % 8, 0);
    assert_eq!(
        found,
        [(Some("system"), system), (None, generic_sys), (None, other_sys), (None, patterned_sys), (None, crossing_sys)]
    );
    assert!(p.refused.is_empty(), "{:?}", p.refused);
    // Who asks: the unknown number and execve do; getpid goes straight to
    // its thunk, its only jump through a slot (the thunk's).
    let asks: Vec<bool> = p.sites[1..].iter().map(|s| s.number_at != 0).collect();
    assert_eq!(asks, [true, true, false, false]);
    let getpid = &p.sites[3];
    let insns: Vec<_> = Decoder::with_ip(64, &getpid.tramp, 0, DecoderOptions::NONE).into_iter().collect();
    assert!(insns.iter().all(|i| i.mnemonic() != iced_x86::Mnemonic::Call), "getpid's trampoline asks");
    let slot_jump = insns.iter().find(|i| i.is_ip_rel_memory_operand()).unwrap();
    assert_eq!(slot_jump.ip_rel_memory_address(), getpid.slot_at as u64 + 8, "not through the thunk's slot");

    // The entry's trampoline, copied to `at` in a library loaded at `base`
    // with every fixup moved by base + TRAMP_BASE - at, reaches the same
    // data and jumps back after the moved bytes.
    let e = &p.sites[0];
    assert_eq!((e.vaddr, e.len), (system, 8));
    let (base, at) = (0x7f00_0000_0000u64, 0x7f00_1234_5000u64);
    let mut t = e.tramp.clone();
    for &f in &e.fixups {
        let f = f as usize;
        let rel = i32::from_le_bytes(t[f..f + 4].try_into().unwrap()) as i64;
        let moved = rel + base.wrapping_add(TRAMP_BASE).wrapping_sub(at) as i64;
        t[f..f + 4].copy_from_slice(&(moved as i32).to_le_bytes());
    }
    let insns: Vec<_> = Decoder::with_ip(64, &t, at, DecoderOptions::NONE).into_iter().collect();
    assert_eq!(insns[0].code(), iced_x86::Code::Endbr64);
    let lea_moved = insns.iter().find(|i| i.mnemonic() == iced_x86::Mnemonic::Lea).unwrap();
    assert_eq!(lea_moved.ip_rel_memory_address(), base + RODATA);
    assert_eq!(insns.last().unwrap().near_branch_target(), base + lea + 7);
}

/// Without the backstop the dynamic loader is not planned (its system calls
/// load libraries); a library this machine does not have is reported. With
/// the backstop, the loader's sites are planned, an unmonitored one too
/// (each would trap at least once in every process that loads a library).
#[test]
fn libraries_left_out() {
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    a.syscall();
    a.ret();
    let loader = Builder::dyn_().text(a.bytes.clone()).build();
    let dir = tempfile::tempdir().unwrap();
    let ld = dir.path().join("ld-test.so");
    let (plans, skipped) =
        plan_in(dir.path(), &["ld-test.so", "libnowhere-dfpatch-test.so"], ld.to_str(), &[("ld-test.so", loader)]);
    assert!(plans.is_empty(), "{:?}", plans.iter().map(|p| &p.name).collect::<Vec<_>>());
    let reasons: Vec<(&str, &str)> = skipped.iter().map(|s| (s.name.as_str(), s.reason.as_str())).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].1.starts_with("the dynamic loader"), "{reasons:?}");
    assert_eq!(reasons[1], ("libnowhere-dfpatch-test.so", "not found on this machine"));

    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    let execve = a.syscall();
    a.pad();
    a.mov_eax(39);
    let getpid = a.syscall();
    a.ret();
    let loader = Builder::dyn_().text(a.bytes.clone()).build();
    let (plans, skipped) = plan_files(dir.path(), &["ld-test.so"], ld.to_str(), &[("ld-test.so", loader)], true);
    assert!(skipped.is_empty(), "{skipped:?}");
    let sites: Vec<u64> = plans.iter().flat_map(|p| p.sites.iter().map(|s| s.syscall)).collect();
    assert_eq!(sites, [execve, getpid]);
}
