//! Typed wrappers over the raw system calls the runtime needs. Results are
//! `Ok(value)` or `Err(errno)`; nothing here touches libc's `errno`.

use crate::arch::x86_64::{syscall1, syscall2, syscall3, syscall4, syscall6};

pub const EINTR: i64 = 4;
pub const EBADF: i64 = 9;
pub const EPERM: i64 = 1;
pub const ENOSYS: i64 = 38;
pub const EIO: i64 = 5;
pub const EFAULT: i64 = 14;
pub const EINVAL: i64 = 22;
pub const EAGAIN: i64 = 11;

const SYS_READ: u64 = 0;
const SYS_PREAD64: u64 = 17;
const SYS_SIGALTSTACK: u64 = 131;
const SYS_WRITE: u64 = 1;
const SYS_CLOSE: u64 = 3;
const SYS_FSTAT: u64 = 5;
pub const SYS_RT_SIGPROCMASK: u64 = 14;
const SYS_SCHED_YIELD: u64 = 24;
const SYS_GETPID: u64 = 39;
const SYS_GETPPID: u64 = 110;
const SYS_GETSOCKNAME: u64 = 51;
const SYS_EXIT_GROUP: u64 = 231;
const SYS_FCNTL: u64 = 72;
const SYS_READLINK: u64 = 89;
const SYS_GETCWD: u64 = 79;
const SYS_FACCESSAT: u64 = 269;
const SYS_GETUID: u64 = 102;
const SYS_GETGID: u64 = 104;
const SYS_GETEUID: u64 = 107;
const SYS_GETEGID: u64 = 108;
const SYS_GETTID: u64 = 186;
const SYS_CLOCK_GETTIME: u64 = 228;
pub const SYS_TGKILL: u64 = 234;
pub const SYS_RT_SIGACTION: u64 = 13;
pub const SYS_PRCTL: u64 = 157;
const SYS_PROCESS_VM_WRITEV: u64 = 311;
const SYS_OPENAT: u64 = 257;
const SYS_RT_SIGTIMEDWAIT: u64 = 128;
const SYS_PROCESS_VM_READV: u64 = 310;
const SYS_MMAP: u64 = 9;
const SYS_MPROTECT: u64 = 10;
const SYS_MUNMAP: u64 = 11;
const SYS_MADVISE: u64 = 28;
const SYS_PWRITE64: u64 = 18;
const SYS_NEWFSTATAT: u64 = 262;

pub const PROT_READ: u64 = 1;
pub const PROT_WRITE: u64 = 2;
pub const PROT_EXEC: u64 = 4;
const MAP_PRIVATE: u64 = 0x02;
const MAP_ANONYMOUS: u64 = 0x20;

pub const AT_FDCWD: i64 = -100;
pub const O_RDONLY: u64 = 0;
pub const O_WRONLY: u64 = 1;
pub const O_RDWR: u64 = 2;
pub const O_CREAT: u64 = 0o100;
pub const O_APPEND: u64 = 0o2000;
pub const O_CLOEXEC: u64 = 0o2000000;
pub const F_DUPFD_CLOEXEC: u64 = 1030;
pub const SIGKILL: u64 = 9;
pub const SIGPIPE: u64 = 13;
const SIG_BLOCK: u64 = 0;
const SIG_SETMASK: u64 = 2;

fn result(r: i64) -> Result<u64, i64> {
    if (-4095..0).contains(&r) {
        Err(-r)
    } else {
        Ok(r as u64)
    }
}

pub fn write(fd: i32, buf: &[u8]) -> Result<u64, i64> {
    // SAFETY: the kernel reads `buf.len()` bytes of a live slice.
    result(unsafe { syscall3(SYS_WRITE, fd as u64, buf.as_ptr() as u64, buf.len() as u64) })
}

pub fn read(fd: i32, buf: &mut [u8]) -> Result<u64, i64> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into a live exclusive slice.
    result(unsafe { syscall3(SYS_READ, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64) })
}

pub fn close(fd: i32) {
    // SAFETY: closing a descriptor touches no memory.
    unsafe { syscall1(SYS_CLOSE, fd as u64) };
}

