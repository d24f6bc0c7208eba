//! The end of an experiment: the branch stays at the candidate (keep) or goes back to the
//! best (anything else, the commit kept addressable under a ref), then one journal line
//! (the commit point), the TSV copies, and the record's counters. An interrupted
//! experiment is reverted and leaves no trace: its number is used again.

use anyhow::{Context, Result};
use git2::Oid;

use crate::git;
use crate::protocol::format::metric_or_dash;
use crate::run::journal::{self, ExperimentRecord, Status};
use crate::run::runner::Runner;
use crate::run::state::Step;
use crate::store;

/// The TSV description of an experiment from what the proposer said, the status and the
/// reason: a reject or crash carries its reason, an empty one is the reason, a no-op says
/// so, and it is never empty.
pub fn describe(description: &str, status: Status, reason: &str, experiment: u32) -> String {
    let d = description;
    let out = match status {
        Status::Discard if reason == "no change" => {
            if d.is_empty() {
                "no change".to_string()
            } else {
                format!("{d} (no change)")
            }
        }
        Status::Keep | Status::Baseline | Status::Confirmation => d.to_string(),
        _ if d.is_empty() => reason.to_string(),
        Status::Discard => d.to_string(),
        Status::Crash | Status::InspectorReject => format!("{d} ({reason})"),
    };
    if out.is_empty() {
        format!("experiment {experiment}")
    } else {
        out
    }
}

impl Runner {
    /// Decide the branch, write the journal line and the TSV row, update the record.
    pub(super) fn conclude(
        &mut self,
        mut rec: ExperimentRecord,
        status: Status,
        reason: String,
        value: Option<f64>,
        best: Oid,
    ) -> Result<()> {
        let n = rec.experiment;
        self.h.set_step(Step::Logging);
        let (mut status, mut reason) = (status, reason);
        self.before_conclusion(
            &mut status,
            &mut reason,
            rec.commit.as_deref(),
            &rec.changes,
        )?;
        rec.status = status;
        rec.metric = value.or(rec.metric);
        rec.description = describe(&rec.description, status, &reason, n);
        rec.reason = reason;
        rec.tally_resources();
        rec.ended_at_ms = store::now_ms();

        let kept = status == Status::Keep;
        if !kept {
            if let Some(c) = rec.commit.as_deref() {
                let name = git::names::discarded_ref(&self.rec.id, n);
                self.wt
                    .set_ref(&name, git::parse_oid(c)?, "arctl: discarded experiment")?;
            }
            // The last metric or guard run's walk may have found the tree clean already.
            let clean_at = crate::run::clean_marks::DAEMON.take(&self.wt.path);
            self.wt.restore_from(&self.rec.branch, best, clean_at)?;
        }
        self.append(&rec)?;
        let commit = rec.commit.clone();
        let cost = rec.cost_usd();
        let direction = self.rec.spec.spec.metric.direction;
        let gain = crate::run::truth::gain(&self.records, direction);
        let shown = crate::run::truth::history(&self.records, direction)
            .last()
            .copied()
            .unwrap_or(f64::NAN);
        // Not durable: recovery applies a journal line the record missed.
        self.update_deferred(|r| {
            r.add_cost(cost);
            r.next_experiment = n + 1;
            r.inflight = None;
            r.last_status = Some(status.as_str().to_string());
            r.counts.add(status);
            if kept {
                r.best = value;
                r.best_commit = commit.unwrap_or_else(|| r.best_commit.clone());
                r.gain = gain;
            }
        });
        {
            let mut l = self.h.live();
            // The running best in the baseline's terms (the chain), not the raw value.
            l.best_history.push(shown);
            l.last_resources = Some((rec.peak_rss, rec.cpu_ms, rec.wall_ms));
        }
        self.log(&format!(
            "experiment {n}: {} {} ({}) - {}",
            status.as_str(),
            metric_or_dash(rec.metric),
            rec.reason,
            journal::clean_description(&rec.description)
        ));
        if kept {
            self.g.tell(&self.h, crate::run::Notice::Keep);
        }
        Ok(())
    }

    /// stop --now / shutdown in the middle of an experiment: kill (done by the cancel),
    /// revert, record nothing; the experiment's number is used again on resume.
    pub(super) fn interrupt(&mut self, n: u32, best: Oid) -> Result<()> {
        self.wt.restore(&self.rec.branch, best)?;
        self.update(|r| r.inflight = None)?;
        self.log(&format!(
            "experiment {n}: interrupted; worktree reverted to {}",
            git::short(best)
        ));
        Ok(())
    }

    /// Journal first (the truth, durable), then the TSV copies (not durable: recovery
    /// rewrites both from the journal).
    pub(super) fn append(&mut self, rec: &ExperimentRecord) -> Result<()> {
        self.append_journal(rec)?;
        self.records.push(rec.clone());
        journal::append_tsv(&self.h.paths.tsv(), rec)?;
        // Taken first: after a failed write the next one rewrites the copy whole.
        let (tsv, mark) = (self.rec.worktree_tsv(), self.tsv_mark.take());
        self.tsv_mark = Some(
            journal::update_tsv_copy(&tsv, mark, &self.records)
                .with_context(|| format!("writing {}", tsv.display()))?,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_carry_what_happened() {
        assert_eq!(
            describe("inline the loop", Status::Keep, "p=0.01", 3),
            "inline the loop"
        );
        // A discard keeps the proposer's words; the reason is in its own column.
        assert_eq!(
            describe("inline the loop", Status::Discard, "inconclusive", 3),
            "inline the loop"
        );
        assert_eq!(describe("", Status::Discard, "no change", 4), "no change");
        assert_eq!(
            describe("tweak", Status::Discard, "no change", 4),
            "tweak (no change)"
        );
        assert_eq!(
            describe("numba", Status::Crash, "metric failed: exit 1", 5),
            "numba (metric failed: exit 1)"
        );
        assert_eq!(
            describe("", Status::InspectorReject, "out of scope: x", 6),
            "out of scope: x"
        );
        assert_eq!(
            describe("", Status::Discard, "inconclusive", 7),
            "inconclusive"
        );
        assert_eq!(describe("", Status::Keep, "p=0.01", 8), "experiment 8");
    }
}
