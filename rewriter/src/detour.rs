//! The function-entry layer (detours) of static executables, and of libc's
//! entries planned for in memory ([`crate::libplan`]): the first whole
//! instructions of a monitored function (at least 5 bytes, after an
//! `endbr64`) move to a trampoline; the entry becomes `jmp stub`, and the
//! hook reaches the real function through the trampoline, which runs the
//! moved instructions and jumps back.

use crate::code::Code;
use crate::elf::Elf;
use crate::moved::{append_moved, Refused, Window, JMP};
use crate::plan::Layer;
use dfpatch_runtime::apis::ApiId;
use iced_x86::{Code as Op, FlowControl, Instruction};
use std::collections::BTreeMap;

/// A monitored function whose entry can be detoured.
#[derive(Clone, Debug)]
pub struct Detour {
    pub api: ApiId,
    pub symbol: String,
    pub entry: u64,
    pub window: Window,
}

/// Monitored functions of the symbol table, one per address (aliases such as
/// `execve`/`__execve` share one detour; the first API in table order names it).
pub fn detours(e: &Elf, code: &Code, hooked: impl Fn(ApiId) -> bool) -> (Vec<Detour>, Vec<Refused>) {
    let mut by_addr: BTreeMap<u64, (ApiId, String, u64)> = BTreeMap::new();
    for s in e.symbols() {
        if s.kind != object::elf::STT_FUNC || s.value == 0 {
            continue;
        }
        let Some(api) = ApiId::from_name(&s.name) else { continue };
        // fork/vfork/clone are watched as system calls only (the clone()
        // function's arguments are not the system call's).
        if !hooked(api) || !api.function_hooked() {
            continue;
        }
        let slot = by_addr.entry(s.value).or_insert((api, s.name.clone(), s.size));
        if (api as u16) < (slot.0 as u16) {
            *slot = (api, s.name.clone(), s.size.max(slot.2));
        }
    }
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for (entry, (api, symbol, size)) in by_addr {
        match entry_window(code, entry, size) {
            Ok(window) => out.push(Detour { api, symbol, entry, window }),
            Err(reason) => refused.push(Refused { layer: Layer::Entry, vaddr: entry, what: symbol, reason }),
        }
    }
    (out, refused)
}

fn entry_window(code: &Code, entry: u64, size: u64) -> Result<Window, String> {
    let mut i = code.index_of(entry).ok_or("its entry is not where a decoded instruction starts")?;
    if code.insn(i).is_some_and(|ins| ins.code() == Op::Endbr64) {
        i += 1; // the entry keeps its endbr64: indirect calls still land on one
    }
    let first = code.insn(i).ok_or("nothing after its endbr64")?;
    let start = first.ip();
    let mut insns = Vec::new();
    let mut len = 0usize;
    while len < JMP {
        let ins = code.insn(i + insns.len()).ok_or("the code ends inside its first 5 bytes")?;
        if insns.last().is_some_and(|p: &Instruction| p.next_ip() != ins.ip()) {
            return Err("its first 5 bytes are not contiguous instructions".into());
        }
        // After an endbr64 even the first moved instruction must not be a
        // target: a branch there would now enter the hook as a new call.
        if (!insns.is_empty() || ins.ip() != entry) && code.is_target(ins.ip()) {
            return Err(format!("a branch target at {:#x}, inside its first 5 bytes", ins.ip()));
        }
        len += ins.len();
        match ins.flow_control() {
            FlowControl::Next => {}
            FlowControl::UnconditionalBranch
            | FlowControl::ConditionalBranch
            | FlowControl::IndirectBranch
            | FlowControl::Return
                if len >= JMP => {}
            FlowControl::Call | FlowControl::IndirectCall => {
                return Err(format!("a call at {:#x}, inside its first 5 bytes", ins.ip()))
            }
            _ => return Err(format!("it leaves at {:#x}, before 5 bytes", ins.ip())),
        }
        insns.push(ins);
    }
    let end = start + len as u64;
    if size > 0 && end > entry + size {
        return Err(format!("the function is {size} bytes long: too short for a 5-byte jump"));
    }
    if !code.certain(start, end) {
        return Err("its first bytes did not decode with certainty".into());
    }
    Ok(Window { insns, at: 0 })
}

/// The detour trampoline at `at`: `endbr64` (the hook reaches it with an
/// indirect jump), the moved instructions, and a jump back after them.
pub fn detour_trampoline(w: &Window, at: u64) -> Result<Vec<u8>, String> {
    let mut b = crate::x86::ENDBR64.to_vec();
    append_moved(&mut b, &w.insns, at, w.end())?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moved::tests::{decode, text};

    #[test]
    fn detour_trampoline_runs_the_prologue_and_returns() {
        // push rbp ; mov rbp, rsp ; sub rsp, 16   at 0x401000
        let code = [0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10];
        let w = Window { insns: decode(&code, 0x401000), at: 0 };
        let t = detour_trampoline(&w, 0x600000).unwrap();
        assert_eq!(text(&t, 0x600000), ["endbr64", "push rbp", "mov rbp,rsp", "sub rsp,10h", "jmp 0000000000401008h"]);
        // A conditional branch moved last is re-aimed at its original target.
        let code = [0x48, 0x85, 0xff, 0x74, 0x10]; // test rdi,rdi ; je +0x10
        let w = Window { insns: decode(&code, 0x401000), at: 0 };
        let t = detour_trampoline(&w, 0x600000).unwrap();
        let moved = decode(&t, 0x600000);
        assert_eq!(moved[2].near_branch_target(), 0x401015);
        assert_eq!(moved.last().unwrap().near_branch_target(), 0x401005);
    }
}
