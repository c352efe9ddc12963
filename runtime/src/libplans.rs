//! The library plans (layers `entry` and `syscall` in libraries): patch-time
//! plans for the libraries a dynamic executable needs ([`LibPlans`], written
//! by the rewriter's `libplan`), applied in memory at start-up to every
//! loaded library that is the planned file (same GNU build ID, or for a
//! library without one the same size and mtime).
//!
//! A plan's site is a window of the library's code: a `syscall` instruction
//! with its neighbours, or the first instructions of a monitored function
//! (libc's). Its trampoline is copied into a mapping within ±2 GiB of the
//! library (then made read+execute, before anything points at it), the
//! runtime's addresses are filled in, and the window is replaced by a jump,
//! written through `/proc/self/mem` (code is never made writable). A
//! detoured entry jumps to a hop that enters the hook as the function's
//! stub does ([`crate::symbols`]), the trampoline standing for the function
//! from then on. Every window is checked to hold its planned bytes first.

use crate::apis::ApiId;
use crate::arch::x86_64::{hop_code, jmp_rel32, HOP_LEN};
use crate::contract::{
    r11, LibPlans, LibRecord, SiteRecord, MAX_FIXUPS, MAX_LIB_SITES, MAX_WINDOW, NO_JUMP_BACK, TRAMP_BASE,
};
use crate::loader::{program_headers, Direct, Memory, PF_X, PT_LOAD, PT_NOTE};
use crate::symbols::{entry_slot, retarget, Stubs, Writer};
use crate::{mem, sys};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The objects whose entries were detoured (libc; another copy in each
/// `dlmopen` namespace): `[lo, hi)` pairs at run time, 0 when unused.
const MAX_DETOURED: usize = 17; // the first namespace and glibc's 15 others, and one spare
static DETOURED: [[AtomicU64; 2]; MAX_DETOURED] = [const { [const { AtomicU64::new(0) }; 2] }; MAX_DETOURED];

/// The run-time range of the library holding `pc` if its function entries
/// are detoured (libc): a call made from inside it is libc's own internal path.
pub fn detoured_range(pc: u64) -> Option<(u64, u64)> {
    DETOURED.iter().find_map(|[lo, hi]| {
        let (lo, hi) = (lo.load(Ordering::Acquire), hi.load(Ordering::Acquire));
        (lo..hi).contains(&pc).then_some((lo, hi))
    })
}

/// Whether any library's entries are detoured.
pub fn any_detoured() -> bool {
    DETOURED[0][1].load(Ordering::Acquire) != 0
}

fn add_detoured(lo: u64, hi: u64) {
    if detoured_range(lo).is_some() {
        return;
    }
    if let Some([l, h]) = DETOURED.iter().find(|[_, h]| h.load(Ordering::Relaxed) == 0) {
        l.store(lo, Ordering::Relaxed);
        h.store(hi, Ordering::Release);
    }
}

/// Run-time numbers of library `syscall` sites: the planned ones, then the
/// copies in `dlmopen` namespaces (numbered from [`NEXT_LIB_SITE`] on).
const LIB_SITE_NUMBERS: usize = 2 * MAX_LIB_SITES;
static NEXT_LIB_SITE: AtomicUsize = AtomicUsize::new(MAX_LIB_SITES);
/// Run-time address of each library `syscall` rewritten (0: not applied).
static LIB_SITES: [AtomicU64; LIB_SITE_NUMBERS] = [const { AtomicU64::new(0) }; LIB_SITE_NUMBERS];

/// A number for a `syscall` site at `at` rewritten at run time (see
/// `backstop`), as for a library's; None when every number is taken.
pub fn new_site(at: u64) -> Option<u32> {
    let k = NEXT_LIB_SITE.fetch_add(1, Ordering::Relaxed);
    let slot = LIB_SITES.get(k)?;
    slot.store(at, Ordering::Release);
    Some(r11::LIB_SITE as u32 | k as u32)
}

/// The run-time address of library `syscall` site `number` (see [`r11::LIB_SITE`]).
pub fn lib_site(number: u64) -> Option<u64> {
    if number & r11::LIB_SITE == 0 {
        return None;
    }
    let a = LIB_SITES.get((number & !r11::LIB_SITE) as usize)?.load(Ordering::Acquire);
    (a != 0).then_some(a)
}

/// A library plan that start-up did not apply in full: reported as
/// `"api":"dfpatch.degraded"` (a layer off is never silent).
pub struct Degraded<'a> {
    /// The library's path where it was planned.
    pub library: &'a [u8],
    /// Its planned sites, and how many were rewritten.
    pub planned: usize,
    pub applied: usize,
    pub reason: &'static str,
}

