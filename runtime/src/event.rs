//! Events: one JSON object per intercepted call, built on the stack or in a
//! pool buffer and written to the sink with one `write`: what was called, what
//! was decided, the caller (module, offset, symbol; the first caller outside
//! libc for libc's internal paths), the stack, and the decoded arguments.

use crate::apis::ApiId;
use crate::arch::x86_64::HookFrame;
use crate::contract::{hook_kind, Contract};
use crate::json::Json;
use crate::libplans::Degraded;
use crate::ptable::{action_name, PolicyTable};
use crate::sink::sink_fd;
use crate::start::{bias, exe_path};
use crate::{decode, libplans, loader, mem, sys};
use core::sync::atomic::{AtomicU64, Ordering};

/// Where the intercepted call was made.
#[derive(Clone, Copy)]
pub(crate) enum Origin {
    /// A call instruction that returns here.
    Returns(u64),
    /// This instruction (a `syscall`), with the program's stack pointer and
    /// frame pointer there.
    At(u64, u64, u64),
}

/// Builds one event on the stack and writes it with one `write`. On an
/// alternate signal stack with little room left (they are often 8 KiB), the
/// event is built in a smaller buffer and cut to fit, and with under 4 KiB
/// left it is not written at all: overflowing the program's signal stack
/// would crash it. (The policy is still applied.)
pub(crate) fn emit(event: &Event) {
    let room = sys::altstack_room();
    if room.is_some_and(|r| r < 4096) {
        lose(1);
        return;
    }
    let Some((fd, regular)) = sink_fd(event.p) else {
        lose(1);
        return;
    };
    // A buffer from the pool keeps the stack small: hooks also run on small
    // stacks nobody can measure (musl's posix_spawn child has about 5 KiB).
    if let Some(mut slot) = EVENT_BUFFERS.take() {
        event.write_to(slot.bytes(), fd, regular);
        return;
    }
    match room {
        Some(r) if r < 16 * 1024 => event.write::<1024>(fd, regular),
        _ => event.write::<4096>(fd, regular),
    }
}

/// Events this process did not write since the last one it did (no sink,
/// a write that failed, no room): the next event written says how many
/// (`"lost"`). The process id in the high half, the count in the low: a
/// `fork` child does not repeat its parent's count.
static LOST: AtomicU64 = AtomicU64::new(0);

/// Counts `n` events lost by this process.
fn lose(n: u64) {
    let pid = sys::getpid() << 32;
    let _ = LOST.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        Some(if v >> 32 == pid >> 32 { v.wrapping_add(n) } else { pid | (n & 0xffff_ffff) })
    });
}

/// This process's lost events, taken (the count starts again at 0).
fn take_lost() -> u64 {
    let pid = sys::getpid() << 32;
    let v = LOST.swap(pid, Ordering::AcqRel);
    if v >> 32 == pid >> 32 {
        v & 0xffff_ffff
    } else {
        0
    }
}

/// Event buffers outside the stack (see `pool`).
static EVENT_BUFFERS: crate::pool::Pool<16> = crate::pool::Pool::new(4096);

/// One intercepted call, as it is reported.
pub(crate) struct Event<'a> {
    pub c: &'a Contract,
    pub p: &'a PolicyTable<'a>,
    pub api: ApiId,
    /// The call's registers (a `syscall` site's, seen as a call's).
    pub f: &'a HookFrame,
    pub origin: Origin,
    /// A [`hook_kind`]: the event's `layer`.
    pub layer: u8,
    /// What was done ([`crate::contract::action`]) and what the policy
    /// wanted (they differ in monitor mode).
    pub done: u8,
    pub wanted: u8,
    /// The rule that decided, or [`crate::contract::RULE_DEFAULT`].
    pub rule: u16,
}

