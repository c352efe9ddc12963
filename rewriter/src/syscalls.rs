//! The `syscall`-site layer: a monitored system call (its number set by a
//! `mov` in the same basic block, or unknown until run time) moves to a
//! trampoline with its neighbours, at least 5 bytes in all; the trampoline
//! asks the runtime, then runs the real `syscall` (see
//! `dfpatch_runtime::arch::x86_64::SysFrame` for its shape). Used for the
//! executable's own code, and for the libraries' in [`crate::libplan`].

use crate::code::Code;
use crate::elf::Elf;
use crate::moved::{append_moved, relocate, Refused, Window, JMP};
use crate::plan::Layer;
use crate::x86::{self, ask_then_syscall, CALL_OFFSET};
use dfpatch_runtime::apis::{syscall_api, tamper_of, ApiId};
use iced_x86::{Code as Op, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, Register};
use serde::Serialize;

/// A `syscall` instruction to redirect.
#[derive(Clone, Debug)]
pub struct SyscallSite {
    /// Known number, or None when it is only known at run time.
    pub nr: Option<u64>,
    pub window: Window,
    /// Whether its trampoline asks the runtime (else it makes the call at
    /// once: see [`asks_nothing`]).
    pub asks: bool,
}

/// Counts of `syscall` instructions that need no hook.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyscallCounts {
    /// All `syscall` instructions decoded.
    pub total: usize,
    /// Their number is known and not monitored (read, write, ...).
    pub not_monitored: usize,
    /// Monitored, but the policy allows every such call.
    pub allowed: usize,
    /// Rewritten only for the backstop (their number is not monitored, or
    /// allowed): their calls would trap otherwise, at every call or once
    /// per process. Counted among the rewritten sites.
    pub for_backstop: usize,
}

/// Every `syscall` instruction: the ones to redirect, the ones refused, and counts.
/// `hooked(api)`: the policy does not allow every call of `api`. `taken`:
/// byte ranges already rewritten (detours). `for_backstop`: also every site
/// whose number is known, monitored or not, which would otherwise trap:
/// at every call when the backstop cannot rewrite it at run time (see
/// [`rewritable_at_run_time`]; Go's runtime: `epoll_ctl`, `nanosleep`),
/// once per process when it can.
pub fn syscall_sites(
    code: &Code,
    hooked: impl Fn(ApiId) -> bool,
    taken: &[(u64, u64)],
    cancel: &[(u64, u64)],
    copy_only: bool,
    for_backstop: bool,
) -> (Vec<SyscallSite>, Vec<Refused>, SyscallCounts) {
    let any_hooked = dfpatch_runtime::apis::SYSCALLS.iter().any(|&(_, a)| hooked(a));
    let mask = dispatch_mask(&hooked);
    // (A number that may tamper is hooked for its `tamper` API too.)
    let hooked_api = |api: ApiId| hooked(api) || tamper_of(api).is_some_and(&hooked);
    // `io_uring_register` goes through the runtime while rings are
    // restricted (see the runtime's `uring`): its sites are selected as
    // `io_uring_setup`'s.
    let syscall_api = |n: u64| {
        syscall_api(n).or_else(|| dfpatch_runtime::backstop::is_ring_register(n).then_some(ApiId::io_uring_setup))
    };
    let select = |_: &Code, _: usize, nr: Option<u64>, counts: &mut SyscallCounts| match nr {
        // With the backstop, every site: one it could not rewrite at run
        // time would trap at every call, the others once per process (and
        // a short process makes mostly first calls). Rewritten in the file,
        // they cost nothing at start-up.
        Some(n) if for_backstop => {
            let api = syscall_api(n).filter(|&api| hooked_api(api));
            if api.is_none() {
                counts.for_backstop += 1;
            }
            Some(api.map_or_else(|| format!("system call {n}"), |api| api.name().to_string()))
        }
        Some(n) => match syscall_api(n) {
            None => {
                counts.not_monitored += 1;
                None
            }
            Some(api) if !hooked_api(api) => {
                counts.allowed += 1;
                None
            }
            Some(api) => Some(api.name().to_string()),
        },
        None if !any_hooked => {
            counts.allowed += 1;
            None
        }
        None => Some("unknown number".to_string()),
    };
    sites_where(code, select, taken, cancel, copy_only, &mask)
}

