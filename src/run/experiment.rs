//! One experiment: wait for a slot, propose, check what the proposer did (HEAD, scope),
//! commit, measure (with up to two quick fixes of a crash by an agent), run the guards, and
//! hand the verdict to [`super::conclude`].

use anyhow::Result;
use git2::Oid;

use crate::exec::{Cancel, Exit};
use crate::git::{self, HeadState};
use crate::run::journal::{self, ExperimentRecord, Status};
use crate::run::measure::{Measured, Reference};
use crate::run::prompt::{self, Fix};
use crate::run::proposer::{self, Proposal, Proposed};
use crate::run::runner::Runner;
use crate::run::state::{Request, Step};
use crate::stats::{Evaluation, Mode, Verdict};
use crate::store;

/// Quick-fix calls an agent gets for a crashed metric.
pub(super) const MAX_FIX_ATTEMPTS: u32 = 2;

/// Where an experiment goes after measuring: concluded already, or on to the guards.
enum Next {
    Done,
    Guards(f64, Evaluation),
}

/// How the guards went.
enum Guards {
    Pass,
    Fail(String),
    Interrupted,
}

impl Runner {
    pub(super) fn experiment(&mut self) -> Result<()> {
        let n = self.rec.next_experiment;
        self.h.set_step(Step::Waiting);
        let (g, h) = (self.g.clone(), self.h.clone());
        let Some(_slot) = g.slots.acquire(|| h.control().holds()) else {
            return Ok(());
        };
        let best = git::parse_oid(&self.rec.best_commit)?;
        let cancel = self.h.new_cancel();
        if self.interrupted() {
            return Ok(());
        }
        // The intent, before any side effect: recovery can say experiment n was under way.
        self.mark_inflight(n)?;
        let mut rec = ExperimentRecord::new(n, Status::Discard, store::now_ms());
        self.forget_tampering();
        // A built-in proposer writes the tree from here, unseen by the marks.
        crate::run::clean_marks::forget(&self.wt.path);
        self.h.set_step(Step::Proposing);
        let proposal = match self.propose(n, None, &cancel)? {
            Proposed::Exhausted(why) => {
                self.wt.restore(&self.rec.branch, best)?;
                return self.finish(&why);
            }
            Proposed::Change(p) => *p,
        };
        if self.interrupted() {
            return self.interrupt(n, best);
        }
        let Proposal {
            description,
            hypothesis,
            key,
            command,
            failure,
        } = proposal;
        rec.description = description;
        rec.hypothesis = hypothesis;
        rec.proposal_key = key;
        rec.proposer = command;
        if let Some((status, reason)) = self.check_proposal(&mut rec, best, best, failure)? {
            return self.conclude(rec, status, reason, None, best);
        }

        self.h.set_step(Step::Committing);
        let message = format!(
            "experiment: {}",
            journal::clean_description(&rec.description)
        );
        let commit = self.wt.commit_changes(&rec.changes, &message, best)?;
        rec.commit = Some(commit.to_string());
        let (value, evaluation) = match self.measure_with_fixes(&mut rec, best, commit, &cancel)? {
            Next::Done => return Ok(()),
            Next::Guards(v, e) => (v, e),
        };
        rec.metric = Some(value);
        let noise = evaluation.clone();
        match self.run_guards(&mut rec, &cancel)? {
            Guards::Pass => self.decide(rec, value, evaluation, best)?,
            Guards::Fail(reason) => {
                rec.decision = Some(evaluation);
                self.conclude(rec, Status::InspectorReject, reason, None, best)?
            }
            Guards::Interrupted => return self.interrupt(n, best),
        }
        // The noise of these rounds against the baseline's (a fresh probe when far above).
        self.track_noise(&noise, &cancel)
    }

