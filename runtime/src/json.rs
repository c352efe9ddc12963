//! A JSON writer into a fixed buffer: no allocation, no formatting machinery,
//! never panics, and always valid JSON.
//!
//! How it stays valid when the buffer fills up:
//! * the last [`RESERVE`] bytes are kept for closing what is open (the quote
//!   of a string, the brackets of open containers) and for `,"truncated":true}\n`;
//! * a key is only written when its value fits too ([`VALUE_ROOM`] bytes), so
//!   no key is left without a value;
//! * once something does not fit, the writer is *full*: every later write is
//!   dropped, except the closers of containers that were opened;
//! * a string that does not fit is cut at a character boundary and closed.
//!
//! [`Json::finish`] adds `"truncated":true` when anything was dropped or cut.

/// Bytes kept back for closers and the truncation marker.
pub const RESERVE: usize = 48;
/// Room a key needs for its value: the longest number or `"0x…"` (20 bytes).
const VALUE_ROOM: usize = 22;

pub struct Json<'a> {
    buf: &'a mut [u8],
    len: usize,
    /// Something did not fit: later writes are dropped.
    full: bool,
    /// A value was shortened (a string cut at its limit).
    cut: bool,
    /// Inside a string: the bytes of an incomplete UTF-8 sequence seen so far.
    pending: [u8; 4],
    pending_len: usize,
}

