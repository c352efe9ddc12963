//! Reading policy text: TOML into raw, located values, then validation into
//! a [`Policy`], with every error pointing at the value at fault.

use std::collections::HashMap;

use dfpatch_runtime::apis::{ApiId, Class};
use serde::Deserialize;
use toml::Spanned;

use dfpatch_runtime::rules::{keys_of, KEYS};

use crate::error::{line_column, PolicyError};
use crate::matchers::{
    check_glob, check_path_glob, parse_access, parse_ip, parse_port_number, parse_port_range, Matchers, MAX_ENTRIES,
};
use crate::model::{Action, ApiSelector, Mode, Policy, Rule, Sink};
use crate::suggest::{closest, quote};

/// Longest rule id, in bytes.
pub const MAX_RULE_ID_LEN: usize = 64;
/// Longest `file:` sink path, in bytes.
pub const MAX_SINK_PATH_LEN: usize = 1024;
/// Largest `fd:N` sink descriptor.
pub const MAX_SINK_FD: i32 = 1_000_000;
/// Most rules a policy may have (rule numbers must stay below
/// [`dfpatch_runtime::contract::RULE_DEFAULT`]).
pub const MAX_RULES: usize = 4096;

/// The whole file, as TOML gives it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    mode: Option<Spanned<String>>,
    default: Option<Spanned<String>>,
    report: Option<RawReport>,
    /// `backstop = false`: no Syscall User Dispatch at run time.
    backstop: Option<bool>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

/// The `[report]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    sink: Option<Spanned<String>>,
}

/// A list of located strings.
type Strings = Spanned<Vec<Spanned<String>>>;

/// One `[[rule]]` table. Its keys are optional here so that a missing one
/// is reported at the rule it is missing from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<Spanned<String>>,
    apis: Option<Strings>,
    action: Option<Spanned<String>>,
    ip: Option<Strings>,
    port: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    path: Option<Strings>,
    command: Option<Strings>,
    access: Option<Strings>,
    caller: Option<Strings>,
}

/// A rule's matcher keys, as written.
struct RawMatchers {
    ip: Option<Strings>,
    port: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    path: Option<Strings>,
    command: Option<Strings>,
    access: Option<Strings>,
    caller: Option<Strings>,
}

/// A `[[rule]]` table that has all its keys.
struct RuleFields {
    id: Spanned<String>,
    apis: Strings,
    action: Spanned<String>,
    matchers: RawMatchers,
}

impl Policy {
    /// Parses and validates policy text. An empty text is the default policy
    /// (monitor mode, allow by default, events to stderr, no rules).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        Checker { text }.policy(raw)
    }

    /// Like [`Policy::parse`], for file contents that may not be UTF-8
    /// (which is then reported at the first bad byte). A leading UTF-8 byte
    /// order mark is ignored.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Policy, PolicyError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes).map_err(|e| utf8_error(bytes, e.valid_up_to()))?;
        Policy::parse(text)
    }
}

/// Locates a TOML syntax or type error.
fn toml_error(text: &str, error: &toml::de::Error) -> PolicyError {
    let offset = error.span().map_or(0, |span| span.start);
    let message = match error.message().trim() {
        "" => "invalid TOML",
        message => message,
    };
    let reason = match hint(message) {
        Some(hint) => format!("{message}: {hint}"),
        None => message.to_string(),
    };
    PolicyError::at(text, offset, reason)
}

/// Advice for the TOML errors people make most with this format.
fn hint(message: &str) -> Option<&'static str> {
    if message.starts_with("unknown field `rules`") || message.starts_with("invalid type: map, expected a sequence") {
        Some("write each rule as a [[rule]] table, with double brackets")
    } else if message.ends_with("expected a sequence") {
        Some("apis takes a list, e.g. apis = [\"exec\"]")
    } else {
        None
    }
}

