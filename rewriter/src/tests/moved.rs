//! [`crate::detour`] and [`crate::syscalls`] (windows from [`crate::moved`]):
//! which instructions may move out of the program's code, at a function
//! entry or around a `syscall`, and every refusal.

use super::synth::*;
use crate::detour::{detours, Detour};
use crate::moved::Refused;
use crate::syscalls::{cancellation_windows, syscall_sites, SyscallCounts, SyscallSite};
use dfpatch_runtime::apis::ApiId;
use iced_x86::Register;

/// Detours of a file whose monitored functions are all hooked.
fn plan_detours(data: &[u8]) -> (Vec<Detour>, Vec<Refused>) {
    let (e, code) = analyse(data);
    detours(&e, &code, |_| true)
}

/// The one detour, or panics naming why it was refused.
fn one_detour(data: &[u8]) -> Detour {
    let (mut d, r) = plan_detours(data);
    assert!(r.is_empty(), "refused: {:?}", r);
    assert_eq!(d.len(), 1);
    d.remove(0)
}

/// The one refusal's reason.
fn refusal(r: &[Refused]) -> &str {
    assert_eq!(r.len(), 1, "{r:?}");
    &r[0].reason
}

/// `execve` at [`TEXT`], made of `body`, followed by `rest` (another function
/// at `TEXT + 0x40` when `rest` is given).
fn execve_file(body: &Asm, rest: Option<&Asm>) -> Vec<u8> {
    let mut bytes = body.bytes.clone();
    let mut b = Builder::exec();
    if let Some(r) = rest {
        assert!(body.here() <= r.base && r.base == TEXT + 0x40);
        bytes.resize(0x40, 0xcc);
        bytes.extend(&r.bytes);
        b = b.text(bytes).func("other", r.base, r.bytes.len() as u64);
    } else {
        b = b.text(bytes);
    }
    b.func("execve", TEXT, body.bytes.len() as u64).build()
}

/// A prologue: push rbp ; mov rbp,rsp ; sub rsp,16 ; ... ; ret
fn prologue(a: &mut Asm) {
    a.raw(&PUSH_RBP);
    a.raw(&MOV_RBP_RSP);
    a.raw(&SUB_RSP_16);
    a.raw(&XOR_EAX_EAX);
    a.raw(&[0xc9]); // leave
    a.ret();
}

#[test]
fn a_detour_takes_whole_instructions_up_to_5_bytes() {
    let mut a = Asm::at(TEXT);
    prologue(&mut a);
    let d = one_detour(&execve_file(&a, None));
    assert_eq!((d.api, d.entry, d.symbol.as_str()), (ApiId::execve, TEXT, "execve"));
    // push rbp (1) ; mov rbp,rsp (3) ; sub rsp,16 (4): 8 bytes.
    assert_eq!((d.window.start(), d.window.size(), d.window.insns.len()), (TEXT, 8, 3));
}

/// CET: the `endbr64` an indirect call lands on stays; the detour starts after it.
#[test]
fn endbr64_at_the_entry_is_never_overwritten() {
    let mut a = Asm::at(TEXT);
    a.raw(&ENDBR64);
    prologue(&mut a);
    let d = one_detour(&execve_file(&a, None));
    assert_eq!(d.window.start(), TEXT + 4);
    assert!(d.window.insns.iter().all(|i| i.code() != iced_x86::Code::Endbr64));
    assert_eq!(d.window.size(), 8);
}

