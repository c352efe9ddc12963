//! Lexical path resolution for issue 13's path matchers: a path as the
//! kernel would walk it from a base folder (the current directory, or a
//! `dirfd`'s folder), with `.`, `..` and repeated slashes removed, into a
//! caller's buffer: no allocation. Symbolic links are not followed here
//! (what a link names is the kernel's to say: the runtime will ask it).
//!
//! Not wired to policies yet (see `glob`).

/// The longest path resolved (`PATH_MAX`).
pub const MAX: usize = 4096;

/// `path` resolved against `base` (an absolute path; ignored when `path`
/// is absolute) into `out`; its length, or None when `base` is not
/// absolute or the result does not fit. `..` at the root stays at the root,
/// as the kernel's does.
pub fn resolve(base: &[u8], path: &[u8], out: &mut [u8; MAX]) -> Option<usize> {
    let mut n = 0;
    if path.first() != Some(&b'/') {
        if base.first() != Some(&b'/') {
            return None;
        }
        n = walk(base, out, 0)?;
    }
    n = walk(path, out, n)?;
    // (The root, which the walk leaves empty.)
    if n == 0 {
        out[0] = b'/';
        n = 1;
    }
    Some(n)
}

/// Walks the components of `p` onto the resolved path `out[..n]` (the
/// root is empty: each component adds a slash and its name).
fn walk(p: &[u8], out: &mut [u8; MAX], mut n: usize) -> Option<usize> {
    for comp in p.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                // Back to the slash before the last component (or the root).
                while n > 0 && out[n - 1] != b'/' {
                    n -= 1;
                }
                n = n.saturating_sub(1);
            }
            name => {
                let end = n.checked_add(1 + name.len()).filter(|&e| e <= MAX)?;
                *out.get_mut(n)? = b'/';
                out.get_mut(n + 1..end)?.copy_from_slice(name);
                n = end;
            }
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `path` resolved against `base` is `want`.
    fn gives(base: &str, path: &str, want: Option<&str>) -> bool {
        let mut out = [0u8; MAX];
        match (resolve(base.as_bytes(), path.as_bytes(), &mut out), want) {
            (Some(n), Some(w)) => out.get(..n) == Some(w.as_bytes()),
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn the_tricks_of_issue_13() {
        assert!(gives("/etc", "shadow", Some("/etc/shadow")));
        assert!(gives("/", "/data/../etc/shadow", Some("/etc/shadow")));
        assert!(gives("/data", "../etc/shadow", Some("/etc/shadow")));
        assert!(gives("/", "/../../etc//./shadow", Some("/etc/shadow")));
        assert!(gives("/a/b", "..", Some("/a")));
        assert!(gives("/a/b", "../c", Some("/a/c")));
        assert!(gives("/", "..", Some("/")));
        assert!(gives("/data/", ".", Some("/data")));
        assert!(gives("relative", "x", None));
        assert!(gives("/", &"a/".repeat(3000), None)); // longer than PATH_MAX
        assert!(gives("/", "a", Some("/a")) && gives("/", "", Some("/")));
    }
}
