//! The `dfpatch` command line. Thin: parse arguments, load the policy, call
//! the library, write atomically, choose the exit code (0 done, 2 refused or failed).
//!
//! Commands return what they print on stdout, and `main` writes it in one
//! place ([`print`]), where a reader that stopped reading is not an error.
#![warn(clippy::print_stdout)]

use clap::{Args, Parser, Subcommand};
use dfpatch::{fsio, plan::Plan, Error};
use dfpatch_policy::Policy;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dfpatch",
    version,
    about = "Bake a behaviour monitor into an x86-64 ELF executable",
    long_about = "dfpatch rewrites an x86-64 ELF executable offline so that calls to sensitive \
functions (process execution, network, file access, executable memory, library loading, \
debugging) go through a monitoring runtime carried inside the file itself. The patched program \
reports what it does as JSON Lines events and, in enforce mode, refuses what its policy forbids. \
No LD_PRELOAD, agent, root or kernel module is needed.",
    after_help = "EXAMPLES:
  dfpatch ./server                              patch in place with the default policy (monitor, alert on exec/network/...)
  dfpatch --policy policy.toml -o server.hardened ./server
  dfpatch --preset block-exec ./tool           use a bundled policy (see `dfpatch policy list`)
  dfpatch inspect ./server                      what would be hooked, and why not elsewhere
  dfpatch restore ./server                      give back the original file, byte for byte

EXIT STATUS:
  0  the file was patched (or inspected, restored)
  2  the file or policy was refused, or writing failed; the reason is printed on one line
     and no file was written or changed",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    patch: PatchArgs,
}

#[derive(Args)]
struct PolicyArgs {
    /// Policy file (TOML). Without it the embedded default policy applies.
    #[arg(short, long, value_name = "FILE", conflicts_with = "preset")]
    policy: Option<PathBuf>,
    /// A bundled policy by name: default, monitor-all, block-exec, strict.
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
}

#[derive(Args)]
struct PatchArgs {
    /// The executable to patch.
    #[arg(value_name = "FILE", required = true)]
    file: Option<PathBuf>,
    /// Further files: refused with a message that says how to patch several
    /// (without this, clap took the second for a subcommand).
    #[arg(hide = true)]
    more: Vec<PathBuf>,
    /// Write the patched file here instead of replacing FILE.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Re-patch a file dfpatch already patched: start again from its original bytes.
    #[arg(long)]
    force: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Show what would be patched and why, without writing anything.
    Inspect {
        file: PathBuf,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give back the original of a patched file, byte for byte.
    Restore {
        file: PathBuf,
        /// Write the original here instead of replacing FILE.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Check a policy file, print a bundled one, or learn one from events.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file and print its decision for every monitored function.
    Check { file: PathBuf },
    /// Print a bundled policy (default: the embedded default policy).
    Show { name: Option<String> },
    /// List the bundled policies.
    List,
    /// Print a policy that allows exactly what monitored runs did and refuses the rest.
    ///
    /// The loop: patch with `--preset monitor-all`, run the program's own tests
    /// (events to a file sink), learn, patch with the learned policy, run the
    /// tests again: nothing refused, and anything new is.
    #[command(after_help = "Example:\n  \
        dfpatch policy show monitor-all | sed 's|^sink = .*|sink = \"file:/tmp/app.jsonl\"|' > monitor.toml\n  \
        dfpatch --policy monitor.toml -o app.monitored app\n  \
        ./app.monitored ...                     # the program's own tests\n  \
        dfpatch policy learn /tmp/app.jsonl > app.toml\n  \
        dfpatch --policy app.toml -o app.enforced app")]
    Learn {
        /// The `[report] sink` of the learned policy: stderr, file:/absolute/path or fd:N.
        #[arg(long, value_name = "SINK", default_value = "stderr")]
        sink: String,
        /// Event files (JSON Lines) written by monitored runs; `-` reads standard input.
        #[arg(required = true, value_name = "EVENTS.jsonl")]
        events: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Inspect { file, policy, json }) => inspect(&file, &policy, json),
        Some(Command::Restore { file, output }) => restore(&file, output.as_deref()).map(|()| String::new()),
        Some(Command::Policy(p)) => policy_command(p),
        None => patch(&cli.patch).map(|()| String::new()),
    };
    match result.and_then(|text| print(&text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("dfpatch: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Writes a command's output to stdout. A reader that went away before the
/// end (`dfpatch inspect --json FILE | head -1`) is not an error: dfpatch
/// stops quietly with status 0. Other write errors (a full disk) are.
fn print(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("standard output: {e}")),
        _ => Ok(()),
    }
}

fn load_policy(p: &PolicyArgs) -> Result<Policy, String> {
    if let Some(path) = &p.policy {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Policy::parse_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()));
    }
    let name = p.preset.as_deref().unwrap_or("default");
    let text = dfpatch_policy::preset(name)
        .ok_or_else(|| format!("no bundled policy named {name:?} (try `dfpatch policy list`)"))?;
    Policy::parse(text).map_err(|e| format!("bundled policy {name}: {e}"))
}

/// Maps the input read-only. The mapping stays valid after the file is
/// replaced by rename (the old inode lives on while mapped).
fn map(path: &Path) -> Result<(File, memmap2::Mmap), String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = f.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    // SAFETY: the file is only read. Another process rewriting it in place while
    // we run could change bytes under us (every read is bounds checked, so that
    // gives an error or a consistent patch of what was read) or truncate it (the
    // kernel then raises SIGBUS); dfpatch's own outputs are renamed into place,
    // never rewritten in place.
    #[allow(unsafe_code)]
    let m = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((f, m))
}