/// Every `syscall` instruction, whatever its number (libc's: see
/// `libplan`); those the backstop could not rewrite at run time are
/// counted as [`SyscallCounts::for_backstop`]. `mask`: the numbers the
/// runtime's dispatcher looks at (see [`dispatch_mask`]).
pub fn every_site(
    code: &Code,
    taken: &[(u64, u64)],
    cancel: &[(u64, u64)],
    mask: &[u64; 8],
) -> (Vec<SyscallSite>, Vec<Refused>, SyscallCounts) {
    let select = |code: &Code, i: usize, nr: Option<u64>, counts: &mut SyscallCounts| {
        let api = nr.and_then(syscall_api);
        if !rewritable_at_run_time(code, i) {
            counts.for_backstop += 1;
        }
        Some(match (api, nr) {
            (Some(api), _) => api.name().to_string(),
            (None, Some(n)) => format!("system call {n}"),
            (None, None) => "unknown number".to_string(),
        })
    };
    sites_where(code, select, taken, cancel, true, mask)
}

/// Whether the backstop can rewrite `syscall` instruction `i` at run time
/// with threads running: a `mov $N, %eax` just before it, within one aligned
/// 8-byte word (a file is loaded at a page boundary, so its addresses keep
/// their alignment).
fn rewritable_at_run_time(code: &Code, i: usize) -> bool {
    let (Some(before), Some(at)) = (i.checked_sub(1).and_then(|p| code.insn(p)), code.insn(i)) else {
        return false;
    };
    before.code() == Op::Mov_r32_imm32
        && before.op0_register() == Register::EAX
        && before.next_ip() == at.ip()
        && before.len() == 5
        && before.ip() % 8 <= 3
}

fn sites_where(
    code: &Code,
    select: impl Fn(&Code, usize, Option<u64>, &mut SyscallCounts) -> Option<String>,
    taken: &[(u64, u64)],
    cancel: &[(u64, u64)],
    copy_only: bool,
    mask: &[u64; 8],
) -> (Vec<SyscallSite>, Vec<Refused>, SyscallCounts) {
    let mut info = InstructionInfoFactory::new();
    let mut sites = Vec::new();
    let mut refused = Vec::new();
    let mut counts = SyscallCounts::default();
    // What is rewritten already: the detours, then each window chosen here
    // (two windows sharing a byte would write two jumps over each other).
    let mut taken = taken.to_vec();
    let detoured = taken.len();
    for i in code.syscalls() {
        let Some(ins) = code.insn(i) else { continue };
        let ins = &ins;
        counts.total += 1;
        let nr = number(code, i, &mut info);
        let Some(what) = select(code, i, nr, &mut counts) else { continue };
        if !code.certain(ins.ip(), ins.next_ip()) {
            refused.push(Refused {
                layer: Layer::Syscall,
                vaddr: ins.ip(),
                what,
                reason: "the code around it did not decode with certainty".into(),
            });
            continue;
        }
        if cancel.iter().any(|&(lo, hi)| ins.ip() >= lo && ins.ip() <= hi) || musl_cancel_asm(code, i) {
            refused.push(Refused {
                layer: Layer::Syscall,
                vaddr: ins.ip(),
                what,
                reason: "inside libc's thread-cancellation window: moved, pthread_cancel could no longer \
                         interrupt a thread blocked in it"
                    .into(),
            });
            continue;
        }
        match syscall_window(code, i, &taken, copy_only, nr, mask) {
            Some(window) => {
                taken.push((window.start(), window.end()));
                let asks = !asks_nothing(nr, &window, mask);
                sites.push(SyscallSite { nr, window, asks });
            }
            None => {
                // Said apart: refused only because an earlier site took the bytes.
                let shared = syscall_window(code, i, &taken[..detoured], copy_only, nr, mask).is_some();
                let reason = if shared {
                    "its only movable neighbours are in another syscall site's window"
                } else {
                    "no run of 5 bytes of movable instructions around it without a branch target inside"
                };
                refused.push(Refused { layer: Layer::Syscall, vaddr: ins.ip(), what, reason: reason.into() })
            }
        }
    }
    (sites, refused, counts)
}

/// Where libc's cancellable system call sits between two labels that its
/// cancellation signal handler compares the interrupted address with: musl's
/// `__cp_begin`..`__cp_end`, glibc's (2.34+) `__syscall_cancel_arch_start`..`_end`.
/// A `syscall` between them must stay where it is.
pub fn cancellation_windows(e: &Elf) -> Vec<(u64, u64)> {
    let syms = e.symbols();
    let at = |n: &str| syms.iter().find(|s| s.name == n).map(|s| s.value);
    [("__cp_begin", "__cp_end"), ("__syscall_cancel_arch_start", "__syscall_cancel_arch_end")]
        .iter()
        .filter_map(|(a, b)| Some((at(a)?, at(b)?)))
        .collect()
}

