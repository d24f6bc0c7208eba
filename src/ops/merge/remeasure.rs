//! Re-measuring a run's change on top of the target as updated by the runs merged before
//! it: two temporary worktrees (the updated base and the merged candidate), the run's own
//! metric, limits and decision rule, then its guards on the merged tree.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use git2::Oid;

use super::land::Merger;
use crate::exec::Exit;
use crate::git;
use crate::protocol::format::{format_metric, pct_or_dash};
use crate::run::measure::{self, Measured, Meter, Reference};
use crate::run::prepare;
use crate::run::record::RunRecord;
use crate::run::RunHandle;
use crate::stats::{DecisionConfig, Evaluation, Mode, Verdict};

impl Merger<'_> {
    /// Measure the merged tree (commit `candidate`) against the updated base, with the run's
    /// metric and rule, in two temporary worktrees. Ok(Err(why)) when the measurement itself
    /// failed.
    pub(super) fn measure(
        &self,
        h: &Arc<RunHandle>,
        rec: &RunRecord,
        candidate: Oid,
        merged_tree: Oid,
    ) -> Result<std::result::Result<Evaluation, String>> {
        let dir = h.paths.merge_dir();
        let trees = Trees {
            base: dir.join("base"),
            candidate: dir.join("candidate"),
            names: git::names::merge_tree_names(&rec.id),
        };
        std::fs::create_dir_all(&dir)?;
        let result =
            git::create_detached_worktree(self.repo, &trees.names.0, &trees.base, self.tip)
                .and_then(|_| {
                    git::create_detached_worktree(
                        self.repo,
                        &trees.names.1,
                        &trees.candidate,
                        candidate,
                    )
                })
                .and_then(|_| self.measure_in(h, rec, &trees, merged_tree));
        let _ = git::remove_worktree(self.repo, &trees.names.0, &trees.base);
        let _ = git::remove_worktree(self.repo, &trees.names.1, &trees.candidate);
        let _ = std::fs::remove_dir(&dir);
        result
    }

    fn measure_in(
        &self,
        h: &Arc<RunHandle>,
        rec: &RunRecord,
        trees: &Trees,
        merged_tree: Oid,
    ) -> Result<std::result::Result<Evaluation, String>> {
        if let Err(why) = self.prepare(h, rec, trees)? {
            return Ok(Err(why));
        }
        // Where the run measured (this machine or its cluster), inside its guard rails.
        let executor = crate::run::evaluator_for(self.g, rec);
        let meter = Meter {
            rec,
            paths: &h.paths,
            global: self.g,
            executor: &*executor,
            // Unpinned: the run's reserved cores were released when it ended; both trees are
            // measured alike, which is what the comparison needs.
            limits: measure::limits(rec),
            // The run's rule, its reference measured now: the updated base in the same round.
            timeout: measure::TimeoutRule::of(rec),
            log: Some(h),
            env: measure::run_env(rec, "merge", &trees.candidate),
            tag_prefix: format!("{}merge/", self.g.run_tag(&rec.id)),
            output_prefix: "merge-".into(),
            log_file: None,
        };
        let cfg = measure::decision_config(rec);
        let (mode, measured) = self.compare_on_top(h, rec, &meter, trees, &cfg, merged_tree)?;
        let evaluation = match self.evaluation_of(rec, measured) {
            Ok(evaluation) => evaluation,
            Err(why) => return Ok(Err(why)),
        };
        if mode == Mode::Deterministic {
            h.log_line(&format!(
                "merge: base {} = {}",
                git::short(self.tip),
                format_metric(Some(evaluation.best_estimate))
            ));
        }
        h.log_line(&format!("merge: on top: {}", evaluation.reason));
        if evaluation.verdict != Verdict::Keep {
            return Ok(Ok(evaluation));
        }
        // Kept in the loop meant: better and every guard passing. The merged tree is a tree
        // the run never saw, so its guards run on it too.
        if let Err(why) = self.guards_on_top(h, rec, &meter, trees)? {
            return Ok(Err(why));
        }
        Ok(Ok(evaluation))
    }

    /// The merged tree measured against the updated base in the run's mode (measured again
    /// paired when a deterministic metric moved): the mode it ended in, and the measurement.
    fn compare_on_top(
        &self,
        h: &Arc<RunHandle>,
        rec: &RunRecord,
        meter: &Meter,
        trees: &Trees,
        cfg: &DecisionConfig,
        merged_tree: Oid,
    ) -> Result<(Mode, Measured)> {
        let base_tree = git::merge::tree_of(self.repo, self.tip)?;
        let (ins, del) = git::merge::tree_diff_lines(self.repo, base_tree, merged_tree)?;
        let mut mode = rec.mode.clone().unwrap_or(Mode::Deterministic);
        let progress = |round: usize, ev: &Evaluation| {
            h.log_line(&format!(
                "merge: round {round}/{}: base {} vs merged {} (estimate {}, p {:.3})",
                cfg.max_rounds(),
                format_metric(Some(ev.best_estimate)),
                format_metric(Some(ev.candidate_estimate)),
                pct_or_dash(Some(ev.estimate)),
                ev.p_value
            ))
        };
        let mut measured = meter.compare(
            &mode,
            Reference::Tree(&trees.base),
            &trees.candidate,
            cfg,
            del > ins,
            self.cancel,
            progress,
        )?;
        if let Measured::NotDeterministic { detail, .. } = &measured {
            h.log_line(&format!("merge: {detail}: measuring paired"));
            mode = Mode::Noisy { cv: 0.0 };
            measured = meter.compare(
                &mode,
                Reference::Tree(&trees.base),
                &trees.candidate,
                cfg,
                del > ins,
                self.cancel,
                progress,
            )?;
        }
        Ok((mode, measured))
    }

    /// The evaluation of the merged tree, or why the measurement gave none.
    fn evaluation_of(
        &self,
        rec: &RunRecord,
        measured: Measured,
    ) -> std::result::Result<Evaluation, String> {
        match measured {
            Measured::Value { evaluation, .. } => Ok(evaluation),
            Measured::Crash { reason, .. } => Err(format!(
                "the metric failed on the merged tree: {reason}; branch {} kept",
                rec.branch
            )),
            Measured::BestFailed { reason, .. } => Err(format!(
                "measuring {} failed: {reason}; the run's change was not judged and its branch {} stays. If the machine was busy, run `arctl merge {}` again when it is quieter; if the metric fails on {} itself, fix that first (or raise metric.timeout in the run's spec)",
                self.on_top_of(),
                rec.branch,
                rec.id,
                self.target
            )),
            Measured::NotDeterministic { detail, .. } => {
                Err(format!("the metric moved when measured again ({detail})"))
            }
            Measured::Interrupted => Err(INTERRUPTED.into()),
        }
    }

    /// The run's guards run on the merged tree, each logged as it passes. Ok(Err(why)) at the
    /// first that fails, or when interrupted.
    fn guards_on_top(
        &self,
        h: &Arc<RunHandle>,
        rec: &RunRecord,
        meter: &Meter,
        trees: &Trees,
    ) -> Result<std::result::Result<(), String>> {
        for g in &rec.spec.spec.guards {
            let (ok, r) = meter.guard(g, &trees.candidate, self.cancel)?;
            if r.outcome.exit == Exit::Cancelled {
                return Ok(Err(INTERRUPTED.into()));
            }
            if !ok {
                return Ok(Err(format!(
                    "guard {:?} fails on top of {} ({}); branch {} kept",
                    g.name,
                    self.on_top_of(),
                    r.outcome.exit.describe(),
                    rec.branch
                )));
            }
            h.log_line(&format!("merge: guard {:?} passes on top", g.name));
        }
        Ok(Ok(()))
    }
}

