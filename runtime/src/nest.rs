//! One behaviour, one event: which reported call in progress a hooked call
//! is part of. What libc does inside a reported call (`system` reaching
//! `posix_spawn`, `execv` jumping on to `execve`, the `syscall` instruction
//! in `execve`, the program a spawn's child executes, each directory a PATH
//! search tries) is folded into that call: no event of its own. Only a call
//! the policy would let through itself is folded (its own decision is
//! `alert`): a `deny` or `kill` always applies and is reported, so a wrong
//! guess here (a stale entry, where no call frame information tells) costs at
//! most a lost alert, never a refusal. A PATH search's next directory is
//! decided as the first was (the same call of the same function: the same
//! decision).
//!
//! There is no TLS to keep this in: a small table indexed by thread id holds,
//! per thread, its last reported call that was let through: the stack address
//! of its return address, that return address, the hook it came through and
//! where it was sent on, its API, its process, and for a spawn its `argv`. A
//! later call is part of it:
//! * **inside** ([`inside`]): the same thread, its stack pointer below that
//!   address, the return address still there (once the call returns, the
//!   caller's next call overwrites it; where call frame information reaches
//!   it, the caller checks the walk too);
//! * **a tail call** ([`tail_call`]): the same thread, at that very address
//!   with that very return address, through another hook, when the call
//!   instruction before the return address goes straight into the reported
//!   call's own hook (the call site could only have entered the reported
//!   function, which then jumped on: `execv` to `execve`, `__open_2` to
//!   `open`, musl's `creat` to `open`), or when the reported function's code
//!   jumps into this hook (it was reached through a wrapper that ends in a
//!   tail call itself: `return creat(path, 0600);`). A later call from the
//!   same site of the same function enters the same hook again and is a
//!   call of its own;
//! * **the spawn's child** ([`spawned_by`]): a child process of the reported
//!   spawn's process (`system`, `popen`, `posix_spawn`, `posix_spawnp`) that
//!   runs in its memory (libc spawns with `CLONE_VM|CLONE_VFORK`; told from a
//!   `fork` child by a page of ours that `fork` leaves out), whose exec, made
//!   by libc, runs the spawn's own `argv` or one built in the spawn's frames
//!   (`system`'s `sh -c`), while the spawn is still in progress;
//! * **a PATH search's next directory** ([`retried`], for `syscall`
//!   instructions, where no function entry shows the search): the same
//!   thread's next `execve` of the same file name in another directory, with
//!   the same `argv` and environment, after the last one failed (had it
//!   worked, this process would be gone).
//!
//! * **its broadcast to the other threads** ([`broadcast`]): a
//!   `setuid`-like call changes every thread's ids, and libc has each other
//!   thread make the same system call in a signal handler (glibc's
//!   `SIGSETXID`, musl's `__synccall`): the same system call with the same
//!   arguments, by another thread of the same process, within 2 seconds.
//!
//! Only calls that the reported call's class covers are folded ([`covers`]):
//! its own class, and for the `exec` class new processes. Anything else made
//! meanwhile (a signal handler's `connect` during `system`) is decided and
//! reported on its own. Slots are shared by thread ids equal modulo the table
//! size; a collision only costs a duplicate event.

use crate::apis::{ApiId, Class, Shape};
use crate::arch::x86_64::{self as x86, Lands};
use crate::start::is_start_process;
use crate::{libplans, mem, sys};
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A reported call in progress, as its thread's slot holds it.
#[derive(Clone, Copy)]
pub struct Outer {
    pub pid: u32,
    pub tid: u32,
    /// The stack address of its return address, and that return address.
    pub frame: u64,
    pub ret: u64,
    /// The hook number it entered the runtime with (`%r11`, as its stub or
    /// hop set it).
    pub tag: u32,
    pub api: ApiId,
    /// A `posix_spawn`'s `argv`; 0 for other calls.
    pub argv: u64,
    /// Where the call was sent on: the function, or the trampoline that runs
    /// its first instructions (see [`tail_call`]).
    pub real: u64,
    /// What the policy wanted for it (`contract::action`): in monitor mode a
    /// call enforce mode would refuse runs too, and the calls inside it,
    /// which enforce mode would never see, are folded whatever they want
    /// (see [`folds`]).
    pub wanted: u8,
}

