//! Issue 13's rule matchers in dynamic glibc, dynamic musl and static musl
//! (`samples/matchers.c`, its library `samples/matchers_lib.c`): each
//! matcher lets through what it names and the next rule refuses the rest;
//! the path tricks (`chdir` then a relative open, `..` in an absolute path,
//! `openat` from a folder's descriptor, a symbolic link out of an allowed
//! folder) are decided as the file they reach; a library's `system` is
//! refused by a `caller` rule while the executable's own runs; `ip` and
//! `port` with IPv4, IPv6, IPv4-mapped IPv6, `0.0.0.0` (which reaches this
//! host) and a range; a relative link, `..` after a link to a folder, a
//! `rename` out of an allowed folder into a refused one; `execvp` and
//! `posix_spawnp` by name, decided by the program their search finds. Then the same policy in monitor mode:
//! it reports exactly the calls enforce mode refused, as enforce mode
//! decided them, and refuses nothing.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const FLAVOURS: [&str; 3] = ["pie", "musl", "musl-static"];

/// Builds the sample for `flavour` into `dir`: with its library when dynamic.
fn build(dir: &Path, flavour: &str) -> PathBuf {
    let out = dir.join("matchers");
    if is_static(flavour) {
        build_flavour("matchers", flavour, &out);
        return out;
    }
    let cc = if flavour == "musl" { "musl-gcc" } else { "cc" };
    let lib = dir.join("libmatchers.so");
    compile(cc, &["-shared", "-fPIC", "-O2", "-fno-optimize-sibling-calls"], &lib, "matchers_lib.c", &[]);
    let after = vec![format!("-L{}", dir.display()), "-lmatchers".into(), "-Wl,-rpath,$ORIGIN".into()];
    compile(cc, &["-O2", "-DWITH_LIB"], &out, "matchers.c", &after);
    out
}

/// The policy under test, for the folder `d`.
fn rules(mode: &str, d: &str, sink: &Path) -> String {
    let canon = |p: &str| std::fs::canonicalize(p).unwrap().display().to_string();
    let (truth, shell) = (canon("/bin/true"), canon("/bin/sh"));
    format!(
        r#"mode = "{mode}"
default = "allow"
[report]
sink = "file:{sink}"

[[rule]]
id = "data"
apis = ["file"]
path = ["{d}/data", "{d}/data/**"]
access = ["read"]
action = "allow"

[[rule]]
id = "no-secrets"
apis = ["file"]
path = ["/etc/shadow", "{d}/secret/**"]
action = "deny"

[[rule]]
id = "no-writes"
apis = ["file"]
access = ["write", "create"]
action = "deny"

[[rule]]
id = "db"
apis = ["connect", "sendto"]
ip = ["127.0.0.1", "::1", "10.0.0.0/8"]
port = [1, "3-5"]
action = "allow"

[[rule]]
id = "no-net"
apis = ["connect", "sendto"]
action = "deny"

[[rule]]
id = "no-exec-from-libraries"
apis = ["exec"]
caller = ["libmatchers.so*"]
action = "deny"

[[rule]]
id = "tools"
apis = ["exec"]
path = ["{truth}", "{shell}"]
command = ["* ok", "true"]
caller = ["main"]
action = "allow"

[[rule]]
id = "no-exec"
apis = ["exec"]
action = "deny"
"#,
        sink = sink.display()
    )
}

