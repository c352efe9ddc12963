//! The patch plan: what the file is, which imports are hooked at which sites,
//! and where everything dfpatch adds will live. `inspect` prints a plan and
//! `patch` executes the same plan, so the two never disagree.

use crate::code::Code;
use crate::dynamic::Preinit;
use crate::elf::{Elf, Phdr, EHDR_SIZE, PHDR_SIZE};
use crate::error::{Error, Result};
use crate::moved::{self, Refused};
use crate::plt::{self, Import, Site};
use crate::runtime::Runtime;
use crate::syscalls::SyscallCounts;
use crate::x86::STUB_SIZE;
use crate::{detour, syscalls};
use dfpatch_policy::{Action, Policy};
use dfpatch_runtime::apis::ApiId;
use dfpatch_runtime::bytes::u32_at;
use dfpatch_runtime::contract::hook_kind;
use object::elf;
use serde::Serialize;
use std::collections::BTreeMap;

pub const PAGE: u64 = 4096;
/// Highest user-space address on x86-64 with 4-level page tables: nothing
/// dfpatch adds may end above it.
pub const USER_TOP: u64 = 0x7fff_ffff_f000;
/// Most zero bytes the moved program header table may force into the file.
pub const MAX_FILE_GAP: u64 = 64 << 20;

pub fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// What kind of executable this is.
#[derive(Clone, Debug, Serialize)]
pub struct Flavour {
    pub pie: bool,
    /// Linked against shared libraries (has PT_INTERP); false: static.
    pub dynamic: bool,
    pub interpreter: Option<String>,
    pub libc: Option<String>,
    /// No `.symtab`.
    pub stripped: bool,
    /// CET indirect branch tracking / shadow stack marked in `.note.gnu.property`.
    pub ibt: bool,
    pub shstk: bool,
    /// Built by Go (its runtime makes its system calls itself, on goroutine stacks).
    pub go: bool,
}

/// How a hook intercepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    /// Sites that jump or call through the GOT slot at `vaddr` go to the stub.
    Got,
    /// The function's entry jumps to the stub; `vaddr` is the trampoline that
    /// runs its moved first instructions.
    Detour,
    /// The `syscall` instruction at `vaddr` moved into a trampoline.
    Syscall,
}

impl HookKind {
    pub fn contract(self) -> u8 {
        match self {
            HookKind::Got => hook_kind::GOT,
            HookKind::Detour => hook_kind::DETOUR,
            HookKind::Syscall => hook_kind::SYSCALL,
        }
    }
}

/// A hook: hook number = index in `Plan::hooks`.
#[derive(Clone, Debug, Serialize)]
pub struct Hook {
    /// The API, or for a `syscall` site whose number is only known at run
    /// time, "any monitored system call".
    pub api: String,
    /// The import or function symbol; "syscall" for a system call site.
    pub symbol: String,
    pub kind: HookKind,
    pub vaddr: u64,
    /// The stub that enters the runtime (0: none, a syscall trampoline calls it itself).
    pub stub_vaddr: u64,
    #[serde(skip)]
    pub api_id: u16,
    #[serde(skip)]
    pub prot_filter: bool,
}

/// The layer a rewritten site belongs to, as `inspect` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// A function entry, detoured (static executables; libc's, in memory).
    Entry,
    /// A `call *slot(%rip)` of `-fno-plt` code.
    GotCall,
    /// A `.plt` or `.plt.sec` entry's jump.
    Plt,
    /// A `.plt.got` entry's jump.
    PltGot,
    /// A `syscall` instruction.
    Syscall,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::Entry => "entry",
            Layer::GotCall => "got-call",
            Layer::Plt => "plt",
            Layer::PltGot => "plt.got",
            Layer::Syscall => "syscall",
        }
    }
}

