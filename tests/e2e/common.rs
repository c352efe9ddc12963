//! Shared helpers: sample builds (once per test run), patching, running, events.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const DFPATCH: &str = env!("CARGO_BIN_EXE_dfpatch");

/// The dynamic flavours every behaviour is checked in: name, compiler, flags, stripped.
pub const FLAVOURS: &[(&str, &str, &[&str], bool)] = &[
    ("pie", "cc", &["-O2"], false),
    ("nopie", "cc", &["-O2", "-no-pie"], false),
    ("noplt-now", "cc", &["-O2", "-fno-plt", "-Wl,-z,now,-z,relro"], false),
    ("cet", "cc", &["-O2", "-fcf-protection=full"], false),
    ("stripped", "cc", &["-O2"], true),
    // musl's gcc wrapper links without any PT_NOTE: the program header table has to move.
    ("musl", "musl-gcc", &["-O2"], false),
];

pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

/// A scratch folder kept for the whole test run (under target/), so failures
/// can be looked at. Each name may be used once per run: tests run in
/// parallel, and two tests sharing a folder would delete each other's files.
pub fn scratch(name: &str) -> PathBuf {
    static USED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    {
        let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!used.iter().any(|u| u == name), "scratch folder {name:?} used twice");
        used.push(name.to_string());
    }
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    let dir = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// Compiles `samples/{source}` to `out` with `compiler` and `flags` (extra
/// arguments such as libraries go after the source), asserting success.
pub fn compile(compiler: &str, flags: &[&str], out: &Path, source: &str, after: &[String]) {
    let st = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(samples_dir().join(source))
        .args(after)
        .status()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(st.success(), "{compiler} {flags:?} {source} failed");
}

/// The static flavours (issue 3): name, stripped. How each is built is in
/// [`build_static`].
pub const STATIC_FLAVOURS: &[(&str, bool)] = &[
    ("musl-static", false),
    ("musl-static-stripped", true),
    ("musl-static-pie", false),
    ("musl-static-pie-stripped", true),
    ("glibc-static", false),
    ("glibc-static-stripped", true),
    ("glibc-static-pie", false),
];

/// Rust's own copy of musl's start files and libc.a (rustup target
/// x86_64-unknown-linux-musl): Debian's musl has no `rcrt1.o`, which a
/// static-pie musl program needs.
pub fn rust_musl_dir() -> PathBuf {
    let out = Command::new("rustc").args(["--print", "sysroot"]).output().expect("run rustc");
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot).join("lib/rustlib/x86_64-unknown-linux-musl/lib/self-contained")
}

/// Every flavour the samples are built in: the dynamic ones, then the static ones.
pub fn all_flavours() -> impl Iterator<Item = &'static str> {
    FLAVOURS.iter().map(|f| f.0).chain(STATIC_FLAVOURS.iter().map(|f| f.0))
}

/// Whether `flavour` is one of [`STATIC_FLAVOURS`].
pub fn is_static(flavour: &str) -> bool {
    STATIC_FLAVOURS.iter().any(|f| f.0 == flavour)
}

/// Builds `samples/{prog}.c` as `flavour` (dynamic or static) into `out`.
pub fn build_flavour(prog: &str, flavour: &str, out: &Path) {
    if is_static(flavour) {
        return build_static(flavour, prog, out);
    }
    let Some((_, cc, flags, strip)) = FLAVOURS.iter().find(|f| f.0 == flavour) else {
        panic!("unknown flavour {flavour}")
    };
    compile(cc, flags, out, &format!("{prog}.c"), &[]);
    if *strip {
        assert!(Command::new("strip").arg(out).status().expect("run strip").success());
    }
}