impl Event<'_> {
    /// At most N bytes (4096 is PIPE_BUF: one write to a pipe stays whole).
    #[inline(never)]
    fn write<const N: usize>(&self, fd: i32, regular: bool) {
        let mut buf = [0u8; N];
        self.write_to(&mut buf, fd, regular);
    }

    fn write_to(&self, buf: &mut [u8], fd: i32, regular: bool) {
        let mut j = Json::new(buf);
        if !j.open(b'{') {
            lose(1);
            return;
        }
        head(&mut j, self.api.name().as_bytes(), self.api.class().name().as_bytes());
        j.key(false, b"action");
        j.string(action_name(self.done).as_bytes());
        if self.wanted != self.done {
            j.key(false, b"policy_action");
            j.string(action_name(self.wanted).as_bytes());
        }
        j.key(false, b"rule");
        j.string(self.p.rule_name(self.rule));
        j.key(false, b"mode");
        j.string(self.p.mode_name().as_bytes());
        let lost = take_lost();
        if lost > 0 {
            j.key(false, b"lost");
            j.u64(lost);
        }
        j.key(false, b"layer");
        j.string(match self.layer {
            hook_kind::GOT => b"plt",
            hook_kind::DETOUR => b"entry",
            hook_kind::SYMBOL => b"symbol",
            hook_kind::BACKSTOP => b"backstop",
            _ => b"syscall",
        });
        caller(self.c, &mut j, self.origin, self.f);
        stack(&mut j, self.origin, self.f);
        decode::args(&mut j, self.api.shape(), self.f);
        matched(self.c, &mut j, self.api, self.f, self.origin);
        if !finish(j, fd, regular) {
            lose(lost + 1);
        }
    }
}

/// `"match":{...}`: what rules match this call on (see `facts`): its
/// resolved `path` (and `new_path`), `access`, `command`, `ip` and `port`;
/// left out when the call has none of them. (The caller is `caller`.)
#[inline(never)]
fn matched(c: &Contract, j: &mut Json, api: ApiId, f: &HookFrame, origin: Origin) {
    use crate::contract::match_key;
    let keys = crate::rules::keys_of(api) & !match_key::CALLER;
    if keys == 0 {
        return;
    }
    let Some(mut slot) = crate::facts::take() else { return };
    let found = crate::facts::gather(c, api, f, origin, keys, slot.scratch());
    let facts = found.facts;
    if facts.paths[0].is_none() && facts.command.is_none() && facts.ip.is_none() && facts.access == 0 {
        return;
    }
    j.key(false, b"match");
    let opened = j.open(b'{');
    let mut first = true;
    let mut key = |j: &mut Json, name: &[u8]| {
        j.key(first, name);
        first = false;
    };
    for (path, name) in facts.paths.iter().zip([&b"path"[..], b"new_path"]) {
        if let Some(path) = path {
            key(j, name);
            j.string(path);
        }
    }
    if facts.access != 0 {
        key(j, b"access");
        let inner = j.open(b'[');
        for (i, (_, name)) in crate::rules::ACCESS_NAMES.iter().filter(|(bit, _)| facts.access & bit != 0).enumerate() {
            if j.element(i == 0) {
                j.string(name.as_bytes());
            }
        }
        j.close(b']', inner);
    }
    if let Some(command) = facts.command {
        key(j, b"command");
        j.string(command);
    }
    if let Some(ip) = facts.ip {
        key(j, b"ip");
        if ip.v6 {
            let mut out = [0u8; 40];
            let n = decode::ipv6(&ip.addr, &mut out);
            j.string(out.get(..n).unwrap_or(&[]));
        } else {
            let mut out = [0u8; 16];
            let n = decode::ipv4(&ip.addr[..4], &mut out);
            j.string(out.get(..n).unwrap_or(&[]));
        }
        if let Some(port) = facts.port {
            key(j, b"port");
            j.u64(port as u64);
        }
    }
    j.close(b'}', opened);
}