impl<'a> Json<'a> {
    pub fn new(buf: &'a mut [u8]) -> Json<'a> {
        Json { buf, len: 0, full: false, cut: false, pending: [0; 4], pending_len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether anything was dropped or cut.
    pub fn truncated(&self) -> bool {
        self.full || self.cut
    }

    /// Records that a value was shortened before it reached the writer.
    pub fn mark_cut(&mut self) {
        self.cut = true;
    }

    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    fn room(&self) -> usize {
        self.buf.len().saturating_sub(RESERVE).saturating_sub(self.len)
    }

    /// Writes into the reserve; only for closers that balance an opener.
    fn put_reserved(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn put(&mut self, s: &[u8]) {
        for &b in s {
            self.put_reserved(b);
        }
    }

    /// Appends bytes that are already valid JSON, all or nothing.
    pub fn raw(&mut self, s: &[u8]) {
        if self.full || s.len() > self.room() {
            self.full = true;
            return;
        }
        self.put(s);
    }

    /// Opens `{` or `[`; returns whether it was written, to pass to [`Json::close`].
    pub fn open(&mut self, bracket: u8) -> bool {
        if self.full || self.room() < 1 {
            self.full = true;
            return false;
        }
        self.put_reserved(bracket);
        true
    }

    /// Closes a container opened by [`Json::open`] (from the reserve if need be).
    pub fn close(&mut self, bracket: u8, opened: bool) {
        if opened {
            self.put_reserved(bracket);
        }
    }

    /// `"key":` with a leading comma unless `first`, if the key and a value fit.
    /// Returns whether it was written; callers may skip the value if not, but
    /// writing it anyway is harmless (it is dropped).
    pub fn key(&mut self, first: bool, k: &[u8]) -> bool {
        let need = usize::from(!first) + k.len() + 3 + VALUE_ROOM;
        if self.full || self.room() < need {
            self.full = true;
            return false;
        }
        if !first {
            self.put(b",");
        }
        self.put(b"\"");
        self.put(k);
        self.put(b"\":");
        true
    }

    /// Starts an array element: a comma unless `first`. Returns false (and
    /// writes nothing) unless any value ([`VALUE_ROOM`]) would fit after it.
    pub fn element(&mut self, first: bool) -> bool {
        if self.full || self.room() < usize::from(!first) + VALUE_ROOM {
            self.full = true;
            return false;
        }
        if !first {
            self.put(b",");
        }
        true
    }

    pub fn null(&mut self) {
        self.raw(b"null");
    }

    /// A whole JSON string: quotes, escapes, invalid UTF-8 replaced by U+FFFD.
    pub fn string(&mut self, s: &[u8]) {
        if self.string_start() {
            self.string_bytes(s);
            self.string_end();
        }
    }

    /// Opens a string to be written in pieces with [`Json::string_bytes`];
    /// returns whether it was opened (then [`Json::string_end`] must follow).
    pub fn string_start(&mut self) -> bool {
        if self.full || self.room() < 1 {
            self.full = true;
            return false;
        }
        self.pending_len = 0;
        self.put(b"\"");
        true
    }

    /// Appends raw bytes to the open string. A UTF-8 sequence split between
    /// two calls is joined. When the buffer fills, the string is cut.
    pub fn string_bytes(&mut self, s: &[u8]) {
        let mut i = 0;
        while i < s.len() {
            if self.full {
                return;
            }
            if self.pending_len > 0 {
                // Complete the pending sequence byte by byte.
                let b = s[i];
                i += 1;
                if b & 0xc0 != 0x80 {
                    self.pending_len = 0;
                    self.escaped(b"\\ufffd");
                    i -= 1; // reprocess b as the start of something new
                    continue;
                }
                if let Some(slot) = self.pending.get_mut(self.pending_len) {
                    *slot = b;
                }
                self.pending_len += 1;
                let want = utf8_len(self.pending[0]);
                if self.pending_len == want {
                    self.pending_len = 0;
                    let seq = self.pending;
                    self.char_bytes(seq.get(..want).unwrap_or(&[]));
                }
                continue;
            }
            // A run of printable ASCII that needs no escape goes in at once.
            let plain = |b: &u8| (0x20..0x7f).contains(b) && *b != b'"' && *b != b'\\';
            let run = s.get(i..).map_or(0, |rest| rest.iter().take_while(|b| plain(b)).count());
            if run > 0 {
                let n = run.min(self.room());
                if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + n), s.get(i..i + n)) {
                    dst.copy_from_slice(src);
                    self.len += n;
                }
                i += n;
                if n < run {
                    self.full = true;
                    return;
                }
                continue;
            }
            let b = s[i];
            let want = utf8_len(b);
            if want == 0 {
                self.escaped(b"\\ufffd");
                i += 1;
            } else if want == 1 {
                self.ascii(b);
                i += 1;
            } else if i + want <= s.len() {
                self.char_bytes(&s[i..i + want]);
                i += want;
            } else {
                // The sequence continues in the next piece.
                let n = s.len() - i;
                self.pending[..n].copy_from_slice(&s[i..]);
                self.pending_len = n;
                i = s.len();
            }
        }
    }

    /// Closes the open string (an unfinished UTF-8 sequence becomes U+FFFD).
    pub fn string_end(&mut self) {
        if self.pending_len > 0 {
            self.pending_len = 0;
            self.escaped(b"\\ufffd");
        }
        self.put_reserved(b'"');
    }

    fn ascii(&mut self, b: u8) {
        match b {
            b'"' => self.escaped(b"\\\""),
            b'\\' => self.escaped(b"\\\\"),
            b'\n' => self.escaped(b"\\n"),
            b'\r' => self.escaped(b"\\r"),
            b'\t' => self.escaped(b"\\t"),
            0..=0x1f | 0x7f => {
                let e = [b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize & 15], HEX[b as usize & 15]];
                self.escaped(&e);
            }
            _ => self.escaped(&[b]),
        }
    }

    /// One complete multi-byte sequence, checked for validity.
    fn char_bytes(&mut self, seq: &[u8]) {
        if utf8_valid(seq) {
            self.escaped(seq);
        } else {
            self.escaped(b"\\ufffd");
        }
    }

    /// Writes the bytes of one character inside a string, or cuts the string.
    fn escaped(&mut self, e: &[u8]) {
        if self.full || e.len() > self.room() {
            self.full = true;
            return;
        }
        self.put(e);
    }

    pub fn u64(&mut self, v: u64) {
        let mut tmp = [0u8; 20];
        let n = fmt_u64(v, &mut tmp);
        self.raw(tmp.get(20 - n..).unwrap_or(&[]));
    }

    pub fn i64(&mut self, v: i64) {
        let mut tmp = [0u8; 21];
        let mut digits = [0u8; 20];
        let n = fmt_u64(v.unsigned_abs(), &mut digits);
        let mut k = 0;
        if v < 0 {
            tmp[0] = b'-';
            k = 1;
        }
        tmp[k..k + n].copy_from_slice(&digits[20 - n..]);
        self.raw(&tmp[..k + n]);
    }

    /// A quoted hexadecimal number, `"0x7f12..."`: addresses do not fit a JSON double.
    pub fn hex(&mut self, v: u64) {
        let mut tmp = [0u8; 20];
        tmp[0] = b'"';
        tmp[1] = b'0';
        tmp[2] = b'x';
        let mut n = 3;
        let mut started = false;
        for shift in (0..16).rev() {
            let d = ((v >> (shift * 4)) & 15) as usize;
            if d != 0 || started || shift == 0 {
                started = true;
                tmp[n] = HEX[d];
                n += 1;
            }
        }
        tmp[n] = b'"';
        self.raw(&tmp[..n + 1]);
    }

    pub fn bool(&mut self, v: bool) {
        self.raw(if v { b"true" } else { b"false" });
    }

    /// Ends the event: `,"truncated":true` if anything was dropped or cut,
    /// then `}\n`, all from the reserve. The caller opened the object with
    /// [`Json::open`] as the very first write.
    pub fn finish(&mut self) {
        if self.truncated() {
            // After the opening brace alone, no comma.
            self.put(if self.len > 1 { b",\"truncated\":true" } else { b"\"truncated\":true" });
        }
        self.put(b"}\n");
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Formats `v` right-aligned into `out`, returns the digit count.
pub fn fmt_u64(mut v: u64, out: &mut [u8; 20]) -> usize {
    let mut i = 20;
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    20 - i
}

/// Length of the UTF-8 sequence a lead byte starts (0: not a lead byte).
fn utf8_len(b0: u8) -> usize {
    match b0 {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

/// Whether a complete multi-byte sequence encodes a valid scalar value.
fn utf8_valid(seq: &[u8]) -> bool {
    let len = seq.len();
    let Some(&b0) = seq.first() else { return false };
    let min = match len {
        2 => 0x80,
        3 => 0x800,
        4 => 0x10000,
        _ => return false,
    };
    let mut cp: u32 = (b0 as u32) & (0x7f >> len);
    for &b in &seq[1..] {
        if b & 0xc0 != 0x80 {
            return false;
        }
        cp = (cp << 6) | (b as u32 & 0x3f);
    }
    cp >= min && cp <= 0x10ffff && !(0xd800..=0xdfff).contains(&cp)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn render(size: usize, f: impl FnOnce(&mut Json)) -> (String, bool) {
        let mut buf = std::vec![0u8; size];
        let mut j = Json::new(&mut buf);
        let opened = j.open(b'{');
        assert!(opened);
        f(&mut j);
        j.finish();
        (String::from_utf8(j.bytes().to_vec()).unwrap(), j.truncated())
    }

    #[test]
    fn escapes_and_numbers() {
        let (s, t) = render(256, |j| {
            j.key(true, b"a");
            j.string(b"q\"\\\n\x01\xff\xc3\xa9");
            j.key(false, b"n");
            j.i64(-42);
            j.key(false, b"h");
            j.hex(0x7f00);
        });
        assert!(!t);
        assert_eq!(s, "{\"a\":\"q\\\"\\\\\\n\\u0001\\ufffd\u{e9}\",\"n\":-42,\"h\":\"0x7f00\"}\n");
    }

    #[test]
    fn split_utf8_sequences_are_joined() {
        let (s, _) = render(256, |j| {
            j.key(true, b"s");
            j.string_start();
            j.string_bytes(b"a\xe2\x82");
            j.string_bytes(b"\xacb\xe2");
            j.string_end();
        });
        assert_eq!(s, "{\"s\":\"a\u{20ac}b\\ufffd\"}\n");
    }

    #[test]
    fn truncation_keeps_valid_json() {
        let long = [b'x'; 200];
        let (s, t) = render(100, |j| {
            j.key(true, b"s");
            j.string(&long);
            j.key(false, b"more");
            j.u64(5);
        });
        assert!(t);
        assert!(s.starts_with("{\"s\":\"xxx"));
        assert!(s.ends_with("\",\"truncated\":true}\n"), "{s}");
    }

    #[test]
    fn u64_edges() {
        let mut tmp = [0u8; 20];
        let n = fmt_u64(u64::MAX, &mut tmp);
        assert_eq!(&tmp[20 - n..], b"18446744073709551615");
        let n = fmt_u64(0, &mut tmp);
        assert_eq!(&tmp[20 - n..], b"0");
    }

    /// Whatever is written, in whatever buffer size, the result parses as JSON.
    #[test]
    fn every_sequence_of_writes_is_valid_json() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let size = 60 + (next() % 400) as usize;
            let mut buf = std::vec![0u8; size];
            let mut j = Json::new(&mut buf);
            let top = j.open(b'{');
            let mut first = true;
            let mut stack: Vec<(u8, bool, bool)> = Vec::new(); // (closer, opened, is_array)
            for _ in 0..(next() % 40) {
                let action = next() % 7;
                if action == 5 && !stack.is_empty() {
                    let (c, o, _) = stack.pop().unwrap();
                    j.close(c, o);
                    first = false;
                    continue;
                }
                // In an object every value needs a key; in an array an element separator.
                if stack.last().is_some_and(|s| s.2) {
                    j.element(first);
                } else {
                    j.key(first, b"k");
                }
                first = false;
                match action {
                    0 => j.u64(next()),
                    1 => j.i64(next() as i64),
                    2 => j.hex(next()),
                    3 => {
                        let n = (next() % 300) as usize;
                        let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
                        j.string(&bytes);
                    }
                    4 if stack.len() < 2 => {
                        let arr = next() % 2 == 0;
                        let opened = j.open(if arr { b'[' } else { b'{' });
                        stack.push((if arr { b']' } else { b'}' }, opened, arr));
                        first = true;
                    }
                    _ => j.null(),
                }
            }
            while let Some((c, o, _)) = stack.pop() {
                j.close(c, o);
            }
            assert!(top);
            j.finish();
            let text = String::from_utf8(j.bytes().to_vec()).expect("UTF-8");
            assert!(text.len() <= size, "overflowed the buffer");
            let v: std::result::Result<serde_json::Value, _> = serde_json::from_str(&text);
            assert!(v.is_ok(), "invalid JSON ({size} bytes): {text}");
        }
    }
}
