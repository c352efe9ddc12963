//! Patched files stay readable by the usual tools, and never map W+X.

use crate::common::*;
use std::process::Command;

#[test]
fn readelf_objdump_gdb_work_on_patched_files() {
    let dir = scratch("tools");
    for (flavour, _, _, _) in FLAVOURS {
        let p = dir.join(format!("p-{flavour}"));
        patch(&sample("behaviours", flavour), &p, &policy("monitor", "alert", &dir.join("e.jsonl"), &[]));
        let o = Command::new("readelf").arg("-aW").arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.trim().is_empty(), "readelf on {flavour}: {err}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(".dfpatch"), "no .dfpatch section listed");
        assert!(!text.lines().any(|l| l.contains("LOAD") && l.contains("RWE")), "a W+X segment: {text}");
        let o = Command::new("objdump").arg("-d").arg(&p).output().unwrap();
        assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).trim().is_empty(), "objdump on {flavour}");
        let o = Command::new("gdb").args(["-batch", "-nx", "-ex", "info files"]).arg(&p).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains(".dfpatch"),
            "gdb on {flavour}: {out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn no_writable_and_executable_mapping_at_run_time() {
    let dir = scratch("maps");
    let p = dir.join("p");
    patch(&sample("behaviours", "pie"), &p, &policy("monitor", "alert", &dir.join("e.jsonl"), &[]));
    // gdb starts the patched program (the runtime has run by then), stops at main
    // and prints the live mappings.
    let o = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "break main", "-ex", "run bind", "-ex", "info proc mappings"])
        .arg(&p)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("r-xp"), "no mappings printed: {out}");
    assert!(!out.lines().any(|l| l.contains("rwx")), "W+X mapping: {out}");
}

