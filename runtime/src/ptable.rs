//! Reading the compiled policy table (see `contract::PolicyHeader`).
//! The table was written by our own compiler, but every read is still bounds
//! checked: a damaged file must not make the runtime fault.

use crate::contract::{
    action, mode, sink, ApiDecision, IpBlock, PolicyHeader, PortRange, Record, RuleRecord, Span, StrRef, POLICY_MAGIC,
    POLICY_VERSION, RULE_DEFAULT,
};

#[derive(Clone, Copy)]
pub struct PolicyTable<'a> {
    bytes: &'a [u8],
    head: PolicyHeader,
}

/// Where events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink<'a> {
    Stderr,
    Fd(i32),
    File(&'a [u8]),
}

impl<'a> PolicyTable<'a> {
    pub fn parse(bytes: &'a [u8]) -> Option<PolicyTable<'a>> {
        let head = PolicyHeader::decode(bytes)?;
        if head.magic != POLICY_MAGIC || head.version != POLICY_VERSION {
            return None;
        }
        // `decision` falls back to the default action: it must be one.
        if head.default_action > action::KILL {
            return None;
        }
        Some(PolicyTable { bytes, head })
    }

    /// Whether the policy lets the runtime arm the backstop.
    pub fn backstop(&self) -> bool {
        self.head.flags & crate::contract::policy_flags::NO_BACKSTOP == 0
    }

    pub fn enforce(&self) -> bool {
        self.head.mode == mode::ENFORCE
    }

    pub fn mode_name(&self) -> &'static str {
        if self.enforce() {
            "enforce"
        } else {
            "monitor"
        }
    }

