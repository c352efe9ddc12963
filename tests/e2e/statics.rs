//! Static executables (issue 3): every behaviour of `samples/behaviours.c`
//! in musl and glibc static builds, static-pie, and stripped, reported in
//! monitor mode and refused in enforce mode, the program going on.
//!
//! With a symbol table the monitored functions' entries are detoured: events
//! name the function (`"layer":"entry"`), exactly as the dynamic flavours do,
//! and a refused call fails with errno EPERM. Stripped, only `syscall`
//! instructions can be found: events name the system call
//! (`"layer":"syscall"`), e.g. `execve` in the child for `system()`, and a
//! refused call gets `-EPERM` from the "kernel", which libc turns into what
//! it does with any failure of that system call.

use crate::behaviours::{caller_is_a_call, cases, creates_file, Case, Ctx};
use crate::common::*;
use serde_json::Value;
use std::net::TcpListener;

/// A substring of the event's `args` (as JSON) that shows which call of
/// the behaviour it is, when the event names a system call rather than the
/// function the program called.
fn evidence(case: &Case, ctx: &Ctx) -> String {
    match case.api {
        "system" | "open" | "open64" | "openat" | "openat64" | "creat" | "fopen" | "fopen64" => ctx.file.clone(),
        "popen" => "popen-ran".into(),
        "posix_spawn" | "posix_spawnp" => "spawn-ran".into(),
        api if api.starts_with("exec") || api == "fexecve" => format!("exec-ran-{api}"),
        "connect" => format!("\"port\":{}", ctx.port),
        "bind" => "127.0.0.1".into(),
        "listen" => "\"backlog\":7".into(),
        "mmap" | "mprotect" => "PROT_EXEC".into(),
        "ptrace" => "PTRACE_TRACEME".into(),
        other => panic!("no evidence for {other}"),
    }
}

