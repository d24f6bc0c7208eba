//! Shared pieces of the overhead and scale benchmarks (`cargo bench --bench <name>`):
//! a hermetic world (temp HOME, XDG dirs, socket, state dir), generated repos, the real
//! `arctl` binary as a daemon process, a synchronous protocol client, /proc readings,
//! order statistics and the PASS/FAIL table every bench ends with.
//!
//! Knobs (environment):
//! * `ARCTL_BENCH_QUICK=1`: skip the 100,000-file parts and shorten the idle windows.
//! * `ARCTL_BENCH_SKIP_100K=1`: skip the 100,000-file parts only.
//! * `ARCTL_BENCH_IDLE_SECS=N`: idle-CPU window (default 60 s; 10 s with QUICK).
//! * `ARCTL_BENCH_KEEP=1`: keep the temp dir (its path is printed).
//! * `ARCTL_BENCH_BIN=PATH`: measure another arctl binary (before/after comparisons).
//! * `TMPDIR`: the disk the figures are for (default: the system's temp dir, on this
//!   machine the root file system); `ARCTL_BENCH_RAM_DIR`: the RAM disk measured beside it
//!   (default `/dev/shm`; `none` skips it).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use arctl::protocol::{Request, Response, PROTOCOL_VERSION};

mod disks;
pub use disks::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_arctl");

/// The arctl binary measured: ARCTL_BENCH_BIN (another build, e.g. an older commit's, for
/// a before/after in the same harness), else this build's.
pub fn bin() -> PathBuf {
    let Some(p) = std::env::var_os("ARCTL_BENCH_BIN").map(PathBuf::from) else {
        return PathBuf::from(BIN);
    };
    if !p.is_file() {
        eprintln!(
            "error: ARCTL_BENCH_BIN={}: no such file (expected the path of an arctl binary)",
            p.display()
        );
        std::process::exit(2);
    }
    p
}

pub fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
}

/// A number from the environment, else `default`; a value that is not a number ends the
/// bench (exit 2) rather than being silently replaced by the default.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("error: {name}={v:?}: expected a number");
            std::process::exit(2)
        }),
        _ => default,
    }
}

pub fn quick() -> bool {
    env_flag("ARCTL_BENCH_QUICK")
}

/// Run the 100,000-file parts?
pub fn with_100k() -> bool {
    !quick() && !env_flag("ARCTL_BENCH_SKIP_100K")
}

/// The idle-CPU measurement window.
pub fn idle_window() -> Duration {
    Duration::from_secs_f64(env_num(
        "ARCTL_BENCH_IDLE_SECS",
        if quick() { 10.0 } else { 60.0 },
    ))
}

// ---------------------------------------------------------------------------------------
// The world

/// Every path a bench touches, inside one temp dir.
pub struct World {
    pub tmp: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub home: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

impl World {
    pub fn new(name: &str) -> World {
        World::new_in(name, &disk_dir())
    }

