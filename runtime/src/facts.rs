//! The facts of one call that rules match on (see `rules`), read from the
//! call's arguments and the program's memory: its destination address and
//! port, its paths as the kernel resolves them, the program and command
//! line it runs, the access it wants, and its calling module.
//!
//! Paths are resolved as the kernel walks them: relative ones against the
//! current directory (`getcwd`) or the `dirfd`'s folder (`/proc/self/fd`),
//! `.` and `..` removed, and every symbolic link followed (`readlink` on each
//! component; the last one only where the call itself follows it). A part
//! that does not exist is taken as written. Everything lives in a
//! [`Scratch`] slot outside the stack: hooks run on small stacks too.

use crate::apis::{ApiId, Shape};
use crate::arch::x86_64::HookFrame;
use crate::contract::{match_key, Contract};
use crate::event::Origin;
use crate::rules::{self, Facts, Ip};
use crate::{mem, sys};

/// The longest path resolved (`PATH_MAX`).
const PATH_MAX: usize = 4096;
/// A path buffer: `PATH_MAX` bytes and a NUL.
const PATH_BUF: usize = PATH_MAX + 1;
/// The longest command line matched.
const COMMAND_MAX: usize = 4096;
/// Most symbolic links followed in one path (the kernel's limit).
const MAX_LINKS: u32 = 40;
const AT_FDCWD: i64 = -100;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_SYMLINK_FOLLOW: u64 = 0x400;
const AT_EMPTY_PATH: u64 = 0x1000;
const O_NOFOLLOW: u64 = 0o400000;
const ENOENT: i64 = 2;

/// Room for one call's facts.
#[repr(C)]
pub struct Scratch {
    paths: [[u8; PATH_BUF]; 2],
    command: [u8; COMMAND_MAX],
    caller: [u8; 256],
    rest: [u8; PATH_BUF],
    link: [u8; PATH_BUF],
}

/// What gathering found besides the facts.
#[derive(Clone, Copy, Default)]
pub struct Found<'a> {
    pub facts: Facts<'a>,
    /// The program an exec call names does not exist: the kernel would
    /// fail the call with ENOENT (it is refused so, undecided, unreported).
    pub no_program: bool,
    /// An exec call by name (`execvp("git")`) that rules need the program of:
    /// not decided here; the `execve` calls of its `PATH` search are.
    pub searched: bool,
}

/// The facts of a call of `api` (arguments in `f`, made at `origin`) for the
/// matcher keys `keys`, into `s`.
pub(crate) fn gather<'s>(
    c: &Contract,
    api: ApiId,
    f: &HookFrame,
    origin: Origin,
    keys: u8,
    s: &'s mut Scratch,
) -> Found<'s> {
    let Scratch { paths: [p0, p1], command, caller, rest, link } = s;
    let mut found = Found::default();
    let mut w = Walker { rest, link };
    let shape = api.shape();
    if keys & (match_key::CALLER | match_key::CALLER_MAIN) != 0 {
        let (len, main) = crate::event::caller_module(c, origin, f, caller);
        found.facts.main = main;
        found.facts.caller = caller.get(..len).filter(|m| !m.is_empty());
    }
    // (An API is of one of these kinds at most.)
    if rules::has_address(api) {
        if keys & (match_key::IP | match_key::PORT | match_key::PATH) != 0 {
            address(api, f, &mut found.facts, p0, &mut w);
        }
    } else if rules::runs_program(api) {
        if keys & (match_key::PATH | match_key::COMMAND) != 0 {
            program(api, f, keys, &mut found, p0, command, &mut w);
        }
    } else if api.class() == crate::apis::Class::File {
        if keys & (match_key::PATH | match_key::ACCESS) != 0 {
            file(api, f, &mut found.facts, p0, p1, &mut w);
        }
    } else if matches!(shape, Shape::Dlopen | Shape::Dlmopen) && keys & match_key::PATH != 0 {
        let name = if shape == Shape::Dlopen { f.arg(0) } else { f.arg(1) };
        // A name without a slash is searched for by the loader: matched as given.
        let n = w.user_path(name);
        found.facts.paths[0] = match n {
            Some(n) if !w.rest[..n].contains(&b'/') => {
                p0[..n].copy_from_slice(&w.rest[..n]);
                Some(&p0[..n])
            }
            Some(n) => w.resolve(AT_FDCWD, n, true, p0).map(|(len, _)| &p0[..len]),
            None => None,
        };
        // (`dlopen(NULL)` names the program itself: no path.)
        if found.facts.paths[0].is_none() && name != 0 {
            found.facts.unknown |= match_key::PATH;
        }
    }
    found
}

