//! Executing a [`Plan`]: building the runtime segment and editing the file.
//!
//! The steps, in order:
//! 1. Build the runtime segment: the runtime's read-only part with its
//!    contract filled in, the hook stubs, the hook table, the compiled policy,
//!    the writable part's initial data and the runtime's relocations.
//! 2. Program headers: a read+execute PT_LOAD for that segment, placed after
//!    the last PT_LOAD so they stay sorted by address; the last, writable
//!    PT_LOAD grows its zero-filled tail to cover the runtime's writable part.
//!    No address in use moves. The new entry replaces a PT_NOTE where there is
//!    one (the table stays put); otherwise the table, one entry longer, moves
//!    to the end of the new segment at an offset that keeps `AT_PHDR` right
//!    on old kernels (see [`PhdrTactic`]).
//!    In glibc executables two spare `DT_NULL` entries of `.dynamic` become
//!    `DT_PREINIT_ARRAY` (see [`crate::dynamic`]).
//! 3. Code: every planned site becomes a direct jmp/call to its stub.
//! 4. Section headers: a new table at the end of the file, with `.dfpatch`,
//!    `.dfpatch.data` and `.dfpatch.restore` added, so tools see what was added.
//! 5. ELF header: the new entry point and section table.

use crate::dynamic::{self, Preinit};
use crate::elf::{Elf, Phdr, Section, EHDR_SIZE, PHDR_SIZE, SHDR_SIZE};
use crate::error::{malformed, Error, Result};
use crate::output::Output;
use crate::plan::{align_up, HookKind, PhdrTactic, Plan, PAGE, USER_TOP};
use crate::restore;
use crate::runtime::Runtime;
use crate::trampoline;
use dfpatch_runtime::bytes::{u32_at, u64_at};
use dfpatch_runtime::contract::{Contract, CONTRACT_VERSION, FLAG_INTERP, FLAG_PIE, MAGIC};
use object::elf;

/// What patching produced, for the summary line.
pub struct Patched<'a> {
    pub output: Output<'a>,
    pub segment_size: u64,
    pub policy_hash: [u8; 32],
}

