//! Turning a hooked call's arguments into the event's `args` object.

use crate::apis::Shape;
use crate::arch::x86_64::HookFrame;
use crate::json::Json;
use crate::mem;

/// Longest string read out of the program per argument (the event buffer is
/// the real limit; this bounds the reading loop).
const MAX_STR: usize = 4096;
/// Most argv entries reported.
const MAX_ARGV: usize = 64;
/// Bytes read from the program at a time: small, so a hook needs little stack.
const CHUNK: usize = 256;

/// Writes `"args":{...}` for a call of the given shape.
pub fn args(j: &mut Json, shape: Shape, f: &HookFrame) {
    j.key(false, b"args");
    let opened = j.open(b'{');
    match shape {
        Shape::System => str_arg(j, true, b"command", f.arg(0)),
        Shape::Popen => {
            str_arg(j, true, b"command", f.arg(0));
            str_arg(j, false, b"type", f.arg(1));
        }
        Shape::Execv => {
            str_arg(j, true, b"path", f.arg(0));
            argv_array(j, f.arg(1));
        }
        Shape::Execl => {
            str_arg(j, true, b"path", f.arg(0));
            argv_variadic(j, f);
        }
        Shape::Fexecve => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            argv_array(j, f.arg(1));
        }
        Shape::Spawn => {
            str_arg(j, true, b"path", f.arg(1));
            argv_array(j, f.arg(4));
        }
        Shape::Sockaddr => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            user_sockaddr(j, f.arg(1), f.arg(2));
        }
        Shape::Listen => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            num(j, false, b"backlog", f.arg(1) as i32 as i64);
            own_address(j, f.arg(0));
        }
        Shape::Open => {
            str_arg(j, true, b"path", f.arg(0));
            open_flags(j, f.arg(1), f.arg(2));
        }
        Shape::OpenAt => {
            at_path(j, f.arg(0), f.arg(1));
            open_flags(j, f.arg(2), f.arg(3));
        }
        Shape::Fopen => {
            str_arg(j, true, b"path", f.arg(0));
            str_arg(j, false, b"mode", f.arg(1));
        }
        Shape::Creat => {
            str_arg(j, true, b"path", f.arg(0));
            j.key(false, b"flags");
            j.string(b"O_WRONLY|O_CREAT|O_TRUNC");
            octal(j, b"mode", f.arg(1));
        }
        Shape::Mmap => {
            j.key(true, b"addr");
            j.hex(f.arg(0));
            num(j, false, b"length", f.arg(1) as i64);
            bits(j, b"prot", f.arg(2), PROT);
            bits(j, b"flags", f.arg(3), MAP);
            num(j, false, b"fd", f.arg(4) as i32 as i64);
            num(j, false, b"offset", f.arg(5) as i64);
        }
        Shape::Mprotect => {
            j.key(true, b"addr");
            j.hex(f.arg(0));
            num(j, false, b"length", f.arg(1) as i64);
            bits(j, b"prot", f.arg(2), PROT);
        }
        Shape::Dlopen => {
            str_arg(j, true, b"path", f.arg(0));
            num(j, false, b"flags", f.arg(1) as i32 as i64);
        }
        Shape::Dlmopen => {
            num(j, true, b"lmid", f.arg(0) as i64);
            str_arg(j, false, b"path", f.arg(1));
            num(j, false, b"flags", f.arg(2) as i32 as i64);
        }
        Shape::Ptrace => {
            let req = f.arg(0) as u32;
            j.key(true, b"request");
            match ptrace_name(req) {
                Some(n) => j.string(n),
                None => j.u64(req as u64),
            }
            num(j, false, b"pid", f.arg(1) as i32 as i64);
        }
        Shape::ExecveAt => {
            at_path(j, f.arg(0), f.arg(1));
            argv_array(j, f.arg(2));
            num(j, false, b"flags", f.arg(4) as i32 as i64);
        }
        Shape::NoArgs => {}
        Shape::Clone => bits_key(j, true, b"flags", f.arg(0), CLONE),
        Shape::Clone3 => {
            // struct clone_args starts with the u64 flags.
            if let Some(flags) = mem::read_u64(f.arg(0)) {
                bits_key(j, true, b"flags", flags, CLONE);
            }
        }
        Shape::OpenAt2 => {
            at_path(j, f.arg(0), f.arg(1));
            // struct open_how { u64 flags; u64 mode; u64 resolve; }
            if let (Some(flags), Some(mode)) = (mem::read_u64(f.arg(2)), mem::read_u64(f.arg(2).wrapping_add(8))) {
                open_flags(j, flags, mode);
            }
        }
        Shape::Munmap => range(j, f),
        Shape::Mremap => {
            range(j, f);
            num(j, false, b"new_length", f.arg(2) as i64);
            bits(j, b"flags", f.arg(3), MREMAP);
            if f.arg(3) & 2 != 0 {
                j.key(false, b"new_addr");
                j.hex(f.arg(4));
            }
        }
        Shape::Madvise => {
            range(j, f);
            j.key(false, b"advice");
            match MADVICE.iter().find(|&&(v, _)| v == f.arg(2) as u32 as u64) {
                Some((_, name)) => j.string(name),
                None => j.u64(f.arg(2) as u32 as u64),
            }
        }
        Shape::PkeyMprotect => {
            range(j, f);
            bits(j, b"prot", f.arg(2), PROT);
            num(j, false, b"pkey", f.arg(3) as i32 as i64);
        }
        Shape::Shmat => {
            num(j, true, b"shmid", f.arg(0) as i32 as i64);
            j.key(false, b"addr");
            j.hex(f.arg(1));
            bits(j, b"flags", f.arg(2), SHMAT);
        }
        Shape::ProcessVm => {
            num(j, true, b"pid", f.arg(0) as i32 as i64);
            num(j, false, b"remote_iovcnt", f.arg(4) as i64);
        }
        Shape::SendTo => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            num(j, false, b"length", f.arg(2) as i64);
            bits(j, b"flags", f.arg(3) & 0xffff_ffff, MSG);
            user_sockaddr(j, f.arg(4), f.arg(5));
        }
        Shape::SendMsg => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            bits(j, b"flags", f.arg(2) & 0xffff_ffff, MSG);
            msg_name(j, f.arg(1));
        }
        Shape::SendMmsg => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            num(j, false, b"messages", f.arg(2) as u32 as i64);
            bits(j, b"flags", f.arg(3) & 0xffff_ffff, MSG);
            // The first message that names a destination.
            if let Some(i) = crate::filter::first_named(f.arg(1), f.arg(2) as u32 as u64) {
                msg_name(j, f.arg(1).wrapping_add(i * 64));
            }
        }
        Shape::Socket => {
            j.key(true, b"family");
            family_name(j, f.arg(0) as u32 as u64);
            let kind = f.arg(1) as u32 as u64;
            j.key(false, b"type");
            let mut buf = [0u8; 200];
            let lead = SOCK_TYPE.iter().find(|&&(v, _)| v == kind & 0xf).map(|&(_, n)| n);
            let n = match lead {
                Some(l) => bits_text(kind & !0xf, SOCK_FLAGS, &mut buf, Some(l)),
                None => bits_text(kind, SOCK_FLAGS, &mut buf, None),
            };
            j.string(buf.get(..n).unwrap_or(&[]));
            num(j, false, b"protocol", f.arg(2) as i32 as i64);
        }
        Shape::Accept | Shape::Accept4 => {
            // The peer is known only once the call returns: the event names
            // the listening socket's own address.
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            if shape == Shape::Accept4 {
                bits(j, b"flags", f.arg(3) as u32 as u64, SOCK_FLAGS);
            }
            own_address(j, f.arg(0));
        }
        Shape::Path => str_arg(j, true, b"path", f.arg(0)),
        Shape::TwoPaths => {
            str_arg(j, true, b"path", f.arg(0));
            str_arg(j, false, b"new_path", f.arg(1));
        }
        Shape::TwoPathsAt | Shape::TwoPathsAtFlags => {
            at_path(j, f.arg(0), f.arg(1));
            num(j, false, b"new_dirfd", f.arg(2) as i32 as i64);
            str_arg(j, false, b"new_path", f.arg(3));
            if shape == Shape::TwoPathsAtFlags {
                num(j, false, b"flags", f.arg(4) as u32 as i64);
            }
        }
        Shape::Symlink => {
            str_arg(j, true, b"target", f.arg(0));
            str_arg(j, false, b"path", f.arg(1));
        }
        Shape::SymlinkAt => {
            str_arg(j, true, b"target", f.arg(0));
            num(j, false, b"dirfd", f.arg(1) as i32 as i64);
            str_arg(j, false, b"path", f.arg(2));
        }
        Shape::UnlinkAt => {
            at_path(j, f.arg(0), f.arg(1));
            bits(j, b"flags", f.arg(2) as u32 as u64, AT);
        }
        Shape::Chmod => {
            str_arg(j, true, b"path", f.arg(0));
            octal(j, b"mode", f.arg(1));
        }
        Shape::Fchmod => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            octal(j, b"mode", f.arg(1));
        }
        Shape::FchmodAt => {
            // (No flags: the system call fchmodat has none, fchmodat2 and
            // libc's function do, and the event cannot tell which made it.)
            at_path(j, f.arg(0), f.arg(1));
            octal(j, b"mode", f.arg(2));
        }
        Shape::Chown => {
            str_arg(j, true, b"path", f.arg(0));
            owner(j, f.arg(1), f.arg(2));
        }
        Shape::Fchown => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            owner(j, f.arg(1), f.arg(2));
        }
        Shape::FchownAt => {
            at_path(j, f.arg(0), f.arg(1));
            owner(j, f.arg(2), f.arg(3));
            bits(j, b"flags", f.arg(4) as u32 as u64, AT);
        }
        Shape::Truncate => {
            str_arg(j, true, b"path", f.arg(0));
            num(j, false, b"length", f.arg(1) as i64);
        }
        Shape::Ftruncate => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            num(j, false, b"length", f.arg(1) as i64);
        }
        Shape::Mknod => {
            str_arg(j, true, b"path", f.arg(0));
            node(j, f.arg(1), f.arg(2));
        }
        Shape::MknodAt => {
            at_path(j, f.arg(0), f.arg(1));
            node(j, f.arg(2), f.arg(3));
        }
        Shape::SetId => id(j, true, b"id", f.arg(0)),
        Shape::SetReId => {
            id(j, true, b"real", f.arg(0));
            id(j, false, b"effective", f.arg(1));
        }
        Shape::SetResId => {
            id(j, true, b"real", f.arg(0));
            id(j, false, b"effective", f.arg(1));
            id(j, false, b"saved", f.arg(2));
        }
        Shape::SetGroups => {
            let n = f.arg(0) as u32 as u64;
            num(j, true, b"size", n as i64);
            j.key(false, b"groups");
            let opened = j.open(b'[');
            for i in 0..n.min(MAX_ARGV as u64) {
                let Some(g) = mem::read_u32(f.arg(1).wrapping_add(i * 4)) else { break };
                if !j.element(i == 0) {
                    break;
                }
                j.u64(g as u64);
            }
            if n > MAX_ARGV as u64 {
                j.mark_cut();
            }
            j.close(b']', opened);
        }
        Shape::Capset => {
            // struct __user_cap_header_struct { u32 version; int pid; },
            // then one or two struct __user_cap_data_struct { u32
            // effective, permitted, inheritable; } (the high halves).
            let (hdr, data) = (f.arg(0), f.arg(1));
            if let Some(pid) = mem::read_u32(hdr.wrapping_add(4)) {
                num(j, true, b"pid", pid as i32 as i64);
            } else {
                j.key(true, b"pid");
                j.null();
            }
            let two = mem::read_u32(hdr).is_some_and(|v| v != 0x1998_0330);
            for (k, key) in [b"effective" as &[u8], b"permitted", b"inheritable"].into_iter().enumerate() {
                let low = mem::read_u32(data.wrapping_add(4 * k as u64));
                let high = if two { mem::read_u32(data.wrapping_add(12 + 4 * k as u64)) } else { Some(0) };
                j.key(false, key);
                match (low, high) {
                    (Some(l), Some(h)) => j.hex((h as u64) << 32 | l as u64),
                    _ => j.null(),
                }
            }
        }
        Shape::Prctl => {
            let op = f.arg(0) as u32 as u64;
            j.key(true, b"option");
            match crate::filter::PRCTL_PRIVILEGE.iter().find(|&&(o, _)| o == op) {
                Some((_, name)) => j.string(name),
                None => j.u64(op),
            }
            num(j, false, b"arg2", f.arg(1) as i64);
        }
        Shape::Mount => {
            str_arg(j, true, b"source", f.arg(0));
            str_arg(j, false, b"target", f.arg(1));
            str_arg(j, false, b"fstype", f.arg(2));
            bits(j, b"flags", f.arg(3) & 0xffff_ffff, MS);
        }
        Shape::Umount2 => {
            str_arg(j, true, b"path", f.arg(0));
            bits(j, b"flags", f.arg(1) as u32 as u64, UMOUNT);
        }
        Shape::PivotRoot => {
            str_arg(j, true, b"new_root", f.arg(0));
            str_arg(j, false, b"put_old", f.arg(1));
        }
        Shape::Unshare => bits_key(j, true, b"flags", f.arg(0) as u32 as u64, NAMESPACES),
        Shape::Setns => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            bits(j, b"nstype", f.arg(1) as u32 as u64, NAMESPACES);
        }
        Shape::InitModule => {
            num(j, true, b"length", f.arg(1) as i64);
            str_arg(j, false, b"params", f.arg(2));
        }
        Shape::FinitModule => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            str_arg(j, false, b"params", f.arg(1));
            num(j, false, b"flags", f.arg(2) as u32 as i64);
        }
        Shape::DeleteModule => {
            str_arg(j, true, b"name", f.arg(0));
            num(j, false, b"flags", f.arg(1) as u32 as i64);
        }
        Shape::Bpf => {
            let cmd = f.arg(0) as u32 as u64;
            j.key(true, b"cmd");
            match BPF_CMD.iter().find(|&&(v, _)| v == cmd) {
                Some((_, name)) => j.string(name),
                None => j.u64(cmd),
            }
        }
        Shape::KexecLoad => {
            j.key(true, b"entry");
            j.hex(f.arg(0));
            num(j, false, b"segments", f.arg(1) as i64);
            num(j, false, b"flags", f.arg(3) as i64);
        }
        Shape::KexecFileLoad => {
            num(j, true, b"kernel_fd", f.arg(0) as i32 as i64);
            num(j, false, b"initrd_fd", f.arg(1) as i32 as i64);
            str_arg(j, false, b"cmdline", f.arg(3));
            num(j, false, b"flags", f.arg(4) as i64);
        }
        Shape::Reboot => {
            // The system call starts with LINUX_REBOOT_MAGIC1, which no
            // `howto` of libc's `reboot(howto)` is.
            let cmd = if f.arg(0) as u32 == 0xfee1_dead { f.arg(2) } else { f.arg(0) };
            j.key(true, b"cmd");
            j.hex(cmd as u32 as u64);
        }
        Shape::PerfEventOpen => {
            match mem::read_u32(f.arg(0)) {
                Some(t) => num(j, true, b"type", t as i64),
                None => {
                    j.key(true, b"type");
                    j.null();
                }
            }
            num(j, false, b"pid", f.arg(1) as i32 as i64);
            num(j, false, b"cpu", f.arg(2) as i32 as i64);
        }
        Shape::MoveMount => {
            num(j, true, b"from_dirfd", f.arg(0) as i32 as i64);
            str_arg(j, false, b"from_path", f.arg(1));
            num(j, false, b"to_dirfd", f.arg(2) as i32 as i64);
            str_arg(j, false, b"to_path", f.arg(3));
        }
        Shape::MemfdCreate => {
            str_arg(j, true, b"name", f.arg(0));
            bits(j, b"flags", f.arg(1) as u32 as u64, MFD);
        }
        Shape::IoUringSetup => {
            num(j, true, b"entries", f.arg(0) as u32 as i64);
            // struct io_uring_params: sq_entries, cq_entries, flags, ...
            match mem::read_u32(f.arg(1).wrapping_add(8)) {
                Some(flags) => bits(j, b"flags", flags as u64, IORING_SETUP),
                None => {
                    j.key(false, b"flags");
                    j.null();
                }
            }
            // The opcodes the ring may not carry out (see `uring`).
            let c = crate::start::contract();
            let out = crate::start::policy(c).map(|p| crate::uring::left_out_by(&p)).unwrap_or_default();
            if out.any() {
                j.key(false, b"left_out");
                let opened = j.open(b'[');
                for (i, name) in out.names().enumerate() {
                    if !j.element(i == 0) {
                        break;
                    }
                    j.string(name);
                }
                j.close(b']', opened);
            }
        }
    }
    j.close(b'}', opened);
}

