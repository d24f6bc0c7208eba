//! The run spec (TOML): parse, defaults, validation with file:line:column errors.
//!
//! Every value that has a textual form ("90s", "4GiB", "2x", "1%", globs, ids) is a newtype
//! whose `Deserialize` validates it, so toml attaches the value's span to the error and the
//! user sees exactly where the problem is. Cross-field rules are checked after parsing and
//! located by key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A spec problem, located in its file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending source line, for a caret display.
    pub source_line: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(src) = &self.source_line {
            write!(
                f,
                "\n    | {}\n    | {}^",
                src,
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Value types
// ---------------------------------------------------------------------------------------

/// A run id: `[a-z0-9][a-z0-9-]{0,47}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    pub fn parse(s: &str) -> Result<RunId, String> {
        let ok = !s.is_empty()
            && s.len() <= 48
            && s.bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b == b'-'));
        if ok {
            Ok(RunId(s.to_string()))
        } else {
            Err(format!(
                "invalid run id {s:?}: expected 1-48 characters of a-z, 0-9 and '-', starting with a letter or digit"
            ))
        }
    }

    /// Derive an id from a spec file name: `ETL Runtime.toml` -> `etl-runtime`.
    pub fn from_file_name(path: &Path) -> Option<RunId> {
        let stem = path.file_stem()?.to_string_lossy().to_lowercase();
        let mut id = String::new();
        for c in stem.chars() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                id.push(c);
            } else if !id.is_empty() && !id.ends_with('-') {
                id.push('-');
            }
        }
        let id = id.trim_end_matches('-');
        let id: String = id.chars().take(48).collect();
        RunId::parse(id.trim_end_matches('-')).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Implements Serialize/Deserialize through the type's canonical string form.
