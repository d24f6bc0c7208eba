//! Measuring a run's metric: one run of the command in a tree, and the paired, alternating
//! rounds of noisy mode. Shared by the loop (`runner`) and by `arctl merge`, which
//! re-measures a run's change on top of the runs merged before it with the same command,
//! extraction, limits and decision rule.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::exec::{self, Cancel, CommandSpec, Exit, Limits};
use crate::run::journal::CommandRecord;
use crate::run::record::{RunPaths, RunRecord};
use crate::run::Global;
use crate::spec::extract::extract;
use crate::spec::{Extraction, MeasureMode, MetricTimeout, Repeats, TimeMode};
use crate::stats::{self, DecisionConfig, Evaluation, Mode, Verdict};

/// Shortest metric timeout derived from the baseline, so a 5 ms baseline doesn't kill
/// normal runs of a loaded machine.
pub const MIN_METRIC_TIMEOUT: Duration = Duration::from_secs(1);
/// Metric timeout of the baseline itself when the spec gives a factor.
pub const BASELINE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Lines of failure output kept (and handed to a quick fix).
pub const FAILURE_TAIL_LINES: usize = 50;

/// One metric run's result.
pub enum Once {
    Value(f64, CommandRecord),
    /// Why, the last lines of its output, and the record.
    Failed(String, String, CommandRecord),
    Interrupted,
}

/// What a measurement of a candidate came to.
pub enum Measured {
    Value {
        value: f64,
        evaluation: Evaluation,
        records: Vec<CommandRecord>,
        /// How the current best was measured beside the candidate (the loop fills it in).
        best_tree: Option<String>,
    },
    /// The candidate's metric failed.
    Crash {
        reason: String,
        tail: String,
        records: Vec<CommandRecord>,
    },
    /// The reference (the current best, or the base `arctl merge` lands on) failed: not
    /// the candidate's fault.
    BestFailed {
        reason: String,
        tail: String,
        records: Vec<CommandRecord>,
    },
    Interrupted,
}

impl Measured {
    /// Record a measurement made before this one (the reference's).
    fn prepend(&mut self, r: CommandRecord) {
        match self {
            Measured::Value { records, .. }
            | Measured::Crash { records, .. }
            | Measured::BestFailed { records, .. } => records.insert(0, r),
            Measured::Interrupted => {}
        }
    }
}

/// What a candidate is compared with.
pub enum Reference<'p> {
    /// A value measured before (deterministic mode of the loop: the stored best).
    Value(f64),
    /// A tree measured now (noisy mode: beside the candidate, in the same rounds).
    Tree(&'p Path),
}

/// The metric timeout of a run: the spec's fixed one, or a factor of the baseline's duration.
pub fn metric_timeout(rec: &RunRecord) -> Duration {
    match rec.spec.spec.metric.timeout {
        MetricTimeout::Fixed(d) => d,
        MetricTimeout::Factor(f) => match rec.baseline_duration_ms {
            Some(ms) => Duration::from_secs_f64(ms as f64 / 1000.0 * f).max(MIN_METRIC_TIMEOUT),
            None => BASELINE_TIMEOUT,
        },
    }
}

/// The memory, CPU-time and output limits of a run's commands (core pinning is the
/// loop's).
pub fn limits(rec: &RunRecord) -> Limits {
    let l = &rec.spec.spec.limits;
    Limits {
        memory: l.memory.map(|m| m.0),
        cpu_time: l.cpu_time.map(|d| d.0),
        cpus: None,
        output: l.output.map(|b| b.0),
    }
}

/// The environment every child of a run gets (the agent interface): `experiment` is its
/// number, or "merge" for a re-measurement; `worktree` where it runs.
pub fn run_env(rec: &RunRecord, experiment: &str, worktree: &Path) -> Vec<(String, String)> {
    vec![
        ("ARCTL_RUN_ID".into(), rec.id.clone()),
        ("ARCTL_EXPERIMENT".into(), experiment.to_string()),
        ("ARCTL_WORKTREE".into(), worktree.display().to_string()),
        (
            "ARCTL_RESULTS".into(),
            rec.worktree_tsv().display().to_string(),
        ),
        ("ARCTL_GOAL".into(), rec.spec.spec.goal.clone()),
    ]
}

