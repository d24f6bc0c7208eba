//! Running the children of a loop (proposer, metric, guard commands), synchronously.
//!
//! Each command runs as `sh -c <command>` in its own process group, with `ARCTL_TAG=<tag>`
//! in its environment, its output captured to files, and its limits enforced by the
//! mechanism detected on this machine ([`limit_mechanism`]):
//!
//! * **cgroup v2** (when a delegated cgroup with the memory controller is detected): one
//!   child cgroup per command with `memory.max` (read back to confirm; otherwise the
//!   command falls back to the rlimit path), `memory.oom.group`, `cpu.max` for pinned runs;
//!   the OOM killer's kills are reported as [`Exit::MemoryLimit`].
//! * **rlimits + RSS watchdog** (everywhere else, e.g. cgroup v1 / hybrid hosts): the
//!   memory limit is enforced by a watchdog that samples the RSS of the whole tree (the
//!   process group, the leader's descendants and escaped processes carrying the tag) every
//!   50 ms and SIGKILLs the tree the moment the sum exceeds `memory` → `MemoryLimit`.
//!   `RLIMIT_DATA` is set per process only as a backstop, at `memory + max(memory, 4 GiB)`:
//!   high enough that an allocation past the limit normally *succeeds* and is then caught
//!   by the watchdog as it is touched (a reliable `MemoryLimit`, e.g. Python's
//!   `bytearray(2 GiB)` under a 200 MiB limit), low enough that a single runaway process
//!   cannot take the machine down faster than the watchdog samples. A process that does
//!   hit the backstop dies of an allocation failure; when its stderr ends with a
//!   recognisable out-of-memory message (MemoryError, "Cannot allocate memory", "out of
//!   memory", bad_alloc, ...) that is reported as `MemoryLimit` too. `RLIMIT_AS` is not
//!   used: runtimes that reserve large address ranges (Go, V8, the JVM, sanitizers) break
//!   under it although they use little memory.
//!
//! CPU time: `RLIMIT_CPU` per process (soft = the limit rounded up to whole seconds → SIGXCPU,
//! hard one second later → SIGKILL) and, for the tree as a whole, the watchdog's sum of
//! user + system time of the tree (cgroup `cpu.stat` under v2): both give `CpuLimit`.
//!
//! Timeout and cancel: SIGTERM to the group (and the escaped members), [`TERM_GRACE`],
//! SIGKILL. Whatever way the command ends, the tree is swept afterwards: processes still in
//! its group or carrying its exact tag get SIGTERM, the grace, then SIGKILL, so nothing a
//! command started outlives it.
//!
//! Waiting uses `waitid(WNOWAIT)` to see the exit while the leader is still an unreaped
//! zombie (its pid, the process group id, cannot be recycled while we signal the group),
//! then `wait4` for the status and the rusage of the tree. The child is forked by hand (see
//! `spawn`) so that it can be held before `execve` while the instruction counter is
//! attached and it is moved into its cgroup.

mod cgroup;
pub mod executor;
mod perf;
mod procfs;
pub mod slurm;
mod spawn;
#[cfg(test)]
mod tests;

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use cgroup::{cgroup_v2_unavailable_reason, limit_mechanism, LimitMechanism};
pub use executor::{executor_for, ClusterJob, Executor, Group, Local};
pub use perf::instructions_supported;
pub use procfs::{process_start_time, TAG_VAR};

use procfs::{Ident, TagMatch, TreeTracker};

/// Time between SIGTERM and SIGKILL when a command is stopped (timeout, cancel, sweep).
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// The RLIMIT_DATA backstop is `memory + max(memory, MIN_DATA_HEADROOM)`.
pub const MIN_DATA_HEADROOM: u64 = 4 << 30;

/// How often the tree is sampled when a memory or CPU limit is being enforced.
const SAMPLE_LIMITED: Duration = Duration::from_millis(50);
/// How often the tree is sampled otherwise (for peak RSS).
const SAMPLE_PLAIN: Duration = Duration::from_millis(100);
/// Longest sleep of the wait loop.
const MAX_NAP: Duration = Duration::from_millis(20);

