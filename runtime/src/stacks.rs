//! Private stacks for the hooks. The runtime's work for a call (deciding,
//! walking the stack, writing the event) needs a few KiB of stack, which the
//! program's own stack may not have: a `clone` child on a 4 KiB stack, musl's
//! `posix_spawn` child (whose stack is a buffer in its parent's frame, so an
//! overrun corrupts the parent), a goroutine, a small alternate signal stack.
//!
//! The hooks' assembly ([`crate::arch::x86_64`]: `dfp_hook`, `dfp_sys_hook`,
//! `dfp_arm_child`, `dfp_sigsys_entry`, `dfp_signal_wrapper`) claims a stack before it saves
//! anything, with the registers the call leaves free and without writing to
//! the program's stack (the return address of the call that entered the hook
//! is all the program's stack holds of it), and gives it back after it has
//! switched back: before the real function or the real system call runs, so
//! a blocking call, a `vfork` child or a thread that never returns holds none.
//!
//! [`STACKS`] stacks of [`STRIDE`] bytes, one mapping made at start-up
//! (reserved, not committed: a stack's pages cost memory once used). Stack
//! `i` is `[POOL + i * STRIDE, POOL + (i + 1) * STRIDE)`, its lowest page a
//! guard made inaccessible the first time the stack is used ([`guard`]).
//! Stack `i` is held while byte `i` of [`BUSY`] is 1: claimed with a locked
//! `bts` of bit `8 i`, given back with a plain store of 0 to the byte (which
//! changes no flag: `dfp_sys_hook` must keep them). A thread can hold several
//! at once (a hook in a signal handler that interrupted a hook). When all are
//! taken, the hook waits for one, sleeping (a program whose threads all
//! block in reported calls, while a slow sink holds each event's writer: Go
//! then starts a thread for every blocked goroutine, thousands, whose 2 KiB
//! stacks cannot hold the dispatcher); after [`WAITS`] sleeps, or before
//! start-up has mapped the pool, it runs on the program's stack, as it did
//! before these existed.
//!
//! A `fork` child inherits the mapping and the bytes: stacks other threads
//! held at the `fork` stay taken in the child (their threads do not exist
//! there) until it finds every stack taken, when it frees them all but the
//! one it runs on (`dfp_wait_for_stack`). The forking thread holds none (it
//! is past its hook when the system call runs).

use crate::sys;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// How many stacks.
pub const STACKS: usize = 64;
/// How many times a hook that finds every stack taken sleeps 50 µs waiting
/// for one (`dfp_wait_for_stack`) before it runs on the program's stack:
/// about 2 s (each sleep lasts some 100 µs with the kernel's timer slack).
pub const WAITS: u32 = 20_000;
/// Bytes of each, its guard page included: a power of two, so that the
/// assembly finds a stack's index from an address on it with a shift.
pub const STRIDE: u64 = 1 << STRIDE_SHIFT;
pub const STRIDE_SHIFT: u32 = 18;
const GUARD: u64 = 4096;

/// Lowest address of the pool; 0 until start-up maps it (the hooks then run
/// on the program's stack).
pub static POOL: AtomicU64 = AtomicU64::new(0);

/// Byte `i`: stack `i` is held. In one 64-byte line so that the assembly's
/// `bts` on bit `8 i` stays inside it.
#[repr(C, align(64))]
pub struct Busy(pub [AtomicU8; STACKS]);
pub static BUSY: Busy = Busy([const { AtomicU8::new(0) }; STACKS]);
/// The process whose stacks [`BUSY`] describes: a `fork` child that finds
/// them all taken frees its copies (see `dfp_wait_for_stack`).
pub static POOL_PID: AtomicU64 = AtomicU64::new(0);
/// 1 after a hook waited for a stack in vain, until one is found free: the
/// hooks meanwhile do not wait (see `dfp_wait_for_stack`).
pub static GAVE_UP: AtomicU8 = AtomicU8::new(0);
/// What a hook that runs on the program's stack "gives back": nothing reads it.
pub static NO_STACK: AtomicU8 = AtomicU8::new(0);

/// Bit `i % 64` of word `i / 64`: stack `i`'s guard page is in place.
static GUARDED: [AtomicU64; STACKS / 64] = [const { AtomicU64::new(0) }; STACKS / 64];

/// Maps the pool (once per process image; a `fork` child inherits it).
/// Without it (no memory under strict overcommit), the hooks use the
/// program's stacks.
pub fn map_pool() {
    if POOL.load(Ordering::Acquire) != 0 {
        return;
    }
    let len = STRIDE * STACKS as u64;
    if let Some(at) = sys::map_reserved(len) {
        crate::guard::protect(at, at + len, crate::guard::OURS);
        POOL_PID.store(sys::getpid(), Ordering::Relaxed);
        POOL.store(at, Ordering::Release);
    }
}

/// Called by a dispatcher with the byte that gives back the stack it runs on
/// (its frame's `busy`): the first time a stack of the pool is used, its
/// guard page is made inaccessible (so an overrun faults instead of writing
/// into the stack below). The dispatcher's own frames are far above it.
#[inline]
pub fn guard(busy: u64) {
    let i = busy.wrapping_sub(BUSY.0.as_ptr() as u64) as usize;
    if GUARDED.get(i / 64).is_some_and(|w| w.load(Ordering::Relaxed) & 1 << (i % 64) == 0) {
        guard_stack(i);
    }
}

#[inline(never)]
fn guard_stack(i: usize) {
    let lowest = POOL.load(Ordering::Relaxed) + i as u64 * STRIDE;
    // SAFETY: the lowest page of stack `i`, which this thread holds and whose
    // frames are at its top: nothing is on that page.
    if unsafe { sys::mprotect(lowest, GUARD, 0) }.is_ok() {
        GUARDED[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn a_stack_is_guarded_once_and_the_program_stack_never() {
        map_pool();
        let pool = POOL.load(Ordering::Relaxed);
        assert_ne!(pool, 0);
        guard(&NO_STACK as *const AtomicU8 as u64);
        assert!(GUARDED.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        // Stack 3's guard (its lowest page) goes on; its top stays usable.
        guard(&BUSY.0[3] as *const AtomicU8 as u64);
        assert_eq!(GUARDED[0].load(Ordering::Relaxed), 1 << 3);
        // SAFETY: the top word of stack 3, inside the pool's mapping.
        unsafe { core::ptr::write_volatile((pool + 4 * STRIDE - 8) as *mut u64, 7) };
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let guard_page = format!("{:x}-{:x} ---p", pool + 3 * STRIDE, pool + 3 * STRIDE + GUARD);
        assert!(maps.contains(&guard_page), "no {guard_page} in\n{maps}");
    }
}
