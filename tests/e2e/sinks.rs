//! A `file:` sink must never become a way to write where the program's
//! user could not (issue 14): a symbolic link, anywhere on the sink's path,
//! is not followed; a file of another user is refused; a set-user-id root
//! program run by `nobody` appends to no file of root's through a link or a
//! hard link planted in a folder `nobody` can write; and a FIFO nobody
//! reads does not block the program. Each refusal is said once on stderr,
//! and the program runs as it would.

use crate::common::*;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A folder for one test, with the sample patched to send every event to
/// `sink` (monitor mode, everything alerted), everyone able to enter it.
fn setup(name: &str, sink: &str) -> (PathBuf, PathBuf) {
    let dir = std::fs::canonicalize(scratch(name)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("matchers");
    build_flavour("matchers", "pie", &exe);
    let patched = dir.join("prog");
    let sink = dir.join(sink);
    patch(&exe, &patched, &policy("monitor", "alert", &sink, &[]));
    (dir, patched)
}

/// Runs `prog` (as `nobody` when `as_nobody`): its stdout, stderr, success.
fn run_prog(prog: &Path, dir: &Path, as_nobody: bool) -> (String, String) {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(prog);
        c
    } else {
        Command::new(prog)
    };
    cmd.args(["ids", "open:/etc/hostname"]).current_dir(dir);
    let o = run_within(cmd.stderr(std::process::Stdio::piped()), 30).expect("the program finished");
    let out = stdout(&o);
    assert!(o.status.success() && out.ends_with("open=ok\ndone\n"), "{out} {o:?}");
    (out, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A root-only file with known contents.
fn victim(dir: &Path) -> PathBuf {
    let v = dir.join("victim");
    std::fs::write(&v, "root only\n").unwrap();
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o600)).unwrap();
    v
}

#[test]
fn a_symbolic_link_is_never_a_sink() {
    let (dir, prog) = setup("sinks-link", "events.jsonl");
    let v = victim(&dir);
    let _ = std::fs::remove_file(dir.join("events.jsonl"));
    symlink(&v, dir.join("events.jsonl")).unwrap();
    let (_, err) = run_prog(&prog, &dir, false);
    assert_eq!(std::fs::read_to_string(&v).unwrap(), "root only\n");
    assert!(err.contains("dfpatch: events not written: sink file:") && err.contains("symbolic link"), "{err}");
    assert_eq!(err.matches("dfpatch:").count(), 1, "said once: {err}");

    // A link higher on the path too.
    let real = dir.join("real");
    std::fs::create_dir_all(&real).unwrap();
    let _ = std::fs::remove_file(dir.join("via"));
    symlink(&real, dir.join("via")).unwrap();
    let prog2 = dir.join("prog2");
    patch(&dir.join("matchers"), &prog2, &policy("monitor", "alert", &dir.join("via/e.jsonl"), &[]));
    let (_, err) = run_prog(&prog2, &dir, false);
    assert!(!real.join("e.jsonl").exists() && err.contains("symbolic link"), "{err}");
}

#[test]
fn a_file_of_another_user_is_not_a_sink() {
    let (dir, prog) = setup("sinks-owner", "events.jsonl");
    let sink = dir.join("events.jsonl");
    std::fs::write(&sink, "").unwrap();
    std::os::unix::fs::chown(&sink, Some(65534), Some(65534)).unwrap();
    let (_, err) = run_prog(&prog, &dir, false);
    assert_eq!(std::fs::read_to_string(&sink).unwrap(), "", "events went into nobody's file");
    assert!(err.contains("another user"), "{err}");
    // The program's own file takes them.
    std::os::unix::fs::chown(&sink, Some(0), Some(0)).unwrap();
    let (_, err) = run_prog(&prog, &dir, false);
    assert!(err.is_empty() && events(&sink).iter().any(|e| e["api"] == "open64" || e["api"] == "open"), "{err}");
}

