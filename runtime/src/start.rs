//! Start-up: the contract as the running image sees it, self-relocation,
//! who we are, and the layers installed in memory (the symbol layer, the
//! library plans, a `dlmopen` namespace's copy of them).
//!
//! Rules for the whole runtime (it runs inside any thread of any program,
//! before libc is ready, in signal handlers and in vfork children):
//! * no libc, no allocation, no TLS, no locks: state is atomics only;
//! * until `relocate` has copied the writable image and applied relocations,
//!   only zero-initialised statics (`.bss`) may be touched, no code may rely
//!   on a pointer stored in data, and nothing may call `memcpy`/`memset`
//!   (the compiler reaches them through the not yet relocated GOT);
//! * nothing may call a hooked function; system calls are raw;
//! * an event is built on the stack (or in a pool buffer) and written with one `write`.

use crate::arch::x86_64::{HookFrame, FORWARD};
use crate::contract::{Contract, Record, Relocation};
use crate::ptable::PolicyTable;
use crate::sys;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Filled in by the rewriter in the output file; all zero in the build. The
/// rewriter finds it as the `.dfp_contract` output section. It is deliberately
/// not exported (`#[no_mangle]`): an exported static may be reached through a
/// GOT entry, and the GOT is not relocated yet when start-up reads the contract.
#[used]
#[link_section = ".dfp_contract"]
static DFP_CONTRACT: Contract = Contract::EMPTY;

/// Start-up state: 0 not started, [`READY`], or `pid << 1 | 1` while a thread
/// of process `pid` runs start-up. The pid tells a child forked in the middle
/// of start-up that nobody in it will finish the job.
static INIT: AtomicU64 = AtomicU64::new(0);
const READY: u64 = 2;
/// The process that ran start-up (a child has another pid, and the same
/// memory or a copy of it).
static START_PID: AtomicU64 = AtomicU64::new(0);
static EXE_LEN: AtomicUsize = AtomicUsize::new(0);
static EXE: RacyBytes<512> = RacyBytes(UnsafeCell::new([0; 512]));

/// Bytes written once by `init` (single writer, before `INIT` becomes READY
/// with Release) and only read after an Acquire load of `INIT` sees READY.
struct RacyBytes<const N: usize>(UnsafeCell<[u8; N]>);
// SAFETY: see the type's comment: the one write happens-before every read.
unsafe impl<const N: usize> Sync for RacyBytes<N> {}

/// Where the contract is at run time.
pub(crate) fn contract_ptr() -> *const Contract {
    #[cfg(target_os = "none")]
    {
        crate::arch::x86_64::contract_addr() as *const Contract
    }
    #[cfg(not(target_os = "none"))]
    {
        core::ptr::addr_of!(DFP_CONTRACT)
    }
}

/// The contract, in place. In the injected image its address comes from an
/// assembler `lea` the compiler cannot see through, so it cannot fold in the
/// all-zero value the static was built with (and no copy is made: a
/// volatile read of the whole structure cost ~300 instructions per hook).
pub(crate) fn contract() -> &'static Contract {
    // SAFETY: the pointer is to DFP_CONTRACT, a valid static in a read-only
    // segment that nothing writes while the program runs.
    unsafe { &*contract_ptr() }
}

/// Run-time address minus link-time address of the patched executable.
pub(crate) fn bias(c: &Contract) -> u64 {
    (contract_ptr() as u64).wrapping_sub(c.self_vaddr)
}

/// Bytes of the running image at link-time address `vaddr`.
pub(crate) fn image(c: &Contract, vaddr: u64, len: u64) -> &'static [u8] {
    if vaddr == 0 || len == 0 || len > (1 << 30) {
        return &[];
    }
    // SAFETY: the rewriter placed `len` bytes at `vaddr` in a loaded, read-only
    // segment of this executable; they live as long as the process.
    unsafe { core::slice::from_raw_parts(vaddr.wrapping_add(bias(c)) as *const u8, len as usize) }
}

