//! Synthetic inputs for the unit tests: a small ELF64 writer and an
//! assembler of hand-written x86-64 bytes with labels.
//!
//! The files are real ELF files, read back with [`Elf::parse`], so a test
//! goes through the same parsing the rewriter does. Layout rules, chosen to
//! keep the builder small:
//! * every allocated section is loaded by its own `PT_LOAD` from file offset
//!   `sh_addr - BIAS` (so `p_offset ≡ p_vaddr` modulo any page size), with
//!   flags from its section flags; the headers sit below the lowest section;
//! * other sections follow the allocated ones, 8-aligned, then `.symtab`,
//!   `.strtab` (when there are symbols), `.shstrtab` and the section headers.

use crate::code::Code;
use crate::elf::{Elf, Phdr, EHDR_SIZE, PHDR_SIZE, SHDR_SIZE};
use iced_x86::{Code as Op, Encoder, Instruction, MemoryOperand, Register};
use object::elf;

/// File offset = address - `BIAS` for every allocated section.
pub const BIAS: u64 = 0x40_0000;
/// Where [`Builder::text`] puts code.
pub const TEXT: u64 = 0x40_1000;
/// Where [`Builder::rodata`] puts read-only data.
pub const RODATA: u64 = 0x40_3000;
/// Where [`Builder::data`] puts the writable data (the highest segment).
pub const DATA: u64 = 0x40_5000;

pub struct Section {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    /// 0: not allocated.
    pub addr: u64,
    pub data: Vec<u8>,
    /// Name of the section `sh_link` names.
    pub link: Option<String>,
    pub entsize: u64,
    /// For a section that is not allocated: the lowest file offset it may take.
    pub min_offset: u64,
}

pub struct Symbol {
    pub name: String,
    pub value: u64,
    pub size: u64,
    pub kind: u8,
    /// The section it is defined in (by name).
    pub section: String,
}

/// A program header besides the `PT_LOAD`s: it covers the named section.
pub enum ExtraPhdr {
    Covering(u32, String),
    Raw(Phdr),
}

pub struct Builder {
    pub e_type: u16,
    pub entry: u64,
    pub sections: Vec<Section>,
    pub symbols: Vec<Symbol>,
    /// Put before the `PT_LOAD`s, in order.
    pub extra_phdrs: Vec<ExtraPhdr>,
}

impl Builder {
    /// A fixed-address executable (`ET_EXEC`) with no section yet.
    pub fn exec() -> Builder {
        Builder { e_type: elf::ET_EXEC, entry: 0, sections: Vec::new(), symbols: Vec::new(), extra_phdrs: Vec::new() }
    }

    /// A position-independent file (`ET_DYN`), loaded at link address `BIAS`.
    pub fn dyn_() -> Builder {
        Builder { e_type: elf::ET_DYN, ..Builder::exec() }
    }

    pub fn section(mut self, name: &str, sh_type: u32, flags: u32, addr: u64, data: Vec<u8>) -> Builder {
        self.sections.push(Section {
            name: name.into(),
            sh_type,
            flags: u64::from(flags),
            addr,
            data,
            link: None,
            entsize: 0,
            min_offset: 0,
        });
        self
    }

    /// `.text` at [`TEXT`]; the entry point is its first byte unless set.
    pub fn text(self, code: Vec<u8>) -> Builder {
        self.code_section(".text", TEXT, code)
    }

    pub fn code_section(mut self, name: &str, addr: u64, code: Vec<u8>) -> Builder {
        if self.entry == 0 {
            self.entry = addr;
        }
        self.section(name, elf::SHT_PROGBITS, elf::SHF_ALLOC | elf::SHF_EXECINSTR, addr, code)
    }

    pub fn rodata(self, data: Vec<u8>) -> Builder {
        self.section(".rodata", elf::SHT_PROGBITS, elf::SHF_ALLOC, RODATA, data)
    }

    /// `.data` at [`DATA`]: writable, the last segment (where the plan puts
    /// the runtime's state).
    pub fn data(self, data: Vec<u8>) -> Builder {
        self.section(".data", elf::SHT_PROGBITS, elf::SHF_ALLOC | elf::SHF_WRITE, DATA, data)
    }