pub fn apply<'a>(e: &Elf<'a>, rt: &Runtime, plan: &Plan, policy_table: &[u8]) -> Result<Patched<'a>> {
    let l = &plan.layout;
    let policy_hash = dfpatch_policy::hash(policy_table);

    // 1. The runtime segment.
    let mut seg = rt.rx.clone();
    seg.resize(align_up(seg.len() as u64, 16).unwrap_or(0) as usize, 0xcc);
    debug_assert_eq!(l.rx_vaddr + seg.len() as u64, l.stubs_vaddr);
    for (k, h) in plan.hooks.iter().enumerate() {
        let real = match h.kind {
            HookKind::Got => trampoline::Real::Got(h.vaddr),
            HookKind::Detour => trampoline::Real::Direct(h.vaddr),
            HookKind::Syscall => continue,
        };
        debug_assert_eq!(l.rx_vaddr + seg.len() as u64, h.stub_vaddr);
        let stub = trampoline::stub(k as u32, h.stub_vaddr, l.hook_entry, real, h.prot_filter).ok_or_else(|| {
            Error::OutOfRange(format!(
                "{} would be more than 2 GiB from the runtime placed after the executable's data",
                h.symbol
            ))
        })?;
        seg.extend_from_slice(&stub);
    }
    debug_assert_eq!(l.rx_vaddr + seg.len() as u64, plan.code_vaddr);
    seg.extend_from_slice(&plan.code);
    pad8(&mut seg);
    let hooks_vaddr = l.rx_vaddr + seg.len() as u64;
    for h in &plan.hooks {
        seg.extend_from_slice(&h.vaddr.to_le_bytes());
        seg.extend_from_slice(&h.api_id.to_le_bytes());
        seg.push(h.kind.contract());
        seg.extend_from_slice(&[0; 5]);
    }
    let policy_vaddr = l.rx_vaddr + seg.len() as u64;
    seg.extend_from_slice(policy_table);
    pad8(&mut seg);
    let libplans = libplans_table(plan);
    let libplans_vaddr = if libplans.is_empty() { 0 } else { l.rx_vaddr + seg.len() as u64 };
    seg.extend_from_slice(&libplans);
    pad8(&mut seg);
    let rw_init_vaddr = l.rx_vaddr + seg.len() as u64;
    seg.extend_from_slice(&rt.rw_init);
    pad8(&mut seg);
    let rel_vaddr = l.rx_vaddr + seg.len() as u64;
    for (off, addend) in &rt.relocs {
        seg.extend_from_slice(&off.to_le_bytes());
        seg.extend_from_slice(&addend.to_le_bytes());
    }
    // The DT_PREINIT_ARRAY element: in the segment when its value is known
    // now (non-PIE), else in the writable area after the runtime's image,
    // written by the loader through the copied relocation table.
    let preinit_target = l.rx_vaddr + (rt.preinit - rt.rx_start);
    let mut rw_end = l.rw_vaddr + l.rw_size;
    let array_vaddr = match plan.preinit {
        Preinit::Direct => {
            let at = l.rx_vaddr + seg.len() as u64;
            seg.extend_from_slice(&preinit_target.to_le_bytes());
            at
        }
        Preinit::Relocated { .. } => {
            let at = align_up(rw_end, 8).unwrap_or(rw_end);
            rw_end = at + 8;
            at
        }
        Preinit::Skipped(_) => 0,
    };
    let new_rela_vaddr = l.rx_vaddr + seg.len() as u64;
    let preinit = dynamic::preinit_edits(e, &plan.preinit, array_vaddr, new_rela_vaddr, preinit_target)?;
    if let Some(p) = &preinit {
        seg.extend_from_slice(&p.rela);
    }
    let mut out = Output::new(e.data);

    // 2. Program headers.
    let mut phdrs = e.phdrs.clone();
    let rw = &mut phdrs[l.rw_phdr];
    rw.p_memsz = rw_end - rw.p_vaddr;
    let mut new_load = Phdr {
        p_type: elf::PT_LOAD,
        p_flags: elf::PF_R | elf::PF_X,
        p_offset: l.rx_offset,
        p_vaddr: l.rx_vaddr,
        p_paddr: l.rx_vaddr,
        p_filesz: 0,
        p_memsz: 0,
        p_align: PAGE,
    };
    let mut ehdr_phdrs = None;
    match l.phdrs {
        PhdrTactic::Reuse { index, .. } => {
            phdrs.remove(index);
        }
        PhdrTactic::MoveTable => {
            pad8(&mut seg);
            let at = seg.len() as u64;
            let size = ((phdrs.len() + 1) * PHDR_SIZE) as u64;
            seg.resize(seg.len() + size as usize, 0);
            for p in phdrs.iter_mut().filter(|p| p.p_type == elf::PT_PHDR) {
                p.p_offset = l.rx_offset + at;
                p.p_vaddr = l.rx_vaddr + at;
                p.p_paddr = l.rx_vaddr + at;
                p.p_filesz = size;
                p.p_memsz = size;
            }
            ehdr_phdrs = Some((l.rx_offset + at, at as usize));
        }
    }
    new_load.p_filesz = seg.len() as u64;
    new_load.p_memsz = seg.len() as u64;
    let last_load = phdrs.iter().rposition(|p| p.p_type == elf::PT_LOAD).map_or(0, |i| i + 1);
    phdrs.insert(last_load, new_load);
    let table: Vec<u8> = phdrs.iter().flat_map(|p| p.to_bytes()).collect();
    let (phoff, phnum) = match ehdr_phdrs {
        Some((offset, at)) => {
            seg[at..at + table.len()].copy_from_slice(&table);
            (offset, phdrs.len())
        }
        None => {
            out.edit(e.e_phoff, table)?;
            (e.e_phoff, phdrs.len())
        }
    };
    let seg_end = l.rx_vaddr + seg.len() as u64;
    if seg_end > USER_TOP {
        return Err(Error::OutOfRange(format!("the runtime would end at {seg_end:#x}, above user space")));
    }

    // The contract, now that every address in the segment is known.
    let exe_lo = e.loads().map(|p| p.p_vaddr).min().unwrap_or(0);
    let mut tool_version = [0u8; 16];
    let v = env!("CARGO_PKG_VERSION").as_bytes();
    tool_version[..v.len().min(16)].copy_from_slice(&v[..v.len().min(16)]);
    let contract = Contract {
        magic: MAGIC,
        version: CONTRACT_VERSION,
        flags: if plan.flavour.pie { FLAG_PIE } else { 0 } | if plan.flavour.dynamic { FLAG_INTERP } else { 0 },
        self_vaddr: l.rx_vaddr + (rt.contract - rt.rx_start),
        orig_entry: e.e_entry,
        rw_vaddr: l.rw_vaddr,
        rw_init_vaddr,
        rw_init_len: rt.rw_init.len() as u64,
        rel_vaddr,
        rel_count: rt.relocs.len() as u64,
        dynamic_vaddr: e.dynamic_vaddr(),
        exe_lo,
        exe_hi: seg_end,
        hooks_vaddr,
        hooks_count: plan.hooks.len() as u64,
        policy_vaddr,
        policy_len: policy_table.len() as u64,
        policy_hash,
        tool_version,
        errno_fn_vaddr: plan.errno.function,
        errno_tpoff: plan.errno.tpoff,
        libplans_vaddr,
        libplans_len: libplans.len() as u64,
    };
    let at = (rt.contract - rt.rx_start) as usize;
    seg[at..at + std::mem::size_of::<Contract>()].copy_from_slice(&contract_bytes(&contract));

    if let Some(p) = preinit {
        out.edit(p.dynamic_offset, p.dynamic)?;
    }

    // 3. Code.
    for s in &plan.sites {
        out.edit(s.offset, s.bytes.clone())?;
    }

    // The segment itself, page aligned at the end of the file.
    out.append_at(l.rx_offset, &seg);

    // 4. Section headers, with the restore data as a non-loaded section.
    let names = [".dfpatch", ".dfpatch.data", ".dfpatch.restore"];
    let old_shstr =
        e.sections.get(e.e_shstrndx as usize).ok_or_else(|| malformed("section name table index out of range"))?;
    let mut shstrtab = e.section_data(old_shstr)?.to_vec();
    let mut name_offs = Vec::new();
    for n in names {
        name_offs.push(shstrtab.len() as u32);
        shstrtab.extend_from_slice(n.as_bytes());
        shstrtab.push(0);
    }
    // The ELF header edit is made last but recorded now, so the restore data
    // (taken from the edit list) holds the original header.
    let mut ehdr = e.data[..EHDR_SIZE].to_vec();
    out.edit(0, vec![0; EHDR_SIZE])?;
    let restore_blob = restore::encode(e.data.len() as u64, l.rx_offset, &out.originals());

    let restore_off = out.append_at(out.len(), &restore_blob);
    let shstr_off = out.append_at(out.len(), &shstrtab);
    let mut sections: Vec<Section> = e.sections.clone();
    let shstr = &mut sections[e.e_shstrndx as usize];
    shstr.sh_offset = shstr_off;
    shstr.sh_size = shstrtab.len() as u64;
    let base_index = sections.len();
    sections.push(Section {
        index: base_index,
        name: names[0].into(),
        sh_name: name_offs[0],
        sh_type: elf::SHT_PROGBITS,
        sh_flags: u64::from(elf::SHF_ALLOC | elf::SHF_EXECINSTR),
        sh_addr: l.rx_vaddr,
        sh_offset: l.rx_offset,
        sh_size: seg.len() as u64,
        sh_link: 0,
        sh_info: 0,
        sh_addralign: PAGE,
        sh_entsize: 0,
    });
    sections.push(Section {
        index: base_index + 1,
        name: names[1].into(),
        sh_name: name_offs[1],
        sh_type: elf::SHT_NOBITS,
        sh_flags: u64::from(elf::SHF_ALLOC | elf::SHF_WRITE),
        sh_addr: l.rw_vaddr,
        sh_offset: l.rx_offset,
        sh_size: rw_end - l.rw_vaddr,
        sh_link: 0,
        sh_info: 0,
        sh_addralign: PAGE,
        sh_entsize: 0,
    });
    sections.push(Section {
        index: base_index + 2,
        name: names[2].into(),
        sh_name: name_offs[2],
        sh_type: elf::SHT_PROGBITS,
        sh_flags: 0,
        sh_addr: 0,
        sh_offset: restore_off,
        sh_size: restore_blob.len() as u64,
        sh_link: 0,
        sh_info: 0,
        sh_addralign: 1,
        sh_entsize: 0,
    });
    let shnum = u16::try_from(sections.len()).map_err(|_| malformed("too many sections"))?;
    if shnum >= elf::SHN_LORESERVE {
        return Err(malformed("too many sections to add more"));
    }
    let shdr_bytes: Vec<u8> = sections.iter().flat_map(|s| s.to_bytes()).collect();
    let shoff = align_up(out.len(), 8).ok_or_else(|| malformed("file too large"))?;
    out.append_at(shoff, &shdr_bytes);

    // 5. ELF header.
    ehdr[24..32].copy_from_slice(&l.new_entry.to_le_bytes());
    ehdr[32..40].copy_from_slice(&phoff.to_le_bytes());
    ehdr[56..58]
        .copy_from_slice(&u16::try_from(phnum).map_err(|_| malformed("too many program headers"))?.to_le_bytes());
    ehdr[40..48].copy_from_slice(&shoff.to_le_bytes());
    ehdr[58..60].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
    ehdr[60..62].copy_from_slice(&shnum.to_le_bytes());
    out.replace_edit(0, ehdr)?;
    debug_assert!(e.e_phoff as usize + e.phdrs.len() * PHDR_SIZE <= e.data.len());

    Ok(Patched { output: out, segment_size: seg.len() as u64 + (rw_end - l.rw_vaddr), policy_hash })
}

