//! Reading the program's memory without trusting it: pointers passed to a
//! hooked function may be bad, and the runtime must never fault on them.
//! Reads go through `process_vm_readv`, which reports EFAULT instead of faulting.
//! Where that call is refused (old seccomp profiles), reads fall back to plain
//! loads, which is no worse than what the real function would do with the pointer.

use crate::sys;
use core::sync::atomic::{AtomicU32, Ordering};

/// 0 = not known yet, 1 = process_vm_readv works, 2 = refused here.
static VM_READV: AtomicU32 = AtomicU32::new(0);

/// Copies up to `out.len()` bytes from `addr`; returns how many could be read.
pub fn read(addr: u64, out: &mut [u8]) -> usize {
    if addr == 0 || out.is_empty() {
        return 0;
    }
    if VM_READV.load(Ordering::Relaxed) != 2 {
        match sys::read_own_memory(addr, out) {
            Ok(n) => {
                VM_READV.store(1, Ordering::Relaxed);
                return n;
            }
            Err(e) if e == sys::ENOSYS || e == sys::EPERM => VM_READV.store(2, Ordering::Relaxed),
            Err(_) => return 0,
        }
    }
    for (i, slot) in out.iter_mut().enumerate() {
        // SAFETY: the fallback path: the program handed this pointer to a
        // function that will read it too; see the module comment.
        *slot = unsafe { core::ptr::read_volatile((addr + i as u64) as *const u8) };
    }
    out.len()
}

pub fn read_u64(addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    if read(addr, &mut b) == 8 {
        Some(u64::from_le_bytes(b))
    } else {
        None
    }
}

pub fn read_u32(addr: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    if read(addr, &mut b) == 4 {
        Some(u32::from_le_bytes(b))
    } else {
        None
    }
}

/// Reads the NUL-terminated string at `addr` into `out`, without the NUL.
/// Returns None for NULL or unreadable memory; a string longer than `out` is
/// cut and flagged with `true`.
pub fn read_cstr(addr: u64, out: &mut [u8]) -> Option<(usize, bool)> {
    if addr == 0 {
        return None;
    }
    let mut pos = 0usize;
    let mut at = addr;
    while pos < out.len() {
        // Never cross a page in one read, so a string ending just before an
        // unmapped page is still read whole.
        let to_page_end = 4096 - (at & 4095) as usize;
        let want = to_page_end.min(out.len() - pos);
        let dst = out.get_mut(pos..pos + want)?;
        let got = read(at, dst);
        if let Some(nul) = dst.get(..got)?.iter().position(|&b| b == 0) {
            return Some((pos + nul, false));
        }
        if got < want {
            return if pos + got == 0 { None } else { Some((pos + got, true)) };
        }
        pos += got;
        at += got as u64;
    }
    Some((pos, true))
}