/// The first fields of every event: `time`, `pid`, `tid`, `exe`, `api`, `class`.
fn head(j: &mut Json, api: &[u8], class: &[u8]) {
    j.key(true, b"time");
    let (s, ns) = sys::realtime();
    let mut t = [0u8; 30];
    crate::time::rfc3339(s, ns, &mut t);
    j.string(&t);
    j.key(false, b"pid");
    j.u64(sys::getpid());
    j.key(false, b"tid");
    j.u64(sys::gettid());
    j.key(false, b"exe");
    j.string(exe_path());
    j.key(false, b"api");
    j.string(api);
    j.key(false, b"class");
    j.string(class);
}

/// `"api":"dfpatch.degraded"`: a library plan start-up did not apply in
/// full, so a layer is off for that library (whatever the policy: never
/// silent). Written at start-up, where the stack is the program's initial one.
#[cfg_attr(not(target_os = "none"), allow(dead_code))] // called from start-up, in the injected image only
pub(crate) fn degraded(p: &PolicyTable, d: &Degraded) {
    degraded_event(p, |j| {
        j.key(true, b"library");
        j.string(d.library);
        j.key(false, b"planned");
        j.u64(d.planned as u64);
        j.key(false, b"applied");
        j.u64(d.applied as u64);
        j.key(false, b"reason");
        j.string(d.reason.as_bytes());
    });
}

/// `"api":"dfpatch.degraded"` for the backstop: it could not be armed.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn backstop_off(p: &PolicyTable, reason: &[u8], errno: i64) {
    degraded_event(p, |j| {
        j.key(true, b"layer");
        j.string(b"backstop");
        j.key(false, b"errno");
        j.u64(errno as u64);
        j.key(false, b"reason");
        j.string(reason);
    });
}

/// A `dfpatch.degraded` event (class `runtime`, action `alert`, whatever the
/// policy), its `args` written by `args`.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn degraded_event(p: &PolicyTable, args: impl FnOnce(&mut Json)) {
    let Some((fd, regular)) = sink_fd(p) else { return };
    let mut buf = [0u8; 1024];
    let mut j = Json::new(&mut buf);
    if !j.open(b'{') {
        return;
    }
    head(&mut j, b"dfpatch.degraded", b"runtime");
    j.key(false, b"action");
    j.string(b"alert");
    j.key(false, b"rule");
    j.string(b"default");
    j.key(false, b"mode");
    j.string(p.mode_name().as_bytes());
    j.key(false, b"args");
    let opened = j.open(b'{');
    args(&mut j);
    j.close(b'}', opened);
    let _ = finish(j, fd, regular);
}

/// Closes the event and writes it with one `write`. A regular file cannot
/// raise SIGPIPE: then the two signal-mask calls are skipped.
fn finish(mut j: Json, fd: i32, regular: bool) -> bool {
    j.finish();
    crate::sink::write_event(fd, j.bytes(), regular)
}

/// Start of the call instruction that returns to `ret`: our `addr32 call
/// rel32` or `call *disp(%rip)` (6 bytes, checked first: the 5-byte test
/// would also match the last five of them), then `call rel32` (5 bytes);
/// otherwise the return address itself.
fn call_site(ret: u64) -> u64 {
    let mut b = [0u8; 6];
    if mem::read(ret.wrapping_sub(6), &mut b) != 6 {
        return ret;
    }
    if (b[0] == 0x67 && b[1] == 0xe8) || (b[0] == 0xff && b[1] == 0x15) {
        ret - 6
    } else if b[1] == 0xe8 {
        ret - 5
    } else {
        ret
    }
}

/// The registers of the intercepted call's caller once the call returns to
/// `ret`: where a stack walk starts.
pub(crate) fn after_return(f: &HookFrame, ret: u64) -> crate::unwind::Regs {
    crate::unwind::Regs { pc: ret, sp: f.stack_arg_addr(0), rbp: f.rbp }
}

