//! Learn mode: a policy that lets through exactly what monitored runs did
//! and refuses the rest, from their events (`dfpatch policy learn`).
//!
//! Allow rules come first, one per program (its commands and callers), per
//! destination address (its ports, APIs and callers), per kind of file
//! access (the files, folded into `folder/*` where many share a folder),
//! for the libraries loaded and per API of the other classes; then a deny
//! rule per class. The output is deterministic (sorted, stable ids) and
//! says in comments how many events each rule covers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use dfpatch_runtime::apis::{ApiId, Class};

use crate::model::toml_string;
use crate::{Policy, PolicyError};

/// Files of one folder that fold into `folder/*`.
pub const FOLD_AT: usize = 4;

/// The only places files are folded in: installed software, read-only in
/// practice. Elsewhere `folder/*` could allow a secret the runs never read
/// (`/etc/ssl/private/*`, `/home/al/.ssh/*`).
const FOLDED_UNDER: &[&str] = &["/usr/", "/lib/", "/lib32/", "/lib64/", "/opt/", "/nix/", "/snap/"];

/// Process ids below this are not taken for the run's own in names
/// (`v1`, `/proc/self/fd/1`): a program running as pid 1 is common.
const MIN_PID: u64 = 300;

/// Why events could not be learned from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LearnError {
    /// A line that is not a JSON object.
    #[error("{source_name}:{line}: not an event (a JSON object per line): {reason}")]
    NotAnEvent {
        /// The file (or `-`).
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What the JSON parser said.
        reason: String,
    },
    /// No monitored call at all.
    #[error("no events to learn from: run the program patched with --preset monitor-all first")]
    Empty,
    /// The policy made does not parse (a bug: reported rather than printed).
    #[error("the learned policy does not parse: {0}")]
    Invalid(#[from] PolicyError),
}

/// One event, reduced to what rules match on.
#[derive(Debug, Clone)]
struct Seen {
    api: String,
    class: Class,
    /// `main`, a module path, or None (code outside any file).
    caller: Option<String>,
    path: Option<String>,
    new_path: Option<String>,
    access: Vec<String>,
    command: Option<String>,
    ip: Option<String>,
    port: Option<u16>,
    /// An exec by name's program name (`execvp("git")`), as a glob.
    by_name: Option<String>,
}

