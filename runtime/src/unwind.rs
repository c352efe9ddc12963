//! The `stack` of an event: the return addresses above the intercepted call,
//! walked with the call frame information (`.eh_frame`, found through
//! `.eh_frame_hdr`) of the modules loaded at start-up (the executable and the
//! libraries it needs, which are never unloaded), frame pointers where a
//! module has none. Stack memory is read through [`crate::mem`] (a bad frame
//! only ends the walk); the call frame tables, mapped read-only from the
//! modules' files for the life of the process, are read directly.
//!
//! Supported call frame instructions are those compilers emit for x86-64
//! code: the CFA as `%rsp`/`%rbp` plus an offset, saved registers at offsets
//! from it, advances, remember/restore state. Anything else (expressions)
//! ends the walk at that frame.

use crate::loader::{program_headers, Direct, Memory, PF_X, PT_DYNAMIC, PT_GNU_EH_FRAME, PT_LOAD};

// SAFETY: what this module reads directly lies in registered modules: the
// executable and the libraries loaded at start-up, which are never unloaded
// (their headers, call frame and symbol tables, and code). Stack memory goes
// through `mem`.
const REGISTERED: Direct = unsafe { Direct::new() };
use crate::mem;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A module's symbol count not worked out yet.
const UNCOUNTED: u64 = u64::MAX;

/// Most frames reported.
pub const MAX_FRAMES: usize = 8;
const MAX_MODULES: usize = 64;

struct Module {
    lo: AtomicU64,
    hi: AtomicU64,
    /// Run-time address of `.eh_frame_hdr` (0: none).
    hdr: AtomicU64,
    /// The module's load base (what offsets in events are relative to).
    base: AtomicU64,
    /// Its path (`l_name`, NUL terminated), 0 for the executable.
    name: AtomicU64,
    /// Its dynamic section (0: none), symbol and string tables, and how many
    /// symbols ([`UNCOUNTED`] until the first event needs it).
    dynamic: AtomicU64,
    symtab: AtomicU64,
    strtab: AtomicU64,
    nsyms: AtomicU64,
}

static MODULES: [Module; MAX_MODULES] = [const {
    Module {
        lo: AtomicU64::new(0),
        hi: AtomicU64::new(0),
        hdr: AtomicU64::new(0),
        base: AtomicU64::new(0),
        name: AtomicU64::new(0),
        dynamic: AtomicU64::new(0),
        symtab: AtomicU64::new(0),
        strtab: AtomicU64::new(0),
        nsyms: AtomicU64::new(0),
    }
}; MAX_MODULES];
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn u8_at(a: u64) -> Option<u8> {
    REGISTERED.get::<1>(a).map(|b| b[0])
}
fn u16_at(a: u64) -> Option<u16> {
    REGISTERED.get::<2>(a).map(u16::from_le_bytes)
}
fn u32_at(a: u64) -> Option<u32> {
    REGISTERED.u32(a)
}
fn u64_at(a: u64) -> Option<u64> {
    REGISTERED.u64(a)
}

