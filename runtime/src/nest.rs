//! Which reported call each thread is inside, so the calls it makes on the
//! way (libc's internal `posix_spawn` in `system`, the `syscall` instruction
//! in `execve`) are not reported a second time. There is no TLS to keep this
//! in: a small table indexed by thread id holds, per thread, the stack address
//! of the return address of its last reported function-entry call and that
//! return address. A later hook of the same thread is inside that call while
//! its stack pointer is below that address and the return address is still
//! there (once the call returns, the caller's next call overwrites it). A
//! signal handler running on the same stack during the call counts as inside
//! it (only its `alert` events are dropped: `deny` and `kill` always apply).
//! Slots are shared by thread ids equal modulo the table size; a collision only
//! costs a duplicate event.

use crate::start::is_start_process;
use crate::{libplans, mem};
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

/// Whether a call at `regs` is made by the child a libc spawn starts, on the
/// stack libc gave it: the call frame information walks from it through
/// libc's frames only, to the end of the stack (glibc's `__spawni_child`
/// under `clone3`). Any other call, in a `vfork` child too, has the
/// program's or a library's frames above it. Where libc has no call frame
/// information (musl), this cannot be told: false.
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