/// `openat(AT_FDCWD, path, flags, mode)`; `path` must end with a NUL byte.
pub fn open(path: &[u8], flags: u64, mode: u64) -> Result<i32, i64> {
    open_at(AT_FDCWD as i32, path, flags, mode)
}

/// Makes writes to `fd` wait again (clears `O_NONBLOCK`).
pub fn set_blocking(fd: i32) -> Result<(), i64> {
    const F_GETFL: u64 = 3;
    const F_SETFL: u64 = 4;
    const O_NONBLOCK: u64 = 0o4000;
    // SAFETY: fcntl on a descriptor with integer arguments only.
    let flags = result(unsafe { syscall3(SYS_FCNTL, fd as u64, F_GETFL, 0) })?;
    // SAFETY: as above.
    result(unsafe { syscall3(SYS_FCNTL, fd as u64, F_SETFL, flags & !O_NONBLOCK) }).map(|_| ())
}

pub fn dupfd_cloexec(fd: i32, min: i32) -> Result<i32, i64> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) touches no memory.
    result(unsafe { syscall3(SYS_FCNTL, fd as u64, F_DUPFD_CLOEXEC, min as u64) }).map(|v| v as i32)
}

/// The `struct stat` of an open descriptor, as its 18 words (144 bytes on
/// x86-64: st_dev, st_ino, st_nlink, then st_mode and st_uid as the halves
/// of the fourth word).
fn fstat_words(fd: i32) -> Result<[u64; 18], i64> {
    let mut st = [0u64; 18];
    // SAFETY: the kernel writes one struct stat (144 bytes) into `st`.
    result(unsafe { syscall2(SYS_FSTAT, fd as u64, st.as_mut_ptr() as u64) })?;
    Ok(st)
}

/// The `struct stat` (as [`fstat_words`]) of `name` (NUL-terminated) in
/// folder `dirfd`, not following a last symbolic link.
fn lstat_words(dirfd: i64, name: &[u8]) -> Option<[u64; 18]> {
    const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
    if name.last() != Some(&0) {
        return None;
    }
    let mut st = [0u64; 18];
    // SAFETY: a live NUL-terminated name; the kernel writes one struct stat
    // (144 bytes) into `st`.
    let r = unsafe {
        syscall4(SYS_NEWFSTATAT, dirfd as u64, name.as_ptr() as u64, st.as_mut_ptr() as u64, AT_SYMLINK_NOFOLLOW)
    };
    (r == 0).then_some(st)
}

/// Device, inode and whether it is a regular file, of an open descriptor.
pub fn fstat_id(fd: i32) -> Result<(u64, u64, bool), i64> {
    const S_IFMT: u64 = 0o170000;
    const S_IFREG: u64 = 0o100000;
    fstat_words(fd).map(|st| (st[0], st[1], st[3] & S_IFMT == S_IFREG))
}

/// `(st_dev, st_ino)` of the file at `path` (NUL-terminated), not
/// following a last symbolic link.
pub fn lstat_id(path: &[u8]) -> Option<(u64, u64)> {
    lstat_words(AT_FDCWD, path).map(|st| (st[0], st[1]))
}

/// An open descriptor's mode (type and permission bits), its owner's uid
/// and its number of links.
pub fn fstat_owner(fd: i32) -> Result<(u32, u32, u64), i64> {
    fstat_words(fd).map(|st| (st[3] as u32, (st[3] >> 32) as u32, st[2]))
}

/// `openat(dirfd, name, flags, mode)`; `name` ends with a NUL byte.
pub fn open_at(dirfd: i32, name: &[u8], flags: u64, mode: u64) -> Result<i32, i64> {
    if name.last() != Some(&0) {
        return Err(EBADF);
    }
    // SAFETY: a live NUL-terminated name, only read by the kernel.
    result(unsafe { syscall4(SYS_OPENAT, dirfd as u64, name.as_ptr() as u64, flags, mode) }).map(|fd| fd as i32)
}

/// Whether `name` (NUL-terminated) in folder `dirfd` is a symbolic link.
pub fn is_link_at(dirfd: i32, name: &[u8]) -> bool {
    lstat_words(dirfd as i64, name).is_some_and(|st| st[3] as u32 & 0o170000 == 0o120000)
}

