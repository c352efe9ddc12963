//! io_uring rings in enforce mode. A ring's requests are carried out by the
//! kernel, with no system call of the program's: an `IORING_OP_OPENAT` opens
//! a file, an `IORING_OP_CONNECT` connects, and no hook sees either. So
//! when the policy refuses what some opcodes do (the `file` class, say), a
//! ring may only do the rest: the runtime makes the program's
//! `io_uring_setup` itself with `IORING_SETUP_R_DISABLED`, registers
//! `IORING_REGISTER_RESTRICTIONS` that allow every opcode but those, every
//! `io_uring_register` operation and every SQE flag, and enables the ring.
//! A program that asked for `R_DISABLED` itself registers restrictions of
//! its own: they are intersected with the runtime's (its `io_uring_register`
//! goes through here), and the runtime's are registered before the ring is
//! enabled if it registered none. The kernel then fails a left-out request
//! with `-EACCES` in its completion. `MADVISE` is left out whenever
//! `tamper.madvise` is refused (a ring's `MADV_DONTNEED` would give libc's
//! rewritten pages their file's bytes back). Kernels before 5.10 have no
//! restrictions: there such a ring is not made (`io_uring_setup` fails with
//! the kernel's `EINVAL`); nor is one known by its index only
//! (`IORING_SETUP_REGISTERED_FD_ONLY`), which could not be closed if the
//! restrictions failed.
//!
//! Which opcodes are left out depends only on the policy ([`left_out`]), so
//! the rewriter and the event know it too.

use crate::apis::ApiId;

/// What decides whether an opcode is left out.
#[derive(Clone, Copy)]
enum Gate {
    /// Nothing the policy speaks about (reads, writes, timeouts, ...).
    Free,
    /// What the API does: left out when the policy refuses the API.
    Api(ApiId),
    /// A command passed to a driver or a socket (`URING_CMD`): left out
    /// when anything is.
    Any,
    /// What could undo the runtime's hooks: left out when the policy
    /// refuses that `tamper` API (enforce mode, unless a rule lets
    /// tampering through). Alone, it leaves no `URING_CMD` out.
    Tamper(ApiId),
}

use Gate::{Any, Api, Free, Tamper};

/// Every opcode up to Linux 6.18's `IORING_OP_URING_CMD128`, by number.
const OPS: [(&[u8], Gate); 65] = [
    (b"NOP", Free),
    (b"READV", Free),
    (b"WRITEV", Free),
    (b"FSYNC", Free),
    (b"READ_FIXED", Free),
    (b"WRITE_FIXED", Free),
    (b"POLL_ADD", Free),
    (b"POLL_REMOVE", Free),
    (b"SYNC_FILE_RANGE", Free),
    (b"SENDMSG", Api(ApiId::sendmsg)),
    (b"RECVMSG", Free),
    (b"TIMEOUT", Free),
    (b"TIMEOUT_REMOVE", Free),
    (b"ACCEPT", Api(ApiId::accept)),
    (b"ASYNC_CANCEL", Free),
    (b"LINK_TIMEOUT", Free),
    (b"CONNECT", Api(ApiId::connect)),
    (b"FALLOCATE", Free),
    (b"OPENAT", Api(ApiId::openat)),
    (b"CLOSE", Free),
    (b"FILES_UPDATE", Free),
    (b"STATX", Free),
    (b"READ", Free),
    (b"WRITE", Free),
    (b"FADVISE", Free),
    // (`MADV_DONTNEED` on libc's rewritten pages would give them back the
    // file's bytes: what `tamper.madvise` refuses.)
    (b"MADVISE", Tamper(ApiId::tamper_madvise)),
    // (A `send` may carry an address since Linux 6.10.)
    (b"SEND", Api(ApiId::sendto)),
    (b"RECV", Free),
    (b"OPENAT2", Api(ApiId::openat2)),
    (b"EPOLL_CTL", Free),
    (b"SPLICE", Free),
    (b"PROVIDE_BUFFERS", Free),
    (b"REMOVE_BUFFERS", Free),
    (b"TEE", Free),
    (b"SHUTDOWN", Free),
    (b"RENAMEAT", Api(ApiId::renameat)),
    (b"UNLINKAT", Api(ApiId::unlinkat)),
    (b"MKDIRAT", Free),
    (b"SYMLINKAT", Api(ApiId::symlinkat)),
    (b"LINKAT", Api(ApiId::linkat)),
    (b"MSG_RING", Free),
    (b"FSETXATTR", Free),
    (b"SETXATTR", Free),
    (b"FGETXATTR", Free),
    (b"GETXATTR", Free),
    (b"SOCKET", Api(ApiId::socket)),
    (b"URING_CMD", Any),
    (b"SEND_ZC", Api(ApiId::sendto)),
    (b"SENDMSG_ZC", Api(ApiId::sendmsg)),
    (b"READ_MULTISHOT", Free),
    (b"WAITID", Free),
    (b"FUTEX_WAIT", Free),
    (b"FUTEX_WAKE", Free),
    (b"FUTEX_WAITV", Free),
    (b"FIXED_FD_INSTALL", Free),
    (b"FTRUNCATE", Api(ApiId::ftruncate)),
    (b"BIND", Api(ApiId::bind)),
    (b"LISTEN", Api(ApiId::listen)),
    (b"RECV_ZC", Free),
    (b"EPOLL_WAIT", Free),
    (b"READV_FIXED", Free),
    (b"WRITEV_FIXED", Free),
    (b"PIPE", Free),
    (b"NOP128", Free),
    (b"URING_CMD128", Any),
];