macro_rules! string_serde {
    ($t:ty, $parse:expr, $show:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                #[allow(clippy::redundant_closure_call)]
                s.serialize_str(&($show)(self))
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                #[allow(clippy::redundant_closure_call)]
                ($parse)(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(RunId, RunId::parse, |v: &RunId| v.0.clone());

/// A duration written like `90s`, `10m`, `8h`, `1h30m`, `500ms`, `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = || {
        format!("invalid duration {s:?}: expected a number with a unit (ms, s, m, h, d), e.g. \"90s\", \"10m\", \"8h\", \"1h30m\"")
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(expected());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(expected)?;
        if num_len == 0 {
            return Err(expected());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| expected())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit.trim() {
            "ms" => 0.001,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(expected()),
        };
        total += n * secs;
    }
    if !total.is_finite() || total <= 0.0 {
        return Err(format!("invalid duration {s:?}: must be greater than zero"));
    }
    Ok(Duration::from_secs_f64(total))
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s.is_multiple_of(86400) {
        format!("{}d", s / 86400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

string_serde!(
    HumanDuration,
    |s: &str| parse_duration(s).map(HumanDuration),
    |v: &HumanDuration| format_duration(v.0)
);

/// The metric's timeout: a multiple of the baseline's duration, or a fixed duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricTimeout {
    Factor(f64),
    Fixed(Duration),
}

impl Default for MetricTimeout {
    fn default() -> Self {
        MetricTimeout::Factor(2.0)
    }
}

fn parse_metric_timeout(s: &str) -> Result<MetricTimeout, String> {
    if let Some(f) = s.trim().strip_suffix('x') {
        return match f.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 1.0 => Ok(MetricTimeout::Factor(v)),
            _ => Err(format!(
                "invalid timeout {s:?}: expected a factor of the baseline's duration of at least 1, e.g. \"2x\", or a duration like \"90s\""
            )),
        };
    }
    parse_duration(s).map(MetricTimeout::Fixed).map_err(|_| {
        format!("invalid timeout {s:?}: expected a factor of the baseline's duration like \"2x\", or a duration like \"90s\"")
    })
}

string_serde!(
    MetricTimeout,
    parse_metric_timeout,
    |v: &MetricTimeout| match v {
        MetricTimeout::Factor(f) => format!("{f}x"),
        MetricTimeout::Fixed(d) => format_duration(*d),
    }
);

/// A byte size written like `4GiB`, `512MiB`, `1GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

pub fn parse_size(s: &str) -> Result<u64, String> {
    let expected = || {
        format!("invalid size {s:?}: expected a number with a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB), e.g. \"4GiB\"")
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(expected)?;
    let n: f64 = t[..split].parse().map_err(|_| expected())?;
    let mult: u64 = match t[split..].trim() {
        "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(expected()),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!("invalid size {s:?}: must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

pub fn format_size(b: u64) -> String {
    for (unit, m) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if b >= m && b.is_multiple_of(m) {
            return format!("{}{unit}", b / m);
        }
    }
    if b >= 1 << 20 {
        return format!("{:.1}MiB", b as f64 / (1u64 << 20) as f64);
    }
    format!("{b}B")
}

string_serde!(
    ByteSize,
    |s: &str| parse_size(s).map(ByteSize),
    |v: &ByteSize| format_size(v.0)
);

/// A relative effect written as a percentage: `"1%"`, stored as a fraction (0.01).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

fn parse_percent(s: &str) -> Result<Percent, String> {
    let err =
        || format!("invalid percentage {s:?}: expected a percentage from 0% to 100%, e.g. \"1%\"");
    let n: f64 = s
        .trim()
        .strip_suffix('%')
        .ok_or_else(err)?
        .trim()
        .parse()
        .map_err(|_| err())?;
    if !(0.0..=100.0).contains(&n) {
        return Err(err());
    }
    Ok(Percent(n / 100.0))
}

string_serde!(Percent, parse_percent, |v: &Percent| format!(
    "{}%",
    (v.0 * 100.0 * 1e6).round() / 1e6
));

/// A glob over repository paths (validated with globset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(pub String);

impl Glob {
    pub fn parse(s: &str) -> Result<Glob, String> {
        if s.trim().is_empty() {
            return Err(
                "invalid glob \"\": expected a pattern over repo paths like \"src/**\"".into(),
            );
        }
        if s.starts_with('/') || s.split('/').any(|c| c == "..") {
            return Err(format!(
                "invalid glob {s:?}: expected a path pattern relative to the repo root (no leading '/', no '..')"
            ));
        }
        globset::GlobBuilder::new(s)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("invalid glob {s:?}: {}", e.kind()))?;
        Ok(Glob(s.to_string()))
    }
}

string_serde!(Glob, Glob::parse, |v: &Glob| v.0.clone());

/// A regular expression with exactly the capture groups a use needs (checked later).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

string_serde!(
    Pattern,
    |s: &str| regex::Regex::new(s)
        .map(Pattern)
        .map_err(|e| format!("invalid regex {s:?}: {e}")),
    |v: &Pattern| v.0.as_str().to_string()
);

// ---------------------------------------------------------------------------------------
// The spec
// ---------------------------------------------------------------------------------------

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
    pub fn branch(&self) -> String {
        format!("autoresearch/{}", self.id)
    }
    /// A path in the spec, resolved against the spec file's folder.
    pub fn spec_relative(&self, p: &Path) -> PathBuf {
        let dir = self.spec_file.parent().unwrap_or(Path::new("/"));
        dir.join(p)
    }
}

/// Read and validate a spec file.
pub fn load(path: &Path) -> Result<ResolvedSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the spec: {e}"),
        source_line: None,
    })?;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    parse(&text, &abs)
}

