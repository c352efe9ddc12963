//! All of the runtime's inline assembly, and nothing else.
//!
//! * `syscallN`: raw Linux system calls. The kernel clobbers `rcx` and `r11`;
//!   each wrapper declares that once. Results are the raw kernel value
//!   (negative errno on failure).
//! * `dfp_entry`: the new ELF entry point. It runs before the program's own
//!   `_start`, keeps `%rdx` (the dynamic loader's fini function) and the
//!   initial stack untouched, calls `dfp_start` and jumps to the original entry.
//! * `dfp_preinit_entry`: what `DT_PREINIT_ARRAY` points at (glibc calls it
//!   before any library constructor); it runs start-up like `dfp_entry`.
//! * `dfp_hook`: where every hook stub goes when a call needs the runtime.
//!   `%r11` holds the hook number; the caller's stack is exactly as at the
//!   call. It saves the argument registers into a [`HookFrame`], calls
//!   `dfp_dispatch`, then either restores everything and jumps to the real
//!   function (variadic arguments and `%al` untouched) or returns the value the
//!   runtime chose. The runtime is built without SSE (x86_64-unknown-none is
//!   soft-float), so vector registers need no saving.
//! * `dfp_sys_hook`: what a rewritten `syscall` instruction's trampoline
//!   calls (see [`SysFrame`]). It keeps every register and the flags, so the
//!   trampoline can then run the real `syscall` itself (a `clone` child or a
//!   `vfork` child then returns into the program exactly as before).
//! * `dfp_sigsys_entry`: the SIGSYS handler of the backstop.
//! * `dfp_signal_wrapper`: what every handler the program installs runs through.
//! * `dfp_arm_child`: a new child's first step (arms its backstop).
//!
//! These five run on a stack of the runtime's (`stacks`), claimed before they
//! save anything (`DFP_TOP`) and given back once they have switched back
//! (`DFP_BUSY_OF` names the byte): the program's stack holds only the return
//! address of the call that entered them.

use core::arch::{asm, global_asm};

/// The registers `dfp_hook` saved, lowest address first.
#[repr(C)]
pub struct HookFrame {
    /// In: the hook number. Out: the address to jump to when forwarding.
    pub r11: u64,
    /// In: the caller's `%rax` (`%al` = vector registers used by a variadic call).
    /// Out: the return value when the call is refused.
    pub rax: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub r8: u64,
    pub r9: u64,
    pub rbp: u64,
    /// The caller's return address (a copy of the word at `sp`).
    pub ret: u64,
    /// The byte that gives back the stack this frame is on (see `stacks`).
    pub busy: u64,
    /// The caller's stack pointer at the hook: where its return address is;
    /// the caller's stack arguments follow it.
    pub sp: u64,
}

impl HookFrame {
    /// Integer argument `n` (0-based) of the intercepted call.
    pub fn arg(&self, n: usize) -> u64 {
        match n {
            0 => self.rdi,
            1 => self.rsi,
            2 => self.rdx,
            3 => self.rcx,
            4 => self.r8,
            5 => self.r9,
            _ => 0,
        }
    }

    /// The six integer arguments, in order.
    pub fn args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.rcx, self.r8, self.r9]
    }

    /// Address of stack argument `n` (the 7th integer argument is stack argument 0).
    pub fn stack_arg_addr(&self, n: usize) -> u64 {
        self.sp.wrapping_add(8 + 8 * n as u64)
    }
}

/// What `dfp_sys_hook` saved, lowest address first. The trampoline of a
/// rewritten `syscall` instruction is
///
/// ```text
///   <moved instructions that came before the syscall>
///   lea   -128(%rsp), %rsp        ; step over the red zone
///   mov   $k, %r11d               ; hook number (the kernel clobbers r11 anyway)
///   call  dfp_sys_hook            ; rcx = 0: refused, rax = -EPERM
///   lea   128(%rsp), %rsp
///   jrcxz 1f                      ; flags untouched (rcx is clobbered by syscall)
///   syscall
/// 1:<moved instructions that came after it>
///   jmp   <back>
/// ```
#[repr(C)]
pub struct SysFrame {
    pub rbp: u64,
    /// The hook number.
    pub r11: u64,
    pub r9: u64,
    pub r8: u64,
    pub r10: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// DF and the system flags (the arithmetic ones are in `arith`).
    pub rflags: u64,
    /// The byte that gives back the stack this frame is on (see `stacks`).
    pub busy: u64,
    /// The arithmetic flags as `lahf` and `seto` left them in `%ax`.
    pub arith: u64,
    /// In: the system call number. Out: the result when refused.
    pub rax: u64,
    /// The stack pointer at `dfp_sys_hook`: where the return address into
    /// the trampoline is, below the red zone.
    pub sp: u64,
}

impl SysFrame {
    /// The program's stack pointer at the `syscall` instruction: above the
    /// return address into the trampoline and the red zone it skipped.
    pub fn program_sp(&self) -> u64 {
        self.sp.wrapping_add(8 + 128)
    }
}

impl SysFrame {
    /// The system call's arguments in the layout [`HookFrame::arg`] reads,
    /// for the argument decoder (the fourth is `%r10`, not `%rcx`).
    pub fn as_call(&self) -> HookFrame {
        HookFrame {
            r11: self.r11,
            rax: self.rax,
            rdi: self.rdi,
            rsi: self.rsi,
            rdx: self.rdx,
            rcx: self.r10,
            r8: self.r8,
            r9: self.r9,
            rbp: self.rbp,
            ret: 0,
            busy: 0,
            sp: 0,
        }
    }
}

/// `dfp_sys_dispatch` result: run the system call.
pub const SYS_RUN: u64 = 1;
/// `dfp_sys_dispatch` result: do not run it; `SysFrame::rax` is the result.
pub const SYS_SKIP: u64 = 0;

/// `dfp_dispatch` result: restore the registers and jump to `HookFrame::r11`.
pub const FORWARD: u64 = 0;
/// `dfp_dispatch` result: return `HookFrame::rax` to the caller.
pub const RETURN: u64 = 1;

