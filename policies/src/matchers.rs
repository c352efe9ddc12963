//! A rule's argument and caller matchers (`ip`, `port`, `path`, `command`,
//! `access`, `caller`): their values, how each is read from policy text,
//! and a plain reference matcher (the runtime's table matcher is checked
//! against it in `tests/rules.rs`).

use std::net::IpAddr;

use dfpatch_runtime::contract::{access, match_key};
use dfpatch_runtime::glob;
use dfpatch_runtime::rules::{Facts, ACCESS_NAMES};

use crate::model::Action;

/// Most entries one matcher list may have.
pub const MAX_ENTRIES: usize = 1024;
/// Longest glob, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;

/// An `ip` entry: an address, and how many of its leading bits must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    /// The address (its bits after `prefix` are zero).
    pub addr: IpAddr,
    /// 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix: u8,
}

impl IpBlock {
    /// Whether `ip` lies in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, width) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let keep = u32::from(self.prefix).min(width);
        keep == 0 || (a ^ b) >> (width - keep) == 0
    }
}

impl std::fmt::Display for IpBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// What a rule's matchers list; an empty list is a matcher the rule does not have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matchers {
    /// Addresses and CIDR blocks.
    pub ip: Vec<IpBlock>,
    /// Port ranges, `lo..=hi`.
    pub port: Vec<(u16, u16)>,
    /// Path globs.
    pub path: Vec<String>,
    /// Command line globs.
    pub command: Vec<String>,
    /// `access` bits (`contract::access`); 0: no `access` key.
    pub access: u8,
    /// Calling module globs, or `main`.
    pub caller: Vec<String>,
}

impl Matchers {
    /// Whether the rule has no matcher at all.
    pub fn is_empty(&self) -> bool {
        self.keys() == 0
    }

    /// The `match_key` bits of the matchers present (`CALLER_MAIN` not included).
    pub fn keys(&self) -> u8 {
        let mut k = 0;
        for (present, key) in [
            (!self.ip.is_empty(), match_key::IP),
            (!self.port.is_empty(), match_key::PORT),
            (!self.path.is_empty(), match_key::PATH),
            (!self.command.is_empty(), match_key::COMMAND),
            (self.access != 0, match_key::ACCESS),
            (!self.caller.is_empty(), match_key::CALLER),
        ] {
            if present {
                k |= key;
            }
        }
        k
    }

    /// The reference matcher: whether a call with `facts` matches, for a
    /// rule whose action is `action` (see `access` and unknown facts in the
    /// README: a refusing rule matches what cannot be told, any path of
    /// several; a granting one needs everything known and every path).
    pub fn matches(&self, action: Action, facts: &Facts) -> bool {
        let refusing = action >= Action::Deny;
        let unknown = |key: u8| facts.unknown & key != 0;
        let ip = facts.ip.map(|ip| {
            if ip.v6 {
                IpAddr::from(ip.addr)
            } else {
                IpAddr::from([ip.addr[0], ip.addr[1], ip.addr[2], ip.addr[3]])
            }
        });
        // A key: absent, or its fact matches, or (refusing) its fact is unknown.
        let key = |present: bool, bit: u8, fact: Option<bool>| match fact {
            _ if !present => true,
            Some(matched) => matched,
            None => refusing && unknown(bit),
        };
        let glob_of = |g: &String, subject: &[u8]| glob::matches_tail(g.as_bytes(), subject);
        let ip_ok = key(!self.ip.is_empty(), match_key::IP, ip.map(|ip| self.ip.iter().any(|b| b.contains(ip))));
        let port_ok = key(
            !self.port.is_empty(),
            match_key::PORT,
            facts.port.map(|p| self.port.iter().any(|&(lo, hi)| lo <= p && p <= hi)),
        );
        let paths: Vec<&[u8]> = facts.paths.iter().flatten().copied().collect();
        let path_matches = |p: &[u8]| self.path.iter().any(|g| glob_of(g, p));
        let path_ok = self.path.is_empty()
            || if refusing {
                unknown(match_key::PATH) || paths.iter().any(|p| path_matches(p))
            } else {
                !unknown(match_key::PATH) && facts.paths[0].is_some() && paths.iter().all(|p| path_matches(p))
            };
        let command_ok = key(
            !self.command.is_empty(),
            match_key::COMMAND,
            facts.command.map(|c| self.command.iter().any(|g| glob::matches_text(g.as_bytes(), c))),
        );
        let access_ok = self.access == 0
            || (facts.access != 0
                && if action == Action::Allow {
                    facts.access & !self.access == 0
                } else {
                    facts.access & self.access != 0
                });
        let caller_ok = self.caller.is_empty()
            || (facts.main && self.caller.iter().any(|c| c == "main"))
            || facts.caller.is_some_and(|m| self.caller.iter().filter(|c| *c != "main").any(|g| glob_of(g, m)))
            || (refusing && unknown(match_key::CALLER));
        ip_ok && port_ok && path_ok && command_ok && access_ok && caller_ok
    }
}