fn check_static(flavour: &str) {
    let stripped = flavour.ends_with("-stripped");
    let musl = flavour.starts_with("musl");
    let exe = sample("behaviours", flavour);
    let dir = scratch(&format!("static-{flavour}"));
    let mon_events = dir.join("monitor.jsonl");
    let monitored = dir.join("monitored");
    patch(&exe, &monitored, &policy("monitor", "alert", &mon_events, &[]));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut failures = Vec::new();
    let exe_path = std::fs::canonicalize(&monitored).unwrap().display().to_string();
    for (i, case) in cases().iter().enumerate() {
        // musl has no dynamic loading in static programs at all; a stripped
        // glibc one shows dlopen only as file and memory system calls.
        if case.api == "dlopen" && (musl || stripped) {
            continue;
        }
        let file = dir.join(format!("made-{i}-{}", case.api));
        let ctx = Ctx { file: file.display().to_string(), port };
        let args: Vec<String> =
            case.args.iter().map(|a| a.replace("{file}", &ctx.file).replace("{port}", &port.to_string())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let args = if args.is_empty() { vec![case.api] } else { args };
        // musl's headers make the *64 functions macros for the others; in
        // glibc they are aliases at the same address: one entry, named once.
        let api = case.api.trim_end_matches("64");
        let what = format!("{flavour} {}", case.api);

        // Monitor: reported, and it happened.
        let _ = std::fs::remove_file(&mon_events);
        let out = run(&monitored, &args, &dir);
        let text = stdout(&out);
        for want in case.happened.iter().chain(&["done"]) {
            if !text.contains(want) {
                failures.push(format!("{what} monitor: stdout lacks {want:?}: {text}"));
            }
        }
        if creates_file(case) && !file.exists() {
            failures.push(format!("{what} monitor: {} was not created", file.display()));
        }
        let evs = events(&mon_events);
        let found = if stripped {
            let want = evidence(case, &ctx);
            evs.iter()
                .find(|e| e["class"] == case.class && e["layer"] == "syscall" && e["args"].to_string().contains(&want))
        } else {
            let n = evs.iter().filter(|e| e["api"] == api).count();
            if n != 1 {
                failures.push(format!("{what} monitor: {n} events for one call"));
            }
            evs.iter().find(|e| e["api"] == api && e["layer"] == "entry")
        };
        match found {
            None => failures.push(format!("{what} monitor: no event among {evs:?}")),
            Some(e) => {
                common_fields(e, case, "alert", &exe_path, &exe, &what, &mut failures);
                if !stripped && !(case.args_ok)(&e["args"], &ctx) {
                    failures.push(format!("{what} monitor: wrong args {}", e["args"]));
                }
            }
        }
        let _ = std::fs::remove_file(&file);

        // Enforce: refused, reported, did not happen, the program goes on.
        let enforced = dir.join(format!("enforced-{}", case.class));
        let class_events = dir.join(format!("enforce-{}.jsonl", case.class));
        if !enforced.exists() {
            let rule = format!("\"{}\"", case.class);
            patch(&exe, &enforced, &policy("enforce", "allow", &class_events, &[("deny-it", &rule, "deny")]));
        }
        let _ = std::fs::remove_file(&class_events);
        let out = run(&enforced, &args, &dir);
        let text = stdout(&out);
        // A stripped program's exec is refused in the child (its execve system
        // call fails), so the parent sees a child that failed, not -1/EPERM.
        let exact = !(stripped && case.class == "exec");
        let mut expected: Vec<&str> = if exact { case.refused.to_vec() } else { Vec::new() };
        if stripped && musl && case.api == "mmap" {
            // musl's mmap reports a refused anonymous mapping as ENOMEM.
            expected = vec!["mmap-exec=0 errno="];
        }
        for want in expected.iter().chain(&["done"]) {
            if !text.contains(want) {
                failures.push(format!("{what} enforce: stdout lacks {want:?}: {text}"));
            }
        }
        for not in case.happened.iter().filter(|h| h.contains("-ran")) {
            if text.contains(not) {
                failures.push(format!("{what} enforce: it still happened ({not:?})"));
            }
        }
        if creates_file(case) && file.exists() {
            failures.push(format!("{what} enforce: {} was created anyway", file.display()));
        }
        let evs = events(&class_events);
        let found = evs
            .iter()
            .find(|e| e["action"] == "deny" && if stripped { e["class"] == case.class } else { e["api"] == api });
        match found {
            None => failures.push(format!("{what} enforce: no deny event among {evs:?}")),
            Some(e) => {
                let enforced_path = std::fs::canonicalize(&enforced).unwrap().display().to_string();
                common_fields(e, case, "deny", &enforced_path, &exe, &what, &mut failures);
            }
        }
    }
    drop(listener);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

fn common_fields(
    e: &Value,
    case: &Case,
    action: &str,
    exe: &str,
    original: &std::path::Path,
    what: &str,
    failures: &mut Vec<String>,
) {
    let checks = [
        ("class", e["class"] == case.class),
        ("action", e["action"] == action),
        ("exe", e["exe"] == exe),
        ("caller.module", e["caller"]["module"] == exe),
        ("caller.offset", caller_is_a_call(original, e)),
        ("pid", e["pid"].as_u64().is_some_and(|p| p > 0)),
    ];
    for (field, ok) in checks {
        if !ok {
            failures.push(format!("{what} {action}: bad {field} in {e}"));
        }
    }
}

#[test]
fn musl_static() {
    check_static("musl-static");
}

#[test]
fn musl_static_stripped() {
    check_static("musl-static-stripped");
}

#[test]
fn musl_static_pie() {
    check_static("musl-static-pie");
}

#[test]
fn musl_static_pie_stripped() {
    check_static("musl-static-pie-stripped");
}

#[test]
fn glibc_static() {
    check_static("glibc-static");
}

#[test]
fn glibc_static_stripped() {
    check_static("glibc-static-stripped");
}

#[test]
fn glibc_static_pie() {
    check_static("glibc-static-pie");
}

/// A Rust program built for x86_64-unknown-linux-musl (a static-pie musl
/// executable with symbols, built by rustc with its own musl): what the
/// standard library does for it is caught at libc's function entries.
#[test]
fn rust_musl_program() {
    let dir = scratch("rust-musl");
    let exe = dir.join("rust_behaviours");
    let st = std::process::Command::new("rustc")
        .args(["--edition", "2021", "-O", "--target", "x86_64-unknown-linux-musl", "-o"])
        .arg(&exe)
        .arg(samples_dir().join("rust_behaviours.rs"))
        .status()
        .expect("run rustc");
    assert!(st.success(), "rustc --target x86_64-unknown-linux-musl failed (rustup target add it: .ci/run does)");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let file = dir.join("made-by-rust");
    let file_s = file.display().to_string();
    // (sub-command, what it prints when it worked, API, class, evidence in args, what it prints when refused)
    type RustCase<'a> = (&'a [&'a str], &'a str, &'a str, &'a str, &'a str, &'a str);
    let cases: [RustCase; 3] = [
        (&["spawn"], "spawn ok 0", "posix_spawnp", "exec", "rust-spawn-ran", "spawn error PermissionDenied"),
        (&["connect", &port], "connect ok", "connect", "network", &port, "connect error PermissionDenied"),
        (&["create", &file_s], "create ok", "open", "file", &file_s, "create error PermissionDenied"),
    ];
    let mon = dir.join("monitor.jsonl");
    let monitored = dir.join("monitored");
    patch(&exe, &monitored, &policy("monitor", "alert", &mon, &[]));
    let mut failures = Vec::new();
    for (args, ok, api, class, evidence, refused) in cases {
        let _ = std::fs::remove_file(&mon);
        let text = stdout(&run(&monitored, args, &dir));
        if !text.contains(ok) || !text.contains("done") {
            failures.push(format!("monitor {api}: {text}"));
        }
        let evs = events(&mon);
        let hit = evs.iter().any(|e| {
            e["api"] == api && e["class"] == class && e["layer"] == "entry" && e["args"].to_string().contains(evidence)
        });
        if !hit {
            failures.push(format!("monitor {api}: no event among {evs:?}"));
        }
        let enforced = dir.join(format!("enforced-{class}"));
        let ev = dir.join(format!("enforce-{class}.jsonl"));
        patch(&exe, &enforced, &policy("enforce", "allow", &ev, &[("deny-it", &format!("\"{class}\""), "deny")]));
        let text = stdout(&run(&enforced, args, &dir));
        if !text.contains(refused) || !text.contains("done") || text.contains("rust-spawn-ran") {
            failures.push(format!("enforce {api}: {text}"));
        }
        if !events(&ev).iter().any(|e| e["api"] == api && e["action"] == "deny") {
            failures.push(format!("enforce {api}: no deny event"));
        }
    }
    assert!(!file.exists() || std::fs::read_to_string(&file).unwrap() == "made by rust\n");
    // Threads still start (clone is only reported, under the monitor-everything policy).
    let text = stdout(&run(&monitored, &["thread"], &dir));
    assert!(text.contains("thread ok 3628800"), "{text}");
    assert!(events(&mon).iter().any(|e| e["api"] == "clone" && e["layer"] == "syscall"));
    drop(listener);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `samples/tricky_sites.S`: a hand-written static program with a function
/// too short to detour, one that branches back into its first bytes, a
/// `syscall` with branch targets on both sides, and a `syscall` whose number
/// comes from a register. `inspect` names each refusal and its reason, the
/// patched program still runs exactly as written, and what was hooked reports.
#[test]
fn unsafe_sites_are_refused_and_said_so() {
    let dir = scratch("tricky");
    let exe = dir.join("tricky");
    compile("cc", &["-nostdlib", "-static"], &exe, "tricky_sites.S", &[]);
    let out =
        dfpatch(&["inspect".as_ref(), "--json".as_ref(), "--preset".as_ref(), "monitor-all".as_ref(), exe.as_ref()]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let plan = &v["plan"];
    let refused: Vec<(String, String, String)> =
        plan["refused"].as_array().unwrap().iter().map(|r| (s(&r["layer"]), s(&r["what"]), s(&r["reason"]))).collect();
    let has = |layer: &str, what: &str, reason: &str| {
        refused.iter().any(|(l, w, r)| l == layer && w == what && r.contains(reason))
    };
    assert!(has("entry", "system", "before 5 bytes"), "{refused:?}");
    assert!(has("entry", "connect", "a branch target at"), "{refused:?}");
    assert!(has("syscall", "unknown number", "without a branch target inside"), "{refused:?}");
    assert_eq!(refused.len(), 3, "{refused:?}");
    let hooks: Vec<(String, String)> =
        plan["hooks"].as_array().unwrap().iter().map(|h| (s(&h["kind"]), s(&h["api"]))).collect();
    assert_eq!(
        hooks,
        [
            ("detour".to_string(), "listen".to_string()),
            // main's exit: not monitored, but its number is not set just
            // before it, so the backstop could not rewrite it at run time.
            ("syscall".to_string(), "system call 60".to_string()),
            ("syscall".to_string(), "open".to_string()),
            ("syscall".to_string(), "any monitored system call".to_string()),
            ("syscall".to_string(), "open".to_string()),
        ]
    );
    assert_eq!(plan["syscalls"]["total"], 5);
    assert_eq!(plan["syscalls"]["not_monitored"], 0);
    assert_eq!(plan["syscalls"]["for_backstop"], 1);

    // Patched: runs as written (exit 42), reports what was hooked.
    let ev = dir.join("ev.jsonl");
    let patched = dir.join("tricky.patched");
    patch(&exe, &patched, &policy("monitor", "alert", &ev, &[]));
    assert_eq!(run(&patched, &[], &dir).status.code(), Some(42));
    let evs = events(&ev);
    let apis: Vec<(String, String)> = evs.iter().map(|e| (s(&e["api"]), s(&e["layer"]))).collect();
    // site_d's number has its upper half set: still open, as for the kernel.
    // site_b, refused, traps: the backstop reports it (issue 11).
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, l)| (a.to_string(), l.to_string())).collect::<Vec<_>>();
    assert_eq!(apis, pairs(&[("listen", "entry"), ("open", "syscall"), ("open", "backstop"), ("open", "syscall")]));
    // Enforced: the open system call is refused, the program goes on.
    let ev = dir.join("deny.jsonl");
    let enforced = dir.join("tricky.enforced");
    patch(&exe, &enforced, &policy("enforce", "allow", &ev, &[("no-files", "\"file\"", "deny")]));
    assert_eq!(run(&enforced, &[], &dir).status.code(), Some(42));
    let evs = events(&ev);
    assert!(evs.len() == 3 && evs.iter().all(|e| e["api"] == "open" && e["action"] == "deny"), "{evs:?}");
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// `samples/regs_check.S`: around a rewritten `syscall`, every register a
/// system call keeps, the flags (DF and CF set on purpose), xmm0/xmm15 and the
/// 128-byte red zone are unchanged, whether the call is reported and run or
/// refused (then it returns -EPERM). And the runtime that makes this true
/// without saving vector state must contain no vector or x87 instruction.
#[test]
fn syscall_sites_keep_registers_flags_vectors_and_red_zone() {
    let dir = scratch("regs");
    let exe = dir.join("regs");
    compile("cc", &["-nostdlib", "-static"], &exe, "regs_check.S", &[]);
    assert_eq!(run(&exe, &[], &dir).status.code(), Some(42));
    let ev = dir.join("ev.jsonl");
    let monitored = dir.join("regs.monitored");
    patch(&exe, &monitored, &policy("monitor", "alert", &ev, &[]));
    assert_eq!(run(&monitored, &[], &dir).status.code(), Some(42));
    assert_eq!(events(&ev).len(), 1);
    let refused = dir.join("regs.refused");
    patch(&exe, &refused, &policy("enforce", "deny", &ev, &[]));
    assert_eq!(run(&refused, &[], &dir).status.code(), Some(43));

    let rt = dfpatch::runtime::Runtime::load().unwrap();
    let mut info = iced_x86::InstructionInfoFactory::new();
    let mut decoded = 0;
    assert!(!rt.code.is_empty());
    for &(lo, hi) in &rt.code {
        let bytes = &rt.rx[(lo - rt.rx_start) as usize..(hi - rt.rx_start) as usize];
        for ins in iced_x86::Decoder::with_ip(64, bytes, lo, iced_x86::DecoderOptions::NONE) {
            let vector = info.info(&ins).used_registers().iter().any(|r| {
                let reg = r.register();
                reg.is_xmm() || reg.is_ymm() || reg.is_zmm() || reg.is_st() || reg.is_mm() || reg.is_k()
            });
            assert!(!vector, "the runtime uses a vector or x87 register at {:#x}: {ins}", ins.ip());
            decoded += 1;
        }
    }
    assert!(decoded > 1000, "only {decoded} instructions decoded");
}

/// A thread blocked in a cancellable `read` is cancelled in the patched
/// program too: musl's cancellation `syscall` (found by its labels, or by its
/// instructions when stripped) is refused, not moved, because pthread_cancel
/// only acts while the blocked thread's address is between those labels.
#[test]
fn pthread_cancel_still_interrupts_a_blocked_thread() {
    let dir = scratch("cancel");
    for stripped in [false, true] {
        let exe = dir.join(if stripped { "cancel-stripped" } else { "cancel" });
        compile("musl-gcc", &["-O2", "-static"], &exe, "cancel.c", &[]);
        if stripped {
            assert!(std::process::Command::new("strip").arg(&exe).status().unwrap().success());
        }
        let out = dfpatch(&["inspect".as_ref(), "--preset".as_ref(), "monitor-all".as_ref(), exe.as_ref()]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("inside libc's thread-cancellation window"));
        let patched = dir.join(format!("{}.patched", exe.file_name().unwrap().to_string_lossy()));
        patch(&exe, &patched, &policy("monitor", "alert", &dir.join("ev.jsonl"), &[]));
        let Some(out) = run_within(&mut std::process::Command::new(&patched), 30) else {
            panic!("the patched program hangs: pthread_cancel did not interrupt the blocked thread");
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout), "cancelled=1\n");
    }
}
