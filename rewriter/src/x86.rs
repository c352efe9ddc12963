//! Every byte of machine code the rewriter writes, encoded here (the
//! runtime's counterpart, for what it writes at run time, is
//! `dfpatch_runtime::arch::x86_64`): the jumps and calls that replace
//! rewritten sites, the hook stubs, and the fixed parts of trampolines (the
//! moved instructions themselves are re-encoded by iced-x86's `BlockEncoder`
//! in [`crate::moved`]).
//!
//! A hook stub, placed in the runtime segment; a rewritten call site jumps to
//! it, and it either goes straight to the real function (through the same GOT
//! slot the original instruction used, so lazy binding still works) or
//! enters the runtime's `dfp_hook` with the hook number in `%r11`:
//!
//! ```text
//! stub_k:  test $PROT_EXEC, %dl     ; mmap/mprotect only: non-executable
//!          jz   real_k              ;   requests never enter the runtime
//!          mov  $k, %r11d
//!          jmp  dfp_hook
//! real_k:  jmp  *GOT_k(%rip)        ; a function-entry detour: jmp trampoline_k
//! ```
//! `%r11` is free at a call boundary in the SysV ABI (the PLT itself may clobber it).

/// `endbr64`: where an indirect branch may land under CET.
pub const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
/// Filler of bytes never executed.
pub const INT3: u8 = 0xcc;
/// Filler of bytes executed as no-ops (before a call that must keep its return address).
pub const NOP: u8 = 0x90;
/// Length of `jmp rel32`.
pub const JMP_LEN: usize = 5;

/// `to - from` as a rel32, if it fits (computed without wrapping around).
pub fn rel32(from: u64, to: u64) -> Option<i32> {
    i32::try_from(i128::from(to) - i128::from(from)).ok()
}

/// `jmp rel32` at `at` to `to`.
pub fn jmp(at: u64, to: u64) -> Option<[u8; JMP_LEN]> {
    let r = rel32(at.checked_add(JMP_LEN as u64)?, to)?.to_le_bytes();
    Some([0xe9, r[0], r[1], r[2], r[3]])
}

/// `call rel32` at `at` to `to`.
pub fn call(at: u64, to: u64) -> Option<[u8; 5]> {
    let r = rel32(at.checked_add(5)?, to)?.to_le_bytes();
    Some([0xe8, r[0], r[1], r[2], r[3]])
}

/// `jmp rel32` with its displacement left for the runtime to fill in
/// (returned: where the rel32 is in the bytes).
pub fn jmp_placeholder(b: &mut Vec<u8>) -> usize {
    b.push(0xe9);
    let at = b.len();
    b.extend([0; 4]);
    at
}

/// `call *disp(%rip)` with `disp` 0, to be pointed at a slot later
/// ([`set_call_slot`]).
pub const CALL_THROUGH_SLOT: [u8; 6] = [0xff, 0x15, 0, 0, 0, 0];

/// What replaces a PLT entry's `jmp *slot(%rip)` (`call: false`) or a
/// `-fno-plt` `call *slot(%rip)` (`call: true`) of `len` bytes at `at`: a
/// direct `jmp`/`call` to `stub`, padded with NOPs so the return address of a
/// call is unchanged (`addr32 call rel32` is 6 bytes, as the linker writes
/// when it relaxes a GOT call).
pub fn got_site(call: bool, at: u64, len: usize, stub: u64) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    if call {
        out.resize(len.checked_sub(6)?, NOP);
        let rel = rel32(at.checked_add(len as u64)?, stub)?;
        out.extend_from_slice(&[0x67, 0xe8]);
        out.extend_from_slice(&rel.to_le_bytes());
    } else {
        out.extend_from_slice(&jmp(at, stub)?);
        out.resize(len, NOP);
    }
    Some(out)
}

/// What replaces a moved window of `len` bytes at `at`: `jmp to`, then `int3`.
pub fn window_jump(at: u64, len: usize, to: u64) -> Option<Vec<u8>> {
    let mut b = jmp(at, to)?.to_vec();
    b.resize(len.max(JMP_LEN), INT3);
    Some(b)
}

