//! The contract between the rewriter and the injected runtime: every table
//! the rewriter writes into a patched file and the runtime reads, the number
//! spaces the two share (the `%r11` values stubs and trampolines pass, the
//! kinds of hook), and the runtime's symbol names the rewriter looks up.
//!
//! Both sides compile this file. Every table is made of [`Record`]s:
//! `#[repr(C)]` structures without implicit padding, declared with
//! [`record!`], which checks at compile time that the size the encoding
//! writes is the structure's size, and generates the one encoder
//! ([`Record::encode_into`]) and the one bounds-checked decoder
//! ([`Record::decode`]) both sides use. Nobody reads a field at a raw offset.
//! Any change to a layout must bump [`CONTRACT_VERSION`] (or
//! [`POLICY_VERSION`] for the policy table).
//!
//! All `*_vaddr` fields are link-time virtual addresses in the patched
//! executable. The runtime turns them into run-time addresses by adding the
//! load bias, which it computes as `&CONTRACT - Contract::self_vaddr`.

#[cfg(not(target_endian = "little"))]
compile_error!("the contract is little-endian: dfpatch runs on, and writes, x86-64");

/// A fixed-size field of a [`Record`], little-endian.
pub trait Field: Sized + Copy {
    /// Bytes it takes.
    const SIZE: usize;
    /// Writes it into `out`, which is exactly [`Field::SIZE`] bytes.
    fn put(&self, out: &mut [u8]);
    /// Reads it from `b`, which is exactly [`Field::SIZE`] bytes.
    fn get(b: &[u8]) -> Option<Self>;
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            fn put(&self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            fn get(b: &[u8]) -> Option<Self> {
                Some(<$t>::from_le_bytes(b.try_into().ok()?))
            }
        }
    )*};
}
int_field!(u8, u16, u32, u64, i32, i64);

impl<const N: usize> Field for [u8; N] {
    const SIZE: usize = N;
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(self);
    }
    fn get(b: &[u8]) -> Option<Self> {
        b.try_into().ok()
    }
}

impl<const N: usize> Field for [u16; N] {
    const SIZE: usize = 2 * N;
    fn put(&self, out: &mut [u8]) {
        for (v, o) in self.iter().zip(out.chunks_exact_mut(2)) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }
    fn get(b: &[u8]) -> Option<Self> {
        let mut v = [0u16; N];
        for (d, c) in v.iter_mut().zip(b.chunks_exact(2)) {
            *d = u16::from_le_bytes([c[0], c[1]]);
        }
        (b.len() == 2 * N).then_some(v)
    }
}

/// A structure of the contract, as bytes in a patched file.
pub trait Record: Sized + Copy {
    /// Bytes it takes in a table: its `size_of`, checked at compile time.
    const SIZE: usize;
    /// Writes it into `out[..SIZE]`; `None` when `out` is shorter.
    fn encode_into(&self, out: &mut [u8]) -> Option<()>;
    /// Reads one from the first [`Record::SIZE`] bytes of `b`; `None` when
    /// `b` is shorter.
    fn decode(b: &[u8]) -> Option<Self>;
    /// Record `i` of a table of them starting at `at` in `b`.
    fn decode_at(b: &[u8], at: usize, i: usize) -> Option<Self> {
        let start = i.checked_mul(Self::SIZE)?.checked_add(at)?;
        Self::decode(b.get(start..start.checked_add(Self::SIZE)?)?)
    }
}

