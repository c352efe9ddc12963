//! `cargo run --release --example demo`: builds `samples/behaviours.c` with the
//! system C compiler, patches it with the embedded default policy (monitor
//! mode, events on stderr), runs a few behaviours and shows what it reports.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("target/demo");
    std::fs::create_dir_all(&dir).expect("create target/demo");
    let exe = dir.join("behaviours");
    let st = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(root.join("samples/behaviours.c"))
        .status()
        .expect("run cc (install gcc)");
    assert!(st.success(), "cc failed");

    let input = std::fs::read(&exe).expect("read the sample");
    let policy = dfpatch_policy::default_policy();
    let patch = dfpatch::patch(&input, &policy).unwrap_or_else(|e| panic!("dfpatch: {e}"));
    let patched = dir.join("behaviours.patched");
    std::fs::write(&patched, patch.patched.output.to_vec()).expect("write the patched sample");
    std::fs::set_permissions(&patched, std::fs::Permissions::from_mode(0o755)).unwrap();
    println!(
        "patched {} -> {}: {} hooks at {} sites, default policy (monitor mode, events on stderr)\n",
        exe.display(),
        patched.display(),
        patch.plan.hooks.len(),
        patch.plan.sites.len()
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let marker = dir.join("marker");
    let marker = marker.to_str().unwrap();
    for args in [
        vec!["system", marker],
        vec!["connect", port.as_str()],
        vec!["dlopen"],
        vec!["mmap-exec"],
        vec!["open", marker],
    ] {
        println!("$ {} {}", patched.display(), args.join(" "));
        let out = Command::new(&patched).args(&args).output().expect("run the patched sample");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            println!("  event: {line}");
        }
        println!();
    }
    println!("(`open` is allowed without an event by the default policy; see `dfpatch policy show`.)");
}
