//! Finding the call sites to hook in the main executable: every
//! `jmp`/`call` through a GOT slot of a monitored import, wherever it is:
//! `.plt` and `.plt.sec` entries, `.plt.got` entries, and `-fno-plt` call
//! sites in the program's own code (`call *sym@GOTPCREL(%rip)`).
//!
//! Only an instruction that decodes (iced-x86, from a known instruction
//! boundary) as an indirect `jmp`/`call` through `[rip + disp32]` whose target
//! is exactly a monitored GOT slot is rewritten, and it is rewritten in place,
//! within its own bytes. See [`find_sites`] for how candidates are found.

use crate::elf::Elf;
use crate::error::{malformed, Result};
use crate::x86;
use dfpatch_runtime::apis::ApiId;
use dfpatch_runtime::bytes::i32_at;
use iced_x86::{Code, Decoder, DecoderOptions, Instruction};
use std::collections::BTreeMap;

/// How a site reaches the GOT slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteKind {
    /// `jmp *GOT(%rip)`: a PLT entry or a tail call.
    Jmp,
    /// `call *GOT(%rip)`: a `-fno-plt` call site.
    Call,
}

/// An instruction to rewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub vaddr: u64,
    pub len: usize,
    pub kind: SiteKind,
    pub section: String,
    pub got_vaddr: u64,
}

impl Site {
    /// The layer name shown by `inspect`.
    pub fn layer(&self) -> crate::plan::Layer {
        use crate::plan::Layer;
        match self.section.as_str() {
            ".plt" | ".plt.sec" => Layer::Plt,
            ".plt.got" => Layer::PltGot,
            _ => Layer::GotCall,
        }
    }
}

/// A monitored import found in the relocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    pub api: ApiId,
    pub symbol: String,
    pub got_vaddr: u64,
}

/// Monitored imports, one per GOT slot, in slot order.
pub fn monitored_imports(elf: &Elf) -> Vec<Import> {
    let mut by_slot = BTreeMap::new();
    for slot in &elf.got_slots {
        // (A system call no libc wraps: an import of that name is some
        // other library's function.)
        if let Some(api) = ApiId::from_name(&slot.name).filter(|a| !a.no_function()) {
            by_slot.entry(slot.got_vaddr).or_insert(Import {
                api,
                symbol: slot.name.clone(),
                got_vaddr: slot.got_vaddr,
            });
        }
    }
    by_slot.into_values().collect()
}

/// Every `jmp`/`call` through one of `slots` in the executable sections.
///
/// Such an instruction is `[prefixes] ff 15|25 disp32`, and its target is the
/// address after those six bytes plus `disp32`. So a fast scan for `ff 15` and
/// `ff 25` whose target is a monitored slot finds every candidate; each is then
/// confirmed by decoding instructions from the nearest known instruction
/// boundary before it (a function start from `.eh_frame_hdr` or the symbol
/// tables, else where the previous decode stopped, else the section start) up
/// to the candidate: only an instruction that really starts there and really
/// is that `jmp`/`call` becomes a site. Bytes that merely look like one (inside
/// another instruction, or data) are never rewritten.
pub fn find_sites(elf: &Elf, slots: &BTreeMap<u64, usize>) -> Result<Vec<Site>> {
    let mut sites = Vec::new();
    let (Some(&lo), Some(&hi)) = (slots.keys().next(), slots.keys().next_back()) else {
        return Ok(sites);
    };
    let starts = elf.function_starts();
    for s in elf.sections.iter().filter(|s| s.is_exec()) {
        let bytes = elf.section_data(s)?;
        // Sites are decoded from the section's bytes but rewritten where the
        // program headers load their address: those must be the same bytes.
        if elf.offset_of(s.sh_addr, s.sh_size) != Some(s.sh_offset) {
            return Err(malformed(format!(
                "section {} is not at the file offset its program header loads it from",
                s.name
            )));
        }
        // An instruction boundary: where the last decode in this section stopped.
        let mut resume = s.sh_addr;
        for pair in memchr::memchr_iter(0xff, bytes) {
            let (Some(&modrm), Some(disp)) = (bytes.get(pair + 1), i32_at(bytes, pair + 2)) else { continue };
            if modrm != 0x15 && modrm != 0x25 {
                continue;
            }
            let Some(pair_vaddr) = s.sh_addr.checked_add(pair as u64) else { break };
            let Some(end) = pair_vaddr.checked_add(6) else { break };
            let target = end.wrapping_add(disp as i64 as u64);
            if target < lo || target > hi || !slots.contains_key(&target) {
                continue;
            }
            // Nearest boundary at or before the candidate: a function start, or the resume point.
            let nearest = starts.partition_point(|&f| f <= pair_vaddr).checked_sub(1).map(|i| starts[i]);
            let from = match nearest {
                Some(f) if f >= resume && f >= s.sh_addr => f,
                _ => resume,
            };
            let off = (from - s.sh_addr) as usize;
            let mut decoder = Decoder::with_ip(64, bytes.get(off..).unwrap_or(&[]), from, DecoderOptions::NONE);
            let mut ins = Instruction::default();
            while decoder.can_decode() {
                decoder.decode_out(&mut ins);
                if ins.next_ip() > pair_vaddr {
                    break;
                }
            }
            if ins.next_ip() > resume {
                resume = ins.next_ip();
            }
            if ins.ip() > pair_vaddr || ins.next_ip() != end || !ins.is_ip_rel_memory_operand() {
                continue;
            }
            let kind = match ins.code() {
                Code::Jmp_rm64 => SiteKind::Jmp,
                Code::Call_rm64 => SiteKind::Call,
                _ => continue,
            };
            if ins.ip_rel_memory_address() == target && ins.len() >= 6 {
                sites.push(Site { vaddr: ins.ip(), len: ins.len(), kind, section: s.name.clone(), got_vaddr: target });
            }
        }
    }
    Ok(sites)
}