/// Declares `#[repr(C)]` structures that are [`Record`]s. Fields are laid out
/// in order without implicit padding (explicit `_pad` fields where alignment
/// needs them): the compile-time check that the fields' sizes add up to the
/// structure's size fails otherwise.
macro_rules! record {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    )*) => {$(
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        const _: () = assert!(0 $( + <$ty as Field>::SIZE )* == core::mem::size_of::<$name>(), "implicit padding");

        impl Record for $name {
            const SIZE: usize = core::mem::size_of::<$name>();
            fn encode_into(&self, out: &mut [u8]) -> Option<()> {
                let mut at = 0usize;
                $(
                    <$ty as Field>::put(&self.$field, out.get_mut(at..at + <$ty as Field>::SIZE)?);
                    at += <$ty as Field>::SIZE;
                )*
                let _ = at;
                Some(())
            }
            fn decode(b: &[u8]) -> Option<Self> {
                let mut at = 0usize;
                $(
                    let $field = <$ty as Field>::get(b.get(at..at + <$ty as Field>::SIZE)?)?;
                    at += <$ty as Field>::SIZE;
                )*
                let _ = at;
                Some($name { $($field),* })
            }
        }
    )*};
}

/// First bytes of the contract, and of the `.dfpatch` section of a patched file.
pub const MAGIC: [u8; 8] = *b"DFPATCH\0";
/// Version of the layouts of the contract and the tables it points to
/// (4: the library plans became records, with a version of their own).
pub const CONTRACT_VERSION: u32 = 4;
/// Magic of the compiled policy table.
pub const POLICY_MAGIC: [u8; 4] = *b"DFPP";
/// Version of the compiled policy table layout (2: rules with argument and
/// caller matchers, and the chain of them each API tries).
pub const POLICY_VERSION: u32 = 2;

/// `Contract::flags`: the executable is position independent (ET_DYN).
pub const FLAG_PIE: u32 = 1;
/// `Contract::flags`: the executable has a dynamic loader (`PT_INTERP`):
/// libraries, a libc of their own. A static-pie has `PT_DYNAMIC` but no loader.
pub const FLAG_INTERP: u32 = 2;

/// The runtime's symbols the rewriter places and points at, by name in the
/// runtime image.
pub mod symbols {
    /// The new entry point: keeps the initial stack, runs start-up, jumps to the original entry.
    pub const ENTRY: &str = "dfp_entry";
    /// What `DT_PREINIT_ARRAY` points at (glibc's loader calls it before any constructor).
    pub const PREINIT: &str = "dfp_preinit_entry";
    /// Where every stub of a function call goes (`%r11`: see [`super::r11`]).
    pub const HOOK: &str = "dfp_hook";
    /// Where every rewritten `syscall` site goes.
    pub const SYS_HOOK: &str = "dfp_sys_hook";
    /// What a trampoline's `clone`/`fork` child calls to arm its backstop.
    pub const ARM_CHILD: &str = "dfp_arm_child";
    /// The output section holding the runtime's [`super::Contract`].
    pub const CONTRACT_SECTION: &str = ".dfp_contract";
}

/// The numbers stubs and trampolines pass to the runtime in `%r11`: which
/// table entry the call or `syscall` stands for. The spaces do not overlap.
pub mod r11 {
    /// No flag: an index into the executable's [`super::HookEntry`] table
    /// (small: one per planned site).
    pub const HOOK_INDEX_MAX: u64 = (1 << 29) - 1;
    /// A stub the runtime made for a library's definition (the symbol
    /// layer): the low bits are the stub's slot.
    pub const STUB: u64 = 1 << 31;
    /// With [`STUB`]: the call came through the function's own entry,
    /// detoured in memory (layer `entry`), not through its symbol.
    pub const ENTRY: u64 = 1 << 29;
    /// A library's `syscall` site rewritten from a [`super::SiteRecord`]:
    /// the low bits are its site number.
    pub const LIB_SITE: u64 = 1 << 30;
}

/// Where a detoured entry's trampoline is assumed to sit, in its library's
/// address space, when the rewriter encodes it: the runtime adds
/// `base + TRAMP_BASE - where` to each of its [`SiteRecord::fixups`].
pub const TRAMP_BASE: u64 = 0x4000_0000;
/// Most rel32 fixups of one entry trampoline.
pub const MAX_FIXUPS: usize = 4;
/// Most library sites (`syscall`s and entries) one executable carries plans for.
pub const MAX_LIB_SITES: usize = 1024;
/// Longest window a library site rewrites.
pub const MAX_WINDOW: usize = 32;