/// Real and effective user and group ids: (uid, euid, gid, egid).
pub fn ids() -> (u64, u64, u64, u64) {
    // SAFETY: these system calls take no arguments and cannot fail.
    unsafe {
        (
            syscall1(SYS_GETUID, 0) as u64,
            syscall1(SYS_GETEUID, 0) as u64,
            syscall1(SYS_GETGID, 0) as u64,
            syscall1(SYS_GETEGID, 0) as u64,
        )
    }
}

/// Writes `buf` to `fd` in one `write`, retried on EINTR.
pub fn write_all_once(fd: i32, buf: &[u8]) -> Result<u64, i64> {
    let mut r = write(fd, buf);
    while r == Err(EINTR) {
        r = write(fd, buf);
    }
    r
}

/// `readlink`; `path` must end with a NUL byte. Returns the length written.
pub fn readlink(path: &[u8], out: &mut [u8]) -> Result<usize, i64> {
    if path.last() != Some(&0) {
        return Err(EBADF);
    }
    // SAFETY: live NUL-terminated path; the kernel writes at most out.len() bytes.
    result(unsafe { syscall3(SYS_READLINK, path.as_ptr() as u64, out.as_mut_ptr() as u64, out.len() as u64) })
        .map(|n| n as usize)
}

/// `getcwd`: the current directory into `out`; the length the kernel
/// returns (the NUL included).
pub fn getcwd(out: &mut [u8]) -> Result<usize, i64> {
    // SAFETY: the kernel writes at most out.len() bytes into `out`.
    result(unsafe { syscall2(SYS_GETCWD, out.as_mut_ptr() as u64, out.len() as u64) }).map(|n| n as usize)
}

/// `faccessat(dirfd, path, F_OK)`: whether the file the program's path
/// string at `path` names exists (the kernel reads the string).
pub fn access(dirfd: i64, path: u64) -> Result<(), i64> {
    // SAFETY: the kernel reads the string at `path` itself, failing with
    // EFAULT where it is not readable; nothing of ours is written.
    result(unsafe { syscall3(SYS_FACCESSAT, dirfd as u64, path, 0) }).map(|_| ())
}

pub fn getpid() -> u64 {
    // SAFETY: no arguments, no memory.
    unsafe { syscall1(SYS_GETPID, 0) as u64 }
}

/// The parent process's id (the process that created this one, even with `CLONE_VM`).
pub fn getppid() -> u64 {
    // SAFETY: no arguments, no memory.
    unsafe { syscall1(SYS_GETPPID, 0) as u64 }
}

pub fn gettid() -> u64 {
    // SAFETY: no arguments, no memory.
    unsafe { syscall1(SYS_GETTID, 0) as u64 }
}

/// A private, anonymous, readable and writable mapping of `len` bytes.
pub fn map_anonymous(len: u64) -> Option<u64> {
    map_anonymous_near(0, len)
}

/// As [`map_anonymous`], at `hint` if the kernel can (a hint only: the
/// mapping may be anywhere; 0 lets the kernel choose).
pub fn map_anonymous_near(hint: u64, len: u64) -> Option<u64> {
    // SAFETY: a fresh anonymous mapping without MAP_FIXED touches no existing memory.
    let r = unsafe { syscall6(SYS_MMAP, hint, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, u64::MAX, 0) };
    if r < 0 {
        None
    } else {
        Some(r as u64)
    }
}

/// As [`map_anonymous`], with no memory set aside for it
/// (`MAP_NORESERVE`): a page costs memory once written.
pub fn map_reserved(len: u64) -> Option<u64> {
    const MAP_NORESERVE: u64 = 0x4000;
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    // SAFETY: a fresh anonymous mapping without MAP_FIXED touches no existing memory.
    let r = unsafe { syscall6(SYS_MMAP, 0, len, PROT_READ | PROT_WRITE, flags, u64::MAX, 0) };
    (r >= 0).then_some(r as u64)
}

/// As [`map_anonymous`], but left out of `fork` children (`MADV_DONTFORK`):
/// only the process itself and the threads and `vfork`/`CLONE_VM` children
/// that share its memory see it.
pub fn map_unforked(len: u64) -> Option<u64> {
    const MADV_DONTFORK: u64 = 10;
    let at = map_anonymous(len)?;
    // SAFETY: advice on our own fresh mapping, which nothing else uses yet.
    if unsafe { syscall3(SYS_MADVISE, at, len, MADV_DONTFORK) } != 0 {
        // SAFETY: ours, never handed out.
        unsafe { unmap(at, len) };
        return None;
    }
    Some(at)
}

