//! What the runtime learns from the dynamic loader and the kernel without
//! libc: symbol lookup through the link map (`DT_DEBUG` → `r_debug`), and which
//! module an address belongs to (`/proc/self/maps`).

use crate::mem;
use crate::sys;

const DT_NULL: u64 = 0;
pub(crate) const DT_HASH: u64 = 4;
pub(crate) const DT_STRTAB: u64 = 5;
pub(crate) const DT_SYMTAB: u64 = 6;
pub(crate) const DT_DEBUG: u64 = 21;
pub(crate) const DT_GNU_HASH: u64 = 0x6fff_fef5;

/// Reads `N` bytes of the loaded objects' own structures: the link map, the
/// dynamic sections and the tables they point at, ELF and program headers,
/// call frame tables. The loader mapped these and used them to load and
/// relocate the objects; objects loaded at start-up are never unloaded.
/// Only for such addresses (program data goes through [`mem`]).
pub(crate) fn loaded<const N: usize>(addr: u64) -> Option<[u8; N]> {
    if addr < 4096 || addr.checked_add(N as u64)? > 0x7fff_ffff_f000 {
        return None;
    }
    // SAFETY: see above: `addr` lies in memory the loader mapped for an
    // object that stays loaded; one unaligned read of N bytes.
    Some(unsafe { core::ptr::read_unaligned(addr as *const [u8; N]) })
}

pub(crate) fn loaded_u64(addr: u64) -> Option<u64> {
    loaded::<8>(addr).map(u64::from_le_bytes)
}

pub(crate) fn loaded_u32(addr: u64) -> Option<u32> {
    loaded::<4>(addr).map(u32::from_le_bytes)
}

/// Looks `name` up in every object of the link map, starting from the
/// executable's dynamic section at `dynamic` (a run-time address). Returns the
/// run-time address of the first defined function of that name.
pub fn lookup(dynamic: u64, name: &[u8]) -> Option<u64> {
    let r_debug = dyn_value(dynamic, 0, DT_DEBUG)?;
    let mut map = mem::read_u64(r_debug.checked_add(8)?)?;
    let mut guard = 0;
    while map != 0 && guard < 4096 {
        let l_addr = mem::read_u64(map)?;
        let l_ld = mem::read_u64(map + 16)?;
        if let Some(addr) = lookup_in_object(l_addr, l_ld, name) {
            return Some(addr);
        }
        map = mem::read_u64(map + 24)?;
        guard += 1;
    }
    None
}

/// Value of the first `tag` entry of a dynamic section; pointers are rebased
/// by `base` when the loader left them unrelocated (musl does).
pub(crate) fn dyn_value(dynamic: u64, base: u64, tag: u64) -> Option<u64> {
    let mut at = dynamic;
    for _ in 0..512 {
        let t = mem::read_u64(at)?;
        if t == DT_NULL {
            return None;
        }
        if t == tag {
            let v = mem::read_u64(at + 8)?;
            return Some(if v < base { v + base } else { v });
        }
        at += 16;
    }
    None
}

fn lookup_in_object(base: u64, dynamic: u64, name: &[u8]) -> Option<u64> {
    if dynamic == 0 {
        return None;
    }
    let symtab = dyn_value(dynamic, base, DT_SYMTAB)?;
    let strtab = dyn_value(dynamic, base, DT_STRTAB)?;
    let check = |index: u64| -> Option<u64> {
        let sym = symtab.checked_add(index.checked_mul(24)?)?;
        let st_name = mem::read_u32(sym)? as u64;
        let info = {
            let mut b = [0u8; 4];
            if mem::read(sym + 4, &mut b) != 4 {
                return None;
            }
            b
        };
        let shndx = u16::from_le_bytes([info[2], info[3]]);
        let value = mem::read_u64(sym + 8)?;
        // Defined STT_FUNC only (an IFUNC would need its resolver called).
        if shndx == 0 || info[0] & 0xf != 2 || value == 0 {
            return None;
        }
        if !name_is(strtab + st_name, name) {
            return None;
        }
        Some(base + value)
    };
    if let Some(gnu) = dyn_value(dynamic, base, DT_GNU_HASH) {
        return gnu_lookup(gnu, name, &check);
    }
    let hash = dyn_value(dynamic, base, DT_HASH)?;
    let nchain = mem::read_u32(hash + 4)? as u64;
    (0..nchain.min(1 << 20)).find_map(check)
}

fn gnu_lookup(table: u64, name: &[u8], check: &impl Fn(u64) -> Option<u64>) -> Option<u64> {
    let nbuckets = mem::read_u32(table)? as u64;
    let symoffset = mem::read_u32(table + 4)? as u64;
    let bloom_size = mem::read_u32(table + 8)? as u64;
    if nbuckets == 0 {
        return None;
    }
    let h = name.iter().fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32));
    let buckets = table + 16 + bloom_size * 8;
    let chains = buckets + nbuckets * 4;
    let first = mem::read_u32(buckets + (h as u64 % nbuckets) * 4)? as u64;
    if first < symoffset {
        return None;
    }
    // A chain ends at the entry whose low bit is set; bound the walk anyway.
    for sym in first..first + (1 << 20) {
        let ch = mem::read_u32(chains + (sym - symoffset) * 4)?;
        if ch | 1 == h | 1 {
            if let Some(addr) = check(sym) {
                return Some(addr);
            }
        }
        if ch & 1 == 1 {
            break;
        }
    }
    None
}

pub(crate) fn name_is(addr: u64, name: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    let want = name.len() + 1;
    match buf.get_mut(..want) {
        Some(dst) => mem::read(addr, dst) == want && &dst[..name.len()] == name && dst[name.len()] == 0,
        None => false,
    }
}

/// The module holding `addr` according to `/proc/self/maps`: its path is copied
/// into `path` (returning its length) and the offset is `addr` minus the
/// module's load base (the start of its mapping at file offset 0), which for
/// shared objects is the ELF virtual address that `addr2line` and `objdump` use.
pub fn module_of(addr: u64, path: &mut [u8; 256]) -> Option<(usize, u64)> {
    let mut scanner = MapsScanner { base: 0, base_path: [0; 256], base_len: 0 };
    scan_maps(|line| scanner.line(line, addr, path))
}

/// The protection (`PROT_READ` 1 | `PROT_WRITE` 2 | `PROT_EXEC` 4) of the
/// mapping that holds `addr`, from `/proc/self/maps`.
pub fn protection_of(addr: u64) -> Option<u64> {
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
        Some(bit(0, b'r', 1) | bit(1, b'w', 2) | bit(2, b'x', 4))
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