fn err(path: &Path, e: Error) -> String {
    format!("{}: {e}", path.display())
}

fn patch(a: &PatchArgs) -> Result<(), String> {
    let file = a.file.as_deref().ok_or("no FILE given (see --help)")?;
    if !a.more.is_empty() {
        // The names as a shell would need them in the loop we suggest.
        let all: Vec<String> = std::iter::once(file)
            .chain(a.more.iter().map(|p| p.as_path()))
            .map(|p| p.display().to_string())
            .map(|p| {
                if p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/+-".contains(&b)) {
                    p
                } else {
                    format!("'{}'", p.replace('\'', "'\\''"))
                }
            })
            .collect();
        return Err(format!(
            "one FILE is patched per call, {} were given: to patch several, run dfpatch once for each: \
             for f in {}; do dfpatch \"$f\"; done (to write the patched file elsewhere: -o OUT)",
            all.len(),
            all.join(" ")
        ));
    }
    let policy = load_policy(&a.policy)?;
    let (f, map) = map(file)?;
    let attrs = fsio::Attrs::of(&f).map_err(|e| format!("{}: {e}", file.display()))?;
    let original;
    let input: &[u8] = if a.force && dfpatch::is_patched(&map) {
        original = dfpatch::restore(&map).map_err(|e| err(file, e))?;
        &original
    } else {
        &map
    };
    let p = dfpatch::patch_file(input, &policy, Some(file)).map_err(|e| err(file, e))?;
    let dest = match &a.output {
        Some(o) => o.clone(),
        None => fsio::in_place_target(file).map_err(|e| format!("{}: {e}", file.display()))?,
    };
    fsio::write_atomic(&dest, attrs, |w| p.patched.output.write_to(w))
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    if !a.quiet {
        eprintln!("dfpatch: {}", summary(&dest, &p.plan, p.patched.segment_size, &p.patched.policy_hash));
    }
    Ok(())
}

