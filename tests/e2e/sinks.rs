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
    let (out, _) = run_prog(&prog, &dir, true);
    assert!(out.contains("ids=65534:0"), "the program did not run set-user-id root: {out}");

    // nobody's symbolic link to root's file.
    let sink = drop.join("x.jsonl");
    let _ = std::fs::remove_file(&sink);
    symlink(&v, &sink).unwrap();
    std::os::unix::fs::lchown(&sink, Some(65534), Some(65534)).unwrap();
    let (_, err) = run_prog(&prog, &dir, true);
    assert_eq!(std::fs::read_to_string(&v).unwrap(), "root only\n", "{err}");
    assert!(err.contains("symbolic link"), "{err}");

    // A hard link to root's file (where fs.protected_hardlinks is 0).
    std::fs::remove_file(&sink).unwrap();
    std::fs::hard_link(&v, &sink).unwrap();
    let (_, err) = run_prog(&prog, &dir, true);
    assert_eq!(std::fs::read_to_string(&v).unwrap(), "root only\n", "{err}");
    assert!(err.contains("hard links"), "{err}");

    // nobody's own file planted there.
    std::fs::remove_file(&sink).unwrap();
    std::fs::write(&sink, "").unwrap();
    std::os::unix::fs::chown(&sink, Some(65534), Some(65534)).unwrap();
    let (_, err) = run_prog(&prog, &dir, true);
    assert_eq!(std::fs::read_to_string(&sink).unwrap(), "", "{err}");
    assert!(err.contains("another user"), "{err}");

    // No file there: the program makes its own (root's, 0600), as before.
    std::fs::remove_file(&sink).unwrap();
    let (_, err) = run_prog(&prog, &dir, true);
    assert!(err.is_empty() && !events(&sink).is_empty(), "{err}");
}

#[test]
fn a_fifo_nobody_reads_blocks_nothing() {
    let (dir, prog) = setup("sinks-fifo", "fifo");
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // (run_prog fails the test when the program does not end within 30 s.)
    let (out, _) = run_prog(&prog, &dir, false);
    assert!(out.contains("open=ok"), "{out}");
}