/// musl's `__syscall_cp_asm` recognised by its last instructions (for
/// stripped files, where the labels are gone): `mov %r11, 8(%rsp)`,
/// `syscall`, `ret`.
fn musl_cancel_asm(code: &Code, i: usize) -> bool {
    let (Some(prev), Some(next)) = (i.checked_sub(1).and_then(|p| code.insn(p)), code.insn(i + 1)) else {
        return false;
    };
    prev.code() == Op::Mov_rm64_r64
        && prev.op1_register() == Register::R11
        && prev.memory_base() == Register::RSP
        && prev.memory_index() == Register::None
        && prev.memory_displacement64() == 8
        && next.mnemonic() == Mnemonic::Ret
}

/// Whether the trampoline of the `syscall` in `w`, whose number is `nr`, may
/// make the call without asking the runtime: a known number `dfp_sys_hook`
/// would let through at once under `mask`, set inside the window (see
/// [`number_is_moved`]).
pub fn asks_nothing(nr: Option<u64>, w: &Window, mask: &[u64; 8]) -> bool {
    unasked(nr, mask) && number_is_moved(w)
}

/// A known number that `dfp_sys_hook` would let through at once (one the
/// backstop does not virtualise and the policy does not watch), and that
/// starts no process or thread: a spawning site's trampoline always goes
/// the asking way, whose tail arms the child's backstop.
fn unasked(nr: Option<u64>, mask: &[u64; 8]) -> bool {
    nr.is_some_and(|n| !dfpatch_runtime::backstop::dispatched(n, mask) && !dfpatch_runtime::apis::may_spawn(n))
}

/// The numbers `dfp_sys_hook` sends to the dispatcher when the policy
/// watches the APIs `hooked` says (the runtime computes the same mask at
/// start-up).
pub fn dispatch_mask(hooked: impl Fn(ApiId) -> bool) -> [u64; 8] {
    dfpatch_runtime::backstop::dispatch_mask(hooked)
}

/// Whether the instruction that sets the number of the window's `syscall`
/// moves into its trampoline (a write of `%rax` before the `syscall`, inside
/// the window; the window has no branch target but its start). Only then may
/// the trampoline trust the number it was planned for: a window that starts
/// at the `syscall` is reached by whatever jumps there, with any `%rax`.
pub fn number_is_moved(w: &Window) -> bool {
    let mut info = InstructionInfoFactory::new();
    w.insns.get(..w.at).unwrap_or(&[]).iter().any(|ins| {
        info.info(ins).used_registers().iter().any(|r| {
            r.register().full_register() == Register::RAX && matches!(r.access(), OpAccess::Write | OpAccess::ReadWrite)
        })
    })
}

/// The system call number set in the same basic block before instruction `i`.
fn number(code: &Code, i: usize, info: &mut InstructionInfoFactory) -> Option<u64> {
    let mut j = i;
    while j > 0 {
        let (Some(prev), Some(next)) = (code.insn(j - 1), code.insn(j)) else { return None };
        let (prev, next) = (&prev, &next);
        if prev.next_ip() != next.ip() || code.is_target(next.ip()) || prev.flow_control() != FlowControl::Next {
            return None; // the block starts at `next`: the number comes from elsewhere
        }
        let writes_rax = info.info(prev).used_registers().iter().any(|r| {
            r.register().full_register() == Register::RAX
                && matches!(
                    r.access(),
                    OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
                )
        });
        if writes_rax {
            return match prev.code() {
                Op::Mov_r32_imm32 if prev.op0_register() == Register::EAX => Some(prev.immediate32() as u64),
                Op::Mov_rm64_imm32 if prev.op0_register() == Register::RAX => Some(prev.immediate32to64() as u64),
                Op::Mov_r64_imm64 if prev.op0_register() == Register::RAX => Some(prev.immediate64()),
                Op::Xor_r32_rm32 | Op::Xor_rm32_r32
                    if prev.op0_register() == Register::EAX && prev.op1_register() == Register::EAX =>
                {
                    Some(0)
                }
                _ => None,
            };
        }
        j -= 1;
    }
    None
}

