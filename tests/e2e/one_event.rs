//! One behaviour, one event (issue 10, item 6): every monitored function of
//! `runtime/src/apis.rs`, called once by `samples/one_call.c`, in every
//! flavour the samples are built in, under four policies:
//! * monitor everything (`--preset monitor-all`, events to a descriptor),
//! * enforce mode reporting everything (`default = "alert"`; the `tamper`
//!   class, refused unless a rule names it, is denied),
//! * enforce mode denying everything (but new processes, unless the call
//!   starts one: a spawn makes one inside),
//! * enforce mode allowing (with an alert) the functions that are not system
//!   calls (`system`, `execv`, `fopen`, ...: those that do their job through
//!   other monitored calls) and denying everything else.
//!
//! Each call must give exactly one event of its class (what libc does inside
//! it is part of it: `execv` jumping on to `execve`, the program a spawn's
//! child executes, each directory a PATH search tries), and no event of
//! another class; a denied call is denied once and fails, the program going
//! on; an allowed call succeeds. Under the fourth policy the function is
//! reported once, with `alert`, and what it does inside that the policy
//! denies is still refused and reported (`deny` always applies: see
//! `runtime/src/nest.rs`): the call then fails, and fails only then. The few
//! calls a flavour cannot see at all are listed with the reason ([`unseen`]),
//! and give no event.
//!
//! The whole table runs in parallel (some 2,000 runs); the matrix of event
//! counts is printed (`cargo test one_event -- --nocapture`) and written to
//! `matrix.txt` in the test's scratch folder.

use crate::common::*;
use dfpatch_runtime::apis::{syscall_nr, ApiId, Class};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The policies each call runs under.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    /// `--preset monitor-all`, with the sink on descriptor 3.
    Monitor,
    /// Enforce mode, every call reported (`default = "alert"`).
    Alert,
    /// Enforce mode, everything denied but new processes (unless the call
    /// starts one).
    Deny,
    /// Enforce mode, the functions that are not system calls alerted (let
    /// through), everything else denied.
    Only,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Monitor, Mode::Alert, Mode::Deny, Mode::Only];

    /// The policy text, events to descriptor 3 (each run gets its own file there).
    fn policy(self, class: Class) -> String {
        let head = "[report]\nsink = \"fd:3\"\n";
        let rule = |id: &str, apis: &str, action: &str| {
            format!("\n[[rule]]\nid = \"{id}\"\napis = [{apis}]\naction = \"{action}\"\n")
        };
        match self {
            Mode::Monitor => format!("mode = \"monitor\"\ndefault = \"alert\"\n{head}"),
            Mode::Alert => format!("mode = \"enforce\"\ndefault = \"alert\"\n{head}"),
            // Everything denied (the sample makes no other monitored call),
            // but new processes, which spawns make inside, unless they are
            // the call: as `block-exec` leaves them.
            Mode::Deny if class == Class::Process => format!("mode = \"enforce\"\ndefault = \"deny\"\n{head}"),
            Mode::Deny => {
                format!("mode = \"enforce\"\ndefault = \"deny\"\n{head}{}", rule("processes", "\"process\"", "allow"))
            }
            Mode::Only => {
                let apis: Vec<String> = ApiId::ALL
                    .iter()
                    .filter(|a| function_only(a.name()))
                    .map(|a| format!("\"{}\"", a.name()))
                    .collect();
                format!(
                    "mode = \"enforce\"\ndefault = \"deny\"\n{head}{}",
                    rule("functions", &apis.join(", "), "alert")
                )
            }
        }
    }

    /// The patched file's name: one per policy.
    fn file(self, class: Class) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Alert => "alert",
            Mode::Deny if class == Class::Process => "deny-all",
            Mode::Deny => "deny",
            Mode::Only => "only",
        }
    }
}

/// Whether `name` is a function only, not also a monitored system call
/// (`system`, `execv`, `fopen`, `open64`; not `execve`, `open`, `connect`).
fn function_only(name: &str) -> bool {
    ApiId::from_name(name).is_some_and(|a| syscall_nr(a).is_none())
}

fn musl(flavour: &str) -> bool {
    flavour.starts_with("musl")
}