/// Locates the first byte that is not UTF-8.
fn utf8_error(bytes: &[u8], offset: usize) -> PolicyError {
    let byte = bytes.get(offset).copied().unwrap_or_default();
    let reason = format!("invalid UTF-8 (byte 0x{byte:02X}): a policy must be UTF-8 text");
    PolicyError::at_bytes(bytes, offset, reason)
}

/// Turns raw values into a [`Policy`], locating errors in `text`.
struct Checker<'t> {
    text: &'t str,
}

impl Checker<'_> {
    /// Validates the whole file.
    fn policy(&self, raw: RawPolicy) -> Result<Policy, PolicyError> {
        let sink = raw.report.and_then(|report| report.sink);
        Ok(Policy {
            mode: self.optional(raw.mode, parse_mode)?,
            default: self.optional(raw.default, parse_action)?,
            sink: self.optional(sink, parse_sink)?,
            rules: self.rules(raw.rule)?,
            backstop_off: raw.backstop == Some(false),
        })
    }

    /// Runs `check` on a value that may be absent, which means `T::default()`.
    fn optional<T: Default>(
        &self,
        value: Option<Spanned<String>>,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, PolicyError> {
        value.map_or(Ok(T::default()), |value| self.locate(&value, check))
    }

    /// Validates the rules, their ids and that the ids are unique.
    fn rules(&self, raw: Vec<Spanned<RawRule>>) -> Result<Vec<Rule>, PolicyError> {
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        // Per API, the first rule without matchers that covers it.
        let mut decided: Vec<Option<usize>> = vec![None; ApiId::ALL.len()];
        let mut rules = Vec::with_capacity(raw.len().min(MAX_RULES));
        for raw_rule in raw {
            if rules.len() == MAX_RULES {
                let reason = format!("too many rules: at most {MAX_RULES} are allowed");
                return Err(self.error(&raw_rule, reason));
            }
            let fields = self.complete(raw_rule)?;
            self.locate(&fields.id, check_rule_id)?;
            self.check_unique(&fields.id, &mut first_seen)?;
            let at = fields.id.clone();
            let rule = self.rule(fields)?;
            self.check_reachable(&rules, &rule, &at, &mut decided)?;
            rules.push(rule);
        }
        Ok(rules)
    }

    /// Checks that a rule has all its keys, pointing at the rule if not.
    fn complete(&self, raw: Spanned<RawRule>) -> Result<RuleFields, PolicyError> {
        let span = raw.span();
        let RawRule { id, apis, action, ip, port, path, command, access, caller } = raw.into_inner();
        let matchers = RawMatchers { ip, port, path, command, access, caller };
        match (id, apis, action) {
            (Some(id), Some(apis), Some(action)) => Ok(RuleFields { id, apis, action, matchers }),
            (id, apis, _) => {
                let missing = if id.is_none() {
                    "id"
                } else if apis.is_none() {
                    "apis"
                } else {
                    "action"
                };
                let which = id.map_or("this rule".to_string(), |id| format!("rule {}", quote(id.get_ref())));
                let reason = format!("{which} has no {missing}: every [[rule]] needs id, apis and action");
                Err(PolicyError::spanning(self.text, span, reason))
            }
        }
    }

    /// Records where `id` is in `first_seen`, failing if an earlier rule has it.
    fn check_unique(&self, id: &Spanned<String>, first_seen: &mut HashMap<String, usize>) -> Result<(), PolicyError> {
        if let Some(&first) = first_seen.get(id.get_ref()) {
            let (line, _) = line_column(self.text.as_bytes(), first);
            let reason = format!("duplicate rule id {} (first at line {line})", quote(id.get_ref()));
            return Err(self.error(id, reason));
        }
        first_seen.insert(id.get_ref().clone(), id.span().start);
        Ok(())
    }

    /// Validates one rule whose id is already checked.
    fn rule(&self, raw: RuleFields) -> Result<Rule, PolicyError> {
        if raw.apis.get_ref().is_empty() {
            let reason = format!(
                "rule {} has an empty apis list: name at least one class ({}) or function such as \"system\"",
                quote(raw.id.get_ref()),
                class_list()
            );
            return Err(self.error(&raw.apis, reason));
        }
        let apis: Vec<ApiSelector> =
            raw.apis.get_ref().iter().map(|name| self.locate(name, parse_selector)).collect::<Result<_, _>>()?;
        let m = raw.matchers;
        let matchers = Matchers {
            ip: self.list(&m.ip, "ip", &apis, |v| self.locate(v, parse_ip))?,
            port: self.list(&m.port, "port", &apis, |v| self.port(v))?,
            path: self
                .list(&m.path, "path", &apis, |v| self.locate(v, |t| check_path_glob(t).map(|()| t.to_string())))?,
            command: self
                .list(&m.command, "command", &apis, |v| self.locate(v, |t| check_glob(t).map(|()| t.to_string())))?,
            access: self
                .list(&m.access, "access", &apis, |v| self.locate(v, parse_access))?
                .into_iter()
                .fold(0, |a, b| a | b),
            caller: self.list(&m.caller, "caller", &apis, |v| {
                self.locate(
                    v,
                    |t| if t == "main" { Ok(t.to_string()) } else { check_path_glob(t).map(|()| t.to_string()) },
                )
            })?,
        };
        Ok(Rule { id: raw.id.into_inner(), apis, action: self.locate(&raw.action, parse_action)?, matchers })
    }

    /// Reads matcher list `key` of a rule covering `apis`: not empty, not
    /// too long, each entry read by `entry`, and the key applying to every
    /// entry of `apis` (to some API of a class).
    fn list<V, T>(
        &self,
        list: &Option<Spanned<Vec<Spanned<V>>>>,
        key: &str,
        apis: &[ApiSelector],
        entry: impl Fn(&Spanned<V>) -> Result<T, PolicyError>,
    ) -> Result<Vec<T>, PolicyError> {
        let Some(list) = list else { return Ok(Vec::new()) };
        if list.get_ref().is_empty() {
            return Err(self.error(list, format!("{key} is an empty list: leave the key out to match every call")));
        }
        if list.get_ref().len() > MAX_ENTRIES {
            return Err(self.error(
                list,
                format!("{key} has {} entries: at most {MAX_ENTRIES} are allowed", list.get_ref().len()),
            ));
        }
        let bit = KEYS.iter().find(|(_, name)| *name == key).map_or(0, |&(bit, _)| bit);
        if let Some(selector) = apis.iter().find(|s| !applies(bit, **s)) {
            return Err(self.error(list, not_applicable(key, *selector)));
        }
        list.get_ref().iter().map(entry).collect()
    }

    /// Reads a `port` entry: a number or a `"LOW-HIGH"` string.
    fn port(&self, value: &Spanned<toml::Value>) -> Result<(u16, u16), PolicyError> {
        let read = match value.get_ref() {
            toml::Value::Integer(n) => parse_port_number(*n),
            toml::Value::String(s) => parse_port_range(s),
            other => Err(format!("bad port {other}: expected a number or a range such as \"8000-8099\"")),
        };
        read.map_err(|reason| self.error(value, reason))
    }

    /// Refuses a rule that can never decide anything: every API it covers
    /// is decided by an earlier rule without matchers.
    /// (`decided` is [`crate::shadowed_by`]'s question answered per API as rules
    /// come, so that 4,096 rules take linear time.)
    fn check_reachable(
        &self,
        rules: &[Rule],
        rule: &Rule,
        at: &Spanned<String>,
        decided: &mut [Option<usize>],
    ) -> Result<(), PolicyError> {
        let covered: Vec<usize> =
            ApiId::ALL.iter().filter(|&&api| rule.matches(api)).map(|&api| api as usize).collect();
        let by = covered.iter().map(|&api| decided.get(api).copied().flatten()).collect::<Option<Vec<usize>>>();
        if rule.matchers.is_empty() {
            for &api in &covered {
                if let Some(slot) = decided.get_mut(api) {
                    slot.get_or_insert(rules.len());
                }
            }
        }
        let Some(by) = by.and_then(|all| all.into_iter().max()) else { return Ok(()) };
        let name = rules.get(by).map_or("", |r| r.id.as_str());
        let reason = format!(
            "rule {} can never match: rule {} before it decides every call it covers (it has no matchers); \
             move this rule above it or remove it",
            quote(&rule.id),
            quote(name)
        );
        Err(self.error(at, reason))
    }

    /// Runs `check` on a located string, pointing any error at it.
    fn locate<T>(&self, value: &Spanned<String>, check: impl Fn(&str) -> Result<T, String>) -> Result<T, PolicyError> {
        check(value.get_ref()).map_err(|reason| self.error(value, reason))
    }

    /// An error about a located value.
    fn error<T>(&self, value: &Spanned<T>, reason: String) -> PolicyError {
        PolicyError::spanning(self.text, value.span(), reason)
    }
}