/// Reads an `ip` entry: `127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`.
pub fn parse_ip(text: &str) -> Result<IpBlock, String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        format!("{text:?} is not an IP address or CIDR block: write e.g. \"127.0.0.1\", \"10.0.0.0/8\" or \"::1\"")
    })?;
    if let IpAddr::V6(v6) = addr {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Err(format!(
                "{text:?} is an IPv4 address written as IPv6: write \"{v4}\" (calls to ::ffff:{v4} are matched as {v4})"
            ));
        }
    }
    let full: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => full,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&n| n <= full && !p.starts_with('+'))
            .ok_or_else(|| format!("{text:?} has a bad prefix length: expected 0 to {full} after the /"))?,
    };
    let block = IpBlock { addr, prefix };
    let clean = IpBlock { addr: masked(addr, prefix), prefix };
    if clean.addr != addr {
        return Err(format!("{text:?} has bits set after its /{prefix} prefix: did you mean \"{clean}\"?"));
    }
    Ok(block)
}

/// `addr` with the bits after `prefix` cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let keep = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & keep))
        }
        IpAddr::V6(a) => {
            let keep = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & keep))
        }
    }
}

/// Reads a `port` entry given as a string: `"8080"` or `"8000-8099"`.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u16>().ok()).flatten()
    };
    let bad = || format!("bad port {text:?}: expected a number from 0 to 65535 or a range such as \"8000-8099\"");
    match text.split_once('-') {
        None => number(text).map(|p| (p, p)).ok_or_else(bad),
        Some((lo, hi)) => {
            let (lo, hi) = (number(lo).ok_or_else(bad)?, number(hi).ok_or_else(bad)?);
            if lo > hi {
                return Err(format!("bad port range {text:?}: its first port is above its last"));
            }
            Ok((lo, hi))
        }
    }
}

/// Reads a `port` entry given as a number.
pub fn parse_port_number(n: i64) -> Result<(u16, u16), String> {
    u16::try_from(n).map(|p| (p, p)).map_err(|_| format!("bad port {n}: expected a number from 0 to 65535"))
}

/// Checks a `path` or `caller` glob: the glob syntax, and that it could
/// match a resolved path (no `.`, `..` or empty components, no trailing `/`).
pub fn check_path_glob(pattern: &str) -> Result<(), String> {
    check_glob(pattern)?;
    if pattern.contains('\0') {
        return Err(format!("path {pattern:?} contains a NUL character"));
    }
    let body = pattern.strip_prefix('/').unwrap_or(pattern);
    if pattern != "/" && body.split('/').any(|c| matches!(c, "" | "." | "..")) {
        return Err(format!(
            "path {pattern:?} can never match: paths are matched once resolved (absolute, without \".\", \"..\", \
             repeated or trailing slashes); write it that way"
        ));
    }
    Ok(())
}

/// Checks any glob's syntax and length.
pub fn check_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty pattern matches nothing: write at least one character".to_string());
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern is {} bytes long: at most {MAX_PATTERN_LEN} are allowed", pattern.len()));
    }
    glob::check(pattern.as_bytes()).map_err(|why| format!("bad pattern {pattern:?}: {why}"))
}

/// Reads an `access` entry.
pub fn parse_access(name: &str) -> Result<u8, String> {
    ACCESS_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|&(bit, _)| bit)
        .ok_or_else(|| format!("unknown access {name:?}: expected read, write or create"))
}

/// The names of `access` bits, in order.
pub fn access_names(bits: u8) -> Vec<&'static str> {
    ACCESS_NAMES.iter().filter(|(bit, _)| bits & bit != 0).map(|&(_, n)| n).collect()
}

const _: () = assert!(access::READ | access::WRITE | access::CREATE == 7);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips() {
        assert_eq!(parse_ip("10.0.0.0/8").map(|b| b.to_string()), Ok("10.0.0.0/8".into()));
        assert_eq!(parse_ip("::1").map(|b| b.prefix), Ok(128));
        assert!(parse_ip("10.1.0.0/8").is_err_and(|e| e.contains("did you mean \"10.0.0.0/8\"")));
        assert!(parse_ip("10.0.0.0/33").is_err());
        assert!(parse_ip("localhost").is_err());
        assert!(parse_ip("::ffff:127.0.0.1").is_err_and(|e| e.contains("write \"127.0.0.1\"")));
        let b = parse_ip("fd00::/8").unwrap_or(IpBlock { addr: IpAddr::from([0u8; 4]), prefix: 0 });
        assert!(b.contains("fd12::1".parse().unwrap_or(IpAddr::from([0u8; 4]))));
        assert!(!b.contains("127.0.0.1".parse().unwrap_or(IpAddr::from([0u8; 4]))));
    }

    #[test]
    fn ports_and_paths() {
        assert_eq!(parse_port_range("8000-8099"), Ok((8000, 8099)));
        assert_eq!(parse_port_range("80"), Ok((80, 80)));
        assert!(parse_port_range("99-98").is_err() && parse_port_range("65536").is_err());
        assert!(parse_port_number(-1).is_err() && parse_port_number(65535).is_ok());
        assert!(check_path_glob("/var/lib/app/**").is_ok() && check_path_glob("*/liblzma.so*").is_ok());
        assert!(check_path_glob("/data/../etc").is_err() && check_path_glob("/data/").is_err());
        assert!(check_path_glob("/").is_ok() && check_path_glob("/a/[b").is_err());
    }
}