fn summary(dest: &Path, plan: &Plan, size: u64, hash: &[u8; 32]) -> String {
    let mut layers = std::collections::BTreeMap::<dfpatch::plan::Layer, usize>::new();
    for s in &plan.sites {
        *layers.entry(s.layer).or_default() += 1;
    }
    let layers: Vec<String> = layers.iter().map(|(l, n)| format!("{l} {n}")).collect();
    let mut names: Vec<&str> =
        plan.hooks.iter().filter(|h| h.kind != dfpatch::plan::HookKind::Syscall).map(|h| h.symbol.as_str()).collect();
    names.dedup();
    let functions = if names.is_empty() { "none".to_string() } else { names.join(", ") };
    let refused = match plan.refused.len() {
        0 => String::new(),
        n => format!("; {n} refused as unsafe (see dfpatch inspect)"),
    };
    format!(
        "patched {}: {} sites ({}), functions: {}{refused}; runtime {:.1} KiB; policy sha256 {}",
        dest.display(),
        plan.sites.len(),
        if layers.is_empty() { "none".to_string() } else { layers.join(", ") },
        functions,
        size as f64 / 1024.0,
        hex(&hash[..8]),
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn inspect(file: &Path, p: &PolicyArgs, json: bool) -> Result<String, String> {
    let policy = load_policy(p)?;
    let (_f, map) = map(file)?;
    if dfpatch::is_patched(&map) {
        let e = dfpatch::elf::Elf::parse(&map).map_err(|e| err(file, e))?;
        let msg = dfpatch::restore::already_patched(&e).to_string();
        if json {
            return Ok(format!("{}\n", serde_json::json!({"file": file, "patched": true, "message": msg})));
        }
        return Ok(format!("{}: {msg}\n", file.display()));
    }
    let plan = dfpatch::plan_file(&map, &policy, Some(file)).map_err(|e| err(file, e))?;
    if json {
        let v = serde_json::json!({ "file": file, "patched": false, "plan": plan });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()));
    }
    Ok(describe(file, &plan))
}

