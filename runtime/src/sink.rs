//! The sink: the descriptor events are written to (stderr, a file opened by
//! the first event and reopened when the program closed or replaced it or
//! log rotation renamed it, or a descriptor the program was started with).
//!
//! A `file:` sink is never a way to write where the program's user could
//! not ([`open_file_sink`]), a FIFO nobody reads is not waited for, and
//! what cannot be written is said once on stderr.

use crate::ptable::{PolicyTable, Sink};
use crate::sys;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The sink descriptor + 1 (0 = none yet).
static SINK_FD: AtomicI32 = AtomicI32::new(0);
/// Identity of a `file:` sink, to notice when the program closed or replaced it.
static SINK_DEV: AtomicU64 = AtomicU64::new(0);
static SINK_INO: AtomicU64 = AtomicU64::new(0);
/// The effective uid and the root folder's identity when the sink was
/// opened: a rotated log is followed only with the same ones (not after a
/// `chroot`, not after the program dropped privileges).
static OPEN_EUID: AtomicU64 = AtomicU64::new(u64::MAX);
static OPEN_ROOT: AtomicU64 = AtomicU64::new(0);
/// Lowest descriptor number a `file:` sink is moved to, out of the way of
/// programs that assume small numbers or close 3..N.
const SINK_MIN_FD: i32 = 1000;

/// Why a sink is not used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Refused {
    Link,
    Folder,
    NotAFile,
    Owner,
    Links,
    FdNotGiven,
    FdReplaced,
    /// The open failed with this error number.
    Open(i64),
}

impl Refused {
    fn why(self) -> &'static [u8] {
        match self {
            Refused::Link => b"it is, or its path goes through, a symbolic link",
            Refused::Folder => b"a set-id program's sink must be in folders only root or its user can write",
            Refused::NotAFile => b"it is not a regular file or a FIFO",
            Refused::Owner => b"it belongs to another user than the program's effective one or root",
            Refused::Links => b"a set-id program's sink file has other hard links",
            Refused::FdNotGiven => b"the descriptor was not open when the program started",
            Refused::FdReplaced => b"the descriptor is no longer the one the program was started with",
            Refused::Open(2) => b"its folder does not exist",
            Refused::Open(13) => b"permission denied",
            Refused::Open(6) => b"a FIFO nobody reads",
            Refused::Open(_) => b"it cannot be opened",
        }
    }

    /// Its bit in [`SAID`].
    fn bit(self) -> u32 {
        match self {
            Refused::Link => 1,
            Refused::Folder => 2,
            Refused::NotAFile => 4,
            Refused::Owner => 8,
            Refused::Links => 16,
            Refused::FdNotGiven => 32,
            Refused::FdReplaced => 64,
            Refused::Open(_) => 128,
        }
    }
}

