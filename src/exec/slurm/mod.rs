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
//!
//! The parts: `tools` (the client commands and their arguments), `alloc` (allocations and
//! groups), `ledger` (the job ids kept for `arctl status` and recovery), `preflight` (the
//! checks before a run starts and before its baseline); the step itself and the trait
//! implementation are here.

mod alloc;
mod ledger;
mod preflight;
mod tools;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

use super::executor::{ClusterJob, Executor, ExecutorOptions, Preflight, VisibilityCheck};
use super::{Cancel, CommandSpec, Exit, Limits, Outcome, TAG_VAR};
use crate::spec::ExecutorSpec;
use alloc::{Allocation, GroupState};
use tools::{mem_arg, parse_slurm_time, sh_quote, site_args};

pub use tools::{cancel_matching, job_name, my_jobs, scancel, tool, which, QueuedJob, TOOLS};

/// What the engine's callers share: the groups (one per calling thread) and the jobs not
/// ended yet.
#[derive(Default)]
struct Inner {
    groups: HashMap<ThreadId, GroupState>,
    jobs: BTreeMap<u64, ClusterJob>,
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
            exclusive: false,
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

impl Executor for Slurm {
    fn run(&self, spec: &CommandSpec, cancel: &Cancel) -> io::Result<Outcome> {
        let (mut alloc, grouped) = match self.acquire(spec, cancel)? {
            Ok(held) => held,
            Err(cancelled) => return Ok(cancelled),
        };
        let queue_ms = if alloc.steps == 0 { alloc.queue_ms } else { 0 };
        alloc.steps += 1;
        let result = self.step(spec, &alloc, cancel);
        // A step stopped from here (timeout, cancel) may still be winding down on the node:
        // that allocation is not reused.
        let clean = matches!(&result, Ok(o) if !matches!(o.exit, Exit::TimedOut | Exit::Cancelled));
        self.hand_back(alloc, grouped && clean, clean);
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

    fn preflight(&self, p: &Preflight) -> crate::protocol::OpResult<Option<String>> {
        let name = format!("{}check", job_name(&p.tag));
        preflight::preflight(&self.spec, p.cpus, p.memory, &p.dirs, &name)
            .map_err(crate::protocol::Error::bad_input)
    }

    fn check_visible(
        &self,
        dirs: &[PathBuf],
        check: &VisibilityCheck,
        cancel: &Cancel,
    ) -> anyhow::Result<bool> {
        preflight::check_visible(self, dirs, check, cancel)
    }

    fn limits_description(&self) -> String {
        "--mem and --cpus-per-task per job, enforced by the cluster; cpu_time as ulimit -t per process".into()
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
        let cancelled = cancel_matching(&self.name_prefix, &self.recorded())?;
        self.forget_recorded();
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

#[cfg(test)]
mod tests {
    use super::*;

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
