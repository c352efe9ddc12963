//! Rules with matchers (issue 13): which keys (`ip`, `port`, `path`,
//! `command`, `access`, `caller`) apply to which API, the facts of one call
//! they are matched against, and the decision a compiled policy gives a call
//! with those facts. Pure code: the policy crate and its tests run it too.
//!
//! A rule matches a call when every key it has matches (AND), a key matching
//! when any entry of its list does (OR). A key whose fact the call does not
//! have (a path that could not be resolved, an `ip` on a unix socket) does
//! not match: the next rule decides.

use crate::apis::{ApiId, Class, Shape};
use crate::contract::{access, action, match_key, ApiDecision, IpBlock, PortRange, RuleRecord};
use crate::ptable::PolicyTable;

/// The matcher keys, in the order policies and events name them.
pub const KEYS: [(u8, &str); 6] = [
    (match_key::IP, "ip"),
    (match_key::PORT, "port"),
    (match_key::PATH, "path"),
    (match_key::COMMAND, "command"),
    (match_key::ACCESS, "access"),
    (match_key::CALLER, "caller"),
];

/// The `access` names, in bit order.
pub const ACCESS_NAMES: [(u8, &str); 3] =
    [(access::READ, "read"), (access::WRITE, "write"), (access::CREATE, "create")];

/// Whether calls of `api` have a socket address: `ip` and `port` apply, and
/// `path` does for a unix socket (the listening socket's own address for
/// `listen` and `accept`).
pub fn has_address(api: ApiId) -> bool {
    matches!(
        api.shape(),
        Shape::Sockaddr
            | Shape::SendTo
            | Shape::SendMsg
            | Shape::SendMmsg
            | Shape::Listen
            | Shape::Accept
            | Shape::Accept4
    )
}

/// Whether `api` runs a program given by its arguments: `command` applies.
pub fn runs_program(api: ApiId) -> bool {
    matches!(
        api.shape(),
        Shape::System | Shape::Popen | Shape::Execv | Shape::Execl | Shape::Spawn | Shape::ExecveAt | Shape::Fexecve
    )
}

/// The [`match_key`] bits that apply to `api`.
pub fn keys_of(api: ApiId) -> u8 {
    let mut keys = match_key::CALLER;
    if has_address(api) {
        keys |= match_key::IP | match_key::PORT | match_key::PATH;
    }
    if runs_program(api) {
        keys |= match_key::PATH | match_key::COMMAND;
    }
    if api.class() == Class::File {
        keys |= match_key::PATH | match_key::ACCESS;
    }
    if matches!(api.shape(), Shape::Dlopen | Shape::Dlmopen) {
        keys |= match_key::PATH;
    }
    keys
}

/// An IP address of a call: IPv4 in the first 4 bytes of `addr`; an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip {
    pub v6: bool,
    pub addr: [u8; 16],
}

impl Ip {
    /// The address of an IPv6 socket address's 16 bytes (mapped IPv4 made IPv4).
    pub fn from_v6(a: [u8; 16]) -> Ip {
        if a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff {
            let mut addr = [0; 16];
            addr[..4].copy_from_slice(&a[12..]);
            return Ip { v6: false, addr };
        }
        Ip { v6: true, addr: a }
    }

    /// An IPv4 address.
    pub fn from_v4(a: [u8; 4]) -> Ip {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&a);
        Ip { v6: false, addr }
    }
}

/// What one call is matched on. Built by the runtime from the call's
/// arguments (see `facts`), by tests from anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts<'a> {
    pub ip: Option<Ip>,
    pub port: Option<u16>,
    /// The paths the call names, resolved (both of a `rename` must match).
    pub paths: [Option<&'a [u8]>; 2],
    pub command: Option<&'a [u8]>,
    /// [`access`] bits; 0: not a file call, or not known.
    pub access: u8,
    /// The calling module's path; `main`: it is the executable.
    pub caller: Option<&'a [u8]>,
    pub main: bool,
    /// [`match_key`] bits of the facts the call has but that could not be
    /// read (see [`rule_matches`]).
    pub unknown: u8,
}

/// The facts of a call nothing could be read of (no scratch room).
pub const UNKNOWN: Facts<'static> = Facts {
    ip: None,
    port: None,
    paths: [None, None],
    command: None,
    access: 0,
    caller: None,
    main: false,
    unknown: 0xff,
};

