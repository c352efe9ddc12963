//! Raw `syscall` instructions in the libraries a dynamic executable needs.
//!
//! A library cannot be rewritten in its file (it is shared with every other
//! program), so its `syscall` sites are planned here, at patch time, from the
//! library files this machine has (`DT_NEEDED`, searched like the loader:
//! `DT_RUNPATH`/`DT_RPATH` with `$ORIGIN`, then the system folders), and the
//! runtime applies a plan in memory at start-up only to a loaded library whose
//! GNU build ID is the one planned for: the same bytes. A library loaded later
//! with `dlopen`, or different from the planned one where the program runs, is
//! left alone (its calls to monitored functions are still caught through the
//! symbol layer).
//!
//! libc (glibc's `libc.so.6`, musl's `libc.so`: known by name), which
//! defines the monitored functions, gets the other plan: their **entries**,
//! detoured in memory as static executables' are in their file, so a call
//! that never looks at the dynamic symbol table (a pointer computed from the
//! library file on disk or a hard-coded offset; libc's own internal calls,
//! `wordexp` and `popen` reaching `posix_spawn`) still enters the hook. Its
//! `syscall` instructions are all planned (see [`syscalls::every_site`]),
//! the `syscall()` function's among them: none traps, not even once per
//! process; a monitored call they make inside one of its reported public
//! functions is part of that call.
//!
//! Moved `syscall` neighbours must mean the same at any address (no
//! RIP-relative operand, no relative branch), so a trampoline can be copied
//! anywhere within ±2 GiB of the library: the runtime fills in its jump back
//! and the hook's address. A detoured entry's instructions are re-encoded as
//! if the trampoline sat at [`TRAMP_BASE`] in the library's address space,
//! and every rel32 that leaves the trampoline is listed as a fixup: the
//! runtime adds `base + TRAMP_BASE - where` to each.

use crate::code::Code;
use crate::elf::Elf;
use crate::moved::{self, Refused};
use crate::syscalls::SyscallCounts;
use crate::{detour, syscalls, x86};
use dfpatch_runtime::apis::ApiId;
pub use dfpatch_runtime::contract::{MAX_FIXUPS, MAX_WINDOW, TRAMP_BASE};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Largest library code (executable sections) planned.
pub const MAX_CODE: u64 = 16 << 20;
/// Most library sites in one patched file (the runtime's table size).
pub const MAX_SITES: usize = dfpatch_runtime::contract::MAX_LIB_SITES;

