//! Layer 2: the monitored functions as every loaded library sees them.
//!
//! At start-up (before library constructors in glibc executables, through
//! `DT_PREINIT_ARRAY`; at the entry point, before musl runs them), for every
//! object of the link map that defines a monitored function (libc), each
//! definition in its dynamic symbol table (every version: glibc has
//! `posix_spawn@GLIBC_2.2.5` and `@@GLIBC_2.15`) gets a stub of ours, and its
//! `st_value` is rewritten to point at that stub. From then on everything
//! that finds the function through the dynamic symbol table gets the stub:
//! lazy binding of any library's PLT, libraries loaded later by `dlopen`,
//! `dlsym`/`dlvsym`, and code that walks the link map and parses libc's
//! symbol table by hand, as the xz backdoor did. GOT slots and function
//! pointers already holding a real address (immediate binding, `GLOB_DAT`,
//! `R_X86_64_64`) are rewritten to the stub too, in every object.
//!
//! Read-only memory (the symbol table, RELRO) is written through
//! `/proc/self/mem`, which the kernel allows without making the page
//! writable; where that is refused, the page is made writable for the one
//! write and its protection restored. Stubs live in a mapping written first
//! and then made read+execute: nothing is ever writable and executable.
//!
//! The structures walked here (link map, dynamic sections, hash, symbol,
//! string and relocation tables) are the loader's own, already used by it to
//! load and relocate these objects: they are read directly ([`rd`]), not
//! through `process_vm_readv` (which cost 6,700 system calls, 13 ms, per
//! start-up).
//!
//! A stub: `endbr64; [test $PROT_EXEC,%dl; jz real;] mov $(FLAG|i),%r11d;
//! jmp *dfp_hook; real: jmp *real_i` (absolute jumps: the mapping may be far
//! from both).

use crate::apis::{ApiId, Class};
use crate::loader::{
    definitions_in, dyn_value, loaded as rd, loaded_u32 as rd_u32, loaded_u64 as rd_u64, program_headers, Direct,
    Tables, PF_X, PT_LOAD, PT_NOTE,
};
use crate::ptable::PolicyTable;
use crate::{loader, sys};
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};

/// Set in `%r11` by our stubs (hook numbers of the executable's own table are small).
pub const FLAG: u64 = 1 << 31;
/// Also set (with [`FLAG`]) when the call came through the function's own
/// entry, detoured in memory (layer `entry`), not through its symbol.
pub const ENTRY: u64 = 1 << 29;
/// Where a detoured entry's trampoline is assumed to sit, in its library's
/// address space, when the rewriter encodes it (see the rewriter's `libplan`).
pub const TRAMP_BASE: u64 = 0x4000_0000;
/// Most rel32 fixups of one entry trampoline.
pub const MAX_FIXUPS: usize = 4;
/// Bytes of a hop (the jump from a detoured entry into the hook).
const HOP: usize = 32;
const MAX: usize = 1024;
/// Stubs in one mapping (start-up, then each `dlmopen` namespace).
const REGION_STUBS: usize = 128;
const STUB: u64 = 64;
const MAX_OBJECTS: usize = 256;

const DT_PLTRELSZ: u64 = 2;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_JMPREL: u64 = 23;

struct Slot {
    api: AtomicU16,
    /// Where the hook sends the call on: the function (or, when its entry
    /// is detoured, the trampoline that runs its first instructions).
    real: AtomicU64,
    /// The function's own address, which bound references hold.
    function: AtomicU64,
}

static SLOTS: [Slot; MAX] =
    [const { Slot { api: AtomicU16::new(0), real: AtomicU64::new(0), function: AtomicU64::new(0) } }; MAX];
/// The objects whose entries were detoured (libc; another copy in each
/// `dlmopen` namespace): `[lo, hi)` pairs at run time, 0 when unused.
const MAX_DETOURED: usize = 17; // the first namespace and glibc's 15 others, and one spare
static DETOURED: [[AtomicU64; 2]; MAX_DETOURED] = [const { [const { AtomicU64::new(0) }; 2] }; MAX_DETOURED];
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The stubs' mapping (0: none).
static REGION: AtomicU64 = AtomicU64::new(0);

/// What a stub (or hop) of ours stands for: its API and where to send the call.
pub fn entry(r11: u64) -> Option<(ApiId, u64)> {
    let i = (r11 & !(FLAG | ENTRY)) as usize;
    if r11 & FLAG == 0 || i >= COUNT.load(Ordering::Acquire) {
        return None;
    }
    let s = SLOTS.get(i)?;
    Some((ApiId::from_u16(s.api.load(Ordering::Relaxed))?, s.real.load(Ordering::Relaxed)))
}

