//! `arctl results`: the experiment table from a run's journal, with each row's change
//! against the best before it and the confidence of noisy decisions (shared by `results`,
//! `status RUN`, the report and merge commit messages).

use crate::protocol::format::short_commit;
use crate::protocol::ResultRow;
use crate::run::journal::{clean_description, ExperimentRecord, Status};
use crate::spec::Direction;

/// The experiment table with, per row, the change against the best before it and the
/// confidence of noisy decisions (shared by `arctl results`, `status RUN` and the report).
pub fn result_rows(records: &[ExperimentRecord], direction: Direction) -> Vec<ResultRow> {
    let mut best: Option<f64> = None;
    records
        .iter()
        .map(|r| {
            let change = match (best, r.metric) {
                (Some(b), Some(m)) if r.status != Status::Crash => {
                    Some(direction.gain(b, m)).filter(|g| g.is_finite())
                }
                _ => None,
            };
            if matches!(r.status, Status::Baseline | Status::Keep) {
                best = r.metric;
            }
            ResultRow {
                experiment: r.experiment,
                commit: r
                    .commit
                    .as_deref()
                    .map(|c| short_commit(c).to_string())
                    .unwrap_or_else(|| "-".into()),
                metric: r.metric,
                status: r.status.as_str().to_string(),
                description: clean_description(&r.description),
                change,
                confidence: r
                    .decision
                    .as_ref()
                    .filter(|d| d.rounds > 1)
                    .map(|d| 1.0 - d.p_value),
            }
        })
        .collect()
}
