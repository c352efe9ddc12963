//! The backstop: every system call made from outside the runtime's range
//! reaches the runtime, whoever wrote the code (a library loaded later, JIT
//! code, a libc other than the planned one, bytes written back over a hook).
//!
//! Syscall User Dispatch (Linux 5.11+): `prctl(PR_SET_SYSCALL_USER_DISPATCH)`
//! with the range `[runtime, end of the dfpatch segment)` (the runtime, its
//! stubs and the executable's trampolines) and no selector. A `syscall`
//! instruction anywhere else does not run: the thread gets SIGSYS, and
//! [`dfp_sigsys`] decides through the dispatcher (`"layer":"backstop"`),
//! then lets the call run in a *thunk*: a `syscall` of the runtime's that
//! jumps back to just after the trapped one (`arch::x86_64`, `dfp_thunks`).
//! A call refused gets its result in `%rax` and is never run.
//!
//! Arming is per thread and cleared by clone and fork: every `syscall` that
//! may start a thread or process runs in a *spawn* thunk (or an executable's
//! trampoline tail) whose child calls `dfp_arm_child` before it runs any of
//! the program's code. Library trampolines (outside the range) run their
//! system calls in thunks too ([`thunk`]).
//!
//! What the program could use to get around it, or would break on, is
//! virtualised here: `rt_sigaction` (SIGSYS stays the runtime's, the
//! program's own handler kept aside; every handler returns through the
//! runtime's `rt_sigreturn`; SIGSYS is never in a handler's mask),
//! `rt_sigprocmask` (SIGSYS is never blocked), `prctl(PR_SET_SYSCALL_USER_DISPATCH)`
//! (refused: the program cannot disarm it). Every handler the program
//! installs runs through `dfp_signal_wrapper` ([`signal_enter`]), which
//! shows it a thread interrupted in a thunk at its own `syscall`.

use crate::apis::{may_spawn, syscall_api};
use crate::arch::x86_64::{self as arch, PLAIN_THUNK_SIZE, SPAWN_THUNK_SIZE};
use crate::contract::Contract;
use crate::{dispatch, mem, stacks, sys};
use core::sync::atomic::{AtomicU64, Ordering};

/// How many thunks of each kind (see `arch::x86_64`).
pub const PLAIN_THUNKS: usize = 2048;
pub const SPAWN_THUNKS: usize = 512;

/// Where thunk `i` jumps back to; 0 while free. A slot is taken once and for
/// good (compare-and-swap from 0), so a thunk never changes under a thread
/// that runs it.
pub static PLAIN_SLOTS: [AtomicU64; PLAIN_THUNKS] = [const { AtomicU64::new(0) }; PLAIN_THUNKS];
pub static SPAWN_SLOTS: [AtomicU64; SPAWN_THUNKS] = [const { AtomicU64::new(0) }; SPAWN_THUNKS];

/// The armed range: start and length (`dfp_arm_child` reads both words);
/// length 0 while the backstop is off.
pub static RANGE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The program's own SIGSYS action (a `kernel_sigaction`: handler, flags,
/// restorer, mask), kept aside: SIGSYS belongs to the backstop.
static PROGRAM_SIGSYS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

const SIGSYS: u64 = 31;
const SIGSYS_BIT: u64 = 1 << (SIGSYS - 1);
/// SIGKILL and SIGSTOP: never blocked, whatever a mask says.
const UNBLOCKABLE: u64 = 1 << 8 | 1 << 18;
const SA_SIGINFO: u64 = 4;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTORER: u64 = 0x0400_0000;
pub const SYS_USER_DISPATCH: i32 = 2;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const PR_SET_SYSCALL_USER_DISPATCH: u64 = 59;
const PR_SYS_DISPATCH_ON: u64 = 1;
const NR_RT_SIGACTION: u32 = 13;
const NR_RT_SIGPROCMASK: u32 = 14;
const NR_PRCTL: u32 = 157;
/// The x32 ABI's numbers carry this bit (where the kernel has that ABI, a
/// 64-bit process may use them too).
const X32: u32 = 0x4000_0000;
/// x32's `rt_sigaction` (its structure has 32-bit pointers): refused.
const X32_RT_SIGACTION: u32 = 512;

/// Which of the system calls the backstop virtualises `nr` is, in either
/// ABI (x32's `rt_sigprocmask` and `prctl` share the 64-bit numbers).
fn virtual_kind(nr: u64) -> Option<u32> {
    let n = nr as u32;
    match (n & !X32, n & X32 != 0) {
        (NR_RT_SIGACTION, false) => Some(NR_RT_SIGACTION),
        (X32_RT_SIGACTION, true) => Some(X32_RT_SIGACTION),
        (k @ (NR_RT_SIGPROCMASK | NR_PRCTL), _) => Some(k),
        _ => None,
    }
}

/// What a thunk serves. The first half of each kind's thunks serves library
/// trampolines; the second, sites that trapped, whose own `syscall`
/// instruction is still in place ([`signal_enter`] relies on it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    Trampoline,
    Trapped,
}

