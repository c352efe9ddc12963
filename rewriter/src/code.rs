//! A whole-file view of an executable's code, for the layers that move
//! instructions (function-entry detours and `syscall` sites): which bytes are
//! instructions, and which addresses something may jump to.
//!
//! Every executable section is disassembled linearly (iced-x86), restarting at
//! every address known to start code (function symbols, `.eh_frame_hdr`
//! entries, any symbol in the section, the entry point). Where the decoder
//! meets bytes that are not an instruction, or an instruction runs across a
//! known start, the code since the last known start is marked *uncertain*:
//! nothing in it is ever moved.
//!
//! Branch targets are over-approximated, since moving instructions is only
//! safe when nothing jumps between them: the targets of every direct
//! jump/call, every known start, every relocation addend that points into
//! code and, in fixed-address files, every address-sized word of data that
//! does (function pointer tables, absolute jump tables), every immediate or RIP-relative operand that points
//! into code (address taken), and the entries of PC-relative jump tables
//! (`lea table(%rip)` to read-only data whose 32-bit entries, added to the
//! table's address, land in the same section).

use crate::elf::Elf;
use crate::error::Result;
use dfpatch_runtime::bytes::{i32_at, u64_at};
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};
use object::elf;

/// Most entries read from one candidate PC-relative jump table.
const MAX_TABLE_ENTRIES: usize = 4096;

/// An executable section: `[lo, hi)`, name, bytes.
type Section<'a> = (u64, u64, String, &'a [u8]);

/// `Code::flags` bit: the instruction is a `syscall`.
const SYSCALL: u8 = 1;

pub struct Code<'a> {
    /// Where every decoded instruction starts, as an offset from `base`: 4
    /// bytes each (a 40 MB static file has millions of instructions; they
    /// are decoded again, from the file's bytes, where one is needed).
    starts: Vec<u32>,
    flags: Vec<u8>,
    base: u64,
    /// Addresses something may jump to (an over-approximation), sorted.
    targets: Vec<u64>,
    /// `[lo, hi)` ranges whose decoding is not trusted, sorted.
    uncertain: Vec<(u64, u64)>,
    sections: Vec<Section<'a>>,
}

