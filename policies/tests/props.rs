//! Properties: no input panics the parser or the table reader, and every
//! valid policy compiles to a table that reads back to its decisions.

use dfpatch_policy::{
    describe, shadowed_by, Action, ApiSelector, IpBlock, Matchers, Mode, Policy, Rule, Sink, TableView,
};
use dfpatch_runtime::apis::{ApiId, Class};
use dfpatch_runtime::contract::match_key;
use dfpatch_runtime::rules::{keys_of, Facts, Ip};
use proptest::prelude::*;

/// Pieces of policy text, so random inputs get past the TOML syntax often.
const FRAGMENTS: &[&str] = &[
    "mode", "default", "report", "sink", "rule", "id", "apis", "action", " = ", "=", "\"", "'", "[", "]", "[[", "]]",
    "{", "}", ",", "\n", " ", "#", ".", "\\", "\"\"\"", "monitor", "enforce", "allow", "alert", "deny", "kill", "exec",
    "network", "file", "memory", "library", "debug", "system", "__open_2", "stderr", "fd:", "file:/", "3", "-1", "é",
    "\u{0}", "\u{feff}", "1e9", "true",
];

/// Every name an `apis` entry may use.
fn selector_names() -> Vec<&'static str> {
    let classes = Class::ALL.iter().map(|c| c.name());
    classes.chain(ApiId::ALL.iter().map(|a| a.name())).collect()
}

fn tomlish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60).prop_map(|parts| parts.concat())
}

fn sink() -> impl Strategy<Value = Sink> {
    prop_oneof![
        Just(Sink::Stderr),
        (0..=1_000_000i32).prop_map(Sink::Fd),
        "/[a-zA-Z0-9 ._\"\\\\é-]{0,40}".prop_map(Sink::File),
    ]
}

fn selector() -> impl Strategy<Value = ApiSelector> {
    prop::sample::select(selector_names())
        .prop_map(|name| ApiSelector::from_name(name).unwrap_or(ApiSelector::Class(Class::Exec)))
}

/// Entries of each matcher, overlapping the facts of [`facts`].
const IPS: &[&str] = &["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "0.0.0.0/0", "127.0.0.0/31"];
const PORTS: &[(u16, u16)] = &[(80, 80), (8000, 8099), (0, 65535), (6379, 6379)];
const PATHS: &[&str] = &["/etc/**", "/data/*", "shadow", "/tmp/x", "**/lib*.so*", "/"];
const COMMANDS: &[&str] = &["git *", "ls", "*", "sh -c ?"];
const CALLERS: &[&str] = &["main", "*/libz.so*", "/usr/lib/**", "libc.so.6"];

/// Some entries of `pool`, or none (the matcher is absent).
fn some_of<T: Clone + std::fmt::Debug + 'static>(pool: &'static [T]) -> impl Strategy<Value = Vec<T>> {
    prop_oneof![3 => Just(Vec::new()), 1 => prop::sample::subsequence(pool.to_vec(), 1..=pool.len())]
}

fn matchers() -> impl Strategy<Value = Matchers> {
    (
        some_of(IPS),
        some_of(PORTS),
        some_of(PATHS),
        some_of(COMMANDS),
        prop_oneof![2 => Just(0u8), 1 => 1..8u8],
        some_of(CALLERS),
    )
        .prop_map(|(ip, port, path, command, access, caller)| Matchers {
            ip: ip
                .iter()
                .filter_map(|t| t.split_once('/').map_or(Some((*t, None)), |(a, p)| Some((a, Some(p)))))
                .map(|(a, p)| {
                    let addr: std::net::IpAddr = a.parse().unwrap_or(std::net::IpAddr::from([0u8; 4]));
                    let full = if addr.is_ipv4() { 32 } else { 128 };
                    IpBlock { addr, prefix: p.and_then(|p| p.parse().ok()).unwrap_or(full) }
                })
                .collect(),
            port,
            path: path.iter().map(|p| p.to_string()).collect(),
            command: command.iter().map(|c| c.to_string()).collect(),
            access,
            caller: caller.iter().map(|c| c.to_string()).collect(),
        })
}

