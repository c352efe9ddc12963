//! The runtime segment's map: every range of the new read+execute segment
//! (and of the writable area the last `PT_LOAD` grows by), reserved by the
//! plan from the sizes of what goes there, then filled by [`crate::inject`]
//! through a [`Writer`] that refuses to put anything anywhere else. A
//! mismatch between plan and emit is an error in every build: no file is
//! written, never a wrong one.
//!
//! The segment, in address order (each part 8-aligned unless said):
//!
//! ```text
//! runtime    the runtime's read-only image, padded with int3 to 16
//! stubs      one STUB_SIZE stub per call hook (PLT/GOT, detour)
//! code       trampolines (detours, syscall sites), int3-padded to 8
//! hooks      the HookEntry table
//! policy     the compiled policy table
//! libplans   the library plans table (empty when none)
//! rw_init    the initial data of the runtime's writable image
//! relocs     the runtime's own Relocation records
//! preinit    non-PIE glibc: the DT_PREINIT_ARRAY element (8 bytes)
//! rela       PIE glibc: DT_RELA copied, plus the element's relocation
//! phdrs      no spare program header: the moved table, one entry longer
//! ```

use crate::dynamic::Preinit;
use crate::error::{Error, Result};
use crate::plan::{align_up, Layout, PhdrTactic, USER_TOP};
use crate::runtime::Runtime;
use dfpatch_runtime::contract::{HookEntry, Record, Relocation};

/// `[vaddr, vaddr + len)`, link-time addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub vaddr: u64,
    pub len: u64,
}

impl Range {
    pub fn end(&self) -> u64 {
        self.vaddr + self.len
    }
}

/// The sizes the plan knows once hooks, trampolines and tables are made.
pub struct Sizes<'a> {
    /// Call hooks that need a stub (PLT/GOT and detours; not `syscall` sites).
    pub stubs: u64,
    pub code: u64,
    pub hooks: u64,
    pub policy: u64,
    pub libplans: u64,
    pub preinit: &'a Preinit,
    /// Program headers of the input file.
    pub phdrs: usize,
}

/// Where everything goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentMap {
    pub runtime: Range,
    pub stubs: Range,
    pub code: Range,
    pub hooks: Range,
    pub policy: Range,
    pub libplans: Range,
    pub rw_init: Range,
    pub relocs: Range,
    pub preinit_element: Range,
    pub rela: Range,
    pub phdrs: Range,
    /// End of the segment.
    pub end: u64,
    /// The `DT_PREINIT_ARRAY` element: in the segment (non-PIE), after the
    /// runtime's writable image (PIE), 0 when there is none.
    pub preinit_array: u64,
    /// End of the writable area (the runtime's image, and a PIE's element).
    pub rw_end: u64,
}

