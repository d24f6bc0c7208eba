//! The message of a merge or squash commit: the metric's change and the kept experiments.

use crate::ops::results::result_rows;
use crate::protocol::format::{format_metric, pct, short_commit};
use crate::run::journal::{clean_description, ExperimentRecord, Status};
use crate::run::record::RunRecord;

use super::gain_alone;

/// The message of a merge or squash commit: the metric change and the kept experiments.
pub(super) fn message(
    rec: &RunRecord,
    journal: &[ExperimentRecord],
    target: &str,
    squash: bool,
    on_top: Option<&str>,
) -> String {
    let m = &rec.spec.spec.metric;
    let gain = gain_alone(rec)
        .filter(|g| g.is_finite())
        .map(pct)
        .unwrap_or_else(|| "-".into());
    let change = format!(
        "{} → {} ({gain})",
        format_metric(rec.baseline),
        format_metric(rec.best)
    );
    let subject = if squash {
        let what = if rec.spec.spec.goal.trim().is_empty() {
            format!("autoresearch run {}", rec.id)
        } else {
            clean_description(&rec.spec.spec.goal)
        };
        format!("{what}: {change}")
    } else {
        format!("Merge {} into {target}: {change}", rec.branch)
    };
    let rows = result_rows(journal, m.direction);
    let kept: Vec<String> = journal
        .iter()
        .zip(&rows)
        .filter(|(r, _)| r.status == Status::Keep)
        .map(|(r, row)| {
            format!(
                "- experiment {} ({}): {}{}",
                r.experiment,
                r.commit.as_deref().map(short_commit).unwrap_or("-"),
                clean_description(&r.description),
                row.change
                    .map(|c| format!(" ({})", pct(c)))
                    .unwrap_or_default()
            )
        })
        .collect();
    let total = journal
        .iter()
        .filter(|r| r.status != Status::Baseline)
        .count();
    let mut msg = format!("{subject}\n\n");
    msg.push_str(&format!(
        "{} of {} ({}): {} of {total}.\n",
        if squash { "Squash" } else { "Merge" },
        rec.branch,
        rec.id,
        crate::protocol::format::count(kept.len(), "kept experiment")
    ));
    msg.push_str(&format!(
        "Metric `{}` ({} is better): {change} alone",
        m.command,
        format!("{:?}", m.direction).to_lowercase()
    ));
    match on_top {
        Some(n) => msg.push_str(&format!("; {n}.\n")),
        None => msg.push_str(".\n"),
    }
    if !kept.is_empty() {
        msg.push_str("\nKept experiments:\n");
        msg.push_str(&kept.join("\n"));
        msg.push('\n');
    }
    msg
}
