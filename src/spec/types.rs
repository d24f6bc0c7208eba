//! The spec's tables as Rust types: what a run spec holds, with serde's defaults and the
//! small methods the rest of arctl asks of them (an executor's problems and description,
//! a metric's extraction, a parameter's candidate values, a run's file names). Parsing and
//! the cross-field rules live in `parse`; these types only describe the shape.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::units::{ByteSize, Glob, HumanDuration, MetricTimeout, Pattern, Percent, RunId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Lower,
    Higher,
}

impl Direction {
    /// True when `candidate` is strictly better than `best`.
    pub fn better(self, candidate: f64, best: f64) -> bool {
        match self {
            Direction::Lower => candidate < best,
            Direction::Higher => candidate > best,
        }
    }

    /// Relative improvement of `new` over `old`, positive when better.
    pub fn gain(self, old: f64, new: f64) -> f64 {
        if old == 0.0 {
            return if new == old {
                0.0
            } else if self.better(new, old) {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            };
        }
        match self {
            Direction::Lower => (old - new) / old.abs(),
            Direction::Higher => (new - old) / old.abs(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeMode {
    Wall,
    Cpu,
    Instructions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Repeats {
    #[default]
    Auto,
    Fixed(u32),
}

impl Serialize for Repeats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Repeats::Auto => s.serialize_str("auto"),
            Repeats::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Repeats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(i64),
        }
        let err = "expected \"auto\" or a number of rounds from 1 to 100";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(err))? {
            Raw::S(s) if s == "auto" => Ok(Repeats::Auto),
            Raw::N(n) if (1..=100).contains(&n) => Ok(Repeats::Fixed(n as u32)),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "invalid repeats {s:?}: {err}"
            ))),
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "invalid repeats {n}: {err}"
            ))),
        }
    }
}

fn default_repo() -> PathBuf {
    PathBuf::from(".")
}
fn default_true() -> bool {
    true
}
fn default_min_effect() -> Percent {
    Percent(0.01)
}
fn default_alpha() -> f64 {
    0.05
}
fn default_guard_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}
fn default_proposer_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1200))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RunId>,
    #[serde(default = "default_repo")]
    pub repo: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default)]
    pub goal: String,
    pub metric: MetricSpec,
    pub scope: ScopeSpec,
    #[serde(default, rename = "guard")]
    pub guards: Vec<GuardSpec>,
    #[serde(default)]
    pub budget: BudgetSpec,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub proposer: ProposerSpec,
    #[serde(default)]
    pub policy: PolicySpec,
    /// Where commands run; None: the daemon's default (`arctl start` fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorSpec>,
    /// What every new worktree of the run needs before its baseline.
    #[serde(default, skip_serializing_if = "SetupSpec::is_empty")]
    pub setup: SetupSpec,
    /// Commands the daemon runs when the run keeps, finishes or fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySpec>,
    /// What the children may touch (see `exec::sandbox`).
    #[serde(default, skip_serializing_if = "SandboxSpec::is_default")]
    pub sandbox: SandboxSpec,
}

/// `[sandbox]`: how the children (proposer, metric, guards) are kept inside their worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// None: `enforce` where the kernel offers Landlock, else `detect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SandboxMode>,
    /// More places the children may write (`~/` is the daemon's home; relative paths are
    /// the spec file's folder's): an agent's own state, a package cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable: Vec<String>,
    /// false: the metric and guard commands run without a network (the agent keeps it).
    #[serde(default = "default_true", skip_serializing_if = "Clone::clone")]
    pub network: bool,
}

impl Default for SandboxSpec {
    fn default() -> Self {
        SandboxSpec {
            mode: None,
            writable: Vec::new(),
            network: true,
        }
    }
}

impl SandboxSpec {
    pub fn is_default(&self) -> bool {
        *self == SandboxSpec::default()
    }
}