    /// Measure the committed candidate; an agent gets quick-fix calls for a crash of its
    /// own tree (never for a failure of the best's). Concludes the experiment unless it goes
    /// on to the guards.
    fn measure_with_fixes(
        &mut self,
        rec: &mut ExperimentRecord,
        best: Oid,
        mut commit: Oid,
        cancel: &Cancel,
    ) -> Result<Next> {
        let n = rec.experiment;
        loop {
            self.h.set_step(Step::Measuring);
            let stat = self.wt.diff_stat(best, commit)?;
            rec.diff = Some(stat);
            let fewer_lines = stat.deletions > stat.insertions;
            let measured = self.measure_candidate(fewer_lines, cancel)?;
            let (reason, tail, records) = match measured {
                Measured::Interrupted => {
                    self.interrupt(n, best)?;
                    return Ok(Next::Done);
                }
                Measured::Value {
                    value,
                    evaluation,
                    records,
                    best_tree,
                } => {
                    rec.measurements.extend(records);
                    rec.best_tree = best_tree;
                    return Ok(Next::Guards(value, evaluation));
                }
                Measured::BestFailed {
                    reason,
                    tail,
                    records,
                } => {
                    rec.measurements.extend(records);
                    self.best_keeps_failing(rec.clone(), best, &reason, &tail)?;
                    return Ok(Next::Done);
                }
                Measured::NotDeterministic { records, .. } => {
                    // measure_candidate measures again in noisy mode; never here.
                    rec.measurements.extend(records);
                    anyhow::bail!("internal error: a deterministic check was not followed up")
                }
                Measured::Crash {
                    reason,
                    tail,
                    records,
                } => (reason, tail, records),
            };
            rec.measurements.extend(records);
            if !self.proposer.can_fix()
                || rec.fix_attempts >= MAX_FIX_ATTEMPTS
                || self.interrupted()
            {
                self.conclude(rec.clone(), Status::Crash, reason, None, best)?;
                return Ok(Next::Done);
            }
            rec.fix_attempts += 1;
            self.log(&format!(
                "experiment {n}: {reason}; quick fix {} of {MAX_FIX_ATTEMPTS}",
                rec.fix_attempts
            ));
            self.h.set_step(Step::Proposing);
            let fix = Fix {
                attempt: rec.fix_attempts,
                failure: format!("{reason}\n{tail}"),
            };
            let failure = match self.propose(n, Some(&fix), cancel)? {
                Proposed::Change(p) => p.failure,
                Proposed::Exhausted(_) => None,
            };
            if self.interrupted() {
                self.interrupt(n, best)?;
                return Ok(Next::Done);
            }
            // The fix must obey the same rules as the proposal.
            if let Some((status, reason)) = self.check_proposal(rec, best, commit, failure)? {
                self.conclude(rec.clone(), status, reason, None, best)?;
                return Ok(Next::Done);
            }
            commit = self.wt.amend_all(commit)?;
            rec.commit = Some(commit.to_string());
        }
    }

    /// The current best failed to measure in every attempt of a round: the candidate is not
    /// judged (a discard that says so, no quick fix) and the run pauses with a message.
    fn best_keeps_failing(
        &mut self,
        rec: ExperimentRecord,
        best: Oid,
        reason: &str,
        tail: &str,
    ) -> Result<()> {
        let n = rec.experiment;
        let why = format!(
            "not judged: measuring the current best ({}) failed: {reason}",
            git::short(best)
        );
        self.conclude(rec, Status::Discard, why, None, best)?;
        let msg = format!(
            "paused: the current best ({}) failed to measure in every attempt of a round of experiment {n} ({reason}); the candidate was not blamed. Check the metric on the best commit and the machine's load, then `arctl resume {}`",
            git::short(best),
            self.rec.id
        );
        self.log(&msg);
        if !tail.trim().is_empty() {
            self.log(&format!("last lines of the best's failure:\n{tail}"));
        }
        self.update(|r| r.pause_reason = Some(msg.clone()))?;
        self.h.request(Request::Pause)
    }

    /// Measure the candidate against the best by the run's mode. A deterministic metric
    /// whose value moves when measured again switches the run to noisy mode, and the
    /// candidate is measured paired.
    fn measure_candidate(&mut self, fewer_lines: bool, cancel: &Cancel) -> Result<Measured> {
        let mode = self.rec.mode.clone().unwrap_or(Mode::Deterministic);
        // Noisy mode measures the best in every round; deterministic mode makes the second
        // worktree only when it needs it (before a keep, or to judge a timeout).
        if matches!(mode, Mode::Noisy { .. }) {
            self.ensure_best_tree(cancel)?;
        }
        let mut m = self.compare_now(&mode, fewer_lines, cancel)?;
        if let Measured::NotDeterministic {
            detail,
            values,
            records,
        } = m
        {
            self.switch_to_noisy(&detail, &values)?;
            let mode = self.rec.mode.clone().unwrap_or(Mode::Deterministic);
            m = self.compare_now(&mode, fewer_lines, cancel)?;
            for r in records.into_iter().rev() {
                m.prepend(r);
            }
        }
        if let Measured::Value {
            best_tree, records, ..
        } = &mut m
        {
            let measured = records.iter().any(|r| r.tree.as_deref() == Some("best"));
            *best_tree = measured.then(|| self.best_tree_description());
        }
        Ok(m)
    }