/// The thunk that runs a system call and then jumps to `resume`: the one
/// already made for `resume`, or a new one. `spawn`: the call may start a
/// thread or process (its child arms the backstop). None when every thunk of
/// that kind is taken.
pub fn thunk(resume: u64, spawn: bool, serves: Serves) -> Option<u64> {
    if resume == 0 {
        return None;
    }
    let (base, size, all) = pool(spawn);
    let half = all.len() / 2;
    let (first, n) = match serves {
        Serves::Trampoline => (0, half),
        Serves::Trapped => (half, all.len() - half),
    };
    // Open addressing from a hash of the address, so that a site that traps
    // again finds its thunk in a probe or two.
    let start = (resume.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % n;
    for i in 0..n {
        let k = first + (start + i) % n;
        match all[k].compare_exchange(0, resume, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(base + k as u64 * size),
            Err(v) if v == resume => return Some(base + k as u64 * size),
            Err(_) => {}
        }
    }
    None
}

/// A kind of thunk: its first address, its size, its slots.
fn pool(spawn: bool) -> (u64, u64, &'static [AtomicU64]) {
    let (plain, spawned) = arch::thunks_addr();
    if spawn {
        (spawned, SPAWN_THUNK_SIZE, &SPAWN_SLOTS)
    } else {
        (plain, PLAIN_THUNK_SIZE, &PLAIN_SLOTS)
    }
}

/// The offset in its spawn thunk of `rip`, when it is in one.
fn in_spawn_thunk(rip: u64) -> Option<u64> {
    let (base, size, all) = pool(true);
    (base..base + all.len() as u64 * size).contains(&rip).then(|| (rip - base) % size)
}

/// Arms the calling thread as `dfp_arm_child` does (nothing when the
/// backstop is off).
fn arm_this_thread() {
    let (lo, len) = (RANGE[0].load(Ordering::Relaxed), RANGE[1].load(Ordering::Acquire));
    if len != 0 {
        dispatch_on(lo, len);
    }
}

/// `prctl(PR_SET_SYSCALL_USER_DISPATCH, ON, lo, len, no selector)` for the
/// calling thread; the kernel's result.
fn dispatch_on(lo: u64, len: u64) -> i64 {
    // SAFETY: arms this thread; the range holds the runtime and every thunk,
    // so the runtime's own calls keep running.
    unsafe { arch::syscall6(sys::SYS_PRCTL, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, lo, len, 0, 0) }
}

/// Unblocks SIGSYS in the calling thread: a trap while it is blocked kills
/// the process.
fn unblock_sigsys() {
    let unblock = SIGSYS_BIT;
    // SAFETY: SIG_UNBLOCK (1) from a local set.
    unsafe { arch::syscall4(sys::SYS_RT_SIGPROCMASK, 1, &unblock as *const u64 as u64, 0, 8) };
}

/// The tails of musl's cancellable hops (see `arch::musl_cp_hop`): where a
/// thread interrupted in one is shown to be.
mod cp_tails {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    /// (the tail's first address, the site's `syscall`, its `__cp_cancel`);
    /// entries are added under the rewrite's lock and never removed.
    static TAILS: [[AtomicU64; 3]; 16] = [const { [const { AtomicU64::new(0) }; 3] }; 16];
    static USED: AtomicUsize = AtomicUsize::new(0);
    /// Where, in a tail, the test of the cancel flag has been made: its `jz`.
    const TESTED: u64 = 9;

    /// Records a tail; false when the table is full (the site then keeps trapping).
    pub fn add(tail: u64, site: u64, cancel: u64) -> bool {
        let used = USED.load(Ordering::Relaxed);
        let Some([t, s, c]) = TAILS.get(used) else { return false };
        s.store(site, Ordering::Relaxed);
        c.store(cancel, Ordering::Relaxed);
        t.store(tail, Ordering::Relaxed);
        USED.store(used + 1, Ordering::Release);
        true
    }

    /// Where a thread interrupted at `rip`, stack pointer `sp`, is shown:
    /// before the flag's test, where it is (musl's handler, finding it
    /// outside its labels, leaves a cancellation pending for that test);
    /// after it, as musl's own code would be at that point: at `__cp_cancel`
    /// when the flag is set, else at the site's `syscall` (true), inside the
    /// labels, where a cancellation acts at once.
    pub fn shown_at(rip: u64, sp: u64) -> Option<(u64, bool)> {
        let len = crate::arch::x86_64::MUSL_CP_TAIL as u64;
        let [_, site, cancel] = TAILS.iter().take(USED.load(Ordering::Acquire)).find(|[t, _, _]| {
            let t = t.load(Ordering::Relaxed);
            (t + TESTED..t + len).contains(&rip)
        })?;
        // The flag's address is the word the hop's first move stored at sp + 8.
        let flag = crate::mem::read_u64(sp.wrapping_add(8)).and_then(|at| {
            let mut b = [0u8; 4];
            (crate::mem::read(at, &mut b) == 4).then(|| u32::from_le_bytes(b))
        });
        Some(match flag {
            Some(0) => (site.load(Ordering::Relaxed), true),
            _ => (cancel.load(Ordering::Relaxed), false),
        })
    }
}

/// Where a thread interrupted in a trapped site's thunk is, as the program
/// knows its code: at its own `syscall` (the thunk's, about to run or to be
/// restarted) or just after it. None elsewhere.
fn origin_of(rip: u64) -> Option<u64> {
    for spawn in [false, true] {
        let (base, size, all) = pool(spawn);
        let first = base + (all.len() / 2) as u64 * size;
        let end = base + all.len() as u64 * size;
        if (first..end).contains(&rip) {
            let (k, off) = (((rip - base) / size) as usize, (rip - base) % size);
            let resume = all.get(k)?.load(Ordering::Acquire);
            return match off {
                _ if resume == 0 => None,
                0 => Some(resume - 2),
                2 if !spawn => Some(resume),
                _ => None,
            };
        }
    }
    None
}

/// The `syscall` a thunk's `rip` stands for when it is at its start (to be
/// run, or restarted); 0 otherwise.
fn rip_syscall(rip: u64) -> u64 {
    match origin_of(rip) {
        Some(at) if origin_of(rip + 2) == Some(at + 2) => at,
        _ => 0,
    }
}

/// Per thread: the call a signal handler was shown at its own `syscall`
/// (see [`signal_enter`]): when that site traps next in this thread with the
/// same number and arguments, it is the call already decided, and is let
/// through without a second event. (A handler that jumps away leaves the
/// entry behind: the thread's next identical call there is not reported
/// again, the policy's decision for it being the same.)
mod resumed {
    use core::sync::atomic::{AtomicU64, Ordering};
    const N: usize = 1024;
    /// (thread id, site, hash of the call), by thread id modulo N. Each
    /// thread writes and reads its own entry; another thread with the same
    /// remainder finds its id missing.
    static TABLE: [[AtomicU64; 3]; N] = [const { [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)] }; N];

    pub fn set(tid: u64, site: u64, call: u64) {
        let e = &TABLE[tid as usize % N];
        e[0].store(0, Ordering::Relaxed);
        e[1].store(site, Ordering::Relaxed);
        e[2].store(call, Ordering::Relaxed);
        e[0].store(tid, Ordering::Release);
    }

    /// Whether this is the thread's resumed call (then forgotten). Another
    /// call leaves it: the handler's own calls come first.
    pub fn take(tid: u64, site: u64, call: u64) -> bool {
        let e = &TABLE[tid as usize % N];
        if e[0].load(Ordering::Acquire) != tid {
            return false;
        }
        let same = e[1].load(Ordering::Relaxed) == site && e[2].load(Ordering::Relaxed) == call;
        if same {
            e[0].store(0, Ordering::Relaxed);
        }
        same
    }
}

/// The program's signal handlers (its `sa_handler`), by signal number: the
/// kernel has `dfp_signal_wrapper` in their place.
static HANDLERS: [AtomicU64; 65] = [const { AtomicU64::new(0) }; 65];