global_asm!(
    ".pushsection .text.dfp_entry,\"ax\",@progbits",
    ".globl dfp_entry",
    ".hidden dfp_entry",
    ".type dfp_entry,@function",
    "dfp_entry:",
    "endbr64",
    "mov rdi, rsp",
    "push rdx",
    "sub rsp, 8",
    "call {start}",
    "add rsp, 8",
    "pop rdx",
    "jmp rax",
    ".size dfp_entry, . - dfp_entry",
    "",
    // Called indirectly by the dynamic loader (DT_PREINIT_ARRAY): starts with
    // endbr64 for indirect branch tracking, then goes on to Rust unchanged.
    ".globl dfp_preinit_entry",
    ".hidden dfp_preinit_entry",
    ".type dfp_preinit_entry,@function",
    "dfp_preinit_entry:",
    "endbr64",
    "jmp {preinit}",
    ".size dfp_preinit_entry, . - dfp_preinit_entry",
    "",
    // Claims a stack of the pool (`stacks`) with register \r alone (and the
    // flags): \r = its 16-aligned top. Goes to \none when none is free or
    // the pool is not mapped. Writes no stack.
    ".macro DFP_CLAIM r, none",
    "cmp qword ptr [rip + {pool}], 0",
    "je \\none",
    "xor \\r, \\r",
    "8:",
    "lock bts qword ptr [rip + {busy}], \\r", // bit 8 i: stack i's byte
    "jnc 9f",
    "add \\r, 8",
    "cmp \\r, {stacks} * 8",
    "jb 8b",
    "jmp \\none",
    "9:",
    "shl \\r, {shift} - 3",
    "add \\r, qword ptr [rip + {pool}]",
    "add \\r, {stride}",
    ".endm",
    // \r = the top of the stack the hook is to run on: one of the pool's,
    // waited for when all are taken (`dfp_wait_for_stack`); else the
    // program's, below its stack pointer (label 3: the way there).
    ".macro DFP_TOP r",
    "4:",
    "DFP_CLAIM \\r, 7f",
    "jmp 6f",
    "7:",
    "call dfp_wait_for_stack",
    "jnz 4b",
    "3:",
    "mov \\r, rsp",
    "and \\r, -16",
    "6:",
    ".endm",
    // \a = the frame just saved, \depth bytes below the top the hook chose;
    // then \a = the byte that gives that stack back: a stack of the pool's
    // when that top is one (a claimed stack's frame sits exactly there),
    // else `stacks::NO_STACK` (the program's stack, or program code running
    // on a pool stack another hook holds: a signal handler, a constructor).
    // \s: scratch.
    ".macro DFP_BUSY_OF a, s, depth",
    "lea \\s, [\\a + \\depth]",
    "sub \\s, qword ptr [rip + {pool}]", // (i + 1) * STRIDE for stack i
    "lea \\a, [rip + {no_stack}]",
    "cmp qword ptr [rip + {pool}], 0",
    "je 9f",
    "test \\s, {stride} - 1",
    "jnz 9f",
    "shr \\s, {shift}",
    "dec \\s",
    "cmp \\s, {stacks}",
    "jae 9f",
    "lea \\a, [rip + {busy}]",
    "add \\a, \\s",
    "9:",
    ".endm",
    "",
    // Called by a hook that found every stack of the pool taken. In a `fork`
    // child (another process that does not share this memory: `kcmp` with
    // its parent), the stacks its parent's other threads held at the fork
    // are copies nothing will give back: all but the one this thread runs on
    // are freed at once. Otherwise it sleeps 50 µs at a time (nanosleep)
    // until one is given back. Returns with ZF = 0 (claim again); gives up
    // after {waits} sleeps (about 2 s), or at once without a pool, with ZF = 1
    // (the hook then runs on the program's stack, as it did before the
    // pool). After a wait in vain (a sink that takes no more events holds
    // every stack), the next ones look once and do not sleep, until a stack
    // is found free again. Keeps every register but the flags; uses 104 bytes of the
    // program's stack meanwhile.
    ".globl dfp_wait_for_stack",
    ".hidden dfp_wait_for_stack",
    ".type dfp_wait_for_stack,@function",
    "dfp_wait_for_stack:",
    "push rcx",
    "push r11",
    "push rax",
    "push rbx",
    "push rdi",
    "push rsi",
    "push rdx",
    "push r10",
    "push r8",
    "sub rsp, 24",
    "cmp qword ptr [rip + {pool}], 0",
    "je 3f",
    "mov eax, 39", // getpid
    "syscall",
    "cmp rax, qword ptr [rip + {pool_pid}]",
    "je 7f",
    "mov rbx, rax",
    "mov eax, 110", // getppid
    "syscall",
    "mov rdi, rbx",
    "mov rsi, rax",
    "mov edx, 1", // KCMP_VM
    "xor r10d, r10d",
    "xor r8d, r8d",
    "mov eax, 312", // kcmp
    "syscall",
    "test rax, rax",
    "jle 7f", // 0: the same memory (vfork, CLONE_VM); < 0: cannot tell
    "mov qword ptr [rip + {pool_pid}], rbx",
    "mov rax, rsp", // the stack this thread runs on, if one of the pool's
    "sub rax, qword ptr [rip + {pool}]",
    "shr rax, {shift}",
    "lea rcx, [rip + {busy}]",
    "xor edx, edx",
    "2:",
    "cmp rdx, rax",
    "je 6f",
    "mov byte ptr [rcx + rdx], 0",
    "6:",
    "inc edx",
    "cmp edx, {stacks}",
    "jb 2b",
    "jmp 4f",
    "7:",
    "mov ebx, {waits}",
    "cmp byte ptr [rip + {gave_up}], 0",
    "je 2f",
    "mov ebx, 1", // another hook waited in vain lately: one look, no sleep
    "jmp 8f",
    "2:",
    "mov qword ptr [rsp], 0",
    "mov qword ptr [rsp + 8], 50000",
    "mov rdi, rsp",
    "xor esi, esi",
    "mov eax, 35", // nanosleep
    "syscall",
    "8:",
    "lea rcx, [rip + {busy}]",
    "xor eax, eax",
    "5:",
    "cmp byte ptr [rcx + rax], 0",
    "je 4f",
    "inc eax",
    "cmp eax, {stacks}",
    "jb 5b",
    "dec ebx",
    "jnz 2b",
    "mov byte ptr [rip + {gave_up}], 1",
    "3:",
    "xor eax, eax", // ZF = 1: none
    "jmp 6f",
    "4:",
    "mov byte ptr [rip + {gave_up}], 0",
    "test esp, esp", // ZF = 0: one looks free
    "6:",
    "lea rsp, [rsp + 24]", // (lea: the flags stay)
    "pop r8",
    "pop r10",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "pop rbx",
    "pop rax",
    "pop r11",
    "pop rcx",
    "ret",
    ".size dfp_wait_for_stack, . - dfp_wait_for_stack",
    "",
    // Entered by a jump from a hook stub: [rsp] = the caller's return
    // address, r11 = the hook number, rax = the caller's (al: vector
    // registers of a variadic call). r10 is free. The frame (`HookFrame`)
    // goes on a stack of the pool (see `DFP_TOP`).
    ".globl dfp_hook",
    ".hidden dfp_hook",
    ".type dfp_hook,@function",
    "dfp_hook:",
    "DFP_TOP r10",
    "mov [r10 - 8], rsp", // HookFrame.sp
    "lea rsp, [r10 - 16]", // HookFrame.busy, set below
    "mov r10, [r10 - 8]",
    "push qword ptr [r10]", // HookFrame.ret
    "push rbp",
    "push r9",
    "push r8",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rax",
    "push r11",
    "mov r10, rsp",
    "DFP_BUSY_OF r10, r11, 96",
    "mov [rsp + 80], r10",
    "mov rdi, rsp",
    "call {dispatch_entry}",
    "mov r10, [rsp + 80]",
    "test eax, eax",
    "pop r11",
    "pop rax",
    "jnz 2f",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop r8",
    "pop r9",
    "pop rbp",
    "mov rsp, [rsp + 16]",
    "mov byte ptr [r10], 0", // given back, on the program's stack again
    "jmp r11",
    "2:",
    "mov rsp, [rsp + 72]",
    "mov byte ptr [r10], 0",
    "ret",
    ".size dfp_hook, . - dfp_hook",
    "",
    // Entered by `call` from a syscall trampoline, below the red zone: [rsp]
    // = the return address, r11 = the hook number, rax = the system call
    // number. Keeps the flags and every register but rcx (the decision) and
    // r11, as the system call itself does; rcx is free. The program's stack
    // gets nothing more: the flags are kept in registers (`lahf` and `seto`)
    // until the frame (`SysFrame`) is on a stack of the pool.
    ".globl dfp_sys_hook",
    ".hidden dfp_sys_hook",
    ".type dfp_sys_hook,@function",
    "dfp_sys_hook:",
    "xchg rcx, rax", // rcx: the number; rax: free
    "lahf",
    "seto al", // ax: the flags
    // Fast way out for numbers below 512 neither monitored nor virtualised
    // by the backstop (`backstop::DISPATCH_MASK`; x32 and
    // other large numbers take the slow path, which decides in Rust).
    // The kernel reads only %eax (the upper half is ignored).
    "cmp ecx, 511",
    "ja 3f",
    "bt dword ptr [rip + {mask}], ecx",
    "jnc 5f",
    // A `sendto` with no address and no MSG_FASTOPEN (libc's `send`) is
    // never of interest (`filter::quick`): out too, not through the frame.
    "cmp ecx, 44",
    "jne 3f",
    "test r8, r8",
    "jnz 3f",
    "bt r10d, 29",
    "jc 3f",
    "5:",
    "add al, 0x7f", // OF back (al is 1 or 0)
    "sahf", // SF ZF AF PF CF back
    "mov rax, rcx",
    "mov ecx, 1",
    "ret",
    "3:",
    "movzx eax, ax",
    "shl rax, 48",
    "or r11, rax", // the hook number (32 bits) and the flags
    "DFP_TOP rax",
    "mov [rax - 8], rsp", // SysFrame.sp
    "lea rsp, [rax - 8]",
    "push rcx", // SysFrame.rax
    "mov rcx, r11",
    "shr rcx, 48",
    "push rcx", // SysFrame.arith
    "mov r11d, r11d",
    "push rcx", // SysFrame.busy, set below
    "pushfq", // SysFrame.rflags: DF and the system flags
    "cld",
    "push rdi",
    "push rsi",
    "push rdx",
    "push r10",
    "push r8",
    "push r9",
    "push r11",
    "push rbp",
    "mov rax, rsp",
    "DFP_BUSY_OF rax, rcx, 104",
    "mov [rsp + 72], rax",
    "mov rdi, rsp",
    "sub rsp, 8", // 16-aligned: 14 words below the top
    "call {sys_dispatch_entry}",
    "mov rcx, rax",
    "add rsp, 8",
    "pop rbp",
    "pop r11",
    "pop r9",
    "pop r8",
    "pop r10",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "popfq",
    "pop r11", // the stack's byte
    "pop rax",
    "add al, 0x7f",
    "sahf",
    "pop rax",
    "mov rsp, [rsp]",
    "mov byte ptr [r11], 0", // given back (a store: the flags stay)
    "ret",
    ".size dfp_sys_hook, . - dfp_sys_hook",
    "",
    // The SIGSYS handler (SA_SIGINFO: rdi, rsi = siginfo, rdx = ucontext).
    // A trap is decided by `backstop::dfp_sigsys` on a stack of the pool:
    // the stack the kernel chose (the program's, or its small alternate
    // stack) holds only the kernel's frame. Any other SIGSYS goes to the
    // program's own action where it is.
    ".globl dfp_sigsys_entry",
    ".hidden dfp_sigsys_entry",
    ".type dfp_sigsys_entry,@function",
    "dfp_sigsys_entry:",
    "endbr64",
    "cmp dword ptr [rsi + 8], {sys_user_dispatch}", // si_code
    "jne {foreign}",
    "DFP_TOP rax",
    "mov [rax - 8], rsp",
    "lea rsp, [rax - 16]",
    "mov rcx, rsp",
    "DFP_BUSY_OF rcx, r8, 16",
    "mov [rsp], rcx",
    "call {sigsys}", // (rcx: its fourth argument)
    "mov rcx, [rsp]",
    "mov rsp, [rsp + 8]",
    "mov byte ptr [rcx], 0",
    "ret",
    ".size dfp_sigsys_entry, . - dfp_sigsys_entry",
    "",
    // The restorer of every signal handler while the backstop is armed
    // (`rt_sigreturn` must come from inside its range): the same bytes as
    // glibc's and musl's `__restore_rt`, which unwinders (libgcc, gdb)
    // recognise as a signal frame.
    ".globl dfp_restore_rt",
    ".hidden dfp_restore_rt",
    ".type dfp_restore_rt,@function",
    "nop",
    "dfp_restore_rt:",
    ".byte 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00", // mov rax, 15
    "syscall",
    ".size dfp_restore_rt, . - dfp_restore_rt",
    "",
    // Every handler the program installs runs through this: `signal_enter`
    // (on a stack of the pool: the signal's may be a small alternate stack)
    // shows it the interrupted context as if no thunk were involved and
    // returns its handler, which is then jumped to (no frame of ours in
    // between: unwinding from the handler, as glibc's thread cancellation
    // does, goes straight to the signal frame).
    ".globl dfp_signal_wrapper",
    ".hidden dfp_signal_wrapper",
    ".type dfp_signal_wrapper,@function",
    "dfp_signal_wrapper:",
    // On the alternate signal stack (rdx: the ucontext; its uc_stack at 16:
    // ss_sp, and ss_size at 32), stay there: a second signal arriving while
    // we were elsewhere would be put at that stack's top, over this one.
    "mov rax, rsp",
    "sub rax, qword ptr [rdx + 16]",
    "cmp rax, qword ptr [rdx + 32]",
    "jb 3f",
    "DFP_TOP rax",
    "mov [rax - 8], rsp",
    "lea rsp, [rax - 16]", // the stack's byte, set below
    "push rdi",
    "push rsi",
    "push rdx",
    "sub rsp, 8",
    "mov rcx, rsp",
    "DFP_BUSY_OF rcx, r8, 48",
    "mov [rsp + 32], rcx",
    "call {signal_enter}", // (rcx: its fourth argument)
    "add rsp, 8",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "mov r11, [rsp]",
    "mov rsp, [rsp + 8]",
    "mov byte ptr [r11], 0",
    "jmp rax",
    ".size dfp_signal_wrapper, . - dfp_signal_wrapper",
    // What a signal whose handler was just removed runs instead.
    ".globl dfp_signal_nothing",
    ".hidden dfp_signal_nothing",
    "dfp_signal_nothing:",
    "ret",
    "",
    // Called below the red zone by a child of clone/fork/vfork right after
    // the system call (a spawn thunk, a trampoline's tail): arms the child's
    // backstop as its parent's (`backstop::RANGE`; nothing when it is off).
    // Keeps every register but rax (0, the child's result), rcx and r11
    // (which the system call has just changed anyway), and the flags.
    ".globl dfp_arm_child",
    ".hidden dfp_arm_child",
    ".type dfp_arm_child,@function",
    "dfp_arm_child:",
    "lahf",
    "seto al",
    "mov ecx, eax", // rcx: the flags (rax, rcx, r11: free in a child just made)
    "cmp qword ptr [rip + {range}], 0",
    "je 5f",
    "DFP_TOP rax",
    "mov [rax - 8], rsp",
    "lea rsp, [rax - 8]",
    "push rcx",
    "push rcx", // the stack's byte, set below
    "push rdi",
    "push rsi",
    "push rdx",
    "push r10",
    "push r8",
    "mov rax, rsp",
    "DFP_BUSY_OF rax, rcx, 64",
    "mov [rsp + 40], rax",
    "mov rdx, qword ptr [rip + {range}]",
    "mov r10, qword ptr [rip + {range} + 8]",
    "mov eax, 157", // prctl
    "mov edi, 59", // PR_SET_SYSCALL_USER_DISPATCH
    "mov esi, 1", // PR_SYS_DISPATCH_ON
    "xor r8d, r8d", // no selector: every call from outside the range traps
    "syscall",
    "pop r8",
    "pop r10",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "pop r11",
    "pop rcx",
    "mov rsp, [rsp]",
    "mov byte ptr [r11], 0",
    "5:",
    "mov eax, ecx",
    "add al, 0x7f",
    "sahf",
    "mov eax, 0",
    "ret",
    ".size dfp_arm_child, . - dfp_arm_child",
    "",
    // The thunks: `syscall` instructions inside the backstop's range for code
    // outside it (library trampolines, sites that trapped). Thunk i runs the
    // system call with the registers it is entered with and jumps back
    // through slot i (`backstop`), changing nothing else: 8 bytes each.
    ".balign 16",
    ".globl dfp_thunks",
    ".hidden dfp_thunks",
    "dfp_thunks:",
    ".set dfp_i, 0",
    ".rept {plain}",
    "syscall",
    "jmp qword ptr [rip + {plain_slots} + dfp_i * 8]",
    ".set dfp_i, dfp_i + 1",
    ".endr",
    ".size dfp_thunks, . - dfp_thunks",
    // The same for calls that may start a process or thread: the child arms
    // its backstop before it goes back. 32 bytes each.
    ".balign 32",
    ".globl dfp_spawn_thunks",
    ".hidden dfp_spawn_thunks",
    "dfp_spawn_thunks:",
    ".set dfp_i, 0",
    ".rept {spawn}",
    "syscall",
    "test rax, rax",
    "jnz 2f",
    "lea rsp, [rsp - 128]",
    "call dfp_arm_child",
    "lea rsp, [rsp + 128]",
    "2:",
    "jmp qword ptr [rip + {spawn_slots} + dfp_i * 8]",
    ".balign 32, 0xcc",
    ".set dfp_i, dfp_i + 1",
    ".endr",
    ".size dfp_spawn_thunks, . - dfp_spawn_thunks",
    ".popsection",
    start = sym crate::start::dfp_start,
    preinit = sym crate::start::dfp_preinit,
    sigsys = sym crate::backstop::dfp_sigsys,
    foreign = sym crate::backstop::foreign,
    sys_user_dispatch = const crate::backstop::SYS_USER_DISPATCH,
    pool = sym crate::stacks::POOL,
    busy = sym crate::stacks::BUSY,
    no_stack = sym crate::stacks::NO_STACK,
    stacks = const crate::stacks::STACKS,
    shift = const crate::stacks::STRIDE_SHIFT,
    stride = const crate::stacks::STRIDE,
    waits = const crate::stacks::WAITS,
    pool_pid = sym crate::stacks::POOL_PID,
    gave_up = sym crate::stacks::GAVE_UP,
    dispatch_entry = sym crate::dispatch::dfp_dispatch_entry,
    sys_dispatch_entry = sym crate::dispatch::dfp_sys_dispatch_entry,
    mask = sym crate::backstop::DISPATCH_MASK,
    range = sym crate::backstop::RANGE,
    signal_enter = sym crate::backstop::signal_enter,
    plain = const crate::backstop::PLAIN_THUNKS,
    spawn = const crate::backstop::SPAWN_THUNKS,
    plain_slots = sym crate::backstop::PLAIN_SLOTS,
    spawn_slots = sym crate::backstop::SPAWN_SLOTS,
);

