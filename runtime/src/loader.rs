//! What the runtime learns from the dynamic loader and the kernel without
//! libc: symbol lookup through the link map (`DT_DEBUG` → `r_debug`), and which
//! module an address belongs to (`/proc/self/maps`).

use crate::mem;
use crate::sys;

// The ELF constants the runtime needs (the rewriter has `object::elf`).
const DT_NULL: u64 = 0;
pub(crate) const DT_PLTRELSZ: u64 = 2;
pub(crate) const DT_RELA: u64 = 7;
pub(crate) const DT_RELASZ: u64 = 8;
pub(crate) const DT_JMPREL: u64 = 23;
pub(crate) const DT_HASH: u64 = 4;
pub(crate) const DT_STRTAB: u64 = 5;
pub(crate) const DT_SYMTAB: u64 = 6;
pub(crate) const DT_DEBUG: u64 = 21;
pub(crate) const DT_GNU_HASH: u64 = 0x6fff_fef5;

/// One program header of a loaded object (link-time addresses).
#[derive(Clone, Copy)]
pub(crate) struct Phdr {
    pub kind: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

pub(crate) const PT_LOAD: u32 = 1;
pub(crate) const PT_DYNAMIC: u32 = 2;
pub(crate) const PT_NOTE: u32 = 4;
pub(crate) const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
pub(crate) const PF_X: u32 = 1;

/// The program headers of the object whose ELF header is loaded at
/// `header` (at most 64; none when it is not an ELF header). The walk stops
/// at a header it cannot read.
pub(crate) fn program_headers(d: Direct, header: u64) -> impl Iterator<Item = Phdr> {
    let table = (d.get::<4>(header) == Some(*b"\x7fELF"))
        .then(|| Some((d.u64(header + 32)?, u16::from_le_bytes(d.get::<2>(header + 56)?))))
        .flatten();
    let (phoff, phnum) = table.unwrap_or((0, 0));
    (0..u64::from(phnum).min(64)).map_while(move |k| {
        let ph = header.wrapping_add(phoff).wrapping_add(k * 56);
        Some(Phdr {
            kind: d.u32(ph)?,
            flags: d.u32(ph + 4)?,
            vaddr: d.u64(ph + 16)?,
            filesz: d.u64(ph + 32)?,
            memsz: d.u64(ph + 40)?,
        })
    })
}

/// How the loaded objects' structures are read.
pub(crate) trait Memory {
    fn get<const N: usize>(&self, addr: u64) -> Option<[u8; N]>;
    fn u32(&self, addr: u64) -> Option<u32> {
        self.get::<4>(addr).map(u32::from_le_bytes)
    }
    fn u64(&self, addr: u64) -> Option<u64> {
        self.get::<8>(addr).map(u64::from_le_bytes)
    }
}

/// Direct reads of the loaded objects' own structures: the link map, the
/// dynamic sections and the tables they point at, ELF and program headers,
/// call frame tables. The loader mapped these and used them to load and
/// relocate the objects; objects loaded at start-up are never unloaded. A
/// value of this type stands for that promise about every address read
/// through it (program data goes through [`mem`], or [`Checked`]).
#[derive(Clone, Copy)]
pub(crate) struct Direct(());

impl Direct {
    /// # Safety
    /// Every address read through the value must lie in memory the loader
    /// mapped for an object that stays loaded while the value is used.
    pub(crate) const unsafe fn new() -> Direct {
        Direct(())
    }
}

impl Memory for Direct {
    fn get<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        if addr < 4096 || addr.checked_add(N as u64)? > 0x7fff_ffff_f000 {
            return None;
        }
        // SAFETY: the promise `Direct::new` was made with: `addr` lies in
        // memory the loader mapped for an object that stays loaded; one
        // unaligned read of N bytes.
        Some(unsafe { core::ptr::read_unaligned(addr as *const [u8; N]) })
    }
}

/// Reads that cannot fault ([`mem::read`]): any object, any time (one may
/// be unloaded by another thread meanwhile).
pub(crate) struct Checked;

