//! The runtime's lexical path resolution (`runtime/src/paths.rs`, into a
//! fixed buffer) against a component stack built here: random bases and
//! paths of `a`, `b`, `.`, `..` and slashes.

use dfpatch_runtime::paths;
use proptest::prelude::*;

fn reference(base: &str, path: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    let start = if path.starts_with('/') { "" } else { base };
    for comp in start.split('/').chain(path.split('/')) {
        match comp {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            name => stack.push(name),
        }
    }
    format!("/{}", stack.join("/"))
}

fn text(min: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![Just("a"), Just("bb"), Just("."), Just(".."), Just("/"), Just("/")], min..12)
        .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn resolution_agrees_with_a_component_stack(base in text(0), path in text(0)) {
        let base = format!("/{base}");
        let mut out = [0u8; paths::MAX];
        let n = paths::resolve(base.as_bytes(), path.as_bytes(), &mut out);
        prop_assert_eq!(n.map(|n| String::from_utf8_lossy(&out[..n]).into_owned()), Some(reference(&base, &path)),
            "base {:?} path {:?}", base, path);
    }
}