    /// A symbol of `STT_*` `kind` in the section holding `value` (`.text` if none does).
    pub fn symbol(mut self, name: &str, kind: u8, value: u64, size: u64) -> Builder {
        let section = self
            .sections
            .iter()
            .find(|s| s.addr != 0 && value >= s.addr && value <= s.addr + s.data.len() as u64)
            .map_or(".text".to_string(), |s| s.name.clone());
        self.symbols.push(Symbol { name: name.into(), value, size, kind, section });
        self
    }

    pub fn func(self, name: &str, value: u64, size: u64) -> Builder {
        self.symbol(name, elf::STT_FUNC, value, size)
    }

    /// A label (`STT_NOTYPE`), such as musl's `__cp_begin`.
    pub fn label(self, name: &str, value: u64) -> Builder {
        self.symbol(name, elf::STT_NOTYPE, value, 0)
    }

    pub fn phdr(mut self, p: ExtraPhdr) -> Builder {
        self.extra_phdrs.push(p);
        self
    }

    pub fn link(mut self, section: &str, to: &str) -> Builder {
        if let Some(s) = self.sections.iter_mut().find(|s| s.name == section) {
            s.link = Some(to.into());
        }
        self
    }

    pub fn build(&self) -> Vec<u8> {
        // A section that is not loaded (no flags, no address).
        fn plain(name: &str, sh_type: u32, data: Vec<u8>, entsize: u64, link: Option<&str>) -> Section {
            Section {
                name: name.into(),
                sh_type,
                flags: 0,
                addr: 0,
                data,
                link: link.map(str::to_string),
                entsize,
                min_offset: 0,
            }
        }
        // 1. The section list: null, the given ones, the symbol and name tables.
        let mut secs: Vec<Section> = vec![plain("", elf::SHT_NULL, Vec::new(), 0, None)];
        secs.extend(self.sections.iter().map(|s| Section {
            name: s.name.clone(),
            sh_type: s.sh_type,
            flags: s.flags,
            addr: s.addr,
            data: s.data.clone(),
            link: s.link.clone(),
            entsize: s.entsize,
            min_offset: s.min_offset,
        }));
        let index_of = |secs: &[Section], name: &str| secs.iter().position(|s| s.name == name).unwrap_or(0);
        if !self.symbols.is_empty() {
            let mut strtab = vec![0u8];
            let mut symtab = vec![0u8; 24];
            for s in &self.symbols {
                let name = strtab.len() as u32;
                strtab.extend(s.name.as_bytes());
                strtab.push(0);
                symtab.extend(name.to_le_bytes());
                symtab.push((elf::STB_GLOBAL << 4) | s.kind);
                symtab.push(0);
                symtab.extend((index_of(&secs, &s.section) as u16).to_le_bytes());
                symtab.extend(s.value.to_le_bytes());
                symtab.extend(s.size.to_le_bytes());
            }
            secs.push(plain(".symtab", elf::SHT_SYMTAB, symtab, 24, Some(".strtab")));
            secs.push(plain(".strtab", elf::SHT_STRTAB, strtab, 0, None));
        }
        secs.push(plain(".shstrtab", elf::SHT_STRTAB, Vec::new(), 0, None));
        let mut names = vec![0u8];
        let mut name_at = Vec::new();
        for s in &secs {
            if s.name.is_empty() {
                name_at.push(0u32);
                continue;
            }
            name_at.push(names.len() as u32);
            names.extend(s.name.as_bytes());
            names.push(0);
        }
        let shstrndx = secs.len() - 1;
        secs[shstrndx].data = names;

        // 2. File offsets.
        let alloc: Vec<usize> = (0..secs.len()).filter(|&i| secs[i].addr != 0).collect();
        let phnum = self.extra_phdrs.len() + alloc.len();
        let headers_end = (EHDR_SIZE + phnum * PHDR_SIZE) as u64;
        let mut offsets = vec![0u64; secs.len()];
        let mut end = headers_end;
        for &i in &alloc {
            let off = secs[i].addr - BIAS;
            assert!(off >= headers_end, "section {} overlaps the headers", secs[i].name);
            offsets[i] = off;
            end = end.max(off + secs[i].data.len() as u64);
        }
        for (i, s) in secs.iter().enumerate().skip(1).filter(|(_, s)| s.addr == 0) {
            end = end.div_ceil(8) * 8;
            end = end.max(s.min_offset);
            offsets[i] = end;
            end += s.data.len() as u64;
        }
        let shoff = end.div_ceil(8) * 8;

        // 3. Program headers.
        let mut phdrs: Vec<Phdr> = Vec::new();
        for p in &self.extra_phdrs {
            phdrs.push(match p {
                ExtraPhdr::Raw(p) => *p,
                ExtraPhdr::Covering(p_type, name) => {
                    let i = index_of(&secs, name);
                    assert!(i != 0, "no section {name}");
                    Phdr {
                        p_type: *p_type,
                        p_flags: elf::PF_R,
                        p_offset: offsets[i],
                        p_vaddr: secs[i].addr,
                        p_paddr: secs[i].addr,
                        p_filesz: secs[i].data.len() as u64,
                        p_memsz: secs[i].data.len() as u64,
                        p_align: 8,
                    }
                }
            });
        }
        let mut loads: Vec<Phdr> = alloc
            .iter()
            .map(|&i| {
                let s = &secs[i];
                let mut flags = elf::PF_R;
                if s.flags & u64::from(elf::SHF_EXECINSTR) != 0 {
                    flags |= elf::PF_X;
                }
                if s.flags & u64::from(elf::SHF_WRITE) != 0 {
                    flags |= elf::PF_W;
                }
                let filesz = if s.sh_type == elf::SHT_NOBITS { 0 } else { s.data.len() as u64 };
                Phdr {
                    p_type: elf::PT_LOAD,
                    p_flags: flags,
                    p_offset: offsets[i],
                    p_vaddr: s.addr,
                    p_paddr: s.addr,
                    p_filesz: filesz,
                    p_memsz: s.data.len() as u64,
                    p_align: 0x1000,
                }
            })
            .collect();
        loads.sort_by_key(|p| p.p_vaddr);
        phdrs.extend(loads);

        // 4. The bytes.
        let mut out = vec![0u8; shoff as usize + secs.len() * SHDR_SIZE];
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // little-endian
        out[6] = 1; // EV_CURRENT
        put(&mut out, 16, &self.e_type.to_le_bytes());
        put(&mut out, 18, &elf::EM_X86_64.to_le_bytes());
        put(&mut out, 20, &1u32.to_le_bytes());
        put(&mut out, 24, &self.entry.to_le_bytes());
        put(&mut out, 32, &(EHDR_SIZE as u64).to_le_bytes());
        put(&mut out, 40, &shoff.to_le_bytes());
        put(&mut out, 52, &(EHDR_SIZE as u16).to_le_bytes());
        put(&mut out, 54, &(PHDR_SIZE as u16).to_le_bytes());
        put(&mut out, 56, &(phdrs.len() as u16).to_le_bytes());
        put(&mut out, 58, &(SHDR_SIZE as u16).to_le_bytes());
        put(&mut out, 60, &(secs.len() as u16).to_le_bytes());
        put(&mut out, 62, &(shstrndx as u16).to_le_bytes());
        for (k, p) in phdrs.iter().enumerate() {
            put(&mut out, EHDR_SIZE + k * PHDR_SIZE, &p.to_bytes());
        }
        for (i, s) in secs.iter().enumerate() {
            if s.sh_type != elf::SHT_NOBITS {
                put(&mut out, offsets[i] as usize, &s.data);
            }
            let link = s.link.as_deref().map_or(0, |n| index_of(&secs, n)) as u32;
            let info = if s.sh_type == elf::SHT_SYMTAB { 1 } else { 0 };
            let header = crate::elf::Section {
                index: i,
                name: s.name.clone(),
                sh_name: name_at[i],
                sh_type: s.sh_type,
                sh_flags: s.flags,
                sh_addr: s.addr,
                sh_offset: offsets[i],
                sh_size: s.data.len() as u64,
                sh_link: link,
                sh_info: info,
                sh_addralign: if s.addr != 0 { 16 } else { 8 },
                sh_entsize: s.entsize,
            };
            put(&mut out, shoff as usize + i * SHDR_SIZE, &header.to_bytes());
        }
        out
    }
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Parses a built file; panics on error (a test-builder bug).
pub fn parse(data: &[u8]) -> Elf<'_> {
    Elf::parse(data).unwrap_or_else(|e| panic!("the synthetic file does not parse: {e}"))
}