/// The destination (or own) address of a network call.
fn address<'s>(api: ApiId, f: &HookFrame, facts: &mut Facts<'s>, p0: &'s mut [u8; PATH_BUF], w: &mut Walker) {
    const ADDRESS: u8 = match_key::IP | match_key::PORT | match_key::PATH;
    let shape = api.shape();
    let mut sa = [0u8; 128];
    let len = match shape {
        Shape::Sockaddr => user_bytes(f.arg(1), f.arg(2), &mut sa),
        Shape::SendTo => user_bytes(f.arg(4), f.arg(5), &mut sa),
        Shape::SendMsg => msg_name(f.arg(1), &mut sa),
        Shape::SendMmsg => match mmsg_name(f.arg(1), f.arg(2) as u32 as u64, &mut sa) {
            Some(len) => len,
            None => {
                // Messages to several destinations: no one address to match.
                facts.unknown |= ADDRESS;
                return;
            }
        },
        _ => sys::getsockname(f.arg(0) as i32, &mut sa).unwrap_or(0),
    };
    let sa = &sa[..len.min(128)];
    // A destination of "any address" reaches this host (the kernel routes
    // it to loopback); a socket's own "any address" (`bind`, `listen`,
    // `accept`) is every address.
    let destination = !matches!(api, ApiId::bind | ApiId::listen | ApiId::accept | ApiId::accept4);
    let port = sa.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]]));
    match sa.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]])) {
        Some(2) => match sa.get(4..8) {
            Some(a) => {
                let mut a = [a[0], a[1], a[2], a[3]];
                if destination && a == [0; 4] {
                    a = [127, 0, 0, 1];
                }
                facts.ip = Some(Ip::from_v4(a));
                facts.port = port;
            }
            None => facts.unknown |= ADDRESS,
        },
        Some(10) => match sa.get(8..24).and_then(|a| <[u8; 16]>::try_from(a).ok()) {
            Some(a) => {
                // (Mapped first: `::ffff:0.0.0.0` is 0.0.0.0.)
                let mut ip = Ip::from_v6(a);
                if destination && ip.addr == [0; 16] {
                    ip = if ip.v6 {
                        Ip::from_v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
                    } else {
                        Ip::from_v4([127, 0, 0, 1])
                    };
                }
                facts.ip = Some(ip);
                facts.port = port;
            }
            None => facts.unknown |= ADDRESS,
        },
        Some(1) => {
            let name = sa.get(2..).unwrap_or(&[]);
            if name.first() == Some(&0) {
                // An abstract socket: `@name`.
                let name = &name[1..];
                let n = name.len().min(PATH_BUF - 1);
                p0[0] = b'@';
                p0[1..=n].copy_from_slice(&name[..n]);
                facts.paths[0] = Some(&p0[..=n]);
            } else {
                let n = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                w.rest[..n].copy_from_slice(&name[..n]);
                facts.paths[0] = w.resolve(AT_FDCWD, n, true, p0).map(|(len, _)| &p0[..len]);
                if facts.paths[0].is_none() {
                    facts.unknown |= match_key::PATH;
                }
            }
        }
        // Nothing read: unknown. (Another family has no address rules match.)
        None => facts.unknown |= ADDRESS,
        Some(_) => {}
    }
}

/// The one destination the messages of a `sendmmsg` name, into `out`: its
/// length (0: none names one); None when two name different ones.
fn mmsg_name(vec: u64, n: u64, out: &mut [u8; 128]) -> Option<usize> {
    // (The kernel sends at most UIO_MAXIOV messages.)
    let n = n.min(1024);
    let mut len = 0;
    let mut at = 0u64;
    let mut other = [0u8; 128];
    while at < n {
        let Some(i) = crate::filter::first_named(vec.wrapping_add(at * 64), n - at) else { break };
        let index = at + i;
        if len == 0 {
            len = msg_name(vec.wrapping_add(index * 64), out);
        } else {
            let k = msg_name(vec.wrapping_add(index * 64), &mut other);
            if other[..k] != out[..len] {
                return None;
            }
        }
        at = index + 1;
    }
    Some(len)
}

