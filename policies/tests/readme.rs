//! The README's table of every API (`## What is covered` → `### Every API
//! and the layers that catch it`) says what `runtime/src/apis.rs` says: every
//! API once, its class, the layers that catch it (functions: plt, symbol,
//! entry; system calls: syscall, backstop), its system call numbers.

use dfpatch_runtime::apis::{tamper_of, ApiId, SYSCALLS};

/// The system call numbers that report as `api`: its own, or, for a
/// `tamper` API, those whose calls tamper as it.
fn numbers(api: ApiId) -> Vec<u64> {
    SYSCALLS.iter().filter(|&&(_, a)| a == api || tamper_of(a) == Some(api)).map(|&(n, _)| n).collect()
}

#[test]
fn the_readme_lists_every_api_as_the_table_has_it() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("### Every API and the layers that catch it").expect("the README's API table");
    let section = &readme[start..];
    let end = section[4..].find("\n### ").map_or(section.len(), |i| i + 4);
    let mut seen = Vec::new();
    for line in section[..end].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let name = cells[0].trim_matches('`');
        let api = ApiId::from_name(name).unwrap_or_else(|| panic!("README lists {name:?}, not an API"));
        assert_eq!(cells[1], api.class().name(), "{name}: class");
        let mut layers = Vec::new();
        if api.function_hooked() {
            layers.extend(["plt", "symbol", "entry"]);
        }
        if !numbers(api).is_empty() {
            layers.extend(["syscall", "backstop"]);
        }
        assert_eq!(cells[2], layers.join(", "), "{name}: layers");
        let want: Vec<String> = numbers(api).iter().map(u64::to_string).collect();
        let want = if want.is_empty() { "—".to_string() } else { want.join(", ") };
        assert_eq!(cells[3], want, "{name}: system call numbers");
        assert!(!cells[4].is_empty(), "{name}: when it is reported");
        seen.push(api);
    }
    for &api in ApiId::ALL {
        assert_eq!(seen.iter().filter(|&&a| a == api).count(), 1, "{} in the README's table", api.name());
    }
}