/// Parse and validate spec text; `file` is used for error messages, the default id and
/// resolving relative paths.
pub fn parse(text: &str, file: &Path) -> Result<ResolvedSpec, SpecError> {
    let spec: RunSpec = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_string();
        let offset = e.span().map_or(0, |s| element_offset(text, s, &message));
        located_at_offset(text, file, offset, message)
    })?;
    let at_key = |table: Option<&str>, key: &str, msg: String| {
        let (line, column) = find_key(text, table, key).unwrap_or((1, 1));
        error_at(text, file, line, column, msg)
    };

    let id = match &spec.id {
        Some(id) => id.clone(),
        None => RunId::from_file_name(file).ok_or_else(|| {
            error_at(
                text,
                file,
                1,
                1,
                format!(
                    "no `id` given and the file name {:?} does not make a valid run id: add `id = \"my-run\"` ([a-z0-9][a-z0-9-]{{0,47}})",
                    file.file_name().unwrap_or_default()
                ),
            )
        })?,
    };

    if let Some(e) = &spec.executor {
        if let Some((key, msg)) = e.problem() {
            return Err(at_key(Some("executor"), key, msg));
        }
        if e.kind == ExecutorKind::Slurm {
            if let Some(t @ (TimeMode::Cpu | TimeMode::Instructions)) = spec.metric.time {
                let t = format!("{t:?}").to_lowercase();
                return Err(at_key(Some("metric"), "time", format!("metric.time = \"{t}\" cannot be measured on a Slurm cluster: use \"wall\" or a number the command prints")));
            }
            if e.proposer_on_cluster && spec.proposer.kind != ProposerKind::Agent {
                return Err(at_key(
                    Some("executor"),
                    "proposer_on_cluster",
                    "executor.proposer_on_cluster only applies to proposer kind = \"agent\"".into(),
                ));
            }
        }
    }
    let m = &spec.metric;
    if m.command.trim().is_empty() {
        return Err(at_key(
            Some("metric"),
            "command",
            "metric.command is empty: expected the shell command that produces the metric".into(),
        ));
    }
    let ways: Vec<&str> = [
        ("regex", m.regex.is_some()),
        ("json", m.json.is_some()),
        ("line", m.line.is_some()),
        ("time", m.time.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(k, _)| *k)
    .collect();
    if ways.len() > 1 {
        return Err(at_key(
            Some("metric"),
            ways[1],
            format!(
                "metric has both `{}` and `{}`: expected at most one of regex, json, line, time",
                ways[0], ways[1]
            ),
        ));
    }
    if let Some(r) = &m.regex {
        if r.0.captures_len() < 2 {
            return Err(at_key(
                Some("metric"),
                "regex",
                format!(
                    "metric.regex {:?} has no capture group: expected one, e.g. 'mean: ([0-9.]+)'",
                    r.0.as_str()
                ),
            ));
        }
    }
    if let Some(j) = &m.json {
        if j.is_empty() || j.split('.').any(|p| p.is_empty()) {
            return Err(at_key(
                Some("metric"),
                "json",
                format!("metric.json {j:?}: expected a dotted path like \"results.0.mean\""),
            ));
        }
    }
    if m.line == Some(0) {
        return Err(at_key(
            Some("metric"),
            "line",
            "metric.line = 0: expected a line number (1 is the first, -1 the last)".into(),
        ));
    }
    if m.time == Some(TimeMode::Instructions) {
        if let Err(why) = crate::exec::instructions_supported() {
            return Err(at_key(Some("metric"), "time", format!("metric.time = \"instructions\" is not available on this machine: {why}; use \"cpu\" or \"wall\"")));
        }
    }
    if !(m.alpha > 0.0 && m.alpha < 0.5) {
        return Err(at_key(
            Some("metric"),
            "alpha",
            format!(
                "metric.alpha = {}: expected a significance level between 0 and 0.5, e.g. 0.05",
                m.alpha
            ),
        ));
    }
    if spec.scope.include.is_empty() {
        return Err(at_key(Some("scope"), "include", "scope.include is empty: expected at least one glob of editable paths, e.g. [\"src/**\"]".into()));
    }
    for (i, g) in spec.guards.iter().enumerate() {
        if g.command.trim().is_empty() || g.name.trim().is_empty() {
            let (line, column) = find_nth_table(text, "guard", i).unwrap_or((1, 1));
            return Err(error_at(
                text,
                file,
                line,
                column,
                format!("guard #{}: `name` and `command` must not be empty", i + 1),
            ));
        }
    }
    if spec.budget.max_experiments == Some(0) {
        return Err(at_key(
            Some("budget"),
            "max_experiments",
            "budget.max_experiments = 0: expected at least 1 (or leave it out for no limit)".into(),
        ));
    }
    if spec.limits.cpus == Some(0) {
        return Err(at_key(
            Some("limits"),
            "cpus",
            "limits.cpus = 0: expected at least 1 (or leave it out)".into(),
        ));
    }
    let p = &spec.proposer;
    match p.kind {
        ProposerKind::Agent => {
            if p.command.as_deref().map(str::trim).unwrap_or("").is_empty() {
                return Err(at_key(Some("proposer"), "kind", "proposer kind \"agent\" needs `command`: expected the agent command, e.g. command = \"claude -p\"".into()));
            }
            if let Some(prompt) = &p.prompt {
                let path = file.parent().unwrap_or(Path::new("/")).join(prompt);
                if !path.is_file() {
                    return Err(at_key(
                        Some("proposer"),
                        "prompt",
                        format!(
                            "proposer.prompt {}: no such file (relative to the spec file)",
                            path.display()
                        ),
                    ));
                }
            }
        }
        ProposerKind::Patches => {
            let Some(dir) = &p.dir else {
                return Err(at_key(Some("proposer"), "kind", "proposer kind \"patches\" needs `dir`: expected a folder of *.patch files, e.g. dir = \"hypotheses/\"".into()));
            };
            let path = file.parent().unwrap_or(Path::new("/")).join(dir);
            if !path.is_dir() {
                return Err(at_key(
                    Some("proposer"),
                    "dir",
                    format!(
                        "proposer.dir {}: no such folder (relative to the spec file)",
                        path.display()
                    ),
                ));
            }
        }
        ProposerKind::Params => {
            if p.params.is_empty() {
                return Err(at_key(Some("proposer"), "kind", "proposer kind \"params\" needs at least one [[proposer.param]] with file, regex and values (or min/max/step)".into()));
            }
            for (i, param) in p.params.iter().enumerate() {
                let (line, column) = find_nth_table(text, "proposer.param", i).unwrap_or((1, 1));
                let here = |msg: String| {
                    error_at(
                        text,
                        file,
                        line,
                        column,
                        format!("proposer.param #{}: {msg}", i + 1),
                    )
                };
                if param.regex.0.captures_len() < 2 {
                    return Err(here("regex has no capture group: expected one around the value, e.g. 'BATCH = (\\d+)'".into()));
                }
                match (&param.values, param.min, param.max, param.step) {
                    (Some(v), None, None, None) if !v.is_empty() => {}
                    (None, Some(min), Some(max), Some(step)) if step > 0.0 && max >= min => {}
                    _ => return Err(here("expected either a non-empty `values` list or all of `min`, `max` and `step` (step > 0, max >= min)".into())),
                }
                if param.file.is_absolute()
                    || param
                        .file
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
                {
                    return Err(here(format!(
                        "file {:?}: expected a path relative to the repo root",
                        param.file
                    )));
                }
            }
        }
    }
    if p.kind != ProposerKind::Agent && p.prompt.is_some() {
        return Err(at_key(
            Some("proposer"),
            "prompt",
            "proposer.prompt is only used by kind = \"agent\"".into(),
        ));
    }

    let repo = file.parent().unwrap_or(Path::new("/")).join(&spec.repo);
    let repo = normalize(&repo);
    Ok(ResolvedSpec {
        id,
        spec_file: file.to_path_buf(),
        repo,
        spec,
    })
}

