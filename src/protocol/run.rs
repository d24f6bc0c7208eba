//! What `arctl status` shows of a run: its state, counts, summary row and detail, and its
//! jobs when it runs on a cluster. The stable JSON shapes of `status [RUN] --json`; fields
//! are only ever added.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ResultRow;
use crate::spec::{Direction, ResolvedSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Creating the worktree / measuring the baseline.
    Starting,
    Running,
    Paused,
    /// Asked to stop; the current experiment finishes first.
    Stopping,
    Stopped,
    /// The budget ended (or the proposer ran out of ideas).
    Finished,
    Failed,
}

impl RunState {
    /// Does the run's thread still have work to do?
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RunState::Starting | RunState::Running | RunState::Paused | RunState::Stopping
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Stopping => "stopping",
            RunState::Stopped => "stopped",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub kept: u32,
    pub discarded: u32,
    pub crashed: u32,
    pub rejected: u32,
}

/// One row of `arctl status` (and its `--json` objects). Fields are only ever added.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub id: String,
    pub state: RunState,
    /// The step of the current experiment ("proposing", "measuring", ...).
    pub step: String,
    /// Progress within the step: "round 3/12", "noise probe 2/5".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_detail: Option<String>,
    /// Experiments done (the baseline not counted).
    pub experiments: u32,
    pub max_experiments: Option<u32>,
    /// The budget's `max_wall` in milliseconds of running time (`elapsed_ms` counts the
    /// same clock), for the time left `arctl watch` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_ms: Option<u64>,
    pub counts: Counts,
    pub direction: Direction,
    pub baseline: Option<f64>,
    pub best: Option<f64>,
    /// Relative improvement of best over baseline, in the metric's direction (0.05 = 5%),
    /// from same-time comparisons only: the final confirmation when the run has one, else
    /// the chain of the kept experiments' paired estimates (`change_source`).
    pub change: Option<f64>,
    /// The 95% interval of `change`.
    #[serde(default)]
    pub change_low: Option<f64>,
    #[serde(default)]
    pub change_high: Option<f64>,
    /// "confirmation" or "chain" (None: nothing kept).
    #[serde(default)]
    pub change_source: Option<String>,
    /// The baseline's value moved by `change`: what the best measures in the baseline's
    /// conditions (`best` is the last kept candidate's own estimate, measured at its time).
    #[serde(default)]
    pub best_estimate: Option<f64>,
    /// The run's noise now against the baseline probe's, and the words when it is unstable
    /// ("unstable: cv 9% now, 2.3% at baseline").
    #[serde(default)]
    pub noise: NoiseState,
    /// Why the run paused itself (a best tree that keeps failing), until it is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    /// "deterministic" or "noisy".
    pub mode: Option<String>,
    /// Coefficient of variation measured at baseline (noisy mode).
    pub cv: Option<f64>,
    pub created_at_ms: u64,
    /// Time spent running, over all daemon lifetimes.
    pub elapsed_ms: u64,
    /// Time in the current step.
    pub step_elapsed_ms: u64,
    pub last_status: Option<String>,
    pub worktree: PathBuf,
    pub branch: String,
    pub recovered_at_ms: Option<u64>,
    pub error: Option<String>,
    pub stop_reason: Option<String>,
    /// Best-so-far over experiments as a one-line sparkline.
    pub sparkline: String,
    /// What the agent reported spending so far, in US dollars (`cost_usd` in its proposal
    /// file); absent when it reported nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Runs on a cluster: the executor and the run's jobs queued or running there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterJobs>,
}

/// The change of a run's best against its baseline from same-time comparisons: the final
/// paired confirmation, or the chain of the kept experiments' paired estimates.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct GainEstimate {
    /// Relative, positive when the best is better (0.10 = 10% better).
    pub gain: f64,
    /// Its 95% interval.
    pub low: f64,
    pub high: f64,
    /// Measured by the final confirmation (else the chain).
    pub confirmed: bool,
    /// The confirmation found the best significantly better than the baseline.
    #[serde(default)]
    pub significant: bool,
    /// Kept experiments in the chain.
    pub kept: usize,
    /// Paired rounds of the confirmation.
    #[serde(default)]
    pub rounds: Option<usize>,
}

impl GainEstimate {
    pub fn source(&self) -> &'static str {
        if self.confirmed {
            "confirmation"
        } else {
            "chain"
        }
    }
}

/// A run's noise during the run against its baseline probe.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NoiseState {
    /// The baseline probe's cv (noisy mode).
    #[serde(default)]
    pub baseline_cv: Option<f64>,
    /// The latest estimate: a decision's rounds, or a fresh probe of the best.
    #[serde(default)]
    pub now: Option<f64>,
    /// At least 3x the baseline's: decisions get more rounds.
    #[serde(default)]
    pub unstable: bool,
    /// Since which experiment it is unstable.
    #[serde(default)]
    pub since_experiment: Option<u32>,
    /// The words: "unstable: cv 9% now, 2.3% at baseline" (None while stable).
    #[serde(default)]
    pub message: Option<String>,
}

/// `arctl status RUN`: the summary plus the spec, limits and the latest experiments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunDetail {
    pub summary: RunSummary,
    pub spec: ResolvedSpec,
    pub base: String,
    pub base_commit: String,
    pub best_commit: String,
    /// Which mechanism enforces memory / CPU limits.
    pub limits_mechanism: String,
    /// How the run's children are kept inside their worktree (`[sandbox]`, this machine).
    #[serde(default)]
    pub sandbox: String,
    pub recent: Vec<ResultRow>,
    /// Resource figures of the last experiment.
    pub last_peak_rss: Option<u64>,
    pub last_cpu_ms: Option<u64>,
    pub last_wall_ms: Option<u64>,
    /// The user's notes for the agent (`arctl note`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl RunSummary {
    /// The step with its progress, for people: "measuring (round 3/12)".
    pub fn step_text(&self) -> String {
        match &self.step_detail {
            Some(d) => format!("{} ({d})", self.step),
            None => self.step.clone(),
        }
    }
}

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