record! {
    /// Written by the rewriter over the runtime's `DFP_CONTRACT` static.
    pub struct Contract {
        pub magic: [u8; 8],
        pub version: u32,
        pub flags: u32,
        /// Where this structure itself is linked.
        pub self_vaddr: u64,
        /// The executable's original `e_entry`.
        pub orig_entry: u64,
        /// Start of the runtime's writable image (zero-filled by the loader).
        pub rw_vaddr: u64,
        /// Initial contents of the writable image's data part (copied at init).
        pub rw_init_vaddr: u64,
        pub rw_init_len: u64,
        /// `R_X86_64_RELATIVE` relocations of the runtime: `rel_count`
        /// [`Relocation`]s.
        pub rel_vaddr: u64,
        pub rel_count: u64,
        /// The executable's `PT_DYNAMIC`, 0 when it has none.
        pub dynamic_vaddr: u64,
        /// Lowest and highest (exclusive) address of the executable's own
        /// segments, the runtime's included: a caller in this range is the executable.
        pub exe_lo: u64,
        pub exe_hi: u64,
        /// Table of [`HookEntry`], indexed by the hook number a stub passes in `%r11`.
        pub hooks_vaddr: u64,
        pub hooks_count: u64,
        /// The compiled policy ([`PolicyHeader`] first).
        pub policy_vaddr: u64,
        pub policy_len: u64,
        /// SHA-256 of the compiled policy table.
        pub policy_hash: [u8; 32],
        /// dfpatch version that wrote the file, NUL padded.
        pub tool_version: [u8; 16],
        /// Where a refused call's `errno` goes in an executable without a dynamic
        /// loader to ask: the link-time address of its `__errno_location`
        /// (0: none), else the offset of its TLS `errno` from the thread pointer
        /// (0: none). Dynamic executables ask the loaded libc instead.
        pub errno_fn_vaddr: u64,
        pub errno_tpoff: i64,
        /// The library plans ([`LibPlansHeader`] first), 0 when none.
        pub libplans_vaddr: u64,
        pub libplans_len: u64,
    }

    /// One of the runtime's own `R_X86_64_RELATIVE` relocations, applied by
    /// the runtime to itself at start-up.
    pub struct Relocation {
        /// Offset from `Contract::rw_vaddr` of the word to write.
        pub offset: u64,
        /// Added to the writable image's run-time address.
        pub addend: u64,
    }

    /// One hook: what it intercepts and which API it is.
    pub struct HookEntry {
        /// [`hook_kind::GOT`]: the GOT slot that holds the real function's
        /// address once bound. [`hook_kind::DETOUR`]: the trampoline that runs the
        /// function's moved first instructions and jumps back into it.
        /// [`hook_kind::SYSCALL`]: the address of the original `syscall`
        /// instruction (for the event's caller).
        pub vaddr: u64,
        /// An [`crate::apis::ApiId`] as `u16` (unused for system call sites,
        /// whose number is read at run time).
        pub api: u16,
        pub kind: u8,
        pub _pad: [u8; 5],
    }

    /// Head of the library plans: patch-time plans for the libraries a
    /// dynamic executable needs, applied in memory at start-up to a loaded
    /// library that is the planned file. After it: `lib_count`
    /// [`LibRecord`]s, `site_count` [`SiteRecord`]s, then the trampolines
    /// and the libraries' names (see [`LibPlansLayout`]).
    pub struct LibPlansHeader {
        pub version: u32,
        pub lib_count: u32,
        pub site_count: u32,
        pub _pad: u32,
    }

    /// One planned library: how the runtime knows it is the planned file,
    /// and its sites.
    pub struct LibRecord {
        /// Its GNU build ID ([`LibRecord::id_len`] bytes), or with
        /// [`ID_BY_FILE`] its size, mtime and mtime nanoseconds (three `u64`).
        pub identity: [u8; 32],
        pub id_len: u32,
        /// Its sites: `site_count` records from `first_site` on.
        pub first_site: u32,
        pub site_count: u32,
        /// Its path where it was planned (offset and length in the table),
        /// for the event that says a plan was not applied.
        pub name_off: u32,
        pub name_len: u32,
        pub _pad: u32,
    }

