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
            let mut sa = [0u8; 128];
            let len = (f.arg(2) as u32 as usize).min(128);
            let got = mem::read(f.arg(1), sa.get_mut(..len).unwrap_or(&mut []));
            sockaddr(j, sa.get(..got).unwrap_or(&[]));
        }
        Shape::Listen => {
            num(j, true, b"fd", f.arg(0) as i32 as i64);
            num(j, false, b"backlog", f.arg(1) as i32 as i64);
            let mut sa = [0u8; 128];
            if let Ok(n) = crate::sys::getsockname(f.arg(0) as i32, &mut sa) {
                sockaddr(j, sa.get(..n).unwrap_or(&[]));
            }
        }
        Shape::Open => {
            str_arg(j, true, b"path", f.arg(0));
            open_flags(j, f.arg(1), f.arg(2));
        }
        Shape::OpenAt => {
            num(j, true, b"dirfd", f.arg(0) as i32 as i64);
            str_arg(j, false, b"path", f.arg(1));
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
            num(j, true, b"dirfd", f.arg(0) as i32 as i64);
            str_arg(j, false, b"path", f.arg(1));
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
            num(j, true, b"dirfd", f.arg(0) as i32 as i64);
            str_arg(j, false, b"path", f.arg(1));
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
        Shape::ProcessVmWritev => num(j, true, b"pid", f.arg(0) as i32 as i64),
    }
    j.close(b'}', opened);
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
