//! Path globs for the argument matchers of issue 13 (`path = ["/var/lib/app/**"]`),
//! matched in the runtime without allocation: `*` any run of bytes within
//! one path component, `**` any run across components, `?` one byte other
//! than `/`, `[abc]`, `[a-z]`, `[!abc]` one byte (not `/`) in or not in the
//! set, `\x` the byte `x`; anything else itself. The pattern is matched as
//! a whole (`/var/lib/app/**` does not match `/var/lib/app`).
//!
//! The match simulates the pattern's automaton: its states are the
//! pattern's byte positions where a token starts, one bit each in a fixed
//! set ([`MAX_LEN`] bytes at most), and only the live ones are followed:
//! time linear in the path, whatever the stars (no backtracking).
//!
//! Three ways to match, for the three kinds of subject a rule names:
//! [`matches`] (a path, as written), [`matches_tail`] (a pattern that does
//! not start with `/` matches the path's last components: `liblzma.so*`,
//! `*/liblzma.so*`) and [`matches_text`] (a command line: `/` is a byte like
//! any other, so `git *` matches `git clone https://x/y`).

/// The longest pattern ([`check`] refuses longer ones).
pub const MAX_LEN: usize = 4096;
/// Words of a state set: a bit per pattern position, the end included.
const WORDS: usize = MAX_LEN / 64 + 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    Stars,
    /// `[...]`: the pattern's bytes `from..to` between the brackets.
    Class {
        from: usize,
        to: usize,
    },
}

/// The token at `p[i..]` and where the next one starts; None at the end
/// or for a token [`check`] refuses.
fn token(p: &[u8], i: usize) -> Option<(Tok, usize)> {
    Some(match *p.get(i)? {
        b'*' if p.get(i + 1) == Some(&b'*') => (Tok::Stars, i + 2),
        b'*' => (Tok::Star, i + 1),
        b'?' => (Tok::One, i + 1),
        b'[' => {
            // The first byte after `[` (or `[!`) may be `]` itself.
            let from = i + 1;
            let mut j = from + usize::from(matches!(p.get(from), Some(b'!' | b'^')));
            j += usize::from(p.get(j) == Some(&b']'));
            while p.get(j).is_some_and(|&b| b != b']') {
                j += 1;
            }
            if j >= p.len() {
                return None;
            }
            (Tok::Class { from, to: j }, j + 1)
        }
        b'\\' => (Tok::Byte(*p.get(i + 1)?), i + 2),
        b => (Tok::Byte(b), i + 1),
    })
}

/// Why a pattern cannot be used, or Ok.
pub fn check(pattern: &[u8]) -> Result<(), &'static str> {
    if pattern.len() > MAX_LEN {
        return Err("longer than 4096 bytes");
    }
    let mut i = 0;
    while i < pattern.len() {
        match token(pattern, i) {
            Some((_, next)) => i = next,
            None if pattern[i] == b'\\' => return Err("a `\\` at the end"),
            None => return Err("a `[` without its `]`"),
        }
    }
    Ok(())
}

/// A set of pattern positions: bits in words (only the words a pattern's
/// positions reach are used).
type Words = [u64; WORDS];

fn has(set: &[u64], i: usize) -> bool {
    set.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
}

