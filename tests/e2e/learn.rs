//! Issue 13's learn loop on real programs from Debian: `redis-server`
//! (exercised with `redis-cli`) and `python3 -m http.server` (exercised
//! over HTTP). Each is patched with `monitor-all`, run through its
//! workload, its events learned with `dfpatch policy learn`, patched again
//! with the learned policy at the same path and run through the same
//! workload: the same answers, no refusal. Then what the runs never did is
//! refused: redis connecting out to another address (`REPLICAOF
//! 127.0.0.2`), the web server reading a secret file through a symbolic
//! link in the folder it serves, and running a CGI shell script.

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

/// The monitor-all preset with its events going to `sink`.
fn monitor_all(sink: &Path) -> String {
    let text = dfpatch_policy::preset("monitor-all").unwrap();
    text.replace("sink = \"stderr\"", &format!("sink = \"file:{}\"", sink.display()))
}

/// `dfpatch policy learn --sink file:SINK EVENTS`, checked to succeed.
fn learn(events: &Path, sink: &Path) -> String {
    let o = dfpatch(&[
        "policy".as_ref(),
        "learn".as_ref(),
        "--sink".as_ref(),
        format!("file:{}", sink.display()).as_ref(),
        events.as_os_str(),
    ]);
    assert!(o.status.success(), "policy learn: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Checks what a learned policy must never do: allow an API whole, or
/// fold files outside installed software into `folder/*`.
fn check_learned(learned: &str) {
    let policy = dfpatch_policy::Policy::parse(learned).unwrap_or_else(|e| panic!("{e}\n{learned}"));
    for rule in policy.rules.iter().filter(|r| r.action == dfpatch_policy::Action::Allow) {
        assert!(!rule.matchers.is_empty(), "rule {} allows its apis whole:\n{learned}", rule.id);
        for path in rule.matchers.path.iter().filter(|p| p.ends_with("/*")) {
            assert!(path.starts_with("/usr/") || path.starts_with("/lib"), "{path} folded:\n{learned}");
        }
    }
}

/// The events wanting a refusal.
fn refused(evs: &[Value]) -> Vec<&Value> {
    evs.iter().filter(|e| e.get("policy_action").unwrap_or(&e["action"]) == "deny").collect()
}

/// Waits for `check` to hold, up to `secs` seconds.
fn wait_for(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Starts `cmd`, retrying while its file is briefly busy (see `run_command`).
fn spawn(cmd: &mut Command) -> Child {
    for _ in 0..100 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(10))
            }
            other => return other.expect("start the server"),
        }
    }
    panic!("{:?} stayed busy", cmd.get_program())
}

/// Ends a server and waits for it.
fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let o = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("run redis-cli");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Starts the redis at `exe` on `port` with its data in `data`.
fn start_redis(exe: &Path, port: u16, data: &Path) -> Child {
    let _ = std::fs::remove_dir_all(data);
    std::fs::create_dir_all(data).unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = spawn(&mut cmd);
    assert!(wait_for(20, || redis_cli(port, &["ping"]) == "PONG"), "redis {} did not answer", exe.display());
    child
}

/// The redis workload: its answers.
fn redis_workload(exe: &Path, port: u16, data: &Path) -> Vec<String> {
    let child = start_redis(exe, port, data);
    let answers = [
        vec!["set", "a", "1"],
        vec!["get", "a"],
        vec!["incr", "n"],
        vec!["lpush", "l", "x", "y"],
        vec!["lrange", "l", "0", "-1"],
        vec!["save"],
    ]
    .iter()
    .map(|args| redis_cli(port, args))
    .collect();
    let _ = redis_cli(port, &["shutdown", "nosave"]);
    stop(child);
    answers
}

#[test]
fn learned_redis_policy_passes_its_workload_and_refuses_a_connection_elsewhere() {
    let dir = std::fs::canonicalize(scratch("learn-redis")).unwrap();
    let original = dir.join("redis-server.orig");
    std::fs::copy("/usr/bin/redis-server", &original).expect("redis-server (apt-get install redis-server)");
    let exe = dir.join("redis-server");
    let data = dir.join("data");
    let port = free_port();
    let want = vec!["OK", "1", "1", "2", "y\nx", "OK"];

    let watched = dir.join("monitor.jsonl");
    patch(&original, &exe, &monitor_all(&watched));
    assert_eq!(redis_workload(&exe, port, &data), want, "monitored");
    let sink = dir.join("enforce.jsonl");
    let learned = learn(&watched, &sink);
    std::fs::write(dir.join("learned.toml"), &learned).unwrap();
    assert!(learned.contains(&format!("port = [{port}]")), "{learned}");
    check_learned(&learned);

    let _ = std::fs::remove_file(&exe);
    patch(&original, &exe, &learned);
    assert_eq!(redis_workload(&exe, port, &data), want, "with the learned policy:\n{learned}");
    let evs = events(&sink);
    assert!(refused(&evs).is_empty(), "the learned policy refused part of the workload: {evs:#?}\n{learned}");

    // What the workload never did: connecting to another address.
    let child = start_redis(&exe, port, &data);
    let elsewhere = free_port().to_string();
    assert_eq!(redis_cli(port, &["replicaof", "127.0.0.2", &elsewhere]), "OK");
    let connect_refused = || {
        events(&sink).iter().any(|e| e["api"] == "connect" && e["action"] == "deny" && e["match"]["ip"] == "127.0.0.2")
    };
    let seen = wait_for(20, connect_refused);
    let _ = redis_cli(port, &["replicaof", "no", "one"]);
    let _ = redis_cli(port, &["shutdown", "nosave"]);
    stop(child);
    assert!(seen, "redis's connection to 127.0.0.2 was not refused: {:#?}", events(&sink));
}