/// One step: the program's argument, what it prints in enforce mode, and
/// the rule that refuses it with the path it is decided as (none: let through).
struct Step {
    arg: String,
    enforce: &'static str,
    refused: Option<(&'static str, Option<String>)>,
}

fn steps(d: &str, dynamic: bool) -> Vec<Step> {
    let step = |arg: String, enforce, refused: Option<(&'static str, Option<String>)>| Step { arg, enforce, refused };
    let secret = Some(format!("{d}/secret/s"));
    let ls = format!("{}", std::fs::canonicalize("/bin/ls").unwrap().display());
    let mut all = vec![
        step(format!("open:{d}/data/a"), "ok", None),
        step(format!("fopen:{d}/data/a:r"), "ok", None),
        step(format!("write:{d}/data/new"), "errno:1", Some(("no-writes", Some(format!("{d}/data/new"))))),
        step(format!("fopen:{d}/data/a:r+"), "errno:1", Some(("no-writes", Some(format!("{d}/data/a"))))),
        step(format!("open:{d}/secret/s"), "errno:1", Some(("no-secrets", secret.clone()))),
        step(format!("open:{d}/data/../secret/s"), "errno:1", Some(("no-secrets", secret.clone()))),
        step(format!("open:{d}/data/link"), "errno:1", Some(("no-secrets", secret.clone()))),
        step(format!("open:{d}/data/rel-link"), "errno:1", Some(("no-secrets", secret.clone()))),
        step(format!("open:{d}/data/to-secret/../secret/s"), "errno:1", Some(("no-secrets", secret.clone()))),
        step(
            format!("rename:{d}/data/a:{d}/secret/moved"),
            "errno:1",
            Some(("no-secrets", Some(format!("{d}/data/a")))),
        ),
        step(format!("openat:{d}/data:../secret/s"), "errno:1", Some(("no-secrets", secret.clone()))),
        step(format!("cd:{d}/data"), "ok", None),
        step("open:../secret/s".into(), "errno:1", Some(("no-secrets", secret.clone()))),
        step("open:a".into(), "ok", None),
        step("open:/etc/hostname".into(), "ok", None),
        step("exec:/bin/true".into(), "ok", None),
        step(format!("exec:{d}/tool"), "errno:1", Some(("no-exec", Some(format!("{d}/tool"))))),
        step("execvp:true".into(), "ok", None),
        step("spawnp:true".into(), "ok", None),
        step("spawnp:ls".into(), "errno:1", Some(("no-exec", Some(ls.clone())))),
        step("exec:/nonexistent/x".into(), "errno:2", None),
        step("system:true".into(), "ok", None),
        step("system:true --version".into(), "errno:1", None),
        step("connect:127.0.0.1:1".into(), "refused", None),
        step("connect:127.0.0.1:2".into(), "errno:1", Some(("no-net", Some("127.0.0.1:2".into())))),
        step("connect:::1:4".into(), "refused", None),
        step("connect:127.0.0.2:1".into(), "errno:1", Some(("no-net", Some("127.0.0.2:1".into())))),
        step("connect:::ffff:127.0.0.2:1".into(), "errno:1", Some(("no-net", Some("127.0.0.2:1".into())))),
        step("connect:::ffff:127.0.0.1:1".into(), "refused", None),
        step("connect:0.0.0.0:2".into(), "errno:1", Some(("no-net", Some("127.0.0.1:2".into())))),
        step("udp:127.0.0.1:5".into(), "ok", None),
        step("udp:127.0.0.2:5".into(), "errno:1", Some(("no-net", Some("127.0.0.2:5".into())))),
    ];
    // (`system` refused: its event names the shell; checked by rule only.)
    let shell = all.iter().position(|s| s.arg == "system:true --version").unwrap();
    all[shell].refused = Some(("no-exec", None));
    if dynamic {
        all.push(step("lib:true".into(), "errno:1", Some(("no-exec-from-libraries", None))));
    }
    all
}

/// Runs the patched program over the steps; its output lines and events.
fn run_steps(exe: &Path, dir: &Path, steps: &[Step], sink: &Path) -> (Vec<String>, Vec<Value>) {
    let _ = std::fs::remove_file(sink);
    let _ = std::fs::remove_file(dir.join("data/new"));
    std::fs::write(dir.join("data/a"), "a").unwrap();
    let _ = std::fs::remove_file(dir.join("secret/moved"));
    let args: Vec<&str> = steps.iter().map(|s| s.arg.as_str()).collect();
    let o = run(exe, &args, dir);
    let text = stdout(&o);
    assert!(text.ends_with("done\n") && o.status.success(), "{}: {text:?} {o:?}", exe.display());
    (text.lines().map(String::from).collect(), events(sink))
}

/// (api, rule, policy action, resolved path) of the events that want a refusal.
fn refusals(evs: &[Value]) -> Vec<(String, String, Option<String>)> {
    evs.iter()
        .filter(|e| {
            let wanted = e.get("policy_action").unwrap_or(&e["action"]);
            wanted == "deny"
        })
        .map(|e| {
            (e["api"].as_str().unwrap_or("").to_string(), e["rule"].as_str().unwrap_or("").to_string(), path_of(e))
        })
        .collect()
}

/// What a refusal is checked by: the resolved path, or `ip:port`.
fn path_of(e: &Value) -> Option<String> {
    let m = &e["match"];
    m["path"].as_str().map(String::from).or_else(|| Some(format!("{}:{}", m["ip"].as_str()?, m["port"].as_u64()?)))
}

#[test]
fn matchers_decide_by_argument_and_caller() {
    for flavour in FLAVOURS {
        let dir = std::fs::canonicalize(scratch(&format!("matchers-{flavour}"))).unwrap();
        let d = dir.display().to_string();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("secret")).unwrap();
        std::fs::write(dir.join("data/a"), "a").unwrap();
        std::fs::write(dir.join("secret/s"), "s").unwrap();
        for (link, to) in [
            ("data/link", dir.join("secret/s")),
            ("data/rel-link", "../secret/s".into()),
            ("data/to-secret", dir.join("secret")),
        ] {
            let _ = std::fs::remove_file(dir.join(link));
            std::os::unix::fs::symlink(to, dir.join(link)).unwrap();
        }
        std::fs::copy("/bin/true", dir.join("tool")).unwrap();
        let exe = build(&dir, flavour);
        let steps = steps(&d, !is_static(flavour));

        // Enforce: what each step printed, and one event per refusal.
        let sink = dir.join("enforce.jsonl");
        let patched = dir.join("matchers-enforce");
        patch(&exe, &patched, &rules("enforce", &d, &sink));
        let (lines, evs) = run_steps(&patched, &dir, &steps, &sink);
        assert_eq!(lines.len(), steps.len() + 1, "{flavour}: a line per step and done: {lines:?}");
        for (step, line) in steps.iter().zip(&lines) {
            let got = line.split_once('=').map_or("", |(_, v)| v);
            assert_eq!(got, step.enforce, "{flavour}: {} printed {line:?}; events {evs:#?}", step.arg);
        }
        let want: Vec<(&str, Option<String>)> = steps.iter().filter_map(|s| s.refused.clone()).collect();
        let got = refusals(&evs);
        assert_eq!(got.len(), want.len(), "{flavour}: one event per refused step: {got:#?}\n{evs:#?}");
        for ((api, rule, path), (want_rule, want_path)) in got.iter().zip(&want) {
            assert_eq!(rule, want_rule, "{flavour}: {api} {path:?}");
            if want_path.is_some() {
                assert_eq!(path, want_path, "{flavour}: {api} by {rule}: the path as resolved");
            }
        }
        assert!(!dir.join("data/new").exists(), "{flavour}: a refused create made the file");

        // Monitor: nothing refused, and exactly enforce mode's refusals reported.
        let sink = dir.join("monitor.jsonl");
        let patched = dir.join("matchers-monitor");
        patch(&exe, &patched, &rules("monitor", &d, &sink));
        let (lines, mevs) = run_steps(&patched, &dir, &steps, &sink);
        for (step, line) in steps.iter().zip(&lines) {
            let got = line.split_once('=').map_or("", |(_, v)| v);
            assert!(!got.starts_with("errno:1"), "{flavour}: monitor mode refused {}: {line}", step.arg);
        }
        assert!(mevs.iter().all(|e| e["action"] == "alert"), "{flavour}: {mevs:#?}");
        assert_eq!(refusals(&mevs), got, "{flavour}: monitor mode must report what enforce mode refuses");
    }
}

/// A rule scoped to one function: `system` allowed by its command under a
/// policy that refuses every other exec, and new processes refused: the
/// `posix_spawn` libc makes for `system`, its `clone` and its child's
/// `execve` of the shell are part of the allowed call; `posix_spawnp` by
/// name brings its `clone` along too.
#[test]
fn a_rule_on_one_function_brings_what_libc_does_for_it() {
    for flavour in FLAVOURS {
        let dir = std::fs::canonicalize(scratch(&format!("matchers-scoped-{flavour}"))).unwrap();
        let exe = build(&dir, flavour);
        let sink = dir.join("events.jsonl");
        let truth = format!("{}", std::fs::canonicalize("/bin/true").unwrap().display());
        let policy = format!(
            r#"mode = "enforce"
[report]
sink = "file:{sink}"
[[rule]]
id = "true-only"
apis = ["system"]
command = ["true"]
action = "allow"
[[rule]]
id = "spawn-true"
apis = ["posix_spawnp"]
path = ["{truth}"]
action = "allow"
[[rule]]
id = "no-exec"
apis = ["exec"]
action = "deny"
[[rule]]
id = "no-process"
apis = ["process"]
action = "deny"
"#,
            sink = sink.display()
        );
        let patched = dir.join("scoped");
        patch(&exe, &patched, &policy);
        let _ = std::fs::remove_file(&sink);
        let o = run(&patched, &["system:true", "system:ls", "spawnp:true", "spawnp:ls"], &dir);
        let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
        let evs = events(&sink);
        assert_eq!(
            lines,
            ["system=ok", "system=errno:1", "spawnp=ok", "spawnp=errno:1", "done"],
            "{flavour}: {evs:#?}"
        );
        let refused: Vec<(&str, &str)> =
            evs.iter().map(|e| (e["api"].as_str().unwrap_or(""), e["rule"].as_str().unwrap_or(""))).collect();
        assert_eq!(refused, [("system", "no-exec"), ("execve", "no-exec")], "{flavour}: {evs:#?}");
    }
}
