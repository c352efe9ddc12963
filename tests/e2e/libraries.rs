//! The xz scenario (issue 4): a dependency library that runs a command or
//! connects out, however it finds the function, is reported with the library
//! named as the caller, and refused in enforce mode while the program goes on.
//! `samples/backdoor_lib.c` is the library, `samples/backdoor_main.c` the
//! program, which makes no sensitive call itself.

use crate::common::*;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

struct Built {
    main: PathBuf,
    lib: PathBuf,
    plugin: PathBuf,
}

fn build(dir: &Path, cc: &str) -> Built {
    let lib = dir.join("libbackdoor.so");
    // No sibling calls: `return system(cmd)` as a jump would make the program the caller.
    compile(cc, &["-shared", "-fPIC", "-O2", "-fno-optimize-sibling-calls"], &lib, "backdoor_lib.c", &[]);
    let plugin = dir.join("libplugin.so");
    std::fs::copy(&lib, &plugin).unwrap();
    let main = dir.join("backdoor_main");
    let after = vec![format!("-L{}", dir.display()), "-lbackdoor".into(), "-Wl,-rpath,$ORIGIN".into()];
    compile(cc, &["-O2"], &main, "backdoor_main.c", &after);
    Built { main, lib: std::fs::canonicalize(lib).unwrap(), plugin: std::fs::canonicalize(plugin).unwrap() }
}

