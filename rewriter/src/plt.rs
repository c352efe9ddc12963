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
use crate::error::Result;
use dfpatch_runtime::apis::ApiId;
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
    pub fn layer(&self) -> &'static str {
        match self.section.as_str() {
            ".plt" | ".plt.sec" => "plt",
            ".plt.got" => "plt.got",
            _ => "got-call",
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
        if let Some(api) = ApiId::from_name(&slot.name) {
            by_slot.entry(slot.got_vaddr).or_insert(Import { api, symbol: slot.name.clone(), got_vaddr: slot.got_vaddr });
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
        // An instruction boundary: where the last decode in this section stopped.
        let mut resume = s.sh_addr;
        for pair in memchr::memchr_iter(0xff, bytes) {
            let (Some(&modrm), Some(disp)) = (bytes.get(pair + 1), bytes.get(pair + 2..pair + 6)) else { continue };
            if modrm != 0x15 && modrm != 0x25 {
                continue;
            }
            let end = s.sh_addr + pair as u64 + 6;
            let target = end.wrapping_add(i32::from_le_bytes([disp[0], disp[1], disp[2], disp[3]]) as i64 as u64);
            if target < lo || target > hi || !slots.contains_key(&target) {
                continue;
            }
            let pair_vaddr = s.sh_addr + pair as u64;
            // Nearest boundary at or before the candidate: a function start, or the resume point.
            let from = match starts.range(s.sh_addr..=pair_vaddr).next_back() {
                Some(&f) if f >= resume => f,
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

/// The bytes that replace a site: a direct `jmp`/`call` to `stub`, padded with
/// NOPs so the return address of a call is unchanged.
pub fn site_bytes(site: &Site, stub: u64) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(site.len);
    match site.kind {
        SiteKind::Jmp => {
            let rel = rel32(site.vaddr + 5, stub)?;
            out.push(0xe9);
            out.extend_from_slice(&rel.to_le_bytes());
            out.resize(site.len, 0x90);
        }
        SiteKind::Call => {
            // `addr32 call rel32` is 6 bytes, as the linker writes when it relaxes a GOT call.
            let pad = site.len.checked_sub(6)?;
            out.resize(pad, 0x90);
            let rel = rel32(site.vaddr + site.len as u64, stub)?;
            out.extend_from_slice(&[0x67, 0xe8]);
            out.extend_from_slice(&rel.to_le_bytes());
        }
    }
    Some(out)
}

/// `to - from` as a rel32, if it fits.
pub fn rel32(from: u64, to: u64) -> Option<i32> {
    i32::try_from(to.wrapping_sub(from) as i64).ok()
}