/// `path` as a glob matching only itself, but for the process id `pid`
/// where it stands alone in a name (`temp-4242.rdb`), which becomes `*`:
/// the next run has another.
fn path_glob(path: &str, pid: Option<u64>) -> String {
    let escaped = escape(path);
    let Some(pid) = pid.filter(|&p| p >= MIN_PID).map(|p| p.to_string()) else { return escaped };
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while let Some(at) = rest.find(&pid) {
        let (before, after) = (&rest[..at], &rest[at + pid.len()..]);
        let digit_before = before.chars().last().is_some_and(|c| c.is_ascii_digit());
        let digit_after = after.chars().next().is_some_and(|c| c.is_ascii_digit());
        out.push_str(before);
        out.push_str(if digit_before || digit_after { &pid } else { "*" });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Reads one event line; None for events of no API (`dfpatch.degraded`).
fn seen(v: &serde_json::Value) -> Option<Seen> {
    let api = v.get("api")?.as_str()?.to_string();
    let class = Class::from_name(v.get("class")?.as_str()?)?;
    ApiId::from_name(&api)?;
    let exe = v.get("exe").and_then(|e| e.as_str());
    let module = v.get("caller").and_then(|c| c.get("module")).and_then(|m| m.as_str());
    let caller = match module {
        Some(m) if Some(m) == exe => Some("main".to_string()),
        Some(m) if m.starts_with('/') => Some(m.to_string()),
        _ => None,
    };
    let m = v.get("match");
    let text = |key: &str| m.and_then(|m| m.get(key)).and_then(|s| s.as_str()).map(String::from);
    let access = m
        .and_then(|m| m.get("access"))
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let port = m.and_then(|m| m.get("port")).and_then(|p| p.as_u64()).and_then(|p| u16::try_from(p).ok());
    let pid = v.get("pid").and_then(|p| p.as_u64());
    let named = v.get("args").and_then(|a| a.get("path")).and_then(|p| p.as_str());
    let by_name = named
        .filter(|name| !name.contains('/') && dfpatch_runtime::apis::BY_NAME.iter().any(|a| a.name() == api))
        .map(escape);
    Some(Seen {
        by_name,
        api,
        class,
        caller,
        path: text("path").map(|p| path_glob(&p, pid)),
        new_path: text("new_path").map(|p| path_glob(&p, pid)),
        access,
        command: text("command"),
        ip: text("ip"),
        port,
    })
}

/// One allow rule being gathered.
#[derive(Default)]
struct Group {
    apis: BTreeSet<String>,
    paths: BTreeSet<String>,
    commands: BTreeSet<String>,
    ports: BTreeSet<u16>,
    callers: BTreeSet<String>,
    /// A call made from code outside any file: no `caller` key.
    anonymous_caller: bool,
    access: Vec<String>,
    ip: Option<String>,
    /// An exec by name's API: the rule is for it alone.
    by_api: Option<String>,
    events: usize,
}

impl Group {
    fn add(&mut self, s: &Seen) {
        self.events += 1;
        self.apis.insert(s.api.clone());
        match &s.caller {
            Some(c) => {
                self.callers.insert(c.clone());
            }
            None => self.anonymous_caller = true,
        }
    }
}

/// Reads JSON Lines `text` (from `source_name`) into events.
fn read(source_name: &str, text: &str, out: &mut Vec<Seen>) -> Result<(), LearnError> {
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| LearnError::NotAnEvent {
            source_name: source_name.to_string(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        if !v.is_object() {
            let reason = "not an object".to_string();
            return Err(LearnError::NotAnEvent { source_name: source_name.to_string(), line: i + 1, reason });
        }
        out.extend(seen(&v));
    }
    Ok(())
}

/// The learned policy's text, from event files given as (name, contents);
/// `sink` is its `[report] sink` (e.g. `stderr`).
pub fn learn(files: &[(String, String)], sink: &str) -> Result<String, LearnError> {
    let mut events = Vec::new();
    for (name, text) in files {
        read(name, text, &mut events)?;
    }
    if events.is_empty() {
        return Err(LearnError::Empty);
    }
    let mut exec: BTreeMap<String, Group> = BTreeMap::new();
    let mut net: BTreeMap<String, Group> = BTreeMap::new();
    let mut files_by_access: BTreeMap<String, Group> = BTreeMap::new();
    let mut libraries = Group::default();
    let mut other: BTreeMap<String, Group> = BTreeMap::new();
    // Events a rule cannot be learned from: by API.
    let mut unlearned: BTreeMap<String, usize> = BTreeMap::new();
    for s in &events {
        if let Some(why) = unlearnable(s) {
            *unlearned.entry(format!("{} ({why})", s.api)).or_default() += 1;
            continue;
        }
        let g = match (s.class, &s.path, &s.ip) {
            (Class::Exec, None, _) if s.by_name.is_some() => {
                // Decided, at each step of its `PATH` search, by this API's
                // rules: one for the name.
                let name = s.by_name.clone().unwrap_or_default();
                let g = exec.entry(format!("{} {name}", s.api)).or_default();
                g.by_api = Some(s.api.clone());
                g.paths.insert(name);
                if let Some(c) = &s.command {
                    g.commands.insert(escape(c));
                }
                g
            }
            (Class::Exec, Some(path), _) => {
                let g = exec.entry(path.clone()).or_default();
                g.paths.insert(path.clone());
                if let Some(c) = &s.command {
                    g.commands.insert(escape(c));
                }
                g
            }
            (Class::Network, _, Some(ip)) => {
                let g = net.entry(format!("{} ip {ip}", s.api)).or_default();
                g.ip = Some(ip.clone());
                g.ports.extend(s.port);
                g
            }
            (Class::Network, Some(path), None) => {
                let g = net.entry(format!("{} path {path}", s.api)).or_default();
                g.paths.insert(path.clone());
                g
            }
            (Class::File, Some(path), _) if !s.access.is_empty() => {
                let g = files_by_access.entry(s.access.join("+")).or_default();
                g.access = s.access.clone();
                g.paths.insert(path.clone());
                g.paths.extend(s.new_path.clone());
                g
            }
            (Class::Library, Some(path), _) => {
                libraries.paths.insert(path.clone());
                &mut libraries
            }
            _ => other.entry(s.api.clone()).or_default(),
        };
        g.add(s);
    }
    let mut out = String::new();
    let _ = writeln!(out, "# Learned by `dfpatch policy learn` from {} events ({} files).", events.len(), files.len());
    let _ = writeln!(out, "# Allows what the monitored runs did; refuses the rest of every class.");
    if !unlearned.is_empty() {
        let _ = writeln!(out, "# Not learned (refused under this policy):");
        for (what, n) in &unlearned {
            let _ = writeln!(out, "#   {what}: {n} event{}", if *n == 1 { "" } else { "s" });
        }
    }
    let _ = writeln!(out, "mode = \"enforce\"\ndefault = \"allow\"\n\n[report]\nsink = {}", toml_string(sink));
    let mut n = 0;
    let mut rule = |out: &mut String, id: &str, g: &Group, body: String| {
        n += 1;
        let _ = writeln!(out, "\n# {} event{}", g.events, if g.events == 1 { "" } else { "s" });
        let _ = write!(out, "[[rule]]\nid = \"{id}-{n}\"\n{body}");
        if !g.anonymous_caller && !g.callers.is_empty() {
            let _ = writeln!(
                out,
                "caller = [{}]",
                list(g.callers.iter().map(|c| if c == "main" { c.clone() } else { escape(c) }))
            );
        }
        let _ = writeln!(out, "action = \"allow\"");
    };
    for g in exec.values() {
        let apis = toml_string(g.by_api.as_deref().unwrap_or("exec"));
        let path = list(g.paths.iter().cloned());
        for commands in chunks(&g.commands) {
            let mut body = format!("apis = [{apis}]\npath = [{path}]\n");
            if !commands.is_empty() {
                let _ = writeln!(body, "command = [{}]", list(commands.into_iter()));
            }
            rule(&mut out, "exec", g, body);
        }
    }
    for g in net.values() {
        let mut body = format!("apis = [{}]\n", list(g.apis.iter().cloned()));
        if let Some(ip) = &g.ip {
            let _ = writeln!(body, "ip = [{}]", toml_string(ip));
            let ports: BTreeSet<String> = g.ports.iter().map(u16::to_string).collect();
            for ports in chunks(&ports) {
                let mut body = body.clone();
                if !ports.is_empty() {
                    let _ = writeln!(body, "port = [{}]", ports.join(", "));
                }
                rule(&mut out, "network", g, body);
            }
        } else {
            let _ = writeln!(body, "path = [{}]", list(g.paths.iter().cloned()));
            rule(&mut out, "network", g, body);
        }
    }
    for g in files_by_access.values() {
        let access = list(g.access.iter().cloned());
        for paths in chunks(&fold(&g.paths)) {
            let body = format!("apis = [\"file\"]\npath = [{}]\naccess = [{access}]\n", list(paths.into_iter()));
            rule(&mut out, "files", g, body);
        }
    }
    for paths in chunks(&libraries.paths).into_iter().filter(|_| libraries.events > 0) {
        let body = format!("apis = [\"library\"]\npath = [{}]\n", list(paths.into_iter()));
        rule(&mut out, "libraries", &libraries, body);
    }
    for (api, g) in &other {
        rule(&mut out, "calls", g, format!("apis = [{}]\n", toml_string(api)));
    }
    let observed: BTreeSet<&str> = events.iter().map(|s| s.class.name()).collect();
    let allowed = Policy::parse(&out)?;
    for class in Class::ALL {
        // `process` (fork, clone) only when the runs reported some; `tamper`
        // is refused unless a rule allows it; none for a class whose every
        // API an allow rule above decides whole.
        let rest = crate::Rule {
            id: String::new(),
            apis: vec![crate::ApiSelector::Class(class)],
            action: crate::Action::Deny,
            matchers: Default::default(),
        };
        if class == Class::Tamper
            || (class == Class::Process && !observed.contains(class.name()))
            || crate::shadowed_by(&allowed.rules, &rest).is_some()
        {
            continue;
        }
        let _ =
            writeln!(out, "\n# the rest of {}\n[[rule]]\nid = \"no-{}\"", class.name(), class.name().replace('_', "-"));
        let _ = writeln!(out, "apis = [{}]\naction = \"deny\"", toml_string(class.name()));
    }
    Policy::parse(&out)?;
    Ok(out)
}

/// Why no rule is learned from `s`, if so: a `tamper` call (never allowed
/// by learning), or a call of an API rules match on by a fact the event
/// lacks (an allow rule for the whole API would let every call through).
fn unlearnable(s: &Seen) -> Option<&'static str> {
    use dfpatch_runtime::rules::{has_address, runs_program};
    let api = ApiId::from_name(&s.api)?;
    if s.class == Class::Tamper {
        return Some("tamper: never learned");
    }
    if s.ip.as_deref().is_some_and(|ip| crate::matchers::parse_ip(ip).is_err()) {
        return Some("a bad address");
    }
    // (Paths are globs already; a command and a caller are escaped when written.)
    let bad_path = |p: &Option<String>| p.as_deref().is_some_and(|p| crate::matchers::check_path_glob(p).is_err());
    let bad_glob = |t: &Option<String>| t.as_deref().is_some_and(|t| crate::matchers::check_glob(&escape(t)).is_err());
    if bad_path(&s.path) || bad_path(&s.new_path) || bad_path(&s.by_name) {
        return Some("a path no rule can name");
    }
    if bad_glob(&s.command)
        || s.caller.as_deref().is_some_and(|c| c != "main" && crate::matchers::check_path_glob(&escape(c)).is_err())
    {
        return Some("a command or caller no rule can name");
    }
    let lacks = match s.class {
        Class::Network => has_address(api) && s.ip.is_none() && s.path.is_none(),
        Class::Exec => runs_program(api) && s.path.is_none() && s.by_name.is_none(),
        Class::File => s.path.is_none() || s.access.is_empty(),
        Class::Library => s.path.is_none(),
        _ => false,
    };
    lacks.then_some("no address or path in the event")
}

/// `items` in lists of at most [`crate::matchers::MAX_ENTRIES`] (one,
/// empty, when there are none).
fn chunks(items: &BTreeSet<String>) -> Vec<Vec<String>> {
    let all: Vec<String> = items.iter().cloned().collect();
    if all.is_empty() {
        return vec![Vec::new()];
    }
    all.chunks(crate::matchers::MAX_ENTRIES).map(<[String]>::to_vec).collect()
}

/// Quoted TOML strings, comma separated.
fn list(items: impl Iterator<Item = String>) -> String {
    items.map(|s| toml_string(&s)).collect::<Vec<_>>().join(", ")
}

/// `text` as a glob matching only itself.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Files (as globs) folded: those of a folder with [`FOLD_AT`] or more
/// become `folder/*` (only under [`FOLDED_UNDER`]).
fn fold(paths: &BTreeSet<String>) -> BTreeSet<String> {
    let mut by_folder: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for p in paths {
        let folder = p.rsplit_once('/').map_or("", |(f, _)| f);
        by_folder.entry(if folder.is_empty() { "/" } else { folder }).or_default().push(p);
    }
    let mut out = BTreeSet::new();
    for (folder, files) in by_folder {
        let installed = FOLDED_UNDER.iter().any(|under| folder.starts_with(under));
        if files.len() >= FOLD_AT && installed {
            out.insert(format!("{folder}/*"));
        } else {
            out.extend(files.into_iter().cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(api: &str, class: &str, module: &str, m: &str) -> String {
        format!(r#"{{"api":"{api}","class":"{class}","exe":"/app/x","caller":{{"module":"{module}"}},"match":{m}}}"#)
    }

    #[test]
    fn learns_and_folds() {
        let mut lines = vec![
            event("connect", "network", "/app/x", r#"{"ip":"127.0.0.1","port":6379}"#),
            event("system", "exec", "/app/x", r#"{"path":"/usr/bin/dash","command":"ls *"}"#),
            event("dlopen", "library", "/lib/libc.so.6", r#"{"path":"libz.so.1"}"#),
            event("ptrace", "debug", "/app/x", "{}"),
            r#"{"api":"dfpatch.degraded","class":"runtime"}"#.to_string(),
            event("tamper.mprotect", "tamper", "/app/x", "{}"),
            event("connect", "network", "/app/x", "{}"),
            event("io_uring_setup", "io_uring", "", "{}"),
        ];
        for f in ["a", "b", "c", "d"] {
            lines.push(event("open", "file", "/app/x", &format!(r#"{{"path":"/usr/share/d/{f}","access":["read"]}}"#)));
            lines.push(event(
                "open",
                "file",
                "/app/x",
                &format!(r#"{{"path":"/home/al/.ssh/{f}","access":["read"]}}"#),
            ));
        }
        lines.push(event("open", "file", "/app/x", r#"{"path":"/etc/passwd","access":["read"]}"#));
        let text = learn(&[("e.jsonl".into(), lines.join("\n"))], "stderr").unwrap_or_else(|e| panic!("{e}"));
        let policy = Policy::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(text.contains("\"/etc/passwd\", \"/home/al/.ssh/a\""), "{text}");
        assert!(
            text.contains("\"/home/al/.ssh/d\", \"/usr/share/d/*\"]"),
            "not folded outside installed software: {text}"
        );
        assert!(text.contains("command = [\"ls \\\\*\"]"), "{text}");
        assert!(text.contains("ip = [\"127.0.0.1\"]\nport = [6379]\ncaller = [\"main\"]"), "{text}");
        assert!(text.contains("#   connect (no address or path in the event): 1 event"), "{text}");
        assert!(text.contains("#   tamper.mprotect (tamper: never learned): 1 event"), "{text}");
        assert!(!text.contains("apis = [\"connect\"]\ncaller") && !text.contains("tamper.mprotect\"]"), "{text}");
        // The ring made from code outside any file: allowed whole, so no `no-io-uring`.
        assert!(text.contains("apis = [\"io_uring_setup\"]\naction") && !text.contains("no-io-uring"), "{text}");
        assert_eq!(policy.mode, crate::Mode::Enforce);
        assert!(policy.rules.iter().any(|r| r.id == "no-exec"), "{text}");
        assert!(!policy.rules.iter().any(|r| r.id == "no-process"), "{text}");
        assert_eq!(learn(&[("e".into(), "{}\n".into())], "stderr"), Err(LearnError::Empty));
        assert!(matches!(learn(&[("e".into(), "x\n".into())], "stderr"), Err(LearnError::NotAnEvent { line: 1, .. })));
        assert_eq!(path_glob("/d/temp-4242.rdb", Some(4242)), "/d/temp-*.rdb");
        assert_eq!(path_glob("/d/142420", Some(4242)), "/d/142420");
        assert_eq!(path_glob("/d/a*", None), "/d/a\\*");
        assert_eq!(path_glob("/srv/v1/a", Some(1)), "/srv/v1/a", "pid 1 is not looked for");
    }

    #[test]
    fn learns_what_used_to_fail() {
        let long = format!("/srv/{}", "x".repeat(300));
        let mut lines = vec![
            event("open", "file", "/app/x", &format!(r#"{{"path":"{long}","access":["read"]}}"#)),
            event("connect", "network", "/app/x", r#"{"path":"@a\u0000\u0000b"}"#),
            event("bind", "network", "/app/x", r#"{"ip":"0.0.0.0","port":80}"#),
            event("connect", "network", "/app/x", r#"{"ip":"0.0.0.0","port":443}"#),
            // An exec by name: no path in `match`, the name in `args`.
            r#"{"api":"execvp","class":"exec","exe":"/app/x","caller":{"module":"/app/x"},"args":{"path":"git"},"match":{"command":"git status"}}"#.to_string(),
        ];
        for i in 0..1100 {
            lines.push(event("open", "file", "/app/x", &format!(r#"{{"path":"/srv/d/f{i}","access":["write"]}}"#)));
        }
        let text = learn(&[("e".into(), lines.join("\n"))], "stderr").unwrap_or_else(|e| panic!("{e}"));
        let policy = Policy::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(text.contains(&long), "a long path is learned");
        assert!(text.contains("#   connect (a path no rule can name): 1 event"), "{text}");
        // bind and connect apart: no cross product of their ports.
        assert!(text.contains("apis = [\"bind\"]\nip = [\"0.0.0.0\"]\nport = [80]"), "{text}");
        assert!(text.contains("apis = [\"connect\"]\nip = [\"0.0.0.0\"]\nport = [443]"), "{text}");
        assert!(text.contains("apis = [\"execvp\"]\npath = [\"git\"]\ncommand = [\"git status\"]"), "{text}");
        // 1,100 files: two rules (at most 1,024 entries a list).
        let writes = policy.rules.iter().filter(|r| r.matchers.access == 2).count();
        assert_eq!(writes, 2, "{text}");
    }
}