/// A socket address in the program's memory, `len` bytes long (a NULL one
/// gives nothing).
fn user_sockaddr(j: &mut Json, ptr: u64, len: u64) {
    if ptr == 0 {
        return;
    }
    let mut sa = [0u8; 128];
    let got = crate::facts::user_bytes(ptr, len, &mut sa);
    sockaddr(j, sa.get(..got).unwrap_or(&[]));
}

/// The address socket `fd` is bound to (a listening socket's).
fn own_address(j: &mut Json, fd: u64) {
    let mut sa = [0u8; 128];
    if let Ok(n) = crate::sys::getsockname(fd as i32, &mut sa) {
        sockaddr(j, sa.get(..n).unwrap_or(&[]));
    }
}

/// The destination a `struct msghdr` names (`msg_name`, `msg_namelen`).
fn msg_name(j: &mut Json, msg: u64) {
    let mut sa = [0u8; 128];
    let got = crate::facts::msg_name(msg, &mut sa);
    if got > 0 {
        sockaddr(j, sa.get(..got).unwrap_or(&[]));
    }
}

/// A user or group id; `-1` ("unchanged") as -1.
fn id(j: &mut Json, first: bool, key: &[u8], v: u64) {
    num(j, first, key, v as u32 as i32 as i64);
}