/// The bytes that replace a site: a direct `jmp`/`call` to `stub` (see [`x86::got_site`]).
pub fn site_bytes(site: &Site, stub: u64) -> Option<Vec<u8>> {
    x86::got_site(site.kind == SiteKind::Call, site.vaddr, site.len, stub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{Phdr, Section};

    fn elf_with_text<'a>(data: &'a [u8], addr: u64) -> Elf<'a> {
        Elf {
            data,
            e_type: object::elf::ET_DYN,
            e_entry: addr,
            e_phoff: 0,
            e_shoff: 0,
            e_shstrndx: 0,
            // The text is loaded from where its section says, as in a real file.
            phdrs: vec![Phdr {
                p_type: object::elf::PT_LOAD,
                p_flags: object::elf::PF_R | object::elf::PF_X,
                p_offset: 0,
                p_vaddr: addr,
                p_paddr: addr,
                p_filesz: data.len() as u64,
                p_memsz: data.len() as u64,
                p_align: 4096,
            }],
            sections: vec![Section {
                index: 1,
                name: ".text".into(),
                sh_name: 0,
                sh_type: object::elf::SHT_PROGBITS,
                sh_flags: u64::from(object::elf::SHF_ALLOC | object::elf::SHF_EXECINSTR),
                sh_addr: addr,
                sh_offset: 0,
                sh_size: data.len() as u64,
                sh_link: 0,
                sh_info: 0,
                sh_addralign: 16,
                sh_entsize: 0,
            }],
            got_slots: Vec::new(),
            needed: Vec::new(),
            runpath: Vec::new(),
            interp: None,
            flags_1_pie: false,
            has_soname: false,
        }
    }

    /// Bytes that look like `call *slot(%rip)` inside another instruction are
    /// not sites; the real call after them is.
    #[test]
    fn only_real_instructions_become_sites() {
        let base = 0x1000u64;
        let slot = 0x5000u64;
        let mut code = Vec::new();
        // movabs rax, imm64 whose bytes are `ff 15 disp32 90 90`, disp aimed at the slot.
        let fake_disp = (slot as i64 - (base + 2 + 6) as i64) as i32;
        code.extend_from_slice(&[0x48, 0xb8, 0xff, 0x15]);
        code.extend_from_slice(&fake_disp.to_le_bytes());
        code.extend_from_slice(&[0x90, 0x90]);
        // A real `call *slot(%rip)` at offset 10, then `jmp *slot(%rip)`.
        let at = base + code.len() as u64;
        code.extend_from_slice(&[0xff, 0x15]);
        code.extend_from_slice(&((slot as i64 - (at + 6) as i64) as i32).to_le_bytes());
        let at2 = base + code.len() as u64;
        code.extend_from_slice(&[0xff, 0x25]);
        code.extend_from_slice(&((slot as i64 - (at2 + 6) as i64) as i32).to_le_bytes());
        // A call through some other slot is not a site.
        let at3 = base + code.len() as u64;
        code.extend_from_slice(&[0xff, 0x15]);
        code.extend_from_slice(&((0x6000i64 - (at3 + 6) as i64) as i32).to_le_bytes());
        let elf = elf_with_text(&code, base);
        let slots: BTreeMap<u64, usize> = [(slot, 0)].into();
        let sites = find_sites(&elf, &slots).unwrap();
        let found: Vec<(u64, SiteKind)> = sites.iter().map(|s| (s.vaddr, s.kind)).collect();
        assert_eq!(found, [(at, SiteKind::Call), (at2, SiteKind::Jmp)]);
    }

    #[test]
    fn rewritten_sites_keep_length_and_return_address() {
        let call = Site { vaddr: 0x1000, len: 6, kind: SiteKind::Call, section: ".text".into(), got_vaddr: 0 };
        let b = site_bytes(&call, 0x2000).unwrap();
        assert_eq!(b.len(), 6);
        assert_eq!(&b[..2], &[0x67, 0xe8]);
        assert_eq!(i32::from_le_bytes(b[2..6].try_into().unwrap()), 0x2000 - 0x1006);
        let jmp = Site { vaddr: 0x1000, len: 7, kind: SiteKind::Jmp, section: ".plt.sec".into(), got_vaddr: 0 };
        let b = site_bytes(&jmp, 0x2000).unwrap();
        assert_eq!(b, [0xe9, 0xfb, 0x0f, 0, 0, 0x90, 0x90]);
        let far = Site { vaddr: 0, len: 6, kind: SiteKind::Call, section: ".text".into(), got_vaddr: 0 };
        assert!(site_bytes(&far, 1 << 40).is_none());
    }
}