    /// One window of a library's code to rewrite: a `syscall` instruction
    /// with its neighbours ([`site_kind::SYSCALL`]), or the first
    /// instructions of a monitored function ([`site_kind::ENTRY`]). Offsets
    /// are from the library's load base; `*_at` are offsets in the trampoline.
    pub struct SiteRecord {
        /// First byte of the window, and its length (at most [`MAX_WINDOW`]).
        pub window: u64,
        /// The `syscall` instruction (the event's caller), or the function.
        pub target: u64,
        /// The trampoline: offset in the plans table and length.
        pub tramp_off: u32,
        pub tramp_len: u32,
        /// Its jump back's rel32, or [`NO_JUMP_BACK`] (the moved code returns).
        pub back_at: u32,
        /// Where the 8-byte address of `dfp_sys_hook` goes (`syscall` sites);
        /// the address of the thunk that runs the system call goes in the 8
        /// bytes after it.
        pub slot_at: u32,
        /// Where the hook number's imm32 is (`syscall` sites: renumbered in
        /// each `dlmopen` namespace's copy); 0 for a trampoline that asks
        /// nothing (its number is one the dispatcher would let through at
        /// once) and goes straight to its thunk.
        pub number_at: u32,
        pub window_len: u32,
        /// A [`site_kind`].
        pub kind: u8,
        /// Entries: how many of [`SiteRecord::fixups`] are used.
        pub fixup_count: u8,
        /// Entries: an [`crate::apis::ApiId`].
        pub api: u16,
        /// Entries: offsets of the rel32 fields that leave the trampoline.
        pub fixups: [u16; MAX_FIXUPS],
        /// `syscall` sites: where the thunk jumps back to, after the system call.
        pub resume_at: u32,
        /// The bytes the window holds: checked before anything is rewritten.
        pub original: [u8; MAX_WINDOW],
    }

    /// Head of the compiled policy table. Offsets are from the table's start.
    pub struct PolicyHeader {
        pub magic: [u8; 4],
        pub version: u32,
        pub mode: u8,
        pub default_action: u8,
        pub sink_kind: u8,
        /// [`policy_flags`].
        pub flags: u8,
        pub sink_fd: i32,
        /// Path of a `file:` sink (not NUL terminated).
        pub sink_path_off: u32,
        pub sink_path_len: u32,
        /// `api_count` [`ApiDecision`]s, indexed by [`crate::apis::ApiId`].
        pub decisions_off: u32,
        pub api_count: u32,
        /// `rule_count` [`StrRef`]s: the rule ids.
        pub rules_off: u32,
        pub rule_count: u32,
        /// `rule_count` [`RuleRecord`]s: each rule's action and matchers.
        pub matchers_off: u32,
        /// `api_count` [`Span`]s, indexed by [`crate::apis::ApiId`]: the
        /// rules with matchers an API tries, in order, before its
        /// [`ApiDecision`] (a list of `u16` rule numbers).
        pub chains_off: u32,
    }

    /// What the policy decides for one API when no rule with matchers
    /// matches (the first rule without matchers that covers it, or the
    /// default).
    pub struct ApiDecision {
        pub action: u8,
        /// Non-zero: the API has a chain of rules with matchers to try first.
        pub chained: u8,
        /// Index of the rule that matched, or [`RULE_DEFAULT`].
        pub rule: u16,
    }

    /// A string inside the policy table.
    pub struct StrRef {
        pub off: u32,
        pub len: u32,
    }

    /// `count` records of some kind, starting `off` bytes into the table.
    pub struct Span {
        pub off: u32,
        pub count: u32,
    }

