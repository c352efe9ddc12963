//! Tamper resistance: the memory the hooks live in, and the system calls
//! that could undo them (class `tamper`).
//!
//! Every layer lives in memory the program could change back: the runtime's
//! segment and its thunks, the trampolines, hops and stubs it maps, the code
//! and read-only data it rewrote (the executable's, libc's detoured entries
//! and redirected symbols, a library's `syscall` sites) and the executable's
//! RELRO (its GOT). Start-up and each layer register those ranges here
//! ([`protect`]); the dispatcher then asks [`tampers`] of every system call
//! that could touch them:
//!
//! | call | tampers when |
//! |---|---|
//! | `mprotect`, `pkey_mprotect` | it changes [`OURS`], or asks for `PROT_WRITE` over any range |
//! | `mmap` | `MAP_FIXED` over any range |
//! | `munmap` | over [`OURS`] or [`PINNED`]; over [`CODE`] it is a library's `dlclose`, let through, and the range forgotten |
//! | `mremap` | from, or (`MREMAP_FIXED`) onto, any range |
//! | `madvise` | discarding advice (`MADV_DONTNEED`, `FREE`, `REMOVE`, `DONTNEED_LOCKED`, `WIPEONFORK`) over any range: a rewritten private page read back from the file is the original code |
//! | `shmat` | `SHM_REMAP` over any range |
//! | `open`, `openat`, `openat2` | for writing, of this process's `/proc/PID/mem` (or a thread's), however named |
//! | `process_vm_writev` | into this process |
//!
//! What the policy does with them is its `tamper` class: deny (kill when the
//! policy's `default` is kill) unless a rule names them, so enforce mode
//! refuses them and monitor mode reports them.
//!
//! Not covered, and said in the README: the program writing our writable
//! state or a lazily bound GOT slot directly (no system call), a descriptor
//! of `/proc/self/mem` opened before start-up or received from elsewhere, and
//! the race of a path changed between the check and the `open`.

use crate::apis::{tamper_of, ApiId};
use crate::arch::x86_64::HookFrame;
use crate::loader::{program_headers, Direct, PT_LOAD};
use crate::sys;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The runtime's own memory: its segment (code, thunks, tables) and the
/// trampolines, hops and stubs it maps. Any change to it tampers.
pub const OURS: u64 = 1;
/// Rewritten code and data of objects that are never unloaded (the
/// executable, the libraries loaded at start-up).
pub const PINNED: u64 = 2;
/// Rewritten code of an object that may be unloaded (`dlopen`ed, a
/// `dlmopen` namespace's): unmapping it is its `dlclose`.
pub const CODE: u64 = 3;

const MAX: usize = 256;
/// `[lo, hi, kind]`, page-aligned run-time addresses; `hi == 0`: free.
static RANGES: [[AtomicU64; 3]; MAX] = [const { [const { AtomicU64::new(0) }; 3] }; MAX];
/// Entries ever used: readers look no further.
static USED: AtomicUsize = AtomicUsize::new(0);
/// Writers take turns (registrations at start-up, at `dlopen` and at a
/// run-time rewrite; forgetting at `dlclose`): the holder's thread id, 0
/// when free. Readers take no lock.
static LOCK: AtomicU64 = AtomicU64::new(0);

const PAGE: u64 = 4096;

/// Takes [`LOCK`] (holding the thread's id); false when it cannot: this
/// thread holds it already (a signal handler's trap interrupted it here), or
/// its holder has not let go after 10,000 yields (a `fork` child of a
/// process whose other thread held it). The caller then skips its update.
fn lock() -> bool {
    let me = sys::gettid();
    for _ in 0..10_000 {
        match LOCK.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(owner) if owner == me => return false,
            Err(_) => sys::sched_yield(),
        }
    }
    false
}

fn unlock() {
    LOCK.store(0, Ordering::Release);
}

