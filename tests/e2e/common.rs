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

struct Built {
    dir: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = scratch("samples");
        for (flavour, cc, flags, strip) in FLAVOURS {
            for prog in ["behaviours", "benign"] {
                let out = dir.join(format!("{prog}-{flavour}"));
                compile(cc, flags, &out, &format!("{prog}.c"), &[]);
                if *strip {
                    assert!(Command::new("strip").arg(&out).status().expect("run strip").success());
                }
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
    for _ in 0..100 {
        match Command::new(exe).args(args).current_dir(cwd).output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other.expect("run sample"),
        }
    }
    panic!("{} stayed busy (ETXTBSY)", exe.display());
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