/// The smallest run of whole instructions around the `syscall` at `i`, at
/// least 5 bytes, that can move: preferring neighbours before it.
/// `copy_only`: only instructions whose bytes mean the same anywhere (no
/// RIP-relative operand, no relative branch), for trampolines placed at run
/// time (libraries).
fn syscall_window(
    code: &Code,
    i: usize,
    taken: &[(u64, u64)],
    copy_only: bool,
    nr: Option<u64>,
    mask: &[u64; 8],
) -> Option<Window> {
    // For a number the dispatcher would let through at once, the smallest
    // window that holds the instruction setting it (its trampoline may then
    // ask nothing: see `number_is_moved`); else the smallest one.
    let worth = unasked(nr, mask);
    for with_number in [true, false].into_iter().filter(|&w| worth || !w) {
        for count in 1..=6usize {
            for before in (0..count).rev() {
                let after = count - 1 - before;
                let (Some(lo), hi) = (i.checked_sub(before), i + after) else { continue };
                let Some(run) = code.run(lo, hi) else { continue };
                let run = &run[..];
                let copyable = |ins: &Instruction| {
                    !ins.is_ip_rel_memory_operand()
                        && matches!(ins.flow_control(), FlowControl::Next | FlowControl::Return)
                };
                let others_copyable = run.iter().enumerate().all(|(k, ins)| k == before || copyable(ins));
                if movable(code, run, before, taken) && (!copy_only || others_copyable) {
                    let w = Window { insns: run.to_vec(), at: before };
                    if !with_number || number_is_moved(&w) {
                        return Some(w);
                    }
                }
            }
        }
    }
    None
}

