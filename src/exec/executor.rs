//! Where commands run: this machine or a cluster's scheduler. Each engine is one module
//! implementing [`Executor`] (`Local` here, `slurm::Slurm`); the loop only sees the trait and
//! gets its engine from [`executor_for`].

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Cancel, CommandSpec, Outcome};
use crate::spec::{ExecutorKind, ExecutorSpec};

pub trait Executor: Send + Sync {
    /// Run a command to completion (blocking), as [`super::run`] does locally.
    fn run(&self, spec: &CommandSpec, cancel: &Cancel) -> io::Result<Outcome>;
    /// A short name for status and the journal ("local", "slurm (partition gpu)").
    fn describe(&self) -> String;
    /// Do commands run on this machine (local limits, core pinning and the daemon-wide
    /// measurement lock apply)?
    fn is_local(&self) -> bool {
        true
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

/// A job of a cluster executor, as `arctl status` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClusterJob {
    pub id: String,
    pub name: String,
    /// "queued" or "running".
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Unix epoch ms of the last state change.
    pub since_ms: u64,
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
