//! `arctl results`: the experiment table from a run's journal, with each row's own change
//! as its decision measured it (the paired estimate against the best of its time), the
//! confidence and the reason (shared by `results`, `status RUN`, the report, the plot and
//! merge commit messages).

use crate::protocol::format::short_commit;
use crate::protocol::{ResultRow, ResultsTable};
use crate::run::journal::{clean_description, ExperimentRecord, Status};
use crate::run::truth;
use crate::spec::Direction;

/// The table of a run: rows, its gain and the column definitions.
pub fn table(run: &str, records: &[ExperimentRecord], direction: Direction) -> ResultsTable {
    ResultsTable::new(
        run.to_string(),
        direction,
        result_rows(records, direction),
        truth::gain(records, direction),
    )
}

/// The experiment table (the TSV's rows, no confirmation) with, per row, its own change
/// against the best of its time, the confidence of noisy decisions and the reason.
pub fn result_rows(records: &[ExperimentRecord], direction: Direction) -> Vec<ResultRow> {
    let history = truth::history(records, direction);
    let mut best: Option<f64> = None;
    records
        .iter()
        .filter(|r| r.status.is_row())
        .zip(history)
        .map(|(r, best_after)| {
            let d = r.decision.as_ref();
            let change = match d {
                Some(d) if r.status != Status::Crash => Some(d.estimate),
                Some(_) => None,
                // An older journal without a decision: its value against the best before.
                None => match (best, r.metric) {
                    (Some(b), Some(m)) if matches!(r.status, Status::Keep | Status::Discard) => {
                        Some(direction.gain(b, m))
                    }
                    _ => None,
                },
            }
            .filter(|g| g.is_finite());
            if matches!(r.status, Status::Baseline | Status::Keep) {
                best = r.metric;
            }
            let noisy = d.filter(|d| d.rounds > 1 && r.status != Status::Crash);
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
                confidence: noisy.map(|d| 1.0 - d.p_value).filter(|c| c.is_finite()),
                reason: r.reason.clone(),
                rounds: noisy.map(|d| d.rounds),
                interval: noisy.and_then(|d| d.interval()),
                best_after: Some(best_after).filter(|b| b.is_finite()),
            }
        })
        .collect()
}
