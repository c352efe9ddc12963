//! Tamper resistance (issue 11): what could undo the hooks — changing,
//! moving, replacing or discarding the code dfpatch rewrote or the
//! runtime's memory, opening the process's own `/proc/PID/mem` for writing,
//! `process_vm_writev` into itself, and the xz-style undo (libc's original
//! entry bytes written back, then `system`) — is reported in monitor mode
//! (`"class":"tamper"`) and refused in enforce mode, the program going on
//! (`samples/tamper.c`, `runtime/src/guard.rs`). What every program does
//! with its own memory is not. In enforce mode the runtime's segment is
//! sealed (`mseal`) where the kernel has it.

use crate::common::*;
use serde_json::Value;

const FLAVOURS: &[&str] =
    &["pie", "nopie", "musl", "glibc-static", "glibc-static-pie", "musl-static", "musl-static-pie"];

/// A mode of `tamper`: the lines a monitor and an enforce run print, the
/// tamper API (prefix) of its events and how many a monitor run has (an
/// enforce run has one: the first call is refused), and whether it needs a
/// dynamic glibc (libc's detoured entry to restore).
struct Case {
    mode: &'static str,
    monitor: &'static [&'static str],
    enforce: &'static [&'static str],
    api: &'static str,
    events: usize,
    glibc_only: bool,
}

const fn case(
    mode: &'static str,
    monitor: &'static [&'static str],
    enforce: &'static [&'static str],
    api: &'static str,
    events: usize,
) -> Case {
    Case { mode, monitor, enforce, api, events, glibc_only: false }
}

const REFUSED: &str = "returned -1 Operation not permitted";

const CASES: &[Case] = &[
    case("mprotect-libc", &["mprotect returned 0"], &[REFUSED], "tamper.mprotect", 1),
    case("mprotect-exe", &["mprotect returned 0"], &[REFUSED], "tamper.mprotect", 1),
    case("madvise-libc", &["madvise returned 0"], &[REFUSED], "tamper.madvise", 1),
    // Moved away, then moved back over the same place: two.
    case("mremap-libc", &["mremap returned 0"], &[REFUSED], "tamper.mremap", 2),
    case("mmap-fixed", &["mmap returned 0"], &[REFUSED], "tamper.mmap", 1),
    case("mem-self", &["open returned 3"], &[REFUSED], "tamper.open", 1),
    case("mem-task", &["open returned 3"], &[REFUSED], "tamper.open", 1),
    case("pvm-self", &["process_vm_writev returned 8"], &[REFUSED], "tamper.process_vm_writev", 1),
    // Not tampering: no event.
    case("mem-read", &["open returned 3"], &["open returned 3"], "tamper.", 0),
    case(
        "benign",
        &["mprotect returned 0", "madvise returned 0", "munmap returned 0", "open returned 0"],
        &["mprotect returned 0", "madvise returned 0", "munmap returned 0", "open returned 0"],
        "tamper.",
        0,
    ),
    Case {
        mode: "restore-mem",
        monitor: &["entry was rewritten", "open returned 3", "pwrite returned 16", "escaped", "system returned 0"],
        enforce: &["entry was rewritten", "open returned -1", "system returned -1"],
        api: "tamper.open",
        events: 1,
        glibc_only: true,
    },
    Case {
        mode: "restore-mprotect",
        monitor: &["entry was rewritten", "mprotect returned 0", "escaped", "system returned 0"],
        enforce: &["entry was rewritten", "mprotect returned -1", "system returned -1"],
        api: "tamper.mprotect",
        events: 1,
        glibc_only: true,
    },
];

#[test]
fn tampering_is_reported_and_refused() {
    let root = scratch("tamper");
    let mut failures = Vec::new();
    let mut runs = 0;
    for &flavour in FLAVOURS {
        let dir = root.join(flavour);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("tamper");
        build_flavour("tamper", flavour, &exe);
        for mode in ["monitor", "enforce"] {
            let ev = dir.join(format!("{mode}.jsonl"));
            let patched = dir.join(mode);
            // exec refused in both (reported only, in monitor mode); tamper left to its default.
            patch(&exe, &patched, &policy(mode, "allow", &ev, &[("no-exec", "\"exec\"", "deny")]));
            for c in CASES.iter().filter(|c| !c.glibc_only || matches!(flavour, "pie" | "nopie")) {
                let _ = std::fs::remove_file(&ev);
                let out = run(&patched, &[c.mode], &dir);
                runs += 1;
                let text = stdout(&out);
                let enforce = mode == "enforce";
                let want = if enforce { c.enforce } else { c.monitor };
                let evs = events(&ev);
                let tamper: Vec<&Value> = evs.iter().filter(|e| e["class"] == "tamper").collect();
                let count = if enforce { c.events.min(1) } else { c.events };
                let action = if enforce { "deny" } else { "alert" };
                let mut wrong = Vec::new();
                if !out.status.success() || !text.contains("done") {
                    wrong.push(format!("status {:?}", out.status.code()));
                }
                for line in want {
                    if !text.contains(line) {
                        wrong.push(format!("no {line:?}"));
                    }
                }
                if enforce && text.contains("escaped") {
                    wrong.push("the command ran".into());
                }
                if tamper.len() != count {
                    wrong.push(format!("{} tamper events, want {count}", tamper.len()));
                }
                for e in &tamper {
                    let api = e["api"].as_str().unwrap_or("");
                    if !api.starts_with(c.api) || e["action"] != action || e["rule"] != "default" {
                        wrong.push(format!("event {api} {} rule {}", e["action"], e["rule"]));
                    }
                }
                // The undo reaches `system` again: reported (monitor), refused (enforce).
                if c.glibc_only {
                    let exec = evs.iter().filter(|e| e["class"] == "exec").count();
                    if exec == 0 {
                        wrong.push("no exec event after the undo".into());
                    }
                }
                if !wrong.is_empty() {
                    failures.push(format!(
                        "{flavour} {mode} {}: {}; stdout {text:?} stderr {:?}",
                        c.mode,
                        wrong.join(", "),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
        }
    }
    let glibc = CASES.iter().filter(|c| c.glibc_only).count();
    assert_eq!(runs, 2 * (FLAVOURS.len() * (CASES.len() - glibc) + 2 * glibc), "every case ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// mseal (Linux 6.10 and later): the runtime's segment is sealed when the
/// policy refuses tampering (enforce mode), and not otherwise.
#[test]
fn the_runtime_is_sealed_in_enforce_mode() {
    let root = scratch("tamper-seal");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let has_mseal = (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 10);
    let mut failures = Vec::new();
    for flavour in ["pie", "glibc-static", "musl-static"] {
        let dir = root.join(flavour);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("tamper");
        build_flavour("tamper", flavour, &exe);
        let ev = dir.join("ev.jsonl");
        for (mode, extra, sealed) in [
            ("monitor", vec![], false),
            ("enforce", vec![], has_mseal),
            // A policy that lets tampering through: nothing sealed.
            ("enforce", vec![("tamper-ok", "\"tamper\"", "allow")], false),
        ] {
            let patched = dir.join(format!("{mode}-{}", extra.len()));
            patch(&exe, &patched, &policy(mode, "allow", &ev, &extra));
            let text = stdout(&run(&patched, &["sealed"], &dir));
            let want = if sealed { "runtime sealed: yes" } else { "runtime sealed: no" };
            if !text.contains(want) {
                failures.push(format!("{flavour} {mode} {extra:?}: {text:?}, want {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