/// One technique: sub-command, API, class, layer, the library expected as
/// caller, what the program prints when it worked and when it was refused.
struct Technique {
    name: &'static str,
    args: Vec<String>,
    env: Option<(&'static str, String)>,
    api: &'static str,
    class: &'static str,
    layer: &'static str,
    plugin: bool,
    /// The library is found above libc by scanning the stack, not by
    /// unwinding (musl's libc has no call frame information).
    scanned: bool,
    happened: String,
    refused: String,
    file: Option<PathBuf>,
}

fn techniques(dir: &Path, port: u16, musl: bool) -> Vec<Technique> {
    let file = |n: &str| dir.join(format!("made-by-{n}"));
    let mut v = Vec::new();
    // `disk`: the address computed from libc's file, which only libc's
    // detoured entry catches (the symbol layer rewrote the table in memory).
    for (name, plugin, layer) in [
        ("plt", false, "symbol"),
        ("dlsym", false, "symbol"),
        ("manual", false, "symbol"),
        ("disk", false, "entry"),
        ("plugin", true, "symbol"),
    ] {
        let f = file(name);
        v.push(Technique {
            name,
            args: vec![name.into(), f.display().to_string()],
            env: None,
            api: "system",
            class: "exec",
            layer,
            plugin,
            scanned: false,
            happened: format!("{name}=0 errno=0"),
            refused: format!("{name}=-1 errno=EPERM"),
            file: Some(f),
        });
    }
    // libc's internal path: wordexp runs `$(...)` itself, glibc through
    // posix_spawn (caught in the parent; the library is found on the stack),
    // musl with fork and execl in the child.
    // A second libc in a new link-map namespace (glibc only: musl has no dlmopen).
    if !musl {
        let f = file("dlmopen-ns");
        v.push(Technique {
            name: "dlmopen-ns",
            args: vec!["dlmopen".into(), f.display().to_string()],
            env: None,
            api: "system",
            class: "exec",
            layer: "symbol",
            plugin: false,
            scanned: false,
            happened: "dlmopen=0 errno=0".into(),
            refused: "dlmopen=-1 errno=EPERM".into(),
            file: Some(f),
        });
    }
    let f = file("wordexp");
    v.push(Technique {
        name: "wordexp",
        args: vec!["wordexp".into(), f.display().to_string()],
        env: None,
        api: if musl { "execl" } else { "posix_spawn" },
        class: "exec",
        layer: "entry",
        plugin: false,
        scanned: musl,
        happened: "wordexp=0 errno=0".into(),
        // WRDE_NOSPACE (glibc: the spawn failed), WRDE_SYNTAX (musl: the shell never ran).
        refused: if musl { "wordexp=5".into() } else { "wordexp=1".into() },
        file: Some(f),
    });
    // A raw `syscall` instruction in the library (execve in a forked child):
    // the child exits 3 when the system call was refused.
    let f = file("raw");
    v.push(Technique {
        name: "raw-syscall",
        args: vec!["raw".into(), f.display().to_string()],
        env: None,
        api: "execve",
        class: "exec",
        layer: "syscall",
        plugin: false,
        scanned: false,
        happened: "raw=0 errno=0".into(),
        refused: "raw=3 errno=0".into(),
        file: Some(f),
    });
    // libc's syscall() function (its `syscall` instruction is planned with
    // libc's entries): the library is the caller with glibc (found on the
    // stack); musl's syscall() has no call frame information.
    let f = file("syscall-fn");
    v.push(Technique {
        name: "syscall-fn",
        args: vec!["syscall".into(), f.display().to_string()],
        env: None,
        api: "execve",
        class: "exec",
        layer: "syscall",
        plugin: false,
        scanned: musl,
        happened: "syscall=0 errno=0".into(),
        refused: "syscall=3 errno=0".into(),
        file: Some(f),
    });
    let f = file("ctor");
    v.push(Technique {
        name: "constructor",
        args: vec!["none".into()],
        env: Some(("BACKDOOR_CTOR", format!("touch '{}'", f.display()))),
        api: "system",
        class: "exec",
        layer: "symbol",
        plugin: false,
        scanned: false,
        happened: "ctor-system=0 errno=0".into(),
        refused: "ctor-system=-1 errno=EPERM".into(),
        file: Some(f),
    });
    v.push(Technique {
        name: "connect",
        args: vec!["connect".into(), port.to_string()],
        env: None,
        api: "connect",
        class: "network",
        layer: "symbol",
        plugin: false,
        scanned: false,
        happened: "connect=0 errno=0".into(),
        refused: "connect=-1 errno=EPERM".into(),
        file: None,
    });
    v.push(Technique {
        name: "dlopen",
        args: vec!["dlopen".into()],
        env: None,
        api: "dlopen",
        class: "library",
        layer: "symbol",
        plugin: false,
        scanned: false,
        happened: "dlopen=1 errno=0".into(),
        refused: "dlopen=0".into(),
        file: None,
    });
    v
}

fn run_with(exe: &Path, t: &Technique, dir: &Path) -> String {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&t.args).current_dir(dir);
    if let Some((k, v)) = &t.env {
        cmd.env(k, v);
    }
    stdout(&run_command(&mut cmd))
}

