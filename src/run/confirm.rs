//! The final confirmation: when a run finishes or is stopped with a keep, its best is
//! measured against the baseline, paired (the baseline in the second worktree, the best in
//! the run's own), with the run's decision rule looked at from
//! [`crate::stats::CONFIRM_MIN_ROUNDS`] rounds on. The result is journalled (a line of
//! status `confirmation`, no TSV row) and from then on is the run's gain in `status`, the
//! report's headline, the plot and `arctl merge` ([`super::truth`]). The kept experiments'
//! estimates, each the winner of its own test, read a little high (the winner's curse);
//! this one was measured without a selection.

use anyhow::Result;

use crate::git;
use crate::protocol::format::pct;
use crate::run::journal::{ExperimentRecord, Status};
use crate::run::measure::{Measured, Reference};
use crate::run::runner::Runner;
use crate::run::state::Step;
use crate::run::truth;
use crate::stats::Mode;
use crate::store;

impl Runner {
    /// Confirm the best against the baseline before the run ends, when something was kept
    /// since the last confirmation. Ok(false): interrupted (the run must not end now: it
    /// confirms again when it resumes).
    pub(super) fn confirm(&mut self) -> Result<bool> {
        if self.rec.best_commit == self.rec.base_commit
            || self.rec.counts.kept == 0
            || truth::confirmation(&self.records).is_some()
            || self.rec.baseline.is_none()
        {
            return Ok(true);
        }
        self.h.set_step(Step::Measuring);
        self.h.set_detail("final confirmation".into());
        self.log(&format!(
            "final confirmation: measuring the best ({}) against the baseline ({}), paired",
            git::short(git::parse_oid(&self.rec.best_commit)?),
            &self.rec.base_commit[..7.min(self.rec.base_commit.len())]
        ));
        let started = store::now_ms();
        let cancel = self.h.new_cancel();
        // The baseline goes into the second worktree; the best is the run's worktree.
        self.ensure_best_tree(&cancel)?;
        let base = git::parse_oid(&self.rec.base_commit)?;
        if let Some(bt) = self.best_tree.borrow().as_ref() {
            bt.checkout_detached(base)?;
        }
        let measured = self.measure_confirmation(&cancel);
        // Whatever happened, the second worktree holds the best again.
        self.ensure_best_tree(&cancel)?;
        let measured = measured?;
        let (evaluation, records) = match measured {
            Measured::Value {
                evaluation,
                records,
                ..
            } => (evaluation, records),
            Measured::Interrupted => return Ok(false),
            Measured::Crash { reason, .. }
            | Measured::BestFailed { reason, .. }
            | Measured::NotDeterministic { detail: reason, .. } => {
                self.log(&format!(
                    "final confirmation not measured ({reason}); the run's change stays the chain of its kept experiments"
                ));
                return Ok(true);
            }
        };
        let n = self.rec.next_experiment.saturating_sub(1);
        let record = ExperimentRecord {
            commit: Some(self.rec.best_commit.clone()),
            metric: Some(evaluation.candidate_estimate).filter(|v| v.is_finite()),
            description: "final confirmation: the best against the baseline, paired".into(),
            reason: evaluation.reason.clone(),
            ended_at_ms: store::now_ms(),
            measurements: records,
            decision: Some(evaluation.clone()),
            ..ExperimentRecord::new(n, Status::Confirmation, started)
        };
        store::append_json_line(&self.h.paths.journal(), &record)?;
        self.records.push(record);
        let direction = self.rec.spec.spec.metric.direction;
        let gain = truth::gain(&self.records, direction);
        self.update(|r| r.gain = gain)?;
        let chain = truth::chain_gain(&self.records, direction);
        self.log(&format!(
            "final confirmation: {} against the baseline{} ({})",
            pct(evaluation.estimate),
            chain
                .map(|c| format!("; the chain of kept experiments said {}", pct(c.gain)))
                .unwrap_or_default(),
            evaluation.reason
        ));
        Ok(true)
    }

    /// The paired measurement of the confirmation (in deterministic mode, one run each).
    fn measure_confirmation(&mut self, cancel: &crate::exec::Cancel) -> Result<Measured> {
        let cfg = self.decision_config().confirmation();
        let mode = self.rec.mode.clone().unwrap_or(Mode::Deterministic);
        let base_tree = self.h.paths.best_tree();
        let wt = self.rec.worktree.clone();
        let h = self.h.clone();
        let max = cfg.max_rounds();
        self.meter(self.rec.next_experiment.saturating_sub(1))
            .compare(
                &mode,
                Reference::Tree(&base_tree),
                &wt,
                &cfg,
                false,
                cancel,
                |round, _| h.set_detail(format!("final confirmation, round {round}/{max}")),
            )
    }
}