/// Lexically clean `a/./b/../c` -> `a/c` (no symlink resolution).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// toml reports a bad element of an array at the array's `[`: point at the element whose
/// literal the message quotes (our value errors quote it: `invalid glob "a/[b": ...`).
fn element_offset(text: &str, span: std::ops::Range<usize>, message: &str) -> usize {
    let array = match text.get(span.clone()) {
        Some(a) if a.starts_with('[') => a,
        _ => return span.start,
    };
    let quoted = message.split('"').nth(1).filter(|q| !q.is_empty());
    quoted
        .and_then(|q| {
            [format!("\"{q}\""), format!("'{q}'")]
                .iter()
                .find_map(|lit| array.find(lit.as_str()))
        })
        .map_or(span.start, |i| span.start + i)
}

fn located_at_offset(text: &str, file: &Path, offset: usize, message: String) -> SpecError {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    error_at(text, file, line, column, message)
}

fn error_at(text: &str, file: &Path, line: usize, column: usize, message: String) -> SpecError {
    SpecError {
        file: file.to_path_buf(),
        line,
        column,
        message,
        source_line: text.lines().nth(line.saturating_sub(1)).map(str::to_string),
    }
}

/// Locate `key` (1-based line and column of its value) in `[table]`, or at the top level.
fn find_key(text: &str, table: Option<&str>, key: &str) -> Option<(usize, usize)> {
    let mut current: Option<String> = None;
    let mut table_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.starts_with('[') {
            let name = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            if Some(name.as_str()) == table && table_line.is_none() {
                table_line = Some((i + 1, raw.len() - line.len() + 1));
            }
            current = Some(name);
            continue;
        }
        if current.as_deref() != table {
            continue;
        }
        if let Some(rest) = line.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                let eq = raw.find('=').unwrap_or(0);
                let val = raw[eq + 1..].len() - raw[eq + 1..].trim_start().len();
                return Some((i + 1, eq + 2 + val));
            }
        }
    }
    table_line
}

