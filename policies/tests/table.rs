//! The presets, and the compiled table read back through `TableView`.

use dfpatch_policy::{
    default_policy, describe, hash, preset, Action, Mode, Policy, Sink, TableView, DEFAULT_POLICY, MAX_RULES,
    PRESET_NAMES,
};
use dfpatch_runtime::apis::{ApiId, Class, API_COUNT};
use dfpatch_runtime::contract::{POLICY_MAGIC, POLICY_VERSION};

fn preset_policy(name: &str) -> Policy {
    let text = preset(name).unwrap_or_else(|| panic!("no preset {name}"));
    Policy::parse(text).unwrap_or_else(|e| panic!("preset {name}: {e}"))
}

/// Asserts that `table` decodes to exactly what `policy` says.
fn assert_round_trip(policy: &Policy, table: &[u8]) {
    let view = TableView::parse(table).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(view.mode(), policy.mode);
    assert_eq!(view.default_action(), policy.default);
    assert_eq!(view.sink(), &policy.sink);
    let ids: Vec<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(view.rule_ids(), ids.as_slice());
    for &api in ApiId::ALL {
        assert_eq!(view.decision(api), Some(policy.decision(api)), "{}", api.name());
    }
    assert_eq!(view.decisions().count(), API_COUNT);
    assert_eq!(table.len() % 8, 0);
    let header = view.header();
    assert_eq!((header.magic, header.version), (POLICY_MAGIC, POLICY_VERSION));
    for off in [header.decisions_off, header.rules_off] {
        assert_eq!(off % 8, 0);
    }
}

#[test]
fn every_preset_parses_and_round_trips() {
    for name in PRESET_NAMES {
        let policy = preset_policy(name);
        assert_round_trip(&policy, &policy.compile());
        let text = preset(name).unwrap_or_default();
        assert!(text.starts_with("# dfpatch"), "{name} lacks its explanation");
    }
}

#[test]
fn the_default_preset() {
    let policy = default_policy();
    assert_eq!(Policy::parse(DEFAULT_POLICY).as_ref(), Ok(&policy));
    assert_eq!(policy.mode, Mode::Monitor);
    assert_eq!(policy.sink, Sink::Stderr);
    for &api in ApiId::ALL {
        let expected = match api.class() {
            Class::File | Class::Process => Action::Allow,
            // A server's every client: not reported by default.
            _ if api == ApiId::accept || api == ApiId::accept4 => Action::Allow,
            // Refused unless a rule names it (reported as an alert in monitor mode).
            Class::Tamper => Action::Deny,
            _ => Action::Alert,
        };
        assert_eq!(policy.decision(api).0, expected, "{}", api.name());
    }
}

#[test]
fn the_other_presets_do_what_they_say() {
    let monitor_all = preset_policy("monitor-all");
    assert_eq!(monitor_all.mode, Mode::Monitor);
    // (Tampering is refused unless a rule names it: reported, with what enforce mode would do.)
    for &api in ApiId::ALL {
        let expected = if api.class() == Class::Tamper { Action::Deny } else { Action::Alert };
        assert_eq!(monitor_all.decision(api).0, expected, "{}", api.name());
    }

    let block_exec = preset_policy("block-exec");
    assert_eq!(block_exec.mode, Mode::Enforce);
    for &api in ApiId::ALL {
        let expected = match api.class() {
            Class::Exec | Class::Tamper => Action::Deny,
            Class::File | Class::Process => Action::Allow,
            // Every class else reported, accepted connections too.
            _ => Action::Alert,
        };
        assert_eq!(block_exec.decision(api).0, expected, "{}", api.name());
    }

    let strict = preset_policy("strict");
    assert_eq!(strict.mode, Mode::Enforce);
    for &api in ApiId::ALL {
        let expected = match api.class() {
            _ if api == ApiId::accept || api == ApiId::accept4 => Action::Allow,
            // Raw and packet sockets (the only ones `socket` reports).
            _ if api == ApiId::socket => Action::Deny,
            Class::Exec | Class::Debug | Class::Library | Class::Tamper => Action::Deny,
            Class::Privilege | Class::Admin | Class::IoUring => Action::Deny,
            Class::Network | Class::Memory => Action::Alert,
            Class::File | Class::Process => Action::Allow,
        };
        assert_eq!(strict.decision(api).0, expected, "{}", api.name());
    }
}

#[test]
fn sinks_round_trip() {
    for sink in ["stderr", "fd:0", "fd:3", "fd:1000000", "file:/tmp/events.jsonl", "file:/a"] {
        let policy = Policy::parse(&format!("[report]\nsink = \"{sink}\"\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_round_trip(&policy, &policy.compile());
    }
}

#[test]
fn compiling_is_deterministic() {
    for name in PRESET_NAMES {
        let text = preset(name).unwrap_or_default();
        let a = Policy::parse(text).map(|p| p.compile());
        let b = Policy::parse(text).map(|p| p.compile());
        assert_eq!(a, b);
        let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
        assert_eq!(hash(&a), hash(&b));
    }
    let tables: Vec<Vec<u8>> = PRESET_NAMES.iter().map(|n| preset_policy(n).compile()).collect();
    for (i, a) in tables.iter().enumerate() {
        for b in &tables[i + 1..] {
            assert_ne!(hash(a), hash(b), "different presets, same table");
        }
    }
}

#[test]
fn describe_reads_the_table() {
    let policy = preset_policy("block-exec");
    let text = describe(&policy.compile()).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("mode: enforce"), "{text}");
    assert!(text.contains("rules: no-exec, watch"), "{text}");
    assert!(text.lines().any(|l| l.split_whitespace().eq(["execve", "exec", "deny", "no-exec"])), "{text}");
    assert!(text.lines().any(|l| l.split_whitespace().eq(["fopen", "file", "allow", "default"])), "{text}");
    assert!(describe(b"DFPP").is_err());
}

#[test]
fn rule_count_is_limited() {
    let rule =
        |i: usize| format!("[[rule]]\nid = \"r{i}\"\napis = [\"exec\"]\ncaller = [\"/r{i}\"]\naction = \"alert\"\n");
    let at_limit: String = (0..MAX_RULES).map(rule).collect();
    let policy = Policy::parse(&at_limit).unwrap_or_else(|e| panic!("{e}"));
    assert_round_trip(&policy, &policy.compile());
    let over: String = (0..=MAX_RULES).map(rule).collect();
    let message = Policy::parse(&over).map(|_| ()).map_err(|e| e.to_string());
    let line = 5 * MAX_RULES + 1;
    assert_eq!(message, Err(format!("line {line}, column 1: too many rules: at most {MAX_RULES} are allowed")));
}

#[test]
fn truncated_tables_are_rejected_not_panicked_on() {
    let table = preset_policy("strict").compile();
    for len in 0..table.len() {
        let cut = table.get(..len).unwrap_or_default();
        // Only the zero padding at the end may go without harm.
        if TableView::parse(cut).is_ok() {
            assert!(table[len..].iter().all(|&b| b == 0), "accepted a table cut at {len}");
        }
    }
}