impl<'a> Code<'a> {
    pub fn analyse(e: &Elf<'a>) -> Result<Code<'a>> {
        let symbols = e.symbols();
        let mut exec: Vec<Section<'a>> = Vec::new();
        for s in e.sections.iter().filter(|s| s.is_exec() && s.sh_addr != 0) {
            // Code is decoded from the section's bytes and rewritten where the
            // program headers load its address: those must be the same bytes.
            if e.offset_of(s.sh_addr, s.sh_size) != Some(s.sh_offset) {
                return Err(crate::error::malformed(format!(
                    "section {} is not at the file offset its program header loads it from",
                    s.name
                )));
            }
            let bytes = e.section_data(s)?;
            exec.push((s.sh_addr, s.sh_addr.saturating_add(bytes.len() as u64), s.name.clone(), bytes));
        }
        exec.sort_by_key(|x| x.0);
        let base = exec.first().map_or(0, |x| x.0);
        let top = exec.iter().map(|x| x.1).max().unwrap_or(0);
        if top - base > u64::from(u32::MAX) {
            return Err(crate::error::malformed("executable sections span more than 4 GiB"));
        }
        let in_code = |a: u64| exec.iter().any(|&(lo, hi, _, _)| a >= lo && a < hi);

        let mut starts = e.function_starts();
        starts.extend(symbols.iter().map(|s| s.value).filter(|&v| in_code(v)));
        starts.push(e.e_entry);
        starts.sort_unstable();
        starts.dedup();

        let mut code = Code {
            starts: Vec::new(),
            flags: Vec::new(),
            base,
            targets: Vec::new(),
            uncertain: Vec::new(),
            sections: Vec::new(),
        };
        let mut found: Vec<u64> = starts.clone();
        for (addr, _, _, bytes) in &exec {
            code.sweep(bytes, *addr, &starts, &mut found, &exec, e);
        }
        // Data the symbol table places in code (`.type x,@object` in hand-written
        // assembly: constant tables in `.text`) decodes as instructions but is
        // none: a `0f 05` in it is no `syscall`, and nothing in it may move.
        code.uncertain.extend(
            symbols
                .iter()
                .filter(|s| s.kind == elf::STT_OBJECT && s.size > 0 && in_code(s.value))
                .map(|s| (s.value, s.value.saturating_add(s.size))),
        );
        code.uncertain.sort_unstable();
        // `certain` searches the ranges by their ends: merge overlaps.
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(code.uncertain.len());
        for (lo, hi) in code.uncertain.drain(..) {
            match merged.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        code.uncertain = merged;

        // Pointers in data and relocation addends. In a position-independent
        // file every pointer in data has a relocation, so the addends are
        // enough; in a fixed-address one (ET_EXEC) pointers are plain words.
        // Tables of the loader and the unwinder hold no code pointers as words.
        const METADATA: [&str; 10] = [
            ".eh_frame",
            ".eh_frame_hdr",
            ".gnu.hash",
            ".hash",
            ".dynsym",
            ".dynstr",
            ".gnu.version",
            ".gnu.version_r",
            ".gnu.version_d",
            ".interp",
        ];
        let fixed = e.e_type == elf::ET_EXEC;
        for s in &e.sections {
            let alloc = s.sh_flags & u64::from(elf::SHF_ALLOC) != 0;
            if !alloc || s.is_exec() || s.sh_type == elf::SHT_NOBITS || METADATA.contains(&s.name.as_str()) {
                continue;
            }
            if s.sh_type == elf::SHT_NOTE {
                continue;
            }
            let Ok(d) = e.section_data(s) else { continue };
            if s.sh_type == elf::SHT_RELA {
                found.extend(d.chunks_exact(24).filter_map(|r| u64_at(r, 16)));
            } else if fixed {
                let skip = (8 - (s.sh_addr % 8) as usize) % 8;
                found.extend(d.get(skip..).unwrap_or(&[]).chunks_exact(8).filter_map(|w| u64_at(w, 0)));
            }
        }

        found.retain(|&a| in_code(a));
        found.sort_unstable();
        found.dedup();
        code.targets = found;
        code.sections = exec;
        Ok(code)
    }

    /// Linear disassembly of one section: instruction starts, and the branch
    /// targets and code addresses its instructions mention (into `found`).
    fn sweep(&mut self, bytes: &[u8], addr: u64, starts: &[u64], found: &mut Vec<u64>, exec: &[Section], e: &Elf) {
        let end = addr + bytes.len() as u64;
        let next_start = |after: u64| {
            let i = starts.partition_point(|&s| s <= after);
            starts.get(i).copied().filter(|&s| s < end).unwrap_or(end)
        };
        let in_code = |a: u64| exec.iter().any(|&(lo, hi, _, _)| a >= lo && a < hi);
        let mut d = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
        let mut pos = addr;
        // Where decoding last (re)started at a known boundary.
        let mut synced = addr;
        let mut next = next_start(addr.saturating_sub(1));
        let mut ins = Instruction::default();
        while pos < end {
            d.decode_out(&mut ins);
            if pos == next {
                synced = pos;
            }
            if pos >= next {
                next = next_start(pos);
            }
            if ins.is_invalid() || ins.next_ip() > next {
                // Not an instruction, or one that would run into a known start:
                // what was decoded since the last boundary is suspect.
                self.uncertain.push((synced, next));
                pos = next;
                synced = next;
                if d.set_position((pos - addr) as usize).is_err() {
                    break;
                }
                d.set_ip(pos);
                continue;
            }
            self.starts.push((pos - self.base) as u32);
            self.flags.push(if ins.mnemonic() == Mnemonic::Syscall { SYSCALL } else { 0 });
            for i in 0..ins.op_count() {
                match ins.op_kind(i) {
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                        found.push(ins.near_branch_target())
                    }
                    OpKind::Immediate32to64 | OpKind::Immediate32 | OpKind::Immediate64 => {
                        let v = ins.immediate(i);
                        if in_code(v) {
                            found.push(v);
                        }
                    }
                    OpKind::Memory if ins.is_ip_rel_memory_operand() => {
                        let a = ins.ip_rel_memory_address();
                        if in_code(a) {
                            found.push(a);
                        } else if ins.mnemonic() == Mnemonic::Lea {
                            pc_relative_table(e, a, ins.ip(), exec, found);
                        }
                    }
                    OpKind::Memory => {
                        let v = ins.memory_displacement64();
                        if in_code(v) {
                            found.push(v);
                        }
                    }
                    _ => {}
                }
            }
            pos = ins.next_ip();
        }
    }

    /// Instruction `i`, decoded again from the file's bytes.
    pub fn insn(&self, i: usize) -> Option<Instruction> {
        let ip = self.base + u64::from(*self.starts.get(i)?);
        let (lo, _, _, bytes) = self.sections.iter().find(|&&(lo, hi, _, _)| ip >= lo && ip < hi)?;
        let mut d = Decoder::with_ip(64, bytes.get((ip - lo) as usize..)?, ip, DecoderOptions::NONE);
        let ins = d.decode();
        (!ins.is_invalid()).then_some(ins)
    }

    /// Instructions `lo..=hi`, decoded again.
    pub fn run(&self, lo: usize, hi: usize) -> Option<Vec<Instruction>> {
        (lo..=hi).map(|i| self.insn(i)).collect()
    }

    /// Indexes of the `syscall` instructions.
    pub fn syscalls(&self) -> impl Iterator<Item = usize> + '_ {
        self.flags.iter().enumerate().filter(|(_, &f)| f & SYSCALL != 0).map(|(i, _)| i)
    }

