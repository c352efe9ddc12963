//! The monitored functions: one table that the rewriter, the policy compiler
//! and the runtime all read, so an API number means the same thing everywhere.

/// Behaviour classes, as they appear in events and in policy `apis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Class {
    Exec = 0,
    Network = 1,
    File = 2,
    Memory = 3,
    Library = 4,
    Debug = 5,
    /// New processes and threads without a new program: `fork`, `vfork`,
    /// `clone`, `clone3` (caught at `syscall` instructions).
    Process = 6,
    /// What could undo the hooks: changing, replacing or discarding the
    /// memory they live in, or writing the process's memory through the
    /// kernel (`runtime/src/guard.rs`; caught at `syscall` instructions).
    Tamper = 7,
    /// Changing who the process is: user and group ids, supplementary
    /// groups, capabilities, and the `prctl` operations that change
    /// privileges or dumpability.
    Privilege = 8,
    /// Changing the system or the process's view of it: mounts, root
    /// folders, namespaces, kernel modules, eBPF, kexec, reboot,
    /// performance counters.
    Admin = 9,
    /// Rings of `io_uring`, through which the kernel opens, connects and
    /// sends on the program's behalf with no system call of its own.
    IoUring = 10,
}

impl Class {
    pub const ALL: [Class; 11] = [
        Class::Exec,
        Class::Network,
        Class::File,
        Class::Memory,
        Class::Library,
        Class::Debug,
        Class::Process,
        Class::Tamper,
        Class::Privilege,
        Class::Admin,
        Class::IoUring,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Exec => "exec",
            Class::Network => "network",
            Class::File => "file",
            Class::Memory => "memory",
            Class::Library => "library",
            Class::Debug => "debug",
            Class::Process => "process",
            Class::Tamper => "tamper",
            Class::Privilege => "privilege",
            Class::Admin => "admin",
            Class::IoUring => "io_uring",
        }
    }

    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// Whether the class's APIs are system calls only (no libc function of
    /// that name is hooked).
    pub fn syscall_only(self) -> bool {
        matches!(self, Class::Process | Class::Tamper)
    }
}