impl Memory for Checked {
    fn get<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        (mem::read(addr, &mut b) == N).then_some(b)
    }
}

/// Looks `name` up in every object of the link map, starting from the
/// executable's dynamic section at `dynamic` (a run-time address). Returns the
/// run-time address of the first defined function of that name.
pub fn lookup(dynamic: u64, name: &[u8]) -> Option<u64> {
    let m = &Checked;
    let r_debug = dyn_value(m, dynamic, 0, DT_DEBUG)?;
    let mut map = m.u64(r_debug.checked_add(8)?)?;
    let mut guard = 0;
    while map != 0 && guard < 4096 {
        let l_addr = m.u64(map)?;
        let l_ld = m.u64(map + 16)?;
        let mut found = None;
        if l_ld != 0 {
            for_each_definition(m, l_addr, l_ld, name, |_, value| {
                found = found.or(Some(l_addr.wrapping_add(value)));
            });
        }
        if found.is_some() {
            return found;
        }
        map = m.u64(map + 24)?;
        guard += 1;
    }
    None
}

/// Value of the first `tag` entry of a dynamic section; pointers are rebased
/// by `base` when the loader left them unrelocated (musl does).
pub(crate) fn dyn_value(m: &impl Memory, dynamic: u64, base: u64, tag: u64) -> Option<u64> {
    for k in 0..512u64 {
        let t = m.u64(dynamic + k * 16)?;
        if t == DT_NULL {
            return None;
        }
        if t == tag {
            let v = m.u64(dynamic + k * 16 + 8)?;
            return Some(if v < base { v.wrapping_add(base) } else { v });
        }
    }
    None
}

/// How many entries the object's dynamic symbol table has: `nchain` of
/// `DT_HASH`, or for `DT_GNU_HASH` one past the last symbol any bucket's
/// chain reaches.
pub(crate) fn symbol_count(m: &impl Memory, base: u64, dynamic: u64) -> Option<u64> {
    if let Some(table) = dyn_value(m, dynamic, base, DT_GNU_HASH) {
        let (nbuckets, symoffset, bloom) = (m.u32(table)?, m.u32(table + 4)?, m.u32(table + 8)?);
        let buckets = table + 16 + bloom as u64 * 8;
        let chains = buckets + nbuckets as u64 * 4;
        let mut last = 0u32;
        for k in 0..(nbuckets as u64).min(1 << 20) {
            last = last.max(m.u32(buckets + k * 4)?);
        }
        if last < symoffset {
            return Some(symoffset as u64);
        }
        // The last chain runs on to the entry with its low bit set.
        for index in last as u64..last as u64 + (1 << 20) {
            if m.u32(chains + (index - symoffset as u64) * 4)? & 1 == 1 {
                return Some(index + 1);
            }
        }
        None
    } else {
        let table = dyn_value(m, dynamic, base, DT_HASH)?;
        m.u32(table + 4).map(u64::from)
    }
}

/// An object's symbol lookup tables, found once in its dynamic section.
#[derive(Clone, Copy)]
pub(crate) struct Tables {
    symtab: u64,
    strtab: u64,
    gnu_hash: Option<u64>,
    hash: Option<u64>,
}

impl Tables {
    pub(crate) fn of(m: &impl Memory, base: u64, dynamic: u64) -> Option<Tables> {
        Some(Tables {
            symtab: dyn_value(m, dynamic, base, DT_SYMTAB)?,
            strtab: dyn_value(m, dynamic, base, DT_STRTAB)?,
            gnu_hash: dyn_value(m, dynamic, base, DT_GNU_HASH),
            hash: dyn_value(m, dynamic, base, DT_HASH),
        })
    }
}

/// Calls `f(symbol address, st_value)` for every defined function named
/// `name` in the object's dynamic symbol table (all its versions).
pub(crate) fn for_each_definition(m: &impl Memory, base: u64, dynamic: u64, name: &[u8], f: impl FnMut(u64, u64)) {
    if let Some(t) = Tables::of(m, base, dynamic) {
        definitions_in(m, &t, name, f);
    }
}