/// `"uid"` and `"gid"` of a `chown`.
fn owner(j: &mut Json, uid: u64, gid: u64) {
    id(j, false, b"uid", uid);
    id(j, false, b"gid", gid);
}

/// `"type"` of a `mknod`'s node, its `"mode"`, and `"dev"` for a device.
fn node(j: &mut Json, mode: u64, dev: u64) {
    let kind: &[u8] = match mode & 0o170000 {
        0o140000 => b"socket",
        0o060000 => b"block",
        0o020000 => b"char",
        0o010000 => b"fifo",
        _ => b"regular",
    };
    j.key(false, b"type");
    j.string(kind);
    octal(j, b"mode", mode);
    if matches!(mode & 0o170000, 0o060000 | 0o020000) {
        // The kernel's encoding of a 32-bit dev_t: major 12 bits, minor 20.
        let (major, minor) = ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00));
        num(j, false, b"major", major as i64);
        num(j, false, b"minor", minor as i64);
    }
}

fn family_name(j: &mut Json, family: u64) {
    match FAMILY.iter().find(|&&(v, _)| v == family) {
        Some((_, name)) => j.string(name),
        None => j.u64(family),
    }
}

const FAMILY: &[(u64, &[u8])] =
    &[(1, b"unix"), (2, b"inet"), (10, b"inet6"), (16, b"netlink"), (17, b"packet"), (4, b"ipx"), (5, b"appletalk")];