/// The real function behind `addr` when `addr` is one of our stubs (a GOT
/// slot of the executable bound after start-up holds a stub).
pub fn real_of_stub(addr: u64) -> Option<u64> {
    let region = REGION.load(Ordering::Acquire);
    let i = addr.checked_sub(region)? / STUB;
    let i_max = COUNT.load(Ordering::Acquire).min(REGION_STUBS);
    if region == 0 || addr % STUB != region % STUB || i as usize >= i_max {
        return None;
    }
    entry(FLAG | i).map(|(_, real)| real)
}

/// Where a call of `api` goes once the runtime let it through: the real
/// function of its first redirected definition (start-up's, libc's).
pub fn real_of_api(api: ApiId) -> Option<u64> {
    let n = COUNT.load(Ordering::Acquire).min(REGION_STUBS);
    SLOTS.iter().take(n).find(|s| s.api.load(Ordering::Relaxed) == api as u16).map(|s| s.real.load(Ordering::Relaxed))
}

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

/// Set in `%r11` by the trampolines of libraries' `syscall` instructions.
pub const LIB_SITE_FLAG: u64 = 1 << 30;
/// Most library `syscall` sites one executable carries plans for.
pub const MAX_LIB_SITES: usize = 512;
/// Run-time numbers of library `syscall` sites: the planned ones, then the
/// copies in `dlmopen` namespaces (numbered from [`NEXT_LIB_SITE`] on).
const LIB_SITE_NUMBERS: usize = 2 * MAX_LIB_SITES;
static NEXT_LIB_SITE: AtomicUsize = AtomicUsize::new(MAX_LIB_SITES);
/// Run-time address of each library `syscall` rewritten (0: not applied).
static LIB_SITES: [AtomicU64; LIB_SITE_NUMBERS] = [const { AtomicU64::new(0) }; LIB_SITE_NUMBERS];

/// The run-time address of library `syscall` site `r11` (see [`LIB_SITE_FLAG`]).
pub fn lib_site(r11: u64) -> Option<u64> {
    if r11 & LIB_SITE_FLAG == 0 {
        return None;
    }
    let a = LIB_SITES.get((r11 & !LIB_SITE_FLAG) as usize)?.load(Ordering::Acquire);
    (a != 0).then_some(a)
}

/// How many definitions and references were redirected.
#[derive(Default, Clone, Copy)]
pub struct Installed {
    pub symbols: usize,
    pub references: usize,
    pub syscalls: usize,
    pub entries: usize,
}

/// Redirects the monitored functions that `p` watches in every loaded
/// object. `exe_dynamic`: the executable's `PT_DYNAMIC` at run time; `hook`:
/// `dfp_hook`'s run-time address. Runs once, at start-up.
pub fn install(exe_dynamic: u64, p: &PolicyTable, hook: u64, plans: &[u8], sys_hook: u64) -> Installed {
    let mut objects = [(0u64, 0u64, 0u64); MAX_OBJECTS];
    let n = link_map(exe_dynamic, &mut objects);
    let Some(objects) = objects.get(..n) else { return Installed::default() };
    // Their call frame tables, for event stacks (the executable is registered already).
    for &(base, _, name) in objects.iter().skip(1) {
        crate::unwind::register(base, base, name);
    }
    // Definitions in every object but the executable (index 0); references in all.
    redirect(objects.get(1..).unwrap_or(&[]), objects, p, hook, plans, sys_hook, true)
}

/// The same for a link-map namespace that `dlmopen` has just made (glibc):
/// it has a libc of its own, whose functions must be redirected too.
/// `handle`: what `dlmopen` returned (a `struct link_map *`).
pub fn install_namespace(handle: u64, p: &PolicyTable, hook: u64, plans: &[u8], sys_hook: u64) -> Installed {
    let mut objects = [(0u64, 0u64, 0u64); MAX_OBJECTS];
    // Back to the namespace's first object, then along it.
    let mut head = handle;
    for _ in 0..MAX_OBJECTS {
        match rd_u64(head.wrapping_add(32)) {
            Some(prev) if prev != 0 => head = prev,
            _ => break,
        }
    }
    let n = walk_from(head, &mut objects);
    let Some(objects) = objects.get(..n) else { return Installed::default() };
    redirect(objects, objects, p, hook, plans, sys_hook, false)
}

