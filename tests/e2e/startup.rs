//! The runtime starts before library constructors (glibc, DT_PREINIT_ARRAY):
//! under strace, its start-up (readlink of /proc/self/exe) comes before the
//! library constructor's marker system call (getppid).

use crate::common::*;
use std::process::Command;

/// The system calls of interest, in order, from an strace log.
fn marks(log: &str) -> Vec<&'static str> {
    log.lines()
        .filter_map(|l| {
            if l.contains("readlink(\"/proc/self/exe\"") {
                Some("runtime")
            } else if l.contains("getppid(") {
                Some("ctor")
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn runtime_runs_before_library_constructors() {
    let dir = scratch("startup");
    let lib = dir.join("libctor_lib.so");
    compile("cc", &["-shared", "-fPIC"], &lib, "ctor_lib.c", &[]);
    for (name, flags) in [("pie", &[][..]), ("nopie", &["-no-pie"][..]), ("noplt-now", &["-fno-plt", "-Wl,-z,now"][..])]
    {
        let exe = dir.join(format!("main-{name}"));
        let link = [format!("-L{}", dir.display()), "-lctor_lib".into(), format!("-Wl,-rpath,{}", dir.display())];
        compile("cc", flags, &exe, "ctor_main.c", &link);
        let patched = dir.join(format!("patched-{name}"));
        patch(&exe, &patched, &policy("monitor", "alert", &dir.join("ev.jsonl"), &[]));
        for (prog, want) in [(&exe, vec!["ctor"]), (&patched, vec!["runtime", "ctor"])] {
            let log = dir.join(format!("strace-{name}.log"));
            let out = Command::new("strace")
                .args(["-f", "-e", "trace=readlink,getppid", "-o"])
                .arg(&log)
                .arg(prog)
                .output()
                .expect("strace is installed by .ci/run");
            assert_eq!(stdout(&out), "ctor ran\nmain: 42\n");
            let text = std::fs::read_to_string(&log).unwrap();
            assert_eq!(marks(&text), want, "{name}: {}\n{text}", prog.display());
        }
    }
}
