//! Reading a compiled policy table back, with every read bounds-checked.
//!
//! The runtime has its own reader; this one serves tests (proving that a
//! table decodes to the decisions of the policy it came from) and
//! `dfpatch inspect`.

use core::fmt::Write as _;

use dfpatch_runtime::apis::ApiId;
use dfpatch_runtime::contract::{
    sink, ApiDecision, PolicyHeader, Record, RuleRecord, Span, StrRef, POLICY_MAGIC, POLICY_VERSION, RULE_DEFAULT,
};

use crate::compile::{DECISION_SIZE, HEADER_SIZE, STR_REF_SIZE};
use crate::model::{Action, Mode, Sink};

/// Why a byte string is not a valid compiled policy table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Shorter than the header, or than a record the header announces.
    #[error("policy table is {len} bytes long, shorter than its {HEADER_SIZE}-byte header")]
    TooShort {
        /// Length of what was read.
        len: usize,
    },
    /// Does not start with `DFPP`.
    #[error("policy table starts with {found:?}, not the magic \"DFPP\"")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A layout version this reader does not know.
    #[error("policy table version {found} is not supported (this dfpatch reads version {POLICY_VERSION})")]
    BadVersion {
        /// The version in the header.
        found: u32,
    },
    /// A mode, action, sink or rule number out of range.
    #[error("policy table has an invalid {field}: {value}")]
    BadValue {
        /// Which value.
        field: &'static str,
        /// What was found.
        value: i64,
    },
    /// An offset and length that reach past the table's end.
    #[error("policy table's {part} (offset {off}, {len} bytes) lies outside the {size}-byte table")]
    OutOfBounds {
        /// Which part of the table.
        part: &'static str,
        /// Its offset.
        off: u64,
        /// Its length in bytes.
        len: u64,
        /// The table's length.
        size: usize,
    },
    /// A rule id or sink path that is not UTF-8.
    #[error("policy table's {part} is not UTF-8")]
    NotUtf8 {
        /// Which string.
        part: &'static str,
    },
}

/// A decoded, fully validated policy table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableView {
    header: PolicyHeader,
    mode: Mode,
    default: Action,
    sink: Sink,
    rule_ids: Vec<String>,
    decisions: Vec<(Action, Option<usize>)>,
    /// Per API, the rules with matchers it tries first.
    chains: Vec<Vec<usize>>,
}

impl TableView {
    /// Decodes and validates `table`: magic, version, every offset and
    /// length, every action and rule number, and the strings' UTF-8.
    pub fn parse(table: &[u8]) -> Result<TableView, TableError> {
        let reader = Reader { bytes: table };
        let header = reader.header()?;
        check_magic_and_version(&header)?;
        let rule_ids = reader.rule_ids(&header)?;
        Ok(TableView {
            mode: Mode::from_code(header.mode).ok_or(bad("mode", header.mode))?,
            default: Action::from_code(header.default_action).ok_or(bad("default action", header.default_action))?,
            sink: reader.sink(&header)?,
            decisions: reader.decisions(&header, rule_ids.len())?,
            chains: reader.chains(&header, rule_ids.len())?,
            rule_ids,
            header,
        })
    }

    /// The raw header.
    pub fn header(&self) -> &PolicyHeader {
        &self.header
    }

    /// Whether calls may be blocked.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The action when no rule matches.
    pub fn default_action(&self) -> Action {
        self.default
    }

    /// Where events go.
    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// The rule ids, in rule order.
    pub fn rule_ids(&self) -> &[String] {
        &self.rule_ids
    }

    /// The decision recorded for `api`, as [`crate::Policy::decision`] gives
    /// it; `None` if the table predates `api` (has fewer entries).
    pub fn decision(&self, api: ApiId) -> Option<(Action, Option<usize>)> {
        self.decisions.get(api as usize).copied()
    }

    /// The rules with matchers a call of `api` tries before its
    /// [`TableView::decision`], as [`crate::Policy::chain`] gives them.
    pub fn chain(&self, api: ApiId) -> &[usize] {
        self.chains.get(api as usize).map_or(&[], Vec::as_slice)
    }

    /// Every API this dfpatch knows that the table has a decision for.
    pub fn decisions(&self) -> impl Iterator<Item = (ApiId, Action, Option<usize>)> + '_ {
        ApiId::ALL.iter().zip(&self.decisions).map(|(&api, &(action, rule))| (api, action, rule))
    }

    /// The id of the rule at `index`, or `"default"` for `None`.
    pub fn rule_name(&self, index: Option<usize>) -> &str {
        index.and_then(|i| self.rule_ids.get(i)).map_or("default", String::as_str)
    }
}

