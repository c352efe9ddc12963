//! Executing a [`Plan`]: filling the runtime segment the plan reserved
//! ([`crate::segment`]) and editing the file, in numbered steps:
//!
//! 1. [`segment`]: the runtime segment, part by part where the plan placed
//!    it: the runtime's read-only part, the hook stubs, the trampolines, the
//!    hook table, the compiled policy, the library plans, the writable
//!    part's initial data and the runtime's relocations, the
//!    `DT_PREINIT_ARRAY` element or the copied `DT_RELA` that relocates it.
//! 2. [`program_headers`]: a read+execute PT_LOAD for that segment, placed
//!    after the last PT_LOAD so they stay sorted by address; the last,
//!    writable PT_LOAD grows its zero-filled tail to cover the runtime's
//!    writable part. No address in use moves. The new entry replaces a
//!    PT_NOTE where there is one (the table stays put); otherwise the table,
//!    one entry longer, moves to the end of the new segment at an offset
//!    that keeps `AT_PHDR` right on old kernels (see [`PhdrTactic`]).
//! 3. [`contract`]: the contract, now that every address is known, written
//!    over the runtime's `DFP_CONTRACT`; in glibc executables two spare
//!    `DT_NULL` entries of `.dynamic` become `DT_PREINIT_ARRAY` (see
//!    [`crate::dynamic`]).
//! 4. Code: every planned site becomes a direct jmp/call to its stub.
//! 5. [`section_headers`]: a new table at the end of the file, with
//!    `.dfpatch`, `.dfpatch.data` and `.dfpatch.restore` added, so tools see
//!    what was added.
//! 6. ELF header: the new entry point and tables.
//!
//! Every step writes only what the plan placed: a mismatch is an
//! [`Error::Internal`], and nothing is written.

use crate::dynamic::{self, PreinitEdits};
use crate::elf::{Elf, Phdr, Section, EHDR_SIZE, SHDR_SIZE};
use crate::error::{malformed, Error, Result};
use crate::output::Output;
use crate::plan::{align_up, HookKind, PhdrTactic, Plan, PAGE};
use crate::restore;
use crate::runtime::Runtime;
use crate::segment::{SegmentMap, Writer};
use crate::x86;
use dfpatch_runtime::contract::{
    Contract, HookEntry, Record, Relocation, CONTRACT_VERSION, FLAG_INTERP, FLAG_PIE, MAGIC,
};
use object::elf;

/// What patching produced, for the summary line.
pub struct Patched<'a> {
    pub output: Output<'a>,
    pub segment_size: u64,
    pub policy_hash: [u8; 32],
}

/// Applies `plan` (made by [`crate::plan::make`] for `e` and `rt`) to `e`:
/// the patched file, as edits and appended parts. Nothing is written here.
pub fn apply<'a>(e: &Elf<'a>, rt: &Runtime, plan: &Plan) -> Result<Patched<'a>> {
    let map = &plan.segment;
    let policy_table = &plan.policy_table;
    let policy_hash = dfpatch_policy::hash(policy_table);
    let mut out = Output::new(e.data);

    // 1. The runtime segment.
    let (mut seg, preinit) = segment(e, rt, plan)?;
    // 2. Program headers.
    let (phoff, phnum) = program_headers(e, plan, &mut seg, &mut out)?;
    // 3. The contract, and the dynamic section's DT_PREINIT_ARRAY.
    let c = contract(e, rt, plan, policy_hash);
    let at = (rt.contract - rt.rx_start) as usize;
    c.encode_into(seg.get_mut(at..).unwrap_or_default())
        .ok_or_else(|| Error::Internal("the runtime image has no room for its contract".into()))?;
    if let Some(p) = preinit {
        out.edit(p.dynamic_offset, p.dynamic)?;
    }
    // 4. Code.
    for s in &plan.sites {
        out.edit(s.offset, s.bytes.clone())?;
    }
    // The segment itself, page aligned at the end of the file.
    out.append_at(plan.layout.rx_offset, &seg);
    // 5. Section headers, with the restore data as a non-loaded section.
    // The ELF header edit is made last but recorded now, so the restore data
    // (taken from the edit list) holds the original header.
    let mut ehdr = e.data[..EHDR_SIZE].to_vec();
    out.edit(0, vec![0; EHDR_SIZE])?;
    let (shoff, shnum) = section_headers(e, plan, seg.len() as u64, &mut out)?;
    // 6. ELF header.
    let phnum = u16::try_from(phnum).map_err(|_| malformed("too many program headers"))?;
    ehdr[24..32].copy_from_slice(&plan.layout.new_entry.to_le_bytes());
    ehdr[32..40].copy_from_slice(&phoff.to_le_bytes());
    ehdr[56..58].copy_from_slice(&phnum.to_le_bytes());
    ehdr[40..48].copy_from_slice(&shoff.to_le_bytes());
    ehdr[58..60].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
    ehdr[60..62].copy_from_slice(&shnum.to_le_bytes());
    out.replace_edit(0, ehdr)?;

    let rw_size = map.rw_end - plan.layout.rw_vaddr;
    Ok(Patched { output: out, segment_size: seg.len() as u64 + rw_size, policy_hash })
}