/// One rewritten `syscall` of a library, relative to the library's base.
#[derive(Clone, Debug, Serialize)]
pub struct LibSite {
    /// First byte taken and how many.
    pub vaddr: u64,
    pub len: usize,
    /// The `syscall` instruction itself (the event's caller).
    pub syscall: u64,
    /// The bytes the window holds: the runtime checks them before rewriting.
    #[serde(skip)]
    pub original: Vec<u8>,
    pub tactic: crate::plan::Tactic,
    pub nr: Option<u64>,
    /// A detoured function entry (its API), or None for a `syscall`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<&'static str>,
    /// Offsets in `tramp` of the rel32 fields that leave it (entries only).
    #[serde(skip)]
    pub fixups: Vec<u16>,
    #[serde(skip)]
    pub tramp: Vec<u8>,
    /// Where in `tramp` the jump back's rel32 is (None: the moved code returns).
    #[serde(skip)]
    pub back_at: Option<usize>,
    /// Where in `tramp` the 8-byte address of `dfp_sys_hook` goes; the
    /// thunk's address goes in the 8 bytes after it.
    #[serde(skip)]
    pub slot_at: usize,
    /// Where in `tramp` the thunk that runs the system call jumps back to.
    #[serde(skip)]
    pub resume_at: usize,
    /// Where in `tramp` the hook number's imm32 is (a `syscall` site: the
    /// runtime renumbers the copy in each `dlmopen` namespace).
    #[serde(skip)]
    pub number_at: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LibraryPlan {
    pub name: String,
    pub path: PathBuf,
    /// How the runtime recognises this very file among loaded objects.
    pub identity: Identity,
    pub sites: Vec<LibSite>,
    pub refused: Vec<Refused>,
    pub syscalls: SyscallCounts,
    /// libc: the entries of its monitored functions are planned.
    pub defines_monitored: bool,
}

/// How a loaded library is recognised as the planned file.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Identity {
    /// Its GNU build ID (hex).
    BuildId(#[serde(serialize_with = "hex")] Vec<u8>),
    /// No build ID (musl-gcc links without one): the file at the loaded path
    /// has this size and modification time.
    File { size: u64, mtime: i64, mtime_nsec: i64 },
}

/// A library that is not planned, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

fn hex<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// Plans every needed library (breadth first, each once).
pub fn plan(
    e: &Elf,
    exe: &Path,
    hooked: &impl Fn(ApiId) -> bool,
    every_site: bool,
) -> (Vec<LibraryPlan>, Vec<Skipped>) {
    let mut plans = Vec::new();
    let mut skipped = Vec::new();
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let origin = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut queue: Vec<(String, Vec<String>, PathBuf)> =
        e.needed.iter().map(|n| (n.clone(), e.runpath.clone(), origin.clone())).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut next_index = 0usize;
    while let Some((name, runpath, origin)) = (!queue.is_empty()).then(|| queue.remove(0)) {
        if !seen.insert(name.clone()) {
            continue;
        }
        // musl's loader answers `libc.so` with itself, wherever a file of that name is.
        let musl_libc = (name == "libc.so").then_some(e.interp.as_deref()).flatten().filter(|i| i.contains("musl"));
        let Some(path) = musl_libc.map(PathBuf::from).or_else(|| find(&name, &runpath, &origin)) else {
            skipped.push(Skipped { name, reason: "not found on this machine".into() });
            continue;
        };
        // Mapped, not read: only the headers and the code are touched.
        #[allow(unsafe_code)]
        let data = match std::fs::File::open(&path).and_then(|f| {
            // SAFETY: a read-only private mapping of a library file; a library
            // changed while dfpatch reads it can only make this plan wrong,
            // which the runtime's byte check of every window catches.
            unsafe { memmap2::Mmap::map(&f) }
        }) {
            Ok(d) => d,
            Err(err) => {
                skipped.push(Skipped { name, reason: format!("{}: {err}", path.display()) });
                continue;
            }
        };
        let lib = match Elf::parse(&data) {
            Ok(l) => l,
            Err(err) => {
                skipped.push(Skipped { name, reason: format!("{}: {err}", path.display()) });
                continue;
            }
        };
        let canonical = std::fs::canonicalize(&path).ok();
        let interp = e.interp.as_ref().and_then(|i| std::fs::canonicalize(i).ok());
        // musl's libc.so is also its loader (ld-musl-x86_64.so.1 links to it):
        // its monitored entries are planned like glibc's libc.so.6.
        let is_musl_libc = name == "libc.so" && e.interp.as_deref().is_some_and(|i| i.contains("musl"));
        // Without the backstop, the loader is left alone: what its system
        // calls do is load libraries, and `dlopen` is hooked. With it, they
        // would trap: at least once per process that loads a library.
        if canonical.is_some() && canonical == interp && !is_musl_libc && !every_site {
            skipped.push(Skipped {
                name,
                reason: "the dynamic loader: the system calls it makes load libraries (dlopen is hooked)".into(),
            });
            continue;
        }
        let lib_origin = path.parent().map(Path::to_path_buf).unwrap_or_default();
        queue.extend(lib.needed.iter().map(|n| (n.clone(), lib.runpath.clone(), lib_origin.clone())));
        // libc is known by name: glibc's soname, or musl's libc.so (its
        // loader). Another library that defines a function of a monitored
        // name is planned as any library: taking it for libc would let it
        // pass its own calls off as libc's internal ones.
        let is_libc = name == "libc.so.6" || musl_libc.is_some();
        match plan_one(&lib, &name, &path, is_libc, hooked, every_site, &mut next_index) {
            Ok(p) => plans.push(p),
            Err(reason) => skipped.push(Skipped { name, reason }),
        }
    }
    (plans, skipped)
}

fn find(name: &str, runpath: &[String], origin: &Path) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|p| p.is_file());
    }
    let system = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
    let expanded = runpath.iter().map(|d| PathBuf::from(d.replace("$ORIGIN", &origin.display().to_string())));
    expanded.chain(system.iter().map(PathBuf::from)).map(|d| d.join(name)).find(|p| p.is_file())
}