/// The decision for a call of `api` with `facts`: the first rule of its
/// chain that matches, else its [`ApiDecision`]. `chained` is 0 in the result.
pub fn decide(p: &PolicyTable, api: u16, facts: &Facts) -> ApiDecision {
    let d = p.decision(api);
    if d.chained == 0 {
        return d;
    }
    for rule in p.chain(api) {
        if let Some(r) = p.rule_record(rule) {
            if rule_matches(p, &r, facts) {
                return ApiDecision { action: r.action, chained: 0, rule };
            }
        }
    }
    ApiDecision { chained: 0, ..d }
}

/// The matcher keys the chain of `api` uses: the facts worth gathering.
pub fn needed(p: &PolicyTable, api: u16) -> u8 {
    if p.decision(api).chained == 0 {
        return 0;
    }
    p.chain(api).filter_map(|rule| p.rule_record(rule)).fold(0, |keys, r| keys | r.keys)
}

/// Whether rule `r` matches a call with `facts`.
///
/// A rule that refuses (`deny`, `kill`) matches what it cannot tell: a key
/// whose fact is [`Facts::unknown`] (a path that could not be resolved, an
/// address that could not be read, no scratch room) counts as matching, and
/// a call naming two paths (`rename`) matches when either does. Any other
/// rule grants: it needs every fact known and every path matched.
pub fn rule_matches(p: &PolicyTable, r: &RuleRecord, facts: &Facts) -> bool {
    let has = |key: u8| r.keys & key != 0;
    let refusing = r.action >= action::DENY;
    // A key the call has no fact for: matched only by a refusing rule, and
    // only when the fact is unknown (not when it does not apply: a unix
    // socket has no `ip`).
    let without = |key: u8| refusing && facts.unknown & key != 0;
    if has(match_key::IP) {
        match facts.ip {
            Some(ip) if (0..r.ip_count).any(|i| p.ip_block(r.ip_off, i).is_some_and(|b| ip_in(&b, &ip))) => {}
            Some(_) => return false,
            None if without(match_key::IP) => {}
            None => return false,
        }
    }
    if has(match_key::PORT) {
        match facts.port {
            Some(port) if (0..r.port_count).any(|i| p.port_range(r.port_off, i).is_some_and(|q| port_in(&q, port))) => {
            }
            Some(_) => return false,
            None if without(match_key::PORT) => {}
            None => return false,
        }
    }
    if has(match_key::PATH) {
        let matched = |path: &[u8]| {
            (0..r.path_count).any(|i| p.string(r.path_off, i).is_some_and(|g| crate::glob::matches_tail(g, path)))
        };
        let mut known = facts.paths.iter().flatten();
        let ok = if refusing {
            facts.unknown & match_key::PATH != 0 || known.any(|path| matched(path))
        } else {
            facts.unknown & match_key::PATH == 0 && facts.paths[0].is_some() && known.all(|path| matched(path))
        };
        if !ok {
            return false;
        }
    }
    if has(match_key::COMMAND) {
        match facts.command {
            Some(command)
                if (0..r.command_count)
                    .any(|i| p.string(r.command_off, i).is_some_and(|g| crate::glob::matches_text(g, command))) => {}
            Some(_) => return false,
            None if without(match_key::COMMAND) => {}
            None => return false,
        }
    }
    if has(match_key::ACCESS) && !access_matches(r.action, r.access, facts.access) {
        return false;
    }
    if has(match_key::CALLER) || has(match_key::CALLER_MAIN) {
        let main = has(match_key::CALLER_MAIN) && facts.main;
        let named = facts.caller.is_some_and(|module| {
            (0..r.caller_count).any(|i| p.string(r.caller_off, i).is_some_and(|g| crate::glob::matches_tail(g, module)))
        });
        if !main && !named && !without(match_key::CALLER) {
            return false;
        }
    }
    true
}

/// Whether a call wanting `wants` ([`access`] bits) matches a rule listing
/// `listed`: an `allow` rule grants only what it lists (every access the
/// call wants is listed); any other rule flags a call wanting any of them.
pub fn access_matches(rule_action: u8, listed: u8, wants: u8) -> bool {
    if wants == 0 {
        return false;
    }
    if rule_action == action::ALLOW {
        wants & !listed == 0
    } else {
        wants & listed != 0
    }
}

/// Whether `ip` lies in block `b`.
pub fn ip_in(b: &IpBlock, ip: &Ip) -> bool {
    if (b.family == 6) != ip.v6 {
        return false;
    }
    let bits = usize::from(b.prefix).min(if ip.v6 { 128 } else { 32 });
    let (whole, rest) = (bits / 8, bits % 8);
    if b.addr.get(..whole) != ip.addr.get(..whole) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (b.addr.get(whole), ip.addr.get(whole)) {
        (Some(x), Some(y)) => x & mask == y & mask,
        _ => false,
    }
}