/// Reads `mode`.
fn parse_mode(name: &str) -> Result<Mode, String> {
    Mode::from_name(name).ok_or_else(|| format!("unknown mode {}: expected monitor or enforce", quote(name)))
}

/// Reads an action (`default` or a rule's `action`).
fn parse_action(name: &str) -> Result<Action, String> {
    Action::from_name(name)
        .ok_or_else(|| format!("unknown action {}: expected allow, alert, deny or kill", quote(name)))
}

/// Reads `sink`: `stderr`, `file:/absolute/path` or `fd:N`.
fn parse_sink(spec: &str) -> Result<Sink, String> {
    if spec == "stderr" {
        Ok(Sink::Stderr)
    } else if let Some(path) = spec.strip_prefix("file:") {
        check_sink_path(path).map(|()| Sink::File(path.to_string()))
    } else if let Some(number) = spec.strip_prefix("fd:") {
        parse_fd(number).map(Sink::Fd)
    } else {
        let hint = if spec == "stdout" { " (for standard output write \"fd:1\")" } else { "" };
        Err(format!("unknown sink {}: expected \"stderr\", \"file:/absolute/path\" or \"fd:N\"{hint}", quote(spec)))
    }
}

/// Checks the path of a `file:` sink.
fn check_sink_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        Err(format!(
            "sink path {} is not absolute: write it from the root, e.g. \"file:/var/log/dfpatch.jsonl\"",
            quote(path)
        ))
    } else if path.len() > MAX_SINK_PATH_LEN {
        Err(format!("sink path is {} bytes long: at most {MAX_SINK_PATH_LEN} are allowed", path.len()))
    } else if path.contains('\0') {
        Err(format!("sink path {} contains a NUL character", quote(path)))
    } else {
        Ok(())
    }
}