/// The program an exec call runs and its command line.
fn program<'s>(
    api: ApiId,
    f: &HookFrame,
    keys: u8,
    found: &mut Found<'s>,
    p0: &'s mut [u8; PATH_BUF],
    command: &'s mut [u8; COMMAND_MAX],
    w: &mut Walker,
) {
    const SHELL: &[u8] = b"/bin/sh";
    let shape = api.shape();
    // (dirfd, path, fd when the program is a descriptor's)
    let (dirfd, path, fd) = match shape {
        Shape::System | Shape::Popen => (AT_FDCWD, 0, None),
        Shape::Execv | Shape::Execl => (AT_FDCWD, f.arg(0), None),
        Shape::Spawn => (AT_FDCWD, f.arg(1), None),
        Shape::ExecveAt if f.arg(4) & AT_EMPTY_PATH != 0 && is_empty(f.arg(1)) => (AT_FDCWD, 0, Some(f.arg(0) as i32)),
        Shape::ExecveAt => (f.arg(0) as i32 as i64, f.arg(1), None),
        _ => (AT_FDCWD, 0, Some(f.arg(0) as i32)),
    };
    // The program, resolved (also for `command`: whether it is a shell).
    let by_name = matches!(api, ApiId::execvp | ApiId::execvpe | ApiId::execlp | ApiId::posix_spawnp);
    let mut name_only = 0;
    let resolved = if matches!(shape, Shape::System | Shape::Popen) {
        // The shell libc runs, resolved as any program is.
        w.rest[..SHELL.len()].copy_from_slice(SHELL);
        w.resolve(AT_FDCWD, SHELL.len(), true, p0)
    } else if let Some(fd) = fd {
        fd_path(fd, p0).map(|n| (n, true))
    } else {
        match w.user_path(path) {
            Some(n) if by_name && !w.rest[..n].contains(&b'/') => {
                // Found by a `PATH` search: the `execve` calls of the search
                // are decided (as this API), each with its program.
                found.searched = keys & match_key::PATH != 0;
                name_only = n;
                p0[..n].copy_from_slice(&w.rest[..n]);
                None
            }
            // A relative program with file actions, which may change the
            // child's folder (`addchdir`): not the path walked here.
            Some(_) if shape == Shape::Spawn && f.arg(2) != 0 && w.rest[0] != b'/' => None,
            Some(n) => w.resolve(dirfd, n, true, p0),
            None => None,
        }
    };
    let program: &[u8] = match resolved {
        Some((len, exists)) => {
            // Missing as the walk saw it (a `/proc/self/fd/N` of a memfd
            // looks so): the kernel says.
            found.no_program = !exists && sys::access(dirfd, path) == Err(ENOENT);
            &p0[..len]
        }
        None if name_only > 0 => &p0[..name_only],
        None => {
            found.facts.unknown |= match_key::PATH;
            &[]
        }
    };
    let shell = SHELLS.contains(&program.rsplit(|&b| b == b'/').next().unwrap_or(&[]));
    if keys & match_key::COMMAND != 0 {
        let len = match shape {
            Shape::System | Shape::Popen => user_string(f.arg(0), command),
            Shape::Execl => command_line(
                |i| if i < 5 { f.arg(i + 1) } else { mem::read_u64(f.stack_arg_addr(i - 5)).unwrap_or(0) },
                shell,
                command,
            ),
            _ => {
                let argv = match shape {
                    Shape::Spawn => f.arg(4),
                    Shape::ExecveAt => f.arg(2),
                    _ => f.arg(1),
                };
                command_line(|i| mem::read_u64(argv.wrapping_add(8 * i as u64)).unwrap_or(0), shell, command)
            }
        };
        found.facts.command = Some(&command[..len]);
    }
    if keys & match_key::PATH != 0 && name_only == 0 {
        found.facts.paths[0] = resolved.map(|_| program);
    }
}

/// The shells whose `-c` command is a command line's command.
const SHELLS: &[&[u8]] = &[b"sh", b"bash", b"dash", b"ash", b"zsh", b"ksh", b"mksh", b"busybox"];

