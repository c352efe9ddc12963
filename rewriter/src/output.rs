//! The output file as the input plus a list of in-place edits plus a tail.
//! Nothing is copied until it is written, so patching a large file needs
//! little memory beyond the input's mapping; and the same edit list is what
//! `restore` data records (the original bytes under every edit).

use crate::error::{malformed, Result};
use std::io::{self, Write};

pub struct Output<'a> {
    base: &'a [u8],
    /// Sorted, non-overlapping (offset, new bytes) inside `base`.
    edits: Vec<(u64, Vec<u8>)>,
    tail: Vec<u8>,
}

impl<'a> Output<'a> {
    pub fn new(base: &'a [u8]) -> Output<'a> {
        Output { base, edits: Vec::new(), tail: Vec::new() }
    }

    /// Replaces `bytes.len()` bytes at `offset` of the input.
    pub fn edit(&mut self, offset: u64, bytes: Vec<u8>) -> Result<()> {
        let end = offset.checked_add(bytes.len() as u64).ok_or_else(|| malformed("edit offset overflows"))?;
        if end > self.base.len() as u64 {
            return Err(malformed(format!("edit at {offset:#x} lies outside the file")));
        }
        let at = self.edits.partition_point(|(o, _)| *o < offset);
        let overlaps_prev = at > 0 && {
            let (o, b) = &self.edits[at - 1];
            o + b.len() as u64 > offset
        };
        let overlaps_next = self.edits.get(at).is_some_and(|(o, _)| *o < end);
        if overlaps_prev || overlaps_next {
            return Err(malformed(format!("two edits overlap at {offset:#x}")));
        }
        self.edits.insert(at, (offset, bytes));
        Ok(())
    }

    /// Replaces the bytes of an existing edit at `offset` (same length).
    pub fn replace_edit(&mut self, offset: u64, bytes: Vec<u8>) -> Result<()> {
        match self.edits.iter_mut().find(|(o, _)| *o == offset) {
            Some((_, b)) if b.len() == bytes.len() => {
                *b = bytes;
                Ok(())
            }
            _ => Err(malformed(format!("no edit of that size at {offset:#x} to replace"))),
        }
    }

    /// Current length of the output.
    pub fn len(&self) -> u64 {
        (self.base.len() + self.tail.len()) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends zeros up to `offset`, then `bytes`; returns where they went.
    pub fn append_at(&mut self, offset: u64, bytes: &[u8]) -> u64 {
        let cur = self.len();
        if offset > cur {
            self.tail.resize(self.tail.len() + (offset - cur) as usize, 0);
        }
        let at = self.len();
        self.tail.extend_from_slice(bytes);
        at
    }

    /// The original bytes under every edit: what restoring needs.
    pub fn originals(&self) -> Vec<(u64, &'a [u8])> {
        self.edits.iter().map(|(o, b)| (*o, &self.base[*o as usize..*o as usize + b.len()])).collect()
    }

    pub fn write_to(&self, w: &mut (impl Write + ?Sized)) -> io::Result<()> {
        let mut pos = 0usize;
        for (off, bytes) in &self.edits {
            let off = *off as usize;
            w.write_all(&self.base[pos..off])?;
            w.write_all(bytes)?;
            pos = off + bytes.len();
        }
        w.write_all(&self.base[pos..])?;
        w.write_all(&self.tail)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len() as usize);
        self.write_to(&mut v).expect("writing to a Vec cannot fail");
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_and_tail() {
        let base = b"0123456789";
        let mut o = Output::new(base);
        o.edit(6, b"xy".to_vec()).unwrap();
        o.edit(1, b"ab".to_vec()).unwrap();
        assert!(o.edit(2, b"zz".to_vec()).is_err());
        assert!(o.edit(9, b"zz".to_vec()).is_err());
        assert_eq!(o.append_at(12, b"T"), 12);
        assert_eq!(o.to_vec(), b"0ab345xy89\0\0T");
        assert_eq!(o.originals(), vec![(1, &b"12"[..]), (6, &b"67"[..])]);
    }
}