/// Registers `[lo, hi)` (run-time addresses, widened to whole pages) as
/// `kind`. A range already inside one of the same kind or a stronger one
/// ([`OURS`] before [`PINNED`] before [`CODE`]) is not added again.
pub fn protect(lo: u64, hi: u64, kind: u64) {
    let (lo, hi) = (lo & !(PAGE - 1), hi.saturating_add(PAGE - 1) & !(PAGE - 1));
    if hi <= lo || !lock() {
        return;
    }
    let used = USED.load(Ordering::Relaxed);
    let mut free = None;
    for (i, [l, h, k]) in RANGES.iter().enumerate().take(used) {
        let (el, eh) = (l.load(Ordering::Relaxed), h.load(Ordering::Relaxed));
        if eh == 0 {
            free = free.or(Some(i));
        } else if k.load(Ordering::Relaxed) <= kind && el <= lo && hi <= eh {
            unlock();
            return;
        }
    }
    let slot = match free {
        Some(i) => Some(i),
        None if used < MAX => {
            USED.store(used + 1, Ordering::Release);
            Some(used)
        }
        None => None, // full: the range goes unguarded (the backstop still sees what it leads to)
    };
    if let Some([l, h, k]) = slot.and_then(|i| RANGES.get(i)) {
        l.store(lo, Ordering::Relaxed);
        k.store(kind, Ordering::Relaxed);
        h.store(hi, Ordering::Release);
    }
    unlock();
}

/// Whether policy `p` refuses (in enforce mode) every tampering call with
/// the runtime's memory.
pub fn refused(p: &crate::ptable::PolicyTable) -> bool {
    use crate::contract::action;
    let apis =
        [ApiId::tamper_mprotect, ApiId::tamper_munmap, ApiId::tamper_mremap, ApiId::tamper_mmap, ApiId::tamper_madvise];
    p.enforce() && apis.iter().all(|&a| p.always(a as u16, action::DENY))
}

/// `mseal(lo, hi - lo)` (Linux 6.10 and later; elsewhere nothing happens):
/// from then on the kernel refuses to change, move, unmap or discard that
/// memory, for anyone.
pub fn seal(lo: u64, hi: u64) {
    const SYS_MSEAL: u64 = 462;
    let (lo, hi) = (lo & !(PAGE - 1), hi.saturating_add(PAGE - 1) & !(PAGE - 1));
    if hi > lo {
        // SAFETY: sealing changes no memory and no protection; the range
        // is the runtime's own segment, which nothing changes afterwards.
        let _ = unsafe { crate::arch::x86_64::syscall3(SYS_MSEAL, lo, hi - lo, 0) };
    }
}

/// Registers the non-writable `PT_LOAD` segments of the object whose ELF
/// header is loaded at `header` (`bias`: run-time minus link-time address),
/// and its `PT_GNU_RELRO` (read-only once relocated), as `kind`: as few
/// ranges as the writable data between them allows (one for a library laid
/// out read-only, code, read-only, RELRO, then data), so that the check of
/// every `munmap` and `madvise` stays short.
///
/// # Safety
/// `header` must be a loaded object's ELF header, mapped for as long as the
/// call reads its program headers (see [`Direct`]).
pub unsafe fn protect_object(header: u64, bias: u64, kind: u64) {
    const PF_W: u32 = 2;
    const PT_GNU_RELRO: u32 = 0x6474_e552;
    const N: usize = 16;
    // SAFETY: the caller's promise.
    let d = unsafe { Direct::new() };
    let (mut spans, mut n) = ([(0u64, 0u64); N], 0);
    let (mut data, mut m) = ([(0u64, 0u64); N], 0);
    let mut relro = (0u64, 0u64);
    for p in program_headers(d, header) {
        let lo = bias.wrapping_add(p.vaddr);
        let hi = lo.wrapping_add(p.memsz);
        match p.kind {
            PT_LOAD if p.flags & PF_W == 0 && n < N => {
                spans[n] = (lo & !(PAGE - 1), hi.saturating_add(PAGE - 1) & !(PAGE - 1));
                n += 1;
            }
            PT_LOAD if p.flags & PF_W != 0 && m < N => {
                data[m] = (lo, hi);
                m += 1;
            }
            // The loader makes read-only only the whole pages inside it.
            PT_GNU_RELRO => relro = (lo.saturating_add(PAGE - 1) & !(PAGE - 1), hi & !(PAGE - 1)),
            _ => {}
        }
    }
    if relro.1 > relro.0 && n < N {
        spans[n] = relro;
        n += 1;
    }
    let spans = &mut spans[..n];
    spans.sort_unstable();
    // Writable memory: the data segments, but their RELRO part.
    let writable = |lo: u64, hi: u64| {
        data[..m].iter().any(|&(dl, dh)| {
            let dl = if (relro.0..relro.1).contains(&dl) { relro.1 } else { dl };
            dl < hi && lo < dh
        })
    };
    let mut cur: Option<(u64, u64)> = None;
    for &(lo, hi) in spans.iter() {
        cur = match cur {
            Some((cl, ch)) if lo <= ch || !writable(ch, lo) => Some((cl, ch.max(hi))),
            Some((cl, ch)) => {
                protect(cl, ch, kind);
                Some((lo, hi))
            }
            None => Some((lo, hi)),
        };
    }
    if let Some((cl, ch)) = cur {
        protect(cl, ch, kind);
    }
}