/// Resource limits of one command (for its whole process tree).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory (RSS of the whole tree, or the cgroup's memory).
    pub memory: Option<u64>,
    /// CPU time (user + system) of the whole tree.
    pub cpu_time: Option<Duration>,
    /// Pin to these core ids.
    pub cpus: Option<Vec<usize>>,
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Shell command, run as `sh -c <command>`.
    pub command: String,
    pub cwd: PathBuf,
    /// Added to (overriding) the inherited environment.
    pub env: Vec<(String, String)>,
    /// Written to the child's stdin, which is then closed; None = /dev/null.
    pub stdin: Option<Vec<u8>>,
    /// Captured output (created/truncated; parent directories created). May be the same
    /// path, then both streams share one file.
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// Wall-clock limit.
    pub timeout: Option<Duration>,
    pub limits: Limits,
    /// Unique marker, set as `ARCTL_TAG=<tag>` for the child and inherited by its
    /// descendants, used to find those that escaped the process group.
    pub tag: String,
    /// Count the hardware instructions (user space) of the tree.
    pub count_instructions: bool,
}

impl CommandSpec {
    /// A spec with no stdin, no timeout, no limits, no extra env.
    pub fn new(
        command: impl Into<String>,
        cwd: impl Into<PathBuf>,
        stdout: impl Into<PathBuf>,
        stderr: impl Into<PathBuf>,
        tag: impl Into<String>,
    ) -> CommandSpec {
        CommandSpec {
            command: command.into(),
            cwd: cwd.into(),
            env: Vec::new(),
            stdin: None,
            stdout: stdout.into(),
            stderr: stderr.into(),
            timeout: None,
            limits: Limits::default(),
            tag: tag.into(),
            count_instructions: false,
        }
    }
}

/// How a command ended.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Exit {
    Code { code: i32 },
    Signal { signal: i32 },
    TimedOut,
    MemoryLimit,
    CpuLimit,
    Cancelled,
}

/// "SIGSEGV" for 11, "signal 99" for unknown numbers.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

impl Exit {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, Exit::Code { code: 0 })
    }

    /// "exit 1", "killed by SIGSEGV", "timed out", "memory limit exceeded",
    /// "cpu time limit exceeded", "cancelled".
    pub fn describe(&self) -> String {
        match self {
            Exit::Code { code } => format!("exit {code}"),
            Exit::Signal { signal } => format!("killed by {}", signal_name(*signal)),
            Exit::TimedOut => "timed out".into(),
            Exit::MemoryLimit => "memory limit exceeded".into(),
            Exit::CpuLimit => "cpu time limit exceeded".into(),
            Exit::Cancelled => "cancelled".into(),
        }
    }
}

/// What happened when a command ran.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Outcome {
    pub exit: Exit,
    pub wall_ms: u64,
    /// User + system time of the tree: wait4 rusage (the child and the descendants it
    /// waited for), at least the CPU time of the tree as last sampled.
    pub cpu_ms: u64,
    /// Bytes: max over samples of the summed RSS of the tree, at least ru_maxrss.
    pub peak_rss: u64,
    pub instructions: Option<u64>,
    /// Unix epoch ms.
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    pub pid: u32,
    /// `/proc/<pid>/stat` starttime of the child, to recognise it during recovery.
    pub pid_start_time: u64,
    /// Cluster executors: time spent waiting in the scheduler's queue before the command
    /// could start (not part of `wall_ms`, never counted toward the timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ms: Option<u64>,
    /// Cluster executors: the scheduler's job id, e.g. "1234" (the two commands of a paired
    /// round share one allocation, so one id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Cluster executors: the node the command ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A cancellation flag shared between the caller and a running command.
#[derive(Clone, Default, Debug)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Kill every process (SIGTERM, [`TERM_GRACE`], then SIGKILL) whose environment has
/// `ARCTL_TAG` starting with `prefix`. Returns how many were signalled. Never kills the
/// calling process.
pub fn kill_tagged(prefix: &str) -> usize {
    procfs::kill_matching(TagMatch::Prefix(prefix), TERM_GRACE)
}

/// Live (non-zombie) pids whose `ARCTL_TAG` starts with `prefix` (never the caller).
pub fn tagged_processes(prefix: &str) -> Vec<u32> {
    procfs::find_tagged(TagMatch::Prefix(prefix))
        .iter()
        .map(|s| s.pid)
        .collect()
}

/// Cores this process may run on (sched_getaffinity).
pub fn available_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: c < CPU_SETSIZE.
    (0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn with_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn short(command: &str) -> String {
    const MAX: usize = 120;
    if command.len() <= MAX {
        return command.to_string();
    }
    let mut end = MAX;
    while !command.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &command[..end])
}