/// How a function's arguments are laid out (`a0`..`a5` are the integer
/// argument registers, in order), which decides how the runtime decodes them
/// and how a refused call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `system(command)`
    System,
    /// `popen(command, mode)`
    Popen,
    /// `execve(path, argv, envp)` and the `execv*` family.
    Execv,
    /// `execl(path, arg0, ..., NULL)`: argv is the variadic tail.
    Execl,
    /// `fexecve(fd, argv, envp)`
    Fexecve,
    /// `posix_spawn(pid, path, actions, attr, argv, envp)`
    Spawn,
    /// `connect`/`bind(fd, addr, len)`
    Sockaddr,
    /// `listen(fd, backlog)`
    Listen,
    /// `open(path, flags, mode)`, `__open_2(path, flags)`
    Open,
    /// `openat(dirfd, path, flags, mode)`
    OpenAt,
    /// `fopen(path, mode)`
    Fopen,
    /// `creat(path, mode)`
    Creat,
    /// `mmap(addr, len, prot, flags, fd, off)`
    Mmap,
    /// `mprotect(addr, len, prot)`
    Mprotect,
    /// `dlopen(path, flags)`, `dlmopen(lmid, path, flags)` uses [`Shape::Dlmopen`].
    Dlopen,
    Dlmopen,
    /// `ptrace(request, pid, addr, data)`
    Ptrace,
    /// `execveat(dirfd, path, argv, envp, flags)` (system call only).
    ExecveAt,
    /// `fork()`, `vfork()`: no arguments (system calls only).
    NoArgs,
    /// `clone(flags, stack, ...)` (system call only).
    Clone,
    /// `clone3(args, size)`: the flags are the first field of `*args`.
    Clone3,
    /// `openat2(dirfd, path, how, size)`: `how` holds flags and mode.
    OpenAt2,
    /// `munmap(addr, length)`
    Munmap,
    /// `mremap(old, old_size, new_size, flags, new_addr)`
    Mremap,
    /// `madvise(addr, length, advice)`
    Madvise,
    /// `pkey_mprotect(addr, length, prot, pkey)`
    PkeyMprotect,
    /// `shmat(shmid, addr, flags)`
    Shmat,
    /// `process_vm_readv`/`process_vm_writev(pid, local_iov, liovcnt,
    /// remote_iov, riovcnt, flags)`
    ProcessVm,
    /// `sendto(fd, buf, len, flags, addr, addrlen)`
    SendTo,
    /// `sendmsg(fd, msg, flags)`
    SendMsg,
    /// `sendmmsg(fd, msgvec, vlen, flags)`
    SendMmsg,
    /// `socket(domain, type, protocol)`
    Socket,
    /// `accept(fd, addr, addrlen)`
    Accept,
    /// `accept4(fd, addr, addrlen, flags)`
    Accept4,
    /// `unlink(path)`, `rmdir`, `chroot`, `umount`: one path.
    Path,
    /// `rename(old, new)`, `link(old, new)`
    TwoPaths,
    /// `renameat(olddirfd, old, newdirfd, new)`
    TwoPathsAt,
    /// `renameat2` and `linkat`: `flags` fifth.
    TwoPathsAtFlags,
    /// `symlink(target, linkpath)`
    Symlink,
    /// `symlinkat(target, newdirfd, linkpath)`
    SymlinkAt,
    /// `unlinkat(dirfd, path, flags)`
    UnlinkAt,
    /// `chmod(path, mode)`
    Chmod,
    /// `fchmod(fd, mode)`
    Fchmod,
    /// `fchmodat(dirfd, path, mode, flags)`
    FchmodAt,
    /// `chown(path, uid, gid)`, `lchown`
    Chown,
    /// `fchown(fd, uid, gid)`
    Fchown,
    /// `fchownat(dirfd, path, uid, gid, flags)`
    FchownAt,
    /// `truncate(path, length)`
    Truncate,
    /// `ftruncate(fd, length)`
    Ftruncate,
    /// `mknod(path, mode, dev)`
    Mknod,
    /// `mknodat(dirfd, path, mode, dev)`
    MknodAt,
    /// `setuid(id)`, `setgid`, `setfsuid`, `setfsgid`
    SetId,
    /// `setreuid(real, effective)`, `setregid`
    SetReId,
    /// `setresuid(real, effective, saved)`, `setresgid`
    SetResId,
    /// `setgroups(size, list)`
    SetGroups,
    /// `capset(header, data)`
    Capset,
    /// `prctl(option, arg2, ...)`
    Prctl,
    /// `mount(source, target, fstype, flags, data)`
    Mount,
    /// `umount2(target, flags)`
    Umount2,
    /// `pivot_root(new_root, put_old)`
    PivotRoot,
    /// `unshare(flags)`
    Unshare,
    /// `setns(fd, nstype)`
    Setns,
    /// `init_module(image, length, params)`
    InitModule,
    /// `finit_module(fd, params, flags)`
    FinitModule,
    /// `delete_module(name, flags)`
    DeleteModule,
    /// `bpf(cmd, attr, size)`
    Bpf,
    /// `kexec_load(entry, nr_segments, segments, flags)`
    KexecLoad,
    /// `kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline, flags)`
    KexecFileLoad,
    /// `reboot(howto)` (libc) or `reboot(magic, magic2, cmd, arg)` (the
    /// system call): told apart by the first magic number.
    Reboot,
    /// `perf_event_open(attr, pid, cpu, group_fd, flags)`
    PerfEventOpen,
    /// `move_mount(from_dirfd, from_path, to_dirfd, to_path, flags)`
    MoveMount,
    /// `memfd_create(name, flags)`
    MemfdCreate,
    /// `io_uring_setup(entries, params)`
    IoUringSetup,
}

/// How a refused call reports failure, matching the real function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Returns -1 and sets `errno` to `EPERM`.
    MinusOneErrno,
    /// Returns NULL and sets `errno` to `EPERM`.
    NullErrno,
    /// Returns the error number `EPERM` (`posix_spawn`).
    ErrorNumber,
}

impl Shape {
    pub fn failure(self) -> Failure {
        match self {
            Shape::Popen | Shape::Fopen | Shape::Dlopen | Shape::Dlmopen => Failure::NullErrno,
            Shape::Spawn => Failure::ErrorNumber,
            _ => Failure::MinusOneErrno,
        }
    }
}

