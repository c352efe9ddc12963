//! The sink: the descriptor events are written to (stderr, a file opened by
//! the first event and reopened when the program closed or replaced it, or a
//! descriptor the policy names).

use crate::ptable::{PolicyTable, Sink};
use crate::sys;
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The sink descriptor + 1 (0 = none yet).
static SINK_FD: AtomicI32 = AtomicI32::new(0);
/// Identity of a `file:` sink, to notice when the program closed or replaced it.
static SINK_DEV: AtomicU64 = AtomicU64::new(0);
static SINK_INO: AtomicU64 = AtomicU64::new(0);
/// Lowest descriptor number a `file:` sink is moved to, out of the way of
/// programs that assume small numbers or close 3..N.
const SINK_MIN_FD: i32 = 1000;

/// Why a `file:` sink was refused (see [`open_file_sink`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Refused {
    Link,
    NotAFile,
    Owner,
    Links,
    /// The open failed with this error number.
    Open(i64),
}

impl Refused {
    fn why(self) -> &'static [u8] {
        match self {
            Refused::Link => b"it is, or its path goes through, a symbolic link",
            Refused::NotAFile => b"it is not a regular file or a FIFO",
            Refused::Owner => b"it belongs to another user than the program's effective one or root",
            Refused::Links => b"a set-id program's sink file has other hard links",
            Refused::Open(2) => b"its folder does not exist",
            Refused::Open(13) => b"permission denied",
            Refused::Open(6) => b"a FIFO nobody reads",
            Refused::Open(_) => b"it cannot be opened",
        }
    }
}

/// Whether a file of type `kind` (`S_IFMT` bits), owned by `owner`, with
/// `links` hard links, may take the events of a process whose effective
/// uid is `euid` (`secure`: a set-id process, see [`is_secure`]).
/// A sink must never become a way to append to a file the program's user
/// could not write: symbolic links are not followed at all (checked at the
/// open), the file must be the effective user's or root's, and a set-id
/// process refuses a file with other names (a hard link to a file of
/// root's, made where the attacker could write).
fn acceptable(kind: u32, owner: u32, links: u64, euid: u64, secure: bool) -> Result<(), Refused> {
    const S_IFREG: u32 = 0o100000;
    const S_IFIFO: u32 = 0o010000;
    if kind != S_IFREG && kind != S_IFIFO {
        return Err(Refused::NotAFile);
    }
    if owner as u64 != euid && owner != 0 {
        return Err(Refused::Owner);
    }
    if secure && kind == S_IFREG && links > 1 {
        return Err(Refused::Links);
    }
    Ok(())
}

/// Whether this process runs with privileges its user does not have: a
/// set-user-id or set-group-id program (`AT_SECURE`, also given for file
/// capabilities, read from `/proc/self/auxv` where it can be).
fn is_secure() -> bool {
    let (uid, euid, gid, egid) = sys::ids();
    if uid != euid || gid != egid {
        return true;
    }
    const AT_SECURE: u64 = 23;
    let Ok(fd) = sys::open(b"/proc/self/auxv\0", sys::O_RDONLY | sys::O_CLOEXEC, 0) else { return false };
    let mut auxv = [0u8; 1024];
    let n = sys::read(fd, &mut auxv).unwrap_or(0) as usize;
    sys::close(fd);
    auxv.get(..n.min(auxv.len())).unwrap_or(&[]).chunks_exact(16).any(|pair| {
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        word(&pair[..8]) == AT_SECURE && word(&pair[8..]) != 0
    })
}

/// Opens a `file:` sink for appending: never through a symbolic link
/// (`openat2` with `RESOLVE_NO_SYMLINKS`; before Linux 5.6, `O_NOFOLLOW`
/// on its last component), without waiting (a FIFO nobody reads is not
/// waited for: its events are lost, and counted), checked by
/// [`acceptable`]. A refusal is said once on stderr.
#[inline(never)]
fn open_file_sink(path: &[u8]) -> Option<i32> {
    const O_NONBLOCK: u64 = 0o4000;
    const O_NOFOLLOW: u64 = 0o400000;
    const ELOOP: i64 = 40;
    const ENOTDIR: i64 = 20;
    let mut z = [0u8; 1025];
    let dst = z.get_mut(..path.len())?;
    dst.copy_from_slice(path);
    let name = z.get(..path.len() + 1)?;
    let flags = sys::O_WRONLY | sys::O_APPEND | sys::O_CREAT | sys::O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW;
    let opened = match sys::open_no_symlinks(name, flags, 0o600) {
        Err(e) if e == sys::ENOSYS => sys::open(name, flags, 0o600),
        other => other,
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(e) => {
            // (Refused for a link with ELOOP, or with EACCES where the
            // kernel protects links in sticky folders: say which.)
            let mut target = [0u8; 8];
            let link = e == ELOOP || e == ENOTDIR || sys::readlink(name, &mut target).is_ok();
            refused(path, if link { Refused::Link } else { Refused::Open(e) });
            return None;
        }
    };
    let verdict = sys::fstat_owner(fd)
        .map_err(|_| Refused::NotAFile)
        .and_then(|(kind, owner, links)| acceptable(kind, owner, links, sys::ids().1, is_secure()));
    if let Err(why) = verdict {
        sys::close(fd);
        refused(path, why);
        return None;
    }
    // Opened without waiting for a reader; written to as a reader reads
    // (a slow one holds the writer back, as for any pipe: nothing is lost).
    let _ = sys::set_blocking(fd);
    match sys::dupfd_cloexec(fd, SINK_MIN_FD) {
        Ok(high) => {
            sys::close(fd);
            Some(high)
        }
        Err(_) => Some(fd),
    }
}