/// Reserves every range, in the order of the module's table.
pub fn reserve(l: &Layout, rt: &Runtime, s: &Sizes) -> Result<SegmentMap> {
    let overflow = || Error::OutOfRange("the runtime segment's size overflows".into());
    let mut at = l.rx_vaddr;
    let mut next = |len: u64, align: u64| -> Result<Range> {
        let vaddr = align_up(at, align).ok_or_else(overflow)?;
        at = vaddr.checked_add(len).ok_or_else(overflow)?;
        Ok(Range { vaddr, len })
    };
    let runtime = next(rt.rx.len() as u64, 1)?;
    let stubs = next(s.stubs * crate::x86::STUB_SIZE, 16)?;
    let code = next(s.code, 1)?;
    let hooks = next(s.hooks * HookEntry::SIZE as u64, 8)?;
    let policy = next(s.policy, 1)?;
    let libplans = next(s.libplans, 8)?;
    let rw_init = next(rt.rw_init.len() as u64, 8)?;
    let relocs = next(rt.relocs.len() as u64 * Relocation::SIZE as u64, 8)?;
    let direct = matches!(s.preinit, Preinit::Direct);
    let preinit_element = next(if direct { 8 } else { 0 }, 1)?;
    let rela_len = match s.preinit {
        Preinit::Relocated { rela_size, .. } => rela_size.checked_add(24).ok_or_else(overflow)?,
        _ => 0,
    };
    let rela = next(rela_len, 1)?;
    let phdrs = match l.phdrs {
        PhdrTactic::MoveTable => next(((s.phdrs + 1) * crate::elf::PHDR_SIZE) as u64, 8)?,
        PhdrTactic::Reuse { .. } => Range { vaddr: at, len: 0 },
    };
    let end = at;
    if end > USER_TOP {
        return Err(Error::OutOfRange(format!("the runtime would end at {end:#x}, above user space")));
    }
    let mut rw_end = l.rw_vaddr.checked_add(l.rw_size).ok_or_else(overflow)?;
    let preinit_array = match s.preinit {
        Preinit::Direct => preinit_element.vaddr,
        Preinit::Relocated { .. } => {
            let element = align_up(rw_end, 8).ok_or_else(overflow)?;
            rw_end = element + 8;
            element
        }
        Preinit::Skipped(_) => 0,
    };
    Ok(SegmentMap {
        runtime,
        stubs,
        code,
        hooks,
        policy,
        libplans,
        rw_init,
        relocs,
        preinit_element,
        rela,
        phdrs,
        end,
        preinit_array,
        rw_end,
    })
}

/// Fills the segment, part by part, only where the map says.
pub struct Writer {
    base: u64,
    bytes: Vec<u8>,
}

impl Writer {
    pub fn new(map: &SegmentMap) -> Writer {
        Writer { base: map.runtime.vaddr, bytes: Vec::with_capacity((map.end - map.runtime.vaddr) as usize) }
    }

    /// Writes `bytes` as the part `what` reserved at `r`: the gap before it
    /// (alignment) is filled with `fill`. Anything else is an error.
    pub fn put(&mut self, what: &str, r: Range, bytes: &[u8], fill: u8) -> Result<()> {
        let here = self.base + self.bytes.len() as u64;
        if r.vaddr < here || bytes.len() as u64 != r.len {
            return Err(Error::Internal(format!(
                "the {what} ({} bytes, at {here:#x} or later) do not match the plan ({} bytes at {:#x})",
                bytes.len(),
                r.len,
                r.vaddr
            )));
        }
        self.bytes.resize((r.vaddr - self.base) as usize, fill);
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    /// The finished segment, checked to end where the map ends.
    pub fn finish(self, map: &SegmentMap) -> Result<Vec<u8>> {
        let end = self.base + self.bytes.len() as u64;
        if end != map.end {
            return Err(Error::Internal(format!(
                "the runtime segment ends at {end:#x}, planned to end at {:#x}",
                map.end
            )));
        }
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_refuses_what_was_not_planned() {
        let map = SegmentMap {
            runtime: Range { vaddr: 0x1000, len: 4 },
            hooks: Range { vaddr: 0x1008, len: 16 },
            end: 0x1018,
            ..SegmentMap::default()
        };
        let mut w = Writer::new(&map);
        w.put("runtime", map.runtime, &[1; 4], 0xcc).unwrap();
        assert!(w.put("hooks", map.hooks, &[2; 15], 0).is_err(), "a wrong size");
        assert!(w.put("hooks", Range { vaddr: 0x1002, len: 16 }, &[2; 16], 0).is_err(), "an overlap");
        w.put("hooks", map.hooks, &[2; 16], 0).unwrap();
        let bytes = w.finish(&map).unwrap();
        assert_eq!(&bytes[4..8], &[0; 4], "alignment filled");
        let mut short = Writer::new(&map);
        short.put("runtime", map.runtime, &[1; 4], 0xcc).unwrap();
        assert!(short.finish(&map).is_err(), "a segment that ends early");
    }
}