/// Size of a thunk in `dfp_thunks` and in `dfp_spawn_thunks`.
pub const PLAIN_THUNK_SIZE: u64 = 8;
pub const SPAWN_THUNK_SIZE: u64 = 32;

/// Run-time addresses of the first thunk of `dfp_thunks` and of `dfp_spawn_thunks`.
pub fn thunks_addr() -> (u64, u64) {
    let (a, b): (u64, u64);
    // SAFETY: RIP-relative `lea`s of symbols of this image read no memory.
    unsafe {
        asm!("lea {0}, [rip + dfp_thunks]", "lea {1}, [rip + dfp_spawn_thunks]", out(reg) a, out(reg) b,
             options(nomem, nostack, preserves_flags));
    }
    (a, b)
}

/// Run-time address of `dfp_sigsys_entry`, the SIGSYS handler.
pub fn sigsys_entry_addr() -> u64 {
    let a: u64;
    // SAFETY: a RIP-relative `lea` of a symbol of this image reads no memory.
    unsafe {
        asm!("lea {0}, [rip + dfp_sigsys_entry]", out(reg) a, options(nomem, nostack, preserves_flags));
    }
    a
}

/// Run-time address of `dfp_restore_rt`.
pub fn restore_rt_addr() -> u64 {
    let a: u64;
    // SAFETY: a RIP-relative `lea` of a symbol of this image reads no memory.
    unsafe {
        asm!("lea {0}, [rip + dfp_restore_rt]", out(reg) a, options(nomem, nostack, preserves_flags));
    }
    a
}