/// Registers the module whose ELF header is at `header` (loaded with bias
/// `base`): its executable range and `.eh_frame_hdr`. Start-up only.
///
/// # Safety
/// `header` is the ELF header of an object loaded at start-up (never
/// unloaded), `name` its link map name or 0 (the executable).
pub unsafe fn register(header: u64, base: u64, name: u64) {
    let n = COUNT.load(Ordering::Relaxed);
    if n >= MAX_MODULES {
        return;
    }
    let (mut lo, mut hi, mut hdr, mut dynamic) = (u64::MAX, 0u64, 0u64, 0u64);
    // The runtime's own segment is left out: its return addresses are never
    // a caller (a stack scan would otherwise take stale ones).
    let here = register as *const () as usize as u64;
    for p in program_headers(REGISTERED, header) {
        let start = base.wrapping_add(p.vaddr);
        let is_runtime = (start..start.wrapping_add(p.memsz)).contains(&here);
        if p.kind == PT_LOAD && p.flags & PF_X != 0 && !is_runtime {
            lo = lo.min(start);
            hi = hi.max(start.wrapping_add(p.memsz));
        }
        if p.kind == PT_GNU_EH_FRAME {
            hdr = start;
        }
        if p.kind == PT_DYNAMIC {
            dynamic = start;
        }
    }
    if lo >= hi {
        return;
    }
    let m = &MODULES[n];
    m.lo.store(lo, Ordering::Relaxed);
    m.hi.store(hi, Ordering::Relaxed);
    m.hdr.store(hdr, Ordering::Relaxed);
    m.base.store(base, Ordering::Relaxed);
    m.name.store(name, Ordering::Relaxed);
    if dynamic != 0 {
        let d = REGISTERED;
        let tables = (
            crate::loader::dyn_value(&d, dynamic, base, crate::loader::DT_SYMTAB),
            crate::loader::dyn_value(&d, dynamic, base, crate::loader::DT_STRTAB),
        );
        if let (Some(symtab), Some(strtab)) = tables {
            m.dynamic.store(dynamic, Ordering::Relaxed);
            m.symtab.store(symtab, Ordering::Relaxed);
            m.strtab.store(strtab, Ordering::Relaxed);
            m.nsyms.store(UNCOUNTED, Ordering::Relaxed);
        }
    }
    COUNT.store(n + 1, Ordering::Release);
}

/// The exported function (dynamic symbol table) holding `pc`, if its module
/// was loaded at start-up: the address of its NUL-terminated name.
/// Executables export few functions and static ones none: most of their
/// code has no name here.
pub fn symbol_of(pc: u64) -> Option<u64> {
    let n = COUNT.load(Ordering::Acquire);
    let m =
        MODULES.iter().take(n).find(|m| (m.lo.load(Ordering::Relaxed)..m.hi.load(Ordering::Relaxed)).contains(&pc))?;
    let (symtab, strtab) = (m.symtab.load(Ordering::Relaxed), m.strtab.load(Ordering::Relaxed));
    let base = m.base.load(Ordering::Relaxed);
    let mut count = m.nsyms.load(Ordering::Relaxed);
    if count == UNCOUNTED {
        // Counted once, at the first event from this module (threads racing
        // here count the same tables and store the same number).
        let d = REGISTERED;
        count = crate::loader::symbol_count(&d, base, m.dynamic.load(Ordering::Relaxed)).unwrap_or(0).min(1 << 20);
        m.nsyms.store(count, Ordering::Relaxed);
    }
    let off = pc.wrapping_sub(base);
    (1..count).find_map(|i| {
        let e = REGISTERED.get::<24>(symtab.wrapping_add(i * 24))?;
        let value = u64::from_le_bytes([e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]]);
        let size = u64::from_le_bytes([e[16], e[17], e[18], e[19], e[20], e[21], e[22], e[23]]);
        let shndx = u16::from_le_bytes([e[6], e[7]]);
        let is_code = matches!(e[4] & 0xf, 2 | 10); // STT_FUNC, STT_GNU_IFUNC
        (is_code && shndx != 0 && off >= value && off - value < size)
            .then(|| strtab.wrapping_add(u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as u64))
    })
}

/// The registered module holding `pc`: (base, name pointer, `.eh_frame_hdr`).
pub fn registered_module(pc: u64) -> Option<(u64, u64, u64)> {
    let n = COUNT.load(Ordering::Acquire);
    MODULES.iter().take(n).find_map(|m| {
        let (lo, hi) = (m.lo.load(Ordering::Relaxed), m.hi.load(Ordering::Relaxed));
        (pc >= lo && pc < hi)
            .then(|| (m.base.load(Ordering::Relaxed), m.name.load(Ordering::Relaxed), m.hdr.load(Ordering::Relaxed)))
    })
}

