//! The loop of one run, on its own thread:
//! `baseline → (propose → scope check → commit → measure → guards → decide → log)*`.
//! Every step is persisted in `run.json` before it is taken; every experiment ends with one
//! journal line, one TSV row, and the branch at the last kept commit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use git2::Oid;

use crate::exec::{self, Cancel, Exit, Limits};
use crate::git::{self, scope::Scope, HeadState, WorkTree};
use crate::run::journal::{self, ExperimentRecord, Status};
use crate::run::measure::{self, Measured, Meter, Once};
use crate::run::proposer::{self, Proposal, Proposed, Proposer};
use crate::run::record::{Inflight, RunRecord, RunState, Step};
use crate::run::{prompt, Global, RunHandle};
use crate::spec::{Extraction, Repeats};
use crate::stats::{self, DecisionConfig, Mode, Verdict};
use crate::store;

/// Quick-fix calls an agent gets for a crashed metric.
const MAX_FIX_ATTEMPTS: u32 = 2;

pub fn spawn(h: Arc<RunHandle>, g: Arc<Global>) {
    let h2 = h.clone();
    let thread = std::thread::Builder::new()
        .name(format!("run-{}", h.id))
        .spawn(move || {
            let span = tracing::info_span!("run", id = %h2.id);
            let _enter = span.enter();
            thread_main(h2, g);
        })
        .expect("spawning a run thread");
    *h.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
}

fn thread_main(h: Arc<RunHandle>, g: Arc<Global>) {
    h.live().session_started = Some(Instant::now());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Runner::new(h.clone(), g.clone()).and_then(|mut r| {
            let res = r.run();
            r.close();
            res
        })
    }))
    .unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(anyhow!("internal error (panic): {what}"))
    });
    if let Err(e) = result {
        let msg = format!("{e:#}");
        tracing::error!(error = %msg, "run failed");
        run_log(&h, &format!("FAILED: {msg}"));
        let mut l = h.live();
        l.record.state = RunState::Failed;
        l.record.error = Some(msg);
    }
    let mut l = h.live();
    if let Some(s) = l.session_started.take() {
        l.record.active_ms += s.elapsed().as_millis() as u64;
    }
    l.step = Step::Idle;
    let rec = l.record.clone();
    drop(l);
    if !rec.state.is_active() {
        g.release_cores(&rec.id);
    }
    if let Err(e) = store::save_json(&h.paths.record(), &rec) {
        tracing::error!(error = %format!("{e:#}"), "saving run state");
    }
    h.cond.notify_all();
    // Detach this thread (drop its handle): a joinable thread's stack stays mapped until it
    // is joined, and nothing joins a run that ended by itself (shutdown joins running ones).
    drop(h.thread.lock().unwrap_or_else(|e| e.into_inner()).take());
    // Hand what the run's thread freed (its repository, caches, buffers) back to the system:
    // glibc keeps freed memory in per-thread arenas otherwise, and an overnight daemon that
    // ran 100 runs held ~38 MiB of it.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Append a timestamped line to the run's log (state dir).
