//! The runtime inside a busy or hostile program: many threads, vfork
//! children, signal handlers, and programs that take the sink's descriptor away.

use crate::common::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn stress() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| build_stress("dynamic", "cc", &["-O2", "-pthread"]))
}

/// The stress sample as a static musl and a static glibc program (function
/// entries detoured, `syscall` instructions rewritten).
fn stress_static(libc: &str) -> PathBuf {
    static MUSL: OnceLock<PathBuf> = OnceLock::new();
    static GLIBC: OnceLock<PathBuf> = OnceLock::new();
    match libc {
        "musl" => MUSL
            .get_or_init(|| {
                // stress.c uses linux/filter.h: the kernel headers are libc-independent.
                let kernel = ["-idirafter", "/usr/include", "-idirafter", "/usr/include/x86_64-linux-gnu"];
                build_stress("musl-static", "musl-gcc", &[&["-O2", "-static"][..], &kernel[..]].concat())
            })
            .clone(),
        _ => GLIBC.get_or_init(|| build_stress("glibc-static", "cc", &["-O2", "-static", "-pthread"])).clone(),
    }
}

fn build_stress(name: &str, cc: &str, flags: &[&str]) -> PathBuf {
    let dir = scratch(&format!("stress-build-{name}"));
    let exe = dir.join("stress");
    compile(cc, flags, &exe, "stress.c", &[]);
    exe
}

/// Patches the stress sample so that `open` and `exec` are reported to a file.
fn patched(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    patched_from(name, stress())
}

fn patched_from(name: &str, exe: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    let ev = dir.join("ev.jsonl");
    let p = dir.join("stress");
    patch(exe, &p, &policy("monitor", "allow", &ev, &[("f", "\"file\", \"exec\"", "alert")]));
    (dir, p, ev)
}

#[test]
fn sixty_four_threads_every_event_whole_and_counted() {
    sixty_four_threads(patched("threads"));
}

#[test]
fn sixty_four_threads_static_musl() {
    sixty_four_threads(patched_from("threads-musl-static", &stress_static("musl")));
}

#[test]
fn sixty_four_threads_static_glibc() {
    sixty_four_threads(patched_from("threads-glibc-static", &stress_static("glibc")));
}

fn sixty_four_threads((dir, p, ev): (PathBuf, PathBuf, PathBuf)) {
    let out = run(&p, &["threads", "64", "50"], &dir);
    assert_eq!(stdout(&out), "threads done: 64 x 50\n");
    let text = std::fs::read_to_string(&ev).unwrap();
    // `events` fails on any line that is not one whole JSON object.
    let evs = events(&ev);
    assert_eq!(text.lines().count(), 64 * 50);
    let opens = evs
        .iter()
        .filter(|e| e["api"] == "open" && e["args"]["path"].as_str().is_some_and(|p| p.starts_with("/nonexistent/t")))
        .count();
    assert_eq!(opens, 64 * 50);
    let mut paths: Vec<&str> = evs.iter().filter_map(|e| e["args"]["path"].as_str()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 64 * 50, "every call reported exactly once");
    let tids: std::collections::BTreeSet<u64> = evs.iter().filter_map(|e| e["tid"].as_u64()).collect();
    assert!(tids.len() > 1, "events came from one thread only");
}

#[test]
fn vfork_child_is_reported_and_runs() {
    vfork_child(patched("vfork"));
}

#[test]
fn vfork_child_static_musl_and_glibc() {
    vfork_child(patched_from("vfork-musl-static", &stress_static("musl")));
    vfork_child(patched_from("vfork-glibc-static", &stress_static("glibc")));
}

fn vfork_child((dir, p, ev): (PathBuf, PathBuf, PathBuf)) {
    let out = run(&p, &["vfork"], &dir);
    assert_eq!(stdout(&out), "vfork-child-ran\nvfork child exit=0\n");
    let evs = events(&ev);
    let exec: Vec<_> = evs.iter().filter(|e| e["api"] == "execve").collect();
    assert_eq!(exec.len(), 1, "{evs:?}");
    assert_eq!(exec[0]["args"]["argv"][1], "vfork-child-ran");
}

#[test]
fn hooked_calls_from_a_signal_handler_and_errno_kept() {
    let (dir, p, ev) = patched("signal");
    let out = run(&p, &["signal"], &dir);
    assert_eq!(stdout(&out), "signals handled=10\n", "errno was not kept or the handler failed");
    let evs = events(&ev);
    assert_eq!(evs.iter().filter(|e| e["args"]["path"] == "/nonexistent/from-signal-handler").count(), 10);
    assert_eq!(evs.iter().filter(|e| e["args"]["path"] == "/nonexistent/main-loop").count(), 200);
}

#[test]
fn sink_survives_dup2_and_close_all() {
    for what in ["dup2-sink", "close-all"] {
        let (dir, p, ev) = patched(what);
        let out = run(&p, &[what], &dir);
        assert_eq!(stdout(&out), format!("open after {what}: -1 errno=ENOENT\n"));
        let evs = events(&ev);
        assert!(
            evs.iter().any(|e| e["args"]["path"] == "/nonexistent/after-sink-change"),
            "{what}: event lost: {evs:?}"
        );
    }
}