/// Each definition of a watched function in `defining` gets a stub (in a
/// mapping of its own) and its symbol points there (step 1); the patch-time
/// plans are applied, single-threaded only (step 3); references in
/// `referencing` already bound to a redirected function go to its stub
/// (step 2). `first`: the start-up call, whose stubs are the ones an
/// executable's GOT may hold.
fn redirect(
    defining: &[(u64, u64, u64)],
    referencing: &[(u64, u64, u64)],
    p: &PolicyTable,
    hook: u64,
    plans: &[u8],
    sys_hook: u64,
    first: bool,
) -> Installed {
    let mut done = Installed::default();
    let start = COUNT.load(Ordering::Acquire);
    let Some(region) = sys::map_anonymous(REGION_STUBS as u64 * STUB) else { return done };
    let stub_of = |i: usize| region + (i - start) as u64 * STUB;
    let mut w = Writer::open();

    // 1. Definitions.
    for &(base, dynamic, _) in defining {
        let Some(tables) = Tables::of(&Direct, base, dynamic) else { continue };
        for &api in ApiId::ALL {
            if api.class() == Class::Process || !p.watches(api as u16) {
                continue;
            }
            definitions_in(&Direct, &tables, api.name().as_bytes(), |sym, value| {
                let i = COUNT.load(Ordering::Relaxed);
                if i >= MAX || i - start >= REGION_STUBS {
                    return;
                }
                let real = base.wrapping_add(value);
                let stub = stub_of(i);
                write_stub(stub, i as u32, hook, real, api.shape().prot_exec_filter().is_some());
                SLOTS[i].api.store(api as u16, Ordering::Relaxed);
                SLOTS[i].real.store(real, Ordering::Relaxed);
                SLOTS[i].function.store(real, Ordering::Relaxed);
                // st_value is relative to the object's base: the sum wraps to the stub.
                if w.write_u64(sym + 8, stub.wrapping_sub(base)) {
                    COUNT.store(i + 1, Ordering::Release);
                    done.symbols += 1;
                }
            });
        }
    }
    // 3. Raw system calls and libc's entries planned at patch time: only
    // while the process has one thread (with musl, library constructors have
    // run before the entry point and may have started threads that could be
    // executing a window while it is rewritten).
    if !plans.is_empty() && single_threaded() {
        let stubs = Stubs { region, start };
        // A namespace's copy shares the planned sites' numbers with the first
        // copy: only its entries are applied.
        (done.syscalls, done.entries) = apply_plans(defining, plans, sys_hook, hook, stubs, first, &mut w);
    }
    let count = COUNT.load(Ordering::Acquire);
    // SAFETY: the mapping is ours and only holds the stubs written above.
    let sealed = unsafe { sys::mprotect(region, REGION_STUBS as u64 * STUB, 5) }.is_ok();
    if count == start || !sealed {
        w.close();
        return done;
    }
    if first {
        REGION.store(region, Ordering::Release);
    }

    // 2. References already bound to a real function.
    for &(base, dynamic, _) in referencing {
        for (table, size) in [(DT_JMPREL, DT_PLTRELSZ), (DT_RELA, DT_RELASZ)] {
            let (Some(at), Some(len)) =
                (dyn_value(&Direct, dynamic, base, table), dyn_value(&Direct, dynamic, 0, size))
            else {
                continue;
            };
            let stubs = Stubs { region, start };
            done.references += redirect_references(&mut w, base, at, len.min(64 << 20), stubs, count);
        }
    }
    w.close();
    done
}

/// One mapping of stubs: slot `i` (from `start`) has its stub at
/// `region + (i - start) * STUB`.
#[derive(Clone, Copy)]
struct Stubs {
    region: u64,
    start: usize,
}

impl Stubs {
    fn of(&self, i: usize) -> u64 {
        self.region + (i - self.start) as u64 * STUB
    }
}