/// Called by `dfp_signal_wrapper` (on a stack of the runtime's when one is
/// free): a thread interrupted in a thunk shows the program its own code's address
/// (glibc's and musl's thread cancellation compare it with their cancellable
/// system call; returning there runs that `syscall`, which traps again).
/// Returns the program's handler.
pub extern "C" fn signal_enter(sig: i32, info: *mut SigInfo, uc: *mut u8, busy: u64) -> u64 {
    stacks::guard(busy);
    let t = Trap { info, uc };
    let rip = t.reg(RIP);
    // A handler runs with the interrupted mask added: one that blocked SIGSYS
    // (`sigsuspend`, `ppoll` with a full set, whose temporary mask the frame
    // does not show) would make its first trap fatal. One system call; the
    // frame's mask comes back when the handler returns.
    unblock_sigsys();
    // A child interrupted in its spawn thunk before it armed itself: armed
    // here, before its handler runs, and left where it was.
    if let Some(off) = in_spawn_thunk(rip) {
        if off >= 2 && t.reg(RAX) == 0 {
            arm_this_thread();
        }
    } else if let Some((at, at_syscall)) = cp_tails::shown_at(rip, t.reg(RSP)) {
        t.set(RIP, at);
        if at_syscall {
            resumed::set(sys::gettid(), at, t.call_hash());
        }
    } else if let Some(at) = origin_of(rip) {
        t.set(RIP, at);
        if at == rip_syscall(rip) {
            // Its system call, already decided, will trap again when the
            // handler returns (or restart): it is not a new call.
            resumed::set(sys::gettid(), at, t.call_hash());
        }
    }
    match HANDLERS.get(sig as usize).map_or(0, |h| h.load(Ordering::Acquire)) {
        h if h > 1 => h,
        _ => arch::signal_wrapper_addrs().1,
    }
}

/// Why the backstop is off, when arming failed.
pub enum Off {
    /// `prctl` refused: the kernel predates 5.11, lacks
    /// CONFIG_GENERIC_ENTRY, or a seccomp filter forbids it.
    Kernel(i64),
    /// Installing the SIGSYS handler failed.
    Handler(i64),
}

/// Arms the calling thread (start-up): the SIGSYS handler, then Syscall
/// User Dispatch over `[lo, hi)`. The runtime's other threads (if a
/// constructor started any) are not armed.
pub fn arm(lo: u64, hi: u64) -> Result<(), Off> {
    let act = [arch::sigsys_entry_addr(), SA_SIGINFO | SA_ONSTACK | SA_RESTORER, arch::restore_rt_addr(), !0u64];
    // SAFETY: installs a handler for SIGSYS from a local kernel_sigaction (8-byte mask).
    let r = unsafe { arch::syscall4(sys::SYS_RT_SIGACTION, SIGSYS, act.as_ptr() as u64, 0, 8) };
    if r < 0 {
        return Err(Off::Handler(-r));
    }
    let r = dispatch_on(lo, hi - lo);
    if r < 0 {
        let dfl = [0u64, 0, 0, 0];
        // SAFETY: puts SIGSYS back to its default action (nothing can trap).
        unsafe { arch::syscall4(sys::SYS_RT_SIGACTION, SIGSYS, dfl.as_ptr() as u64, 0, 8) };
        return Err(Off::Kernel(-r));
    }
    RANGE[0].store(lo, Ordering::Relaxed);
    RANGE[1].store(hi - lo, Ordering::Release);
    // A mask inherited across execve may block SIGSYS.
    unblock_sigsys();
    Ok(())
}

/// `siginfo_t` as the kernel fills it for SIGSYS.
#[repr(C)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
    _pad: i32,
    /// Just after the `syscall` instruction that trapped.
    pub call_addr: u64,
    pub syscall: i32,
    pub arch: u32,
}

/// Offsets in a `ucontext_t`: `uc_mcontext.gregs` and `uc_sigmask`.
const UC_GREGS: usize = 40;
const UC_SIGMASK: usize = 296;
/// Indexes in `gregs`.
const R8: usize = 0;
const R9: usize = 1;
const R10: usize = 2;
const RDI: usize = 8;
const RSI: usize = 9;
const RBP: usize = 10;
const RDX: usize = 12;
const RAX: usize = 13;
const RSP: usize = 15;
const RIP: usize = 16;

/// What the handler works on: the kernel's frame.
struct Trap {
    info: *mut SigInfo,
    uc: *mut u8,
}

impl Trap {
    fn reg(&self, i: usize) -> u64 {
        // SAFETY: `uc` is the kernel's ucontext for this signal; gregs has 23 entries.
        unsafe { core::ptr::read_unaligned((self.uc.add(UC_GREGS) as *const u64).add(i)) }
    }
    fn set(&self, i: usize, v: u64) {
        // SAFETY: as in `reg`; the kernel restores these on return.
        unsafe { core::ptr::write_unaligned((self.uc.add(UC_GREGS) as *mut u64).add(i), v) }
    }
    fn mask(&self) -> u64 {
        // SAFETY: the 8-byte kernel sigset in the kernel's ucontext.
        unsafe { core::ptr::read_unaligned(self.uc.add(UC_SIGMASK) as *const u64) }
    }
    fn set_mask(&self, m: u64) {
        // SAFETY: as in `mask`; restored as the thread's mask on return.
        unsafe { core::ptr::write_unaligned(self.uc.add(UC_SIGMASK) as *mut u64, m) }
    }
    /// The system call the registers hold: number and arguments, mixed.
    fn call_hash(&self) -> u64 {
        [RAX, RDI, RSI, RDX, R10, R8, R9]
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &r| (h ^ self.reg(r)).wrapping_mul(0x0000_0100_0000_01b3))
    }
    fn info(&self) -> &SigInfo {
        // SAFETY: the kernel's siginfo for this signal.
        unsafe { &*self.info }
    }
}

