//! What the state dir holds for a run: `run.json` (the run's durable state) and the paths
//! of its files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::ResolvedSpec;
use crate::stats::Mode;

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

/// Where an experiment stands; persisted before each step is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Idle,
    Setup,
    Baseline,
    Waiting,
    Proposing,
    Committing,
    Measuring,
    Guards,
    Deciding,
    Logging,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Idle => "idle",
            Step::Setup => "setup",
            Step::Baseline => "baseline",
            Step::Waiting => "waiting for a slot",
            Step::Proposing => "proposing",
            Step::Committing => "committing",
            Step::Measuring => "measuring",
            Step::Guards => "guards",
            Step::Deciding => "deciding",
            Step::Logging => "logging",
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

/// The experiment under way, as last persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inflight {
    pub experiment: u32,
    pub step: Step,
    pub started_at_ms: u64,
    #[serde(default)]
    pub commit: Option<String>,
}

/// `run.json`: everything needed to show, resume or clean up a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub spec: ResolvedSpec,
    pub repo: PathBuf,
    pub common_dir: PathBuf,
    pub worktree: PathBuf,
    pub branch: String,
    pub base: String,
    pub base_commit: String,
    pub created_at_ms: u64,
    pub state: RunState,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// The last kept commit (the branch tip).
    pub best_commit: String,
    #[serde(default)]
    pub baseline: Option<f64>,
    #[serde(default)]
    pub best: Option<f64>,
    #[serde(default)]
    pub baseline_duration_ms: Option<u64>,
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The next experiment's number (0 is the baseline).
    pub next_experiment: u32,
    #[serde(default)]
    pub counts: Counts,
    #[serde(default)]
    pub inflight: Option<Inflight>,
    /// Wall time spent running, summed over daemon lifetimes (for `max_wall`).
    #[serde(default)]
    pub active_ms: u64,
    #[serde(default)]
    pub recovered_at_ms: Option<u64>,
    #[serde(default)]
    pub last_status: Option<String>,
    #[serde(default)]
    pub merged: bool,
    #[serde(default)]
    pub cleaned_up: bool,
}

/// Paths of a run's files in the state dir.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub dir: PathBuf,
}

impl RunPaths {
    pub fn new(state_dir: &Path, id: &str) -> RunPaths {
        RunPaths {
            dir: state_dir.join("runs").join(id),
        }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("run.json")
    }
    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.toml")
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }
    pub fn tsv(&self) -> PathBuf {
        self.dir.join("results.tsv")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("run.log")
    }
    /// Captured output of the commands of the current experiment.
    pub fn output(&self, name: &str) -> PathBuf {
        self.dir.join("output").join(name)
    }
    /// The run's second worktree, holding the current best for paired measurements.
    pub fn best_tree(&self) -> PathBuf {
        self.dir.join("best-tree")
    }
}
