//! Compiling a [`Policy`] into the binary table the runtime reads.
//!
//! Layout (all little-endian, every part 8-byte aligned, offsets from the
//! table's start; see `dfpatch_runtime::contract`):
//!
//! | part | size |
//! | --- | --- |
//! | `PolicyHeader` | 48 bytes |
//! | `ApiDecision` per API, indexed by `ApiId` | `API_COUNT` × 4 bytes |
//! | `StrRef` per rule: the rule ids | `rule_count` × 8 bytes |
//! | `RuleRecord` per rule: action and matchers | `rule_count` × 48 bytes |
//! | `Span` per API: its chain of rules with matchers | `API_COUNT` × 8 bytes |
//! | data: rule ids, the `file:` sink path, then each rule's matcher lists (`IpBlock`s, `PortRange`s, globs and their `StrRef`s), then the chains (`u16` rule numbers) | as needed |
//!
//! The table is padded with zeros to a multiple of 8 bytes.

use dfpatch_runtime::apis::{ApiId, API_COUNT};
use dfpatch_runtime::contract::{
    match_key, sink, ApiDecision, IpBlock, PolicyHeader, PortRange, Record, RuleRecord, Span, StrRef, POLICY_MAGIC,
    POLICY_VERSION, RULE_DEFAULT,
};