/// Whether `argv` (of an exec) is the one the call `o` was given, or one
/// built in its frames (`system`, `popen` and `execlp` build theirs there:
/// glibc 2.36's `system` 840 bytes below its return address, musl 1.2.3's
/// 1,176).
pub fn argv_of(o: &Outer, argv: u64) -> bool {
    const FRAMES: u64 = 4 << 10;
    argv != 0 && (argv == o.argv || (argv < o.frame && o.frame - argv <= FRAMES))
}

/// Whether a call of `inner` the policy wants `wanted` for, part of the
/// call `o` in progress, is folded into it (no event, no decision of its
/// own):
/// - when the policy would let it through with an alert;
/// - when `o` is one enforce mode would refuse (in monitor mode it runs);
/// - whatever it wants, when `o` is a spawn a rule let through and `inner`
///   a new process (its `clone`) or libc's own spawn inside it (`system`'s
///   `posix_spawn`); its child's exec is `dispatch::outer_exec`'s;
/// - inside an exec by name ([`SEARCHED`]), only its new process: its
///   `execve` calls are decided.
///
/// Otherwise a call the policy would refuse inside one it lets through is
/// decided and reported as enforce mode decides it, so a monitored run
/// shows everything enforce mode will refuse.
pub fn folds(o: &Outer, wanted: u8, inner: ApiId) -> bool {
    use crate::contract::action;
    match o.wanted {
        SEARCHED => inner.class() == crate::apis::Class::Process,
        action::ALLOW => inner.class() == crate::apis::Class::Process || inner.shape() == Shape::Spawn,
        action::DENY | action::KILL => true,
        _ => wanted == action::ALERT,
    }
}

/// [`Outer::wanted`] of a spawn by name (`posix_spawnp("git")`) whose
/// program rules need: not decided itself; the `execve` calls its child
/// makes are, with the spawn's caller (see `dispatch`).
pub const SEARCHED: u8 = 0xfe;

struct Slot {
    /// Even: stable; odd: being written.
    seq: AtomicU32,
    pid: AtomicU32,
    tid: AtomicU32,
    tag: AtomicU32,
    api: AtomicU32,
    frame: AtomicU64,
    ret: AtomicU64,
    argv: AtomicU64,
    real: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            seq: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            tid: AtomicU32::new(0),
            tag: AtomicU32::new(0),
            api: AtomicU32::new(0),
            frame: AtomicU64::new(0),
            ret: AtomicU64::new(0),
            argv: AtomicU64::new(0),
            real: AtomicU64::new(0),
        }
    }

    /// The slot's contents, read consistently (none while being written, or never written).
    fn read(&self) -> Option<Outer> {
        let (pid, tid, tag, api, frame, ret, argv, real) = seq_read(&self.seq, || {
            (
                self.pid.load(Ordering::Relaxed),
                self.tid.load(Ordering::Relaxed),
                self.tag.load(Ordering::Relaxed),
                self.api.load(Ordering::Relaxed),
                self.frame.load(Ordering::Relaxed),
                self.ret.load(Ordering::Relaxed),
                self.argv.load(Ordering::Relaxed),
                self.real.load(Ordering::Relaxed),
            )
        })?;
        // (`api` holds the API number and, above it, the wanted action.)
        let wanted = (api >> 16) as u8;
        Some(Outer { pid, tid, frame, ret, tag, api: ApiId::from_u16(api as u16)?, argv, real, wanted })
    }
}

/// The tables here are seqlocks: each slot's `seq` is even while stable,
/// odd while being written, 0 until first written. A writer that finds the
/// slot taken by another writer (a thread with a colliding id) gives up:
/// a duplicate event at worst.
///
/// Writes a slot with `write`, unless another writer holds it.
fn seq_write(seq: &AtomicU32, write: impl FnOnce()) {
    let s = seq.load(Ordering::Relaxed);
    if s & 1 != 0 || seq.compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return;
    }
    write();
    seq.store(s + 2, Ordering::Release);
}

/// Reads a slot with `read`: None while it is written, or never was.
fn seq_read<T>(seq: &AtomicU32, read: impl FnOnce() -> T) -> Option<T> {
    let s = seq.load(Ordering::Acquire);
    let value = read();
    fence(Ordering::Acquire);
    (s != 0 && s & 1 == 0 && seq.load(Ordering::Relaxed) == s).then_some(value)
}

const SLOTS: usize = 64;
static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// One pending lazy-binding call per thread (see `expect_lazy`). A thread
/// only ever touches its own entry (colliding ids aside: then a duplicate
/// event at worst).
static LAZY: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// Per thread, the call in progress that a newer one recorded in
/// [`TABLE`] was made inside of (a signal handler's call, interrupting a
/// reported call before the system calls it makes): still in progress.
static OUTER: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