/// Create/truncate the output files (before anything else can fail).
fn open_outputs(spec: &CommandSpec) -> io::Result<(OwnedFd, OwnedFd)> {
    let open = |p: &Path| -> io::Result<OwnedFd> {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| with_context(e, format_args!("creating {}", dir.display())))?;
        }
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(p)
            .map_err(|e| with_context(e, format_args!("creating {}", p.display())))?;
        spawn::above_stdio(f.into())
    };
    let out = open(&spec.stdout)?;
    let err = if spec.stderr == spec.stdout {
        spawn::above_stdio(out.try_clone()?)?
    } else {
        open(&spec.stderr)?
    };
    Ok((out, err))
}

/// Kills and reaps the child if `run` leaves early (error or panic).
struct Reaper<'a> {
    pid: u32,
    tag: &'a str,
    reaped: bool,
}

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        procfs::signal_group(self.pid, libc::SIGKILL);
        // SAFETY: pid is our unreaped child.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(self.pid as libc::pid_t, &mut status, 0) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
        procfs::kill_matching(TagMatch::Exact(self.tag), Duration::ZERO);
    }
}

/// Writes the stdin bytes from its own thread, never blocking for long (non-blocking fd +
/// poll), so that a child that does not read cannot deadlock `run`, and the thread can be
/// stopped and joined whatever the child does.
struct Feeder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Feeder {
    fn start(fd: OwnedFd, data: Vec<u8>) -> io::Result<Feeder> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("arctl-stdin".into())
            .spawn(move || {
                // A write to a pipe whose reader is gone raises SIGPIPE at this thread;
                // keep it blocked here (it is discarded with the thread) and see EPIPE.
                // SAFETY: plain signal-mask manipulation of the current thread.
                unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGPIPE);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                }
                let mut off = 0;
                while off < data.len() && !flag.load(Ordering::SeqCst) {
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    let r = unsafe { libc::poll(&mut pfd, 1, 50) };
                    if r <= 0 {
                        continue; // timeout or EINTR: re-check the stop flag
                    }
                    if pfd.revents & libc::POLLOUT == 0 {
                        break; // POLLERR/POLLHUP: the reader is gone
                    }
                    let rest = &data[off..];
                    // SAFETY: writing from a valid slice to an fd we own.
                    let n = unsafe {
                        libc::write(
                            fd.as_raw_fd(),
                            rest.as_ptr() as *const libc::c_void,
                            rest.len(),
                        )
                    };
                    if n > 0 {
                        off += n as usize;
                    } else if n < 0
                        && matches!(
                            io::Error::last_os_error().kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        )
                    {
                        continue;
                    } else {
                        break; // EPIPE or anything else: give up
                    }
                }
                drop(fd); // EOF for the child
            })?;
        Ok(Feeder {
            stop,
            handle: Some(handle),
        })
    }

    /// Stop writing (if not done) and join the thread.
    fn finish(self) {
        drop(self);
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Has the child exited? Does not reap it (WNOWAIT), so its pid and process group id stay
/// reserved while we signal the group.
fn exited_nowait(pid: u32) -> io::Result<bool> {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            // SAFETY: waitid filled info (si_pid is 0 when nothing changed).
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reap the (exited) child: its wait status and the rusage of it and its waited-for
/// descendants.
fn reap(pid: u32) -> io::Result<(i32, libc::rusage)> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills status and ru.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
        if r == pid as libc::pid_t {
            return Ok((status, ru));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn timeval_ms(t: libc::timeval) -> u64 {
    (t.tv_sec.max(0) as u64) * 1000 + (t.tv_usec.max(0) as u64) / 1000
}

/// Does the end of the captured stderr report an allocation failure?
fn stderr_reports_oom(path: &Path) -> bool {
    const TAIL: u64 = 16 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map_or(0, |m| m.len());
    if f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    if f.take(TAIL).read_to_end(&mut buf).is_err() {
        return false;
    }
    let text = String::from_utf8_lossy(&buf).to_lowercase();
    [
        "memoryerror",
        "cannot allocate memory",
        "out of memory",
        "outofmemory",
        "bad_alloc",
        "memory allocation of",
        "failed to allocate",
        "allocation failed",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Run a command to completion (blocking). See the module documentation.
///
/// Errors: the output files cannot be created, the spec is invalid (NUL bytes, bad env
/// name, empty cpu list), instruction counting was asked for but is unsupported, or the
/// child could not be started (fork, chdir, exec, pinning...). The output files exist in
/// every case.
pub fn run(spec: &CommandSpec, cancel: &Cancel) -> io::Result<Outcome> {
    let what = || {
        format!(
            "running `{}` in {}",
            short(&spec.command),
            spec.cwd.display()
        )
    };
    let (out_fd, err_fd) = open_outputs(spec)?;
    if spec.count_instructions {
        instructions_supported().map_err(|why| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("counting instructions: {why}"),
            )
        })?;
    }
    let limits = &spec.limits;

    // Limits: a cgroup if v2 is detected and accepts them, else rlimits + watchdog.
    let mut cgroup = match limit_mechanism() {
        LimitMechanism::CgroupV2 { path } => {
            match cgroup::CommandCgroup::create(&path, &spec.tag, limits) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    tracing::warn!(
                        "cgroup v2 limits not applied for {:?} ({e}); using rlimits + watchdog",
                        spec.tag
                    );
                    None
                }
            }
        }
        LimitMechanism::RlimitWatchdog => None,
    };
    let data_limit = match (&cgroup, limits.memory) {
        (None, Some(m)) => Some(m.saturating_add(m.max(MIN_DATA_HEADROOM))),
        _ => None,
    };
    let cpu_secs = limits
        .cpu_time
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .filter(|(k, _)| k != TAG_VAR)
        .cloned()
        .collect();
    env.push((TAG_VAR.to_string(), spec.tag.clone()));
    let prepared = spawn::Prepared::new(
        &spec.command,
        &spec.cwd,
        &env,
        cpu_secs,
        data_limit,
        limits.cpus.as_deref(),
    )
    .map_err(|e| with_context(e, what()))?;

    let (stdin_child, stdin_parent) = match &spec.stdin {
        None => {
            let null = std::fs::File::open("/dev/null")?;
            (spawn::above_stdio(null.into())?, None)
        }
        Some(_) => {
            let (r, w) = spawn::pipe()?;
            spawn::set_nonblocking(&w)?;
            (r, Some(w))
        }
    };
    let (gate_child, gate_parent) = spawn::gate_pair()?;
    let (err_read, err_write) = spawn::pipe()?;
    let pid = spawn::fork_gated(
        &prepared,
        &spawn::ChildFds {
            stdin: &stdin_child,
            stdout: &out_fd,
            stderr: &err_fd,
            gate: &gate_child,
            gate_parent: &gate_parent,
            err: &err_write,
        },
    )
    .map_err(|e| with_context(e, format_args!("{}: fork", what())))?;
    let mut reaper = Reaper {
        pid,
        tag: &spec.tag,
        reaped: false,
    };
    drop((gate_child, err_write, stdin_child, out_fd, err_fd));
    // Also set the group from this side, so it exists whatever the child's progress.
    // SAFETY: setpgid on our own child; failure (already exec'd) is harmless.
    unsafe { libc::setpgid(pid as libc::pid_t, pid as libc::pid_t) };
    let pid_start_time = process_start_time(pid).unwrap_or(0);

    let counter = if spec.count_instructions {
        Some(perf::Counter::attach(pid).map_err(|why| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("counting instructions: {why}"),
            )
        })?)
    } else {
        None
    };
    let mut rss_watchdog = cgroup.is_none() && limits.memory.is_some();
    if let Some(cg) = &cgroup {
        if let Err(e) = cg.add(pid) {
            tracing::warn!(
                "cannot move {pid} into {} ({e}); using the RSS watchdog",
                cg.path().display()
            );
            cgroup = None;
            rss_watchdog = limits.memory.is_some();
        }
    }
    spawn::open_gate(gate_parent, err_read).map_err(|e| with_context(e, what()))?;
    let started = Instant::now();
    let started_at_ms = epoch_ms();
    let feeder = match (stdin_parent, &spec.stdin) {
        (Some(fd), Some(data)) => Some(Feeder::start(fd, data.clone())?),
        _ => None,
    };

    // Wait, watching the clock, the cancel flag and the tree.
    let mut tracker = TreeTracker::new(pid, &spec.tag);
    let sample_every = if limits.memory.is_some() || limits.cpu_time.is_some() {
        SAMPLE_LIMITED
    } else {
        SAMPLE_PLAIN
    };
    let timeout_at = spec.timeout.map(|t| started + t);
    let mut next_sample = started;
    let mut peak: u64 = 0;
    let mut tree_cpu = Duration::ZERO; // max over samples of the tree's CPU time
    let mut reason: Option<Exit> = None;
    let mut kill_at: Option<Instant> = None; // SIGKILL due (after SIGTERM + grace)
    let mut killed = false;
    let mut members: Vec<Ident> = Vec::new(); // tree members at the last sample
    let mut nap = Duration::from_millis(1);
    let cg_procs =
        |cg: &Option<cgroup::CommandCgroup>| cg.as_ref().map(|c| c.procs()).unwrap_or_default();
    let kill_tree = |members: &[Ident], cg: &Option<cgroup::CommandCgroup>| {
        procfs::signal_group(pid, libc::SIGKILL);
        for &m in members {
            procfs::signal_ident(m, libc::SIGKILL);
        }
        if let Some(cg) = cg {
            cg.kill_all();
        }
    };
    let exited_at = loop {
        match exited_nowait(pid) {
            Ok(true) => break Instant::now(),
            Ok(false) => {}
            Err(e) => {
                // Someone else reaped our child (SIGCHLD ignored, or a waitpid(-1)).
                reaper.reaped = true;
                procfs::signal_group(pid, libc::SIGKILL);
                procfs::kill_matching(TagMatch::Exact(&spec.tag), Duration::ZERO);
                if let Some(f) = feeder {
                    f.finish();
                }
                return Err(with_context(
                    e,
                    format_args!("{}: waiting for pid {pid}", what()),
                ));
            }
        }
        let now = Instant::now();
        if reason.is_none() {
            let stop = if cancel.is_cancelled() {
                Some(Exit::Cancelled)
            } else if timeout_at.is_some_and(|t| now >= t) {
                Some(Exit::TimedOut)
            } else {
                None
            };
            if let Some(r) = stop {
                reason = Some(r);
                procfs::signal_group(pid, libc::SIGTERM);
                for &m in &members {
                    procfs::signal_ident(m, libc::SIGTERM);
                }
                procfs::signal_group(pid, libc::SIGCONT);
                kill_at = Some(now + TERM_GRACE);
            }
        }
        if !killed && kill_at.is_some_and(|t| now >= t) {
            kill_tree(&members, &cgroup);
            killed = true;
        }
        if now >= next_sample {
            let procs = cg_procs(&cgroup);
            let s = tracker.sample(false, &procs);
            peak = peak.max(s.rss_bytes);
            members = s
                .members
                .iter()
                .filter(|m| !m.is_dead())
                .map(|m| m.ident())
                .collect();
            let cpu = cgroup.as_ref().and_then(|c| c.cpu_usage()).unwrap_or(s.cpu);
            tree_cpu = tree_cpu.max(cpu);
            if reason.is_none() {
                let over_memory = rss_watchdog && limits.memory.is_some_and(|m| s.rss_bytes > m);
                let over_cpu = limits.cpu_time.is_some_and(|c| cpu > c);
                if over_memory || over_cpu {
                    reason = Some(if over_memory {
                        Exit::MemoryLimit
                    } else {
                        Exit::CpuLimit
                    });
                    kill_tree(&members, &cgroup);
                    killed = true;
                    kill_at = Some(now);
                }
            }
            next_sample = now + sample_every;
        }
        let mut wake = (now + nap).min(next_sample);
        if let Some(t) = timeout_at.filter(|_| reason.is_none()) {
            wake = wake.min(t);
        }
        if let Some(t) = kill_at.filter(|_| !killed) {
            wake = wake.min(t);
        }
        std::thread::sleep(
            wake.saturating_duration_since(now)
                .max(Duration::from_micros(200)),
        );
        nap = (nap * 2).min(MAX_NAP);
    };
    let ended_at_ms = epoch_ms();
    let wall_ms = exited_at.duration_since(started).as_millis() as u64;

    // Sweep: nothing the command started outlives it. The leader is an unreaped zombie,
    // so its process group id is still ours to signal.
    let leader = pid;
    let survivors = |tracker: &mut TreeTracker| -> Vec<Ident> {
        let procs = cg_procs(&cgroup);
        tracker
            .sample(true, &procs)
            .members
            .iter()
            .filter(|m| m.pid != leader && !m.is_dead())
            .map(|m| m.ident())
            .collect()
    };
    let left = survivors(&mut tracker);
    if !left.is_empty() {
        let grace_until = match kill_at {
            Some(t) => t,
            None => {
                procfs::signal_group(leader, libc::SIGTERM);
                for &m in &left {
                    procfs::signal_ident(m, libc::SIGTERM);
                }
                procfs::signal_group(leader, libc::SIGCONT);
                Instant::now() + TERM_GRACE
            }
        };
        procfs::wait_gone(&left, grace_until);
        procfs::signal_group(leader, libc::SIGKILL);
        if let Some(cg) = &cgroup {
            cg.kill_all();
        }
        procfs::kill_rounds(|| survivors(&mut tracker));
    }
    let (status, ru) = reap(pid).map_err(|e| with_context(e, format_args!("reaping pid {pid}")))?;
    reaper.reaped = true;
    if let Some(f) = feeder {
        f.finish();
    }
    let instructions = match &counter {
        Some(c) => Some(
            c.read()
                .map_err(|e| with_context(e, "reading the instruction counter"))?,
        ),
        None => None,
    };

    // rusage misses descendants the leader never waited for (killed trees, escaped
    // processes): the sampled CPU time of the tree is a floor.
    let cpu_ms =
        (timeval_ms(ru.ru_utime) + timeval_ms(ru.ru_stime)).max(tree_cpu.as_millis() as u64);
    let peak_rss = peak.max((ru.ru_maxrss.max(0) as u64) * 1024);
    let base = if libc::WIFEXITED(status) {
        Exit::Code {
            code: libc::WEXITSTATUS(status),
        }
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal {
            signal: libc::WTERMSIG(status),
        }
    } else {
        Exit::Code { code: -1 }
    };
    tracing::debug!(
        "{:?} (pid {pid}) ended: wait status {status:#x}, stop reason {reason:?}, \
         cpu_ms {cpu_ms}, sampled tree cpu {tree_cpu:?}, peak rss {peak_rss}",
        spec.tag
    );
    let exit = match reason {
        Some(r) => r,
        None => classify(
            base,
            spec,
            cpu_ms,
            cgroup.as_ref().is_some_and(|c| c.oom_killed()),
            data_limit.is_some(),
        ),
    };
    drop(cgroup);
    Ok(Outcome {
        exit,
        wall_ms,
        cpu_ms,
        peak_rss,
        instructions,
        started_at_ms,
        ended_at_ms,
        pid,
        pid_start_time,
        queue_ms: None,
        job_id: None,
        node: None,
    })
}

