#!/usr/bin/env python3
"""Corpus sweep: patch every x86-64 ELF executable under some folders and check that the
patched programs behave like the originals.

    sudo python3 tests/sweep/sweep.py [--dfpatch PATH] [--jobs N] [--keep] [--json FILE] DIR|FILE...

For every ELF file with an execute bit found under the arguments (recursively; symbolic
links to such files count, and name the file they point to):

1. dfpatch patches it, with the bundled "monitor-all" policy (every monitored call
   reported, nothing blocked) whose sink is changed from stderr to a file of ours. dfpatch
   either patches it (exit 0) or refuses it with a one-line reason (exit 2): not x86-64,
   shared library, static executable (for now)...
2. The original and the patched file each run with `--version`, with `--help` and with no
   arguments, in the order original, patched, original, under every name the file has in
   the swept folders. Each run has a fresh sandbox (see run_sandboxed): its own mount, PID,
   network, IPC and UTS namespaces, everything read-only except a private /tmp, /run and
   /dev, stdin from /dev/null, a fixed environment, a time limit. The patched file is
   bind-mounted over the original's path, so argv[0], /proc/self/exe and multi-call
   behaviour are the same as for the original.
3. Exit status, stdout and stderr of the patched run are compared with the original's.
   What differs between the two runs of the original is not compared (nondeterministic).
   A difference or crash is confirmed by more runs of both before it is reported.

The sweep passes (exit 0) when every file was patched or refused with a reason, no patched
program crashed (was killed by a signal where the original was not), at least 99% of the
compared files behaved the same, the patched programs reported events, and every event
was a JSON object naming the program's own path as "exe". Otherwise it exits 1 and lists what to look at; 2 means it could not
run. See tests/sweep/README.md.

Python 3.11 standard library only; must run as root (namespaces, mounts).
"""

import argparse
import ctypes
import difflib
import errno
import json
import multiprocessing
import os
import re
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback

# The three ways every program is run. () is "no arguments" (stdin is /dev/null).
MODES = [("--version",), ("--help",), ()]

# Names that are never run (they are still patched). Matched against the name the file is
# run under (a link's own name, e.g. "reboot" -> systemctl), so the file can still run
# under its other names. Each line says why.
SKIP = {
    "reboot": "stops the machine (systemctl link; falls back to reboot(2))",
    "halt": "stops the machine (systemctl link; falls back to reboot(2))",
    "poweroff": "stops the machine (systemctl link; falls back to reboot(2))",
    "shutdown": "schedules a shutdown (systemctl link)",
    "init": "is the init system (systemd): not to be started as a plain program",
    "telinit": "changes the system's runlevel (systemctl link)",
    "runlevel": "reads and acts on the init system's state (systemctl link)",
    "killall5": "sends a signal to every process",
    "agetty": "takes over a terminal line and waits for a login",
    "getty": "takes over a terminal line and waits for a login",
    "sulogin": "asks for the root password on the console",
    "login": "starts a login session (utmp/wtmp/btmp, PAM, terminal)",
}

# The whole environment of every run, the same for the original and the patched program.
# HOME and the working directory are a fresh empty directory on the private /tmp.
RUN_DIR = "/tmp/run"
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": RUN_DIR,
    "PWD": RUN_DIR,
    "TMPDIR": "/tmp",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/sh",
    "LANG": "C",
    "TZ": "UTC",
    "TERM": "dumb",
    "COLUMNS": "80",
    "LINES": "24",
}

# Largest stdout, stderr or event file a run may write (RLIMIT_FSIZE): `yes` and the like
# die of SIGXFSZ there, originals and patched alike.
OUTPUT_LIMIT = 16 << 20

# Places every run gets a private, empty copy of: folders and files under them cannot be
# swept, and the scratch directory cannot be there.
PRIVATE = ("/tmp", "/run", "/dev", "/proc")

# Output normalisation, applied to stdout and stderr of every run before comparing.
# Kept minimal on purpose: each rule says which real, legitimate difference it removes.
# (Process ids need none: every program runs as pid 2 of its own PID namespace. Paths need
# none: the working directory, HOME and the bind-mounted file are at the same paths in
# every run.)
NORMALISE = [
    # Clock times ("12:34:56", "8:05:28", "12:34:56.789"): `date`, `ps`, Java's logger...
    # Two runs can fall in different seconds.
    (re.compile(rb"\b\d{1,2}:\d\d:\d\d(\.\d+)?\b"), b"<time>"),
]