/// After an `endbr64` even the first moved instruction must be no target:
/// a branch there would enter the hook as a new call. Without one, the
/// entry itself is a target (every function start is) and that is fine.
#[test]
fn a_branch_target_just_after_endbr64_refuses_the_detour() {
    let mut a = Asm::at(TEXT);
    a.raw(&ENDBR64);
    prologue(&mut a);
    let mut r = Asm::at(TEXT + 0x40);
    r.jmp(TEXT + 4); // jmp execve+4
    let (d, no) = plan_detours(&execve_file(&a, Some(&r)));
    assert!(d.is_empty());
    assert!(refusal(&no).contains("a branch target at 0x401004"), "{no:?}");
    // Control: a jump to the entry of a function without endbr64.
    let mut a = Asm::at(TEXT);
    prologue(&mut a);
    let mut r = Asm::at(TEXT + 0x40);
    r.jmp(TEXT); // jmp execve (a tail call)
    let d = one_detour(&execve_file(&a, Some(&r)));
    assert_eq!(d.window.start(), TEXT);
}

#[test]
fn a_branch_target_inside_the_first_5_bytes_refuses_the_detour() {
    let mut a = Asm::at(TEXT);
    prologue(&mut a);
    for target in [TEXT + 1, TEXT + 4] {
        let mut r = Asm::at(TEXT + 0x40);
        r.jmp(target);
        let (d, no) = plan_detours(&execve_file(&a, Some(&r)));
        assert!(d.is_empty());
        assert!(refusal(&no).contains(&format!("a branch target at {target:#x}")), "{no:?}");
    }
    // A target just past the moved bytes is fine: the jump back lands there.
    let mut r = Asm::at(TEXT + 0x40);
    r.jmp(TEXT + 8);
    assert_eq!(one_detour(&execve_file(&a, Some(&r))).window.size(), 8);
}

/// A call moved would push the trampoline's address as its return address.
#[test]
fn a_call_in_the_first_5_bytes_refuses_the_detour() {
    let mut a = Asm::at(TEXT);
    a.raw(&PUSH_RBP);
    a.call(TEXT + 0x40); // call other
    a.ret();
    let mut r = Asm::at(TEXT + 0x40);
    r.ret();
    let (d, no) = plan_detours(&execve_file(&a, Some(&r)));
    assert!(d.is_empty());
    assert!(refusal(&no).contains("a call at 0x401001"), "{no:?}");
}

/// Code that leaves (returns, jumps) before 5 bytes cannot take the jump;
/// a branch that ends exactly the 5 bytes can move, as the last one.
#[test]
fn leaving_before_5_bytes_refuses_the_detour() {
    let mut a = Asm::at(TEXT);
    a.raw(&XOR_EAX_EAX);
    a.ret(); // 3 bytes in all
    a.pad();
    let (d, no) = plan_detours(&execve_file(&a, None));
    assert!(d.is_empty());
    assert!(refusal(&no).contains("it leaves at 0x401002, before 5 bytes"), "{no:?}");

    let mut a = Asm::at(TEXT);
    a.raw(&[0x48, 0x85, 0xff]); // test rdi, rdi
    a.raw(&[0x74, 0x01]); // je +1
    a.ret();
    a.ret();
    let d = one_detour(&execve_file(&a, None));
    assert_eq!((d.window.size(), d.window.insns.len()), (5, 2));
}

/// A `syscall` in the first 5 bytes stays where layer 4 can see it.
#[test]
fn a_syscall_in_the_first_5_bytes_refuses_the_detour() {
    let mut a = Asm::at(TEXT);
    a.raw(&XOR_EAX_EAX);
    a.syscall();
    a.raw(&MOV_EDI_1);
    a.ret();
    let (d, no) = plan_detours(&execve_file(&a, None));
    assert!(d.is_empty());
    assert!(refusal(&no).contains("at 0x401002"), "{no:?}");
}

/// The symbol's size bounds the window: padding after a tiny function is
/// not its code.
#[test]
fn a_function_shorter_than_the_jump_is_refused() {
    let mut a = Asm::at(TEXT);
    a.raw(&XOR_EAX_EAX);
    a.raw(&[0x90]); // nop
    let data = Builder::exec()
        .text([a.bytes.clone(), vec![0x90; 13]].concat()) // nops after it
        .func("execve", TEXT, 3)
        .build();
    let (d, no) = plan_detours(&data);
    assert!(d.is_empty());
    assert!(refusal(&no).contains("the function is 3 bytes long"), "{no:?}");
}

