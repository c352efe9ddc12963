//! A JSON writer into a fixed buffer: no allocation, no formatting machinery,
//! never panics. When the buffer is full, further output is dropped and
//! [`Json::truncated`] says so; [`Json::finish`] still closes the line so a
//! truncated event stays one valid JSON object whenever the caller reserved room.

pub struct Json<'a> {
    buf: &'a mut [u8],
    len: usize,
    /// Bytes at the end of `buf` kept back for closing the object.
    reserve: usize,
    truncated: bool,
}

impl<'a> Json<'a> {
    /// `reserve` bytes stay free for [`Json::finish`] and the closers a caller writes with
    /// [`Json::raw_closing`].
    pub fn new(buf: &'a mut [u8], reserve: usize) -> Json<'a> {
        Json { buf, len: 0, reserve, truncated: false }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    fn room(&self) -> usize {
        self.buf.len().saturating_sub(self.reserve).saturating_sub(self.len)
    }

    fn push(&mut self, b: u8) -> bool {
        if self.room() == 0 {
            self.truncated = true;
            return false;
        }
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
            true
        } else {
            self.truncated = true;
            false
        }
    }

    /// Appends bytes that are already valid JSON (keys, punctuation).
    pub fn raw(&mut self, s: &[u8]) {
        if s.len() > self.room() {
            self.truncated = true;
            return;
        }
        for &b in s {
            self.push(b);
        }
    }

    /// Appends closing punctuation out of the reserved room.
    pub fn raw_closing(&mut self, s: &[u8]) {
        for &b in s {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    /// Appends a JSON string: quotes, escapes, and invalid UTF-8 replaced by U+FFFD.
    /// A string that does not fit is cut at a character boundary, still quoted.
    pub fn string(&mut self, s: &[u8]) {
        if self.room() < 2 {
            self.truncated = true;
            return;
        }
        self.push(b'"');
        let mut i = 0;
        while i < s.len() {
            let (ch_len, valid) = utf8_char(s, i);
            // Worst case for one character: a 6-byte escape or a 3-byte U+FFFD; keep 1 for the quote.
            if self.room() < 7 {
                self.truncated = true;
                break;
            }
            if !valid {
                self.raw(b"\\ufffd");
            } else if ch_len == 1 {
                let b = s.get(i).copied().unwrap_or(b'?');
                match b {
                    b'"' => self.raw(b"\\\""),
                    b'\\' => self.raw(b"\\\\"),
                    b'\n' => self.raw(b"\\n"),
                    b'\r' => self.raw(b"\\r"),
                    b'\t' => self.raw(b"\\t"),
                    0..=0x1f | 0x7f => {
                        self.raw(b"\\u00");
                        self.push(HEX[(b >> 4) as usize & 15]);
                        self.push(HEX[b as usize & 15]);
                    }
                    _ => {
                        self.push(b);
                    }
                }
            } else if let Some(chunk) = s.get(i..i + ch_len) {
                self.raw(chunk);
            }
            i += ch_len;
        }
        self.raw_closing(b"\"");
    }

    pub fn u64(&mut self, v: u64) {
        let mut tmp = [0u8; 20];
        let n = fmt_u64(v, &mut tmp);
        self.raw(tmp.get(20 - n..).unwrap_or(&[]));
    }

    pub fn i64(&mut self, v: i64) {
        if v < 0 {
            self.raw(b"-");
        }
        self.u64(v.unsigned_abs());
    }

    /// A quoted hexadecimal number, `"0x7f12..."`: addresses do not fit a JSON double.
    pub fn hex(&mut self, v: u64) {
        let mut tmp = [0u8; 18];
        let mut n = 0;
        let mut started = false;
        for shift in (0..16).rev() {
            let d = ((v >> (shift * 4)) & 15) as usize;
            if d != 0 || started || shift == 0 {
                started = true;
                if let Some(slot) = tmp.get_mut(n) {
                    *slot = HEX[d];
                }
                n += 1;
            }
        }
        self.raw(b"\"0x");
        self.raw(tmp.get(..n).unwrap_or(&[]));
        self.raw(b"\"");
    }

    pub fn bool(&mut self, v: bool) {
        self.raw(if v { b"true" } else { b"false" });
    }

    /// `"key":` with a leading comma unless `first`.
    pub fn key(&mut self, first: bool, k: &[u8]) {
        if !first {
            self.raw(b",");
        }
        self.raw(b"\"");
        self.raw(k);
        self.raw(b"\":");
    }

    /// Closes the line with `}\n`; the reserve guarantees room for it.
    pub fn finish(&mut self) {
        self.reserve = 0;
        self.raw_closing(b"}\n");
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

/// Length of the UTF-8 sequence at `i` and whether it is valid.
fn utf8_char(s: &[u8], i: usize) -> (usize, bool) {
    let b0 = match s.get(i) {
        Some(&b) => b,
        None => return (1, false),
    };
    let (len, min) = match b0 {
        0x00..=0x7f => return (1, true),
        0xc2..=0xdf => (2, 0x80),
        0xe0..=0xef => (3, 0x800),
        0xf0..=0xf4 => (4, 0x10000),
        _ => return (1, false),
    };
    let mut cp: u32 = (b0 as u32) & (0x7f >> len);
    for k in 1..len {
        match s.get(i + k) {
            Some(&b) if b & 0xc0 == 0x80 => cp = (cp << 6) | (b as u32 & 0x3f),
            _ => return (1, false),
        }
    }
    if cp < min || cp > 0x10ffff || (0xd800..=0xdfff).contains(&cp) {
        return (1, false);
    }
    (len, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Json)) -> (std::string::String, bool) {
        let mut buf = [0u8; 64];
        let mut j = Json::new(&mut buf, 2);
        j.raw(b"{");
        f(&mut j);
        j.finish();
        (std::string::String::from_utf8(j.bytes().to_vec()).unwrap(), j.truncated())
    }

    extern crate std;

    #[test]
    fn escapes_and_numbers() {
        let (s, t) = render(|j| {
            j.key(true, b"a");
            j.string(b"q\"\\\n\x01\xff\xc3\xa9");
            j.key(false, b"n");
            j.i64(-42);
            j.key(false, b"h");
            j.hex(0x7f00);
        });
        assert!(!t);
        assert_eq!(s, "{\"a\":\"q\\\"\\\\\\n\\u0001\\ufffd\u{e9}\",\"n\":-42,\"h\":\"0x7f00\"}\n");
        let v: std::vec::Vec<u8> = s.into_bytes();
        assert_eq!(v.last(), Some(&b'\n'));
    }

    #[test]
    fn truncation_keeps_valid_json() {
        let long = [b'x'; 200];
        let (s, t) = render(|j| {
            j.key(true, b"s");
            j.string(&long);
        });
        assert!(t);
        assert!(s.starts_with("{\"s\":\"xxx"));
        assert!(s.ends_with("\"}\n"), "{s}");
    }

    #[test]
    fn u64_edges() {
        let mut tmp = [0u8; 20];
        let n = fmt_u64(u64::MAX, &mut tmp);
        assert_eq!(&tmp[20 - n..], b"18446744073709551615");
        let n = fmt_u64(0, &mut tmp);
        assert_eq!(&tmp[20 - n..], b"0");
    }
}