def normalise(data):
    for pattern, replacement in NORMALISE:
        data = pattern.sub(replacement, data)
    return data


# ---------------------------------------------------------------------------------------
# Finding the files


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def find_files(roots):
    """Returns [{id, real, names}]: one entry per distinct ELF file with an execute bit
    (by device and inode), with every path under `roots` that reaches it: the file itself,
    hard links, symbolic links. Every ELF file goes to dfpatch, which patches x86-64
    executables and refuses the rest (32-bit, other machines, shared libraries...) with a
    reason."""
    by_inode = {}

    def consider(path):
        try:
            st = os.stat(path)  # follows symbolic links
        except OSError:
            return
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 and is_elf(path):
            by_inode.setdefault((st.st_dev, st.st_ino), set()).add(os.path.abspath(path))

    for root in roots:
        if os.path.isdir(root):
            for folder, dirs, files in os.walk(root):  # symbolic links to folders not followed
                for name in files:
                    consider(os.path.join(folder, name))
        else:
            consider(root)

    result = []
    for names in by_inode.values():
        names = sorted(names)
        # The file's own name, if it is among them; else where the first link leads.
        real = next((n for n in names if os.path.realpath(n) == n), os.path.realpath(names[0]))
        result.append({"real": real, "names": names})
    result.sort(key=lambda e: e["real"])
    for number, entry in enumerate(result):
        entry["id"] = number
    return result


# ---------------------------------------------------------------------------------------
# The sandbox: namespaces and mounts through the C library

libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1
PR_SET_PDEATHSIG = 1


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None
    check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
          f"mount {source} on {target}")


def set_read_only(path, read_only, recursive):
    """mount_setattr(2): only the read-only flag changes; nosuid, noexec... are kept."""
    attr = MountAttr(MOUNT_ATTR_RDONLY if read_only else 0, 0 if read_only else MOUNT_ATTR_RDONLY, 0, 0)
    check(libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
                       ctypes.c_uint(AT_RECURSIVE if recursive else 0), ctypes.byref(attr),
                       ctypes.c_size_t(ctypes.sizeof(attr))), f"mount_setattr {path}")


def die_with_parent(parent):
    """SIGKILL when the parent goes (so that killing a worker takes its sandbox along)."""
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if os.getppid() != parent:
        os._exit(1)


def build_sandbox(binary, target, events_dir):
    """Runs as pid 1 of the new namespaces, in the new mount namespace. Afterwards:
    - nothing done here is seen outside (every mount private);
    - every file system is read-only (programs run with no arguments as root must not
      change the machine: ldconfig, iconvconfig, pwck...), except
    - /tmp and /run: fresh empty tmpfs (no daemon sockets: systemctl, dbus...),
    - /dev: a tmpfs with null, zero, full, random, urandom, tty only (no disks),
    - /proc: a new procfs for the new PID namespace,
    - events_dir: writable, for the patched program's events,
    - `binary` (the original or the patched file) bind-mounted over `target`,
    - RUN_DIR: an empty directory, the working directory and HOME."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    set_read_only("/", True, recursive=True)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=256m")
    mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=16m")
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=1m")
    for name, major_minor in (("null", (1, 3)), ("zero", (1, 5)), ("full", (1, 7)),
                              ("random", (1, 8)), ("urandom", (1, 9)), ("tty", (5, 0))):
        os.mknod(f"/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(*major_minor))
        os.chmod(f"/dev/{name}", 0o666)
    for name, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                     ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(to, f"/dev/{name}")
    os.mkdir("/dev/shm")
    os.chmod("/dev/shm", 0o1777)
    os.mkdir("/dev/pts")
    mount(events_dir, events_dir, None, MS_BIND)
    set_read_only(events_dir, False, recursive=False)
    mount(binary, target, None, MS_BIND)
    os.mkdir(RUN_DIR, 0o755)


def exec_program(name, args, out_fd, err_fd):
    """The program's process (pid 2): plain environment, then execve."""
    try:
        os.chdir(RUN_DIR)
        os.umask(0o022)
        # Python ignores SIGPIPE and SIGXFSZ, and ignored signals stay ignored across
        # execve: give the program the defaults, and an empty signal mask.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.execve(name, [name, *args], ENV)
    except BaseException as e:  # noqa: BLE001 - report anything, then leave
        os.write(2, f"sweep: cannot execute {name}: {e}\n".encode())
    os._exit(127)