/// How a site is rewritten.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tactic {
    /// A PLT entry's `jmp *slot` becomes a `jmp` to the stub.
    Jmp,
    /// A `-fno-plt` `call *slot` becomes a `call` to the stub.
    Call,
    /// A static executable's function entry: `bytes` moved to a trampoline.
    Detour { bytes: usize },
    /// A `syscall` moved with its neighbours ([`crate::moved::Window::shape`]).
    SyscallMoved { shape: String },
    /// A library function's entry, detoured in memory: `instructions` moved.
    EntryMoved { instructions: usize },
}

impl Tactic {
    /// The tactic without its numbers, for counting sites by tactic.
    pub fn family(&self) -> String {
        match self {
            Tactic::Detour { .. } => "detour".into(),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::fmt::Display for Tactic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Tactic::Jmp => "jmp".to_string(),
            Tactic::Call => "call".to_string(),
            Tactic::Detour { bytes } => format!("detour ({bytes} bytes moved)"),
            Tactic::SyscallMoved { shape } => format!("syscall moved ({shape})"),
            Tactic::EntryMoved { instructions } => format!("entry moved ({instructions} instructions)"),
        };
        f.pad(&text)
    }
}

/// `inspect --json` shows layers and tactics as their names.
macro_rules! serialize_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_text!(Layer, Tactic);

/// A site to rewrite.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedSite {
    pub vaddr: u64,
    pub len: usize,
    pub layer: Layer,
    pub section: String,
    pub tactic: Tactic,
    pub hook: usize,
    #[serde(skip)]
    pub offset: u64,
    /// The new bytes.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// How the runtime sets `errno` for a refused function call in a static
/// executable (dynamic ones ask the loaded libc at run time).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Errno {
    /// `__errno_location`'s link-time address, 0 if none.
    pub function: u64,
    /// Else the TLS `errno`'s offset from the thread pointer, 0 if none.
    pub tpoff: i64,
}

/// An import that is monitored in general but not hooked in this file, and why.
#[derive(Clone, Debug, Serialize)]
pub struct NotHooked {
    pub symbol: String,
    pub reason: String,
}

