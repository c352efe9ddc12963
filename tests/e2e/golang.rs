//! Go programs (issue 11, item 3), built here by Debian's `golang-go`
//! without cgo (a static file, no libc at all) and with it (dynamic, glibc):
//! Go makes its system calls itself, from its runtime and its `syscall`
//! package, on goroutine stacks. Its `syscall` instructions are rewritten in
//! the file (`"layer":"syscall"`): `os/exec`, `net.Dial` and `os.ReadFile`
//! are reported in monitor mode and refused in enforce mode (Go returning
//! the EPERM as an error, the program going on), also stripped and as a
//! PIE; 5,000 goroutines making
//! reported calls at once, asynchronous preemption (SIGURG) under the
//! collector, and `os/signal` work as unpatched (`samples/go_behaviours.go`).

use crate::common::*;
use serde_json::Value;
use std::process::Command;

/// A mode of the sample: its name, its argument ("" for none), what it
/// prints, and the API it is reported as with how many events (None: none).
type Case<'a> = (&'a str, &'a str, &'a str, Option<(&'a str, usize)>);

/// Builds `samples/go_behaviours.go` with `CGO_ENABLED=cgo` and `flags` into `out`.
fn build_go(cgo: bool, flags: &[&str], out: &std::path::Path) {
    let st = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg("go_behaviours.go")
        .current_dir(samples_dir())
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .env("GO111MODULE", "off")
        .status()
        .expect("run go (golang-go: installed by .ci/run)");
    assert!(st.success(), "go build failed");
}

#[test]
fn go_programs_are_reported_and_refused() {
    let root = scratch("golang");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Connections are accepted by the kernel's backlog; nothing reads them.
    let secret = root.join("secret.txt");
    std::fs::write(&secret, "secret\n").unwrap();
    let secret = secret.to_str().unwrap().to_string();
    let mut failures = Vec::new();
    let flavours: [(&str, bool, &[&str]); 4] = [
        ("static", false, &[]),
        ("static-stripped", false, &["-ldflags=-s -w"]),
        ("cgo", true, &[]),
        ("cgo-pie", true, &["-buildmode=pie"]),
    ];
    for (flavour, cgo, flags) in flavours {
        let dir = root.join(flavour);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("go_behaviours");
        build_go(cgo, flags, &exe);
        for mode in ["monitor", "enforce"] {
            let enforce = mode == "enforce";
            let ev = dir.join(format!("{mode}.jsonl"));
            // Two files: one refusing exec and network, one refusing files
            // (os/exec opens /dev/null before it starts a program).
            let calls = dir.join(format!("{mode}-calls"));
            let rules = [("no-exec", "\"exec\"", "deny"), ("no-net", "\"network\"", "deny")];
            patch(&exe, &calls, &policy(mode, "allow", &ev, &rules));
            let files = dir.join(format!("{mode}-files"));
            patch(&exe, &files, &policy(mode, "allow", &ev, &[("no-files", "\"file\"", "deny")]));
            let action = if enforce { "deny" } else { "alert" };
            let cases: [Case; 6] = [
                (
                    "exec",
                    "",
                    if enforce { "fork/exec /bin/echo: operation not permitted" } else { "exec: \"escaped\\n\" <nil>" },
                    Some(("execve", 1)),
                ),
                (
                    "dial",
                    &addr,
                    if enforce { "connect: operation not permitted" } else { "dial: <nil>" },
                    Some(("connect", 1)),
                ),
                (
                    "read",
                    &secret,
                    if enforce { "operation not permitted" } else { "read: \"secret\\n\" <nil>" },
                    Some(("openat", 1)),
                ),
                (
                    "goroutines",
                    &secret,
                    if enforce { "goroutines opened: 0" } else { "goroutines opened: 5000" },
                    Some(("openat", 5000)),
                ),
                ("preempt", "", "preempt: ok", None),
                ("signal", "", "signal: user defined signal 1", None),
            ];
            for (what, arg, want, reported) in cases {
                let _ = std::fs::remove_file(&ev);
                let args: Vec<&str> = if arg.is_empty() { vec![what] } else { vec![what, arg] };
                let patched = if what == "read" || what == "goroutines" { &files } else { &calls };
                let out = run(patched, &args, &dir);
                let text = stdout(&out);
                let evs = events(&ev);
                let mut wrong = Vec::new();
                if !out.status.success() || !text.contains(want) || !text.contains("done") {
                    wrong.push(format!("status {:?}, want {want:?}", out.status.code()));
                }
                if let Some((api, count)) = reported {
                    // The call's own events (the Go runtime opens files of its own at start).
                    let mine: Vec<&Value> = evs
                        .iter()
                        .filter(|e| e["api"] == api)
                        .filter(|e| api != "openat" || e["args"]["path"] == secret.as_str())
                        .collect();
                    if mine.len() != count {
                        wrong.push(format!("{} {api} events, want {count}", mine.len()));
                    }
                    for e in &mine {
                        let module = e["caller"]["module"].as_str().unwrap_or("");
                        let own = module == patched.to_str().unwrap_or("");
                        if e["action"] != action || e["layer"] != "syscall" || !own {
                            wrong.push(format!("event {} {} from {module}", e["action"], e["layer"]));
                            break;
                        }
                    }
                }
                if !wrong.is_empty() {
                    failures.push(format!(
                        "{flavour} {mode} {what}: {}; stdout {text:?} stderr {:?}",
                        wrong.join(", "),
                        String::from_utf8_lossy(&out.stderr).chars().take(600).collect::<String>()
                    ));
                }
            }
        }
    }
    drop(listener);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// 5,000 goroutines each making a reported call while the sink is slow (a
/// FIFO read 512 bytes at a time, 0.5 ms apart): each event's writer holds
/// a stack of the runtime's while it waits, Go starts a thread for every
/// goroutine blocked so (thousands), and the runtime's 64 stacks run out.
/// The hooks then wait for a stack to be given back instead of running the
/// dispatcher on the goroutine's 2 KiB stack, which corrupted Go's memory
/// (SIGSEGV, "startlockedm: m has p", "unexpected return pc") in every such
/// run before. Every event arrives, and the program ends as unpatched.
#[test]
fn goroutines_outnumbering_the_stacks_wait_for_one() {
    use std::io::Read;
    let root = scratch("golang-slow-sink");
    let exe = root.join("go_behaviours");
    build_go(false, &[], &exe);
    let secret = root.join("secret.txt");
    std::fs::write(&secret, "secret\n").unwrap();
    let fifo = root.join("events.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(st.success());
    let patched = root.join("patched");
    patch(&exe, &patched, &policy("monitor", "allow", &fifo, &[("files", "\"file\"", "alert")]));
    // The reader is there before the program starts (a sink FIFO nobody
    // reads loses its events): opened without waiting for a writer, read
    // slowly until the program has ended and nothing is left.
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(&fifo).expect("open the FIFO");
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let program_ended = ended.clone();
    let reader = std::thread::spawn(move || {
        let (mut all, mut buf) = (Vec::new(), [0u8; 512]);
        loop {
            match f.read(&mut buf) {
                Ok(n) if n > 0 => all.extend_from_slice(&buf[..n]),
                // No data (or no writer yet): done once the program is.
                _ if program_ended.load(std::sync::atomic::Ordering::Acquire) => break,
                _ => {}
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        all
    });
    let out = run_within(Command::new(&patched).args(["goroutines", secret.to_str().unwrap()]), 240);
    ended.store(true, std::sync::atomic::Ordering::Release);
    let events = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let out = out.expect("the patched program hangs");
    let opens = events.lines().filter(|l| l.contains("\"api\":\"openat\"") && l.contains("secret.txt")).count();
    assert!(
        out.status.success() && stdout(&out).contains("goroutines opened: 5000") && opens == 5000,
        "status {:?}, {opens} openat events, stdout {:?}, stderr {:?}",
        out.status.code(),
        stdout(&out),
        String::from_utf8_lossy(&out.stderr).chars().take(600).collect::<String>()
    );
}