/// Whether the refusal of the sink was said already (once per process).
static SAID: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Says once on stderr that events are not written, and why.
fn say_once(why: &[&[u8]; 3]) {
    if SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut line = [0u8; 200];
    let mut n = 0;
    for part in [&b"dfpatch: events not written: "[..], why[0], why[1], why[2], b"\n"] {
        let end = (n + part.len()).min(line.len());
        line[n..end].copy_from_slice(&part[..end - n]);
        n = end;
    }
    let _ = sys::write_nosigpipe(2, &line[..n]);
}

/// Says once on stderr that the `file:` sink at `path` is refused, and why.
fn refused(path: &[u8], why: Refused) {
    if SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut line = [0u8; 1400];
    let mut n = 0;
    for part in [&b"dfpatch: events not written: sink file:"[..], path, b" refused: ", why.why(), b"\n"] {
        let end = (n + part.len()).min(line.len());
        line[n..end].copy_from_slice(&part[..end - n]);
        n = end;
    }
    let _ = sys::write_nosigpipe(2, &line[..n]);
}

/// The descriptor to write an event to, and whether it is known to be a
/// regular file (which cannot raise SIGPIPE). A `file:` sink is opened by the
/// first event and kept (so events still flow after the program drops
/// privileges or changes root); when the program closed or replaced it
/// (`dup2` over it), it is reopened.
pub(crate) fn sink_fd(p: &PolicyTable) -> Option<(i32, bool)> {
    let fd = SINK_FD.load(Ordering::Acquire) - 1;
    match p.sink() {
        Sink::File(path) => {
            if fd >= 0 {
                if let Ok((dev, ino, regular)) = sys::fstat_id(fd) {
                    let ours = (SINK_DEV.load(Ordering::Relaxed), SINK_INO.load(Ordering::Relaxed));
                    // Still the file at the path (not renamed away by log
                    // rotation): keep it.
                    if (dev, ino) == ours && at_path(path) == Some(ours) {
                        return Some((fd, regular));
                    }
                }
            }
            let new = open_file_sink(path)?;
            let (dev, ino, regular) = sys::fstat_id(new).unwrap_or((0, 0, false));
            // The identity first: a thread that sees the new descriptor must not
            // find it "replaced" and reopen again. (Threads that reopen at the
            // same time open the same path, so they store the same identity.)
            SINK_DEV.store(dev, Ordering::Relaxed);
            SINK_INO.store(ino, Ordering::Release);
            match SINK_FD.compare_exchange(fd + 1, new + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => Some((new, regular)),
                Err(other) => {
                    // Another thread reopened it first: use theirs.
                    sys::close(new);
                    Some((other - 1, false))
                }
            }
        }
        _ if fd >= 0 => Some((fd, false)),
        Sink::Stderr => Some((2, false)),
        Sink::Fd(n) => {
            // Only the descriptor the program was started with: not a file
            // the program itself opened later under that number.
            let now = sys::fstat_id(n).ok().map(|(dev, ino, _)| (dev, ino));
            let given = START_FD.load(Ordering::Acquire);
            if given != 0 && now.is_some_and(|(dev, ino)| dev == START_FD_DEV.load(Ordering::Relaxed) && ino == given) {
                return Some((n, false));
            }
            let mut digits = [0u8; 20];
            let len = crate::json::fmt_u64(n as u32 as u64, &mut digits);
            let why: &[u8] = if given == 0 {
                b" was not open when the program started"
            } else {
                b" is no longer the descriptor the program was started with"
            };
            say_once(&[b"sink fd:", &digits[20 - len..], why]);
            None
        }
    }
}

/// The identity of an `fd:N` sink when start-up ran (`START_FD` its inode,
/// 0: not open then).
static START_FD: AtomicU64 = AtomicU64::new(0);
static START_FD_DEV: AtomicU64 = AtomicU64::new(0);

/// Start-up: notes what an `fd:N` sink is, if it is open.
pub(crate) fn at_start(p: &PolicyTable) {
    if let Sink::Fd(n) = p.sink() {
        if let Ok((dev, ino, _)) = sys::fstat_id(n) {
            START_FD_DEV.store(dev, Ordering::Relaxed);
            // (An inode number is never 0 on Linux file systems.)
            START_FD.store(ino.max(1), Ordering::Release);
        }
    }
}

/// The identity of the file at `path` (not following a last link).
fn at_path(path: &[u8]) -> Option<(u64, u64)> {
    let mut z = [0u8; 1025];
    z.get_mut(..path.len())?.copy_from_slice(path);
    sys::lstat_id(z.get(..path.len() + 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_take_events() {
        const REG: u32 = 0o100000;
        assert_eq!(acceptable(REG, 1000, 1, 1000, false), Ok(()));
        assert_eq!(acceptable(REG, 0, 1, 1000, false), Ok(()));
        assert_eq!(acceptable(REG, 65534, 1, 0, false), Err(Refused::Owner));
        assert_eq!(acceptable(0o010000, 0, 1, 0, true), Ok(()), "a FIFO");
        assert_eq!(acceptable(0o020000, 0, 1, 0, false), Err(Refused::NotAFile), "a character device");
        assert_eq!(acceptable(REG, 0, 2, 0, false), Ok(()));
        assert_eq!(acceptable(REG, 0, 2, 0, true), Err(Refused::Links));
    }
}