/// Applies the patch-time plans (`libplan` in the rewriter) to every loaded
/// library whose GNU build ID is the planned one: trampolines copied into a
/// mapping within ±2 GiB of the library (then made read+execute), their jump
/// back and hook address filled in, and each window replaced by a jump,
/// written through `/proc/self/mem` (code is never made writable). A window
/// is a `syscall` with its neighbours, or the first instructions of a
/// monitored function (libc's), which then jump to a hop of ours that enters
/// the hook as that function's stub does, the trampoline standing for the
/// function from then on. `stubs`: the stubs' mapping, still writable.
/// Returns how many `syscall` sites and entries were rewritten.
///
/// Layout of `plans`: `u32` library count, `u32` site count; per library 48
/// bytes (build ID [32], its length, first site, site count, 0); per site 80
/// bytes (window offset from the base u64, `syscall` (or function) offset
/// u64, trampoline offset in `plans` u32, its length u32, jump-back rel32
/// offset in it or u32::MAX, hook-slot offset u32, window length u32; for an
/// entry: API u16, fixup count u8, 1, fixup offsets u16 × [`MAX_FIXUPS`],
/// else 12 zero bytes; the window's original bytes [32]); the trampolines. A
/// build-ID length of u32::MAX means the library had none: its size, mtime
/// and mtime nanoseconds (three u64) must match the loaded path's instead.
/// Every window is checked to hold its original bytes before it is rewritten.
fn apply_plans(
    objects: &[(u64, u64, u64)],
    plans: &[u8],
    sys_hook: u64,
    hook: u64,
    stubs: Stubs,
    with_syscalls: bool,
    w: &mut Writer,
) -> (usize, usize) {
    let u16_at = |at: usize| plans.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| plans.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let u64_at =
        |at: usize| plans.get(at..at + 8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    let (Some(nlibs), Some(nsites)) = (u32_at(0), u32_at(4)) else { return (0, 0) };
    if w.mem_fd < 0 {
        return (0, 0); // code can only be written through /proc/self/mem
    }
    let sites_at = 8 + nlibs * 48;
    let (mut syscalls, mut entries) = (0, 0);
    // A `stat` of each object only when some library is known by its file.
    let by_file = (0..nlibs).any(|k| u32_at(8 + k * 48 + 32) == Some(0xffff_ffff));
    for &(base, _, name) in objects {
        let mut id = [0u8; 32];
        let id_len = build_id(base, &mut id);
        let mut path = [0u8; 512];
        let file = if by_file { path_of(name, &mut path).and_then(sys::stat_size_mtime) } else { None };
        let Some(lib) = (0..nlibs).find(|&k| {
            let at = 8 + k * 48;
            match (u32_at(at + 32), id_len, file) {
                (Some(0xffff_ffff), _, Some((size, mtime, nsec))) => {
                    u64_at(at) == Some(size) && u64_at(at + 8) == Some(mtime) && u64_at(at + 16) == Some(nsec)
                }
                (Some(n), Some(len), _) => n == len && plans.get(at..at + len) == id.get(..len),
                _ => false,
            }
        }) else {
            continue;
        };
        let (Some(first), Some(n)) = (u32_at(8 + lib * 48 + 36), u32_at(8 + lib * 48 + 40)) else { continue };
        if first + n > nsites {
            continue;
        }
        let site = |i: usize| sites_at + (first + i) * 80;
        let is_entry = |i: usize| plans.get(site(i) + 39) == Some(&1);
        // Every window must lie in the library's code and hold the bytes
        // planned for, or nothing is touched (the table is only read, never
        // trusted to point at mapped memory).
        let intact = (0..n).all(|i| {
            let at = site(i);
            match (u64_at(at), u32_at(at + 32)) {
                (Some(vaddr), Some(wlen)) if wlen <= 32 && in_code(base, vaddr, wlen as u64) => (0..wlen).all(|k| {
                    rd::<1>(base.wrapping_add(vaddr) + k as u64).map(|b| b[0]) == plans.get(at + 48 + k).copied()
                }),
                _ => false,
            }
        });
        if !intact {
            continue;
        }
        // Each site's trampoline, then (entries) its hop.
        let room = |i: usize| u32_at(site(i) + 20).map(|len| len + if is_entry(i) { HOP } else { 0 });
        let total: usize = (0..n).filter_map(room).sum();
        let Some(near) = map_near(base, total as u64) else { continue };
        // Trampolines first, while the mapping is writable; `to[i]`: where
        // site i's window jumps (0: leave it). Nothing outside this mapping
        // changes before it is sealed: a stub sent to a trampoline that is
        // not executable yet would crash the next call.
        let mut to = [0u64; MAX_LIB_SITES];
        // Each `syscall` site's number (its LIB_SITES index), or each
        // entry's stub slot.
        let mut number = [u16::MAX; MAX_LIB_SITES];
        let damaged = |near: u64| {
            // SAFETY: our own mapping, which nothing refers to yet.
            unsafe { sys::unmap(near, total as u64) };
            (syscalls, entries)
        };
        let mut placed = 0usize;
        for (i, (dest, number)) in to.iter_mut().zip(number.iter_mut()).enumerate().take(n) {
            let at = site(i);
            let (Some(off), Some(len), Some(back), Some(slot), Some(vaddr), Some(wlen)) =
                (u32_at(at + 16), u32_at(at + 20), u32_at(at + 24), u32_at(at + 28), u64_at(at), u32_at(at + 32))
            else {
                return damaged(near);
            };
            let Some(bytes) = plans.get(off..off + len) else { return damaged(near) };
            let tramp = near + placed as u64;
            placed += room(i).unwrap_or(0);
            if placed > total {
                return damaged(near); // a damaged table: touch nothing more
            }
            for (k, &b) in bytes.iter().enumerate() {
                // SAFETY: inside our own read-write mapping of `total` bytes.
                unsafe { core::ptr::write_volatile((tramp + k as u64) as *mut u8, b) };
            }
            if is_entry(i) {
                // rel32 fields that leave the trampoline were encoded for
                // TRAMP_BASE in the library's address space.
                let delta = base.wrapping_add(TRAMP_BASE).wrapping_sub(tramp) as i64;
                let nfix = plans.get(at + 38).copied().unwrap_or(0) as usize;
                let fixed = nfix <= MAX_FIXUPS
                    && (0..nfix).all(|k| {
                        let Some(field) = u16_at(at + 40 + 2 * k).filter(|&f| f + 4 <= len) else { return false };
                        let b = &bytes[field..field + 4];
                        let rel = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64 + delta;
                        if rel != rel as i32 as i64 {
                            return false;
                        }
                        // SAFETY: field + 4 <= len, in our mapping.
                        unsafe { core::ptr::write_unaligned((tramp + field as u64) as *mut i32, rel as i32) };
                        true
                    });
                let (Some(api), Some(function)) = (u16_at(at + 36), u64_at(at + 8)) else { continue };
                let Some(api) = ApiId::from_u16(api as u16) else { continue };
                if fixed {
                    let hop = tramp + len as u64;
                    if let Some(k) = entry_slot(api, base.wrapping_add(function), hook, stubs) {
                        write_hop(hop, k, hook, tramp, api.shape().prot_exec_filter().is_some());
                        *dest = hop;
                        *number = k as u16;
                    }
                }
                continue;
            }
            // The planned number, or in a namespace's copy a new one.
            let k = if with_syscalls {
                first + i
            } else {
                match u32_at(at + 36).filter(|&p| p + 4 <= len) {
                    Some(p) => {
                        let k = NEXT_LIB_SITE.fetch_add(1, Ordering::Relaxed);
                        if k >= LIB_SITE_NUMBERS {
                            continue;
                        }
                        let imm = (LIB_SITE_FLAG as u32) | k as u32;
                        // SAFETY: p + 4 <= len, in our mapping.
                        unsafe { core::ptr::write_unaligned((tramp + p as u64) as *mut u32, imm) };
                        k
                    }
                    None => continue,
                }
            };
            *number = k as u16;
            if slot + 8 > len || (back != u32::MAX as usize && back + 4 > len) {
                return damaged(near);
            }
            // SAFETY: slot_at + 8 <= len (the planner puts the slot last), in our mapping.
            unsafe { core::ptr::write_unaligned((tramp + slot as u64) as *mut u64, sys_hook) };
            if back != u32::MAX as usize {
                let from = tramp + back as u64 + 4;
                let rel = base.wrapping_add(vaddr).wrapping_add(wlen as u64).wrapping_sub(from) as i64;
                if rel != rel as i32 as i64 {
                    continue; // out of reach: this site stays as it is
                }
                // SAFETY: back + 4 <= len, in our mapping.
                unsafe { core::ptr::write_unaligned((tramp + back as u64) as *mut i32, rel as i32) };
            }
            *dest = tramp;
        }
        // SAFETY: our own mapping, now holding only the trampolines and hops.
        if unsafe { sys::mprotect(near, total as u64, 5) }.is_err() {
            damaged(near);
            continue;
        }
        let mut detoured = false;
        for (i, (&dest, &number)) in to.iter().zip(number.iter()).enumerate().take(n) {
            let at = site(i);
            let (Some(vaddr), Some(syscall), Some(wlen)) = (u64_at(at), u64_at(at + 8), u32_at(at + 32)) else {
                break;
            };
            let from = base.wrapping_add(vaddr);
            let rel = dest.wrapping_sub(from + 5) as i64;
            if dest == 0 || !(5..=32).contains(&wlen) || rel != rel as i32 as i64 {
                continue;
            }
            if is_entry(i) {
                // The trampoline is executable now: calls through the
                // function's stub go to it from here on (before the entry
                // itself is redirected to the hop).
                let tramp = dest.wrapping_sub(u32_at(at + 20).unwrap_or(0) as u64);
                retarget(number as usize, tramp, hook, stubs);
            }
            let mut jump = [0xccu8; 32];
            jump[0] = 0xe9;
            jump[1..5].copy_from_slice(&(rel as i32).to_le_bytes());
            if sys::pwrite(w.mem_fd, &jump[..wlen], from) != Ok(wlen as u64) {
                continue;
            }
            if is_entry(i) {
                entries += 1;
                detoured = true;
            } else {
                if let Some(slot) = LIB_SITES.get(number as usize) {
                    slot.store(base.wrapping_add(syscall), Ordering::Release);
                }
                syscalls += 1;
            }
        }
        if detoured {
            if let Some((lo, hi)) = object_range(base) {
                add_detoured(lo, hi);
            }
        }
    }
    (syscalls, entries)
}

/// The stub slot for calls arriving at the detoured entry of `function`:
/// the symbol layer's slot for it in this mapping (found by the function's
/// address), or a new one whose stub goes to the function itself until
/// [`retarget`] sends it to the trampoline. Returns the slot's index.
fn entry_slot(api: ApiId, function: u64, hook: u64, stubs: Stubs) -> Option<u32> {
    let count = COUNT.load(Ordering::Relaxed);
    // Only this mapping's slots: older mappings are sealed.
    if let Some(i) =
        (stubs.start..count).find(|&i| SLOTS.get(i).is_some_and(|s| s.function.load(Ordering::Relaxed) == function))
    {
        return Some(i as u32);
    }
    if count >= MAX || count - stubs.start >= REGION_STUBS {
        return None;
    }
    write_stub(stubs.of(count), count as u32, hook, function, api.shape().prot_exec_filter().is_some());
    SLOTS[count].api.store(api as u16, Ordering::Relaxed);
    SLOTS[count].real.store(function, Ordering::Relaxed);
    SLOTS[count].function.store(function, Ordering::Relaxed);
    COUNT.store(count + 1, Ordering::Release);
    Some(count as u32)
}

/// Sends the calls of every slot of this mapping that stands for the same
/// function as slot `k` (every version of its symbol) to `tramp`, the
/// trampoline that runs the function's first instructions: through the
/// detoured entry they would enter the hook twice.
fn retarget(k: usize, tramp: u64, hook: u64, stubs: Stubs) {
    let count = COUNT.load(Ordering::Relaxed);
    let Some(function) = SLOTS.get(k).map(|s| s.function.load(Ordering::Relaxed)) else { return };
    for (i, s) in SLOTS.iter().enumerate().take(count).skip(stubs.start) {
        if s.function.load(Ordering::Relaxed) == function {
            let api = ApiId::from_u16(s.api.load(Ordering::Relaxed));
            let filter = api.is_some_and(|a| a.shape().prot_exec_filter().is_some());
            write_stub(stubs.of(i), i as u32, hook, tramp, filter);
            s.real.store(tramp, Ordering::Relaxed);
        }
    }
}

/// A hop: `[test $PROT_EXEC,%dl; jz tramp;] mov $(FLAG|ENTRY|k),%r11d; jmp *hook`.
fn write_hop(at: u64, k: u32, hook: u64, tramp: u64, prot_filter: bool) {
    let mut b = [0xccu8; HOP];
    let mut n = 0;
    if prot_filter {
        b[..3].copy_from_slice(&[0xf6, 0xc2, 0x04]); // test dl,4
        let rel = tramp.wrapping_sub(at + 9) as u32; // jz: the trampoline is just before
        b[3..5].copy_from_slice(&[0x0f, 0x84]);
        b[5..9].copy_from_slice(&rel.to_le_bytes());
        n = 9;
    }
    b[n..n + 2].copy_from_slice(&[0x41, 0xbb]); // mov r11d, imm32
    b[n + 2..n + 6].copy_from_slice(&((FLAG | ENTRY) as u32 | k).to_le_bytes());
    b[n + 6..n + 12].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]); // jmp *[rip+0]
    b[n + 12..n + 20].copy_from_slice(&hook.to_le_bytes());
    for (i, &x) in b.iter().enumerate() {
        // SAFETY: `at` is a hop's place in our own read-write mapping, HOP bytes.
        unsafe { core::ptr::write_volatile((at + i as u64) as *mut u8, x) };
    }
}