const SOCK_TYPE: &[(u64, &[u8])] = &[
    (1, b"SOCK_STREAM"),
    (2, b"SOCK_DGRAM"),
    (3, b"SOCK_RAW"),
    (4, b"SOCK_RDM"),
    (5, b"SOCK_SEQPACKET"),
    (10, b"SOCK_PACKET"),
];
const SOCK_FLAGS: &[(u64, &[u8])] = &[(0o4000, b"SOCK_NONBLOCK"), (0o2000000, b"SOCK_CLOEXEC")];
const MSG: &[(u64, &[u8])] = &[
    (0x1, b"MSG_OOB"),
    (0x4, b"MSG_DONTROUTE"),
    (0x40, b"MSG_DONTWAIT"),
    (0x80, b"MSG_EOR"),
    (0x800, b"MSG_CONFIRM"),
    (0x4000, b"MSG_NOSIGNAL"),
    (0x8000, b"MSG_MORE"),
    (0x400_0000, b"MSG_ZEROCOPY"),
    (0x2000_0000, b"MSG_FASTOPEN"),
];
const AT: &[(u64, &[u8])] = &[
    (0x100, b"AT_SYMLINK_NOFOLLOW"),
    (0x200, b"AT_REMOVEDIR"),
    (0x400, b"AT_SYMLINK_FOLLOW"),
    (0x1000, b"AT_EMPTY_PATH"),
];
const MS: &[(u64, &[u8])] = &[
    (1, b"MS_RDONLY"),
    (2, b"MS_NOSUID"),
    (4, b"MS_NODEV"),
    (8, b"MS_NOEXEC"),
    (32, b"MS_REMOUNT"),
    (4096, b"MS_BIND"),
    (8192, b"MS_MOVE"),
    (16384, b"MS_REC"),
    (1 << 17, b"MS_UNBINDABLE"),
    (1 << 18, b"MS_PRIVATE"),
    (1 << 19, b"MS_SLAVE"),
    (1 << 20, b"MS_SHARED"),
];
const UMOUNT: &[(u64, &[u8])] = &[(1, b"MNT_FORCE"), (2, b"MNT_DETACH"), (4, b"MNT_EXPIRE"), (8, b"UMOUNT_NOFOLLOW")];
const NAMESPACES: &[(u64, &[u8])] = &[
    (0x200, b"CLONE_FS"),
    (0x400, b"CLONE_FILES"),
    (0x80, b"CLONE_NEWTIME"),
    (0x20000, b"CLONE_NEWNS"),
    (0x200_0000, b"CLONE_NEWCGROUP"),
    (0x400_0000, b"CLONE_NEWUTS"),
    (0x800_0000, b"CLONE_NEWIPC"),
    (0x1000_0000, b"CLONE_NEWUSER"),
    (0x2000_0000, b"CLONE_NEWPID"),
    (0x4000_0000, b"CLONE_NEWNET"),
    (0x800, b"CLONE_SYSVSEM"),
];
const BPF_CMD: &[(u64, &[u8])] = &[
    (0, b"BPF_MAP_CREATE"),
    (1, b"BPF_MAP_LOOKUP_ELEM"),
    (2, b"BPF_MAP_UPDATE_ELEM"),
    (3, b"BPF_MAP_DELETE_ELEM"),
    (4, b"BPF_MAP_GET_NEXT_KEY"),
    (5, b"BPF_PROG_LOAD"),
    (6, b"BPF_OBJ_PIN"),
    (7, b"BPF_OBJ_GET"),
    (8, b"BPF_PROG_ATTACH"),
    (9, b"BPF_PROG_DETACH"),
    (28, b"BPF_LINK_CREATE"),
];
const MFD: &[(u64, &[u8])] =
    &[(1, b"MFD_CLOEXEC"), (2, b"MFD_ALLOW_SEALING"), (4, b"MFD_HUGETLB"), (8, b"MFD_NOEXEC_SEAL"), (16, b"MFD_EXEC")];