/// Step 1: the segment's bytes, each part where the plan put it; and the
/// edits that make the loader run `DT_PREINIT_ARRAY` (glibc).
fn segment(e: &Elf, rt: &Runtime, plan: &Plan) -> Result<(Vec<u8>, Option<PreinitEdits>)> {
    let (l, map) = (&plan.layout, &plan.segment);
    let mut w = Writer::new(map);
    w.put("runtime image", map.runtime, &rt.rx, 0)?;
    for (k, h) in plan.hooks.iter().enumerate() {
        let real = match h.kind {
            HookKind::Got => x86::Real::Got(h.vaddr),
            HookKind::Detour => x86::Real::Direct(h.vaddr),
            HookKind::Syscall => continue,
        };
        let stub = x86::stub(k as u32, h.stub_vaddr, l.hook_entry, real, h.prot_filter).ok_or_else(|| {
            Error::OutOfRange(format!(
                "{} would be more than 2 GiB from the runtime placed after the executable's data",
                h.symbol
            ))
        })?;
        let at = crate::segment::Range { vaddr: h.stub_vaddr, len: x86::STUB_SIZE };
        if !(map.stubs.vaddr..map.stubs.end()).contains(&h.stub_vaddr) {
            return Err(Error::Internal(format!("the stub of {} is outside the stubs' range", h.symbol)));
        }
        w.put("hook stub", at, &stub, 0xcc)?;
    }
    if plan.code_vaddr != map.code.vaddr {
        return Err(Error::Internal("the trampolines were encoded for another address".into()));
    }
    w.put("trampolines", map.code, &plan.code, 0xcc)?;
    let mut hooks = vec![0u8; plan.hooks.len() * HookEntry::SIZE];
    for (h, out) in plan.hooks.iter().zip(hooks.chunks_exact_mut(HookEntry::SIZE)) {
        let entry = HookEntry { vaddr: h.vaddr, api: h.api_id, kind: h.kind.contract(), _pad: [0; 5] };
        entry.encode_into(out).ok_or_else(|| Error::Internal("a hook entry".into()))?;
    }
    w.put("hook table", map.hooks, &hooks, 0)?;
    w.put("policy table", map.policy, &plan.policy_table, 0)?;
    w.put("library plans", map.libplans, &plan.libplans, 0)?;
    w.put("runtime's writable data", map.rw_init, &rt.rw_init, 0)?;
    let mut relocs = vec![0u8; rt.relocs.len() * Relocation::SIZE];
    for (&(offset, addend), out) in rt.relocs.iter().zip(relocs.chunks_exact_mut(Relocation::SIZE)) {
        Relocation { offset, addend }.encode_into(out).ok_or_else(|| Error::Internal("a relocation".into()))?;
    }
    w.put("runtime relocations", map.relocs, &relocs, 0)?;
    // The DT_PREINIT_ARRAY element: in the segment when its value is known
    // now (non-PIE), else in the writable area after the runtime's image,
    // written by the loader through the copied relocation table.
    let preinit_target = l.rx_vaddr + (rt.preinit - rt.rx_start);
    if map.preinit_element.len != 0 {
        w.put("DT_PREINIT_ARRAY element", map.preinit_element, &preinit_target.to_le_bytes(), 0)?;
    }
    let preinit = dynamic::preinit_edits(e, &plan.preinit, map.preinit_array, map.rela.vaddr, preinit_target)?;
    let rela = preinit.as_ref().map_or(&[][..], |p| &p.rela[..]);
    if !(rela.is_empty() && map.rela.len == 0) {
        w.put("copied DT_RELA", map.rela, rela, 0)?;
    }
    // The moved program header table is written by step 2 into its reserved place.
    w.put("program header table", map.phdrs, &vec![0; map.phdrs.len as usize], 0)?;
    Ok((w.finish(map)?, preinit))
}