/// A human-readable account of a compiled table (for `dfpatch inspect`).
pub fn describe(table: &[u8]) -> Result<String, TableError> {
    let view = TableView::parse(table)?;
    let hash: String = crate::hash(table).iter().map(|b| format!("{b:02x}")).collect();
    let mut out = format!("policy table v{}, {} bytes, sha256 {hash}\n", view.header.version, table.len());
    // Writing to a String cannot fail.
    let _ = writeln!(out, "mode: {}\ndefault: {}\nsink: {}", view.mode, view.default, view.sink);
    let backstop = view.header.flags & dfpatch_runtime::contract::policy_flags::NO_BACKSTOP == 0;
    let _ = writeln!(out, "backstop: {}", if backstop { "on" } else { "off (backstop = false)" });
    let _ = writeln!(out, "rules: {}", view.rule_ids.join(", "));
    for (api, action, rule) in view.decisions() {
        let (name, class) = (api.name(), api.class().name());
        let chain: Vec<&str> = view.chain(api).iter().map(|&i| view.rule_name(Some(i))).collect();
        let first = if chain.is_empty() { String::new() } else { format!(" (matchers first: {})", chain.join(", ")) };
        let _ = writeln!(out, "  {name:<14} {class:<8} {action:<6} {}{first}", view.rule_name(rule));
    }
    Ok(out)
}

/// A `BadValue` error.
fn bad(field: &'static str, value: impl Into<i64>) -> TableError {
    TableError::BadValue { field, value: value.into() }
}

/// Checks the header's magic and version.
fn check_magic_and_version(header: &PolicyHeader) -> Result<(), TableError> {
    if header.magic != POLICY_MAGIC {
        return Err(TableError::BadMagic { found: header.magic });
    }
    if header.version != POLICY_VERSION {
        return Err(TableError::BadVersion { found: header.version });
    }
    Ok(())
}