fn stripped_static(flavour: &str) -> bool {
    is_static(flavour) && flavour.ends_with("-stripped")
}

/// Functions the flavour's libc does not have (the sample says "unavailable").
fn unavailable(api: ApiId, flavour: &str) -> bool {
    musl(flavour) && (api.name().starts_with("__open") || api == ApiId::dlmopen)
}

/// Why `flavour` cannot see a call of `api` at all (no event is expected),
/// or `None`.
fn unseen(api: ApiId, flavour: &str) -> Option<&'static str> {
    (stripped_static(flavour) && api.class() == Class::Library).then_some(
        "a stripped static file has no function entries to hook: only system calls are seen, and loading a \
         library is none (the loader's open and mmap are reported as such)",
    )
}

/// Calls a flavour sees as the system calls they are made of, as many
/// events as those (the sample's `sendmmsg` sends two messages), and why.
fn made_of(api: ApiId, flavour: &str) -> Option<(usize, &'static str)> {
    (musl(flavour) && stripped_static(flavour) && api == ApiId::sendmmsg).then_some((
        2,
        "musl's sendmmsg sends each message with a sendmsg system call of its own, and a stripped static file \
         sees only system calls",
    ))
}

/// Whether the call can succeed at all when allowed.
fn can_succeed(api: ApiId, flavour: &str) -> bool {
    // A static musl program has no dynamic loader: dlopen always fails; a
    // static glibc one cannot make a new namespace.
    let cannot = match api {
        ApiId::dlopen => musl(flavour),
        ApiId::dlmopen => !musl(flavour),
        _ => false,
    };
    !(cannot && is_static(flavour))
}

/// The events a run gives that count for the call: those of its class; under
/// [`Mode::Only`] every event (nothing else may be refused on its own), but
/// for `dlopen` and `dlmopen`, whose loader's own calls are not part of them
/// (they may be the loaded library's constructors': see the README).
fn counted(api: ApiId, mode: Mode, evs: &[Value]) -> Vec<&Value> {
    let every = mode == Mode::Only && api.class() != Class::Library;
    evs.iter().filter(|e| every || e["class"] == api.class().name()).collect()
}

/// Events of another class than the call's (monitor-everything policies),
/// but those the flavour shows on their own (see [`own_class`]).
fn others<'a>(api: ApiId, flavour: &str, evs: &'a [Value]) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["class"] != api.class().name() && !own_class(api, flavour, e)).collect()
}

/// Events of another class that are reported on their own, as the README
/// says: the loader's calls inside `dlopen` (they may be the loaded library's
/// constructors'), and in a stripped static file, where only system calls are
/// seen, the `clone` that starts a spawn's child (class `process`; the
/// child's `execve` is the `exec` event).
fn own_class(api: ApiId, flavour: &str, e: &Value) -> bool {
    let spawn = matches!(api, ApiId::system | ApiId::popen | ApiId::posix_spawn | ApiId::posix_spawnp);
    api.class() == Class::Library || (stripped_static(flavour) && spawn && e["class"] == "process")
}

struct Run {
    stdout: String,
    status: Option<i32>,
    events: Vec<Value>,
}

impl Run {
    /// Whether the call did what it was asked: "ok=1", or, for the exec
    /// family, the program replaced by `true` (nothing printed, status 0).
    fn happened(&self, api: ApiId) -> bool {
        let exec = api.class() == Class::Exec
            && !matches!(api, ApiId::system | ApiId::popen)
            && !api.name().starts_with("posix_spawn");
        if exec && self.stdout.is_empty() {
            return self.status == Some(0);
        }
        self.stdout.contains(" ok=1")
    }

    /// Whether the program went on to its end after the call.
    fn went_on(&self) -> bool {
        self.stdout.contains("done") && self.status == Some(0)
    }
}

/// `PATH` for every run: `true` is found in the fourth directory, so a PATH
/// search tries three that do not have it first.
const SEARCH_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The descriptors every run gets: /bin/true open for reading (`fexecve`)
/// and a TCP socket listening on 127.0.0.1 (`listen`; non-blocking, so that
/// `accept` returns at once), so that the call is the only monitored call
/// the sample makes.
struct Fds {
    true_file: std::fs::File,
    listener: std::net::TcpListener,
}

