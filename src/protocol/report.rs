//! `arctl report`: the seed's Phase 4 for one run (the experiment table, totals, baseline →
//! final, the top changes, the git log of the kept experiments, a review, next steps). The
//! stable JSON shape of `report RUN --json`; fields are only ever added.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{GainEstimate, NoiseState, ResultRow, RunState};
use crate::spec::Direction;
use crate::stats::Evaluation;

/// `arctl report RUN --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub run: String,
    pub goal: String,
    pub state: RunState,
    pub stop_reason: Option<String>,
    pub metric_command: String,
    pub direction: Direction,
    /// "deterministic" or "noisy" (None before the baseline).
    pub mode: Option<String>,
    /// Coefficient of variation measured at baseline (noisy mode).
    pub cv: Option<f64>,
    /// The spec's `min_effect` as a fraction.
    pub min_effect: f64,
    pub repo: PathBuf,
    pub worktree: PathBuf,
    pub branch: String,
    pub base: String,
    pub base_commit: String,
    pub best_commit: String,
    pub merged: bool,
    pub cleaned_up: bool,
    /// The experiment table (4.1), baseline first.
    pub experiments: Vec<ResultRow>,
    pub totals: Totals,
    pub baseline: Option<f64>,
    /// The baseline moved by `change`: the best in the baseline's terms.
    #[serde(rename = "final")]
    pub final_value: Option<f64>,
    /// Relative improvement baseline → final in the metric's direction (0.05 = 5% better),
    /// from same-time comparisons only: the final confirmation, else the chain.
    pub change: Option<f64>,
    /// The 95% interval of `change`.
    #[serde(default)]
    pub change_interval: Option<[f64; 2]>,
    /// "confirmation" or "chain".
    #[serde(default)]
    pub change_source: Option<String>,
    /// The chain of the kept experiments' paired estimates (beside a confirmation, to
    /// compare: each kept estimate won its own test and reads a little high).
    #[serde(default)]
    pub chain: Option<GainEstimate>,
    /// The final confirmation's decision, when the run has one.
    #[serde(default)]
    pub confirmation: Option<Evaluation>,
    /// The noise during the run against the baseline probe.
    #[serde(default)]
    pub noise: NoiseState,
    /// The (up to) three kept experiments with the largest own gain, largest first.
    pub top_changes: Vec<KeptChange>,
    /// Every kept experiment, in order, with how sure its gain is (4.1b).
    pub kept: Vec<KeptChange>,
    /// `git log --oneline base_commit..best_commit`.
    pub git_log: GitLog,
    pub review: Review,
    /// Next steps (4.3), one checklist item each (rendered as `- [ ] item`).
    pub next_steps: Vec<String>,
    /// The crashed and rejected experiments, each with the lines of its failing command's
    /// output that say why (from the run's kept outputs).
    #[serde(default)]
    pub failures: Vec<FailureQuote>,
}

/// A failed experiment and what its output said.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureQuote {
    pub experiment: u32,
    pub status: String,
    pub reason: String,
    /// The output file quoted (in the run's `output/N/`), when one said anything.
    pub output: Option<String>,
    /// Its error lines, else its last lines (at most a few).
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    /// Experiments run, the baseline not counted.
    pub experiments: u32,
    pub kept: u32,
    pub discarded: u32,
    pub crashed: u32,
    /// Inspector-rejected (out of scope, guard failed, HEAD moved).
    pub rejected: u32,
}

/// A kept experiment and the evidence behind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeptChange {
    pub experiment: u32,
    /// Short commit id.
    pub commit: Option<String>,
    pub description: String,
    pub metric: Option<f64>,
    /// Its own gain over the best before it (0.05 = 5% better): the paired estimate in noisy
    /// mode, else the change against the previous best.
    pub gain: Option<f64>,
    /// "deterministic" (one strict comparison) or "noisy" (paired rounds).
    pub evidence: String,
    /// 1 - p of "the candidate is not better" (noisy).
    pub confidence: Option<f64>,
    /// The 95% interval of the gain (noisy; older journals: the one-sided bounds).
    pub interval: Option<[f64; 2]>,
    pub rounds: Option<usize>,
    /// Kept for the simplicity rule rather than for a gain.
    pub simplification: bool,
    /// Why the gain may not hold, when it may not.
    pub fragile: Option<String>,
}

/// The git history of the kept experiments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GitLog {
    /// "history" (walked base_commit..best_commit in the repo), "journal" (the kept commits the
    /// journal recorded, those the repo still has), or "unavailable".
    pub source: String,
    /// `<short> <subject>` lines, newest first.
    pub lines: Vec<String>,
    pub note: Option<String>,
}

/// An observation tied (when it is) to an experiment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flag {
    pub experiment: Option<u32>,
    pub message: String,
}

/// An inspector-rejected experiment that might be worth another go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Revisit {
    pub experiment: u32,
    pub description: String,
    pub reason: String,
    /// The metric's change against the best before it, when it was measured.
    pub gain: Option<f64>,
}

/// The run-level review (4.1b), as far as the journal allows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Review {
    /// Two or three sentences.
    pub summary: String,
    /// Kept gains that are small against the noise (or against `min_effect`).
    pub fragile: Vec<Flag>,
    /// Ideas the proposer named (`ideas_not_tried` in its proposal JSON) that no experiment's
    /// description matches.
    pub ideas_not_tried: Vec<String>,
    /// Inspector-rejected experiments, those whose metric improved first.
    pub revisit: Vec<Revisit>,
    /// Signs of overfitting to the benchmark.
    pub overfitting: Vec<Flag>,
}
