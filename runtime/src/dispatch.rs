//! The dispatchers: every hook of every layer ends here. Which API a stub or
//! `syscall` site stands for, what the policy decides, whether the call is
//! part of one already reported ([`crate::nest`]), the event
//! ([`crate::event`]), and a refused call made to fail as the real one fails.

use crate::apis::{syscall_api, ApiId, Class, Failure, Shape};
use crate::arch::x86_64::{HookFrame, SysFrame, FORWARD, RETURN, SYS_RUN, SYS_SKIP};
use crate::contract::{action, hook_kind, r11, ApiDecision, Contract, HookEntry, Record};
use crate::event::{after_return, emit, Event, Origin};
use crate::nest::{self, spawn_child};
use crate::start::{bias, contract, ensure_init, has_loader, image, open_namespace, policy};
use crate::{filter, guard, libplans, loader, stacks, symbols, sys};
use core::sync::atomic::{AtomicU64, Ordering};

/// `__errno_location`: 0 not looked up yet, 1 not found, else its address.
static ERRNO_FN: AtomicU64 = AtomicU64::new(0);
/// `dfp_hook`'s way into the runtime, on a stack of the runtime's when one
/// was free (see `stacks`), else on the program's.
pub extern "C" fn dfp_dispatch_entry(f: &mut HookFrame) -> u64 {
    stacks::guard(f.busy);
    dfp_dispatch(f)
}

/// `dfp_sys_hook`'s way into the runtime, as [`dfp_dispatch_entry`].
pub extern "C" fn dfp_sys_dispatch_entry(f: &mut SysFrame) -> u64 {
    // The many calls of `munmap`, `madvise`, `mmap`, `mprotect` that touch
    // nothing of ours and are not after executable memory: out at once
    // (see `guard`).
    // So are the calls of the APIs that are only sometimes of interest
    // (`send` without an address, a UDP socket) that the registers show
    // are not (see `filter`).
    if let Some(api) = syscall_api(f.rax) {
        let a = [f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9];
        let quiet = api.class() == Class::Tamper || filter::quick(api, &a) == Some(false);
        // (The `prctl` the backstop virtualises is made by the dispatcher.)
        let virtualised = api == ApiId::prctl && crate::backstop::virtualises_prctl(a[0]);
        if quiet && !virtualised && !guard::may_tamper(api, a) {
            return SYS_RUN;
        }
    }
    stacks::guard(f.busy);
    dfp_sys_dispatch(f)
}