fn slot(tid: u64) -> &'static Slot {
    &TABLE[(tid as usize) % SLOTS]
}

fn write_slot(s: &Slot, o: &Outer) {
    // Another thread with a colliding id writing: keep theirs.
    seq_write(&s.seq, || {
        s.pid.store(o.pid, Ordering::Relaxed);
        s.tid.store(o.tid, Ordering::Relaxed);
        s.tag.store(o.tag, Ordering::Relaxed);
        s.api.store(o.api as u32 | u32::from(o.wanted) << 16, Ordering::Relaxed);
        s.frame.store(o.frame, Ordering::Relaxed);
        s.ret.store(o.ret, Ordering::Relaxed);
        s.argv.store(o.argv, Ordering::Relaxed);
        s.real.store(o.real, Ordering::Relaxed);
    });
}

/// Whether a call of `inner` made as part of a reported call of `outer`
/// belongs to it: the same class, or a new process for an `exec` call
/// (`posix_spawn`'s `clone`).
pub fn covers(outer: ApiId, inner: ApiId) -> bool {
    outer.class() == inner.class() || (outer.class() == Class::Exec && inner.class() == Class::Process)
}

/// Whether calls of `api` start a child process that runs a program for them.
pub fn spawns(api: ApiId) -> bool {
    matches!(api.shape(), Shape::System | Shape::Popen | Shape::Spawn)
}

/// A page of ours holding `SHARED_MAGIC ^ pid` of the process that mapped
/// it, which `fork` children do not get (`MADV_DONTFORK`) and `vfork` or
/// `CLONE_VM` children share: where a child reads its parent's pid there, it
/// runs in its parent's memory. 0: none yet (or it failed).
static SHARED: AtomicU64 = AtomicU64::new(0);
const SHARED_MAGIC: u64 = 0x6466_7061_7463_6800; // "dfpatch\0"

/// Makes sure this process has its [`SHARED`] page, before it starts a spawn.
fn mark_memory() {
    let pid = sys::getpid();
    let at = SHARED.load(Ordering::Acquire);
    // A fork child inherits the address, not the page: it makes its own.
    if at != 0 && mem::read_u64(at) == Some(SHARED_MAGIC ^ pid) {
        return;
    }
    let Some(page) = sys::map_unforked(4096) else { return };
    // SAFETY: our own fresh read-write page.
    unsafe { core::ptr::write_volatile(page as *mut u64, SHARED_MAGIC ^ pid) };
    if SHARED.compare_exchange(at, page, Ordering::AcqRel, Ordering::Acquire).is_err() {
        // SAFETY: ours, never published.
        unsafe { sys::unmap(page, 4096) };
    }
}

/// Whether this process runs in the memory of process `parent` (a `vfork`
/// or `CLONE_VM` child), not in a copy of it (a `fork` child).
fn in_memory_of(parent: u64) -> bool {
    let at = SHARED.load(Ordering::Acquire);
    at != 0 && mem::read_u64(at) == Some(SHARED_MAGIC ^ parent)
}

/// Records `o`, just reported and let through, as its thread's call in progress.
pub fn enter(o: Outer) {
    if spawns(o.api) {
        mark_memory();
    }
    let tid = o.tid as u64;
    // A call made inside this thread's call in progress (from a signal
    // handler): that one stays known, one level up.
    // (Not over an outer call still live further up: the one kept is the
    // outermost, which a handler's finished calls, deeper, never replace.)
    if let Some(up) = live(tid, |up| o.frame < up.frame) {
        if live_in(&OUTER, tid, |outer| outer.frame > up.frame).is_none() {
            write_slot(&OUTER[tid as usize % SLOTS], &up);
        }
    }
    write_slot(slot(tid), &o);
}

/// The reported call of this thread at `frame` (the executable's, through a
/// lazy GOT slot) has now been sent on to `real` (the loader's resolver
/// bound the slot and entered our library stub with it).
pub fn sent_on(tid: u64, frame: u64, real: u64) {
    let s = slot(tid);
    if s.tid.load(Ordering::Relaxed) != tid as u32 || s.frame.load(Ordering::Relaxed) != frame {
        return;
    }
    seq_write(&s.seq, || s.real.store(real, Ordering::Relaxed));
}

/// This thread's last reported call, if `near` holds for it and its return
/// address is still where it was (read last: a system call).
fn live(tid: u64, near: impl Fn(&Outer) -> bool) -> Option<Outer> {
    live_in(&TABLE, tid, near)
}