/// Bounds-checked little-endian reads from a table.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Decodes the header (the contract's decoder).
    fn header(&self) -> Result<PolicyHeader, TableError> {
        PolicyHeader::decode(self.bytes).ok_or(TableError::TooShort { len: self.bytes.len() })
    }

    /// The `count` records of `size` bytes at `off`, checked to lie in the table.
    fn part(&self, part: &'static str, off: u32, count: u32, size: usize) -> Result<Fields<'a>, TableError> {
        let len = u64::from(count) * size as u64;
        let out_of_bounds = TableError::OutOfBounds { part, off: off.into(), len, size: self.bytes.len() };
        let start = usize::try_from(off).map_err(|_| out_of_bounds.clone())?;
        let end = usize::try_from(len).ok().and_then(|len| start.checked_add(len));
        let bytes = end.and_then(|end| self.bytes.get(start..end)).ok_or(out_of_bounds)?;
        Ok(Fields { bytes })
    }

    /// The UTF-8 string of `len` bytes at `off`.
    fn str(&self, part: &'static str, off: u32, len: u32) -> Result<String, TableError> {
        let bytes = self.part(part, off, len, 1)?.bytes;
        let text = std::str::from_utf8(bytes).map_err(|_| TableError::NotUtf8 { part })?;
        Ok(text.to_string())
    }

    /// The rule ids, through their `StrRef`s.
    fn rule_ids(&self, header: &PolicyHeader) -> Result<Vec<String>, TableError> {
        let refs = self.part("rule table", header.rules_off, header.rule_count, STR_REF_SIZE)?;
        refs.records::<StrRef>().map(|r| self.str("rule id", r.off, r.len)).collect()
    }

    /// The decisions, with their rule numbers checked against `rule_count`.
    fn decisions(&self, header: &PolicyHeader, rule_count: usize) -> Result<Vec<(Action, Option<usize>)>, TableError> {
        let entries = self.part("decision table", header.decisions_off, header.api_count, DECISION_SIZE)?;
        entries.records::<ApiDecision>().map(|e| decision(e, rule_count)).collect()
    }

    /// The chains, each rule number checked against `rule_count`, and
    /// each rule record's action.
    fn chains(&self, header: &PolicyHeader, rule_count: usize) -> Result<Vec<Vec<usize>>, TableError> {
        let records = self.part("rule records", header.matchers_off, header.rule_count, RuleRecord::SIZE)?;
        for r in records.records::<RuleRecord>() {
            Action::from_code(r.action).ok_or(bad("rule action", r.action))?;
        }
        let spans = self.part("chain table", header.chains_off, header.api_count, Span::SIZE)?;
        spans
            .records::<Span>()
            .map(|span| {
                let numbers = self.part("chain", span.off, span.count, 2)?;
                numbers
                    .bytes
                    .chunks_exact(2)
                    .map(|b| {
                        let rule = u16::from_le_bytes([b[0], b[1]]);
                        let index = usize::from(rule);
                        if index < rule_count {
                            Ok(index)
                        } else {
                            Err(bad("chain rule number", rule))
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The sink, with its path read for `file:` sinks.
    fn sink(&self, header: &PolicyHeader) -> Result<Sink, TableError> {
        match header.sink_kind {
            sink::STDERR => Ok(Sink::Stderr),
            sink::FILE => Ok(Sink::File(self.str("sink path", header.sink_path_off, header.sink_path_len)?)),
            sink::FD if header.sink_fd >= 0 => Ok(Sink::Fd(header.sink_fd)),
            sink::FD => Err(bad("sink descriptor", header.sink_fd)),
            kind => Err(bad("sink kind", kind)),
        }
    }
}

/// Checks one `ApiDecision`.
fn decision(entry: ApiDecision, rule_count: usize) -> Result<(Action, Option<usize>), TableError> {
    let code = entry.action;
    let action = Action::from_code(code).ok_or(bad("action", code))?;
    let rule = entry.rule;
    if rule == RULE_DEFAULT {
        return Ok((action, None));
    }
    let index = usize::from(rule);
    if index >= rule_count {
        return Err(bad("rule number", rule));
    }
    Ok((action, Some(index)))
}

/// A bounds-checked byte range of the table.
#[derive(Clone, Copy)]
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    /// Its consecutive records (the range was checked to hold them whole).
    fn records<R: Record + 'a>(self) -> impl Iterator<Item = R> + 'a {
        self.bytes.chunks_exact(R::SIZE).filter_map(R::decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    fn example() -> Vec<u8> {
        Policy::parse("mode = \"enforce\"\n[report]\nsink = \"file:/tmp/e\"\n[[rule]]\nid = \"x\"\napis = [\"exec\"]\naction = \"deny\"\n")
            .map(|p| p.compile())
            .unwrap_or_default()
    }

    #[test]
    fn reads_back() {
        let view = TableView::parse(&example());
        let view = view.as_ref().ok();
        assert_eq!(view.map(TableView::mode), Some(Mode::Enforce));
        assert_eq!(view.map(TableView::sink), Some(&Sink::File("/tmp/e".into())));
        assert_eq!(view.and_then(|v| v.decision(ApiId::execl)), Some((Action::Deny, Some(0))));
        assert_eq!(view.and_then(|v| v.decision(ApiId::bind)), Some((Action::Allow, None)));
        assert_eq!(view.map(|v| v.rule_name(Some(0))), Some("x"));
    }

    #[test]
    fn rejects_damage() {
        let table = example();
        assert!(matches!(TableView::parse(&table[..47]), Err(TableError::TooShort { .. })));
        let mut bad_magic = table.clone();
        bad_magic[0] = b'X';
        assert!(matches!(TableView::parse(&bad_magic), Err(TableError::BadMagic { .. })));
        let mut bad_action = table.clone();
        bad_action[48] = 9;
        assert!(matches!(TableView::parse(&bad_action), Err(TableError::BadValue { field: "action", .. })));
        let mut bad_rule = table.clone();
        bad_rule[50] = 7;
        assert!(matches!(TableView::parse(&bad_rule), Err(TableError::BadValue { field: "rule number", .. })));
        let mut far = table.clone();
        far[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(TableView::parse(&far), Err(TableError::OutOfBounds { .. })));
    }

    #[test]
    fn describes() {
        let text = describe(&example()).unwrap_or_default();
        assert!(text.contains("mode: enforce"), "{text}");
        assert!(text.contains("sink: file:/tmp/e"), "{text}");
        assert!(text.lines().any(|l| l.split_whitespace().eq(["system", "exec", "deny", "x"])), "{text}");
        assert!(text.lines().any(|l| l.split_whitespace().eq(["connect", "network", "allow", "default"])), "{text}");
    }
}