/// The command line of an argv (`arg(i)` its i-th pointer, 0 at the end)
/// into `out`: its strings joined by spaces; for a `shell` run with `-c`
/// (`sh -c CMD`, what `system` and `popen` run), the shell command `CMD`.
fn command_line(arg: impl Fn(usize) -> u64, shell: bool, out: &mut [u8; COMMAND_MAX]) -> usize {
    let mut flag = [0u8; 4];
    if shell && user_string(arg(1), &mut flag) == 2 && &flag[..2] == b"-c" {
        let mut k = 2;
        let mut dashes = [0u8; 4];
        if user_string(arg(2), &mut dashes) == 2 && &dashes[..2] == b"--" {
            k = 3;
        }
        if arg(k) != 0 {
            return user_string(arg(k), out);
        }
    }
    let mut len = 0;
    for i in 0..256 {
        let p = arg(i);
        if p == 0 {
            break;
        }
        if i > 0 {
            if len >= out.len() {
                break;
            }
            out[len] = b' ';
            len += 1;
        }
        len += user_string(p, &mut out[len..]);
    }
    len
}

/// The paths and access of a file call.
fn file<'s>(
    api: ApiId,
    f: &HookFrame,
    facts: &mut Facts<'s>,
    p0: &'s mut [u8; PATH_BUF],
    p1: &'s mut [u8; PATH_BUF],
    w: &mut Walker,
) {
    let a = |i| f.arg(i);
    let at = |i: usize| a(i) as i32 as i64;
    // (dirfd, path, follow) of the first path and of a second one; or a descriptor.
    enum Named {
        Paths((i64, u64, bool), Option<(i64, u64, bool)>),
        Fd(i32),
    }
    let access = access_of(api, f);
    let named = match api.shape() {
        Shape::Open => Named::Paths((AT_FDCWD, a(0), a(1) & O_NOFOLLOW == 0), None),
        Shape::OpenAt => Named::Paths((at(0), a(1), a(2) & O_NOFOLLOW == 0), None),
        Shape::OpenAt2 => {
            const RESOLVE_IN_ROOT: u64 = 0x10;
            let flags = mem::read_u64(a(2)).unwrap_or(0);
            // Resolved inside the dirfd as its root: not the path walked here.
            if mem::read_u64(a(2).wrapping_add(16)).is_none_or(|resolve| resolve & RESOLVE_IN_ROOT != 0) {
                facts.access = access;
                facts.unknown |= match_key::PATH;
                return;
            }
            Named::Paths((at(0), a(1), flags & O_NOFOLLOW == 0), None)
        }
        Shape::Fopen => Named::Paths((AT_FDCWD, a(0), true), None),
        Shape::Creat | Shape::Chmod | Shape::Truncate => Named::Paths((AT_FDCWD, a(0), true), None),
        Shape::Chown => Named::Paths((AT_FDCWD, a(0), api == ApiId::chown), None),
        Shape::Path | Shape::Mknod => Named::Paths((AT_FDCWD, a(0), false), None),
        Shape::TwoPaths => Named::Paths((AT_FDCWD, a(0), false), Some((AT_FDCWD, a(1), false))),
        Shape::TwoPathsAt => Named::Paths((at(0), a(1), false), Some((at(2), a(3), false))),
        Shape::TwoPathsAtFlags => {
            let follow = matches!(api, ApiId::linkat) && a(4) & AT_SYMLINK_FOLLOW != 0;
            Named::Paths((at(0), a(1), follow), Some((at(2), a(3), false)))
        }
        Shape::Symlink => Named::Paths((AT_FDCWD, a(1), false), None),
        Shape::SymlinkAt => Named::Paths((at(1), a(2), false), None),
        Shape::UnlinkAt | Shape::MknodAt => Named::Paths((at(0), a(1), false), None),
        Shape::FchmodAt => Named::Paths((at(0), a(1), true), None),
        Shape::FchownAt if a(4) & AT_EMPTY_PATH != 0 && is_empty(a(1)) => Named::Fd(a(0) as i32),
        Shape::FchownAt => Named::Paths((at(0), a(1), a(4) & AT_SYMLINK_NOFOLLOW == 0), None),
        _ => Named::Fd(a(0) as i32),
    };
    facts.access = access;
    match named {
        Named::Fd(fd) => facts.paths[0] = fd_path(fd, p0).map(|n| &p0[..n]),
        Named::Paths(first, second) => {
            let mut one = |(dirfd, path, follow): (i64, u64, bool), out: &'s mut [u8; PATH_BUF]| {
                let n = w.user_path(path)?;
                w.resolve(dirfd, n, follow, out).map(|(len, _)| &out[..len])
            };
            facts.paths[0] = one(first, p0);
            if let Some(second) = second {
                facts.paths[1] = one(second, p1);
                if facts.paths[1].is_none() {
                    facts.unknown |= match_key::PATH;
                }
            }
        }
    }
    if facts.paths[0].is_none() {
        facts.unknown |= match_key::PATH;
    }
}