/// `"stack":[{"addr":..., "module":..., "offset":...}, ...]`: the return
/// addresses above the call (see `unwind`), the caller's own first.
fn stack(j: &mut Json, origin: Origin, f: &HookFrame) {
    let (regs, at_instruction) = match origin {
        Origin::Returns(ret) => (after_return(f, ret), false),
        Origin::At(at, sp, rbp) => (crate::unwind::Regs { pc: at, sp, rbp }, true),
    };
    let mut frames = [0u64; crate::unwind::MAX_FRAMES];
    let n = crate::unwind::walk(regs, at_instruction, &mut frames);
    j.key(false, b"stack");
    let opened = j.open(b'[');
    for (i, &pc) in frames.iter().take(n).enumerate() {
        if !j.element(i == 0) {
            break;
        }
        let inner = j.open(b'{');
        j.key(true, b"addr");
        j.hex(pc);
        if let Some((base, name, _)) = crate::unwind::registered_module(pc) {
            j.key(false, b"module");
            if name == 0 {
                j.string(exe_path());
            } else {
                let mut path = [0u8; 256];
                j.string(c_string(name, &mut path));
            }
            j.key(false, b"offset");
            j.hex(pc.wrapping_sub(base));
        } else {
            // A module loaded after start-up (dlopen): named from
            // /proc/self/maps; the walk stops at it.
            let mut path = [0u8; 256];
            if let Some((len, off)) = loader::mapped_module(pc, &mut path) {
                j.key(false, b"module");
                j.string(path.get(..len).unwrap_or(&[]));
                j.key(false, b"offset");
                j.hex(off);
            }
        }
        j.close(b'}', inner);
    }
    j.close(b']', opened);
}

/// Whether `pc` lies in a file mapping (a library loaded after start-up),
/// from /proc/self/maps. Out of line, for its buffer.
#[inline(never)]
fn is_mapped_code(pc: u64) -> bool {
    let mut path = [0u8; 256];
    loader::mapped_module(pc, &mut path).is_some_and(|(n, _)| path.get(..n).is_some_and(|p| p.first() == Some(&b'/')))
}

/// `"module"` (continued) and `"offset"` of an address outside the
/// executable, from /proc/self/maps. Out of line: its buffers take 1.6 KiB
/// of stack, which callers in the executable itself never need.
#[inline(never)]
fn other_module(j: &mut Json, site: u64) {
    let mut path = [0u8; 256];
    // A library loaded at start-up: named as the loader has it (as in `stack`).
    if let Some((base, name, _)) = crate::unwind::registered_module(site).filter(|m| m.1 != 0) {
        j.string(c_string(name, &mut path));
        j.key(false, b"offset");
        j.hex(site.wrapping_sub(base));
        return;
    }
    match loader::mapped_module(site, &mut path) {
        // (Code in an anonymous mapping, JIT code, has no module: below.)
        Some((n, off)) if n > 0 => {
            j.string(path.get(..n).unwrap_or(&[]));
            j.key(false, b"offset");
            j.hex(off);
        }
        _ => {
            j.null();
            j.key(false, b"offset");
            j.hex(site);
        }
    }
}

/// `"symbol":"name"`: the exported function holding `pc`, when there is one.
fn symbol(j: &mut Json, pc: u64) {
    let Some(name) = crate::unwind::symbol_of(pc) else { return };
    let mut buf = [0u8; 128];
    let name = c_string(name, &mut buf);
    if !name.is_empty() {
        j.key(false, b"symbol");
        j.string(name);
    }
}

/// The NUL-terminated string at `addr`, read safely into `buf` (cut at its
/// length when longer).
fn c_string(addr: u64, buf: &mut [u8]) -> &[u8] {
    let len = mem::read(addr, buf);
    let end = buf.get(..len).and_then(|b| b.iter().position(|&c| c == 0)).unwrap_or(len);
    buf.get(..end).unwrap_or(&[])
}