/// A sink that cannot be written never changes what the program does.
#[test]
fn sink_that_fails_does_not_affect_the_program() {
    let dir = scratch("broken-sink");
    let p = dir.join("stress");
    // A sink in a folder that does not exist: the runtime cannot open it.
    patch(stress(), &p, &policy("monitor", "allow", &dir.join("missing/ev.jsonl"), &[("f", "\"file\"", "alert")]));
    let out = run(&p, &["threads", "4", "10"], &dir);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "threads done: 4 x 10\n");
    // stderr sink closed under the program: writes fail with EBADF/EPIPE, never SIGPIPE.
    let p2 = dir.join("stress2");
    let pol = "mode = \"monitor\"\n[report]\nsink = \"stderr\"\n[[rule]]\nid = \"f\"\napis = [\"file\"]\naction = \"alert\"\n";
    patch(stress(), &p2, pol);
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' threads 2 10 2>&- ; echo rc=$?", p2.display()))
        .output()
        .unwrap();
    assert_eq!(stdout(&st), "threads done: 2 x 10\nrc=0\n");
    // A full disk: a `file:` sink on /dev/full, every write fails with ENOSPC.
    let p3 = dir.join("stress3");
    let full = "mode = \"monitor\"\n[report]\nsink = \"file:/dev/full\"\n[[rule]]\nid = \"f\"\napis = [\"file\"]\naction = \"alert\"\n";
    patch(stress(), &p3, full);
    let out = run(&p3, &["threads", "4", "10"], &dir);
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(stdout(&out), "threads done: 4 x 10\n");
    // A pipe whose reader is gone as stderr: writes get EPIPE, SIGPIPE must not kill the program.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(&p2).args(["threads", "2", "10"]).stderr(writer).output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(stdout(&out), "threads done: 2 x 10\n");
}

/// Regression (review): a hooked call in a handler on an 8 KiB alternate
/// signal stack used to overflow it (the hook's event buffers are large).
#[test]
fn hooked_call_on_a_small_alternate_signal_stack() {
    let (dir, p, ev) = patched("altstack");
    for size in ["8192", "16384", "65536"] {
        let plain = run(stress(), &["altstack", size], &dir);
        let out = run(&p, &["altstack", size], &dir);
        assert_eq!(out.status.code(), plain.status.code(), "altstack {size}: {:?}", out.status);
        assert_eq!(stdout(&out), format!("altstack {size} handled=1\n"));
    }
    // With room to spare the event is written; all events are whole JSON.
    assert!(events(&ev).iter().any(|e| e["args"]["path"] == "/nonexistent/from-altstack"));
}

/// Regression (review): with process_vm_readv refused by seccomp, the runtime
/// used to read program memory directly and crash on a bad pointer that the
/// real call answers with EFAULT.
#[test]
fn bad_pointer_with_process_vm_readv_refused() {
    let (dir, p, ev) = patched("seccomp");
    let plain = run(stress(), &["seccomp"], &dir);
    assert_eq!(stdout(&plain), "open bad pointer -> -1 errno=EFAULT\nopen good pointer -> -1\n");
    let out = run(&p, &["seccomp"], &dir);
    assert_eq!(stdout(&out), stdout(&plain));
    let evs = events(&ev);
    // The good pointer is still decoded (through /proc/self/mem), the bad one is null.
    assert!(evs.iter().any(|e| e["api"] == "open" && e["args"]["path"].is_null()), "{evs:?}");
    assert!(evs.iter().any(|e| e["args"]["path"] == "/nonexistent/after-seccomp"), "{evs:?}");
}

/// Regression (review): cut events were not valid JSON, and cut arguments were not marked.
#[test]
fn long_arguments_are_cut_into_valid_marked_events() {
    let (dir, p, ev) = patched("long-args");
    assert_eq!(stdout(&run(&p, &["long-exec"], &dir)), "long-exec child exit=0\n");
    let out = run(&p, &["long-system"], &dir);
    assert_eq!(stdout(&out), "long-system-tail\nsystem=0\n");
    let evs = events(&ev); // fails on any line that is not valid JSON
    let exec = evs.iter().find(|e| e["api"] == "execve").expect("execve event");
    assert_eq!(exec["truncated"], true);
    assert!(exec["args"]["argv"].as_array().is_some_and(|a| a.len() > 5 && a.len() < 61));
    let system = evs.iter().find(|e| e["api"] == "system").expect("system event");
    assert_eq!(system["truncated"], true);
    assert!(system["args"]["command"].as_str().is_some_and(|c| c.starts_with("true    ")));
    let text = std::fs::read_to_string(&ev).unwrap();
    assert!(text.lines().all(|l| l.len() < 4096), "an event longer than PIPE_BUF");
}

/// Re-entrancy: a timer signal whose handler makes a hooked call lands, now and
/// then, inside the runtime's own event path. Every event must still be whole,
/// counted exactly, and errno must be what the program expects.
#[test]
fn signal_handlers_interrupting_the_runtime() {
    let (dir, p, ev) = patched("reentrant");
    let out = run(&p, &["reentrant", "20000"], &dir);
    assert_eq!(stdout(&out), "reentrant main=20000 bad=0\n");
    let alarms: usize = String::from_utf8_lossy(&out.stderr)
        .trim()
        .strip_prefix("alarms=")
        .and_then(|n| n.parse().ok())
        .expect("alarm count on stderr");
    assert!(alarms > 0, "the timer never fired");
    let evs = events(&ev);
    assert_eq!(evs.iter().filter(|e| e["args"]["path"] == "/nonexistent/main").count(), 20000);
    assert_eq!(evs.iter().filter(|e| e["args"]["path"] == "/nonexistent/from-alarm").count(), alarms);
}