impl Merger<'_> {
    /// Both trees prepared as the run's spec says (`[setup]`), as the loop prepared its own.
    /// Ok(Err(why)) when setup failed or was interrupted.
    fn prepare(
        &self,
        h: &Arc<RunHandle>,
        rec: &RunRecord,
        trees: &Trees,
    ) -> Result<std::result::Result<(), String>> {
        if !prepare::wanted(rec) {
            return Ok(Ok(()));
        }
        let executor = crate::run::setup_executor_for(self.g, rec);
        for (tree, label) in [(&trees.base, "base"), (&trees.candidate, "candidate")] {
            let p = prepare::Preparation {
                rec,
                executor: &*executor,
                env: measure::run_env(rec, "merge", tree),
                limits: measure::limits(rec),
                tag: format!("{}merge/setup-{label}", self.g.run_tag(&rec.id)),
                stdout: h.paths.output(&format!("merge-setup-{label}.out")),
                stderr: h.paths.output(&format!("merge-setup-{label}.err")),
            };
            match p.prepare(tree, self.cancel) {
                Ok(Some(done)) => {
                    prepare::record_excludes(h, &done.excludes)?;
                    h.log_line(&format!(
                        "merge: setup of the {label} tree: {}",
                        done.summary
                    ));
                }
                Ok(None) => return Ok(Err(INTERRUPTED.into())),
                Err(e) => return Ok(Err(format!("{e:#}; branch {} kept", rec.branch))),
            }
        }
        Ok(Ok(()))
    }
}

const INTERRUPTED: &str = "interrupted (the daemon is shutting down)";

/// The two temporary worktrees of a re-measurement, and git's names for them.
struct Trees {
    base: PathBuf,
    candidate: PathBuf,
    names: (String, String),
}