fn run_one(exe: &Path, api: ApiId, dir: &Path, port: u16, fds: &Fds) -> Run {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).unwrap();
    let sink = dir.join("events.jsonl");
    let file = std::fs::File::create(&sink).unwrap();
    // What the file changes change: a file (also open as descriptor 6) and an empty folder.
    let _ = std::fs::remove_dir_all(dir.join("sub"));
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("old"), b"x").unwrap();
    let old = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("old")).unwrap();
    // Descriptors 3, 4, 5 and 6 in the child: the events, /bin/true, the socket, the file.
    let from = [file.as_raw_fd(), fds.true_file.as_raw_fd(), fds.listener.as_raw_fd(), old.as_raw_fd()];
    let mut cmd = Command::new(exe);
    cmd.args([api.name(), dir.to_str().unwrap(), &port.to_string()]).current_dir(dir).env("PATH", SEARCH_PATH);
    // SAFETY: fcntl, dup2 and close are async-signal-safe; the descriptors
    // stay open in this process until the child has been waited for.
    unsafe {
        cmd.pre_exec(move || {
            extern "C" {
                fn fcntl(fd: i32, cmd: i32, ...) -> i32;
                fn dup2(old: i32, new: i32) -> i32;
                fn close(fd: i32) -> i32;
            }
            const F_DUPFD: i32 = 0;
            // Out of the way first (a source may be 3 to 6 itself), then in place.
            let mut high = [0; 4];
            for (h, &fd) in high.iter_mut().zip(&from) {
                *h = fcntl(fd, F_DUPFD, 100);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (to, &h) in (3..).zip(&high) {
                if dup2(h, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                close(h);
            }
            Ok(())
        });
    }
    let out = run_command(&mut cmd);
    drop(file);
    drop(old);
    Run { stdout: stdout(&out), status: out.status.code(), events: events(&sink) }
}

/// What one cell of the matrix found.
struct Cell {
    count: usize,
    problems: Vec<String>,
}

fn judge(api: ApiId, flavour: &str, mode: Mode, run: &Run) -> Cell {
    let mut problems = Vec::new();
    let evs = counted(api, mode, &run.events);
    let what = format!("{flavour} {} {mode:?}", api.name());
    if unavailable(api, flavour) {
        if !run.stdout.contains("unavailable") {
            problems.push(format!("{what}: expected 'unavailable': {:?}", run.stdout));
        }
        return Cell { count: evs.len(), problems };
    }
    let seen = unseen(api, flavour).is_none();
    // (A refused first part stops the rest.)
    let made = made_of(api, flavour).filter(|_| matches!(mode, Mode::Monitor | Mode::Alert));
    let want = made.map_or(usize::from(seen), |(n, _)| n);
    let list = |evs: &[&Value]| evs.iter().map(|e| describe(e)).collect::<Vec<_>>().join("; ");
    // A function let through whose inner calls the policy denies.
    let outer_allowed = mode == Mode::Only && evs.first().is_some_and(|e| e["api"].as_str().is_some_and(function_only));
    if outer_allowed {
        let (alerts, denies): (Vec<&Value>, Vec<&Value>) = evs.iter().partition(|e| e["action"] == "alert");
        if alerts.len() != 1 || denies.iter().any(|e| e["action"] != "deny") {
            problems.push(format!("{what}: want one alert, then denies only: {}", list(&evs)));
        }
        let checked = api.class() != Class::Library && can_succeed(api, flavour);
        if checked && run.happened(api) != denies.is_empty() {
            problems.push(format!(
                "{what}: happened {} with {} inner denies: {}: {:?}",
                run.happened(api),
                denies.len(),
                list(&evs),
                run.stdout
            ));
        }
        // An exec that happened replaced the program; anything else goes on.
        let replaced = run.happened(api) && run.stdout.is_empty();
        if !replaced && !run.went_on() {
            problems.push(format!("{what}: the program stopped: {:?} status {:?}", run.stdout, run.status));
        }
        return Cell { count: evs.len(), problems };
    }
    if evs.len() != want {
        problems.push(format!("{what}: {} events, want {want}: {}", evs.len(), list(&evs)));
    }
    let other = others(api, flavour, &run.events);
    if matches!(mode, Mode::Monitor | Mode::Alert) && !other.is_empty() {
        problems.push(format!("{what}: events of another class: {}", list(&other)));
    }
    // Under `Only`, what is left here is a system call (or an alias reported
    // as one, or a stripped file's `syscall` instruction): it is refused.
    let allowed = match mode {
        Mode::Monitor => true,
        // Tampering is refused unless a rule names it, whatever the default.
        Mode::Alert => api.class() != Class::Tamper,
        Mode::Deny | Mode::Only => !seen,
    };
    let action = if allowed { "alert" } else { "deny" };
    for e in &evs {
        if e["action"] != action {
            problems.push(format!("{what}: action {} in {}", e["action"], describe(e)));
        }
    }
    // A library call under a policy that denies file or memory calls: the
    // loader's own are refused on their own (see `counted`).
    let checked = !(matches!(mode, Mode::Deny | Mode::Only) && api.class() == Class::Library);
    if !allowed {
        if run.happened(api) || !run.went_on() {
            problems
                .push(format!("{what}: not refused, or the program stopped: {:?} status {:?}", run.stdout, run.status));
        }
    } else if checked && can_succeed(api, flavour) && !run.happened(api) {
        problems.push(format!("{what}: the allowed call did not happen: {:?} status {:?}", run.stdout, run.status));
    }
    Cell { count: evs.len(), problems }
}

/// One event, briefly: where it was caught and by whom.
fn describe(e: &Value) -> String {
    let pid = e["pid"].as_u64().unwrap_or(0);
    let path = e["args"]["path"].as_str().or(e["args"]["command"].as_str()).unwrap_or("");
    format!(
        "{}@{} pid {pid} {path} caller {}",
        e["api"].as_str().unwrap_or("?"),
        e["layer"].as_str().unwrap_or("?"),
        e["caller"]["offset"]
    )
}

/// The matrix: a row per function, a column per flavour, each cell the
/// counts under the four policies, in [`Mode::ALL`]'s order ("-": the libc
/// lacks the function; "!": something was wrong, see the problems).
fn matrix(cells: &BTreeMap<(usize, usize, Mode), Cell>, flavours: &[&str]) -> String {
    let mut s = format!("{:<14}", "function");
    for f in flavours {
        s += &format!(" {:>13}", f.replace("-stripped", "-s").replace("static", "st"));
    }
    s += "\n";
    for (a, api) in ApiId::ALL.iter().enumerate() {
        s += &format!("{:<14}", api.name());
        for (f, flavour) in flavours.iter().enumerate() {
            let cell = if unavailable(*api, flavour) {
                "-".to_string()
            } else {
                let n: Vec<String> = Mode::ALL
                    .iter()
                    .map(|m| cells.get(&(a, f, *m)).map_or("?".to_string(), |c| c.count.to_string()))
                    .collect();
                let bad = Mode::ALL.iter().any(|m| cells.get(&(a, f, *m)).is_some_and(|c| !c.problems.is_empty()));
                format!("{}{}", n.join("/"), if bad { "!" } else { "" })
            };
            s += &format!(" {cell:>13}");
        }
        s += "\n";
    }
    s
}

#[test]
fn every_monitored_call_is_one_event_in_every_flavour() {
    let root = scratch("one-event");
    let flavours: Vec<&str> = all_flavours().collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;

    // 1. The sample in every flavour, patched under every policy.
    let next = AtomicUsize::new(0);
    let patched: Mutex<BTreeMap<(usize, &str), PathBuf>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let f = next.fetch_add(1, Ordering::Relaxed);
                let Some(flavour) = flavours.get(f) else { break };
                let dir = root.join(flavour);
                std::fs::create_dir_all(&dir).unwrap();
                let exe = dir.join("one_call");
                build_flavour("one_call", flavour, &exe);
                let mut files = Vec::new();
                for mode in Mode::ALL {
                    for class in [Class::Exec, Class::Process] {
                        let name = mode.file(class);
                        if !files.iter().any(|(n, _)| *n == name) {
                            let out = dir.join(name);
                            patch(&exe, &out, &mode.policy(class));
                            files.push((name, out));
                        }
                    }
                }
                let mut p = patched.lock().unwrap();
                for (name, out) in files {
                    p.insert((f, name), out);
                }
            });
        }
    });
    let patched = patched.into_inner().unwrap();

    // 2. Every function × flavour × policy, one run each.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed); // connect is refused
    let fds = Fds {
        true_file: std::fs::File::open("/bin/true").unwrap(),
        listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    };
    fds.listener.set_nonblocking(true).unwrap();
    let mut tasks = Vec::new();
    for f in 0..flavours.len() {
        for a in 0..ApiId::ALL.len() {
            for mode in Mode::ALL {
                tasks.push((a, f, mode));
            }
        }
    }
    let next = AtomicUsize::new(0);
    let cells: Mutex<BTreeMap<(usize, usize, Mode), Cell>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let t = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(a, f, mode)) = tasks.get(t) else { break };
                let api = ApiId::ALL[a];
                let flavour = flavours[f];
                let exe = &patched[&(f, mode.file(api.class()))];
                let dir = root.join(flavour).join(format!("{}-{}", api.name(), mode.file(api.class())));
                let run = run_one(exe, api, &dir, port, &fds);
                let cell = judge(api, flavour, mode, &run);
                cells.lock().unwrap().insert((a, f, mode), cell);
            });
        }
    });
    let cells = cells.into_inner().unwrap();
    let table = matrix(&cells, &flavours);
    eprintln!("events counted, monitor/enforce-alert/enforce-deny/enforce-only (!: wrong):\n{table}");
    std::fs::write(root.join("matrix.txt"), &table).unwrap();
    let problems: Vec<&String> = cells.values().flat_map(|c| &c.problems).collect();
    assert!(
        problems.is_empty(),
        "{table}\n{} problems:\n{}",
        problems.len(),
        problems.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("\n")
    );
}

