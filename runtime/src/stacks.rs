//! Private stacks for the hooks. The runtime's work for a call (deciding,
//! walking the stack, writing the event) needs a few KiB of stack, which the
//! program's own stack may not have: a `clone` child on a 4 KiB stack, musl's
//! `posix_spawn` child (whose stack is a buffer in its parent's frame, so an
//! overrun corrupts the parent), a small alternate signal stack, a goroutine.
//! `dfp_hook` and `dfp_sys_hook` save the program's registers where they
//! always did (some 100 bytes below the return address), then run the
//! dispatcher on a stack of ours ([`crate::arch::x86_64`]'s `dfp_*_on_stack`),
//! given back before the call goes on to the real function or the real system
//! call: a blocking call, a `vfork` child or a thread that never returns holds
//! none.
//!
//! [`STACKS`] stacks of [`SIZE`] bytes, each above a guard page, are claimed
//! with one atomic bit each and mapped by their first claimer (so a program
//! that reports nothing maps nothing). A thread can hold several at once (a
//! hook in a signal handler that interrupted a hook). When all are taken the
//! dispatcher runs on the program's stack, as it did before these existed.
//! A `fork` child inherits the mappings and the bits: stacks other threads
//! held at the `fork` stay taken in the child (their threads do not exist
//! there), which only narrows its pool.
//!
//! Claiming touches only `.bss` atomics and makes raw system calls: it is
//! safe before start-up has relocated the runtime (see `start`).

use crate::sys;
use core::sync::atomic::{AtomicU64, Ordering};

/// How many stacks (one bit each in [`BUSY`]).
pub const STACKS: usize = 64;
/// Usable bytes of each: the dispatcher needs under 16 KiB; the rest is for
/// what runs on it on the program's behalf (a signal handler that interrupts
/// a hook; `dlmopen`'s loader and constructors, which the runtime calls).
pub const SIZE: u64 = 256 << 10;
const GUARD: u64 = 4096;

/// Bit `i`: stack `i` is held.
static BUSY: AtomicU64 = AtomicU64::new(0);
/// Lowest address (the guard page) of stack `i`'s mapping; 0 until mapped.
/// Written only by a thread holding bit `i`.
static BASE: [AtomicU64; STACKS] = [const { AtomicU64::new(0) }; STACKS];

/// A stack held until dropped.
pub struct Stack {
    index: usize,
    /// Its highest address (16-aligned): where the stack pointer starts.
    pub top: u64,
}

impl Drop for Stack {
    fn drop(&mut self) {
        BUSY.fetch_and(!(1u64 << self.index), Ordering::Release);
    }
}

/// A free stack, mapped on first use; None when every stack is held or the
/// mapping failed.
pub fn claim() -> Option<Stack> {
    let mut busy = BUSY.load(Ordering::Relaxed);
    let index = loop {
        let free = !busy;
        if free == 0 {
            return None;
        }
        let i = free.trailing_zeros() as usize;
        match BUSY.compare_exchange_weak(busy, busy | 1u64 << i, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => break i,
            Err(now) => busy = now,
        }
    };
    // From here the bit is ours: dropping `held` gives it back.
    let mut held = Stack { index, top: 0 };
    let mut base = BASE[index].load(Ordering::Acquire);
    if base == 0 {
        let len = GUARD + SIZE;
        let fresh = sys::map_anonymous(len)?;
        // SAFETY: the lowest page of our own fresh mapping, which nothing uses:
        // made inaccessible, so an overrun faults instead of writing below.
        if unsafe { sys::mprotect(fresh, GUARD, 0) }.is_err() {
            // SAFETY: ours, never handed out.
            unsafe { sys::unmap(fresh, len) };
            return None;
        }
        BASE[index].store(fresh, Ordering::Release);
        base = fresh;
    }
    held.top = base + GUARD + SIZE;
    Some(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test: the pool is process-wide, and tests run in parallel.
    #[test]
    fn stacks_are_claimed_once_given_back_and_run_out() {
        let a = claim().expect("a stack");
        let b = claim().expect("another");
        assert_ne!(a.top, b.top);
        assert_eq!(a.top % 16, 0);
        let (a_index, a_top) = (a.index, a.top);
        drop(a);
        assert_eq!(BUSY.load(Ordering::Relaxed) & (1 << a_index), 0, "given back");
        // The same slot again (lowest free bit), mapped once: the same stack.
        let c = claim().expect("again");
        assert_eq!((c.index, c.top), (a_index, a_top));
        // SAFETY: the top word of a stack we hold, inside its mapping.
        unsafe { core::ptr::write_volatile((c.top - 8) as *mut u64, 7) };
        drop((b, c));
        let held: [Option<Stack>; STACKS] = core::array::from_fn(|_| claim());
        assert!(held.iter().all(Option::is_some));
        assert!(claim().is_none(), "every stack is held");
        drop(held);
        assert!(claim().is_some());
        assert_eq!(BUSY.load(Ordering::Relaxed), 0, "all given back");
    }
}