    /// A world in a temp dir under `base`.
    pub fn new_in(name: &str, base: &Path) -> World {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("arctl-bench-{name}-"))
            .tempdir_in(base)
            .expect("temp dir");
        let root = tmp.path().canonicalize().expect("temp dir path");
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let keep = env_flag("ARCTL_BENCH_KEEP");
        if keep {
            eprintln!("keeping {}", root.display());
        }
        World {
            socket: root.join("run").join("arctl.sock"),
            state_dir: root.join("state"),
            home,
            root,
            tmp: if keep {
                let _ = tmp.keep();
                None
            } else {
                Some(tmp)
            },
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The environment every child (git, arctl, the daemon and through it the proposer
    /// and metric) gets: nothing from the caller's but PATH.
    pub fn env(&self, c: &mut Command) {
        c.env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .env("LANG", "C")
            .env("XDG_RUNTIME_DIR", self.root.join("xdg-run"))
            .env("XDG_STATE_HOME", self.root.join("xdg-state"))
            .env("XDG_CONFIG_HOME", self.root.join("xdg-config"))
            .env("ARCTL_SOCKET", &self.socket)
            .env("ARCTL_STATE_DIR", &self.state_dir)
            .env("RUST_LOG", "warn")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.com")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.com");
    }

    pub fn git_cmd(&self, dir: &Path) -> Command {
        let mut c = Command::new("git");
        self.env(&mut c);
        c.current_dir(dir).stdin(Stdio::null());
        c
    }

    /// `git worktree add -q -b BRANCH PATH main` in `repo`.
    pub fn add_worktree(&self, repo: &Path, path: &Path, branch: &str) -> Result<String> {
        let p = path.display().to_string();
        self.git(repo, &["worktree", "add", "-q", "-b", branch, &p, "main"])
    }

    /// Run git in `dir`; its stdout, trimmed.
    pub fn git(&self, dir: &Path, args: &[&str]) -> Result<String> {
        let o = self
            .git_cmd(dir)
            .args(args)
            .output()
            .context("running git")?;
        if !o.status.success() {
            bail!(
                "git {args:?} in {}: {}",
                dir.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    pub fn arctl_cmd(&self) -> Command {
        let mut c = Command::new(bin());
        self.env(&mut c);
        c.stdin(Stdio::null());
        c
    }

    /// `arctl ARGS` must succeed; its stdout.
    pub fn arctl(&self, args: &[&str]) -> Result<String> {
        let o = self.arctl_cmd().args(args).output()?;
        if !o.status.success() {
            bail!(
                "arctl {args:?} failed ({:?}): {}{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).to_string())
    }

    /// Start `arctl daemon` as a child process (its own settings file, if any) and wait for
    /// its socket to answer.
    pub fn daemon(&self, settings: Option<&str>) -> Result<Daemon> {
        if let Some(s) = settings {
            write(&self.root.join("xdg-config/arctl/daemon.toml"), s)?;
        }
        let log = self.root.join(format!(
            "daemon-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let out = std::fs::File::create(&log)?;
        let mut c = self.arctl_cmd();
        c.args(["daemon", "--socket"])
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = c.spawn().context("starting arctl daemon")?;
        let pid = child.id();
        let mut d = Daemon {
            child,
            pid,
            socket: self.socket.clone(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = Client::connect(&self.socket) {
                drop(c);
                return Ok(d);
            }
            if let Some(st) = d.child.try_wait()? {
                bail!(
                    "the daemon exited ({st}): {}",
                    std::fs::read_to_string(&d.log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("the daemon did not answer within 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn write_exec(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// A daemon process; shut down (then killed, if need be) on drop.
pub struct Daemon {
    pub child: Child,
    pub pid: u32,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn client(&self) -> Result<Client> {
        Client::connect(&self.socket)
    }

    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        if let Ok(mut c) = self.client() {
            let _ = c.call(&Request::Shutdown);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the daemon did not stop within 60 s; killed")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// The protocol, synchronously

/// A connected client: u32 big-endian length + JSON frames, hello exchanged.
pub struct Client {
    s: UnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client> {
        let s = UnixStream::connect(socket)?;
        let mut c = Client { s };
        match c.call(&Request::Hello {
            version: PROTOCOL_VERSION,
        })? {
            Response::Hello { .. } => Ok(c),
            other => Err(anyhow!("handshake refused: {other:?}")),
        }
    }

    pub fn call(&mut self, req: &Request) -> Result<Response> {
        let body = serde_json::to_vec(req)?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.s.write_all(&frame)?;
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len)?;
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut buf)?;
        Ok(serde_json::from_slice(&buf)?)
    }

    /// Start a run from a spec file; its id.
    pub fn start(&mut self, spec: &Path) -> Result<String> {
        let text = std::fs::read_to_string(spec)?;
        match self.call(&Request::Start {
            spec_path: spec.to_path_buf(),
            spec_text: text,
            id: None,
        })? {
            Response::Started(s) => Ok(s.id),
            other => Err(anyhow!("start {}: {other:?}", spec.display())),
        }
    }

    pub fn summaries(&mut self) -> Result<Vec<arctl::protocol::RunSummary>> {
        match self.call(&Request::Status { run: None })? {
            Response::Status { runs, .. } => Ok(runs),
            other => Err(anyhow!("status: {other:?}")),
        }
    }

    /// Wait until every run in `ids` is in a state for which `done` holds.
    pub fn wait_states(
        &mut self,
        ids: &[String],
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let runs = self.summaries()?;
            let pending: Vec<String> = ids
                .iter()
                .filter(|id| !runs.iter().any(|r| &r.id == *id && done(r.state.as_str())))
                .cloned()
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let states: Vec<String> = runs
                    .iter()
                    .filter(|r| pending.contains(&r.id))
                    .take(5)
                    .map(|r| format!("{}: {}", r.id, r.state.as_str()))
                    .collect();
                bail!(
                    "{} run(s) not done after {timeout:?}: {}",
                    pending.len(),
                    states.join(", ")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn is_ended(state: &str) -> bool {
    matches!(state, "finished" | "stopped" | "failed")
}

// ---------------------------------------------------------------------------------------
// Repos

/// `src/dAAA/dBB/fNNNNNN.txt`: 1,000 files per top folder, 100 per leaf folder.
pub fn file_path(i: usize) -> String {
    format!("src/d{:03}/d{:02}/f{i:06}.txt", i / 1000, (i / 100) % 10)
}

/// A repo at `dir` on branch `main` with `files` generated files (one commit, written with
/// `git fast-import`) and its work tree checked out.
pub fn gen_repo(w: &World, dir: &Path, files: usize, extra: &[(&str, &str)]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    w.git(dir, &["init", "-q", "-b", "main"])?;
    let mut c = w.git_cmd(dir);
    c.args(["fast-import", "--quiet"]).stdin(Stdio::piped());
    let mut child = c.spawn()?;
    {
        let mut s = std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().unwrap());
        let mut paths = Vec::with_capacity(files + extra.len());
        let mut mark = 0;
        let mut blob = |s: &mut dyn Write, data: &[u8]| -> Result<usize> {
            mark += 1;
            write!(s, "blob\nmark :{mark}\ndata {}\n", data.len())?;
            s.write_all(data)?;
            s.write_all(b"\n")?;
            Ok(mark)
        };
        for i in 0..files {
            let text = format!(
                "// generated file {i}\nvalue = {}\nlast line\n",
                i * 7919 % 10007
            );
            let m = blob(&mut s, text.as_bytes())?;
            paths.push((file_path(i), m, "100644"));
        }
        for (p, text) in extra {
            let m = blob(&mut s, text.as_bytes())?;
            paths.push((
                p.to_string(),
                m,
                if p.ends_with(".sh") {
                    "100755"
                } else {
                    "100644"
                },
            ));
        }
        let msg = format!("{files} generated files");
        write!(s, "commit refs/heads/main\ncommitter bench <bench@example.com> 1700000000 +0000\ndata {}\n{msg}\n", msg.len())?;
        for (p, m, mode) in &paths {
            writeln!(s, "M {mode} :{m} {p}")?;
        }
        writeln!(s)?;
        s.flush()?;
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("git fast-import failed: {st}");
    }
    w.git(dir, &["reset", "-q", "--hard", "main"])?;
    Ok(())
}

/// `gen_repo` without extra files, saying how long it took.
pub fn gen_repo_timed(w: &World, dir: &Path, files: usize) -> Result<()> {
    let (t, res) = time_ms(|| gen_repo(w, dir, files, &[]));
    res?;
    say(format!(
        "{files} files: repo generated in {:.1} s",
        t / 1000.0
    ));
    Ok(())
}

/// A repo of `files` generated files plus `runs/<id>/value.txt` (holding `value`) for each
/// run id: a scope of its own per run.
pub fn gen_runs_repo(
    w: &World,
    dir: &Path,
    files: usize,
    ids: &[String],
    value: &str,
) -> Result<()> {
    let values: Vec<(String, &str)> = ids
        .iter()
        .map(|id| (format!("runs/{id}/value.txt"), value))
        .collect();
    let extra: Vec<(&str, &str)> = values.iter().map(|(p, v)| (p.as_str(), *v)).collect();
    gen_repo(w, dir, files, &extra)
}

/// The spec of run `id` on a `gen_runs_repo` repo (metric `cat runs/<id>/value.txt`, scope
/// `runs/<id>/**`, proposer `agent.sh` of the World), written beside it; its path.
pub fn runs_repo_spec(w: &World, repo: &Path, id: &str, experiments: u32) -> Result<PathBuf> {
    let spec = w.path(&format!("{id}.toml"));
    let text = spec_text(
        id,
        repo,
        &format!("cat runs/{id}/value.txt"),
        &format!("runs/{id}/**"),
        experiments,
        &w.path("agent.sh"),
    );
    write(&spec, &text)?;
    Ok(spec)
}

/// Remove a worktree made by the bench (folder, admin entry, branch).
pub fn drop_worktree(w: &World, repo: &Path, path: &Path, branch: Option<&str>) {
    let _ = w.git(
        repo,
        &[
            "worktree",
            "remove",
            "--force",
            "--force",
            &path.display().to_string(),
        ],
    );
    let _ = std::fs::remove_dir_all(path);
    let _ = w.git(repo, &["worktree", "prune"]);
    if let Some(b) = branch {
        let _ = w.git(repo, &["branch", "-D", b]);
    }
}

// ---------------------------------------------------------------------------------------
// /proc

/// A number field of /proc/<pid>/status: VmRSS and VmHWM (in KiB), Threads.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// User + system CPU time of a process (all its threads), from /proc/<pid>/stat.
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, utime 14, stime 15 (1-based over the whole line).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(Duration::from_secs_f64((utime + stime) as f64 / hz))
}

/// CPU used by `pid` over `window`, as a fraction of one core (and its context switches).
pub fn idle_cpu(pid: u32, window: Duration) -> Result<f64> {
    let a = proc_cpu(pid).ok_or_else(|| anyhow!("no /proc/{pid}/stat"))?;
    let t = Instant::now();
    std::thread::sleep(window);
    let b = proc_cpu(pid).ok_or_else(|| anyhow!("no /proc/{pid}/stat"))?;
    Ok((b - a).as_secs_f64() / t.elapsed().as_secs_f64())
}

/// Context switches (voluntary + involuntary) of each thread of `pid`, by thread id.
pub fn proc_switches(pid: u32) -> std::collections::HashMap<u32, u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    dir.flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse::<u32>().ok()?;
            let s = std::fs::read_to_string(t.path().join("status")).ok()?;
            let n = s
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches")
                        || l.starts_with("nonvoluntary_ctxt_switches")
                })
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
            Some((tid, n))
        })
        .collect()
}

/// Wakeups of `pid`'s threads between two `proc_switches` readings (threads that came or
/// went in between count from zero / are lost).
pub fn switches_between(
    a: &std::collections::HashMap<u32, u64>,
    b: &std::collections::HashMap<u32, u64>,
) -> u64 {
    b.iter()
        .map(|(tid, n)| n.saturating_sub(a.get(tid).copied().unwrap_or(0)))
        .sum()
}

// ---------------------------------------------------------------------------------------
// Statistics

pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // Nearest rank.
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

pub use arctl::stats::median;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Time `f` once, in ms.
pub fn time_ms<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let r = f();
    (ms(t.elapsed()), r)
}

// ---------------------------------------------------------------------------------------
// The table

pub enum Target {
    /// figure / reference ≤ x
    RatioAtMost(f64),
    /// figure ≤ x (in the figure's unit)
    AtMost(f64),
    /// a yes/no check
    Holds(bool),
    /// printed for information
    Info,
}

pub struct Row {
    pub name: String,
    pub figure: String,
    pub reference: String,
    pub ratio: Option<f64>,
    pub target: String,
    pub pass: Option<bool>,
}

#[derive(Default)]
pub struct Report {
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

pub fn fmt_num(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "-".into();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}").trim().to_string()
}

impl Report {
    pub fn new(title: &str) -> Report {
        Report {
            title: title.to_string(),
            ..Default::default()
        }
    }

    /// A figure against a reference measured in the same run.
    pub fn compare(&mut self, name: &str, figure: f64, reference: f64, unit: &str, target: Target) {
        let ratio = figure / reference;
        let (t, pass) = match target {
            Target::RatioAtMost(x) => (format!("ratio <= {x}"), Some(ratio <= x)),
            Target::AtMost(x) => (format!("<= {}", fmt_num(x, unit)), Some(figure <= x)),
            Target::Holds(b) => ("holds".into(), Some(b)),
            Target::Info => ("(info)".into(), None),
        };
        self.rows.push(Row {
            name: name.into(),
            figure: fmt_num(figure, unit),
            reference: fmt_num(reference, unit),
            ratio: Some(ratio),
            target: t,
            pass,
        });
    }

    /// A figure on its own (no reference).
    pub fn figure(&mut self, name: &str, figure: f64, unit: &str, target: Target) {
        let (t, pass) = match target {
            Target::RatioAtMost(_) => unreachable!("a ratio needs a reference"),
            Target::AtMost(x) => (format!("<= {}", fmt_num(x, unit)), Some(figure <= x)),
            Target::Holds(b) => ("holds".into(), Some(b)),
            Target::Info => ("(info)".into(), None),
        };
        self.rows.push(Row {
            name: name.into(),
            figure: fmt_num(figure, unit),
            reference: "-".into(),
            ratio: None,
            target: t,
            pass,
        });
    }

    pub fn check(&mut self, name: &str, what: &str, ok: bool) {
        self.rows.push(Row {
            name: name.into(),
            figure: what.into(),
            reference: "-".into(),
            ratio: None,
            target: "holds".into(),
            pass: Some(ok),
        });
    }

    pub fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        eprintln!("  {n}");
        self.notes.push(n);
    }

    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.pass == Some(false))
    }

    pub fn print(&self) {
        let width = |cell: fn(&Row) -> &str, min: usize| {
            self.rows
                .iter()
                .map(|r| cell(r).len())
                .fold(min, usize::max)
        };
        let w0 = width(|r| &r.name, 6);
        let w1 = width(|r| &r.figure, 5);
        let w2 = width(|r| &r.reference, 9);
        let w4 = width(|r| &r.target, 6);
        println!();
        println!("== {} ==", self.title);
        println!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>6}  {:<w4$}  result",
            "figure", "arctl", "reference", "ratio", "target"
        );
        for r in &self.rows {
            let ratio = r
                .ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into());
            let res = match r.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "info",
            };
            println!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>6}  {:<w4$}  {res}",
                r.name, r.figure, r.reference, ratio, r.target
            );
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
        println!("conditions: {}", conditions());
    }

    pub fn exit(&self) -> ExitCode {
        self.print();
        if self.failed() {
            println!("RESULT: FAIL");
            ExitCode::FAILURE
        } else {
            println!("RESULT: PASS");
            ExitCode::SUCCESS
        }
    }
}

/// Cores, load, git version: what the figures were measured under.
pub fn conditions() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let git = Command::new("git")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cores} cores, load average {} at the end, {git}, libgit2 {}",
        load.join(" "),
        libgit2_version()
    )
}

fn libgit2_version() -> String {
    let v = git2::Version::get();
    let (a, b, c) = v.libgit2_version();
    format!("{a}.{b}.{c}")
}

/// Run a bench body; an error is a FAIL row, never a panic without a table.
pub fn run(title: &str, body: impl FnOnce(&mut Report) -> Result<()>) -> ExitCode {
    // The knobs every bench shares, checked before anything is measured: a bad value ends
    // the bench (exit 2) at once, not after minutes of work.
    bin();
    env_num::<u64>("ARCTL_BENCH_SETTLE_SECS", 0);
    let mut r = Report::new(title);
    eprintln!("== {title} ==");
    if let Err(e) = body(&mut r) {
        r.check("bench ran to the end", &format!("error: {e:#}"), false);
    }
    r.exit()
}

/// Progress line on stderr.
pub fn say(msg: impl AsRef<str>) {
    eprintln!("  {}", msg.as_ref());
}

// ---------------------------------------------------------------------------------------
// Runs and status

/// A run spec: `include` is the scope, `proposer` the agent command.
pub fn spec_text(
    id: &str,
    repo: &Path,
    metric: &str,
    include: &str,
    max_experiments: u32,
    proposer: &Path,
) -> String {
    format!(
        "id = \"{id}\"\nrepo = \"{}\"\n[metric]\ncommand = \"{metric}\"\ndirection = \"lower\"\n[scope]\ninclude = [\"{include}\"]\n[budget]\nmax_experiments = {max_experiments}\n[proposer]\ncommand = \"{}\"\n",
        repo.display(),
        proposer.display()
    )
}

/// `status` (all runs) round trips on one connected client, after a warm-up: every
/// sample in ms, and the number of runs in the answer.
pub fn status_round_trips(d: &Daemon, n: usize) -> Result<(Vec<f64>, usize)> {
    let mut c = d.client()?;
    let mut runs = 0;
    for _ in 0..20 {
        runs = c.summaries()?.len();
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = c.call(&Request::Status { run: None })?;
        v.push(ms(t.elapsed()));
        if !matches!(r, Response::Status { .. }) {
            bail!("status: {r:?}");
        }
    }
    Ok((v, runs))
}

/// Wall times (ms) of whole `arctl --no-autostart status --json` processes and, interleaved,
/// of `arctl --version` ones.
pub fn cli_status_times(w: &World, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut status, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        for (args, v) in [
            (&["--no-autostart", "status", "--json"][..], &mut status),
            (&["--version"][..], &mut floor),
        ] {
            let t = Instant::now();
            let o = w.arctl_cmd().args(args).output()?;
            v.push(ms(t.elapsed()));
            if !o.status.success() {
                bail!("arctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
    Ok((status, floor))
}

/// The status rows of a bench: protocol p99 (target) and the CLI process (information).
pub fn report_status(
    r: &mut Report,
    w: &World,
    d: &Daemon,
    label: &str,
    target_ms: f64,
) -> Result<()> {
    let n = env_num("ARCTL_BENCH_STATUS_CALLS", 2000);
    let (v, runs) = status_round_trips(d, n)?;
    r.figure(
        &format!("status round trip p99, {label} ({runs} runs, {n} calls)"),
        percentile(&v, 99.0),
        "ms",
        Target::AtMost(target_ms),
    );
    r.figure(
        &format!("status round trip median, {label}"),
        median(&v),
        "ms",
        Target::Info,
    );
    // The whole command as a shell runs it, beside `arctl --version` (the same binary's
    // start and exit, no socket): on this shared machine process start-up alone has a p99
    // of several ms, so the target is on the round trip above, the figures here are info.
    let (cli, floor) = cli_status_times(w, env_num("ARCTL_BENCH_CLI_CALLS", 200))?;
    for (what, v) in [
        ("`arctl status --json` process", &cli),
        ("  `arctl --version` process (start-up floor)", &floor),
    ] {
        r.figure(
            &format!("{what}, {label}, median"),
            median(v),
            "ms",
            Target::Info,
        );
        r.figure(
            &format!("{what}, {label}, p99"),
            percentile(v, 99.0),
            "ms",
            Target::Info,
        );
    }
    Ok(())
}

/// Idle CPU of the daemon over the configured window, as a row (target: under 0.5% of a core).
pub fn report_idle_cpu(r: &mut Report, d: &Daemon, label: &str) -> Result<()> {
    let window = idle_window();
    say(format!(
        "measuring idle CPU {label} over {:.0} s (ARCTL_BENCH_IDLE_SECS)",
        window.as_secs_f64()
    ));
    let w0 = proc_switches(d.pid);
    let cpu = idle_cpu(d.pid, window)?;
    let wakeups = switches_between(&w0, &proc_switches(d.pid)) as f64 / window.as_secs_f64();
    r.figure(
        &format!("idle CPU, {label} ({:.0} s window)", window.as_secs_f64()),
        cpu * 100.0,
        "% core",
        Target::AtMost(0.5),
    );
    r.figure(
        &format!("idle wakeups (context switches), {label}"),
        wakeups,
        "/s",
        Target::Info,
    );
    Ok(())
}

/// Wait for ext4 to forget recently deleted inodes before timing file creation. ext4's
/// inode allocator (`recently_deleted` in fs/ext4/ialloc.c) skips, one by one, every inode
/// freed less than 60 s ago (up to 360 s while its inode-table block is still dirty): after a
/// mass deletion (a previous bench's temp dir, the last round's worktrees) creating files
/// is up to ten times slower for whoever creates them, git and arctl alike (the profile of a
/// `git worktree add` of 100,000 files right after one: 24 s, ~65% of it in
/// `recently_deleted`; 3.3 s a minute later). So: write everything back (the blocks are
/// clean, the 60 s rule applies), then wait 65 s. ARCTL_BENCH_SETTLE_SECS (default 65; 0
/// to skip).
pub fn settle() {
    let secs: u64 = env_num("ARCTL_BENCH_SETTLE_SECS", if quick() { 0 } else { 65 });
    if secs > 0 {
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        say(format!(
            "letting the file system settle for {secs} s (ARCTL_BENCH_SETTLE_SECS)"
        ));
        std::thread::sleep(Duration::from_secs(secs));
    }
}