    /// One rule: its action and what each of its matchers lists (see
    /// [`match_key`]); a matcher not in `keys` is not there (matches
    /// anything). Each list is an offset into the table and a count.
    pub struct RuleRecord {
        pub action: u8,
        /// [`match_key`] bits: the matchers the rule has.
        pub keys: u8,
        /// `access`: [`access`] bits.
        pub access: u8,
        pub _pad: u8,
        pub _pad2: u32,
        /// [`IpBlock`]s.
        pub ip_off: u32,
        pub ip_count: u32,
        /// [`PortRange`]s.
        pub port_off: u32,
        pub port_count: u32,
        /// [`StrRef`]s: path globs.
        pub path_off: u32,
        pub path_count: u32,
        /// [`StrRef`]s: command globs.
        pub command_off: u32,
        pub command_count: u32,
        /// [`StrRef`]s: caller module globs (`main` is [`match_key::CALLER_MAIN`]).
        pub caller_off: u32,
        pub caller_count: u32,
    }

    /// An `ip` entry: an address and how many of its leading bits count.
    pub struct IpBlock {
        /// 4 or 6.
        pub family: u8,
        pub prefix: u8,
        pub _pad: [u8; 2],
        /// The address, an IPv4 one in the first 4 bytes.
        pub addr: [u8; 16],
    }

    /// A `port` entry: `lo..=hi`.
    pub struct PortRange {
        pub lo: u16,
        pub hi: u16,
    }
}

impl Contract {
    /// The all-zero contract the runtime is built with, before the rewriter fills it.
    pub const EMPTY: Contract = Contract {
        magic: [0; 8],
        version: 0,
        flags: 0,
        self_vaddr: 0,
        orig_entry: 0,
        rw_vaddr: 0,
        rw_init_vaddr: 0,
        rw_init_len: 0,
        rel_vaddr: 0,
        rel_count: 0,
        dynamic_vaddr: 0,
        exe_lo: 0,
        exe_hi: 0,
        hooks_vaddr: 0,
        hooks_count: 0,
        policy_vaddr: 0,
        policy_len: 0,
        policy_hash: [0; 32],
        tool_version: [0; 16],
        errno_fn_vaddr: 0,
        errno_tpoff: 0,
        libplans_vaddr: 0,
        libplans_len: 0,
    };

    /// Whether this is a contract of this version.
    pub fn is_current(&self) -> bool {
        self.magic == MAGIC && self.version == CONTRACT_VERSION
    }
}

/// [`HookEntry::kind`] values, also the event's `layer`.
pub mod hook_kind {
    /// A `jmp`/`call` through a GOT slot of the executable (PLT, `-fno-plt`).
    pub const GOT: u8 = 0;
    /// The entry of the function itself (static executables; libc's, in memory).
    pub const DETOUR: u8 = 1;
    /// A `syscall` instruction.
    pub const SYSCALL: u8 = 2;
    /// A loaded library's definition (dynamic symbol table), see `symbols`.
    pub const SYMBOL: u8 = 3;
    /// A `syscall` from code no layer rewrote, trapped (see `backstop`).
    pub const BACKSTOP: u8 = 4;
}

/// [`RuleRecord::keys`] bits: which matchers a rule has.
pub mod match_key {
    pub const IP: u8 = 1;
    pub const PORT: u8 = 2;
    pub const PATH: u8 = 4;
    pub const COMMAND: u8 = 8;
    pub const ACCESS: u8 = 16;
    pub const CALLER: u8 = 32;
    /// `caller` lists `main`: the executable itself.
    pub const CALLER_MAIN: u8 = 64;
}

/// [`RuleRecord::access`] bits, and a call's access (file class).
pub mod access {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const CREATE: u8 = 4;
}

/// [`PolicyHeader::flags`] bits.
pub mod policy_flags {
    /// `backstop = false`: the runtime does not arm Syscall User Dispatch.
    pub const NO_BACKSTOP: u8 = 1;
}

/// [`SiteRecord::kind`] values.
pub mod site_kind {
    /// A `syscall` instruction and its neighbours.
    pub const SYSCALL: u8 = 0;
    /// A monitored function's first instructions.
    pub const ENTRY: u8 = 1;
    /// A `syscall` instruction whose call may start a process or a thread
    /// (see [`crate::apis::may_spawn`]): its thunk arms the child's backstop.
    pub const SYSCALL_SPAWN: u8 = 2;
}