/// Map a natural death to a limit where one caused it.
fn classify(
    base: Exit,
    spec: &CommandSpec,
    cpu_ms: u64,
    oom_killed: bool,
    data_backstop: bool,
) -> Exit {
    if oom_killed {
        return Exit::MemoryLimit;
    }
    if let Some(limit) = spec.limits.cpu_time {
        // SIGXCPU only comes from RLIMIT_CPU. SIGKILL comes at its hard limit (one second
        // later), but also from elsewhere: require the CPU time to be near the limit. rusage
        // is tick-sampled and reads low on a loaded VM (30% under seen), hence 70%.
        let near = cpu_ms * 10 >= limit.as_millis() as u64 * 7;
        let (xcpu, kill) = (libc::SIGXCPU, libc::SIGKILL);
        match base {
            Exit::Signal { signal } if signal == xcpu => return Exit::CpuLimit,
            Exit::Signal { signal } if signal == kill && near => return Exit::CpuLimit,
            // A shell reports a child killed by signal N as exit 128 + N.
            Exit::Code { code } if code == 128 + xcpu => return Exit::CpuLimit,
            Exit::Code { code } if code == 128 + kill && near => return Exit::CpuLimit,
            _ => {}
        }
    }
    if data_backstop {
        let abnormal = match base {
            Exit::Code { code } => code != 0,
            Exit::Signal { signal } => {
                [libc::SIGSEGV, libc::SIGABRT, libc::SIGBUS, libc::SIGKILL].contains(&signal)
            }
            _ => false,
        };
        if abnormal && stderr_reports_oom(&spec.stderr) {
            return Exit::MemoryLimit;
        }
    }
    base
}
