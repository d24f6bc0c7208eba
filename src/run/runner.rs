//! The loop of one run: `baseline → (propose → scope check → commit → measure → guards →
//! decide → log)*`, and what every phase shares: the run's worktree, journal records,
//! proposer, scope, executor, and how its children are tagged, limited and measured. The
//! phases are in their own files: [`super::baseline`], [`super::experiment`],
//! [`super::conclude`], [`super::best_tree`].
//!
//! The runner reads a snapshot of the record (`rec`) and changes it only through
//! [`RunHandle::update`], which hands back the new snapshot: the handle stays the one owner.

use std::sync::Arc;

use anyhow::Result;

use crate::exec::{self, Limits};
use crate::git::{scope::Scope, WorkTree};
use crate::run::guard_rails::{self, Rails, Role};
use crate::run::journal::ExperimentRecord;
use crate::run::measure::{self, Meter};
use crate::run::proposer::{self, Proposer};
use crate::run::record::RunRecord;
use crate::run::state::Event;
use crate::run::{Global, RunHandle};
use crate::stats::DecisionConfig;
use crate::store;

pub(super) struct Runner {
    pub(super) h: Arc<RunHandle>,
    pub(super) g: Arc<Global>,
    pub(super) wt: WorkTree,
    /// The journal so far (the source of truth, mirrored here).
    pub(super) records: Vec<ExperimentRecord>,
    pub(super) proposer: Box<dyn Proposer>,
    pub(super) scope: Scope,
    pub(super) template: String,
    /// The second worktree, created when first needed (a cell: the deterministic check
    /// creates it in the middle of a measurement).
    pub(super) best_tree: std::cell::RefCell<Option<WorkTree>>,
    /// The record as last written through the handle.
    pub(super) rec: RunRecord,
    /// Where the metric and guards run (inside the guard rails).
    pub(super) executor: Arc<dyn exec::Executor>,
    /// What the run's children may do, and what they did that they must not.
    pub(super) rails: Arc<Rails>,
    /// The journal as this runner last wrote it: unchanged, it is not read back before the
    /// next append (see `append_journal`).
    pub(super) journal_mark: Option<store::FileMark>,
    /// The worktree's TSV as this runner last wrote it (see `journal::update_tsv_copy`).
    pub(super) tsv_mark: Option<store::FileMark>,
}

impl Runner {
    pub(super) fn new(h: Arc<RunHandle>, g: Arc<Global>) -> Result<Runner> {
        let rec = h.record();
        let wt = WorkTree::open(&rec.worktree)?;
        let (records, _) = store::read_json_lines::<ExperimentRecord>(&h.paths.journal())?;
        let proposer = proposer::build(&rec.spec, &records)?;
        let template = proposer::template(&rec.spec)?;
        let rails = Arc::new(Rails::new(&rec));
        let executor = guard_rails::wrap(g.executor(&rec), &rails, Role::Evaluator);
        Ok(Runner {
            scope: Scope::new(&rec.spec.spec.scope),
            h,
            g,
            wt,
            records,
            proposer,
            template,
            best_tree: std::cell::RefCell::new(None),
            executor,
            rails,
            rec,
            journal_mark: None,
            tsv_mark: None,
        })
    }

    pub(super) fn log(&self, msg: &str) {
        tracing::info!("{msg}");
        self.h.log_line(msg);
    }

    /// Change the record through the handle (persisted) and refresh the snapshot.
    pub(super) fn update(&mut self, f: impl FnOnce(&mut RunRecord)) -> Result<()> {
        self.rec = self.h.update(f)?;
        if !self.rec.state().is_active() {
            // Ended: its cores are free for the next run at once.
            self.g.release_cores(&self.rec.id);
        }
        Ok(())
    }

    /// An experiment's intent (see [`RunHandle::mark_inflight`]).
    pub(super) fn mark_inflight(&mut self, n: u32) -> Result<()> {
        self.h.mark_inflight(n)?;
        self.rec.inflight = Some(crate::run::record::Inflight { experiment: n });
        Ok(())
    }

    /// Change the record now, persisted with the next `update` (see
    /// [`RunHandle::update_deferred`]); the state must not change this way.
    pub(super) fn update_deferred(&mut self, f: impl FnOnce(&mut RunRecord)) {
        self.rec = self.h.update_deferred(f);
    }

    /// Move the state by `event`; written only when it changes something.
    pub(super) fn apply(&mut self, event: Event) -> Result<()> {
        if self.rec.state().after(event) == self.rec.state() {
            return Ok(());
        }
        self.update(|r| r.apply(event))
    }

    /// A stop --now or shutdown asks for the command under way to be killed.
    pub(super) fn interrupted(&self) -> bool {
        self.h.control().interrupts()
    }

