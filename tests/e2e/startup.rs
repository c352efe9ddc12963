//! The runtime starts before library constructors (glibc, DT_PREINIT_ARRAY).

use crate::common::*;
use std::process::Command;

#[test]
fn runtime_runs_before_library_constructors() {
    let dir = scratch("startup");
    let lib = dir.join("libctor_lib.so");
    assert!(Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&lib).arg(samples_dir().join("ctor_lib.c")).status().unwrap().success());
    for (name, flags) in [("pie", &[][..]), ("nopie", &["-no-pie"][..]), ("noplt-now", &["-fno-plt", "-Wl,-z,now"][..])] {
        let exe = dir.join(format!("main-{name}"));
        let st = Command::new("cc")
            .args(flags)
            .arg("-o")
            .arg(&exe)
            .arg(samples_dir().join("ctor_main.c"))
            .arg(format!("-L{}", dir.display()))
            .arg("-lctor_lib")
            .arg(format!("-Wl,-rpath,{}", dir.display()))
            .status()
            .unwrap();
        assert!(st.success());
        let plain = run(&exe, &[], &dir);
        assert_eq!(stdout(&plain), "ctor: runtime not running yet\nmain: 42\n");
        let patched = dir.join(format!("patched-{name}"));
        patch(&exe, &patched, &policy("monitor", "alert", &dir.join("ev.jsonl"), &[]));
        let out = run(&patched, &[], &dir);
        assert_eq!(stdout(&out), "ctor: runtime already running\nmain: 42\n", "{name}");
    }
}