def run_sandboxed(binary, target, name, args, out_path, err_path, events_dir, timeout):
    """Runs `name args` with `binary` mounted over `target` (= realpath of name) in a fresh
    sandbox. Returns {"kind": "exit"|"signal"|"timeout"|"error", "code", "seconds",
    "stdout", "stderr"}. Processes: this one forks a launcher, which unshares the
    namespaces and forks the namespace's pid 1 (which builds the sandbox, forks the
    program as pid 2, waits for it with the time limit, and reports its exact wait status
    through a pipe). When pid 1 exits, the kernel kills whatever the program left behind
    (daemons, children) in that PID namespace."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    out_fd, err_fd = os.open(out_path, flags, 0o600), os.open(err_path, flags, 0o600)
    report_r, report_w = os.pipe()
    me = os.getpid()
    launcher = os.fork()
    if launcher == 0:
        try:
            os.close(report_r)
            die_with_parent(me)
            check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
                  "unshare")
            init = os.fork()
            if init == 0:
                sandbox_init(binary, target, name, args, out_fd, err_fd, events_dir, timeout, report_w)
            os.waitpid(init, 0)
        except BaseException:  # noqa: BLE001
            os.write(report_w, json.dumps({"kind": "error", "error": traceback.format_exc()}).encode())
        os._exit(0)
    os.close(report_w)
    os.close(out_fd)
    os.close(err_fd)
    # pid 1 enforces the time limit; this is only a guard against the sandbox itself hanging.
    pidfd = os.pidfd_open(launcher)
    if not select.select([pidfd], [], [], timeout + 30)[0]:
        os.kill(launcher, signal.SIGKILL)
    os.close(pidfd)
    os.waitpid(launcher, 0)
    with os.fdopen(report_r, "rb") as r:
        raw = r.read()
    try:
        result = json.loads(raw)
    except ValueError:
        result = {"kind": "error", "error": f"no report from the sandbox ({raw[:200]!r})"}
    with open(out_path, "rb") as f:
        result["stdout"] = f.read()
    with open(err_path, "rb") as f:
        result["stderr"] = f.read()
    return result


def sandbox_init(binary, target, name, args, out_fd, err_fd, events_dir, timeout, report_w):
    """pid 1 of the new PID namespace. Never returns."""
    try:
        die_with_parent(os.getppid())
        build_sandbox(binary, target, events_dir)
        start = time.monotonic()
        program = os.fork()
        if program == 0:
            exec_program(name, args, out_fd, err_fd)
        pidfd = os.pidfd_open(program)
        timed_out = not select.select([pidfd], [], [], timeout)[0]
        if timed_out:
            os.kill(program, signal.SIGKILL)
        _, status = os.waitpid(program, 0)
        seconds = round(time.monotonic() - start, 3)
        if timed_out:
            report = {"kind": "timeout", "code": None}
        elif os.WIFSIGNALED(status):
            report = {"kind": "signal", "code": os.WTERMSIG(status)}
        else:
            report = {"kind": "exit", "code": os.WEXITSTATUS(status)}
        report["seconds"] = seconds
    except BaseException:  # noqa: BLE001
        report = {"kind": "error", "error": traceback.format_exc()}
    os.write(report_w, json.dumps(report).encode())
    os._exit(0)


# ---------------------------------------------------------------------------------------
# One file: patch it, run both, compare (runs in a worker process)

CFG = {}  # set in every worker by init_worker


def init_worker(cfg):
    CFG.update(cfg)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and ends the pool
    # The parent's SIGTERM handler (sys.exit) is inherited through fork; a
    # worker must die at once when the pool terminates it, not raise
    # SystemExit inside the pool's locks (a worker hung there at the end of a run).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def describe(run):
    kind = run["kind"]
    if kind == "exit":
        return f"exit {run['code']}"
    if kind == "signal":
        try:
            return f"killed by {signal.Signals(run['code']).name}"
        except ValueError:
            return f"killed by signal {run['code']}"
    if kind == "timeout":
        return "timed out"
    return "sandbox error"


# Control characters (terminal escapes...) shown as \xNN in the report.
PRINTABLE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7f] if c != 0x09}


def short_diff(label, before, after, lines=12, width=160):
    """A few lines of unified diff between two outputs (bytes, already normalised), and
    the first differing byte with some context (long lines, binary output)."""
    a = before.decode("utf-8", "replace").splitlines()
    b = after.decode("utf-8", "replace").splitlines()
    diff = list(difflib.unified_diff(a, b, f"original {label}", f"patched {label}", n=1, lineterm=""))
    text = [line.translate(PRINTABLE) for line in diff[:lines]]
    text = [line if len(line) <= width else line[:width] + "..." for line in text]
    if len(diff) > lines:
        text.append(f"... ({len(diff) - lines} more diff lines)")
    at = next((i for i, (x, y) in enumerate(zip(before, after)) if x != y), min(len(before), len(after)))
    window = lambda data: repr(data[max(0, at - 30):at + 30])
    text.append(f"{label}: {len(before)} bytes (original), {len(after)} (patched); first difference at "
                f"byte {at}: original {window(before)}, patched {window(after)}")
    return "\n".join(text)


def compare(originals, patched):
    """Outcome of one invocation from its runs: the original's (two or more) and the
    patched one. Returns (outcome, [details]). Only what all runs of the original agree on
    is compared."""
    errors = list(dict.fromkeys(r["error"] for r in [*originals, patched] if r and r["kind"] == "error"))
    if errors:
        return "error", errors
    first = originals[0]
    if first["kind"] == "timeout":
        return "slow", [f"original timed out ({first['seconds']} s)"]
    slowest = max(r["seconds"] for r in originals)
    if patched["kind"] == "timeout" and slowest > CFG["timeout"] / 2:
        # An original that needs more than half the limit may well need all of it once:
        # a patched run that hits the limit then says nothing.
        return "slow", [f"original took {slowest} s, patched timed out"]
    if patched["kind"] == "signal" and all(r["kind"] != "signal" for r in originals):
        detail = [f"original {describe(first)}, patched {describe(patched)}"]
        if patched["stderr"] != first["stderr"]:
            detail.append(short_diff("stderr", normalise(first["stderr"]), normalise(patched["stderr"])))
        return "crash", detail
    differences, nondeterministic = [], []
    if len({describe(r) for r in originals}) == 1:
        if describe(patched) != describe(first):
            differences.append(f"status: original {describe(first)} ({first['seconds']} s), "
                               f"patched {describe(patched)} ({patched['seconds']} s)")
    else:
        nondeterministic.append("status")
    for stream in ("stdout", "stderr"):
        outputs = {normalise(r[stream]) for r in originals}
        if len(outputs) > 1:
            nondeterministic.append(stream)
        elif normalise(patched[stream]) not in outputs:
            differences.append(short_diff(stream, normalise(first[stream]), normalise(patched[stream])))
    if differences:
        return "differ", differences
    if nondeterministic:
        return "nondeterministic", [f"original not deterministic over {len(originals)} runs: "
                                    + ", ".join(nondeterministic)]
    return "same", []


def count_events(path, exe, result):
    """Counts the events of one patched run and removes the file. Each must be a JSON object
    naming as `exe` the path the program ran from (which is where the patched file was
    mounted: the runtime must see the original's path)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
        os.unlink(path)
    except FileNotFoundError:
        return 0
    for line in lines:
        try:
            event = json.loads(line)
            ok = isinstance(event, dict) and event.get("exe") == exe
        except ValueError:
            ok = False
        if ok and event.get("class") == "tamper":
            # A program's own --version run that would undo the hooks: a false alarm.
            result["tamper_events"] = result.get("tamper_events", 0) + 1
            samples = result.setdefault("tamper_samples", [])
            if len(samples) < 2:
                samples.append(line[:300].decode("utf-8", "replace"))
        if not ok:
            result["bad_events"] += 1
            if len(result["bad_event_samples"]) < 2:
                result["bad_event_samples"].append(line[:300].decode("utf-8", "replace"))
    return len(lines)


def link_or_copy(source, dest):
    try:
        os.link(source, dest)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(source, dest)


# Outcome of a file from the outcomes of its invocations: the first that appears wins.
PRECEDENCE = ["error", "crash", "differ", "same", "nondeterministic", "slow"]


def sweep_file(entry):
    """Patches one file and runs it; returns what happened (a dict that goes into --json)."""
    try:
        return sweep_one_file(entry)
    except Exception:  # noqa: BLE001 - one broken file must not stop the sweep
        return {"id": entry["id"], "path": entry["real"], "names": entry["names"], "outcome": "error",
                "reason": traceback.format_exc(), "invocations": [], "events": 0, "bad_events": 0,
                "bad_event_samples": [], "skipped_names": [], "seconds": 0.0}


def sweep_one_file(entry):
    real, names, ident = entry["real"], entry["names"], entry["id"]
    work = os.path.join(CFG["scratch"], "files", str(ident))
    os.makedirs(work)
    events = os.path.join(CFG["events_dir"], f"{ident}.jsonl")
    policy = os.path.join(work, "policy.toml")
    with open(policy, "w") as f:
        f.write(CFG["policy"].replace("@EVENTS@", events))
    patched = os.path.join(work, "patched")
    result = {"id": ident, "path": real, "names": names, "outcome": None, "reason": None,
              "invocations": [], "events": 0, "bad_events": 0, "bad_event_samples": [],
              "skipped_names": [], "seconds": 0.0}

    # 1. Patch.
    start = time.monotonic()
    try:
        done = subprocess.run([CFG["dfpatch"], "-q", "-p", policy, "-o", patched, real],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=CFG["patch_timeout"])
        stderr = done.stderr.decode("utf-8", "replace").strip()
        if done.returncode == 0 and os.path.isfile(patched):
            result["outcome"] = "patched"
        elif done.returncode == 2 and stderr and "\n" not in stderr:
            result["outcome"] = "refused"
            prefix = f"dfpatch: {real}: "
            result["reason"] = stderr[len(prefix):] if stderr.startswith(prefix) else stderr
        else:
            result["outcome"] = "patch-failed"
            result["reason"] = f"dfpatch {describe_returncode(done.returncode)}: {stderr[-1000:] or '(no message)'}"
    except subprocess.TimeoutExpired:
        result["outcome"] = "patch-failed"
        result["reason"] = f"dfpatch did not finish in {CFG['patch_timeout']} s"
    result["patch_seconds"] = round(time.monotonic() - start, 3)
    if result["outcome"] != "patched":
        return result

    # 2. Run under every name, in every mode: original, patched, original again. The file
    # that gets bind-mounted is always `stage` (a link to one or the other), so that the
    # mount table the program could print is the same in all three runs.
    runnable = [n for n in names if os.path.basename(n) not in SKIP]
    result["skipped_names"] = [n for n in names if n not in runnable]
    if not runnable:
        result["outcome"] = "skip-list"
        return result
    original = os.path.join(work, "original")
    link_or_copy(real, original)
    os.mkdir(os.path.join(work, "stage"))
    stage = os.path.join(work, "stage", os.path.basename(real))

    def put(source):
        if os.path.exists(stage) and os.path.samefile(source, stage):
            return  # (renaming a link over another link to the same file would do nothing)
        fresh = stage + ".new"
        os.link(source, fresh)
        os.replace(fresh, stage)

    outputs = os.path.join(work, "out")
    os.mkdir(outputs)
    for name_index, name in enumerate(runnable):
        target = os.path.realpath(name)
        for args in MODES:
            runs = []  # (role, run), in the order they ran

            def run(role):
                put(patched if role == "patched" else original)
                base = os.path.join(outputs, f"{name_index}{'_'.join(args) or '-noargs'}.{len(runs)}.{role}")
                ran = run_sandboxed(stage, target, name, args, base + ".stdout", base + ".stderr",
                                    CFG["events_dir"], CFG["timeout"])
                runs.append((role, ran))
                result["seconds"] += ran.get("seconds") or 0
                if role == "patched":
                    result["events"] += count_events(events, target, result)
                return ran

            first = run("original")
            if first["kind"] in ("error", "timeout"):  # (an original that hangs tells nothing)
                outcome, details = compare([first], None)
            else:
                mine = run("patched")
                outcome, details = compare([first, run("original")], mine)
            if outcome in ("differ", "crash"):
                # Confirm: some programs' output is racy (groff --version prints what its
                # children print, in either order), so two agreeing runs of the original
                # prove little. Four more runs of the original, two more of the patched file.
                for role in ("original", "patched", "original", "patched", "original", "original"):
                    run(role)
                originals = [r for role, r in runs if role == "original"]
                others = [r for role, r in runs if role == "patched"][1:]
                outcome, more = compare(originals, mine)
                if outcome in ("differ", "crash"):
                    again = sum(compare(originals, r)[0] == outcome for r in others)
                    details.append(f"seen again in {again} of {len(others)} more runs of the patched file; "
                                   f"the original behaved the same in all its {len(originals)} runs")
                else:
                    details = more
            result["invocations"].append({
                "name": name, "args": list(args), "outcome": outcome, "details": details,
                "runs": [f"{role}: {describe(r)}, {r.get('seconds')} s" for role, r in runs]})
    outcomes = {inv["outcome"] for inv in result["invocations"]}
    result["outcome"] = next(o for o in PRECEDENCE if o in outcomes)
    result["seconds"] = round(result["seconds"], 3)
    if not CFG["keep"]:
        shutil.rmtree(work)
    return result


def describe_returncode(code):
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


# ---------------------------------------------------------------------------------------
# Report

LABELS = {
    "same": "behave the same",
    "differ": "differ",
    "crash": "crash",
    "nondeterministic": "nondeterministic (skipped)",
    "slow": "original too slow (skipped)",
    "skip-list": "skip list (patched, not run)",
    "error": "sweep errors",
}


def invocation_label(inv):
    return " ".join([inv["name"], *inv["args"]]) if inv["args"] else f"{inv['name']} (no arguments)"


def report(results, folders, args, elapsed):
    out = []
    by = lambda outcome: [r for r in results if r["outcome"] == outcome]

    def section(outcome, title):
        files = by(outcome)
        if not files:
            return
        out.append(f"\n== {title} ({len(files)})")
        for r in files:
            out.append(r["path"])
            if r["outcome"] == "error" and r["reason"]:
                out.extend("    " + line for line in r["reason"].splitlines())
            for inv in r["invocations"]:
                if inv["outcome"] in ("crash", "differ", "error"):
                    out.append(f"  {inv['outcome'].upper()}: {invocation_label(inv)}")
                    for detail in inv["details"]:
                        out.extend("    " + line for line in detail.splitlines())

    section("crash", "CRASH: the patched program was killed by a signal, the original was not")
    section("differ", "DIFFER: the patched program behaves differently")
    section("error", "SWEEP ERRORS (a problem of the harness or the machine)")
    failed = by("patch-failed")
    if failed:
        out.append(f"\n== PATCH FAILED: dfpatch neither patched nor refused with a reason ({len(failed)})")
        for r in failed:
            out.append(f"{r['path']}\n    {r['reason']}")
    tampering = [r for r in results if r.get("tamper_events")]
    if tampering:
        out.append(f"\n== TAMPER EVENTS: class tamper reported by a run of a program ({len(tampering)} files)")
        for r in tampering:
            out.append(f"{r['path']}: {r['tamper_events']} events, e.g.")
            out.extend("    " + s for s in r["tamper_samples"])
    bad = [r for r in results if r["bad_events"]]
    if bad:
        out.append(f"\n== INVALID EVENTS: not a JSON object, or not naming the program as exe ({len(bad)} files)")
        for r in bad:
            out.append(f"{r['path']}: {r['bad_events']} bad lines, e.g.")
            out.extend("    " + s for s in r["bad_event_samples"])

    refused = by("refused")
    if refused:
        out.append(f"\n== Refused, by reason ({len(refused)})")
        reasons = {}
        for r in refused:
            reasons.setdefault(r["reason"], []).append(r["path"])
        for reason, paths in sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            examples = ", ".join(paths[:3]) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")
            out.append(f"{len(paths):5}  {reason}\n       {examples}")
    # What was not compared, file by file: whole files (nondeterministic, too slow, skip
    # list) and single invocations of files otherwise compared.
    skipped = [r for r in results if r["skipped_names"] or any(
        inv["outcome"] in ("nondeterministic", "slow") for inv in r["invocations"])]
    if skipped:
        out.append(f"\n== Not compared ({len(skipped)} files; outcome of the file in brackets)")
        for r in skipped:
            out.append(f"{r['path']} [{LABELS.get(r['outcome'], r['outcome'])}]")
            for n in r["skipped_names"]:
                out.append(f"    {os.path.basename(n)}: skip list: {SKIP[os.path.basename(n)]}")
            for inv in r["invocations"]:
                if inv["outcome"] in ("nondeterministic", "slow"):
                    out.append(f"    {invocation_label(inv)}: {'; '.join(inv['details'])}")

    cost = lambda r: r.get("patch_seconds", 0) + r["seconds"]
    slow = sorted(results, key=lambda r: -cost(r))[:5]
    if slow:
        out.append("\n== Slowest files (time patching + time in the programs, all runs)")
        out.extend(f"  {r.get('patch_seconds', 0):7.1f} s + {r['seconds']:5.1f} s  {r['path']}" for r in slow)

    count = {o: len(by(o)) for o in ("refused", "patch-failed", *LABELS)}
    patched = sum(count[o] for o in LABELS)
    compared = count["same"] + count["differ"] + count["crash"]
    rate = 100.0 * count["same"] / compared if compared else 0.0
    events = sum(r["events"] for r in results)
    bad_events = sum(r["bad_events"] for r in results)
    tamper_events = sum(r.get("tamper_events", 0) for r in results)
    invocations = sum(len(r["invocations"]) for r in results)
    inv_count = {}
    for r in results:
        for inv in r["invocations"]:
            inv_count[inv["outcome"]] = inv_count.get(inv["outcome"], 0) + 1
    totals = {
        "files": len(results),
        "names": sum(len(r["names"]) for r in results),
        "patched": patched,
        "refused": count["refused"],
        "patch_failed": count["patch-failed"],
        "same": count["same"],
        "differ": count["differ"],
        "crash": count["crash"],
        "nondeterministic": count["nondeterministic"],
        "too_slow": count["slow"],
        "skip_list": count["skip-list"],
        "sweep_errors": count["error"],
        "same_percent": round(rate, 2),
        "invocations": invocations,
        "invocation_outcomes": inv_count,
        "events": events,
        "invalid_events": bad_events,
        "tamper_events": tamper_events,
        "seconds": round(elapsed, 1),
        "patch_seconds": round(sum(r.get("patch_seconds", 0) for r in results), 1),
        "program_seconds": round(sum(r["seconds"] for r in results), 1),
    }
    problems = []
    if count["patch-failed"]:
        problems.append(f"{count['patch-failed']} files neither patched nor refused with a reason")
    if count["crash"]:
        problems.append(f"{count['crash']} patched programs crashed")
    if compared and rate < 99.0:
        problems.append(f"only {rate:.2f}% of compared files behave the same (bar: 99%)")
    if count["error"]:
        problems.append(f"{count['error']} files hit sweep errors")
    if patched and not compared:
        problems.append("no patched file could be compared")
    if patched and not events:
        problems.append("the patched programs reported no event at all: the sweep is not testing anything")
    if bad_events:
        problems.append(f"{bad_events} events are invalid")
    if tamper_events:
        problems.append(f"{tamper_events} tamper events (false alarms: see TAMPER EVENTS)")

    out.append(f"\n== Totals ({' '.join(folders)}; {elapsed:.0f} s, {args.jobs} jobs, time limit {args.timeout} s)")
    rows = [
        ("ELF files", f"{len(results)} ({totals['names']} names)"),
        ("patched", patched),
        ("refused", count["refused"]),
        ("patch failed", count["patch-failed"]),
        ("behave the same", count["same"]),
        ("differ", count["differ"]),
        ("crash", count["crash"]),
        ("nondeterministic (skipped)", count["nondeterministic"]),
        ("original too slow (skipped)", count["slow"]),
        ("skip list (not run)", count["skip-list"]),
        ("sweep errors", count["error"]),
        ("same / compared", f"{rate:.2f}% of {compared} (bar: 99%)"),
        ("invocations", f"{invocations}: " + ", ".join(f"{k} {v}" for k, v in sorted(inv_count.items()))),
        ("events reported", f"{events} ({bad_events} invalid, {tamper_events} tamper)"),
        ("time (all workers)", f"patching {totals['patch_seconds']} s, in the programs {totals['program_seconds']} s"),
    ]
    out.extend(f"  {label:28} {value}" for label, value in rows)
    out.append("RESULT: " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return "\n".join(out), totals, problems


# ---------------------------------------------------------------------------------------
# Main

def under(path, folders):
    path = os.path.realpath(path)
    return any(path == f or path.startswith(f + "/") for f in folders)


def main():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="DIR|FILE", help="folders to sweep (recursively), or files")
    parser.add_argument("--dfpatch", default=os.path.join(repo, "target", "release", "dfpatch"),
                        help="the dfpatch binary (default: %(default)s)")
    # Most of a run is process set-up and waiting (programs that sleep or hang until the
    # time limit), so twice as many jobs as CPUs, up to 4, keeps the CPUs busy.
    parser.add_argument("--jobs", type=int, default=min(4, 2 * (os.cpu_count() or 1)),
                        help="files handled in parallel (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="time limit of each run, seconds (default: 5)")
    # Not /var/tmp: a set-id program (chage, ssh-agent) keeps no event sink in a folder
    # others can write to, and says so on stderr, which would differ from the original.
    parser.add_argument("--scratch", default="/var/lib",
                        help="where to create the scratch directory (default: /var/lib; not under %s, "
                        "and only root may write in it and above it, or set-id programs refuse their sink)"
                        % ", ".join(PRIVATE))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (patched files, outputs)")
    parser.add_argument("--json", metavar="FILE", help="also write totals and per-file results as JSON")
    args = parser.parse_args()

    def fail(message):
        print(f"sweep: {message}", file=sys.stderr)
        sys.exit(2)

    # SIGTERM (a CI time limit, say) ends the sweep the way ^C does: workers stopped (their
    # sandboxes die with them), scratch directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        fail("must run as root (it creates namespaces and mounts)")
    if not os.access(args.dfpatch, os.X_OK):
        fail(f"{args.dfpatch}: no such executable (build it: cargo build --release -p dfpatch)")
    dfpatch = os.path.abspath(args.dfpatch)
    for path in args.paths:
        if not os.path.exists(path):
            fail(f"{path}: no such file or folder")
        if under(path, PRIVATE):
            fail(f"{path}: under {', '.join(PRIVATE)}, which every run replaces by a private copy; "
                 "copy the files elsewhere")

    # The policy: the bundled monitor-all preset, with events going to a file of ours
    # (the preset's stderr sink would make every patched program's stderr differ).
    preset = subprocess.run([dfpatch, "policy", "show", "monitor-all"], capture_output=True, text=True)
    sink = re.compile(r'^sink\s*=.*$', re.M)
    if preset.returncode != 0 or len(sink.findall(preset.stdout)) != 1:
        fail(f"cannot use `dfpatch policy show monitor-all`: {preset.stderr.strip() or 'no single sink line'}")
    policy = sink.sub('sink = "file:@EVENTS@"', preset.stdout)

    os.makedirs(args.scratch, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="dfpatch-sweep-", dir=args.scratch)
    if under(scratch, PRIVATE):
        shutil.rmtree(scratch)
        fail(f"--scratch {args.scratch}: under {', '.join(PRIVATE)}, which the runs do not see")
    events_dir = os.path.join(scratch, "events")
    os.mkdir(events_dir)
    cfg = {"dfpatch": dfpatch, "scratch": scratch, "events_dir": events_dir, "timeout": args.timeout,
           "patch_timeout": 300, "keep": args.keep, "policy": policy}
    CFG.update(cfg)

    try:
        with open(os.path.join(scratch, "policy-check.toml"), "w") as f:
            f.write(policy.replace("@EVENTS@", os.path.join(events_dir, "check.jsonl")))
        checked = subprocess.run([dfpatch, "policy", "check", f.name], capture_output=True, text=True)
        if checked.returncode != 0:
            fail(f"the sweep's policy is refused: {checked.stderr.strip()}")
        # The sandbox must work before anything is judged by it.
        probe = run_sandboxed("/bin/true", os.path.realpath("/bin/true"), "/bin/true", (),
                              os.path.join(scratch, "probe.out"), os.path.join(scratch, "probe.err"),
                              events_dir, 10)
        if probe["kind"] != "exit" or probe["code"] != 0:
            fail(f"the sandbox does not work here: {probe.get('error') or describe(probe)} {probe['stderr'][-500:]!r}")

        files = find_files(args.paths)
        print(f"sweep: {len(files)} ELF files under {' '.join(args.paths)}; {args.jobs} jobs; "
              f"dfpatch {dfpatch}; scratch {scratch}", file=sys.stderr)
        start = time.monotonic()
        results = []
        step = max(1, len(files) // 10)
        with multiprocessing.get_context("fork").Pool(args.jobs, init_worker, (cfg,)) as pool:
            # Files with many names first (vim has 9), so that no long file starts last.
            for result in pool.imap_unordered(sweep_file, sorted(files, key=lambda f: -len(f["names"]))):
                results.append(result)
                if result["outcome"] in ("crash", "differ", "error", "patch-failed"):
                    print(f"sweep: {result['outcome']}: {result['path']}", file=sys.stderr)
                if len(results) % step == 0 or len(results) == len(files):
                    print(f"sweep: {len(results)}/{len(files)} files, {time.monotonic() - start:.0f} s",
                          file=sys.stderr)
            # Let the workers finish on their own rather than be terminated.
            pool.close()
            pool.join()
        elapsed = time.monotonic() - start
        results.sort(key=lambda r: r["path"])
        text, totals, problems = report(results, args.paths, args, elapsed)
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"totals": totals, "problems": problems, "normalisation":
                           [p.pattern.decode() for p, _ in NORMALISE], "files": results}, f, indent=1)
    finally:
        if args.keep:
            print(f"sweep: scratch kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
