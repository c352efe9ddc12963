//! Path globs for the argument matchers of issue 13 (`path = ["/var/lib/app/**"]`),
//! matched in the runtime without allocation: `*` any run of bytes within
//! one path component, `**` any run across components, `?` one byte other
//! than `/`, `[abc]`, `[a-z]`, `[!abc]` one byte (not `/`) in or not in the
//! set, `\x` the byte `x`; anything else itself. The pattern is matched as
//! a whole (`/var/lib/app/**` does not match `/var/lib/app`).
//!
//! The pattern becomes at most [`MAX_TOKENS`] tokens, and the match is a
//! simulation of their automaton with one bit per token: time linear in
//! the path, whatever the stars (no backtracking).
//!
//! Three ways to match, for the three kinds of subject a rule names:
//! [`matches`] (a path, as written), [`matches_tail`] (a pattern that does
//! not start with `/` matches the path's last components: `liblzma.so*`,
//! `*/liblzma.so*`) and [`matches_text`] (a command line: `/` is a byte like
//! any other, so `git *` matches `git clone https://x/y`).

/// Most tokens a pattern may have ([`check`] refuses longer ones).
pub const MAX_TOKENS: usize = 127;

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
        from: u16,
        to: u16,
    },
}

/// Why a pattern cannot be used, or Ok.
pub fn check(pattern: &[u8]) -> Result<(), &'static str> {
    let mut toks = [Tok::One; MAX_TOKENS];
    tokens(pattern, &mut toks).map(|_| ())
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
    let mut toks = [Tok::One; MAX_TOKENS];
    let Ok(n) = tokens(pattern, &mut toks) else { return false };
    let toks = toks.get(..n).unwrap_or(&[]);
    let mut set = closure(toks, 1);
    for &c in path {
        let mut next = 0u128;
        // Only the live states (usually one or two), lowest first.
        let mut live = set;
        while live != 0 {
            let i = live.trailing_zeros() as usize;
            live &= live - 1;
            // (State `toks.len()` is the end: no way on.)
            let Some(&t) = toks.get(i) else { continue };
            let (stay, advance) = match t {
                Tok::Byte(b) => (false, c == b),
                Tok::One => (false, c != sep),
                Tok::Class { from, to } => {
                    (false, c != sep && in_class(pattern.get(from as usize..to as usize).unwrap_or(&[]), c))
                }
                Tok::Star => (c != sep, false),
                Tok::Stars => (true, false),
            };
            if stay {
                next |= 1 << i;
            }
            if advance {
                next |= 1 << (i + 1);
            }
        }
        if next == 0 {
            return false;
        }
        set = closure(toks, next);
    }
    set >> toks.len() & 1 == 1
}

/// `set` with every state a star may be skipped to.
fn closure(toks: &[Tok], mut set: u128) -> u128 {
    let mut rest = set;
    while rest != 0 {
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        // A star's next state is live too, and is looked at in turn (it is
        // above every bit cleared so far).
        if matches!(toks.get(i), Some(Tok::Star | Tok::Stars)) {
            let bit = 1u128 << (i + 1);
            if set & bit == 0 {
                set |= bit;
                rest |= bit;
            }
        }
    }
    set
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

/// The pattern's tokens into `out`; their count.
fn tokens(p: &[u8], out: &mut [Tok; MAX_TOKENS]) -> Result<usize, &'static str> {
    if p.len() > u16::MAX as usize {
        return Err("longer than 65535 bytes");
    }
    let mut n: usize = 0;
    let mut i = 0;
    while i < p.len() {
        let tok = match p[i] {
            b'*' if p.get(i + 1) == Some(&b'*') => {
                i += 2;
                Tok::Stars
            }
            b'*' => {
                i += 1;
                Tok::Star
            }
            b'?' => {
                i += 1;
                Tok::One
            }
            b'[' => {
                // The first byte after `[` (or `[!`) may be `]` itself.
                let from = i + 1;
                let mut j = from + usize::from(matches!(p.get(from), Some(b'!' | b'^')));
                j += usize::from(p.get(j) == Some(&b']'));
                while p.get(j).is_some_and(|&b| b != b']') {
                    j += 1;
                }
                if j >= p.len() {
                    return Err("a `[` without its `]`");
                }
                if j == from || (j == from + 1 && matches!(p[from], b'!' | b'^')) {
                    return Err("an empty `[]`");
                }
                i = j + 1;
                Tok::Class { from: from as u16, to: j as u16 }
            }
            b'\\' => {
                let Some(&b) = p.get(i + 1) else { return Err("a `\\` at the end") };
                i += 2;
                Tok::Byte(b)
            }
            b => {
                i += 1;
                Tok::Byte(b)
            }
        };
        // Two stars in a row match what one of the wider does.
        let last = n.checked_sub(1).and_then(|k| out.get(k)).copied();
        if matches!((last, tok), (Some(Tok::Stars), Tok::Star | Tok::Stars)) {
            continue;
        }
        if matches!((last, tok), (Some(Tok::Star), Tok::Stars)) {
            out[n - 1] = Tok::Stars;
            continue;
        }
        if matches!((last, tok), (Some(Tok::Star), Tok::Star)) {
            continue;
        }
        let Some(slot) = out.get_mut(n) else { return Err("more than 127 parts") };
        *slot = tok;
        n += 1;
    }
    Ok(n)
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