fn describe(file: &Path, plan: &Plan) -> String {
    use dfpatch::plan::HookKind;
    use std::fmt::Write;
    let f = &plan.flavour;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} {} executable, libc: {}, interpreter: {}, {}, CET: {}",
        file.display(),
        if f.dynamic { "dynamic" } else { "static" },
        if f.pie { "PIE" } else { "non-PIE" },
        f.libc.as_deref().unwrap_or("unknown"),
        f.interpreter.as_deref().unwrap_or("none"),
        if f.stripped { "stripped" } else { "not stripped" },
        match (f.ibt, f.shstk) {
            (false, false) => "none",
            (true, false) => "IBT",
            (false, true) => "SHSTK",
            (true, true) => "IBT+SHSTK",
        }
    );
    let l = &plan.layout;
    let _ = writeln!(
        s,
        "layout: runtime segment at {:#x} (file offset {:#x}, {}), \
         runtime state at {:#x} ({} bytes, zero-filled tail of program header #{}), entry -> {:#x}",
        l.rx_vaddr,
        l.rx_offset,
        match l.phdrs {
            dfpatch::plan::PhdrTactic::Reuse { index, was } => format!("program header #{index} reused, was {was}"),
            dfpatch::plan::PhdrTactic::MoveTable => "no spare entry: program header table moved into it".to_string(),
        },
        l.rw_vaddr,
        l.rw_size,
        l.rw_phdr,
        l.new_entry
    );
    let _ = writeln!(
        s,
        "start-up: {}",
        match &plan.preinit {
            dfpatch::dynamic::Preinit::Direct =>
                "DT_PREINIT_ARRAY (before library constructors), then the entry point".to_string(),
            dfpatch::dynamic::Preinit::Relocated { .. } =>
                "DT_PREINIT_ARRAY through a copied DT_RELA table (before library constructors), then the entry point"
                    .to_string(),
            dfpatch::dynamic::Preinit::Skipped(why) if f.dynamic =>
                format!("entry point only, after library constructors ({why})"),
            dfpatch::dynamic::Preinit::Skipped(why) => format!("entry point ({why})"),
        }
    );
    let functions: Vec<(usize, &dfpatch::plan::Hook)> =
        plan.hooks.iter().enumerate().filter(|(_, h)| h.kind != HookKind::Syscall).collect();
    let _ = writeln!(s, "hooked functions ({}):", functions.len());
    for (k, h) in functions {
        let sites: Vec<String> = plan
            .sites
            .iter()
            .filter(|x| x.hook == k)
            .map(|x| format!("{} {}@{:#x}", x.layer, x.section, x.vaddr))
            .collect();
        const SHOWN: usize = 6;
        let more = if sites.len() > SHOWN {
            format!(", and {} more (see --json)", sites.len() - SHOWN)
        } else {
            String::new()
        };
        let shown = &sites[..sites.len().min(SHOWN)];
        let how = match h.kind {
            HookKind::Got => format!("GOT {:#x}", h.vaddr),
            _ => format!("trampoline {:#x}", h.vaddr),
        };
        let _ = writeln!(s, "  {:<14} {how} -> stub {:#x}: {}{more}", h.symbol, h.stub_vaddr, shown.join(", "));
    }
    if let Some(c) = &plan.syscalls {
        let mut by_api = std::collections::BTreeMap::<&str, usize>::new();
        for h in plan.hooks.iter().filter(|h| h.kind == HookKind::Syscall) {
            *by_api.entry(h.api.as_str()).or_default() += 1;
        }
        let hooked: usize = by_api.values().sum();
        let _ = writeln!(
            s,
            "syscall instructions: {} in all; {hooked} hooked ({} of them not monitored, but for the backstop), \
             {} refused, {} not monitored, {} allowed by the policy",
            c.total,
            c.for_backstop,
            plan.refused.iter().filter(|r| r.layer == dfpatch::plan::Layer::Syscall).count(),
            c.not_monitored,
            c.allowed
        );
        for (api, n) in by_api {
            let _ = writeln!(s, "  {api:<28} {n}");
        }
    }
    if !plan.not_hooked.is_empty() {
        let _ = writeln!(s, "not hooked ({}):", plan.not_hooked.len());
        for n in &plan.not_hooked {
            let _ = writeln!(s, "  {:<14} {}", n.symbol, n.reason);
        }
    }
    if !plan.refused.is_empty() {
        let _ = writeln!(s, "refused ({}): cannot be rewritten safely", plan.refused.len());
        for r in &plan.refused {
            let _ = writeln!(s, "  {:<7} {:<14} {:#x}: {}", r.layer, r.what, r.vaddr, r.reason);
        }
    }
    if !plan.libraries.is_empty() || !plan.libraries_skipped.is_empty() {
        let _ = writeln!(
            s,
            "needed libraries (rewritten in memory at start-up when the loaded file is this one; libc: the \
             entries of its monitored functions, others: their raw syscall instructions):"
        );
        for l in &plan.libraries {
            if l.defines_monitored {
                let names: Vec<&str> = l.sites.iter().filter_map(|x| x.api).collect();
                let _ = writeln!(
                    s,
                    "  {:<24} {} function entries detoured, {} syscall site(s) rewritten, {} refused ({})\n    {}",
                    l.name,
                    names.len(),
                    l.sites.len() - names.len(),
                    l.refused.len(),
                    l.path.display(),
                    names.join(" ")
                );
                for r in &l.refused {
                    let _ = writeln!(s, "    refused {:<14} {:#x}: {}", r.what, r.vaddr, r.reason);
                }
                continue;
            }
            let _ = writeln!(
                s,
                "  {:<24} {} hooked, {} refused, {} not monitored, of {} syscall instructions ({})",
                l.name,
                l.sites.len(),
                l.refused.len(),
                l.syscalls.not_monitored,
                l.syscalls.total,
                l.path.display()
            );
            for r in &l.refused {
                let _ = writeln!(s, "    refused {:<14} {:#x}: {}", r.what, r.vaddr, r.reason);
            }
        }
        for k in &plan.libraries_skipped {
            let _ = writeln!(s, "  {:<24} not planned: {}", k.name, k.reason);
        }
    }
    let mut tactics = std::collections::BTreeMap::<(dfpatch::plan::Layer, String), usize>::new();
    for x in &plan.sites {
        *tactics.entry((x.layer, x.tactic.family())).or_default() += 1;
    }
    let _ = writeln!(s, "sites by layer and tactic ({}):", plan.sites.len());
    for ((layer, tactic), n) in tactics {
        let _ = writeln!(s, "  {layer:<8} {tactic:<34} {n}");
    }
    s
}