/// The library plans as the runtime reads them (`libs::LibPlans`): counts,
/// then 48-byte library records (build ID, its length, first site, site
/// count; a length of u32::MAX means size, mtime and its nanoseconds instead),
/// 80-byte site records (offsets from the library's base, the trampoline's
/// place in the table, where its jump back and hook slot go, for a detoured
/// entry its API and rel32 fixups, the original window bytes), then the
/// trampolines.
fn libplans_table(plan: &Plan) -> Vec<u8> {
    let libs: Vec<_> = plan.libraries.iter().filter(|l| !l.sites.is_empty()).collect();
    if libs.is_empty() {
        return Vec::new();
    }
    let nsites: usize = libs.iter().map(|l| l.sites.len()).sum();
    let mut head = Vec::new();
    head.extend_from_slice(&(libs.len() as u32).to_le_bytes());
    head.extend_from_slice(&(nsites as u32).to_le_bytes());
    let tramps_at = 8 + libs.len() * 48 + nsites * 80;
    let mut sites = Vec::new();
    let mut tramps = Vec::new();
    let mut first = 0u32;
    for l in &libs {
        let mut id = [0u8; 32];
        let id_len = match &l.identity {
            crate::libplan::Identity::BuildId(b) => {
                id[..b.len()].copy_from_slice(b);
                b.len() as u32
            }
            crate::libplan::Identity::File { size, mtime, mtime_nsec } => {
                id[..8].copy_from_slice(&size.to_le_bytes());
                id[8..16].copy_from_slice(&mtime.to_le_bytes());
                id[16..24].copy_from_slice(&mtime_nsec.to_le_bytes());
                u32::MAX
            }
        };
        head.extend_from_slice(&id);
        head.extend_from_slice(&id_len.to_le_bytes());
        head.extend_from_slice(&first.to_le_bytes());
        head.extend_from_slice(&(l.sites.len() as u32).to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        first += l.sites.len() as u32;
        for s in &l.sites {
            sites.extend_from_slice(&s.vaddr.to_le_bytes());
            sites.extend_from_slice(&s.syscall.to_le_bytes());
            sites.extend_from_slice(&((tramps_at + tramps.len()) as u32).to_le_bytes());
            sites.extend_from_slice(&(s.tramp.len() as u32).to_le_bytes());
            sites.extend_from_slice(&s.back_at.map_or(u32::MAX, |b| b as u32).to_le_bytes());
            sites.extend_from_slice(&(s.slot_at as u32).to_le_bytes());
            sites.extend_from_slice(&(s.len as u32).to_le_bytes());
            // Entries: API, fixup count, kind 1, up to MAX_FIXUPS rel32 offsets
            // (over the hook number's place, which entries do not have).
            let mut extra = [0u8; 12];
            // `syscall` sites: where the hook number is in the trampoline.
            extra[0..4].copy_from_slice(&(s.number_at as u32).to_le_bytes());
            if let Some(api) = s.api.and_then(dfpatch_runtime::apis::ApiId::from_name) {
                extra[0..2].copy_from_slice(&(api as u16).to_le_bytes());
                extra[2] = s.fixups.len() as u8;
                extra[3] = 1;
                for (k, f) in s.fixups.iter().take(crate::libplan::MAX_FIXUPS).enumerate() {
                    extra[4 + 2 * k..6 + 2 * k].copy_from_slice(&f.to_le_bytes());
                }
            }
            sites.extend_from_slice(&extra);
            let mut original = [0u8; 32];
            original[..s.original.len()].copy_from_slice(&s.original);
            sites.extend_from_slice(&original);
            tramps.extend_from_slice(&s.tramp);
        }
    }
    debug_assert_eq!(sites.len(), nsites * 80);
    head.extend(sites);
    debug_assert_eq!(head.len(), tramps_at);
    head.extend(tramps);
    head
}

fn pad8(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(8) {
        v.push(0);
    }
}

/// The contract as the runtime reads it (`#[repr(C)]`, little-endian).
fn contract_bytes(c: &Contract) -> Vec<u8> {
    let mut b = Vec::with_capacity(std::mem::size_of::<Contract>());
    b.extend_from_slice(&c.magic);
    b.extend_from_slice(&c.version.to_le_bytes());
    b.extend_from_slice(&c.flags.to_le_bytes());
    for v in [
        c.self_vaddr,
        c.orig_entry,
        c.rw_vaddr,
        c.rw_init_vaddr,
        c.rw_init_len,
        c.rel_vaddr,
        c.rel_count,
        c.dynamic_vaddr,
        c.exe_lo,
        c.exe_hi,
        c.hooks_vaddr,
        c.hooks_count,
        c.policy_vaddr,
        c.policy_len,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&c.policy_hash);
    b.extend_from_slice(&c.tool_version);
    b.extend_from_slice(&c.errno_fn_vaddr.to_le_bytes());
    b.extend_from_slice(&c.errno_tpoff.to_le_bytes());
    b.extend_from_slice(&c.libplans_vaddr.to_le_bytes());
    b.extend_from_slice(&c.libplans_len.to_le_bytes());
    assert_eq!(b.len(), std::mem::size_of::<Contract>(), "contract layout and encoder disagree");
    b
}

/// Reads a contract back (for `inspect` of a patched file and re-patching).
pub fn contract_from_bytes(b: &[u8]) -> Option<Contract> {
    let mut c = Contract::EMPTY;
    c.magic.copy_from_slice(b.get(0..8)?);
    c.version = u32_at(b, 8)?;
    c.flags = u32_at(b, 12)?;
    let fields: [&mut u64; 14] = [
        &mut c.self_vaddr,
        &mut c.orig_entry,
        &mut c.rw_vaddr,
        &mut c.rw_init_vaddr,
        &mut c.rw_init_len,
        &mut c.rel_vaddr,
        &mut c.rel_count,
        &mut c.dynamic_vaddr,
        &mut c.exe_lo,
        &mut c.exe_hi,
        &mut c.hooks_vaddr,
        &mut c.hooks_count,
        &mut c.policy_vaddr,
        &mut c.policy_len,
    ];
    for (i, f) in fields.into_iter().enumerate() {
        *f = u64_at(b, 16 + i * 8)?;
    }
    c.policy_hash.copy_from_slice(b.get(128..160)?);
    c.tool_version.copy_from_slice(b.get(160..176)?);
    c.errno_fn_vaddr = u64_at(b, 176)?;
    c.errno_tpoff = u64_at(b, 184)? as i64;
    c.libplans_vaddr = u64_at(b, 192)?;
    c.libplans_len = u64_at(b, 200)?;
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_round_trips() {
        let mut c = Contract::EMPTY;
        c.magic = MAGIC;
        c.version = 9;
        c.policy_len = 77;
        c.exe_hi = 5;
        c.policy_hash[31] = 1;
        c.tool_version[0] = b'x';
        c.errno_tpoff = -72;
        assert_eq!(contract_from_bytes(&contract_bytes(&c)), Some(c));
    }
}
