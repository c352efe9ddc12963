//! Hooks on small stacks (`samples/small_stack.c`): a `clone(CLONE_VM)`
//! child on a 4 KiB stack makes a raw `execve`, or calls `open`. The runtime
//! runs its work on stacks of its own (`runtime/src/stacks.rs`); before, the
//! hook overran the child's stack (glibc: SIGSEGV, or a corrupted parent),
//! with no event. In every flavour: reported in monitor mode and the call
//! made; refused in enforce mode, the child going on with EPERM.

use crate::common::*;

/// (arguments, the API reported, its class). A stripped static glibc file,
/// where only system calls are seen, reports `open` as the `openat` it makes.
fn cases(file: &str) -> [(Vec<String>, &'static str, &'static str); 2] {
    [(vec!["exec".into()], "execve", "exec"), (vec!["open".into(), file.into()], "open", "file")]
}

#[test]
fn hooks_run_in_a_clone_child_on_a_4k_stack() {
    let root = scratch("small-stack");
    let mut failures = Vec::new();
    for flavour in all_flavours() {
        let dir = root.join(flavour);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("small_stack");
        build_flavour("small_stack", flavour, &exe);
        for mode in ["monitor", "enforce"] {
            let ev = dir.join(format!("{mode}.jsonl"));
            let patched = dir.join(mode);
            let deny = if mode == "enforce" { "deny" } else { "alert" };
            patch(&exe, &patched, &policy(mode, "allow", &ev, &[("calls", "\"exec\", \"file\"", deny)]));
            let file = dir.join(format!("{mode}-made"));
            for (args, api, class) in cases(file.to_str().unwrap()) {
                let _ = std::fs::remove_file(&ev);
                let _ = std::fs::remove_file(&file);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = run(&patched, &args, &dir);
                let text = stdout(&out);
                // The child's status: 0 when the call was made (true ran, the
                // file was opened), EPERM (1) when it was refused.
                let want = if mode == "enforce" { "child exit 1" } else { "child exit 0" };
                let evs = events(&ev);
                let reported: Vec<&serde_json::Value> = evs
                    .iter()
                    .filter(|e| e["api"].as_str().is_some_and(|a| a.starts_with(api)) && e["class"] == class)
                    .collect();
                let action_ok =
                    reported.len() == 1 && reported[0]["action"] == if mode == "enforce" { "deny" } else { "alert" };
                let made = api != "open" || file.exists() == (mode == "monitor");
                if !out.status.success() || !text.contains(want) || !action_ok || !made {
                    failures.push(format!(
                        "{flavour} {mode} {}: status {:?}, stdout {text:?}, {api} events {}, file made {}",
                        args[0],
                        out.status.code(),
                        reported.len(),
                        file.exists()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