fn build_static(flavour: &str, prog: &str, out: &Path) {
    let base = flavour.trim_end_matches("-stripped");
    let source = format!("{prog}.c");
    match base {
        "musl-static" => compile("musl-gcc", &["-O2", "-static"], out, &source, &[]),
        "glibc-static" => compile("cc", &["-O2", "-static"], out, &source, &[]),
        "glibc-static-pie" => compile("cc", &["-O2", "-static-pie"], out, &source, &[]),
        "musl-static-pie" => {
            let sc = rust_musl_dir();
            assert!(sc.join("rcrt1.o").exists(), "rustup target add x86_64-unknown-linux-musl (done by .ci/run)");
            let obj = out.with_extension("o");
            let gcc_include = Command::new("cc").arg("-print-file-name=include").output().expect("run cc").stdout;
            let gcc_include = String::from_utf8_lossy(&gcc_include).trim().to_string();
            let st = Command::new("cc")
                .args(["-O2", "-fPIE", "-nostdinc", "-isystem", "/usr/include/x86_64-linux-musl", "-isystem"])
                .arg(&gcc_include)
                .arg("-c")
                .arg("-o")
                .arg(&obj)
                .arg(samples_dir().join(&source))
                .status()
                .expect("run cc");
            assert!(st.success(), "compiling {source} against musl's headers failed");
            let libgcc = Command::new("cc").arg("-print-libgcc-file-name").output().expect("run cc").stdout;
            let libgcc = String::from_utf8_lossy(&libgcc).trim().to_string();
            let st = Command::new("cc")
                .args(["-static-pie", "-nostdlib", "-nostartfiles", "-o"])
                .arg(out)
                .args([sc.join("rcrt1.o"), sc.join("crti.o"), sc.join("crtbeginS.o")])
                .arg(&obj)
                .arg(format!("-L{}", sc.display()))
                .arg("-lc")
                .arg(libgcc)
                .args([sc.join("crtendS.o"), sc.join("crtn.o")])
                .status()
                .expect("run cc");
            assert!(st.success(), "linking {source} as a static-pie musl program failed");
        }
        other => panic!("unknown static flavour {other}"),
    }
    if flavour.ends_with("-stripped") {
        assert!(Command::new("strip").arg(out).status().expect("run strip").success());
    }
}

struct Built {
    dir: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = scratch("samples");
        for flavour in all_flavours() {
            for prog in ["behaviours", "benign"] {
                build_flavour(prog, flavour, &dir.join(format!("{prog}-{flavour}")));
            }
        }
        Built { dir }
    })
}

/// Path of a built sample, e.g. `sample("behaviours", "pie")`.
pub fn sample(prog: &str, flavour: &str) -> PathBuf {
    built().dir.join(format!("{prog}-{flavour}"))
}

pub fn dfpatch(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(DFPATCH).args(args).output().expect("run dfpatch")
}

/// Patches `input` into `out` with the policy text, asserting success.
pub fn patch(input: &Path, out: &Path, policy: &str) {
    let pol = out.with_extension("toml");
    std::fs::write(&pol, policy).unwrap();
    let o = dfpatch(&[
        "--quiet".as_ref(),
        "--policy".as_ref(),
        pol.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        input.as_os_str(),
    ]);
    assert!(o.status.success(), "dfpatch failed on {}: {}", input.display(), String::from_utf8_lossy(&o.stderr));
}

/// Runs a program. A file this test process has just written can be briefly
/// "busy" (ETXTBSY) because another test thread forked while it was open;
/// that is retried.
pub fn run(exe: &Path, args: &[&str], cwd: &Path) -> Output {
    run_command(Command::new(exe).args(args).current_dir(cwd))
}

/// Runs `cmd` to completion, retrying while its file is still open for
/// writing in another thread's child (ETXTBSY: tests write executables and fork at once).
pub fn run_command(cmd: &mut Command) -> Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other.expect("run sample"),
        }
    }
    panic!("{:?} stayed busy (ETXTBSY)", cmd.get_program());
}

/// Runs `cmd` (its stdout captured), killing it after `secs` seconds: None
/// when it had to be killed (the program hung).
pub fn run_within(cmd: &mut Command, secs: u64) -> Option<Output> {
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(child.wait_with_output().expect("wait"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every line of a JSON Lines file, parsed; a line that is not JSON fails the test.
pub fn events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event is not JSON ({e}): {l}"))).collect()
}

/// A policy with a file sink.
pub fn policy(mode: &str, default: &str, sink: &Path, rules: &[(&str, &str, &str)]) -> String {
    let mut s = format!("mode = \"{mode}\"\ndefault = \"{default}\"\n\n[report]\nsink = \"file:{}\"\n", sink.display());
    for (id, apis, action) in rules {
        s += &format!("\n[[rule]]\nid = \"{id}\"\napis = [{apis}]\naction = \"{action}\"\n");
    }
    s
}

pub fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}
