//! The baseline (experiment 0): the executor's check that the run's folders are visible
//! where commands run, the noise probe that decides the run's mode, the metric timeout's
//! reference duration, and the guards on the base commit.

use anyhow::{anyhow, Result};

use crate::exec::{Cancel, Exit, VisibilityCheck};
use crate::protocol::format::format_metric;
use crate::run::journal::{CommandRecord, ExperimentRecord, Status};
use crate::run::measure::Once;
use crate::run::record::Inflight;
use crate::run::runner::Runner;
use crate::run::state::{Event, Step};
use crate::stats::{self, Mode};
use crate::store;

impl Runner {
    /// Measure the base commit and record experiment 0; returns with no baseline when
    /// interrupted (the run resumes at the baseline).
    pub(super) fn baseline(&mut self) -> Result<()> {
        self.h.set_step(Step::Baseline);
        self.update(|r| r.inflight = Some(Inflight { experiment: 0 }))?;
        self.log(&format!(
            "baseline: measuring {} on {} ({})",
            self.rec.spec.spec.metric.command,
            &self.rec.base_commit[..7],
            self.rec.base
        ));
        let started = store::now_ms();
        let cancel = self.h.new_cancel();
        if self.interrupted() || !self.check_visible(&cancel)? {
            return Ok(());
        }
        if !self.rec.prepared && crate::run::prepare::wanted(&self.rec) {
            self.h.set_step(Step::Setup);
            if !self.prepare_tree(&self.rec.worktree.clone(), "worktree", &cancel)? {
                return Ok(());
            }
            self.update(|r| r.prepared = true)?;
            self.h.set_step(Step::Baseline);
        }
        let Some((values, recs)) = self.probe(&cancel)? else {
            return Ok(());
        };
        let mode = stats::probe_mode(&values);
        let value = stats::median(&values);
        let duration = recs.iter().map(|r| r.outcome.wall_ms).max().unwrap_or(0);
        let Some(guards) = self.base_guards(&cancel)? else {
            return Ok(());
        };
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
        self.h.set_step(Step::Logging);
        self.append(&record)?;
        self.update(|r| {
            r.baseline = Some(value);
            r.best = Some(value);
            r.baseline_duration_ms = Some(duration);
            r.mode = Some(mode.clone());
            r.noise = crate::protocol::NoiseState {
                baseline_cv: match &mode {
                    Mode::Noisy { cv } => Some(*cv),
                    Mode::Deterministic => None,
                },
                ..Default::default()
            };
            r.next_experiment = 1;
            r.inflight = None;
            r.last_status = Some("baseline".into());
            r.apply(Event::BaselineDone);
        })?;
        self.h.live().best_history.push(value);
        self.log(&format!(
            "baseline: {} = {} ({mode_desc}); metric timeout {}",
            self.rec.spec.spec.metric.command,
            format_metric(Some(value)),
            self.timeout_rule().describe()
        ));
        Ok(())
    }

    /// Where commands run elsewhere (a cluster), the worktree and state folder must be
    /// visible there. Ok(false): interrupted.
    fn check_visible(&self, cancel: &Cancel) -> Result<bool> {
        let paths = &self.h.paths;
        self.executor.check_visible(
            &[self.rec.worktree.clone(), paths.dir.clone()],
            &VisibilityCheck {
                cwd: self.rec.worktree.clone(),
                stdout: paths.output("check.out"),
                stderr: paths.output("check.err"),
                tag: self.tag(0, "check"),
            },
            cancel,
        )
    }

    /// The noise probe: the metric run [`stats::probe_runs`] times on the base (never fewer:
    /// three equal values of a two-level metric are a coin toss, see [`stats::probe_mode`]).
    /// None: interrupted.
    pub(super) fn probe(&self, cancel: &Cancel) -> Result<Option<(Vec<f64>, Vec<CommandRecord>)>> {
        let runs = stats::probe_runs();
        let wt = self.rec.worktree.clone();
        let meter = self.meter(0);
        let mut values = Vec::new();
        let mut recs = Vec::new();
        for i in 0..runs {
            self.h.set_detail(format!("noise probe {}/{runs}", i + 1));
            match meter.once(&wt, "baseline", cancel)? {
                Once::Value(v, r) => {
                    values.push(v);
                    recs.push(r);
                }
                Once::Failed(why, tail, _) => {
                    return Err(anyhow!(
                        "the baseline measurement failed on the base commit: {why}\n{tail}{}",
                        self.missing_hint()
                    ));
                }
                Once::Interrupted => return Ok(None),
            }
        }
        Ok(Some((values, recs)))
    }

    /// When the main checkout has untracked or ignored files the worktree lacks (and setup
    /// does not copy), a hint naming them: the usual cause of a baseline that fails here but
    /// works in the main checkout.
    fn missing_hint(&self) -> String {
        if !self.rec.spec.spec.setup.copy.is_empty() {
            return String::new();
        }
        let spec_file = self.rec.spec.spec_file.strip_prefix(&self.rec.repo).ok();
        let missing: Vec<String> =
            crate::run::prepare::missing_from(&self.rec.repo, &self.rec.worktree)
                .into_iter()
                .filter(|p| Some(std::path::Path::new(p)) != spec_file)
                .collect();
        if missing.is_empty() {
            return String::new();
        }
        let shown = &missing[..missing.len().min(6)];
        let more = match missing.len() {
            n if n > 6 => format!(" and {} more", n - 6),
            _ => String::new(),
        };
        // A folder is copied with everything in it.
        let globs: Vec<String> = shown
            .iter()
            .map(|p| match p.strip_suffix('/') {
                Some(dir) => format!("{:?}", format!("{dir}/**")),
                None => format!("{p:?}"),
            })
            .collect();
        format!(
            "\nhint: the main checkout {} has untracked or ignored files the run's worktree lacks: {}{more}. If the metric needs them, copy them with `[setup] copy = [{}]` in the spec (or make them with `[setup] command`)",
            self.rec.repo.display(),
            shown.join(", "),
            globs.join(", ")
        )
    }

    /// Every guard must pass on the base commit, or the spec (or the base) needs fixing.
    /// None: interrupted.
    fn base_guards(&self, cancel: &Cancel) -> Result<Option<Vec<CommandRecord>>> {
        let wt = self.rec.worktree.clone();
        let meter = self.meter(0);
        let mut guards = Vec::new();
        for g in &self.rec.spec.spec.guards {
            match meter.guard(g, &wt, cancel)? {
                (_, r) if r.outcome.exit == Exit::Cancelled || self.interrupted() => {
                    return Ok(None)
                }
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
        Ok(Some(guards))
    }
}