/// # Safety
/// `addr..addr+len` must be a mapping nothing uses.
pub unsafe fn unmap(addr: u64, len: u64) {
    // SAFETY: the caller owns the mapping.
    unsafe {
        syscall2(SYS_MUNMAP, addr, len);
    }
}

/// Size, modification time and its nanoseconds of the file at `path` (NUL terminated).
pub fn stat_size_mtime(path: &[u8]) -> Option<(u64, u64, u64)> {
    let mut st = [0u64; 18];
    // SAFETY: newfstatat writes one struct stat (144 bytes) into `st`; `path` is NUL terminated.
    let r = unsafe { syscall4(SYS_NEWFSTATAT, AT_FDCWD as u64, path.as_ptr() as u64, st.as_mut_ptr() as u64, 0) };
    if r != 0 || !path.contains(&0) {
        return None;
    }
    Some((st[6], st[11], st[12]))
}

/// Device, mode and size of the file `path` names relative to `dirfd`.
/// `path` is the program's pointer, handed to the kernel as it is (a bad
/// one fails with EFAULT); symbolic links are followed, as `open` follows them.
pub fn stat_at(dirfd: i64, path: u64) -> Option<(u64, u32, u64)> {
    let mut st = [0u64; 18];
    // SAFETY: newfstatat writes one struct stat (144 bytes) into `st`; the
    // kernel reads `path` itself and checks it.
    let r = unsafe { syscall4(SYS_NEWFSTATAT, dirfd as u64, path, st.as_mut_ptr() as u64, 0) };
    // st_dev, st_ino, st_nlink, st_mode (low half of the fourth word), ..., st_size (the seventh).
    (r == 0).then_some((st[0], st[3] as u32, st[6]))
}

/// `openat(dirfd, path, O_PATH | O_CLOEXEC)` of the program's `path` (as
/// [`stat_at`]): a descriptor that names the file without opening it.
pub fn open_path_at(dirfd: i64, path: u64) -> Result<i32, i64> {
    const O_PATH: u64 = 0o10000000;
    // SAFETY: the kernel reads `path` itself and checks it.
    result(unsafe { syscall4(SYS_OPENAT, dirfd as u64, path, O_PATH | O_CLOEXEC, 0) }).map(|fd| fd as i32)
}

/// The file system type (`f_type`) of an open descriptor.
pub fn fs_type(fd: i32) -> Option<u64> {
    const SYS_FSTATFS: u64 = 138;
    // struct statfs is 120 bytes on x86-64, f_type first.
    let mut sf = [0u64; 15];
    // SAFETY: the kernel writes one struct statfs into `sf`.
    let r = unsafe { syscall2(SYS_FSTATFS, fd as u64, sf.as_mut_ptr() as u64) };
    (r == 0).then_some(sf[0])
}

/// The size of System V shared memory segment `id` (`shmctl(IPC_STAT)`).
pub fn shm_size(id: u64) -> Option<u64> {
    const SYS_SHMCTL: u64 = 31;
    const IPC_STAT: u64 = 2;
    // struct shmid64_ds: 48 bytes of ipc64_perm, then shm_segsz.
    let mut ds = [0u64; 14];
    // SAFETY: the kernel writes one struct shmid64_ds (112 bytes) into `ds`.
    let r = unsafe { syscall3(SYS_SHMCTL, id as u32 as u64, IPC_STAT, ds.as_mut_ptr() as u64) };
    (r == 0).then_some(ds[6])
}

/// Writes `buf` at `offset` of `fd` (for `/proc/self/mem`: at that address).
pub fn pwrite(fd: i32, buf: &[u8], offset: u64) -> Result<u64, i64> {
    // SAFETY: the kernel reads `buf.len()` bytes from `buf`.
    result(unsafe { syscall4(SYS_PWRITE64, fd as u64, buf.as_ptr() as u64, buf.len() as u64, offset) })
}