/// A trapped system call, called by the SIGSYS handler (`dfp_sigsys_entry`,
/// which has moved to a stack of the runtime's: the program's may be a few
/// hundred bytes). A SIGSYS that is not a trap (a seccomp filter's, `kill`)
/// goes to [`foreign`] instead.
pub extern "C" fn dfp_sigsys(_sig: i32, info: *mut SigInfo, uc: *mut u8, busy: u64) {
    stacks::guard(busy);
    let t = &Trap { info, uc };
    let nr = t.reg(RAX);
    let after = t.info().call_addr;
    // `int $0x80` (the i386 numbering, which the dispatcher does not know):
    // refused, as on a kernel without IA-32 emulation.
    if t.info().arch != AUDIT_ARCH_X86_64 {
        t.set(RAX, (-sys::ENOSYS) as u64);
        return;
    }
    let result = match virtual_kind(nr) {
        Some(X32_RT_SIGACTION) => Some(-sys::ENOSYS),
        Some(NR_RT_SIGACTION) => Some(sigaction(t.reg(RDI), t.reg(RSI), t.reg(RDX), t.reg(R10))),
        Some(NR_RT_SIGPROCMASK) => Some(sigprocmask(t)),
        // (`option` and `how` are C ints: the kernel ignores their upper halves.)
        Some(NR_PRCTL) if t.reg(RDI) as u32 as u64 == PR_SET_SYSCALL_USER_DISPATCH => Some(-sys::EPERM),
        _ => match syscall_api(nr) {
            Some(_) if resumed::take(sys::gettid(), after.wrapping_sub(2), t.call_hash()) => None,
            Some(api) => {
                let c = crate::start::contract();
                let call = arch::HookFrame {
                    r11: 0,
                    rax: nr,
                    rdi: t.reg(RDI),
                    rsi: t.reg(RSI),
                    rdx: t.reg(RDX),
                    rcx: t.reg(R10),
                    r8: t.reg(R8),
                    r9: t.reg(R9),
                    rbp: t.reg(RBP),
                    ret: 0,
                    busy: 0,
                    sp: 0,
                };
                let sp = t.reg(RSP);
                // (`below`: 16 under the stack pointer, as libc's vfork pops its return
                // address before its `syscall`: still inside the reported vfork.)
                let site =
                    dispatch::Site { pc: after.wrapping_sub(2), sp, rbp: t.reg(RBP), below: sp.wrapping_sub(16) };
                dispatch::decided_as(api, &call).and_then(|api| {
                    dispatch::syscall_verdict(c, api, &call, site, crate::contract::hook_kind::BACKSTOP)
                })
            }
            // (A restricted ring's own restrictions: see `uring`.)
            None => {
                dispatch::ring_register(crate::start::contract(), nr, [t.reg(RDI), t.reg(RSI), t.reg(RDX), t.reg(R10)])
            }
        },
    };
    if let Some(v) = result {
        t.set(RAX, v as u64);
        // Next time through a hop that asks the dispatcher, without a trap.
        rewrite::site(after, nr);
        return;
    }
    // Let it run: in a thunk that jumps back to just after the `syscall`
    // (with %rax still the number, every other register the program's).
    match thunk(after, may_spawn(nr), Serves::Trapped) {
        Some(at) => {
            t.set(RIP, at);
            rewrite::site(after, nr);
        }
        None if may_spawn(nr) => t.set(RAX, (-sys::EAGAIN) as u64),
        // Every thunk taken: run it here (fine for any call that does not
        // depend on the stack it is made on).
        None => {
            // SAFETY: the program's own system call with its own arguments,
            // as it would have run it.
            let r = unsafe { arch::syscall6(nr, t.reg(RDI), t.reg(RSI), t.reg(RDX), t.reg(R10), t.reg(R8), t.reg(R9)) };
            t.set(RAX, r as u64);
        }
    }
}