/// Whether `[vaddr, vaddr + len)` (link-time addresses) lies inside one
/// executable `PT_LOAD` segment of the object loaded at `base`.
fn in_code(base: u64, vaddr: u64, len: u64) -> bool {
    program_headers(base).any(|p| {
        p.kind == PT_LOAD
            && p.flags & PF_X != 0
            && vaddr >= p.vaddr
            && vaddr.checked_add(len).is_some_and(|end| end <= p.vaddr + p.filesz)
    })
}

/// The run-time span of the object loaded at `base` (its `PT_LOAD` segments).
fn object_range(base: u64) -> Option<(u64, u64)> {
    let (lo, hi) = program_headers(base).filter(|p| p.kind == PT_LOAD).fold((u64::MAX, 0u64), |(lo, hi), p| {
        let start = base.wrapping_add(p.vaddr);
        (lo.min(start), hi.max(start.wrapping_add(p.memsz)))
    });
    (hi > lo).then_some((lo, hi))
}

/// Whether the process has exactly one thread (`/proc/self/stat`, field 20).
fn single_threaded() -> bool {
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
        // SAFETY: a fresh anonymous mapping; the hint is only a hint.
        let r = unsafe { crate::arch::x86_64::syscall6(9, hint, len, 3, 0x22, u64::MAX, 0) };
        if r < 0 {
            continue;
        }
        let at = r as u64;
        if at.abs_diff(base) < REACH {
            return Some(at);
        }
        // SAFETY: ours, unused.
        unsafe { sys::unmap(at, len) };
    }
    None
}

