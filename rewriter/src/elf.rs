//! Reading the input file: the ELF header, program headers, sections and the
//! dynamic relocations, all bounds checked (through the `object` crate and
//! `checked_*` arithmetic). A malformed file is an [`Error`], never a panic.

use crate::error::{malformed, Error, Result};
use dfpatch_runtime::bytes::{i32_at, u16_at, u32_at, u64_at};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader as _, Rela as _, SectionHeader as _, Sym as _};
use object::LittleEndian as LE;

pub const EHDR_SIZE: usize = 64;
pub const PHDR_SIZE: usize = 56;
pub const SHDR_SIZE: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

impl Phdr {
    pub fn to_bytes(&self) -> [u8; PHDR_SIZE] {
        let mut b = [0u8; PHDR_SIZE];
        b[0..4].copy_from_slice(&self.p_type.to_le_bytes());
        b[4..8].copy_from_slice(&self.p_flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.p_offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.p_vaddr.to_le_bytes());
        b[24..32].copy_from_slice(&self.p_paddr.to_le_bytes());
        b[32..40].copy_from_slice(&self.p_filesz.to_le_bytes());
        b[40..48].copy_from_slice(&self.p_memsz.to_le_bytes());
        b[48..56].copy_from_slice(&self.p_align.to_le_bytes());
        b
    }

    pub fn mem_end(&self) -> Option<u64> {
        self.p_vaddr.checked_add(self.p_memsz)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub index: usize,
    pub name: String,
    pub sh_name: u32,
    pub sh_type: u32,
    pub sh_flags: u64,
    pub sh_addr: u64,
    pub sh_offset: u64,
    pub sh_size: u64,
    pub sh_link: u32,
    pub sh_info: u32,
    pub sh_addralign: u64,
    pub sh_entsize: u64,
}

impl Section {
    pub fn to_bytes(&self) -> [u8; SHDR_SIZE] {
        let mut b = [0u8; SHDR_SIZE];
        b[0..4].copy_from_slice(&self.sh_name.to_le_bytes());
        b[4..8].copy_from_slice(&self.sh_type.to_le_bytes());
        b[8..16].copy_from_slice(&self.sh_flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.sh_addr.to_le_bytes());
        b[24..32].copy_from_slice(&self.sh_offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.sh_size.to_le_bytes());
        b[40..44].copy_from_slice(&self.sh_link.to_le_bytes());
        b[44..48].copy_from_slice(&self.sh_info.to_le_bytes());
        b[48..56].copy_from_slice(&self.sh_addralign.to_le_bytes());
        b[56..64].copy_from_slice(&self.sh_entsize.to_le_bytes());
        b
    }

    pub fn is_exec(&self) -> bool {
        self.sh_flags & u64::from(elf::SHF_EXECINSTR) != 0 && self.sh_type == elf::SHT_PROGBITS
    }
}

/// A defined symbol of the symbol table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub value: u64,
    pub size: u64,
    /// `STT_*`.
    pub kind: u8,
    pub shndx: u16,
}

/// An imported symbol's GOT slot, from a `JUMP_SLOT` or `GLOB_DAT` relocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GotSlot {
    pub name: String,
    pub got_vaddr: u64,
}