    /// One comparison of the candidate (the run's worktree) with the best (its second
    /// worktree, or in deterministic mode the stored value, re-measured before a keep).
    fn compare_now(&self, mode: &Mode, fewer_lines: bool, cancel: &Cancel) -> Result<Measured> {
        let cfg = self.decision_config();
        let wt = self.rec.worktree.clone();
        let best_path = self.h.paths.best_tree();
        let ready = || {
            self.ensure_best_tree(cancel)?;
            Ok(best_path.clone())
        };
        let reference = match mode {
            Mode::Deterministic => Reference::Stored(self.rec.best.unwrap_or(f64::NAN), &ready),
            Mode::Noisy { .. } => Reference::Tree(&best_path),
        };
        let h = self.h.clone();
        let (main, max) = (cfg.main_rounds(), cfg.max_rounds());
        self.meter(self.rec.next_experiment).compare(
            mode,
            reference,
            &wt,
            &cfg,
            fewer_lines,
            cancel,
            |round, _| {
                let of = if round <= main { main } else { max };
                h.set_detail(format!("round {round}/{of}"))
            },
        )
    }

    /// Run every guard on the candidate, up to the first failure.
    fn run_guards(&mut self, rec: &mut ExperimentRecord, cancel: &Cancel) -> Result<Guards> {
        self.h.set_step(Step::Guards);
        let wt = self.rec.worktree.clone();
        let meter = self.meter(rec.experiment);
        for g in &self.rec.spec.spec.guards {
            let (ok, r) = meter.guard(g, &wt, cancel)?;
            let exit = r.outcome.exit.clone();
            rec.guards.push(r);
            if exit == Exit::Cancelled {
                return Ok(Guards::Interrupted);
            }
            if !ok {
                let why = format!("guard {:?} failed ({})", g.name, exit.describe());
                return Ok(Guards::Fail(why));
            }
        }
        Ok(Guards::Pass)
    }

    /// Keep or discard by the evaluation.
    fn decide(
        &mut self,
        mut rec: ExperimentRecord,
        value: f64,
        evaluation: Evaluation,
        best: Oid,
    ) -> Result<()> {
        self.h.set_step(Step::Deciding);
        let status = if evaluation.verdict == Verdict::Keep {
            Status::Keep
        } else {
            Status::Discard
        };
        let reason = evaluation.reason.clone();
        if evaluation.simplification
            && status == Status::Keep
            && !rec.description.contains("simplif")
        {
            rec.description = format!("{} (simplification)", rec.description);
        }
        rec.decision = Some(evaluation);
        self.conclude(rec, status, reason, Some(value), best)
    }

    /// Reject what must not be measured: a failed proposer, a moved HEAD, no change, or
    /// paths out of scope. Fills the record's changes. `head` is where HEAD should be: the
    /// best commit, or the experiment's own commit during a quick fix.
    fn check_proposal(
        &mut self,
        rec: &mut ExperimentRecord,
        best: Oid,
        head: Oid,
        failure: Option<String>,
    ) -> Result<Option<(Status, String)>> {
        let (head_problem, folded) = self.settle_head(head)?;
        if let Some(why) = head_problem {
            self.forget_tampering();
            return Ok(Some((Status::InspectorReject, why)));
        }
        if folded > 0 {
            self.log(&format!(
                "experiment {}: folded {folded} commit(s) the proposer made",
                rec.experiment
            ));
        }
        if let Some(f) = failure {
            rec.changes = self.wt.changes_since(best).unwrap_or_default();
            return Ok(Some((Status::Crash, format!("proposer failed: {f}"))));
        }
        rec.changes = self.wt.changes_since(best)?;
        if let Some(why) = self.inspect_proposal(&mut rec.changes)? {
            return Ok(Some((Status::InspectorReject, why)));
        }
        if rec.changes.is_empty() {
            return Ok(Some((Status::Discard, "no change".into())));
        }
        let bad = self
            .scope
            .violations(rec.changes.iter().map(|c| c.path.as_str()));
        if bad.is_empty() {
            return Ok(None);
        }
        let shown: Vec<&str> = bad.iter().take(5).map(String::as_str).collect();
        let more = match bad.len() {
            0..=5 => String::new(),
            n => format!(" and {} more", n - 5),
        };
        Ok(Some((
            Status::InspectorReject,
            format!("out of scope: {}{more}", shown.join(", ")),
        )))
    }