/// Registers as the program saw them at the intercepted point.
#[derive(Clone, Copy)]
pub struct Regs {
    pub pc: u64,
    pub sp: u64,
    pub rbp: u64,
}

/// Stack memory read once, from the stack pointer up: most frames' saved
/// words are within it, so a walk costs one system call, not two per frame.
struct Snapshot {
    at: u64,
    len: usize,
    bytes: [u8; SNAPSHOT],
}

const SNAPSHOT: usize = 1024;

impl Snapshot {
    /// The stack from `sp` up to the end of its page and the next one, at
    /// most [`SNAPSHOT`] bytes, read once through the safe path. (Inlined:
    /// built in its caller's frame, never copied on small stacks.)
    #[inline(always)]
    fn take(sp: u64) -> Snapshot {
        let mut snap = Snapshot { at: sp, len: 0, bytes: [0; SNAPSHOT] };
        let want = ((4096 - (sp & 4095)) as usize + 4096).min(SNAPSHOT);
        snap.len = mem::read(sp, &mut snap.bytes[..want]);
        snap
    }

    fn read_u64(&self, addr: u64) -> Option<u64> {
        match addr.checked_sub(self.at) {
            Some(off) if off + 8 <= self.len as u64 => {
                let o = off as usize;
                self.bytes.get(o..o + 8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            }
            _ => mem::read_u64(addr),
        }
    }
}

/// Walks up from `r`. `r.pc` is a return address (the caller's), unless
/// `at_instruction` (a `syscall` site). Returns the frames' return addresses
/// (the first being the caller's own), at most [`MAX_FRAMES`].
pub fn walk(r: Regs, at_instruction: bool, out: &mut [u64; MAX_FRAMES]) -> usize {
    walk_until(r, at_instruction, out).n
}

/// How a walk ended.
pub struct Walked {
    /// Frames stored.
    pub n: usize,
    /// The return address it stopped at when that lies outside every
    /// registered module and was found with call frame information (a
    /// library loaded later, or not code at all: the caller must check).
    pub stopped_at: Option<u64>,
    /// It reached the outermost frame, whose call frame information says
    /// there is no return address.
    pub outermost: bool,
}

/// [`walk`], and how it ended.
pub fn walk_until(mut r: Regs, at_instruction: bool, out: &mut [u64; MAX_FRAMES]) -> Walked {
    let snap = Snapshot::take(r.sp);
    let mut n = 0;
    let mut lookup = if at_instruction { r.pc } else { r.pc.wrapping_sub(1) };
    if !at_instruction {
        out[0] = r.pc;
        n = 1;
    }
    while n < MAX_FRAMES {
        let Some((next, by_cfi)) = step(&r, lookup, &snap) else {
            return Walked { n, stopped_at: None, outermost: outermost(lookup) };
        };
        if next.sp <= r.sp || next.pc < 4096 {
            break;
        }
        if registered_module(next.pc).is_none() {
            return Walked { n, stopped_at: by_cfi.then_some(next.pc), outermost: false };
        }
        out[n] = next.pc;
        n += 1;
        r = next;
        lookup = r.pc.wrapping_sub(1);
    }
    Walked { n, stopped_at: None, outermost: false }
}

/// Whether the call frame information at `at` says the return address is
/// undefined (the outermost frame).
fn outermost(at: u64) -> bool {
    let Some((_, _, hdr)) = registered_module(at) else { return false };
    hdr != 0 && find_fde(hdr, at).and_then(|fde| run_cfi(fde, at)).is_some_and(|r| r.ra_undefined)
}

/// The first word on the stack from `sp` up (4 KiB at most) that looks like
/// a return address into a registered module outside `[lo, hi)`: inside its
/// executable segments, just after a `call` (rel32, `*disp(%rip)` or a
/// register). For code without call frame information (musl's libc), where
/// no walk can leave it; a guess, said so in the event.
pub fn scan_for_caller(sp: u64, lo: u64, hi: u64) -> Option<u64> {
    // Read in small pieces: this may run on a very small stack (musl's
    // posix_spawn child has about 5 KiB).
    let mut words = [0u8; 256];
    for piece in 0..16u64 {
        let n = mem::read(sp.wrapping_add(piece * 256), &mut words);
        let found = words.get(..n)?.chunks_exact(8).find_map(|w| {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if (lo..hi).contains(&v) || registered_module(v).is_none() || registered_module(v.wrapping_sub(6)).is_none()
            {
                return None;
            }
            let b = REGISTERED.get::<6>(v - 6)?;
            let after_call = b[1] == 0xe8 || (b[0] == 0xff && b[1] == 0x15) || (b[4] == 0xff && b[5] & 0xf8 == 0xd0);
            after_call.then_some(v)
        });
        if found.is_some() || n < words.len() {
            return found;
        }
    }
    None
}

/// Whether walking up from `r` (a return address, or with `at_instruction`
/// the address of a `syscall`) meets the frame of the
/// call that returns to `ret` from the slot at `slot`: Some(true) when a
/// frame's return address is `ret` with its CFA just above `slot`,
/// Some(false) when the walk went past `slot` without that, None when it
/// stopped below it (a module without call frame information). Only call
/// frame information decides: a frame pointer guessed in code compiled
/// without one (musl's libc) could jump past `slot` and call a live call
/// stale, so the walk stops (None) where a step would need one.
pub fn reaches(mut r: Regs, at_instruction: bool, slot: u64, ret: u64) -> Option<bool> {
    let snap = Snapshot::take(r.sp);
    let mut lookup = if at_instruction { r.pc } else { r.pc.wrapping_sub(1) };
    for _ in 0..64 {
        let (next, by_cfi) = step(&r, lookup, &snap)?;
        if !by_cfi {
            return None;
        }
        if next.sp <= r.sp {
            return None;
        }
        if next.sp == slot.wrapping_add(8) && next.pc == ret {
            return Some(true);
        }
        if next.sp > slot.wrapping_add(8) {
            return Some(false);
        }
        r = next;
        lookup = r.pc.wrapping_sub(1);
    }
    None
}

/// One frame up from `r`, whose code address for the table lookup is `at`;
/// true when found with call frame information (not by frame pointer).
fn step(r: &Regs, at: u64, snap: &Snapshot) -> Option<(Regs, bool)> {
    let (_, _, hdr) = registered_module(at)?;
    let rule = if hdr != 0 { find_fde(hdr, at).and_then(|fde| run_cfi(fde, at)) } else { None };
    match rule {
        Some(rule) if rule.ra_undefined => None,
        Some(rule) => {
            let base = if rule.cfa_reg == 7 { r.sp } else { r.rbp };
            let cfa = base.wrapping_add(rule.cfa_off as u64);
            let pc = snap.read_u64(cfa.wrapping_add(rule.ra_off as u64))?;
            let rbp = match rule.rbp_off {
                Some(off) => snap.read_u64(cfa.wrapping_add(off as u64))?,
                None => r.rbp,
            };
            Some((Regs { pc, sp: cfa, rbp }, true))
        }
        None => {
            // No call frame information: follow the frame pointer if it looks like one.
            if r.rbp <= r.sp || r.rbp - r.sp > (1 << 20) || !r.rbp.is_multiple_of(8) {
                return None;
            }
            let pc = snap.read_u64(r.rbp + 8)?;
            let rbp = snap.read_u64(r.rbp)?;
            Some((Regs { pc, sp: r.rbp + 16, rbp }, false))
        }
    }
}

/// How to find the caller's frame at one code address.
#[derive(Clone, Copy)]
struct Rule {
    /// 7 = %rsp, 6 = %rbp (DWARF numbers).
    cfa_reg: u8,
    cfa_off: i64,
    /// Where the return address and the caller's %rbp are saved, from the CFA.
    ra_off: i64,
    rbp_off: Option<i64>,
    /// The return address is undefined: the outermost frame (`_start`, a
    /// thread's or a clone child's first function).
    ra_undefined: bool,
}

/// Reads a ULEB128 at `*at`, advancing it.
fn uleb(at: &mut u64) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = u8_at(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn sleb(at: &mut u64) -> Option<i64> {
    let mut v = 0i64;
    let mut shift = 0;
    loop {
        let b = u8_at(*at)?;
        *at += 1;
        v |= i64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            if shift < 64 && b & 0x40 != 0 {
                v |= -1i64 << shift;
            }
            return Some(v);
        }
        if shift >= 64 {
            return None;
        }
    }
}

/// Reads a pointer in encoding `enc` at `*at` (the common x86-64 ones).
fn encoded(at: &mut u64, enc: u8, datarel: u64) -> Option<u64> {
    let here = *at;
    let v = match enc & 0x0f {
        0x00 => {
            *at += 8;
            u64_at(here)?
        }
        0x03 => {
            *at += 4;
            u64::from(u32_at(here)?)
        }
        0x0b => {
            *at += 4;
            u32_at(here)? as i32 as i64 as u64
        }
        0x04 | 0x0c => {
            *at += 8;
            u64_at(here)?
        }
        _ => return None,
    };
    Some(match enc & 0x70 {
        0x00 => v,
        0x10 => here.wrapping_add(v),
        0x30 => datarel.wrapping_add(v),
        _ => return None,
    })
}

/// The FDE covering `pc`, by binary search of `.eh_frame_hdr`'s table.
fn find_fde(hdr: u64, pc: u64) -> Option<u64> {
    if u8_at(hdr)? != 1 {
        return None;
    }
    let (ptr_enc, count_enc, table_enc) = (u8_at(hdr + 1)?, u8_at(hdr + 2)?, u8_at(hdr + 3)?);
    let mut at = hdr + 4;
    let _eh_frame = encoded(&mut at, ptr_enc, hdr)?;
    let count = encoded(&mut at, count_enc, hdr)?;
    if table_enc != 0x3b || count == 0 || count > (1 << 24) {
        return None;
    }
    let table = at;
    let entry = |i: u64| -> Option<(u64, u64)> {
        let e = table + i * 8;
        Some((hdr.wrapping_add(u32_at(e)? as i32 as i64 as u64), hdr.wrapping_add(u32_at(e + 4)? as i32 as i64 as u64)))
    };
    let (mut lo, mut hi) = (0u64, count);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if entry(mid)?.0 <= pc {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (start, fde) = entry(lo)?;
    (start <= pc).then_some(fde)
}

/// Runs the CIE's and the FDE's instructions up to `pc`.
fn run_cfi(fde: u64, pc: u64) -> Option<Rule> {
    let fde_len = u64::from(u32_at(fde)?);
    if fde_len == 0 || fde_len == 0xffff_ffff {
        return None;
    }
    let fde_end = fde + 4 + fde_len;
    let cie_ptr = u32_at(fde + 4)?;
    let cie = (fde + 4).checked_sub(u64::from(cie_ptr))?;
    let cie_len = u64::from(u32_at(cie)?);
    if cie_len == 0xffff_ffff || u32_at(cie + 4)? != 0 {
        return None;
    }
    let cie_end = cie + 4 + cie_len;
    // Past the length, the id and the version: the augmentation string.
    let mut at = cie + 9;
    let mut aug = [0u8; 8];
    let mut n = 0;
    loop {
        let c = u8_at(at)?;
        at += 1;
        if c == 0 {
            break;
        }
        *aug.get_mut(n)? = c;
        n += 1;
    }
    let code_align = uleb(&mut at)?;
    let data_align = sleb(&mut at)?;
    let _ra_reg = uleb(&mut at)?;
    let mut fde_enc = 0u8;
    if aug.first() == Some(&b'z') {
        let len = uleb(&mut at)?;
        let data_end = at + len;
        for &c in &aug[1..n] {
            match c {
                b'R' => {
                    fde_enc = u8_at(at)?;
                    at += 1;
                }
                b'L' => at += 1,
                b'P' => {
                    let enc = u8_at(at)?;
                    at += 1;
                    encoded(&mut at, enc, 0)?;
                }
                b'S' => {}
                _ => return None,
            }
        }
        at = data_end;
    } else if n > 0 {
        return None;
    }
    let mut state =
        State { rule: Rule { cfa_reg: 7, cfa_off: 8, ra_off: -8, rbp_off: None, ra_undefined: false }, loc: 0 };
    // The CIE's initial instructions apply from the FDE's start.
    let initial = state.run(at, cie_end, u64::MAX, code_align, data_align, None)?;
    let mut f = fde + 8;
    let begin = encoded(&mut f, fde_enc, 0)?;
    let range = encoded(&mut f, fde_enc & 0x0f, 0)?;
    if pc < begin || pc >= begin.wrapping_add(range) {
        return None;
    }
    if aug.first() == Some(&b'z') {
        let len = uleb(&mut f)?;
        f += len;
    }
    let mut s = State { rule: initial, loc: begin };
    s.run(f, fde_end, pc, code_align, data_align, Some(initial))
}

struct State {
    rule: Rule,
    loc: u64,
}

impl State {
    /// Executes instructions in `[at, end)` while the location is at most `pc`.
    fn run(&mut self, mut at: u64, end: u64, pc: u64, ca: u64, da: i64, initial: Option<Rule>) -> Option<Rule> {
        let mut saved = [self.rule; 4];
        let mut depth = 0usize;
        let mut guard = 0;
        while at < end && guard < 4096 {
            guard += 1;
            let op = u8_at(at)?;
            at += 1;
            let (high, low) = (op & 0xc0, op & 0x3f);
            match high {
                0x40 => {
                    self.loc = self.loc.wrapping_add(u64::from(low) * ca);
                    if self.loc > pc {
                        break;
                    }
                    continue;
                }
                0x80 => {
                    let off = uleb(&mut at)? as i64 * da;
                    self.save(low, off);
                    continue;
                }
                0xc0 => {
                    self.restore(low, initial);
                    continue;
                }
                _ => {}
            }
            match op {
                0x00 => {}
                0x02..=0x04 => {
                    let d = match op {
                        0x02 => u64::from(u8_at(at)?),
                        0x03 => u64::from(u16_at(at)?),
                        _ => u64::from(u32_at(at)?),
                    };
                    at += match op {
                        0x02 => 1,
                        0x03 => 2,
                        _ => 4,
                    };
                    self.loc = self.loc.wrapping_add(d * ca);
                    if self.loc > pc {
                        break;
                    }
                }
                0x05 => {
                    let reg = uleb(&mut at)?;
                    let off = uleb(&mut at)? as i64 * da;
                    self.save(reg as u8, off);
                }
                0x06 => {
                    let reg = uleb(&mut at)?;
                    self.restore(reg as u8, initial);
                }
                0x07 | 0x08 => {
                    let reg = uleb(&mut at)?;
                    if reg == 6 {
                        self.rule.rbp_off = None;
                    }
                    if reg == 16 {
                        self.rule.ra_undefined = op == 0x07; // DW_CFA_undefined
                    }
                }
                0x0a => {
                    *saved.get_mut(depth)? = self.rule;
                    depth += 1;
                }
                0x0b => {
                    depth = depth.checked_sub(1)?;
                    self.rule = saved[depth];
                }
                0x0c => {
                    self.rule.cfa_reg = uleb(&mut at)? as u8;
                    self.rule.cfa_off = uleb(&mut at)? as i64;
                }
                0x0d => self.rule.cfa_reg = uleb(&mut at)? as u8,
                0x0e => self.rule.cfa_off = uleb(&mut at)? as i64,
                0x11 => {
                    let reg = uleb(&mut at)?;
                    let off = sleb(&mut at)? * da;
                    self.save(reg as u8, off);
                }
                0x12 => {
                    self.rule.cfa_reg = uleb(&mut at)? as u8;
                    self.rule.cfa_off = sleb(&mut at)? * da;
                }
                0x13 => self.rule.cfa_off = sleb(&mut at)? * da,
                0x2e => {
                    uleb(&mut at)?;
                }
                _ => return None, // expressions and the rest: not walked
            }
        }
        (self.rule.cfa_reg == 7 || self.rule.cfa_reg == 6).then_some(self.rule)
    }

    fn save(&mut self, reg: u8, off: i64) {
        match reg {
            6 => self.rule.rbp_off = Some(off),
            16 => self.rule.ra_off = off,
            _ => {}
        }
    }

    fn restore(&mut self, reg: u8, initial: Option<Rule>) {
        let Some(i) = initial else { return };
        match reg {
            6 => self.rule.rbp_off = i.rbp_off,
            16 => self.rule.ra_off = i.ra_off,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn leb128() {
        let b = [0xe5u8, 0x8e, 0x26, 0x7f, 0x80, 0x7f];
        let mut at = b.as_ptr() as u64;
        assert_eq!(uleb(&mut at), Some(624_485));
        assert_eq!(sleb(&mut at), Some(-1));
        assert_eq!(sleb(&mut at), Some(-128));
    }

    /// A CIE and an FDE as GCC writes them for `push %rbp; mov %rsp,%rbp; ...`.
    #[test]
    fn call_frame_rules_follow_the_prologue() {
        let mut t = Vec::new();
        // CIE: length, id 0, version 1, "zR", code align 1, data align -8, RA 16,
        // aug length 1, FDE encoding pcrel|sdata4 (0x1b); def_cfa rsp+8, offset RA at cfa-8.
        let cie_body: &[u8] = &[0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0];
        t.extend((cie_body.len() as u32).to_le_bytes());
        t.extend(cie_body);
        let fde_at = t.len();
        // FDE: CIE pointer, pc_begin (pcrel), pc_range 0x20, aug length 0, then:
        // advance 1; def_cfa_offset 16; offset rbp at cfa-16; advance 3; def_cfa_register rbp.
        let mut body = Vec::new();
        body.extend(((fde_at + 4) as u32).to_le_bytes());
        let begin_field = fde_at + 4 + body.len();
        body.extend([0u8; 4]); // pc_begin, patched below: code near the table, as in a file
        body.extend(0x20u32.to_le_bytes());
        body.push(0);
        body.extend([0x41, 0x0e, 16, 0x86, 2, 0x43, 0x0d, 6, 0, 0, 0]);
        t.extend((body.len() as u32).to_le_bytes());
        t.extend(&body);
        let base = t.as_ptr() as u64;
        let code = base + 0x1000;
        let rel = code.wrapping_sub(base + begin_field as u64) as u32;
        t[begin_field..begin_field + 4].copy_from_slice(&rel.to_le_bytes());
        let fde = t.as_ptr() as u64 + fde_at as u64;
        let at = |pc: u64| run_cfi(fde, pc).map(|r| (r.cfa_reg, r.cfa_off, r.ra_off, r.rbp_off));
        assert_eq!(at(code), Some((7, 8, -8, None)));
        assert_eq!(at(code + 1), Some((7, 16, -8, Some(-16))));
        assert_eq!(at(code + 4), Some((6, 16, -8, Some(-16))));
        assert_eq!(at(code + 0x20), None);
    }
}
