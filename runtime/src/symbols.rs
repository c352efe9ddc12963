//! The symbol layer (layer 2): the monitored functions as every loaded library sees them.
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
//! A stub: `endbr64; [test $PROT_EXEC,%dl; jz real;] mov $(STUB|i),%r11d;
//! jmp *dfp_hook; real: jmp *real_i` (encoded by
//! [`crate::arch::x86_64::stub_code`]). The slots behind the stubs also
//! stand for libc's entries detoured by [`crate::libplans`].

use crate::apis::ApiId;
use crate::arch::x86_64::{stub_code, STUB_LEN};
use crate::contract::r11;
use crate::loader::{definitions_in, dyn_value, Direct, Memory, Tables, DT_JMPREL, DT_PLTRELSZ, DT_RELA, DT_RELASZ};
use crate::ptable::PolicyTable;
use crate::{libplans, loader, sys};
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};

const MAX: usize = 1024;
/// Stubs in one mapping (start-up, then each `dlmopen` namespace).
const REGION_STUBS: usize = 128;
const STUB: u64 = STUB_LEN as u64;
const MAX_OBJECTS: usize = 256;

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
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The stubs' mapping (0: none).
static REGION: AtomicU64 = AtomicU64::new(0);

/// What a stub (or hop) of ours stands for: its API and where to send the call.
pub fn entry(number: u64) -> Option<(ApiId, u64)> {
    let i = (number & !(r11::STUB | r11::ENTRY)) as usize;
    if number & r11::STUB == 0 || i >= COUNT.load(Ordering::Acquire) {
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
    entry(r11::STUB | i).map(|(_, real)| real)
}

/// Where a call of `api` goes once the runtime let it through: the real
/// function of its first redirected definition (start-up's, libc's).
pub fn real_of_api(api: ApiId) -> Option<u64> {
    let n = COUNT.load(Ordering::Acquire).min(REGION_STUBS);
    SLOTS.iter().take(n).find(|s| s.api.load(Ordering::Relaxed) == api as u16).map(|s| s.real.load(Ordering::Relaxed))
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
///
/// # Safety
/// `exe_dynamic` is the running executable's loaded `PT_DYNAMIC`, and the
/// loader has finished loading the objects its link map lists.
/// Each library plan not applied in full is given to `report`.
pub unsafe fn install(
    exe_dynamic: u64,
    p: &PolicyTable,
    hook: u64,
    plans: &[u8],
    sys_hook: u64,
    report: &mut dyn FnMut(&libplans::Degraded),
) -> Installed {
    // SAFETY: as the caller promises: what is read is the loader's link map
    // and the structures of the objects it lists, loaded at start-up.
    let d = unsafe { Direct::new() };
    let mut objects = [(0u64, 0u64, 0u64); MAX_OBJECTS];
    let n = link_map(d, exe_dynamic, &mut objects);
    let Some(objects) = objects.get(..n) else { return Installed::default() };
    // Their call frame tables, for event stacks (the executable is registered already).
    for &(base, _, name) in objects.iter().skip(1) {
        // SAFETY: an object of the start-up link map (see above), its name from there.
        unsafe { crate::unwind::register(base, base, name) };
        // What the hooks rely on in them (see `guard`): the redirected
        // symbols, the GOTs of redirected references, rewritten code. Never unloaded.
        // SAFETY: as above.
        unsafe { crate::guard::protect_object(base, base, crate::guard::PINNED) };
    }
    // Definitions in every object but the executable (index 0); references in all.
    let libraries = objects.get(1..).unwrap_or(&[]);
    redirect(d, libraries, objects, p, Hooks { hook, sys_hook }, plans, true, report)
}

/// The same for a link-map namespace that `dlmopen` has just made (glibc):
/// it has a libc of its own, whose functions must be redirected too.
/// `handle`: what `dlmopen` returned (a `struct link_map *`).
///
/// # Safety
/// `handle` is a link map entry `dlmopen` has just returned, and the
/// namespace stays open while this runs.
pub unsafe fn install_namespace(handle: u64, p: &PolicyTable, hook: u64, plans: &[u8], sys_hook: u64) -> Installed {
    // SAFETY: as the caller promises: the namespace's link map and objects are loaded.
    let d = unsafe { Direct::new() };
    let mut objects = [(0u64, 0u64, 0u64); MAX_OBJECTS];
    // Back to the namespace's first object, then along it.
    let mut head = handle;
    for _ in 0..MAX_OBJECTS {
        match d.u64(head.wrapping_add(32)) {
            Some(prev) if prev != 0 => head = prev,
            _ => break,
        }
    }
    let n = walk_from(d, head, &mut objects);
    let Some(objects) = objects.get(..n) else { return Installed::default() };
    for &(base, _, _) in objects {
        // As at start-up, but a namespace may be closed again (see `guard`).
        // SAFETY: an object of the open namespace (see above).
        unsafe { crate::guard::protect_object(base, base, crate::guard::CODE) };
    }
    redirect(d, objects, objects, p, Hooks { hook, sys_hook }, plans, false, &mut |_| {})
}

/// Each definition of a watched function in `defining` gets a stub (in a
/// mapping of its own) and its symbol points there (step 1); the patch-time
/// plans are applied, single-threaded only (step 3); references in
/// `referencing` already bound to a redirected function go to its stub
/// (step 2). `first`: the start-up call, whose stubs are the ones an
/// executable's GOT may hold.
#[allow(clippy::too_many_arguments)]
fn redirect(
    d: Direct,
    defining: &[(u64, u64, u64)],
    referencing: &[(u64, u64, u64)],
    p: &PolicyTable,
    Hooks { hook, sys_hook }: Hooks,
    plans: &[u8],
    first: bool,
    report: &mut dyn FnMut(&libplans::Degraded),
) -> Installed {
    let mut done = Installed::default();
    let start = COUNT.load(Ordering::Acquire);
    let Some(region) = sys::map_anonymous(REGION_STUBS as u64 * STUB) else { return done };
    let stub_of = |i: usize| region + (i - start) as u64 * STUB;
    let mut w = Writer::open();

    // 1. Definitions.
    for &(base, dynamic, _) in defining {
        let Some(tables) = Tables::of(&d, base, dynamic) else { continue };
        for &api in ApiId::ALL {
            if !api.function_hooked() || !p.watches(api as u16) {
                continue;
            }
            definitions_in(&d, &tables, api.name().as_bytes(), |sym, value| {
                let i = COUNT.load(Ordering::Relaxed);
                if i >= MAX || i - start >= REGION_STUBS {
                    return;
                }
                let real = base.wrapping_add(value);
                let stub = stub_of(i);
                write_stub(stub, i as u32, hook, real, api.prot_exec_filter().is_some());
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
    if !plans.is_empty() && libplans::single_threaded() {
        let stubs = Stubs { region, start };
        // A namespace's copy shares the planned sites' numbers with the first
        // copy: only its entries are applied.
        (done.syscalls, done.entries) = libplans::apply(defining, plans, sys_hook, hook, stubs, first, &mut w, report);
    } else if !plans.is_empty() && first {
        libplans::report_all(plans, libplans::THREADS, report);
    }
    let count = COUNT.load(Ordering::Acquire);
    // SAFETY: the mapping is ours and only holds the stubs written above.
    let sealed = unsafe { sys::mprotect(region, REGION_STUBS as u64 * STUB, sys::PROT_READ | sys::PROT_EXEC) }.is_ok();
    if count == start || !sealed {
        w.close();
        return done;
    }
    crate::guard::protect(region, region + REGION_STUBS as u64 * STUB, crate::guard::OURS);
    if first {
        REGION.store(region, Ordering::Release);
    }

    // 2. References already bound to a real function.
    for &(base, dynamic, _) in referencing {
        for (table, size) in [(DT_JMPREL, DT_PLTRELSZ), (DT_RELA, DT_RELASZ)] {
            let (Some(at), Some(len)) = (dyn_value(&d, dynamic, base, table), dyn_value(&d, dynamic, 0, size)) else {
                continue;
            };
            let stubs = Stubs { region, start };
            done.references += redirect_references(d, &mut w, base, at, len.min(64 << 20), stubs, count);
        }
    }
    w.close();
    done
}

/// The runtime's two entry points, at run time.
#[derive(Clone, Copy)]
struct Hooks {
    /// `dfp_hook`: where stubs and hops go.
    hook: u64,
    /// `dfp_sys_hook`: what library `syscall` trampolines call.
    sys_hook: u64,
}

/// One mapping of stubs: slot `i` (from `start`) has its stub at
/// `region + (i - start) * STUB`.
#[derive(Clone, Copy)]
pub(crate) struct Stubs {
    region: u64,
    start: usize,
}

impl Stubs {
    fn of(&self, i: usize) -> u64 {
        self.region + (i - self.start) as u64 * STUB
    }
}

/// The stub slot for calls arriving at the detoured entry of `function`:
/// the symbol layer's slot for it in this mapping (found by the function's
/// address), or a new one whose stub goes to the function itself until
/// [`retarget`] sends it to the trampoline. Returns the slot's index.
pub(crate) fn entry_slot(api: ApiId, function: u64, hook: u64, stubs: Stubs) -> Option<u32> {
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
    write_stub(stubs.of(count), count as u32, hook, function, api.prot_exec_filter().is_some());
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
pub(crate) fn retarget(k: usize, tramp: u64, hook: u64, stubs: Stubs) {
    let count = COUNT.load(Ordering::Relaxed);
    let Some(function) = SLOTS.get(k).map(|s| s.function.load(Ordering::Relaxed)) else { return };
    for (i, s) in SLOTS.iter().enumerate().take(count).skip(stubs.start) {
        if s.function.load(Ordering::Relaxed) == function {
            let api = ApiId::from_u16(s.api.load(Ordering::Relaxed));
            let filter = api.is_some_and(|a| a.prot_exec_filter().is_some());
            write_stub(stubs.of(i), i as u32, hook, tramp, filter);
            s.real.store(tramp, Ordering::Relaxed);
        }
    }
}

/// The objects of the link map as (load base, run-time `PT_DYNAMIC`,
/// `l_name`), the executable first; returns how many were stored.
fn link_map(d: Direct, exe_dynamic: u64, out: &mut [(u64, u64, u64)]) -> usize {
    let Some(r_debug) = dyn_value(&d, exe_dynamic, 0, loader::DT_DEBUG) else { return 0 };
    match d.u64(r_debug.wrapping_add(8)) {
        Some(m) => walk_from(d, m, out),
        None => 0,
    }
}

/// The objects of a link map from `map` on (see [`link_map`]).
fn walk_from(d: Direct, mut map: u64, out: &mut [(u64, u64, u64)]) -> usize {
    let mut n = 0;
    while map != 0 && n < out.len() {
        let (Some(l_addr), Some(l_name), Some(l_ld), Some(next)) =
            (d.u64(map), d.u64(map.wrapping_add(8)), d.u64(map.wrapping_add(16)), d.u64(map.wrapping_add(24)))
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
fn redirect_references(
    d: Direct,
    w: &mut Writer,
    base: u64,
    table: u64,
    len: u64,
    stubs: Stubs,
    count: usize,
) -> usize {
    let mut done = 0;
    let mut at = 0u64;
    // Most relocated words hold nothing redirected: a range test first.
    let (lo, hi) = (stubs.start..count)
        .map(|i| SLOTS[i].function.load(Ordering::Relaxed))
        .fold((u64::MAX, 0), |(lo, hi), f| (lo.min(f), hi.max(f)));
    while at + 24 <= len {
        let Some(e) = d.get::<24>(table + at) else { break };
        at += 24;
        {
            let r_offset = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let r_type = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
            if !matches!(r_type, 1 | 6 | 7) {
                continue;
            }
            let slot = base.wrapping_add(r_offset);
            let Some(value) = d.u64(slot) else { continue };
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

/// Writes the stub of slot `i` at `at` (see [`stub_code`]).
fn write_stub(at: u64, i: u32, hook: u64, real: u64, prot_filter: bool) {
    let b = stub_code(r11::STUB as u32 | i, hook, real, prot_filter);
    for (k, w) in b.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // SAFETY: `at` is a STUB-aligned place inside our own read-write
        // mapping, STUB bytes per stub (a multiple of 8).
        unsafe { core::ptr::write_volatile((at + 8 * k as u64) as *mut u64, word) };
    }
}

/// Writes words into memory that may be read-only.
pub(crate) struct Writer {
    pub mem_fd: i32,
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
        if prot & sys::PROT_EXEC != 0 {
            return false; // never writable and executable at once
        }
        let page = addr & !4095;
        let len = if (addr & 4095) + 8 > 4096 { 8192 } else { 4096 };
        if prot & sys::PROT_WRITE == 0 {
            // SAFETY: the page(s) stay readable (and executable if they were);
            // only writing is added, for the duration of one store.
            if unsafe { sys::mprotect(page, len, prot | sys::PROT_WRITE) }.is_err() {
                return false;
            }
        }
        // SAFETY: `addr` is a mapped, now writable word the loader relocated.
        unsafe { core::ptr::write_unaligned(addr as *mut u64, value) };
        if prot & sys::PROT_WRITE == 0 {
            // SAFETY: restores what the page had.
            let _ = unsafe { sys::mprotect(page, len, prot) };
        }
        true
    }
}