/// The hook dispatcher, called by `dfp_hook` for every stub that needs the
/// runtime: a PLT/GOT site (the real function is read from its GOT slot) or a
/// function entry (the real function is its trampoline).
pub fn dfp_dispatch(f: &mut HookFrame) -> u64 {
    let c = contract();
    // First of all: nothing below may run before self-relocation.
    let ready = ensure_init(c);
    let mut lazy = false;
    // The hook this call came through, as its stub named it (see `nest::tail_call`).
    let tag = f.r11 as u32;
    let (api_id, kind) = if f.r11 & r11::STUB != 0 {
        // A library's definition, redirected at start-up (`symbols`): through
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
    if !filter::of_interest(api, &f.args()) {
        return FORWARD;
    }
    let p = match policy(c) {
        Some(p) => p,
        None => return FORWARD,
    };
    let mut d = p.decision(api_id);
    // An exec that is part of an exec by name or of a spawn (see `outer_exec`).
    let mut ruled_as = api;
    let mut origin = Origin::Returns(f.ret);
    if let Some(o) = outer_exec(c, api, f.ret, exec_argv(api, f), sys::gettid(), f.sp) {
        // (musl's `posix_spawnp` is its `posix_spawn` with a `PATH` search
        // in the child: that spawn is the search's, its `execve` calls decide.)
        if o.wanted == action::ALLOW || api.shape() == Shape::Spawn {
            return FORWARD;
        }
        (ruled_as, origin) = (o.api, Origin::Returns(o.ret));
        d = p.decision(o.api as u16);
    }
    // Rules with matchers: the call's facts decide (see `rules`).
    if d.chained != 0 {
        match decide_by_facts(c, &p, api, ruled_as, f, origin) {
            ByFacts::Decided(by) => d = by,
            ByFacts::NoProgram => return refuse(c, api, f, ENOENT),
            ByFacts::Searched => {
                enter_decided(api, f, tag, nest::SEARCHED);
                return FORWARD;
            }
        }
        // A spawn a rule lets through: the exec its child makes is part of
        // it (that child has neither the spawn's caller nor its command).
        if d.action == action::ALLOW {
            enter_decided(api, f, tag, action::ALLOW);
        }
    }
    // dlmopen into a new link-map namespace loads a second libc there: the
    // runtime makes the call itself and redirects that libc's functions
    // before the caller gets the handle.
    let new_namespace = api == ApiId::dlmopen && f.rdi as i64 == -1 && has_loader(c); // LM_ID_NEWLM
    if d.action == action::ALLOW {
        return if new_namespace { open_namespace(c, &p, f) } else { FORWARD };
    }
    let done = if p.enforce() { d.action } else { action::ALERT };
    let frame = f.sp;
    let tid = sys::gettid();
    // A library definition reached through the executable's own hooked call
    // (its GOT slot still lazy: the loader's resolver binds it to our library
    // stub on the way) is that call.
    if kind == hook_kind::SYMBOL && nest::take_lazy(tid, frame, f.ret) {
        nest::sent_on(tid, frame, f.r11);
        return FORWARD; // this very call was reported by the executable's hook
    }
    // Part of a call in progress (see `nest`): no event, no decision of its
    // own. `nest::folds` says which: a call the policy would let through
    // with an alert; in monitor mode, any call inside one enforce mode
    // would refuse; any exec or process call of a spawn a rule let through.
    // Otherwise a `deny` or `kill` applies (and is reported), so a stale
    // nesting entry costs a lost alert, not a refusal (a spawn's entry
    // aside: its frame and return address must still be in place).
    if part_of_reported(c, api, kind, tag, tid, frame, f, d.action) {
        return FORWARD;
    }
    // The program a libc spawn starts (`posix_spawn`, `system`, `popen`) is
    // executed by libc in a child, after the spawn's file actions: its event
    // would go to the child's redirected stderr (the program's output would
    // change), and it repeats the parent's. A reported spawn's child was
    // folded into it above; this is the child of one the policy let through
    // unreported (what the policy would refuse is decided, in monitor mode
    // too; and a step of a search by name is decided as that API).
    if (d.action == action::ALERT || !file_sink(&p)) && ruled_as == api && api.class() == Class::Exec && has_loader(c) {
        let regs = after_return(f, f.ret);
        if spawn_child(regs, false) {
            return FORWARD;
        }
    }
    let origin = Origin::Returns(f.ret);
    emit(&Event { c, p: &p, api, f, origin, layer: kind, done, wanted: d.action, rule: d.rule });
    let next = match done {
        action::DENY => refuse(c, api, f, EPERM),
        action::KILL => sys::kill_self(),
        _ => {
            // Whatever layer reported it: libc's own calls inside it (`system`
            // reaching `posix_spawn` through its detoured entry) are part of
            // it. Not those inside dlopen or dlmopen, which run the loaded
            // library's constructors: their calls are the library's.
            if api.class() != Class::Library {
                let argv = if api.shape() == Shape::Spawn { f.arg(4) } else { 0 };
                let pid = sys::getpid() as u32;
                let wanted = d.action;
                nest::enter(nest::Outer {
                    pid,
                    tid: tid as u32,
                    frame,
                    ret: f.ret,
                    tag,
                    api,
                    argv,
                    real: f.r11,
                    wanted,
                });
                nest::broadcasting(api, tid, [f.arg(0), f.arg(1), f.arg(2)]);
            }
            FORWARD
        }
    };
    // Forwarded (allowed, or a refused dlopen handed a missing path) through a
    // lazy slot: the resolver's jump into our library stub is this same call
    // (also when the runtime makes a `dlmopen` itself, just below).
    if lazy && next == FORWARD {
        nest::expect_lazy(tid, frame, f.ret);
    }
    if new_namespace && next == FORWARD && done != action::DENY {
        return open_namespace(c, &p, f);
    }
    next
}

/// Whether the call of `api` (through hook `tag`, layer `kind`, by thread
/// `tid`, its return address at `frame`) is part of a reported call in
/// progress: a tail call of it, a call made inside it, or its spawn's child
/// running the program (see `nest`).
/// Out of line: its checks take some 2 KiB of stack, which the dispatcher's
/// own frame must not carry on every path (a refused call in a spawn's child
/// runs on libc's small child stack, inside the parent's frame: inlined, it
/// overran musl's and crashed the parent; `tests/e2e/one_event.rs` runs
/// that case under its fourth policy).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn part_of_reported(
    c: &Contract,
    api: ApiId,
    kind: u8,
    tag: u32,
    tid: u64,
    frame: u64,
    f: &HookFrame,
    wanted: u8,
) -> bool {
    let part = |o: &nest::Outer| nest::covers(o.api, api) && nest::folds(o, wanted, api);
    if nest::tail_call(tid, frame, f.ret, tag).is_some_and(|o| part(&o)) {
        return true;
    }
    // In a dynamic executable only libc's own calls are inside (a library
    // constructor's calls inside a reported `dlopen` are the library's).
    let nested_kind = if has_loader(c) { libplans::detoured_range(f.ret).is_some() } else { kind == hook_kind::DETOUR };
    if nested_kind {
        if let Some(o) = nest::inside(tid, frame).filter(part) {
            // The table's entry may be stale (that call returned, and its
            // return address was left on the stack): where the call frame
            // information reaches it, the walk decides.
            let regs = after_return(f, f.ret);
            if crate::unwind::reaches(regs, false, o.frame, o.ret) != Some(false) {
                return true;
            }
        }
    }
    // A spawn's child runs its program from libc's own code (in a static
    // executable, that cannot be told: any code).
    let libc_own = !has_loader(c) || libplans::detoured_range(f.ret).is_some();
    if api.class() == Class::Exec && libc_own {
        let argv = match api.shape() {
            Shape::Execv | Shape::Fexecve => f.rsi,
            _ => 0,
        };
        if nest::spawned_by(argv).is_some_and(|o| nest::folds(&o, wanted, api)) {
            return true;
        }
    }
    false
}