pub(crate) fn policy(c: &Contract) -> Option<PolicyTable<'static>> {
    PolicyTable::parse(image(c, c.policy_vaddr, c.policy_len))
}

/// Called by `dfp_entry` with the initial stack pointer; returns where the
/// program's own entry point is loaded.
pub extern "C" fn dfp_start(_sp: *const u64) -> u64 {
    let c = contract();
    ensure_init(c);
    c.orig_entry.wrapping_add(bias(c))
}

/// Called by the dynamic loader from `DT_PREINIT_ARRAY` (glibc), through
/// `dfp_preinit_entry`, after relocation and before any library constructor runs.
pub extern "C" fn dfp_preinit(_argc: i32, _argv: *const *const u8, _envp: *const *const u8) {
    ensure_init(contract());
}

/// Makes sure `init` ran once; returns whether the runtime is ready.
pub(crate) fn ensure_init(c: &Contract) -> bool {
    let mut cur = INIT.load(Ordering::Acquire);
    loop {
        if cur == READY {
            return true;
        }
        let pid = sys::getpid();
        if cur == 0 || cur >> 1 != pid {
            // Not started, or started by a thread of the process we were forked
            // from, which does not exist here: run start-up ourselves.
            match INIT.compare_exchange(cur, pid << 1 | 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    init(c);
                    INIT.store(READY, Ordering::Release);
                    return true;
                }
                Err(now) => {
                    cur = now;
                    continue;
                }
            }
        }
        // Another thread of this process is running start-up (only possible when
        // hooks fire before the entry point, from a constructor's thread).
        for _ in 0..10_000 {
            if INIT.load(Ordering::Acquire) == READY {
                return true;
            }
            sys::sched_yield();
        }
        return false;
    }
}

fn init(c: &Contract) {
    if !c.is_current() {
        return;
    }
    START_PID.store(sys::getpid(), Ordering::Relaxed);
    relocate(c);
    init_relocated();
    // The hooks' stacks (until now they used the program's).
    crate::stacks::map_pool();
    // The executable's own call frame tables, for event stacks.
    // SAFETY: the executable's ELF header is at its lowest loaded address
    // (exe_lo is the first PT_LOAD's, which maps offset 0), loaded for good.
    unsafe { crate::unwind::register(c.exe_lo.wrapping_add(bias(c)), bias(c), 0) };
    guard_executable(c);
    install_libraries(c);
    // The system calls the policy lets through everywhere no longer go to
    // the dispatcher (the rewriter planned the sites with the same mask).
    if let Some(p) = policy(c) {
        crate::backstop::narrow_dispatch_mask(&p);
        crate::sink::at_start(&p);
    }
    // Last: from here on a system call from outside the runtime traps.
    crate::backstop::start(c);
}

/// Whether this is the process that ran start-up (not a child of it, which
/// has the same memory or a copy of it).
pub(crate) fn is_start_process() -> bool {
    sys::getpid() == START_PID.load(Ordering::Relaxed)
}

/// Whether the executable has a dynamic loader, libraries and their libc
/// (a static-pie has a dynamic section but none of these).
pub(crate) fn has_loader(c: &Contract) -> bool {
    c.flags & crate::contract::FLAG_INTERP != 0
}

