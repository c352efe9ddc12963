//! The runtime proper: start-up, the hook dispatcher, events and the sink.
//!
//! Rules for this module (it runs inside any thread of any program, before
//! libc is ready, in signal handlers and in vfork children):
//! * no libc, no allocation, no TLS, no locks: state is atomics only;
//! * until `relocate` has copied the writable image and applied relocations,
//!   only zero-initialised statics (`.bss`) may be touched, no code may rely
//!   on a pointer stored in data, and nothing may call `memcpy`/`memset`
//!   (the compiler reaches them through the not yet relocated GOT);
//! * nothing here may call a hooked function; system calls are raw;
//! * an event is built on the stack and written with one `write`.

use crate::apis::{syscall_api, ApiId, Class, Failure, Shape};
use crate::arch::x86_64::{HookFrame, SysFrame, FORWARD, RETURN, SYS_RUN, SYS_SKIP};
use crate::contract::{action, hook_kind, Contract, HookEntry, CONTRACT_VERSION, MAGIC};
use crate::json::Json;
use crate::ptable::{action_name, PolicyTable, Sink};
use crate::{decode, libs, loader, mem, sys};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

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
/// The sink descriptor + 1 (0 = none yet).
static SINK_FD: AtomicI32 = AtomicI32::new(0);
/// Identity of a `file:` sink, to notice when the program closed or replaced it.
static SINK_DEV: AtomicU64 = AtomicU64::new(0);
static SINK_INO: AtomicU64 = AtomicU64::new(0);
/// `__errno_location`: 0 not looked up yet, 1 not found, else its address.
static ERRNO_FN: AtomicU64 = AtomicU64::new(0);
static EXE_LEN: AtomicUsize = AtomicUsize::new(0);
static EXE: RacyBytes<512> = RacyBytes(UnsafeCell::new([0; 512]));

/// Bytes written once by `init` (single writer, before `INIT` becomes READY
/// with Release) and only read after an Acquire load of `INIT` sees READY.
struct RacyBytes<const N: usize>(UnsafeCell<[u8; N]>);
// SAFETY: see the type's comment: the one write happens-before every read.
unsafe impl<const N: usize> Sync for RacyBytes<N> {}

/// Where the contract is at run time.
fn contract_ptr() -> *const Contract {
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
fn contract() -> &'static Contract {
    // SAFETY: the pointer is to DFP_CONTRACT, a valid static in a read-only
    // segment that nothing writes while the program runs.
    unsafe { &*contract_ptr() }
}

/// Run-time address minus link-time address of the patched executable.
fn bias(c: &Contract) -> u64 {
    (contract_ptr() as u64).wrapping_sub(c.self_vaddr)
}

fn valid(c: &Contract) -> bool {
    c.magic == MAGIC && c.version == CONTRACT_VERSION
}

/// Bytes of the running image at link-time address `vaddr`.
fn image(c: &Contract, vaddr: u64, len: u64) -> &'static [u8] {
    if vaddr == 0 || len == 0 || len > (1 << 30) {
        return &[];
    }
    // SAFETY: the rewriter placed `len` bytes at `vaddr` in a loaded, read-only
    // segment of this executable; they live as long as the process.
    unsafe { core::slice::from_raw_parts(vaddr.wrapping_add(bias(c)) as *const u8, len as usize) }
}

fn policy(c: &Contract) -> Option<PolicyTable<'static>> {
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
fn ensure_init(c: &Contract) -> bool {
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
    if !valid(c) {
        return;
    }
    START_PID.store(sys::getpid(), Ordering::Relaxed);
    relocate(c);
    init_relocated();
    // The executable's own call frame tables, for event stacks.
    crate::unwind::register(c.exe_lo.wrapping_add(bias(c)), bias(c), 0);
    install_libraries(c);
}

/// Whether a call at `regs` is made by the child a libc spawn starts, on the
/// stack libc gave it: the call frame information walks from it through
/// libc's frames only, to the end of the stack (glibc's `__spawni_child`
/// under `clone3`). Any other call, in a `vfork` child too, has the
/// program's or a library's frames above it. Where libc has no call frame
/// information (musl), this cannot be told: false.
fn spawn_child(regs: crate::unwind::Regs, at_instruction: bool) -> bool {
    // A child process (a thread of this one could start at a libc function
    // too: `pthread_create(..., system, ...)`).
    if sys::getpid() == START_PID.load(Ordering::Relaxed) {
        return false;
    }
    let Some((lo, hi)) = libs::detoured_range(regs.pc) else { return false };
    let mut frames = [0u64; crate::unwind::MAX_FRAMES];
    let w = crate::unwind::walk_until(regs, at_instruction, &mut frames);
    // Every frame in libc, up to the outermost one.
    w.outermost && frames.get(..w.n).is_some_and(|fr| fr.iter().all(|pc| (lo..hi).contains(pc)))
}