fn live_in(table: &[Slot; SLOTS], tid: u64, near: impl Fn(&Outer) -> bool) -> Option<Outer> {
    let o = table[tid as usize % SLOTS].read().filter(|o| o.tid == tid as u32 && near(o))?;
    // Read through the safe path: the thread may have left that stack.
    (mem::read_u64(o.frame) == Some(o.ret)).then_some(o)
}

/// The reported call of this thread that a call at `sp` may be inside (its
/// return address slot above `sp`, the return address still there).
pub fn inside(tid: u64, sp: u64) -> Option<Outer> {
    live(tid, |o| sp < o.frame).or_else(|| live_in(&OUTER, tid, |o| sp < o.frame))
}

/// The reported call of this thread that the call of hook `tag`, whose return
/// address is `ret` at `frame`, is a tail call of (see the module's comment).
pub fn tail_call(tid: u64, frame: u64, ret: u64, tag: u32) -> Option<Outer> {
    let o = live(tid, |o| o.frame == frame && o.ret == ret && o.tag != tag)?;
    (called_hook(ret) == Some(o.tag) || jumps_into(o.real, tag)).then_some(o)
}

/// The hook that the call instruction returning to `ret` enters straight
/// away: its target followed through jumps (see [`hook_at`]). None for an
/// indirect call through a register.
fn called_hook(ret: u64) -> Option<u32> {
    let mut before = [0u8; 6];
    if mem::read(ret.wrapping_sub(6), &mut before) != 6 {
        return None;
    }
    hook_at(x86::call_before(&before, ret)?)
}

/// Where code lands, read in memory (a pointer behind an indirect jump, the
/// code of a direct one).
fn target(to: Lands) -> Option<u64> {
    match to {
        Lands::At(at) => Some(at),
        Lands::Through(pointer) => mem::read_u64(pointer),
        Lands::Hook(_) => None,
    }
}

/// The hook that code landing at `to` enters straight away: followed
/// through jumps (a PLT entry, a detoured entry, a `.plt.sec` slot) to a
/// stub or hop of ours, whose `mov $number, %r11d` names it. None for code
/// that is not a plain chain of jumps into one.
fn hook_at(mut to: Lands) -> Option<u32> {
    for _ in 0..6 {
        let at = target(to)?;
        let mut code = [0u8; 24];
        let n = mem::read(at, &mut code);
        to = match x86::landing(code.get(..n)?, at)? {
            Lands::Hook(number) => return Some(number),
            next => next,
        };
    }
    None
}

/// Bytes of a function's code searched for its tail call: the thin
/// functions that end in one (`execv`, `execvp`, `__open_2`, musl's `creat`)
/// make it within their first few dozen.
const TAIL_WINDOW: usize = 128;

/// Where the branches found among the first [`TAIL_WINDOW`] bytes at `at` lead.
fn branches(at: u64, out: &mut [Lands; 8]) -> usize {
    let mut code = [0u8; TAIL_WINDOW];
    let n = mem::read(at, &mut code);
    x86::branches(code.get(..n).unwrap_or(&[]), at, out)
}

/// Whether the code at `real` (a reported function, or the trampoline that
/// runs its first instructions and jumps back into it) branches into hook
/// `tag` within its first bytes, or within the first bytes of where it jumps
/// (a trampoline's jump back into the body).
fn jumps_into(real: u64, tag: u32) -> bool {
    let mut first = [Lands::At(0); 8];
    let n = branches(real, &mut first);
    let mut onward = 0;
    for &to in first.iter().take(n) {
        match hook_at(to) {
            Some(t) if t == tag => return true,
            Some(_) => {}
            None if onward < 3 => {
                onward += 1;
                let mut second = [Lands::At(0); 8];
                let Some(body) = target(to) else { continue };
                let m = branches(body, &mut second);
                if second.iter().take(m).any(|&x| hook_at(x) == Some(tag)) {
                    return true;
                }
            }
            None => {}
        }
    }
    false
}