/// How the new loadable segment gets a program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "tactic")]
pub enum PhdrTactic {
    /// The entry at `index` (a PT_NULL, else a PT_NOTE) becomes the new
    /// PT_LOAD; the table stays put.
    Reuse { index: usize, was: &'static str },
    /// No PT_NULL or PT_NOTE: a copy of the table with one more entry goes at the end of
    /// the new segment, placed so that its file offset and its address agree
    /// the way old kernels compute `AT_PHDR` (first PT_LOAD's
    /// `p_vaddr - p_offset` + `e_phoff`); PT_PHDR points at the copy.
    MoveTable,
}

/// Where the added parts go (link-time addresses and file offsets).
#[derive(Clone, Debug, Serialize)]
pub struct Layout {
    /// The runtime's zero-filled writable part, at the end of the last RW segment.
    pub rw_vaddr: u64,
    pub rw_size: u64,
    /// Index of the last PT_LOAD (writable), whose p_memsz grows to cover `rw`.
    pub rw_phdr: usize,
    /// The new read+execute segment.
    pub rx_vaddr: u64,
    pub rx_offset: u64,
    /// How the new segment gets its program header.
    pub phdrs: PhdrTactic,
    pub stubs_vaddr: u64,
    pub new_entry: u64,
    /// `dfp_hook` and `dfp_sys_hook` at run time.
    pub hook_entry: u64,
    pub sys_hook_entry: u64,
    /// `dfp_arm_child` at run time.
    pub arm_child: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub flavour: Flavour,
    /// How the runtime starts before library constructors (or why it cannot).
    pub preinit: Preinit,
    pub hooks: Vec<Hook>,
    pub sites: Vec<PlannedSite>,
    pub not_hooked: Vec<NotHooked>,
    /// Function entries and `syscall` instructions that need a hook but
    /// cannot be rewritten safely, with the reason.
    pub refused: Vec<Refused>,
    /// `syscall` instructions found (static executables).
    pub syscalls: Option<SyscallCounts>,
    pub errno: Errno,
    pub layout: Layout,
    /// Where the trampolines go (after the stubs), and their bytes.
    pub code_vaddr: u64,
    #[serde(skip)]
    pub code: Vec<u8>,
    /// Needed libraries whose raw `syscall` instructions the runtime rewrites
    /// in memory when the loaded library is this very file (same build ID).
    pub libraries: Vec<crate::libplan::LibraryPlan>,
    pub libraries_skipped: Vec<crate::libplan::Skipped>,
    /// The compiled policy the file will carry.
    #[serde(skip)]
    pub policy_table: Vec<u8>,
    /// The library plans as the runtime reads them.
    #[serde(skip)]
    pub libplans: Vec<u8>,
    /// Every range of the runtime segment, reserved here and filled by `inject`.
    #[serde(skip)]
    pub segment: crate::segment::SegmentMap,
}

/// Checks the file can be patched at all and describes it.
pub fn flavour(e: &Elf) -> Result<Flavour> {
    let pie = e.e_type == elf::ET_DYN;
    // A library may carry PT_INTERP to be runnable (libc.so.6 prints its
    // version): a DT_SONAME without the PIE flag says library.
    if pie && !e.flags_1_pie && (e.interp.is_none() || e.has_soname) {
        return Err(Error::SharedLibrary);
    }
    if e.sections.is_empty() {
        return Err(Error::NoSectionHeaders);
    }
    let dynamic = e.interp.is_some();
    let go = [".go.buildinfo", ".gopclntab", ".note.go.buildid"].iter().any(|n| e.section(n).is_some());
    let libc = if dynamic {
        match e.interp.as_ref().filter(|i| i.contains("musl")) {
            Some(i) => Some(format!("musl ({i})")),
            None => e.needed.iter().find(|n| n.starts_with("libc.so")).map(|n| format!("glibc ({n})")),
        }
    } else if go {
        Some("none (a Go program: its runtime makes its system calls itself)".into())
    } else {
        static_libc(e)
    };
    let (ibt, shstk) = x86_features(e);
    Ok(Flavour {
        pie,
        dynamic,
        interpreter: e.interp.clone(),
        libc,
        stripped: e.section(".symtab").is_none(),
        ibt,
        shstk,
        go,
    })
}

/// The C library linked into a static executable, where it can be told:
/// glibc leaves its ABI note and its start-up symbols, musl its own symbols.
fn static_libc(e: &Elf) -> Option<String> {
    if e.section(".note.ABI-tag").is_some() {
        return Some("glibc (static)".into());
    }
    let syms = e.symbols();
    let has = |n: &str| syms.iter().any(|s| s.name == n);
    if has("__libc_setup_tls") || has("_dl_relocate_static_pie") {
        Some("glibc (static)".into())
    } else if has("__init_libc") || has("__libc_start_init") {
        Some("musl (static)".into())
    } else {
        None
    }
}

/// `errno` of a static executable, from its symbol table.
fn static_errno(e: &Elf) -> Errno {
    let syms = e.symbols();
    if let Some(f) = syms.iter().find(|s| s.name == "__errno_location" && s.kind == elf::STT_FUNC && s.value != 0) {
        return Errno { function: f.value, tpoff: 0 };
    }
    // glibc's TLS errno: the executable's TLS block ends at the thread
    // pointer (x86-64 variant II), rounded up to its alignment.
    let tls = e.tls();
    let var = syms.iter().find(|s| (s.name == "errno" || s.name == "__libc_errno") && s.kind == elf::STT_TLS);
    if let (Some(tls), Some(var)) = (tls, var) {
        if let Some(block) = align_up(tls.p_memsz, tls.p_align.max(1).next_power_of_two()) {
            return Errno { function: 0, tpoff: var.value as i64 - block as i64 };
        }
    }
    Errno::default()
}

/// IBT and SHSTK bits of GNU_PROPERTY_X86_FEATURE_1_AND.
fn x86_features(e: &Elf) -> (bool, bool) {
    let Some(s) = e.section(".note.gnu.property") else { return (false, false) };
    let Ok(d) = e.section_data(s) else { return (false, false) };
    // namesz(4) descsz(4) type(4) "GNU\0", then properties: type(4) size(4) data, 8-aligned.
    let mut at = 16usize;
    while let (Some(t), Some(sz)) = (u32_at(d, at), u32_at(d, at + 4)) {
        let sz = sz as usize;
        if t == 0xc000_0002 {
            if let Some(v) = u32_at(d, at + 8) {
                return (v & 1 != 0, v & 2 != 0);
            }
        }
        at = match at.checked_add(8 + ((sz + 7) & !7)) {
            Some(n) => n,
            None => break,
        };
    }
    (false, false)
}

/// `exe`: where the executable is, to find the libraries it needs (their
/// raw system calls are planned only when it is given).
pub fn make(e: &Elf, rt: &Runtime, policy: &Policy, exe: Option<&std::path::Path>) -> Result<Plan> {
    let flavour = flavour(e)?;
    if e.last_section(".dfpatch").is_some() {
        return Err(crate::restore::already_patched(e));
    }
    let layout = layout(e, rt)?;
    // The ELF header, and a reused program header table, are rewritten in
    // place: no section may share their bytes.
    let mut in_place = vec![(0, EHDR_SIZE as u64)];
    if let PhdrTactic::Reuse { .. } = layout.phdrs {
        in_place.push((e.e_phoff, (e.phdrs.len() * PHDR_SIZE) as u64));
    }
    for s in e.sections.iter().filter(|s| s.sh_type != elf::SHT_NULL && s.sh_type != elf::SHT_NOBITS) {
        let end = s.sh_offset.saturating_add(s.sh_size);
        if in_place.iter().any(|&(off, len)| s.sh_offset < off.saturating_add(len) && off < end) {
            return Err(crate::error::malformed(format!("section {} overlaps the ELF or program headers", s.name)));
        }
    }
    let hooked = |api: ApiId| watched(policy, api);
    // The executable's own `syscall` sites the backstop could not rewrite at
    // run time are rewritten here, or each of their calls would trap.
    let for_backstop = !policy.backstop_off;
    let mut hooks = Vec::new();
    let mut sites = Vec::new();
    let mut not_hooked = Vec::new();
    let mut refused = Vec::new();
    let mut syscalls = None;
    let mut errno = Errno::default();
    let mut code = Vec::new();
    let code_vaddr;

    let mut libraries = Vec::new();
    let mut libraries_skipped = Vec::new();
    if flavour.dynamic {
        got_hooks(e, policy, layout.stubs_vaddr, &mut hooks, &mut sites, &mut not_hooked)?;
        if let Some(exe) = exe {
            (libraries, libraries_skipped) = crate::libplan::plan(e, exe, &hooked, for_backstop);
        }
        let stub_count = hooks.len() as u64;
        code_vaddr = layout.stubs_vaddr + stub_count * STUB_SIZE;
        // Layer 4 for the executable's own code: `syscall` instructions
        // (inline assembly, a vendored wrapper), as in static executables.
        let taken: Vec<(u64, u64)> = sites.iter().map(|x| (x.vaddr, x.vaddr + x.len as u64)).collect();
        // Why the layer is left out of this file, if it is.
        let whole_layer = |reason: String| moved::Refused {
            layer: Layer::Syscall,
            vaddr: 0,
            what: "every syscall instruction".into(),
            reason,
        };
        let code_bytes = e.code_size();
        if !e.code_may_have_syscall() {
            // No `0f 05` in its code: nothing to disassemble for.
        } else if code_bytes > crate::libplan::MAX_CODE {
            // Disassembling it all would cost more than the rest of patching
            // (node: 0.65 s and 202 MB instead of 0.23 s and 102 MB).
            refused.push(whole_layer(format!(
                "{} MiB of code: too large to disassemble for raw system calls (its PLT calls are hooked)",
                code_bytes >> 20
            )));
        } else {
            match Code::analyse(e) {
                Ok(map) => {
                    let (sys, mut no, counts) = syscalls::syscall_sites(&map, hooked, &taken, &[], false, for_backstop);
                    refused.append(&mut no);
                    syscalls = Some(counts);
                    let mut cursor = code_vaddr;
                    syscall_hooks(e, &map, &sys, &layout, &mut cursor, &mut hooks, &mut sites, &mut code)?;
                }
                Err(err) => refused.push(whole_layer(format!("its code cannot be mapped with certainty: {err}"))),
            }
        }
    } else {
        errno = static_errno(e);
        let mut map = Code::analyse(e)?;
        // Layer 3: function entries.
        let (detours, mut no) = detour::detours(e, &map, hooked);
        refused.append(&mut no);
        for d in &detours {
            map.add_target(d.window.end());
        }
        let taken: Vec<(u64, u64)> = detours.iter().map(|d| (d.window.start(), d.window.end())).collect();
        // Layer 4: system call instructions.
        let cancel = syscalls::cancellation_windows(e);
        let (sys, mut no, counts) = syscalls::syscall_sites(&map, hooked, &taken, &cancel, false, for_backstop);
        refused.append(&mut no);
        syscalls = Some(counts);

        code_vaddr = layout.stubs_vaddr + detours.len() as u64 * STUB_SIZE;
        let mut cursor = code_vaddr;
        let range = |what: String| Error::OutOfRange(what);
        for d in &detours {
            let tramp = detour::detour_trampoline(&d.window, cursor).map_err(range)?;
            let k = hooks.len();
            let stub = layout.stubs_vaddr + k as u64 * STUB_SIZE;
            hooks.push(Hook {
                api: d.api.name().to_string(),
                symbol: d.symbol.clone(),
                kind: HookKind::Detour,
                vaddr: cursor,
                stub_vaddr: stub,
                api_id: d.api as u16,
                prot_filter: d.api.prot_exec_filter().is_some(),
            });
            sites.push(moved_site(
                e,
                &d.window,
                Layer::Entry,
                Tactic::Detour { bytes: d.window.size() },
                k,
                stub,
                &map,
            )?);
            push_code(&mut code, &mut cursor, tramp);
        }
        syscall_hooks(e, &map, &sys, &layout, &mut cursor, &mut hooks, &mut sites, &mut code)?;
    }
    let glibc = flavour.dynamic && flavour.libc.as_deref().is_some_and(|l| l.starts_with("glibc"));
    let preinit = if flavour.dynamic {
        Preinit::plan(e, glibc)?
    } else {
        Preinit::Skipped("static executable: its entry point is the first code to run".into())
    };
    let policy_table = policy.compile();
    let libplans = crate::libplan::encode_table(&libraries);
    let sizes = crate::segment::Sizes {
        stubs: hooks.iter().filter(|h| h.kind != HookKind::Syscall).count() as u64,
        code: code.len() as u64,
        hooks: hooks.len() as u64,
        policy: policy_table.len() as u64,
        libplans: libplans.len() as u64,
        preinit: &preinit,
        phdrs: e.phdrs.len(),
    };
    let segment = crate::segment::reserve(&layout, rt, &sizes)?;
    Ok(Plan {
        flavour,
        preinit,
        hooks,
        sites,
        not_hooked,
        refused,
        syscalls,
        errno,
        layout,
        code_vaddr,
        code,
        libraries,
        libraries_skipped,
        policy_table,
        libplans,
        segment,
    })
}

/// Whether calls of `api` go through the runtime (the runtime's
/// `PolicyTable::watches`): the policy does not allow them all; or `api` is
/// `execve` and rules with matchers look at an exec by name; or `api` is
/// `dlmopen` and anything is watched (a new namespace loads a second libc,
/// which the runtime redirects when it makes the call itself).
pub fn watched(policy: &Policy, api: ApiId) -> bool {
    let any_watched = |a: ApiId| policy.outcomes(a).iter().any(|&o| o != Action::Allow);
    any_watched(api)
        || (api == ApiId::dlmopen && ApiId::ALL.iter().any(|&a| any_watched(a)))
        || (dfpatch_runtime::apis::searched_by(api)
            && dfpatch_runtime::apis::BY_NAME.iter().any(|&a| !policy.chain(a).is_empty()))
        || (api == ApiId::io_uring_setup && rings_restricted(policy))
}

/// Whether rings are made with restrictions (the runtime's `uring`): the
/// policy refuses, in enforce mode, what some io_uring opcode does; then
/// `io_uring_setup` goes through the runtime even where the policy allows it.
pub fn rings_restricted(policy: &Policy) -> bool {
    policy.mode == dfpatch_policy::Mode::Enforce && dfpatch_runtime::uring::left_out(|a| policy.may_refuse(a)).any()
}

/// Layer 4: a hook, a rewritten window and a trampoline (at `cursor`) for
/// each `syscall` site.
#[allow(clippy::too_many_arguments)]
fn syscall_hooks(
    e: &Elf,
    map: &Code,
    sys: &[syscalls::SyscallSite],
    layout: &Layout,
    cursor: &mut u64,
    hooks: &mut Vec<Hook>,
    sites: &mut Vec<PlannedSite>,
    code: &mut Vec<u8>,
) -> Result<()> {
    for s in sys {
        let k = hooks.len();
        let tramp = syscalls::syscall_trampoline(
            &s.window,
            s.nr,
            s.asks,
            *cursor,
            k as u32,
            (layout.sys_hook_entry, layout.arm_child),
        )
        .map_err(Error::OutOfRange)?;
        let api = s.nr.and_then(dfpatch_runtime::apis::syscall_api);
        let at = s.window.insns[s.window.at].ip();
        hooks.push(Hook {
            api: match (api, s.nr) {
                (Some(a), _) => a.name().to_string(),
                // Planned for the backstop: it would trap at every call.
                (None, Some(n)) => format!("system call {n}"),
                (None, None) => "any monitored system call".to_string(),
            },
            symbol: "syscall".into(),
            kind: HookKind::Syscall,
            vaddr: at,
            stub_vaddr: 0,
            api_id: api.map_or(u16::MAX, |a| a as u16),
            prot_filter: false,
        });
        let tactic = Tactic::SyscallMoved { shape: s.window.shape() };
        sites.push(moved_site(e, &s.window, Layer::Syscall, tactic, k, *cursor, map)?);
        push_code(code, cursor, tramp);
    }
    Ok(())
}

/// Appends a trampoline at `cursor`, then pads to 8 bytes with `int3`.
fn push_code(code: &mut Vec<u8>, cursor: &mut u64, bytes: Vec<u8>) {
    *cursor += bytes.len() as u64;
    code.extend(bytes);
    while !code.len().is_multiple_of(8) {
        code.push(0xcc);
        *cursor += 1;
    }
}

fn moved_site(
    e: &Elf,
    w: &moved::Window,
    layer: Layer,
    tactic: Tactic,
    hook: usize,
    to: u64,
    map: &Code,
) -> Result<PlannedSite> {
    let offset = e
        .offset_of(w.start(), w.size() as u64)
        .ok_or_else(|| crate::error::malformed(format!("code at {:#x} is not in the file", w.start())))?;
    Ok(PlannedSite {
        vaddr: w.start(),
        len: w.size(),
        layer,
        section: map.section_of(w.start()).to_string(),
        tactic,
        hook,
        offset,
        bytes: moved::site_bytes(w, to).map_err(Error::OutOfRange)?,
    })
}

/// Layer 1 (dynamic executables): the monitored imports and every
/// `jmp`/`call` through their GOT slots.
fn got_hooks(
    e: &Elf,
    policy: &Policy,
    stubs_vaddr: u64,
    hooks_out: &mut Vec<Hook>,
    sites_out: &mut Vec<PlannedSite>,
    not_hooked: &mut Vec<NotHooked>,
) -> Result<()> {
    // 1. Imports worth hooking under this policy.
    let mut hooks = Vec::new();
    for Import { api, symbol, got_vaddr } in plt::monitored_imports(e) {
        if !watched(policy, api) {
            not_hooked.push(NotHooked { symbol, reason: "the policy allows every call: not hooked".into() });
            continue;
        }
        hooks.push(Hook {
            api: api.name().to_string(),
            symbol,
            kind: HookKind::Got,
            vaddr: got_vaddr,
            stub_vaddr: 0,
            api_id: api as u16,
            prot_filter: api.prot_exec_filter().is_some(),
        });
    }
    let slots: BTreeMap<u64, usize> = hooks.iter().enumerate().map(|(i, h)| (h.vaddr, i)).collect();

    // 2. The sites that reach them.
    let found: Vec<Site> = plt::find_sites(e, &slots)?;
    let mut sites = Vec::new();
    for s in found {
        let offset = e
            .offset_of(s.vaddr, s.len as u64)
            .ok_or_else(|| crate::error::malformed(format!("code at {:#x} is not in the file", s.vaddr)))?;
        let hook =
            *slots.get(&s.got_vaddr).ok_or_else(|| crate::error::malformed("a site through an unplanned GOT slot"))?;
        sites.push((s, offset, hook));
    }
    // Imports no instruction calls through (e.g. only their address is taken) need no stub.
    let used: std::collections::BTreeSet<usize> = sites.iter().map(|s| s.2).collect();
    let mut renumber = vec![usize::MAX; hooks.len()];
    let mut kept = Vec::new();
    for (i, h) in hooks.into_iter().enumerate() {
        if used.contains(&i) {
            renumber[i] = kept.len();
            kept.push(h);
        } else {
            not_hooked.push(NotHooked {
                symbol: h.symbol,
                reason: "no jmp/call through its GOT slot in the executable's code".into(),
            });
        }
    }
    // 3. One stub per hook, in hook order; each site becomes a jmp/call to its stub.
    for (k, h) in kept.iter_mut().enumerate() {
        h.stub_vaddr = stubs_vaddr + k as u64 * STUB_SIZE;
    }
    for (s, offset, hook) in sites {
        let k = renumber[hook];
        let bytes = plt::site_bytes(&s, kept[k].stub_vaddr).ok_or_else(|| {
            Error::OutOfRange(format!(
                "the call at {:#x} would be more than 2 GiB from the runtime placed after the executable's data",
                s.vaddr
            ))
        })?;
        sites_out.push(PlannedSite {
            vaddr: s.vaddr,
            len: s.len,
            layer: s.layer(),
            section: s.section.clone(),
            tactic: match s.kind {
                plt::SiteKind::Jmp => Tactic::Jmp,
                plt::SiteKind::Call => Tactic::Call,
            },
            hook: k,
            offset,
            bytes,
        });
    }
    hooks_out.extend(kept);
    Ok(())
}

/// Chooses the program header to reuse: a PT_NULL (unused) entry, else a
/// PT_NOTE that does not carry the GNU property note (which PT_GNU_PROPERTY
/// also points at), the last such one, else any PT_NOTE.
fn pick_spare(phdrs: &[Phdr]) -> Option<(usize, &'static str)> {
    if let Some(i) = phdrs.iter().position(|p| p.p_type == elf::PT_NULL) {
        return Some((i, "PT_NULL"));
    }
    let prop = phdrs.iter().find(|p| p.p_type == elf::PT_GNU_PROPERTY).map(|p| p.p_offset);
    let notes: Vec<usize> =
        phdrs.iter().enumerate().filter(|(_, p)| p.p_type == elf::PT_NOTE).map(|(i, _)| i).collect();
    notes
        .iter()
        .rev()
        .copied()
        .find(|&i| Some(phdrs[i].p_offset) != prop)
        .or_else(|| notes.last().copied())
        .map(|i| (i, "PT_NOTE"))
}

fn layout(e: &Elf, rt: &Runtime) -> Result<Layout> {
    let (rw_phdr, last) = e
        .phdrs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.p_type == elf::PT_LOAD)
        .max_by_key(|(_, p)| p.p_vaddr)
        .ok_or_else(|| crate::error::malformed("no PT_LOAD segment"))?;
    if last.p_flags & elf::PF_W == 0 {
        return Err(Error::LastSegmentNotWritable);
    }
    let overflow = || crate::error::malformed("addresses overflow");
    let file_end = align_up(e.data.len() as u64, PAGE).ok_or_else(overflow)?;
    let mut rw_vaddr = align_up(last.mem_end().ok_or_else(overflow)?, PAGE).ok_or_else(overflow)?;
    let (phdrs, rx_offset) = match pick_spare(&e.phdrs) {
        Some((index, was)) => (PhdrTactic::Reuse { index, was }, file_end),
        None => {
            // The table moves into the new segment: its offset must be its
            // address minus (first PT_LOAD's p_vaddr - p_offset), at or after
            // the end of the file, so the runtime may sit higher than it must.
            let first = e.loads().next().ok_or_else(overflow)?;
            let cannot = Error::NoSpareHeader;
            let delta = first
                .p_vaddr
                .checked_sub(first.p_offset)
                .ok_or_else(|| cannot("its first PT_LOAD maps a file offset above its address".into()))?;
            if delta % PAGE != 0 || e.phdrs.len() + 1 >= usize::from(elf::PN_XNUM) {
                return Err(cannot("its first PT_LOAD is not page aligned".into()));
            }
            let lowest_rx = file_end.checked_add(delta).ok_or_else(overflow)?;
            rw_vaddr = rw_vaddr.max(lowest_rx.saturating_sub(rt.rx_start));
            let rx_offset = rw_vaddr.checked_add(rt.rx_start).ok_or_else(overflow)? - delta;
            let gap = rx_offset - file_end;
            if gap > MAX_FILE_GAP {
                return Err(cannot(format!(
                    "the copy would have to sit {} MiB past the end of the file (past the zero-filled data)",
                    gap >> 20
                )));
            }
            (PhdrTactic::MoveTable, rx_offset)
        }
    };
    let rx_vaddr = rw_vaddr.checked_add(rt.rx_start).ok_or_else(overflow)?;
    let stubs_vaddr =
        rx_vaddr.checked_add(align_up(rt.rx.len() as u64, 16).ok_or_else(overflow)?).ok_or_else(overflow)?;
    // Room for the runtime, its stubs and tables: checked exactly once they are built.
    if stubs_vaddr >= USER_TOP {
        return Err(Error::OutOfRange(format!("the runtime would be placed at {rx_vaddr:#x}, above user space")));
    }
    Ok(Layout {
        rw_vaddr,
        rw_size: rt.rw_size,
        rw_phdr,
        rx_vaddr,
        rx_offset,
        phdrs,
        stubs_vaddr,
        new_entry: rx_vaddr + (rt.entry - rt.rx_start),
        hook_entry: rx_vaddr + (rt.hook - rt.rx_start),
        sys_hook_entry: rx_vaddr + (rt.sys_hook - rt.rx_start),
        arm_child: rx_vaddr + (rt.arm_child - rt.rx_start),
    })
}