fn restore(file: &Path, output: Option<&Path>) -> Result<(), String> {
    let (f, map) = map(file)?;
    let attrs = fsio::Attrs::of(&f).map_err(|e| format!("{}: {e}", file.display()))?;
    let original = dfpatch::restore(&map).map_err(|e| err(file, e))?;
    let dest = match output {
        Some(o) => o.to_path_buf(),
        None => fsio::in_place_target(file).map_err(|e| format!("{}: {e}", file.display()))?,
    };
    fsio::write_atomic(&dest, attrs, |w| w.write_all(&original)).map_err(|e| format!("{}: {e}", dest.display()))?;
    eprintln!("dfpatch: restored {} ({} bytes)", dest.display(), original.len());
    Ok(())
}

fn policy_command(p: PolicyCommand) -> Result<String, String> {
    use std::fmt::Write;
    let mut out = String::new();
    match p {
        PolicyCommand::Check { file } => {
            let policy = load_policy(&PolicyArgs { policy: Some(file.clone()), preset: None })?;
            let _ = writeln!(
                out,
                "{}: valid ({} mode, default {}, {} rules)",
                file.display(),
                policy.mode.name(),
                policy.default.name(),
                policy.rules.len()
            );
            for api in dfpatch_runtime::apis::ApiId::ALL {
                let (action, rule) = policy.decision(*api);
                let by = rule.map_or("default".to_string(), |i| format!("rule {}", policy.rules[i].id));
                let chain: Vec<&str> = policy.chain(*api).iter().map(|&i| policy.rules[i].id.as_str()).collect();
                let first = if chain.is_empty() { String::new() } else { format!(", after {}", chain.join(", ")) };
                let _ =
                    writeln!(out, "  {:<14} {:<8} {:<6} ({by}{first})", api.name(), api.class().name(), action.name());
            }
            Ok(out)
        }
        PolicyCommand::Learn { sink, events } => {
            let mut files = Vec::with_capacity(events.len());
            for path in &events {
                let text = if path.as_os_str() == "-" {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| format!("-: {e}"))?;
                    text
                } else {
                    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
                };
                files.push((path.display().to_string(), text));
            }
            dfpatch_policy::learn(&files, &sink).map_err(|e| match e {
                dfpatch_policy::LearnError::Invalid(e) => format!("bad --sink {sink:?}: {e}"),
                e => e.to_string(),
            })
        }
        PolicyCommand::Show { name } => {
            let name = name.as_deref().unwrap_or("default");
            let text = dfpatch_policy::preset(name)
                .ok_or_else(|| format!("no bundled policy named {name:?} (try `dfpatch policy list`)"))?;
            Ok(text.to_string())
        }
        PolicyCommand::List => {
            for name in ["default", "monitor-all", "block-exec", "strict"] {
                let text = dfpatch_policy::preset(name).unwrap_or("");
                // The first sentence of the comment block under the title line.
                let about: Vec<&str> = text
                    .lines()
                    .skip(1)
                    .take_while(|l| l.starts_with('#'))
                    .map(|l| l.trim_start_matches('#').trim())
                    .filter(|l| !l.is_empty())
                    .collect();
                let about = about.join(" ");
                let first = about.split_inclusive(". ").next().unwrap_or("").trim();
                let _ = writeln!(out, "{name:<12} {first}");
            }
            Ok(out)
        }
    }
}