/// [`LibPlansHeader::version`] of this layout (2: libraries have names; 3:
/// `syscall` sites run their system call in a thunk of the runtime's).
pub const LIBPLANS_VERSION: u32 = 3;
/// [`LibRecord::id_len`] of a library without a build ID, known by its file.
pub const ID_BY_FILE: u32 = u32::MAX;
/// [`SiteRecord::back_at`] of a trampoline without a jump back.
pub const NO_JUMP_BACK: u32 = u32::MAX;

impl LibRecord {
    /// The identity of a library without a build ID: its size, mtime and
    /// mtime nanoseconds.
    pub fn by_file(size: u64, mtime: u64, mtime_nsec: u64, first_site: u32, site_count: u32) -> LibRecord {
        let mut identity = [0u8; 32];
        for (out, v) in identity.chunks_exact_mut(8).zip([size, mtime, mtime_nsec]) {
            out.copy_from_slice(&v.to_le_bytes());
        }
        LibRecord { identity, id_len: ID_BY_FILE, first_site, site_count, name_off: 0, name_len: 0, _pad: 0 }
    }

    /// A library known by its GNU build ID (at most 32 bytes; longer ones are cut).
    pub fn by_build_id(id: &[u8], first_site: u32, site_count: u32) -> LibRecord {
        let mut identity = [0u8; 32];
        let n = id.len().min(32);
        identity[..n].copy_from_slice(&id[..n]);
        LibRecord { identity, id_len: n as u32, first_site, site_count, name_off: 0, name_len: 0, _pad: 0 }
    }

    /// The file identity (size, mtime, nanoseconds), for a library without a build ID.
    pub fn file_identity(&self) -> Option<(u64, u64, u64)> {
        if self.id_len != ID_BY_FILE {
            return None;
        }
        let word = |k: usize| <u64 as Field>::get(&self.identity[8 * k..8 * k + 8]);
        Some((word(0)?, word(1)?, word(2)?))
    }

    /// The build ID, for a library known by one.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.identity.get(..self.id_len as usize)
    }
}

impl SiteRecord {
    pub fn is_entry(&self) -> bool {
        self.kind == site_kind::ENTRY
    }

    /// The bytes the window holds.
    pub fn original(&self) -> Option<&[u8]> {
        self.original.get(..self.window_len as usize)
    }

    /// The fixups used.
    pub fn fixups(&self) -> Option<&[u16]> {
        self.fixups.get(..self.fixup_count as usize)
    }
}

/// Where each part of the library plans table is, from its header's counts:
/// computed the same way by the writer and the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LibPlansLayout {
    pub lib_count: usize,
    pub site_count: usize,
}

impl LibPlansLayout {
    pub const LIBS_AT: usize = LibPlansHeader::SIZE;

    pub fn sites_at(&self) -> usize {
        Self::LIBS_AT + self.lib_count * LibRecord::SIZE
    }

    /// Where the trampolines start.
    pub fn tramps_at(&self) -> usize {
        self.sites_at() + self.site_count * SiteRecord::SIZE
    }
}

/// The library plans table, read: every record bounds checked (the table is
/// only read, never trusted to point at mapped memory).
#[derive(Clone, Copy)]
pub struct LibPlans<'a> {
    bytes: &'a [u8],
    layout: LibPlansLayout,
}