#[test]
fn an_entry_in_undecodable_code_is_refused() {
    // The first byte is no instruction.
    let mut a = Asm::at(TEXT);
    a.raw(&BAD);
    prologue(&mut a);
    let (_, no) = plan_detours(&execve_file(&a, None));
    assert!(refusal(&no).contains("not where a decoded instruction starts"), "{no:?}");
    // The prologue decodes, but bad bytes later in the function make it all uncertain.
    let mut a = Asm::at(TEXT);
    prologue(&mut a);
    a.raw(&BAD);
    let (_, no) = plan_detours(&execve_file(&a, None));
    assert!(refusal(&no).contains("did not decode with certainty"), "{no:?}");
}

/// The code ends, or the next instruction is elsewhere, inside the 5 bytes.
#[test]
fn the_first_5_bytes_must_be_contiguous_code() {
    // A 3-byte function at the very end of the code.
    let mut a = Asm::at(TEXT);
    a.raw(&PUSH_RBP);
    a.raw(&XOR_EAX_EAX);
    let data = Builder::exec().text(a.bytes.clone()).func("execve", TEXT, 0).build();
    let (_, no) = plan_detours(&data);
    assert!(refusal(&no).contains("the code ends inside its first 5 bytes"), "{no:?}");
    // The same, with another code section further on: the next instruction
    // decoded is not the next byte.
    let data = Builder::exec()
        .text(a.bytes.clone())
        .code_section(".text2", TEXT + 0x1000, vec![0x90; 8])
        .func("execve", TEXT, 0)
        .build();
    let (_, no) = plan_detours(&data);
    assert!(refusal(&no).contains("not contiguous"), "{no:?}");
}

/// Which symbols get a detour: monitored functions the policy watches, one
/// per address (aliases share it, the first API of the table names it),
/// never fork/vfork/clone (watched as system calls only).
#[test]
fn one_detour_per_monitored_address() {
    let mut a = Asm::at(TEXT);
    for _ in 0..4 {
        prologue(&mut a);
        a.pad();
    }
    let data = Builder::exec()
        .text(a.bytes.clone())
        .func("execv", TEXT, 16) // an alias of execve, later in the API table
        .func("execve", TEXT, 16)
        .func("fork", TEXT + 16, 16)
        .func("connect", TEXT + 32, 16)
        .func("not_monitored", TEXT + 48, 16)
        .build();
    let (e, code) = analyse(&data);
    let (d, no) = detours(&e, &code, |api| api != ApiId::connect);
    assert!(no.is_empty());
    let found: Vec<(u64, ApiId, &str)> = d.iter().map(|d| (d.entry, d.api, d.symbol.as_str())).collect();
    assert_eq!(found, [(TEXT, ApiId::execve, "execve")]);
    let (d, _) = detours(&e, &code, |_| true);
    assert_eq!(d.iter().map(|d| d.api).collect::<Vec<_>>(), [ApiId::execve, ApiId::connect]);
}

// `syscall` sites.

/// Sites of a file, every monitored call watched.
fn sites(data: &[u8]) -> (Vec<SyscallSite>, Vec<Refused>, SyscallCounts) {
    let (e, code) = analyse(data);
    syscall_sites(&code, |_| true, &[], &cancellation_windows(&e), false, false)
}

/// Code at [`TEXT`] with one function symbol over it all.
fn one_function(a: &Asm) -> Vec<u8> {
    Builder::exec().text(a.bytes.clone()).func("f", TEXT, a.bytes.len() as u64).build()
}

#[test]
fn a_syscall_moves_with_the_instruction_that_sets_its_number() {
    let mut a = Asm::at(TEXT);
    let mov = a.mov_eax(59);
    let sys = a.syscall();
    a.ret();
    let (s, no, counts) = sites(&one_function(&a));
    assert!(no.is_empty(), "{no:?}");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].nr, Some(59));
    assert_eq!((s[0].window.start(), s[0].window.size(), s[0].window.shape()), (mov, 7, "1 before, 0 after".into()));
    assert_eq!(s[0].window.insns[s[0].window.at].ip(), sys);
    assert_eq!((counts.total, counts.not_monitored, counts.allowed), (1, 0, 0));
}