/// `m` without the keys that do not apply to every selector of `apis`.
fn applicable(mut m: Matchers, apis: &[ApiSelector]) -> Matchers {
    let applies = |bit: u8| apis.iter().all(|s| ApiId::ALL.iter().any(|&a| s.matches(a) && keys_of(a) & bit != 0));
    if !applies(match_key::IP) {
        m.ip.clear();
    }
    if !applies(match_key::PORT) {
        m.port.clear();
    }
    if !applies(match_key::PATH) {
        m.path.clear();
    }
    if !applies(match_key::COMMAND) {
        m.command.clear();
    }
    if !applies(match_key::ACCESS) {
        m.access = 0;
    }
    m
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        "[A-Za-z0-9_.:-]{0,50}",
        prop::collection::vec(selector(), 1..6),
        prop::sample::select(Action::ALL.to_vec()),
        matchers(),
    )
        .prop_map(|(id, apis, action, m)| {
            let matchers = applicable(m, &apis);
            Rule { id, apis, action, matchers }
        })
}

/// Valid policies: ids are made unique by a numeric prefix.
fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(Mode::ALL.to_vec()),
        prop::sample::select(Action::ALL.to_vec()),
        sink(),
        prop::collection::vec(rule(), 0..10),
        any::<bool>(),
    )
        .prop_map(|(mode, default, sink, generated, backstop_off)| {
            // (A rule an earlier one shadows is refused by the parser: left out.)
            let mut rules: Vec<Rule> = Vec::new();
            for mut rule in generated {
                if shadowed_by(&rules, &rule).is_none() {
                    rule.id = format!("{}{}", rules.len(), rule.id);
                    rules.push(rule);
                }
            }
            Policy { mode, default, sink, rules, backstop_off }
        })
}

/// The facts of a call, drawn so that they often match the matchers above.
fn facts() -> impl Strategy<Value = OwnedFacts> {
    let ip = prop_oneof![
        Just(None),
        Just(Some(Ip::from_v4([127, 0, 0, 1]))),
        Just(Some(Ip::from_v4([127, 0, 0, 2]))),
        Just(Some(Ip::from_v4([10, 9, 8, 7]))),
        Just(Some(Ip::from_v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]))),
        Just(Some(Ip::from_v6([0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]))),
    ];
    let port = prop_oneof![Just(None), (0u16..10000).prop_map(Some), Just(Some(6379))];
    let path = prop::sample::select(vec![
        None,
        Some("/etc/shadow"),
        Some("/data/x"),
        Some("/tmp/x"),
        Some("/usr/lib/libz.so.1"),
        Some("/"),
        Some("/data/a/b"),
    ]);
    let second = prop::sample::select(vec![None, Some("/etc/passwd"), Some("/data/y")]);
    let command = prop::sample::select(vec![None, Some("git status"), Some("ls"), Some("sh -c x"), Some("gitk")]);
    let caller = prop::sample::select(vec![
        None,
        Some("/usr/lib/x86_64-linux-gnu/libz.so.1"),
        Some("/lib/libc.so.6"),
        Some("/app/main"),
    ]);
    let unknown = prop_oneof![3 => Just(0u8), 1 => 0..64u8];
    ((ip, port, path, second, command, 0..8u8, caller, any::<bool>()), unknown).prop_map(
        |((ip, port, path, second, command, access, caller, main), unknown)| OwnedFacts {
            unknown,
            ip,
            port,
            paths: [path.map(String::from), second.map(String::from)],
            command: command.map(String::from),
            access,
            caller: caller.map(String::from),
            main,
        },
    )
}

/// [`Facts`] that own their strings.
#[derive(Debug, Clone)]
struct OwnedFacts {
    ip: Option<Ip>,
    port: Option<u16>,
    paths: [Option<String>; 2],
    command: Option<String>,
    access: u8,
    caller: Option<String>,
    main: bool,
    unknown: u8,
}