/// Bit `i` of [`LeftOut::known`]: opcode `i` is left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LeftOut {
    pub known: u128,
}

/// `IORING_SETUP_REGISTERED_FD_ONLY`: the ring comes back as an index of
/// the registered rings, no descriptor (see [`setup`]).
const SETUP_REGISTERED_FD_ONLY: u32 = 1 << 15;

impl LeftOut {
    /// Whether rings are restricted at all.
    pub fn any(self) -> bool {
        self.known != 0
    }

    /// Whether opcode `op` is left out; those newer than [`OPS`] are, when
    /// anything is (what they do is not known here).
    pub fn has(self, op: u32) -> bool {
        if (op as usize) < OPS.len() {
            self.known >> op & 1 == 1
        } else {
            self.any()
        }
    }

    /// The opcodes left out, by name (`OPENAT`, ...), in number order.
    pub fn names(self) -> impl Iterator<Item = &'static [u8]> {
        OPS.iter().enumerate().filter(move |(i, _)| self.known >> i & 1 == 1).map(|(_, (n, _))| *n)
    }
}

/// The opcodes a ring may not carry out when the policy refuses the APIs
/// `refused` says (none outside enforce mode: the caller passes `|_| false`).
pub fn left_out(refused: impl Fn(ApiId) -> bool) -> LeftOut {
    // What refused APIs do, what refused tampering could do, and the
    // driver commands, which go with the first.
    let (mut apis, mut tamper, mut commands) = (0u128, 0u128, 0u128);
    for (i, (_, gate)) in OPS.iter().enumerate() {
        match *gate {
            Api(api) if refused(api) => apis |= 1 << i,
            Tamper(api) if refused(api) => tamper |= 1 << i,
            Any => commands |= 1 << i,
            _ => {}
        }
    }
    LeftOut { known: apis | tamper | if apis != 0 { commands } else { 0 } }
}

/// What the policy table leaves out of rings.
pub fn left_out_by(p: &crate::ptable::PolicyTable) -> LeftOut {
    use crate::contract::action;
    if !p.enforce() {
        return LeftOut::default();
    }
    // A ring's operation has no caller and its arguments are not matched:
    // left out when any call of its API may be refused.
    left_out(|api| p.may(api as u16, action::DENY))
}

pub use made::{register, setup};

/// The calls the runtime makes in the program's place.
mod made {
    use super::LeftOut;
    use crate::arch::x86_64::syscall6;
    use crate::{mem, sys};
    use core::sync::atomic::{AtomicU64, Ordering};

    const NR_SETUP: u64 = 425;
    const NR_REGISTER: u64 = 427;
    const SETUP_R_DISABLED: u32 = 64;
    const REGISTER_PROBE: u64 = 8;
    const REGISTER_RESTRICTIONS: u64 = 11;
    const REGISTER_ENABLE_RINGS: u64 = 12;
    /// `IORING_REGISTER_USE_REGISTERED_RING`: `fd` is a registered ring's index.
    const USE_REGISTERED_RING: u64 = 1 << 31;
    const RESTRICTION_REGISTER_OP: u16 = 0;
    const RESTRICTION_SQE_OP: u16 = 1;
    const RESTRICTION_SQE_FLAGS_ALLOWED: u16 = 2;
    /// `struct io_uring_restriction`: opcode (u16), the op or flags (u8), padding.
    const ENTRY: usize = 16;
    /// Most restrictions the kernel takes: its RESTRICTION_LAST +
    /// REGISTER_LAST + OP_LAST (about 105 in 6.18); room for more.
    const MAX_ENTRIES: usize = 192;
    /// Highest `io_uring_register` operation tried (6.18 has 36); the kernel
    /// refuses one it does not have, so fewer are tried until it agrees.
    const REGISTER_OPS: u32 = 48;
    const EBUSY: i64 = 16;