impl<'a> LibPlans<'a> {
    /// `None` for an empty, damaged or other-version table.
    pub fn parse(bytes: &'a [u8]) -> Option<LibPlans<'a>> {
        let h = LibPlansHeader::decode(bytes)?;
        if h.version != LIBPLANS_VERSION || h.site_count as usize > MAX_LIB_SITES {
            return None;
        }
        let layout = LibPlansLayout { lib_count: h.lib_count as usize, site_count: h.site_count as usize };
        (bytes.len() >= layout.tramps_at()).then_some(LibPlans { bytes, layout })
    }

    pub fn lib_count(&self) -> usize {
        self.layout.lib_count
    }

    pub fn site_count(&self) -> usize {
        self.layout.site_count
    }

    pub fn lib(&self, k: usize) -> Option<LibRecord> {
        (k < self.layout.lib_count).then(|| LibRecord::decode_at(self.bytes, LibPlansLayout::LIBS_AT, k))?
    }

    pub fn libs(&self) -> impl Iterator<Item = LibRecord> + 'a {
        let this = *self;
        (0..self.layout.lib_count).filter_map(move |k| this.lib(k))
    }

    pub fn site(&self, i: usize) -> Option<SiteRecord> {
        (i < self.layout.site_count).then(|| SiteRecord::decode_at(self.bytes, self.layout.sites_at(), i))?
    }

    /// A library's name (its path where it was planned).
    pub fn name(&self, l: &LibRecord) -> Option<&'a [u8]> {
        let off = l.name_off as usize;
        self.bytes.get(off..off.checked_add(l.name_len as usize)?)
    }

    /// A site's trampoline bytes.
    pub fn tramp(&self, s: &SiteRecord) -> Option<&'a [u8]> {
        let off = s.tramp_off as usize;
        self.bytes.get(off..off.checked_add(s.tramp_len as usize)?)
    }
}

/// Action numbers shared by the policy compiler and the runtime.
pub mod action {
    pub const ALLOW: u8 = 0;
    pub const ALERT: u8 = 1;
    pub const DENY: u8 = 2;
    pub const KILL: u8 = 3;
}

/// Mode numbers.
pub mod mode {
    pub const MONITOR: u8 = 0;
    pub const ENFORCE: u8 = 1;
}

/// Sink kinds.
pub mod sink {
    pub const STDERR: u8 = 0;
    pub const FILE: u8 = 1;
    pub const FD: u8 = 2;
}

/// Rule index meaning "no rule matched, the default applied".
pub const RULE_DEFAULT: u16 = u16::MAX;