impl OwnedFacts {
    fn facts(&self) -> Facts<'_> {
        Facts {
            ip: self.ip,
            port: self.port,
            paths: [self.paths[0].as_deref().map(str::as_bytes), self.paths[1].as_deref().map(str::as_bytes)],
            command: self.command.as_deref().map(str::as_bytes),
            access: self.access,
            caller: self.caller.as_deref().map(str::as_bytes),
            main: self.main,
            unknown: self.unknown,
        }
    }
}

proptest! {
    #[test]
    fn random_text_never_panics(text in any::<String>()) {
        let _ = Policy::parse(&text);
    }

    #[test]
    fn policy_like_text_never_panics(text in tomlish()) {
        if let Err(e) = Policy::parse(&text) {
            let message = e.to_string();
            prop_assert!(message.starts_with("line "), "{}", message);
            prop_assert!(!message.contains('\n'), "{}", message);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Policy::parse_bytes(&bytes);
        let _ = TableView::parse(&bytes);
        let _ = describe(&bytes);
    }

    #[test]
    fn valid_policies_round_trip(policy in policy()) {
        let text = policy.to_toml();
        let parsed = Policy::parse(&text).map_err(|e| format!("{e}\n{text}"));
        prop_assert_eq!(parsed.as_ref(), Ok(&policy));

        let table = policy.compile();
        prop_assert_eq!(&table, &policy.compile());
        prop_assert_eq!(table.len() % 8, 0);
        let view = TableView::parse(&table).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(view.mode(), policy.mode);
        prop_assert_eq!(view.default_action(), policy.default);
        prop_assert_eq!(view.sink(), &policy.sink);
        for &api in ApiId::ALL {
            prop_assert_eq!(view.decision(api), Some(policy.decision(api)), "{}", api.name());
        }
    }

    /// The runtime decides a call from the compiled table (`rules::decide`)
    /// as the policy's plain reference matcher does, for every API.
    #[test]
    fn the_runtime_matches_as_the_reference_does(policy in policy(), calls in prop::collection::vec(facts(), 1..8)) {
        use dfpatch_runtime::contract::RULE_DEFAULT;
        let table = policy.compile();
        let rt = dfpatch_runtime::ptable::PolicyTable::parse(&table).ok_or_else(|| TestCaseError::fail("runtime rejects the table"))?;
        for owned in &calls {
            let facts = owned.facts();
            for &api in ApiId::ALL {
                let (action, rule) = policy.decide(api, &facts);
                let got = dfpatch_runtime::rules::decide(&rt, api as u16, &facts);
                prop_assert_eq!(got.action, action.code(), "{} {:?}", api.name(), owned);
                prop_assert_eq!(got.rule, rule.map_or(RULE_DEFAULT, |i| i as u16), "{} {:?}", api.name(), owned);
            }
        }
    }

    #[test]
    fn damaged_tables_never_panic(policy in policy(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut table = policy.compile();
        let i = at.index(table.len());
        table[i] = byte;
        if let Ok(view) = TableView::parse(&table) {
            for &api in ApiId::ALL {
                let _ = view.decision(api).map(|(_, rule)| view.rule_name(rule).len());
            }
        }
    }
}

proptest! {
    /// The reader that matters is the runtime's (`dfpatch_runtime::ptable`), which
    /// the patched program uses: for every valid policy it must see exactly the
    /// compiler's decisions, rule ids, mode and sink.
    #[test]
    fn the_runtime_reads_what_the_compiler_wrote(policy in policy()) {
        use dfpatch_runtime::contract::{action, RULE_DEFAULT};
        use dfpatch_runtime::ptable::{PolicyTable, Sink as RtSink};
        let table = policy.compile();
        let rt = PolicyTable::parse(&table).ok_or_else(|| TestCaseError::fail("runtime rejects the table"))?;
        prop_assert_eq!(rt.enforce(), policy.mode == Mode::Enforce);
        match (&policy.sink, rt.sink()) {
            (Sink::Stderr, RtSink::Stderr) => {}
            (Sink::Fd(a), RtSink::Fd(b)) => prop_assert_eq!(*a, b),
            (Sink::File(a), RtSink::File(b)) => prop_assert_eq!(a.as_bytes(), b),
            (want, got) => prop_assert!(false, "sink {:?} read back as {:?}", want, got),
        }
        for &api in ApiId::ALL {
            let (want_action, want_rule) = policy.decision(api);
            let got = rt.decision(api as u16);
            let want_code = match want_action {
                Action::Allow => action::ALLOW,
                Action::Alert => action::ALERT,
                Action::Deny => action::DENY,
                Action::Kill => action::KILL,
            };
            prop_assert_eq!(got.action, want_code, "{}", api.name());
            match want_rule {
                Some(i) => {
                    prop_assert_eq!(got.rule as usize, i);
                    prop_assert_eq!(rt.rule_name(got.rule), policy.rules[i].id.as_bytes());
                }
                None => {
                    prop_assert_eq!(got.rule, RULE_DEFAULT);
                    prop_assert_eq!(rt.rule_name(got.rule), b"default");
                }
            }
        }
    }
}

/// The property above compares two matchers; this pins what both must say
/// on the issue's own example, so that agreeing on nothing cannot pass.
#[test]
fn the_runtime_decides_the_issue_example_as_written() {
    let text = r#"default = "alert"
[[rule]]
id = "db"
apis = ["connect"]
ip = ["127.0.0.1", "10.0.0.0/8", "::1"]
port = [6379, "8000-8099"]
action = "allow"
[[rule]]
id = "data"
apis = ["file"]
path = ["/var/lib/app/**"]
access = ["read"]
action = "allow"
[[rule]]
id = "secrets"
apis = ["file"]
path = ["/etc/shadow"]
action = "deny"
"#;
    let policy = Policy::parse(text).unwrap();
    let table = policy.compile();
    let rt = dfpatch_runtime::ptable::PolicyTable::parse(&table).unwrap();
    let decide = |api: ApiId, f: &OwnedFacts| {
        let got = dfpatch_runtime::rules::decide(&rt, api as u16, &f.facts());
        assert_eq!(Some(got.action), policy.decide(api, &f.facts()).0.code().into(), "{f:?}");
        (Action::from_code(got.action).unwrap(), String::from_utf8_lossy(rt.rule_name(got.rule)).into_owned())
    };
    let none = OwnedFacts {
        ip: None,
        port: None,
        paths: [None, None],
        command: None,
        access: 0,
        caller: None,
        main: false,
        unknown: 0,
    };
    let net = |ip: Ip, port| OwnedFacts { ip: Some(ip), port: Some(port), ..none.clone() };
    let file = |path: &str, access| OwnedFacts { paths: [Some(path.into()), None], access, ..none.clone() };
    assert_eq!(decide(ApiId::connect, &net(Ip::from_v4([127, 0, 0, 1]), 6379)), (Action::Allow, "db".into()));
    assert_eq!(decide(ApiId::connect, &net(Ip::from_v4([10, 2, 3, 4]), 8050)), (Action::Allow, "db".into()));
    assert_eq!(decide(ApiId::connect, &net(Ip::from_v4([127, 0, 0, 2]), 6379)), (Action::Alert, "default".into()));
    assert_eq!(decide(ApiId::connect, &net(Ip::from_v4([127, 0, 0, 1]), 8100)), (Action::Alert, "default".into()));
    assert_eq!(decide(ApiId::openat, &file("/var/lib/app/x/y", 1)), (Action::Allow, "data".into()));
    assert_eq!(decide(ApiId::openat, &file("/var/lib/app/x", 3)), (Action::Alert, "default".into()));
    assert_eq!(decide(ApiId::openat, &file("/etc/shadow", 1)), (Action::Deny, "secrets".into()));
    // Unknown path: granting rules do not match, refusing ones do.
    let unknown = OwnedFacts { access: 1, unknown: 0xff, ..none.clone() };
    assert_eq!(decide(ApiId::openat, &unknown), (Action::Deny, "secrets".into()));
    // A rename is refused when either path is refused.
    let rename = OwnedFacts { paths: [Some("/tmp/x".into()), Some("/etc/shadow".into())], access: 6, ..none.clone() };
    assert_eq!(decide(ApiId::rename, &rename), (Action::Deny, "secrets".into()));
}