    /// Index of the instruction starting at `addr`.
    pub fn index_of(&self, addr: u64) -> Option<usize> {
        let off = u32::try_from(addr.checked_sub(self.base)?).ok()?;
        self.starts.binary_search(&off).ok()
    }

    /// Something may jump to `addr`.
    pub fn is_target(&self, addr: u64) -> bool {
        self.targets.binary_search(&addr).is_ok()
    }

    /// Marks `addr` as a branch target (the return point of a trampoline).
    pub fn add_target(&mut self, addr: u64) {
        if let Err(i) = self.targets.binary_search(&addr) {
            self.targets.insert(i, addr);
        }
    }

    /// Every byte of `[lo, hi)` was decoded with certainty.
    pub fn certain(&self, lo: u64, hi: u64) -> bool {
        let i = self.uncertain.partition_point(|&(_, end)| end <= lo);
        self.uncertain.get(i).is_none_or(|&(start, _)| start >= hi)
    }

    /// Name of the executable section holding `addr`.
    pub fn section_of(&self, addr: u64) -> &str {
        self.sections.iter().find(|&&(lo, hi, _, _)| addr >= lo && addr < hi).map_or("?", |(_, _, n, _)| n.as_str())
    }
}

/// The entries of a possible PC-relative jump table at `table` (in read-only
/// data), used from the instruction at `from`: 32-bit offsets from the table
/// that land in `from`'s executable section. Reading stops at the first entry
/// that does not: over-reading only adds targets, which is the safe side.
fn pc_relative_table(e: &Elf, table: u64, from: u64, exec: &[Section], out: &mut Vec<u64>) {
    let Some(&(lo, hi, _, _)) = exec.iter().find(|&&(lo, hi, _, _)| from >= lo && from < hi) else { return };
    let Some(off) = e.offset_of(table, 4) else { return };
    let Some(d) = e.data.get(off as usize..) else { return };
    for k in 0..MAX_TABLE_ENTRIES {
        let Some(rel) = i32_at(d, k * 4) else { return };
        let t = table.wrapping_add(rel as i64 as u64);
        if t < lo || t >= hi {
            return;
        }
        out.push(t);
    }
}