fn plan_one(
    lib: &Elf,
    name: &str,
    path: &Path,
    is_libc: bool,
    hooked: &impl Fn(ApiId) -> bool,
    every_site: bool,
    next_index: &mut usize,
) -> Result<LibraryPlan, String> {
    let identity = match lib.build_id() {
        Some(id) if id.len() <= 32 => Identity::BuildId(id.to_vec()),
        Some(_) => return Err("build ID longer than 32 bytes".into()),
        None => {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(path).map_err(|e| e.to_string())?;
            Identity::File { size: m.size(), mtime: m.mtime(), mtime_nsec: m.mtime_nsec() }
        }
    };
    let made = |sites, refused, syscalls, defines_monitored| LibraryPlan {
        name: name.to_string(),
        path: path.to_path_buf(),
        identity: identity.clone(),
        sites,
        refused,
        syscalls,
        defines_monitored,
    };
    if is_libc {
        let code = Code::analyse(lib).map_err(|e| e.to_string())?;
        let (detours, mut refused) = detour::detours(lib, &code, hooked);
        let mut out = Vec::new();
        for d in detours {
            if *next_index >= MAX_SITES {
                break;
            }
            let planned = entry_trampoline(&d.window).and_then(|(tramp, fixups)| {
                let off = lib.offset_of(d.window.start(), d.window.size() as u64).ok_or("not in the file")?;
                let original = lib.data.get(off as usize..off as usize + d.window.size()).ok_or("not in the file")?;
                Ok((tramp, fixups, original.to_vec()))
            });
            match planned {
                Ok((tramp, fixups, original)) if original.len() <= MAX_WINDOW => {
                    *next_index += 1;
                    out.push(LibSite {
                        vaddr: d.window.start(),
                        len: d.window.size(),
                        syscall: d.entry,
                        original,
                        tactic: crate::plan::Tactic::EntryMoved { instructions: d.window.insns.len() },
                        nr: None,
                        api: Some(d.api.name()),
                        fixups,
                        tramp,
                        back_at: None,
                        slot_at: 0,
                        number_at: 0,
                        resume_at: 0,
                    });
                }
                Ok(_) => {}
                Err(reason) => refused.push(Refused {
                    layer: crate::plan::Layer::Entry,
                    vaddr: d.entry,
                    what: d.symbol.clone(),
                    reason: reason.into(),
                }),
            }
        }
        // Every one of libc's `syscall` instructions, whatever its number:
        // those the backstop could not rewrite at run time would trap at
        // every call (their number not set by a `mov $N, %eax` just before:
        // `read`'s `xor %eax,%eax`, the `syscall()` function, which a
        // library can use instead of the named functions); the others would
        // trap once per process, and a short process makes mostly first
        // calls. They lie in a few dozen pages, which start-up writes one
        // `pwrite` each. An unmonitored number's trampoline asks nothing.
        let taken: Vec<(u64, u64)> = out.iter().map(|x| (x.vaddr, x.vaddr + x.len as u64)).collect();
        let cancel = syscalls::cancellation_windows(lib);
        let (sites, no, counts) = syscalls::every_site(&code, &taken, &cancel, &syscalls::dispatch_mask(hooked));
        out.extend(syscall_plans(lib, sites, next_index));
        refused.extend(no);
        return Ok(made(out, refused, counts, true));
    }
    // A whole-library disassembly costs about 0.1 s per 10 MB of code, once
    // per patched program: the largest libraries (libLLVM: 110 MB) are left out.
    let code_bytes = lib.code_size();
    if code_bytes > MAX_CODE {
        return Err(format!(
            "{} MiB of code: too large to plan at patch time (its raw system calls are not rewritten)",
            code_bytes >> 20
        ));
    }
    // Most libraries have no `syscall` at all: skip the disassembly then.
    if !lib.code_may_have_syscall() {
        return Ok(made(Vec::new(), Vec::new(), SyscallCounts::default(), false));
    }
    let code = Code::analyse(lib).map_err(|e| e.to_string())?;
    let cancel = syscalls::cancellation_windows(lib);
    let (sites, refused, counts) = syscalls::syscall_sites(&code, hooked, &[], &cancel, true, every_site);
    let out = syscall_plans(lib, sites, next_index);
    Ok(made(out, refused, counts, false))
}

/// The plans of `syscall` sites (trampolines that work at any address).
fn syscall_plans(lib: &Elf, sites: Vec<syscalls::SyscallSite>, next_index: &mut usize) -> Vec<LibSite> {
    let mut out = Vec::new();
    for s in sites {
        if *next_index >= MAX_SITES {
            break;
        }
        let k = dfpatch_runtime::contract::r11::LIB_SITE as u32 | *next_index as u32;
        let ask = s.asks.then_some(k);
        let Some(t) = trampoline(lib, &s.window, ask) else {
            continue;
        };
        let Some(original) = lib
            .offset_of(s.window.start(), s.window.size() as u64)
            .and_then(|o| lib.data.get(o as usize..o as usize + s.window.size()))
            .filter(|o| o.len() <= MAX_WINDOW)
        else {
            continue;
        };
        *next_index += 1;
        out.push(LibSite {
            original: original.to_vec(),
            vaddr: s.window.start(),
            len: s.window.size(),
            syscall: s.window.insns[s.window.at].ip(),
            tactic: crate::plan::Tactic::SyscallMoved { shape: s.window.shape() },
            nr: s.nr,
            api: None,
            fixups: Vec::new(),
            tramp: t.bytes,
            back_at: t.back_at,
            slot_at: t.slot_at,
            number_at: t.number_at,
            resume_at: t.resume_at,
        });
    }
    out
}