/// Whether the program runs under Valgrind: its `RUNNING_ON_VALGRIND`
/// client request (a no-op sequence of rotations on real hardware, which
/// Valgrind's translator recognises and answers in `%rdx`).
pub fn under_valgrind() -> bool {
    let args: [u64; 6] = [0x1001, 0, 0, 0, 0, 0];
    let out: u64;
    // SAFETY: rotates %rdi four times by 64 bits in all (unchanged) and
    // exchanges %rbx with itself; Valgrind reads `args` (a local) and writes
    // %rdx. No other memory is touched.
    unsafe {
        asm!(
            "rol rdi, 3", "rol rdi, 13", "rol rdi, 61", "rol rdi, 51", "xchg rbx, rbx",
            in("rax") args.as_ptr(), inout("rdx") 0u64 => out, inout("rdi") 0u64 => _,
            options(nostack, readonly, preserves_flags)
        );
    }
    out != 0
}

/// Bytes of the largest [`site_hop`].
pub const SITE_HOP_MAX: usize = 72;

/// The hop of a `mov $nr, %eax; syscall` site rewritten at run time (its
/// `mov` replaced by a `jmp` here, its `syscall` left in place), placed at
/// `at`: `mov $nr, %eax`, then, for a monitored call (`ask`: the `%r11`
/// number and `dfp_sys_hook`'s address), the question a library
/// trampoline asks (a refused call jumps back with its result in `%rax`),
/// then the `thunk` that runs it and jumps back to `back`. Every address
/// sits in a slot after the code, so the hop works anywhere.
pub fn site_hop(nr: u32, ask: Option<(u32, u64)>, thunk: u64, back: u64) -> ([u8; SITE_HOP_MAX], usize) {
    let mut b = [0xccu8; SITE_HOP_MAX];
    let mut n = 0;
    let mut put = |bytes: &[u8], n: &mut usize| {
        if let Some(d) = b.get_mut(*n..*n + bytes.len()) {
            d.copy_from_slice(bytes);
        }
        *n += bytes.len();
    };
    put(&[0xb8], &mut n);
    put(&nr.to_le_bytes(), &mut n);
    // (Where each `*disp(%rip)` instruction starts, and the slot it reads.)
    let mut refs: [(usize, usize); 3] = [(0, 0); 3];
    let len = match ask {
        Some((k, hook)) => {
            put(&[0x48, 0x8d, 0x64, 0x24, 0x80], &mut n); // lea rsp, [rsp-0x80]
            put(&[0x41, 0xbb], &mut n); // mov r11d, k
            put(&k.to_le_bytes(), &mut n);
            refs[0] = (n, 48);
            put(&[0xff, 0x15, 0, 0, 0, 0], &mut n); // call *hook(%rip)
            put(&[0x48, 0x8d, 0xa4, 0x24, 0x80, 0, 0, 0], &mut n); // lea rsp, [rsp+0x80]
            put(&[0xe3, 6], &mut n); // jrcxz over the jump to the thunk: refused
            refs[1] = (n, 56);
            put(&[0xff, 0x25, 0, 0, 0, 0], &mut n); // jmp *thunk(%rip)
            refs[2] = (n, 64);
            put(&[0xff, 0x25, 0, 0, 0, 0], &mut n); // jmp *back(%rip)
            for (slot, v) in [(48, hook), (56, thunk), (64, back)] {
                b[slot..slot + 8].copy_from_slice(&v.to_le_bytes());
            }
            72
        }
        None => {
            refs[1] = (n, 16);
            put(&[0xff, 0x25, 0, 0, 0, 0], &mut n); // jmp *thunk(%rip)
            b[16..24].copy_from_slice(&thunk.to_le_bytes());
            24
        }
    };
    for &(at, slot) in refs.iter().filter(|r| r.1 != 0) {
        let disp = (slot as i32 - (at as i32 + 6)).to_le_bytes();
        b[at + 2..at + 6].copy_from_slice(&disp);
    }
    (b, len)
}

