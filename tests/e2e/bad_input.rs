//! Bad input: one line on stderr, exit status 2, nothing written or changed.

use crate::common::*;
use std::path::{Path, PathBuf};

/// Runs `dfpatch -o OUT FILE` on bad input and checks the refusal.
fn refused(file: &Path, want: &str) {
    let before = sha256(file);
    let out = file.with_extension("out");
    let o = dfpatch(&["-o".as_ref(), out.as_os_str(), file.as_os_str()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}: {err}", file.display());
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.contains(want), "{:?} does not say {want:?}", err);
    assert!(!out.exists(), "an output was written for {}", file.display());
    // And in place: the input stays as it was.
    let o = dfpatch(&[file.as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(sha256(file), before, "{} was changed", file.display());
    let leftovers: Vec<PathBuf> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn with_bytes(dir: &Path, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(sample("behaviours", "pie")).unwrap();
    f(&mut bytes);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bad_inputs_are_refused_cleanly() {
    let dir = scratch("bad-input");
    let text = dir.join("text");
    std::fs::write(&text, "#!/bin/sh\necho hi\n").unwrap();
    refused(&text, "not an ELF file");

    let empty = dir.join("empty");
    std::fs::write(&empty, "").unwrap();
    refused(&empty, "not an ELF file");

    refused(&with_bytes(&dir, "truncated", |b| b.truncate(100)), "truncated or malformed ELF");
    refused(&with_bytes(&dir, "bad-phoff", |b| b[32..40].copy_from_slice(&u64::MAX.to_le_bytes())), "malformed");
    refused(&with_bytes(&dir, "elf32", |b| b[4] = 1), "32-bit");
    refused(&with_bytes(&dir, "aarch64", |b| b[18..20].copy_from_slice(&183u16.to_le_bytes())), "machine 0xb7");
    refused(&with_bytes(&dir, "bigendian", |b| b[5] = 2), "big-endian");

    let obj = dir.join("obj.o");
    compile("cc", &["-c"], &obj, "benign.c", &[]);
    refused(&obj, "relocatable object");

    let lib = dir.join("libx.so");
    compile("cc", &["-shared", "-fPIC"], &lib, "benign.c", &[]);
    refused(&lib, "shared library");
    // Regression (review): libc.so.6 has a PT_INTERP (it runs and prints its version),
    // and was taken for a PIE executable.
    let libc = dir.join("libc.so.6");
    std::fs::copy("/lib/x86_64-linux-gnu/libc.so.6", &libc).unwrap();
    refused(&libc, "shared library");

    // No spare program header, and a table that cannot move: the first PT_LOAD maps
    // file offset 0x1000 at address 0 (so no offset can match an address above it).
    let no_spare = with_bytes(&dir, "no-spare", |b| {
        let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
        let phnum = u16::from_le_bytes(b[56..58].try_into().unwrap()) as usize;
        let mut first_load = true;
        for i in 0..phnum {
            let at = phoff + i * 56;
            match u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) {
                4 => b[at..at + 4].copy_from_slice(&0x6474e551u32.to_le_bytes()), // PT_NOTE -> another GNU_STACK-like entry
                1 if first_load => {
                    first_load = false;
                    b[at + 8..at + 16].copy_from_slice(&0x1000u64.to_le_bytes());
                }
                _ => {}
            }
        }
    });
    refused(&no_spare, "no spare program header");

    // Already patched: says so and says how to re-patch.
    let once = dir.join("once");
    patch(&sample("behaviours", "pie"), &once, &policy("monitor", "alert", &dir.join("e.jsonl"), &[]));
    refused(&once, concat!("already patched by dfpatch ", env!("CARGO_PKG_VERSION"), " (policy sha256 "));
    let o = dfpatch(&[once.as_os_str()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dfpatch restore") && err.contains("--force"), "{err}");
}

/// Regression (issue 10): `dfpatch a b` said "the subcommand 'b' cannot be
/// used with '<FILE>'". One file is patched per call; the message says so and
/// how to patch several, and neither file is touched.
#[test]
fn several_files_are_refused_with_a_loop_to_use() {
    let dir = scratch("several-files");
    let (a, b) = (dir.join("a"), dir.join("b c"));
    std::fs::copy(sample("behaviours", "pie"), &a).unwrap();
    std::fs::copy(sample("benign", "pie"), &b).unwrap();
    let before = (sha256(&a), sha256(&b));
    let o = dfpatch(&[a.as_os_str(), b.as_os_str()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.contains("one FILE is patched per call, 2 were given"), "{err}");
    let each = format!("for f in {} '{}'; do dfpatch \"$f\"; done", a.display(), b.display());
    assert!(err.contains(&each), "{err:?} does not say {each:?}");
    assert_eq!((sha256(&a), sha256(&b)), before, "a file was changed");
    let o = dfpatch(&["-q".as_ref(), "-o".as_ref(), dir.join("out").as_os_str(), a.as_os_str(), b.as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!dir.join("out").exists());
}

#[test]
fn bad_policies_name_the_line() {
    let dir = scratch("bad-policy");
    let pol = dir.join("p.toml");
    std::fs::write(&pol, "mode = \"enforce\"\n\n[[rule]]\nid = \"a\"\napis = [\"sytem\"]\naction = \"deny\"\n")
        .unwrap();
    let out = dir.join("out");
    let o = dfpatch(&[
        "-p".as_ref(),
        pol.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        sample("behaviours", "pie").as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 5") && err.contains("sytem"), "{err}");
    assert!(!out.exists());
}

#[test]
fn in_place_is_atomic_and_keeps_the_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("in-place");
    let f = dir.join("prog");
    std::fs::copy(sample("behaviours", "pie"), &f).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o751)).unwrap();
    let o = dfpatch(&["-q".as_ref(), f.as_os_str()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777, 0o751);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(run(&f, &["bind"], &dir).status.success());
}

/// In place through a symbolic link: the file it points to is patched, the link stays a link.
#[test]
fn in_place_follows_symlinks() {
    let dir = scratch("symlink");
    let real = dir.join("prog-1.0");
    std::fs::copy(sample("behaviours", "pie"), &real).unwrap();
    let link = dir.join("prog");
    std::os::unix::fs::symlink("prog-1.0", &link).unwrap();
    let o = dfpatch(&["-q".as_ref(), link.as_os_str()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let o = dfpatch(&["inspect".as_ref(), real.as_os_str()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("already patched"), "the target was not patched");
}

#[test]
fn output_is_deterministic_and_restorable() {
    let dir = scratch("determinism");
    let flavours = FLAVOURS.iter().map(|f| f.0).chain(STATIC_FLAVOURS.iter().map(|f| f.0));
    for flavour in flavours {
        let input = sample("behaviours", flavour);
        let a = dir.join(format!("a-{flavour}"));
        let b = dir.join(format!("b-{flavour}"));
        let pol = policy("enforce", "alert", Path::new("/tmp/x.jsonl"), &[("r", "\"exec\"", "deny")]);
        patch(&input, &a, &pol);
        patch(&input, &b, &pol);
        assert_eq!(sha256(&a), sha256(&b), "{flavour}: two patches differ");
        let r = dir.join(format!("r-{flavour}"));
        let o = dfpatch(&["restore".as_ref(), "-o".as_ref(), r.as_os_str(), a.as_os_str()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(sha256(&r), sha256(&input), "{flavour}: restore is not byte-identical");
        // --force re-patches from the original: same bytes as patching the original.
        let c = dir.join(format!("c-{flavour}"));
        let pol2 = policy("monitor", "alert", Path::new("/tmp/y.jsonl"), &[]);
        patch(&input, &c, &pol2);
        std::fs::copy(&a, dir.join("again")).unwrap();
        let pf = dir.join("again.toml");
        std::fs::write(&pf, &pol2).unwrap();
        let o =
            dfpatch(&["-q".as_ref(), "--force".as_ref(), "-p".as_ref(), pf.as_os_str(), dir.join("again").as_os_str()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(sha256(&dir.join("again")), sha256(&c), "{flavour}: --force differs from patching the original");
    }
}

/// Runs a tool that sets or reads a file's attributes, asserting success; its stdout.
fn attr_tool(tool: &str, args: &[&str], file: &Path) -> String {
    let o = std::process::Command::new(tool)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("run {tool} (libcap2-bin and attr are installed by .ci/run): {e}"));
    assert!(
        o.status.success(),
        "{tool} {args:?} {} failed (the e2e tests run as root, as CI does): {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The raw value of an extended attribute, in hex.
fn xattr_hex(file: &Path, name: &str) -> String {
    let out = attr_tool("getfattr", &["--absolute-names", "-e", "hex", "-n", name], file);
    out.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).unwrap_or_default().to_string()
}

/// Regression (issue 10): patching in place renamed a new file over the
/// original without its extended attributes, so a patched `ping` lost its
/// `security.capability` (cap_net_raw) and could no longer open raw sockets.
#[test]
fn in_place_keeps_extended_attributes() {
    let dir = scratch("xattrs");
    let f = dir.join("ping");
    std::fs::copy(sample("behaviours", "pie"), &f).unwrap();
    attr_tool("setcap", &["cap_net_raw+ep"], &f);
    attr_tool("setfattr", &["-n", "user.origin", "-v", "sample ping"], &f);
    let cap = xattr_hex(&f, "security.capability");
    assert!(!cap.is_empty(), "setcap set nothing");
    for args in [&["-q"][..], &["-q", "--force"][..]] {
        let mut argv: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        argv.push(f.as_os_str());
        let o = dfpatch(&argv);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let caps = attr_tool("getcap", &[], &f);
        assert!(caps.contains("cap_net_raw=ep"), "capability lost after dfpatch {args:?}: {caps:?}");
        assert_eq!(xattr_hex(&f, "security.capability"), cap);
        let user = attr_tool("getfattr", &["--absolute-names", "--only-values", "-n", "user.origin"], &f);
        assert_eq!(user, "sample ping", "user.origin after dfpatch {args:?}");
    }
    assert!(run(&f, &["bind"], &dir).status.success());
    // restore keeps them too.
    let o = dfpatch(&["restore".as_ref(), f.as_os_str()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256(&f), sha256(&sample("behaviours", "pie")));
    assert_eq!(xattr_hex(&f, "security.capability"), cap);
    assert!(attr_tool("getfattr", &["--absolute-names", "-d"], &f).contains("user.origin=\"sample ping\""));
}

/// An attribute the new file cannot be given is an error that changes
/// nothing: not root, dfpatch may not set `security.capability`, so the
/// file keeps its bytes and its capability rather than lose the capability.
#[test]
fn an_attribute_that_cannot_be_kept_changes_nothing() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let dir = scratch("xattrs-not-root");
    // nobody owns the folder and the file, so only the capability stands in the way.
    chown(&dir, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = dir.join("ping");
    std::fs::copy(sample("behaviours", "pie"), &f).unwrap();
    chown(&f, Some(65534), Some(65534)).unwrap();
    attr_tool("setcap", &["cap_net_raw+ep"], &f);
    let (before, cap) = (sha256(&f), xattr_hex(&f, "security.capability"));
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(DFPATCH)
        .arg(&f)
        .output()
        .expect("run setpriv");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.contains("security.capability") && err.contains("only root"), "{err}");
    assert_eq!(sha256(&f), before, "the file was changed");
    assert_eq!(xattr_hex(&f, "security.capability"), cap, "the capability was lost");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "temporary files left: {names:?}");
}
