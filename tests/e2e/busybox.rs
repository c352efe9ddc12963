//! A real static program nobody here wrote: Debian's busybox-static
//! (`/bin/busybox`, stripped static glibc) patched, then driven through a
//! scripted session of applets. The patched run must print exactly what the
//! original prints, and report the programs it runs and the connection wget
//! makes; under an enforce policy that denies exec, the shell's children are
//! refused and the shell goes on.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A one-page HTTP server on a free loopback port, serving `n` requests.
fn http_server(n: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = "served by the test\n";
            let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    port
}

/// The session: the busybox at `$BB` runs every applet as its own process.
const SESSION: &str = r#"
set -e
echo 'hello world' > a.txt
printf 'zeta\nalpha\nmid\n' > list.txt
$BB cp a.txt b.txt
$BB sed -e 's/hello/goodbye/' b.txt
$BB ls
$BB wc -c a.txt
$BB sort list.txt
$BB grep -c alpha list.txt
$BB md5sum a.txt b.txt
$BB sha256sum list.txt
$BB mkdir -p d/e
$BB mv b.txt d/e/c.txt
$BB find . -name '*.txt' | $BB sort
$BB tar -cf t.tar a.txt list.txt
$BB tar -tf t.tar
$BB gzip -k a.txt
$BB gunzip -c a.txt.gz
$BB awk '{ print NR ": " $2 }' a.txt
$BB cut -c1-5 a.txt
$BB seq 3 | $BB xargs echo seq:
$BB expr 6 \* 7
$BB date -u -d @0 +%Y-%m-%d
$BB sh -c 'echo nested shell $((2 + 3))'
$BB wget -q -O - "http://127.0.0.1:$PORT/page"
$BB rm -r d
$BB ls
echo end
"#;

fn session(busybox: &Path, dir: &Path, port: u16) -> Output {
    std::fs::create_dir_all(dir).unwrap();
    run_command(
        Command::new(busybox)
            .args(["sh", "-c", SESSION])
            .env_clear()
            .env("BB", busybox)
            .env("PORT", port.to_string())
            .env("LANG", "C")
            .env("TZ", "UTC")
            .current_dir(dir),
    )
}

/// busybox picks the applet from argv[0]: each copy must be called `busybox`.
fn copy_as_busybox(dir: &Path, from: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join("busybox");
    std::fs::copy(from, &to).unwrap();
    to
}

#[test]
fn busybox_session_behaves_the_same_and_reports() {
    let dir = scratch("busybox");
    let original = copy_as_busybox(&dir.join("orig"), Path::new("/bin/busybox"));
    let events_path = dir.join("events.jsonl");
    let patched = dir.join("pat/busybox");
    std::fs::create_dir_all(dir.join("pat")).unwrap();
    patch(&original, &patched, &policy("monitor", "alert", &events_path, &[]));

    let port = http_server(2);
    let want = session(&original, &dir.join("run-orig"), port);
    let got = session(&patched, &dir.join("run-pat"), port);
    let text = String::from_utf8_lossy(&want.stdout).into_owned();
    assert!(want.status.success() && text.contains("served by the test") && text.ends_with("end\n"), "{want:?}");
    assert_eq!(String::from_utf8_lossy(&got.stdout), text, "stdout differs");
    assert_eq!(String::from_utf8_lossy(&got.stderr), String::from_utf8_lossy(&want.stderr), "stderr differs");
    assert_eq!(got.status.code(), want.status.code());

    let evs = events(&events_path);
    let exe = std::fs::canonicalize(&patched).unwrap().display().to_string();
    let argv1 = |e: &serde_json::Value| e["args"]["argv"][1].as_str().unwrap_or("").to_string();
    let execs: Vec<String> = evs.iter().filter(|e| e["api"] == "execve").map(argv1).collect();
    for applet in ["cp", "sed", "ls", "sort", "tar", "gzip", "awk", "sh", "wget", "rm"] {
        assert!(execs.iter().any(|a| a == applet), "no execve event for {applet}: {execs:?}");
    }
    let connect = evs.iter().find(|e| e["api"] == "connect").expect("wget's connect is reported");
    assert_eq!(connect["args"]["port"], port);
    assert_eq!(connect["args"]["ip"], "127.0.0.1");
    for e in &evs {
        assert_eq!(e["exe"], exe.as_str(), "{e}");
        assert_eq!(e["layer"], "syscall", "a stripped static file has only syscall sites: {e}");
        assert_eq!(e["caller"]["module"], exe.as_str(), "{e}");
    }
}

#[test]
fn busybox_enforce_refuses_exec_and_the_shell_goes_on() {
    let dir = scratch("busybox-enforce");
    let original = copy_as_busybox(&dir.join("orig"), Path::new("/bin/busybox"));
    let events_path = dir.join("events.jsonl");
    let patched = dir.join("pat/busybox");
    std::fs::create_dir_all(dir.join("pat")).unwrap();
    patch(&original, &patched, &policy("enforce", "allow", &events_path, &[("no-exec", "\"exec\"", "deny")]));
    let out = Command::new(&patched)
        .args(["sh", "-c", "$BB ls /; echo status=$?; echo after"])
        .env("BB", &patched)
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("after"), "{out:?}");
    assert!(!text.contains("proc") && !text.contains("usr"), "ls ran: {text}");
    assert!(!text.contains("status=0"), "{text}");
    let evs = events(&events_path);
    let denied = evs.iter().find(|e| e["api"] == "execve" && e["action"] == "deny").expect("a denied execve event");
    assert_eq!(denied["args"]["argv"][1], "ls");
}
