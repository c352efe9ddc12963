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

#[inline(never)]
fn open_file_sink(path: &[u8]) -> Option<i32> {
    let mut z = [0u8; 1025];
    let dst = z.get_mut(..path.len())?;
    dst.copy_from_slice(path);
    let flags = sys::O_WRONLY | sys::O_APPEND | sys::O_CREAT | sys::O_CLOEXEC;
    let fd = sys::open(z.get(..path.len() + 1)?, flags, 0o600).ok()?;
    match sys::dupfd_cloexec(fd, SINK_MIN_FD) {
        Ok(high) => {
            sys::close(fd);
            Some(high)
        }
        Err(_) => Some(fd),
    }
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
                    if (dev, ino) == (SINK_DEV.load(Ordering::Relaxed), SINK_INO.load(Ordering::Relaxed)) {
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
        Sink::Fd(n) => Some((n, false)),
    }
}