/// Where the call to `dfp_sys_hook` starts in [`ask_then_syscall`]'s bytes.
pub const CALL_OFFSET: usize = 11;
/// Where the hook number's imm32 is in [`ask_then_syscall`]'s bytes.
pub const NUMBER_OFFSET: usize = 7;

/// Appends the middle of the executable's `syscall` trampolines, the
/// sequence `dfp_sys_hook` is written for: step over the red zone, hook
/// number in `%r11d`, `call` (the given encoding: direct, or through a slot),
/// step back, skip the rest when refused (`%rcx` = 0), the `syscall`, then
/// `tail` (see [`child_arms`]). The trampoline lies in the runtime segment,
/// inside the range whose system calls the backstop lets run.
pub fn ask_then_syscall(b: &mut Vec<u8>, k: u32, call: &[u8], tail: &[u8]) {
    ask(b, k, call);
    b.extend([0xe3, 2 + tail.len() as u8]); // jrcxz over the syscall and the tail: refused
    b.extend([0x0f, 0x05]); // syscall
    b.extend_from_slice(tail);
}

/// Appends the middle of a library's `syscall` trampoline (placed near the
/// library, outside the backstop's range): as [`ask_then_syscall`], but the
/// system call runs in one of the runtime's thunks, reached through the
/// 8-byte slot the runtime fills in; the thunk jumps back to just after this
/// sequence. Returns where the `jmp`'s displacement is, for [`set_rip_slot`].
pub fn ask_then_thunk(b: &mut Vec<u8>, k: u32, call: &[u8]) -> usize {
    ask(b, k, call);
    b.extend([0xe3, JMP_THROUGH_SLOT.len() as u8]); // jrcxz over the jump: refused
    let at = b.len();
    b.extend_from_slice(&JMP_THROUGH_SLOT);
    at
}

/// Appends the middle of a library's `syscall` trampoline that asks
/// nothing (a known number the dispatcher lets through): the jump to the
/// thunk through the slot, as in [`ask_then_thunk`]. Returns where the
/// `jmp` is, for [`set_rip_slot`].
pub fn thunk_through_slot(b: &mut Vec<u8>) -> usize {
    let at = b.len();
    b.extend_from_slice(&JMP_THROUGH_SLOT);
    at
}

fn ask(b: &mut Vec<u8>, k: u32, call: &[u8]) {
    b.extend([0x48, 0x8d, 0x64, 0x24, 0x80]); // lea rsp, [rsp-0x80]
    b.extend([0x41, 0xbb]); // mov r11d, k
    b.extend(k.to_le_bytes());
    b.extend_from_slice(call);
    b.extend([0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00]); // lea rsp, [rsp+0x80]
}

/// What follows the `syscall` of a site whose call may start a process or
/// thread (`clone`, `clone3`, `fork`, `vfork`, or a number known only at run
/// time) at `at`: in the child (`%rax` = 0) call `arm_child`
/// (`dfp_arm_child`, which keeps every register) below the red zone, so the
/// child arms the backstop before it runs the program's next instruction.
/// A parent whose call returned 0 for another reason arms itself again,
/// which changes nothing.
pub fn child_arms(at: u64, arm_child: u64) -> Option<Vec<u8>> {
    let mut b = vec![0x48, 0x85, 0xc0]; // test rax, rax
    b.extend([0x75, 18]); // jnz over the three below
    b.extend([0x48, 0x8d, 0x64, 0x24, 0x80]); // lea rsp, [rsp-0x80]
    b.extend(call(at.checked_add(b.len() as u64)?, arm_child)?);
    b.extend([0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00]); // lea rsp, [rsp+0x80]
    Some(b)
}

/// `jmp *disp(%rip)` with `disp` 0, to be pointed at a slot later ([`set_rip_slot`]).
pub const JMP_THROUGH_SLOT: [u8; 6] = [0xff, 0x25, 0, 0, 0, 0];

/// Points the `call`/`jmp *disp(%rip)` (6 bytes) at `insn_at` in `b` at the
/// 8-byte slot at `slot_at`.
pub fn set_rip_slot(b: &mut [u8], insn_at: usize, slot_at: usize) -> Option<()> {
    let disp = i32::try_from(slot_at as i64 - (insn_at as i64 + 6)).ok()?;
    b.get_mut(insn_at + 2..insn_at + 6)?.copy_from_slice(&disp.to_le_bytes());
    Some(())
}

