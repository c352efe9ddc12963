//! [`crate::restore`]: the restore data gives the original file back byte
//! for byte, and damaged or mismatched data is refused.

use super::synth::*;
use crate::error::Error;
use crate::restore::{encode, find_contract, restore};
use dfpatch_runtime::contract::{Contract, Record, MAGIC};
use object::elf;

fn original() -> Vec<u8> {
    let mut a = Asm::at(TEXT);
    a.raw(&PUSH_RBP);
    a.raw(&MOV_RBP_RSP);
    a.mov_eax(59);
    a.syscall();
    a.ret();
    Builder::exec().text(a.bytes.clone()).data(vec![7; 16]).func("f", TEXT, a.bytes.len() as u64).build()
}

/// A "patched" file made from `orig`: its code edited in place, and past
/// `orig`'s end a `.dfpatch` section and the restore data (`blob(orig_len,
/// segment_offset, originals)`), with new section headers. Returns it and
/// the edits as restore data records them.
fn patched(orig: &[u8], blob: impl Fn(u64, u64, &[(u64, &[u8])]) -> Vec<u8>) -> Vec<u8> {
    let segment_at = (orig.len() as u64).div_ceil(0x1000) * 0x1000;
    let build = |restore_data: Vec<u8>| {
        let mut a = Asm::at(TEXT);
        a.jmp(0x50_0000); // the site: jmp trampoline
        a.raw(&[0xcc; 4]);
        a.syscall();
        a.ret();
        let mut b = Builder::exec()
            .text(a.bytes.clone())
            .data(vec![7; 16])
            .func("f", TEXT, a.bytes.len() as u64)
            .section(".dfpatch", elf::SHT_PROGBITS, 0, 0, vec![0xdf; 32])
            .section(".dfpatch.restore", elf::SHT_PROGBITS, 0, 0, restore_data);
        b.sections.iter_mut().find(|s| s.name == ".dfpatch").unwrap().min_offset = segment_at;
        b.build()
    };
    // The edits do not depend on the restore data, which lies past `orig`:
    // the whole ELF header, then every byte that differs.
    let draft = build(Vec::new());
    let mut edits: Vec<(u64, &[u8])> = vec![(0, &orig[..64])];
    let mut k = 64;
    while k < orig.len() {
        if draft[k] == orig[k] {
            k += 1;
            continue;
        }
        let start = k;
        while k < orig.len() && draft[k] != orig[k] {
            k += 1;
        }
        edits.push((start as u64, &orig[start..k]));
    }
    let out = build(blob(orig.len() as u64, segment_at, &edits));
    assert_eq!(parse(&out).last_section(".dfpatch").unwrap().sh_offset, segment_at);
    out
}

#[test]
fn restore_gives_the_original_back() {
    let orig = original();
    let p = patched(&orig, encode);
    assert_ne!(p[..orig.len()], orig[..]);
    assert_eq!(restore(&parse(&p)).unwrap(), orig);
}

#[test]
fn damaged_restore_data_is_refused() {
    let orig = original();
    let bad = |data: Vec<u8>, why: &str| match restore(&parse(&data)) {
        Err(Error::BadRestoreData(m)) => assert!(m.contains(why), "{m:?} does not say {why:?}"),
        other => panic!("expected BadRestoreData({why:?}), got {:?}", other.map(|v| v.len())),
    };
    // Wrong magic.
    bad(patched(&orig, |l, s, o| [b"DFPRSTR0".as_slice(), &encode(l, s, o)[8..]].concat()), "wrong magic");
    // Cut short.
    bad(patched(&orig, |l, s, o| encode(l, s, o)[..20].to_vec()), "truncated");
    // The runtime segment is not where the data says: rewritten after patching.
    bad(patched(&orig, |l, s, o| encode(l, s + 8, o)), "rewritten after patching");
    // An original length past the segment.
    bad(patched(&orig, |_, s, o| encode(s + 1, s, o)), "rewritten after patching");
    // An entry past the original's end.
    bad(patched(&orig, |l, s, _| encode(l, s, &[(l - 2, [1u8, 2, 3].as_slice())])), "entry beyond the original");
    // An entry whose bytes are not all there.
    bad(
        patched(&orig, |l, s, o| {
            let b = encode(l, s, o);
            b[..b.len() - 8].to_vec()
        }),
        "beyond the data",
    );
    // Not patched at all.
    assert!(matches!(restore(&parse(&orig)), Err(Error::NotPatched)));
}

/// The contract is found by its magic wherever the runtime that wrote the
/// file put it (another dfpatch version's runtime is laid out differently),
/// and only where its `self_vaddr` says it is: the magic's bytes elsewhere
/// are not taken for it.
#[test]
fn the_contract_is_found_where_it_says_it_is() {
    let vaddr = 0x40_0000u64;
    let mut seg = vec![0xccu8; 600];
    // A decoy: the magic, but a contract that says it is linked elsewhere.
    let mut decoy = Contract::EMPTY;
    decoy.magic = MAGIC;
    decoy.self_vaddr = 0x1234;
    decoy.encode_into(&mut seg[16..]).unwrap();
    let mut real = Contract::EMPTY;
    real.magic = MAGIC;
    real.version = 3;
    real.self_vaddr = vaddr + 300;
    real.tool_version[..5].copy_from_slice(b"0.0.9");
    real.encode_into(&mut seg[300..]).unwrap();
    assert_eq!(find_contract(&seg, vaddr), Some(real));
    assert_eq!(find_contract(&seg[..400], vaddr), None, "cut short");
    assert_eq!(find_contract(&seg, vaddr + 8), None, "linked elsewhere");
}