/// `mprotect(addr, len, prot)`.
///
/// # Safety
/// The caller must not take away access that code still relies on.
pub unsafe fn mprotect(addr: u64, len: u64, prot: u64) -> Result<u64, i64> {
    // SAFETY: as the caller promises.
    result(unsafe { syscall3(SYS_MPROTECT, addr, len, prot) })
}

pub fn sched_yield() {
    // SAFETY: no memory.
    unsafe { syscall1(SYS_SCHED_YIELD, 0) };
}

/// `CLOCK_REALTIME` as (seconds, nanoseconds).
pub fn realtime() -> (i64, u32) {
    let mut ts = [0i64; 2];
    // SAFETY: the kernel writes one struct timespec (16 bytes).
    let r = unsafe { syscall2(SYS_CLOCK_GETTIME, 0, ts.as_mut_ptr() as u64) };
    if r != 0 {
        return (0, 0);
    }
    (ts[0], ts[1] as u32)
}

/// Ends the calling process at once with SIGKILL.
pub fn kill_self() -> ! {
    let pid = getpid();
    let tid = gettid();
    // SAFETY: sending a signal to ourselves touches no memory.
    unsafe { syscall3(SYS_TGKILL, pid, tid, SIGKILL) };
    loop {
        // SAFETY: exit_group does not return.
        unsafe { syscall1(SYS_EXIT_GROUP, 137) };
    }
}

/// Reads `out.len()` bytes of this process's memory at `addr` with
/// `process_vm_readv`, so an invalid address is an error instead of a fault.
/// Returns how many bytes were read (fewer at an unmapped page).
pub fn read_own_memory(addr: u64, out: &mut [u8]) -> Result<usize, i64> {
    let local = [out.as_mut_ptr() as u64, out.len() as u64];
    let remote = [addr, out.len() as u64];
    // SAFETY: the kernel writes at most out.len() bytes into `out` and reads
    // the remote range itself, reporting EFAULT instead of faulting.
    result(unsafe { syscall6(SYS_PROCESS_VM_READV, getpid(), local.as_ptr() as u64, 1, remote.as_ptr() as u64, 1, 0) })
        .map(|n| n as usize)
}

/// Reads the ranges `remote` (`[address, length]` each) of this process's
/// memory, one after another, into `out` with one `process_vm_readv`.
/// Returns how many bytes were read: fewer when a range is unreadable,
/// the ranges after it not read.
pub fn read_own_gather(remote: &[[u64; 2]], out: &mut [u8]) -> Result<usize, i64> {
    let local = [out.as_mut_ptr() as u64, out.len() as u64];
    // SAFETY: the kernel writes at most out.len() bytes into `out` and reads
    // the remote ranges itself (an array of `struct iovec`, which `[u64; 2]`
    // lays out the same), reporting EFAULT instead of faulting.
    result(unsafe {
        syscall6(
            SYS_PROCESS_VM_READV,
            getpid(),
            local.as_ptr() as u64,
            1,
            remote.as_ptr() as u64,
            remote.len() as u64,
            0,
        )
    })
    .map(|n| n as usize)
}

/// Writes `bytes` into this process's memory at `addr` with
/// `process_vm_writev` (which honours page protections and reports EFAULT
/// instead of faulting). Returns how many bytes were written.
pub fn write_own_memory(addr: u64, bytes: &[u8]) -> Result<usize, i64> {
    let local = [bytes.as_ptr() as u64, bytes.len() as u64];
    let remote = [addr, bytes.len() as u64];
    // SAFETY: the kernel reads `bytes` and writes the remote range itself,
    // reporting EFAULT for memory that is not writable.
    result(unsafe { syscall6(SYS_PROCESS_VM_WRITEV, getpid(), local.as_ptr() as u64, 1, remote.as_ptr() as u64, 1, 0) })
        .map(|n| n as usize)
}

/// Reads this process's memory at `addr` through `/proc/self/mem` (which
/// reports EIO for an unmapped address instead of faulting). One descriptor
/// per call, closed again: no state to go stale across fork or `close_range`.
pub fn read_proc_self_mem(addr: u64, out: &mut [u8]) -> Result<usize, i64> {
    let fd = open(b"/proc/self/mem\0", O_RDONLY | O_CLOEXEC, 0)?;
    // SAFETY: the kernel writes at most out.len() bytes into `out`.
    let r = result(unsafe { syscall4(SYS_PREAD64, fd as u64, out.as_mut_ptr() as u64, out.len() as u64, addr) });
    close(fd);
    r.map(|n| n as usize)
}

