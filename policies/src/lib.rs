//! dfpatch policies: parse and validate the TOML a user writes, decide what
//! happens to each monitored function, and compile that into the compact
//! table the injected runtime reads (it never parses text).
//!
//! ```toml
//! mode = "enforce"          # "monitor" (report only, never block) | "enforce"
//! default = "allow"         # action when no rule matches: allow | alert | deny | kill
//! [report]
//! sink = "stderr"           # "stderr" | "file:/absolute/path" | "fd:N"
//! [[rule]]
//! id = "no-shell"
//! apis = ["exec"]           # classes and/or function names
//! action = "deny"           # allow | alert | deny | kill
//! ```
//!
//! Rules are evaluated in order and the first rule whose `apis` covers a
//! function (by name or through its class) and whose matchers (`ip`, `port`,
//! `path`, `command`, `access`, `caller`; none: every call) match the call
//! decides; otherwise `default` does. `learn` makes a policy from events.
//!
//! ```
//! use dfpatch_policy::{Action, Policy};
//! use dfpatch_runtime::apis::ApiId;
//!
//! let policy = Policy::parse("[[rule]]\nid = \"no-shell\"\napis = [\"exec\"]\naction = \"deny\"\n")?;
//! assert_eq!(policy.decision(ApiId::system), (Action::Deny, Some(0)));
//! assert_eq!(policy.decision(ApiId::connect), (Action::Allow, None));
//! let table = policy.compile();
//! assert_eq!(dfpatch_policy::TableView::parse(&table)?.decision(ApiId::system), Some((Action::Deny, Some(0))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod compile;
mod error;
mod learn;
pub(crate) mod matchers;
mod model;
mod parse;
mod suggest;
mod table;

use sha2::{Digest, Sha256};

pub use error::PolicyError;
pub use learn::{learn, LearnError, FOLD_AT};
pub use matchers::{IpBlock, Matchers};
pub use model::{shadowed_by, Action, ApiSelector, Mode, Policy, Rule, Sink};
pub use parse::{MAX_RULES, MAX_RULE_ID_LEN, MAX_SINK_FD, MAX_SINK_PATH_LEN};
pub use table::{describe, TableError, TableView};

/// The policy used when the user gives none: monitor mode, alerts on
/// everything but file access.
pub const DEFAULT_POLICY: &str = include_str!("../presets/default.toml");

/// The names [`preset`] knows, in the order `dfpatch` lists them.
pub const PRESET_NAMES: [&str; 4] = ["default", "monitor-all", "block-exec", "strict"];

/// The text of a built-in policy, by name (see [`PRESET_NAMES`]).
pub fn preset(name: &str) -> Option<&'static str> {
    match name {
        "default" => Some(DEFAULT_POLICY),
        "monitor-all" => Some(include_str!("../presets/monitor-all.toml")),
        "block-exec" => Some(include_str!("../presets/block-exec.toml")),
        "strict" => Some(include_str!("../presets/strict.toml")),
        _ => None,
    }
}

/// [`DEFAULT_POLICY`], parsed.
///
/// The preset is known good (a unit test parses it); should it ever fail to
/// parse, this falls back to [`Policy::default`] rather than panicking.
pub fn default_policy() -> Policy {
    Policy::parse(DEFAULT_POLICY).unwrap_or_default()
}

/// SHA-256 of a compiled table, as stored in `Contract::policy_hash`.
pub fn hash(table: &[u8]) -> [u8; 32] {
    Sha256::digest(table).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_the_parsed_preset() {
        assert_eq!(Policy::parse(DEFAULT_POLICY).as_ref(), Ok(&default_policy()));
        assert_ne!(default_policy(), Policy::default(), "the fallback must not be what we got");
    }

    #[test]
    fn presets_are_listed() {
        for name in PRESET_NAMES {
            assert!(preset(name).is_some(), "{name}");
        }
        assert_eq!(preset("nope"), None);
    }

    #[test]
    fn hash_is_sha256() {
        let empty = hash(b"");
        assert_eq!(empty[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    }
}