/// [`Degraded::reason`]s.
pub const NOT_LOADED: &str = "no loaded library is the planned file (another build of it, or not loaded)";
pub const THREADS: &str =
    "the process had more than one thread at start-up (code is not rewritten under running threads)";
pub const NO_PROC_MEM: &str = "/proc/self/mem could not be opened for writing";
pub const PARTIAL: &str = "some windows did not hold the planned bytes, or could not be rewritten";

/// Reports every library of `plans` as not applied, for `reason`.
pub(crate) fn report_all(plans: &[u8], reason: &'static str, report: &mut dyn FnMut(&Degraded)) {
    let Some(plans) = LibPlans::parse(plans) else { return };
    for l in plans.libs() {
        let library = plans.name(&l).unwrap_or(b"");
        report(&Degraded { library, planned: l.site_count as usize, applied: 0, reason });
    }
}

/// Applies the plans in `plans` to every object of `objects` (load base,
/// run-time `PT_DYNAMIC`, `l_name`) that is a planned library; returns how
/// many `syscall` sites and entries were rewritten. `with_syscalls`: the
/// start-up call, whose `syscall` sites keep their planned numbers (a
/// `dlmopen` namespace's copy is numbered anew), and which reports each plan
/// not applied in full (a namespace holds only some of the libraries).
/// `stubs`: the symbol layer's stubs mapping, still writable.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply(
    objects: &[(u64, u64, u64)],
    plans_bytes: &[u8],
    sys_hook: u64,
    hook: u64,
    stubs: Stubs,
    with_syscalls: bool,
    w: &mut Writer,
    report: &mut dyn FnMut(&Degraded),
) -> (usize, usize) {
    let Some(plans) = LibPlans::parse(plans_bytes) else { return (0, 0) };
    // SAFETY: `objects` are the link map's, at start-up or in a namespace
    // `dlmopen` has just made (its caller holds it open): what is read below
    // is their program headers, notes, names and code, mapped by the loader.
    let d = unsafe { Direct::new() };
    if w.mem_fd < 0 {
        if with_syscalls {
            report_all(plans_bytes, NO_PROC_MEM, report);
        }
        return (0, 0); // code can only be written through /proc/self/mem
    }
    // Sites rewritten per planned library (the first 64; more are not planned).
    let mut applied = [None::<usize>; 64];
    let mut done = (0, 0);
    // A `stat` of each object only when some library is known by its file.
    let by_file = plans.libs().any(|l| l.file_identity().is_some());
    for &(base, _, name) in objects {
        let mut id = [0u8; 32];
        let id = build_id(d, base, &mut id);
        let mut path = [0u8; 512];
        let file = if by_file { path_of(d, name, &mut path).and_then(sys::stat_size_mtime) } else { None };
        let Some((k, lib)) = plans.libs().enumerate().find(|(_, l)| match l.file_identity() {
            Some(planned) => file == Some(planned),
            None => id.is_some() && l.build_id() == id,
        }) else {
            continue;
        };
        let target = Target { d, plans, sys_hook, hook, stubs, with_syscalls };
        let (a, b) = apply_library(&target, &lib, base, w);
        if let Some(slot) = applied.get_mut(k) {
            *slot = Some(slot.unwrap_or(0) + a + b);
        }
        done = (done.0 + a, done.1 + b);
    }
    if with_syscalls {
        for (l, applied) in plans.libs().zip(applied) {
            let planned = l.site_count as usize;
            let (applied, reason) = match applied {
                None => (0, NOT_LOADED),
                Some(n) if n < planned => (n, PARTIAL),
                Some(_) => continue,
            };
            report(&Degraded { library: plans.name(&l).unwrap_or(b""), planned, applied, reason });
        }
    }
    done
}