/// The [`crate::contract::access`] a file call of `api` wants: from its
/// flags (registers, `openat2`'s `how`, `fopen`'s mode), or what the call
/// changes. Needs no scratch room.
pub(crate) fn access_of(api: ApiId, f: &HookFrame) -> u8 {
    if api.class() != crate::apis::Class::File {
        return 0;
    }
    match api.shape() {
        Shape::Open => rules::open_access(f.arg(1)),
        Shape::OpenAt => rules::open_access(f.arg(2)),
        // (Unreadable: as wanting everything.)
        Shape::OpenAt2 => rules::open_access(mem::read_u64(f.arg(2)).unwrap_or(0o1102)),
        Shape::Fopen => {
            let mut mode = [0u8; 8];
            let n = user_string(f.arg(1), &mut mode);
            rules::open_access(rules::fopen_flags(&mode[..n]))
        }
        Shape::Creat => rules::open_access(0o1101),
        _ => rules::change_access(api),
    }
}

/// The path of descriptor `fd` (from `/proc/self/fd`) into `out`; None when
/// it has none (a socket, a pipe) or /proc is not there.
fn fd_path(fd: i32, out: &mut [u8; PATH_BUF]) -> Option<usize> {
    if fd < 0 {
        return None;
    }
    let mut name = [0u8; 48];
    let n =
        sys::readlink(crate::guard::numbered(b"/proc/self/fd/", fd as u64, &mut name), &mut out[..PATH_MAX]).ok()?;
    (out.first() == Some(&b'/') && n < PATH_MAX).then_some(n)
}

/// Whether the string at `ptr` is empty (or unreadable): `AT_EMPTY_PATH`
/// then names the descriptor itself.
fn is_empty(ptr: u64) -> bool {
    user_string(ptr, &mut [0u8; 1]) == 0
}

/// `len` bytes at `ptr` (at most `out`'s length); how many were read.
pub(crate) fn user_bytes(ptr: u64, len: u64, out: &mut [u8; 128]) -> usize {
    if ptr == 0 {
        return 0;
    }
    let want = (len as u32 as usize).min(out.len());
    mem::read(ptr, &mut out[..want])
}

/// The destination a `struct msghdr` names.
pub(crate) fn msg_name(msg: u64, out: &mut [u8; 128]) -> usize {
    match (mem::read_u64(msg), mem::read_u32(msg.wrapping_add(8))) {
        (Some(name), Some(len)) if len != 0 => user_bytes(name, len as u64, out),
        _ => 0,
    }
}

/// The NUL-terminated string at `ptr` into `out` (cut at its length),
/// read in chunks that do not cross a page; its length.
pub fn user_string(ptr: u64, out: &mut [u8]) -> usize {
    if ptr == 0 {
        return 0;
    }
    let mut len = 0;
    while len < out.len() {
        let at = ptr.wrapping_add(len as u64);
        let want = ((4096 - (at & 4095)) as usize).min(out.len() - len);
        let got = mem::read(at, &mut out[len..len + want]);
        if let Some(end) = out[len..len + got].iter().position(|&b| b == 0) {
            return len + end;
        }
        len += got;
        if got < want {
            break;
        }
    }
    len
}

/// Path resolution's buffers: the path still to walk, and a link's target.
struct Walker<'b> {
    rest: &'b mut [u8; PATH_BUF],
    link: &'b mut [u8; PATH_BUF],
}

