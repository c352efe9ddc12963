//! The validated, in-memory form of a policy and its decision procedure.

use core::fmt;

use dfpatch_runtime::apis::{ApiId, Class};
use dfpatch_runtime::contract::{action, mode};

/// Whether the runtime may block calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Report what the rules say, but never block a call.
    #[default]
    Monitor,
    /// Apply `deny` and `kill` decisions.
    Enforce,
}

impl Mode {
    /// Both modes, in table-code order.
    pub const ALL: [Mode; 2] = [Mode::Monitor, Mode::Enforce];

    /// The name used in policy files.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        }
    }

    /// Looks a mode up by its policy-file name.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The number stored in the compiled table (`contract::mode`).
    pub fn code(self) -> u8 {
        match self {
            Mode::Monitor => mode::MONITOR,
            Mode::Enforce => mode::ENFORCE,
        }
    }

    /// The mode a table number stands for.
    pub fn from_code(code: u8) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.code() == code)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What happens when a monitored call is made (in increasing order of force).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Let the call through silently.
    #[default]
    Allow,
    /// Let the call through and report it.
    Alert,
    /// Report the call and make it fail as the real function would (enforce mode).
    Deny,
    /// Report the call and end the process (enforce mode).
    Kill,
}

impl Action {
    /// Every action, in table-code order.
    pub const ALL: [Action; 4] = [Action::Allow, Action::Alert, Action::Deny, Action::Kill];

    /// The name used in policy files and events.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Alert => "alert",
            Action::Deny => "deny",
            Action::Kill => "kill",
        }
    }

    /// Looks an action up by its policy-file name.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The number stored in the compiled table (`contract::action`).
    pub fn code(self) -> u8 {
        match self {
            Action::Allow => action::ALLOW,
            Action::Alert => action::ALERT,
            Action::Deny => action::DENY,
            Action::Kill => action::KILL,
        }
    }

    /// The action a table number stands for.
    pub fn from_code(code: u8) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.code() == code)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Where the runtime writes its events (JSON Lines).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Sink {
    /// The process's standard error.
    #[default]
    Stderr,
    /// A file, opened for appending; the path is absolute.
    File(String),
    /// A file descriptor the process inherits.
    Fd(i32),
}

impl fmt::Display for Sink {
    /// Writes the sink as it is spelled in a policy file: `stderr`, `file:/path`, `fd:N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Stderr => f.write_str("stderr"),
            Sink::File(path) => write!(f, "file:{path}"),
            Sink::Fd(fd) => write!(f, "fd:{fd}"),
        }
    }
}

/// One entry of a rule's `apis` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiSelector {
    /// Every function of a behaviour class.
    Class(Class),
    /// One function.
    Api(ApiId),
}

impl ApiSelector {
    /// Reads a class name or a function name, classes first.
    pub fn from_name(name: &str) -> Option<ApiSelector> {
        Class::from_name(name).map(ApiSelector::Class).or_else(|| ApiId::from_name(name).map(ApiSelector::Api))
    }

    /// The name as written in a policy file.
    pub fn name(self) -> &'static str {
        match self {
            ApiSelector::Class(class) => class.name(),
            ApiSelector::Api(api) => api.name(),
        }
    }

    /// Whether this selector covers `api`.
    pub fn matches(self, api: ApiId) -> bool {
        match self {
            ApiSelector::Class(class) => api.class() == class,
            ApiSelector::Api(id) => id == api,
        }
    }
}

/// One `[[rule]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Short name reported in events (`[A-Za-z0-9_.:-]`, at most 64 bytes).
    pub id: String,
    /// The calls this rule covers.
    pub apis: Vec<ApiSelector>,
    /// What to do with them.
    pub action: Action,
}

impl Rule {
    /// Whether this rule covers `api`.
    pub fn matches(&self, api: ApiId) -> bool {
        self.apis.iter().any(|selector| selector.matches(api))
    }
}

/// A validated policy. Build one with [`Policy::parse`]; [`Policy::default`]
/// is what an empty policy file means.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Whether `deny` and `kill` are applied or only reported.
    pub mode: Mode,
    /// The action when no rule matches.
    pub default: Action,
    /// Where events go.
    pub sink: Sink,
    /// Evaluated in order; the first match decides.
    pub rules: Vec<Rule>,
    /// `backstop = false`: the patched program does not arm the backstop
    /// (system calls from code dfpatch did not rewrite are then not seen).
    pub backstop_off: bool,
}

impl Policy {
    /// What the policy does with `api`: the action, and the index of the rule
    /// that decided it (`None` when the default applied).
    ///
    /// The mode is not taken into account: in monitor mode the runtime
    /// reports `deny` and `kill` decisions without applying them.
    ///
    /// The `tamper` class is refused unless a rule names it: its default is
    /// `deny`, or `kill` when the policy's `default` is `kill`.
    pub fn decision(&self, api: ApiId) -> (Action, Option<usize>) {
        let default = match api.class() {
            Class::Tamper => self.default.max(Action::Deny),
            _ => self.default,
        };
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matches(api))
            .map_or((default, None), |(index, rule)| (rule.action, Some(index)))
    }

    /// Writes the policy back as TOML that [`Policy::parse`] reads to an equal policy.
    pub fn to_toml(&self) -> String {
        let mut out = format!(
            "mode = \"{}\"\ndefault = \"{}\"\n\n[report]\nsink = {}\n",
            self.mode,
            self.default,
            toml_string(&self.sink.to_string())
        );
        if self.backstop_off {
            out.insert_str(out.find("\n\n[report]").unwrap_or(0), "\nbackstop = false");
        }
        for rule in &self.rules {
            out.push_str(&rule_to_toml(rule));
        }
        out
    }
}

/// One `[[rule]]` table as TOML text, preceded by a blank line.
fn rule_to_toml(rule: &Rule) -> String {
    let apis: Vec<String> = rule.apis.iter().map(|s| toml_string(s.name())).collect();
    format!("\n[[rule]]\nid = {}\napis = [{}]\naction = \"{}\"\n", toml_string(&rule.id), apis.join(", "), rule.action)
}

/// Quotes `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::from_code(a.code()), Some(a));
            assert_eq!(Action::from_name(a.name()), Some(a));
        }
        for m in Mode::ALL {
            assert_eq!(Mode::from_code(m.code()), Some(m));
            assert_eq!(Mode::from_name(m.name()), Some(m));
        }
        assert_eq!(Action::from_code(4), None);
        assert_eq!(Mode::from_code(2), None);
    }

    #[test]
    fn selectors_match_directly_and_through_class() {
        let exec = ApiSelector::from_name("exec");
        assert_eq!(exec, Some(ApiSelector::Class(Class::Exec)));
        assert!(exec.is_some_and(|s| s.matches(ApiId::posix_spawnp)));
        let open2 = ApiSelector::from_name("__open_2");
        assert_eq!(open2, Some(ApiSelector::Api(ApiId::open_2)));
        assert!(open2.is_some_and(|s| !s.matches(ApiId::open)));
        assert_eq!(ApiSelector::from_name("sytem"), None);
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}