/// Reads the `N` of an `fd:N` sink.
fn parse_fd(number: &str) -> Result<i32, String> {
    let digits_only = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    digits_only.then(|| number.parse::<i32>().ok()).flatten().filter(|fd| *fd <= MAX_SINK_FD).ok_or_else(|| {
        format!("bad sink descriptor {}: expected a number from 0 to {MAX_SINK_FD}, e.g. \"fd:3\"", quote(number))
    })
}

/// Checks a rule id: non-empty, short, and safe to embed in JSON unescaped.
fn check_rule_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("rule id is empty: name the rule, e.g. id = \"no-shell\"".to_string());
    }
    if id == "default" {
        return Err(
            "rule id \"default\" is reserved: events name the default action that way; choose another id".to_string()
        );
    }
    if id.len() > MAX_RULE_ID_LEN {
        return Err(format!("rule id {} is {} bytes long: at most {MAX_RULE_ID_LEN} are allowed", quote(id), id.len()));
    }
    match id.chars().find(|&c| !is_rule_id_char(c)) {
        Some(bad) => {
            Err(format!("rule id {} contains {bad:?}: use only letters, digits, '_', '.', ':' and '-'", quote(id)))
        }
        None => Ok(()),
    }
}

/// Whether `c` may appear in a rule id.
fn is_rule_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// Reads one entry of `apis`: a class or a function name.
fn parse_selector(name: &str) -> Result<ApiSelector, String> {
    ApiSelector::from_name(name).ok_or_else(|| unknown_api(name))
}

