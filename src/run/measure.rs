//! Measuring a run's metric: one run of the command in a tree (exclusive of everything else
//! arctl runs on this machine when `measure = "exclusive"`: the other commands are frozen for
//! the run, see [`crate::exec::running`]), its timeout, its guards. The comparisons built on
//! it — the strict deterministic one, the paired alternating rounds of noisy mode — are in
//! [`super::rounds`]. Shared by the loop (`runner`) and by `arctl merge`, which re-measures a
//! run's change on top of the runs merged before it with the same command, extraction,
//! limits and decision rule.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::exec::{self, Cancel, CommandSpec, Exit, Limits};
use crate::run::journal::CommandRecord;
use crate::run::record::{RunPaths, RunRecord};
use crate::run::Global;
use crate::spec::extract::extract;
use crate::spec::{Extraction, MeasureMode, MetricSpec, MetricTimeout, Repeats, TimeMode};
use crate::stats::{DecisionConfig, Evaluation};

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
#[derive(Debug)]
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
    /// The reference (the current best, or the base `arctl merge` lands on) failed in every
    /// attempt of a round: not the candidate's fault.
    BestFailed {
        reason: String,
        tail: String,
        records: Vec<CommandRecord>,
    },
    /// Deterministic mode: a value measured again differed (the metric is noisy after all).
    NotDeterministic {
        /// What moved, in words.
        detail: String,
        /// Every value measured: the probe's verdict is replaced by these.
        values: Vec<f64>,
        records: Vec<CommandRecord>,
    },
    Interrupted,
}

impl Measured {
    /// Record a measurement made before this one (the reference's).
    pub(super) fn prepend(&mut self, r: CommandRecord) {
        match self {
            Measured::Value { records, .. }
            | Measured::Crash { records, .. }
            | Measured::BestFailed { records, .. }
            | Measured::NotDeterministic { records, .. } => records.insert(0, r),
            Measured::Interrupted => {}
        }
    }
}

/// What a candidate is compared with.
pub enum Reference<'p> {
    /// Deterministic mode of the loop: the stored best's value, and where the tree holding
    /// the best is (made ready by the call, only when it is needed: to measure the best
    /// again before a keep, or to judge a timeout).
    Stored(f64, &'p dyn Fn() -> Result<PathBuf>),
    /// A tree measured now (noisy mode: beside the candidate, in the same rounds).
    Tree(&'p Path),
}

/// How long one metric run may take: the spec's fixed timeout, or its factor (`"2x"`) of a
/// reference that follows the machine: the slower of the baseline's duration and the
/// reference tree's time measured now (the paired partner in the same round, else the
/// best's latest run). A loaded machine slows both trees alike, so load never times out a
/// healthy metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeoutRule {
    Fixed(Duration),
    Factor {
        factor: f64,
        baseline: Option<Duration>,
    },
}

impl TimeoutRule {
    pub fn of(rec: &RunRecord) -> TimeoutRule {
        match rec.spec.spec.metric.timeout {
            MetricTimeout::Fixed(d) => TimeoutRule::Fixed(d),
            MetricTimeout::Factor(f) => TimeoutRule::Factor {
                factor: f,
                baseline: rec.baseline_duration_ms.map(Duration::from_millis),
            },
        }
    }

    /// The timeout of a run whose reference tree took `reference` now (None: not known).
    pub fn timeout(&self, reference: Option<Duration>) -> Duration {
        match *self {
            TimeoutRule::Fixed(d) => d,
            TimeoutRule::Factor { baseline: None, .. } => BASELINE_TIMEOUT,
            TimeoutRule::Factor {
                factor,
                baseline: Some(b),
            } => {
                let r = reference.map_or(b, |r| r.max(b));
                Duration::from_secs_f64(r.as_secs_f64() * factor).max(MIN_METRIC_TIMEOUT)
            }
        }
    }

    /// Would a run allowed `allowed` have been allowed more with `reference` as reference?
    /// (A timed-out candidate is blamed only when its partner ran well within the factor.)
    pub fn stale(&self, allowed: Duration, reference: Duration) -> bool {
        self.timeout(Some(reference)) > allowed
    }

