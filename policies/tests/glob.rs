//! The runtime's path glob (`runtime/src/glob.rs`, an automaton simulated
//! with one bit per token, no allocation) against a straightforward
//! recursive matcher written here from the rules: `*` any run within a
//! component, `**` any run, `?` one byte but `/`, `[...]` a set (`!`
//! negates, `a-z` ranges, `]` first is itself), `\x` the byte `x`.

use dfpatch_runtime::glob;
use proptest::prelude::*;

/// Matches `p` against `s`, trying every split a star allows.
fn reference(p: &[u8], s: &[u8]) -> bool {
    match p {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=s.len()).any(|k| reference(rest, &s[k..])),
        [b'*', rest @ ..] => {
            let run = s.iter().position(|&c| c == b'/').unwrap_or(s.len());
            (0..=run).any(|k| reference(rest, &s[k..]))
        }
        [b'?', rest @ ..] => matches!(s.first(), Some(&c) if c != b'/') && reference(rest, &s[1..]),
        [b'[', rest @ ..] => {
            // The class body: up to the first `]` that is not its first byte.
            let skip = usize::from(matches!(rest.first(), Some(b'!' | b'^')));
            let first = skip + usize::from(rest.get(skip) == Some(&b']'));
            let Some(end) = rest[first..].iter().position(|&c| c == b']').map(|e| e + first) else {
                return false;
            };
            let body = &rest[..end];
            let Some(&c) = s.first() else { return false };
            let negated = matches!(body.first(), Some(b'!' | b'^'));
            let set = if negated { &body[1..] } else { body };
            let mut inside = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    inside |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    inside |= set[i] == c;
                    i += 1;
                }
            }
            c != b'/' && inside != negated && reference(&rest[end + 1..], &s[1..])
        }
        [b'\\', b, rest @ ..] => s.first() == Some(b) && reference(rest, &s[1..]),
        [b'\\'] => false,
        [b, rest @ ..] => s.first() == Some(b) && reference(rest, &s[1..]),
    }
}

fn pattern() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b"/".to_vec()),
        Just(b"*".to_vec()),
        Just(b"**".to_vec()),
        Just(b"?".to_vec()),
        Just(b"[ab]".to_vec()),
        Just(b"[!a]".to_vec()),
        Just(b"[a-b/]".to_vec()),
        Just(b"\\*".to_vec()),
    ];
    prop::collection::vec(part, 0..8).prop_map(|parts| parts.concat())
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'/'), Just(b'*')], 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn the_runtime_glob_agrees_with_the_reference(p in pattern(), s in path()) {
        prop_assert!(glob::check(&p).is_ok());
        prop_assert_eq!(glob::matches(&p, &s), reference(&p, &s), "pattern {:?} path {:?}",
            String::from_utf8_lossy(&p), String::from_utf8_lossy(&s));
    }
}