/// Explains an unknown `apis` entry, suggesting the name probably meant.
fn unknown_api(name: &str) -> String {
    let functions = ApiId::ALL.iter().map(|api| api.name());
    let classes = Class::ALL.iter().map(|class| class.name());
    let guess = closest(name, classes.clone().chain(functions));
    let guessed_class = guess.filter(|g| classes.clone().any(|c| c == *g));
    let example = guess.filter(|_| guessed_class.is_none()).unwrap_or("system");
    let did_you_mean = guessed_class.map(|c| format!(" (did you mean the class \"{c}\"?)")).unwrap_or_default();
    format!(
        "unknown api {}: expected a class ({}) or a function name such as \"{example}\"{did_you_mean}",
        quote(name),
        class_list()
    )
}

/// Whether matcher key `bit` applies to `selector`: to the function, or to
/// some function of the class.
fn applies(bit: u8, selector: ApiSelector) -> bool {
    ApiId::ALL.iter().any(|&api| selector.matches(api) && keys_of(api) & bit != 0)
}

/// Explains why matcher `key` cannot be used on `selector`.
fn not_applicable(key: &str, selector: ApiSelector) -> String {
    let what = match selector {
        ApiSelector::Class(c) => format!("the class {}", quote(c.name())),
        ApiSelector::Api(a) => format!("{} ({} class)", quote(a.name()), a.class().name()),
    };
    let applies_to = match key {
        "ip" | "port" => "network calls with an address: connect, bind, sendto, sendmsg, sendmmsg, listen, accept",
        "path" => "exec (the program), file (the file), library (the library), network (a unix socket)",
        "command" => "exec calls that run a program (system, popen, exec*, posix_spawn*)",
        "access" => "file calls",
        _ => "every call",
    };
    format!("{key} does not apply to {what}: it applies to {applies_to}; put those apis in a rule of their own")
}

/// The class names, comma separated.
fn class_list() -> String {
    Class::ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks() {
        assert_eq!(parse_sink("stderr"), Ok(Sink::Stderr));
        assert_eq!(parse_sink("fd:0"), Ok(Sink::Fd(0)));
        assert_eq!(parse_sink("fd:1000000"), Ok(Sink::Fd(1_000_000)));
        assert_eq!(parse_sink("file:/a b"), Ok(Sink::File("/a b".into())));
        for bad in ["fd:", "fd:-1", "fd:+3", "fd:1000001", "fd:99999999999", "fd:3x", "file:", "file:rel", "x"] {
            assert!(parse_sink(bad).is_err(), "{bad}");
        }
        assert!(parse_sink(&format!("file:/{}", "a".repeat(1024))).is_err());
        assert!(parse_sink("file:/a\0b").is_err());
        assert!(parse_sink("stdout").is_err_and(|e| e.contains("fd:1")));
    }

    #[test]
    fn rule_ids() {
        assert!(check_rule_id("a-Z_0.9:x").is_ok());
        assert!(check_rule_id(&"a".repeat(64)).is_ok());
        assert!(check_rule_id(&"a".repeat(65)).is_err());
        assert!(check_rule_id("").is_err());
        assert!(check_rule_id("a\"b").is_err());
        assert!(check_rule_id("é").is_err());
    }

    #[test]
    fn unknown_api_messages_teach() {
        assert_eq!(
            unknown_api("sytem"),
            "unknown api \"sytem\": expected a class (exec, network, file, memory, library, debug, process, tamper, \
             privilege, admin, io_uring) \
             or a function name such as \"system\""
        );
        assert!(unknown_api("netwrk").ends_with("(did you mean the class \"network\"?)"));
        assert!(unknown_api("open_64").contains("such as \"open64\""));
        assert!(unknown_api("zzzzzz").contains("such as \"system\""));
    }
}
