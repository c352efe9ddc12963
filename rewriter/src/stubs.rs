//! The per-import hook stubs placed in the runtime segment. A rewritten call
//! site jumps to its stub; the stub either goes straight to the real function
//! (through the same GOT slot the original instruction used, so lazy binding
//! still works) or enters the runtime's `dfp_hook` with the hook number in `%r11`.
//!
//! ```text
//! stub_k:  test $PROT_EXEC, %dl     ; mmap/mprotect only: non-executable
//!          jz   real_k              ;   requests never enter the runtime
//!          mov  $k, %r11d
//!          jmp  dfp_hook
//! real_k:  jmp  *GOT_k(%rip)        ; a function-entry detour: jmp trampoline_k
//! ```
//! `%r11` is free at a call boundary in the SysV ABI (the PLT itself may clobber it).

use crate::plt::rel32;

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
    b.resize(STUB_SIZE as usize, 0xcc);
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
}