/// The dispatcher of rewritten `syscall` instructions, called by
/// `dfp_sys_hook`; returns [`SYS_RUN`] or [`SYS_SKIP`] (then `f.rax` holds
/// the result, `-EPERM`). Registers other than `rax` are never changed.
pub fn dfp_sys_dispatch(f: &mut SysFrame) -> u64 {
    // What the backstop virtualises is made here (a rewritten site of
    // libc's `pthread_sigmask`, of its `syscall()`).
    if let Some(r) = crate::backstop::virtualised(f.rax, [f.rdi, f.rsi, f.rdx, f.r10]) {
        f.rax = r as u64;
        return SYS_SKIP;
    }
    let c = contract();
    // Most system calls through a site whose number is known only at run time
    // (musl's read and write) are not monitored: the fast way out.
    let Some(api) = syscall_api(f.rax) else {
        if let Some(r) = ring_register(c, f.rax, [f.rdi, f.rsi, f.rdx, f.r10]) {
            f.rax = r as u64;
            return SYS_SKIP;
        }
        return SYS_RUN;
    };
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
    let sp = f.program_sp();
    // Where the return address into the trampoline is: on the program's
    // stack, below its stack pointer (the frame is on a stack of ours).
    let at = Site { pc: site, sp, rbp: f.rbp, below: f.sp };
    let layer = if crate::backstop::rewritten_site(f.r11) { hook_kind::BACKSTOP } else { hook_kind::SYSCALL };
    let Some(api) = decided_as(api, &call) else { return SYS_RUN };
    match syscall_verdict(c, api, &call, at, layer) {
        Some(result) => {
            f.rax = result as u64;
            SYS_SKIP
        }
        None => SYS_RUN,
    }
}