/// `dlmopen(LM_ID_NEWLM, file, mode)` made by the runtime, so that the new
/// namespace's own libc is redirected before the caller gets the handle.
/// Only for a `file` with a `/` and no `$`: the loader resolves any other
/// name from its caller (RUNPATH, `$ORIGIN`), which would then be the
/// executable, not the calling library; those calls go through untouched
/// ([`FORWARD`]), their namespace not redirected. The constructors the call
/// runs find that libc not redirected yet. Out of line: its path buffer must
/// not weigh on every hook's frame (hooks run on 5 KiB stacks too).
#[inline(never)]
pub(crate) fn open_namespace(c: &Contract, p: &PolicyTable, f: &mut HookFrame) -> u64 {
    #[cfg(target_os = "none")]
    {
        use crate::{apis::ApiId, arch::x86_64::RETURN, mem};
        use core::sync::atomic::{AtomicU64, Ordering};
        /// The thread redirecting a namespace (`pid << 32 | tid`), 0 when
        /// none: the stub table grows one namespace at a time. A forked child
        /// inherits the word but not the thread, and takes it over.
        static BUSY: AtomicU64 = AtomicU64::new(0);
        let mut name = [0u8; 4096];
        let len = mem::read(f.rsi, &mut name);
        let Some(end) = name.get(..len).and_then(|n| n.iter().position(|&b| b == 0)) else { return FORWARD };
        let file = name.get(..end).unwrap_or(&[]);
        if !file.contains(&b'/') || file.contains(&b'$') {
            return FORWARD;
        }
        let real = crate::symbols::real_of_api(ApiId::dlmopen).unwrap_or(f.r11);
        // SAFETY: `real` is libc's dlmopen (or the trampoline that runs its
        // first instructions), called with the caller's own arguments on the
        // caller's stack, as the caller would have.
        let dlmopen: extern "C" fn(i64, u64, i32) -> u64 = unsafe { core::mem::transmute(real as usize) };
        let handle = dlmopen(f.rdi as i64, f.rsi, f.rdx as i32);
        if handle != 0 {
            let me = sys::getpid() << 32 | (sys::gettid() & 0xffff_ffff);
            loop {
                let owner = BUSY.load(Ordering::Acquire);
                let stale = owner != 0 && owner >> 32 != me >> 32;
                if (owner == 0 || stale)
                    && BUSY.compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
                {
                    break;
                }
                core::hint::spin_loop();
            }
            let plans = image(c, c.libplans_vaddr, c.libplans_len);
            let (hook, sys_hook) = (crate::arch::x86_64::hook_addr(), crate::arch::x86_64::sys_hook_addr());
            // SAFETY: `handle` is what dlmopen has just returned; the
            // namespace stays open (nothing here closes it).
            unsafe { crate::symbols::install_namespace(handle, p, hook, plans, sys_hook) };
            BUSY.store(0, Ordering::Release);
        }
        f.rax = handle;
        RETURN
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (c, p, f);
        FORWARD
    }
}

/// What of the executable the hooks rely on (see `guard`): its read-only
/// segments and RELRO, and the runtime's own segment.
#[inline(never)]
fn guard_executable(c: &Contract) {
    let b = bias(c);
    // SAFETY: the executable's ELF header is at its lowest loaded address
    // (exe_lo is the first PT_LOAD's, which maps offset 0), loaded for good.
    unsafe { crate::guard::protect_object(c.exe_lo.wrapping_add(b), b, crate::guard::PINNED) };
    #[cfg(target_os = "none")]
    {
        let (lo, hi) = (crate::arch::x86_64::rx_start_addr(), c.exe_hi.wrapping_add(b));
        crate::guard::protect(lo, hi, crate::guard::OURS);
        // Where the policy refuses tampering, the kernel refuses it too,
        // whoever asks (code that jumps into a thunk runs system calls the
        // dispatcher never sees): the runtime's segment is sealed.
        if policy(c).is_some_and(|p| crate::guard::refused(&p)) {
            crate::guard::seal(lo, hi);
        }
    }
}

/// Layer 2: redirect the monitored functions of every loaded library (see
/// `symbols`), and apply the library plans (`libplans`).
#[inline(never)]
fn install_libraries(c: &Contract) {
    #[cfg(target_os = "none")]
    if c.dynamic_vaddr != 0 {
        if let Some(p) = policy(c) {
            let plans = image(c, c.libplans_vaddr, c.libplans_len);
            let arch = (crate::arch::x86_64::hook_addr(), crate::arch::x86_64::sys_hook_addr());
            // A plan not applied in full is said so, in an event.
            let report = &mut |d: &crate::libplans::Degraded| crate::event::degraded(&p, d);
            // SAFETY: the executable's PT_DYNAMIC at run time; start-up runs
            // after the loader has loaded every object it needs.
            unsafe {
                crate::symbols::install(c.dynamic_vaddr.wrapping_add(bias(c)), &p, arch.0, plans, arch.1, report)
            };
        }
    }
    #[cfg(not(target_os = "none"))]
    let _ = c;
}

