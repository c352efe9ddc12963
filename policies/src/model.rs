//! The validated, in-memory form of a policy and its decision procedure.

use core::fmt;

use dfpatch_runtime::apis::{ApiId, Class};
use dfpatch_runtime::contract::{action, mode};
use dfpatch_runtime::rules::Facts;

use crate::matchers::{access_names, Matchers};

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
    /// What a covered call's arguments and caller must match (none: every call).
    pub matchers: Matchers,
}

impl Rule {
    /// Whether this rule covers `api` (whatever its matchers say).
    pub fn matches(&self, api: ApiId) -> bool {
        self.apis.iter().any(|selector| selector.matches(api))
    }

    /// Whether this rule decides a call of `api` with `facts`.
    pub fn decides(&self, api: ApiId, facts: &Facts) -> bool {
        self.matches(api) && self.matchers.matches(self.action, facts)
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
    ///
    /// Rules with matchers are passed over: this is what a call of `api`
    /// gets when none of them matches ([`Policy::chain`] lists them).
    pub fn decision(&self, api: ApiId) -> (Action, Option<usize>) {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matchers.is_empty() && rule.matches(api))
            .map_or((self.default_of(api), None), |(index, rule)| (rule.action, Some(index)))
    }

    /// The action when no rule decides a call of `api`.
    fn default_of(&self, api: ApiId) -> Action {
        match api.class() {
            Class::Tamper => self.default.max(Action::Deny),
            _ => self.default,
        }
    }

    /// The rules with matchers a call of `api` tries, in order, before
    /// [`Policy::decision`]'s rule.
    pub fn chain(&self, api: ApiId) -> Vec<usize> {
        let end = self.decision(api).1.unwrap_or(self.rules.len());
        (0..end).filter(|&i| self.rules.get(i).is_some_and(|r| !r.matchers.is_empty() && r.matches(api))).collect()
    }

    /// What the policy does with one call of `api` whose arguments and
    /// caller are `facts`: the first rule that covers and matches it decides.
    pub fn decide(&self, api: ApiId, facts: &Facts) -> (Action, Option<usize>) {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.decides(api, facts))
            .map_or((self.default_of(api), None), |(index, rule)| (rule.action, Some(index)))
    }

    /// Every action some call of `api` may get.
    pub fn outcomes(&self, api: ApiId) -> Vec<Action> {
        let mut all: Vec<Action> =
            self.chain(api).iter().filter_map(|&i| self.rules.get(i)).map(|r| r.action).collect();
        all.push(self.decision(api).0);
        all
    }

    /// Whether some call of `api` may be refused (deny or kill).
    pub fn may_refuse(&self, api: ApiId) -> bool {
        self.outcomes(api).iter().any(|&a| a >= Action::Deny)
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

/// The earlier rule (of `earlier`) that makes `rule` unreachable: every API
/// `rule` covers is decided by an earlier rule without matchers (the last
/// of those needed is named); None when `rule` can decide some call.
pub fn shadowed_by(earlier: &[Rule], rule: &Rule) -> Option<usize> {
    let decider = |api: ApiId| earlier.iter().position(|r| r.matchers.is_empty() && r.matches(api));
    let mut last = None;
    for &api in ApiId::ALL.iter().filter(|&&api| rule.matches(api)) {
        last = last.max(Some(decider(api)?));
    }
    last
}

/// One `[[rule]]` table as TOML text, preceded by a blank line.
fn rule_to_toml(rule: &Rule) -> String {
    let apis: Vec<String> = rule.apis.iter().map(|s| toml_string(s.name())).collect();
    let mut out = format!("\n[[rule]]\nid = {}\napis = [{}]\n", toml_string(&rule.id), apis.join(", "));
    out.push_str(&matchers_to_toml(&rule.matchers));
    out.push_str(&format!("action = \"{}\"\n", rule.action));
    out
}

/// A rule's matcher keys as TOML lines (none for a rule without matchers).
pub(crate) fn matchers_to_toml(m: &Matchers) -> String {
    let strings = |list: &[String]| list.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", ");
    let mut out = String::new();
    if !m.ip.is_empty() {
        let ips: Vec<String> = m.ip.iter().map(|b| toml_string(&b.to_string())).collect();
        out.push_str(&format!("ip = [{}]\n", ips.join(", ")));
    }
    if !m.port.is_empty() {
        let ports: Vec<String> =
            m.port.iter().map(|&(lo, hi)| if lo == hi { lo.to_string() } else { format!("\"{lo}-{hi}\"") }).collect();
        out.push_str(&format!("port = [{}]\n", ports.join(", ")));
    }
    if !m.path.is_empty() {
        out.push_str(&format!("path = [{}]\n", strings(&m.path)));
    }
    if !m.command.is_empty() {
        out.push_str(&format!("command = [{}]\n", strings(&m.command)));
    }
    if m.access != 0 {
        let names: Vec<String> = access_names(m.access).iter().map(|n| toml_string(n)).collect();
        out.push_str(&format!("access = [{}]\n", names.join(", ")));
    }
    if !m.caller.is_empty() {
        out.push_str(&format!("caller = [{}]\n", strings(&m.caller)));
    }
    out
}

/// Quotes `text` as a TOML basic string.
pub(crate) fn toml_string(text: &str) -> String {
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