impl Walker<'_> {
    /// The program's path string at `ptr` into `rest`; its length (None for
    /// NULL, unreadable, empty or longer than `PATH_MAX`).
    fn user_path(&mut self, ptr: u64) -> Option<usize> {
        let n = user_string(ptr, &mut self.rest[..PATH_MAX]);
        (n > 0 && n < PATH_MAX).then_some(n)
    }

    /// The path in `rest[..len]`, relative to `dirfd`, resolved into `out`:
    /// its length, and whether it exists. Symbolic links are followed, the
    /// last component's only when `follow`.
    fn resolve(&mut self, dirfd: i64, len: usize, follow: bool, out: &mut [u8; PATH_BUF]) -> Option<(usize, bool)> {
        // The base: the root, the current directory or the dirfd's folder
        // (`out` holds the resolved prefix, without a trailing slash; the
        // root is empty).
        let mut n = 0;
        if self.rest.first() != Some(&b'/') {
            n = if dirfd == AT_FDCWD { getcwd(out)? } else { fd_path(dirfd as i32, out)? };
            if n == 1 {
                n = 0;
            }
        }
        let mut links = 0;
        let (mut at, mut end) = (0, len);
        let mut exists = true;
        while at < end {
            let start = at;
            while at < end && self.rest[at] != b'/' {
                at += 1;
            }
            let comp = start..at;
            // A slash after the last component makes the kernel follow it.
            let slash = at < end;
            while at < end && self.rest[at] == b'/' {
                at += 1;
            }
            match &self.rest[comp.clone()] {
                b"" | b"." => continue,
                b".." => {
                    while n > 0 && out[n - 1] != b'/' {
                        n -= 1;
                    }
                    n = n.saturating_sub(1);
                    continue;
                }
                _ => {}
            }
            let before = n;
            let grown = n + 1 + comp.len();
            if grown >= PATH_MAX {
                return None;
            }
            out[n] = b'/';
            out[n + 1..grown].copy_from_slice(&self.rest[comp]);
            n = grown;
            let last = at >= end;
            if !exists || (last && !follow && !slash) {
                continue;
            }
            out[n] = 0;
            match sys::readlink(&out[..=n], &mut self.link[..PATH_MAX]) {
                Ok(k) if k < PATH_MAX => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    // The walk goes on in the link's target, then what was left.
                    let left = end - at;
                    if k + 1 + left >= PATH_MAX {
                        return None;
                    }
                    self.link[k] = b'/';
                    self.link[k + 1..k + 1 + left].copy_from_slice(&self.rest[at..end]);
                    end = k + 1 + left;
                    self.rest[..end].copy_from_slice(&self.link[..end]);
                    at = 0;
                    n = if self.rest[0] == b'/' { 0 } else { before };
                }
                Ok(_) => return None,
                // Not a link: go on.
                Err(e) if e == sys::EINVAL => {}
                // Missing (or unreadable): the rest is taken as written.
                Err(e) => exists = e != ENOENT && exists,
            }
        }
        if n == 0 {
            out[0] = b'/';
            n = 1;
        }
        Some((own_proc(out, n), exists))
    }
}

/// `/proc/PID...` of this very process as `/proc/self...` (what
/// `/proc/self` resolves to, named the same in every run); the new length.
fn own_proc(out: &mut [u8; PATH_BUF], n: usize) -> usize {
    const PROC: &[u8] = b"/proc/";
    // Where `/proc/ID` ends when `out` starts with it.
    let ends = |id: u64| {
        let mut digits = [0u8; 20];
        let len = crate::json::fmt_u64(id, &mut digits);
        let end = PROC.len() + len;
        let named =
            n >= end && out.get(..PROC.len()) == Some(PROC) && out.get(PROC.len()..end) == digits.get(20 - len..);
        (named && (n == end || out[end] == b'/')).then_some(end)
    };
    // (`/proc/TID` of this thread is its process's too.)
    let Some(end) = ends(sys::getpid()).or_else(|| ends(sys::gettid())) else { return n };
    // "/proc/" + "self" + the rest, moved left (a pid has 1 to 7 digits: the
    // rest moves right by up to 3 bytes only for 1-digit pids).
    let rest = n - end;
    let to = PROC.len() + 4;
    if to + rest >= PATH_BUF {
        return n;
    }
    out.copy_within(end..n, to);
    out[PROC.len()..to].copy_from_slice(b"self");
    to + rest
}

/// The current directory into `out`; its length.
fn getcwd(out: &mut [u8; PATH_BUF]) -> Option<usize> {
    let n = sys::getcwd(&mut out[..PATH_MAX]).ok()?;
    // The kernel counts the NUL; "(unreachable)/..." is not a path.
    let n = n.checked_sub(1)?;
    (out.first() == Some(&b'/')).then_some(n)
}

/// Scratch room for 64 calls at once (see `pool`).
static SCRATCH: crate::pool::Pool<64> = crate::pool::Pool::new(core::mem::size_of::<Scratch>().next_multiple_of(4096));