/// Every stub occupies this many bytes (padded with `int3`).
pub const STUB_SIZE: u64 = 32;

/// Where a stub goes when the runtime is not needed.
#[derive(Clone, Copy, Debug)]
pub enum Real {
    /// Through the GOT slot at this address.
    Got(u64),
    /// To this address (a detour's trampoline).
    Direct(u64),
}

/// Encodes stub `k` placed at `at`.
pub fn stub(k: u32, at: u64, hook_entry: u64, real: Real, prot_filter: bool) -> Option<Vec<u8>> {
    let mut b = Vec::with_capacity(STUB_SIZE as usize);
    if prot_filter {
        // test dl, 4 ; jz +11 (over the mov and the jmp)
        b.extend_from_slice(&[0xf6, 0xc2, 0x04, 0x74, 0x0b]);
    }
    b.extend_from_slice(&[0x41, 0xbb]);
    b.extend_from_slice(&k.to_le_bytes());
    let rel = rel32(at.checked_add(b.len() as u64 + 5)?, hook_entry)?;
    b.push(0xe9);
    b.extend_from_slice(&rel.to_le_bytes());
    match real {
        Real::Got(got) => {
            let disp = rel32(at.checked_add(b.len() as u64 + 6)?, got)?;
            b.extend_from_slice(&[0xff, 0x25]);
            b.extend_from_slice(&disp.to_le_bytes());
        }
        Real::Direct(to) => {
            let rel = rel32(at.checked_add(b.len() as u64 + 5)?, to)?;
            b.push(0xe9);
            b.extend_from_slice(&rel.to_le_bytes());
        }
    }
    b.resize(STUB_SIZE as usize, INT3);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    fn disasm(bytes: &[u8], ip: u64) -> Vec<String> {
        let mut d = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = Vec::new();
        for ins in &mut d {
            let mut s = String::new();
            f.format(&ins, &mut s);
            out.push(s);
        }
        out
    }

    #[test]
    fn filtered_stub_decodes_as_documented() {
        let b = stub(7, 0x10000, 0x8000, Real::Got(0x4000), true).unwrap();
        let text = disasm(&b[..22], 0x10000);
        assert_eq!(
            text,
            ["test dl,4", "je short 0000000000010010h", "mov r11d,7", "jmp 0000000000008000h", "jmp qword ptr [4000h]"]
        );
    }

    #[test]
    fn plain_stub_and_range() {
        let b = stub(0, 0x10000, 0x8000, Real::Got(0x4000), false).unwrap();
        assert_eq!(disasm(&b[..17], 0x10000), ["mov r11d,0", "jmp 0000000000008000h", "jmp qword ptr [4000h]"]);
        let d = stub(1, 0x10000, 0x8000, Real::Direct(0x20000), false).unwrap();
        assert_eq!(disasm(&d[..16], 0x10000), ["mov r11d,1", "jmp 0000000000008000h", "jmp 0000000000020000h"]);
        assert!(stub(0, 0x1_0000_0000_0000, 0x8000, Real::Got(0x4000), false).is_none());
    }

    #[test]
    fn ask_then_syscall_offsets_are_where_they_say() {
        let mut b = Vec::new();
        ask_then_syscall(&mut b, 0x1234_5678, &CALL_THROUGH_SLOT, &[]);
        assert_eq!(b[NUMBER_OFFSET..NUMBER_OFFSET + 4], 0x1234_5678u32.to_le_bytes());
        assert_eq!(b[CALL_OFFSET..CALL_OFFSET + 2], CALL_THROUGH_SLOT[..2]);
        let mut slot = b.clone();
        slot.extend([0; 8]);
        let at = b.len();
        set_rip_slot(&mut slot, CALL_OFFSET, at).unwrap();
        let text = disasm(&slot[..b.len()], 0);
        assert_eq!(text[2], format!("call qword ptr [{at:X}h]"));
    }
}