const IORING_SETUP: &[(u64, &[u8])] = &[
    (1, b"IORING_SETUP_IOPOLL"),
    (2, b"IORING_SETUP_SQPOLL"),
    (4, b"IORING_SETUP_SQ_AFF"),
    (8, b"IORING_SETUP_CQSIZE"),
    (16, b"IORING_SETUP_CLAMP"),
    (32, b"IORING_SETUP_ATTACH_WQ"),
    (64, b"IORING_SETUP_R_DISABLED"),
    (128, b"IORING_SETUP_SUBMIT_ALL"),
    (256, b"IORING_SETUP_COOP_TASKRUN"),
    (512, b"IORING_SETUP_TASKRUN_FLAG"),
    (1024, b"IORING_SETUP_SQE128"),
    (2048, b"IORING_SETUP_CQE32"),
    (4096, b"IORING_SETUP_SINGLE_ISSUER"),
    (8192, b"IORING_SETUP_DEFER_TASKRUN"),
    (1 << 14, b"IORING_SETUP_NO_MMAP"),
    (1 << 15, b"IORING_SETUP_REGISTERED_FD_ONLY"),
    (1 << 16, b"IORING_SETUP_NO_SQARRAY"),
];

/// `"dirfd"` and `"path"` of an `*at` call, the first keys of its `args`.
fn at_path(j: &mut Json, dirfd: u64, path: u64) {
    num(j, true, b"dirfd", dirfd as i32 as i64);
    str_arg(j, false, b"path", path);
}

/// `addr` and `length`, the first two arguments.
fn range(j: &mut Json, f: &HookFrame) {
    j.key(true, b"addr");
    j.hex(f.arg(0));
    num(j, false, b"length", f.arg(1) as i64);
}