/// The GNU build ID of the object loaded at `base`, from its program headers.
fn build_id(base: u64, out: &mut [u8; 32]) -> Option<usize> {
    for p in program_headers(base).filter(|p| p.kind == PT_NOTE) {
        let (vaddr, size) = (p.vaddr, p.filesz);
        let notes = base.wrapping_add(vaddr);
        let mut at = 0u64;
        while at + 12 <= size.min(4096) {
            let (namesz, descsz, kind) = (rd_u32(notes + at)?, rd_u32(notes + at + 4)?, rd_u32(notes + at + 8)?);
            let name_at = at + 12;
            let desc_at = name_at + (namesz as u64).div_ceil(4) * 4;
            if kind == 3 && namesz == 4 && rd::<4>(notes + name_at)? == *b"GNU\0" && descsz as usize <= out.len() {
                for (k, b) in out.iter_mut().take(descsz as usize).enumerate() {
                    *b = rd::<1>(notes + desc_at + k as u64)?[0];
                }
                return Some(descsz as usize);
            }
            at = desc_at + (descsz as u64).div_ceil(4) * 4;
        }
    }
    None
}

/// The NUL-terminated path at `name` (a link map's `l_name`), copied.
fn path_of(name: u64, out: &mut [u8; 512]) -> Option<&[u8]> {
    for k in 0..out.len() {
        let b = rd::<1>(name.checked_add(k as u64)?)?[0];
        out[k] = b;
        if b == 0 {
            return (k > 0).then_some(&out[..=k]);
        }
    }
    None
}