fn check(flavour: &str, cc: &str) {
    let dir = scratch(&format!("libraries-{flavour}"));
    let b = build(&dir, cc);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mon = dir.join("monitor.jsonl");
    let monitored = dir.join("monitored");
    patch(&b.main, &monitored, &policy("monitor", "alert", &mon, &[]));
    let mut failures = Vec::new();
    let mut table = Vec::new();
    let libc = libc_of(&b.main);
    for t in techniques(&dir, port, flavour == "musl") {
        let lib = if t.plugin { &b.plugin } else { &b.lib };
        let lib_name = lib.display().to_string();
        let from_lib = |e: &Value| e["api"] == t.api && e["caller"]["module"] == lib_name.as_str();

        let _ = std::fs::remove_file(&mon);
        let text = run_with(&monitored, &t, &dir);
        let happened = text.contains(&t.happened) && text.contains("done");
        if let Some(f) = &t.file {
            if !f.exists() {
                failures.push(format!("{flavour} {}: monitor: {} not made", t.name, f.display()));
            }
            let _ = std::fs::remove_file(f);
        }
        let evs = events(&mon);
        let reported = evs.iter().find(|e| from_lib(e));
        if !happened {
            failures.push(format!("{flavour} {}: monitor printed {text}", t.name));
        }
        match reported {
            None => failures.push(format!("{flavour} {}: no {} event from {lib_name}: {evs:?}", t.name, t.api)),
            Some(e) => {
                if e["class"] != t.class || e["layer"] != t.layer || e["action"] != "alert" {
                    failures.push(format!("{flavour} {}: bad event {e}", t.name));
                }
                // The library's exported function that made the call (the
                // constructor is static: it has no name in the dynamic symbols;
                // a library loaded later with dlopen is named by module only).
                let symbol = match t.name {
                    "plt" => Some("bd_plt_system"),
                    "dlsym" => Some("bd_dlsym_system"),
                    "manual" => Some("bd_manual_system"),
                    "disk" => Some("bd_disk_system"),
                    "dlmopen-ns" => Some("bd_dlmopen_system"),
                    "wordexp" => Some("bd_wordexp"),
                    "raw-syscall" => Some("bd_raw_execve"),
                    "syscall-fn" => Some("bd_syscall_fn"),
                    "connect" => Some("bd_connect"),
                    "dlopen" => Some("bd_dlopen"),
                    _ => None,
                };
                if let Some(want) = symbol {
                    if e["caller"]["symbol"] != want {
                        failures.push(format!("{flavour} {}: caller.symbol is not {want}: {e}", t.name));
                    }
                }
                // libc's internal call: the library above it is the caller,
                // libc's own call the "via".
                let via = e["caller"]["via"]["module"].as_str().unwrap_or("");
                if matches!(t.name, "wordexp" | "syscall-fn") && via != libc {
                    failures.push(format!("{flavour} {}: caller.via is not {libc}: {e}", t.name));
                }
                if (e["caller"]["scanned"] == true) != t.scanned {
                    failures.push(format!("{flavour} {}: caller.scanned should be {}: {e}", t.name, t.scanned));
                }
                // The stack: from the library up through the program (unwound
                // with the modules' call frame information).
                let frames: Vec<String> = e["stack"]
                    .as_array()
                    .map(|a| a.iter().map(|f| f["module"].as_str().unwrap_or("").to_string()).collect())
                    .unwrap_or_default();
                let main = std::fs::canonicalize(&monitored).unwrap().display().to_string();
                // musl-gcc links without .eh_frame_hdr, and a library loaded
                // later is not walked through: there the stack stops at the library.
                // (A raw syscall's first frame is already its caller's.)
                let lib_first = matches!(t.name, "raw-syscall" | "syscall-fn") || frames.first() == Some(&lib_name);
                let lib_first = lib_first || (t.name == "wordexp" && frames.contains(&lib_name));
                let whole = flavour == "musl" || t.plugin || frames.contains(&main);
                if t.name != "constructor" && !t.scanned && !(lib_first && whole) {
                    failures
                        .push(format!("{flavour} {}: stack {frames:?} does not go from {lib_name} to {main}", t.name));
                }
                let command =
                    if t.api == "system" { e["args"]["command"].to_string() } else { e["args"]["argv"].to_string() };
                if t.class == "exec" && !command.contains("touch ") {
                    failures.push(format!("{flavour} {}: bad args {e}", t.name));
                }
            }
        }
        if evs.iter().filter(|e| e["api"] == t.api).count() != 1 {
            failures.push(format!("{flavour} {}: not exactly one {} event: {evs:?}", t.name, t.api));
        }

        // Enforce: a policy that denies the technique's class.
        let enf = dir.join(format!("enforce-{}.jsonl", t.class));
        let enforced = dir.join(format!("enforced-{}", t.class));
        if !enforced.exists() {
            let deny = format!("\"{}\"", t.class);
            patch(&b.main, &enforced, &policy("enforce", "allow", &enf, &[("no-backdoor", &deny, "deny")]));
        }
        let _ = std::fs::remove_file(&enf);
        let text = run_with(&enforced, &t, &dir);
        let blocked = text.contains(&t.refused) && text.contains("done") && t.file.as_ref().is_none_or(|f| !f.exists());
        if !blocked {
            failures.push(format!("{flavour} {}: enforce printed {text}", t.name));
        }
        let evs = events(&enf);
        if !evs.iter().any(|e| from_lib(e) && e["action"] == "deny") {
            failures.push(format!("{flavour} {}: no deny event from {lib_name}: {evs:?}", t.name));
        }
        if evs.iter().filter(|e| e["api"] == t.api).count() != 1 {
            failures.push(format!("{flavour} {}: enforce: not exactly one {} event: {evs:?}", t.name, t.api));
        }
        table.push(format!(
            "{flavour:<6} {:<12} reported={} blocked={blocked} caller={}",
            t.name,
            reported.is_some(),
            reported.map_or("-".into(), |e| e["caller"]["module"].to_string())
        ));
    }
    drop(listener);
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn backdoored_library_glibc() {
    check("glibc", "cc");
}

#[test]
fn backdoored_library_musl() {
    check("musl", "musl-gcc");
}

/// A library plan applies only to the very file planned for: after the
/// library is rebuilt differently, the patched program leaves its code alone
/// and runs as before; its raw system call is then seen by the backstop only.
#[test]
fn a_changed_library_is_left_alone() {
    let dir = scratch("libraries-changed");
    let b = build(&dir, "cc");
    let mon = dir.join("monitor.jsonl");
    let monitored = dir.join("monitored");
    patch(&b.main, &monitored, &policy("monitor", "alert", &mon, &[]));
    // Rebuilt with other flags: another build ID, other bytes.
    compile("cc", &["-shared", "-fPIC", "-O1", "-fno-optimize-sibling-calls"], &b.lib, "backdoor_lib.c", &[]);
    let t =
        techniques(&dir, 0, false).into_iter().find(|t| t.name == "raw-syscall").expect("the raw-syscall technique");
    let f = t.file.clone().expect("it makes a file");
    let text = run_with(&monitored, &t, &dir);
    assert!(text.contains("raw=0 errno=0") && text.contains("done") && f.exists(), "{text}");
    // Its raw execve was not rewritten; the backstop catches it (the fork
    // before it is libc's, reported as such).
    let evs = events(&mon);
    let execs: Vec<&serde_json::Value> = evs.iter().filter(|e| e["api"] == "execve").collect();
    assert!(execs.len() == 1 && execs[0]["layer"] == "backstop", "{evs:?}");
    // Its calls to monitored functions are still caught through the symbol layer.
    let p = dir.join("made-by-plt");
    let t = Technique { args: vec!["plt".into(), p.display().to_string()], ..t };
    assert!(run_with(&monitored, &t, &dir).contains("plt=0"));
    assert!(events(&mon).iter().any(|e| e["api"] == "system" && e["layer"] == "symbol"));
    // And the plan that no longer applies is said so at start-up, once per run.
    let degraded: Vec<Value> = events(&mon).into_iter().filter(|e| e["api"] == "dfpatch.degraded").collect();
    assert!(!degraded.is_empty(), "{:?}", events(&mon));
    for e in degraded {
        let lib = e["args"]["library"].as_str().unwrap_or("");
        assert!(lib.ends_with(b.lib.file_name().unwrap().to_str().unwrap()), "{e}");
        assert_eq!((e["class"].as_str(), e["args"]["applied"].as_u64()), (Some("runtime"), Some(0)), "{e}");
    }
}

/// A libc other than the planned one (a security update: another build of
/// it): its entries cannot be detoured, and the program says so at start-up,
/// once (`"api":"dfpatch.degraded"`), then runs as before, its calls still
/// caught by the other layers. With the planned libc, no such event.
#[test]
fn another_libc_build_is_said_so() {
    use object::{Object, ObjectSection};
    let dir = scratch("libraries-other-libc");
    let exe = dir.join("behaviours");
    build_flavour("behaviours", "pie", &exe);
    let ev = dir.join("events.jsonl");
    let patched = dir.join("monitored");
    patch(&exe, &patched, &policy("monitor", "alert", &ev, &[]));
    let args = ["fopen", "/etc/hostname"];
    let out = run(&patched, &args, &dir);
    assert!(stdout(&out).contains("fopen=1") && stdout(&out).contains("done"), "{}", stdout(&out));
    assert!(events(&ev).iter().all(|e| e["api"] != "dfpatch.degraded"), "{:?}", events(&ev));

    // The same libc with one byte of its build ID changed.
    let alt = dir.join("alt");
    std::fs::create_dir_all(&alt).unwrap();
    let mut bytes = std::fs::read(libc_of(&exe)).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let (note, size) = file.section_by_name(".note.gnu.build-id").and_then(|s| s.file_range()).expect("a build ID");
    assert!(size > 16);
    // After the note's header (sizes and type, 12 bytes) and its name "GNU\0".
    bytes[note as usize + 16] ^= 0xff;
    std::fs::write(alt.join("libc.so.6"), &bytes).unwrap();
    let _ = std::fs::remove_file(&ev);
    let out =
        run_command(std::process::Command::new(&patched).args(args).current_dir(&dir).env("LD_LIBRARY_PATH", &alt));
    assert!(stdout(&out).contains("fopen=1") && stdout(&out).contains("done"), "{}", stdout(&out));
    let evs = events(&ev);
    let degraded: Vec<&Value> = evs.iter().filter(|e| e["api"] == "dfpatch.degraded").collect();
    assert_eq!(degraded.len(), 1, "{evs:?}");
    let d = degraded[0];
    assert!(d["args"]["library"].as_str().is_some_and(|l| l.ends_with("libc.so.6")), "{d}");
    assert!(d["args"]["planned"].as_u64().is_some_and(|n| n > 0), "{d}");
    assert_eq!(d["args"]["applied"], 0, "{d}");
    assert!(d["args"]["reason"].as_str().is_some_and(|r| r.contains("another build")), "{d}");
    assert_eq!((d["class"].as_str(), d["action"].as_str()), (Some("runtime"), Some("alert")), "{d}");
    // The call itself is still reported (through the executable's PLT).
    assert!(evs.iter().any(|e| e["api"] == "fopen"), "{evs:?}");
}

/// The path the loader gives libc in the program's link map (events name
/// modules so): glibc's `libc.so.6` as found, musl's loader itself.
fn libc_of(main: &Path) -> String {
    let out = std::process::Command::new("ldd").arg(main).output().expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("libc.so") {
            if let Some(path) = line.split("=> ").nth(1).and_then(|r| r.split(" (").next()) {
                return path.trim().to_string();
            }
        }
    }
    // musl: the interpreter is libc (ldd cannot run such a program here).
    use object::{Object, ObjectSection};
    let data = std::fs::read(main).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let interp = file.section_by_name(".interp").and_then(|s| s.data().ok()).expect("an interpreter");
    String::from_utf8_lossy(interp).trim_end_matches('\0').to_string()
}