/// [`for_each_definition`] with the tables found already.
pub(crate) fn definitions_in(m: &impl Memory, t: &Tables, name: &[u8], mut f: impl FnMut(u64, u64)) {
    let (symtab, strtab) = (t.symtab, t.strtab);
    let mut check = |index: u64| {
        let sym = symtab.wrapping_add(index.wrapping_mul(24));
        let Some(e) = m.get::<24>(sym) else { return };
        let st_name = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as u64;
        let shndx = u16::from_le_bytes([e[6], e[7]]);
        let value = u64::from_le_bytes([e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]]);
        // Defined functions only (an IFUNC's value is its resolver).
        if shndx != 0 && e[4] & 0xf == 2 && value != 0 && name_is(m, strtab.wrapping_add(st_name), name) {
            f(sym, value);
        }
    };
    if let Some(table) = t.gnu_hash {
        let (Some(nbuckets), Some(symoffset), Some(bloom)) = (m.u32(table), m.u32(table + 4), m.u32(table + 8)) else {
            return;
        };
        if nbuckets == 0 {
            return;
        }
        let h = name.iter().fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32));
        let buckets = table + 16 + bloom as u64 * 8;
        let chains = buckets + nbuckets as u64 * 4;
        let Some(first) = m.u32(buckets + (h % nbuckets) as u64 * 4) else { return };
        if first < symoffset {
            return;
        }
        for index in first as u64..first as u64 + (1 << 16) {
            let Some(ch) = m.u32(chains + (index - symoffset as u64) * 4) else { return };
            if ch | 1 == h | 1 {
                check(index);
            }
            if ch & 1 == 1 {
                return;
            }
        }
    } else if let Some(table) = t.hash {
        let (Some(nbucket), Some(nchain)) = (m.u32(table), m.u32(table + 4)) else { return };
        if nbucket == 0 {
            return;
        }
        let h = name.iter().fold(0u32, |h, &c| {
            let h = (h << 4).wrapping_add(c as u32);
            let g = h & 0xf000_0000;
            (h ^ (g >> 24)) & !g
        });
        let chains = table + 8 + nbucket as u64 * 4;
        let Some(mut index) = m.u32(table + 8 + (h % nbucket) as u64 * 4) else { return };
        let mut guard = 0;
        while index != 0 && index < nchain && guard < (1 << 16) {
            check(index as u64);
            index = match m.u32(chains + index as u64 * 4) {
                Some(i) => i,
                None => return,
            };
            guard += 1;
        }
    }
}

/// Whether the string at `addr` is `name`: read byte by byte, never past
/// the first difference (a fixed-size read could run off the mapping).
pub(crate) fn name_is(m: &impl Memory, addr: u64, name: &[u8]) -> bool {
    for (k, &want) in name.iter().chain(&[0u8]).enumerate() {
        match m.get::<1>(addr.wrapping_add(k as u64)) {
            Some([b]) if b == want => {}
            _ => return false,
        }
    }
    true
}

/// The module holding `addr` according to `/proc/self/maps`: its path is copied
/// into `path` (returning its length) and the offset is `addr` minus the
/// module's load base (the start of its mapping at file offset 0), which for
/// shared objects is the ELF virtual address that `addr2line` and `objdump` use.
pub fn mapped_module(addr: u64, path: &mut [u8; 256]) -> Option<(usize, u64)> {
    let mut scanner = MapsScanner { base: 0, base_path: [0; 256], base_len: 0 };
    scan_maps(|line| scanner.line(line, addr, path))
}

/// The protection (`PROT_READ` 1 | `PROT_WRITE` 2 | `PROT_EXEC` 4) of the
/// mapping that holds `addr`, from `/proc/self/maps`.
pub fn protection_of(addr: u64) -> Option<u64> {
    mapping_of(addr).map(|(prot, _)| prot)
}