/// A [`Scratch`] slot, held until dropped.
pub struct ScratchSlot(crate::pool::Slot<64>);

impl ScratchSlot {
    pub fn scratch(&mut self) -> &mut Scratch {
        let bytes = self.0.bytes();
        debug_assert!(bytes.len() >= core::mem::size_of::<Scratch>());
        // SAFETY: the slot is page aligned and at least size_of::<Scratch>()
        // bytes (the pool's size is rounded up from it), held by this slot
        // alone and borrowed uniquely through `&mut self`; Scratch is byte
        // arrays only, valid for any contents.
        unsafe { &mut *(bytes.as_mut_ptr() as *mut Scratch) }
    }
}

/// A free scratch slot; None when all 64 are taken.
pub fn take() -> Option<ScratchSlot> {
    SCRATCH.take().map(ScratchSlot)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::os::unix::fs::symlink;
    use std::string::String;

    /// `path` resolved by [`Walker::resolve`].
    fn resolved(path: &str, follow: bool) -> Option<(String, bool)> {
        let mut rest = [0u8; PATH_BUF];
        let mut link = [0u8; PATH_BUF];
        let mut out = [0u8; PATH_BUF];
        rest[..path.len()].copy_from_slice(path.as_bytes());
        let mut w = Walker { rest: &mut rest, link: &mut link };
        let (n, exists) = w.resolve(AT_FDCWD, path.len(), follow, &mut out)?;
        Some((String::from_utf8_lossy(&out[..n]).into_owned(), exists))
    }

    /// What the kernel says `path` is (`realpath`).
    fn kernel(path: &str) -> String {
        format!("{}", std::fs::canonicalize(path).unwrap().display())
    }

    #[test]
    fn resolution_agrees_with_the_kernel() {
        let d = format!("/tmp/dfpatch-facts-{}", std::process::id());
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(format!("{d}/a/deep")).unwrap();
        std::fs::create_dir_all(format!("{d}/b")).unwrap();
        std::fs::write(format!("{d}/b/x"), "x").unwrap();
        std::fs::write(format!("{d}/a/file"), "f").unwrap();
        symlink(format!("{d}/a"), format!("{d}/abs")).unwrap();
        symlink("a", format!("{d}/rel")).unwrap();
        symlink("../b/x", format!("{d}/a/up")).unwrap();
        symlink("deep/..", format!("{d}/a/dotdot")).unwrap();
        symlink("rel/../b", format!("{d}/chain")).unwrap();
        symlink("loop2", format!("{d}/loop1")).unwrap();
        symlink("loop1", format!("{d}/loop2")).unwrap();
        for path in [
            "abs/file",
            "rel/file",
            "a/up",
            "rel/up",
            "abs/dotdot/file",
            "chain/x",
            "abs/../b/x",
            "rel/deep/../../b/./x",
            "a//deep/",
            ".",
        ] {
            let full = format!("{d}/{path}");
            assert_eq!(resolved(&full, true), Some((kernel(&full), true)), "{path}");
        }
        // The last link not followed: the link itself, in its resolved folder.
        assert_eq!(resolved(&format!("{d}/rel/up"), false), Some((format!("{}/up", kernel(&format!("{d}/a"))), true)));
        // A part that does not exist: as written after it.
        let missing = resolved(&format!("{d}/abs/missing/../x"), true);
        assert_eq!(missing, Some((format!("{}/x", kernel(&format!("{d}/a"))), false)));
        // A trailing slash follows the last link.
        assert_eq!(resolved(&format!("{d}/rel/"), false), Some((kernel(&format!("{d}/a")), true)));
        let thread = resolved("/proc/thread-self/status", true).map(|r| r.0).unwrap_or_default();
        assert!(thread.starts_with("/proc/self/task/") && thread.ends_with("/status"), "{thread}");
        // A loop of links: no path.
        assert_eq!(resolved(&format!("{d}/loop1/x"), true), None);
        assert_eq!(resolved("/", true), Some(("/".into(), true)));
        assert_eq!(resolved("/..", true), Some(("/".into(), true)));
        let own = format!("/proc/{}/status", std::process::id());
        assert_eq!(resolved(&own, true).map(|r| r.0), Some("/proc/self/status".into()));
        assert_eq!(resolved("/proc/self/status", true).map(|r| r.0), Some("/proc/self/status".into()));
        let _ = std::fs::remove_dir_all(&d);
    }
}