/// `[sandbox] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// The kernel (Landlock) keeps the children out; detection checks what it cannot cover.
    Enforce,
    /// Snapshots around every child: what it must not change is restored and its
    /// experiment rejected.
    Detect,
    /// Neither (processes are still contained).
    Off,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Enforce => "enforce",
            SandboxMode::Detect => "detect",
            SandboxMode::Off => "off",
        }
    }
}

/// `[setup]`: how a new worktree (the run's, its best tree, a merge's) is prepared: files
/// the repo does not track copied from the main checkout, a command run once, and
/// environment for every child. What setup makes is the environment, never a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupSpec {
    /// Untracked or ignored files to copy from the main checkout (`.env`, `data/**`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy: Vec<Glob>,
    /// Run once in each new worktree before the baseline (`uv sync`, `npm ci`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default = "default_setup_timeout")]
    pub timeout: HumanDuration,
    /// Added to the environment of every child (proposer, metric, guards, setup).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
}

impl Default for SetupSpec {
    fn default() -> Self {
        SetupSpec {
            copy: Vec::new(),
            command: None,
            timeout: default_setup_timeout(),
            env: Default::default(),
        }
    }
}

impl SetupSpec {
    pub fn is_empty(&self) -> bool {
        self.copy.is_empty() && self.command.is_none() && self.env.is_empty()
    }
}

fn default_setup_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

/// `[notify]` (or the daemon config's default): the user's commands, run by the daemon
/// outside the agent's sandbox, with `ARCTL_RUN_ID`, `ARCTL_EVENT`, `ARCTL_STATE`,
/// `ARCTL_BEST`, `ARCTL_CHANGE` and `ARCTL_REPORT` in their environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_keep: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_finish: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_fail: Option<String>,
    #[serde(default = "default_notify_timeout")]
    pub timeout: HumanDuration,
}

fn default_notify_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// This machine (process groups, limits, watchdog).
    #[default]
    Local,
    /// An existing Slurm cluster: commands go to compute nodes with `salloc` + `srun`.
    Slurm,
}

/// `[executor]` of a run spec (or of the daemon config, as the default): where the metric
/// and guard commands (and, with `proposer_on_cluster`, the agent) run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSpec {
    #[serde(default)]
    pub kind: ExecutorKind,
    /// slurm: `--partition`; default: the cluster's default partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// slurm: `--gres`, e.g. "gpu:1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    /// slurm: `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// slurm: more allocation options, e.g. ["--qos=short", "--constraint=avx512"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// slurm: run the agent proposer on the cluster too (default: on this machine).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proposer_on_cluster: bool,
}

/// Options arctl sets itself on `salloc` / `srun`, refused in `extra_args` (what to use instead).
const SLURM_RESERVED: &[(&str, Option<char>, &str)] = &[
    (
        "--job-name",
        Some('J'),
        "arctl names its jobs (arctl-<run>...) to find them again",
    ),
    ("--chdir", Some('D'), "commands run in the run's worktree"),
    ("--time", Some('t'), "set the command timeouts in the spec"),
    ("--mem", None, "use limits.memory"),
    ("--cpus-per-task", Some('c'), "use limits.cpus"),
    (
        "--nodelist",
        Some('w'),
        "arctl pins the node of a paired round itself",
    ),
    ("--nodes", Some('N'), "commands run on one node"),
    ("--ntasks", Some('n'), "commands run as one task"),
    ("--jobid", None, "arctl makes its own allocations"),
    (
        "--immediate",
        Some('I'),
        "arctl waits in the queue and records the wait",
    ),
    ("--output", Some('o'), "arctl captures the output"),
    ("--error", Some('e'), "arctl captures the output"),
    ("--input", Some('i'), "arctl feeds stdin itself"),
    ("--no-shell", None, "arctl manages the allocation"),
];

impl ExecutorSpec {
    pub fn is_local(&self) -> bool {
        self.kind == ExecutorKind::Local
    }