#[test]
fn a_setuid_root_program_appends_to_no_file_of_roots() {
    let (dir, prog) = setup("sinks-setuid", "drop/x.jsonl");
    let v = victim(&dir);
    // A folder anyone may write to, like /tmp.
    let drop = dir.join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::set_permissions(&drop, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let sink = drop.join("x.jsonl");
    let _ = std::fs::remove_file(&sink);
    let (out, err) = run_prog(&prog, &dir, true);
    assert!(out.contains("ids=65534:0"), "the program did not run set-user-id root: {out}");
    // Where others can write, a set-id program keeps no sink at all: nothing
    // planted there (a link, a hard link swapped in between two checks, a
    // file of their own) can be written through.
    assert!(!sink.exists() && err.contains("folders only root or its user can write"), "{err}");
    let planted: [(&str, &dyn Fn()); 3] = [
        ("a symbolic link", &|| symlink(&v, &sink).unwrap()),
        ("a hard link", &|| std::fs::hard_link(&v, &sink).unwrap()),
        ("nobody's file", &|| {
            std::fs::write(&sink, "").unwrap();
            std::os::unix::fs::chown(&sink, Some(65534), Some(65534)).unwrap();
        }),
    ];
    for (what, plant) in planted {
        let _ = std::fs::remove_file(&sink);
        plant();
        let (_, err) = run_prog(&prog, &dir, true);
        assert_eq!(std::fs::read_to_string(&v).unwrap(), "root only\n", "{what}: {err}");
        assert!(err.contains("refused"), "{what}: {err}");
    }
    let _ = std::fs::remove_file(&sink);

    // In folders only root can write (every one from /: not under /tmp,
    // where a clone of the repository may be): the program's own file
    // (root's, 0600).
    let logs = PathBuf::from(format!("/var/lib/dfpatch-e2e-sinks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sink2 = logs.join("x.jsonl");
    let prog2 = dir.join("prog-safe");
    patch(&dir.join("matchers"), &prog2, &policy("monitor", "alert", &sink2, &[]));
    std::fs::set_permissions(&prog2, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let (_, err) = run_prog(&prog2, &dir, true);
    let written = events(&sink2);
    // A hard link to root's file there (made by root: nobody cannot write there).
    let v2 = logs.join("victim");
    std::fs::write(&v2, "root only\n").unwrap();
    std::fs::remove_file(&sink2).unwrap();
    std::fs::hard_link(&v2, &sink2).unwrap();
    let (_, err2) = run_prog(&prog2, &dir, true);
    let after = std::fs::read_to_string(&v2).unwrap();
    let _ = std::fs::remove_dir_all(&logs);
    assert!(err.is_empty() && !written.is_empty(), "{err}");
    assert_eq!(after, "root only\n", "{err2}");
    assert!(err2.contains("other hard links"), "{err2}");
}

#[test]
fn a_fifo_nobody_reads_blocks_nothing() {
    let (dir, prog) = setup("sinks-fifo", "fifo");
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // (run_prog fails the test when the program does not end within 30 s.)
    let (out, err) = run_prog(&prog, &dir, false);
    assert!(out.contains("open=ok") && err.contains("a FIFO nobody reads"), "{out} {err}");
}

/// Waits up to 30 s for `check`.
fn until(mut check: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// Starts the patched program in `dir` with `args`, its output captured.
fn start(prog: &Path, dir: &Path, args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(prog);
    cmd.args(args).current_dir(dir).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for _ in 0..100 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stayed busy", prog.display())
}

#[test]
fn a_rotated_log_is_followed() {
    let (dir, prog) = setup("sinks-rotation", "events.jsonl");
    let sink = dir.join("events.jsonl");
    let rotated = dir.join("events.jsonl.1");
    for f in [&sink, &rotated, &dir.join("go")] {
        let _ = std::fs::remove_file(f);
    }
    let child = start(&prog, &dir, &["open:/etc/hostname", "wait:go", "open:/etc/hosts"]);
    assert!(until(|| !events(&sink).is_empty()), "no first event");
    std::fs::rename(&sink, &rotated).unwrap();
    std::fs::write(dir.join("go"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(stdout(&o).ends_with("done\n"), "{o:?}");
    let path = |evs: Vec<serde_json::Value>| evs.iter().map(|e| e["args"]["path"].to_string()).collect::<Vec<_>>();
    assert_eq!(path(events(&rotated)), ["\"/etc/hostname\""], "the rotated file keeps the first event");
    assert_eq!(path(events(&sink)), ["\"/etc/hosts\""], "the next one goes to a new file at the path");
}

#[test]
fn lost_events_are_counted_on_the_next_one() {
    let (dir, prog) = setup("sinks-lost", "fifo");
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    let _ = std::fs::remove_file(dir.join("go"));
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // Two events while nobody reads the FIFO: lost. Then a reader, and one more.
    let mut child = start(&prog, &dir, &["open:/etc/hostname", "open:/etc/hosts", "wait:go", "open:/etc/passwd"]);
    // Both made (the program says so on its way), then a reader.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line, "open=ok\n");
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut reader = std::fs::OpenOptions::new().read(true).custom_flags(0o4000).open(&fifo).unwrap();
    std::fs::write(dir.join("go"), "").unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    let o = child.wait_with_output().unwrap();
    assert!(rest.ends_with("done\n"), "{rest} {o:?}");
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut text);
    let evs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let opens: Vec<&serde_json::Value> = evs.iter().filter(|e| e["class"] == "file").collect();
    assert_eq!(opens.len(), 1, "{text}");
    assert_eq!(opens[0]["args"]["path"], "/etc/passwd", "{text}");
    assert_eq!(opens[0]["lost"], 2, "{text}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("a FIFO nobody reads"), "{o:?}");
}

#[test]
fn a_descriptor_sink_is_the_one_the_program_was_given() {
    let dir = std::fs::canonicalize(scratch("sinks-fd")).unwrap();
    let exe = dir.join("matchers");
    build_flavour("matchers", "pie", &exe);
    let prog = dir.join("prog");
    let text = "mode = \"monitor\"\ndefault = \"alert\"\n[report]\nsink = \"fd:3\"\n";
    patch(&exe, &prog, text);
    // The program's own file that happens to get number 3: never a sink.
    let data = dir.join("data.txt");
    let _ = std::fs::remove_file(&data);
    let o = run(&prog, &["keep:data.txt", "open:/etc/hostname"], &dir);
    assert!(stdout(&o).contains("keep=3") && stdout(&o).ends_with("done\n"), "{o:?}");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "", "events went into the program's own file");
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("sink fd:3 refused: the descriptor was not open when the program started"),
        "{o:?}"
    );
    // Given by the environment: used.
    let ev = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&ev);
    let script = format!("exec 3>>{}; exec {} open:/etc/hostname", ev.display(), prog.display());
    let o = run_command(Command::new("sh").arg("-c").arg(&script).current_dir(&dir));
    assert!(o.status.success(), "{o:?}");
    assert!(events(&ev).iter().any(|e| e["class"] == "file"), "{o:?}");
}
