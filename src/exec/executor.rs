//! Where commands run: this machine or a cluster's scheduler. Each engine is one module
//! implementing [`Executor`] (`Local` here, `slurm::Slurm`); the loop only sees the trait and
//! gets its engine from [`executor_for`].

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Cancel, CommandSpec, Outcome};
pub use crate::protocol::ClusterJob;
use crate::protocol::OpResult;
use crate::spec::{ExecutorKind, ExecutorSpec};

pub trait Executor: Send + Sync {
    /// Run a command to completion (blocking), as [`super::run`] does locally.
    fn run(&self, spec: &CommandSpec, cancel: &Cancel) -> io::Result<Outcome>;
    /// A short name for status and the journal ("local", "slurm (partition gpu)").
    fn describe(&self) -> String;
    /// Do local limits, core pinning and the daemon-wide measurement lock apply (the
    /// commands run on this machine)?
    fn is_local(&self) -> bool {
        true
    }
    /// `arctl start`, before the run is created: can commands with the run's options run
    /// here and see its directories? Ok(Some(note)): not sure yet (e.g. the check job could
    /// not start at once; [`Executor::check_visible`] checks again before the baseline), a
    /// note for the run's log. Err: what is wrong, for the user (bad input).
    fn preflight(&self, _p: &Preflight) -> OpResult<Option<String>> {
        Ok(None)
    }
    /// Before the baseline: are `dirs` visible where the commands run? Runs a check job as
    /// `check` says. Ok(false): interrupted (cancelled). Err: not visible, or the check could
    /// not run.
    fn check_visible(
        &self,
        _dirs: &[PathBuf],
        _check: &VisibilityCheck,
        _cancel: &Cancel,
    ) -> anyhow::Result<bool> {
        Ok(true)
    }
    /// How the limits are enforced, for `arctl status` of a run.
    fn limits_description(&self) -> String {
        super::limit_mechanism().to_string()
    }
    /// The calling thread's next commands, until [`Executor::end_group`], run together: on a
    /// cluster in one allocation, so on one node with one queue wait (a paired measurement
    /// round). `commands` is how many to expect (it sizes the allocation's time limit).
    fn begin_group(&self, _commands: u32) {}
    fn end_group(&self) {}
    /// Jobs submitted and not ended yet (queued or running), for `arctl status`.
    fn jobs(&self) -> Vec<ClusterJob> {
        Vec::new()
    }
    /// After a daemon crash: cancel whatever an earlier daemon left running for this run
    /// (by recorded job ids and recognisable names). Returns notes for the run's log.
    fn recover(&self) -> io::Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Daemon shutdown: cancel whatever is still submitted.
    fn shutdown(&self) {}
}

/// What [`Executor::preflight`] checks, from a run's spec before the run exists.
#[derive(Debug, Clone, Default)]
pub struct Preflight {
    /// Cores per command (`limits.cpus`).
    pub cpus: Option<u32>,
    /// Bytes per command (`limits.memory`).
    pub memory: Option<u64>,
    /// What the commands must see: the repository root, the worktrees' parent dir, the
    /// state dir.
    pub dirs: Vec<PathBuf>,
    /// The run's process tag (`arctl-<hash>/<run>/`); an executor names its check job
    /// after it.
    pub tag: String,
}

/// Where the check job of [`Executor::check_visible`] runs and writes.
#[derive(Debug, Clone)]
pub struct VisibilityCheck {
    /// Its working directory (the run's worktree).
    pub cwd: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// Its process tag.
    pub tag: String,
}

/// Commands run together while it lives (see [`Executor::begin_group`]).
pub struct Group<'a> {
    executor: &'a dyn Executor,
}

impl<'a> Group<'a> {
    pub fn new(executor: &'a dyn Executor, commands: u32) -> Group<'a> {
        executor.begin_group(commands);
        Group { executor }
    }
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        self.executor.end_group();
    }
}

/// This machine: process groups, limits, watchdog (see the module `exec`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Executor for Local {
    fn run(&self, spec: &CommandSpec, cancel: &Cancel) -> io::Result<Outcome> {
        super::run(spec, cancel)
    }
    fn describe(&self) -> String {
        "local".into()
    }
}

/// What an engine needs besides its spec table.
#[derive(Debug, Clone, Default)]
pub struct ExecutorOptions {
    /// Cores per command (`limits.cpus`): `--cpus-per-task` on a cluster.
    pub cpus: Option<u32>,
    /// File where submitted job ids are recorded until they end (recovery reads it).
    pub ledger: Option<PathBuf>,
    /// Prefix of the names of this run's jobs (its process tag, e.g. `arctl-<hash>/<run>/`).
    pub name_prefix: String,
}

/// The engine of a spec's `[executor]` (None: this machine).
pub fn executor_for(spec: Option<&ExecutorSpec>, opts: ExecutorOptions) -> Arc<dyn Executor> {
    match spec {
        Some(s) if s.kind == ExecutorKind::Slurm => Arc::new(super::slurm::Slurm::new(s, opts)),
        _ => Arc::new(Local),
    }
}