    pub(super) fn close(&mut self) {
        if !self.rec.state().is_active() {
            self.drop_best_tree();
        }
        // The walk's handles keep the work tree's files (even deleted ones) open.
        crate::git::forget_walk_state(&self.rec.worktree);
    }

    /// The loop: between experiments, obey the controls and the budget.
    pub(super) fn run(&mut self) -> Result<()> {
        loop {
            let c = self.h.control();
            if c.shutdown {
                return Ok(());
            }
            if c.stop || c.stop_now {
                // A stop (not --now) with a keep confirms the best first; interrupted, the
                // controls decide again.
                if !c.stop_now && !self.confirm()? {
                    continue;
                }
                self.update(|r| {
                    r.apply(Event::Stopped);
                    r.stop_reason = Some("stopped by the user".into());
                    r.inflight = None;
                })?;
                self.log("stopped by the user");
                return Ok(());
            }
            if self.rec.baseline.is_none() {
                self.baseline()?;
                if self.rec.baseline.is_none() && !self.h.control().holds() {
                    return Ok(()); // interrupted: resumes at the baseline
                }
                continue; // the controls decide what follows
            }
            if c.pause {
                self.apply(Event::Paused)?;
                self.log("paused");
                self.h.wait_while_paused();
                if self.rec.pause_reason.is_some() && !self.h.control().pause {
                    self.update(|r| r.pause_reason = None)?;
                }
                continue;
            }
            self.apply(Event::Resumed)?;
            if let Some(why) = self.budget_spent() {
                return self.finish(&why);
            }
            self.experiment()?;
            if !self.rec.state().is_active() {
                // The proposer ran out of ideas (`finish` inside the experiment).
                return Ok(());
            }
        }
    }

    fn budget_spent(&self) -> Option<String> {
        crate::run::budget::Spent {
            budget: &self.rec.spec.spec.budget,
            next_experiment: self.rec.next_experiment,
            elapsed_ms: self.h.live().elapsed_ms(),
            records: &self.records,
        }
        .reason()
    }

    /// End the run (budget spent, proposer out of ideas), after the final confirmation of a
    /// keep; interrupted during it, the run stays as it is and the loop's controls decide.
    pub(super) fn finish(&mut self, why: &str) -> Result<()> {
        if !self.confirm()? {
            return Ok(());
        }
        self.update(|r| {
            r.apply(Event::Finished);
            r.stop_reason = Some(why.to_string());
            r.inflight = None;
        })?;
        self.log(&format!("finished: {why}"));
        Ok(())
    }

    pub(super) fn decision_config(&self) -> DecisionConfig {
        measure::decision_config(&self.rec)
    }

    pub(super) fn timeout_rule(&self) -> measure::TimeoutRule {
        measure::TimeoutRule::of(&self.rec)
    }

    pub(super) fn limits(&self) -> Limits {
        Limits {
            cpus: self.cpus(),
            ..measure::limits(&self.rec)
        }
    }

    /// The cores reserved for this run (`limits.cpus`); its children are pinned to them.
    pub(super) fn cpus(&self) -> Option<Vec<usize>> {
        if !self.executor.is_local() {
            return None; // a cluster's `--cpus-per-task` (see exec::slurm)
        }
        let n = self.rec.spec.spec.limits.cpus? as usize;
        match self.g.reserve_cores(&self.rec.id, n) {
            Ok(c) => Some(c),
            Err(why) => {
                // After a restart the cores may be gone; run unpinned rather than not at all.
                tracing::warn!("{why}; running unpinned");
                None
            }
        }
    }

    pub(super) fn tag(&self, experiment: u32, role: &str) -> String {
        format!("{}{experiment}/{role}", self.g.run_tag(&self.rec.id))
    }

    pub(super) fn base_env(&self, experiment: u32) -> Vec<(String, String)> {
        measure::run_env(&self.rec, &experiment.to_string(), &self.rec.worktree)
    }

    /// How this run measures experiment `experiment`: its metric command, limits, timeout
    /// and process tags (the measuring itself is shared with `arctl merge`, see [`measure`]).
    pub(super) fn meter(&self, experiment: u32) -> Meter<'_> {
        Meter {
            rec: &self.rec,
            paths: &self.h.paths,
            global: &self.g,
            executor: &*self.executor,
            limits: self.limits(),
            timeout: self.timeout_rule(),
            log: Some(&self.h),
            env: self.base_env(experiment),
            tag_prefix: self.tag(experiment, ""),
            // Every experiment's outputs are kept, each in its own folder.
            output_prefix: format!("{experiment}/"),
            log_file: Some(self.rec.worktree.join(self.rec.spec.log_name())),
        }
    }
}