/// Rewriting at run time the sites that trap, so that in steady state
/// almost nothing does: a `mov $N, %eax; syscall` (most of glibc's and
/// musl's wrappers, the loader's) in a file's code gets a `jmp` to a hop in
/// place of its `mov` (one aligned 8-byte store, so a thread running it
/// sees the old bytes or the new), its `syscall` left where it was: a
/// thread that reaches it another way (a jump to it, a signal handler
/// shown it by [`signal_enter`]) still traps, correctly. The hop (near the
/// site) sets `%eax`, asks the dispatcher when the call is monitored, and
/// runs it in the site's thunk. The system calls the backstop virtualises
/// (`rt_sigaction`, `rt_sigprocmask`, `prctl`) are made by the dispatcher
/// ([`super::virtualised`]).
mod rewrite {
    use super::{arch, thunk, Serves, NR_PRCTL, NR_RT_SIGACTION, NR_RT_SIGPROCMASK};
    use crate::{apis, libplans, loader, mem, sys};
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const ARENA: u64 = 64 << 10;
    /// Room for the largest hop (`arch::MUSL_CP_HOP`).
    const HOP: u64 = arch::MUSL_CP_HOP as u64;
    /// Hop arenas near the code they serve: (base, bytes used).
    static ARENAS: [[AtomicU64; 2]; 32] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; 32];
    /// One thread rewrites at a time (a page made writable for one site is
    /// not made read-only under another thread's write).
    static LOCK: AtomicU64 = AtomicU64::new(0);
    /// Library site numbers given to sites rewritten here (their events
    /// say `"layer":"backstop"`).
    static OURS: [AtomicBool; 2 * crate::contract::MAX_LIB_SITES] =
        [const { AtomicBool::new(false) }; 2 * crate::contract::MAX_LIB_SITES];

    /// Whether `%r11` number `k` is a site rewritten here.
    pub fn ours(k: u64) -> bool {
        let i = (k & !crate::contract::r11::LIB_SITE) as usize;
        k & crate::contract::r11::LIB_SITE != 0 && OURS.get(i).is_some_and(|b| b.load(Ordering::Relaxed))
    }

    /// Rewrites the site whose `syscall` ends at `after`, which has just
    /// trapped with number `nr`, when it is the pattern and safe to.
    pub fn site(after: u64, nr: u64) {
        // (rt_sigreturn stays: every handler returns through the runtime's.)
        if nr == 15 || nr > 511 {
            return;
        }
        // A site already found not to be the pattern (musl's cancellable
        // `syscall`, whose number comes from a register) traps at every
        // call: its next traps make no system call here.
        if UNREWRITABLE.iter().any(|s| s.load(Ordering::Relaxed) == after) {
            return;
        }
        let me = sys::gettid();
        if LOCK.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return; // another thread is rewriting: this site traps again, later
        }
        // The aligned word the `mov` starts in and what follows, up to the
        // `syscall`'s end, in one read (read under the lock: a site another
        // thread has just rewritten no longer holds the `mov`).
        let at = after.wrapping_sub(7);
        let word = at & !7;
        let mut b = [0u8; 16];
        let got = mem::read(word, &mut b);
        let i = (at - word) as usize;
        let pattern = got >= i + 7
            && b[i] == 0xb8
            && b[i + 5..i + 7] == [0x0f, 0x05]
            && u32::from_le_bytes([b[i + 1], b[i + 2], b[i + 3], b[i + 4]]) as u64 == nr;
        let old = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let done = if pattern && got >= 8 {
            rewrite(at, after, Hop::Number(nr), old)
        } else if let Some((from, moved)) = musl_cancellable(after) {
            // (What `from`'s aligned word held, read again: it may be the one before.)
            let mut w = [0u8; 8];
            mem::read(from & !7, &mut w) == 8
                && rewrite(from, after, Hop::MuslCancellable { cancel: after + 1, moved }, u64::from_le_bytes(w))
        } else {
            false
        };
        // Not the pattern, or its rewrite failed (memory that cannot be made
        // writable, every thunk or number taken): its next traps try nothing.
        if !done && got >= i + 7 {
            let k = UNREWRITABLE_NEXT.fetch_add(1, Ordering::Relaxed) % UNREWRITABLE.len();
            UNREWRITABLE[k].store(after, Ordering::Relaxed);
        }
        LOCK.store(0, Ordering::Release);
    }

    /// When the `syscall` ending at `after` is musl's cancellable one
    /// (`...; mov %r11, 8(%rsp); syscall; ret; __cp_cancel: jmp __cancel`):
    /// where to put the hop's `jmp` and how many of the moves before the
    /// `syscall` it replaces (`arch::MUSL_CP_MOVS`): the last move whose 5
    /// bytes lie in one aligned word, as one store writes them.
    fn musl_cancellable(after: u64) -> Option<(u64, usize)> {
        let movs = arch::MUSL_CP_MOVS;
        let start = after.checked_sub(2 + movs.len() as u64)?;
        let mut b = [0u8; 20];
        if mem::read(start, &mut b) != 20 {
            return None;
        }
        let ours = b[..15] == movs && b[15..18] == [0x0f, 0x05, 0xc3] && matches!(b[18], 0xe9 | 0xeb);
        if !ours {
            return None;
        }
        (1..=3).map(|moved| (after - 2 - 5 * moved as u64, moved)).find(|&(at, _)| at % 8 <= 3)
    }

    /// The last sites (their `syscall`'s end) found not to be the pattern,
    /// or whose rewrite failed.
    /// Code loaded later at the same address keeps trapping (correctly).
    static UNREWRITABLE: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
    static UNREWRITABLE_NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

    /// The read+execute mappings of files found so far (`[lo, hi)`), as of
    /// [`crate::guard::maps_generation`] `CODE_SEEN_AT`: a site in one of
    /// them needs no read of `/proc/self/maps` (about 5 system calls of the
    /// 17 a trap's rewrite made). Touched only under [`LOCK`].
    static CODE_SEEN: [[AtomicU64; 2]; 16] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; 16];
    static CODE_SEEN_AT: AtomicU64 = AtomicU64::new(u64::MAX);

    /// Whether `at` lies in a file's code, mapped read+execute (not JIT
    /// memory, whose owner may write it again).
    fn in_file_code(at: u64) -> bool {
        let now = crate::guard::maps_generation();
        if CODE_SEEN_AT.load(Ordering::Relaxed) != now {
            for [lo, hi] in &CODE_SEEN {
                lo.store(0, Ordering::Relaxed);
                hi.store(0, Ordering::Relaxed);
            }
            CODE_SEEN_AT.store(now, Ordering::Relaxed);
        }
        if CODE_SEEN.iter().any(|[lo, hi]| (lo.load(Ordering::Relaxed)..hi.load(Ordering::Relaxed)).contains(&at)) {
            return true;
        }
        match loader::mapping_at(at) {
            Some((lo, hi, prot, named)) if prot == sys::PROT_READ | sys::PROT_EXEC && named => {
                if let Some([l, h]) = CODE_SEEN.iter().find(|[_, h]| h.load(Ordering::Relaxed) == 0) {
                    l.store(lo, Ordering::Relaxed);
                    h.store(hi, Ordering::Relaxed);
                }
                true
            }
            _ => false,
        }
    }

    /// What replaces a site's 5 bytes before its `syscall`.
    #[derive(Clone, Copy)]
    enum Hop {
        /// `mov $N, %eax`.
        Number(u64),
        /// The last `moved` moves before musl's cancellable `syscall`
        /// (whose number is known only at run time); its `__cp_cancel`.
        MuslCancellable { cancel: u64, moved: usize },
    }

    /// Rewrites the 5 bytes at `at` (its aligned word holding `old`) that
    /// start what comes before the `syscall` ending at `after`, as `hop`
    /// says; whether the site's `jmp` is in place.
    fn rewrite(at: u64, after: u64, hop: Hop, old: u64) -> bool {
        // The 5 bytes in one aligned 8-byte word, written at once; or,
        // with no other thread to run them meanwhile, wherever they are (not
        // in a `vfork` child: its parent's other threads share the memory).
        let word = at & !7;
        let one_word = at + 5 <= word + 8;
        let alone = || crate::start::is_start_process() && libplans::single_threaded();
        if !(one_word || alone()) || !in_file_code(at) {
            return false;
        }
        let spawn = match hop {
            Hop::Number(nr) => apis::may_spawn(nr),
            Hop::MuslCancellable { .. } => false, // (cancellable calls start nothing)
        };
        let Some(thunk) = thunk(after, spawn, Serves::Trapped) else { return false };
        // Monitored and virtualised calls ask the dispatcher; a number known
        // only at run time always does (`dfp_sys_hook` lets the others go at once).
        let asks = match hop {
            Hop::Number(nr) => {
                [NR_RT_SIGACTION, NR_RT_SIGPROCMASK, NR_PRCTL].contains(&(nr as u32))
                    || super::is_ring_register(nr)
                    || apis::syscall_api(nr).is_some()
            }
            Hop::MuslCancellable { .. } => true,
        };
        let ask = match asks {
            true => match libplans::new_site(after - 2) {
                Some(k) => {
                    if let Some(b) = OURS.get((k as u64 & !crate::contract::r11::LIB_SITE) as usize) {
                        b.store(true, Ordering::Relaxed);
                    }
                    Some((k, arch::sys_hook_addr()))
                }
                None => return false,
            },
            false => None,
        };
        let Some(hop_at) = hop_near(at) else { return false };
        let written = match (hop, ask) {
            (Hop::Number(nr), ask) => {
                let (code, len) = arch::site_hop(nr as u32, ask, thunk, after);
                sys::write_proc_self_mem(hop_at, &code[..len])
            }
            (Hop::MuslCancellable { cancel, moved }, Some((k, hook))) => {
                // (Its tail known before a thread can reach it.)
                let mask = super::DISPATCH_MASK.bits.as_ptr() as u64;
                let (code, tail) = arch::musl_cp_hop(moved, k, hook, mask, cancel, thunk, after);
                sys::write_proc_self_mem(hop_at, &code) && super::cp_tails::add(hop_at + tail as u64, after - 2, cancel)
            }
            (Hop::MuslCancellable { .. }, None) => false,
        };
        let Some(jmp) = arch::jmp_rel32(at, hop_at, 5).filter(|_| written) else { return false };
        // The rewritten code is the program's to keep (see `guard`).
        crate::guard::protect(at, at + 5, crate::guard::CODE);
        if !one_word {
            // Single-threaded (a signal handler cannot run: every signal is
            // blocked in the SIGSYS handler): through /proc/self/mem.
            return sys::write_proc_self_mem(at, &jmp[..5]);
        }
        let mut new = old.to_le_bytes();
        let i = (at - word) as usize;
        new[i..i + 5].copy_from_slice(&jmp[..5]);
        let page = word & !4095;
        // SAFETY: the page holds the site; it stays executable throughout
        // (threads may be running it) and gets its protection back below.
        if unsafe { sys::mprotect(page, 4096, sys::PROT_READ | sys::PROT_WRITE | sys::PROT_EXEC) }.is_err() {
            return false;
        }
        // SAFETY: `word` is 8-aligned, in the page just made writable; one
        // atomic store, so a thread running these bytes sees old or new.
        let w = unsafe { &*(word as *const AtomicU64) };
        let stored = w.compare_exchange(old, u64::from_le_bytes(new), Ordering::AcqRel, Ordering::Relaxed).is_ok();
        // SAFETY: back to what it was (read+execute).
        let _ = unsafe { sys::mprotect(page, 4096, sys::PROT_READ | sys::PROT_EXEC) };
        stored
    }

    /// A fresh arena within reach of `at`: the kernel takes the address
    /// asked for when it is free, and puts the mapping near the others
    /// otherwise, which is far from a non-PIE executable's code (at 4 MiB).
    /// So: where the kernel likes, then below the code, then 1 GiB or more
    /// above it (clear of a `brk` heap growing from the end of its data).
    fn arena_near(at: u64, near: &dyn Fn(u64) -> bool) -> Option<u64> {
        let base = at & !(ARENA - 1);
        for k in 0..33u64 {
            let hint = match k {
                0 => base,
                1..=16 => base.saturating_sub(((k - 1) << 24) + ARENA),
                _ => base.saturating_add((1 << 30) + ((k - 17) << 24)),
            };
            if hint < 1 << 16 {
                continue;
            }
            let fresh = sys::map_anonymous_near(hint, ARENA)?;
            if near(fresh) {
                return Some(fresh);
            }
            // SAFETY: ours, never handed out.
            unsafe { sys::unmap(fresh, ARENA) };
        }
        None
    }

    /// Room for a hop within a `jmp rel32` of `at`.
    fn hop_near(at: u64) -> Option<u64> {
        let near = |base: u64| base.abs_diff(at) < (1 << 31) - ARENA;
        for a in &ARENAS {
            let base = a[0].load(Ordering::Relaxed);
            if base == 0 {
                let fresh = arena_near(at, &near)?;
                // SAFETY: our own fresh mapping: hops are written through /proc/self/mem.
                if unsafe { sys::mprotect(fresh, ARENA, sys::PROT_READ | sys::PROT_EXEC) }.is_err() {
                    // SAFETY: ours, never handed out.
                    unsafe { sys::unmap(fresh, ARENA) };
                    return None;
                }
                a[1].store(HOP, Ordering::Relaxed);
                a[0].store(fresh, Ordering::Release);
                crate::guard::protect(fresh, fresh + ARENA, crate::guard::OURS);
                return Some(fresh);
            }
            let used = a[1].load(Ordering::Relaxed);
            if near(base) && used + HOP <= ARENA {
                a[1].store(used + HOP, Ordering::Relaxed);
                return Some(base + used);
            }
        }
        None
    }
}