/// A PT_NULL entry is reused before a PT_NOTE; with neither (musl-gcc output)
/// the program header table moves (covered by the `musl` flavour everywhere).
#[test]
fn program_header_tactics() {
    let dir = scratch("phdr-tactics");
    let mut bytes = std::fs::read(sample("behaviours", "pie")).unwrap();
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(bytes[56..58].try_into().unwrap()) as usize;
    let note = (0..phnum).map(|i| phoff + i * 56).find(|&at| bytes[at..at + 4] == 4u32.to_le_bytes()).unwrap();
    bytes[note..note + 4].copy_from_slice(&0u32.to_le_bytes());
    let input = dir.join("with-null");
    std::fs::write(&input, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = dfpatch(&["inspect".as_ref(), input.as_os_str()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("was PT_NULL"), "{}", String::from_utf8_lossy(&o.stdout));
    let p = dir.join("p");
    patch(&input, &p, &policy("enforce", "allow", &dir.join("e.jsonl"), &[("x", "\"exec\"", "deny")]));
    assert_eq!(stdout(&run(&p, &["popen"], &dir)), "popen=0 errno=EPERM\ndone\n");

    let o = dfpatch(&["inspect".as_ref(), sample("behaviours", "musl").as_os_str()]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("program header table moved"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// `strip` on a patched file keeps it working; `restore` then refuses rather than rebuild a wrong original.
#[test]
fn strip_after_patching() {
    let dir = scratch("strip-after");
    let p = dir.join("p");
    let ev = dir.join("e.jsonl");
    patch(&sample("behaviours", "pie"), &p, &policy("monitor", "alert", &ev, &[]));
    assert!(Command::new("strip").arg(&p).status().unwrap().success());
    assert_eq!(stdout(&run(&p, &["bind"], &dir)), "bind=0 errno=0\ndone\n");
    assert!(events(&ev).iter().any(|e| e["api"] == "bind"));
    let o = dfpatch(&["restore".as_ref(), "-o".as_ref(), dir.join("r").as_os_str(), p.as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rewritten after patching"));
    assert!(!dir.join("r").exists());
}

/// `strip` and `objcopy` on patched static files (detours and rewritten
/// `syscall` sites) keep them working and reporting. (Files whose program
/// header table had to move, musl-gcc's, are not in this list: binutils moves
/// a segment that holds the program headers without starting with them; see
/// the README.)
#[test]
fn strip_and_objcopy_static() {
    let dir = scratch("strip-static");
    for flavour in ["glibc-static", "glibc-static-pie", "glibc-static-stripped"] {
        let p = dir.join(format!("p-{flavour}"));
        let ev = dir.join(format!("e-{flavour}.jsonl"));
        patch(&sample("behaviours", flavour), &p, &policy("monitor", "alert", &ev, &[]));
        assert!(Command::new("strip").arg(&p).status().unwrap().success());
        let copy = dir.join(format!("c-{flavour}"));
        assert!(Command::new("objcopy").arg(&p).arg(&copy).status().unwrap().success());
        for exe in [&p, &copy] {
            let _ = std::fs::remove_file(&ev);
            assert_eq!(stdout(&run(exe, &["bind"], &dir)), "bind=0 errno=0\ndone\n", "{flavour}");
            assert!(events(&ev).iter().any(|e| e["api"] == "bind"), "{flavour}: no event after strip/objcopy");
        }
    }
}

/// checksec reports the same RELRO, canary, NX, PIE and FORTIFY before and after patching.
#[test]
fn hardening_is_kept() {
    let dir = scratch("checksec");
    for (name, flags) in [
        ("hardened", &["-O2", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-Wl,-z,now,-z,relro"][..]),
        ("partial-relro-nopie", &["-O2", "-no-pie", "-fno-stack-protector"][..]),
    ] {
        let exe = dir.join(name);
        compile("cc", flags, &exe, "behaviours.c", &[]);
        let p = dir.join(format!("{name}.patched"));
        patch(&exe, &p, &policy("monitor", "alert", &dir.join("e.jsonl"), &[]));
        let props = |f: &std::path::Path| -> serde_json::Value {
            let o = Command::new("checksec")
                .arg("--format=json")
                .arg(format!("--file={}", f.display()))
                .output()
                .expect("checksec is installed by .ci/run");
            let v: serde_json::Value = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|e| panic!("checksec output: {e}: {}", String::from_utf8_lossy(&o.stdout)));
            let r = &v[f.to_str().unwrap()];
            serde_json::json!([r["relro"], r["canary"], r["nx"], r["pie"], r["fortify_source"], r["fortified"]])
        };
        let (before, after) = (props(&exe), props(&p));
        assert!(before.as_array().unwrap().iter().all(|x| x.is_string()), "{before}");
        assert_eq!(before, after, "{name}: hardening changed");
    }
}

/// Regression (issue 10): `dfpatch inspect --json FILE | head -1` and
/// `dfpatch policy check FILE | head -1` panicked ("failed printing to
/// stdout: Broken pipe", status 101) when the reader had gone. Each command
/// that prints is given a pipe whose reading end is already closed, so its
/// first write fails with EPIPE every time: it must stop quietly, status 0.
#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let dir = scratch("broken-pipe");
    let pol = dir.join("p.toml");
    std::fs::write(&pol, policy("monitor", "alert", &dir.join("e.jsonl"), &[])).unwrap();
    let exe = sample("behaviours", "pie");
    let patched = dir.join("patched");
    patch(&exe, &patched, &policy("monitor", "alert", &dir.join("e.jsonl"), &[]));
    let (exe, pol, patched) = (exe.to_str().unwrap(), pol.to_str().unwrap(), patched.to_str().unwrap());
    let commands: &[&[&str]] = &[
        &["inspect", exe],
        &["inspect", "--json", exe],
        &["inspect", "--json", patched],
        &["policy", "check", pol],
        &["policy", "show", "strict"],
        &["policy", "list"],
        &["--help"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(DFPATCH).args(*args).stdout(writer).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "dfpatch {args:?} into a closed pipe: {err}");
        assert!(err.is_empty(), "dfpatch {args:?} into a closed pipe printed: {err}");
    }
    // The commands of the report, through a shell (whether head is gone before
    // dfpatch writes depends on timing; either way: status 0, nothing on stderr).
    for args in [format!("inspect --json {exe}"), format!("policy check {pol}")] {
        let o = Command::new("bash")
            .args(["-c", &format!("set -o pipefail; {DFPATCH} {args} | head -1")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.is_empty(), "dfpatch {args} | head -1: {:?} {err}", o.status);
        assert_eq!(stdout(&o).lines().count(), 1);
    }
    // A full disk is still an error.
    let o = Command::new(DFPATCH).args(["policy", "list"]).stdout(std::fs::File::create("/dev/full").unwrap()).output();
    let o = o.unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No space left"), "{}", String::from_utf8_lossy(&o.stderr));
}
