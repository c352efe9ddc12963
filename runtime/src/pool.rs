//! Buffers outside the stack (hooks also run on small stacks nobody can
//! measure: musl's `posix_spawn` child has about 5 KiB), taken and given
//! back with atomics. A pool's slots live in one anonymous mapping made by
//! the first call that takes one, so a program that never needs one maps
//! nothing and the file carries no zeros. Event buffers (`event`) and the
//! facts' scratch room (`facts`) are two pools.

use crate::sys;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// [`Pool::base`]: the mapping failed.
const FAILED: u64 = 1;

/// `SLOTS` buffers of `size` bytes (a multiple of 4096: each slot is page
/// aligned).
pub struct Pool<const SLOTS: usize> {
    busy: [AtomicBool; SLOTS],
    /// The mapping: 0 not made yet, [`FAILED`], else its address.
    base: AtomicU64,
    size: usize,
}

/// A slot, held until dropped.
pub struct Slot<const SLOTS: usize> {
    pool: &'static Pool<SLOTS>,
    index: usize,
    base: u64,
}

impl<const SLOTS: usize> Pool<SLOTS> {
    pub const fn new(size: usize) -> Pool<SLOTS> {
        assert!(size.is_multiple_of(4096) && size > 0);
        Pool { busy: [const { AtomicBool::new(false) }; SLOTS], base: AtomicU64::new(0), size }
    }

    fn base(&self) -> Option<u64> {
        match self.base.load(Ordering::Acquire) {
            FAILED => return None,
            0 => {}
            b => return Some(b),
        }
        let len = (SLOTS * self.size) as u64;
        let Some(mine) = sys::map_anonymous(len) else {
            let _ = self.base.compare_exchange(0, FAILED, Ordering::AcqRel, Ordering::Acquire);
            return None;
        };
        match self.base.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(mine),
            Err(theirs) => {
                // SAFETY: our mapping was never published: nobody else uses it.
                unsafe { sys::unmap(mine, len) };
                (theirs != FAILED).then_some(theirs)
            }
        }
    }

    /// A free slot; None when all are taken or the mapping failed.
    pub fn take(&'static self) -> Option<Slot<SLOTS>> {
        let base = self.base()?;
        (0..SLOTS)
            .find(|&i| self.busy[i].compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok())
            .map(|index| Slot { pool: self, index, base })
    }
}

impl<const SLOTS: usize> Slot<SLOTS> {
    /// The slot's bytes (zero-filled when first used), page aligned.
    pub fn bytes(&mut self) -> &mut [u8] {
        let size = self.pool.size;
        // SAFETY: the mapping is SLOTS * size bytes and never unmapped; this
        // Slot holds busy[index], so nobody else uses this part of it, and
        // the `&mut self` borrow makes the slice unique.
        unsafe { core::slice::from_raw_parts_mut((self.base + (self.index * size) as u64) as *mut u8, size) }
    }
}

impl<const SLOTS: usize> Drop for Slot<SLOTS> {
    fn drop(&mut self) {
        self.pool.busy[self.index].store(false, Ordering::Release);
    }
}