pub use rewrite::ours as rewritten_site;

/// `rt_sigaction(sig, act, oldact, size)` as the program may make it.
fn sigaction(sig: u64, act: u64, old: u64, size: u64) -> i64 {
    if size != 8 {
        return -sys::EINVAL;
    }
    let mut new = [0u64; 4];
    if act != 0 && !read_words(act, &mut new) {
        return -sys::EFAULT;
    }
    if sig as u32 as u64 == SIGSYS {
        // Kept aside: the program sees what it set.
        if old != 0 {
            let mut was = [0u64; 4];
            for (w, a) in was.iter_mut().zip(&PROGRAM_SIGSYS) {
                *w = a.load(Ordering::Relaxed);
            }
            if !write_words(old, &was) {
                return -sys::EFAULT;
            }
        }
        if act != 0 {
            for (a, w) in PROGRAM_SIGSYS.iter().zip(new) {
                a.store(w, Ordering::Relaxed);
            }
        }
        return 0;
    }
    // Every handler runs through the runtime's wrapper (see signal_enter).
    let wrapper = arch::signal_wrapper_addrs().0;
    let slot = HANDLERS.get(sig as u32 as usize).filter(|_| sig != 0);
    let was = slot.map_or(0, |h| h.load(Ordering::Acquire));
    let mut prev = None;
    let mut ptr = 0;
    if act != 0 {
        if new[1] & SA_RESTORER != 0 {
            new[2] = arch::restore_rt_addr();
        }
        new[3] &= !SIGSYS_BIT;
        if let Some(h) = slot {
            // SIG_DFL and SIG_IGN go to the kernel as they are, and leave
            // the table alone: a `vfork` child resetting its signals before
            // `execve` (posix_spawn, Python's subprocess) shares this memory
            // with its parent, whose handlers must stay.
            let handler = new[0];
            prev = Some(if handler > 1 {
                new[0] = wrapper;
                h.swap(handler, Ordering::AcqRel)
            } else {
                h.load(Ordering::Acquire)
            });
        }
        ptr = new.as_ptr() as u64;
    }
    // SAFETY: the program's call with a copy of its action; the kernel writes
    // `oldact` (the program's pointer) itself, reporting EFAULT.
    let r = unsafe { arch::syscall4(sys::SYS_RT_SIGACTION, sig, ptr, old, size) };
    if r < 0 {
        if let (Some(h), Some(p)) = (slot, prev) {
            h.store(p, Ordering::Release);
        }
        return r;
    }
    // The old action as the program set it.
    let mut o = [0u64];
    if old != 0 && read_words(old, &mut o) && o[0] == wrapper {
        let _ = write_words(old, &[prev.unwrap_or(was)]);
    }
    r
}

/// Whether a `prctl` of option `option` is one the backstop virtualises
/// (the program may not set up Syscall User Dispatch of its own).
pub fn virtualises_prctl(option: u64) -> bool {
    option as u32 as u64 == PR_SET_SYSCALL_USER_DISPATCH
}

