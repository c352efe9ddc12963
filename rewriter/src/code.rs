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
use std::collections::HashSet;

/// Most entries read from one candidate PC-relative jump table.
const MAX_TABLE_ENTRIES: usize = 4096;

pub struct Code {
    /// Every decoded instruction, by address.
    pub insns: Vec<Instruction>,
    /// Addresses something may jump to (an over-approximation).
    targets: HashSet<u64>,
    /// `[lo, hi)` ranges whose decoding is not trusted, sorted.
    uncertain: Vec<(u64, u64)>,
    /// Executable sections: `[lo, hi)` and name.
    sections: Vec<(u64, u64, String)>,
}

impl Code {
    pub fn analyse(e: &Elf) -> Result<Code> {
        let symbols = e.symbols();
        let exec: Vec<(u64, u64, String)> = e
            .sections
            .iter()
            .filter(|s| s.is_exec() && s.sh_addr != 0)
            .map(|s| (s.sh_addr, s.sh_addr.saturating_add(s.sh_size), s.name.clone()))
            .collect();
        let in_code = |a: u64| exec.iter().any(|&(lo, hi, _)| a >= lo && a < hi);

        let mut starts = e.function_starts();
        starts.extend(symbols.iter().map(|s| s.value).filter(|&v| in_code(v)));
        starts.push(e.e_entry);
        starts.sort_unstable();
        starts.dedup();

        let mut code = Code {
            insns: Vec::new(),
            targets: starts.iter().copied().collect(),
            uncertain: Vec::new(),
            sections: exec.clone(),
        };
        for s in e.sections.iter().filter(|s| s.is_exec() && s.sh_addr != 0) {
            let bytes = e.section_data(s)?;
            code.sweep(bytes, s.sh_addr, &starts);
        }
        code.uncertain.sort_unstable();

        // Branch targets and addresses taken inside the code.
        let mut found = Vec::new();
        for ins in &code.insns {
            for i in 0..ins.op_count() {
                match ins.op_kind(i) {
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                        found.push(ins.near_branch_target())
                    }
                    OpKind::Immediate32to64 | OpKind::Immediate32 | OpKind::Immediate64 => found.push(ins.immediate(i)),
                    OpKind::Memory if ins.is_ip_rel_memory_operand() => {
                        let addr = ins.ip_rel_memory_address();
                        if in_code(addr) {
                            found.push(addr);
                        } else if ins.mnemonic() == Mnemonic::Lea {
                            pc_relative_table(e, addr, ins.ip(), &exec, &mut found);
                        }
                    }
                    OpKind::Memory => found.push(ins.memory_displacement64()),
                    _ => {}
                }
            }
        }
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
        code.targets.extend(found.into_iter().filter(|&a| in_code(a)));
        Ok(code)
    }

    /// Linear disassembly of one section.
    fn sweep(&mut self, bytes: &[u8], base: u64, starts: &[u64]) {
        let end = base + bytes.len() as u64;
        let next_start = |after: u64| {
            let i = starts.partition_point(|&s| s <= after);
            starts.get(i).copied().filter(|&s| s < end).unwrap_or(end)
        };
        let mut d = Decoder::with_ip(64, bytes, base, DecoderOptions::NONE);
        let mut pos = base;
        // Where decoding last (re)started at a known boundary.
        let mut synced = base;
        let mut ins = Instruction::default();
        while pos < end {
            d.decode_out(&mut ins);
            let next = next_start(pos);
            if ins.is_invalid() || ins.next_ip() > next {
                // Not an instruction, or one that would run into a known start:
                // what was decoded since the last boundary is suspect.
                self.uncertain.push((synced, next));
                pos = next;
                synced = next;
                if d.set_position((pos - base) as usize).is_err() {
                    break;
                }
                d.set_ip(pos);
                continue;
            }
            if starts.binary_search(&pos).is_ok() {
                synced = pos;
            }
            self.insns.push(ins);
            pos = ins.next_ip();
        }
    }

    /// Index of the instruction starting at `addr`.
    pub fn index_of(&self, addr: u64) -> Option<usize> {
        self.insns.binary_search_by_key(&addr, |i| i.ip()).ok()
    }

    /// Something may jump to `addr`.
    pub fn is_target(&self, addr: u64) -> bool {
        self.targets.contains(&addr)
    }

    /// Marks `addr` as a branch target (the return point of a trampoline).
    pub fn add_target(&mut self, addr: u64) {
        self.targets.insert(addr);
    }

    /// Every byte of `[lo, hi)` was decoded with certainty.
    pub fn certain(&self, lo: u64, hi: u64) -> bool {
        let i = self.uncertain.partition_point(|&(_, end)| end <= lo);
        self.uncertain.get(i).is_none_or(|&(start, _)| start >= hi)
    }

    /// Name of the executable section holding `addr`.
    pub fn section_of(&self, addr: u64) -> &str {
        self.sections.iter().find(|&&(lo, hi, _)| addr >= lo && addr < hi).map_or("?", |(_, _, n)| n.as_str())
    }

    /// Bytes of code decoded with doubt, for `inspect`.
    pub fn uncertain_bytes(&self) -> u64 {
        self.uncertain.iter().map(|&(lo, hi)| hi.saturating_sub(lo)).sum()
    }
}

/// The entries of a possible PC-relative jump table at `table` (in read-only
/// data), used from the instruction at `from`: 32-bit offsets from the table
/// that land in `from`'s executable section. Reading stops at the first entry
/// that does not: over-reading only adds targets, which is the safe side.
fn pc_relative_table(e: &Elf, table: u64, from: u64, exec: &[(u64, u64, String)], out: &mut Vec<u64>) {
    let Some(&(lo, hi, _)) = exec.iter().find(|&&(lo, hi, _)| from >= lo && from < hi) else { return };
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