/// The objects of the link map as (load base, run-time `PT_DYNAMIC`,
/// `l_name`), the executable first; returns how many were stored.
fn link_map(exe_dynamic: u64, out: &mut [(u64, u64, u64)]) -> usize {
    let Some(r_debug) = dyn_value(&Direct, exe_dynamic, 0, loader::DT_DEBUG) else { return 0 };
    match rd_u64(r_debug.wrapping_add(8)) {
        Some(m) => walk_from(m, out),
        None => 0,
    }
}

/// The objects of a link map from `map` on (see [`link_map`]).
fn walk_from(mut map: u64, out: &mut [(u64, u64, u64)]) -> usize {
    let mut n = 0;
    while map != 0 && n < out.len() {
        let (Some(l_addr), Some(l_name), Some(l_ld), Some(next)) =
            (rd_u64(map), rd_u64(map.wrapping_add(8)), rd_u64(map.wrapping_add(16)), rd_u64(map.wrapping_add(24)))
        else {
            break;
        };
        if l_ld != 0 {
            out[n] = (l_addr, l_ld, l_name);
            n += 1;
        }
        map = next;
    }
    n
}

/// Rewrites the relocated words (`GLOB_DAT`, `JUMP_SLOT`, `R_X86_64_64`) of one
/// relocation table that hold a redirected function's real address.
fn redirect_references(w: &mut Writer, base: u64, table: u64, len: u64, stubs: Stubs, count: usize) -> usize {
    let mut done = 0;
    let mut at = 0u64;
    // Most relocated words hold nothing redirected: a range test first.
    let (lo, hi) = (stubs.start..count)
        .map(|i| SLOTS[i].function.load(Ordering::Relaxed))
        .fold((u64::MAX, 0), |(lo, hi), f| (lo.min(f), hi.max(f)));
    while at + 24 <= len {
        let Some(e) = rd::<24>(table + at) else { break };
        at += 24;
        {
            let r_offset = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let r_type = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
            if !matches!(r_type, 1 | 6 | 7) {
                continue;
            }
            let slot = base.wrapping_add(r_offset);
            let Some(value) = rd_u64(slot) else { continue };
            if value < lo || value > hi {
                continue;
            }
            if let Some(i) = (stubs.start..count).find(|&i| SLOTS[i].function.load(Ordering::Relaxed) == value) {
                let stub = stubs.of(i);
                if w.write_u64(slot, stub) {
                    done += 1;
                }
            }
        }
    }
    done
}