/// The kinds (bit `1 << kind`) of the registered ranges that `[lo, lo+len)`
/// overlaps. An entry rewritten while read is skipped.
fn overlaps(lo: u64, len: u64) -> u64 {
    let hi = lo.saturating_add(len.max(1));
    let mut kinds = 0;
    for [l, h, k] in RANGES.iter().take(USED.load(Ordering::Acquire)) {
        // The range test first (a free entry has hi 0): most entries miss.
        let eh = h.load(Ordering::Acquire);
        if lo >= eh || l.load(Ordering::Relaxed) >= hi {
            continue;
        }
        let kind = k.load(Ordering::Relaxed);
        if h.load(Ordering::Acquire) == eh {
            kinds |= 1 << kind;
        }
    }
    kinds
}

/// Forgets the [`CODE`] ranges that `[lo, lo+len)` overlaps (an unloaded
/// library's: the addresses may hold another one next).
fn forget_code(lo: u64, len: u64) {
    let hi = lo.saturating_add(len.max(1));
    if !lock() {
        return;
    }
    for [l, h, k] in RANGES.iter().take(USED.load(Ordering::Relaxed)) {
        let (el, eh) = (l.load(Ordering::Relaxed), h.load(Ordering::Relaxed));
        if eh != 0 && k.load(Ordering::Relaxed) == CODE && lo < eh && el < hi {
            h.store(0, Ordering::Release);
        }
    }
    unlock();
}

const MAP_FIXED: u64 = 0x10;
const MREMAP_FIXED: u64 = 2;
const SHM_REMAP: u64 = 0o40000;
/// `MADV_DONTNEED`, `MADV_FREE`, `MADV_REMOVE`, `MADV_WIPEONFORK`, `MADV_DONTNEED_LOCKED`.
fn discards(advice: u64) -> bool {
    matches!(advice as u32, 4 | 8 | 9 | 18 | 24)
}

/// Bumped by every call seen that may change what is mapped where, or its
/// protection: what was read of `/proc/self/maps` before may be stale.
static MAPS_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current [`MAPS_GENERATION`].
pub fn maps_generation() -> u64 {
    MAPS_GENERATION.load(Ordering::Acquire)
}

fn mapping_changes(api: ApiId) {
    let changes = matches!(
        api,
        ApiId::mmap
            | ApiId::mprotect
            | ApiId::tamper_pkey_mprotect
            | ApiId::tamper_munmap
            | ApiId::tamper_mremap
            | ApiId::tamper_shmat
    );
    if changes {
        MAPS_GENERATION.fetch_add(1, Ordering::AcqRel);
    }
}