/// Bytes of the largest [`musl_cp_hop`].
pub const MUSL_CP_HOP: usize = 136;
/// Bytes of a [`musl_cp_hop`]'s tail.
pub const MUSL_CP_TAIL: usize = 23;
/// The last three instructions before musl's cancellable `syscall`, 5 bytes
/// each: `mov 8(%rsp), %r8; mov 16(%rsp), %r9; mov %r11, 8(%rsp)`.
pub const MUSL_CP_MOVS: [u8; 15] =
    [0x4c, 0x8b, 0x44, 0x24, 0x08, 0x4c, 0x8b, 0x4c, 0x24, 0x10, 0x4c, 0x89, 0x5c, 0x24, 0x08];

/// The hop of musl's cancellable `syscall` (`__syscall_cp_asm`, between
/// its labels `__cp_begin` and `__cp_end`: `...; mov %r11, 8(%rsp);
/// syscall; ret`), where the last `moved` instructions of
/// [`MUSL_CP_MOVS`] (1 to 3, the first replaced by a `jmp` here) are: those
/// instructions; then, for a number `mask` (`backstop::DISPATCH_MASK`) says
/// the dispatcher looks at, the question (hook number `k`, `dfp_sys_hook`
/// at `hook`: the number, in `%rax`, is known only at run time; the flags
/// are dead here, so the hop tests the mask itself and the others ask
/// nothing); then the tail: musl's own test of the thread's cancel flag
/// (its address is the word the last `mov` stored) made again, since a
/// cancellation that came during the question found the thread outside
/// musl's labels and waits for this test; set, to `cancel` (`__cp_cancel`);
/// clear, to the site's `thunk`, which runs the call and jumps `back`. A
/// signal after the test is shown where musl's own code would be: at
/// `__cp_cancel` when the flag is set, else at the site's `syscall`, inside
/// the labels, where musl's handler acts at once (`backstop::cp_tails`);
/// one in the thunk, at the `syscall` too. Returns the bytes and where the
/// tail starts.
pub fn musl_cp_hop(
    moved: usize,
    k: u32,
    hook: u64,
    mask: u64,
    cancel: u64,
    thunk: u64,
    back: u64,
) -> ([u8; MUSL_CP_HOP], usize) {
    let mut b = [0xccu8; MUSL_CP_HOP];
    let kb = k.to_le_bytes();
    let movs = &MUSL_CP_MOVS[15 - 5 * moved.clamp(1, 3)..];
    // (The rel8 of each short jump is set below, from where its target lands.)
    let code: [&[u8]; 16] = [
        movs,
        &[0x4c, 0x8b, 0x1d, 0, 0, 0, 0],           // mov r11, [rip + mask slot]
        &[0x3d, 0xff, 0x01, 0, 0],                 // cmp eax, 511
        &[0x77, 0],                                // ja: ask
        &[0x41, 0x0f, 0xa3, 0x03],                 // bt [r11], eax
        &[0x72, 0],                                // jc: ask
        &[0xeb, 0],                                // jmp: the tail
        &[0x48, 0x8d, 0x64, 0x24, 0x80],           // ask: lea rsp, [rsp-0x80]
        &[0x41, 0xbb, kb[0], kb[1], kb[2], kb[3]], // mov r11d, k
        &[0xff, 0x15, 0, 0, 0, 0],                 // call *hook(%rip)
        &[0x48, 0x8d, 0xa4, 0x24, 0x80, 0, 0, 0],  // lea rsp, [rsp+0x80]
        &[0xe3, 0],                                // jrcxz: refused
        &[0x4c, 0x8b, 0x5c, 0x24, 0x08],           // tail: mov r11, [rsp+8]
        &[0x41, 0x83, 0x3b, 0x00],                 // cmp dword ptr [r11], 0
        &[0x74, 0x06],                             // jz over the jump to __cp_cancel
        &[0xff, 0x25, 0, 0, 0, 0],                 // jmp *cancel(%rip)
    ];
    let mut n = 0;
    let mut starts = [0usize; 18];
    for (i, c) in code.iter().enumerate() {
        starts[i] = n;
        b[n..n + c.len()].copy_from_slice(c);
        n += c.len();
    }
    // jmp *thunk(%rip) (the tail's end), then, refused: jmp *back(%rip).
    for i in [16, 17] {
        starts[i] = n;
        b[n..n + 2].copy_from_slice(&[0xff, 0x25]);
        n += 6;
    }
    let (ask, tail, refused) = (starts[7], starts[12], starts[17]);
    for (at, to) in [(starts[3], ask), (starts[5], ask), (starts[6], tail), (starts[11], refused)] {
        b[at + 1] = (to - (at + 2)) as u8;
    }
    // The slots, after the code (8-aligned): each `*disp(%rip)` reads one.
    let slots = (n + 7) & !7;
    let refs = [
        (starts[9], 6, hook),
        (starts[15], 6, cancel),
        (starts[16], 6, thunk),
        (starts[17], 6, back),
        (starts[1], 7, mask),
    ];
    for (i, (at, len, v)) in refs.into_iter().enumerate() {
        let slot = slots + 8 * i;
        let disp = (slot as i32 - (at + len) as i32).to_le_bytes();
        b[at + len - 4..at + len].copy_from_slice(&disp);
        b[slot..slot + 8].copy_from_slice(&v.to_le_bytes());
    }
    (b, tail)
}