/// The reported spawn whose child this process is, when this call (an exec
/// of `argv`) is that child running the spawn's program: see the module's
/// comment. Not for a thread of the spawning process itself (that is
/// [`inside`]'s case).
pub fn spawned_by(argv: u64) -> Option<Outer> {
    // (`system` and `popen` build the shell's `argv` in their frames:
    // glibc 2.36 840 and 232 bytes below, musl 1.2.3 1,176 and 184.)
    let candidate = |o: &Outer| spawns(o.api) && argv_of(o, argv);
    // A few system calls, only when some slot could be the one.
    if !TABLE.iter().filter_map(Slot::read).any(|o| candidate(&o)) {
        return None;
    }
    let (pid, parent) = (sys::getpid() as u32, sys::getppid());
    // The child of a spawn shares its parent's memory (libc spawns with
    // CLONE_VM|CLONE_VFORK): a fork child's exec is a behaviour of its own.
    if !in_memory_of(parent) {
        return None;
    }
    TABLE
        .iter()
        .filter_map(Slot::read)
        .filter(|o| o.pid == parent as u32 && o.pid != pid && candidate(o))
        // Still in progress: this reads the parent's own stack, which it
        // cannot leave while its vfork child runs.
        .find(|o| mem::read_u64(o.frame) == Some(o.ret))
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

/// Each thread's last `execve` system call that was decided (see
/// [`retried`]): its process, `argv`, environment, and hashes of its path and
/// of the path's last component, and the action taken.
struct Search {
    /// Even: stable; odd: being written.
    seq: AtomicU32,
    pid: AtomicU32,
    tid: AtomicU32,
    action: AtomicU32,
    argv: AtomicU64,
    envp: AtomicU64,
    path: AtomicU64,
    name: AtomicU64,
}

static SEARCHES: [Search; SLOTS] = [const {
    Search {
        seq: AtomicU32::new(0),
        pid: AtomicU32::new(0),
        tid: AtomicU32::new(0),
        action: AtomicU32::new(0),
        argv: AtomicU64::new(0),
        envp: AtomicU64::new(0),
        path: AtomicU64::new(0),
        name: AtomicU64::new(0),
    }
}; SLOTS];

/// An `execve` system call: who makes it, and what it runs.
#[derive(Clone, Copy)]
pub struct Exec {
    pub tid: u64,
    pub path: u64,
    pub argv: u64,
    pub envp: u64,
}

/// FNV-1a hashes of the NUL-terminated path at `addr` and of its last
/// component (read 256 bytes at a time: hooks also run on small stacks).
fn path_hashes(addr: u64) -> Option<(u64, u64)> {
    const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x100_0000_01b3;
    let (mut path, mut name) = (BASIS, BASIS);
    let mut chunk = [0u8; 256];
    for k in 0..16u64 {
        let n = mem::read(addr.wrapping_add(k * 256), &mut chunk);
        for &b in chunk.get(..n)? {
            if b == 0 {
                return (name != BASIS).then_some((path, name));
            }
            path = (path ^ b as u64).wrapping_mul(PRIME);
            name = if b == b'/' { BASIS } else { (name ^ b as u64).wrapping_mul(PRIME) };
        }
        if n < chunk.len() {
            return None; // unreadable before its end
        }
    }
    None
}

/// The action taken for this thread's previous `execve` when `e` retries it
/// in another directory (a PATH search: see the module's comment).
pub fn retried(e: &Exec) -> Option<u8> {
    let s = &SEARCHES[(e.tid as usize) % SLOTS];
    let (pid, tid, action, argv, envp, path, name) = seq_read(&s.seq, || {
        (
            s.pid.load(Ordering::Relaxed),
            s.tid.load(Ordering::Relaxed),
            s.action.load(Ordering::Relaxed),
            s.argv.load(Ordering::Relaxed),
            s.envp.load(Ordering::Relaxed),
            s.path.load(Ordering::Relaxed),
            s.name.load(Ordering::Relaxed),
        )
    })?;
    if tid != e.tid as u32 || argv != e.argv || envp != e.envp || argv == 0 {
        return None;
    }
    let (this_path, this_name) = path_hashes(e.path)?;
    if this_name != name || this_path == path || pid != sys::getpid() as u32 {
        return None;
    }
    Some(action as u8)
}

/// Records `e`, just decided with `action`, as its thread's last `execve`.
pub fn searching(e: &Exec, action: u8) {
    let Some((path, name)) = path_hashes(e.path) else { return };
    let s = &SEARCHES[(e.tid as usize) % SLOTS];
    let pid = sys::getpid() as u32;
    seq_write(&s.seq, || {
        s.pid.store(pid, Ordering::Relaxed);
        s.tid.store(e.tid as u32, Ordering::Relaxed);
        s.action.store(action as u32, Ordering::Relaxed);
        s.argv.store(e.argv, Ordering::Relaxed);
        s.envp.store(e.envp, Ordering::Relaxed);
        s.path.store(path, Ordering::Relaxed);
        s.name.store(name, Ordering::Relaxed);
    });
}

/// Whether a call at `regs` is made by the child a libc spawn starts, on the
/// stack libc gave it: the call frame information walks from it through
/// libc's frames only, to the end of the stack (glibc's `__spawni_child`
/// under `clone3`). Any other call, in a `vfork` child too, has the
/// program's or a library's frames above it. Where libc has no call frame
/// information (musl), this cannot be told: false. (For a spawn that was
/// not itself reported: a reported one's child is [`spawned_by`].)
pub fn spawn_child(regs: crate::unwind::Regs, at_instruction: bool) -> bool {
    // A child process (a thread of this one could start at a libc function
    // too: `pthread_create(..., system, ...)`).
    if is_start_process() {
        return false;
    }
    let Some((lo, hi)) = libplans::detoured_range(regs.pc) else { return false };
    let mut frames = [0u64; crate::unwind::MAX_FRAMES];
    let w = crate::unwind::walk_until(regs, at_instruction, &mut frames);
    // Every frame in libc, up to the outermost one.
    w.outermost && frames.get(..w.n).is_some_and(|fr| fr.iter().all(|pc| (lo..hi).contains(pc)))
}

/// The `setuid`-like calls libc repeats on every thread (see [`broadcast`]):
/// how many arguments they take (0: not one of them).
fn broadcast_args(api: ApiId) -> usize {
    match api {
        ApiId::setuid | ApiId::setgid => 1,
        ApiId::setreuid | ApiId::setregid | ApiId::setgroups => 2,
        ApiId::setresuid | ApiId::setresgid => 3,
        _ => 0,
    }
}

/// The `n` arguments a `setuid`-like call takes, as the kernel reads them:
/// ids are 32 bits (a caller's `-1` may come sign-extended or not); the
/// other registers are anything.
fn taken(a: [u64; 3], n: usize) -> [u64; 3] {
    let mut t = [0; 3];
    for (i, slot) in t.iter_mut().enumerate().take(n) {
        *slot = a[i] as u32 as u64;
    }
    t
}

/// The last reported `setuid`-like call, in one word so that threads that
/// make theirs at the same instant agree on which one reports: a hash of its
/// process, API and ids (24 bits), the second it was reported in (16 bits)
/// and the thread that made it (24 bits: thread ids stay below 2^22).
static BROADCAST: AtomicU64 = AtomicU64::new(0);
const BROADCAST_SECONDS: u64 = 2;

/// The word [`BROADCAST`] holds for a call of `api` with the ids `a` made
/// now by thread `tid`.
fn broadcast_word(api: ApiId, a: [u64; 3], tid: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in [sys::getpid(), api as u64, a[0], a[1], a[2]] {
        h = (h ^ v).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let hash = (h ^ h >> 32) & 0xff_ffff;
    hash << 40 | (sys::realtime().0 as u64 & 0xffff) << 24 | (tid & 0xff_ffff)
}

/// Whether the word `old` (see [`BROADCAST`]) is the same call as `new`,
/// reported at most [`BROADCAST_SECONDS`] before it, by another thread.
fn same_broadcast(old: u64, new: u64) -> bool {
    let seconds = ((new >> 24).wrapping_sub(old >> 24)) & 0xffff;
    old != 0 && old >> 40 == new >> 40 && seconds <= BROADCAST_SECONDS && (old ^ new) & 0xff_ffff != 0
}

/// A reported call of `api` with arguments `a`, by thread `tid`: if libc
/// repeats it on the other threads, those are part of it.
pub fn broadcasting(api: ApiId, tid: u64, a: [u64; 3]) {
    let n = broadcast_args(api);
    if n != 0 {
        BROADCAST.store(broadcast_word(api, taken(a, n), tid), Ordering::Release);
    }
}

/// Whether a system call of `api` with arguments `a`, by thread `tid`, that
/// the policy lets through is libc repeating a reported `setuid`-like call
/// on another thread. When it is not, it is the one reported: recorded, in
/// one step with the test (a compare-and-swap of the one word), so that of
/// the threads making it at once only one reports.
pub fn broadcast(api: ApiId, tid: u64, a: [u64; 3]) -> bool {
    let n = broadcast_args(api);
    if n == 0 {
        return false;
    }
    let new = broadcast_word(api, taken(a, n), tid);
    let mut old = BROADCAST.load(Ordering::Acquire);
    loop {
        if same_broadcast(old, new) {
            return true;
        }
        match BROADCAST.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return false,
            Err(now) => old = now,
        }
    }
}