/// A detoured entry's trampoline, encoded as if at [`TRAMP_BASE`] (an
/// `endbr64`, the moved instructions, the jump back), and the offsets of its
/// rel32 fields that reach outside it (branches, RIP-relative operands, the
/// jump back), each checked to decode to the target the original had.
fn entry_trampoline(w: &moved::Window) -> Result<(Vec<u8>, Vec<u16>), &'static str> {
    use iced_x86::{Decoder, DecoderOptions, OpKind};
    let tramp = detour::detour_trampoline(w, TRAMP_BASE).map_err(|_| "its first instructions cannot be re-encoded")?;
    let end = TRAMP_BASE + tramp.len() as u64;
    let mut fixups = Vec::new();
    let mut d = Decoder::with_ip(64, &tramp, TRAMP_BASE, DecoderOptions::NONE);
    while d.can_decode() {
        let ins = d.decode();
        let at = (ins.ip() - TRAMP_BASE) as usize;
        let (target, field) = if ins.is_ip_rel_memory_operand() {
            let co = d.get_constant_offsets(&ins);
            if co.displacement_size() != 4 {
                return Err("a RIP-relative operand without a 32-bit displacement");
            }
            (ins.ip_rel_memory_address(), at + co.displacement_offset())
        } else if matches!(ins.op0_kind(), OpKind::NearBranch64) {
            (ins.near_branch_target(), at + ins.len() - 4)
        } else {
            continue;
        };
        if (TRAMP_BASE..end).contains(&target) {
            continue;
        }
        // The field must really be the rel32 that gives `target`.
        let rel = tramp.get(field..field + 4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if rel.map(|r| ins.next_ip().wrapping_add(r as i64 as u64)) != Some(target) {
            return Err("a branch out of its first instructions is not a rel32");
        }
        fixups.push(u16::try_from(field).map_err(|_| "trampoline too long")?);
    }
    if fixups.len() > MAX_FIXUPS {
        return Err("too many references out of its first instructions");
    }
    Ok((tramp, fixups))
}

/// A trampoline that works at any address (its moved instructions are
/// position independent): the runtime fills the jump back's rel32 at
/// `back_at`, `dfp_sys_hook`'s address at `slot_at` and the address of the
/// thunk that runs the system call at `slot_at + 8`; the thunk jumps back to
/// `resume_at`. With a hook number the trampoline asks the runtime first
/// (the number's imm32 is at `number_at`); without, it goes straight to the
/// thunk (`number_at` 0).
fn trampoline(lib: &Elf, w: &moved::Window, hook_number: Option<u32>) -> Option<Trampoline> {
    let mut b = Vec::new();
    b.extend(copy(lib, &w.insns[..w.at])?);
    let (number_at, call_at, jmp_at) = match hook_number {
        Some(k) => {
            let (number_at, call_at) = (b.len() + x86::NUMBER_OFFSET, b.len() + x86::CALL_OFFSET);
            (number_at, Some(call_at), x86::ask_then_thunk(&mut b, k, &x86::CALL_THROUGH_SLOT))
        }
        None => (0, None, x86::thunk_through_slot(&mut b)),
    };
    let resume_at = b.len();
    let after = &w.insns[w.at + 1..];
    b.extend(copy(lib, after)?);
    let returns = after.last().is_some_and(|i| i.flow_control() == iced_x86::FlowControl::Return);
    let back_at = (!returns).then(|| x86::jmp_placeholder(&mut b));
    while b.len() % 8 != 0 {
        b.push(x86::INT3);
    }
    let slot_at = b.len();
    b.extend([0; 16]);
    if let Some(call_at) = call_at {
        x86::set_rip_slot(&mut b, call_at, slot_at)?;
    }
    x86::set_rip_slot(&mut b, jmp_at, slot_at + 8)?;
    Some(Trampoline { bytes: b, back_at, slot_at, number_at, resume_at })
}