/// Writes `bytes` at `addr` through `/proc/self/mem` (which writes read-only
/// pages too); true when all were written. One descriptor per call, as
/// [`read_proc_self_mem`].
pub fn write_proc_self_mem(addr: u64, bytes: &[u8]) -> bool {
    let Ok(fd) = open(b"/proc/self/mem\0", O_RDWR | O_CLOEXEC, 0) else { return false };
    let written = pwrite(fd, bytes, addr) == Ok(bytes.len() as u64);
    close(fd);
    written
}

/// Whether the calling thread is running on its alternate signal stack, and
/// if so how many bytes of it are left below the current stack pointer.
pub fn altstack_room() -> Option<u64> {
    // stack_t: ss_sp, ss_flags (int, padded), ss_size.
    let mut ss = [0u64; 3];
    // SAFETY: sigaltstack(NULL, &old) writes one stack_t (24 bytes) into `ss`.
    if unsafe { syscall2(SYS_SIGALTSTACK, 0, ss.as_mut_ptr() as u64) } != 0 {
        return None;
    }
    const SS_ONSTACK: u64 = 1;
    if ss[1] & 0xffff_ffff & SS_ONSTACK == 0 {
        return None;
    }
    let here = &ss as *const _ as u64;
    Some(here.saturating_sub(ss[0]))
}

/// `getsockname` into a 128-byte buffer; returns the address length.
pub fn getsockname(fd: i32, out: &mut [u8; 128]) -> Result<usize, i64> {
    let mut len: u32 = 128;
    // SAFETY: the kernel writes at most `len` bytes into `out` and updates `len`.
    result(unsafe { syscall3(SYS_GETSOCKNAME, fd as u64, out.as_mut_ptr() as u64, &mut len as *mut u32 as u64) })?;
    Ok((len as usize).min(128))
}

/// Writes `buf` to `fd` in one `write` with SIGPIPE blocked, so a closed pipe
/// yields EPIPE instead of killing the program; a SIGPIPE raised by our write
/// is consumed before the old mask comes back.
pub fn write_nosigpipe(fd: i32, buf: &[u8]) -> Result<u64, i64> {
    without_sigpipe(|| write_all_once(fd, buf))
}

/// `writev(fd, parts)` with SIGPIPE blocked (see [`write_nosigpipe`]): one
/// line from pieces, with no buffer.
pub fn writev_nosigpipe(fd: i32, parts: &[&[u8]]) -> Result<u64, i64> {
    const SYS_WRITEV: u64 = 20;
    let mut iov = [[0u64; 2]; 8];
    let n = parts.len().min(iov.len());
    for (v, p) in iov.iter_mut().zip(parts) {
        *v = [p.as_ptr() as u64, p.len() as u64];
    }
    // SAFETY: `iov` holds `n` live (pointer, length) pairs the kernel only reads.
    without_sigpipe(|| result(unsafe { syscall3(SYS_WRITEV, fd as u64, iov.as_ptr() as u64, n as u64) }))
}

/// Runs `write` with SIGPIPE blocked, consuming a SIGPIPE it raised.
fn without_sigpipe(write: impl FnOnce() -> Result<u64, i64>) -> Result<u64, i64> {
    let block: u64 = 1 << (SIGPIPE - 1);
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask reads `block` and writes `old`, both live u64s (sigsetsize 8).
    let masked =
        unsafe { syscall4(SYS_RT_SIGPROCMASK, SIG_BLOCK, &block as *const u64 as u64, &mut old as *mut u64 as u64, 8) }
            == 0;
    let r = write();
    if masked {
        if r == Err(32) && old & block == 0 {
            let ts = [0i64; 2];
            // SAFETY: waits for SIGPIPE with a zero timeout; reads `block` and `ts`.
            unsafe { syscall4(SYS_RT_SIGTIMEDWAIT, &block as *const u64 as u64, 0, ts.as_ptr() as u64, 8) };
        }
        // SAFETY: restores the mask read above.
        unsafe { syscall4(SYS_RT_SIGPROCMASK, SIG_SETMASK, &old as *const u64 as u64, 0, 8) };
    }
    r
}
