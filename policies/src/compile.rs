//! Compiling a [`Policy`] into the binary table the runtime reads.
//!
//! Layout (all little-endian, every part 8-byte aligned, offsets from the
//! table's start; see `dfpatch_runtime::contract`):
//!
//! | part | size |
//! | --- | --- |
//! | `PolicyHeader` | 40 bytes |
//! | `ApiDecision` per API, indexed by `ApiId` | `API_COUNT` × 4 bytes |
//! | `StrRef` per rule: the rule ids | `rule_count` × 8 bytes |
//! | string area: rule ids, then the `file:` sink path | as needed |
//!
//! The table is padded with zeros to a multiple of 8 bytes.

use dfpatch_runtime::apis::{ApiId, API_COUNT};
use dfpatch_runtime::contract::{
    sink, ApiDecision, PolicyHeader, Record, StrRef, POLICY_MAGIC, POLICY_VERSION, RULE_DEFAULT,
};

use crate::model::{Policy, Sink};

/// Alignment of every part of the table, and of its length.
pub(crate) const ALIGN: usize = 8;
/// Size of `PolicyHeader`.
pub(crate) const HEADER_SIZE: usize = PolicyHeader::SIZE;
/// Size of `ApiDecision`.
pub(crate) const DECISION_SIZE: usize = ApiDecision::SIZE;
/// Size of `StrRef`.
pub(crate) const STR_REF_SIZE: usize = StrRef::SIZE;
/// `PolicyHeader::sink_fd` for a stderr sink.
const STDERR_FD: i32 = 2;
/// `PolicyHeader::sink_fd` for a file sink (the runtime opens the file).
const NO_FD: i32 = -1;

impl Policy {
    /// The compiled table. Deterministic: equal policies give equal bytes.
    ///
    /// Meant for policies from [`Policy::parse`], which enforces the limits
    /// the table relies on; out-of-range values in a hand-built policy are
    /// clamped rather than causing a panic.
    pub fn compile(&self) -> Vec<u8> {
        let strings = StringArea::of(self);
        let layout = Layout::new(self.rules.len(), strings.bytes.len());
        let mut out = Writer::with_capacity(layout.total);
        self.write_header(&mut out, &layout, &strings);
        self.write_decisions(&mut out);
        out.pad_to(layout.rules_off);
        for &(off, len) in &strings.rule_ids {
            out.record(&StrRef { off: to_u32(layout.strings_off + off), len: to_u32(len) });
        }
        out.pad_to(layout.strings_off);
        out.bytes(&strings.bytes);
        out.pad_to(layout.total);
        out.finish()
    }

    /// Writes the `PolicyHeader`.
    fn write_header(&self, out: &mut Writer, layout: &Layout, strings: &StringArea) {
        let (sink_kind, sink_fd) = sink_fields(&self.sink);
        let (path_off, path_len) = match strings.sink_path {
            Some((off, len)) => (layout.strings_off + off, len),
            None => (0, 0),
        };
        out.record(&PolicyHeader {
            magic: POLICY_MAGIC,
            version: POLICY_VERSION,
            mode: self.mode.code(),
            default_action: self.default.code(),
            sink_kind,
            flags: if self.backstop_off { dfpatch_runtime::contract::policy_flags::NO_BACKSTOP } else { 0 },
            sink_fd,
            sink_path_off: to_u32(path_off),
            sink_path_len: to_u32(path_len),
            decisions_off: to_u32(layout.decisions_off),
            api_count: to_u32(API_COUNT),
            rules_off: to_u32(layout.rules_off),
            rule_count: to_u32(self.rules.len()),
        });
    }

    /// Writes one `ApiDecision` per API, in `ApiId` order.
    fn write_decisions(&self, out: &mut Writer) {
        for &api in ApiId::ALL {
            let (action, rule) = self.decision(api);
            out.record(&ApiDecision { action: action.code(), _pad: 0, rule: rule.map_or(RULE_DEFAULT, rule_number) });
        }
    }
}

/// `PolicyHeader::sink_kind` and `sink_fd` for `sink`.
fn sink_fields(target: &Sink) -> (u8, i32) {
    match target {
        Sink::Stderr => (sink::STDERR, STDERR_FD),
        Sink::File(_) => (sink::FILE, NO_FD),
        Sink::Fd(fd) => (sink::FD, *fd),
    }
}

/// A rule index as stored, clamped below [`RULE_DEFAULT`].
fn rule_number(index: usize) -> u16 {
    u16::try_from(index).unwrap_or(RULE_DEFAULT).min(RULE_DEFAULT - 1)
}

/// An offset or length as stored; saturates (only reachable for policies
/// far beyond the parser's limits).
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `n` rounded up to [`ALIGN`].
pub(crate) fn align(n: usize) -> usize {
    n.div_ceil(ALIGN).saturating_mul(ALIGN)
}