/// The kinds (as [`overlaps`]) of the registered ranges that the memory a
/// call of API `api` maps, unmaps, moves, protects or discards overlaps: 0
/// for a call that touches none (an `mmap` without `MAP_FIXED`, a call that
/// is not about memory). `shmat` is left to its callers (its size costs a
/// system call).
// (Inlined into both callers: out of line, a madvise cost 20 instructions more.)
#[inline(always)]
fn ranges_touched(api: ApiId, a: &[u64; 6]) -> u64 {
    match api {
        ApiId::mmap if a[3] & MAP_FIXED == 0 => 0,
        ApiId::mmap | ApiId::mprotect | ApiId::tamper_pkey_mprotect | ApiId::tamper_munmap | ApiId::tamper_madvise => {
            overlaps(a[0], a[1])
        }
        ApiId::tamper_mremap => overlaps(a[0], a[1]) | if a[3] & MREMAP_FIXED != 0 { overlaps(a[4], a[2]) } else { 0 },
        _ => 0,
    }
}

/// What a cheap look at a system call of API `api` (its own, from
/// `syscall_api`; arguments `a` in system call order) says, before the
/// dispatcher claims a stack: false when it cannot tamper. Reads only the
/// registered ranges: no system call, little stack.
pub fn may_tamper(api: ApiId, a: [u64; 6]) -> bool {
    mapping_changes(api);
    match api {
        ApiId::tamper_shmat => a[2] & SHM_REMAP != 0 && a[1] != 0,
        ApiId::process_vm_writev | ApiId::open | ApiId::openat | ApiId::openat2 => true,
        _ => ranges_touched(api, &a) != 0,
    }
}

/// The `tamper` API a system call of API `api` (its own, from
/// `syscall_api`; arguments in `call`) reports as when it would undo a
/// hook; None when it would not.
pub fn tampers(api: ApiId, call: &HookFrame) -> Option<ApiId> {
    mapping_changes(api);
    let a = [call.arg(0), call.arg(1), call.arg(2), call.arg(3), call.arg(4), call.arg(5)];
    let kinds = ranges_touched(api, &a);
    let hit = match api {
        // Any change to the runtime's memory; a writable page elsewhere.
        ApiId::mprotect | ApiId::tamper_pkey_mprotect => {
            kinds & 1 << OURS != 0 || (kinds != 0 && a[2] & sys::PROT_WRITE != 0)
        }
        ApiId::tamper_munmap => {
            if kinds & 1 << CODE != 0 {
                forget_code(a[0], a[1]);
            }
            kinds & (1 << OURS | 1 << PINNED) != 0
        }
        ApiId::tamper_madvise => discards(a[2]) && kinds != 0,
        ApiId::tamper_shmat => {
            a[2] & SHM_REMAP != 0 && a[1] != 0 && overlaps(a[1], sys::shm_size(a[0]).unwrap_or(PAGE)) != 0
        }
        ApiId::process_vm_writev => is_own_process(a[0]),
        ApiId::open => a[1] & 3 != 0 && opens_own_memory(sys::AT_FDCWD, a[0]),
        ApiId::openat => a[2] & 3 != 0 && opens_own_memory(a[0] as i32 as i64, a[1]),
        ApiId::openat2 => {
            crate::mem::read_u64(a[2]).is_some_and(|flags| flags & 3 != 0) && opens_own_memory(a[0] as i32 as i64, a[1])
        }
        _ => kinds != 0,
    };
    hit.then(|| tamper_of(api)).flatten()
}

/// Whether process (or thread) id `pid` is this process or one of its threads.
pub(crate) fn is_own_process(pid: u64) -> bool {
    let pid = pid as i32;
    if pid <= 0 {
        return false;
    }
    if pid as u64 == sys::getpid() {
        return true;
    }
    // Another thread of ours: /proc/self/task/<tid> exists.
    let mut path = [0u8; 48];
    sys::stat_size_mtime(numbered(b"/proc/self/task/", pid as u64, &mut path)).is_some()
}