/// Steps 1 and 2 of start-up. Until they are done the runtime's GOT is
/// zero, and the compiler reaches `memcpy`/`memset` through it: so this
/// function uses volatile single-word accesses only (no slices copied, no
/// arrays initialised), and everything else happens in [`init_relocated`],
/// which is never inlined here.
#[inline(never)]
fn relocate(c: &Contract) {
    let b = bias(c);
    let rw = c.rw_vaddr.wrapping_add(b);
    // 1. The writable image's initial data (its .bss part is already zero).
    let init_bytes = image(c, c.rw_init_vaddr, c.rw_init_len);
    let mut i = 0;
    while i < init_bytes.len() {
        // SAFETY: the rewriter sized the zero-filled writable area to hold the
        // runtime's whole writable image; the data part is rw_init_len bytes,
        // and `i` is in bounds of `init_bytes`.
        unsafe {
            let byte = core::ptr::read_volatile(init_bytes.as_ptr().add(i));
            core::ptr::write_volatile((rw + i as u64) as *mut u8, byte);
        }
        i += 1;
    }
    // 2. Our own R_X86_64_RELATIVE relocations, all inside the writable image.
    // (Read a word at a time: `Relocation::decode` may copy through `memcpy`.)
    const OFFSET: usize = core::mem::offset_of!(Relocation, offset);
    const ADDEND: usize = core::mem::offset_of!(Relocation, addend);
    let rel = image(c, c.rel_vaddr, c.rel_count.saturating_mul(Relocation::SIZE as u64));
    let mut k = 0;
    while k + Relocation::SIZE <= rel.len() {
        // SAFETY: `k + Relocation::SIZE <= rel.len()`; the rewriter checked
        // that every offset lies in the writable image. Unaligned reads: the
        // table is 8-aligned by the rewriter, but nothing here relies on it.
        unsafe {
            let at = rel.as_ptr().add(k);
            let off = core::ptr::read_unaligned(at.add(OFFSET) as *const u64);
            let addend = core::ptr::read_unaligned(at.add(ADDEND) as *const u64);
            core::ptr::write_volatile((rw + off) as *mut u64, rw.wrapping_add(addend));
        }
        k += Relocation::SIZE;
    }
}

/// Start-up after self-relocation: who we are. (A `file:` sink is opened by
/// the first event, so a program that reports nothing holds no descriptor of ours.)
#[inline(never)]
fn init_relocated() {
    let mut buf = [0u8; 512];
    if let Ok(n) = sys::readlink(b"/proc/self/exe\0", &mut buf) {
        // SAFETY: single writer before INIT becomes READY (see RacyBytes).
        let exe = unsafe { &mut *EXE.0.get() };
        let n = n.min(exe.len());
        exe[..n].copy_from_slice(&buf[..n]);
        EXE_LEN.store(n, Ordering::Relaxed);
    }
}

pub(crate) fn exe_path() -> &'static [u8] {
    let init = INIT.load(Ordering::Acquire);
    // Ready, or start-up itself running in this process (its later steps
    // report too): only the thread running start-up gets that far before
    // READY, and it wrote the path itself.
    if init != READY && (init & 1 == 0 || init >> 1 != sys::getpid()) {
        return b"";
    }
    // SAFETY: written once before INIT became READY (see RacyBytes), or
    // earlier by this very thread.
    let exe = unsafe { &*EXE.0.get() };
    exe.get(..EXE_LEN.load(Ordering::Relaxed)).unwrap_or(b"")
}
