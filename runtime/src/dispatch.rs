//! The dispatchers: every hook of every layer ends here. Which API a stub or
//! `syscall` site stands for, what the policy decides, whether the call is
//! part of one already reported ([`crate::nest`]), the event
//! ([`crate::event`]), and a refused call made to fail as the real one fails.

use crate::apis::{syscall_api, ApiId, Class, Failure, Shape};
use crate::arch::x86_64::{HookFrame, SysFrame, FORWARD, RETURN, SYS_RUN, SYS_SKIP};
use crate::contract::{action, hook_kind, r11, Contract, HookEntry, Record};
use crate::event::{after_return, emit, Event, Origin};
use crate::nest::{self, spawn_child};
use crate::start::{bias, contract, ensure_init, has_loader, image, open_namespace, policy};
use crate::{libplans, loader, symbols, sys};
use core::sync::atomic::{AtomicU64, Ordering};

/// `__errno_location`: 0 not looked up yet, 1 not found, else its address.
static ERRNO_FN: AtomicU64 = AtomicU64::new(0);
/// The hook dispatcher, called by `dfp_hook` for every stub that needs the
/// runtime: a PLT/GOT site (the real function is read from its GOT slot) or a
/// function entry (the real function is its trampoline).
pub extern "C" fn dfp_dispatch(f: &mut HookFrame) -> u64 {
    let c = contract();
    // First of all: nothing below may run before self-relocation.
    let ready = ensure_init(c);
    let mut lazy = false;
    let (api_id, kind) = if f.r11 & r11::STUB != 0 {
        // A library's definition, redirected at start-up (`libs`): through
        // its symbol, or through its own entry, detoured in memory.
        let through_entry = f.r11 & r11::ENTRY != 0;
        let Some((api, real)) = symbols::entry(f.r11) else { sys::kill_self() };
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
                match symbols::real_of_stub(bound) {
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
    let nested_kind = if has_loader(c) { libplans::detoured_range(f.ret).is_some() } else { kind == hook_kind::DETOUR };
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
    let origin = Origin::Returns(f.ret);
    emit(&Event { c, p: &p, api, f, origin, layer: kind, done, wanted: d.action, rule: d.rule });
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
    let site = match libplans::lib_site(f.r11) {
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
    let libc_own = libplans::detoured_range(site).is_some();
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
    emit(&Event { c, p: &p, api, f: &call, origin, layer: hook_kind::SYSCALL, done, wanted: d.action, rule: d.rule });
    match done {
        action::DENY => {
            f.rax = (-1i64) as u64; // -EPERM
            SYS_SKIP
        }
        action::KILL => sys::kill_self(),
        _ => SYS_RUN,
    }
}
/// Entry `hook` of the executable's hook table.
fn hook_entry(c: &Contract, hook: u64) -> Option<HookEntry> {
    if hook >= c.hooks_count {
        return None;
    }
    let table = image(c, c.hooks_vaddr, c.hooks_count.checked_mul(HookEntry::SIZE as u64)?);
    HookEntry::decode_at(table, 0, hook as usize)
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