    pub fn sink(&self) -> Sink<'a> {
        match self.head.sink_kind {
            sink::FILE => {
                let off = self.head.sink_path_off as usize;
                let end = off.saturating_add(self.head.sink_path_len as usize);
                match self.bytes.get(off..end) {
                    Some(p) if !p.is_empty() => Sink::File(p),
                    _ => Sink::Stderr,
                }
            }
            sink::FD => Sink::Fd(self.head.sink_fd),
            _ => Sink::Stderr,
        }
    }

    /// The decision for API number `api`; a table too short for it means the default.
    pub fn decision(&self, api: u16) -> ApiDecision {
        let fallback = ApiDecision { action: self.head.default_action, chained: 0, rule: RULE_DEFAULT };
        if api as u32 >= self.head.api_count {
            return fallback;
        }
        match ApiDecision::decode_at(self.bytes, self.head.decisions_off as usize, api as usize) {
            Some(d) if d.action <= action::KILL => d,
            _ => fallback,
        }
    }

    /// Whether calls of `api` go through the runtime: the policy does not
    /// allow them all; or `api` is `execve` and rules with matchers look at
    /// an exec by name (the `execve` calls of its `PATH` search are decided
    /// by them); or `api` is `dlmopen` and anything is watched (a new
    /// link-map namespace loads a second libc, whose functions the runtime
    /// must redirect too), or `io_uring_setup` and rings are restricted
    /// (see `uring`).
    pub fn watches(&self, api: u16) -> bool {
        let d = self.decision(api);
        if d.action != action::ALLOW || d.chained != 0 {
            return true;
        }
        use crate::apis::{ApiId, BY_NAME};
        (api == ApiId::dlmopen as u16 && ApiId::ALL.iter().any(|&a| self.decision(a as u16).action != action::ALLOW))
            || (api == ApiId::io_uring_setup as u16 && crate::uring::left_out_by(self).any())
            || (ApiId::from_u16(api).is_some_and(crate::apis::searched_by)
                && BY_NAME.iter().any(|&a| self.decision(a as u16).chained != 0))
    }

    /// Whether some call of `api` may get `wanted` or a stronger action
    /// (its decision, or a rule of its chain).
    pub fn may(&self, api: u16, wanted: u8) -> bool {
        self.decision(api).action >= wanted
            || self.chain(api).any(|rule| self.rule_record(rule).is_some_and(|r| r.action >= wanted))
    }

    /// Whether every call of `api` gets `wanted` or a stronger action.
    pub fn always(&self, api: u16, wanted: u8) -> bool {
        self.decision(api).action >= wanted
            && self.chain(api).all(|rule| self.rule_record(rule).is_some_and(|r| r.action >= wanted))
    }

    /// The rule numbers of `api`'s chain (rules with matchers), in order.
    pub fn chain(&self, api: u16) -> impl Iterator<Item = u16> + 'a {
        let bytes = self.bytes;
        let span = (self.decision(api).chained != 0)
            .then(|| Span::decode_at(bytes, self.head.chains_off as usize, api as usize))
            .flatten()
            .unwrap_or(Span { off: 0, count: 0 });
        let rules = self.head.rule_count;
        (0..span.count).map_while(move |i| {
            let at = (span.off as usize).checked_add(i as usize * 2)?;
            let b = bytes.get(at..at.checked_add(2)?)?;
            Some(u16::from_le_bytes([b[0], b[1]])).filter(|&r| (r as u32) < rules)
        })
    }

    /// Rule `rule`'s action and matchers.
    pub fn rule_record(&self, rule: u16) -> Option<RuleRecord> {
        if rule as u32 >= self.head.rule_count {
            return None;
        }
        RuleRecord::decode_at(self.bytes, self.head.matchers_off as usize, rule as usize)
            .filter(|r| r.action <= action::KILL)
    }

    /// Entry `i` of a list of [`IpBlock`]s at `off`.
    pub fn ip_block(&self, off: u32, i: u32) -> Option<IpBlock> {
        IpBlock::decode_at(self.bytes, off as usize, i as usize)
    }

    /// Entry `i` of a list of [`PortRange`]s at `off`.
    pub fn port_range(&self, off: u32, i: u32) -> Option<PortRange> {
        PortRange::decode_at(self.bytes, off as usize, i as usize)
    }

    /// String `i` of a list of [`StrRef`]s at `off`.
    pub fn string(&self, off: u32, i: u32) -> Option<&'a [u8]> {
        let r = StrRef::decode_at(self.bytes, off as usize, i as usize)?;
        self.bytes.get(r.off as usize..(r.off as usize).checked_add(r.len as usize)?)
    }

    /// The id of rule `rule`, or `default`.
    pub fn rule_name(&self, rule: u16) -> &'a [u8] {
        if rule == RULE_DEFAULT || rule as u32 >= self.head.rule_count {
            return b"default";
        }
        let Some(r) = StrRef::decode_at(self.bytes, self.head.rules_off as usize, rule as usize) else {
            return b"default";
        };
        let end = (r.off as usize).saturating_add(r.len as usize);
        self.bytes.get(r.off as usize..end).unwrap_or(b"default")
    }
}

pub fn action_name(a: u8) -> &'static str {
    match a {
        action::ALLOW => "allow",
        action::ALERT => "alert",
        action::DENY => "deny",
        _ => "kill",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_short_tables() {
        assert!(PolicyTable::parse(b"").is_none());
        assert!(PolicyTable::parse(b"DFPX\x01\0\0\0").is_none());
        let mut t = [0u8; 48];
        t[..4].copy_from_slice(b"DFPP");
        t[9] = action::ALERT;
        t[4] = 2;
        t[24] = 48; // decisions start at the end of the table...
        t[28] = 200; // ...and claim 200 entries that are not there
        let p = PolicyTable::parse(&t).unwrap();
        assert_eq!(p.decision(3).action, action::ALERT);
        assert_eq!(p.decision(3).rule, RULE_DEFAULT);
        assert_eq!(p.rule_name(0), b"default");
        assert_eq!(p.sink(), Sink::Stderr);
    }
}