/// Whether `port` lies in range `q`.
pub fn port_in(q: &PortRange, port: u16) -> bool {
    q.lo <= port && port <= q.hi
}

/// The [`access`] bits of `open` flags.
pub fn open_access(flags: u64) -> u8 {
    const O_ACCMODE: u64 = 3;
    const O_CREAT: u64 = 0o100;
    const O_TRUNC: u64 = 0o1000;
    let mut a = match flags & O_ACCMODE {
        0 => access::READ,
        1 => access::WRITE,
        _ => access::READ | access::WRITE,
    };
    if flags & O_CREAT != 0 {
        a |= access::CREATE;
    }
    if flags & O_TRUNC != 0 {
        a |= access::WRITE;
    }
    a
}

/// The `open` flags `fopen` uses for `mode` ("r", "w+", "ab", ...).
pub fn fopen_flags(mode: &[u8]) -> u64 {
    const O_WRONLY: u64 = 1;
    const O_RDWR: u64 = 2;
    const O_CREAT: u64 = 0o100;
    const O_TRUNC: u64 = 0o1000;
    const O_APPEND: u64 = 0o2000;
    let plus = mode.contains(&b'+');
    let rw = |only: u64| if plus { O_RDWR } else { only };
    match mode.first() {
        Some(b'w') => rw(O_WRONLY) | O_CREAT | O_TRUNC,
        Some(b'a') => rw(O_WRONLY) | O_CREAT | O_APPEND,
        _ => rw(0),
    }
}

/// The [`access`] of a file call that is not an open: what it changes.
pub fn change_access(api: ApiId) -> u8 {
    match api.shape() {
        Shape::Symlink | Shape::SymlinkAt | Shape::Mknod | Shape::MknodAt => access::CREATE,
        Shape::TwoPaths | Shape::TwoPathsAt | Shape::TwoPathsAtFlags => match api {
            ApiId::link | ApiId::linkat => access::CREATE,
            // A rename removes the old name and makes the new one.
            _ => access::WRITE | access::CREATE,
        },
        _ => access::WRITE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_apply_where_the_issue_says() {
        assert_eq!(keys_of(ApiId::open) & match_key::IP, 0);
        assert_ne!(keys_of(ApiId::connect) & match_key::IP, 0);
        assert_ne!(keys_of(ApiId::connect) & match_key::PATH, 0, "a unix socket's path");
        assert_eq!(keys_of(ApiId::socket) & match_key::IP, 0);
        assert_ne!(keys_of(ApiId::system) & match_key::COMMAND, 0);
        assert_eq!(keys_of(ApiId::memfd_create) & match_key::PATH, 0);
        assert_ne!(keys_of(ApiId::dlopen) & match_key::PATH, 0);
        assert_ne!(keys_of(ApiId::unlink) & match_key::ACCESS, 0);
        assert_eq!(keys_of(ApiId::ptrace), match_key::CALLER);
    }

    #[test]
    fn blocks_and_access() {
        let block = |family, prefix, a: &[u8]| {
            let mut addr = [0; 16];
            addr[..a.len()].copy_from_slice(a);
            IpBlock { family, prefix, _pad: [0; 2], addr }
        };
        assert!(ip_in(&block(4, 8, &[10]), &Ip::from_v4([10, 1, 2, 3])));
        assert!(!ip_in(&block(4, 9, &[10, 128]), &Ip::from_v4([10, 1, 2, 3])));
        assert!(ip_in(
            &block(4, 32, &[127, 0, 0, 1]),
            &Ip::from_v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 127, 0, 0, 1])
        ));
        let mut loopback6 = [0; 16];
        loopback6[15] = 1;
        assert!(ip_in(&block(6, 128, &loopback6), &Ip::from_v6(loopback6)));
        assert!(!ip_in(&block(4, 0, &[]), &Ip::from_v6(loopback6)), "families never mix");
        assert_eq!(open_access(0), access::READ);
        assert_eq!(open_access(0o1101), access::WRITE | access::CREATE);
        assert_eq!(open_access(fopen_flags(b"r+")), access::READ | access::WRITE);
        assert_eq!(open_access(fopen_flags(b"a")), access::WRITE | access::CREATE);
        assert!(access_matches(action::ALLOW, access::READ | access::WRITE, access::READ));
        assert!(!access_matches(action::ALLOW, access::READ, access::READ | access::WRITE));
        assert!(access_matches(action::DENY, access::WRITE, access::READ | access::WRITE));
        assert!(!access_matches(action::DENY, access::WRITE, 0));
    }
}