/// Whether the executable has a dynamic loader, libraries and their libc
/// (a static-pie has a dynamic section but none of these).
fn has_loader(c: &Contract) -> bool {
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
fn open_namespace(c: &Contract, p: &PolicyTable, f: &mut HookFrame) -> u64 {
    #[cfg(target_os = "none")]
    {
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
        let real = libs::real_of_api(ApiId::dlmopen).unwrap_or(f.r11);
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
            libs::install_namespace(handle, p, hook, plans, sys_hook);
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

/// Layer 2: redirect the monitored functions of every loaded library (see `libs`).
#[inline(never)]
fn install_libraries(c: &Contract) {
    #[cfg(target_os = "none")]
    if c.dynamic_vaddr != 0 {
        if let Some(p) = policy(c) {
            let plans = image(c, c.libplans_vaddr, c.libplans_len);
            let arch = (crate::arch::x86_64::hook_addr(), crate::arch::x86_64::sys_hook_addr());
            libs::install(c.dynamic_vaddr.wrapping_add(bias(c)), &p, arch.0, plans, arch.1);
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
    let rel = image(c, c.rel_vaddr, c.rel_count.saturating_mul(16));
    let mut k = 0;
    while k + 16 <= rel.len() {
        // SAFETY: `k + 16 <= rel.len()`; the rewriter checked that every
        // offset lies in the writable image. Unaligned reads: the table is
        // 8-aligned by the rewriter, but nothing here relies on it.
        unsafe {
            let at = rel.as_ptr().add(k);
            let off = core::ptr::read_unaligned(at as *const u64);
            let addend = core::ptr::read_unaligned(at.add(8) as *const u64);
            core::ptr::write_volatile((rw + off) as *mut u64, rw.wrapping_add(addend));
        }
        k += 16;
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

fn exe_path() -> &'static [u8] {
    if INIT.load(Ordering::Acquire) != READY {
        return b"";
    }
    // SAFETY: written once before INIT became READY (see RacyBytes).
    let exe = unsafe { &*EXE.0.get() };
    exe.get(..EXE_LEN.load(Ordering::Relaxed)).unwrap_or(b"")
}

/// Lowest descriptor number a `file:` sink is moved to, out of the way of
/// programs that assume small numbers or close 3..N.
const SINK_MIN_FD: i32 = 1000;

#[inline(never)]
fn open_file_sink(path: &[u8]) -> Option<i32> {
    let mut z = [0u8; 1025];
    let dst = z.get_mut(..path.len())?;
    dst.copy_from_slice(path);
    let flags = sys::O_WRONLY | sys::O_APPEND | sys::O_CREAT | sys::O_CLOEXEC;
    let fd = sys::open(z.get(..path.len() + 1)?, flags, 0o600).ok()?;
    match sys::dupfd_cloexec(fd, SINK_MIN_FD) {
        Ok(high) => {
            sys::close(fd);
            Some(high)
        }
        Err(_) => Some(fd),
    }
}

/// The descriptor to write an event to, and whether it is known to be a
/// regular file (which cannot raise SIGPIPE). A `file:` sink is opened by the
/// first event and kept (so events still flow after the program drops
/// privileges or changes root); when the program closed or replaced it
/// (`dup2` over it), it is reopened.
fn sink_fd(p: &PolicyTable) -> Option<(i32, bool)> {
    let fd = SINK_FD.load(Ordering::Acquire) - 1;
    match p.sink() {
        Sink::File(path) => {
            if fd >= 0 {
                if let Ok((dev, ino, regular)) = sys::fstat_id(fd) {
                    if (dev, ino) == (SINK_DEV.load(Ordering::Relaxed), SINK_INO.load(Ordering::Relaxed)) {
                        return Some((fd, regular));
                    }
                }
            }
            let new = open_file_sink(path)?;
            let (dev, ino, regular) = sys::fstat_id(new).unwrap_or((0, 0, false));
            // The identity first: a thread that sees the new descriptor must not
            // find it "replaced" and reopen again. (Threads that reopen at the
            // same time open the same path, so they store the same identity.)
            SINK_DEV.store(dev, Ordering::Relaxed);
            SINK_INO.store(ino, Ordering::Release);
            match SINK_FD.compare_exchange(fd + 1, new + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => Some((new, regular)),
                Err(other) => {
                    // Another thread reopened it first: use theirs.
                    sys::close(new);
                    Some((other - 1, false))
                }
            }
        }
        _ if fd >= 0 => Some((fd, false)),
        Sink::Stderr => Some((2, false)),
        Sink::Fd(n) => Some((n, false)),
    }
}

/// The hook dispatcher, called by `dfp_hook` for every stub that needs the
/// runtime: a PLT/GOT site (the real function is read from its GOT slot) or a
/// function entry (the real function is its trampoline).
pub extern "C" fn dfp_dispatch(f: &mut HookFrame) -> u64 {
    let c = contract();
    // First of all: nothing below may run before self-relocation.
    let ready = ensure_init(c);
    let mut lazy = false;
    let (api_id, kind) = if f.r11 & libs::FLAG != 0 {
        // A library's definition, redirected at start-up (`libs`): through
        // its symbol, or through its own entry, detoured in memory.
        let through_entry = f.r11 & libs::ENTRY != 0;
        let Some((api, real)) = libs::entry(f.r11) else { sys::kill_self() };
        f.r11 = real;
        (api as u16, if through_entry { hook_kind::DETOUR } else { hook_kind::SYMBOL })
    } else {
        let entry = match hook_entry(c, f.r11) {
            Some(e) => e,
            None => sys::kill_self(), // a stub without a table entry: the file is damaged
        };
        let real = entry.vaddr.wrapping_add(bias(c));
        f.r11 = match entry.kind {
            hook_kind::GOT => {
                // SAFETY: the GOT slot is a loaded, aligned u64 of this executable.
                let bound = unsafe { core::ptr::read_volatile(real as *const u64) };
                // Bound after start-up, the slot may hold one of our library
                // stubs: go to the function itself (one event per call).
                match libs::real_of_stub(bound) {
                    Some(function) => function,
                    None => {
                        // Not bound yet (lazy binding: it points back into our
                        // own PLT): the loader's resolver will bind it to our
                        // library stub and jump there, which must not report
                        // this call a second time.
                        let lo = c.exe_lo.wrapping_add(bias(c));
                        let hi = c.exe_hi.wrapping_add(bias(c));
                        lazy = bound >= lo && bound < hi;
                        bound
                    }
                }
            }
            hook_kind::DETOUR => real,
            _ => sys::kill_self(),
        };
        (entry.api, entry.kind)
    };
    if !ready {
        // Start-up is stuck in another thread: let the call through rather
        // than run code that needs the relocated image.
        return FORWARD;
    }
    let api = match ApiId::from_u16(api_id) {
        Some(a) => a,
        None => return FORWARD,
    };
    if let Some(i) = api.shape().prot_exec_filter() {
        if f.arg(i) & 4 == 0 {
            return FORWARD;
        }
    }
    let p = match policy(c) {
        Some(p) => p,
        None => return FORWARD,
    };
    let d = p.decision(api_id);
    // dlmopen into a new link-map namespace loads a second libc there: the
    // runtime makes the call itself and redirects that libc's functions
    // before the caller gets the handle.
    let new_namespace = api == ApiId::dlmopen && f.rdi as i64 == -1 && has_loader(c); // LM_ID_NEWLM
    if d.action == action::ALLOW {
        return if new_namespace { open_namespace(c, &p, f) } else { FORWARD };
    }
    let done = if p.enforce() { d.action } else { action::ALERT };
    // A function entry reached from inside another reported call of this
    // thread (`system` calling `posix_spawn`) was reported with it.
    // The same for a library definition reached through the executable's
    // own hooked call (its GOT slot still lazy: the loader's resolver binds
    // it to our library stub on the way).
    let frame = &f.ret as *const u64 as u64;
    // In a dynamic executable only libc's own calls are nested (a library
    // constructor's calls inside a reported `dlopen` are the library's).
    let nested_kind = if has_loader(c) { libs::detoured_range(f.ret).is_some() } else { kind == hook_kind::DETOUR };
    if nested_kind && done == action::ALERT {
        if let Some((slot, ret)) = nest::inside(sys::gettid(), frame) {
            // The table's entry may be stale (that call returned, and its
            // return address was left on the stack): where the call frame
            // information reaches it, the walk decides.
            let regs = after_return(f, f.ret);
            if crate::unwind::reaches(regs, false, slot, ret) != Some(false) {
                return FORWARD;
            }
        }
    }
    if kind == hook_kind::SYMBOL && nest::take_lazy(sys::gettid(), frame, f.ret) {
        return FORWARD; // this very call was reported by the executable's hook
    }
    // The program a libc spawn starts (`posix_spawn`, `system`, `popen`) is
    // executed by libc in a child, after the spawn's file actions: its event
    // would go to the child's redirected stderr (the program's output would
    // change), and it repeats the parent's. Its `deny` or `kill` still applies.
    if done == action::ALERT && api.class() == Class::Exec && has_loader(c) {
        let regs = after_return(f, f.ret);
        if spawn_child(regs, false) {
            return FORWARD;
        }
    }
    emit(c, &p, api, f, Origin::Returns(f.ret), kind, done, d.action, d.rule);
    let next = match done {
        action::DENY => refuse(c, api, f),
        action::KILL => sys::kill_self(),
        _ => {
            // Whatever layer reported it: libc's own calls inside it (`system`
            // reaching `posix_spawn` through its detoured entry) are part of
            // it. Not those inside dlopen or dlmopen, which run the loaded
            // library's constructors: their calls are the library's.
            if api.class() != Class::Library {
                nest::enter(sys::gettid(), frame, f.ret);
            }
            FORWARD
        }
    };
    if new_namespace && next == FORWARD && done != action::DENY {
        return open_namespace(c, &p, f);
    }
    // Forwarded (allowed, or a refused dlopen handed a missing path) through a
    // lazy slot: the resolver's jump into our library stub is this same call.
    if lazy && next == FORWARD {
        nest::expect_lazy(sys::gettid(), frame, f.ret);
    }
    next
}

/// The dispatcher of rewritten `syscall` instructions, called by
/// `dfp_sys_hook`; returns [`SYS_RUN`] or [`SYS_SKIP`] (then `f.rax` holds
/// the result, `-EPERM`). Registers other than `rax` are never changed.
pub extern "C" fn dfp_sys_dispatch(f: &mut SysFrame) -> u64 {
    // Most system calls through a site whose number is known only at run time
    // (musl's read and write) are not monitored: the fast way out.
    let Some(api) = syscall_api(f.rax) else { return SYS_RUN };
    let c = contract();
    if !ensure_init(c) {
        return SYS_RUN;
    }
    // A library's rewritten syscall, or one of the executable's own.
    let site = match libs::lib_site(f.r11) {
        Some(at) => at,
        None => match hook_entry(c, f.r11) {
            Some(entry) => entry.vaddr.wrapping_add(bias(c)),
            None => sys::kill_self(),
        },
    };
    let call = f.as_call();
    if let Some(i) = api.shape().prot_exec_filter() {
        if call.arg(i) & 4 == 0 {
            return SYS_RUN;
        }
    }
    let Some(p) = policy(c) else { return SYS_RUN };
    let d = p.decision(api as u16);
    if d.action == action::ALLOW {
        return SYS_RUN;
    }
    let done = if p.enforce() { d.action } else { action::ALERT };
    // The system call a reported function makes (`execve` inside `execve`,
    // `clone` inside `posix_spawn`) was reported with it: in a static
    // executable, or libc's own (in a dynamic one, a library constructor's
    // raw system call inside a reported `dlopen` is the library's).
    let libc_own = libs::detoured_range(site).is_some();
    let nestable = !has_loader(c) || libc_own;
    if nestable && done == action::ALERT {
        if let Some((slot, ret)) = nest::inside(sys::gettid(), crate::arch::x86_64::stack_pointer()) {
            // As for function calls: the call frame information (glibc)
            // tells a stale entry from a call really in progress.
            let regs = crate::unwind::Regs { pc: site, sp: f.program_sp(), rbp: f.rbp };
            let stale = libc_own && crate::unwind::reaches(regs, true, slot, ret) == Some(false);
            if !stale {
                return SYS_RUN;
            }
        }
    }
    // The execve of a libc spawn's child (see dfp_dispatch).
    if done == action::ALERT && api.class() == Class::Exec && has_loader(c) && libc_own {
        let regs = crate::unwind::Regs { pc: site, sp: f.program_sp(), rbp: f.rbp };
        if spawn_child(regs, true) {
            return SYS_RUN;
        }
    }
    let origin = Origin::At(site, f.program_sp(), f.rbp);
    emit(c, &p, api, &call, origin, hook_kind::SYSCALL, done, d.action, d.rule);
    match done {
        action::DENY => {
            f.rax = (-1i64) as u64; // -EPERM
            SYS_SKIP
        }
        action::KILL => sys::kill_self(),
        _ => SYS_RUN,
    }
}

/// Which reported call each thread is inside, so the calls it makes on the
/// way (libc's internal `posix_spawn` in `system`, the `syscall` instruction
/// in `execve`) are not reported a second time. There is no TLS to keep this
/// in: a small table indexed by thread id holds, per thread, the stack address
/// of the return address of its last reported function-entry call and that
/// return address. A later hook of the same thread is inside that call while
/// its stack pointer is below that address and the return address is still
/// there (once the call returns, the caller's next call overwrites it). A
/// signal handler running on the same stack during the call counts as inside
/// it (only its `alert` events are dropped: `deny` and `kill` always apply).
/// Slots are shared by thread ids equal modulo the table size; a collision only
/// costs a duplicate event.
mod nest {
    use crate::mem;
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    struct Slot {
        /// Even: stable; odd: being written.
        seq: AtomicU32,
        tid: AtomicU32,
        frame: AtomicU64,
        ret: AtomicU64,
    }

    const SLOTS: usize = 64;
    static TABLE: [Slot; SLOTS] = [const {
        Slot { seq: AtomicU32::new(0), tid: AtomicU32::new(0), frame: AtomicU64::new(0), ret: AtomicU64::new(0) }
    }; SLOTS];

    /// One pending lazy-binding call per thread (see `expect_lazy`). A thread
    /// only ever touches its own entry (colliding ids aside: then a duplicate
    /// event at worst).
    static LAZY: [Slot; SLOTS] = [const {
        Slot { seq: AtomicU32::new(0), tid: AtomicU32::new(0), frame: AtomicU64::new(0), ret: AtomicU64::new(0) }
    }; SLOTS];

    fn slot(tid: u64) -> &'static Slot {
        &TABLE[(tid as usize) % SLOTS]
    }

    pub fn enter(tid: u64, frame: u64, ret: u64) {
        let s = slot(tid);
        let seq = s.seq.load(Ordering::Relaxed);
        if seq & 1 != 0 || s.seq.compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return; // another thread with a colliding id is writing: keep theirs
        }
        s.tid.store(tid as u32, Ordering::Relaxed);
        s.frame.store(frame, Ordering::Relaxed);
        s.ret.store(ret, Ordering::Relaxed);
        s.seq.store(seq + 2, Ordering::Release);
    }

    /// The executable's hooked call at `frame` is going through the lazy
    /// binding resolver, which will enter our library stub for it next.
    pub fn expect_lazy(tid: u64, frame: u64, ret: u64) {
        let s = &LAZY[(tid as usize) % SLOTS];
        s.tid.store(0, Ordering::Relaxed);
        s.frame.store(frame, Ordering::Relaxed);
        s.ret.store(ret, Ordering::Relaxed);
        s.tid.store(tid as u32, Ordering::Release);
    }

    /// Whether this library-stub call is that one (and forget it).
    pub fn take_lazy(tid: u64, frame: u64, ret: u64) -> bool {
        let s = &LAZY[(tid as usize) % SLOTS];
        if s.tid.load(Ordering::Acquire) != tid as u32 {
            return false;
        }
        let hit = s.frame.load(Ordering::Relaxed) == frame && s.ret.load(Ordering::Relaxed) == ret;
        if hit {
            let _ = s.tid.compare_exchange(tid as u32, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        hit
    }

    /// The reported call of this thread that a call at `sp` may be inside:
    /// its return address slot and return address, still on the stack.
    pub fn inside(tid: u64, sp: u64) -> Option<(u64, u64)> {
        let s = slot(tid);
        let seq = s.seq.load(Ordering::Acquire);
        let (t, frame, ret) =
            (s.tid.load(Ordering::Relaxed), s.frame.load(Ordering::Relaxed), s.ret.load(Ordering::Relaxed));
        core::sync::atomic::fence(Ordering::Acquire);
        if seq & 1 != 0 || s.seq.load(Ordering::Relaxed) != seq || t != tid as u32 || sp >= frame {
            return None;
        }
        // Read through the safe path: the thread may have left that stack.
        (mem::read_u64(frame) == Some(ret)).then_some((frame, ret))
    }
}

fn hook_entry(c: &Contract, hook: u64) -> Option<HookEntry> {
    if hook >= c.hooks_count {
        return None;
    }
    let bytes = image(c, c.hooks_vaddr.checked_add(hook * 16)?, 16);
    let vaddr = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let api = u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?);
    let kind = *bytes.get(10)?;
    Some(HookEntry { vaddr, api, kind, _pad: [0; 5] })
}

/// The library path a refused `dlopen` is given instead: the real `dlopen`
/// then fails as it does for any missing library, so `dlerror()` has a
/// message ("/dfpatch: dlopen denied by policy: cannot open shared object
/// file: ...") for programs that print it.
static DENIED_LIBRARY: &[u8] = b"/dfpatch: dlopen denied by policy\0";

/// Makes the refused call fail the way the real function fails; returns
/// what `dfp_hook` must do ([`RETURN`] the value set, or [`FORWARD`]).
fn refuse(c: &Contract, api: ApiId, f: &mut HookFrame) -> u64 {
    const EPERM: i32 = 1;
    match api.shape() {
        Shape::Dlopen => {
            f.rdi = DENIED_LIBRARY.as_ptr() as u64;
            return FORWARD;
        }
        Shape::Dlmopen => {
            f.rsi = DENIED_LIBRARY.as_ptr() as u64;
            return FORWARD;
        }
        _ => {}
    }
    match api.shape().failure() {
        Failure::ErrorNumber => f.rax = EPERM as u64,
        Failure::MinusOneErrno => {
            set_errno(c, EPERM);
            f.rax = u64::MAX;
        }
        Failure::NullErrno => {
            set_errno(c, EPERM);
            f.rax = 0;
        }
    }
    RETURN
}

fn set_errno(c: &Contract, value: i32) {
    if c.dynamic_vaddr == 0 && c.errno_fn_vaddr == 0 {
        // A static executable whose errno is a TLS variable (glibc without
        // `__errno_location`): the slot is at a fixed offset from the thread
        // pointer, once libc has set one up.
        let tp = crate::arch::x86_64::thread_pointer();
        if tp != 0 && c.errno_tpoff != 0 {
            // SAFETY: the rewriter computed the offset of this executable's
            // TLS `errno` from the thread pointer (variant II layout, the
            // executable's TLS block right below it); tp is this thread's.
            unsafe { core::ptr::write_volatile(tp.wrapping_add(c.errno_tpoff as u64) as *mut i32, value) };
        }
        return;
    }
    let mut fp = ERRNO_FN.load(Ordering::Relaxed);
    if fp == 0 {
        fp = if c.errno_fn_vaddr != 0 {
            c.errno_fn_vaddr.wrapping_add(bias(c))
        } else {
            loader::lookup(c.dynamic_vaddr.wrapping_add(bias(c)), b"__errno_location").unwrap_or(1)
        };
        ERRNO_FN.store(fp, Ordering::Relaxed);
    }
    // A static libc's `__errno_location` reads the thread pointer: not before it is set.
    if fp > 1 && (c.dynamic_vaddr != 0 || crate::arch::x86_64::thread_pointer() != 0) {
        // SAFETY: `fp` is the address of libc's `int *__errno_location(void)`,
        // found in the loaded libc's dynamic symbol table, or in a static
        // executable's symbol table by the rewriter; it returns the calling
        // thread's errno slot.
        unsafe {
            let f: extern "C" fn() -> *mut i32 = core::mem::transmute(fp as usize);
            let slot = f();
            if !slot.is_null() {
                *slot = value;
            }
        }
    }
}

/// Builds one event on the stack and writes it with one `write`. On an
/// alternate signal stack with little room left (they are often 8 KiB), the
/// event is built in a smaller buffer and cut to fit, and with under 4 KiB
/// left it is not written at all: overflowing the program's signal stack
/// would crash it. (The policy is still applied.)
/// Where the intercepted call was made.
#[derive(Clone, Copy)]
enum Origin {
    /// A call instruction that returns here.
    Returns(u64),
    /// This instruction (a `syscall`), with the program's stack pointer and
    /// frame pointer there.
    At(u64, u64, u64),
}

#[allow(clippy::too_many_arguments)]
fn emit(
    c: &Contract,
    p: &PolicyTable,
    api: ApiId,
    f: &HookFrame,
    origin: Origin,
    layer: u8,
    done: u8,
    wanted: u8,
    rule: u16,
) {
    let room = sys::altstack_room();
    if room.is_some_and(|r| r < 4096) {
        return;
    }
    let Some((fd, regular)) = sink_fd(p) else { return };
    let event = Event { c, p, api, f, origin, layer, done, wanted, rule };
    // A buffer from the pool keeps the stack small: hooks also run on small
    // stacks nobody can measure (musl's posix_spawn child has about 5 KiB).
    if let Some(mut slot) = pool::take() {
        event.write_to(slot.bytes(), fd, regular);
        return;
    }
    match room {
        Some(r) if r < 16 * 1024 => event.write::<1024>(fd, regular),
        _ => event.write::<4096>(fd, regular),
    }
}

/// Event buffers outside the stack, taken and given back with atomics. They
/// live in one anonymous mapping made by the first event (so a program that
/// reports nothing maps nothing, and the file carries no 64 KiB of zeros).
mod pool {
    use crate::sys;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const SLOTS: usize = 16;
    const SIZE: usize = 4096;
    const FAILED: u64 = 1;
    static BUSY: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
    /// The mapping: 0 not made yet, FAILED, else its address.
    static BASE: AtomicU64 = AtomicU64::new(0);

    pub struct Slot {
        index: usize,
        base: u64,
    }

    impl Slot {
        pub fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the mapping is SLOTS * SIZE bytes and never unmapped; this
            // Slot holds BUSY[index], so nobody else uses this part of it, and
            // the `&mut self` borrow makes the slice unique.
            unsafe { core::slice::from_raw_parts_mut((self.base + (self.index * SIZE) as u64) as *mut u8, SIZE) }
        }
    }

    impl Drop for Slot {
        fn drop(&mut self) {
            BUSY[self.index].store(false, Ordering::Release);
        }
    }

    fn base() -> Option<u64> {
        match BASE.load(Ordering::Acquire) {
            FAILED => return None,
            0 => {}
            b => return Some(b),
        }
        let len = (SLOTS * SIZE) as u64;
        let Some(mine) = sys::map_anonymous(len) else {
            let _ = BASE.compare_exchange(0, FAILED, Ordering::AcqRel, Ordering::Acquire);
            return None;
        };
        match BASE.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(mine),
            Err(theirs) => {
                // SAFETY: our mapping was never published: nobody else uses it.
                unsafe { sys::unmap(mine, len) };
                (theirs != FAILED).then_some(theirs)
            }
        }
    }

    pub fn take() -> Option<Slot> {
        let base = base()?;
        (0..SLOTS)
            .find(|&i| BUSY[i].compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok())
            .map(|index| Slot { index, base })
    }
}

struct Event<'a> {
    c: &'a Contract,
    p: &'a PolicyTable<'a>,
    api: ApiId,
    f: &'a HookFrame,
    origin: Origin,
    layer: u8,
    done: u8,
    wanted: u8,
    rule: u16,
}

impl Event<'_> {
    /// At most N bytes (4096 is PIPE_BUF: one write to a pipe stays whole).
    #[inline(never)]
    fn write<const N: usize>(&self, fd: i32, regular: bool) {
        let mut buf = [0u8; N];
        self.write_to(&mut buf, fd, regular);
    }

    fn write_to(&self, buf: &mut [u8], fd: i32, regular: bool) {
        let mut j = Json::new(buf);
        if !j.open(b'{') {
            return;
        }
        j.key(true, b"time");
        let (s, ns) = sys::realtime();
        let mut t = [0u8; 30];
        crate::time::rfc3339(s, ns, &mut t);
        j.string(&t);
        j.key(false, b"pid");
        j.u64(sys::getpid());
        j.key(false, b"tid");
        j.u64(sys::gettid());
        j.key(false, b"exe");
        j.string(exe_path());
        j.key(false, b"api");
        j.string(self.api.name().as_bytes());
        j.key(false, b"class");
        j.string(self.api.class().name().as_bytes());
        j.key(false, b"action");
        j.string(action_name(self.done).as_bytes());
        if self.wanted != self.done {
            j.key(false, b"policy_action");
            j.string(action_name(self.wanted).as_bytes());
        }
        j.key(false, b"rule");
        j.string(self.p.rule_name(self.rule));
        j.key(false, b"mode");
        j.string(self.p.mode_name().as_bytes());
        j.key(false, b"layer");
        j.string(match self.layer {
            hook_kind::GOT => b"plt",
            hook_kind::DETOUR => b"entry",
            hook_kind::SYMBOL => b"symbol",
            _ => b"syscall",
        });
        caller(self.c, &mut j, self.origin, self.f);
        stack(&mut j, self.origin, self.f);
        decode::args(&mut j, self.api.shape(), self.f);
        j.finish();
        // A regular file cannot raise SIGPIPE: skip the two signal-mask calls.
        let _ = if regular { sys::write_all_once(fd, j.bytes()) } else { sys::write_nosigpipe(fd, j.bytes()) };
    }
}

/// Start of the call instruction that returns to `ret`: our `addr32 call
/// rel32` or `call *disp(%rip)` (6 bytes, checked first: the 5-byte test
/// would also match the last five of them), then `call rel32` (5 bytes);
/// otherwise the return address itself.
fn call_site(ret: u64) -> u64 {
    let mut b = [0u8; 6];
    if mem::read(ret.wrapping_sub(6), &mut b) != 6 {
        return ret;
    }
    if (b[0] == 0x67 && b[1] == 0xe8) || (b[0] == 0xff && b[1] == 0x15) {
        ret - 6
    } else if b[1] == 0xe8 {
        ret - 5
    } else {
        ret
    }
}

/// The registers of the intercepted call's caller once the call returns to
/// `ret`: where a stack walk starts.
fn after_return(f: &HookFrame, ret: u64) -> crate::unwind::Regs {
    crate::unwind::Regs { pc: ret, sp: f.stack_arg_addr(0), rbp: f.rbp }
}

/// `"stack":[{"addr":..., "module":..., "offset":...}, ...]`: the return
/// addresses above the call (see `unwind`), the caller's own first.
fn stack(j: &mut Json, origin: Origin, f: &HookFrame) {
    let (regs, at_instruction) = match origin {
        Origin::Returns(ret) => (after_return(f, ret), false),
        Origin::At(at, sp, rbp) => (crate::unwind::Regs { pc: at, sp, rbp }, true),
    };
    let mut frames = [0u64; crate::unwind::MAX_FRAMES];
    let n = crate::unwind::walk(regs, at_instruction, &mut frames);
    j.key(false, b"stack");
    let opened = j.open(b'[');
    for (i, &pc) in frames.iter().take(n).enumerate() {
        if !j.element(i == 0) {
            break;
        }
        let inner = j.open(b'{');
        j.key(true, b"addr");
        j.hex(pc);
        if let Some((base, name, _)) = crate::unwind::module_of(pc) {
            j.key(false, b"module");
            if name == 0 {
                j.string(exe_path());
            } else {
                let mut path = [0u8; 256];
                j.string(c_string(name, &mut path));
            }
            j.key(false, b"offset");
            j.hex(pc.wrapping_sub(base));
        } else {
            // A module loaded after start-up (dlopen): named from
            // /proc/self/maps; the walk stops at it.
            let mut path = [0u8; 256];
            if let Some((len, off)) = loader::module_of(pc, &mut path) {
                j.key(false, b"module");
                j.string(path.get(..len).unwrap_or(&[]));
                j.key(false, b"offset");
                j.hex(off);
            }
        }
        j.close(b'}', inner);
    }
    j.close(b']', opened);
}

/// Whether `pc` lies in a file mapping (a library loaded after start-up),
/// from /proc/self/maps. Out of line, for its buffer.
#[inline(never)]
fn is_mapped_code(pc: u64) -> bool {
    let mut path = [0u8; 256];
    loader::module_of(pc, &mut path).is_some_and(|(n, _)| path.get(..n).is_some_and(|p| p.first() == Some(&b'/')))
}

/// `"module"` (continued) and `"offset"` of an address outside the
/// executable, from /proc/self/maps. Out of line: its buffers take 1.6 KiB
/// of stack, which callers in the executable itself never need.
#[inline(never)]
fn other_module(j: &mut Json, site: u64) {
    let mut path = [0u8; 256];
    // A library loaded at start-up: named as the loader has it (as in `stack`).
    if let Some((base, name, _)) = crate::unwind::module_of(site).filter(|m| m.1 != 0) {
        j.string(c_string(name, &mut path));
        j.key(false, b"offset");
        j.hex(site.wrapping_sub(base));
        return;
    }
    match loader::module_of(site, &mut path) {
        Some((n, off)) => {
            j.string(path.get(..n).unwrap_or(&[]));
            j.key(false, b"offset");
            j.hex(off);
        }
        None => {
            j.null();
            j.key(false, b"offset");
            j.hex(site);
        }
    }
}

/// `"symbol":"name"`: the exported function holding `pc`, when there is one.
fn symbol(j: &mut Json, pc: u64) {
    let Some(name) = crate::unwind::symbol_of(pc) else { return };
    let mut buf = [0u8; 128];
    let name = c_string(name, &mut buf);
    if !name.is_empty() {
        j.key(false, b"symbol");
        j.string(name);
    }
}

/// The NUL-terminated string at `addr`, read safely into `buf` (cut at its
/// length when longer).
fn c_string(addr: u64, buf: &mut [u8]) -> &[u8] {
    let len = mem::read(addr, buf);
    let end = buf.get(..len).and_then(|b| b.iter().position(|&c| c == 0)).unwrap_or(len);
    buf.get(..end).unwrap_or(&[])
}

/// `"caller":{"module":..., "offset":..., "return_address":...}` (no
/// return address for a `syscall` instruction). A call made by libc itself
/// (its internal path: `wordexp` or `popen` reaching `posix_spawn`) names
/// the first caller outside libc, found on the stack, and libc's own call
/// as `"via"`.
fn caller(c: &Contract, j: &mut Json, origin: Origin, f: &HookFrame) {
    let mut origin = origin;
    let mut via = None;
    let mut scanned = false;
    if libs::any_detoured() {
        let (regs, at_instruction, site) = match origin {
            Origin::Returns(ret) => (after_return(f, ret), false, call_site(ret)),
            Origin::At(at, sp, rbp) => (crate::unwind::Regs { pc: at, sp, rbp }, true, at),
        };
        if let Some((lo, hi)) = libs::detoured_range(regs.pc) {
            let mut frames = [0u64; crate::unwind::MAX_FRAMES];
            let w = crate::unwind::walk_until(regs, at_instruction, &mut frames);
            let (n, stopped_at) = (w.n, w.stopped_at);
            let walked = frames.get(..n).and_then(|fr| fr.iter().find(|&&pc| !(lo..hi).contains(&pc))).copied();
            // The walk left libc into a library loaded later (dlopen): take
            // that return address when /proc/self/maps says it is a file's code.
            let walked = walked.or_else(|| stopped_at.filter(|&pc| is_mapped_code(pc)));
            // No call frame information to leave libc by (musl): scan. Not
            // for a libc copy in a dlmopen namespace (not registered: its
            // frames are not walked, and nothing above it is known).
            let registered = crate::unwind::module_of(regs.pc).is_some();
            let found = walked.or_else(|| {
                scanned = registered;
                registered.then(|| crate::unwind::scan_for_caller(regs.sp, lo, hi)).flatten()
            });
            if let Some(outside) = found {
                via = Some(site);
                origin = Origin::Returns(outside);
            }
        }
    }
    let site = match origin {
        Origin::Returns(ret) => call_site(ret),
        Origin::At(at, _, _) => at,
    };
    j.key(false, b"caller");
    let opened = j.open(b'{');
    let link = site.wrapping_sub(bias(c));
    j.key(true, b"module");
    if link >= c.exe_lo && link < c.exe_hi {
        j.string(exe_path());
        j.key(false, b"offset");
        j.hex(link);
    } else {
        other_module(j, site);
    }
    symbol(j, site);
    if let Origin::Returns(ret) = origin {
        j.key(false, b"return_address");
        j.hex(ret);
    }
    if via.is_some() && scanned {
        // Found by scanning the stack, not by unwinding: a good guess.
        j.key(false, b"scanned");
        j.bool(true);
    }
    if let Some(site) = via {
        j.key(false, b"via");
        let inner = j.open(b'{');
        j.key(true, b"module");
        other_module(j, site);
        j.close(b'}', inner);
    }
    j.close(b'}', opened);
}