/// Parses and maps the code of a built file.
pub fn analyse(data: &[u8]) -> (Elf<'_>, Code<'_>) {
    let e = parse(data);
    let code = Code::analyse(&e).unwrap_or_else(|err| panic!("Code::analyse failed: {err}"));
    (e, code)
}

/// Hand-written machine code at a known address. Bytes are given in hex
/// with their Intel-syntax meaning beside them; branches and RIP-relative
/// operands, whose bytes depend on addresses, are encoded by iced-x86.
pub struct Asm {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl Asm {
    pub fn at(base: u64) -> Asm {
        Asm { base, bytes: Vec::new() }
    }

    /// The address of the next byte.
    pub fn here(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// Appends raw bytes; returns their address.
    pub fn raw(&mut self, b: &[u8]) -> u64 {
        let at = self.here();
        self.bytes.extend_from_slice(b);
        at
    }

    /// Appends one instruction encoded by iced-x86 at its address.
    pub fn ins(&mut self, i: Instruction) -> u64 {
        let at = self.here();
        let mut enc = Encoder::new(64);
        enc.encode(&i, at).unwrap_or_else(|e| panic!("cannot encode {i:?}: {e}"));
        self.bytes.extend(enc.take_buffer());
        at
    }

    /// `jmp rel32` to `to`.
    pub fn jmp(&mut self, to: u64) -> u64 {
        self.ins(Instruction::with_branch(Op::Jmp_rel32_64, to).unwrap())
    }

    /// `call rel32` to `to`.
    pub fn call(&mut self, to: u64) -> u64 {
        self.ins(Instruction::with_branch(Op::Call_rel32_64, to).unwrap())
    }

    /// `je rel32` to `to`.
    pub fn je(&mut self, to: u64) -> u64 {
        self.ins(Instruction::with_branch(Op::Je_rel32_64, to).unwrap())
    }

    /// `lea reg, [rip + (to - next)]` (7 bytes).
    pub fn lea_rip(&mut self, reg: Register, to: u64) -> u64 {
        self.ins(
            Instruction::with2(Op::Lea_r64_m, reg, MemoryOperand::with_base_displ(Register::RIP, to as i64)).unwrap(),
        )
    }

    /// `mov eax, nr` (5 bytes: b8 imm32).
    pub fn mov_eax(&mut self, nr: u32) -> u64 {
        let at = self.raw(&[0xb8]);
        self.bytes.extend(nr.to_le_bytes());
        at
    }

    /// `syscall` (0f 05).
    pub fn syscall(&mut self) -> u64 {
        self.raw(&[0x0f, 0x05])
    }

    /// `ret` (c3).
    pub fn ret(&mut self) -> u64 {
        self.raw(&[0xc3])
    }

    /// `int3` up to the next multiple of 16, as linkers pad between functions.
    pub fn pad(&mut self) -> u64 {
        while !self.bytes.len().is_multiple_of(16) {
            self.bytes.push(0xcc);
        }
        self.here()
    }
}

// Common instructions, as bytes.
/// `endbr64`
pub const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
/// `push rbp`
pub const PUSH_RBP: [u8; 1] = [0x55];
/// `mov rbp, rsp`
pub const MOV_RBP_RSP: [u8; 3] = [0x48, 0x89, 0xe5];
/// `sub rsp, 16`
pub const SUB_RSP_16: [u8; 4] = [0x48, 0x83, 0xec, 0x10];
/// `mov edi, 1`
pub const MOV_EDI_1: [u8; 5] = [0xbf, 0x01, 0x00, 0x00, 0x00];
/// `mov edi, eax`
pub const MOV_EDI_EAX: [u8; 2] = [0x89, 0xc7];
/// `xor eax, eax`
pub const XOR_EAX_EAX: [u8; 2] = [0x31, 0xc0];
/// `nop dword [rax+rax+0]` (the 5-byte nop)
pub const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];
/// `(bad)`: 06 was `push es`, which 64-bit mode does not have.
pub const BAD: [u8; 1] = [0x06];
