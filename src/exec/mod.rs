//! Running the children of a loop (proposer, metric, guard commands), synchronously.
//!
//! Each command runs as `sh -c <command>` below a **keeper** (see `spawn`): a process of
//! arctl's at the root of the command's tree that reaps all of it. With [`run_sandboxed`]
//! the keeper is the init of a PID (and mount) namespace of its own where the machine
//! allows (`host::sandbox`; through an unprivileged user namespace when not root), so its
//! death kills the whole tree and the tree cannot see or signal anything outside it; else,
//! and with [`run`], it is a child subreaper, so orphans come back to it. Either way every
//! descendant is found by parent pids whatever it does to its environment, session or
//! parent. The command can be confined by Landlock ([`Sandbox::writable`], `landlock`) and
//! cut from the network ([`Sandbox::network`]: a network namespace). [`started_by_arctl`]
//! tells whether a process belongs to a running tree (`contain`).
//!
//! The command runs in its own process group (the keeper's), with `ARCTL_TAG=<tag>` in its
//! environment, its output captured to files, and its limits enforced by the mechanism
//! detected on this machine ([`limit_mechanism`]):
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
//! CPU time: the watchdog's sum of user + system time of the whole tree (cgroup `cpu.stat`
//! under v2) stops the tree at the limit → `CpuLimit`, even when the process that used the
//! time was a child whose parent would have exited 0. `RLIMIT_CPU` per process is only a
//! backstop above the limit (limit + max(10%, 2 s): SIGXCPU, SIGKILL a second later), for a
//! watchdog that cannot keep up.
//!
//! Output: the child writes into pipes; threads of ours copy them to the output files,
//! keeping the head and the tail of each stream (`Limits::output`, 1 MiB each by default)
//! with a line saying how much was cut between (see `sink`).
//!
//! Timeout and cancel: SIGTERM to the group (and the escaped members), [`TERM_GRACE`],
//! SIGKILL. Whatever way the command ends, the tree is swept afterwards: processes still
//! below the keeper, in its group or carrying its exact tag get SIGTERM, the grace, then
//! SIGKILL, then the keeper itself, so nothing a command started outlives it.
//!
//! The keeper reports the command's wait status through a pipe; it is reaped last (its pid,
//! the process group id, cannot be recycled while we signal the group), with `wait4` for
//! the rusage of everything it reaped. It is forked by hand (see `spawn`) so that it can be
//! held before starting the command while the instruction counter is attached and it is
//! moved into its cgroup.

mod cgroup;
mod classify;
mod contain;
pub mod executor;
mod exit_wait;
mod feeder;
mod landlock;
mod local;
mod procfs;
pub mod running;
#[cfg(test)]
mod sandbox_tests;
mod sink;
pub mod slurm;
mod spawn;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use crate::host::instructions_supported;
pub use cgroup::{cgroup_v2_unavailable_reason, limit_mechanism, LimitMechanism};
pub use contain::{containment, running_pids, started_by_arctl, Sandbox};
pub use executor::{executor_for, ClusterJob, Executor, Group, Local, Preflight, VisibilityCheck};
pub use landlock::always_writable_dirs;
pub use local::{run, run_sandboxed};
pub use procfs::{process_start_time, TAG_VAR};
pub use sink::DEFAULT_OUTPUT_CAP;

use procfs::TagMatch;

/// Time between SIGTERM and SIGKILL when a command is stopped (timeout, cancel, sweep).
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// The RLIMIT_DATA backstop is `memory + max(memory, MIN_DATA_HEADROOM)`.
pub const MIN_DATA_HEADROOM: u64 = 4 << 30;

/// Resource limits of one command (for its whole process tree).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory (RSS of the whole tree, or the cgroup's memory).
    pub memory: Option<u64>,
    /// CPU time (user + system) of the whole tree.
    pub cpu_time: Option<Duration>,
    /// Pin to these core ids.
    pub cpus: Option<Vec<usize>>,
    /// Bytes kept of each end (head and tail) of each output stream; None: 1 MiB.
    pub output: Option<u64>,
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
    /// A timed measurement exclusive of the machine: every other command of this daemon
    /// (its tag's first component) is frozen from just before it starts until it ends.
    /// Set only under the daemon's measurement lock (one exclusive command at a time).
    pub exclusive: bool,
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
            exclusive: false,
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
    /// Wall time in microseconds, from the start of the command to its exit (where known:
    /// this machine); what a wall-clock metric is read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_us: Option<u64>,
    /// Time the command spent frozen by another command's exclusive measurement (see
    /// [`running`]): part of `wall_ms`, not counted toward its timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_ms: Option<u64>,
    /// An exclusive command (see [`CommandSpec::exclusive`]): the processes of other
    /// commands it froze. Kept in the journal as the measurement's `froze`, not here.
    #[serde(skip)]
    pub froze: Option<usize>,
}

impl Outcome {
    /// A command cancelled before it started (at `now_ms`): nothing ran.
    pub fn cancelled_before_start(now_ms: u64) -> Outcome {
        Outcome {
            exit: Exit::Cancelled,
            wall_ms: 0,
            cpu_ms: 0,
            peak_rss: 0,
            instructions: None,
            started_at_ms: now_ms,
            ended_at_ms: now_ms,
            pid: 0,
            pid_start_time: 0,
            queue_ms: None,
            job_id: None,
            node: None,
            wall_us: None,
            frozen_ms: None,
            froze: None,
        }
    }
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