/// The API a monitored system call (its own API `api`, arguments in
/// `call`) is decided as: its `tamper` API when it would undo a hook (see
/// [`guard`]); None when it is a `tamper` call that would not, and so runs.
pub(crate) fn decided_as(api: ApiId, call: &HookFrame) -> Option<ApiId> {
    match guard::tampers(api, call) {
        Some(tamper) => Some(tamper),
        None if api.class() == Class::Tamper => None,
        None => Some(api),
    }
}

/// Where a monitored system call is made: its `syscall` instruction, the
/// program's stack and frame pointers there, and an address on the
/// program's stack below its stack pointer (for [`nest::inside`]).
pub struct Site {
    pub pc: u64,
    pub sp: u64,
    pub rbp: u64,
    pub below: u64,
}

/// What happens to monitored system call `api` (arguments in `call`'s
/// [`HookFrame::arg`] layout) made at `at`, reported as `layer`: None, it
/// runs; or the result it gets instead (`-EPERM`). Kills the process when
/// the policy says so.
pub(crate) fn syscall_verdict(c: &Contract, api: ApiId, call: &HookFrame, at: Site, layer: u8) -> Option<i64> {
    let site = at.pc;
    if !filter::of_interest(api, &call.args()) {
        return None;
    }
    let p = policy(c)?;
    let mut d = p.decision(api as u16);
    // An exec that is part of an exec by name or of a spawn (see `outer_exec`).
    let mut ruled_as = api;
    let mut origin = Origin::At(site, at.sp, at.rbp);
    if let Some(o) = outer_exec(c, api, site, exec_argv(api, call), sys::gettid(), at.below) {
        if o.wanted == action::ALLOW {
            return None;
        }
        (ruled_as, origin) = (o.api, Origin::Returns(o.ret));
        d = p.decision(o.api as u16);
    }
    if d.chained != 0 {
        match decide_by_facts(c, &p, api, ruled_as, call, origin) {
            ByFacts::Decided(by) => d = by,
            ByFacts::NoProgram => return Some(-ENOENT as i64),
            // (A `syscall` names its program by path.)
            ByFacts::Searched => {}
        }
    }
    if d.action == action::ALLOW {
        return ring(&p, api, call);
    }
    let done = if p.enforce() { d.action } else { action::ALERT };
    let (tid, sp) = (sys::gettid(), at.sp);
    let regs = crate::unwind::Regs { pc: site, sp, rbp: at.rbp };
    // The system call a reported function makes (`execve` inside `execve`,
    // `clone` inside `posix_spawn`) is part of it: in a static executable,
    // or libc's own (in a dynamic one, a library constructor's raw system
    // call inside a reported `dlopen` is the library's).
    let libc_own = libplans::detoured_range(site).is_some();
    let nestable = !has_loader(c) || libc_own;
    // (Only what the policy would let through is folded, see dfp_dispatch;
    // `nest::folds` says which.)
    let foldable = nestable;
    if foldable {
        if let Some(o) = nest::inside(tid, at.below) {
            // As for function calls: the call frame information (glibc)
            // tells a stale entry from a call really in progress.
            let stale = libc_own && crate::unwind::reaches(regs, true, o.frame, o.ret) == Some(false);
            if !stale && nest::covers(o.api, api) && nest::folds(&o, d.action, api) {
                return None;
            }
        }
    }
    // libc repeating a reported `setuid` on this thread (see `nest`; when
    // it is not, this call is recorded as the one reported).
    if foldable && done == action::ALERT && nest::broadcast(api, tid, [call.arg(0), call.arg(1), call.arg(2)]) {
        return None;
    }
    if api.class() == Class::Exec {
        // A reported spawn's child running its program.
        if foldable && nest::spawned_by(exec_argv(api, call)).is_some_and(|o| nest::folds(&o, d.action, api)) {
            return None;
        }
        // The execve of the child of a libc spawn let through unreported (see dfp_dispatch).
        if (d.action == action::ALERT || !file_sink(&p))
            && ruled_as == api
            && has_loader(c)
            && libc_own
            && spawn_child(regs, true)
        {
            return None;
        }
    }
    // The next directory of a PATH search is decided as the first one was, without an event.
    let exec =
        (api.shape() == Shape::Execv).then_some(nest::Exec { tid, path: call.rdi, argv: call.rsi, envp: call.rdx });
    // (Only when that decision is this call's own: a retry is never let
    // through on an earlier decision the policy would not give it.)
    let decided = match exec.as_ref().and_then(nest::retried).filter(|&earlier| earlier == done) {
        Some(action) => action,
        None => {
            let origin = Origin::At(site, sp, at.rbp);
            emit(&Event { c, p: &p, api, f: call, origin, layer, done, wanted: d.action, rule: d.rule });
            if let Some(e) = &exec {
                nest::searching(e, done);
            }
            done
        }
    };
    match decided {
        action::DENY => Some(-1), // -EPERM
        action::KILL => sys::kill_self(),
        _ => ring(&p, api, call),
    }
}

