//! Properties: no input panics the parser or the table reader, and every
//! valid policy compiles to a table that reads back to its decisions.

use dfpatch_policy::{describe, Action, ApiSelector, Mode, Policy, Rule, Sink, TableView};
use dfpatch_runtime::apis::{ApiId, Class};
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

fn rule() -> impl Strategy<Value = Rule> {
    ("[A-Za-z0-9_.:-]{0,50}", prop::collection::vec(selector(), 1..6), prop::sample::select(Action::ALL.to_vec()))
        .prop_map(|(id, apis, action)| Rule { id, apis, action })
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
        .prop_map(|(mode, default, sink, mut rules, backstop_off)| {
            for (i, rule) in rules.iter_mut().enumerate() {
                rule.id = format!("{i}{}", rule.id);
            }
            Policy { mode, default, sink, rules, backstop_off }
        })
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