const _: () = assert!(Contract::SIZE == 208);
const _: () = assert!(Relocation::SIZE == 16);
const _: () = assert!(HookEntry::SIZE == 16);
const _: () = assert!(LibPlansHeader::SIZE == 16);
const _: () = assert!(LibRecord::SIZE == 56);
const _: () = assert!(SiteRecord::SIZE == 88);
const _: () = assert!(PolicyHeader::SIZE == 48);
const _: () = assert!(RuleRecord::SIZE == 48);
const _: () = assert!(IpBlock::SIZE == 20);
const _: () = assert!(PortRange::SIZE == 4);
const _: () = assert!(Span::SIZE == 8);
const _: () = assert!(ApiDecision::SIZE == 4);
const _: () = assert!(StrRef::SIZE == 8);
// The flag spaces do not overlap, and hook indexes stay below them.
const _: () = assert!(r11::STUB & r11::ENTRY == 0 && r11::STUB & r11::LIB_SITE == 0 && r11::ENTRY & r11::LIB_SITE == 0);
const _: () = assert!(r11::HOOK_INDEX_MAX < r11::ENTRY);
const _: () = assert!(MAX_LIB_SITES * 2 < r11::ENTRY as usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<R: Record + PartialEq + core::fmt::Debug>(r: R) {
        let mut buf = [0u8; 512];
        r.encode_into(&mut buf).unwrap();
        assert_eq!(R::decode(&buf[..R::SIZE]), Some(r));
        assert_eq!(R::decode(&buf[..R::SIZE - 1]), None, "a short record is refused");
        assert_eq!(r.encode_into(&mut buf[..R::SIZE - 1]), None, "a short buffer is refused");
    }

    #[test]
    fn records_round_trip() {
        let mut c = Contract::EMPTY;
        c.magic = MAGIC;
        c.version = 9;
        c.policy_len = 77;
        c.exe_hi = 5;
        c.policy_hash[31] = 1;
        c.tool_version[0] = b'x';
        c.errno_tpoff = -72;
        c.libplans_len = u64::MAX;
        round_trip(c);
        round_trip(HookEntry { vaddr: 0x1234_5678_9abc, api: 7, kind: hook_kind::SYSCALL, _pad: [0; 5] });
        round_trip(LibRecord::by_file(1, 2, 3, 4, 5));
        round_trip(SiteRecord {
            window: 0x1000,
            target: 0x1004,
            tramp_off: 9,
            tramp_len: 40,
            back_at: NO_JUMP_BACK,
            slot_at: 32,
            number_at: 3,
            window_len: 7,
            kind: site_kind::ENTRY,
            fixup_count: 2,
            api: 11,
            fixups: [1, 2, 0xfffe, 4],
            resume_at: 0x1234,
            original: [0xcc; MAX_WINDOW],
        });
        round_trip(PolicyHeader {
            magic: POLICY_MAGIC,
            version: 1,
            mode: 1,
            default_action: 2,
            sink_kind: 3,
            flags: 1,
            sink_fd: -5,
            sink_path_off: 6,
            sink_path_len: 7,
            decisions_off: 8,
            api_count: 9,
            rules_off: 10,
            rule_count: 11,
            matchers_off: 12,
            chains_off: 13,
        });
        round_trip(RuleRecord {
            action: 2,
            keys: match_key::PATH | match_key::ACCESS,
            access: access::READ,
            _pad: 0,
            _pad2: 0,
            ip_off: 1,
            ip_count: 2,
            port_off: 3,
            port_count: 4,
            path_off: 5,
            path_count: 6,
            command_off: 7,
            command_count: 8,
            caller_off: 9,
            caller_count: 10,
        });
        round_trip(IpBlock { family: 6, prefix: 64, _pad: [0; 2], addr: [0xfe; 16] });
        round_trip(PortRange { lo: 8000, hi: 8099 });
        round_trip(Span { off: 1, count: 2 });
    }

    #[test]
    fn fields_are_where_repr_c_puts_them() {
        // The encoding is the in-memory layout: spot-check the last field of
        // each record at its repr(C) offset.
        let mut c = Contract::EMPTY;
        c.libplans_len = 0x0102_0304_0506_0708;
        let mut buf = [0u8; Contract::SIZE];
        c.encode_into(&mut buf).unwrap();
        assert_eq!(buf[200..208], 0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(core::mem::offset_of!(Contract, libplans_len), 200);
        assert_eq!(core::mem::offset_of!(SiteRecord, original), 56);
        assert_eq!(core::mem::offset_of!(LibRecord, first_site), 36);
        assert_eq!(core::mem::offset_of!(LibRecord, name_len), 48);
    }

    #[test]
    fn library_identities() {
        let r = LibRecord::by_file(10, 20, 30, 0, 1);
        assert_eq!(r.file_identity(), Some((10, 20, 30)));
        let r = LibRecord::by_build_id(&[1, 2, 3], 0, 1);
        assert_eq!(r.build_id(), Some(&[1u8, 2, 3][..]));
        assert_eq!(r.file_identity(), None);
    }

    #[test]
    fn damaged_plan_tables_are_refused() {
        assert!(LibPlans::parse(&[]).is_none());
        let mut t = [0u8; 16];
        LibPlansHeader { version: LIBPLANS_VERSION, lib_count: 1, site_count: 1, _pad: 0 }.encode_into(&mut t).unwrap();
        assert!(LibPlans::parse(&t).is_none(), "counts that run past the table");
        LibPlansHeader { version: 99, lib_count: 0, site_count: 0, _pad: 0 }.encode_into(&mut t).unwrap();
        assert!(LibPlans::parse(&t).is_none(), "another version");
        LibPlansHeader { version: LIBPLANS_VERSION, lib_count: 0, site_count: 0, _pad: 0 }.encode_into(&mut t).unwrap();
        let p = LibPlans::parse(&t).unwrap();
        assert!(p.lib(0).is_none() && p.site(0).is_none());
    }
}