/// Where the call was made as the event's caller names it: a call made by
/// libc itself (its internal path) is the first caller outside libc, found
/// by unwinding or, without call frame information, by scanning the stack
/// (`scanned`); libc's own call site is `via`.
fn caller_origin(origin: Origin, f: &HookFrame) -> (Origin, Option<u64>, bool) {
    let mut origin = origin;
    let mut via = None;
    let mut scanned = false;
    if libplans::any_detoured() {
        let (regs, at_instruction, site) = match origin {
            Origin::Returns(ret) => (after_return(f, ret), false, call_site(ret)),
            Origin::At(at, sp, rbp) => (crate::unwind::Regs { pc: at, sp, rbp }, true, at),
        };
        if let Some((lo, hi)) = libplans::detoured_range(regs.pc) {
            let mut frames = [0u64; crate::unwind::MAX_FRAMES];
            let w = crate::unwind::walk_until(regs, at_instruction, &mut frames);
            let (n, stopped_at) = (w.n, w.stopped_at);
            let walked = frames.get(..n).and_then(|fr| fr.iter().find(|&&pc| !(lo..hi).contains(&pc))).copied();
            // The walk left libc into a library loaded later (dlopen): take
            // that return address when /proc/self/maps says it is a file's code.
            let walked = walked.or_else(|| stopped_at.filter(|&pc| is_mapped_code(pc)));
            // No call frame information to leave libc by (musl): scan. Not
            // for a libc copy in a dlmopen namespace (not registered: its
            // frames are not walked, and nothing above it is known).
            let registered = crate::unwind::registered_module(regs.pc).is_some();
            let found = walked.or_else(|| {
                scanned = registered;
                registered.then(|| crate::unwind::scan_for_caller(regs.sp, lo, hi)).flatten()
            });
            if let Some(outside) = found {
                via = Some(site);
                origin = Origin::Returns(outside);
            }
        }
    }
    (origin, via, scanned)
}

/// The calling module's path (as the event's caller names it) into `out`:
/// its length, and whether it is the executable.
pub(crate) fn caller_module(c: &Contract, origin: Origin, f: &HookFrame, out: &mut [u8; 256]) -> (usize, bool) {
    let site = match caller_origin(origin, f).0 {
        Origin::Returns(ret) => call_site(ret),
        Origin::At(at, _, _) => at,
    };
    let link = site.wrapping_sub(bias(c));
    if link >= c.exe_lo && link < c.exe_hi {
        let exe = exe_path();
        let n = exe.len().min(out.len());
        out[..n].copy_from_slice(&exe[..n]);
        return (n, true);
    }
    if let Some((_, name, _)) = crate::unwind::registered_module(site).filter(|m| m.1 != 0) {
        let mut buf = [0u8; 256];
        let path = c_string(name, &mut buf);
        out[..path.len()].copy_from_slice(path);
        return (path.len(), false);
    }
    match loader::mapped_module(site, out) {
        Some((n, _)) => (n, false),
        None => (0, false),
    }
}

/// `"caller":{"module":..., "offset":..., "return_address":...}` (no
/// return address for a `syscall` instruction). A call made by libc itself
/// (its internal path: `wordexp` or `popen` reaching `posix_spawn`) names
/// the first caller outside libc, found on the stack, and libc's own call
/// as `"via"`.
fn caller(c: &Contract, j: &mut Json, origin: Origin, f: &HookFrame) {
    let (origin, via, scanned) = caller_origin(origin, f);
    let site = match origin {
        Origin::Returns(ret) => call_site(ret),
        Origin::At(at, _, _) => at,
    };
    j.key(false, b"caller");
    let opened = j.open(b'{');
    let link = site.wrapping_sub(bias(c));
    j.key(true, b"module");
    if link >= c.exe_lo && link < c.exe_hi {
        j.string(exe_path());
        j.key(false, b"offset");
        j.hex(link);
    } else {
        other_module(j, site);
    }
    symbol(j, site);
    if let Origin::Returns(ret) = origin {
        j.key(false, b"return_address");
        j.hex(ret);
    }
    if via.is_some() && scanned {
        // Found by scanning the stack, not by unwinding: a good guess.
        j.key(false, b"scanned");
        j.bool(true);
    }
    if let Some(site) = via {
        j.key(false, b"via");
        let inner = j.open(b'{');
        j.key(true, b"module");
        other_module(j, site);
        j.close(b'}', inner);
    }
    j.close(b'}', opened);
}
