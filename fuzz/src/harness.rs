//! What each fuzz target does with one input, shared by the targets in
//! `fuzz/fuzz_targets/` and by the regression test that replays every kept
//! crash input in normal CI (`rewriter/tests/fuzz_regressions.rs`, which
//! includes this file by path; so this file uses only the crates that test
//! can see: `dfpatch`, `dfpatch_policy`, `dfpatch_runtime`, `serde_json`).
//!
//! Every function returns normally for any input. A panic is a finding:
//! either the code under test panicked (an index out of range, an arithmetic
//! overflow: fuzz builds keep overflow checks, as `cargo test` does), or one
//! of the properties checked here does not hold. Each property is one the
//! project states (README, doc comments); the message says which.

use dfpatch_policy::{describe, preset, Mode, Policy, Sink, TableView};
use dfpatch_runtime::apis::{ApiId, API_COUNT};
use dfpatch_runtime::contract::{action, RULE_DEFAULT};
use dfpatch_runtime::ptable::{PolicyTable, Sink as RtSink};
use std::sync::OnceLock;

/// The policy the ELF target patches with: `monitor-all` alerts on every
/// monitored function, so every monitored import is hooked and every site
/// that reaches one is planned and rewritten (the most code under test).
fn monitor_all() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = preset("monitor-all").expect("the monitor-all preset exists");
        Policy::parse(text).expect("the monitor-all preset parses")
    })
}

/// The ELF target: what `dfpatch inspect FILE`, `dfpatch [--force] FILE` and
/// `dfpatch restore FILE` do with the bytes of FILE, in memory.
///
/// Properties checked:
/// * nothing panics;
/// * `plan` (what inspect shows) fails whenever `patch` fails to plan, and
///   when both succeed they give the same plan ("inspect prints a plan and
///   patch executes the same plan, so the two never disagree", plan.rs);
/// * a patched output is recognised as patched, `restore` gives the input
///   back byte for byte (README), and patching the output again is refused;
/// * a file recognised as patched is refused by `patch` (README: "already
///   patched files" are refused).
pub fn elf(data: &[u8]) {
    let policy = monitor_all();
    if dfpatch::is_patched(data) {
        // `inspect` of a patched file: the "already patched" message.
        if let Ok(e) = dfpatch::elf::Elf::parse(data) {
            let _ = dfpatch::restore::already_patched(&e).to_string();
        }
        assert!(dfpatch::patch(data, policy).is_err(), "a file recognised as patched was patched again");
        // `dfpatch --force FILE` and `dfpatch restore FILE`.
        if let Ok(original) = dfpatch::restore(data) {
            patch_and_check(&original, policy);
        }
    } else {
        patch_and_check(data, policy);
    }
}

/// Plans (`inspect`, also as JSON) and patches `input`, then checks the output.
fn patch_and_check(input: &[u8], policy: &Policy) {
    let planned = dfpatch::plan(input, policy);
    let planned_json = planned.as_ref().ok().map(|p| serde_json::to_string(p).expect("a plan serialises"));
    let Ok(patch) = dfpatch::patch(input, policy) else { return };
    let Some(planned_json) = planned_json else {
        panic!("patch succeeded where plan (inspect) failed: {:?}", planned.err().map(|e| e.to_string()));
    };
    let patched_json = serde_json::to_string(&patch.plan).expect("a plan serialises");
    assert_eq!(planned_json, patched_json, "inspect's plan and patch's plan differ");

    let out = patch.patched.output.to_vec();
    assert_eq!(out.len() as u64, patch.patched.output.len(), "Output::len disagrees with the bytes written");
    assert!(dfpatch::is_patched(&out), "the patched output is not recognised as patched");
    match dfpatch::restore(&out) {
        Ok(back) => assert!(back == input, "restore did not give the input back byte for byte"),
        Err(e) => panic!("restore refused dfpatch's own output: {e}"),
    }
    assert!(dfpatch::patch(&out, policy).is_err(), "the patched output was patched again");
}