/// The protection of the mapping that holds `addr` (as [`protection_of`]),
/// and whether it has a name (a file's path, `[vdso]`, ...; anonymous memory
/// has none), in one read of `/proc/self/maps`.
pub fn mapping_of(addr: u64) -> Option<(u64, bool)> {
    mapping_at(addr).map(|(_, _, prot, named)| (prot, named))
}

/// The mapping that holds `addr`: its range, protection and whether it has
/// a name (as [`mapping_of`]).
pub fn mapping_at(addr: u64) -> Option<(u64, u64, u64, bool)> {
    scan_maps(|line| {
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let range = fields.next()?;
        let perms = fields.next()?;
        let dash = range.iter().position(|&b| b == b'-')?;
        let (lo, hi) = (parse_hex(range.get(..dash)?)?, parse_hex(range.get(dash + 1..)?)?);
        if addr < lo || addr >= hi {
            return None;
        }
        let bit = |i: usize, c: u8, v: u64| if perms.get(i) == Some(&c) { v } else { 0 };
        // Offset, device and inode, then the name (none for anonymous memory).
        let named = fields.nth(3).is_some();
        Some((lo, hi, bit(0, b'r', 1) | bit(1, b'w', 2) | bit(2, b'x', 4), named))
    })
}

/// Calls `f` on each line of `/proc/self/maps` until it returns something.
fn scan_maps<T>(mut f: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
    let fd = sys::open(b"/proc/self/maps\0", sys::O_RDONLY | sys::O_CLOEXEC, 0).ok()?;
    let mut buf = [0u8; 1024];
    let mut have = 0usize;
    let mut found = None;
    'read: loop {
        let n = match buf.get_mut(have..) {
            Some(rest) if !rest.is_empty() => match sys::read(fd, rest) {
                Ok(n) => n as usize,
                Err(e) if e == sys::EINTR => continue,
                Err(_) => 0,
            },
            _ => 0,
        };
        if n == 0 && have == 0 {
            break;
        }
        have += n;
        let mut start = 0;
        while let Some(nl) = buf.get(start..have).and_then(|s| s.iter().position(|&b| b == b'\n')) {
            let line = buf.get(start..start + nl).unwrap_or(&[]);
            if let Some(r) = f(line) {
                found = Some(r);
                break 'read;
            }
            start += nl + 1;
        }
        if start == 0 && (have == buf.len() || n == 0) {
            // A line longer than the buffer (or a final line without newline): skip it.
            if n == 0 {
                found = f(buf.get(..have).unwrap_or(&[]));
                break;
            }
            have = 0;
            continue;
        }
        buf.copy_within(start..have, 0);
        have -= start;
    }
    sys::close(fd);
    found
}

struct MapsScanner {
    base: u64,
    base_path: [u8; 256],
    base_len: usize,
}

impl MapsScanner {
    fn line(&mut self, line: &[u8], addr: u64, path: &mut [u8; 256]) -> Option<(usize, u64)> {
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let range = fields.next()?;
        let _perms = fields.next()?;
        let offset = parse_hex(fields.next()?)?;
        let _dev = fields.next()?;
        let _inode = fields.next()?;
        let p = fields.next().unwrap_or(&[]);
        let dash = range.iter().position(|&b| b == b'-')?;
        let lo = parse_hex(range.get(..dash)?)?;
        let hi = parse_hex(range.get(dash + 1..)?)?;
        let plen = p.len().min(256);
        if offset == 0 {
            self.base = lo;
            self.base_len = plen;
            self.base_path.get_mut(..plen)?.copy_from_slice(p.get(..plen)?);
        }
        if addr < lo || addr >= hi {
            return None;
        }
        path.get_mut(..plen)?.copy_from_slice(p.get(..plen)?);
        let same = self.base_path.get(..self.base_len) == p.get(..plen);
        let base = if same { self.base } else { lo.saturating_sub(offset) };
        Some((plen, addr - base))
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}
