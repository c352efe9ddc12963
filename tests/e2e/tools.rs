//! Patched files stay readable by the usual tools, and never map W+X.

use crate::common::*;
use std::process::Command;

#[test]
fn readelf_objdump_gdb_work_on_patched_files() {
    let dir = scratch("tools");
    for (flavour, _, _) in FLAVOURS {
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
        let o = Command::new("gdb")
            .args(["-batch", "-nx", "-ex", "info files"])
            .arg(&p)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && out.contains(".dfpatch"), "gdb on {flavour}: {out} {}", String::from_utf8_lossy(&o.stderr));
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