/// Whether a file of mode `mode`, owned by `owner`, with `links` hard
/// links, may take the events of a process whose effective uid is `euid`
/// (`secure`: a set-id process, see [`secure`]): a regular file or a FIFO,
/// the effective user's or root's, and in a set-id process no other name
/// (a hard link to a file of root's).
fn acceptable(mode: u32, owner: u32, links: u64, euid: u64, secure: bool) -> Result<(), Refused> {
    const S_IFMT: u32 = 0o170000;
    const S_IFREG: u32 = 0o100000;
    const S_IFIFO: u32 = 0o010000;
    let kind = mode & S_IFMT;
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

/// Whether a folder of mode `mode` owned by `owner` may hold a set-id
/// process's sink: only root or the effective user can write in it (so
/// nobody else can plant a link there, or swap one in between our checks).
fn safe_folder(mode: u32, owner: u32, euid: u64) -> bool {
    (owner == 0 || owner as u64 == euid) && mode & 0o022 == 0
}

/// 0 not known yet, 1 no, 2 yes: see [`secure`].
static SECURE: AtomicU8 = AtomicU8::new(0);

/// Whether this process runs with privileges its user does not have: a
/// set-user-id or set-group-id program, or one with file capabilities
/// (`AT_SECURE`, from `/proc/self/auxv`). Asked once, when the first sink
/// is opened (later the process may have changed its ids or its root).
fn secure() -> bool {
    match SECURE.load(Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    let (uid, euid, gid, egid) = sys::ids();
    let yes = uid != euid || gid != egid || at_secure();
    SECURE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
    yes
}

/// `AT_SECURE` from `/proc/self/auxv` (false where it cannot be read).
fn at_secure() -> bool {
    const AT_SECURE: u64 = 23;
    let Ok(fd) = sys::open(b"/proc/self/auxv\0", sys::O_RDONLY | sys::O_CLOEXEC, 0) else { return false };
    let mut pair = [0u8; 16];
    let mut found = false;
    while sys::read(fd, &mut pair) == Ok(16) {
        let key = u64::from_le_bytes([pair[0], pair[1], pair[2], pair[3], pair[4], pair[5], pair[6], pair[7]]);
        if key == AT_SECURE {
            found = pair[8..].iter().any(|&b| b != 0);
            break;
        }
        if key == 0 {
            break;
        }
    }
    sys::close(fd);
    found
}

/// Opens a `file:` sink for appending, walking its path one folder at a
/// time without following any symbolic link (`O_PATH|O_NOFOLLOW` on each
/// folder, `O_NOFOLLOW` on the file: on every kernel), each folder checked
/// by [`safe_folder`] in a set-id process, the file by [`acceptable`]. The
/// open does not wait (a FIFO nobody reads is not waited for: its events
/// are lost, and counted). Returns the descriptor and whether it is a
/// FIFO; a refusal is said once on stderr.
#[inline(never)]
fn open_file_sink(path: &[u8]) -> Option<(i32, bool)> {
    const O_PATH: u64 = 0o10000000;
    const O_DIRECTORY: u64 = 0o200000;
    const O_NONBLOCK: u64 = 0o4000;
    const O_NOFOLLOW: u64 = 0o400000;
    const ELOOP: i64 = 40;
    const S_IFIFO: u32 = 0o010000;
    let (euid, strict) = (sys::ids().1, secure());
    let folder_ok =
        |fd: i32| !strict || sys::fstat_owner(fd).is_ok_and(|(mode, owner, _)| safe_folder(mode, owner, euid));
    let walk = O_PATH | O_DIRECTORY | O_NOFOLLOW | sys::O_CLOEXEC;
    let mut dir = sys::open(b"/\0", walk, 0).ok()?;
    let mut parts = path.split(|&b| b == b'/').filter(|p| !p.is_empty()).peekable();
    let mut name = [0u8; 256];
    let fail = |dir: i32, why: Refused| {
        sys::close(dir);
        refused(b"file:", path, why);
        None
    };
    while let Some(part) = parts.next() {
        if !folder_ok(dir) {
            return fail(dir, Refused::Folder);
        }
        let Some(slot) = name.get_mut(..part.len()) else { return fail(dir, Refused::Open(36)) };
        slot.copy_from_slice(part);
        name[part.len()] = 0;
        let z = &name[..=part.len()];
        let last = parts.peek().is_none();
        let flags = if last {
            sys::O_WRONLY | sys::O_APPEND | sys::O_CREAT | sys::O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW
        } else {
            walk
        };
        match sys::open_at(dir, z, flags, 0o600) {
            Ok(fd) => {
                sys::close(dir);
                dir = fd;
            }
            // (A link gives ELOOP, ENOTDIR as a folder, or EACCES where the
            // kernel protects links in sticky folders: say which.)
            Err(e) => {
                let link = e == ELOOP || sys::is_link_at(dir, z);
                return fail(dir, if link { Refused::Link } else { Refused::Open(e) });
            }
        }
    }
    let fd = dir;
    let verdict = sys::fstat_owner(fd)
        .map_err(|_| Refused::NotAFile)
        .and_then(|(mode, owner, links)| acceptable(mode, owner, links, euid, strict).map(|()| mode));
    let mode = match verdict {
        Ok(mode) => mode,
        Err(why) => return fail(fd, why),
    };
    let fifo = mode & 0o170000 == S_IFIFO;
    // Opened without waiting for a reader; written to as the reader reads:
    // a slow reader holds the writer back, as any pipe does (a program
    // writing to its stdout pipe waits the same way), and loses nothing.
    let _ = sys::set_blocking(fd);
    match sys::dupfd_cloexec(fd, SINK_MIN_FD) {
        Ok(high) => {
            sys::close(fd);
            Some((high, fifo))
        }
        Err(_) => Some((fd, fifo)),
    }
}

/// The refusals said already, one bit each (once per process).
static SAID: AtomicU32 = AtomicU32::new(0);

/// Says once on stderr that events are not written to the sink `kind`
/// `sink` (`file:` and a path, or `fd:` and a number), and why.
fn refused(kind: &[u8], sink: &[u8], why: Refused) {
    if SAID.fetch_or(why.bit(), Ordering::Relaxed) & why.bit() != 0 {
        return;
    }
    let parts: [&[u8]; 6] = [b"dfpatch: events not written: sink ", kind, sink, b" refused: ", why.why(), b"\n"];
    let _ = sys::writev_nosigpipe(2, &parts);
}

/// Writes one event to the sink `fd`; whether it was written whole. A cut
/// write (a full disk) is ended with a newline, so the next event starts a
/// line of its own.
pub(crate) fn write_event(fd: i32, bytes: &[u8], regular: bool) -> bool {
    let r = if regular { sys::write_all_once(fd, bytes) } else { sys::write_nosigpipe(fd, bytes) };
    match r {
        Ok(n) if n as usize == bytes.len() => true,
        Ok(n) if n > 0 => {
            let _ = sys::write_nosigpipe(fd, b"\n");
            false
        }
        _ => false,
    }
}

/// The descriptor to write an event to, and whether it is known to be a
/// regular file (which cannot raise SIGPIPE). A `file:` sink is opened by the
/// first event and kept (so events still flow after the program drops
/// privileges or changes root); when the program closed or replaced it
/// (`dup2` over it), it is reopened; when log rotation renamed it away, a
/// new file is opened at the path, with the credentials and root it was
/// opened with (else the old one is kept).
pub(crate) fn sink_fd(p: &PolicyTable) -> Option<(i32, bool)> {
    let fd = SINK_FD.load(Ordering::Acquire) - 1;
    match p.sink() {
        Sink::File(path) => {
            let mut rotated = false;
            if fd >= 0 {
                if let Ok((dev, ino, regular)) = sys::fstat_id(fd) {
                    let ours = (SINK_DEV.load(Ordering::Relaxed), SINK_INO.load(Ordering::Relaxed));
                    if (dev, ino) == ours {
                        // Still the file at the path: keep it.
                        if at_path(path) == Some(ours) {
                            return Some((fd, regular));
                        }
                        // Renamed away: followed only as it was opened.
                        let euid = sys::ids().1;
                        if euid != OPEN_EUID.load(Ordering::Relaxed) || root_id() != OPEN_ROOT.load(Ordering::Relaxed) {
                            return Some((fd, regular));
                        }
                        rotated = true;
                    }
                }
            }
            let Some((new, fifo)) = open_file_sink(path) else {
                // (A rotated file that cannot be replaced: keep it.)
                return rotated.then_some((fd, false));
            };
            let (dev, ino, regular) = sys::fstat_id(new).unwrap_or((0, 0, false));
            // The identity first: a thread that sees the new descriptor must not
            // find it "replaced" and reopen again. (Threads that reopen at the
            // same time open the same path, so they store the same identity.)
            SINK_DEV.store(dev, Ordering::Relaxed);
            SINK_INO.store(ino, Ordering::Release);
            OPEN_EUID.store(sys::ids().1, Ordering::Relaxed);
            OPEN_ROOT.store(root_id(), Ordering::Relaxed);
            match SINK_FD.compare_exchange(fd + 1, new + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // The rotated file was ours: given back, not leaked.
                    if rotated {
                        sys::close(fd);
                    }
                    Some((new, regular && !fifo))
                }
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
            refused(b"fd:", &digits[20 - len..], if given == 0 { Refused::FdNotGiven } else { Refused::FdReplaced });
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

/// The root folder's inode (changes with `chroot`).
fn root_id() -> u64 {
    sys::lstat_id(b"/\0").map_or(0, |(_, ino)| ino)
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
        assert!(safe_folder(0o40755, 0, 1000) && safe_folder(0o40700, 1000, 1000));
        assert!(!safe_folder(0o41777, 0, 1000), "/tmp");
        assert!(!safe_folder(0o40755, 65534, 0), "nobody's");
        assert_eq!(acceptable(REG, 0, 2, 0, false), Ok(()));
        assert_eq!(acceptable(REG, 0, 2, 0, true), Err(Refused::Links));
    }
}
