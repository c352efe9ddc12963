//! Parsing: what is accepted, and where and how errors are reported.

use dfpatch_policy::{Action, ApiSelector, Mode, Policy, Sink};
use dfpatch_runtime::apis::{ApiId, Class};

/// The example from the format's documentation.
const EXAMPLE: &str = r#"mode = "enforce"          # "monitor" (report only, never block) | "enforce"
default = "allow"         # action when no rule matches: allow | alert | deny | kill
[report]
sink = "stderr"           # "stderr" | "file:/absolute/path" | "fd:N"
[[rule]]
id = "no-shell"
apis = ["exec"]           # class names and/or function names
action = "deny"           # allow | alert | deny | kill
"#;

fn parse(text: &str) -> Policy {
    Policy::parse(text).unwrap_or_else(|e| panic!("{e}\n--- in ---\n{text}"))
}

/// The error message for `text`, which must be rejected.
fn error(text: &str) -> String {
    match Policy::parse(text) {
        Ok(policy) => panic!("accepted {policy:?}\n--- from ---\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `text` is rejected at `line` with a message containing `needle`.
fn assert_error(text: &str, line: usize, needle: &str) {
    let message = error(text);
    assert!(message.starts_with(&format!("line {line}, column ")), "wrong line: {message}");
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    assert!(!message.contains('\n'), "not one line: {message:?}");
}

#[test]
fn the_documented_example() {
    let policy = parse(EXAMPLE);
    assert_eq!(policy.mode, Mode::Enforce);
    assert_eq!(policy.default, Action::Allow);
    assert_eq!(policy.sink, Sink::Stderr);
    assert_eq!(policy.rules.len(), 1);
    assert_eq!(policy.rules[0].id, "no-shell");
    assert_eq!(policy.rules[0].apis, vec![ApiSelector::Class(Class::Exec)]);
    assert_eq!(policy.decision(ApiId::system), (Action::Deny, Some(0)));
    assert_eq!(policy.decision(ApiId::connect), (Action::Allow, None));
    assert!(!policy.compile().is_empty());
}

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(parse(""), Policy::default());
    assert_eq!(parse("# only a comment\n\n"), Policy::default());
    assert_eq!(Policy::parse_bytes(b"").ok(), Some(Policy::default()));
    assert_eq!(Policy::default().mode, Mode::Monitor);
    assert_eq!(Policy::default().default, Action::Allow);
    assert_eq!(Policy::default().sink, Sink::Stderr);
}

#[test]
fn modes_actions_and_sinks() {
    assert_eq!(parse("mode = \"monitor\"").mode, Mode::Monitor);
    assert_eq!(parse("default = \"alert\"").default, Action::Alert);
    assert_eq!(parse("default = \"kill\"").default, Action::Kill);
    assert_eq!(parse("[report]\nsink = \"stderr\"").sink, Sink::Stderr);
    assert_eq!(parse("[report]\nsink = \"fd:3\"").sink, Sink::Fd(3));
    assert_eq!(parse("[report]\nsink = \"file:/tmp/events.jsonl\"").sink, Sink::File("/tmp/events.jsonl".into()));
    assert_eq!(parse("[report]\n").sink, Sink::Stderr);
}

#[test]
fn rules_decide_in_order_by_name_or_class() {
    let policy = parse(
        r#"default = "alert"
[[rule]]
id = "allow-open"
apis = ["open64", "__open_2"]
action = "allow"
[[rule]]
id = "files"
apis = ["file", "system"]
action = "kill"
[[rule]]
id = "exec"
apis = ["exec"]
action = "deny"
"#,
    );
    assert_eq!(policy.decision(ApiId::open64), (Action::Allow, Some(0)));
    assert_eq!(policy.decision(ApiId::open_2), (Action::Allow, Some(0)));
    assert_eq!(policy.decision(ApiId::open), (Action::Kill, Some(1)));
    assert_eq!(policy.decision(ApiId::system), (Action::Kill, Some(1)));
    assert_eq!(policy.decision(ApiId::execve), (Action::Deny, Some(2)));
    assert_eq!(policy.decision(ApiId::ptrace), (Action::Alert, None));
}

#[test]
fn non_utf8_and_bom() {
    let message = Policy::parse_bytes(b"mode = \"monitor\"\n# caf\xe9\n").map_err(|e| e.to_string());
    assert_eq!(message, Err("line 2, column 6: invalid UTF-8 (byte 0xE9): a policy must be UTF-8 text".into()));
    assert_eq!(Policy::parse_bytes(b"\xEF\xBB\xBFmode = \"enforce\"").map(|p| p.mode), Ok(Mode::Enforce));
}

#[test]
fn toml_syntax_errors_are_located() {
    assert_error("mode = \"enforce\"\n\nmode = \"monitor\"\n", 3, "duplicate key");
    assert_error("mode = \"monitor\"\n[[rule]\n", 2, "invalid table header");
    assert_error("\n\nmode = \"enforce\n", 3, "invalid basic string");
    assert_error("\n = 1", 2, "");
}

#[test]
fn unknown_keys_are_errors() {
    assert_error("mode = \"monitor\"\nverbose = true\n", 2, "unknown field `verbose`");
    assert_error("[report]\nsink = \"stderr\"\nformat = \"json\"\n", 3, "unknown field `format`, expected `sink`");
    assert_error("[[rule]]\nid = \"a\"\napis = [\"exec\"]\naction = \"deny\"\nwhy = \"x\"\n", 5, "unknown field `why`");
    assert_error("\n[[rules]]\nid = \"a\"\n", 2, "[[rule]]");
}

#[test]
fn wrong_types_are_located() {
    assert_error("\nmode = 1\n", 2, "invalid type: integer `1`, expected a string");
    assert_error("\n[rule]\nid = \"a\"\napis = [\"exec\"]\naction = \"deny\"\n", 2, "double brackets");
    assert_error("[[rule]]\nid = \"a\"\napis = \"exec\"\naction = \"deny\"\n", 3, "apis = [\"exec\"]");
    assert_error("[[rule]]\nid = \"a\"\napis = [\"exec\", 7]\naction = \"deny\"\n", 3, "integer");
}

#[test]
fn missing_rule_fields() {
    assert_error("\n[[rule]]\napis = [\"exec\"]\naction = \"deny\"\n", 2, "this rule has no id");
    assert_eq!(
        error("[[rule]]\nid = \"a\"\n"),
        "line 1, column 1: rule \"a\" has no apis: every [[rule]] needs id, apis and action"
    );
    let text =
        "[[rule]]\nid = \"a\"\napis = [\"exec\"]\naction = \"deny\"\n\n[[rule]]\nid = \"b\"\napis = [\"exec\"]\n";
    assert_error(text, 6, "rule \"b\" has no action");
    assert_error(
        "rule = [{ id = \"a\", apis = [\"exec\"], action = \"deny\" },\n  { id = \"b\" }]\n",
        2,
        "rule \"b\" has no apis",
    );
    assert_error("[[rule]]\nid = \"a\"\napis = []\naction = \"deny\"\n", 3, "rule \"a\" has an empty apis list");
}

#[test]
fn bad_values_are_located_and_explained() {
    assert_error("# policy\nmode = \"block\"\n", 2, "unknown mode \"block\": expected monitor or enforce");
    assert_error("\n\ndefault = \"Deny\"\n", 3, "unknown action \"Deny\": expected allow, alert, deny or kill");
    let text = "[[rule]]\nid = \"a\"\napis = [\"exec\"]\naction = \"block\"\n";
    assert_eq!(error(text), "line 4, column 10: unknown action \"block\": expected allow, alert, deny or kill");
    let text = "[[rule]]\nid = \"a\"\napis = [\n  \"exec\",\n  \"sytem\",\n]\naction = \"deny\"\n";
    assert_eq!(
        error(text),
        "line 5, column 3: unknown api \"sytem\": expected a class (exec, network, file, memory, library, debug, process, tamper, \
             privilege, admin, io_uring) \
         or a function name such as \"system\""
    );
    assert_error(
        "[[rule]]\nid = \"a\"\napis = [\"Network\"]\naction = \"deny\"\n",
        3,
        "did you mean the class \"network\"?",
    );
    assert_error("[[rule]]\nid = \"a\"\napis = [\"printf\"]\naction = \"deny\"\n", 3, "unknown api \"printf\"");
}

#[test]
fn bad_sinks() {
    let sink = |spec: &str| format!("mode = \"monitor\"\n[report]\nsink = {spec:?}\n");
    assert_error(
        &sink("syslog"),
        3,
        "unknown sink \"syslog\": expected \"stderr\", \"file:/absolute/path\" or \"fd:N\"",
    );
    assert_error(&sink("stdout"), 3, "\"fd:1\"");
    assert_error(&sink("file:events.jsonl"), 3, "is not absolute");
    assert_error(&sink("file:"), 3, "is not absolute");
    assert_error(&sink(&format!("file:/{}", "x".repeat(1024))), 3, "at most 1024");
    assert_error("[report]\nsink = \"file:/a\\u0000b\"\n", 2, "NUL");
    for fd in ["fd:-1", "fd:", "fd:x", "fd:3.0", "fd: 3", "fd:1000001", "fd:4294967299"] {
        assert_error(&sink(fd), 3, "expected a number from 0 to 1000000");
    }
    assert_eq!(parse(&sink("file:/a\"b c")).sink, Sink::File("/a\"b c".into()));
    assert_eq!(parse(&sink("fd:1000000")).sink, Sink::Fd(1_000_000));
}

#[test]
fn bad_rule_ids() {
    let rule = |id: &str| format!("\n[[rule]]\nid = {id:?}\napis = [\"exec\"]\naction = \"deny\"\n");
    assert_error(&rule(""), 3, "rule id is empty");
    assert_error(&rule(&"a".repeat(65)), 3, "is 65 bytes long: at most 64");
    assert_error(&rule("no shell"), 3, "contains ' '");
    assert_error(&rule("quote\"d"), 3, "contains '\"'");
    assert_error(&rule("new\nline"), 3, "contains '\\n'");
    assert_error(&rule("café"), 3, "contains 'é'");
    // Events say "rule":"default" when no rule matched.
    assert_error(&rule("default"), 3, "\"default\" is reserved");
    parse(&rule(&"a".repeat(64)));
    parse(&rule("A-z_0.9:x"));
}

#[test]
fn duplicate_rule_ids() {
    let text = "mode = \"enforce\"\n\n[[rule]]\nid = \"x\"\napis = [\"exec\"]\naction = \"deny\"\n\n\
                [[rule]]\nid = \"y\"\napis = [\"file\"]\naction = \"alert\"\n\n\
                [[rule]]\nid = \"x\"\napis = [\"network\"]\naction = \"alert\"\n";
    assert_eq!(error(text), "line 14, column 6: duplicate rule id \"x\" (first at line 4)");
}

#[test]
fn to_toml_round_trips() {
    for text in [EXAMPLE, "[report]\nsink = \"file:/x \\\" \\\\ y\"\n", ""] {
        let policy = parse(text);
        assert_eq!(parse(&policy.to_toml()), policy);
    }
}

/// `backstop = false` turns the run-time backstop off; it is on by default,
/// survives `to_toml`, and lands in the compiled table's flags.
#[test]
fn backstop_switch() {
    let on = Policy::parse("mode = \"monitor\"\n").unwrap();
    assert!(!on.backstop_off);
    let off = Policy::parse("mode = \"monitor\"\nbackstop = false\n").unwrap();
    assert!(off.backstop_off);
    assert_eq!(Policy::parse(&off.to_toml()).unwrap(), off);
    assert!(!on.to_toml().contains("backstop"));
    assert!(Policy::parse("backstop = true\n").is_ok_and(|p| !p.backstop_off));
    assert!(Policy::parse("backstop = \"no\"\n").is_err());
    let table = dfpatch_policy::describe(&off.compile()).unwrap();
    assert!(table.contains("backstop: off"), "{table}");
}

/// The rule language of issue 13, as its text gives it.
const MATCHERS: &str = r#"mode = "enforce"
default = "allow"
[[rule]]
id = "db"
apis = ["connect", "sendto"]
ip = ["127.0.0.1", "10.0.0.0/8", "::1"]
port = [6379, "8000-8099"]
action = "allow"

[[rule]]
id = "tools"
apis = ["exec"]
path = ["/usr/bin/git", "/usr/lib/git-core/**"]
command = ["git *"]
action = "allow"

[[rule]]
id = "data"
apis = ["file"]
path = ["/var/lib/app", "/var/lib/app/**"]
access = ["read", "write", "create"]
action = "allow"

[[rule]]
id = "no-exec-from-libraries"
apis = ["exec"]
caller = ["*/liblzma.so*"]
action = "deny"
"#;

#[test]
fn the_issue_13_example_parses_and_round_trips() {
    let policy = parse(MATCHERS);
    assert_eq!(policy.rules.len(), 4);
    assert_eq!(policy.rules[0].matchers.port, vec![(6379, 6379), (8000, 8099)]);
    assert_eq!(policy.rules[1].matchers.command, vec!["git *".to_string()]);
    assert_eq!(policy.rules[2].matchers.access, 7);
    assert_eq!(policy.rules[3].matchers.caller, vec!["*/liblzma.so*".to_string()]);
    // Rules with matchers are tried first; the default decides the rest.
    assert_eq!(policy.chain(ApiId::connect), vec![0]);
    assert_eq!(policy.chain(ApiId::execve), vec![1, 3]);
    assert_eq!(policy.decision(ApiId::execve), (Action::Allow, None));
    assert_eq!(parse(&policy.to_toml()), policy);
}

#[test]
fn matcher_errors_point_at_the_value() {
    let rule = |keys: &str| format!("[[rule]]\nid = \"r\"\napis = [\"open\"]\n{keys}\naction = \"deny\"\n");
    assert_error(&rule("ip = [\"127.0.0.1\"]"), 4, "ip does not apply to \"open\" (file class)");
    assert_error(&rule("command = [\"x\"]"), 4, "command does not apply");
    assert_error(&rule("path = []"), 4, "path is an empty list");
    assert_error(&rule("path = [\"/data/../etc\"]"), 4, "can never match");
    assert_error(&rule("path = [\"/a/[b\"]"), 4, "without its `]`");
    assert_error(&rule("access = [\"exec\"]"), 4, "unknown access \"exec\"");
    let net = |keys: &str| format!("[[rule]]\nid = \"r\"\napis = [\"network\"]\n{keys}\naction = \"deny\"\n");
    assert_error(&net("ip = [\"10.1.0.0/8\"]"), 4, "did you mean \"10.0.0.0/8\"");
    assert_error(&net("ip = [\"::1/129\"]"), 4, "bad prefix length");
    assert_error(&net("port = [70000]"), 4, "bad port 70000");
    assert_error(&net("port = [\"9-8\"]"), 4, "its first port is above its last");
    assert_error(&net("port = [true]"), 4, "bad port true");
    // A class takes a key that applies to some of its functions.
    assert!(Policy::parse(&net("ip = [\"::1\"]\nport = [\"1-2\"]")).is_ok());
    assert!(Policy::parse(&net("caller = [\"main\"]")).is_ok());
}

#[test]
fn a_rule_that_can_never_match_is_an_error() {
    let text = "[[rule]]\nid = \"all\"\napis = [\"exec\"]\naction = \"deny\"\n\
                [[rule]]\nid = \"git\"\napis = [\"execve\"]\npath = [\"/usr/bin/git\"]\naction = \"allow\"\n";
    assert_error(text, 6, "rule \"git\" can never match: rule \"all\" before it");
    // With matchers on the first, the second is reachable.
    let ok = "[[rule]]\nid = \"a\"\napis = [\"exec\"]\ncaller = [\"main\"]\naction = \"deny\"\n\
              [[rule]]\nid = \"b\"\napis = [\"execve\"]\naction = \"allow\"\n";
    assert!(Policy::parse(ok).is_ok());
}
