//! The Slurm executor: the loop stays on this machine (a login node); metric and guard
//! commands (and optionally the agent) run on the compute nodes of an existing cluster.
//!
//! One command is one **allocation** and one **job step** in it:
//!
//! * `salloc --nodes=1 --ntasks=1 --job-name=<name> [--cpus-per-task] [--mem] --time=<backstop>
//!   [--partition --account --gres extra_args] -- sh -c 'echo <marker> $SLURM_JOB_ID ...; exec cat'`.
//!   salloc runs its command on this machine: `cat` reading a pipe this process holds. The
//!   marker line tells the moment the job got its node: the time until then is the queue
//!   wait, recorded apart (`Outcome::queue_ms`) and never counted toward a timeout. Closing
//!   the pipe ends `cat`, and salloc gives the allocation back (state COMPLETED). If the
//!   daemon dies, the pipe closes with it, so the allocation (and any step in it) ends even
//!   before a new daemon recovers.
//! * `srun --jobid=<id> --chdir=<worktree> ... -- sh -c <command>`, run locally through
//!   [`super::run`] (its own process group, stdin fed, output captured to the usual files:
//!   srun forwards the task's stdio, so the state dir need not be on the cluster). The
//!   command's timeout is enforced on the step, which starts at once in the allocation; the
//!   allocation's `--time` (the timeouts plus a margin, whole minutes) is only a backstop for
//!   the cluster side.
//!
//! Limits: `limits.memory` → `--mem` (exceeding it comes back as the step's "exceeded memory
//! limit" / oom-kill → [`Exit::MemoryLimit`]), `limits.cpus` → `--cpus-per-task`, `cpu_time`
//! → `ulimit -t` in the task (per process; SIGXCPU → [`Exit::CpuLimit`]), a job that hits its
//! time limit ("DUE TO TIME LIMIT") → [`Exit::TimedOut`].
//!
//! A **group** ([`Executor::begin_group`]: a paired measurement round) keeps one allocation for
//! all its commands: best and candidate run on the same node, one after the other, with one
//! queue wait. A group whose allocation had to be cancelled (timeout) pins its next one to
//! the same node (`--nodelist`).
//!
//! Jobs are named `arctl-<hash>.<run>.<experiment>.<role>` (the process tag), their ids are
//! recorded in a ledger file until they end, and [`Executor::recover`] cancels (`scancel`)
//! whatever an earlier daemon left: the ledger's ids and any job of this user whose name
//! starts with the run's prefix.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::executor::{ClusterJob, Executor, ExecutorOptions};
use super::{epoch_ms, Cancel, CommandSpec, Exit, Limits, Outcome, TAG_VAR};
use crate::spec::ExecutorSpec;

/// Longest a Slurm client command (squeue, scancel, scontrol, sinfo) may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Added to the command timeouts for an allocation's `--time` (arctl enforces the timeouts
/// itself; this only bounds what the cluster runs if arctl is gone).
const TIME_MARGIN: Duration = Duration::from_secs(120);
/// How long salloc may take to give an allocation back before it is killed and the job
/// cancelled.
const RELEASE_WAIT: Duration = Duration::from_secs(15);
/// How long to wait for a cancelled job to leave the queue.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// Attempts at an allocation while the controller cannot be reached.
const TRANSIENT_RETRIES: u32 = 5;
/// The allocation's local command prints this, the job id and the node when it starts.
const GRANTED: &str = "arctl-allocation";
/// The Slurm client commands the executor uses.
pub const TOOLS: [&str; 6] = ["srun", "salloc", "squeue", "scancel", "scontrol", "sinfo"];

/// A Slurm job name from a process tag: `arctl-0123/run/3/best` → `arctl-0123.run.3.best`.
pub fn job_name(tag: &str) -> String {
    let name: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '.'
            }
        })
        .collect();
    name.trim_end_matches('.').to_string() + if tag.ends_with('/') { "." } else { "" }
}

/// Quote for `sh`.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=./:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whole minutes, rounded up (Slurm time limits are in minutes).
fn minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

/// A Slurm time limit as sinfo prints it ("infinite", "30", "1:00:00", "2-00:00:00");
/// None: unlimited or unreadable.
fn parse_slurm_time(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let secs = match (s.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, sec]) => m * 60 + sec,
        (_, [h, m, sec]) => h * 3600 + m * 60 + sec,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        _ => return None,
    };
    Some(Duration::from_secs(days * 86400 + secs))
}

/// `--mem` in MiB, rounded up.
fn mem_arg(bytes: u64) -> String {
    format!("--mem={}M", bytes.div_ceil(1 << 20).max(1))
}