use crate::model::{Policy, Rule, Sink};

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
        let layout = Layout::new(self.rules.len());
        let mut data = Data { base: layout.data_off, bytes: Vec::new() };
        let rule_ids: Vec<StrRef> = self.rules.iter().map(|r| data.string(&r.id)).collect();
        let sink_path = match &self.sink {
            Sink::File(path) => data.string(path),
            _ => StrRef { off: 0, len: 0 },
        };
        let records: Vec<RuleRecord> = self.rules.iter().map(|r| data.rule(r)).collect();
        let chains: Vec<Span> = ApiId::ALL.iter().map(|&api| data.chain(&self.chain(api))).collect();

        let mut out = Writer::with_capacity(layout.data_off + data.bytes.len());
        self.write_header(&mut out, &layout, sink_path);
        self.write_decisions(&mut out);
        out.pad_to(layout.rules_off);
        for id in &rule_ids {
            out.record(id);
        }
        out.pad_to(layout.matchers_off);
        for record in &records {
            out.record(record);
        }
        out.pad_to(layout.chains_off);
        for span in &chains {
            out.record(span);
        }
        out.pad_to(layout.data_off);
        out.bytes(&data.bytes);
        out.pad_to(align(out.out.len()));
        out.finish()
    }

    /// Writes the `PolicyHeader`.
    fn write_header(&self, out: &mut Writer, layout: &Layout, sink_path: StrRef) {
        let (sink_kind, sink_fd) = sink_fields(&self.sink);
        out.record(&PolicyHeader {
            magic: POLICY_MAGIC,
            version: POLICY_VERSION,
            mode: self.mode.code(),
            default_action: self.default.code(),
            sink_kind,
            flags: if self.backstop_off { dfpatch_runtime::contract::policy_flags::NO_BACKSTOP } else { 0 },
            sink_fd,
            sink_path_off: sink_path.off,
            sink_path_len: sink_path.len,
            decisions_off: to_u32(layout.decisions_off),
            api_count: to_u32(API_COUNT),
            rules_off: to_u32(layout.rules_off),
            rule_count: to_u32(self.rules.len()),
            matchers_off: to_u32(layout.matchers_off),
            chains_off: to_u32(layout.chains_off),
        });
    }

    /// Writes one `ApiDecision` per API, in `ApiId` order.
    fn write_decisions(&self, out: &mut Writer) {
        for &api in ApiId::ALL {
            let (action, rule) = self.decision(api);
            let chained = u8::from(!self.chain(api).is_empty());
            out.record(&ApiDecision { action: action.code(), chained, rule: rule.map_or(RULE_DEFAULT, rule_number) });
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

/// Where each fixed-size part of the table goes.
struct Layout {
    decisions_off: usize,
    rules_off: usize,
    matchers_off: usize,
    chains_off: usize,
    data_off: usize,
}

impl Layout {
    /// The layout for `rule_count` rules.
    fn new(rule_count: usize) -> Layout {
        let decisions_off = align(HEADER_SIZE);
        let rules_off = align(decisions_off + API_COUNT * DECISION_SIZE);
        let matchers_off = align(rules_off.saturating_add(rule_count.saturating_mul(STR_REF_SIZE)));
        let chains_off = align(matchers_off.saturating_add(rule_count.saturating_mul(RuleRecord::SIZE)));
        let data_off = align(chains_off + API_COUNT * Span::SIZE);
        Layout { decisions_off, rules_off, matchers_off, chains_off, data_off }
    }
}

/// The data area: everything of variable size, at table offsets from `base`.
struct Data {
    base: usize,
    bytes: Vec<u8>,
}

impl Data {
    /// The table offset of the next byte.
    fn here(&self) -> u32 {
        to_u32(self.base + self.bytes.len())
    }

    /// Appends `text`.
    fn string(&mut self, text: &str) -> StrRef {
        let off = self.here();
        self.bytes.extend_from_slice(text.as_bytes());
        StrRef { off, len: to_u32(text.len()) }
    }

    /// Appends records (aligned), returning where they start and how many.
    fn records<R: Record>(&mut self, list: &[R]) -> (u32, u32) {
        self.bytes.resize(align(self.base + self.bytes.len()) - self.base, 0);
        let off = self.here();
        for r in list {
            let at = self.bytes.len();
            self.bytes.resize(at + R::SIZE, 0);
            let _ = r.encode_into(&mut self.bytes[at..]);
        }
        (off, to_u32(list.len()))
    }

    /// Appends globs and their `StrRef`s.
    fn globs(&mut self, list: &[String]) -> (u32, u32) {
        let refs: Vec<StrRef> = list.iter().map(|g| self.string(g)).collect();
        self.records(&refs)
    }

    /// Appends a rule's matcher lists; its record.
    fn rule(&mut self, rule: &Rule) -> RuleRecord {
        let m = &rule.matchers;
        let ips: Vec<IpBlock> = m.ip.iter().map(ip_block).collect();
        let ports: Vec<PortRange> = m.port.iter().map(|&(lo, hi)| PortRange { lo, hi }).collect();
        let (ip_off, ip_count) = self.records(&ips);
        let (port_off, port_count) = self.records(&ports);
        let (path_off, path_count) = self.globs(&m.path);
        let (command_off, command_count) = self.globs(&m.command);
        let modules: Vec<String> = m.caller.iter().filter(|c| *c != "main").cloned().collect();
        let (caller_off, caller_count) = self.globs(&modules);
        let main = if m.caller.iter().any(|c| c == "main") { match_key::CALLER_MAIN } else { 0 };
        let keys = (m.keys() & !if modules.is_empty() { match_key::CALLER } else { 0 }) | main;
        RuleRecord {
            action: rule.action.code(),
            keys,
            access: m.access,
            _pad: 0,
            _pad2: 0,
            ip_off,
            ip_count,
            port_off,
            port_count,
            path_off,
            path_count,
            command_off,
            command_count,
            caller_off,
            caller_count,
        }
    }

    /// Appends a chain of rule numbers.
    fn chain(&mut self, rules: &[usize]) -> Span {
        if rules.is_empty() {
            return Span { off: 0, count: 0 };
        }
        self.bytes.resize(align(self.base + self.bytes.len()) - self.base, 0);
        let off = self.here();
        for &r in rules {
            self.bytes.extend_from_slice(&rule_number(r).to_le_bytes());
        }
        Span { off, count: to_u32(rules.len()) }
    }
}

/// An `ip` entry as stored.
fn ip_block(b: &crate::matchers::IpBlock) -> IpBlock {
    let mut addr = [0u8; 16];
    let family = match b.addr {
        std::net::IpAddr::V4(a) => {
            addr[..4].copy_from_slice(&a.octets());
            4
        }
        std::net::IpAddr::V6(a) => {
            addr = a.octets();
            6
        }
    };
    IpBlock { family, prefix: b.prefix, _pad: [0; 2], addr }
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
        assert_eq!(table.len(), Layout::new(0).data_off);
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
            rules: vec![Rule {
                id: "r".into(),
                apis: vec![ApiSelector::Class(Class::Exec)],
                action: Action::Kill,
                matchers: Default::default(),
            }],
            backstop_off: false,
        };
        let table = policy.compile();
        let u32_at = |at: usize| table.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        assert_eq!(table.get(8..12), Some(&[1u8, 1, sink::FILE, 0][..]));
        assert_eq!(table.get(12..16), Some(&NO_FD.to_le_bytes()[..]));
        let layout = Layout::new(1);
        let strings_off = layout.data_off;
        assert_eq!(u32_at(16), Some(to_u32(strings_off + 1)), "path after the id");
        assert_eq!(u32_at(20), Some(2));
        assert_eq!(u32_at(24), Some(48));
        assert_eq!(u32_at(28), Some(to_u32(API_COUNT)));
        assert_eq!(u32_at(32), Some(to_u32(layout.rules_off)));
        assert_eq!(u32_at(36), Some(1));
        assert_eq!(u32_at(40), Some(to_u32(layout.matchers_off)));
        assert_eq!(u32_at(44), Some(to_u32(layout.chains_off)));
        assert_eq!(table.get(strings_off..strings_off + 3), Some(&b"r/x"[..]));
        // system: kill by rule 0; connect: alert by default.
        assert_eq!(table.get(48..52), Some(&[3u8, 0, 0, 0][..]));
        let connect = 48 + ApiId::connect as usize * DECISION_SIZE;
        assert_eq!(table.get(connect..connect + 4), Some(&[1u8, 0, 0xFF, 0xFF][..]));
    }
}