/// `GET path` on `port`: the status code and the body.
fn get(port: u16, path: &str) -> (u32, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web server");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let code = reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (code, body)
}

/// Starts `python -m http.server --cgi` serving `www` on `port`.
fn start_web(python: &Path, www: &Path, port: u16) -> Child {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "http.server", "--cgi", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(www)
        .env("PYTHONHOME", "/usr")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = spawn(&mut cmd);
    assert!(
        wait_for(30, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "{} -m http.server did not listen",
        python.display()
    );
    child
}

fn web_workload(python: &Path, www: &Path, port: u16) -> Vec<(u32, String)> {
    let child = start_web(python, www, port);
    let answers = ["/index.html", "/missing", "/sub/b.txt"].iter().map(|p| get(port, p)).collect();
    stop(child);
    answers
}

#[test]
fn learned_web_server_policy_passes_its_workload_and_refuses_a_secret_and_a_shell() {
    let dir = std::fs::canonicalize(scratch("learn-web")).unwrap();
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("sub")).unwrap();
    std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
    std::fs::write(www.join("index.html"), "hello\n").unwrap();
    std::fs::write(www.join("sub/b.txt"), "b\n").unwrap();
    std::fs::write(dir.join("secret.txt"), "secret\n").unwrap();
    let _ = std::fs::remove_file(www.join("link.txt"));
    std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("link.txt")).unwrap();
    let script = www.join("cgi-bin/run.sh");
    std::fs::write(&script, "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let real: PathBuf = std::fs::canonicalize("/usr/bin/python3").expect("python3");
    let original = dir.join("python.orig");
    std::fs::copy(&real, &original).unwrap();
    let python = dir.join(real.file_name().unwrap());
    let port = free_port();
    let want = vec![(200, "hello\n".to_string()), (404, String::new()), (200, "b\n".to_string())];
    let answers = |got: Vec<(u32, String)>| -> Vec<(u32, String)> {
        // (A 404's body is the server's error page: its code is the answer.)
        got.into_iter().map(|(code, body)| (code, if code == 404 { String::new() } else { body })).collect()
    };

    let watched = dir.join("monitor.jsonl");
    patch(&original, &python, &monitor_all(&watched));
    assert_eq!(answers(web_workload(&python, &www, port)), want, "monitored");
    let sink = dir.join("enforce.jsonl");
    let learned = learn(&watched, &sink);
    std::fs::write(dir.join("learned.toml"), &learned).unwrap();
    check_learned(&learned);

    let _ = std::fs::remove_file(&python);
    patch(&original, &python, &learned);
    assert_eq!(answers(web_workload(&python, &www, port)), want, "with the learned policy:\n{learned}");
    let evs = events(&sink);
    assert!(refused(&evs).is_empty(), "the learned policy refused part of the workload: {evs:#?}");

    // What the workload never did: a secret file behind a link, a shell.
    let child = start_web(&python, &www, port);
    let (code, body) = get(port, "/link.txt");
    let (_, cgi) = get(port, "/cgi-bin/run.sh");
    stop(child);
    let evs = events(&sink);
    let secret = dir.join("secret.txt").display().to_string();
    assert!(code != 200 && !body.contains("secret"), "the secret was served: {code} {body}");
    assert!(
        evs.iter().any(|e| e["class"] == "file" && e["action"] == "deny" && e["match"]["path"] == secret.as_str()),
        "no refusal of {secret}: {evs:#?}"
    );
    assert!(!cgi.contains("ran"), "the CGI shell script ran: {cgi}");
    assert!(
        evs.iter().any(|e| (e["class"] == "exec" || e["class"] == "process") && e["action"] == "deny"),
        "the shell was not refused: {evs:#?}"
    );
}