/// A branch target at the `syscall` keeps the instruction before it in
/// place (and hides the number: the branch may come with any `%rax`); the
/// window takes the instructions after it instead.
#[test]
fn a_branch_target_at_the_syscall_moves_the_window_after_it() {
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    let sys = a.syscall();
    a.raw(&MOV_EDI_EAX);
    a.raw(&MOV_EDI_1);
    a.ret();
    a.jmp(sys); // a loop back to the syscall
    let (s, no, _) = sites(&one_function(&a));
    assert!(no.is_empty(), "{no:?}");
    assert_eq!(s[0].nr, None);
    assert_eq!((s[0].window.start(), s[0].window.shape()), (sys, "0 before, 2 after".into()));
}

/// The same, the target being an entry of a PC-relative jump table.
#[test]
fn a_jump_table_entry_at_the_syscall_moves_the_window_after_it() {
    let mut a = Asm::at(TEXT);
    a.lea_rip(Register::RDX, RODATA); // lea rdx, [rip+table]
    a.raw(&[0x48, 0x63, 0x04, 0xba]); // movsxd rax, dword [rdx+rdi*4]
    a.raw(&[0x48, 0x01, 0xd0]); // add rax, rdx
    a.raw(&[0xff, 0xe0]); // jmp rax
    let case0 = a.mov_eax(59);
    let sys = a.syscall();
    a.raw(&MOV_EDI_EAX);
    a.raw(&MOV_EDI_1);
    a.ret();
    let build = |entries: &[u64]| {
        let table: Vec<u8> = entries.iter().flat_map(|&c| ((c as i64 - RODATA as i64) as i32).to_le_bytes()).collect();
        Builder::dyn_().text(a.bytes.clone()).rodata(table).func("f", TEXT, a.bytes.len() as u64).build()
    };
    let (s, _, _) = sites(&build(&[case0, sys]));
    assert_eq!((s[0].window.start(), s[0].window.shape()), (sys, "0 before, 2 after".into()));
    // Control: a table without that entry.
    let (s, _, _) = sites(&build(&[case0]));
    assert_eq!((s[0].window.start(), s[0].window.shape()), (case0, "1 before, 0 after".into()));
}

/// Targets before, at and after the `syscall`: nothing can move.
#[test]
fn branch_targets_on_every_side_refuse_the_syscall() {
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    let sys = a.syscall();
    let after = a.raw(&MOV_EDI_EAX);
    a.raw(&MOV_EDI_1);
    a.ret();
    a.jmp(sys);
    a.jmp(after);
    let (s, no, _) = sites(&one_function(&a));
    assert!(s.is_empty());
    assert!(refusal(&no).contains("no run of 5 bytes of movable instructions"), "{no:?}");
}

/// The window's first instruction may be a target: the jump there lands
/// on the new `jmp`.
#[test]
fn a_branch_target_at_the_first_moved_instruction_is_allowed() {
    let mut a = Asm::at(TEXT);
    a.ret();
    let mov = a.mov_eax(59);
    a.syscall();
    a.ret();
    a.jmp(mov);
    let (s, no, _) = sites(&one_function(&a));
    assert!(no.is_empty(), "{no:?}");
    assert_eq!((s[0].window.start(), s[0].nr), (mov, Some(59)));
}

