//! The embedded runtime image, and what the rewriter needs to know about it.
//!
//! `runtime/blob/link.ld` lays the image out as a writable part at link
//! address 0 (data, GOT, then zero-initialised statics) followed, from a page
//! boundary, by code and read-only data. The rewriter copies the read-only
//! part into a new loadable segment, the data part's initial bytes and the
//! relocations beside it, and reserves the writable part as zero-filled memory.

use crate::elf::slice;
use crate::error::{Error, Result};
use dfpatch_runtime::contract::symbols;
use object::elf;
use object::read::elf::{FileHeader, Rela as _, SectionHeader as _, Sym as _};
use object::LittleEndian as LE;

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

/// The runtime image built by `build.rs`, 8-byte aligned as ELF structures need.
static ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("DFPATCH_RUNTIME_IMAGE")));
pub static IMAGE: &[u8] = &ALIGNED.0;

/// What the rewriter needs from the runtime image, by link address.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// Size of the writable part at link address 0 (data + zeroed statics).
    pub rw_size: u64,
    /// Initial bytes of the writable part's data.
    pub rw_init: Vec<u8>,
    /// Link address where the read-only part starts (page aligned).
    pub rx_start: u64,
    /// The read-only part: code, read-only data, from `rx_start`.
    pub rx: Vec<u8>,
    /// `R_X86_64_RELATIVE` relocations: (offset, addend).
    pub relocs: Vec<(u64, u64)>,
    pub entry: u64,
    pub preinit: u64,
    pub hook: u64,
    /// `dfp_sys_hook`, called by the trampolines of `syscall` instructions.
    pub sys_hook: u64,
    /// `dfp_arm_child`, called by a trampoline's `clone`/`fork` child.
    pub arm_child: u64,
    pub contract: u64,
    /// Link-address ranges of its code (executable sections), for checks.
    pub code: Vec<(u64, u64)>,
}

fn bad(why: impl Into<String>) -> Error {
    Error::Runtime(why.into())
}

impl Runtime {
    pub fn load() -> Result<Runtime> {
        Runtime::parse(IMAGE)
    }

    pub fn parse(data: &[u8]) -> Result<Runtime> {
        let endian = LE;
        let hdr = elf::FileHeader64::<LE>::parse(data).map_err(|e| bad(e.to_string()))?;
        let sections = hdr.sections(endian, data).map_err(|e| bad(e.to_string()))?;
        let find = |name: &[u8]| sections.section_by_name(endian, name).map(|(_, s)| s);

        let data_sec = find(b".dfp_data").ok_or_else(|| bad("no .dfp_data section"))?;
        let bss_sec = find(b".dfp_bss").ok_or_else(|| bad("no .dfp_bss section"))?;
        if data_sec.sh_addr(endian) != 0 {
            return Err(bad("the writable part is not at link address 0"));
        }
        let rw_init = data_sec.data(endian, data).map_err(|e| bad(e.to_string()))?.to_vec();
        let rw_size = (bss_sec.sh_addr(endian) + bss_sec.sh_size(endian)).max(rw_init.len() as u64);

        let symtab = sections.symbols(endian, data, elf::SHT_SYMTAB).map_err(|e| bad(e.to_string()))?;
        let sym = |want: &[u8]| -> Result<u64> {
            symtab
                .iter()
                .find(|s| symtab.symbol_name(endian, s).ok() == Some(want))
                .map(|s| s.st_value(endian))
                .ok_or_else(|| bad(format!("no symbol {}", String::from_utf8_lossy(want))))
        };
        let rx_start = sym(b"__dfp_rx_start")?;
        // The writable part, then 8 bytes for a DT_PREINIT_ARRAY element, must end
        // before the read-only part's page.
        if rx_start % 4096 != 0 || rx_start < rw_size.div_ceil(8) * 8 + 8 {
            return Err(bad("the read-only part does not start on a page after the writable part"));
        }

        // The read-only part: every allocated section at or above rx_start.
        let mut rx = Vec::new();
        let mut code = Vec::new();
        for s in sections.iter() {
            let addr = s.sh_addr(endian);
            if s.sh_flags(endian) & u64::from(elf::SHF_ALLOC) == 0 || addr < rx_start {
                continue;
            }
            if s.sh_type(endian) == elf::SHT_NOBITS {
                return Err(bad("zero-initialised data outside the writable part"));
            }
            let bytes =
                slice(data, s.sh_offset(endian), s.sh_size(endian)).ok_or_else(|| bad("section outside file"))?;
            if s.sh_flags(endian) & u64::from(elf::SHF_EXECINSTR) != 0 {
                code.push((addr, addr + bytes.len() as u64));
            }
            let at = (addr - rx_start) as usize;
            if rx.len() < at + bytes.len() {
                rx.resize(at + bytes.len(), 0);
            }
            rx[at..at + bytes.len()].copy_from_slice(bytes);
        }

        let mut relocs = Vec::new();
        for s in sections.iter() {
            if let Some((relas, _)) = s.rela(endian, data).map_err(|e| bad(e.to_string()))? {
                if s.sh_flags(endian) & u64::from(elf::SHF_ALLOC) == 0 {
                    continue;
                }
                for r in relas {
                    if r.r_type(endian, false) != elf::R_X86_64_RELATIVE {
                        return Err(bad(format!(
                            "relocation of type {} (only RELATIVE is supported)",
                            r.r_type(endian, false)
                        )));
                    }
                    let off = r.r_offset(endian);
                    if off + 8 > rw_init.len() as u64 {
                        return Err(bad(format!("relocation at {off:#x} outside the writable data")));
                    }
                    relocs.push((off, r.r_addend(endian) as u64));
                }
            }
        }
        let entry = sym(symbols::ENTRY.as_bytes())?;
        let preinit = sym(symbols::PREINIT.as_bytes())?;
        let hook = sym(symbols::HOOK.as_bytes())?;
        let sys_hook = sym(symbols::SYS_HOOK.as_bytes())?;
        let arm_child = sym(symbols::ARM_CHILD.as_bytes())?;
        let contract = find(symbols::CONTRACT_SECTION.as_bytes())
            .ok_or_else(|| bad(format!("no {} section", symbols::CONTRACT_SECTION)))?
            .sh_addr(endian);
        for (name, a) in [
            (symbols::ENTRY, entry),
            (symbols::PREINIT, preinit),
            (symbols::HOOK, hook),
            (symbols::SYS_HOOK, sys_hook),
            (symbols::ARM_CHILD, arm_child),
            (symbols::CONTRACT_SECTION, contract),
        ] {
            if a < rx_start || a >= rx_start + rx.len() as u64 {
                return Err(bad(format!("{name} is not in the read-only part")));
            }
        }
        Ok(Runtime {
            rw_size,
            rw_init,
            rx_start,
            rx,
            relocs,
            entry,
            preinit,
            hook,
            sys_hook,
            arm_child,
            contract,
            code,
        })
    }
}