    /// After the proposer: fold its own commits, refuse branch switches. Returns a
    /// rejection reason when HEAD was moved off the run's branch, and how many commits of
    /// the proposer were folded.
    fn settle_head(&self, expected: Oid) -> Result<(Option<String>, usize)> {
        match self.wt.head_state() {
            HeadState::Branch { name, oid } if name == self.rec.branch => {
                if oid == expected {
                    return Ok((None, 0));
                }
                // The proposer committed by itself: keep its tree, drop its commits; the
                // daemon makes the one experiment commit.
                let n = git::count_commits(&self.wt.repo, oid, expected);
                let obj = self.wt.repo.find_object(expected, None)?;
                self.wt.repo.reset(&obj, git2::ResetType::Soft, None)?;
                Ok((None, n))
            }
            HeadState::Branch { name, .. } => Ok((
                Some(format!(
                    "the proposer switched the worktree to branch {name}"
                )),
                0,
            )),
            HeadState::Detached(_) => Ok((Some("the proposer detached HEAD".into()), 0)),
            HeadState::Unborn => Ok((Some("the proposer left HEAD unborn".into()), 0)),
        }
    }

    /// The agent's prompt for experiment `experiment` (a quick fix when `fix` is given).
    fn render_prompt(&self, experiment: u32, fix: Option<&Fix>) -> String {
        let ctx = prompt::Context {
            rec: &self.rec,
            records: &self.records,
            experiment,
            last_diff: self.last_diff().unwrap_or_else(|| "(none yet)".into()),
            fix,
            elapsed_ms: self.h.live().elapsed_ms(),
        };
        prompt::render(&self.template, |n| prompt::variable(&ctx, n))
    }

    /// The diff of the latest experiment that made a commit.
    fn last_diff(&self) -> Option<String> {
        let c = self
            .records
            .iter()
            .rev()
            .filter(|r| r.status.is_row() && r.status != Status::Baseline)
            .find_map(|r| r.commit.as_deref())?;
        let oid = git::parse_oid(c).ok()?;
        let parent = self.wt.repo.find_commit(oid).ok()?.parent_id(0).ok()?;
        self.wt.diff_text(parent, oid, 8000).ok()
    }

    /// Run the proposer for experiment `experiment` (a quick fix when `fix` is given).
    fn propose(&mut self, experiment: u32, fix: Option<&Fix>, cancel: &Cancel) -> Result<Proposed> {
        let prompt = if self.proposer.can_fix() {
            self.render_prompt(experiment, fix)
        } else {
            String::new()
        };
        let out_dir = self.h.paths.experiment_output(experiment);
        std::fs::create_dir_all(&out_dir)?;
        let on_cluster = self
            .rec
            .spec
            .spec
            .executor
            .as_ref()
            .is_some_and(|e| e.proposer_on_cluster);
        let executor = self.proposer_executor(on_cluster);
        let scratch = self.proposer_scratch(experiment)?;
        let ctx = proposer::ProposeContext {
            experiment,
            worktree: &self.wt,
            records: &self.records,
            prompt,
            env: self.base_env(experiment),
            output_dir: &out_dir,
            scratch: scratch.path(),
            tag: self.tag(experiment, "proposer"),
            cancel,
            cpus: self.cpus(),
            fix_attempt: fix.map(|f| f.attempt).unwrap_or(0),
            executor: &*executor,
        };
        self.proposer.propose(&ctx)
    }
}