    /// A one-line description: "local", "slurm (partition gpu, gres gpu:1)".
    pub fn describe(&self) -> String {
        match self.kind {
            ExecutorKind::Local => "local".into(),
            ExecutorKind::Slurm => {
                let mut parts = Vec::new();
                if let Some(p) = &self.partition {
                    parts.push(format!("partition {p}"));
                }
                if let Some(g) = &self.gres {
                    parts.push(format!("gres {g}"));
                }
                if let Some(a) = &self.account {
                    parts.push(format!("account {a}"));
                }
                if parts.is_empty() {
                    "slurm".into()
                } else {
                    format!("slurm ({})", parts.join(", "))
                }
            }
        }
    }

    /// The first problem of the table, as (key, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.kind == ExecutorKind::Local {
            let slurm_only = [
                ("partition", self.partition.is_some()),
                ("gres", self.gres.is_some()),
                ("account", self.account.is_some()),
                ("extra_args", !self.extra_args.is_empty()),
                ("proposer_on_cluster", self.proposer_on_cluster),
            ];
            if let Some((k, _)) = slurm_only.iter().find(|(_, on)| *on) {
                return Some((k, format!("executor.{k} is only used by kind = \"slurm\" (this executor is \"local\")")));
            }
            return None;
        }
        for (key, v) in [
            ("partition", &self.partition),
            ("gres", &self.gres),
            ("account", &self.account),
        ] {
            if let Some(v) = v {
                if v.trim().is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Some((
                        key,
                        format!("executor.{key} = {v:?}: expected a Slurm name without spaces"),
                    ));
                }
            }
        }
        for a in &self.extra_args {
            let reserved = SLURM_RESERVED.iter().find(|(long, short, _)| {
                a == long
                    || a.starts_with(&format!("{long}="))
                    || short
                        .is_some_and(|c| !a.starts_with("--") && a.starts_with(&format!("-{c}")))
            });
            if let Some((long, _, why)) = reserved {
                return Some((
                    "extra_args",
                    format!(
                        "executor.extra_args: {a:?} sets {long}, which arctl sets itself ({why})"
                    ),
                ));
            }
            if !a.starts_with('-') {
                return Some(("extra_args", format!("executor.extra_args: {a:?} is not an option: expected Slurm options like \"--qos=short\"")));
            }
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<i64>,
    /// Time the command itself instead of reading a number from its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeMode>,
    pub direction: Direction,
    #[serde(default)]
    pub timeout: MetricTimeout,
    #[serde(default)]
    pub repeats: Repeats,
    #[serde(default = "default_min_effect")]
    pub min_effect: Percent,
    /// Significance level of the keep decision in noisy mode.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

/// How the metric's number is read from the command's run.
#[derive(Debug, Clone)]
pub enum Extraction {
    Regex(regex::Regex),
    Json(String),
    Line(i64),
    LastNumber,
    Time(TimeMode),
}

impl MetricSpec {
    pub fn extraction(&self) -> Extraction {
        if let Some(r) = &self.regex {
            Extraction::Regex(r.0.clone())
        } else if let Some(j) = &self.json {
            Extraction::Json(j.clone())
        } else if let Some(l) = self.line {
            Extraction::Line(l)
        } else if let Some(t) = self.time {
            Extraction::Time(t)
        } else {
            Extraction::LastNumber
        }
    }
}

impl PartialEq for Extraction {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Extraction::Regex(a), Extraction::Regex(b)) => a.as_str() == b.as_str(),
            (Extraction::Json(a), Extraction::Json(b)) => a == b,
            (Extraction::Line(a), Extraction::Line(b)) => a == b,
            (Extraction::LastNumber, Extraction::LastNumber) => true,
            (Extraction::Time(a), Extraction::Time(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSpec {
    pub include: Vec<Glob>,
    #[serde(default)]
    pub exclude: Vec<Glob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSpec {
    pub name: String,
    pub command: String,
    #[serde(default = "default_guard_timeout")]
    pub timeout: HumanDuration,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_experiments: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall: Option<HumanDuration>,
    /// Stop after this many experiments in a row without a keep (a plateau).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<u32>,
    /// Stop once the agent's reported usage (`cost_usd`) reaches this many US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeasureMode {
    #[default]
    Exclusive,
    Shared,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub measure: MeasureMode,
    /// Bytes kept of the head and of the tail of each output stream of each command
    /// (default 1MiB each); what is between is cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ByteSize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposerKind {
    #[default]
    Agent,
    Params,
    Patches,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchStrategy {
    /// Change one parameter by one step from the best; a random untried one when stuck.
    #[default]
    HillClimb,
    /// A random untried combination each time.
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposerSpec {
    #[serde(default)]
    pub kind: ProposerKind,
    /// agent: a known agent CLI (`claude`, `codex`, `aider`, `gemini`, `opencode`): its
    /// tested command line (unless `command` is given), the state folders it needs to
    /// write, and its usage report (see `spec::presets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// agent: the command, run with `sh -c` in the worktree, prompt on stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// agent: the prompt template (relative to the spec file); default: built in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PathBuf>,
    #[serde(default = "default_proposer_timeout_opt")]
    pub timeout: HumanDuration,
    /// patches: folder of `*.patch` files (relative to the spec file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// params: the parameters to search.
    #[serde(default, rename = "param", skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamSpec>,
    #[serde(default)]
    pub strategy: SearchStrategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_proposer_timeout_opt() -> HumanDuration {
    default_proposer_timeout()
}

impl Default for ProposerSpec {
    fn default() -> Self {
        ProposerSpec {
            kind: ProposerKind::default(),
            preset: None,
            command: None,
            prompt: None,
            timeout: default_proposer_timeout(),
            dir: None,
            params: Vec::new(),
            strategy: SearchStrategy::default(),
            seed: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// File (repo-relative) holding the parameter.
    pub file: PathBuf,
    /// Its first capture group is the value to replace.
    pub regex: Pattern,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<toml::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
}

impl ParamSpec {
    /// The candidate values, as the text written into the file.
    pub fn candidates(&self) -> Vec<String> {
        if let Some(vals) = &self.values {
            return vals
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
        }
        let (Some(min), Some(max), Some(step)) = (self.min, self.max, self.step) else {
            return Vec::new();
        };
        let integral = min.fract() == 0.0 && step.fract() == 0.0;
        let mut out = Vec::new();
        let mut i = 0u32;
        loop {
            let v = min + step * i as f64;
            if v > max + step * 1e-9 || out.len() >= 10_000 {
                break;
            }
            out.push(if integral {
                format!("{}", v as i64)
            } else {
                let s = format!("{:.6}", v);
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            });
            i += 1;
        }
        out
    }

    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.file.display().to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebSearch {
    Yes,
    Ask,
    #[default]
    No,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default = "default_true")]
    pub simplicity: bool,
    #[serde(default)]
    pub web_search: WebSearch,
    /// Free-text constraints handed to the agent (guards enforce the checkable ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            simplicity: true,
            web_search: WebSearch::No,
            constraints: Vec::new(),
        }
    }
}

/// A spec as loaded from a file: parsed, validated, with its id and paths resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedSpec {
    pub id: RunId,
    /// Absolute path of the spec file.
    pub spec_file: PathBuf,
    /// Absolute path of the repository (not canonicalised: may not exist yet at validate).
    pub repo: PathBuf,
    pub spec: RunSpec,
}

impl ResolvedSpec {
    pub fn tsv_name(&self) -> String {
        format!("autoresearch-{}.tsv", self.id)
    }
    pub fn log_name(&self) -> String {
        format!("autoresearch-{}.log", self.id)
    }
    /// A path in the spec, resolved against the spec file's folder.
    pub fn spec_relative(&self, p: &Path) -> PathBuf {
        let dir = self.spec_file.parent().unwrap_or(Path::new("/"));
        dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_gain() {
        assert!((Direction::Lower.gain(100.0, 90.0) - 0.1).abs() < 1e-12);
        assert!((Direction::Higher.gain(100.0, 90.0) + 0.1).abs() < 1e-12);
        assert!(Direction::Lower.better(1.0, 2.0));
        assert!(!Direction::Higher.better(1.0, 2.0));
    }
}