fn movable(code: &Code, run: &[Instruction], at: usize, taken: &[(u64, u64)]) -> bool {
    let (start, end) = (run[0].ip(), run[run.len() - 1].next_ip());
    if end - start < JMP as u64 || !code.certain(start, end) {
        return false;
    }
    if taken.iter().any(|&(lo, hi)| start < hi && lo < end) {
        return false;
    }
    for (k, ins) in run.iter().enumerate() {
        if k > 0 && (run[k - 1].next_ip() != ins.ip() || code.is_target(ins.ip())) {
            return false;
        }
        let last = k + 1 == run.len();
        let ok = match k.cmp(&at) {
            std::cmp::Ordering::Less => {
                ins.flow_control() == FlowControl::Next && !matches!(ins.mnemonic(), Mnemonic::Nop | Mnemonic::Int3)
            }
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Greater => match ins.flow_control() {
                FlowControl::Next => ins.mnemonic() != Mnemonic::Syscall,
                FlowControl::UnconditionalBranch
                | FlowControl::ConditionalBranch
                | FlowControl::IndirectBranch
                | FlowControl::Return => last,
                _ => false,
            },
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The trampoline of a `syscall` site at `at` whose number is `nr` (None:
/// known only at run time), for hook number `k` (see the module
/// documentation of the runtime's `arch::x86_64` for the sequence);
/// `runtime` is where `dfp_sys_hook` and `dfp_arm_child` are. `ask`: the
/// trampoline asks the runtime (else it makes the call at once: see
/// [`asks_nothing`]).
pub fn syscall_trampoline(
    w: &Window,
    nr: Option<u64>,
    ask: bool,
    at: u64,
    k: u32,
    runtime: (u64, u64),
) -> Result<Vec<u8>, String> {
    const FAR: &str = "the runtime is more than 2 GiB from the trampoline";
    let mut b = relocate(&w.insns[..w.at], at)?;
    // call dfp_sys_hook, at the address the call will have.
    let call_at = at + b.len() as u64 + CALL_OFFSET as u64;
    let call = x86::call(call_at, runtime.0).ok_or(FAR)?;
    // A child arms its backstop: the tail starts after the syscall, which
    // is 4 bytes after the end of the ask (jrcxz, syscall).
    let tail = if nr.is_none_or(dfpatch_runtime::apis::may_spawn) {
        let tail_at = call_at + call.len() as u64 + 8 + 4;
        x86::child_arms(tail_at, runtime.1).ok_or(FAR)?
    } else {
        Vec::new()
    };
    // Asking nothing, the trampoline (inside the backstop's range) makes the
    // call itself.
    if !ask {
        b.extend([0x0f, 0x05]); // syscall
    } else {
        ask_then_syscall(&mut b, k, &call, &tail);
    }
    append_moved(&mut b, &w.insns[w.at + 1..], at, w.end())?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moved::site_bytes;
    use crate::moved::tests::{decode, text};

    #[test]
    fn syscall_trampoline_decodes_as_documented() {
        // mov eax, 59 ; syscall ; ret   at 0x401000
        let code = [0xb8, 0x3b, 0, 0, 0, 0x0f, 0x05, 0xc3];
        let w = Window { insns: decode(&code[..7], 0x401000), at: 1 };
        let t = syscall_trampoline(&w, Some(59), true, 0x500000, 3, (0x480000, 0x480100)).unwrap();
        assert_eq!(
            text(&t, 0x500000),
            [
                "mov eax,3Bh",
                "lea rsp,[rsp-80h]",
                "mov r11d,3",
                "call 0000000000480000h",
                "lea rsp,[rsp+80h]",
                "jrcxz 0000000000500021h",
                "syscall",
                "jmp 0000000000401007h",
            ]
        );
        // The jrcxz lands just after the syscall.
        assert_eq!(decode(&t, 0x500000)[6].next_ip(), 0x500021);
        assert_eq!(site_bytes(&w, 0x500000).unwrap(), [0xe9, 0xfb, 0xef, 0x0f, 0x00, 0xcc, 0xcc]);
        // getppid, which the dispatcher would let through at once: no question.
        let code = [0xb8, 0x6e, 0, 0, 0, 0x0f, 0x05, 0xc3];
        let w = Window { insns: decode(&code[..7], 0x401000), at: 1 };
        let all = dispatch_mask(|_| true);
        assert!(asks_nothing(Some(110), &w, &all));
        let t = syscall_trampoline(&w, Some(110), false, 0x500000, 3, (0x480000, 0x480100)).unwrap();
        assert_eq!(text(&t, 0x500000), ["mov eax,6Eh", "syscall", "jmp 0000000000401007h"]);
        // A monitored number asks, unless the policy lets it through everywhere.
        let code = [0xb8, 0x5a, 0, 0, 0, 0x0f, 0x05, 0xc3]; // chmod
        let w2 = Window { insns: decode(&code[..7], 0x401000), at: 1 };
        assert!(!asks_nothing(Some(90), &w2, &all));
        assert!(asks_nothing(Some(90), &w2, &dispatch_mask(|a| a != ApiId::chmod)));
        // (One that can tamper asks while its `tamper` API is watched.)
        assert!(!asks_nothing(Some(10), &w2, &dispatch_mask(|a| a != ApiId::mprotect)));
        // One that starts a process or thread always asks (its tail arms the
        // child), even where the policy lets every such call through.
        let code = [0xb8, 0x39, 0, 0, 0, 0x0f, 0x05, 0xc3]; // fork
        let w3 = Window { insns: decode(&code[..7], 0x401000), at: 1 };
        assert!(!asks_nothing(Some(57), &w3, &dispatch_mask(|_| false)));
        // The same number set before the window (which starts at the
        // `syscall`: code that jumps there brings its own %rax): it asks.
        let code = [0x0f, 0x05, 0x48, 0x89, 0xc7, 0xc3]; // syscall; mov rdi, rax
        let w = Window { insns: decode(&code[..5], 0x401005), at: 0 };
        assert!(!number_is_moved(&w));
        assert!(!asks_nothing(Some(110), &w, &all));
        let t = syscall_trampoline(&w, Some(110), true, 0x500000, 3, (0x480000, 0x480100)).unwrap();
        assert!(text(&t, 0x500000).iter().any(|i| i.starts_with("call")), "{:?}", text(&t, 0x500000));
    }

    #[test]
    fn a_spawning_site_arms_its_child() {
        // mov eax, 57 ; syscall ; ret   at 0x401000: fork
        let code = [0xb8, 0x39, 0, 0, 0, 0x0f, 0x05, 0xc3];
        for nr in [Some(57), None] {
            let w = Window { insns: decode(&code[..7], 0x401000), at: 1 };
            let t = syscall_trampoline(&w, nr, true, 0x500000, 3, (0x480000, 0x480100)).unwrap();
            assert_eq!(
                text(&t, 0x500000)[5..],
                [
                    "jrcxz 0000000000500038h",
                    "syscall",
                    "test rax,rax",
                    "jne short 0000000000500038h",
                    "lea rsp,[rsp-80h]",
                    "call 0000000000480100h",
                    "lea rsp,[rsp+80h]",
                    "jmp 0000000000401007h",
                ]
            );
        }
    }

    #[test]
    fn moved_rip_relative_operands_keep_their_target() {
        // lea rdi, [rip+0x100] ; syscall   at 0x401000 (target 0x401107)
        let code = [0x48, 0x8d, 0x3d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x05];
        let w = Window { insns: decode(&code, 0x401000), at: 1 };
        let t = syscall_trampoline(&w, Some(2), true, 0x7000_0000, 0, (0x7000_1000, 0x7000_1100)).unwrap();
        let moved = decode(&t, 0x7000_0000)[0];
        assert_eq!(moved.ip_rel_memory_address(), 0x401107);
    }
}