/// The parsed input. Holds the bytes it was parsed from.
pub struct Elf<'a> {
    pub data: &'a [u8],
    pub e_type: u16,
    pub e_entry: u64,
    pub e_phoff: u64,
    pub e_shoff: u64,
    pub e_shstrndx: u16,
    pub phdrs: Vec<Phdr>,
    pub sections: Vec<Section>,
    /// `JUMP_SLOT` and `GLOB_DAT` relocations against named symbols.
    pub got_slots: Vec<GotSlot>,
    /// `DT_NEEDED` names.
    pub needed: Vec<String>,
    /// `DT_RUNPATH`/`DT_RPATH` folders, unexpanded (`$ORIGIN` stays).
    pub runpath: Vec<String>,
    pub interp: Option<String>,
    pub flags_1_pie: bool,
    /// The dynamic section names the object (`DT_SONAME`): a shared library.
    pub has_soname: bool,
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>> {
        check_ident(data)?;
        let hdr = elf::FileHeader64::<LE>::parse(data).map_err(|e| malformed(format!("ELF header: {e}")))?;
        let endian = LE;
        let e_type = hdr.e_type(endian);
        match e_type {
            elf::ET_EXEC | elf::ET_DYN => {}
            elf::ET_REL => return Err(Error::Relocatable),
            elf::ET_CORE => return Err(Error::Core),
            t => return Err(Error::UnsupportedType(t)),
        }
        if hdr.e_phentsize(endian) as usize != PHDR_SIZE {
            return Err(malformed("program header entry size is not 56"));
        }
        let raw_phdrs = hdr.program_headers(endian, data).map_err(|e| malformed(format!("program headers: {e}")))?;
        let phdrs: Vec<Phdr> = raw_phdrs
            .iter()
            .map(|p| Phdr {
                p_type: p.p_type(endian),
                p_flags: p.p_flags(endian),
                p_offset: p.p_offset(endian),
                p_vaddr: p.p_vaddr(endian),
                p_paddr: p.p_paddr(endian),
                p_filesz: p.p_filesz(endian),
                p_memsz: p.p_memsz(endian),
                p_align: p.p_align(endian),
            })
            .collect();
        for p in &phdrs {
            if p.p_type == elf::PT_LOAD {
                let end = p.p_offset.checked_add(p.p_filesz);
                if end.is_none_or(|e| e > data.len() as u64) || p.p_filesz > p.p_memsz {
                    return Err(malformed("a PT_LOAD segment lies outside the file"));
                }
                p.mem_end().ok_or_else(|| malformed("a PT_LOAD segment wraps around"))?;
            }
        }
        let interp = phdrs.iter().find(|p| p.p_type == elf::PT_INTERP).map(|p| {
            let bytes = slice(data, p.p_offset, p.p_filesz).unwrap_or(&[]);
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            String::from_utf8_lossy(&bytes[..end]).into_owned()
        });

        let e_shoff = hdr.e_shoff(endian);
        let mut sections = Vec::new();
        let mut got_slots = Vec::new();
        let mut needed = Vec::new();
        let mut runpath = Vec::new();
        let mut flags_1_pie = false;
        let mut has_soname = false;
        if e_shoff != 0 {
            if hdr.e_shentsize(endian) as usize != SHDR_SIZE {
                return Err(malformed("section header entry size is not 64"));
            }
            let table = hdr.sections(endian, data).map_err(|e| malformed(format!("section headers: {e}")))?;
            for (index, s) in table.iter().enumerate() {
                // A name outside the name table would change meaning once names are
                // appended to that table: refuse it.
                let name = table
                    .section_name(endian, s)
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .map_err(|_| malformed(format!("section {index} has a name outside the section name table")))?;
                sections.push(Section {
                    index,
                    name,
                    sh_name: s.sh_name(endian),
                    sh_type: s.sh_type(endian),
                    sh_flags: s.sh_flags(endian),
                    sh_addr: s.sh_addr(endian),
                    sh_offset: s.sh_offset(endian),
                    sh_size: s.sh_size(endian),
                    sh_link: s.sh_link(endian),
                    sh_info: s.sh_info(endian),
                    sh_addralign: s.sh_addralign(endian),
                    sh_entsize: s.sh_entsize(endian),
                });
            }
            // The name table gets names appended and moves: it must be one.
            if sections.get(usize::from(hdr.e_shstrndx(endian))).is_none_or(|s| s.sh_type != elf::SHT_STRTAB) {
                return Err(malformed("the section name table (e_shstrndx) is not a string table"));
            }
            // Dynamic relocations against named symbols.
            for s in table.iter() {
                let Some((relas, link)) =
                    s.rela(endian, data).map_err(|e| malformed(format!("relocation section: {e}")))?
                else {
                    continue;
                };
                // IRELATIVE-only tables of static executables link no symbol table.
                if link.0 == 0 {
                    continue;
                }
                let symtab = table
                    .symbol_table_by_index(endian, data, link)
                    .map_err(|e| malformed(format!("relocation symbol table: {e}")))?;
                if symtab.is_empty() || s.sh_flags(endian) & u64::from(elf::SHF_ALLOC) == 0 {
                    continue;
                }
                for r in relas {
                    let ty = r.r_type(endian, false);
                    if ty != elf::R_X86_64_JUMP_SLOT && ty != elf::R_X86_64_GLOB_DAT {
                        continue;
                    }
                    let sym = symtab
                        .symbol(object::SymbolIndex(r.r_sym(endian, false) as usize))
                        .map_err(|e| malformed(format!("relocation symbol: {e}")))?;
                    if sym.st_shndx(endian) != elf::SHN_UNDEF {
                        continue;
                    }
                    let name = symtab.symbol_name(endian, sym).map_err(|e| malformed(format!("symbol name: {e}")))?;
                    got_slots.push(GotSlot {
                        name: String::from_utf8_lossy(name).into_owned(),
                        got_vaddr: r.r_offset(endian),
                    });
                }
            }
            // DT_NEEDED and DT_FLAGS_1 from the dynamic section.
            if let Some((dynamic, strtab_index)) =
                table.iter().find_map(|s| (s.sh_type(endian) == elf::SHT_DYNAMIC).then(|| (s, s.sh_link(endian))))
            {
                let entries = dynamic
                    .data_as_array::<elf::Dyn64<LE>, _>(endian, data)
                    .map_err(|e| malformed(format!("dynamic section: {e}")))?;
                let strtab = table.strings(endian, data, object::SectionIndex(strtab_index as usize)).ok();
                for d in entries {
                    let tag = d.d_tag.get(endian);
                    let val = d.d_val.get(endian);
                    if tag == u64::from(elf::DT_NULL) {
                        break;
                    }
                    if tag == u64::from(elf::DT_RUNPATH) || tag == u64::from(elf::DT_RPATH) {
                        if let Some(name) = strtab.and_then(|t| t.get(val as u32).ok()) {
                            runpath.extend(String::from_utf8_lossy(name).split(':').map(str::to_string));
                        }
                    }
                    if tag == u64::from(elf::DT_NEEDED) {
                        if let Some(name) = strtab.and_then(|t| t.get(val as u32).ok()) {
                            needed.push(String::from_utf8_lossy(name).into_owned());
                        }
                    }
                    if tag == u64::from(elf::DT_FLAGS_1) && val & u64::from(elf::DF_1_PIE) != 0 {
                        flags_1_pie = true;
                    }
                    if tag == u64::from(elf::DT_SONAME) {
                        has_soname = true;
                    }
                }
            }
        }
        Ok(Elf {
            data,
            e_type,
            e_entry: hdr.e_entry(endian),
            e_phoff: hdr.e_phoff(endian),
            e_shoff,
            e_shstrndx: hdr.e_shstrndx(endian),
            phdrs,
            sections,
            got_slots,
            needed,
            runpath,
            interp,
            flags_1_pie,
            has_soname,
        })
    }

    /// Addresses known to start a function, hence an instruction, sorted and
    /// without duplicates: the initial locations of `.eh_frame_hdr`'s search
    /// table (present in stripped files too) and the `STT_FUNC` symbols of
    /// `.symtab`/`.dynsym`.
    pub fn function_starts(&self) -> Vec<u64> {
        let mut starts = Vec::new();
        if let Some(hdr) = self.section(".eh_frame_hdr") {
            if let Ok(d) = self.section_data(hdr) {
                eh_frame_hdr_starts(d, hdr.sh_addr, &mut starts);
            }
        }
        for name in [".symtab", ".dynsym"] {
            let Some(sec) = self.section(name) else { continue };
            let Ok(d) = self.section_data(sec) else { continue };
            for sym in d.chunks_exact(24) {
                let (info, shndx, value) = (sym[4], u16_at(sym, 6), u64_at(sym, 8));
                if let (2, Some(1..), Some(value @ 1..)) = (info & 0xf, shndx, value) {
                    starts.push(value);
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        starts
    }

    /// The defined symbols of `.symtab` (else `.dynsym`), in table order.
    /// Names that are not valid UTF-8 are kept lossily: they only label things.
    pub fn symbols(&self) -> Vec<Symbol> {
        let mut out = Vec::new();
        let Some(sec) = self.section(".symtab").or_else(|| self.section(".dynsym")) else { return out };
        let Ok(d) = self.section_data(sec) else { return out };
        let strings = self.sections.get(sec.sh_link as usize).and_then(|s| self.section_data(s).ok()).unwrap_or(&[]);
        for sym in d.chunks_exact(24).skip(1) {
            let (Some(name_off), Some(shndx), Some(value), Some(size)) =
                (u32_at(sym, 0), u16_at(sym, 6), u64_at(sym, 8), u64_at(sym, 16))
            else {
                continue;
            };
            if shndx == 0 {
                continue; // undefined
            }
            let name = strings
                .get(name_off as usize..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            out.push(Symbol { name, value, size, kind: sym[4] & 0xf, shndx });
        }
        out
    }

    /// Bytes in executable sections.
    pub fn code_size(&self) -> u64 {
        self.sections.iter().filter(|s| s.is_exec()).map(|s| s.sh_size).sum()
    }

    /// Whether any executable section holds the bytes of a `syscall`
    /// instruction (`0f 05`) anywhere: most files without one need no
    /// disassembly for system calls.
    pub fn code_may_have_syscall(&self) -> bool {
        self.sections
            .iter()
            .filter(|s| s.is_exec())
            .any(|s| self.section_data(s).is_ok_and(|d| memchr::memmem::find(d, &[0x0f, 0x05]).is_some()))
    }

    /// The GNU build ID (`NT_GNU_BUILD_ID` note), if any.
    pub fn build_id(&self) -> Option<&'a [u8]> {
        for p in self.phdrs.iter().filter(|p| p.p_type == elf::PT_NOTE) {
            let notes = slice(self.data, p.p_offset, p.p_filesz)?;
            let mut at = 0usize;
            while let (Some(namesz), Some(descsz), Some(kind)) =
                (u32_at(notes, at), u32_at(notes, at + 4), u32_at(notes, at + 8))
            {
                let name_at = at + 12;
                let desc_at = name_at + (namesz as usize).div_ceil(4) * 4;
                let next = desc_at + (descsz as usize).div_ceil(4) * 4;
                if kind == elf::NT_GNU_BUILD_ID && notes.get(name_at..name_at + namesz as usize) == Some(b"GNU\0") {
                    return notes.get(desc_at..desc_at + descsz as usize);
                }
                if next <= at {
                    break;
                }
                at = next;
            }
        }
        None
    }

    /// The `PT_TLS` header, if any.
    pub fn tls(&self) -> Option<&Phdr> {
        self.phdrs.iter().find(|p| p.p_type == elf::PT_TLS)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The last section of that name: dfpatch appends its own sections after
    /// all others, so this finds them even if an input section had the name.
    pub fn last_section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().rev().find(|s| s.name == name)
    }

    /// Bytes of a section that occupies file space.
    pub fn section_data(&self, s: &Section) -> Result<&'a [u8]> {
        if s.sh_type == elf::SHT_NOBITS {
            return Ok(&[]);
        }
        slice(self.data, s.sh_offset, s.sh_size)
            .ok_or_else(|| malformed(format!("section {} lies outside the file", s.name)))
    }

    pub fn loads(&self) -> impl Iterator<Item = &Phdr> {
        self.phdrs.iter().filter(|p| p.p_type == elf::PT_LOAD)
    }

    pub fn is_dynamic(&self) -> bool {
        self.phdrs.iter().any(|p| p.p_type == elf::PT_DYNAMIC)
    }

    pub fn dynamic_vaddr(&self) -> u64 {
        self.phdrs.iter().find(|p| p.p_type == elf::PT_DYNAMIC).map_or(0, |p| p.p_vaddr)
    }

    /// File offset of a virtual address inside a loaded, file-backed range of `len` bytes.
    pub fn offset_of(&self, vaddr: u64, len: u64) -> Option<u64> {
        self.loads().find_map(|p| {
            let rel = vaddr.checked_sub(p.p_vaddr)?;
            (rel.checked_add(len)? <= p.p_filesz).then(|| p.p_offset + rel)
        })
    }
}

/// Reads the binary search table of `.eh_frame_hdr` (version 1, the usual
/// encodings: any 4- or 8-byte `eh_frame_ptr`, a `udata4` count and a
/// `datarel|sdata4` table); anything else is left alone.
fn eh_frame_hdr_starts(d: &[u8], base: u64, out: &mut Vec<u64>) {
    let (Some(&1), Some(&ptr_enc), Some(&count_enc), Some(&table_enc)) = (d.first(), d.get(1), d.get(2), d.get(3))
    else {
        return;
    };
    let ptr_size = match ptr_enc & 0x0f {
        0x03 | 0x0b => 4,
        0x04 | 0x0c => 8,
        _ => return,
    };
    if count_enc != 0x03 || table_enc != 0x3b {
        return;
    }
    let at = 4 + ptr_size;
    let Some(count) = u32_at(d, at) else { return };
    let table = d.get(at + 4..).unwrap_or(&[]);
    out.extend(
        table
            .chunks_exact(8)
            .take(count as usize)
            .filter_map(|entry| i32_at(entry, 0))
            .map(|rel| base.wrapping_add(rel as i64 as u64)),
    );
}

/// `data[off..off+len]`, or None when out of range.
pub fn slice(data: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end)
}

fn check_ident(data: &[u8]) -> Result<()> {
    if data.get(0..4) != Some(b"\x7fELF".as_slice()) {
        return Err(Error::NotElf);
    }
    match data.get(4) {
        Some(2) => {}
        Some(1) => return Err(Error::Not64Bit),
        _ => return Err(malformed("bad ELF class byte")),
    }
    match data.get(5) {
        Some(1) => {}
        Some(2) => return Err(Error::BigEndian),
        _ => return Err(malformed("bad ELF data encoding byte")),
    }
    if data.len() < EHDR_SIZE {
        return Err(malformed("file shorter than the 64-byte ELF header"));
    }
    let machine = u16_at(data, 18).ok_or_else(|| malformed("file shorter than the 64-byte ELF header"))?;
    if machine != elf::EM_X86_64 {
        return Err(Error::NotX86_64(machine));
    }
    Ok(())
}