/// Locate the header of the n-th `[[name]]` array table.
fn find_nth_table(text: &str, name: &str, n: usize) -> Option<(usize, usize)> {
    let header = format!("[[{name}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim().replace(' ', "") == header)
        .nth(n)
        .map(|(i, _)| (i + 1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[metric]
command = "python bench.py"
direction = "lower"

[scope]
include = ["src/**"]

[proposer]
command = "claude -p"
"#;

    fn p(text: &str) -> Result<ResolvedSpec, SpecError> {
        parse(text, Path::new("/tmp/specs/etl-runtime.toml"))
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let s = p(MINIMAL).unwrap();
        assert_eq!(s.id.as_str(), "etl-runtime");
        assert_eq!(s.repo, PathBuf::from("/tmp/specs"));
        assert_eq!(s.spec.metric.timeout, MetricTimeout::Factor(2.0));
        assert_eq!(s.spec.metric.repeats, Repeats::Auto);
        assert_eq!(s.spec.metric.min_effect, Percent(0.01));
        assert_eq!(s.spec.limits.measure, MeasureMode::Exclusive);
        assert!(s.spec.policy.simplicity);
        assert_eq!(s.spec.policy.web_search, WebSearch::No);
        assert_eq!(s.spec.proposer.timeout.0, Duration::from_secs(1200));
        assert_eq!(s.spec.metric.extraction(), Extraction::LastNumber);
    }

    #[test]
    fn resolved_spec_round_trips_through_json() {
        let s = p(MINIMAL).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: ResolvedSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(s, back);
    }

    #[test]
    fn durations_sizes_percentages() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert!(parse_size("4 gigs").is_err());
        assert!(parse_size("GiB").is_err());
        assert_eq!(
            parse_metric_timeout("2x").unwrap(),
            MetricTimeout::Factor(2.0)
        );
        assert_eq!(
            parse_metric_timeout("90s").unwrap(),
            MetricTimeout::Fixed(Duration::from_secs(90))
        );
        assert!(parse_metric_timeout("0.5x").is_err());
        assert_eq!(parse_percent("1%").unwrap(), Percent(0.01));
        assert!(parse_percent("1").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(format_size(4 << 30), "4GiB");
    }

    #[test]
    fn run_ids() {
        assert!(RunId::parse("etl-runtime").is_ok());
        assert!(RunId::parse("../x").is_err());
        assert!(RunId::parse("-x").is_err());
        assert!(RunId::parse("X").is_err());
        assert!(RunId::parse(&"a".repeat(49)).is_err());
        assert_eq!(
            RunId::from_file_name(Path::new("My ETL_run.toml"))
                .unwrap()
                .as_str(),
            "my-etl-run"
        );
        assert!(RunId::from_file_name(Path::new("___.toml")).is_none());
    }

    fn err(text: &str) -> SpecError {
        p(text).unwrap_err()
    }

    #[test]
    fn unknown_key_is_located() {
        let e = err(&MINIMAL.replace("direction = \"lower\"", "direction = \"lower\"\nbogus = 1"));
        assert_eq!((e.line, e.column), (5, 1), "{e}");
        assert!(e.message.contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn missing_required_key() {
        let e = err(&MINIMAL.replace("direction = \"lower\"\n", ""));
        assert!(e.message.contains("missing field `direction`"), "{e}");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn bad_values_are_located() {
        let e = err(&format!("{MINIMAL}\n[budget]\nmax_wall = \"2x\"\n"));
        assert_eq!((e.line, e.column), (13, 12), "{e}");
        assert!(e.message.contains("invalid duration \"2x\""), "{e}");

        let e = err(&format!("{MINIMAL}\n[limits]\nmemory = \"4 gigs\"\n"));
        assert_eq!(e.line, 13, "{e}");
        assert!(e.message.contains("invalid size"), "{e}");

        let e = err(&MINIMAL.replace("src/**", "src/[a"));
        assert_eq!((e.line, e.column), (7, 12), "{e}");
        assert!(e.message.contains("invalid glob"), "{e}");
        // The bad element of a longer array, not the array.
        let e = err(&MINIMAL.replace("[\"src/**\"]", "[\n  \"src/**\",\n  'docs/[b',\n]"));
        assert_eq!((e.line, e.column), (9, 3), "{e}");
        assert!(e.message.contains("invalid glob \"docs/[b\""), "{e}");

        let e = err(&format!("id = \"../x\"\n{MINIMAL}"));
        assert_eq!((e.line, e.column), (1, 6), "{e}");
        assert!(e.message.contains("invalid run id"), "{e}");
    }

    #[test]
    fn cross_field_rules() {
        let e = err(&MINIMAL.replace(
            "direction = \"lower\"",
            "direction = \"lower\"\nregex = 'a(\\d+)'\nline = 3",
        ));
        assert!(e.message.contains("both `regex` and `line`"), "{e}");
        assert_eq!(e.line, 6, "{e}");

        let e = err(&MINIMAL.replace(
            "direction = \"lower\"",
            "direction = \"lower\"\nregex = 'mean'",
        ));
        assert!(e.message.contains("no capture group"), "{e}");

        let e = err(&MINIMAL.replace("command = \"claude -p\"", "kind = \"patches\""));
        assert!(e.message.contains("needs `dir`"), "{e}");
        assert_eq!(e.line, 10, "{e}");

        let e = err(&MINIMAL.replace("command = \"claude -p\"", ""));
        assert!(e.message.contains("needs `command`"), "{e}");
    }

    #[test]
    fn params_candidates() {
        let text = MINIMAL.replace(
            "command = \"claude -p\"",
            "kind = \"params\"\n[[proposer.param]]\nfile = \"a.py\"\nregex = 'N = (\\d+)'\nmin = 1\nmax = 9\nstep = 4\n",
        );
        let s = p(&text).unwrap();
        assert_eq!(s.spec.proposer.params[0].candidates(), vec!["1", "5", "9"]);
        let bad = text.replace("step = 4", "step = -1");
        let e = err(&bad);
        assert!(e.message.contains("proposer.param #1"), "{e}");
    }

    #[test]
    fn executor_table() {
        let s = p(MINIMAL).unwrap();
        assert_eq!(s.spec.executor, None);
        let slurm = format!("{MINIMAL}\n[executor]\nkind = \"slurm\"\npartition = \"gpu\"\ngres = \"gpu:1\"\naccount = \"lab\"\nextra_args = [\"--qos=short\"]\nproposer_on_cluster = true\n");
        let s = p(&slurm).unwrap();
        let e = s.spec.executor.clone().unwrap();
        assert_eq!(e.kind, ExecutorKind::Slurm);
        assert_eq!(e.partition.as_deref(), Some("gpu"));
        assert!(e.proposer_on_cluster);
        assert_eq!(
            e.describe(),
            "slurm (partition gpu, gres gpu:1, account lab)"
        );
        let back: ResolvedSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);

        let e = err(&format!(
            "{MINIMAL}\n[executor]\nkind = \"slurm\"\nqueue = \"x\"\n"
        ));
        assert!(e.message.contains("unknown field `queue`"), "{e}");
        assert_eq!(e.line, 14, "{e}");
        let e = err(&format!("{MINIMAL}\n[executor]\nkind = \"kubernetes\"\n"));
        assert!(e.message.contains("unknown variant"), "{e}");
        let e = err(&format!("{MINIMAL}\n[executor]\npartition = \"gpu\"\n"));
        assert!(e.message.contains("only used by kind = \"slurm\""), "{e}");
        assert_eq!((e.line, e.column), (13, 13), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[executor]\nkind = \"slurm\"\nextra_args = [\"--time=5\"]\n"
        ));
        assert!(e.message.contains("--time"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[executor]\nkind = \"slurm\"\nextra_args = [\"-Jx\"]\n"
        ));
        assert!(e.message.contains("--job-name"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[executor]\nkind = \"slurm\"\nextra_args = [\"qos\"]\n"
        ));
        assert!(e.message.contains("not an option"), "{e}");
        let e = err(
            &format!("{MINIMAL}\n[executor]\nkind = \"slurm\"\n").replace(
                "direction = \"lower\"",
                "direction = \"lower\"\ntime = \"cpu\"",
            ),
        );
        assert!(
            e.message.contains("cannot be measured on a Slurm cluster"),
            "{e}"
        );
        assert_eq!(e.line, 5, "{e}");
        assert!(p(&format!("{MINIMAL}\n[executor]\nkind = \"slurm\"\nextra_args = [\"--exclusive\", \"--constraint=avx\"]\n")).is_ok());
    }

    #[test]
    fn direction_gain() {
        assert!((Direction::Lower.gain(100.0, 90.0) - 0.1).abs() < 1e-12);
        assert!((Direction::Higher.gain(100.0, 90.0) + 0.1).abs() < 1e-12);
        assert!(Direction::Lower.better(1.0, 2.0));
        assert!(!Direction::Higher.better(1.0, 2.0));
    }
}