fn add(set: &mut [u64], i: usize) {
    if let Some(w) = set.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// The next position in `set` at or after `from`, below `end`.
fn next_in(set: &[u64], from: usize, end: usize) -> Option<usize> {
    let mut at = from;
    while at < end {
        let word = set.get(at / 64)? >> (at % 64);
        if word != 0 {
            let found = at + word.trailing_zeros() as usize;
            return (found < end).then_some(found);
        }
        at = (at / 64 + 1) * 64;
    }
    None
}

/// Whether `path` matches `pattern`; false for a pattern [`check`] refuses.
pub fn matches(pattern: &[u8], path: &[u8]) -> bool {
    run(pattern, path, b'/')
}

/// Like [`matches`] for a pattern starting with `/`; any other pattern
/// matches when it matches the path from the start of one of its
/// components (`lib*.so` matches `/usr/lib/libz.so`, `x/*.so` matches
/// `/a/x/y.so`).
pub fn matches_tail(pattern: &[u8], path: &[u8]) -> bool {
    if pattern.first() == Some(&b'/') {
        return matches(pattern, path);
    }
    let starts = path.iter().enumerate().filter(|&(_, &c)| c == b'/').map(|(i, _)| i + 1);
    core::iter::once(0).chain(starts).any(|at| matches(pattern, path.get(at..).unwrap_or(&[])))
}

/// Whether `text` matches `pattern` with no component boundaries: `*` and
/// `**` match any run of bytes, `?` and a class any one byte.
pub fn matches_text(pattern: &[u8], text: &[u8]) -> bool {
    // (No byte is a separator: 0 never occurs in a C string.)
    run(pattern, text, 0)
}

/// The automaton of `pattern` run over `path`; `sep` is the byte `*`, `?`
/// and classes do not match.
fn run(pattern: &[u8], path: &[u8], sep: u8) -> bool {
    if check(pattern).is_err() {
        return false;
    }
    let end = pattern.len();
    // The words in use, and the two sets (this byte's, the next one's).
    let used = end / 64 + 1;
    let mut sets: [Words; 2] = [[0; WORDS]; 2];
    let [mut set, mut next] = sets.each_mut().map(|w| &mut w[..used]);
    add(set, 0);
    closure(pattern, set);
    for &c in path {
        next.fill(0);
        // Only the live states (usually one or two), lowest first.
        let mut at = 0;
        while let Some(i) = next_in(set, at, end) {
            at = i + 1;
            let Some((t, after)) = token(pattern, i) else { continue };
            let (stay, advance) = match t {
                Tok::Byte(b) => (false, c == b),
                Tok::One => (false, c != sep),
                Tok::Class { from, to } => (false, c != sep && in_class(pattern.get(from..to).unwrap_or(&[]), c)),
                Tok::Star => (c != sep, false),
                Tok::Stars => (true, false),
            };
            if stay {
                add(next, i);
            }
            if advance {
                add(next, after);
            }
        }
        if next.iter().all(|&w| w == 0) {
            return false;
        }
        closure(pattern, next);
        core::mem::swap(&mut set, &mut next);
    }
    has(set, end)
}

/// Adds to `set` every state a star may be skipped to (in position order:
/// a star's next state lies after it, and is looked at in turn).
fn closure(pattern: &[u8], set: &mut [u64]) {
    let mut at = 0;
    while let Some(i) = next_in(set, at, pattern.len()) {
        at = i + 1;
        if let Some((Tok::Star | Tok::Stars, after)) = token(pattern, i) {
            add(set, after);
        }
    }
}

/// Whether byte `c` is in the class whose bytes (between the brackets) are `body`.
fn in_class(body: &[u8], c: u8) -> bool {
    let (negated, body) = match body.first() {
        Some(b'!' | b'^') => (true, body.get(1..).unwrap_or(&[])),
        _ => (false, body),
    };
    let mut i = 0;
    let mut found = false;
    while i < body.len() {
        let lo = body[i];
        if body.get(i + 1) == Some(&b'-') && i + 2 < body.len() {
            let hi = body[i + 2];
            found |= lo <= c && c <= hi;
            i += 3;
        } else {
            found |= lo == c;
            i += 1;
        }
    }
    found != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_issue_names() {
        assert!(matches(b"/var/lib/app/**", b"/var/lib/app/x/y"));
        assert!(!matches(b"/var/lib/app/**", b"/var/lib/app"));
        assert!(matches(b"/usr/lib/git-core/**", b"/usr/lib/git-core/git-remote-http"));
        assert!(matches(b"*/liblzma.so*", b"x/liblzma.so.5") && !matches(b"*/liblzma.so*", b"/lib/x/liblzma.so.5"));
        assert!(matches(b"**/liblzma.so*", b"/lib/x86_64-linux-gnu/liblzma.so.5.4.1"));
        assert!(matches(b"git *", b"git status") && !matches(b"git *", b"git a/b"));
        assert!(matches(b"/etc/[!s]*", b"/etc/passwd") && !matches(b"/etc/[!s]*", b"/etc/shadow"));
        assert!(matches(b"/dev/tty[0-9]", b"/dev/tty7") && !matches(b"/dev/tty?", b"/dev/tty/"));
        assert!(matches(b"a\\*b", b"a*b") && !matches(b"a\\*b", b"axb"));
        assert!(matches(b"", b"") && !matches(b"", b"a"));
        assert!(matches_tail(b"*/liblzma.so*", b"/lib/x86_64-linux-gnu/liblzma.so.5"));
        assert!(matches_tail(b"liblzma.so*", b"/usr/lib/liblzma.so.5") && !matches_tail(b"lzma.so*", b"/liblzma.so"));
        assert!(!matches_tail(b"/lib/*.so", b"/usr/lib/x.so") && matches_tail(b"/usr/lib/*.so", b"/usr/lib/x.so"));
        assert!(matches_text(b"git *", b"git clone https://x/y") && !matches_text(b"git *", b"gitk"));
        assert_eq!(check(b"/a/[bc"), Err("a `[` without its `]`"));
        assert_eq!(check(b"[]"), Err("a `[` without its `]`"));
        assert_eq!(check(b"[!]"), Err("a `[` without its `]`"));
        assert_eq!(check(b"a\\"), Err("a `\\` at the end"));
        // Long patterns: a 300-byte path and 200 stars.
        let long = [b'a'; 300];
        assert!(matches(&long, &long) && !matches(&long, &long[1..]));
        assert!(matches(&[b'*'; 200], b"abc"));
        assert!(check(b"[]a]").is_ok() && matches(b"[]a]", b"]"));
    }

    #[test]
    fn stars_never_backtrack_exponentially() {
        // 60 stars against a path that almost matches: linear, at once.
        let mut p = [b'*'; 121];
        for k in 0..60 {
            p[2 * k + 1] = b'a';
        }
        p[120] = b'b';
        assert!(!matches(&p, &[b'a'; 4000]));
    }
}