/// A site of a library, read and checked against what is loaded: its window
/// lies in the library's code and holds the planned bytes.
fn intact(d: Direct, base: u64, s: &SiteRecord) -> bool {
    let Some(original) = s.original() else { return false };
    s.window_len as usize <= MAX_WINDOW
        && in_code(d, base, s.window, s.window_len as u64)
        && original.iter().enumerate().all(|(k, &b)| d.get::<1>(base.wrapping_add(s.window) + k as u64) == Some([b]))
}

/// What [`apply`] applies, the same for every library: the plans, where
/// the hooks are, the stubs' mapping (see [`apply`]).
struct Target<'a> {
    d: Direct,
    plans: LibPlans<'a>,
    sys_hook: u64,
    hook: u64,
    stubs: Stubs,
    with_syscalls: bool,
}

/// [`apply`] for one loaded library (at `base`) and its plan `lib`.
fn apply_library(target: &Target, lib: &LibRecord, base: u64, w: &mut Writer) -> (usize, usize) {
    let Target { d, plans, sys_hook, hook, stubs, with_syscalls } = *target;
    let (first, n) = (lib.first_site as usize, lib.site_count as usize);
    if first.checked_add(n).is_none_or(|end| end > plans.site_count()) || n > MAX_LIB_SITES {
        return (0, 0);
    }
    let mut sites = [None::<SiteRecord>; MAX_LIB_SITES];
    for (i, s) in sites.iter_mut().enumerate().take(n) {
        *s = plans.site(first + i);
    }
    let sites = &sites[..n];
    // Every window must lie in the library's code and hold the bytes
    // planned for, or nothing is touched.
    if !sites.iter().all(|s| s.as_ref().is_some_and(|s| intact(d, base, s))) {
        return (0, 0);
    }
    let site = |i: usize| sites[i].as_ref().expect("checked above");
    // Each site's trampoline, then (entries) its hop.
    let room = |s: &SiteRecord| s.tramp_len as usize + if s.is_entry() { HOP_LEN } else { 0 };
    let total: usize = (0..n).map(|i| room(site(i))).sum();
    let Some(near) = map_near(base, total as u64) else { return (0, 0) };
    let damaged = || {
        // SAFETY: our own mapping, which nothing refers to yet.
        unsafe { sys::unmap(near, total as u64) };
        (0, 0)
    };
    // Trampolines first, while the mapping is writable; `to[i]`: where
    // site i's window jumps (0: leave it). Nothing outside this mapping
    // changes before it is sealed: a stub sent to a trampoline that is
    // not executable yet would crash the next call.
    let mut to = [0u64; MAX_LIB_SITES];
    // Each `syscall` site's number (its LIB_SITES index), or each entry's stub slot.
    let mut number = [u16::MAX; MAX_LIB_SITES];
    let mut placed = 0usize;
    for (i, (dest, number)) in to.iter_mut().zip(number.iter_mut()).enumerate().take(n) {
        let s = site(i);
        let Some(bytes) = plans.tramp(s) else { return damaged() };
        let len = bytes.len();
        let tramp = near + placed as u64;
        placed += room(s);
        if placed > total {
            return damaged(); // a damaged table: touch nothing more
        }
        for (k, &b) in bytes.iter().enumerate() {
            // SAFETY: inside our own read-write mapping of `total` bytes.
            unsafe { core::ptr::write_volatile((tramp + k as u64) as *mut u8, b) };
        }
        if s.is_entry() {
            // rel32 fields that leave the trampoline were encoded for
            // TRAMP_BASE in the library's address space.
            let delta = base.wrapping_add(TRAMP_BASE).wrapping_sub(tramp) as i64;
            let fixed = s.fixup_count as usize <= MAX_FIXUPS
                && s.fixups().unwrap_or(&[]).iter().all(|&field| {
                    let field = field as usize;
                    let Some(b) = bytes.get(field..field + 4) else { return false };
                    let rel = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64 + delta;
                    if rel != rel as i32 as i64 {
                        return false;
                    }
                    // SAFETY: field + 4 <= len, in our mapping.
                    unsafe { core::ptr::write_unaligned((tramp + field as u64) as *mut i32, rel as i32) };
                    true
                });
            let Some(api) = ApiId::from_u16(s.api) else { continue };
            if fixed {
                let hop = tramp + len as u64;
                if let Some(k) = entry_slot(api, base.wrapping_add(s.target), hook, stubs) {
                    let code = hop_code(
                        hop,
                        r11::STUB as u32 | r11::ENTRY as u32 | k,
                        hook,
                        tramp,
                        api.prot_exec_filter().is_some(),
                    );
                    for (i, &x) in code.iter().enumerate() {
                        // SAFETY: the hop's place in our own read-write mapping, HOP_LEN bytes (counted in `room`).
                        unsafe { core::ptr::write_volatile((hop + i as u64) as *mut u8, x) };
                    }
                    *dest = hop;
                    *number = k as u16;
                }
            }
            continue;
        }
        // The planned number, or in a namespace's copy a new one (none for
        // a trampoline that asks nothing: `number_at` 0).
        let k = if with_syscalls {
            lib.first_site as usize + i
        } else if s.number_at == 0 {
            usize::from(u16::MAX)
        } else {
            let p = s.number_at as usize;
            if p + 4 > len {
                continue;
            }
            let k = NEXT_LIB_SITE.fetch_add(1, Ordering::Relaxed);
            if k >= LIB_SITE_NUMBERS {
                continue;
            }
            let imm = (r11::LIB_SITE as u32) | k as u32;
            // SAFETY: p + 4 <= len, in our mapping.
            unsafe { core::ptr::write_unaligned((tramp + p as u64) as *mut u32, imm) };
            k
        };
        *number = k as u16;
        let (slot, back) = (s.slot_at as usize, s.back_at);
        if slot + 16 > len || s.resume_at as usize >= len || (back != NO_JUMP_BACK && back as usize + 4 > len) {
            return damaged();
        }
        // The system call runs in a thunk of the runtime's, inside the
        // backstop's range; without one free the site stays as it is.
        let spawn = s.kind == crate::contract::site_kind::SYSCALL_SPAWN;
        let Some(thunk) =
            crate::backstop::thunk(tramp + s.resume_at as u64, spawn, crate::backstop::Serves::Trampoline)
        else {
            continue;
        };
        // SAFETY: slot + 16 <= len (the planner puts the slots last), in our mapping.
        unsafe {
            core::ptr::write_unaligned((tramp + slot as u64) as *mut u64, sys_hook);
            core::ptr::write_unaligned((tramp + slot as u64 + 8) as *mut u64, thunk);
        }
        if back != NO_JUMP_BACK {
            let from = tramp + back as u64 + 4;
            let rel = base.wrapping_add(s.window).wrapping_add(s.window_len as u64).wrapping_sub(from) as i64;
            if rel != rel as i32 as i64 {
                continue; // out of reach: this site stays as it is
            }
            // SAFETY: back + 4 <= len, in our mapping.
            unsafe { core::ptr::write_unaligned((tramp + back as u64) as *mut i32, rel as i32) };
        }
        *dest = tramp;
    }
    // SAFETY: our own mapping, now holding only the trampolines and hops.
    if unsafe { sys::mprotect(near, total as u64, sys::PROT_READ | sys::PROT_EXEC) }.is_err() {
        return damaged();
    }
    // The windows, in address order, a page at a time (see `write_windows`).
    let mut order = [0u16; MAX_LIB_SITES];
    let mut m = 0;
    for (i, &dest) in to.iter().enumerate().take(n) {
        let s = site(i);
        let from = base.wrapping_add(s.window);
        if dest == 0 || jmp_rel32(from, dest, s.window_len as usize).is_none() {
            continue; // this site stays as it is
        }
        if s.is_entry() {
            // The trampoline is executable now: calls through the
            // function's stub go to it from here on (before the entry
            // itself is redirected to the hop).
            retarget(number[i] as usize, dest.wrapping_sub(s.tramp_len as u64), hook, stubs);
        }
        order[m] = i as u16;
        m += 1;
    }
    let order = &mut order[..m];
    order.sort_unstable_by_key(|&i| site(i as usize).window);
    let (mut syscalls, mut entries) = (0, 0);
    let window = |i: u16| {
        let s = site(i as usize);
        (base.wrapping_add(s.window), s.window_len as usize)
    };
    let jump = |i: u16| {
        let (from, len) = window(i);
        jmp_rel32(from, to[i as usize], len)
    };
    write_windows(w.mem_fd, order, &window, &jump, &mut |i| {
        let s = site(i as usize);
        if s.is_entry() {
            entries += 1;
        } else {
            if let Some(slot) = LIB_SITES.get(number[i as usize] as usize) {
                slot.store(base.wrapping_add(s.target), Ordering::Release);
            }
            syscalls += 1;
        }
    });
    if entries > 0 {
        if let Some((lo, hi)) = object_range(d, base) {
            add_detoured(lo, hi);
        }
    }
    if syscalls + entries > 0 {
        // What now holds the hooks (see `guard`): the trampolines, and the
        // library's rewritten code. A library loaded at start-up stays; a
        // namespace's copy may be unloaded.
        crate::guard::protect(near, near + total as u64, crate::guard::OURS);
        let kind = if with_syscalls { crate::guard::PINNED } else { crate::guard::CODE };
        // SAFETY: `base` is the loaded library's ELF header (see `apply`).
        unsafe { crate::guard::protect_object(base, base, kind) };
    }
    (syscalls, entries)
}