/// Padding (`nop`, `int3`) is never taken before a `syscall`; a call or
/// another `syscall` never after it; a branch after it only as the last.
#[test]
fn what_may_move_beside_a_syscall() {
    // mov eax,59 ; nop5 ; syscall ; ret  -> nothing movable around it.
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    a.raw(&NOP5);
    a.syscall();
    a.ret();
    let (s, no, _) = sites(&one_function(&a));
    assert!(s.is_empty() && no.len() == 1, "{s:?}");
    // The same with a real instruction in place of the nop: it moves.
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    let mov = a.raw(&MOV_EDI_1);
    a.syscall();
    a.ret();
    let (s, _, _) = sites(&one_function(&a));
    assert_eq!(s[0].window.start(), mov);

    // A target at the syscall, then a call after it: refused.
    let mut a = Asm::at(TEXT);
    let sys = a.syscall();
    a.call(TEXT + 0x10);
    a.ret();
    a.jmp(sys);
    a.pad();
    a.ret();
    let (s, _, _) = sites(&one_function(&a));
    assert!(s.is_empty(), "{s:?}");
    // Two syscalls in a row (the first at a target): neither takes the other.
    let mut a = Asm::at(TEXT);
    let first = a.syscall();
    a.syscall();
    a.raw(&MOV_EDI_1);
    a.ret();
    a.jmp(first);
    let (s, no, _) = sites(&one_function(&a));
    assert_eq!(s.len(), 1, "{no:?}");
    assert_eq!(s[0].window.start(), first + 2, "the second, with the mov after it");
    // A branch after the syscall moves as the last instruction only.
    let mut a = Asm::at(TEXT);
    let sys = a.syscall();
    a.raw(&[0x85, 0xc0]); // test eax, eax
    a.je(TEXT);
    a.ret();
    a.jmp(sys);
    let (s, _, _) = sites(&one_function(&a));
    assert_eq!(s[0].window.shape(), "0 before, 2 after");
    let mut a = Asm::at(TEXT);
    let sys = a.syscall();
    a.raw(&[0x74, 0x03]); // je +3
    a.raw(&XOR_EAX_EAX);
    a.ret();
    a.ret();
    a.jmp(sys);
    let (s, _, _) = sites(&one_function(&a));
    assert!(s.is_empty(), "the je would have to move before the xor: {s:?}");
}

/// The number comes from a `mov`/`xor` to `%eax`/`%rax` in the same basic
/// block; other writes of `%rax`, or a block boundary, leave it unknown.
/// Known, unmonitored numbers are counted, not moved.
#[test]
fn the_system_call_number() {
    let nr = |set: &[u8]| {
        let mut a = Asm::at(TEXT);
        a.raw(&MOV_EDI_1);
        a.raw(set);
        a.raw(&MOV_EDI_EAX); // reads eax, writes edi
        a.syscall();
        a.ret();
        let (s, _, counts) = sites(&one_function(&a));
        (s.first().map(|s| s.nr), counts)
    };
    assert_eq!(nr(&[0xb8, 59, 0, 0, 0]).0, Some(Some(59)), "mov eax, 59");
    assert_eq!(nr(&[0x48, 0xc7, 0xc0, 59, 0, 0, 0]).0, Some(Some(59)), "mov rax, 59");
    assert_eq!(
        nr(&[0x48, 0xb8, 59, 0, 0, 0, 1, 0, 0, 0]).0,
        Some(Some(0x1_0000_003b)),
        "movabs: execve for the kernel"
    );
    assert_eq!(nr(&[0xb0, 59]).0, Some(None), "mov al, 59: unknown");
    assert_eq!(nr(&[0x89, 0xf0]).0, Some(None), "mov eax, esi: unknown");
    let (site, counts) = nr(&XOR_EAX_EAX);
    assert_eq!((site, counts.not_monitored), (None, 1), "xor eax, eax: read, not monitored");
    let (site, counts) = nr(&[0xb8, 1, 0, 0, 0]);
    assert_eq!((site, counts.not_monitored), (None, 1), "write");

    // The policy allows every execve: counted, not moved; an unknown number
    // moves unless no monitored system call is watched at all.
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    a.syscall();
    a.raw(&[0x89, 0xf0]); // mov eax, esi
    a.raw(&MOV_EDI_1);
    a.syscall();
    a.ret();
    let data = one_function(&a);
    let (_, code) = analyse(&data);
    let (s, _, counts) = syscall_sites(&code, |api| api != ApiId::execve, &[], &[], false, false);
    assert_eq!((s.len(), s[0].nr, counts.allowed), (1, None, 1));
    let (s, _, counts) = syscall_sites(&code, |_| false, &[], &[], false, false);
    assert_eq!((s.len(), counts.allowed, counts.total), (0, 2, 2));
}