/// The policy target: what `dfpatch --policy FILE` and `dfpatch policy check
/// FILE` do with the bytes of FILE, and what the runtime then reads.
///
/// Properties checked, for every input:
/// * nothing panics;
/// * an error displays as one line starting `line L, column C: ` (the CLI
///   prints it after the file name on one line);
///
/// and for every policy that parses:
/// * `to_toml` gives text that parses to an equal policy (model.rs);
/// * `compile` is deterministic, 8-byte aligned, and both table readers (the
///   rewriter's `TableView` and the runtime's `ptable::PolicyTable`) read back
///   exactly the mode, default, sink, decisions and rule ids of the policy.
pub fn policy(data: &[u8]) {
    let policy = match Policy::parse_bytes(data) {
        Ok(policy) => policy,
        Err(e) => {
            let message = e.to_string();
            let prefix = format!("line {}, column {}: ", e.line(), e.column());
            assert!(message.starts_with(&prefix), "error not located as `{prefix}`: {message:?}");
            assert!(!message.contains('\n'), "error message spans lines: {message:?}");
            return;
        }
    };
    // What `policy check` prints for every function.
    for &api in ApiId::ALL {
        let (_, rule) = policy.decision(api);
        if let Some(i) = rule {
            assert!(i < policy.rules.len(), "decision names rule {i} of {}", policy.rules.len());
        }
    }
    let text = policy.to_toml();
    match Policy::parse(&text) {
        Ok(again) => assert_eq!(again, policy, "to_toml does not round-trip:\n{text}"),
        Err(e) => panic!("to_toml wrote text that does not parse: {e}\n{text}"),
    }

    let table = policy.compile();
    assert_eq!(table, policy.compile(), "compile is not deterministic");
    assert_eq!(table.len() % 8, 0, "table length {} is not a multiple of 8", table.len());
    let view = TableView::parse(&table).unwrap_or_else(|e| panic!("TableView rejects a compiled table: {e}"));
    assert_eq!(view.mode(), policy.mode);
    assert_eq!(view.default_action(), policy.default);
    assert_eq!(view.sink(), &policy.sink);
    let ids: Vec<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(view.rule_ids(), ids.as_slice());
    for &api in ApiId::ALL {
        assert_eq!(view.decision(api), Some(policy.decision(api)), "TableView decision for {}", api.name());
    }
    describe(&table).unwrap_or_else(|e| panic!("describe rejects a compiled table: {e}"));

    let rt = PolicyTable::parse(&table).expect("the runtime rejects a compiled table");
    assert_eq!(rt.enforce(), policy.mode == Mode::Enforce, "runtime mode");
    match (&policy.sink, rt.sink()) {
        (Sink::Stderr, RtSink::Stderr) => {}
        (Sink::Fd(a), RtSink::Fd(b)) => assert_eq!(*a, b, "runtime sink descriptor"),
        (Sink::File(a), RtSink::File(b)) => assert_eq!(a.as_bytes(), b, "runtime sink path"),
        (want, got) => panic!("sink {want:?} read back by the runtime as {got:?}"),
    }
    for &api in ApiId::ALL {
        let (want_action, want_rule) = policy.decision(api);
        let got = rt.decision(api as u16);
        assert_eq!(got.action, want_action.code(), "runtime action for {}", api.name());
        match want_rule {
            Some(i) => {
                assert_eq!(usize::from(got.rule), i, "runtime rule for {}", api.name());
                assert_eq!(rt.rule_name(got.rule), policy.rules[i].id.as_bytes(), "runtime rule id for {}", api.name());
            }
            None => {
                assert_eq!(got.rule, RULE_DEFAULT, "runtime rule for {}", api.name());
                assert_eq!(rt.rule_name(got.rule), b"default", "runtime rule id for {}", api.name());
            }
        }
    }
}

/// The policy table target: arbitrary bytes as a compiled table, as a damaged
/// or hand-edited patched file would present it to `dfpatch inspect` and to
/// the runtime.
///
/// Properties checked:
/// * neither reader panics, whatever the bytes (ptable.rs: "a damaged file
///   must not make the runtime fault");
/// * where the strict reader (`TableView`) accepts the table, the runtime
///   reads the same mode, sink, decisions and rule ids from it; for an API
///   beyond the table's `api_count` both mean the default action. The one
///   deliberate difference: the runtime writes to stderr when a `file:` sink
///   has an empty path (the compiler never writes one).
pub fn policy_table(data: &[u8]) {
    let view = TableView::parse(data);
    let _ = describe(data);
    let rt = PolicyTable::parse(data);

    if let Some(rt) = &rt {
        // Every API number a hook could pass, and some no hook can.
        for api in (0..=u16::try_from(API_COUNT + 2).unwrap_or(u16::MAX)).chain([u16::MAX - 1, u16::MAX]) {
            let d = rt.decision(api);
            assert!(d.action <= action::KILL, "runtime decision with action {}", d.action);
            let _ = rt.rule_name(d.rule);
            let _ = dfpatch_runtime::ptable::action_name(d.action);
        }
        for rule in [0, 1, 2, RULE_DEFAULT - 1, RULE_DEFAULT] {
            let _ = rt.rule_name(rule);
        }
        let _ = (rt.sink(), rt.mode_name());
    }

    let Ok(view) = view else { return };
    let Some(rt) = rt else { panic!("TableView accepts a table the runtime rejects") };
    assert_eq!(rt.enforce(), view.mode() == Mode::Enforce, "runtime mode");
    match (view.sink(), rt.sink()) {
        (Sink::Stderr, RtSink::Stderr) => {}
        (Sink::File(p), RtSink::Stderr) if p.is_empty() => {}
        (Sink::Fd(a), RtSink::Fd(b)) => assert_eq!(*a, b, "runtime sink descriptor"),
        (Sink::File(a), RtSink::File(b)) => assert_eq!(a.as_bytes(), b, "runtime sink path"),
        (want, got) => panic!("sink {want:?} read by the runtime as {got:?}"),
    }
    for &api in ApiId::ALL {
        let got = rt.decision(api as u16);
        let (want_action, want_rule) = view.decision(api).unwrap_or((view.default_action(), None));
        assert_eq!(got.action, want_action.code(), "runtime action for {}", api.name());
        match want_rule {
            Some(i) => {
                assert_eq!(usize::from(got.rule), i, "runtime rule for {}", api.name());
                assert_eq!(rt.rule_name(got.rule), view.rule_name(Some(i)).as_bytes(), "rule id for {}", api.name());
            }
            None => assert_eq!(got.rule, RULE_DEFAULT, "runtime rule for {}", api.name()),
        }
    }
}