/// `salloc: Pending job allocation 123` / `salloc: Granted job allocation 123`.
fn parse_salloc_job(line: &str) -> Option<u64> {
    let rest = line.split("job allocation ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `<marker> <job id> <node list>` from the allocation's command.
fn parse_granted(line: &str) -> Option<(u64, String)> {
    let mut it = line.split_whitespace();
    if it.next()? != GRANTED {
        return None;
    }
    let id = it.next()?.parse().ok()?;
    Some((id, it.next().unwrap_or("").to_string()))
}

/// Did salloc fail for a reason worth another attempt?
fn transient(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "unable to contact slurm controller",
        "socket timed out",
        "connection refused",
        "connection timed out",
        "temporarily unavailable",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// What the end of the step's stderr (srun's and slurmstepd's messages) says about how it
/// ended; `exit` is what the local srun process returned.
pub fn classify(exit: &Exit, stderr_tail: &str, cpu_limited: bool) -> Exit {
    if matches!(exit, Exit::TimedOut | Exit::Cancelled) {
        return exit.clone();
    }
    let t = stderr_tail.to_lowercase();
    let slurm_line = |l: &&str| l.starts_with("slurmstepd") || l.starts_with("srun:");
    let slurm: Vec<&str> = t.lines().filter(slurm_line).collect();
    if slurm.iter().any(|l| {
        l.contains("exceeded memory limit")
            || l.contains("exceeded job memory limit")
            || l.contains("oom-kill")
            || l.contains("oom_kill")
            || l.contains("out of memory")
    }) {
        return Exit::MemoryLimit;
    }
    if slurm.iter().any(|l| l.contains("due to time limit")) {
        return Exit::TimedOut;
    }
    match exit {
        Exit::Code { code } if cpu_limited && *code == 128 + libc::SIGXCPU => Exit::CpuLimit,
        Exit::Code { code } if *code > 128 && *code < 128 + 65 => {
            // srun returns 128 + N when the task died of signal N ("task 0: Killed"); a
            // command that itself exits 139 shows as "Exited with exit code 139".
            let by_signal = slurm
                .iter()
                .any(|l| l.contains("task 0: ") && !l.contains("exited with exit code"));
            if by_signal {
                Exit::Signal { signal: code - 128 }
            } else {
                exit.clone()
            }
        }
        other => other.clone(),
    }
}

fn tail_of(path: &Path, max: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).to_string()
}

/// Run a Slurm client command with a deadline; Err when it cannot start or hangs.
pub fn tool(program: &str, args: &[String]) -> io::Result<std::process::Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running {program}: {e}")))?;
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{program} {} did not answer in {TOOL_TIMEOUT:?}",
                    args.join(" ")
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn text(o: &std::process::Output) -> String {
    let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
    if !e.is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(&e);
    }
    s
}

/// One job of `squeue --user <me>`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: u64,
    pub name: String,
    pub state: String,
}

/// This user's jobs in the queue (any state squeue still shows), or why not.
pub fn my_jobs() -> io::Result<Vec<QueuedJob>> {
    let uid = nix::unistd::getuid().as_raw();
    let o = tool(
        "squeue",
        &[
            "--noheader".into(),
            format!("--user={uid}"),
            "--format=%i|%T|%j".into(),
        ],
    )?;
    if !o.status.success() {
        return Err(io::Error::other(format!("squeue failed: {}", text(&o))));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.trim().splitn(3, '|');
            let id = it.next()?.trim().parse().ok()?;
            let state = it.next()?.trim().to_string();
            Some(QueuedJob {
                id,
                state,
                name: it.next().unwrap_or("").trim().to_string(),
            })
        })
        .collect())
}

/// `scancel` the jobs (errors about jobs already gone are ignored).
pub fn scancel(ids: &[u64]) -> io::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut args = vec!["--quiet".to_string()];
    args.extend(ids.iter().map(u64::to_string));
    let o = tool("scancel", &args)?;
    let t = text(&o).to_lowercase();
    if !o.status.success()
        && !t.contains("invalid job id")
        && !t.contains("already completing or completed")
    {
        return Err(io::Error::other(format!("scancel failed: {}", text(&o))));
    }
    Ok(())
}