macro_rules! apis {
    ($( $id:ident = $name:literal, $class:ident, $shape:ident; )*) => {
        /// Every monitored function, numbered from 0.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        #[allow(non_camel_case_types)]
        pub enum ApiId { $($id),* }

        /// The exec APIs that take a program's name and search `PATH` for it.
pub const BY_NAME: [ApiId; 4] = [ApiId::execvp, ApiId::execvpe, ApiId::execlp, ApiId::posix_spawnp];

/// Whether `api` makes the calls of an exec by name's `PATH` search
/// (`execve`: the function and the system call).
pub fn searched_by(api: ApiId) -> bool {
    api == ApiId::execve
}

impl ApiId {
            pub const ALL: &'static [ApiId] = &[$(ApiId::$id),*];

            pub fn name(self) -> &'static str {
                match self { $(ApiId::$id => $name),* }
            }

            #[inline]
            pub fn class(self) -> Class {
                match self { $(ApiId::$id => Class::$class),* }
            }

            #[inline]
            pub fn shape(self) -> Shape {
                match self { $(ApiId::$id => Shape::$shape),* }
            }

            /// Index of the argument register holding `prot`, for the
            /// `memory` APIs, whose calls are only of interest when they ask
            /// for `PROT_EXEC` (the `tamper` ones have their own test).
            #[inline]
            pub fn prot_exec_filter(self) -> Option<usize> {
                match (self.class(), self.shape()) {
                    (Class::Memory, Shape::Mmap | Shape::Mprotect) => Some(2),
                    _ => None,
                }
            }

            pub fn from_u16(n: u16) -> Option<ApiId> {
                const ALL: &[ApiId] = &[$(ApiId::$id),*];
                // A plain loop: no table of pointers, so no relocation in the runtime image.
                let mut i = 0;
                while i < ALL.len() {
                    if ALL[i] as u16 == n {
                        return Some(ALL[i]);
                    }
                    i += 1;
                }
                None
            }

            pub fn from_name(name: &str) -> Option<ApiId> {
                match name { $($name => Some(ApiId::$id),)* _ => None }
            }
        }
    };
}