const MREMAP: &[(u64, &[u8])] = &[(1, b"MREMAP_MAYMOVE"), (2, b"MREMAP_FIXED"), (4, b"MREMAP_DONTUNMAP")];
const SHMAT: &[(u64, &[u8])] =
    &[(0o10000, b"SHM_RDONLY"), (0o20000, b"SHM_RND"), (0o40000, b"SHM_REMAP"), (0o100000, b"SHM_EXEC")];
/// The `madvise` advice that a tampering call may give.
const MADVICE: &[(u64, &[u8])] = &[
    (4, b"MADV_DONTNEED"),
    (8, b"MADV_FREE"),
    (9, b"MADV_REMOVE"),
    (18, b"MADV_WIPEONFORK"),
    (24, b"MADV_DONTNEED_LOCKED"),
];

/// The `clone` flags worth naming (the low byte, the exit signal, stays a number).
const CLONE: &[(u64, &[u8])] = &[
    (0x100, b"CLONE_VM"),
    (0x200, b"CLONE_FS"),
    (0x400, b"CLONE_FILES"),
    (0x800, b"CLONE_SIGHAND"),
    (0x1000, b"CLONE_PIDFD"),
    (0x4000, b"CLONE_VFORK"),
    (0x10000, b"CLONE_THREAD"),
    (0x80000, b"CLONE_SETTLS"),
    (0x100000, b"CLONE_PARENT_SETTID"),
    (0x200000, b"CLONE_CHILD_CLEARTID"),
    (0x1000000, b"CLONE_CHILD_SETTID"),
    (0x20000000, b"CLONE_NEWPID"),
    (0x40000000, b"CLONE_NEWNET"),
];

fn num(j: &mut Json, first: bool, key: &[u8], v: i64) {
    j.key(first, key);
    j.i64(v);
}

/// `"key":"string"`, or `"key":null` for a NULL or unreadable pointer.
fn str_arg(j: &mut Json, first: bool, key: &[u8], ptr: u64) {
    j.key(first, key);
    user_string(j, ptr);
}

/// Writes the NUL-terminated string at `ptr` in the program's memory as a
/// JSON string, read in small chunks that never cross a page (so a string
/// ending just before an unmapped page is read whole); `null` when the
/// pointer is NULL or unreadable. A string longer than [`MAX_STR`] is cut and
/// the event marked truncated.
fn user_string(j: &mut Json, ptr: u64) {
    if ptr == 0 {
        j.null();
        return;
    }
    let mut chunk = [0u8; CHUNK];
    let mut at = ptr;
    let mut total = 0usize;
    let mut open = false;
    loop {
        let want = (4096 - (at & 4095) as usize).min(CHUNK);
        let got = mem::read(at, chunk.get_mut(..want).unwrap_or(&mut []));
        if !open {
            if got == 0 {
                j.null();
                return;
            }
            if !j.string_start() {
                return;
            }
            open = true;
        }
        let part = chunk.get(..got).unwrap_or(&[]);
        let (part, ended) = match part.iter().position(|&b| b == 0) {
            Some(n) => (part.get(..n).unwrap_or(&[]), true),
            // An unreadable rest ends the string where reading stopped.
            None => (part, got < want),
        };
        let allowed = MAX_STR - total;
        if part.len() > allowed {
            j.string_bytes(part.get(..allowed).unwrap_or(&[]));
            j.mark_cut();
            break;
        }
        j.string_bytes(part);
        total += part.len();
        if ended {
            break;
        }
        at = at.wrapping_add(got as u64);
    }
    j.string_end();
}

/// `"argv":[...]` from a NULL-terminated array of string pointers.
fn argv_array(j: &mut Json, argv: u64) {
    j.key(false, b"argv");
    if argv == 0 {
        j.null();
        return;
    }
    let opened = j.open(b'[');
    for i in 0..MAX_ARGV as u64 {
        let p = match mem::read_u64(argv.wrapping_add(i * 8)) {
            Some(p) if p != 0 => p,
            _ => break,
        };
        if !j.element(i == 0) {
            break;
        }
        user_string(j, p);
        if i + 1 == MAX_ARGV as u64 {
            j.mark_cut();
        }
    }
    j.close(b']', opened);
}

/// `"argv":[...]` from `execl`'s variadic list: `a1`..`a5`, then the stack.
fn argv_variadic(j: &mut Json, f: &HookFrame) {
    j.key(false, b"argv");
    let opened = j.open(b'[');
    for i in 0..MAX_ARGV {
        let p = if i < 5 { f.arg(i + 1) } else { mem::read_u64(f.stack_arg_addr(i - 5)).unwrap_or(0) };
        if p == 0 {
            break;
        }
        if !j.element(i == 0) {
            break;
        }
        user_string(j, p);
        if i + 1 == MAX_ARGV {
            j.mark_cut();
        }
    }
    j.close(b']', opened);
}