#[test]
fn a_syscall_in_uncertain_code_is_refused() {
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    let sys = a.syscall();
    a.ret();
    a.raw(&BAD);
    let (s, no, _) = sites(&one_function(&a));
    assert!(s.is_empty());
    assert_eq!(no[0].vaddr, sys);
    assert!(refusal(&no).contains("did not decode with certainty"), "{no:?}");
}

/// libc's cancellable system call sits between two labels its cancellation
/// handler compares the interrupted address with (musl: `__cp_begin`,
/// `__cp_end`; glibc 2.34+: `__syscall_cancel_arch_start`, `_end`). Moved,
/// `pthread_cancel` could no longer interrupt a thread blocked in it.
#[test]
fn a_syscall_inside_a_cancellation_window_stays() {
    for (begin, end) in [("__cp_begin", "__cp_end"), ("__syscall_cancel_arch_start", "__syscall_cancel_arch_end")] {
        let mut a = Asm::at(TEXT);
        let start = a.raw(&[0x8b, 0x07]); // mov eax, [rdi]
        a.mov_eax(59);
        let sys = a.syscall();
        let stop = a.ret();
        let other = a.pad();
        a.mov_eax(59);
        a.syscall();
        a.ret();
        let data = Builder::exec()
            .text(a.bytes.clone())
            .func("f", TEXT, other - TEXT)
            .label(begin, start)
            .label(end, stop)
            .func("g", other, a.here() - other)
            .build();
        let (e, _) = analyse(&data);
        assert_eq!(cancellation_windows(&e), [(start, stop)]);
        let (s, no, _) = sites(&data);
        assert_eq!(no.len(), 1);
        assert_eq!(no[0].vaddr, sys);
        assert!(no[0].reason.contains("thread-cancellation window"), "{no:?}");
        assert_eq!(s.len(), 1, "the syscall outside the window moves");
        assert_eq!(s[0].window.start(), other);
    }
}

/// Without the labels (stripped files), the cancellable syscall of musl
/// and glibc is known by its last instructions: `mov [rsp+8], r11 ;
/// syscall ; ret`.
#[test]
fn a_stripped_cancellable_syscall_is_recognised() {
    let file = |disp: u8| {
        let mut a = Asm::at(TEXT);
        a.raw(&[0x49, 0x89, 0xfb]); // mov r11, rdi
        a.raw(&[0x48, 0x89, 0xf0]); // mov rax, rsi
        a.raw(&[0x4c, 0x89, 0x5c, 0x24, disp]); // mov [rsp+disp], r11
        a.syscall();
        a.ret();
        Builder::exec().text(a.bytes.clone()).build()
    };
    let (s, no, _) = sites(&file(8));
    assert!(s.is_empty());
    assert!(refusal(&no).contains("thread-cancellation window"), "{no:?}");
    // Control: another stack slot is no such window.
    let (s, no, _) = sites(&file(16));
    assert!(no.is_empty(), "{no:?}");
    assert_eq!(s.len(), 1);
}

