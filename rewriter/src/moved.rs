//! Moving instructions out of the program's code, shared by the two layers
//! that do it: function entries ([`crate::detour`]) and `syscall`
//! instructions ([`crate::syscalls`]). A [`Window`] is a run of whole
//! instructions to move; it is re-encoded for its new address by iced-x86's
//! `BlockEncoder` (RIP-relative operands and branches fixed), and replaced
//! in the file by a 5-byte `jmp`, the bytes left behind being `int3`.
//!
//! Instructions move only when they were decoded with certainty and no branch
//! target lies inside the bytes taken (the first byte excepted): see
//! [`crate::code`].

use crate::plan::Layer;
use iced_x86::{BlockEncoder, BlockEncoderOptions, FlowControl, Instruction, InstructionBlock};
use serde::Serialize;

/// Length of `jmp rel32`.
pub(crate) const JMP: usize = crate::x86::JMP_LEN;

/// A run of instructions to move.
#[derive(Clone, Debug)]
pub struct Window {
    pub insns: Vec<Instruction>,
    /// Index in `insns` of the instruction the window is for (the `syscall`;
    /// 0 for a detour).
    pub at: usize,
}

impl Window {
    pub fn start(&self) -> u64 {
        self.insns.first().map_or(0, |i| i.ip())
    }
    pub fn end(&self) -> u64 {
        self.insns.last().map_or(0, |i| i.next_ip())
    }
    /// Bytes taken (never empty: at least 5).
    pub fn size(&self) -> usize {
        (self.end() - self.start()) as usize
    }
    /// "2 before, 1 after": how many neighbours moved with a `syscall`.
    pub fn shape(&self) -> String {
        format!("{} before, {} after", self.at, self.insns.len() - self.at - 1)
    }
}

/// A place dfpatch would hook but does not, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Refused {
    pub layer: Layer,
    pub vaddr: u64,
    /// The function, or the system call (name or "unknown number").
    pub what: String,
    pub reason: String,
}

/// Re-encodes `insns` to run at `at`.
pub(crate) fn relocate(insns: &[Instruction], at: u64) -> Result<Vec<u8>, String> {
    if insns.is_empty() {
        return Ok(Vec::new());
    }
    BlockEncoder::encode(64, InstructionBlock::new(insns, at), BlockEncoderOptions::NONE)
        .map(|r| r.code_buffer)
        .map_err(|e| format!("cannot re-encode the moved instructions: {e}"))
}

/// Whether execution never falls through past `ins`.
pub(crate) fn ends_flow(ins: &Instruction) -> bool {
    matches!(ins.flow_control(), FlowControl::UnconditionalBranch | FlowControl::IndirectBranch | FlowControl::Return)
}

pub(crate) fn jmp(from: u64, to: u64) -> Result<[u8; 5], String> {
    crate::x86::jmp(from, to).ok_or_else(|| format!("{to:#x} is more than 2 GiB from {from:#x}"))
}

/// Appends `insns` re-encoded to run where they land (the trampoline `b`
/// starts at `at`), then, unless they end the flow themselves, a jump back
/// to `back_to`.
pub(crate) fn append_moved(b: &mut Vec<u8>, insns: &[Instruction], at: u64, back_to: u64) -> Result<(), String> {
    b.extend(relocate(insns, at + b.len() as u64)?);
    if !insns.last().is_some_and(ends_flow) {
        let here = at + b.len() as u64;
        b.extend(jmp(here, back_to)?);
    }
    Ok(())
}

/// What replaces a window: `jmp to`, then `int3` up to its end.
pub fn site_bytes(w: &Window, to: u64) -> Result<Vec<u8>, String> {
    crate::x86::window_jump(w.start(), w.size(), to)
        .ok_or_else(|| format!("{to:#x} is more than 2 GiB from {:#x}", w.start()))
}

#[cfg(test)]
pub(crate) mod tests {
    use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter};

    pub(crate) fn decode(bytes: &[u8], ip: u64) -> Vec<Instruction> {
        Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE).into_iter().collect()
    }

    pub(crate) fn text(bytes: &[u8], ip: u64) -> Vec<String> {
        let mut f = IntelFormatter::new();
        decode(bytes, ip)
            .iter()
            .map(|i| {
                let mut s = String::new();
                f.format(i, &mut s);
                s
            })
            .collect()
    }
}