/// The system calls the backstop virtualises, made through a rewritten
/// site (a trampoline or hop, which asked the dispatcher): their result, the
/// call made here and not by the site. None for any other call, or while
/// the backstop is off.
pub fn virtualised(nr: u64, a: [u64; 4]) -> Option<i64> {
    if RANGE[1].load(Ordering::Relaxed) == 0 {
        return None;
    }
    match virtual_kind(nr)? {
        X32_RT_SIGACTION => Some(-sys::ENOSYS),
        NR_RT_SIGACTION => Some(sigaction(a[0], a[1], a[2], a[3])),
        NR_RT_SIGPROCMASK => {
            let (how, set, old, size) = (a[0] as u32 as u64, a[1], a[2], a[3]);
            let mut new = [0u64];
            if set != 0 && size == 8 && how <= 2 {
                if !read_words(set, &mut new) {
                    return Some(-sys::EFAULT);
                }
                new[0] &= !SIGSYS_BIT;
            }
            let ptr = if set != 0 { new.as_ptr() as u64 } else { 0 };
            // SAFETY: the program's call with a copy of its set, SIGSYS left
            // out; the kernel writes `oldset` (the program's pointer) itself.
            Some(unsafe { arch::syscall4(sys::SYS_RT_SIGPROCMASK, how, ptr, old, size) })
        }
        NR_PRCTL if a[0] as u32 as u64 == PR_SET_SYSCALL_USER_DISPATCH => Some(-sys::EPERM),
        _ => None,
    }
}

/// `io_uring_register`, which restricted rings need to see (see `uring`).
pub const NR_IO_URING_REGISTER: u64 = 427;

/// Whether system call number `nr` is `io_uring_register`, in either ABI.
pub fn is_ring_register(nr: u64) -> bool {
    nr as u32 & !0x4000_0000 == NR_IO_URING_REGISTER as u32
}

/// The numbers `dfp_sys_hook` sends to the dispatcher whatever the policy
/// (bits of a [`DISPATCH_MASK`]): those the backstop virtualises, and those
/// that change what is mapped where (`mmap`, `mprotect`, `munmap`,
/// `mremap`, `madvise`, `shmat`, `pkey_mprotect`), which the runtime's
/// knowledge of the file code in memory follows (`guard::maps_generation`).
const ALWAYS_DISPATCHED: [u64; 8] = {
    let mut m = [0u64; 8];
    m[0] |= 1 << NR_RT_SIGACTION | 1 << NR_RT_SIGPROCMASK;
    m[(NR_PRCTL / 64) as usize] |= 1 << (NR_PRCTL % 64);
    m[0] |= 1 << 9 | 1 << 10 | 1 << 11 | 1 << 25 | 1 << 28 | 1 << 30;
    m[329 / 64] |= 1 << (329 % 64);
    m
};

/// The dispatch mask alone in a page of its own, which start-up makes
/// read-only once it has narrowed the mask (and registers as the runtime's
/// own: changing or discarding it tampers): a store of the program's cannot
/// let the rewritten sites make their calls unasked.
#[repr(C, align(4096))]
pub struct MaskPage {
    pub bits: [AtomicU64; 8],
    _rest: [u8; 4096 - 64],
}

/// Bit `n`: system call `n` (below 512) goes to the dispatcher from a
/// rewritten site's `dfp_sys_hook`: those [`virtualised`], and the
/// monitored ones the policy watches (see [`dispatch_mask`]). Every
/// monitored one until start-up has read the policy.
pub static DISPATCH_MASK: MaskPage = MaskPage { bits: every_monitored(), _rest: [0; 4096 - 64] };

/// The mask before start-up: every monitored number.
const fn every_monitored() -> [AtomicU64; 8] {
    let mut m = crate::apis::SYSCALL_MASK;
    let mut i = 0;
    while i < 8 {
        m[i] |= ALWAYS_DISPATCHED[i];
        i += 1;
    }
    [
        AtomicU64::new(m[0]),
        AtomicU64::new(m[1]),
        AtomicU64::new(m[2]),
        AtomicU64::new(m[3]),
        AtomicU64::new(m[4]),
        AtomicU64::new(m[5]),
        AtomicU64::new(m[6]),
        AtomicU64::new(m[7]),
    ]
}

/// The [`DISPATCH_MASK`] of a policy that watches the APIs `watched` says:
/// a monitored system call the policy lets through everywhere (its own API
/// and, for one that can tamper, its `tamper` API) costs nothing more than
/// an unmonitored one. The rewriter plans with the same mask (a site whose
/// number it leaves out asks nothing).
pub fn dispatch_mask(watched: impl Fn(crate::apis::ApiId) -> bool) -> [u64; 8] {
    let mut m = ALWAYS_DISPATCHED;
    for (n, api) in crate::apis::SYSCALLS {
        if watched(api) || crate::apis::tamper_of(api).is_some_and(&watched) {
            m[(n / 64) as usize] |= 1 << (n % 64);
        }
    }
    // Restricted rings: the program's own restrictions are intersected
    // with the runtime's (see `uring`).
    if watched(crate::apis::ApiId::io_uring_setup) {
        m[(NR_IO_URING_REGISTER / 64) as usize] |= 1 << (NR_IO_URING_REGISTER % 64);
    }
    m
}

/// Start-up: the mask of the program's policy (see [`dispatch_mask`]),
/// then its page made read-only. Once: a `fork` child that runs start-up
/// again has it so already.
pub(crate) fn narrow_dispatch_mask(p: &crate::ptable::PolicyTable) {
    static NARROWED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if NARROWED.swap(true, Ordering::AcqRel) {
        return;
    }
    let m = dispatch_mask(|api| p.watches(api as u16));
    for (slot, bits) in DISPATCH_MASK.bits.iter().zip(m) {
        slot.store(bits, Ordering::Relaxed);
    }
    #[cfg(target_os = "none")]
    {
        let page = &DISPATCH_MASK as *const MaskPage as u64;
        // SAFETY: the page holds the mask alone (`MaskPage` is one aligned
        // page), and nothing writes the mask after this.
        if unsafe { sys::mprotect(page, 4096, sys::PROT_READ) }.is_ok() {
            crate::guard::protect(page, page + 4096, crate::guard::OURS);
        }
    }
}

/// Whether `dfp_sys_hook` takes system call `nr` to the dispatcher under
/// mask `mask` (a monitored or virtualised number, or one of 512 and
/// above): a `syscall` site whose number is known and is not one needs no
/// question.
pub fn dispatched(nr: u64, mask: &[u64; 8]) -> bool {
    nr >= 512 || mask[(nr / 64) as usize] & 1 << (nr % 64) != 0
}

const _: () = assert!(core::mem::size_of::<MaskPage>() == 4096);

/// `rt_sigprocmask(how, set, oldset, size)`: made on the mask the thread
/// returns to (the signal frame's), SIGSYS left out.
fn sigprocmask(t: &Trap) -> i64 {
    let (how, set, old, size) = (t.reg(RDI) as u32 as u64, t.reg(RSI), t.reg(RDX), t.reg(R10));
    if size != 8 {
        return -sys::EINVAL;
    }
    let cur = t.mask();
    let mut new = [0u64];
    if set != 0 && !read_words(set, &mut new) {
        return -sys::EFAULT;
    }
    let next = match (set, how) {
        (0, _) => cur,
        (_, 0) => cur | new[0],
        (_, 1) => cur & !new[0],
        (_, 2) => new[0],
        _ => return -sys::EINVAL,
    };
    if old != 0 && !write_words(old, &[cur]) {
        return -sys::EFAULT;
    }
    t.set_mask(next & !SIGSYS_BIT & !UNBLOCKABLE);
    0
}