/// Writes the windows `order` names (in address order; `window(i)`: where
/// window `i` starts and its length; `jump(i)`: its new bytes) through
/// `/proc/self/mem`, one `pwrite` per run of windows within a page: the
/// run's bytes as they are in memory, the windows' new bytes over them
/// (libc's 500-odd `syscall` sites lie in some 60 pages). `done(i)` for each
/// window written.
fn write_windows(
    fd: i32,
    order: &[u16],
    window: &dyn Fn(u16) -> (u64, usize),
    jump: &dyn Fn(u16) -> Option<[u8; 32]>,
    done: &mut dyn FnMut(u16),
) {
    const SPAN: usize = 4096 + MAX_WINDOW;
    let mut buf = [0u8; SPAN];
    let (mut at, mut written_to) = (0, 0u64);
    while at < order.len() {
        // The run: windows starting in the first one's page. (A window that
        // overlaps the one before, which a damaged plan could hold, is left.)
        let (lo, _) = window(order[at]);
        if lo < written_to {
            at += 1;
            continue;
        }
        let page_end = (lo | 4095) + 1;
        let mut end = at;
        let mut hi = lo;
        while let Some(&i) = order.get(end) {
            let (from, len) = window(i);
            if from >= page_end || from < hi {
                break;
            }
            hi = from + len as u64;
            end += 1;
        }
        written_to = hi;
        let span = (hi - lo) as usize;
        let ok = span <= SPAN
            && mem::read(lo, &mut buf[..span]) == span
            && order[at..end].iter().all(|&i| {
                let (from, len) = window(i);
                let o = (from - lo) as usize;
                match (buf.get_mut(o..o + len), jump(i)) {
                    (Some(to), Some(new)) => {
                        to.copy_from_slice(&new[..len]);
                        true
                    }
                    _ => false,
                }
            })
            && sys::pwrite(fd, &buf[..span], lo) == Ok(span as u64);
        if ok {
            order[at..end].iter().for_each(|&i| done(i));
        }
        at = end;
    }
}