/// Run-time addresses of `dfp_signal_wrapper` and `dfp_signal_nothing`.
pub fn signal_wrapper_addrs() -> (u64, u64) {
    let (a, b): (u64, u64);
    // SAFETY: RIP-relative `lea`s of symbols of this image read no memory.
    unsafe {
        asm!("lea {0}, [rip + dfp_signal_wrapper]", "lea {1}, [rip + dfp_signal_nothing]", out(reg) a, out(reg) b,
             options(nomem, nostack, preserves_flags));
    }
    (a, b)
}

/// The calling thread's thread pointer (`%fs` base), read with
/// `arch_prctl(ARCH_GET_FS)` (which works before any TLS is set up, when
/// `%fs:0` would fault, and needs no FSGSBASE support); 0 when unset.
pub fn thread_pointer() -> u64 {
    let mut base: u64 = 0;
    // SAFETY: ARCH_GET_FS (0x1003) writes one u64 to the address given, a local.
    let r = unsafe { syscall2(158, 0x1003, &mut base as *mut u64 as u64) };
    if r == 0 {
        base
    } else {
        0
    }
}

/// # Safety
/// The call must be one the kernel accepts with these arguments without
/// breaking Rust's memory model (no unmapping of memory Rust still uses, ...).
#[inline(always)]
pub unsafe fn syscall1(n: u64, a0: u64) -> i64 {
    let ret: i64;
    // SAFETY: the caller upholds the system call's contract; rcx/r11 are declared clobbered.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a0,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// As [`syscall1`].
#[inline(always)]
pub unsafe fn syscall2(n: u64, a0: u64, a1: u64) -> i64 {
    let ret: i64;
    // SAFETY: as syscall1.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a0, in("rsi") a1,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// As [`syscall1`].
#[inline(always)]
pub unsafe fn syscall3(n: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    let ret: i64;
    // SAFETY: as syscall1.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a0, in("rsi") a1,
             in("rdx") a2, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// As [`syscall1`].
#[inline(always)]
pub unsafe fn syscall4(n: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: as syscall1.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a0, in("rsi") a1,
             in("rdx") a2, in("r10") a3, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// As [`syscall1`].
#[inline(always)]
pub unsafe fn syscall6(n: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: as syscall1.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a0, in("rsi") a1,
             in("rdx") a2, in("r10") a3, in("r8") a4, in("r9") a5,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// Run-time address of `dfp_hook` (for stubs made at run time).
#[cfg(target_os = "none")]
pub fn hook_addr() -> u64 {
    let a: u64;
    // SAFETY: a RIP-relative `lea` of a symbol of this image reads no memory.
    unsafe {
        asm!("lea {0}, [rip + dfp_hook]", out(reg) a, options(nomem, nostack, preserves_flags));
    }
    a
}

/// Run-time address of `dfp_sys_hook` (for library trampolines made at run time).
pub fn sys_hook_addr() -> u64 {
    let a: u64;
    // SAFETY: a RIP-relative `lea` of a symbol of this image reads no memory.
    unsafe {
        asm!("lea {0}, [rip + dfp_sys_hook]", out(reg) a, options(nomem, nostack, preserves_flags));
    }
    a
}

/// Run-time address of the start of the runtime's read-only part (its code
/// first), where the backstop's range begins.
#[cfg(target_os = "none")]
pub fn rx_start_addr() -> u64 {
    let a: u64;
    // SAFETY: a RIP-relative `lea` of a symbol of this image reads no memory.
    unsafe {
        asm!("lea {0}, [rip + __dfp_rx_start]", out(reg) a, options(nomem, nostack, preserves_flags));
    }
    a
}

/// Run-time address of the contract, computed PC-relatively from the symbol
/// `link.ld` defines. Rust's own references to a `#[used]` static may go
/// through a GOT entry, which is not relocated yet when start-up needs the
/// contract; an assembler `lea` of a linker-defined symbol never does.
#[cfg(target_os = "none")]
#[inline(always)]
pub fn contract_addr() -> u64 {
    let a: u64;
    // SAFETY: a RIP-relative `lea` of a symbol of this image reads no memory.
    unsafe {
        asm!("lea {0}, [rip + __dfp_contract]", out(reg) a, options(nomem, nostack, preserves_flags));
    }
    a
}

// --- Machine code the runtime writes at run time ------------------------------------------------
//
// Every byte of code the runtime makes is encoded here: the symbol layer's
// stubs, the hops of entries detoured in memory, and the jump that replaces a
// planned window. Each encoder returns the bytes; the caller places them.

/// Bytes of a stub (a multiple of 8: stubs are written a word at a time).
pub const STUB_LEN: usize = 64;
/// Bytes of a hop.
pub const HOP_LEN: usize = 32;

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
/// `test $PROT_EXEC,%dl` (the `prot` argument of `mmap`/`mprotect`).
const TEST_DL_PROT_EXEC: [u8; 3] = [0xf6, 0xc2, 0x04];
/// `mov $imm32,%r11d`, the immediate follows.
const MOV_R11D: [u8; 2] = [0x41, 0xbb];
/// `jmp *0(%rip)`, the 8-byte target follows.
const JMP_ABS: [u8; 6] = [0xff, 0x25, 0, 0, 0, 0];

/// Appends `bytes` to `out` at `*n`, bounds checked (what does not fit is dropped).
fn put(out: &mut [u8], n: &mut usize, bytes: &[u8]) {
    for &x in bytes {
        if let Some(d) = out.get_mut(*n) {
            *d = x;
        }
        *n += 1;
    }
}

/// A symbol-layer stub: `endbr64; [test $PROT_EXEC,%dl; jz real;] mov
/// $number,%r11d; jmp *hook; real: jmp *real` (absolute jumps: the stubs'
/// mapping may be far from both). With `prot_filter`, calls whose `prot`
/// has no `PROT_EXEC` go straight to `real`.
pub fn stub_code(number: u32, hook: u64, real: u64, prot_filter: bool) -> [u8; STUB_LEN] {
    let mut b = [0xccu8; STUB_LEN];
    let mut n = 0;
    put(&mut b, &mut n, &ENDBR64);
    if prot_filter {
        // jz over the 6-byte mov and the 14-byte jump to the hook.
        put(&mut b, &mut n, &TEST_DL_PROT_EXEC);
        put(&mut b, &mut n, &[0x74, 20]);
    }
    put(&mut b, &mut n, &MOV_R11D);
    put(&mut b, &mut n, &number.to_le_bytes());
    put(&mut b, &mut n, &JMP_ABS);
    put(&mut b, &mut n, &hook.to_le_bytes());
    put(&mut b, &mut n, &JMP_ABS);
    put(&mut b, &mut n, &real.to_le_bytes());
    b
}

/// A hop, placed at `at` right after the trampoline `tramp` it stands
/// before: `[test $PROT_EXEC,%dl; jz tramp;] mov $number,%r11d; jmp *hook`.
pub fn hop_code(at: u64, number: u32, hook: u64, tramp: u64, prot_filter: bool) -> [u8; HOP_LEN] {
    let mut b = [0xccu8; HOP_LEN];
    let mut n = 0;
    if prot_filter {
        put(&mut b, &mut n, &TEST_DL_PROT_EXEC);
        // jz rel32, from the end of this 9-byte pair (within ±2 GiB: same mapping).
        let rel = tramp.wrapping_sub(at + 9) as u32;
        put(&mut b, &mut n, &[0x0f, 0x84]);
        put(&mut b, &mut n, &rel.to_le_bytes());
    }
    put(&mut b, &mut n, &MOV_R11D);
    put(&mut b, &mut n, &number.to_le_bytes());
    put(&mut b, &mut n, &JMP_ABS);
    put(&mut b, &mut n, &hook.to_le_bytes());
    b
}

/// `jmp rel32` from `from` to `to`, padded with `int3` to `len` bytes (a
/// planned window, 5 to 32 bytes); `None` when `to` is out of reach or `len`
/// out of range.
pub fn jmp_rel32(from: u64, to: u64, len: usize) -> Option<[u8; 32]> {
    let rel = to.wrapping_sub(from.wrapping_add(5)) as i64;
    if !(5..=32).contains(&len) || rel != rel as i32 as i64 {
        return None;
    }
    let mut b = [0xccu8; 32];
    b[0] = 0xe9;
    b[1..5].copy_from_slice(&(rel as i32).to_le_bytes());
    Some(b)
}

// --- Reading that code back ---------------------------------------------------------------------
//
// Which hook a call lands in (`nest`: is a call at the very stack slot of a
// reported call its tail call?) is read from the code on the way: the
// program's call instruction, PLT entries, detoured entries, and the stubs
// and hops above (and the rewriter's, `rewriter/src/x86.rs`, of the same
// shape), which all name their hook with `mov $number,%r11d`.

/// Where control goes from code, as far as these plain forms tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lands {
    /// A stub or hop of ours: the hook number it sets in `%r11`.
    Hook(u32),
    /// A direct jump (or call) to this address.
    At(u64),
    /// An indirect jump (or call) through the 8-byte pointer at this address.
    Through(u64),
}

/// A `rel32` (or `disp32`) field of `b` at `at`, sign-extended.
fn rel32(b: &[u8], at: usize) -> Option<u64> {
    Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as i64 as u64)
}

/// The target of the call instruction that ends right before `ret`, from
/// the 6 bytes before it: our `addr32 call rel32`, `call *disp(%rip)` (the
/// 6-byte forms first, as the event's `caller` reads them), `call rel32`.
/// None for anything else (an indirect call through a register).
pub fn call_before(before: &[u8; 6], ret: u64) -> Option<Lands> {
    match before {
        [0x67, 0xe8, ..] => Some(Lands::At(ret.wrapping_add(rel32(before, 2)?))),
        [0xff, 0x15, ..] => Some(Lands::Through(ret.wrapping_add(rel32(before, 2)?))),
        [_, 0xe8, ..] => Some(Lands::At(ret.wrapping_add(rel32(before, 2)?))),
        _ => None,
    }
}

/// What the code `code`, found at `at`, does first when it is a stub, a hop
/// or a jump: `[endbr64] [test $PROT_EXEC,%dl; jz] mov $n,%r11d` is
/// [`Lands::Hook`]`(n)`; `jmp rel32`, `jmp rel8`, `[bnd] jmp *disp(%rip)` are
/// where they go. None for anything else.
pub fn landing(code: &[u8], at: u64) -> Option<Lands> {
    let mut i = 0;
    if code.starts_with(&ENDBR64) {
        i = ENDBR64.len();
    }
    if code.get(i..i + 3) == Some(&TEST_DL_PROT_EXEC) {
        i += match code.get(i + 3..i + 5)? {
            [0x74, _] => 5,
            [0x0f, 0x84] => 9,
            _ => return None,
        };
    }
    let here = at.wrapping_add(i as u64);
    match code.get(i..)? {
        [0x41, 0xbb, ..] => Some(Lands::Hook(rel32(code, i + 2)? as u32)),
        [0xe9, ..] => Some(Lands::At(here.wrapping_add(5).wrapping_add(rel32(code, i + 1)?))),
        [0xeb, r, ..] => Some(Lands::At(here.wrapping_add(2).wrapping_add(*r as i8 as i64 as u64))),
        [0xff, 0x25, ..] => Some(Lands::Through(here.wrapping_add(6).wrapping_add(rel32(code, i + 2)?))),
        [0xf2, 0xff, 0x25, ..] => Some(Lands::Through(here.wrapping_add(7).wrapping_add(rel32(code, i + 3)?))),
        _ => None,
    }
}

/// The branches out of `code`, found at `at`: every `jmp rel32`, `jcc
/// rel32` and `jmp *disp(%rip)` pattern among its bytes, in order (at most
/// `out.len()`). A byte scan, not a disassembly: a pattern inside another
/// instruction gives a false target, which only costs its caller a look.
pub fn branches(code: &[u8], at: u64, out: &mut [Lands]) -> usize {
    let mut found = 0;
    for i in 0..code.len() {
        let next = |len: usize| at.wrapping_add((i + len) as u64);
        let to = match code.get(i..).unwrap_or(&[]) {
            [0xe9, ..] => rel32(code, i + 1).map(|r| Lands::At(next(5).wrapping_add(r))),
            [0x0f, c, ..] if c & 0xf0 == 0x80 => rel32(code, i + 2).map(|r| Lands::At(next(6).wrapping_add(r))),
            [0xff, 0x25, ..] => rel32(code, i + 2).map(|r| Lands::Through(next(6).wrapping_add(r))),
            _ => None,
        };
        if let (Some(to), Some(slot)) = (to, out.get_mut(found)) {
            *slot = to;
            found += 1;
        }
    }
    found
}

#[cfg(test)]
mod code_tests {
    extern crate std;
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    use std::string::String;
    use std::vec::Vec;

    fn disassemble(bytes: &[u8], ip: u64, n: usize) -> Vec<String> {
        let mut d = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        (0..n)
            .map(|_| {
                let mut s = String::new();
                f.format(&d.decode(), &mut s);
                s
            })
            .collect()
    }

    #[test]
    fn stubs_decode_to_what_they_promise() {
        let (hook, real) = (0x1122_3344_5566u64, 0x7788_99aa_bbccu64);
        let b = stub_code(0x8000_0007, hook, real, true);
        let text = disassemble(&b, 0x1000, 5);
        assert_eq!(text[..2], ["endbr64", "test dl,4"]);
        assert_eq!(text[3], "mov r11d,80000007h");
        assert_eq!(text[4], "jmp qword ptr [1015h]", "jmp *0(%rip): the hook's address follows");
        assert_eq!(b[0x15..0x1d], hook.to_le_bytes());
        // The jz lands on the second jump, whose address (the real function's) follows it.
        let jz = Decoder::with_ip(64, &b[7..], 0x1007, DecoderOptions::NONE).decode();
        assert_eq!(jz.near_branch_target(), 0x101d);
        assert_eq!(disassemble(&b[0x1d..], 0x101d, 1)[0], "jmp qword ptr [1023h]");
        assert_eq!(b[0x23..0x2b], real.to_le_bytes());
        let plain = disassemble(&stub_code(3, 1, 2, false), 0, 2);
        assert_eq!(plain[1], "mov r11d,3");
    }

    #[test]
    fn hops_reach_their_trampoline() {
        let (tramp, at) = (0x7000_0000u64, 0x7000_0040u64);
        let b = hop_code(at, 0xa000_0001, 0xdead_beef, tramp, true);
        let mut d = Decoder::with_ip(64, &b, at, DecoderOptions::NONE);
        let _test = d.decode();
        assert_eq!(d.decode().near_branch_target(), tramp);
        let text = disassemble(&b[9..], at + 9, 2);
        assert_eq!(text[0], "mov r11d,0A0000001h");
    }

    #[test]
    fn stubs_and_hops_read_back_as_their_hook() {
        let stub = stub_code(0x8000_0007, 0x1000, 0x2000, true);
        assert_eq!(landing(&stub, 0x5000), Some(Lands::Hook(0x8000_0007)));
        assert_eq!(landing(&stub_code(3, 1, 2, false), 0), Some(Lands::Hook(3)));
        let hop = hop_code(0x7000_0040, 0xa000_0001, 1, 0x7000_0000, true);
        assert_eq!(landing(&hop, 0x7000_0040), Some(Lands::Hook(0xa000_0001)));
        // A detoured entry: endbr64, then the window's jump.
        let mut entry = [0u8; 16];
        entry[..4].copy_from_slice(&ENDBR64);
        entry[4..].copy_from_slice(&jmp_rel32(0x1004, 0x9000, 12).unwrap()[..12]);
        assert_eq!(landing(&entry, 0x1000), Some(Lands::At(0x9000)));
        // A .plt.sec entry: endbr64; bnd jmp *GOT(%rip).
        let plt_sec = [0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0x10, 0, 0, 0];
        assert_eq!(landing(&plt_sec, 0x1000), Some(Lands::Through(0x1000 + 11 + 0x10)));
        assert_eq!(landing(&[0x48, 0x89, 0xf8], 0), None, "mov %rdi,%rax: not a jump");
    }

    #[test]
    fn calls_and_tail_jumps_are_found() {
        // call rel32 ending at 0x1005, to 0x1005 + 0x100; our addr32 call; call *disp(%rip).
        assert_eq!(call_before(&[0x90, 0xe8, 0, 1, 0, 0], 0x1005), Some(Lands::At(0x1105)));
        assert_eq!(call_before(&[0x67, 0xe8, 0xfb, 0xff, 0xff, 0xff], 0x1006), Some(Lands::At(0x1001)));
        assert_eq!(call_before(&[0xff, 0x15, 8, 0, 0, 0], 0x1006), Some(Lands::Through(0x100e)));
        assert_eq!(call_before(&[0x90, 0x90, 0x90, 0x90, 0xff, 0xd0], 0x1006), None, "call *%rax");
        // musl's creat: mov %esi,%edx; mov $0x241,%esi; jmp open.
        let creat = [0x89, 0xf2, 0xbe, 0x41, 0x02, 0, 0, 0xe9, 0x10, 0, 0, 0];
        let mut out = [Lands::At(0); 8];
        let n = branches(&creat, 0x4000, &mut out);
        assert_eq!(out[..n], [Lands::At(0x4000 + 12 + 0x10)]);
    }

    #[test]
    fn site_hops_decode_to_what_they_promise() {
        // Not monitored: mov eax, 39; jmp *thunk.
        let (b, n) = site_hop(39, None, 0x1111_2222_3333, 0x4444_5555_6666);
        assert_eq!(n, 24);
        assert_eq!(disassemble(&b[..n], 0x1000, 2), ["mov eax,27h", "jmp qword ptr [1010h]"]);
        assert_eq!(b[16..24], 0x1111_2222_3333u64.to_le_bytes());
        // Monitored: the question, then the thunk, or back with the result when refused.
        let (b, n) = site_hop(59, Some((0x4000_0201, 0x7777)), 0x1111, 0x2222);
        assert_eq!(n, 72);
        assert_eq!(
            disassemble(&b[..n], 0x1000, 8),
            [
                "mov eax,3Bh",
                "lea rsp,[rsp-80h]",
                "mov r11d,40000201h",
                "call qword ptr [1030h]",
                "lea rsp,[rsp+80h]",
                "jrcxz 0000000000001026h",
                "jmp qword ptr [1038h]",
                "jmp qword ptr [1040h]",
            ]
        );
        assert_eq!(b[48..56], 0x7777u64.to_le_bytes());
        assert_eq!(b[56..64], 0x1111u64.to_le_bytes());
        assert_eq!(b[64..72], 0x2222u64.to_le_bytes());
    }

    #[test]
    fn musl_cp_hops_decode_to_what_they_promise() {
        let (b, tail) = musl_cp_hop(1, 0x4000_0203, 0x7777, 0x9999, 0x8888, 0x1111, 0x2222);
        assert_eq!(tail, 54);
        assert_eq!(
            disassemble(&b[..0x54], 0x1000, 18),
            [
                "mov [rsp+8],r11",
                "mov r11,[1078h]",
                "cmp eax,1FFh",
                "ja short 000000000000101Bh",
                "bt [r11],eax",
                "jb short 000000000000101Bh",
                "jmp short 0000000000001036h",
                "lea rsp,[rsp-80h]",
                "mov r11d,40000203h",
                "call qword ptr [1058h]",
                "lea rsp,[rsp+80h]",
                "jrcxz 000000000000104Dh",
                "mov r11,[rsp+8]",
                "cmp dword ptr [r11],0",
                "je short 0000000000001047h",
                "jmp qword ptr [1060h]",
                "jmp qword ptr [1068h]",
                "jmp qword ptr [1070h]",
            ]
        );
        assert_eq!(tail + MUSL_CP_TAIL, 0x4d, "the tail ends with the jump to the thunk");
        for (slot, v) in [(0x58, 0x7777u64), (0x60, 0x8888), (0x68, 0x1111), (0x70, 0x2222), (0x78, 0x9999)] {
            assert_eq!(b[slot..slot + 8], v.to_le_bytes());
        }
        // The three moves, when the first is the one replaced.
        let (b, tail) = musl_cp_hop(3, 1, 0x7777, 0x9999, 0x8888, 0x1111, 0x2222);
        assert_eq!(tail, 64);
        assert_eq!(disassemble(&b, 0x1000, 4)[..3], ["mov r8,[rsp+8]", "mov r9,[rsp+10h]", "mov [rsp+8],r11"]);
        assert_eq!(disassemble(&b[tail..], 0x1000 + tail as u64, 1), ["mov r11,[rsp+8]"]);
        assert_eq!(b[128..136], 0x9999u64.to_le_bytes(), "the last slot fits");
    }

    #[test]
    fn window_jumps() {
        let b = jmp_rel32(0x1000, 0x2000, 7).unwrap();
        let ins = Decoder::with_ip(64, &b, 0x1000, DecoderOptions::NONE).decode();
        assert_eq!(ins.near_branch_target(), 0x2000);
        assert_eq!(&b[5..7], &[0xcc, 0xcc]);
        assert!(jmp_rel32(0, 1 << 32, 5).is_none(), "out of reach");
        assert!(jmp_rel32(0, 16, 4).is_none(), "too short a window");
    }
}