/// The dynamic executable's own `syscall` instructions are rewritten in its
/// file, as in static executables: reported with the instruction as caller,
/// refused under enforce (the child's execve fails with EPERM).
#[test]
fn the_executables_own_raw_syscalls() {
    use object::{Object, ObjectSegment};
    for (flavour, cc) in [("glibc", "cc"), ("musl", "musl-gcc")] {
        let dir = scratch(&format!("exe-raw-{flavour}"));
        let exe = dir.join("raw_main");
        compile(cc, &["-O2"], &exe, "raw_main.c", &[]);
        let made = dir.join("made");
        let mon = dir.join("monitor.jsonl");
        let monitored = dir.join("monitored");
        patch(&exe, &monitored, &policy("monitor", "alert", &mon, &[]));
        let text = stdout(&run_command(std::process::Command::new(&monitored).arg(&made)));
        assert!(text.contains("raw=0") && made.exists(), "{flavour}: {text}");
        let evs = events(&mon);
        let e = evs.iter().find(|e| e["api"] == "execve").unwrap_or_else(|| panic!("{flavour}: no execve in {evs:?}"));
        assert_eq!(e["layer"], "syscall", "{flavour}: {e}");
        let path = std::fs::canonicalize(&monitored).unwrap();
        assert_eq!(e["caller"]["module"], path.display().to_string().as_str(), "{flavour}: {e}");
        // caller.offset is the `syscall` instruction of the original file.
        let vaddr = u64::from_str_radix(e["caller"]["offset"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        let data = std::fs::read(&exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let bytes = file.segments().find_map(|s| s.data_range(vaddr, 2).ok().flatten()).expect("in a segment");
        assert_eq!(bytes, [0x0f, 0x05], "{flavour}: {e}");

        let _ = std::fs::remove_file(&made);
        let enf = dir.join("enforce.jsonl");
        let enforced = dir.join("enforced");
        patch(&exe, &enforced, &policy("enforce", "allow", &enf, &[("no-exec", "\"exec\"", "deny")]));
        let text = stdout(&run_command(std::process::Command::new(&enforced).arg(&made)));
        assert!(text.contains("raw=3") && text.contains("done") && !made.exists(), "{flavour}: {text}");
        assert!(events(&enf).iter().any(|e| e["api"] == "execve" && e["action"] == "deny"), "{flavour}");
    }
}

/// libc's own call inside a reported call is not reported again (system()
/// reaching posix_spawn), but a reported call that has returned does not
/// hide a later one whose stack covers the place its return address was
/// left: `samples/stale_nest.c` (glibc, whose call frame information lets
/// the runtime check that the earlier call is really on the stack).
#[test]
fn a_returned_call_does_not_hide_a_later_one() {
    let dir = scratch("stale-nest");
    let exe = dir.join("stale_nest");
    compile("cc", &["-O2"], &exe, "stale_nest.c", &[]);
    let mon = dir.join("monitor.jsonl");
    let monitored = dir.join("monitored");
    let rules = [("exec", "\"exec\"", "alert"), ("net", "\"network\"", "alert")];
    patch(&exe, &monitored, &policy("monitor", "allow", &mon, &rules));
    let made = dir.join("made");
    let text = stdout(&run_command(std::process::Command::new(&monitored).arg(&made)));
    assert!(text.contains("system=0 wordexp=0 system=0 connect=-1") && made.exists(), "{text}");
    let evs = events(&mon);
    // The connect through libc's syscall() after the second system().
    assert_eq!(evs.iter().filter(|e| e["api"] == "connect").count(), 1, "{evs:?}");
    let system = evs.iter().find(|e| e["api"] == "system").unwrap_or_else(|| panic!("no system event: {evs:?}"));
    let spawns: Vec<_> = evs.iter().filter(|e| e["api"] == "posix_spawn" && e["pid"] == system["pid"]).collect();
    // One: wordexp's (system's own posix_spawn is part of the system event).
    assert_eq!(spawns.len(), 1, "{evs:?}");
    assert_eq!(spawns[0]["caller"]["via"]["module"], libc_of(&exe).as_str(), "{evs:?}");
}

/// A library's constructor runs inside `dlopen`: what it does is the
/// library's, reported and refused like any of its calls, whether it uses
/// system(), libc's internal spawn (wordexp) or libc's syscall(). (Under
/// `dlmopen` into a new namespace the constructors run before that
/// namespace's libc is redirected: not covered, see the README.)
#[test]
fn constructors_run_by_dlopen() {
    let dir = scratch("ctor-loaded");
    let b = build(&dir, "cc");
    let mon = dir.join("monitor.jsonl");
    let monitored = dir.join("monitored");
    patch(&b.main, &monitored, &policy("monitor", "alert", &mon, &[]));
    let enf = dir.join("enforce.jsonl");
    let enforced = dir.join("enforced");
    patch(&b.main, &enforced, &policy("enforce", "allow", &enf, &[("no-exec", "\"exec\"", "deny")]));
    let plugin = b.plugin.display().to_string();
    let mut failures = Vec::new();
    for (mode, how, api) in
        [("load", "system", "system"), ("load", "wordexp", "posix_spawn"), ("load", "syscall", "execve")]
    {
        let what = format!("{mode} {how}");
        let made = dir.join(format!("made-{mode}-{how}"));
        let run = |exe: &Path| {
            let mut cmd = std::process::Command::new(exe);
            cmd.arg(mode).current_dir(&dir);
            cmd.env("BACKDOOR_CTOR", format!("touch '{}'", made.display())).env("BACKDOOR_CTOR_HOW", how);
            cmd.env("BACKDOOR_CTOR_ONLY", "libplugin");
            stdout(&run_command(&mut cmd))
        };
        let _ = std::fs::remove_file(&mon);
        let text = run(&monitored);
        if !text.contains(&format!("{mode}=1")) || !made.exists() {
            failures.push(format!("{what}: monitor: {text}"));
        }
        let evs = events(&mon);
        match evs.iter().find(|e| e["api"] == api) {
            None => failures.push(format!("{what}: no {api} event: {evs:?}")),
            // The plugin is named (through /proc/self/maps: it was loaded after start-up).
            Some(e) if e["caller"]["module"] != plugin.as_str() => {
                failures.push(format!("{what}: caller is not {plugin}: {e}"))
            }
            Some(_) => {}
        }
        let _ = std::fs::remove_file(&made);
        let _ = std::fs::remove_file(&enf);
        let text = run(&enforced);
        if made.exists() || !text.contains(&format!("{mode}=1")) {
            failures.push(format!("{what}: enforce: the command ran or the program failed: {text}"));
        }
        if !events(&enf).iter().any(|e| e["api"] == api && e["action"] == "deny") {
            failures.push(format!("{what}: enforce: no deny event: {:?}", events(&enf)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The program libc's posix_spawn starts is executed in a child after the
/// spawn's file actions: with the sink on stderr, no event may land in the
/// child's redirected stderr (the program's output would change). The
/// reported spawn's child running its program is part of the spawn (see
/// `nest`), with glibc and musl, dynamic and static.
#[test]
fn a_spawned_childs_redirected_stderr_is_left_alone() {
    let flavours = [
        ("glibc", "cc", "-O2"),
        ("musl", "musl-gcc", "-O2"),
        ("glibc-static", "cc", "-static"),
        ("musl-static", "musl-gcc", "-static"),
    ];
    for (flavour, cc, link) in flavours {
        let dir = scratch(&format!("spawn-capture-{flavour}"));
        let exe = dir.join("spawn_capture");
        compile(cc, &["-O2", link], &exe, "spawn_capture.c", &[]);
        let patched = dir.join("patched");
        let pol = "mode = \"monitor\"\ndefault = \"allow\"\n[report]\nsink = \"stderr\"\n[[rule]]\nid = \"x\"\napis = [\"exec\"]\naction = \"alert\"\n";
        patch(&exe, &patched, pol);
        let before = run_command(&mut std::process::Command::new(&exe));
        let after = run_command(&mut std::process::Command::new(&patched));
        assert_eq!(stdout(&before), stdout(&after), "{flavour}");
        assert!(stdout(&after).contains("captured=[child-err\n]"), "{flavour}: {}", stdout(&after));
        // The spawn itself is reported, on the program's own stderr.
        let err = String::from_utf8_lossy(&after.stderr);
        assert!(err.lines().any(|l| l.contains("\"api\":\"posix_spawn\"")), "{flavour}: {err}");
    }
}