apis! {
    system = "system", Exec, System;
    popen = "popen", Exec, Popen;
    execve = "execve", Exec, Execv;
    execv = "execv", Exec, Execv;
    execvp = "execvp", Exec, Execv;
    execvpe = "execvpe", Exec, Execv;
    execl = "execl", Exec, Execl;
    execle = "execle", Exec, Execl;
    execlp = "execlp", Exec, Execl;
    fexecve = "fexecve", Exec, Fexecve;
    posix_spawn = "posix_spawn", Exec, Spawn;
    posix_spawnp = "posix_spawnp", Exec, Spawn;
    connect = "connect", Network, Sockaddr;
    bind = "bind", Network, Sockaddr;
    listen = "listen", Network, Listen;
    open = "open", File, Open;
    open64 = "open64", File, Open;
    open_2 = "__open_2", File, Open;
    open64_2 = "__open64_2", File, Open;
    openat = "openat", File, OpenAt;
    openat64 = "openat64", File, OpenAt;
    openat_2 = "__openat_2", File, OpenAt;
    openat64_2 = "__openat64_2", File, OpenAt;
    fopen = "fopen", File, Fopen;
    fopen64 = "fopen64", File, Fopen;
    creat = "creat", File, Creat;
    creat64 = "creat64", File, Creat;
    mmap = "mmap", Memory, Mmap;
    mmap64 = "mmap64", Memory, Mmap;
    mprotect = "mprotect", Memory, Mprotect;
    dlopen = "dlopen", Library, Dlopen;
    dlmopen = "dlmopen", Library, Dlmopen;
    ptrace = "ptrace", Debug, Ptrace;
    execveat = "execveat", Exec, ExecveAt;
    fork = "fork", Process, NoArgs;
    vfork = "vfork", Process, NoArgs;
    clone = "clone", Process, Clone;
    clone3 = "clone3", Process, Clone3;
    openat2 = "openat2", File, OpenAt2;
    tamper_mprotect = "tamper.mprotect", Tamper, Mprotect;
    tamper_pkey_mprotect = "tamper.pkey_mprotect", Tamper, PkeyMprotect;
    tamper_mmap = "tamper.mmap", Tamper, Mmap;
    tamper_munmap = "tamper.munmap", Tamper, Munmap;
    tamper_mremap = "tamper.mremap", Tamper, Mremap;
    tamper_madvise = "tamper.madvise", Tamper, Madvise;
    tamper_shmat = "tamper.shmat", Tamper, Shmat;
    tamper_open = "tamper.open", Tamper, Open;
    tamper_openat = "tamper.openat", Tamper, OpenAt;
    tamper_openat2 = "tamper.openat2", Tamper, OpenAt2;
    tamper_process_vm_writev = "tamper.process_vm_writev", Tamper, ProcessVm;
    sendto = "sendto", Network, SendTo;
    sendmsg = "sendmsg", Network, SendMsg;
    sendmmsg = "sendmmsg", Network, SendMmsg;
    socket = "socket", Network, Socket;
    accept = "accept", Network, Accept;
    accept4 = "accept4", Network, Accept4;
    rename = "rename", File, TwoPaths;
    renameat = "renameat", File, TwoPathsAt;
    renameat2 = "renameat2", File, TwoPathsAtFlags;
    unlink = "unlink", File, Path;
    unlinkat = "unlinkat", File, UnlinkAt;
    rmdir = "rmdir", File, Path;
    link = "link", File, TwoPaths;
    linkat = "linkat", File, TwoPathsAtFlags;
    symlink = "symlink", File, Symlink;
    symlinkat = "symlinkat", File, SymlinkAt;
    chmod = "chmod", File, Chmod;
    fchmod = "fchmod", File, Fchmod;
    fchmodat = "fchmodat", File, FchmodAt;
    chown = "chown", File, Chown;
    fchown = "fchown", File, Fchown;
    lchown = "lchown", File, Chown;
    fchownat = "fchownat", File, FchownAt;
    truncate = "truncate", File, Truncate;
    truncate64 = "truncate64", File, Truncate;
    ftruncate = "ftruncate", File, Ftruncate;
    ftruncate64 = "ftruncate64", File, Ftruncate;
    mknod = "mknod", File, Mknod;
    mknodat = "mknodat", File, MknodAt;
    setuid = "setuid", Privilege, SetId;
    setgid = "setgid", Privilege, SetId;
    setreuid = "setreuid", Privilege, SetReId;
    setregid = "setregid", Privilege, SetReId;
    setresuid = "setresuid", Privilege, SetResId;
    setresgid = "setresgid", Privilege, SetResId;
    setfsuid = "setfsuid", Privilege, SetId;
    setfsgid = "setfsgid", Privilege, SetId;
    setgroups = "setgroups", Privilege, SetGroups;
    capset = "capset", Privilege, Capset;
    prctl = "prctl", Privilege, Prctl;
    mount = "mount", Admin, Mount;
    umount = "umount", Admin, Path;
    umount2 = "umount2", Admin, Umount2;
    pivot_root = "pivot_root", Admin, PivotRoot;
    chroot = "chroot", Admin, Path;
    unshare = "unshare", Admin, Unshare;
    setns = "setns", Admin, Setns;
    init_module = "init_module", Admin, InitModule;
    finit_module = "finit_module", Admin, FinitModule;
    delete_module = "delete_module", Admin, DeleteModule;
    bpf = "bpf", Admin, Bpf;
    kexec_load = "kexec_load", Admin, KexecLoad;
    kexec_file_load = "kexec_file_load", Admin, KexecFileLoad;
    reboot = "reboot", Admin, Reboot;
    perf_event_open = "perf_event_open", Admin, PerfEventOpen;
    move_mount = "move_mount", Admin, MoveMount;
    process_vm_readv = "process_vm_readv", Debug, ProcessVm;
    process_vm_writev = "process_vm_writev", Debug, ProcessVm;
    memfd_create = "memfd_create", Exec, MemfdCreate;
    io_uring_setup = "io_uring_setup", IoUring, IoUringSetup;
}

impl ApiId {
    /// Whether the API is a system call that no libc wraps in a function of
    /// its name (`bpf`, `kexec_load`, ...): caught at `syscall`
    /// instructions only, and a function of that name, which some other
    /// library may define with its own meaning, is never hooked.
    pub fn no_function(self) -> bool {
        matches!(
            self,
            ApiId::finit_module
                | ApiId::bpf
                | ApiId::kexec_load
                | ApiId::kexec_file_load
                | ApiId::perf_event_open
                | ApiId::io_uring_setup
        )
    }

    /// Whether functions of this name are hooked (PLT, symbol, entry
    /// layers), not only its system call.
    pub fn function_hooked(self) -> bool {
        !self.class().syscall_only() && !self.no_function()
    }
}