/// Bytes already rewritten (a detour) are not taken again.
#[test]
fn taken_ranges_are_not_moved_again() {
    let mut a = Asm::at(TEXT);
    let mov = a.mov_eax(59);
    let sys = a.syscall();
    a.raw(&MOV_EDI_EAX);
    a.raw(&MOV_EDI_1);
    a.ret();
    let data = one_function(&a);
    let (_, code) = analyse(&data);
    let (s, _, _) = syscall_sites(&code, |_| true, &[(mov + 2, mov + 3)], &[], false, false);
    assert_eq!((s[0].window.start(), s[0].window.shape()), (sys, "0 before, 2 after".into()));
    let (s, no, _) = syscall_sites(&code, |_| true, &[(mov, mov + 1), (sys + 2, sys + 3)], &[], false, false);
    assert!(s.is_empty());
    assert_eq!(no.len(), 1);
}

/// For trampolines placed at run time (libraries) the neighbours must mean
/// the same anywhere: no RIP-relative operand, no relative branch.
#[test]
fn copy_only_windows_take_no_rip_relative_neighbour() {
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    let lea = a.lea_rip(Register::RSI, TEXT + 0x100); // lea rsi, [rip+...]
    let sys = a.syscall();
    a.ret();
    a.raw(&[0x90; 0x100]);
    let data = one_function(&a);
    let (_, code) = analyse(&data);
    let (s, _, _) = syscall_sites(&code, |_| true, &[], &[], false, false);
    assert_eq!(s[0].window.start(), lea);
    let (s, no, _) = syscall_sites(&code, |_| true, &[], &[], true, false);
    assert!(s.is_empty(), "{s:?}");
    assert_eq!(no[0].vaddr, sys);
    // A plain neighbour is copied.
    let mut a = Asm::at(TEXT);
    a.mov_eax(59);
    let mov = a.raw(&MOV_EDI_1);
    a.syscall();
    a.ret();
    let data = one_function(&a);
    let (_, code) = analyse(&data);
    let (s, _, _) = syscall_sites(&code, |_| true, &[], &[], true, false);
    assert_eq!(s[0].window.start(), mov);
}

/// Two `syscall` sites must never rewrite the same bytes. Regression: they
/// did: the first took the `mov` after it (a `nop` before it cannot move),
/// the second took the same `mov` before it. In a file the two edits
/// overlapped and patching stopped with "two edits overlap"; in a library
/// the runtime wrote both jumps, the second over the first one's rel32.
#[test]
fn two_syscall_windows_never_share_bytes() {
    let mut a = Asm::at(TEXT);
    a.raw(&NOP5);
    a.syscall();
    a.raw(&MOV_EDI_1);
    a.syscall();
    a.ret();
    for copy_only in [false, true] {
        let data = one_function(&a);
        let (_, code) = analyse(&data);
        let (s, refused, _) = syscall_sites(&code, |_| true, &[], &[], copy_only, false);
        assert_eq!(s.len(), 1, "{refused:?}");
        assert_eq!(refused.len(), 1);
        assert!(refused[0].reason.contains("another syscall site's window"), "{}", refused[0].reason);
        for (i, x) in s.iter().enumerate() {
            for y in &s[i + 1..] {
                assert!(
                    x.window.end() <= y.window.start() || y.window.end() <= x.window.start(),
                    "{:#x}..{:#x} and {:#x}..{:#x} overlap",
                    x.window.start(),
                    x.window.end(),
                    y.window.start(),
                    y.window.end()
                );
            }
        }
    }
}

/// An unmonitored number set just before a `syscall` that could move without
/// it (glibc's `read`: `xor %eax,%eax; syscall; cmp ...`): the window takes
/// the `xor` too, so that its trampoline may trust the number and ask nothing.
#[test]
fn an_unmonitored_numbers_window_takes_what_sets_it() {
    let mut a = Asm::at(TEXT);
    let xor = a.raw(&[0x31, 0xc0]); // xor eax, eax
    a.syscall();
    a.raw(&[0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff]); // cmp rax, -4096
    a.ret();
    let data = one_function(&a);
    let (_, code) = analyse(&data);
    let (s, _, _) = syscall_sites(&code, |_| true, &[], &[], true, true);
    assert_eq!(s[0].window.start(), xor);
    assert!(crate::syscalls::number_is_moved(&s[0].window));
}