struct Trampoline {
    bytes: Vec<u8>,
    back_at: Option<usize>,
    slot_at: usize,
    number_at: usize,
    resume_at: usize,
}

/// The instructions' own bytes, from the file (they mean the same anywhere:
/// the window holds no RIP-relative operand and no relative branch).
fn copy(lib: &Elf, insns: &[iced_x86::Instruction]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for ins in insns {
        let off = lib.offset_of(ins.ip(), ins.len() as u64)? as usize;
        out.extend_from_slice(lib.data.get(off..off + ins.len())?);
    }
    Some(out)
}

/// The library plans table the runtime reads ([`dfpatch_runtime::contract::LibPlans`]):
/// a [`LibPlansHeader`], a [`LibRecord`] per planned library with sites, a
/// [`SiteRecord`] per site, then the trampolines and the libraries' paths.
/// Empty when no library has a site.
pub fn encode_table(libraries: &[LibraryPlan]) -> Vec<u8> {
    use dfpatch_runtime::contract::{
        site_kind, LibPlansHeader, LibPlansLayout, LibRecord, Record, SiteRecord, LIBPLANS_VERSION, NO_JUMP_BACK,
    };
    let libs: Vec<&LibraryPlan> = libraries.iter().filter(|l| !l.sites.is_empty()).collect();
    if libs.is_empty() {
        return Vec::new();
    }
    let site_count: usize = libs.iter().map(|l| l.sites.len()).sum();
    let layout = LibPlansLayout { lib_count: libs.len(), site_count };
    let mut table = vec![0u8; layout.tramps_at()];
    let header = LibPlansHeader {
        version: LIBPLANS_VERSION,
        lib_count: libs.len() as u32,
        site_count: site_count as u32,
        _pad: 0,
    };
    let put = |table: &mut [u8], at: usize, r: &dyn Fn(&mut [u8]) -> Option<()>| {
        r(&mut table[at..]).expect("the table was sized from the same counts");
    };
    put(&mut table, 0, &|out| header.encode_into(out));
    let mut first = 0usize;
    // The library records are written last: their names follow the trampolines.
    let mut records = Vec::with_capacity(libs.len());
    for l in &libs {
        let (first_site, count) = (first as u32, l.sites.len() as u32);
        let record = match &l.identity {
            Identity::BuildId(id) => LibRecord::by_build_id(id, first_site, count),
            Identity::File { size, mtime, mtime_nsec } => {
                LibRecord::by_file(*size, *mtime as u64, *mtime_nsec as u64, first_site, count)
            }
        };
        records.push(record);
        for (i, s) in l.sites.iter().enumerate() {
            let mut original = [0u8; MAX_WINDOW];
            original[..s.original.len()].copy_from_slice(&s.original);
            let mut fixups = [0u16; MAX_FIXUPS];
            for (d, f) in fixups.iter_mut().zip(&s.fixups) {
                *d = *f;
            }
            let api = s.api.and_then(ApiId::from_name);
            let record = SiteRecord {
                window: s.vaddr,
                target: s.syscall,
                tramp_off: table.len() as u32,
                tramp_len: s.tramp.len() as u32,
                back_at: s.back_at.map_or(NO_JUMP_BACK, |b| b as u32),
                slot_at: s.slot_at as u32,
                number_at: s.number_at as u32,
                window_len: s.len as u32,
                kind: match (api, s.nr) {
                    (Some(_), _) => site_kind::ENTRY,
                    (None, Some(nr)) if !dfpatch_runtime::apis::may_spawn(nr) => site_kind::SYSCALL,
                    (None, _) => site_kind::SYSCALL_SPAWN,
                },
                fixup_count: s.fixups.len().min(MAX_FIXUPS) as u8,
                api: api.map_or(0, |a| a as u16),
                fixups,
                resume_at: s.resume_at as u32,
                original,
            };
            put(&mut table, layout.sites_at() + (first + i) * SiteRecord::SIZE, &|out| record.encode_into(out));
            table.extend_from_slice(&s.tramp);
        }
        first += l.sites.len();
    }
    for (k, (mut record, l)) in records.into_iter().zip(&libs).enumerate() {
        let name = l.path.to_string_lossy();
        record.name_off = table.len() as u32;
        record.name_len = name.len() as u32;
        table.extend_from_slice(name.as_bytes());
        put(&mut table, LibPlansLayout::LIBS_AT + k * LibRecord::SIZE, &|out| record.encode_into(out));
    }
    table
}