/// The monitored Linux x86-64 system calls and the API each one reports as.
/// A system call shares its API (and so its policy rules) with the libc
/// function of the same name. The `tamper` ones report only when they would
/// touch what the hooks rely on (see [`TAMPER_SYSCALLS`]).
pub const SYSCALLS: [(u64, ApiId); 79] = [
    (2, ApiId::open),
    (9, ApiId::mmap),
    (10, ApiId::mprotect),
    (11, ApiId::tamper_munmap),
    (25, ApiId::tamper_mremap),
    (28, ApiId::tamper_madvise),
    (30, ApiId::tamper_shmat),
    (311, ApiId::process_vm_writev),
    (329, ApiId::tamper_pkey_mprotect),
    (42, ApiId::connect),
    (49, ApiId::bind),
    (50, ApiId::listen),
    (56, ApiId::clone),
    (57, ApiId::fork),
    (58, ApiId::vfork),
    (59, ApiId::execve),
    (85, ApiId::creat),
    (101, ApiId::ptrace),
    (257, ApiId::openat),
    (322, ApiId::execveat),
    (435, ApiId::clone3),
    (437, ApiId::openat2),
    (44, ApiId::sendto),
    (46, ApiId::sendmsg),
    (307, ApiId::sendmmsg),
    (41, ApiId::socket),
    (43, ApiId::accept),
    (288, ApiId::accept4),
    (82, ApiId::rename),
    (264, ApiId::renameat),
    (316, ApiId::renameat2),
    (87, ApiId::unlink),
    (263, ApiId::unlinkat),
    (84, ApiId::rmdir),
    (86, ApiId::link),
    (265, ApiId::linkat),
    (88, ApiId::symlink),
    (266, ApiId::symlinkat),
    (90, ApiId::chmod),
    (91, ApiId::fchmod),
    (268, ApiId::fchmodat),
    (452, ApiId::fchmodat),
    (92, ApiId::chown),
    (93, ApiId::fchown),
    (94, ApiId::lchown),
    (260, ApiId::fchownat),
    (76, ApiId::truncate),
    (77, ApiId::ftruncate),
    (133, ApiId::mknod),
    (259, ApiId::mknodat),
    (105, ApiId::setuid),
    (106, ApiId::setgid),
    (113, ApiId::setreuid),
    (114, ApiId::setregid),
    (117, ApiId::setresuid),
    (119, ApiId::setresgid),
    (122, ApiId::setfsuid),
    (123, ApiId::setfsgid),
    (116, ApiId::setgroups),
    (126, ApiId::capset),
    (157, ApiId::prctl),
    (165, ApiId::mount),
    (166, ApiId::umount2),
    (155, ApiId::pivot_root),
    (161, ApiId::chroot),
    (272, ApiId::unshare),
    (308, ApiId::setns),
    (175, ApiId::init_module),
    (313, ApiId::finit_module),
    (176, ApiId::delete_module),
    (321, ApiId::bpf),
    (246, ApiId::kexec_load),
    (320, ApiId::kexec_file_load),
    (169, ApiId::reboot),
    (298, ApiId::perf_event_open),
    (429, ApiId::move_mount),
    (310, ApiId::process_vm_readv),
    (319, ApiId::memfd_create),
    (425, ApiId::io_uring_setup),
];

/// Every system call that can tamper, and the `tamper` API it then reports
/// as: those of [`SYSCALLS`] whose API is a `tamper` one, and the `memory`
/// and `file` ones that can tamper too (an `mprotect` that makes a page of
/// libc writable, an `open` of `/proc/self/mem` for writing).
pub const TAMPER_SYSCALLS: [(u64, ApiId); 11] = [
    (2, ApiId::tamper_open),
    (9, ApiId::tamper_mmap),
    (10, ApiId::tamper_mprotect),
    (11, ApiId::tamper_munmap),
    (25, ApiId::tamper_mremap),
    (28, ApiId::tamper_madvise),
    (30, ApiId::tamper_shmat),
    (257, ApiId::tamper_openat),
    (311, ApiId::tamper_process_vm_writev),
    (329, ApiId::tamper_pkey_mprotect),
    (437, ApiId::tamper_openat2),
];

/// The `tamper` API a system call of API `api` reports as when it tampers.
pub fn tamper_of(api: ApiId) -> Option<ApiId> {
    let n = syscall_nr(api)?;
    TAMPER_SYSCALLS.iter().find(|(t, _)| *t == n).map(|(_, a)| *a)
}