fn write_stub(at: u64, i: u32, hook: u64, real: u64, prot_filter: bool) {
    let mut b = [0xccu8; STUB as usize];
    let mut n = 0;
    let mut put = |bytes: &[u8], n: &mut usize| {
        for &x in bytes {
            if let Some(d) = b.get_mut(*n) {
                *d = x;
            }
            *n += 1;
        }
    };
    put(&[0xf3, 0x0f, 0x1e, 0xfa], &mut n); // endbr64
    if prot_filter {
        put(&[0xf6, 0xc2, 0x04, 0x74, 0x14], &mut n); // test dl,4 ; jz real (+20)
    }
    put(&[0x41, 0xbb], &mut n); // mov r11d, FLAG|i
    put(&((FLAG as u32) | i).to_le_bytes(), &mut n);
    put(&[0xff, 0x25, 0, 0, 0, 0], &mut n); // jmp *[rip+0]
    put(&hook.to_le_bytes(), &mut n);
    put(&[0xff, 0x25, 0, 0, 0, 0], &mut n); // real: jmp *[rip+0]
    put(&real.to_le_bytes(), &mut n);
    for (k, w) in b.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // SAFETY: `at` is a STUB-aligned place inside our own read-write
        // mapping, STUB bytes per stub (a multiple of 8).
        unsafe { core::ptr::write_volatile((at + 8 * k as u64) as *mut u64, word) };
    }
}

/// Writes words into memory that may be read-only.
struct Writer {
    mem_fd: i32,
}

impl Writer {
    fn open() -> Writer {
        let fd = sys::open(b"/proc/self/mem\0", sys::O_RDWR | sys::O_CLOEXEC, 0).unwrap_or(-1);
        Writer { mem_fd: fd }
    }

    fn close(&mut self) {
        if self.mem_fd >= 0 {
            sys::close(self.mem_fd);
            self.mem_fd = -1;
        }
    }

    fn write_u64(&mut self, addr: u64, value: u64) -> bool {
        let bytes = value.to_le_bytes();
        if self.mem_fd >= 0 && sys::pwrite(self.mem_fd, &bytes, addr) == Ok(8) {
            return true;
        }
        // /proc/self/mem refused (a hardened kernel): make the page writable
        // for this one write, then give it back its protection.
        let Some(prot) = loader::protection_of(addr) else { return false };
        if prot & 4 != 0 {
            return false; // never writable and executable at once
        }
        let page = addr & !4095;
        let len = if (addr & 4095) + 8 > 4096 { 8192 } else { 4096 };
        if prot & 2 == 0 {
            // SAFETY: the page(s) stay readable (and executable if they were);
            // only writing is added, for the duration of one store.
            if unsafe { sys::mprotect(page, len, prot | 2) }.is_err() {
                return false;
            }
        }
        // SAFETY: `addr` is a mapped, now writable word the loader relocated.
        unsafe { core::ptr::write_unaligned(addr as *mut u64, value) };
        if prot & 2 == 0 {
            // SAFETY: restores what the page had.
            let _ = unsafe { sys::mprotect(page, len, prot) };
        }
        true
    }
}
