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
    /// The caller's return address; the caller's stack arguments follow it.
    pub ret: u64,
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

    /// Address of stack argument `n` (the 7th integer argument is stack argument 0).
    pub fn stack_arg_addr(&self, n: usize) -> u64 {
        (&self.ret as *const u64 as u64).wrapping_add(8 + 8 * n as u64)
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
    pub rbx: u64,
    /// The hook number.
    pub r11: u64,
    pub r9: u64,
    pub r8: u64,
    pub r10: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// In: the system call number. Out: the result when refused.
    pub rax: u64,
    pub rflags: u64,
}

impl SysFrame {
    /// The program's stack pointer at the `syscall` instruction: above this
    /// frame, the return address into the trampoline and the red zone skipped.
    pub fn program_sp(&self) -> u64 {
        (self as *const SysFrame as u64) + core::mem::size_of::<SysFrame>() as u64 + 8 + 128
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
    ".globl dfp_hook",
    ".hidden dfp_hook",
    ".type dfp_hook,@function",
    "dfp_hook:",
    "push rbp",
    "mov rbp, rsp",
    "push r9",
    "push r8",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rax",
    "push r11",
    "mov rdi, rsp",
    "call {dispatch}",
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
    "jmp r11",
    "2:",
    "add rsp, 48",
    "pop rbp",
    "ret",
    ".size dfp_hook, . - dfp_hook",
    "",
    // Entered by `call` from a syscall trampoline, below the red zone. Saves
    // the flags and every register Rust code may change (the callee-saved ones
    // it restores itself; it has no vector or x87 code, see the module doc),
    // aligns the stack, and returns the decision in rcx.
    ".globl dfp_sys_hook",
    ".hidden dfp_sys_hook",
    ".type dfp_sys_hook,@function",
    "dfp_sys_hook:",
    "pushfq",
    // Fast way out for numbers below 512 that are not monitored (x32 and
    // other large numbers take the slow path, which decides in Rust).
    // The kernel reads only %eax (the upper half is ignored).
    "cmp eax, 511",
    "ja 3f",
    "lea rcx, [rip + {mask}]",
    "bt dword ptr [rcx], eax",
    "jc 3f",
    "popfq",
    "mov ecx, 1",
    "ret",
    "3:",
    "cld",
    "push rax",
    "push rdi",
    "push rsi",
    "push rdx",
    "push r10",
    "push r8",
    "push r9",
    "push r11",
    "push rbx",
    "push rbp",
    "mov rbx, rsp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {sys_dispatch}",
    "mov rsp, rbx",
    "mov rcx, rax",
    "pop rbp",
    "pop rbx",
    "pop r11",
    "pop r9",
    "pop r8",
    "pop r10",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "pop rax",
    "popfq",
    "ret",
    ".size dfp_sys_hook, . - dfp_sys_hook",
    ".popsection",
    start = sym crate::start::dfp_start,
    preinit = sym crate::start::dfp_preinit,
    dispatch = sym crate::dispatch::dfp_dispatch,
    sys_dispatch = sym crate::dispatch::dfp_sys_dispatch,
    mask = sym crate::apis::SYSCALL_MASK,
);

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

/// The stack pointer of the caller (approximately: of this function's frame).
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: reads a register only.
    unsafe {
        asm!("mov {0}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    sp
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
#[cfg(target_os = "none")]
pub fn sys_hook_addr() -> u64 {
    let a: u64;
    // SAFETY: a RIP-relative `lea` of a symbol of this image reads no memory.
    unsafe {
        asm!("lea {0}, [rip + dfp_sys_hook]", out(reg) a, options(nomem, nostack, preserves_flags));
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
