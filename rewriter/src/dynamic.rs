//! The executable's dynamic section, and the `DT_PREINIT_ARRAY` entry that
//! makes glibc's loader start the runtime before any library constructor.
//!
//! Linkers leave spare `DT_NULL` entries at the end of `.dynamic` (GNU ld
//! leaves several); two of them become `DT_PREINIT_ARRAY` and
//! `DT_PREINIT_ARRAYSZ`. The array's one element must hold the run-time
//! address of `dfp_preinit`:
//! * non-PIE: the address is known, the array sits in the runtime segment;
//! * PIE: the element needs an `R_X86_64_RELATIVE` relocation, so the
//!   relocation table `DT_RELA` names is copied into the runtime segment with
//!   that one entry appended, and `DT_RELA`/`DT_RELASZ` point at the copy. The
//!   element lives in the runtime's zero-filled writable area, which the
//!   loader can write while relocating.

use crate::elf::{slice, Elf};
use crate::error::{malformed, Result};
use dfpatch_runtime::bytes::u64_at;
use object::elf;
use serde::Serialize;

// `object::elf`'s dynamic tags, as the u64 a `.dynamic` entry holds.
const DT_RELA: u64 = elf::DT_RELA as u64;
const DT_RELASZ: u64 = elf::DT_RELASZ as u64;
const DT_RELAENT: u64 = elf::DT_RELAENT as u64;
const DT_JMPREL: u64 = elf::DT_JMPREL as u64;
const DT_PLTRELSZ: u64 = elf::DT_PLTRELSZ as u64;
const DT_PREINIT_ARRAY: u64 = elf::DT_PREINIT_ARRAY as u64;
const DT_PREINIT_ARRAYSZ: u64 = elf::DT_PREINIT_ARRAYSZ as u64;

/// The dynamic section as found in the file.
#[derive(Clone, Debug)]
pub struct Dynamic {
    pub offset: u64,
    pub entries: Vec<(u64, u64)>,
}

impl Dynamic {
    pub fn read(e: &Elf) -> Result<Option<Dynamic>> {
        let Some(p) = e.phdrs.iter().find(|p| p.p_type == elf::PT_DYNAMIC) else { return Ok(None) };
        let bytes =
            slice(e.data, p.p_offset, p.p_filesz).ok_or_else(|| malformed("PT_DYNAMIC lies outside the file"))?;
        let entries = bytes.chunks_exact(16).filter_map(|c| Some((u64_at(c, 0)?, u64_at(c, 8)?))).collect();
        Ok(Some(Dynamic { offset: p.p_offset, entries }))
    }

    pub fn get(&self, tag: u64) -> Option<u64> {
        self.entries.iter().take_while(|(t, _)| *t != 0).find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }

    fn first_null(&self) -> usize {
        self.entries.iter().position(|(t, _)| *t == 0).unwrap_or(self.entries.len())
    }

    fn set(&mut self, tag: u64, value: u64) {
        let n = self.first_null();
        if let Some(e) = self.entries.iter_mut().take(n).find(|(t, _)| *t == tag) {
            e.1 = value;
        }
    }

    /// Puts an entry in the first DT_NULL slot; `plan` checked there are spare ones.
    fn push(&mut self, tag: u64, value: u64) -> Result<()> {
        let n = self.first_null();
        let len = self.entries.len();
        match self.entries.get_mut(n) {
            Some(e) if n + 1 < len => {
                *e = (tag, value);
                Ok(())
            }
            _ => Err(malformed("no spare DT_NULL entry left in the dynamic section")),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.entries.iter().flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect()
    }
}

/// How the runtime gets started before library constructors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "how", content = "detail")]
pub enum Preinit {
    /// Non-PIE: a `DT_PREINIT_ARRAY` holding the runtime's address.
    Direct,
    /// PIE: a `DT_PREINIT_ARRAY` element relocated through a copied `DT_RELA` table.
    Relocated { rela_vaddr: u64, rela_size: u64 },
    /// Not possible here; the entry point still starts the runtime before `main`.
    Skipped(String),
}

impl Preinit {
    pub fn plan(e: &Elf, glibc: bool) -> Result<Preinit> {
        let skip = |why: &str| Ok(Preinit::Skipped(why.to_string()));
        if !glibc {
            return skip("only glibc's loader runs DT_PREINIT_ARRAY");
        }
        let Some(d) = Dynamic::read(e)? else { return skip("no dynamic section") };
        if d.get(DT_PREINIT_ARRAY).is_some() {
            return skip("the executable already has a DT_PREINIT_ARRAY");
        }
        let n = d.first_null();
        if d.entries.get(n..n + 3).is_none_or(|e| e.iter().any(|(t, _)| *t != 0)) {
            return skip("no two spare DT_NULL entries in the dynamic section");
        }
        if e.e_type == elf::ET_EXEC {
            return Ok(Preinit::Direct);
        }
        let (Some(rela), Some(size)) = (d.get(DT_RELA), d.get(DT_RELASZ)) else {
            return skip("PIE without a DT_RELA table to extend");
        };
        if d.get(DT_RELAENT).is_some_and(|n| n != 24) || size % 24 != 0 {
            return skip("unusual DT_RELAENT");
        }
        if let (Some(jmprel), Some(pltsz)) = (d.get(DT_JMPREL), d.get(DT_PLTRELSZ)) {
            if jmprel < rela.saturating_add(size) && rela < jmprel.saturating_add(pltsz) {
                return skip("DT_RELA overlaps DT_JMPREL");
            }
        }
        if e.offset_of(rela, size).is_none() {
            return skip("DT_RELA is not in the file");
        }
        Ok(Preinit::Relocated { rela_vaddr: rela, rela_size: size })
    }
}

/// What adding the preinit entry changes.
pub struct PreinitEdits {
    /// File offset and new bytes of the dynamic section.
    pub dynamic_offset: u64,
    pub dynamic: Vec<u8>,
    /// For PIE, the relocation table copy with the new entry (goes into the runtime segment).
    pub rela: Vec<u8>,
}

/// The edits that make the loader call `target` from `DT_PREINIT_ARRAY`,
/// whose one element is at `array_vaddr`; a PIE's new relocation table will
/// be placed at `new_rela_vaddr`.
pub fn preinit_edits(
    e: &Elf,
    how: &Preinit,
    array_vaddr: u64,
    new_rela_vaddr: u64,
    target: u64,
) -> Result<Option<PreinitEdits>> {
    let Some(mut d) = Dynamic::read(e)? else { return Ok(None) };
    let mut rela = Vec::new();
    match how {
        Preinit::Skipped(_) => return Ok(None),
        Preinit::Direct => {}
        Preinit::Relocated { rela_vaddr, rela_size } => {
            let off = e.offset_of(*rela_vaddr, *rela_size).ok_or_else(|| malformed("DT_RELA moved"))?;
            rela.extend_from_slice(
                slice(e.data, off, *rela_size).ok_or_else(|| malformed("DT_RELA outside the file"))?,
            );
            rela.extend_from_slice(&array_vaddr.to_le_bytes());
            rela.extend_from_slice(&u64::from(elf::R_X86_64_RELATIVE).to_le_bytes());
            rela.extend_from_slice(&target.to_le_bytes());
            d.set(DT_RELA, new_rela_vaddr);
            d.set(DT_RELASZ, rela_size + 24);
        }
    }
    d.push(DT_PREINIT_ARRAY, array_vaddr)?;
    d.push(DT_PREINIT_ARRAYSZ, 8)?;
    Ok(Some(PreinitEdits { dynamic_offset: d.offset, dynamic: d.to_bytes(), rela }))
}