/// Whether `[vaddr, vaddr + len)` (link-time addresses) lies inside one
/// executable `PT_LOAD` segment of the object loaded at `base`.
fn in_code(d: Direct, base: u64, vaddr: u64, len: u64) -> bool {
    program_headers(d, base).any(|p| {
        p.kind == PT_LOAD
            && p.flags & PF_X != 0
            && vaddr >= p.vaddr
            && vaddr.checked_add(len).is_some_and(|end| end <= p.vaddr + p.filesz)
    })
}

/// The run-time span of the object loaded at `base` (its `PT_LOAD` segments).
fn object_range(d: Direct, base: u64) -> Option<(u64, u64)> {
    let (lo, hi) = program_headers(d, base).filter(|p| p.kind == PT_LOAD).fold((u64::MAX, 0u64), |(lo, hi), p| {
        let start = base.wrapping_add(p.vaddr);
        (lo.min(start), hi.max(start.wrapping_add(p.memsz)))
    });
    (hi > lo).then_some((lo, hi))
}

/// Whether the process has exactly one thread (`/proc/self/stat`, field 20).
pub(crate) fn single_threaded() -> bool {
    let Ok(fd) = sys::open(b"/proc/self/stat\0", sys::O_RDONLY | sys::O_CLOEXEC, 0) else { return false };
    let mut buf = [0u8; 1024];
    let n = sys::read(fd, &mut buf).unwrap_or(0) as usize;
    sys::close(fd);
    let text = buf.get(..n).unwrap_or(&[]);
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let Some(close) = text.iter().rposition(|&b| b == b')') else { return false };
    let mut fields = text.get(close + 1..).unwrap_or(&[]).split(|&b| b == b' ').filter(|f| !f.is_empty());
    // After ')' come fields 3, 4, ...: num_threads is field 20, the 18th of them.
    fields.nth(17) == Some(b"1")
}

