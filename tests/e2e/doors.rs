//! Every door of issue 12 that an attacker tried with `connect` and every
//! class denied, and that gave no event at all: a UDP `sendto`, a TCP
//! connection opened by `sendto(MSG_FASTOPEN)`, a packet socket on `lo`,
//! `setuid`, `chmod +s`, a `rename` into a protected folder, and an io_uring
//! `OPENAT` and `CONNECT` (`samples/doors.c`, `samples/uring.c`). In the four
//! libc flavours (glibc and musl, dynamic and static), each is reported in
//! monitor mode with its decoded target, and refused in enforce mode with
//! the program going on; what the call would have done is checked not to
//! have happened (no datagram arrives, no connection, the uid, the file's
//! mode and place unchanged, the ring's request failed with EACCES).
//! `tests/e2e/one_event.rs` calls every API of every class once in all 13
//! flavours; this file checks what the calls really did.

use crate::common::*;
use serde_json::Value;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FLAVOURS: [&str; 4] = ["pie", "musl", "glibc-static", "musl-static"];

/// The program's output lines as `key=value` pairs, e.g. `result` → `-1`.
fn field(out: &str, key: &str) -> Option<i64> {
    out.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}=")).and_then(|v| v.parse().ok()))
}

struct Setup {
    dir: PathBuf,
    doors: PathBuf,
    uring: PathBuf,
}

impl Setup {
    fn new(test: &str, flavour: &str) -> Setup {
        let dir = scratch(&format!("doors-{test}-{flavour}"));
        let doors = dir.join("doors");
        let uring = dir.join("uring");
        build_flavour("doors", flavour, &doors);
        build_flavour("uring", flavour, &uring);
        Setup { dir, doors, uring }
    }

    /// Runs `prog` patched under a policy (`mode`, and rules `deny`-ing
    /// `refused`, `io_uring` alerted); returns its output and events.
    fn run(&self, prog: &Path, name: &str, mode: &str, refused: &str, args: &[&str]) -> (String, Vec<Value>) {
        let sink = self.dir.join(format!("{name}-{mode}.jsonl"));
        let _ = std::fs::remove_file(&sink);
        let rules = [("rings", "\"io_uring\"", "alert"), ("refused", refused, "deny")];
        let out = self.dir.join(format!("{name}-{mode}"));
        patch(prog, &out, &policy(mode, "allow", &sink, &rules));
        let o = run(&out, args, &self.dir);
        let text = stdout(&o);
        assert!(text.contains("done") && o.status.success(), "{name} {mode}: the program stopped: {text:?} {o:?}");
        (text, events(&sink))
    }
}

/// The events of API `api`.
fn of<'a>(evs: &'a [Value], api: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["api"] == api).collect()
}

/// Checks that the door was reported once, as `action`, and returns that event.
fn reported<'a>(evs: &'a [Value], api: &str, action: &str, what: &str) -> &'a Value {
    let found = of(evs, api);
    assert_eq!(found.len(), 1, "{what}: want one {api} event: {evs:#?}");
    assert_eq!(found[0]["action"], action, "{what}: {:#}", found[0]);
    found[0]
}