/// Cancel this user's unfinished jobs whose name starts with `prefix`, and those of
/// `recorded` (id, name) that still carry the recorded name (the prefix may have changed
/// since, e.g. a moved state dir); wait until they have left the queue. Returns the ids
/// cancelled.
pub fn cancel_matching(prefix: &str, recorded: &[(u64, String)]) -> io::Result<Vec<u64>> {
    let ours = |j: &QueuedJob| {
        (j.name.starts_with(prefix)
            || recorded
                .iter()
                .any(|(id, name)| *id == j.id && *name == j.name))
            && !matches!(
                j.state.as_str(),
                "COMPLETED"
                    | "CANCELLED"
                    | "FAILED"
                    | "TIMEOUT"
                    | "OUT_OF_MEMORY"
                    | "NODE_FAIL"
                    | "PREEMPTED"
                    | "BOOT_FAIL"
                    | "DEADLINE"
            )
    };
    let jobs = my_jobs()?;
    let targets: Vec<u64> = jobs.iter().filter(|j| ours(j)).map(|j| j.id).collect();
    if targets.is_empty() {
        return Ok(targets);
    }
    scancel(&targets)?;
    let deadline = Instant::now() + CANCEL_WAIT;
    loop {
        let left: Vec<u64> = my_jobs()?
            .iter()
            .filter(|j| targets.contains(&j.id) && ours(j))
            .map(|j| j.id)
            .collect();
        if left.is_empty() {
            return Ok(targets);
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "jobs {left:?} are still in the queue {CANCEL_WAIT:?} after scancel"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Ledger {
    schema: u32,
    jobs: Vec<LedgerJob>,
}

#[derive(Serialize, Deserialize, Clone)]
struct LedgerJob {
    id: u64,
    name: String,
}

fn read_ledger(path: &Path) -> Vec<LedgerJob> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Ledger>(&b).ok())
        .map(|l| l.jobs)
        .unwrap_or_default()
}

fn write_ledger(path: &Path, jobs: &BTreeMap<u64, ClusterJob>) -> io::Result<()> {
    use std::io::Write;
    let ledger = Ledger {
        schema: 1,
        jobs: jobs
            .values()
            .map(|j| LedgerJob {
                id: j.id.parse().unwrap_or(0),
                name: j.name.clone(),
            })
            .collect(),
    };
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(&ledger).map_err(io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// An allocation held by this process (see the module documentation).
struct Allocation {
    job_id: u64,
    node: String,
    queue_ms: u64,
    /// Commands run in it so far.
    steps: u32,
    salloc: Child,
    /// Closing it ends the allocation.
    feed: Option<ChildStdin>,
    readers: Vec<JoinHandle<()>>,
}

struct GroupState {
    commands: u32,
    alloc: Option<Allocation>,
    /// The node of the group's first allocation: a later one is pinned to it.
    node: Option<String>,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<ThreadId, GroupState>,
    jobs: BTreeMap<u64, ClusterJob>,
}

enum Event {
    Pending(u64),
    Granted(u64, String),
}

enum Allocated {
    Got(Allocation),
    /// Cancelled while waiting in the queue, after this long.
    Cancelled {
        waited_ms: u64,
        job: Option<u64>,
    },
    Failed(String),
}

/// The Slurm engine of one run.
pub struct Slurm {
    spec: ExecutorSpec,
    cpus: Option<u32>,
    ledger: Option<PathBuf>,
    name_prefix: String,
    inner: Mutex<Inner>,
    /// The partition's MaxTime (None: unlimited), asked once.
    max_time: std::sync::OnceLock<Option<Duration>>,
}

impl Slurm {
    /// The longest time limit the run's partition (or the default one) allows.
    fn max_time(&self) -> Option<Duration> {
        *self.max_time.get_or_init(|| {
            let mut args = vec!["--noheader".to_string(), "--format=%P|%l".into()];
            if let Some(p) = &self.spec.partition {
                args.push(format!("--partition={p}"));
            }
            let o = tool("sinfo", &args).ok()?;
            let out = String::from_utf8_lossy(&o.stdout).to_string();
            let line = out.lines().find(|l| {
                self.spec.partition.is_some()
                    || l.split('|').next().is_some_and(|p| p.ends_with('*'))
            })?;
            parse_slurm_time(line.split('|').nth(1)?)
        })
    }

    pub fn new(spec: &ExecutorSpec, opts: ExecutorOptions) -> Slurm {
        Slurm {
            spec: spec.clone(),
            cpus: opts.cpus,
            ledger: opts.ledger,
            name_prefix: job_name(&opts.name_prefix),
            inner: Mutex::new(Inner::default()),
            max_time: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Partition, account, gres and the extra options: where and as whom jobs run.
    fn site_args(&self) -> Vec<String> {
        site_args(&self.spec)
    }

    fn resource_args(&self, memory: Option<u64>) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(c) = self.cpus {
            a.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = memory {
            a.push(mem_arg(m));
        }
        a
    }

    fn track(&self, id: u64, name: &str, state: &str, node: Option<String>) {
        let mut inner = self.lock();
        inner.jobs.insert(
            id,
            ClusterJob {
                id: id.to_string(),
                name: name.to_string(),
                state: state.to_string(),
                node,
                since_ms: epoch_ms(),
            },
        );
        self.save(&inner);
    }

    fn untrack(&self, id: u64) {
        let mut inner = self.lock();
        if inner.jobs.remove(&id).is_some() {
            self.save(&inner);
        }
    }

    fn save(&self, inner: &Inner) {
        if let Some(path) = &self.ledger {
            if let Err(e) = write_ledger(path, &inner.jobs) {
                tracing::warn!("writing the Slurm job ledger {}: {e}", path.display());
            }
        }
    }

    /// Get an allocation, waiting in the queue as long as it takes (or until cancelled).
    fn allocate(
        &self,
        spec: &CommandSpec,
        limit: Option<Duration>,
        pin: Option<&str>,
        cancel: &Cancel,
    ) -> io::Result<Allocated> {
        let name = job_name(&spec.tag);
        let mut args = vec![
            "--nodes=1".to_string(),
            "--ntasks=1".into(),
            format!("--job-name={name}"),
        ];
        args.extend(self.resource_args(spec.limits.memory));
        // The backstop never asks more than the partition allows (arctl's own timeout holds).
        if let Some(l) = limit {
            let l = self.max_time().map_or(l, |max| l.min(max));
            args.push(format!("--time={}", minutes(l)));
        }
        args.extend(self.site_args());
        if let Some(n) = pin {
            args.push(format!("--nodelist={n}"));
        }
        args.extend([
            "--".into(),
            "sh".into(),
            "-c".into(),
            format!("echo \"{GRANTED} $SLURM_JOB_ID $SLURM_JOB_NODELIST\"; exec cat >/dev/null"),
        ]);
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match self.try_allocate(&args, &name, &spec.tag, cancel, started)? {
                Allocated::Failed(msg) if transient(&msg) && attempt < TRANSIENT_RETRIES => {
                    attempt += 1;
                    tracing::warn!(
                        "salloc failed ({msg}); attempt {} of {TRANSIENT_RETRIES} in a moment",
                        attempt + 1
                    );
                    let until = Instant::now() + Duration::from_secs(2u64.pow(attempt));
                    while Instant::now() < until {
                        if cancel.is_cancelled() {
                            return Ok(Allocated::Cancelled {
                                waited_ms: started.elapsed().as_millis() as u64,
                                job: None,
                            });
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                other => return Ok(other),
            }
        }
    }

    fn try_allocate(
        &self,
        args: &[String],
        name: &str,
        tag: &str,
        cancel: &Cancel,
        started: Instant,
    ) -> io::Result<Allocated> {
        let mut cmd = Command::new("salloc");
        cmd.args(args)
            // Found by a restarted daemon (prefix), but not swept with the step (exact tag).
            .env(TAG_VAR, format!("{tag}#salloc"))
            .env_remove("SLURM_JOB_ID")
            .env_remove("SLURM_JOBID")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting salloc: {e}")))?;
        let (tx, rx) = mpsc::channel::<Event>();
        let log = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some((id, nodes)) = parse_granted(&line) {
                        let _ = tx.send(Event::Granted(id, nodes));
                    }
                }
            }));
        }
        if let Some(err) = child.stderr.take() {
            let (tx, log) = (tx.clone(), log.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if line.contains("Pending job allocation") {
                        if let Some(id) = parse_salloc_job(&line) {
                            let _ = tx.send(Event::Pending(id));
                        }
                    }
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            }));
        }
        drop(tx);
        let feed = child.stdin.take();
        let mut job: Option<u64> = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Pending(id)) => {
                    job = Some(id);
                    self.track(id, name, "queued", None);
                }
                Ok(Event::Granted(id, node)) => {
                    let queue_ms = started.elapsed().as_millis() as u64;
                    self.track(id, name, "running", Some(node.clone()));
                    return Ok(Allocated::Got(Allocation {
                        job_id: id,
                        node,
                        queue_ms,
                        steps: 0,
                        salloc: child,
                        feed,
                        readers,
                    }));
                }
                Err(RecvTimeoutError::Timeout) => {
                    if cancel.is_cancelled() {
                        // SIGTERM: salloc withdraws the request; the scancel covers a salloc
                        // that is past that point.
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(child.id() as i32),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                        drop(feed);
                        finish_child(&mut child, Duration::from_secs(5));
                        let ids: Vec<(u64, String)> =
                            job.map(|id| (id, name.to_string())).into_iter().collect();
                        if let Err(e) = cancel_matching(name, &ids) {
                            tracing::warn!("cancelling the queued job {name}: {e}");
                        }
                        if let Some(id) = job {
                            self.untrack(id);
                        }
                        for r in readers {
                            let _ = r.join();
                        }
                        return Ok(Allocated::Cancelled {
                            waited_ms: started.elapsed().as_millis() as u64,
                            job,
                        });
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // salloc ended without an allocation.
                    drop(feed);
                    finish_child(&mut child, Duration::from_secs(5));
                    for r in readers {
                        let _ = r.join();
                    }
                    if let Some(id) = job {
                        let _ = scancel(&[id]);
                        self.untrack(id);
                    }
                    let msg = log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .trim()
                        .to_string();
                    return Ok(Allocated::Failed(if msg.is_empty() {
                        "salloc ended without an allocation".into()
                    } else {
                        msg
                    }));
                }
            }
        }
    }

    /// Give an allocation back; `force`: cancel it at once (a step may still be running).
    fn release(&self, mut a: Allocation, force: bool) {
        if force {
            if let Err(e) = scancel(&[a.job_id]) {
                tracing::warn!("cancelling job {}: {e}", a.job_id);
            }
        }
        drop(a.feed.take());
        let exited = finish_child(&mut a.salloc, RELEASE_WAIT);
        let clean = exited
            && a.salloc
                .try_wait()
                .ok()
                .flatten()
                .is_some_and(|s| s.success());
        if !clean && !force {
            // salloc did not give it back cleanly: make sure the job is gone.
            if let Err(e) = scancel(&[a.job_id]) {
                tracing::warn!("cancelling job {}: {e}", a.job_id);
            }
        }
        for r in a.readers.drain(..) {
            let _ = r.join();
        }
        self.untrack(a.job_id);
    }

    /// Run the command as a step of the allocation.
    fn step(&self, spec: &CommandSpec, a: &Allocation, cancel: &Cancel) -> io::Result<Outcome> {
        let mut remote = String::new();
        if let Some(t) = spec.limits.cpu_time {
            let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
            remote.push_str(&format!(
                "ulimit -H -t {} 2>/dev/null; ulimit -S -t {secs} 2>/dev/null; ",
                secs + 1
            ));
        }
        remote.push_str(&spec.command);
        let mut argv = vec![
            "srun".to_string(),
            format!("--jobid={}", a.job_id),
            "--nodes=1".into(),
            "--ntasks=1".into(),
            format!("--job-name={}", job_name(&spec.tag)),
            format!("--chdir={}", spec.cwd.display()),
            "--kill-on-bad-exit=1".into(),
        ];
        argv.extend(self.resource_args(spec.limits.memory));
        if spec.stdin.is_none() {
            argv.push("--input=none".into());
        }
        // The task does not carry this machine's process tag (on a one-machine cluster the
        // local sweep would otherwise take it for an escaped process of srun).
        argv.extend([
            "--".into(),
            "env".into(),
            "-u".into(),
            TAG_VAR.into(),
            "sh".into(),
            "-c".into(),
            remote,
        ]);
        let local = CommandSpec {
            command: format!(
                "exec {}",
                argv.iter()
                    .map(|a| sh_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            cwd: spec.cwd.clone(),
            env: spec.env.clone(),
            stdin: spec.stdin.clone(),
            stdout: spec.stdout.clone(),
            stderr: spec.stderr.clone(),
            timeout: spec.timeout,
            limits: Limits::default(),
            tag: spec.tag.clone(),
            count_instructions: false,
        };
        let mut o = super::run(&local, cancel)?;
        o.exit = classify(
            &o.exit,
            &tail_of(&spec.stderr, 16 * 1024),
            spec.limits.cpu_time.is_some(),
        );
        // What srun itself used says nothing about the task on the node.
        o.cpu_ms = 0;
        o.peak_rss = 0;
        o.instructions = None;
        o.job_id = Some(a.job_id.to_string());
        o.node = Some(a.node.clone());
        Ok(o)
    }
}

/// Wait for a child to exit; SIGKILL it after `wait`. True when it exited by itself.
fn finish_child(child: &mut Child, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut nap = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

fn site_args(spec: &ExecutorSpec) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(p) = &spec.partition {
        a.push(format!("--partition={p}"));
    }
    if let Some(acc) = &spec.account {
        a.push(format!("--account={acc}"));
    }
    if let Some(g) = &spec.gres {
        a.push(format!("--gres={g}"));
    }
    a.extend(spec.extra_args.iter().cloned());
    a
}

impl Executor for Slurm {
    fn run(&self, spec: &CommandSpec, cancel: &Cancel) -> io::Result<Outcome> {
        let me = std::thread::current().id();
        let (grouped, held, pin, commands) = {
            let mut inner = self.lock();
            match inner.groups.get_mut(&me) {
                Some(g) => (true, g.alloc.take(), g.node.clone(), g.commands),
                None => (false, None, None, 1),
            }
        };
        let mut alloc = match held {
            Some(a) => a,
            None => {
                let limit = spec.timeout.map(|t| t * commands.max(1) + TIME_MARGIN);
                match self.allocate(spec, limit, pin.as_deref(), cancel)? {
                    Allocated::Got(a) => a,
                    Allocated::Cancelled { waited_ms, job } => {
                        let now = epoch_ms();
                        return Ok(Outcome {
                            exit: Exit::Cancelled,
                            wall_ms: 0,
                            cpu_ms: 0,
                            peak_rss: 0,
                            instructions: None,
                            started_at_ms: now,
                            ended_at_ms: now,
                            pid: 0,
                            pid_start_time: 0,
                            queue_ms: Some(waited_ms),
                            job_id: job.map(|j| j.to_string()),
                            node: None,
                        });
                    }
                    Allocated::Failed(msg) => {
                        return Err(io::Error::other(format!(
                            "Slurm refused the job ({}): {msg}",
                            self.describe()
                        )));
                    }
                }
            }
        };
        let queue_ms = if alloc.steps == 0 { alloc.queue_ms } else { 0 };
        alloc.steps += 1;
        let result = self.step(spec, &alloc, cancel);
        // A step stopped from here (timeout, cancel) may still be winding down on the node:
        // that allocation is not reused.
        let clean = matches!(&result, Ok(o) if !matches!(o.exit, Exit::TimedOut | Exit::Cancelled));
        let keep = grouped && clean;
        let back = {
            let mut inner = self.lock();
            match inner.groups.get_mut(&me) {
                Some(g) => {
                    g.node = Some(alloc.node.clone());
                    if keep {
                        g.alloc = Some(alloc);
                        None
                    } else {
                        Some(alloc)
                    }
                }
                None => Some(alloc),
            }
        };
        if let Some(a) = back {
            self.release(a, !clean);
        }
        let mut o = result?;
        o.queue_ms = Some(queue_ms);
        Ok(o)
    }

    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn is_local(&self) -> bool {
        false
    }

    fn begin_group(&self, commands: u32) {
        let me = std::thread::current().id();
        let old = self.lock().groups.insert(
            me,
            GroupState {
                commands,
                alloc: None,
                node: None,
            },
        );
        if let Some(a) = old.and_then(|g| g.alloc) {
            self.release(a, false);
        }
    }

    fn end_group(&self) {
        let me = std::thread::current().id();
        let g = self.lock().groups.remove(&me);
        if let Some(a) = g.and_then(|g| g.alloc) {
            self.release(a, false);
        }
    }

    fn jobs(&self) -> Vec<ClusterJob> {
        self.lock().jobs.values().cloned().collect()
    }

    fn recover(&self) -> io::Result<Vec<String>> {
        let recorded: Vec<(u64, String)> = self
            .ledger
            .as_deref()
            .map(read_ledger)
            .unwrap_or_default()
            .into_iter()
            .map(|j| (j.id, j.name))
            .collect();
        let cancelled = cancel_matching(&self.name_prefix, &recorded)?;
        if let Some(path) = &self.ledger {
            let _ = std::fs::remove_file(path);
        }
        Ok(if cancelled.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<String> = cancelled.iter().map(u64::to_string).collect();
            vec![format!(
                "cancelled {} Slurm job(s) left by the previous daemon: {}",
                cancelled.len(),
                ids.join(", ")
            )]
        })
    }

    fn shutdown(&self) {
        let (allocs, jobs): (Vec<Allocation>, Vec<(u64, String)>) = {
            let mut inner = self.lock();
            let allocs = inner
                .groups
                .values_mut()
                .filter_map(|g| g.alloc.take())
                .collect();
            let jobs = inner
                .jobs
                .iter()
                .map(|(id, j)| (*id, j.name.clone()))
                .collect();
            (allocs, jobs)
        };
        for a in allocs {
            self.release(a, true);
        }
        if !jobs.is_empty() {
            if let Err(e) = cancel_matching(&self.name_prefix, &jobs) {
                tracing::warn!("cancelling Slurm jobs {jobs:?} at shutdown: {e}");
            }
            for (id, _) in jobs {
                self.untrack(id);
            }
        }
    }
}

