//! Finding the call sites to hook in the main executable: every
//! `jmp`/`call` through a GOT slot of a monitored import, wherever it is:
//! `.plt` and `.plt.sec` entries, `.plt.got` entries, and `-fno-plt` call
//! sites in the program's own code (`call *sym@GOTPCREL(%rip)`).
//!
//! Executable sections are decoded linearly with iced-x86 from their start.
//! Only an instruction that decodes as an indirect `jmp`/`call` through
//! `[rip + disp32]` whose target is exactly a monitored GOT slot is
//! rewritten, and it is rewritten in place, within its own bytes.

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
pub fn find_sites(elf: &Elf, slots: &BTreeMap<u64, usize>) -> Result<Vec<Site>> {
    let mut sites = Vec::new();
    if slots.is_empty() {
        return Ok(sites);
    }
    for s in elf.sections.iter().filter(|s| s.is_exec()) {
        let bytes = elf.section_data(s)?;
        let mut decoder = Decoder::with_ip(64, bytes, s.sh_addr, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut ins);
            if ins.is_invalid() || !ins.is_ip_rel_memory_operand() {
                continue;
            }
            let kind = match ins.code() {
                Code::Jmp_rm64 => SiteKind::Jmp,
                Code::Call_rm64 => SiteKind::Call,
                _ => continue,
            };
            let target = ins.ip_rel_memory_address();
            if slots.contains_key(&target) && ins.len() >= 6 {
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