/// Calls that arrive where an earlier reported call was are still reported
/// (`samples/later_calls.c`), in every flavour: two functions reached through
/// one tail-calling wrapper from one call site (same stack slot, same return
/// address, another hook: not a tail call of the first, which neither is
/// entered straight from that site nor jumps to the second); and a `fork`
/// child running the `argv` of a reported `posix_spawn` that has returned,
/// its return address left on the stack (a child in a copy of the memory, not
/// in the spawn's own). And a call through a thin wrapper that ends in a tail
/// call, whose function jumps on to another (`creat` to `open` in musl,
/// `execv` to `execve`), is still one event.
#[test]
fn later_calls_where_a_reported_call_was_are_reported() {
    let root = scratch("later-calls");
    let flavours: Vec<&str> = all_flavours().collect();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(flavour) = flavours.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let dir = root.join(flavour);
                    std::fs::create_dir_all(&dir).unwrap();
                    let exe = dir.join("later_calls");
                    build_flavour("later_calls", flavour, &exe);
                    let ev = dir.join("events.jsonl");
                    let patched = dir.join("monitored");
                    patch(&exe, &patched, &policy("monitor", "alert", &ev, &[]));
                    let file = dir.join("made");
                    let file = file.to_str().unwrap();
                    // (arguments, what it prints, the class counted, how many events of it)
                    type Case<'a> = (&'a [&'a str], &'a str, &'a str, usize);
                    let cases: [Case; 4] = [
                        (&["wrapper", file], "wrapper=0,0", "file", 2),
                        (&["fork-spawn"], "fork-spawn=0,0", "exec", 2),
                        (&["wrapped", file], "wrapped=0", "file", 1),
                        (&["wrapped-exec"], "", "exec", 1),
                    ];
                    for (args, printed, class, want) in cases {
                        let _ = std::fs::remove_file(&ev);
                        let out = run(&patched, args, &dir);
                        let text = stdout(&out);
                        // A successful exec prints nothing more.
                        let ran = if printed.is_empty() {
                            text.is_empty() && out.status.success()
                        } else {
                            text.contains(printed) && text.contains("done")
                        };
                        let evs = events(&ev);
                        let of_class: Vec<String> = evs.iter().filter(|e| e["class"] == class).map(describe).collect();
                        if !ran || of_class.len() != want {
                            let what = args[0];
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{flavour} {what}: {text:?}, {class} events: {of_class:?}"));
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