/// What `arctl start` checks before creating a run on Slurm: the client commands are on
/// PATH, the controller answers, the partition exists, and a job with the run's options can
/// start and sees `dirs` (the shared-filesystem requirement). Ok: maybe a note (the check
/// job could not start at once, so the visibility is checked again before the baseline);
/// Err: what is wrong, for the user.
pub fn preflight(
    spec: &ExecutorSpec,
    cpus: Option<u32>,
    memory: Option<u64>,
    dirs: &[PathBuf],
    name: &str,
) -> Result<Option<String>, String> {
    for t in TOOLS {
        if which(t).is_none() {
            return Err(format!(
                "executor kind = \"slurm\": `{t}` is not on PATH; the Slurm executor needs the Slurm client commands ({}) on the machine where the arctl daemon runs",
                TOOLS.join(", ")
            ));
        }
    }
    let ping = tool("scontrol", &["ping".into()]).map_err(|e| {
        format!("executor kind = \"slurm\": the Slurm controller is not reachable: {e}")
    })?;
    let said = text(&ping);
    if !ping.status.success() || !said.contains("is UP") {
        return Err(format!(
            "executor kind = \"slurm\": the Slurm controller is not reachable (scontrol ping: {})",
            said.lines().next().unwrap_or("no answer")
        ));
    }
    let parts = tool("sinfo", &["--noheader".into(), "--format=%P".into()])
        .map_err(|e| format!("executor kind = \"slurm\": {e}"))?;
    let mut names: Vec<String> = String::from_utf8_lossy(&parts.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    names.dedup();
    let plain: Vec<String> = names
        .iter()
        .map(|n| n.trim_end_matches('*').to_string())
        .collect();
    match &spec.partition {
        Some(p) if !plain.contains(p) => {
            let o = tool(
                "scontrol",
                &[
                    "show".into(),
                    "partition".into(),
                    "--oneliner".into(),
                    p.clone(),
                ],
            )
            .ok();
            if !o.as_ref().is_some_and(|o| o.status.success()) {
                return Err(format!(
                    "executor.partition = {p:?}: no such Slurm partition (partitions: {})",
                    if plain.is_empty() {
                        "none".into()
                    } else {
                        plain.join(", ")
                    }
                ));
            }
        }
        None if !names.iter().any(|n| n.ends_with('*')) => {
            return Err(format!("executor kind = \"slurm\": the cluster has no default partition; set executor.partition (partitions: {})", plain.join(", ")));
        }
        _ => {}
    }
    // Would the cluster accept a job with the run's options (without submitting one)?
    let mut args = vec![
        "--test-only".to_string(),
        "--nodes=1".into(),
        "--ntasks=1".into(),
        format!("--job-name={name}"),
    ];
    if let Some(c) = cpus {
        args.push(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = memory {
        args.push(mem_arg(m));
    }
    args.extend(site_args(spec));
    args.push("true".into());
    let o = tool("srun", &args).map_err(|e| format!("executor kind = \"slurm\": {e}"))?;
    if !o.status.success() {
        let said: Vec<String> = text(&o)
            .lines()
            .filter(|l| !l.contains("to start at"))
            .map(str::to_string)
            .collect();
        return Err(format!(
            "executor kind = \"slurm\": the cluster refuses a job with the run's options ({}): {}",
            args[1..args.len() - 1].join(" "),
            said.join("; ")
        ));
    }
    // A small real job: does it start, and does the node see the dirs?
    let mut args = vec![
        "--immediate=30".to_string(),
        "--nodes=1".into(),
        "--ntasks=1".into(),
        "--time=1".into(),
        format!("--job-name={name}"),
        "--chdir=/".into(),
        "--input=none".into(),
    ];
    args.extend(site_args(spec));
    args.extend(["--".into(), "sh".into(), "-c".into(), "for d; do [ -d \"$d\" ] || echo \"arctl-missing $d\"; done; echo \"arctl-node $(hostname)\"".into(), "sh".into()]);
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    let o = tool("srun", &args).map_err(|e| format!("executor kind = \"slurm\": {e}"))?;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let node = out
        .lines()
        .find_map(|l| l.strip_prefix("arctl-node "))
        .unwrap_or("?")
        .to_string();
    let missing: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("arctl-missing "))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "executor kind = \"slurm\": {} not visible on compute node {node}: arctl runs the commands in the run's worktree on the compute nodes, so the repository, its worktrees and the arctl state dir must be on a filesystem shared with them, at the same path",
            missing.join(", ")
        ));
    }
    if o.status.success() && out.contains("arctl-node ") {
        return Ok(None);
    }
    let said = text(&o);
    let lower = said.to_lowercase();
    if lower.contains("unable to allocate resources")
        && (lower.contains("busy")
            || lower.contains("immediate")
            || lower.contains("temporarily unavailable"))
    {
        return Ok(Some(format!("the shared-filesystem check could not start at once ({}); it runs again before the baseline", said.lines().last().unwrap_or(""))));
    }
    Err(format!(
        "executor kind = \"slurm\": a test job with the run's options failed: {}",
        if said.is_empty() {
            format!("srun {}", o.status)
        } else {
            said
        }
    ))
}

