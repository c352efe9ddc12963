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
}

impl Class {
    pub const ALL: [Class; 8] = [
        Class::Exec,
        Class::Network,
        Class::File,
        Class::Memory,
        Class::Library,
        Class::Debug,
        Class::Process,
        Class::Tamper,
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
    /// `process_vm_writev(pid, local_iov, liovcnt, remote_iov, riovcnt, flags)`
    ProcessVmWritev,
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
    tamper_process_vm_writev = "tamper.process_vm_writev", Tamper, ProcessVmWritev;
}

/// The monitored Linux x86-64 system calls and the API each one reports as.
/// A system call shares its API (and so its policy rules) with the libc
/// function of the same name. The `tamper` ones report only when they would
/// touch what the hooks rely on (see [`TAMPER_SYSCALLS`]).
pub const SYSCALLS: [(u64, ApiId); 22] = [
    (2, ApiId::open),
    (9, ApiId::mmap),
    (10, ApiId::mprotect),
    (11, ApiId::tamper_munmap),
    (25, ApiId::tamper_mremap),
    (28, ApiId::tamper_madvise),
    (30, ApiId::tamper_shmat),
    (311, ApiId::tamper_process_vm_writev),
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
/// can also make where the kernel has it: the same calls, except execve,
/// ptrace and execveat, which x32 numbers 520, 521 and 545.
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
        311 if nr & X32 == 0 => ApiId::tamper_process_vm_writev,
        520 if nr & X32 != 0 => ApiId::execve,
        521 if nr & X32 != 0 => ApiId::ptrace,
        540 if nr & X32 != 0 => ApiId::tamper_process_vm_writev,
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
            assert_eq!(syscall_nr(api), Some(nr));
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
