//! The contract between the rewriter and the injected runtime.
//!
//! Both sides compile this file: the rewriter fills these structures into the
//! output file, the runtime reads them at run time. Every structure is
//! `#[repr(C)]` with its size checked at compile time; any change to a layout
//! must bump [`CONTRACT_VERSION`].
//!
//! All `*_vaddr` fields are link-time virtual addresses in the patched
//! executable. The runtime turns them into run-time addresses by adding the
//! load bias, which it computes as `&CONTRACT - Contract::self_vaddr`.

/// First bytes of the contract, and of the `.dfpatch` section of a patched file.
pub const MAGIC: [u8; 8] = *b"DFPATCH\0";
/// Version of the layouts in this file.
pub const CONTRACT_VERSION: u32 = 3;
/// Magic of the compiled policy table.
pub const POLICY_MAGIC: [u8; 4] = *b"DFPP";
/// Version of the compiled policy table layout.
pub const POLICY_VERSION: u32 = 1;

/// `Contract::flags`: the executable is position independent (ET_DYN).
pub const FLAG_PIE: u32 = 1;
/// `Contract::flags`: the executable has a dynamic loader (`PT_INTERP`):
/// libraries, a libc of their own. A static-pie has `PT_DYNAMIC` but no loader.
pub const FLAG_INTERP: u32 = 2;

/// Written by the rewriter over the runtime's `DFP_CONTRACT` static.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// `R_X86_64_RELATIVE` relocations of the runtime: `rel_count` pairs of
    /// (offset from `rw_vaddr`, addend) as two little-endian `u64`s.
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
    /// Plans for raw `syscall` instructions of needed libraries (see
    /// `libs::LibPlans` for the layout), 0 when none.
    pub libplans_vaddr: u64,
    pub libplans_len: u64,
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
}

/// One hook: what it intercepts and which API it is.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// [`HookEntry::kind`] values, also the event's `layer`.
pub mod hook_kind {
    /// A `jmp`/`call` through a GOT slot of the executable (PLT, `-fno-plt`).
    pub const GOT: u8 = 0;
    /// The entry of the function itself (static executables).
    pub const DETOUR: u8 = 1;
    /// A `syscall` instruction.
    pub const SYSCALL: u8 = 2;
    /// A loaded library's definition (dynamic symbol table), see `libs`.
    pub const SYMBOL: u8 = 3;
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

/// Head of the compiled policy table. Offsets are from the table's start.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyHeader {
    pub magic: [u8; 4],
    pub version: u32,
    pub mode: u8,
    pub default_action: u8,
    pub sink_kind: u8,
    pub _pad: u8,
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
}

/// What the policy decided for one API.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiDecision {
    pub action: u8,
    pub _pad: u8,
    /// Index of the rule that matched, or [`RULE_DEFAULT`].
    pub rule: u16,
}

/// A string inside the policy table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrRef {
    pub off: u32,
    pub len: u32,
}

const _: () = assert!(core::mem::size_of::<Contract>() == 208);
const _: () = assert!(core::mem::size_of::<HookEntry>() == 16);
const _: () = assert!(core::mem::size_of::<PolicyHeader>() == 40);
const _: () = assert!(core::mem::size_of::<ApiDecision>() == 4);
const _: () = assert!(core::mem::size_of::<StrRef>() == 8);
