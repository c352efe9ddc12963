//! The patch plan: what the file is, which imports are hooked at which sites,
//! and where everything dfpatch adds will live. `inspect` prints a plan and
//! `patch` executes the same plan, so the two never disagree.

use crate::dynamic::Preinit;
use crate::elf::{Elf, Phdr};
use crate::error::{Error, Result};
use crate::plt::{self, Import, Site};
use crate::runtime::Runtime;
use crate::trampoline::STUB_SIZE;
use dfpatch_policy::{Action, Policy};
use dfpatch_runtime::bytes::u32_at;
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
    pub dynamic: bool,
    pub interpreter: Option<String>,
    pub libc: Option<String>,
    /// No `.symtab`.
    pub stripped: bool,
    /// CET indirect branch tracking / shadow stack marked in `.note.gnu.property`.
    pub ibt: bool,
    pub shstk: bool,
}

/// A hooked import: hook number = index in `Plan::hooks`.
#[derive(Clone, Debug, Serialize)]
pub struct Hook {
    pub api: String,
    pub symbol: String,
    pub got_vaddr: u64,
    pub stub_vaddr: u64,
    #[serde(skip)]
    pub api_id: u16,
    #[serde(skip)]
    pub prot_filter: bool,
}

/// A site to rewrite.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedSite {
    pub vaddr: u64,
    pub len: usize,
    pub layer: &'static str,
    pub section: String,
    pub kind: plt::SiteKind,
    pub hook: usize,
    #[serde(skip)]
    pub offset: u64,
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
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub flavour: Flavour,
    /// How the runtime starts before library constructors (or why it cannot).
    pub preinit: Preinit,
    pub hooks: Vec<Hook>,
    pub sites: Vec<PlannedSite>,
    pub not_hooked: Vec<NotHooked>,
    pub layout: Layout,
}

/// Checks the file can be patched at all and describes it.
pub fn flavour(e: &Elf) -> Result<Flavour> {
    let pie = e.e_type == elf::ET_DYN;
    // A library may carry PT_INTERP to be runnable (libc.so.6 prints its
    // version): a DT_SONAME without the PIE flag says library.
    if pie && !e.flags_1_pie && (e.interp.is_none() || e.has_soname) {
        return Err(Error::SharedLibrary);
    }
    if !e.is_dynamic() || e.interp.is_none() {
        return Err(Error::Static);
    }
    if e.sections.is_empty() {
        return Err(Error::NoSectionHeaders);
    }
    let musl_interp = e.interp.as_ref().filter(|i| i.contains("musl"));
    let libc = match musl_interp {
        Some(i) => Some(format!("musl ({i})")),
        None => e.needed.iter().find(|n| n.starts_with("libc.so")).map(|n| format!("glibc ({n})")),
    };
    let (ibt, shstk) = x86_features(e);
    Ok(Flavour {
        pie,
        dynamic: true,
        interpreter: e.interp.clone(),
        libc,
        stripped: e.section(".symtab").is_none(),
        ibt,
        shstk,
    })
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

pub fn make(e: &Elf, rt: &Runtime, policy: &Policy) -> Result<Plan> {
    let flavour = flavour(e)?;
    if e.last_section(".dfpatch").is_some() {
        return Err(crate::restore::already_patched(e));
    }
    let layout = layout(e, rt)?;

    // 1. Imports worth hooking under this policy.
    let mut hooks = Vec::new();
    let mut not_hooked = Vec::new();
    for Import { api, symbol, got_vaddr } in plt::monitored_imports(e) {
        if policy.decision(api).0 == Action::Allow {
            not_hooked.push(NotHooked { symbol, reason: "the policy allows every call: not hooked".into() });
            continue;
        }
        hooks.push(Hook {
            api: api.name().to_string(),
            symbol,
            got_vaddr,
            stub_vaddr: 0,
            api_id: api as u16,
            prot_filter: api.shape().prot_exec_filter().is_some(),
        });
    }
    let slots: BTreeMap<u64, usize> = hooks.iter().enumerate().map(|(i, h)| (h.got_vaddr, i)).collect();

    // 2. The sites that reach them.
    let found: Vec<Site> = plt::find_sites(e, &slots)?;
    let mut sites = Vec::new();
    for s in found {
        let offset = e
            .offset_of(s.vaddr, s.len as u64)
            .ok_or_else(|| crate::error::malformed(format!("code at {:#x} is not in the file", s.vaddr)))?;
        sites.push(PlannedSite {
            vaddr: s.vaddr,
            len: s.len,
            layer: s.layer(),
            section: s.section.clone(),
            kind: s.kind,
            hook: *slots
                .get(&s.got_vaddr)
                .ok_or_else(|| crate::error::malformed("a site through an unplanned GOT slot"))?,
            offset,
        });
    }
    // Imports no instruction calls through (e.g. only their address is taken) need no stub.
    let used: std::collections::BTreeSet<usize> = sites.iter().map(|s| s.hook).collect();
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
    for s in &mut sites {
        s.hook = renumber[s.hook];
    }
    let mut hooks = kept;

    // 3. One stub per hook, in hook order.
    for (k, h) in hooks.iter_mut().enumerate() {
        h.stub_vaddr = layout.stubs_vaddr + k as u64 * STUB_SIZE;
    }
    let preinit = Preinit::plan(e, flavour.libc.as_deref().is_some_and(|l| l.starts_with("glibc")))?;
    Ok(Plan { flavour, preinit, hooks, sites, not_hooked, layout })
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
    })
}
