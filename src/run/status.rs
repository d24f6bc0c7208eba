//! What `arctl status` shows: the stable JSON shape of a run's summary and detail.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::protocol::ResultRow;
use crate::run::record::{Counts, RunRecord, RunState};
use crate::spec::{Direction, ResolvedSpec};

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
    pub counts: Counts,
    pub direction: Direction,
    pub baseline: Option<f64>,
    pub best: Option<f64>,
    /// Relative improvement of best over baseline, in the metric's direction (0.05 = 5%).
    pub change: Option<f64>,
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
    /// Runs on a cluster: the executor and the run's jobs queued or running there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::run::cluster::ClusterJobs>,
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
    pub recent: Vec<ResultRow>,
    /// Resource figures of the last experiment.
    pub last_peak_rss: Option<u64>,
    pub last_cpu_ms: Option<u64>,
    pub last_wall_ms: Option<u64>,
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

pub fn summarize(
    r: &RunRecord,
    step: &str,
    step_elapsed_ms: u64,
    elapsed_ms: u64,
    sparkline: String,
) -> RunSummary {
    let direction = r.spec.spec.metric.direction;
    let change = match (r.baseline, r.best) {
        (Some(b), Some(x)) => Some(direction.gain(b, x)).filter(|g| g.is_finite()),
        _ => None,
    };
    let (mode, cv) = match &r.mode {
        Some(crate::stats::Mode::Deterministic) => (Some("deterministic".to_string()), None),
        Some(crate::stats::Mode::Noisy { cv }) => (Some("noisy".to_string()), Some(*cv)),
        None => (None, None),
    };
    RunSummary {
        id: r.id.clone(),
        state: r.state,
        step: step.to_string(),
        step_detail: None,
        experiments: r.next_experiment.saturating_sub(1),
        max_experiments: r.spec.spec.budget.max_experiments,
        counts: r.counts,
        direction,
        baseline: r.baseline,
        best: r.best,
        change,
        mode,
        cv,
        created_at_ms: r.created_at_ms,
        elapsed_ms,
        step_elapsed_ms,
        last_status: r.last_status.clone(),
        worktree: r.worktree.clone(),
        branch: r.branch.clone(),
        recovered_at_ms: r.recovered_at_ms,
        error: r.error.clone(),
        stop_reason: r.stop_reason.clone(),
        sparkline,
        cluster: None,
    }
}

/// A one-line sparkline of the values.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let vals: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if vals.is_empty() {
        return String::new();
    }
    let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tail = &vals[vals.len().saturating_sub(40)..];
    tail.iter()
        .map(|v| {
            if hi == lo {
                BARS[3]
            } else {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sparkline_spans_the_range() {
        assert_eq!(super::sparkline(&[1.0, 2.0, 3.0]), "▁▅█");
        assert_eq!(super::sparkline(&[]), "");
    }
}
