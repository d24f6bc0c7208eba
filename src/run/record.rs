//! What the state dir holds for a run: `run.json` (the run's durable state, [`RunRecord`])
//! and the paths of its files ([`RunPaths`]). Only [`crate::run::RunHandle`] writes a
//! record; its state changes only through [`RunRecord::apply`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::{GainEstimate, NoiseState};
use crate::run::state::{Counts, Event, RunState};
use crate::spec::ResolvedSpec;
use crate::stats::Mode;

/// The experiment under way, as persisted before its side effects: after a crash, recovery
/// knows it was interrupted and runs it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inflight {
    pub experiment: u32,
}

/// Where a new run starts: what `arctl start` resolved.
pub struct Origin {
    pub id: String,
    pub spec: ResolvedSpec,
    pub repo: PathBuf,
    pub common_dir: PathBuf,
    pub worktree: PathBuf,
    pub branch: String,
    pub base: String,
    pub base_commit: String,
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
    /// Changed only by [`RunRecord::apply`].
    state: RunState,
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
    /// The user's notes for the agent (`arctl note`), in every later prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the proposer reported spending so far (US dollars); None before any report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub merged: bool,
    #[serde(default)]
    pub cleaned_up: bool,
    /// The best's change against the baseline from same-time comparisons (see
    /// `run::truth`), kept up to date with the journal.
    #[serde(default)]
    pub gain: Option<GainEstimate>,
    /// The noise during the run against the baseline probe.
    #[serde(default)]
    pub noise: NoiseState,
    /// Why the run paused itself, until it is resumed.
    #[serde(default)]
    pub pause_reason: Option<String>,
    /// `[setup]` prepared the run's worktree (not again on resume).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prepared: bool,
    /// The exclude lines `[setup]` added for what it made in the run's trees (removed at
    /// cleanup, unless another run still records them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup_excludes: Vec<String>,
}

impl RunRecord {
    /// A run that was just created: starting, nothing measured yet.
    pub fn new(o: Origin, created_at_ms: u64) -> RunRecord {
        RunRecord {
            best_commit: o.base_commit.clone(),
            id: o.id,
            spec: o.spec,
            repo: o.repo,
            common_dir: o.common_dir,
            worktree: o.worktree,
            branch: o.branch,
            base: o.base,
            base_commit: o.base_commit,
            created_at_ms,
            state: RunState::Starting,
            stop_reason: None,
            error: None,
            baseline: None,
            best: None,
            baseline_duration_ms: None,
            mode: None,
            next_experiment: 0,
            counts: Counts::default(),
            inflight: None,
            active_ms: 0,
            recovered_at_ms: None,
            last_status: None,
            cost_usd: None,
            notes: Vec::new(),
            merged: false,
            cleaned_up: false,
            gain: None,
            noise: NoiseState::default(),
            pause_reason: None,
            prepared: false,
            setup_excludes: Vec::new(),
        }
    }

    pub fn state(&self) -> RunState {
        self.state
    }

    /// Move the state by the rules of [`RunState::after`].
    pub fn apply(&mut self, event: Event) {
        self.state = self.state.after(event);
    }

    /// Count what an experiment's proposer reported spending.
    pub fn add_cost(&mut self, cost: Option<f64>) {
        if let Some(c) = cost {
            self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + c);
        }
    }

    /// The seed's TSV in the worktree (the agent reads it).
    pub fn worktree_tsv(&self) -> PathBuf {
        self.worktree.join(self.spec.tsv_name())
    }
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
    /// The number of the experiment under way (see [`crate::run::RunHandle::mark_inflight`]).
    pub fn inflight(&self) -> PathBuf {
        self.dir.join("inflight")
    }
    /// Captured output of a run's commands (`name` may start with the experiment's folder).
    pub fn output(&self, name: &str) -> PathBuf {
        self.dir.join("output").join(name)
    }
    /// The folder that keeps experiment `n`'s outputs (proposer, metric runs, guards).
    pub fn experiment_output(&self, n: u32) -> PathBuf {
        self.dir.join("output").join(n.to_string())
    }
    /// The run's second worktree, holding the current best for paired measurements.
    pub fn best_tree(&self) -> PathBuf {
        self.dir.join("best-tree")
    }
    /// Where `arctl merge` re-measures the run on top of the updated base.
    pub fn merge_dir(&self) -> PathBuf {
        self.dir.join("merge")
    }
}