/// Where each part of the table goes.
struct Layout {
    decisions_off: usize,
    rules_off: usize,
    strings_off: usize,
    total: usize,
}

impl Layout {
    /// The layout for `rule_count` rules and a string area of `strings_len` bytes.
    fn new(rule_count: usize, strings_len: usize) -> Layout {
        let decisions_off = align(HEADER_SIZE);
        let rules_off = align(decisions_off + API_COUNT * DECISION_SIZE);
        let strings_off = align(rules_off.saturating_add(rule_count.saturating_mul(STR_REF_SIZE)));
        let total = align(strings_off.saturating_add(strings_len));
        Layout { decisions_off, rules_off, strings_off, total }
    }
}

/// The string area, with where each string sits relative to its start.
struct StringArea {
    bytes: Vec<u8>,
    /// (offset, length) of each rule id, in rule order.
    rule_ids: Vec<(usize, usize)>,
    /// (offset, length) of the `file:` sink path, if any.
    sink_path: Option<(usize, usize)>,
}

impl StringArea {
    /// The rule ids, then the sink path.
    fn of(policy: &Policy) -> StringArea {
        let mut area = StringArea { bytes: Vec::new(), rule_ids: Vec::new(), sink_path: None };
        for rule in &policy.rules {
            let place = area.add(&rule.id);
            area.rule_ids.push(place);
        }
        if let Sink::File(path) = &policy.sink {
            area.sink_path = Some(area.add(path));
        }
        area
    }

    /// Appends `text`, returning its (offset, length).
    fn add(&mut self, text: &str) -> (usize, usize) {
        let off = self.bytes.len();
        self.bytes.extend_from_slice(text.as_bytes());
        (off, text.len())
    }
}

/// Appends records and bytes to a byte vector.
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn with_capacity(capacity: usize) -> Writer {
        Writer { out: Vec::with_capacity(capacity) }
    }

    /// Appends `r` with the contract's encoder.
    fn record<R: Record>(&mut self, r: &R) {
        let at = self.out.len();
        self.out.resize(at + R::SIZE, 0);
        // The buffer was just sized for it: encoding cannot run short.
        let _ = r.encode_into(&mut self.out[at..]);
    }

    fn bytes(&mut self, v: &[u8]) {
        self.out.extend_from_slice(v);
    }

    /// Zero-fills up to `offset` (a no-op when already there).
    fn pad_to(&mut self, offset: usize) {
        if self.out.len() < offset {
            self.out.resize(offset, 0);
        }
    }

    fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, ApiSelector, Mode, Rule};
    use dfpatch_runtime::apis::Class;

    #[test]
    fn empty_policy_layout() {
        let table = Policy::default().compile();
        let decisions_end = HEADER_SIZE + API_COUNT * DECISION_SIZE;
        assert_eq!(table.len(), align(decisions_end));
        assert_eq!(table.get(..4), Some(&POLICY_MAGIC[..]));
        assert_eq!(table.get(12..16), Some(&STDERR_FD.to_le_bytes()[..]));
        assert_eq!(table.len() % ALIGN, 0);
    }

    #[test]
    fn header_fields_are_where_the_contract_says() {
        let policy = Policy {
            mode: Mode::Enforce,
            default: Action::Alert,
            sink: Sink::File("/x".into()),
            rules: vec![Rule { id: "r".into(), apis: vec![ApiSelector::Class(Class::Exec)], action: Action::Kill }],
            backstop_off: false,
        };
        let table = policy.compile();
        let u32_at = |at: usize| table.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        assert_eq!(table.get(8..12), Some(&[1u8, 1, sink::FILE, 0][..]));
        assert_eq!(table.get(12..16), Some(&NO_FD.to_le_bytes()[..]));
        let rules_off = align(HEADER_SIZE + API_COUNT * DECISION_SIZE);
        let strings_off = rules_off + 8;
        assert_eq!(u32_at(16), Some(to_u32(strings_off + 1)), "path after the id");
        assert_eq!(u32_at(20), Some(2));
        assert_eq!(u32_at(24), Some(40));
        assert_eq!(u32_at(28), Some(to_u32(API_COUNT)));
        assert_eq!(u32_at(32), Some(to_u32(rules_off)));
        assert_eq!(u32_at(36), Some(1));
        assert_eq!(table.get(strings_off..strings_off + 3), Some(&b"r/x"[..]));
        // system: kill by rule 0; connect: alert by default.
        assert_eq!(table.get(40..44), Some(&[3u8, 0, 0, 0][..]));
        let connect = 40 + ApiId::connect as usize * DECISION_SIZE;
        assert_eq!(table.get(connect..connect + 4), Some(&[1u8, 0, 0xFF, 0xFF][..]));
    }
}