/// `"family"`, and `"ip"`/`"port"` or `"path"`, from a socket address.
fn sockaddr(j: &mut Json, sa: &[u8]) {
    let family = match sa.get(..2) {
        Some(f) => u16::from_le_bytes([f[0], f[1]]),
        None => return,
    };
    let port = sa.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]]) as u64);
    j.key(false, b"family");
    match family {
        2 => {
            j.string(b"inet");
            if let (Some(a), Some(port)) = (sa.get(4..8), port) {
                j.key(false, b"ip");
                let mut out = [0u8; 16];
                let n = ipv4(a, &mut out);
                j.string(out.get(..n).unwrap_or(&[]));
                num(j, false, b"port", port as i64);
            }
        }
        10 => {
            j.string(b"inet6");
            if let (Some(a), Some(port)) = (sa.get(8..24), port) {
                j.key(false, b"ip");
                let mut out = [0u8; 40];
                let n = ipv6(a, &mut out);
                j.string(out.get(..n).unwrap_or(&[]));
                num(j, false, b"port", port as i64);
            }
        }
        1 => {
            j.string(b"unix");
            let p = sa.get(2..).unwrap_or(&[]);
            j.key(false, b"path");
            if p.first() == Some(&0) {
                // Abstract socket: shown as "@name".
                let mut buf = [0u8; 128];
                buf[0] = b'@';
                let name = p.get(1..).unwrap_or(&[]);
                let n = name.len().min(127);
                buf[1..1 + n].copy_from_slice(&name[..n]);
                j.string(&buf[..1 + n]);
            } else {
                let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
                j.string(p.get(..end).unwrap_or(&[]));
            }
        }
        16 => {
            j.string(b"netlink");
            if let Some(p) = sa.get(4..8) {
                num(j, false, b"pid", u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as i64);
            }
        }
        17 => {
            // struct sockaddr_ll: protocol (big-endian), interface index.
            j.string(b"packet");
            if let (Some(p), Some(i)) = (sa.get(2..4), sa.get(4..8)) {
                num(j, false, b"protocol", u16::from_be_bytes([p[0], p[1]]) as i64);
                num(j, false, b"ifindex", i32::from_le_bytes([i[0], i[1], i[2], i[3]]) as i64);
            }
        }
        other => j.u64(other as u64),
    }
}

/// Dotted quad; returns its length.
pub fn ipv4(a: &[u8], out: &mut [u8; 16]) -> usize {
    let mut n = 0;
    for (i, &b) in a.iter().take(4).enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        let mut tmp = [0u8; 20];
        let d = crate::json::fmt_u64(b as u64, &mut tmp);
        for &c in &tmp[20 - d..] {
            out[n] = c;
            n += 1;
        }
    }
    n
}

/// RFC 5952 text form (longest run of zero groups as `::`); returns its length.
pub fn ipv6(a: &[u8], out: &mut [u8; 40]) -> usize {
    let mut g = [0u16; 8];
    for (i, slot) in g.iter_mut().enumerate() {
        *slot = match a.get(2 * i..2 * i + 2) {
            Some(p) => u16::from_be_bytes([p[0], p[1]]),
            None => 0,
        };
    }
    let (mut best, mut best_len, mut i) = (8, 0, 0);
    while i < 8 {
        if g[i] == 0 {
            let s = i;
            while i < 8 && g[i] == 0 {
                i += 1;
            }
            if i - s > best_len && i - s >= 2 {
                best = s;
                best_len = i - s;
            }
        } else {
            i += 1;
        }
    }
    let mut n = 0;
    let mut put = |c: u8, n: &mut usize| {
        if let Some(s) = out.get_mut(*n) {
            *s = c;
            *n += 1;
        }
    };
    let mut k = 0;
    while k < 8 {
        if k == best {
            put(b':', &mut n);
            if k == 0 {
                put(b':', &mut n);
            }
            k += best_len;
            continue;
        }
        let v = g[k];
        let mut started = false;
        for shift in [12u16, 8, 4, 0] {
            let d = ((v >> shift) & 15) as usize;
            if d != 0 || started || shift == 0 {
                started = true;
                put(b"0123456789abcdef"[d], &mut n);
            }
        }
        if k != 7 {
            put(b':', &mut n);
        }
        k += 1;
    }
    n
}

const PROT: &[(u64, &[u8])] = &[(1, b"PROT_READ"), (2, b"PROT_WRITE"), (4, b"PROT_EXEC")];
const MAP: &[(u64, &[u8])] = &[
    (0x01, b"MAP_SHARED"),
    (0x02, b"MAP_PRIVATE"),
    (0x10, b"MAP_FIXED"),
    (0x20, b"MAP_ANONYMOUS"),
    (0x100, b"MAP_GROWSDOWN"),
    (0x2000, b"MAP_LOCKED"),
    (0x4000, b"MAP_NORESERVE"),
    (0x8000, b"MAP_POPULATE"),
    (0x10_0000, b"MAP_FIXED_NOREPLACE"),
];
const OPEN: &[(u64, &[u8])] = &[
    (0o100, b"O_CREAT"),
    (0o200, b"O_EXCL"),
    (0o400, b"O_NOCTTY"),
    (0o1000, b"O_TRUNC"),
    (0o2000, b"O_APPEND"),
    (0o4000, b"O_NONBLOCK"),
    (0o200000, b"O_DIRECTORY"),
    (0o400000, b"O_NOFOLLOW"),
    (0o2000000, b"O_CLOEXEC"),
    (0o20200000, b"O_TMPFILE"),
];

