//! Runs whose commands go to a cluster: each run's executor (its spec's `[executor]`, else
//! the daemon's default, fixed at `arctl start`), the checks `arctl start` makes before it
//! creates anything, the shared-filesystem check before the baseline, recovery of the jobs
//! an earlier daemon left, and the jobs `arctl status` shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::exec::executor::ExecutorOptions;
use crate::exec::{self, Cancel, ClusterJob, Executor, Preflight, VisibilityCheck};
use crate::git;
use crate::run::record::{RunPaths, RunRecord};
use crate::run::Global;
use crate::spec::{self, ExecutorKind, ExecutorSpec, RunSpec};

/// The file in a run's state folder holding the ids of its submitted, unfinished jobs.
pub const LEDGER: &str = "cluster-jobs.json";

/// A run's jobs on a cluster, as `arctl status` shows them (`summary.cluster`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ClusterJobs {
    /// "slurm (partition gpu)".
    pub executor: String,
    pub queued: u32,
    pub running: u32,
    pub jobs: Vec<ClusterJob>,
    /// One line for people: "slurm (partition gpu): 1 running (job 12 on n3)".
    pub text: String,
}

impl ClusterJobs {
    pub fn new(executor: String, jobs: Vec<ClusterJob>) -> ClusterJobs {
        let queued = jobs.iter().filter(|j| j.state == "queued").count() as u32;
        let running = jobs.iter().filter(|j| j.state == "running").count() as u32;
        let list = |state: &str| -> Vec<String> {
            jobs.iter()
                .filter(|j| j.state == state)
                .map(|j| match &j.node {
                    Some(n) if !n.is_empty() => format!("{} on {n}", j.id),
                    _ => j.id.clone(),
                })
                .collect()
        };
        let mut parts = Vec::new();
        if running > 0 {
            parts.push(format!(
                "{running} running (job {})",
                list("running").join(", ")
            ));
        }
        if queued > 0 {
            parts.push(format!(
                "{queued} queued (job {})",
                list("queued").join(", ")
            ));
        }
        let text = if parts.is_empty() {
            format!("{executor}: no jobs")
        } else {
            format!("{executor}: {}", parts.join(", "))
        };
        ClusterJobs {
            executor,
            queued,
            running,
            jobs,
            text,
        }
    }
}

/// The executor a new run gets: its spec's table, else the daemon's default.
pub fn effective(spec: &RunSpec, default: Option<&ExecutorSpec>) -> Option<ExecutorSpec> {
    spec.executor.clone().or_else(|| default.cloned())
}

fn is_cluster(e: Option<&ExecutorSpec>) -> bool {
    e.is_some_and(|e| e.kind != ExecutorKind::Local)
}

impl Global {
    /// The executor of a run, created on first use and then shared by its loop, `arctl
    /// merge` and `arctl status`.
    pub fn executor(&self, rec: &RunRecord) -> Arc<dyn Executor> {
        let mut map = self.executors.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(rec.id.clone())
            .or_insert_with(|| {
                exec::executor_for(
                    rec.spec.spec.executor.as_ref(),
                    ExecutorOptions {
                        cpus: rec.spec.spec.limits.cpus,
                        ledger: Some(RunPaths::new(&self.state_dir, &rec.id).dir.join(LEDGER)),
                        name_prefix: self.run_tag(&rec.id),
                    },
                )
            })
            .clone()
    }

    /// What `arctl status` shows of a run's cluster jobs (None: it runs on this machine).
    pub fn cluster_status(&self, rec: &RunRecord) -> Option<ClusterJobs> {
        let e = rec.spec.spec.executor.as_ref().filter(|e| !e.is_local())?;
        let jobs = {
            let map = self.executors.lock().unwrap_or_else(|e| e.into_inner());
            map.get(&rec.id).map(|x| x.jobs()).unwrap_or_default()
        };
        Some(ClusterJobs::new(e.describe(), jobs))
    }

    /// Daemon shutdown (after the runs' threads ended): cancel whatever is still submitted.
    pub fn shutdown_executors(&self) {
        let all: Vec<Arc<dyn Executor>> = self
            .executors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for e in all {
            e.shutdown();
        }
    }
}

/// `arctl start` on a cluster executor: the client commands, the controller, the partition,
/// and a short job with the run's options that must see the repository, the worktrees'
/// folder and the state dir (the executor's [`Executor::preflight`]). Ok(Some(note)) when
/// the job could not start at once (the baseline checks again). Spec and repo problems are
/// left to `setup::create`.
pub fn check_start(
    g: &Global,
    spec_path: &Path,
    spec_text: &str,
) -> Result<Option<String>, String> {
    let Ok(resolved) = spec::parse(spec_text, spec_path) else {
        return Ok(None);
    };
    let executor = effective(&resolved.spec, g.default_executor.as_ref());
    let Some(e) = executor.filter(|e| is_cluster(Some(e))) else {
        return Ok(None);
    };
    let Ok((_, info)) = git::open_repo(&resolved.repo) else {
        return Ok(None);
    };
    let id = resolved.id.to_string();
    let worktree = git::worktree_path(&info.root, &id);
    let mut dirs: Vec<PathBuf> = vec![info.root.clone()];
    if let Some(parent) = worktree.parent() {
        dirs.push(parent.to_path_buf());
    }
    dirs.push(g.state_dir.clone());
    let limits = &resolved.spec.limits;
    let tag = g.run_tag(&id);
    // Not the run's executor (the run does not exist yet): no ledger, nothing kept.
    let executor = exec::executor_for(
        Some(&e),
        ExecutorOptions {
            cpus: limits.cpus,
            ledger: None,
            name_prefix: tag.clone(),
        },
    );
    executor.preflight(&Preflight {
        cpus: limits.cpus,
        memory: limits.memory.map(|m| m.0),
        dirs,
        tag,
    })
}

/// Before the baseline, on a cluster: the worktree and the run's state folder must be
/// visible on the compute node (the executor's [`Executor::check_visible`]). Ok(false):
/// interrupted.
pub fn check_visible(
    executor: &dyn Executor,
    rec: &RunRecord,
    paths: &RunPaths,
    tag: String,
    cancel: &Cancel,
) -> Result<bool> {
    executor.check_visible(
        &[rec.worktree.clone(), paths.dir.clone()],
        &VisibilityCheck {
            cwd: rec.worktree.clone(),
            stdout: paths.output("check.out"),
            stderr: paths.output("check.err"),
            tag,
        },
        cancel,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_jobs_text() {
        let job = |id: &str, state: &str, node: Option<&str>| ClusterJob {
            id: id.into(),
            name: "arctl-x".into(),
            state: state.into(),
            node: node.map(str::to_string),
            since_ms: 0,
        };
        let c = ClusterJobs::new(
            "slurm".into(),
            vec![job("12", "running", Some("n1")), job("13", "queued", None)],
        );
        assert_eq!((c.queued, c.running), (1, 1));
        assert_eq!(c.text, "slurm: 1 running (job 12 on n1), 1 queued (job 13)");
        assert_eq!(
            ClusterJobs::new("slurm".into(), vec![]).text,
            "slurm: no jobs"
        );
    }
}
