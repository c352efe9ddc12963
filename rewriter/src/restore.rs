//! Restore data: the original bytes under every edit and the original file
//! length, kept in the non-loaded `.dfpatch.restore` section. Restoring
//! truncates the file to its original length (everything dfpatch appended
//! goes) and puts the original bytes back, giving the input byte for byte.
//!
//! Format (little-endian): `b"DFPRSTR1"`, original length `u64`, file offset
//! of the runtime segment `u64`, entry count `u64`, then per entry: offset
//! `u64`, length `u64`, the bytes, padded to 8. The segment's offset lets
//! restore notice a file that was rewritten after patching (by `strip` or
//! `objcopy`, which move things): such a file is refused, not "restored" wrong.

use crate::elf::{slice, Elf};
use crate::error::{Error, Result};
use dfpatch_runtime::bytes::u64_at;
use dfpatch_runtime::contract::{Contract, Record, MAGIC};

const RESTORE_MAGIC: &[u8; 8] = b"DFPRSTR1";

pub fn encode(orig_len: u64, segment_offset: u64, originals: &[(u64, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(RESTORE_MAGIC);
    b.extend_from_slice(&orig_len.to_le_bytes());
    b.extend_from_slice(&segment_offset.to_le_bytes());
    b.extend_from_slice(&(originals.len() as u64).to_le_bytes());
    for (off, bytes) in originals {
        b.extend_from_slice(&off.to_le_bytes());
        b.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        b.extend_from_slice(bytes);
        while b.len() % 8 != 0 {
            b.push(0);
        }
    }
    b
}

/// The original file of a patched `e`.
pub fn restore(e: &Elf) -> Result<Vec<u8>> {
    let s = e.last_section(".dfpatch.restore").ok_or(Error::NotPatched)?;
    let blob = e.section_data(s)?;
    let bad = |why: &str| Error::BadRestoreData(why.to_string());
    let u64_at = |i: usize| u64_at(blob, i).ok_or_else(|| bad("truncated"));
    if blob.get(..8) != Some(RESTORE_MAGIC.as_slice()) {
        return Err(bad("wrong magic"));
    }
    let orig_len = u64_at(8)?;
    let segment_offset = u64_at(16)?;
    let count = u64_at(24)?;
    if e.last_section(".dfpatch").map(|s| s.sh_offset) != Some(segment_offset) || segment_offset < orig_len {
        return Err(bad(
            "the file was rewritten after patching (by strip or objcopy?): its original cannot be rebuilt",
        ));
    }
    let mut out = slice(e.data, 0, orig_len).ok_or_else(|| bad("original length beyond the file"))?.to_vec();
    let mut at = 32usize;
    for _ in 0..count {
        let off = u64_at(at)?;
        let len = u64_at(at + 8)?;
        at += 16;
        let bytes = slice(blob, at as u64, len).ok_or_else(|| bad("entry beyond the data"))?;
        let end = off.checked_add(len).ok_or_else(|| bad("entry overflows"))?;
        out.get_mut(off as usize..end as usize).ok_or_else(|| bad("entry beyond the original"))?.copy_from_slice(bytes);
        at += (len as usize).div_ceil(8) * 8;
    }
    Ok(out)
}

/// The contract of a patched file, read from its `.dfpatch` section. It is
/// found by its magic, not at this dfpatch's own runtime offset: a file
/// patched by another version has its runtime, and so its contract, elsewhere.
pub fn contract_of(e: &Elf) -> Option<Contract> {
    let s = e.last_section(".dfpatch")?;
    find_contract(e.section_data(s).ok()?, s.sh_addr)
}

/// The contract in a runtime segment whose bytes `seg` are linked at `vaddr`:
/// the first place holding the magic whose `self_vaddr` says it is linked
/// right there (the magic's bytes may also stand elsewhere in the runtime).
pub(crate) fn find_contract(seg: &[u8], vaddr: u64) -> Option<Contract> {
    memchr::memmem::find_iter(seg, &MAGIC).find_map(|at| {
        let c = Contract::decode(seg.get(at..)?)?;
        (c.self_vaddr == vaddr.checked_add(at as u64)?).then_some(c)
    })
}

/// The "already patched" error, naming the version and policy that did it.
pub fn already_patched(e: &Elf) -> Error {
    match contract_of(e) {
        Some(c) => Error::AlreadyPatched {
            version: String::from_utf8_lossy(&c.tool_version).trim_end_matches('\0').to_string(),
            policy_hash: c.policy_hash.iter().map(|b| format!("{b:02x}")).collect::<String>()[..16].to_string(),
        },
        None => Error::AlreadyPatched { version: "unknown".into(), policy_hash: "unknown".into() },
    }
}