/// `"key":"A|B|0x40"`: known bits by name, the rest in hex; `PROT_NONE`-style 0 as "0".
fn bits(j: &mut Json, key: &[u8], v: u64, names: &[(u64, &[u8])]) {
    bits_key(j, false, key, v, names);
}

fn bits_key(j: &mut Json, first: bool, key: &[u8], v: u64, names: &[(u64, &[u8])]) {
    j.key(first, key);
    let mut buf = [0u8; 200];
    let n = bits_text(v, names, &mut buf, None);
    j.string(buf.get(..n).unwrap_or(&[]));
}

fn bits_text(v: u64, names: &[(u64, &[u8])], buf: &mut [u8; 200], lead: Option<&[u8]>) -> usize {
    let mut n = 0;
    let mut rest = v;
    let mut put = |s: &[u8], n: &mut usize| {
        if *n > 0 {
            if let Some(b) = buf.get_mut(*n) {
                *b = b'|';
                *n += 1;
            }
        }
        for &c in s {
            if let Some(b) = buf.get_mut(*n) {
                *b = c;
                *n += 1;
            }
        }
    };
    if let Some(l) = lead {
        put(l, &mut n);
    }
    for &(bit, name) in names {
        if rest & bit == bit && bit != 0 {
            put(name, &mut n);
            rest &= !bit;
        }
    }
    if rest != 0 || n == 0 {
        let mut hex = [0u8; 18];
        hex[0] = b'0';
        hex[1] = b'x';
        let mut k = 2;
        let mut started = false;
        for shift in (0..16).rev() {
            let d = ((rest >> (shift * 4)) & 15) as usize;
            if d != 0 || started || shift == 0 {
                started = true;
                hex[k] = b"0123456789abcdef"[d];
                k += 1;
            }
        }
        put(&hex[..k], &mut n);
    }
    n
}

fn open_flags(j: &mut Json, flags: u64, mode: u64) {
    let acc: &[u8] = match flags & 3 {
        0 => b"O_RDONLY",
        1 => b"O_WRONLY",
        2 => b"O_RDWR",
        _ => b"O_ACCMODE",
    };
    j.key(false, b"flags");
    let mut buf = [0u8; 200];
    let n = bits_text(flags & !3, OPEN, &mut buf, Some(acc));
    // bits_text prints "0x0" for an empty rest only when nothing else was printed; the
    // access mode is always printed first, so no stray 0x0 appears.
    j.string(buf.get(..n).unwrap_or(&[]));
    if flags & 0o100 != 0 || flags & 0o20200000 == 0o20200000 {
        octal(j, b"mode", mode);
    }
}

fn octal(j: &mut Json, key: &[u8], mode: u64) {
    j.key(false, key);
    let m = mode & 0o7777;
    // Four octal digits, as chmod takes them: "0644", "4755".
    let digits =
        [b'0' + ((m >> 9) & 7) as u8, b'0' + ((m >> 6) & 7) as u8, b'0' + ((m >> 3) & 7) as u8, b'0' + (m & 7) as u8];
    j.string(&digits);
}

fn ptrace_name(req: u32) -> Option<&'static [u8]> {
    Some(match req {
        0 => b"PTRACE_TRACEME",
        1 => b"PTRACE_PEEKTEXT",
        2 => b"PTRACE_PEEKDATA",
        4 => b"PTRACE_POKETEXT",
        5 => b"PTRACE_POKEDATA",
        7 => b"PTRACE_CONT",
        8 => b"PTRACE_KILL",
        12 => b"PTRACE_GETREGS",
        13 => b"PTRACE_SETREGS",
        16 => b"PTRACE_ATTACH",
        17 => b"PTRACE_DETACH",
        0x4206 => b"PTRACE_SEIZE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text() {
        let mut o = [0u8; 16];
        let n = ipv4(&[127, 0, 0, 1], &mut o);
        assert_eq!(&o[..n], b"127.0.0.1");
        let mut o = [0u8; 40];
        let mut a = [0u8; 16];
        a[15] = 1;
        let n = ipv6(&a, &mut o);
        assert_eq!(&o[..n], b"::1");
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        let n = ipv6(&a, &mut o);
        assert_eq!(&o[..n], b"2001:db8::1:0:0:1");
        let n = ipv6(&[0u8; 16], &mut o);
        assert_eq!(&o[..n], b"::");
    }

    #[test]
    fn flag_text() {
        let mut b = [0u8; 200];
        let n = bits_text(5, PROT, &mut b, None);
        assert_eq!(&b[..n], b"PROT_READ|PROT_EXEC");
        let n = bits_text(0, PROT, &mut b, None);
        assert_eq!(&b[..n], b"0x0");
        let n = bits_text(0o1100, OPEN, &mut b, Some(b"O_WRONLY"));
        assert_eq!(&b[..n], b"O_WRONLY|O_CREAT|O_TRUNC");
        let n = bits_text(0x80_0000_0000, PROT, &mut b, None);
        assert_eq!(&b[..n], b"0x8000000000");
    }
}