/// A connection `l` gets within `wait` (it is non-blocking).
fn accepted(l: &TcpListener, wait: Duration) -> bool {
    let end = Instant::now() + wait;
    while Instant::now() < end {
        if l.accept().is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn datagrams_and_fast_open_are_reported_with_their_destination_and_refused() {
    for flavour in FLAVOURS {
        let s = Setup::new("net", flavour);
        for (mode, action) in [("monitor", "alert"), ("enforce", "deny")] {
            let what = format!("{flavour} udp {mode}");
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port().to_string();
            let (out, evs) = s.run(&s.doors, "udp", mode, "\"network\"", &["udp", &port]);
            let e = reported(&evs, "sendto", action, &what);
            assert_eq!(e["args"]["family"], "inet", "{what}: {e:#}");
            assert_eq!(e["args"]["ip"], "127.0.0.1", "{what}: {e:#}");
            assert_eq!(e["args"]["port"].to_string(), port, "{what}: {e:#}");
            // Sent (and received) only when allowed.
            udp.set_read_timeout(Some(Duration::from_millis(if mode == "monitor" { 5000 } else { 300 }))).unwrap();
            let got = udp.recv(&mut [0u8; 16]).is_ok();
            assert_eq!(got, mode == "monitor", "{what}: datagram received {got}: {out:?}");
            assert_eq!(field(&out, "result"), Some(if mode == "monitor" { 1 } else { -1 }), "{what}: {out:?}");

            let what = format!("{flavour} fastopen {mode}");
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            let port = l.local_addr().unwrap().port().to_string();
            let (out, evs) = s.run(&s.doors, "fastopen", mode, "\"network\"", &["fastopen", &port]);
            let e = reported(&evs, "sendto", action, &what);
            assert!(e["args"]["flags"].as_str().unwrap_or("").contains("MSG_FASTOPEN"), "{what}: {e:#}");
            assert_eq!(e["args"]["port"].to_string(), port, "{what}: {e:#}");
            assert!(of(&evs, "connect").is_empty(), "{what}: no connect() was made: {evs:#?}");
            let wait = Duration::from_millis(if mode == "monitor" { 5000 } else { 300 });
            assert_eq!(accepted(&l, wait), mode == "monitor", "{what}: {out:?}");
            if mode == "enforce" {
                assert_eq!((field(&out, "result"), field(&out, "errno")), (Some(-1), Some(1)), "{what}: {out:?}");
            }
        }
    }
}

#[test]
fn a_packet_socket_on_lo_is_reported_and_refused() {
    for flavour in FLAVOURS {
        let s = Setup::new("packet", flavour);
        let what = format!("{flavour} packet monitor");
        let (out, evs) = s.run(&s.doors, "packet", "monitor", "\"socket\", \"sendto\"", &["packet"]);
        let e = reported(&evs, "socket", "alert", &what);
        assert_eq!(e["args"]["family"], "packet", "{what}: {e:#}");
        assert_eq!(e["args"]["type"], "SOCK_RAW", "{what}: {e:#}");
        // The frame sent to the loopback interface names its index.
        let sent = reported(&evs, "sendto", "alert", &what);
        assert_eq!(sent["args"]["family"], "packet", "{what}: {sent:#}");
        assert!(sent["args"]["ifindex"].as_i64().is_some_and(|i| i > 0), "{what}: {sent:#}");
        assert!(out.lines().all(|l| !l.starts_with("result=-1")), "{what}: {out:?}");

        let what = format!("{flavour} packet enforce");
        let (out, evs) = s.run(&s.doors, "packet", "enforce", "\"socket\", \"sendto\"", &["packet"]);
        reported(&evs, "socket", "deny", &what);
        assert_eq!((field(&out, "result"), field(&out, "errno")), (Some(-1), Some(1)), "{what}: {out:?}");
        assert!(of(&evs, "sendto").is_empty(), "{what}: {evs:#?}");
    }
}

#[test]
fn privilege_and_file_changes_are_reported_and_refused() {
    for flavour in FLAVOURS {
        let s = Setup::new("changes", flavour);
        for (mode, action) in [("monitor", "alert"), ("enforce", "deny")] {
            let allowed = mode == "monitor";
            let what = format!("{flavour} setuid {mode}");
            let (out, evs) = s.run(&s.doors, "setuid", mode, "\"privilege\"", &["setuid", "65534"]);
            let e = reported(&evs, "setuid", action, &what);
            assert_eq!(e["args"]["id"], 65534, "{what}: {e:#}");
            assert_eq!(field(&out, "uid"), Some(if allowed { 65534 } else { 0 }), "{what}: {out:?}");

            let what = format!("{flavour} chmod {mode}");
            let file = s.dir.join(format!("tool-{mode}"));
            std::fs::write(&file, b"#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (out, evs) = s.run(&s.doors, "chmod", mode, "\"file\"", &["chmod", file.to_str().unwrap()]);
            let e = reported(&evs, "chmod", action, &what);
            assert_eq!(e["args"]["mode"], "4755", "{what}: {e:#}");
            assert_eq!(e["args"]["path"], file.to_str().unwrap(), "{what}: {e:#}");
            let now = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
            assert_eq!(now, if allowed { 0o4755 } else { 0o644 }, "{what}: {out:?}");

            let what = format!("{flavour} rename {mode}");
            let from = s.dir.join(format!("job-{mode}"));
            let protected = s.dir.join(format!("etc-{mode}/cron.d"));
            std::fs::create_dir_all(&protected).unwrap();
            let to = protected.join("job");
            let _ = std::fs::remove_file(&to);
            std::fs::write(&from, b"* * * * * root /tmp/x\n").unwrap();
            let args = ["rename", from.to_str().unwrap(), to.to_str().unwrap()];
            let (out, evs) = s.run(&s.doors, "rename", mode, "\"file\"", &args);
            let e = reported(&evs, "rename", action, &what);
            assert_eq!(e["args"]["new_path"], to.to_str().unwrap(), "{what}: {e:#}");
            assert_eq!((to.exists(), from.exists()), (allowed, !allowed), "{what}: {out:?}");
        }
    }
}

#[test]
fn io_uring_cannot_open_or_connect_what_the_policy_refuses() {
    for flavour in FLAVOURS {
        let s = Setup::new("uring", flavour);
        let target = s.dir.join("target");
        std::fs::write(&target, b"x").unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        let cases = [
            ("open", target.to_str().unwrap(), "\"file\"", "OPENAT"),
            ("own-open", target.to_str().unwrap(), "\"file\"", "OPENAT"),
            ("connect", port.as_str(), "\"network\"", "CONNECT"),
        ];
        for (door, arg, refused, opcode) in cases {
            for mode in ["monitor", "enforce"] {
                let what = format!("{flavour} uring {door} {mode}");
                let (out, evs) = s.run(&s.uring, &format!("uring-{door}"), mode, refused, &[door, arg]);
                let e = reported(&evs, "io_uring_setup", "alert", &what);
                assert_eq!(e["args"]["entries"], 4, "{what}: {e:#}");
                assert!(field(&out, "setup").is_some_and(|fd| fd >= 0), "{what}: {out:?}");
                let result = field(&out, "result");
                let left_out: Vec<&str> =
                    e["args"]["left_out"].as_array().map_or(vec![], |a| a.iter().filter_map(|v| v.as_str()).collect());
                if mode == "monitor" {
                    // Nothing is blocked: the ring carries the request out.
                    assert!(left_out.is_empty(), "{what}: {e:#}");
                    assert!(result.is_some_and(|r| r >= 0), "{what}: {out:?}");
                } else {
                    assert!(left_out.contains(&opcode), "{what}: {e:#}");
                    assert_eq!(result, Some(-13), "{what}: EACCES from the ring's restrictions: {out:?}");
                }
            }
        }
    }
}

/// A `setuid`-like call changes every thread's ids: libc has each other
/// thread make the same system call in a signal handler. With three other
/// threads, each of the seven calls of `samples/setxid.c` is still one
/// event, in all 13 flavours (the stripped static ones, which see only
/// system calls, too); run five times each, as the threads race.
#[test]
fn a_setuid_broadcast_to_every_thread_is_one_event() {
    const CALLS: [&str; 7] = ["setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups"];
    let root = scratch("doors-setxid");
    let mut problems = Vec::new();
    for flavour in all_flavours() {
        let exe = root.join(format!("setxid-{flavour}"));
        build_flavour("setxid", flavour, &exe);
        let sink = root.join(format!("{flavour}.jsonl"));
        let out = root.join(format!("setxid-{flavour}.patched"));
        patch(&exe, &out, &policy("monitor", "alert", &sink, &[]));
        for run_no in 0..5 {
            let _ = std::fs::remove_file(&sink);
            let o = run(&out, &[], &root);
            let text = stdout(&o);
            if !text.contains("done") || CALLS.iter().any(|c| !text.contains(&format!("{c}=0"))) {
                problems.push(format!("{flavour} run {run_no}: {text:?}"));
            }
            let evs = events(&sink);
            for c in CALLS {
                let n = of(&evs, c).len();
                if n != 1 {
                    let tids: Vec<String> =
                        of(&evs, c).iter().map(|e| format!("{}@{}", e["tid"], e["layer"])).collect();
                    problems.push(format!("{flavour} run {run_no}: {n} {c} events: {}", tids.join(" ")));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