pub fn run_log(h: &RunHandle, msg: &str) {
    let line = format!(
        "{} {msg}\n",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(h.paths.log())
    {
        let _ = f.write_all(line.as_bytes());
    }
}

struct Runner {
    h: Arc<RunHandle>,
    g: Arc<Global>,
    wt: WorkTree,
    records: Vec<ExperimentRecord>,
    proposer: Box<dyn Proposer>,
    scope: Scope,
    template: String,
    best_tree: Option<WorkTree>,
    rec: RunRecord,
    /// Where the metric and guards run.
    executor: Arc<dyn exec::Executor>,
}

impl Runner {
    fn new(h: Arc<RunHandle>, g: Arc<Global>) -> Result<Runner> {
        let rec = h.live().record.clone();
        let wt = WorkTree::open(&rec.worktree)?;
        let (records, _) = store::read_json_lines::<ExperimentRecord>(&h.paths.journal())?;
        let proposer = proposer::build(&rec.spec, &records)?;
        let template = proposer::template(&rec.spec)?;
        let executor = g.executor(&rec);
        Ok(Runner {
            scope: Scope::new(&rec.spec.spec.scope),
            h,
            g,
            wt,
            records,
            proposer,
            template,
            best_tree: None,
            executor,
            rec,
        })
    }

    fn log(&self, msg: &str) {
        tracing::info!("{msg}");
        run_log(&self.h, msg);
    }

    /// Change the record, publish it to the daemon and persist it.
    fn update(&mut self, f: impl FnOnce(&mut RunRecord)) -> Result<()> {
        f(&mut self.rec);
        if !self.rec.state.is_active() {
            // Ended: its cores are free for the next run at once.
            self.g.release_cores(&self.rec.id);
        }
        self.h.live().record = self.rec.clone();
        store::save_json(&self.h.paths.record(), &self.rec)
    }

    fn set_step(&mut self, step: Step, experiment: u32, commit: Option<String>) -> Result<()> {
        {
            let mut l = self.h.live();
            l.step = step;
            l.step_started = Instant::now();
            l.step_detail.clear();
        }
        let started = self
            .rec
            .inflight
            .as_ref()
            .filter(|i| i.experiment == experiment)
            .map(|i| i.started_at_ms);
        self.update(|r| {
            r.inflight = Some(Inflight {
                experiment,
                step,
                started_at_ms: started.unwrap_or_else(store::now_ms),
                commit,
            })
        })
    }

    fn control(&self) -> super::Control {
        self.h.live().control.clone()
    }

    fn interrupted(&self) -> bool {
        let c = self.control();
        c.stop_now || c.shutdown
    }

    fn close(&mut self) {
        if !self.rec.state.is_active() {
            self.drop_best_tree();
        }
    }

    fn run(&mut self) -> Result<()> {
        if self.rec.baseline.is_none() {
            self.baseline()?;
            if self.rec.baseline.is_none() {
                return Ok(()); // interrupted: resumes at the baseline
            }
        }
        loop {
            let c = self.control();
            if c.shutdown {
                return Ok(());
            }
            if c.stop || c.stop_now {
                self.update(|r| {
                    r.state = RunState::Stopped;
                    r.stop_reason = Some("stopped by the user".into());
                })?;
                self.log("stopped by the user");
                return Ok(());
            }
            if c.pause {
                self.update(|r| r.state = RunState::Paused)?;
                self.log("paused");
                self.wait_while_paused();
                continue;
            }
            if self.rec.state != RunState::Running {
                self.update(|r| r.state = RunState::Running)?;
            }
            if let Some(why) = self.budget_spent() {
                self.finish(&why)?;
                return Ok(());
            }
            self.experiment()?;
            if self.rec.state == RunState::Finished {
                // The proposer ran out of ideas (`finish` inside the experiment).
                return Ok(());
            }
        }
    }

    fn wait_while_paused(&self) {
        let mut l = self.h.live();
        l.step = Step::Idle;
        while l.control.pause && !l.control.stop && !l.control.stop_now && !l.control.shutdown {
            l = self
                .h
                .cond
                .wait_timeout(l, super::SAFETY_WAKE) // woken by `RunHandle::control`
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn budget_spent(&self) -> Option<String> {
        let b = &self.rec.spec.spec.budget;
        if let Some(max) = b.max_experiments {
            if self.rec.next_experiment > max {
                return Some(format!("budget reached: {max} experiments"));
            }
        }
        if let Some(w) = b.max_wall {
            let l = self.h.live();
            let ms = l.record.active_ms
                + l.session_started
                    .map(|s| s.elapsed().as_millis() as u64)
                    .unwrap_or(0);
            if ms >= w.0.as_millis() as u64 {
                return Some(format!(
                    "budget reached: max_wall {}",
                    crate::spec::format_duration(w.0)
                ));
            }
        }
        None
    }

    fn finish(&mut self, why: &str) -> Result<()> {
        self.update(|r| {
            r.state = RunState::Finished;
            r.stop_reason = Some(why.to_string());
            r.inflight = None;
        })?;
        self.log(&format!("finished: {why}"));
        Ok(())
    }

    fn best_oid(&self) -> Result<Oid> {
        git::parse_oid(&self.rec.best_commit)
    }

    fn decision_config(&self) -> DecisionConfig {
        measure::decision_config(&self.rec)
    }

    fn metric_timeout(&self) -> Duration {
        measure::metric_timeout(&self.rec)
    }

    fn limits(&self) -> Limits {
        let l = &self.rec.spec.spec.limits;
        Limits {
            memory: l.memory.map(|m| m.0),
            cpu_time: l.cpu_time.map(|d| d.0),
            cpus: self.cpus(),
        }
    }

    /// The cores reserved for this run (`limits.cpus`); its children are pinned to them.
    fn cpus(&self) -> Option<Vec<usize>> {
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

    fn tag(&self, experiment: u32, role: &str) -> String {
        format!("{}{experiment}/{role}", self.g.run_tag(&self.rec.id))
    }

    fn base_env(&self, experiment: u32) -> Vec<(String, String)> {
        vec![
            ("ARCTL_RUN_ID".into(), self.rec.id.clone()),
            ("ARCTL_EXPERIMENT".into(), experiment.to_string()),
            (
                "ARCTL_WORKTREE".into(),
                self.rec.worktree.display().to_string(),
            ),
            (
                "ARCTL_RESULTS".into(),
                self.rec
                    .worktree
                    .join(self.rec.spec.tsv_name())
                    .display()
                    .to_string(),
            ),
            ("ARCTL_GOAL".into(), self.rec.spec.spec.goal.clone()),
        ]
    }

    // -----------------------------------------------------------------------------------
    // Measuring

    /// How this run measures: its metric command, limits, timeout and process tags (the
    /// measuring itself is shared with `arctl merge`, see [`measure`]).
    fn meter(&self, experiment: u32) -> Meter<'_> {
        Meter {
            rec: &self.rec,
            paths: &self.h.paths,
            global: &self.g,
            executor: &*self.executor,
            limits: self.limits(),
            timeout: self.metric_timeout(),
            env: self.base_env(experiment),
            tag_prefix: self.tag(experiment, ""),
            output_prefix: String::new(),
            log_file: Some(self.rec.worktree.join(self.rec.spec.log_name())),
        }
    }

    /// Run the metric once in `tree`.
    fn measure_once(
        &self,
        tree: &Path,
        experiment: u32,
        role: &str,
        cancel: &Cancel,
    ) -> Result<Once> {
        self.meter(experiment).once(tree, role, cancel)
    }

    /// The baseline: noise probe, mode, duration, guards on the base.
    fn baseline(&mut self) -> Result<()> {
        self.set_step(Step::Baseline, 0, Some(self.rec.base_commit.clone()))?;
        self.log(&format!(
            "baseline: measuring {} on {} ({})",
            self.rec.spec.spec.metric.command,
            &self.rec.base_commit[..7],
            self.rec.base
        ));
        let started = store::now_ms();
        let runs = match self.rec.spec.spec.metric.repeats {
            Repeats::Auto => stats::probe_runs(),
            Repeats::Fixed(n) => (n as usize).clamp(2, stats::probe_runs().max(2)),
        };
        let cancel = self.h.new_cancel();
        if self.interrupted() {
            return Ok(());
        }
        if !self.executor.is_local()
            && !super::cluster::check_visible(
                &*self.executor,
                &self.rec,
                &self.h.paths,
                self.tag(0, "check"),
                &cancel,
            )?
        {
            return Ok(());
        }
        let wt = self.rec.worktree.clone();
        let mut values = Vec::new();
        let mut recs = Vec::new();
        for i in 0..runs {
            self.h.set_detail(format!("noise probe {}/{runs}", i + 1));
            match self.measure_once(&wt, 0, "baseline", &cancel)? {
                Once::Value(v, r) => {
                    values.push(v);
                    recs.push(r);
                }
                Once::Failed(why, tail, _) => {
                    return Err(anyhow!(
                        "the baseline measurement failed on the base commit: {why}\n{tail}"
                    ));
                }
                Once::Interrupted => return Ok(()),
            }
            // Deterministic metrics stop probing early: three equal values settle it.
            if i >= 2
                && values.iter().all(|v| *v == values[0])
                && self.rec.spec.spec.metric.repeats == Repeats::Auto
            {
                break;
            }
        }
        let mode = stats::probe_mode(&values);
        let value = stats::median(&values);
        let duration = recs.iter().map(|r| r.outcome.wall_ms).max().unwrap_or(0);
        let mut guards = Vec::new();
        for g in self.rec.spec.spec.guards.clone() {
            match self.meter(0).guard(&g, &wt, &cancel)? {
                (true, r) => guards.push(r),
                (false, r) => {
                    return Err(anyhow!(
                        "guard {:?} fails on the base commit ({}): fix it or the spec first",
                        g.name,
                        r.outcome.exit.describe()
                    ))
                }
            }
        }
        if self.interrupted() {
            return Ok(());
        }
        let mode_desc = match &mode {
            Mode::Deterministic => "deterministic".to_string(),
            Mode::Noisy { cv } => format!("noisy, cv {:.2}%", cv * 100.0),
        };
        let mut record = ExperimentRecord {
            commit: Some(self.rec.base_commit.clone()),
            metric: Some(value),
            description: "baseline".into(),
            reason: format!("{} runs: {:?} ({mode_desc})", values.len(), values),
            ended_at_ms: store::now_ms(),
            measurements: recs,
            guards,
            ..ExperimentRecord::new(0, Status::Baseline, started)
        };
        record.tally_resources();
        self.set_step(Step::Logging, 0, None)?;
        self.append(&record)?;
        self.update(|r| {
            r.baseline = Some(value);
            r.best = Some(value);
            r.baseline_duration_ms = Some(duration);
            r.mode = Some(mode.clone());
            r.next_experiment = 1;
            r.inflight = None;
            r.last_status = Some("baseline".into());
            r.state = RunState::Running;
        })?;
        self.h.live().best_history.push(value);
        self.log(&format!(
            "baseline: {} = {} ({mode_desc}); metric timeout {:.1}s",
            self.rec.spec.spec.metric.command,
            journal::format_metric(Some(value)),
            self.metric_timeout().as_secs_f64()
        ));
        Ok(())
    }

    fn ensure_best_tree(&mut self) -> Result<String> {
        let best = self.best_oid()?;
        let path = self.h.paths.best_tree();
        if self.best_tree.is_none() {
            let (repo, _) = git::open_repo(&self.rec.repo)?;
            git::create_detached_worktree(
                &repo,
                &format!("arctl-best-{}", self.rec.id),
                &path,
                best,
            )?;
            self.best_tree = Some(WorkTree::open(&path)?);
        }
        let bt = self.best_tree.as_ref().expect("just created");
        if !matches!(bt.head_state(), HeadState::Detached(o) if o == best) || !bt.is_clean()? {
            bt.checkout_detached(best)?;
        }
        Ok(format!(
            "second worktree {} detached at {}",
            path.display(),
            git::short(best)
        ))
    }

    fn drop_best_tree(&mut self) {
        self.best_tree = None;
        let path = self.h.paths.best_tree();
        if let Ok((repo, _)) = git::open_repo(&self.rec.repo) {
            let _ = git::remove_worktree(&repo, &format!("arctl-best-{}", self.rec.id), &path);
        }
    }

    fn measure_candidate(
        &mut self,
        experiment: u32,
        fewer_lines: bool,
        cancel: &Cancel,
    ) -> Result<Measured> {
        let cfg = self.decision_config();
        let wt = self.rec.worktree.clone();
        let best_value = self.rec.best.unwrap_or(f64::NAN);
        match self.rec.mode.clone().unwrap_or(Mode::Deterministic) {
            Mode::Deterministic => {
                self.meter(experiment)
                    .deterministic(best_value, &wt, &cfg, fewer_lines, cancel)
            }
            Mode::Noisy { .. } => {
                let how = self.ensure_best_tree()?;
                let best_path = self.h.paths.best_tree();
                let mut m = self.meter(experiment).paired(
                    &best_path,
                    &wt,
                    &cfg,
                    fewer_lines,
                    cancel,
                    |round, _| {
                        self.h
                            .set_detail(format!("round {round}/{}", cfg.max_rounds()))
                    },
                )?;
                if let Measured::Value { best_tree, .. } = &mut m {
                    *best_tree = Some(how);
                }
                Ok(m)
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // One experiment

    fn render_prompt(&self, experiment: u32, failure: Option<&str>) -> String {
        let s = &self.rec.spec.spec;
        let m = &s.metric;
        let extraction = match m.extraction() {
            Extraction::Regex(r) => format!("number read with regex `{}`", r.as_str()),
            Extraction::Json(p) => format!("number read from stdout JSON at `{p}`"),
            Extraction::Line(n) => format!("number read from output line {n}"),
            Extraction::LastNumber => "the last number printed".into(),
            Extraction::Time(t) => format!("arctl times the command ({t:?} time)").to_lowercase(),
        };
        let last_diff = self
            .records
            .iter()
            .rev()
            .find_map(|r| {
                r.commit
                    .as_deref()
                    .filter(|_| r.status != Status::Baseline)
                    .map(|c| (c.to_string(), r))
            })
            .and_then(|(c, _)| {
                let oid = git::parse_oid(&c).ok()?;
                let parent = self.wt.repo.find_commit(oid).ok()?.parent_id(0).ok()?;
                self.wt.diff_text(parent, oid, 8000).ok()
            })
            .unwrap_or_else(|| "(none yet)".into());
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.join(", ")
            }
        };
        let constraints = if s.policy.constraints.is_empty() {
            "- (none beyond the guards)".to_string()
        } else {
            s.policy
                .constraints
                .iter()
                .map(|c| format!("- {c}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let failure = failure
            .map(|f| format!("\n## QUICK FIX (attempt {})\nThe last change made the metric fail. Fix the error with a minimal edit (typo, import, simple error); do not start a new idea.\nLast lines of the failure:\n```\n{f}\n```\n", self.rec.inflight.as_ref().map(|_| "").unwrap_or("")))
            .unwrap_or_default();
        let vars = [
            ("run_id", self.rec.id.clone()),
            ("experiment", experiment.to_string()),
            (
                "goal",
                if s.goal.is_empty() {
                    "(not stated: improve the metric)".into()
                } else {
                    s.goal.clone()
                },
            ),
            ("metric_command", m.command.clone()),
            ("extraction", extraction),
            ("direction", format!("{:?}", m.direction).to_lowercase()),
            ("min_effect", format!("{}%", m.min_effect.0 * 100.0)),
            ("baseline", journal::format_metric(self.rec.baseline)),
            ("best", journal::format_metric(self.rec.best)),
            (
                "scope_include",
                list(s.scope.include.iter().map(|g| g.0.clone()).collect()),
            ),
            (
                "scope_exclude",
                list(s.scope.exclude.iter().map(|g| g.0.clone()).collect()),
            ),
            ("constraints", constraints),
            (
                "guards",
                list(
                    s.guards
                        .iter()
                        .map(|g| format!("{} (`{}`)", g.name, g.command))
                        .collect(),
                ),
            ),
            (
                "web_search",
                format!("{:?}", s.policy.web_search).to_lowercase(),
            ),
            (
                "simplicity",
                if s.policy.simplicity {
                    "simpler beats marginally faster; removing code while holding the metric is a win".into()
                } else {
                    "off: only the metric counts".into()
                },
            ),
            ("results_file", self.rec.spec.tsv_name()),
            ("results", journal::render_tsv(&self.records)),
            ("last_diff", last_diff),
            ("hints", prompt::hints(&self.records)),
            ("failure", failure),
        ];
        prompt::render(&self.template, &vars)
    }

    fn propose(
        &mut self,
        experiment: u32,
        fix: Option<(u32, &str)>,
        cancel: &Cancel,
    ) -> Result<Proposed> {
        let prompt = if self.proposer.can_fix() {
            self.render_prompt(experiment, fix.map(|f| f.1))
        } else {
            String::new()
        };
        let out_dir = self.h.paths.dir.join("output");
        std::fs::create_dir_all(&out_dir)?;
        let ctx = proposer::ProposeContext {
            experiment,
            worktree: &self.wt,
            records: &self.records,
            prompt,
            env: self.base_env(experiment),
            output_dir: &out_dir,
            tag: self.tag(experiment, "proposer"),
            cancel,
            cpus: self.cpus(),
            fix_attempt: fix.map(|f| f.0).unwrap_or(0),
            executor: if self
                .rec
                .spec
                .spec
                .executor
                .as_ref()
                .is_some_and(|e| e.proposer_on_cluster)
            {
                &*self.executor
            } else {
                &exec::Local
            },
        };
        self.proposer.propose(&ctx)
    }

    /// After the proposer: fold its own commits, refuse branch switches. Returns a
    /// rejection reason when HEAD was moved off the run's branch.
    fn settle_head(&self, expected: Oid) -> Result<(Option<String>, usize)> {
        let best = expected;
        match self.wt.head_state() {
            HeadState::Branch { name, oid } if name == self.rec.branch => {
                if oid == best {
                    return Ok((None, 0));
                }
                // The proposer committed by itself: keep its tree, drop its commits; the
                // daemon makes the one experiment commit.
                let n = count_commits(&self.wt.repo, oid, best);
                let obj = self.wt.repo.find_object(best, None)?;
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

    fn experiment(&mut self) -> Result<()> {
        let n = self.rec.next_experiment;
        let (g, h) = (self.g.clone(), self.h.clone());
        let abort = || {
            let c = h.live().control.clone();
            c.stop || c.stop_now || c.shutdown || c.pause
        };
        {
            let mut l = self.h.live();
            l.step = Step::Waiting;
            l.step_started = Instant::now();
            l.step_detail.clear();
        }
        let Some(_slot) = g.slots.acquire(abort) else {
            return Ok(());
        };
        let best = self.best_oid()?;
        let started_at_ms = store::now_ms();
        let cancel = self.h.new_cancel();
        if self.interrupted() {
            return Ok(());
        }
        self.set_step(Step::Proposing, n, None)?;
        let mut rec = ExperimentRecord::new(n, Status::Discard, started_at_ms);
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

        let verdict = self.check_proposal(&mut rec, best, best, failure)?;
        if let Some((status, reason)) = verdict {
            return self.conclude(rec, status, reason, None, best);
        }

        self.set_step(Step::Committing, n, None)?;
        let mut commit = self.wt.commit_changes(
            &rec.changes,
            &format!(
                "experiment: {}",
                journal::clean_description(&rec.description)
            ),
            best,
        )?;
        rec.commit = Some(commit.to_string());
        self.set_step(Step::Measuring, n, Some(commit.to_string()))?;

        // Measure; an agent gets quick-fix calls for a crash.
        let measured = loop {
            let stat = self.wt.diff_stat(best, commit)?;
            rec.diff = Some(stat);
            let fewer_lines = stat.deletions > stat.insertions;
            let m = self.measure_candidate(n, fewer_lines, &cancel)?;
            match m {
                Measured::Crash {
                    reason,
                    tail,
                    records,
                } if self.proposer.can_fix()
                    && rec.fix_attempts < MAX_FIX_ATTEMPTS
                    && !self.interrupted() =>
                {
                    rec.measurements.extend(records);
                    rec.fix_attempts += 1;
                    self.log(&format!(
                        "experiment {n}: {reason}; quick fix {} of {MAX_FIX_ATTEMPTS}",
                        rec.fix_attempts
                    ));
                    self.set_step(Step::Proposing, n, Some(commit.to_string()))?;
                    let fix = self.propose(
                        n,
                        Some((rec.fix_attempts, &format!("{reason}\n{tail}"))),
                        &cancel,
                    )?;
                    if self.interrupted() {
                        return self.interrupt(n, best);
                    }
                    let failure = match fix {
                        Proposed::Change(p) => p.failure,
                        Proposed::Exhausted(_) => None,
                    };
                    // The fix must obey the same rules as the proposal.
                    if let Some((status, reason)) =
                        self.check_proposal(&mut rec, best, commit, failure)?
                    {
                        return self.conclude(rec, status, reason, None, best);
                    }
                    commit = self.wt.amend_all(commit)?;
                    rec.commit = Some(commit.to_string());
                    self.set_step(Step::Measuring, n, Some(commit.to_string()))?;
                }
                other => break other,
            }
        };
        let (value, evaluation) = match measured {
            Measured::Interrupted => return self.interrupt(n, best),
            Measured::Crash {
                reason, records, ..
            } => {
                rec.measurements.extend(records);
                return self.conclude(rec, Status::Crash, reason, None, best);
            }
            Measured::Value {
                value,
                evaluation,
                records,
                best_tree,
            } => {
                rec.measurements.extend(records);
                rec.best_tree = best_tree;
                (value, evaluation)
            }
        };
        rec.metric = Some(value);

        self.set_step(Step::Guards, n, Some(commit.to_string()))?;
        let wt = self.rec.worktree.clone();
        for g in self.rec.spec.spec.guards.clone() {
            let (ok, r) = self.meter(n).guard(&g, &wt, &cancel)?;
            let exit = r.outcome.exit.clone();
            rec.guards.push(r);
            if exit == Exit::Cancelled {
                return self.interrupt(n, best);
            }
            if !ok {
                let reason = format!("guard {:?} failed ({})", g.name, exit.describe());
                rec.decision = Some(evaluation);
                return self.conclude(rec, Status::InspectorReject, reason, None, best);
            }
        }

        self.set_step(Step::Deciding, n, Some(commit.to_string()))?;
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
    /// paths out of scope. Fills the record's changes.
    /// `head` is where HEAD should be: the best commit, or the experiment's own commit
    /// during a quick fix.
    fn check_proposal(
        &mut self,
        rec: &mut ExperimentRecord,
        best: Oid,
        head: Oid,
        failure: Option<String>,
    ) -> Result<Option<(Status, String)>> {
        let (head_problem, folded) = self.settle_head(head)?;
        if let Some(why) = head_problem {
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
        if rec.changes.is_empty() {
            return Ok(Some((Status::Discard, "no change".into())));
        }
        let bad = self
            .scope
            .violations(rec.changes.iter().map(|c| c.path.as_str()));
        if !bad.is_empty() {
            let shown: Vec<&str> = bad.iter().take(5).map(String::as_str).collect();
            return Ok(Some((
                Status::InspectorReject,
                format!(
                    "out of scope: {}{}",
                    shown.join(", "),
                    if bad.len() > 5 {
                        format!(" and {} more", bad.len() - 5)
                    } else {
                        String::new()
                    }
                ),
            )));
        }
        Ok(None)
    }

    /// stop --now / shutdown in the middle of an experiment: kill (done by the cancel),
    /// revert, record nothing; the experiment's number is used again on resume.
    fn interrupt(&mut self, n: u32, best: Oid) -> Result<()> {
        self.wt.restore(&self.rec.branch, best)?;
        self.update(|r| r.inflight = None)?;
        self.log(&format!(
            "experiment {n}: interrupted; worktree reverted to {}",
            git::short(best)
        ));
        Ok(())
    }

    /// Decide the branch, write the journal line and the TSV row, update the record.
    fn conclude(
        &mut self,
        mut rec: ExperimentRecord,
        status: Status,
        reason: String,
        value: Option<f64>,
        best: Oid,
    ) -> Result<()> {
        let n = rec.experiment;
        self.set_step(Step::Logging, n, rec.commit.clone())?;
        rec.status = status;
        rec.metric = value.or(rec.metric);
        match status {
            Status::Discard if reason == "no change" => {
                rec.description = if rec.description.is_empty() {
                    "no change".into()
                } else {
                    format!("{} (no change)", rec.description)
                };
            }
            Status::Keep | Status::Baseline => {}
            _ => {
                if rec.description.is_empty() {
                    rec.description = reason.clone();
                } else if status != Status::Discard {
                    rec.description = format!("{} ({reason})", rec.description);
                }
            }
        }
        if rec.description.is_empty() {
            rec.description = format!("experiment {n}");
        }
        rec.reason = reason;
        rec.tally_resources();
        rec.ended_at_ms = store::now_ms();

        let kept = status == Status::Keep;
        if let Some(c) = rec.commit.as_deref() {
            let oid = git::parse_oid(c)?;
            if kept {
                // The branch already points at it.
            } else {
                self.wt.set_ref(
                    &format!("refs/autoresearch/{}/discarded/{n}", self.rec.id),
                    oid,
                    "arctl: discarded experiment",
                )?;
            }
        }
        if !kept {
            self.wt.restore(&self.rec.branch, best)?;
        }
        self.append(&rec)?;
        let commit = rec.commit.clone();
        self.update(|r| {
            r.next_experiment = n + 1;
            r.inflight = None;
            r.last_status = Some(status.as_str().to_string());
            match status {
                Status::Keep => {
                    r.counts.kept += 1;
                    r.best = value;
                    r.best_commit = commit.clone().unwrap_or_else(|| r.best_commit.clone());
                }
                Status::Discard => r.counts.discarded += 1,
                Status::Crash => r.counts.crashed += 1,
                Status::InspectorReject => r.counts.rejected += 1,
                Status::Baseline => {}
            }
        })?;
        {
            let mut l = self.h.live();
            let b = self.rec.best.unwrap_or(f64::NAN);
            l.best_history.push(b);
            l.last_resources = Some((rec.peak_rss, rec.cpu_ms, rec.wall_ms));
        }
        self.log(&format!(
            "experiment {n}: {} {} ({}) - {}",
            status.as_str(),
            journal::format_metric(rec.metric),
            rec.reason,
            journal::clean_description(&rec.description)
        ));
        Ok(())
    }

    /// Journal first (the truth), then the TSV copies.
    fn append(&mut self, rec: &ExperimentRecord) -> Result<()> {
        store::append_json_line(&self.h.paths.journal(), rec)?;
        self.records.push(rec.clone());
        journal::append_tsv(&self.h.paths.tsv(), rec)?;
        // The worktree's copy is within the agent's reach: rewrite it whole from the
        // journal, so a TSV the agent edited or deleted never loses a recorded row.
        let tsv = self.rec.worktree.join(self.rec.spec.tsv_name());
        store::write_atomic(&tsv, journal::render_tsv(&self.records).as_bytes())
            .with_context(|| format!("writing {}", tsv.display()))?;
        Ok(())
    }
}

fn count_commits(repo: &git2::Repository, tip: Oid, base: Oid) -> usize {
    let Ok(mut walk) = repo.revwalk() else {
        return 0;
    };
    if walk.push(tip).is_err() {
        return 0;
    }
    let _ = walk.hide(base);
    walk.count()
}

/// Bring a run back after a daemon restart: make the TSV copies agree with the journal, apply
/// a journal line the record missed, and put the worktree back at the last kept commit.
pub fn recover(h: &RunHandle, g: &Global) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let killed = exec::kill_tagged(&g.run_tag(&h.id));
    if killed > 0 {
        notes.push(format!(
            "killed {killed} process(es) left by the previous daemon"
        ));
    }
    // Jobs on a cluster: by the ids recorded and the names given.
    let executor = g.executor(&h.live().record.clone());
    match executor.recover() {
        Ok(n) => notes.extend(n),
        Err(e) => notes.push(format!(
            "could not cancel the jobs the previous daemon left on {}: {e}",
            executor.describe()
        )),
    }
    let (records, torn) = store::read_json_lines::<ExperimentRecord>(&h.paths.journal())?;
    if torn {
        notes.push("dropped a torn last journal line".into());
        let mut text = String::new();
        for r in &records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        store::write_atomic(&h.paths.journal(), text.as_bytes())?;
    }
    let mut rec = h.live().record.clone();
    // A line written but not yet reflected in run.json: apply it.
    let first_missing = rec.next_experiment;
    for r in records.iter().filter(|r| r.experiment >= first_missing) {
        rec.next_experiment = r.experiment + 1;
        rec.last_status = Some(r.status.as_str().to_string());
        match r.status {
            Status::Baseline => {
                rec.baseline = r.metric;
                rec.best = r.metric;
                rec.baseline_duration_ms = r.measurements.iter().map(|m| m.outcome.wall_ms).max();
                let values: Vec<f64> = r.measurements.iter().filter_map(|m| m.value).collect();
                rec.mode = Some(stats::probe_mode(&values));
            }
            Status::Keep => {
                rec.counts.kept += 1;
                rec.best = r.metric;
                if let Some(c) = &r.commit {
                    rec.best_commit = c.clone();
                }
            }
            Status::Discard => rec.counts.discarded += 1,
            Status::Crash => rec.counts.crashed += 1,
            Status::InspectorReject => rec.counts.rejected += 1,
        }
        notes.push(format!(
            "applied journal entry {} missing from the run state",
            r.experiment
        ));
    }
    let tsv = journal::render_tsv(&records);
    for path in [h.paths.tsv(), rec.worktree.join(rec.spec.tsv_name())] {
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != tsv && rec.worktree.exists() {
            store::write_atomic(&path, tsv.as_bytes())?;
            notes.push(format!("rewrote {} from the journal", path.display()));
        }
    }
    if rec.inflight.is_some() && rec.state.is_active() {
        notes.push(format!(
            "experiment {} was interrupted and will run again",
            rec.next_experiment
        ));
    }
    rec.inflight = None;
    if rec.state.is_active() && rec.worktree.exists() {
        let removed = git::remove_stale_locks(&rec.worktree, &rec.common_dir, &rec.id);
        if !removed.is_empty() {
            notes.push(format!("removed stale git locks: {}", removed.join(", ")));
        }
        let wt = WorkTree::open(&rec.worktree)?;
        let best = git::parse_oid(&rec.best_commit)?;
        let at_best = matches!(wt.head_state(), HeadState::Branch { ref name, oid } if *name == rec.branch && oid == best);
        if !at_best || !wt.is_clean()? {
            wt.restore(&rec.branch, best)?;
            notes.push(format!(
                "worktree reset to the last kept commit {}",
                git::short(best)
            ));
        }
    }
    rec.recovered_at_ms = Some(store::now_ms());
    store::save_json(&h.paths.record(), &rec)?;
    {
        let mut l = h.live();
        l.best_history = best_history(&records);
        l.record = rec;
    }
    Ok(notes)
}

/// Best-so-far after each experiment, from the journal.
pub fn best_history(records: &[ExperimentRecord]) -> Vec<f64> {
    let mut best = f64::NAN;
    records
        .iter()
        .map(|r| {
            if matches!(r.status, Status::Baseline | Status::Keep) {
                best = r.metric.unwrap_or(best);
            }
            best
        })
        .collect()
}

/// Used by tests and the demo to find the worktree TSV of a record.
pub fn worktree_tsv(rec: &RunRecord) -> PathBuf {
    rec.worktree.join(rec.spec.tsv_name())
}