/// The full path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_names_and_quoting() {
        assert_eq!(
            job_name("arctl-00ff/loop/3/guard-tests"),
            "arctl-00ff.loop.3.guard-tests"
        );
        assert_eq!(job_name("arctl-00ff/loop/"), "arctl-00ff.loop.");
        assert_eq!(sh_quote("--chdir=/a/b"), "--chdir=/a/b");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(minutes(Duration::from_secs(1)), 1);
        assert_eq!(minutes(Duration::from_secs(61)), 2);
        assert_eq!(mem_arg(200 << 20), "--mem=200M");
        assert_eq!(mem_arg((200 << 20) + 1), "--mem=201M");
    }

    #[test]
    fn slurm_time_limits() {
        let t = |s| parse_slurm_time(s).map(|d| d.as_secs());
        assert_eq!(t("infinite"), None);
        assert_eq!(t("30"), Some(1800));
        assert_eq!(t("1:30"), Some(90));
        assert_eq!(t("1:00:00"), Some(3600));
        assert_eq!(t("2-00:00:00"), Some(2 * 86400));
        assert_eq!(t("1-12"), Some(86400 + 12 * 3600));
        assert_eq!(t("1-0:30"), Some(86400 + 1800));
    }

    #[test]
    fn slurm_parses_salloc_and_marker_lines() {
        assert_eq!(
            parse_salloc_job("salloc: Pending job allocation 8"),
            Some(8)
        );
        assert_eq!(
            parse_salloc_job("salloc: Granted job allocation 1234"),
            Some(1234)
        );
        assert_eq!(
            parse_salloc_job("salloc: job 8 queued and waiting for resources"),
            None
        );
        assert_eq!(
            parse_granted("arctl-allocation 12 node-a1"),
            Some((12, "node-a1".into()))
        );
        assert_eq!(parse_granted("something else"), None);
        assert!(transient("salloc: error: Job submit/allocate failed: Unable to contact slurm controller (connect failure)"));
        assert!(!transient(
            "salloc: error: invalid partition specified: nope"
        ));
    }

    #[test]
    fn slurm_classifies_step_ends() {
        let code = |c| Exit::Code { code: c };
        let oom = "slurmstepd-vm: error: StepId=5.0 exceeded memory limit (434651136 > 104857600), being killed\nsrun: error: vm: task 0: Killed\n";
        assert_eq!(classify(&code(137), oom, false), Exit::MemoryLimit);
        let cg = "slurmstepd: error: Detected 1 oom_kill event in StepId=7.0. Some of the step tasks have been OOM Killed.\n";
        assert_eq!(classify(&code(0), cg, false), Exit::MemoryLimit);
        let tl = "slurmstepd: error: *** STEP 9.0 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***\n";
        assert_eq!(classify(&code(137), tl, false), Exit::TimedOut);
        assert_eq!(
            classify(
                &code(139),
                "srun: error: vm: task 0: Segmentation fault\n",
                false
            ),
            Exit::Signal { signal: 11 }
        );
        assert_eq!(
            classify(
                &code(139),
                "srun: error: vm: task 0: Exited with exit code 139\n",
                false
            ),
            code(139)
        );
        assert_eq!(
            classify(
                &code(128 + libc::SIGXCPU),
                "srun: error: vm: task 0: CPU time limit exceeded\n",
                true
            ),
            Exit::CpuLimit
        );
        assert_eq!(
            classify(
                &code(3),
                "srun: error: vm: task 0: Exited with exit code 3\n",
                false
            ),
            code(3)
        );
        // The program's own words are not Slurm's.
        assert_eq!(
            classify(&code(1), "RuntimeError: CUDA out of memory\n", false),
            code(1)
        );
        assert_eq!(classify(&Exit::TimedOut, oom, false), Exit::TimedOut);
    }
}