/// An `io_uring_setup` let through, made by the runtime when rings must
/// leave opcodes out (see `uring`); None for any other call.
fn ring(p: &crate::ptable::PolicyTable, api: ApiId, call: &HookFrame) -> Option<i64> {
    if api != ApiId::io_uring_setup {
        return None;
    }
    let out = crate::uring::left_out_by(p);
    out.any().then(|| crate::uring::setup(out, call.arg(0), call.arg(1)))
}

/// The program's `io_uring_register` (number `nr`, arguments `a`) when rings
/// are restricted, made by the runtime (see `uring`); None: it runs as it is.
pub(crate) fn ring_register(c: &Contract, nr: u64, a: [u64; 4]) -> Option<i64> {
    if !crate::backstop::is_ring_register(nr) || !ensure_init(c) {
        return None;
    }
    let out = crate::uring::left_out_by(&policy(c)?);
    if !out.any() {
        return None;
    }
    crate::uring::register(out, a)
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

const EPERM: i32 = 1;
const ENOENT: i32 = 2;

/// Whether events go to a file the runtime opened: not to a descriptor a
/// spawn's file actions may have redirected in its child (where an event
/// of a refusal monitor mode only reports would change the program's
/// output: that one is not reported).
fn file_sink(p: &crate::ptable::PolicyTable) -> bool {
    matches!(p.sink(), crate::ptable::Sink::File(_))
}

/// Records a spawn (`system`, `popen`, `posix_spawn*`) a rule let through
/// unreported, or an exec by name left to the `execve` calls of its `PATH`
/// search ([`nest::SEARCHED`]), so that those calls are known as its own
/// (see [`outer_exec`]).
fn enter_decided(api: ApiId, f: &HookFrame, tag: u32, wanted: u8) {
    if !nest::spawns(api) && wanted != nest::SEARCHED {
        return;
    }
    let argv = match api.shape() {
        Shape::Spawn => f.arg(4),
        Shape::Execv => f.arg(1),
        // (`execlp`'s argv is built in its frames: see `nest::argv_of`.)
        _ => 0,
    };
    let (pid, tid) = (sys::getpid() as u32, sys::gettid() as u32);
    nest::enter(nest::Outer { pid, tid, frame: f.sp, ret: f.ret, tag, api, argv, real: f.r11, wanted });
}

/// The `argv` of an exec or spawn call whose program is named by a path
/// (0 for any other call).
fn exec_argv(api: ApiId, call: &HookFrame) -> u64 {
    match api.shape() {
        Shape::Execv | Shape::Fexecve => call.rsi,
        Shape::ExecveAt => call.rdx,
        Shape::Spawn => call.arg(4),
        _ => 0,
    }
}

/// The call an exec of `argv` made from libc (return address or site
/// `at`) by thread `tid` below stack address `below` belongs to, when it
/// is not decided as itself:
/// - a spawn a rule let through (`wanted` allow), whose child this exec
///   runs the program for: part of it;
/// - an exec or spawn by name ([`nest::SEARCHED`]): this exec is one step
///   of its `PATH` search (in this thread, or in its child), decided by
///   that API's rules, with its caller.
fn outer_exec(c: &Contract, api: ApiId, at: u64, argv: u64, tid: u64, below: u64) -> Option<nest::Outer> {
    if argv == 0 || api.class() != Class::Exec || (has_loader(c) && libplans::detoured_range(at).is_none()) {
        return None;
    }
    let spawn = (api.shape() != Shape::Spawn)
        .then(|| nest::spawned_by(argv))
        .flatten()
        .filter(|o| o.wanted == action::ALLOW || o.wanted == nest::SEARCHED);
    // (In this thread: only an exec of the search's own `argv`, not one a
    // signal handler makes meanwhile.)
    spawn.or_else(|| nest::inside(tid, below).filter(|o| o.wanted == nest::SEARCHED && nest::argv_of(o, argv)))
}

/// How rules with matchers decide a call.
enum ByFacts {
    Decided(ApiDecision),
    /// An exec of a program that does not exist: refused with ENOENT, as the
    /// kernel would, without a decision or an event.
    NoProgram,
    /// An exec by name whose program rules need: its `PATH` search's
    /// `execve` calls are decided, not this call.
    Searched,
}

/// The decision for a call of `api` by the rules of its chain, from the
/// facts they need. Out of line: its work is in a scratch slot, not on the
/// (possibly small) stack. With no slot free, the facts are unknown: no
/// rule with matchers matches, the chain's fallback decides.
#[inline(never)]
fn decide_by_facts(
    c: &Contract,
    p: &crate::ptable::PolicyTable,
    api: ApiId,
    ruled_as: ApiId,
    f: &HookFrame,
    origin: Origin,
) -> ByFacts {
    let mut slot = crate::facts::take();
    let needed = crate::rules::needed(p, ruled_as as u16);
    let found = match slot.as_mut() {
        Some(s) => crate::facts::gather(c, api, f, origin, needed, s.scratch()),
        // (The access comes from the registers: known even so.)
        None => crate::facts::Found {
            facts: crate::rules::Facts { access: crate::facts::access_of(api, f), ..crate::rules::UNKNOWN },
            ..Default::default()
        },
    };
    if found.searched {
        return ByFacts::Searched;
    }
    if found.no_program {
        return ByFacts::NoProgram;
    }
    ByFacts::Decided(crate::rules::decide(p, ruled_as as u16, &found.facts))
}

/// Makes the refused call fail the way the real function fails, with
/// `errno`; returns what `dfp_hook` must do ([`RETURN`] the value set, or
/// [`FORWARD`]).
fn refuse(c: &Contract, api: ApiId, f: &mut HookFrame, errno: i32) -> u64 {
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
        Failure::ErrorNumber => f.rax = errno as u64,
        Failure::MinusOneErrno => {
            set_errno(c, errno);
            f.rax = u64::MAX;
        }
        Failure::NullErrno => {
            set_errno(c, errno);
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
