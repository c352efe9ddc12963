//! The benign control behaves exactly the same patched and unpatched.

use crate::common::*;

fn same_output(label: &str, flavour: &str, policy_text: impl Fn(&std::path::Path) -> String) {
    let dir = scratch(&format!("benign-{label}-{flavour}"));
    let orig = sample("benign", flavour);
    let patched = dir.join("benign");
    let ev = dir.join("ev.jsonl");
    patch(&orig, &patched, &policy_text(&ev));
    // Same argv[0] basename and cwd for both runs.
    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::copy(&orig, plain.join("benign")).unwrap();
    let a = run(&plain.join("benign"), &["x", "y"], &dir);
    let b = run(&patched, &["x", "y"], &dir);
    assert!(a.status.success());
    assert_eq!(a.status.code(), b.status.code());
    assert_eq!(stdout(&a), stdout(&b), "{flavour}: stdout differs");
    assert_eq!(a.stderr, b.stderr, "{flavour}: stderr differs");
}

/// Every flavour, dynamic and static.
fn all_flavours() -> impl Iterator<Item = &'static str> {
    FLAVOURS.iter().map(|f| f.0).chain(STATIC_FLAVOURS.iter().map(|f| f.0))
}

#[test]
fn benign_unchanged_under_default_policy_every_flavour() {
    for flavour in all_flavours() {
        same_output("default", flavour, |ev| {
            // The default preset, with the sink moved to a file so stderr stays comparable.
            dfpatch_policy::DEFAULT_POLICY.replace("sink = \"stderr\"", &format!("sink = \"file:{}\"", ev.display()))
        });
    }
}

#[test]
fn benign_unchanged_when_everything_is_reported() {
    for flavour in all_flavours() {
        same_output("all", flavour, |ev| policy("monitor", "alert", ev, &[]));
    }
    // And its file accesses were indeed seen.
    let dir = scratch("benign-seen");
    let p = dir.join("b");
    let ev = dir.join("ev.jsonl");
    patch(&sample("benign", "pie"), &p, &policy("monitor", "alert", &ev, &[]));
    assert!(run(&p, &[], &dir).status.success());
    let evs = events(&ev);
    assert!(evs.iter().any(|e| e["api"] == "fopen" && e["args"]["path"] == "/proc/self/status"), "{evs:?}");
    assert!(evs.iter().all(|e| e["class"] != "memory"), "a non-executable mmap was reported: {evs:?}");
}