    /// The restrictions being built: one buffer, not on the stack (a hook
    /// may run on the program's), taken with [`Taken`].
    struct Buffer(core::cell::UnsafeCell<[u8; MAX_ENTRIES * ENTRY]>);
    // SAFETY: only used while BUSY is held (see `Taken`).
    unsafe impl Sync for Buffer {}
    static BUF: Buffer = Buffer(core::cell::UnsafeCell::new([0; MAX_ENTRIES * ENTRY]));
    /// Who holds [`BUF`]: 0 nobody, else its process and thread ids.
    static BUSY: AtomicU64 = AtomicU64::new(0);

    /// Holds [`BUF`] (rings are set up rarely: a thread that finds it taken
    /// yields). None when this very thread holds it (a signal handler
    /// setting up a ring while the code it interrupted does): the caller
    /// refuses. A holder of the process this one was forked from is gone:
    /// its hold is taken over.
    struct Taken;
    impl Taken {
        fn new() -> Option<Taken> {
            let (pid, tid) = (sys::getpid(), sys::gettid());
            let me = pid << 32 | tid;
            let mut cur = 0;
            loop {
                match BUSY.compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return Some(Taken),
                    Err(0) => cur = 0,
                    Err(held) if held == me => return None,
                    Err(held) if held >> 32 != pid => cur = held,
                    Err(_) => {
                        cur = 0;
                        sys::sched_yield();
                    }
                }
            }
        }
        fn buf(&mut self) -> &mut [u8; MAX_ENTRIES * ENTRY] {
            // SAFETY: BUSY is held by this `Taken` alone until it drops.
            unsafe { &mut *BUF.0.get() }
        }
    }
    impl Drop for Taken {
        fn drop(&mut self) {
            BUSY.store(0, Ordering::Release);
        }
    }

    fn put(buf: &mut [u8], i: usize, kind: u16, value: u8) -> bool {
        let Some(e) = buf.get_mut(i * ENTRY..(i + 1) * ENTRY) else { return false };
        e.fill(0);
        e[..2].copy_from_slice(&kind.to_le_bytes());
        e[2] = value;
        true
    }

    fn register_raw(fd: u64, op: u64, arg: u64, n: u64) -> i64 {
        // SAFETY: io_uring_register reads (or, for the probe, writes) `n`
        // entries at `arg`, a buffer of ours of that size; the ring is the
        // program's descriptor.
        unsafe { syscall6(NR_REGISTER, fd, op, arg, n, 0, 0) }
    }

    /// The kernel's highest opcode (`IORING_REGISTER_PROBE` with no entries).
    fn last_op(fd: u64, how: u64) -> Option<u32> {
        let mut probe = [0u8; 16];
        let r = register_raw(fd, REGISTER_PROBE | how, probe.as_mut_ptr() as u64, 0);
        (r == 0).then_some(probe[0] as u32)
    }

    /// Registers the runtime's restrictions on ring `fd`: every opcode the
    /// kernel has but those left out, every register operation, every SQE flag.
    fn register_ours(fd: u64, how: u64, out: LeftOut) -> i64 {
        let Some(last) = last_op(fd, how) else { return -sys::EPERM };
        let Some(mut t) = Taken::new() else { return -sys::EPERM };
        let buf = t.buf();
        let mut sqe = 0;
        let _ = put(buf, sqe, RESTRICTION_SQE_FLAGS_ALLOWED, 0xff);
        sqe += 1;
        for op in 0..=last {
            if !out.has(op) && put(buf, sqe, RESTRICTION_SQE_OP, op as u8) {
                sqe += 1;
            }
        }
        let mut ops = REGISTER_OPS;
        loop {
            let mut n = sqe;
            for op in 0..ops {
                if put(buf, n, RESTRICTION_REGISTER_OP, op as u8) {
                    n += 1;
                }
            }
            let r = register_raw(fd, REGISTER_RESTRICTIONS | how, buf.as_ptr() as u64, n as u64);
            if r != -sys::EINVAL || ops == 0 {
                return r;
            }
            ops -= 1;
        }
    }

    /// The program's `io_uring_setup(entries, params)` under a policy that
    /// leaves opcodes out: made here (see the module); its result.
    pub fn setup(out: LeftOut, entries: u64, params: u64) -> i64 {
        let flags_at = params.wrapping_add(8);
        let Some(flags) = mem::read_u32(flags_at) else { return -sys::EFAULT };
        // A ring known by its index only, which the runtime could not close
        // if it failed to restrict it: not made.
        if flags & super::SETUP_REGISTERED_FD_ONLY != 0 {
            return -sys::EPERM;
        }
        let own = flags & SETUP_R_DISABLED != 0;
        if !own && sys::write_own_memory(flags_at, &(flags | SETUP_R_DISABLED).to_le_bytes()) != Ok(4) {
            return -sys::EFAULT;
        }
        // SAFETY: the program's own call, its `params` with R_DISABLED added.
        let fd = unsafe { syscall6(NR_SETUP, entries, params, 0, 0, 0, 0) };
        if own {
            return fd;
        }
        // The kernel wrote the flags it used back: the program's again.
        let _ = sys::write_own_memory(flags_at, &flags.to_le_bytes());
        if fd < 0 {
            return fd;
        }
        let ring = fd as u64;
        if register_ours(ring, 0, out) != 0 || register_raw(ring, REGISTER_ENABLE_RINGS, 0, 0) != 0 {
            // No ring the policy cannot hold to.
            sys::close(fd as i32);
            return -sys::EPERM;
        }
        fd
    }

    /// The program's `io_uring_register(fd, op, arg, n)` when rings are
    /// restricted: its own restrictions intersected with the runtime's, and
    /// the runtime's registered before it enables a ring; None for any other
    /// operation (it runs as it is).
    pub fn register(out: LeftOut, a: [u64; 4]) -> Option<i64> {
        let (fd, op, arg, n) = (a[0], a[1] as u32 as u64, a[2], a[3] as u32 as u64);
        let how = op & USE_REGISTERED_RING;
        match op & !USE_REGISTERED_RING {
            REGISTER_RESTRICTIONS => {
                if n as usize > MAX_ENTRIES {
                    return Some(-sys::EINVAL);
                }
                let Some(mut t) = Taken::new() else { return Some(-sys::EPERM) };
                let buf = t.buf();
                let mut kept = 0usize;
                for i in 0..n as usize {
                    let mut e = [0u8; ENTRY];
                    if mem::read(arg.wrapping_add((i * ENTRY) as u64), &mut e) != ENTRY {
                        return Some(-sys::EFAULT);
                    }
                    let kind = u16::from_le_bytes([e[0], e[1]]);
                    if kind == RESTRICTION_SQE_OP && out.has(e[2] as u32) {
                        continue; // the program allows it, the policy does not
                    }
                    if let Some(slot) = buf.get_mut(kept * ENTRY..(kept + 1) * ENTRY) {
                        slot.copy_from_slice(&e);
                        kept += 1;
                    }
                }
                Some(register_raw(fd, op, buf.as_ptr() as u64, kept as u64))
            }
            REGISTER_ENABLE_RINGS => {
                // Restrictions of its own (EBUSY: already registered, and
                // intersected above), or the runtime's.
                let r = register_ours(fd, how, out);
                if r != 0 && r != -EBUSY {
                    return Some(-sys::EPERM);
                }
                Some(register_raw(fd, op, arg, n))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_apis_leave_their_opcodes_out() {
        assert!(!left_out(|_| false).any());
        // Refused tampering leaves MADVISE out, and no URING_CMD.
        let tamper = left_out(|a| a.class() == crate::apis::Class::Tamper);
        assert!(tamper.has(25) && !tamper.has(46) && !tamper.has(18));
        let file = left_out(|a| a.class() == crate::apis::Class::File);
        assert_eq!(file.names().count(), 9);
        let mut names = [&b""[..]; 9];
        for (slot, n) in names.iter_mut().zip(file.names()) {
            *slot = n;
        }
        assert_eq!(
            names,
            [
                b"OPENAT" as &[u8],
                b"OPENAT2",
                b"RENAMEAT",
                b"UNLINKAT",
                b"SYMLINKAT",
                b"LINKAT",
                b"URING_CMD",
                b"FTRUNCATE",
                b"URING_CMD128"
            ]
        );
        assert!(file.has(18) && !file.has(22) && file.has(200)); // OPENAT, READ, unknown
        let connect = left_out(|a| a == ApiId::connect);
        assert!(connect.has(16) && connect.has(46) && !connect.has(18));
        // The numbers are the kernel's.
        assert_eq!(OPS[18].0, b"OPENAT");
        assert_eq!(OPS[45].0, b"SOCKET");
        assert_eq!(OPS[48].0, b"SENDMSG_ZC");
        assert_eq!(OPS[57].0, b"LISTEN");
    }
}