/// A read-write mapping of `len` bytes within reach of a rel32 from `base`.
fn map_near(base: u64, len: u64) -> Option<u64> {
    const REACH: u64 = 1 << 30;
    for k in 0..24u64 {
        let hint = if k == 0 { 0 } else { base.saturating_sub(k << 26) };
        let Some(at) = sys::map_anonymous_near(hint, len) else { continue };
        if at.abs_diff(base) < REACH {
            return Some(at);
        }
        // SAFETY: ours, unused.
        unsafe { sys::unmap(at, len) };
    }
    None
}

/// The GNU build ID of the object loaded at `base`, from its program headers.
fn build_id(d: Direct, base: u64, out: &mut [u8; 32]) -> Option<&[u8]> {
    for p in program_headers(d, base).filter(|p| p.kind == PT_NOTE) {
        let (vaddr, size) = (p.vaddr, p.filesz);
        let notes = base.wrapping_add(vaddr);
        let mut at = 0u64;
        while at + 12 <= size.min(4096) {
            let (namesz, descsz, kind) = (d.u32(notes + at)?, d.u32(notes + at + 4)?, d.u32(notes + at + 8)?);
            let name_at = at + 12;
            let desc_at = name_at + (namesz as u64).div_ceil(4) * 4;
            if kind == 3 && namesz == 4 && d.get::<4>(notes + name_at)? == *b"GNU\0" && descsz as usize <= out.len() {
                for (k, b) in out.iter_mut().take(descsz as usize).enumerate() {
                    *b = d.get::<1>(notes + desc_at + k as u64)?[0];
                }
                return out.get(..descsz as usize);
            }
            at = desc_at + (descsz as u64).div_ceil(4) * 4;
        }
    }
    None
}

/// The NUL-terminated path at `name` (a link map's `l_name`), copied.
fn path_of(d: Direct, name: u64, out: &mut [u8; 512]) -> Option<&[u8]> {
    for k in 0..out.len() {
        let b = d.get::<1>(name.checked_add(k as u64)?)?[0];
        out[k] = b;
        if b == 0 {
            return (k > 0).then_some(&out[..=k]);
        }
    }
    None
}