/// Bit `n` set: system call `n` (below 512) is monitored. `dfp_sys_hook`
/// tests it before saving anything, so the many unmonitored calls made
/// through sites whose number is only known at run time cost a few
/// instructions.
pub static SYSCALL_MASK: [u64; 8] = {
    let mut m = [0u64; 8];
    let mut i = 0;
    while i < SYSCALLS.len() {
        let n = SYSCALLS[i].0;
        m[(n / 64) as usize] |= 1 << (n % 64);
        i += 1;
    }
    m
};

/// Whether a system call of number `nr` may start a process or a thread
/// (`clone`, `fork`, `vfork`, `clone3`, in either ABI), whose child must arm
/// the backstop before it runs the program's code.
pub fn may_spawn(nr: u64) -> bool {
    matches!(nr as u32 & !0x4000_0000, 56 | 57 | 58 | 435)
}

/// The API a system call number reports as, if it is monitored. Numbers
/// with the x32 bit (0x40000000) are the x32 ABI's, which a 64-bit process
/// can also make where the kernel has it: the same calls, except those x32
/// numbers from 512 (execve 520, ptrace 521, sendmsg 518, kexec_load 528,
/// sendmmsg 538, process_vm_readv 539, process_vm_writev 540, execveat 545),
/// whose 64-bit numbers x32 does not have.
#[inline]
pub fn syscall_api(nr: u64) -> Option<ApiId> {
    const X32: u64 = 0x4000_0000;
    // The kernel reads the number as a 32-bit int: the upper half of %rax is
    // ignored (0x1_0000003b is execve), and a negative one fails with ENOSYS.
    let nr = nr as u32 as u64;
    if nr & 0x8000_0000 != 0 {
        return None;
    }
    let n = if nr & X32 != 0 { nr & !X32 } else { nr };
    // A match, not a search of SYSCALLS: this runs for every system call made
    // through a site whose number is only known at run time.
    Some(match n {
        2 => ApiId::open,
        9 => ApiId::mmap,
        10 => ApiId::mprotect,
        11 => ApiId::tamper_munmap,
        25 => ApiId::tamper_mremap,
        28 => ApiId::tamper_madvise,
        30 => ApiId::tamper_shmat,
        42 => ApiId::connect,
        49 => ApiId::bind,
        50 => ApiId::listen,
        56 => ApiId::clone,
        57 => ApiId::fork,
        58 => ApiId::vfork,
        59 => ApiId::execve,
        85 => ApiId::creat,
        101 => ApiId::ptrace,
        257 => ApiId::openat,
        322 => ApiId::execveat,
        435 => ApiId::clone3,
        329 => ApiId::tamper_pkey_mprotect,
        437 => ApiId::openat2,
        // (The numbers x32 gives calls of its own: 64-bit only.)
        46 if nr & X32 == 0 => ApiId::sendmsg,
        246 if nr & X32 == 0 => ApiId::kexec_load,
        307 if nr & X32 == 0 => ApiId::sendmmsg,
        310 if nr & X32 == 0 => ApiId::process_vm_readv,
        311 if nr & X32 == 0 => ApiId::process_vm_writev,
        44 => ApiId::sendto,
        41 => ApiId::socket,
        43 => ApiId::accept,
        288 => ApiId::accept4,
        82 => ApiId::rename,
        264 => ApiId::renameat,
        316 => ApiId::renameat2,
        87 => ApiId::unlink,
        263 => ApiId::unlinkat,
        84 => ApiId::rmdir,
        86 => ApiId::link,
        265 => ApiId::linkat,
        88 => ApiId::symlink,
        266 => ApiId::symlinkat,
        90 => ApiId::chmod,
        91 => ApiId::fchmod,
        268 => ApiId::fchmodat,
        452 => ApiId::fchmodat,
        92 => ApiId::chown,
        93 => ApiId::fchown,
        94 => ApiId::lchown,
        260 => ApiId::fchownat,
        76 => ApiId::truncate,
        77 => ApiId::ftruncate,
        133 => ApiId::mknod,
        259 => ApiId::mknodat,
        105 => ApiId::setuid,
        106 => ApiId::setgid,
        113 => ApiId::setreuid,
        114 => ApiId::setregid,
        117 => ApiId::setresuid,
        119 => ApiId::setresgid,
        122 => ApiId::setfsuid,
        123 => ApiId::setfsgid,
        116 => ApiId::setgroups,
        126 => ApiId::capset,
        157 => ApiId::prctl,
        165 => ApiId::mount,
        166 => ApiId::umount2,
        155 => ApiId::pivot_root,
        161 => ApiId::chroot,
        272 => ApiId::unshare,
        308 => ApiId::setns,
        175 => ApiId::init_module,
        313 => ApiId::finit_module,
        176 => ApiId::delete_module,
        321 => ApiId::bpf,
        320 => ApiId::kexec_file_load,
        169 => ApiId::reboot,
        298 => ApiId::perf_event_open,
        429 => ApiId::move_mount,
        319 => ApiId::memfd_create,
        425 => ApiId::io_uring_setup,
        518 if nr & X32 != 0 => ApiId::sendmsg,
        520 if nr & X32 != 0 => ApiId::execve,
        521 if nr & X32 != 0 => ApiId::ptrace,
        528 if nr & X32 != 0 => ApiId::kexec_load,
        538 if nr & X32 != 0 => ApiId::sendmmsg,
        539 if nr & X32 != 0 => ApiId::process_vm_readv,
        540 if nr & X32 != 0 => ApiId::process_vm_writev,
        545 if nr & X32 != 0 => ApiId::execveat,
        _ => return None,
    })
}