/// `prefix` followed by `n` in decimal and a NUL, in `out`.
pub(crate) fn numbered<'a>(prefix: &[u8], n: u64, out: &'a mut [u8; 48]) -> &'a [u8] {
    let mut digits = [0u8; 20];
    let len = crate::json::fmt_u64(n, &mut digits);
    let total = prefix.len() + len;
    if total >= out.len() {
        return &[];
    }
    let (text, rest) = out.split_at_mut(total);
    let (head, tail) = text.split_at_mut(prefix.len());
    head.copy_from_slice(prefix);
    tail.copy_from_slice(&digits[20 - len..]);
    rest[0] = 0;
    &out[..=total]
}

/// Whether `path` (the program's pointer) relative to `dirfd` names the
/// `mem` file of this process or one of its threads, however it is spelled
/// (`/proc/self/mem`, `/proc/thread-self/mem`, `/proc/PID/task/TID/mem`, a
/// symbolic link to one, a descriptor of `/proc/self` and `mem`, another
/// mount of procfs). One `newfstatat` for every write-open; the rest only
/// for an empty regular file of mode 0600 on a device without a disk, as
/// `mem` files are.
fn opens_own_memory(dirfd: i64, path: u64) -> bool {
    const S_IFMT: u32 = 0o170000;
    const S_IFREG: u32 = 0o100000;
    const PROC_SUPER_MAGIC: u64 = 0x9fa0;
    let Some((dev, mode, size)) = sys::stat_at(dirfd, path) else { return false };
    // Major number 0: procfs, like every pseudo file system.
    let major = (dev >> 8) & 0xfff | (dev >> 32) & !0xfff;
    if mode & S_IFMT != S_IFREG || size != 0 || mode & 0o777 != 0o600 || major != 0 {
        return false;
    }
    let Ok(fd) = sys::open_path_at(dirfd, path) else { return false };
    let mut link = [0u8; 256];
    let own = sys::fs_type(fd) == Some(PROC_SUPER_MAGIC) && {
        let mut at = [0u8; 48];
        match sys::readlink(numbered(b"/proc/self/fd/", fd as u64, &mut at), &mut link) {
            Ok(len) => mem_owner(link.get(..len).unwrap_or(&[])).is_some_and(is_own_process),
            Err(_) => false,
        }
    };
    sys::close(fd);
    own
}

/// The process id in a procfs path ending `PID/mem` or `PID/task/TID/mem`.
fn mem_owner(path: &[u8]) -> Option<u64> {
    let mut parts = path.rsplit(|&b| b == b'/');
    if parts.next()? != b"mem" {
        return None;
    }
    let last = number(parts.next()?)?;
    match parts.next() {
        Some(b"task") => number(parts.next()?),
        _ => Some(last),
    }
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    digits.iter().try_fold(0u64, |v, &d| d.is_ascii_digit().then(|| v * 10 + (d - b'0') as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_paths_name_their_process() {
        assert_eq!(mem_owner(b"/proc/1234/mem"), Some(1234));
        assert_eq!(mem_owner(b"/proc/1234/task/1240/mem"), Some(1234));
        assert_eq!(mem_owner(b"/mnt/p/77/mem"), Some(77));
        assert_eq!(mem_owner(b"/proc/1234/maps"), None);
        assert_eq!(mem_owner(b"/tmp/mem"), None);
        assert_eq!(mem_owner(b"mem"), None);
    }

    #[test]
    fn numbered_paths_end_with_a_nul() {
        let mut b = [0xffu8; 48];
        assert_eq!(numbered(b"/proc/self/task/", 4_194_304, &mut b), b"/proc/self/task/4194304\0");
        assert_eq!(numbered(b"/proc/self/fd/", 0, &mut b), b"/proc/self/fd/0\0");
        assert_eq!(numbered(&[b'a'; 40], u64::MAX, &mut b), b"");
    }
}