/// Step 2: the program headers, with the new segment's; returns the table's
/// file offset and entry count.
fn program_headers(e: &Elf, plan: &Plan, seg: &mut [u8], out: &mut Output) -> Result<(u64, usize)> {
    let (l, map) = (&plan.layout, &plan.segment);
    let mut phdrs = e.phdrs.clone();
    let rw = phdrs.get_mut(l.rw_phdr).ok_or_else(|| Error::Internal("the writable PT_LOAD is gone".into()))?;
    rw.p_memsz = map.rw_end - rw.p_vaddr;
    if let PhdrTactic::Reuse { index, .. } = l.phdrs {
        phdrs.remove(index);
    }
    let moved = matches!(l.phdrs, PhdrTactic::MoveTable);
    if moved {
        let (at, size) = (map.phdrs.vaddr - l.rx_vaddr, map.phdrs.len);
        for p in phdrs.iter_mut().filter(|p| p.p_type == elf::PT_PHDR) {
            p.p_offset = l.rx_offset + at;
            p.p_vaddr = l.rx_vaddr + at;
            p.p_paddr = l.rx_vaddr + at;
            p.p_filesz = size;
            p.p_memsz = size;
        }
    }
    let size = seg.len() as u64;
    let new_load = Phdr {
        p_type: elf::PT_LOAD,
        p_flags: elf::PF_R | elf::PF_X,
        p_offset: l.rx_offset,
        p_vaddr: l.rx_vaddr,
        p_paddr: l.rx_vaddr,
        p_filesz: size,
        p_memsz: size,
        p_align: PAGE,
    };
    let last_load = phdrs.iter().rposition(|p| p.p_type == elf::PT_LOAD).map_or(0, |i| i + 1);
    phdrs.insert(last_load, new_load);
    let table: Vec<u8> = phdrs.iter().flat_map(|p| p.to_bytes()).collect();
    if !moved {
        out.edit(e.e_phoff, table)?;
        return Ok((e.e_phoff, phdrs.len()));
    }
    let at = (map.phdrs.vaddr - l.rx_vaddr) as usize;
    let place = seg
        .get_mut(at..at + map.phdrs.len as usize)
        .filter(|p| p.len() == table.len())
        .ok_or_else(|| Error::Internal("the moved program header table does not fit its place".into()))?;
    place.copy_from_slice(&table);
    Ok((l.rx_offset + at as u64, phdrs.len()))
}

/// Step 3: the contract.
fn contract(e: &Elf, rt: &Runtime, plan: &Plan, policy_hash: [u8; 32]) -> Contract {
    let (l, map) = (&plan.layout, &plan.segment);
    let mut tool_version = [0u8; 16];
    let v = env!("CARGO_PKG_VERSION").as_bytes();
    tool_version[..v.len().min(16)].copy_from_slice(&v[..v.len().min(16)]);
    Contract {
        magic: MAGIC,
        version: CONTRACT_VERSION,
        flags: if plan.flavour.pie { FLAG_PIE } else { 0 } | if plan.flavour.dynamic { FLAG_INTERP } else { 0 },
        self_vaddr: l.rx_vaddr + (rt.contract - rt.rx_start),
        orig_entry: e.e_entry,
        rw_vaddr: l.rw_vaddr,
        rw_init_vaddr: map.rw_init.vaddr,
        rw_init_len: map.rw_init.len,
        rel_vaddr: map.relocs.vaddr,
        rel_count: rt.relocs.len() as u64,
        dynamic_vaddr: e.dynamic_vaddr(),
        exe_lo: e.loads().map(|p| p.p_vaddr).min().unwrap_or(0),
        exe_hi: map.end,
        hooks_vaddr: map.hooks.vaddr,
        hooks_count: plan.hooks.len() as u64,
        policy_vaddr: map.policy.vaddr,
        policy_len: map.policy.len,
        policy_hash,
        tool_version,
        errno_fn_vaddr: plan.errno.function,
        errno_tpoff: plan.errno.tpoff,
        libplans_vaddr: if map.libplans.len == 0 { 0 } else { map.libplans.vaddr },
        libplans_len: map.libplans.len,
    }
}

/// Step 5: the restore data, the section names and the section header
/// table, appended; returns the table's offset and entry count.
fn section_headers(e: &Elf, plan: &Plan, seg_len: u64, out: &mut Output) -> Result<(u64, u16)> {
    let (l, map): (_, &SegmentMap) = (&plan.layout, &plan.segment);
    let rw_end = map.rw_end;
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
        sh_size: seg_len,
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

    Ok((shoff, shnum))
}