/// The keep/discard rule of a run, from its spec.
pub fn decision_config(rec: &RunRecord) -> DecisionConfig {
    let m = &rec.spec.spec.metric;
    let cfg = DecisionConfig::new(
        m.direction,
        m.min_effect.0,
        m.alpha,
        rec.spec.spec.policy.simplicity,
    );
    match m.repeats {
        Repeats::Fixed(n) => cfg.fixed_rounds(n as usize),
        Repeats::Auto => cfg,
    }
}

/// Everything needed to run a run's metric command somewhere.
pub struct Meter<'a> {
    pub rec: &'a RunRecord,
    pub paths: &'a RunPaths,
    pub global: &'a Global,
    /// Where the metric runs (this machine, a cluster).
    pub executor: &'a dyn exec::Executor,
    pub limits: Limits,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    /// Process tag of each command: `tag_prefix + role`.
    pub tag_prefix: String,
    /// Prefix of the captured output files in the run's `output/` folder.
    pub output_prefix: String,
    /// Where the output of "candidate" and "baseline" measurements is copied (the seed's
    /// LOG_FILE in the worktree); None: nowhere.
    pub log_file: Option<PathBuf>,
}

impl Meter<'_> {
    /// Run guard `g` in `tree` (with the run's limits, its own timeout); whether it passed,
    /// and its record. Output in the run's `output/` folder as `guard-NAME.out|err`.
    pub fn guard(
        &self,
        g: &crate::spec::GuardSpec,
        tree: &Path,
        cancel: &Cancel,
    ) -> Result<(bool, CommandRecord)> {
        let name: String = g
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let file = |ext: &str| {
            self.paths
                .output(&format!("{}guard-{name}.{ext}", self.output_prefix))
        };
        let spec = CommandSpec {
            command: g.command.clone(),
            cwd: tree.to_path_buf(),
            env: self.env.clone(),
            stdin: None,
            stdout: file("out"),
            stderr: file("err"),
            timeout: Some(g.timeout.0),
            limits: self.limits.clone(),
            tag: format!("{}guard-{name}", self.tag_prefix),
            count_instructions: false,
        };
        let outcome = self
            .executor
            .run(&spec, cancel)
            .with_context(|| format!("running guard {:?}", g.name))?;
        Ok((
            outcome.exit.success(),
            CommandRecord {
                role: format!("guard:{}", g.name),
                outcome,
                value: None,
                lock_wait_ms: None,
                tree: None,
            },
        ))
    }

    /// Run the metric once in `tree`; `role` names the tree ("baseline", "best", "candidate").
    pub fn once(&self, tree: &Path, role: &str, cancel: &Cancel) -> Result<Once> {
        let m = &self.rec.spec.spec.metric;
        let out = self
            .paths
            .output(&format!("{}{role}.out", self.output_prefix));
        let err = self
            .paths
            .output(&format!("{}{role}.err", self.output_prefix));
        let spec = CommandSpec {
            command: m.command.clone(),
            cwd: tree.to_path_buf(),
            env: self.env.clone(),
            stdin: None,
            stdout: out.clone(),
            stderr: err.clone(),
            timeout: Some(self.timeout),
            limits: self.limits.clone(),
            tag: format!("{}{role}", self.tag_prefix),
            count_instructions: m.time == Some(TimeMode::Instructions),
        };
        // The daemon-wide lock keeps this machine quiet; a cluster job has its own node.
        let exclusive =
            self.executor.is_local() && self.rec.spec.spec.limits.measure == MeasureMode::Exclusive;
        let wait = Instant::now();
        let guard = if exclusive {
            Some(
                self.global
                    .measure_lock
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            )
        } else {
            None
        };
        let lock_wait_ms = exclusive.then(|| wait.elapsed().as_millis() as u64);
        if cancel.is_cancelled() {
            return Ok(Once::Interrupted);
        }
        let t0 = Instant::now();
        let outcome = self
            .executor
            .run(&spec, cancel)
            .with_context(|| format!("running the metric `{}`", m.command))?;
        let wall = t0.elapsed();
        drop(guard);
        let stdout = String::from_utf8_lossy(&std::fs::read(&out).unwrap_or_default()).to_string();
        let stderr = String::from_utf8_lossy(&std::fs::read(&err).unwrap_or_default()).to_string();
        if role == "candidate" || role == "baseline" {
            if let Some(log) = &self.log_file {
                // The seed's LOG_FILE: the metric's last output, in the worktree.
                let _ = std::fs::write(log, format!("{stdout}{stderr}"));
            }
        }
        let mut rec = CommandRecord {
            role: "metric".into(),
            outcome: outcome.clone(),
            value: None,
            lock_wait_ms,
            tree: Some(role.to_string()),
        };
        let tail = || {
            let all = format!("{stdout}{stderr}");
            let lines: Vec<&str> = all.lines().collect();
            lines[lines.len().saturating_sub(FAILURE_TAIL_LINES)..].join("\n")
        };
        if outcome.exit == Exit::Cancelled {
            return Ok(Once::Interrupted);
        }
        if !outcome.exit.success() {
            let why = match &outcome.exit {
                Exit::TimedOut => {
                    format!("metric timed out after {:.1}s", self.timeout.as_secs_f64())
                }
                Exit::MemoryLimit => format!(
                    "metric exceeded the memory limit ({})",
                    self.rec
                        .spec
                        .spec
                        .limits
                        .memory
                        .map(|m| crate::spec::format_size(m.0))
                        .unwrap_or_default()
                ),
                Exit::CpuLimit => format!(
                    "metric exceeded the cpu_time limit ({})",
                    self.rec
                        .spec
                        .spec
                        .limits
                        .cpu_time
                        .map(|d| crate::spec::format_duration(d.0))
                        .unwrap_or_default()
                ),
                other => format!("metric failed: {}", other.describe()),
            };
            return Ok(Once::Failed(why, tail(), rec));
        }
        let value = match m.extraction() {
            // A cluster job's queue wait is not part of its time.
            Extraction::Time(TimeMode::Wall) if outcome.queue_ms.is_some() => {
                Ok(outcome.wall_ms as f64 / 1000.0)
            }
            Extraction::Time(TimeMode::Wall) => Ok(wall.as_secs_f64()),
            Extraction::Time(TimeMode::Cpu) => Ok(outcome.cpu_ms as f64 / 1000.0),
            Extraction::Time(TimeMode::Instructions) => outcome
                .instructions
                .map(|i| i as f64)
                .ok_or_else(|| "no instruction count".to_string()),
            how => extract(&how, &stdout, &stderr),
        };
        match value {
            Ok(v) => {
                rec.value = Some(v);
                Ok(Once::Value(v, rec))
            }
            Err(why) => Ok(Once::Failed(
                format!("metric printed no number: {why}"),
                tail(),
                rec,
            )),
        }
    }

    /// Measure `candidate` against `best` by the run's mode: one strict comparison
    /// (deterministic; a reference tree is measured once first), or paired rounds (noisy;
    /// `progress` sees each round's evaluation).
    #[allow(clippy::too_many_arguments)]
    pub fn compare(
        &self,
        mode: &Mode,
        best: Reference,
        candidate: &Path,
        cfg: &DecisionConfig,
        fewer_lines: bool,
        cancel: &Cancel,
        progress: impl FnMut(usize, &Evaluation),
    ) -> Result<Measured> {
        match (mode, best) {
            (Mode::Deterministic, Reference::Value(v)) => {
                self.deterministic(v, candidate, cfg, fewer_lines, cancel)
            }
            (Mode::Deterministic, Reference::Tree(tree)) => {
                match self.once(tree, "best", cancel)? {
                    Once::Value(v, r) => {
                        let mut m = self.deterministic(v, candidate, cfg, fewer_lines, cancel)?;
                        m.prepend(r);
                        Ok(m)
                    }
                    Once::Failed(reason, tail, r) => Ok(Measured::BestFailed {
                        reason,
                        tail,
                        records: vec![r],
                    }),
                    Once::Interrupted => Ok(Measured::Interrupted),
                }
            }
            (Mode::Noisy { .. }, Reference::Tree(tree)) => {
                self.paired(tree, candidate, cfg, fewer_lines, cancel, progress)
            }
            (Mode::Noisy { .. }, Reference::Value(_)) => {
                anyhow::bail!(
                    "noisy mode measures the best beside the candidate, not a stored value"
                )
            }
        }
    }

    /// Deterministic mode: one run of the candidate, strictly compared with `best_value`.
    pub fn deterministic(
        &self,
        best_value: f64,
        tree: &Path,
        cfg: &DecisionConfig,
        fewer_lines: bool,
        cancel: &Cancel,
    ) -> Result<Measured> {
        Ok(match self.once(tree, "candidate", cancel)? {
            Once::Value(v, r) => Measured::Value {
                value: v,
                evaluation: stats::evaluate_deterministic(best_value, v, cfg, fewer_lines),
                records: vec![r],
                best_tree: None,
            },
            Once::Failed(reason, tail, r) => Measured::Crash {
                reason,
                tail,
                records: vec![r],
            },
            Once::Interrupted => Measured::Interrupted,
        })
    }

    /// Noisy mode: measure the best (in `best`) and the candidate (in `candidate`) in the same
    /// rounds, alternating the order (AB, BA, ...) so drift hits both alike, until
    /// [`stats::evaluate_noisy`] decides. `progress` sees each round's evaluation.
    pub fn paired(
        &self,
        best: &Path,
        candidate: &Path,
        cfg: &DecisionConfig,
        fewer_lines: bool,
        cancel: &Cancel,
        mut progress: impl FnMut(usize, &Evaluation),
    ) -> Result<Measured> {
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        let mut records = Vec::new();
        for round in 1..=cfg.max_rounds() {
            // Both trees of a round run together (on a cluster: one allocation, one node).
            let _round = exec::Group::new(self.executor, 2);
            let order: [(&Path, &str); 2] = if round % 2 == 1 {
                [(best, "best"), (candidate, "candidate")]
            } else {
                [(candidate, "candidate"), (best, "best")]
            };
            let mut pair = (f64::NAN, f64::NAN);
            for (tree, role) in order {
                match self.once(tree, role, cancel)? {
                    Once::Value(v, r) => {
                        records.push(r);
                        if role == "best" {
                            pair.0 = v
                        } else {
                            pair.1 = v
                        }
                    }
                    Once::Failed(reason, tail, r) => {
                        records.push(r);
                        return Ok(if role == "best" {
                            Measured::BestFailed {
                                reason,
                                tail,
                                records,
                            }
                        } else {
                            Measured::Crash {
                                reason,
                                tail,
                                records,
                            }
                        });
                    }
                    Once::Interrupted => return Ok(Measured::Interrupted),
                }
            }
            pairs.push(pair);
            let ev = stats::evaluate_noisy(&pairs, cfg, fewer_lines);
            progress(round, &ev);
            if ev.verdict != Verdict::Continue {
                return Ok(Measured::Value {
                    value: ev.candidate_estimate,
                    evaluation: ev,
                    records,
                    best_tree: None,
                });
            }
        }
        unreachable!("evaluate_noisy decides at the last round")
    }
}