    /// For the log: "2x the partner's time in the round (now 1.8s)" or "90s".
    pub fn describe(&self) -> String {
        match *self {
            TimeoutRule::Fixed(d) => format!("{:.1}s", d.as_secs_f64()),
            TimeoutRule::Factor { factor, .. } => format!(
                "{factor}x the best's time measured in the same round (at least {:.1}s now)",
                self.timeout(None).as_secs_f64()
            ),
        }
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
    // `[setup] env` first: arctl's own names (checked not to clash) come after.
    let mut env: Vec<(String, String)> = rec
        .spec
        .spec
        .setup
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend([
        ("ARCTL_RUN_ID".into(), rec.id.clone()),
        ("ARCTL_EXPERIMENT".into(), experiment.to_string()),
        ("ARCTL_WORKTREE".into(), worktree.display().to_string()),
        (
            "ARCTL_RESULTS".into(),
            rec.worktree_tsv().display().to_string(),
        ),
        ("ARCTL_GOAL".into(), rec.spec.spec.goal.clone()),
    ]);
    env
}

/// The keep/discard rule of a run, from its spec, with the noise reference of its
/// baseline probe and whether the run found the machine unstable.
pub fn decision_config(rec: &RunRecord) -> DecisionConfig {
    let m = &rec.spec.spec.metric;
    let baseline_cv = match &rec.mode {
        Some(crate::stats::Mode::Noisy { cv }) => Some(*cv),
        _ => None,
    };
    let cfg = DecisionConfig::new(
        m.direction,
        m.min_effect.0,
        m.alpha,
        rec.spec.spec.policy.simplicity,
    )
    .with_noise(baseline_cv, rec.noise.unstable);
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
    pub timeout: TimeoutRule,
    /// Where the comparisons say what they retried and why (the run's log).
    pub log: Option<&'a crate::run::RunHandle>,
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
    /// A line for the run's log.
    pub fn note(&self, msg: &str) {
        tracing::info!("{msg}");
        if let Some(h) = self.log {
            h.log_line(msg);
        }
    }

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
            exclusive: false,
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
                froze: None,
            },
        ))
    }

    /// Run the metric once in `tree` with the timeout of no reference measured now; `role`
    /// names the tree ("baseline", "best", "candidate").
    pub fn once(&self, tree: &Path, role: &str, cancel: &Cancel) -> Result<Once> {
        self.once_within(tree, role, self.timeout.timeout(None), cancel)
    }

    /// Run the metric once in `tree`, allowed `timeout`.
    pub fn once_within(
        &self,
        tree: &Path,
        role: &str,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<Once> {
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
            timeout: Some(timeout),
            limits: self.limits.clone(),
            tag: format!("{}{role}", self.tag_prefix),
            count_instructions: m.time == Some(TimeMode::Instructions),
            exclusive: false,
        };
        let (outcome, wall, lock_wait_ms, froze) = match self.timed_run(&spec, cancel)? {
            Some(x) => x,
            None => return Ok(Once::Interrupted),
        };
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
            froze,
        };
        if outcome.exit == Exit::Cancelled {
            return Ok(Once::Interrupted);
        }
        if !outcome.exit.success() {
            let why = self.failure_reason(&outcome.exit, timeout);
            return Ok(Once::Failed(why, failure_tail(&stdout, &stderr), rec));
        }
        match metric_value(m, &outcome, wall, &stdout, &stderr) {
            Ok(v) => {
                rec.value = Some(v);
                Ok(Once::Value(v, rec))
            }
            Err(why) => Ok(Once::Failed(
                format!("metric printed no number: {why}"),
                failure_tail(&stdout, &stderr),
                rec,
            )),
        }
    }

    /// Why a metric run that exited `exit` (allowed `timeout`) failed, in words.
    fn failure_reason(&self, exit: &Exit, timeout: Duration) -> String {
        match exit {
            Exit::TimedOut => {
                format!("metric timed out after {:.1}s", timeout.as_secs_f64())
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
        }
    }

    /// The command under the measurement rules: on this machine with `measure =
    /// "exclusive"`, under the daemon-wide lock and with every other command of this
    /// daemon frozen for the run. Returns the outcome, the wall time, the lock wait and how
    /// many processes were frozen; None when cancelled while waiting for the lock.
    #[allow(clippy::type_complexity)]
    fn timed_run(
        &self,
        spec: &CommandSpec,
        cancel: &Cancel,
    ) -> Result<Option<(exec::Outcome, Duration, Option<u64>, Option<usize>)>> {
        // A cluster job has its own node; the lock and the freeze keep this machine quiet.
        let exclusive =
            self.executor.is_local() && self.rec.spec.spec.limits.measure == MeasureMode::Exclusive;
        let wait = Instant::now();
        let lock = exclusive.then(|| {
            self.global
                .measure_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        });
        let lock_wait_ms = exclusive.then(|| wait.elapsed().as_millis() as u64);
        if cancel.is_cancelled() {
            return Ok(None);
        }
        // The freeze itself is the command's own (see `CommandSpec::exclusive`): it starts
        // after any turn the sandbox takes, so nothing frozen holds what it waits for.
        let mut spec = spec.clone();
        spec.exclusive = exclusive;
        let t0 = Instant::now();
        let outcome = self
            .executor
            .run(&spec, cancel)
            .with_context(|| format!("running the metric `{}`", spec.command));
        let wall = t0.elapsed();
        let froze = outcome.as_ref().ok().and_then(|o| o.froze);
        drop(lock);
        Ok(Some((outcome?, wall, lock_wait_ms, froze)))
    }
}

/// The metric's value from a successful run: its time as the spec measures it, or the number
/// extracted from its output; Err(why) when there is none.
fn metric_value(
    m: &MetricSpec,
    outcome: &exec::Outcome,
    wall: Duration,
    stdout: &str,
    stderr: &str,
) -> std::result::Result<f64, String> {
    match m.extraction() {
        // A cluster job's queue wait is not part of its time.
        Extraction::Time(TimeMode::Wall) if outcome.queue_ms.is_some() => {
            Ok(outcome.wall_ms as f64 / 1000.0)
        }
        // From the command's start to its exit (not its setup and sweep); time spent
        // frozen by another run's exclusive measurement is not the metric's.
        Extraction::Time(TimeMode::Wall) => Ok(outcome
            .wall_us
            .map_or(wall, Duration::from_micros)
            .saturating_sub(Duration::from_millis(outcome.frozen_ms.unwrap_or(0)))
            .as_secs_f64()),
        Extraction::Time(TimeMode::Cpu) => Ok(outcome.cpu_ms as f64 / 1000.0),
        Extraction::Time(TimeMode::Instructions) => outcome
            .instructions
            .map(|i| i as f64)
            .ok_or_else(|| "no instruction count".to_string()),
        how => extract(&how, stdout, stderr),
    }
}

/// The last [`FAILURE_TAIL_LINES`] lines of a failed run's output (stdout, then stderr).
fn failure_tail(stdout: &str, stderr: &str) -> String {
    let all = format!("{stdout}{stderr}");
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(FAILURE_TAIL_LINES)..].join("\n")
}