/// The system call number of an API, if it is also a monitored system call.
pub fn syscall_nr(api: ApiId) -> Option<u64> {
    SYSCALLS.iter().find(|(_, a)| *a == api).map(|(n, _)| *n)
}

pub const API_COUNT: usize = ApiId::ALL.len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_is_dense_and_names_round_trip() {
        for (i, api) in ApiId::ALL.iter().enumerate() {
            assert_eq!(*api as usize, i);
            assert_eq!(ApiId::from_u16(i as u16), Some(*api));
            assert_eq!(ApiId::from_name(api.name()), Some(*api));
        }
        assert_eq!(ApiId::from_u16(API_COUNT as u16), None);
        assert_eq!(ApiId::from_name("printf"), None);
    }

    #[test]
    fn classes_round_trip() {
        for c in Class::ALL {
            assert_eq!(Class::from_name(c.name()), Some(c));
        }
        assert_eq!(ApiId::posix_spawn.shape().failure(), Failure::ErrorNumber);
        assert_eq!(ApiId::fopen.shape().failure(), Failure::NullErrno);
        assert_eq!(ApiId::mmap.prot_exec_filter(), Some(2));
        assert_eq!(ApiId::tamper_mmap.prot_exec_filter(), None);
    }

    #[test]
    fn system_calls_map_both_ways() {
        for (nr, api) in SYSCALLS {
            assert_eq!(syscall_api(nr), Some(api));
            // (fchmodat has two numbers: fchmodat2 takes flags.)
            assert_eq!(syscall_nr(api).and_then(syscall_api), Some(api));
        }
        assert_eq!(syscall_nr(ApiId::fchmodat), Some(268));
        for (x32, api) in [(518, ApiId::sendmsg), (538, ApiId::sendmmsg), (540, ApiId::process_vm_writev)] {
            assert_eq!(syscall_api(0x4000_0000 | x32), Some(api));
            assert_eq!(syscall_api(0x4000_0000 | syscall_nr(api).unwrap()), None);
        }
        assert_eq!(syscall_api(0), None); // read
        assert_eq!(syscall_api(0x4000_0000 | 520), Some(ApiId::execve)); // x32
        assert_eq!(syscall_api(0x4000_0000 | 42), Some(ApiId::connect));
        assert_eq!(syscall_api(520), None);
        assert_eq!(syscall_api(u64::MAX), None);
        // Only the low 32 bits count, as for the kernel.
        assert_eq!(syscall_api(0x1_0000_003b), Some(ApiId::execve));
        assert_eq!(syscall_api(0xffff_ffff_4000_003b), Some(ApiId::execve));
        assert_eq!(syscall_api(0x8000_003b), None);
        assert_eq!(syscall_api(ApiId::system as u64), None);
        assert_eq!(syscall_nr(ApiId::system), None);
        assert_eq!(ApiId::clone.class(), Class::Process);
        for n in 0..512u64 {
            let bit = SYSCALL_MASK[(n / 64) as usize] >> (n % 64) & 1 == 1;
            assert_eq!(bit, syscall_api(n).is_some(), "system call {n}");
        }
    }
}