/// A SIGSYS that is not the backstop's: what the program asked for. Its
/// handler runs with the mask it would have had (the thread's, plus its
/// `sa_mask`, SIGSYS left out so that its own system calls can trap).
/// Entered from `dfp_sigsys_entry` on the stack the kernel chose.
pub extern "C" fn foreign(sig: i32, info: *mut SigInfo, uc: *mut u8) {
    let handler = PROGRAM_SIGSYS[0].load(Ordering::Relaxed);
    let flags = PROGRAM_SIGSYS[1].load(Ordering::Relaxed);
    if handler > 1 {
        let t = Trap { info, uc };
        let mask = (t.mask() | PROGRAM_SIGSYS[3].load(Ordering::Relaxed)) & !SIGSYS_BIT;
        // SAFETY: sets this thread's mask from a local; the kernel restores
        // the frame's mask when this handler returns.
        unsafe { arch::syscall4(sys::SYS_RT_SIGPROCMASK, 2, &mask as *const u64 as u64, 0, 8) };
    }
    match handler {
        1 => {} // SIG_IGN
        0 => {
            // SIG_DFL: the default action (core dump), as without us.
            let dfl = [0u64; 4];
            // SAFETY: SIGSYS to its default action, then sent to this thread:
            // delivered when the handler returns and unblocks it.
            unsafe {
                arch::syscall4(sys::SYS_RT_SIGACTION, SIGSYS, dfl.as_ptr() as u64, 0, 8);
                arch::syscall3(sys::SYS_TGKILL, sys::getpid(), sys::gettid(), SIGSYS);
            }
        }
        h if flags & SA_SIGINFO != 0 => {
            // SAFETY: the program's own SA_SIGINFO handler, called as the kernel would.
            let f: extern "C" fn(i32, *mut SigInfo, *mut u8) = unsafe { core::mem::transmute(h as usize) };
            f(sig, info, uc);
        }
        h => {
            // SAFETY: the program's own handler, called as the kernel would.
            let f: extern "C" fn(i32) = unsafe { core::mem::transmute(h as usize) };
            f(sig);
        }
    }
}

fn read_words(addr: u64, out: &mut [u64]) -> bool {
    let mut b = [0u8; 32];
    let n = out.len() * 8;
    if n > b.len() || mem::read(addr, &mut b[..n]) != n {
        return false;
    }
    for (i, w) in out.iter_mut().enumerate() {
        *w = u64::from_le_bytes([
            b[i * 8],
            b[i * 8 + 1],
            b[i * 8 + 2],
            b[i * 8 + 3],
            b[i * 8 + 4],
            b[i * 8 + 5],
            b[i * 8 + 6],
            b[i * 8 + 7],
        ]);
    }
    true
}

fn write_words(addr: u64, words: &[u64]) -> bool {
    let mut b = [0u8; 32];
    let n = words.len() * 8;
    if n > b.len() {
        return false;
    }
    for (i, w) in words.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    sys::write_own_memory(addr, &b[..n]) == Ok(n)
}

/// Start-up: arm the backstop over the runtime's range, or say why not.
pub(crate) fn start(c: &Contract) {
    #[cfg(target_os = "none")]
    {
        let Some(p) = crate::start::policy(c) else { return };
        if !p.backstop() {
            return; // the policy says so (`backstop = false`)
        }
        if arch::under_valgrind() {
            // Valgrind runs the program's code translated, its system calls
            // from its own code: armed, every one would trap.
            crate::event::backstop_off(&p, b"the program runs under Valgrind", 0);
            return;
        }
        let lo = arch::rx_start_addr();
        let hi = c.exe_hi.wrapping_add(crate::start::bias(c));
        if hi <= lo {
            return;
        }
        if let Err(off) = arm(lo, hi) {
            let (what, e) = match off {
                Off::Kernel(e) => (&b"Syscall User Dispatch is not available (Linux 5.11 or later, not refused by seccomp): system calls from code dfpatch did not rewrite are not seen"[..], e),
                Off::Handler(e) => (&b"the SIGSYS handler could not be installed"[..], e),
            };
            crate::event::backstop_off(&p, what, e);
        }
    }
    #[cfg(not(target_os = "none"))]
    let _ = c;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_keeps_its_thunk_and_sites_get_their_own() {
        let a = thunk(0x7000_1234, false, Serves::Trapped).unwrap();
        assert_eq!(thunk(0x7000_1234, false, Serves::Trapped), Some(a));
        let b = thunk(0x7000_5678, false, Serves::Trapped).unwrap();
        assert_ne!(a, b);
        let s = thunk(0x7000_1234, true, Serves::Trapped).unwrap();
        assert_ne!(a, s);
        let t = thunk(0x7000_1234, false, Serves::Trampoline).unwrap();
        assert_ne!(a, t);
        let (plain, spawn) = arch::thunks_addr();
        assert_eq!((a - plain) % PLAIN_THUNK_SIZE, 0);
        assert_eq!((s - spawn) % SPAWN_THUNK_SIZE, 0);
        assert_eq!(thunk(0, false, Serves::Trapped), None);
        // A thread in a trapped site's thunk is shown at the site itself;
        // in a trampoline's, nowhere else.
        assert_eq!(origin_of(a), Some(0x7000_1232));
        assert_eq!(origin_of(a + 2), Some(0x7000_1234));
        assert_eq!(origin_of(s), Some(0x7000_1232));
        // A spawn thunk after its system call: left alone (a child there
        // has not armed itself yet; signal_enter arms it).
        assert_eq!(origin_of(s + 2), None);
        assert_eq!(in_spawn_thunk(s + 2), Some(2));
        assert_eq!(in_spawn_thunk(a), None);
        assert_eq!(origin_of(t), None);
        assert_eq!(origin_of(a + 4), None);
        // Both ABIs' numbers of what is virtualised.
        assert_eq!(virtual_kind(14), Some(14));
        assert_eq!(virtual_kind(0x4000_0000 | 157), Some(157));
        assert_eq!(virtual_kind(0x4000_0000 | 512), Some(X32_RT_SIGACTION));
        assert_eq!(virtual_kind(512), None);
        assert_eq!(virtual_kind(0x1_0000_000d), Some(13), "the upper half is ignored, as by the kernel");
    }
}
