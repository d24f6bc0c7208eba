//! `arctl init`: the seed's Phase 1 (setup questions and confirmation table) as a terminal
//! dialogue, or non-interactively from `--set KEY=VALUE` and a preset. Writes a spec that
//! `arctl validate` accepts, after running the metric once to show the number it reads.
//!
//! The answers live in a TOML table (the draft) keyed exactly like the spec, so a preset,
//! `--set` and the dialogue all fill the same thing, and every question's default is the
//! draft's current value (which makes "edit" a second pass over the questions).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use toml::{Table, Value};

use super::presets::{self, Preset, Read};
use super::{ClientError, CmdResult};
use crate::cli::InitArgs;
use crate::spec::{self, Glob, MetricSpec, MetricTimeout, TimeMode};

/// Longest trial run of the metric when the spec gives no fixed timeout.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
    StrList,
    Repeats,
    /// An array of tables (`[[guard]]`, `[[proposer.param]]`): a table appends, an array replaces.
    Tables,
    Choice(&'static [&'static str]),
}

/// Every key of the spec, in the order the written file has them.
const KEYS: &[(&str, Kind)] = &[
    ("id", Kind::Str),
    ("repo", Kind::Str),
    ("base", Kind::Str),
    ("goal", Kind::Str),
    ("metric.command", Kind::Str),
    ("metric.regex", Kind::Str),
    ("metric.json", Kind::Str),
    ("metric.line", Kind::Int),
    (
        "metric.time",
        Kind::Choice(&["wall", "cpu", "instructions"]),
    ),
    ("metric.direction", Kind::Choice(&["lower", "higher"])),
    ("metric.timeout", Kind::Str),
    ("metric.repeats", Kind::Repeats),
    ("metric.min_effect", Kind::Str),
    ("metric.alpha", Kind::Float),
    ("scope.include", Kind::StrList),
    ("scope.exclude", Kind::StrList),
    ("guard", Kind::Tables),
    ("budget.max_experiments", Kind::Int),
    ("budget.max_wall", Kind::Str),
    ("limits.memory", Kind::Str),
    ("limits.cpu_time", Kind::Str),
    ("limits.cpus", Kind::Int),
    ("limits.measure", Kind::Choice(&["exclusive", "shared"])),
    (
        "proposer.kind",
        Kind::Choice(&["agent", "params", "patches"]),
    ),
    ("proposer.command", Kind::Str),
    ("proposer.prompt", Kind::Str),
    ("proposer.timeout", Kind::Str),
    ("proposer.dir", Kind::Str),
    ("proposer.param", Kind::Tables),
    ("proposer.strategy", Kind::Choice(&["hill-climb", "random"])),
    ("proposer.seed", Kind::Int),
    ("policy.simplicity", Kind::Bool),
    ("policy.web_search", Kind::Choice(&["yes", "ask", "no"])),
    ("policy.constraints", Kind::StrList),
];

const EXTRACTION_KEYS: [&str; 4] = ["metric.regex", "metric.json", "metric.line", "metric.time"];

fn kind_of(key: &str) -> Option<Kind> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_key(key: &str) -> ClientError {
    let best = KEYS
        .iter()
        .map(|(k, _)| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, _)| *d <= 3)
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    let all: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    ClientError::bad_input(format!(
        "--set {key}: unknown key{best}\n  keys: {}, guard.NAME (a guard's command)",
        all.join(", ")
    ))
}

/// A scalar's text as the user typed it (for string keys given `1` or `true`).
fn scalar_text(v: &Value, raw: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Datetime(_) => {
            Some(raw.to_string())
        }
        _ => None,
    }
}

/// Parse one `--set` value: TOML syntax, else the bare text as a string.
fn parse_value(raw: &str) -> Value {
    match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

/// Check and convert a value for `key`; the error names the key.
fn coerce(key: &str, kind: Kind, v: Value, raw: &str) -> Result<Value, ClientError> {
    let bad = |what: &str| ClientError::bad_input(format!("--set {key}={raw}: expected {what}"));
    Ok(match kind {
        Kind::Str => Value::String(scalar_text(&v, raw).ok_or_else(|| bad("a string"))?),
        Kind::Int => match v {
            Value::Integer(_) => v,
            _ => return Err(bad("a whole number")),
        },
        Kind::Float => match v {
            Value::Float(_) => v,
            Value::Integer(i) => Value::Float(i as f64),
            _ => return Err(bad("a number")),
        },
        Kind::Bool => match v {
            Value::Boolean(_) => v,
            Value::String(s) if matches!(s.as_str(), "yes" | "on") => Value::Boolean(true),
            Value::String(s) if matches!(s.as_str(), "no" | "off") => Value::Boolean(false),
            _ => return Err(bad("true or false")),
        },
        Kind::StrList => match v {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| scalar_text(i, &i.to_string()).map(Value::String))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("a list of strings"))?,
            ),
            other => Value::Array(vec![Value::String(scalar_text(&other, raw).ok_or_else(|| bad("a string or a list of strings"))?)]),
        },
        Kind::Repeats => match v {
            Value::Integer(_) => v,
            Value::String(s) if s == "auto" => Value::String(s),
            _ => return Err(bad("\"auto\" or a number of rounds")),
        },
        Kind::Tables => match v {
            Value::Table(_) => v,
            Value::Array(ref a) if a.iter().all(Value::is_table) => v,
            _ => return Err(bad("an inline table like {name = \"tests\", command = \"pytest -q\"} or a list of them")),
        },
        Kind::Choice(options) => {
            let s = scalar_text(&v, raw).unwrap_or_default().to_lowercase();
            if !options.contains(&s.as_str()) {
                return Err(bad(&format!("one of {}", options.join(", "))));
            }
            Value::String(s)
        }
    })
}

// ---------------------------------------------------------------------------------------
// The draft
// ---------------------------------------------------------------------------------------

/// The answers so far, as a spec-shaped TOML table.
#[derive(Debug, Clone, Default, PartialEq)]
struct Draft(Table);

impl Draft {
    fn get(&self, key: &str) -> Option<&Value> {
        let mut parts = key.split('.');
        let mut cur = self.0.get(parts.next()?)?;
        for p in parts {
            cur = cur.as_table()?.get(p)?;
        }
        Some(cur)
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    fn strings(&self, key: &str) -> Vec<String> {
        self.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn tables(&self, key: &str) -> Vec<Table> {
        self.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_table().cloned()).collect())
            .unwrap_or_default()
    }

    fn set(&mut self, key: &str, v: Value) {
        let (parent, last) = match key.rsplit_once('.') {
            Some((p, l)) => (Some(p), l),
            None => (None, key),
        };
        let mut t = &mut self.0;
        if let Some(p) = parent {
            for part in p.split('.') {
                let entry = t
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Table(Table::new()));
                if !entry.is_table() {
                    *entry = Value::Table(Table::new());
                }
                t = entry.as_table_mut().expect("just made a table");
            }
        }
        t.insert(last.to_string(), v);
    }

    fn remove(&mut self, key: &str) {
        let (parent, last) = match key.rsplit_once('.') {
            Some((p, l)) => (Some(p), l),
            None => (None, key),
        };
        let mut t = &mut self.0;
        if let Some(p) = parent {
            for part in p.split('.') {
                match t.get_mut(part).and_then(Value::as_table_mut) {
                    Some(next) => t = next,
                    None => return,
                }
            }
        }
        t.remove(last);
        // Drop tables left empty.
        if let Some(p) = parent {
            if self
                .get(p)
                .and_then(Value::as_table)
                .is_some_and(Table::is_empty)
            {
                self.remove(p);
            }
        }
    }

    fn set_str(&mut self, key: &str, s: &str) {
        self.set(key, Value::String(s.to_string()));
    }

    /// Set or clear an optional string key.
    fn set_opt(&mut self, key: &str, s: Option<&str>) {
        match s {
            Some(s) => self.set_str(key, s),
            None => self.remove(key),
        }
    }

    fn set_extraction(&mut self, key: Option<&str>, v: Option<Value>) {
        for k in EXTRACTION_KEYS {
            self.remove(k);
        }
        if let (Some(k), Some(v)) = (key, v) {
            self.set(k, v);
        }
    }

    fn apply_preset(&mut self, p: &Preset) {
        self.set_str("id", p.name);
        self.set_str("goal", p.goal);
        self.set_str("metric.command", p.command);
        match p.read {
            Read::Regex(r) => {
                self.set_extraction(Some("metric.regex"), Some(Value::String(r.into())))
            }
            Read::Json(j) => {
                self.set_extraction(Some("metric.json"), Some(Value::String(j.into())))
            }
            Read::Last => self.set_extraction(None, None),
        }
        self.set_str("metric.direction", p.direction);
        for (k, v) in p.extra {
            self.set(&format!("metric.{k}"), parse_value(v));
        }
    }

    /// Apply one `--set KEY=VALUE`.
    fn apply_set(&mut self, arg: &str) -> Result<(), ClientError> {
        let Some((key, raw)) = arg.split_once('=') else {
            return Err(ClientError::bad_input(format!(
                "--set {arg:?}: expected KEY=VALUE, e.g. --set metric.command=./bench.sh"
            )));
        };
        let key = key.trim();
        let raw = raw.trim();
        if let Some(name) = key.strip_prefix("guard.") {
            if name.is_empty() || name.contains('.') {
                return Err(unknown_key(key));
            }
            let mut guards: Vec<Table> = self
                .tables("guard")
                .into_iter()
                .filter(|g| g.get("name").and_then(Value::as_str) != Some(name))
                .collect();
            if !raw.is_empty() {
                let command =
                    scalar_text(&parse_value(raw), raw).unwrap_or_else(|| raw.to_string());
                let mut g = Table::new();
                g.insert("name".into(), Value::String(name.into()));
                g.insert("command".into(), Value::String(command));
                guards.push(g);
            }
            self.set_tables("guard", guards);
            return Ok(());
        }
        let kind = kind_of(key).ok_or_else(|| unknown_key(key))?;
        if raw.is_empty() {
            // `--set metric.regex=` clears a key (e.g. one a preset filled).
            self.remove(key);
            return Ok(());
        }
        let v = coerce(key, kind, parse_value(raw), raw)?;
        if EXTRACTION_KEYS.contains(&key) {
            self.set_extraction(Some(key), Some(v));
            return Ok(());
        }
        match (kind, v) {
            (Kind::StrList, Value::Array(new)) if !raw.trim_start().starts_with('[') => {
                // A single value appends: --set scope.include=a --set scope.include=b.
                let mut all: Vec<Value> = self
                    .get(key)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                all.extend(new);
                self.set(key, Value::Array(all));
            }
            (Kind::Tables, Value::Table(t)) => {
                let mut all = self.tables(key);
                all.push(t);
                self.set_tables(key, all);
            }
            (_, v) => self.set(key, v),
        }
        Ok(())
    }

    fn set_tables(&mut self, key: &str, tables: Vec<Table>) {
        if tables.is_empty() {
            self.remove(key);
        } else {
            self.set(
                key,
                Value::Array(tables.into_iter().map(Value::Table).collect()),
            );
        }
    }

    /// The metric section as the spec type (a placeholder direction when none is chosen yet).
    fn metric_spec(&self) -> Result<MetricSpec, String> {
        let mut m = self
            .get("metric")
            .and_then(Value::as_table)
            .cloned()
            .unwrap_or_default();
        m.entry("direction")
            .or_insert_with(|| Value::String("lower".into()));
        let spec: MetricSpec = Value::Table(m)
            .try_into()
            .map_err(|e: toml::de::Error| format!("[metric]: {}", e.message().trim()))?;
        if let Some(r) = &spec.regex {
            if r.0.captures_len() < 2 {
                return Err(format!("metric.regex {:?} has no capture group: put ( ) around the number, e.g. 'mean: ([0-9.]+)'", r.0.as_str()));
            }
        }
        Ok(spec)
    }

    fn kind(&self) -> &str {
        self.str("proposer.kind").unwrap_or("agent")
    }

    /// Required answers not given yet (non-interactive), with a hint each.
    fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self
            .str("metric.command")
            .is_none_or(|c| c.trim().is_empty())
        {
            out.push("metric.command (the shell command that prints the number)".to_string());
        }
        if self.str("metric.direction").is_none() {
            out.push("metric.direction (lower or higher)".to_string());
        }
        if self.strings("scope.include").is_empty() {
            out.push(
                "scope.include (globs of the files the run may edit, e.g. 'src/**')".to_string(),
            );
        }
        match self.kind() {
            "agent" if self.str("proposer.command").is_none() => out.push(
                "proposer.command (the agent, e.g. \"claude -p\"; or proposer.kind=params|patches)"
                    .to_string(),
            ),
            "patches" if self.str("proposer.dir").is_none() => {
                out.push("proposer.dir (the folder of *.patch files)".to_string())
            }
            "params" if self.tables("proposer.param").is_empty() => out.push(
                "proposer.param ({file=\"...\", regex='...(\\d+)...', values=[...]})".to_string(),
            ),
            _ => {}
        }
        out
    }

    /// The spec file's text: sections in the spec's order, a comment heading each.
    fn render(&self, file_name: &str) -> String {
        let mut out = format!(
            "# Autoresearch run spec, written by `arctl init`.\n# Check it: arctl validate {file_name}    Start it: arctl start {file_name}\n"
        );
        let mut top = String::new();
        for key in ["id", "repo", "base", "goal"] {
            if let Some(v) = self.get(key) {
                top.push_str(&format!("{key} = {v}\n"));
            }
        }
        out.push_str(&top);
        let section = |name: &str, comment: &str, skip: &[&str]| -> String {
            let Some(t) = self.get(name).and_then(Value::as_table) else {
                return String::new();
            };
            let prefix = format!("{name}.");
            let mut body = String::new();
            for (k, _) in KEYS.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                let short = &k[prefix.len()..];
                if skip.contains(&short) {
                    continue;
                }
                if let Some(v) = t.get(short) {
                    body.push_str(&format!("{short} = {v}\n"));
                }
            }
            if body.is_empty() {
                return String::new();
            }
            format!("\n# {comment}\n[{name}]\n{body}")
        };
        let array = |name: &str, tables: Vec<Table>| -> String {
            let mut s = String::new();
            for t in tables {
                s.push_str(&format!("\n[[{name}]]\n"));
                // Known keys in a readable order, then any others.
                let order = [
                    "name", "command", "timeout", "file", "regex", "values", "min", "max", "step",
                ];
                let mut keys: Vec<&String> = t.keys().collect();
                keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(order.len()));
                for k in keys {
                    s.push_str(&format!("{k} = {}\n", t[k.as_str()]));
                }
            }
            s
        };
        out.push_str(&section(
            "metric",
            "How the number is produced and read",
            &[],
        ));
        out.push_str(&section("scope", "Which files the run may edit", &[]));
        let guards = self.tables("guard");
        if !guards.is_empty() {
            out.push_str("\n# Guards: each must exit 0 for a change to be kept");
            out.push_str(&array("guard", guards));
        }
        out.push_str(&section("budget", "When the run ends", &[]));
        out.push_str(&section("limits", "Per-experiment resource limits", &[]));
        out.push_str(&section("proposer", "Who proposes each change", &["param"]));
        out.push_str(&array("proposer.param", self.tables("proposer.param")));
        out.push_str(&section(
            "policy",
            "Simplicity, web search and constraints handed to the agent",
            &[],
        ));
        out
    }

    fn extraction_text(&self) -> String {
        if let Some(r) = self.str("metric.regex") {
            format!("regex {r}")
        } else if let Some(j) = self.str("metric.json") {
            format!("JSON path {j}")
        } else if let Some(l) = self.get("metric.line").and_then(Value::as_integer) {
            format!("the number on line {l}")
        } else if let Some(t) = self.str("metric.time") {
            format!("arctl times the command ({t} time, seconds)")
        } else {
            "the last number printed".to_string()
        }
    }

    /// The seed's confirmation table (plus the lines arctl adds).
    fn table(&self, trial: Option<f64>) -> String {
        let list = |key: &str| {
            let l = self.strings(key);
            if l.is_empty() {
                "-".to_string()
            } else {
                l.join(", ")
            }
        };
        let mut constraints: Vec<String> = self
            .tables("guard")
            .iter()
            .map(|g| {
                format!(
                    "guard {}: `{}`",
                    g.get("name").and_then(Value::as_str).unwrap_or("?"),
                    g.get("command").and_then(Value::as_str).unwrap_or("?")
                )
            })
            .collect();
        constraints.extend(self.strings("policy.constraints"));
        let limits: Vec<String> = [
            ("memory", "limits.memory"),
            ("cpu time", "limits.cpu_time"),
            ("cores", "limits.cpus"),
        ]
        .iter()
        .filter_map(|(label, k)| {
            self.get(k).map(|v| {
                format!(
                    "{label} {}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                )
            })
        })
        .collect();
        let proposer = match self.kind() {
            "params" => format!(
                "params: {}",
                self.tables("proposer.param")
                    .iter()
                    .map(|p| {
                        let n = p
                            .get("name")
                            .or_else(|| p.get("file"))
                            .and_then(Value::as_str)
                            .unwrap_or("?");
                        let vals = p.get("values").map(|v| v.to_string()).unwrap_or_else(|| {
                            format!(
                                "{}..{} step {}",
                                p.get("min").map(|v| v.to_string()).unwrap_or_default(),
                                p.get("max").map(|v| v.to_string()).unwrap_or_default(),
                                p.get("step").map(|v| v.to_string()).unwrap_or_default()
                            )
                        });
                        format!("{n} in {vals}")
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "patches" => format!("patches from {}", self.str("proposer.dir").unwrap_or("?")),
            _ => format!("agent `{}`", self.str("proposer.command").unwrap_or("?")),
        };
        let simplicity = if self
            .get("policy.simplicity")
            .and_then(Value::as_bool)
            .unwrap_or(true)
        {
            "default: simpler beats marginally better; removing code while holding the metric is a win"
        } else {
            "off: a change is kept only for a significant metric gain"
        };
        let rows: Vec<(&str, String)> = vec![
            (
                "Run id",
                self.str("id").unwrap_or("(from the file name)").to_string(),
            ),
            ("Goal", self.str("goal").unwrap_or("-").to_string()),
            (
                "Metric command",
                self.str("metric.command").unwrap_or("-").to_string(),
            ),
            ("Metric extraction", self.extraction_text()),
            (
                "Direction",
                match self.str("metric.direction") {
                    Some("higher") => "higher is better".into(),
                    Some(_) => "lower is better".into(),
                    None => "-".into(),
                },
            ),
            (
                "Trial reading",
                trial
                    .map(|v| crate::run::journal::format_metric(Some(v)))
                    .unwrap_or_else(|| "-".into()),
            ),
            ("In-scope", list("scope.include")),
            ("Out-of-scope", list("scope.exclude")),
            (
                "Constraints",
                if constraints.is_empty() {
                    "-".into()
                } else {
                    constraints.join("; ")
                },
            ),
            (
                "Max experiments",
                self.get("budget.max_experiments")
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "unlimited".into()),
            ),
            (
                "Max wall time",
                self.str("budget.max_wall")
                    .unwrap_or("unlimited")
                    .to_string(),
            ),
            (
                "Limits",
                if limits.is_empty() {
                    "-".into()
                } else {
                    limits.join(", ")
                },
            ),
            ("Proposer", proposer),
            ("Simplicity policy", simplicity.to_string()),
            (
                "Web search",
                if self.kind() == "agent" {
                    self.str("policy.web_search").unwrap_or("no").to_string()
                } else {
                    "- (no agent)".into()
                },
            ),
        ];
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(9);
        let mut out = format!(
            "| {:<w$} | Value\n|{}|------\n",
            "Parameter",
            "-".repeat(w + 2)
        );
        for (k, v) in rows {
            out.push_str(&format!("| {k:<w$} | {v}\n"));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Checks against the repo: globs and the metric's trial run
// ---------------------------------------------------------------------------------------

struct Repo {
    root: PathBuf,
    tracked: Vec<String>,
}

fn open_repo(dir: &Path) -> Result<Repo, ClientError> {
    let (repo, info) = crate::git::open_repo(dir).map_err(|e| {
        ClientError::bad_input(format!(
            "{e:#}\n  arctl runs on a git repository: run `git init` and commit first, or --set repo=PATH"
        ))
    })?;
    let tracked = crate::run::setup::tracked_files(&repo);
    Ok(Repo {
        root: info.root,
        tracked,
    })
}

fn matcher(glob: &str) -> Result<globset::GlobMatcher, String> {
    Glob::parse(glob)?;
    Ok(globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map_err(|e| e.to_string())?
        .compile_matcher())
}

/// One line per glob: how many tracked files it matches. The bool: some include matches none.
fn scope_report(
    include: &[String],
    exclude: &[String],
    tracked: &[String],
) -> Result<(String, bool), String> {
    let mut out = String::new();
    let mut empty = false;
    let mut in_scope: Vec<&String> = Vec::new();
    for g in include {
        let m = matcher(g)?;
        let hits: Vec<&String> = tracked.iter().filter(|p| m.is_match(p.as_str())).collect();
        if hits.is_empty() {
            empty = true;
            out.push_str(&format!("  warning: {g} matches no tracked file (only new files could be edited; check the path)\n"));
        } else {
            let examples: Vec<&str> = hits.iter().take(3).map(|s| s.as_str()).collect();
            let more = if hits.len() > 3 { ", ..." } else { "" };
            out.push_str(&format!(
                "  {g}: {} tracked file{} ({}{more})\n",
                hits.len(),
                if hits.len() == 1 { "" } else { "s" },
                examples.join(", ")
            ));
        }
        for h in hits {
            if !in_scope.contains(&h) {
                in_scope.push(h);
            }
        }
    }
    let mut excluded = 0;
    for g in exclude {
        let m = matcher(g)?;
        let n = in_scope.iter().filter(|p| m.is_match(p.as_str())).count();
        excluded += n;
        out.push_str(&format!(
            "  not {g}: takes {n} of those out{}\n",
            if n == 0 { " (warning: none)" } else { "" }
        ));
    }
    if !exclude.is_empty() || include.len() > 1 {
        out.push_str(&format!(
            "  in scope: {} tracked files\n",
            in_scope.len().saturating_sub(excluded)
        ));
    }
    Ok((out, empty))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

struct Trial {
    value: f64,
    wall: Duration,
}

/// Run the metric once in the repo root; the number it reads, or why there is none.
fn trial(draft: &Draft, root: &Path, ui: &mut dyn Write) -> Result<Trial, String> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let m = draft.metric_spec()?;
    let timeout = match m.timeout {
        MetricTimeout::Fixed(d) => d,
        MetricTimeout::Factor(_) => TRIAL_TIMEOUT,
    };
    let _ = writeln!(
        ui,
        "running the metric once in {} (timeout {}; Ctrl-C stops it)...",
        root.display(),
        spec::format_duration(timeout)
    );
    let dir = std::env::temp_dir().join(format!("arctl-init-{}", std::process::id()));
    let mut cmd = crate::exec::CommandSpec::new(
        m.command.clone(),
        root,
        dir.join("stdout"),
        dir.join("stderr"),
        format!("arctl-init-{}", std::process::id()),
    );
    cmd.timeout = Some(timeout);
    cmd.count_instructions = m.time == Some(TimeMode::Instructions);
    let cancel = crate::exec::Cancel::new();
    // Ctrl-C cancels the trial (whose process group is not the terminal's), then quits.
    INTERRUPTED.store(false, Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    let old = unsafe { sigaction(Signal::SIGINT, &action) }.ok();
    let done = AtomicBool::new(false);
    let t0 = std::time::Instant::now();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if INTERRUPTED.load(Ordering::SeqCst) {
                    cancel.cancel();
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let r = crate::exec::run(&cmd, &cancel);
        done.store(true, Ordering::SeqCst);
        r
    });
    let wall = t0.elapsed();
    if let Some(old) = old {
        // SAFETY: restoring the previous disposition.
        let _ = unsafe { sigaction(Signal::SIGINT, &old) };
    }
    let stdout =
        String::from_utf8_lossy(&std::fs::read(dir.join("stdout")).unwrap_or_default()).to_string();
    let stderr =
        String::from_utf8_lossy(&std::fs::read(dir.join("stderr")).unwrap_or_default()).to_string();
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = result.map_err(|e| format!("could not run `{}`: {e}", m.command))?;
    let tail = || {
        let all = format!("{stdout}{stderr}");
        let lines: Vec<&str> = all.lines().collect();
        let t = lines[lines.len().saturating_sub(8)..].join("\n    ");
        if t.trim().is_empty() {
            "  (it printed nothing)".to_string()
        } else {
            format!("  its last output:\n    {t}")
        }
    };
    if outcome.exit == crate::exec::Exit::Cancelled {
        return Err("interrupted".into());
    }
    if !outcome.exit.success() {
        return Err(format!(
            "`{}` failed ({}) after {:.1}s\n{}",
            m.command,
            outcome.exit.describe(),
            wall.as_secs_f64(),
            tail()
        ));
    }
    let value = match m.extraction() {
        spec::Extraction::Time(TimeMode::Wall) => Ok(wall.as_secs_f64()),
        spec::Extraction::Time(TimeMode::Cpu) => Ok(outcome.cpu_ms as f64 / 1000.0),
        spec::Extraction::Time(TimeMode::Instructions) => outcome
            .instructions
            .map(|i| i as f64)
            .ok_or_else(|| "no instruction count".to_string()),
        how => crate::run::extract::extract(&how, &stdout, &stderr),
    };
    match value {
        Ok(value) => Ok(Trial { value, wall }),
        Err(why) => Err(format!(
            "`{}` ran, but no number could be read: {why}\n{}",
            m.command,
            tail()
        )),
    }
}

// ---------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------

/// A slug of the goal's first words: "Cut the ETL's wall time" -> "cut-the-etl-s-wall".
fn slug(goal: &str) -> Option<String> {
    let words: Vec<String> = goal
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(4)
        .map(str::to_lowercase)
        .collect();
    let s: String = words.join("-").chars().take(40).collect();
    spec::RunId::parse(s.trim_end_matches('-'))
        .ok()
        .map(|id| id.to_string())
}

/// `to` as seen from the folder `from` (both absolute): `/a/b`, `/a/c/d` -> `../c/d`.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to) = (spec::normalize(from), spec::normalize(to));
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

pub fn run(args: &InitArgs) -> CmdResult {
    let preset = match args.preset.as_deref() {
        None => None,
        Some("list") => {
            print!("{}", presets::list());
            return Ok(());
        }
        Some(name) => Some(presets::find(name).ok_or_else(|| {
            ClientError::bad_input(format!(
                "unknown preset {name:?}\n{}",
                presets::list().trim_end()
            ))
        })?),
    };
    let cwd =
        std::env::current_dir().map_err(|e| ClientError::failed(format!("current folder: {e}")))?;
    let out_abs = spec::normalize(&cwd.join(&args.output));
    if out_abs.exists() && !args.force {
        return Err(ClientError::bad_input(format!(
            "{} already exists; use --force to overwrite it, or -o to write another file",
            args.output.display()
        )));
    }
    let spec_dir = out_abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    if !spec_dir.is_dir() {
        return Err(ClientError::bad_input(format!(
            "{}: no such folder",
            spec_dir.display()
        )));
    }

    let mut draft = Draft::default();
    if let Some(p) = preset {
        draft.apply_preset(p);
    }
    for s in &args.set {
        draft.apply_set(s)?;
    }
    if draft.str("id").is_none() {
        if let Some(s) = draft.str("goal").and_then(slug) {
            draft.set_str("id", &s);
        }
    }
    if draft.str("repo").is_none() && git2::Repository::discover(&spec_dir).is_err() {
        // The spec goes outside any repo (-o ~/specs/x.toml): point it at the current one.
        if let Ok(r) = crate::git::open_repo(&cwd) {
            draft.set_str(
                "repo",
                &relative(&spec_dir, &r.1.root).display().to_string(),
            );
        }
    }
    let repo_dir = spec::normalize(&spec_dir.join(draft.str("repo").unwrap_or(".")));
    let repo = open_repo(&repo_dir)?;
    let file_name = args.output.display().to_string();

    let text = if args.non_interactive {
        non_interactive(&draft, &repo, &out_abs, &file_name)?
    } else {
        let stdin = std::io::stdin();
        let mut dlg = Dialogue {
            input: Box::new(stdin.lock()),
            ui: Box::new(std::io::stderr()),
            repo: &repo,
            spec_dir: &spec_dir,
            trial: None,
        };
        if let Some(p) = preset {
            let _ = writeln!(dlg.ui, "preset {}: {} (note: {})", p.name, p.about, p.note);
        }
        dlg.run(&mut draft, &out_abs, &file_name)?
    };
    write_spec(&out_abs, &text, args.force)?;
    let id = spec::parse(&text, &out_abs)
        .map(|r| r.id.to_string())
        .unwrap_or_default();
    println!("wrote {file_name} (run id {id})");
    println!("start it:  arctl start {file_name}");
    Ok(())
}

fn non_interactive(
    draft: &Draft,
    repo: &Repo,
    out_abs: &Path,
    file_name: &str,
) -> Result<String, ClientError> {
    let missing = draft.missing();
    if !missing.is_empty() {
        return Err(ClientError::bad_input(format!(
            "missing answers (non-interactive): give them with --set KEY=VALUE (or --preset NAME):\n  {}",
            missing.join("\n  ")
        )));
    }
    let (report, _) = scope_report(
        &draft.strings("scope.include"),
        &draft.strings("scope.exclude"),
        &repo.tracked,
    )
    .map_err(|e| ClientError::bad_input(format!("scope: {e}")))?;
    eprint!("scope:\n{report}");
    // Validate before spending time on the metric.
    let text = draft.render(file_name);
    spec::parse(&text, out_abs)
        .map_err(|e| ClientError::bad_input(format!("the spec would not be valid:\n{e}")))?;
    let t = trial(draft, &repo.root, &mut std::io::stderr()).map_err(|e| {
        ClientError::bad_input(format!(
            "the metric command gives no number, so nothing was written: {e}"
        ))
    })?;
    eprintln!(
        "read {} from the metric's output ({:.1}s)",
        crate::run::journal::format_metric(Some(t.value)),
        t.wall.as_secs_f64()
    );
    print!("{}", draft.table(Some(t.value)));
    Ok(text)
}

/// Write the file: never over an existing one unless `force`; never half-written.
fn write_spec(path: &Path, text: &str, force: bool) -> CmdResult {
    let fail = |e: std::io::Error| ClientError::failed(format!("writing {}: {e}", path.display()));
    let tmp = path.with_extension(format!("toml.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(fail)?;
    let r = if force {
        std::fs::rename(&tmp, path)
    } else {
        // A hard link fails when the name is taken: no race with another writer.
        std::fs::hard_link(&tmp, path).and_then(|_| std::fs::remove_file(&tmp))
    };
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ClientError::bad_input(format!(
                "{} already exists; use --force to overwrite it",
                path.display()
            ))
        } else {
            fail(e)
        }
    })
}

// ---------------------------------------------------------------------------------------
// The dialogue
// ---------------------------------------------------------------------------------------

struct Dialogue<'a> {
    input: Box<dyn BufRead + 'a>,
    ui: Box<dyn Write + 'a>,
    repo: &'a Repo,
    spec_dir: &'a Path,
    /// The last trial: what it ran (`trial_key`) and what it read.
    trial: Option<(String, f64)>,
}

type Answer<T> = Result<T, ClientError>;

/// What a trial's reading depends on: the command, how it is read, its timeout.
fn trial_key(d: &Draft) -> String {
    let keys = [
        "metric.command",
        "metric.regex",
        "metric.json",
        "metric.line",
        "metric.time",
        "metric.timeout",
    ];
    keys.iter()
        .map(|k| d.get(k).map(|v| v.to_string()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\u{1}")
}

/// Split a comma-separated answer (commas inside `{a,b}` belong to the glob).
fn split_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn is_none_word(s: &str) -> bool {
    matches!(
        s.trim().to_lowercase().as_str(),
        "none" | "-" | "no" | "unlimited"
    )
}

fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

impl Dialogue<'_> {
    fn say(&mut self, s: &str) {
        let _ = writeln!(self.ui, "{s}");
    }

    /// Ask; Enter takes the default. End of input quits without writing.
    fn ask(&mut self, q: &str, default: Option<&str>) -> Answer<String> {
        match default {
            Some(d) if !d.is_empty() => {
                let _ = write!(self.ui, "{q} [{d}]: ");
            }
            _ => {
                let _ = write!(self.ui, "{q}: ");
            }
        }
        let _ = self.ui.flush();
        let mut line = String::new();
        let n = self
            .input
            .read_line(&mut line)
            .map_err(|e| ClientError::failed(format!("reading the answer: {e}")))?;
        if n == 0 {
            let _ = writeln!(self.ui);
            return Err(ClientError::bad_input(
                "the input ended before the setup was complete; nothing written",
            ));
        }
        let line = line.trim();
        Ok(if line.is_empty() {
            default.unwrap_or("").to_string()
        } else {
            line.to_string()
        })
    }

    fn ask_required(&mut self, q: &str, default: Option<&str>) -> Answer<String> {
        loop {
            let a = self.ask(q, default)?;
            if !a.is_empty() {
                return Ok(a);
            }
            self.say("  an answer is needed here");
        }
    }

    fn yes_no(&mut self, q: &str, default: bool) -> Answer<bool> {
        loop {
            let a = self.ask(&format!("{q} (y/n)"), Some(if default { "y" } else { "n" }))?;
            match a.to_lowercase().as_str() {
                "y" | "yes" => return Ok(true),
                "n" | "no" => return Ok(false),
                _ => self.say("  please answer y or n"),
            }
        }
    }

    /// Pick one of `options` (key, explanation) by number, key or unique prefix.
    fn choose(&mut self, q: &str, options: &[(&str, &str)], default: &str) -> Answer<String> {
        self.say(q);
        for (i, (k, help)) in options.iter().enumerate() {
            self.say(&format!("  {}) {k:<8} {help}", i + 1));
        }
        loop {
            let a = self.ask("choice", Some(default))?.to_lowercase();
            if let Ok(n) = a.parse::<usize>() {
                if (1..=options.len()).contains(&n) {
                    return Ok(options[n - 1].0.to_string());
                }
            }
            let hits: Vec<&str> = options
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| k.starts_with(a.as_str()))
                .collect();
            if let Some(exact) = options.iter().find(|(k, _)| *k == a) {
                return Ok(exact.0.to_string());
            }
            if hits.len() == 1 && !a.is_empty() {
                return Ok(hits[0].to_string());
            }
            self.say(&format!(
                "  please answer 1-{} or one of: {}",
                options.len(),
                options
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    /// Ask for an optional value checked by `check`; "none" clears it.
    fn ask_checked(
        &mut self,
        q: &str,
        current: Option<String>,
        none: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Answer<Option<String>> {
        loop {
            let a = self.ask(q, Some(current.as_deref().unwrap_or(none)))?;
            if is_none_word(&a) {
                return Ok(None);
            }
            match check(&a) {
                Ok(()) => return Ok(Some(a)),
                Err(e) => self.say(&format!("  {e}")),
            }
        }
    }

    fn run(&mut self, d: &mut Draft, out_abs: &Path, file_name: &str) -> Answer<String> {
        self.say(&format!(
            "arctl init: set up an autoresearch run (the seed's Phase 1), written to {file_name}.\n\
             repo: {} ({} tracked files). Enter keeps the [default]; Ctrl-C quits without writing.",
            self.repo.root.display(),
            self.repo.tracked.len()
        ));
        loop {
            self.questions(d)?;
            let text = d.render(file_name);
            let trial = self.trial.as_ref().map(|(_, v)| *v);
            let _ = write!(self.ui, "\n{}\n", d.table(trial));
            match spec::parse(&text, out_abs) {
                Ok(_) => {}
                Err(e) => {
                    self.say(&format!(
                        "this spec would not be valid:\n{e}\nlet's go over the answers again."
                    ));
                    continue;
                }
            }
            let a = self.choose(
                &format!("Write {file_name}?"),
                &[
                    ("yes", "write it"),
                    ("edit", "go over the answers again"),
                    ("no", "quit without writing"),
                ],
                "yes",
            )?;
            match a.as_str() {
                "yes" => return Ok(text),
                "no" => return Err(ClientError::failed("not confirmed; nothing written")),
                _ => continue,
            }
        }
    }

    fn questions(&mut self, d: &mut Draft) -> Answer<()> {
        // 1.1 Goal
        self.say("\n1. Goal");
        let goal = self.ask(
            "What are you trying to improve? (e.g. execution time, memory, pytest pass rate, ty errors, query latency, val_loss)",
            d.str("goal"),
        )?;
        d.set_opt("goal", Some(goal.as_str()).filter(|g| !g.is_empty()));

        // 1.2 Metric: command, extraction, trial, direction
        self.say("\n2. Metric (see `arctl init --preset list` for ready-made ones)");
        loop {
            let cmd = self.ask_required(
                "What command produces the metric? (run with sh in the repo root)",
                d.str("metric.command"),
            )?;
            d.set_str("metric.command", &cmd);
            self.ask_extraction(d)?;
            if let Err(e) = d.metric_spec() {
                self.say(&format!("  {e}"));
                continue;
            }
            let current = trial_key(d);
            if let Some((ran, v)) = &self.trial {
                if *ran == current {
                    let v = *v;
                    self.say(&format!(
                        "  metric unchanged: it read {}",
                        crate::run::journal::format_metric(Some(v))
                    ));
                    break;
                }
            }
            match trial(d, &self.repo.root, &mut self.ui) {
                Ok(t) => {
                    self.say(&format!(
                        "  read {} from its output (took {:.1}s)",
                        crate::run::journal::format_metric(Some(t.value)),
                        t.wall.as_secs_f64()
                    ));
                    self.trial = Some((current, t.value));
                    break;
                }
                Err(e) if e == "interrupted" => {
                    return Err(ClientError {
                        code: 130,
                        message: "interrupted; nothing written".into(),
                    })
                }
                Err(e) => self.say(&format!(
                    "  {e}\n  That gives no number; let's fix the command or how it is read."
                )),
            }
        }
        let dir = self.choose(
            "Which direction is better?",
            &[
                ("lower", "lower is better (time, memory, errors, loss)"),
                (
                    "higher",
                    "higher is better (passes, coverage, accuracy, throughput)",
                ),
            ],
            d.str("metric.direction").unwrap_or("lower"),
        )?;
        d.set_str("metric.direction", &dir);

        // 1.3 Scope
        self.say("\n3. Scope: globs over repo paths, comma-separated (e.g. src/**, lib/*.py)");
        loop {
            let cur = d.strings("scope.include").join(", ");
            let inc = split_list(&self.ask_required(
                "Which files may be edited (in scope)?",
                Some(cur.as_str()).filter(|s| !s.is_empty()),
            )?);
            match scope_report(&inc, &[], &self.repo.tracked) {
                Err(e) => self.say(&format!("  {e}")),
                Ok((report, empty)) => {
                    let _ = write!(self.ui, "{report}");
                    if empty && !self.yes_no("  Keep it anyway?", false)? {
                        continue;
                    }
                    d.set(
                        "scope.include",
                        Value::Array(inc.into_iter().map(Value::String).collect()),
                    );
                    break;
                }
            }
        }
        loop {
            let cur = d.strings("scope.exclude").join(", ");
            let a = self.ask(
                "Which are off-limits inside those (out of scope)?",
                Some(if cur.is_empty() { "none" } else { cur.as_str() }),
            )?;
            let exc = if is_none_word(&a) {
                Vec::new()
            } else {
                split_list(&a)
            };
            match scope_report(&d.strings("scope.include"), &exc, &self.repo.tracked) {
                Err(e) => self.say(&format!("  {e}")),
                Ok((report, _)) => {
                    if !exc.is_empty() {
                        let _ = write!(self.ui, "{report}");
                        d.set(
                            "scope.exclude",
                            Value::Array(exc.into_iter().map(Value::String).collect()),
                        );
                    } else {
                        d.remove("scope.exclude");
                    }
                    break;
                }
            }
        }

        // 1.4 Constraints: guards (checked) and free text (for the agent)
        self.say("\n4. Constraints. Guards are commands that must exit 0 for a change to be kept (e.g. tests: pytest -q).");
        let mut guards = d.tables("guard");
        if !guards.is_empty() {
            for g in &guards {
                let line = format!(
                    "  guard {}: {}",
                    g.get("name").and_then(Value::as_str).unwrap_or("?"),
                    g.get("command").and_then(Value::as_str).unwrap_or("?")
                );
                self.say(&line);
            }
            if !self.yes_no("Keep these guards?", true)? {
                guards.clear();
            }
        }
        loop {
            let a = self.ask("Add a guard as NAME: COMMAND (empty when done)", None)?;
            if a.is_empty() {
                break;
            }
            let (name, command) = match a.split_once(':') {
                Some((n, c))
                    if !n.trim().is_empty() && !n.contains(' ') && !c.trim().is_empty() =>
                {
                    (n.trim().to_string(), c.trim().to_string())
                }
                _ => (
                    a.split_whitespace()
                        .next()
                        .unwrap_or("guard")
                        .rsplit('/')
                        .next()
                        .unwrap_or("guard")
                        .to_string(),
                    a.clone(),
                ),
            };
            let mut g = Table::new();
            g.insert("name".into(), Value::String(name));
            g.insert("command".into(), Value::String(command));
            guards.push(g);
        }
        d.set_tables("guard", guards);
        let cur = d.strings("policy.constraints").join(", ");
        let a = self.ask(
            "Other constraints for the agent, comma-separated (e.g. no new dependencies, public API stays stable)",
            Some(if cur.is_empty() { "none" } else { cur.as_str() }),
        )?;
        if is_none_word(&a) {
            d.remove("policy.constraints");
        } else {
            d.set(
                "policy.constraints",
                Value::Array(split_list(&a).into_iter().map(Value::String).collect()),
            );
        }

        // 1.5 Budget
        self.say("\n5. Budget");
        let cur = d.get("budget.max_experiments").map(|v| v.to_string());
        let a = self.ask_checked(
            "How many experiments? (a number, or unlimited)",
            cur,
            "unlimited",
            |s| match s.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(()),
                _ => Err("expected a number of at least 1, or unlimited".into()),
            },
        )?;
        match a {
            Some(n) => d.set(
                "budget.max_experiments",
                Value::Integer(n.parse::<i64>().unwrap_or(1)),
            ),
            None => d.remove("budget.max_experiments"),
        }
        let cur = d.str("budget.max_wall").map(str::to_string);
        let a = self.ask_checked(
            "Stop after how long? (e.g. 8h, or unlimited)",
            cur,
            "unlimited",
            |s| spec::parse_duration(s).map(|_| ()),
        )?;
        d.set_opt("budget.max_wall", a.as_deref());

        // Limits
        self.say("\n6. Limits per experiment (the whole process tree)");
        let cur = d.str("limits.memory").map(str::to_string);
        let a = self.ask_checked("Memory limit (e.g. 4GiB, or none)", cur, "none", |s| {
            spec::parse_size(s).map(|_| ())
        })?;
        d.set_opt("limits.memory", a.as_deref());
        let cur = d.str("limits.cpu_time").map(str::to_string);
        let a = self.ask_checked("CPU-time limit (e.g. 10m, or none)", cur, "none", |s| {
            spec::parse_duration(s).map(|_| ())
        })?;
        d.set_opt("limits.cpu_time", a.as_deref());
        let cur = d.get("limits.cpus").map(|v| v.to_string());
        let a = self.ask_checked(
            "Dedicated cores (e.g. 1, or none)",
            cur,
            "none",
            |s| match s.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(()),
                _ => Err("expected a number of at least 1, or none".into()),
            },
        )?;
        match a {
            Some(n) => d.set("limits.cpus", Value::Integer(n.parse::<i64>().unwrap_or(1))),
            None => d.remove("limits.cpus"),
        }

        // Proposer
        self.say("\n7. Proposer: who makes each change");
        let kind = self.choose(
            "Which proposer?",
            &[
                (
                    "agent",
                    "an AI coding agent command (claude -p, codex exec --full-auto, aider ...)",
                ),
                ("params", "search the values of parameters in files (no AI)"),
                (
                    "patches",
                    "try each *.patch file of a folder once, in name order (no AI)",
                ),
            ],
            d.kind(),
        )?;
        if kind == "agent" {
            d.remove("proposer.kind");
        } else {
            d.set_str("proposer.kind", &kind);
        }
        match kind.as_str() {
            "params" => self.ask_params(d)?,
            "patches" => self.ask_patches(d)?,
            _ => self.ask_agent(d)?,
        }

        // 1.4b Web search (an agent's)
        if kind == "agent" {
            self.say(
                "\n8. Web search: may the agent look up docs, papers and benchmarks for ideas?",
            );
            let a = self.choose(
                "Web search?",
                &[
                    ("yes", "search freely"),
                    ("ask", "propose each query before running it"),
                    ("no", "stay offline, codebase only"),
                ],
                d.str("policy.web_search").unwrap_or("no"),
            )?;
            if a == "no" {
                d.remove("policy.web_search");
            } else {
                d.set_str("policy.web_search", &a);
            }
        } else {
            d.remove("policy.web_search");
        }

        // 1.6 Simplicity
        self.say(
            "\n9. Simplicity policy. Default: simpler beats marginally better. Removing code while holding\n   \
             or improving the metric is a win; complexity has a cost weighed against the gain.",
        );
        let keep = d
            .get("policy.simplicity")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if self.yes_no(
            "Proceed with this policy? (n: keep a change only for a significant gain)",
            keep,
        )? {
            d.remove("policy.simplicity");
        } else {
            d.set("policy.simplicity", Value::Boolean(false));
        }

        // Run id
        let default_id = d
            .str("id")
            .map(str::to_string)
            .or_else(|| d.str("goal").and_then(slug));
        loop {
            let a = self.ask_required(
                "\nRun id (names the branch autoresearch/<id>)",
                default_id.as_deref(),
            )?;
            match spec::RunId::parse(&a) {
                Ok(_) => {
                    d.set_str("id", &a);
                    break;
                }
                Err(e) => self.say(&format!("  {e}")),
            }
        }
        Ok(())
    }

    fn ask_extraction(&mut self, d: &mut Draft) -> Answer<()> {
        let cur = EXTRACTION_KEYS
            .iter()
            .find(|k| d.get(k).is_some())
            .map(|k| k.trim_start_matches("metric."))
            .unwrap_or("last");
        let how = self.choose(
            "How is the number read from its output?",
            &[
                (
                    "regex",
                    "a regular expression whose first group is the number",
                ),
                ("json", "a dotted path into JSON output (results.0.mean)"),
                ("line", "the number on a given line (-1: the last line)"),
                ("last", "the last number printed"),
                ("time", "no number: arctl times the command"),
            ],
            cur,
        )?;
        match how.as_str() {
            "regex" => loop {
                let r = self.ask_required(
                    "Regex (one capture group around the number)",
                    d.str("metric.regex"),
                )?;
                match regex::Regex::new(&r) {
                    Ok(re) if re.captures_len() >= 2 => {
                        d.set_extraction(Some("metric.regex"), Some(Value::String(r)));
                        break;
                    }
                    Ok(_) => self.say("  it needs a capture group: put ( ) around the number, e.g. 'mean: ([0-9.]+)'"),
                    Err(e) => self.say(&format!("  not a valid regex: {e}")),
                }
            },
            "json" => {
                let j = self.ask_required(
                    "JSON path (dotted; numbers index arrays)",
                    d.str("metric.json"),
                )?;
                d.set_extraction(Some("metric.json"), Some(Value::String(j)));
            }
            "line" => loop {
                let cur = d
                    .get("metric.line")
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-1".into());
                match self
                    .ask("Line number (1 is the first, -1 the last)", Some(&cur))?
                    .parse::<i64>()
                {
                    Ok(n) if n != 0 => {
                        d.set_extraction(Some("metric.line"), Some(Value::Integer(n)));
                        break;
                    }
                    _ => self.say("  expected a non-zero whole number"),
                }
            },
            "time" => {
                let mut opts = vec![
                    ("wall", "wall-clock seconds"),
                    ("cpu", "CPU seconds of the process tree"),
                ];
                if crate::exec::instructions_supported().is_ok() {
                    opts.push(("instructions", "user-space instructions (least noisy)"));
                }
                let t =
                    self.choose("Which time?", &opts, d.str("metric.time").unwrap_or("wall"))?;
                d.set_extraction(Some("metric.time"), Some(Value::String(t)));
            }
            _ => d.set_extraction(None, None),
        }
        Ok(())
    }

    fn ask_agent(&mut self, d: &mut Draft) -> Answer<()> {
        let default = d.str("proposer.command").unwrap_or("claude -p").to_string();
        let cmd = self.ask_required(
            "Agent command (run in the run's worktree, prompt on stdin)",
            Some(&default),
        )?;
        let program = cmd.split_whitespace().next().unwrap_or("");
        if !on_path(program) {
            self.say(&format!(
                "  warning: `{program}` is not on PATH here; the daemon needs it on its PATH"
            ));
        }
        d.set_str("proposer.command", &cmd);
        d.remove("proposer.dir");
        d.remove("proposer.param");
        Ok(())
    }

    fn ask_patches(&mut self, d: &mut Draft) -> Answer<()> {
        loop {
            let dir = self.ask_required(
                "Folder of *.patch files (relative to the spec file)",
                Some(d.str("proposer.dir").unwrap_or("hypotheses")),
            )?;
            let path = self.spec_dir.join(&dir);
            if !path.is_dir() {
                self.say(&format!(
                    "  {}: no such folder; create it and put the patches in first",
                    path.display()
                ));
                continue;
            }
            let n = std::fs::read_dir(&path)
                .map(|r| {
                    r.filter_map(|e| e.ok())
                        .filter(|e| e.path().extension().is_some_and(|x| x == "patch"))
                        .count()
                })
                .unwrap_or(0);
            self.say(&format!(
                "  {n} patch file{} there",
                if n == 1 { "" } else { "s" }
            ));
            if n == 0 && !self.yes_no("  Use it anyway?", false)? {
                continue;
            }
            d.set_str("proposer.dir", &dir);
            d.remove("proposer.command");
            d.remove("proposer.param");
            return Ok(());
        }
    }

    fn ask_params(&mut self, d: &mut Draft) -> Answer<()> {
        let mut params = d.tables("proposer.param");
        if !params.is_empty() {
            self.say(&format!("  {} parameter(s) set", params.len()));
            if !self.yes_no("Keep them?", true)? {
                params.clear();
            }
        }
        let scope = crate::spec::ScopeSpec {
            include: d
                .strings("scope.include")
                .iter()
                .filter_map(|g| Glob::parse(g).ok())
                .collect(),
            exclude: d
                .strings("scope.exclude")
                .iter()
                .filter_map(|g| Glob::parse(g).ok())
                .collect(),
        };
        let scope = crate::git::scope::Scope::new(&scope);
        while params.is_empty() || self.yes_no("Add another parameter?", false)? {
            let file = loop {
                let f = self.ask_required("File holding the parameter (repo-relative)", None)?;
                let text = match std::fs::read_to_string(self.repo.root.join(&f)) {
                    Ok(t) => t,
                    Err(e) => {
                        self.say(&format!("  {f}: {e}"));
                        continue;
                    }
                };
                if !scope.allows(&f) {
                    self.say(&format!(
                        "  warning: {f} is not in scope; the run could not change it"
                    ));
                    continue;
                }
                break (f, text);
            };
            let regex = loop {
                let r = self.ask_required(
                    "Regex whose first group is the value (e.g. BATCH_SIZE = (\\d+))",
                    None,
                )?;
                match regex::Regex::new(&r) {
                    Ok(re) if re.captures_len() >= 2 => {
                        match re.captures(&file.1).and_then(|c| c.get(1)) {
                            Some(m) => {
                                self.say(&format!("  current value: {}", m.as_str()));
                                break r;
                            }
                            None => self.say(&format!("  it matches nothing in {}", file.0)),
                        }
                    }
                    Ok(_) => self.say("  it needs a capture group around the value"),
                    Err(e) => self.say(&format!("  not a valid regex: {e}")),
                }
            };
            let mut t = Table::new();
            t.insert("file".into(), Value::String(file.0));
            t.insert("regex".into(), Value::String(regex));
            loop {
                let a = self.ask_required(
                    "Values to try: comma-separated, or MIN..MAX step STEP",
                    None,
                )?;
                if let Some((range, step)) = a.split_once("step") {
                    let nums: Vec<Option<f64>> = range
                        .split("..")
                        .chain([step])
                        .map(|s| s.trim().parse::<f64>().ok())
                        .collect();
                    if let [Some(min), Some(max), Some(step)] = nums[..] {
                        if step > 0.0 && max >= min {
                            let num = |v: f64| {
                                if v.fract() == 0.0 {
                                    Value::Integer(v as i64)
                                } else {
                                    Value::Float(v)
                                }
                            };
                            t.insert("min".into(), num(min));
                            t.insert("max".into(), num(max));
                            t.insert("step".into(), num(step));
                            break;
                        }
                    }
                    self.say("  expected e.g. 8..256 step 8");
                    continue;
                }
                let vals: Vec<Value> = split_list(&a).iter().map(|v| parse_value(v)).collect();
                if vals.is_empty() {
                    continue;
                }
                t.insert("values".into(), Value::Array(vals));
                break;
            }
            params.push(t);
        }
        d.set_tables("proposer.param", params);
        d.remove("proposer.command");
        d.remove("proposer.dir");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_parse_and_coerce() {
        let mut d = Draft::default();
        d.apply_set("metric.command=./bench.sh --fast").unwrap();
        d.apply_set("metric.direction=Higher").unwrap();
        d.apply_set("budget.max_experiments=20").unwrap();
        d.apply_set("scope.include=src/**").unwrap();
        d.apply_set("scope.include=lib/{a,b}.py").unwrap();
        d.apply_set("goal=42").unwrap();
        d.apply_set("metric.regex='score: (\\d+)'").unwrap();
        d.apply_set("metric.json=results.0.mean").unwrap();
        d.apply_set("guard.tests=pytest -q").unwrap();
        d.apply_set("policy.simplicity=no").unwrap();
        assert_eq!(d.str("metric.command"), Some("./bench.sh --fast"));
        assert_eq!(d.str("metric.direction"), Some("higher"));
        assert_eq!(d.get("budget.max_experiments"), Some(&Value::Integer(20)));
        assert_eq!(d.strings("scope.include"), vec!["src/**", "lib/{a,b}.py"]);
        assert_eq!(d.str("goal"), Some("42"));
        // The later extraction replaces the earlier one.
        assert_eq!(d.get("metric.regex"), None);
        assert_eq!(d.str("metric.json"), Some("results.0.mean"));
        assert_eq!(d.tables("guard").len(), 1);
        assert_eq!(d.get("policy.simplicity"), Some(&Value::Boolean(false)));
        d.apply_set("scope.include=[\"x/**\"]").unwrap();
        assert_eq!(d.strings("scope.include"), vec!["x/**"]);
        d.apply_set("metric.json=").unwrap();
        assert_eq!(d.get("metric.json"), None);

        let e = d.apply_set("metric.comand=x").unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.message.contains("metric.comand")
                && e.message.contains("did you mean `metric.command`"),
            "{}",
            e.message
        );
        assert_eq!(
            d.apply_set("budget.max_experiments=lots").unwrap_err().code,
            2
        );
        assert!(d
            .apply_set("metric.direction=sideways")
            .unwrap_err()
            .message
            .contains("lower, higher"));
        assert!(d
            .apply_set("novalue")
            .unwrap_err()
            .message
            .contains("KEY=VALUE"));
    }

    #[test]
    fn rendered_draft_is_a_valid_spec() {
        let mut d = Draft::default();
        d.apply_preset(presets::find("python-runtime").unwrap());
        for s in [
            "scope.include=src/**",
            "scope.exclude=src/fixtures/**",
            "guard.tests=pytest -q",
            "proposer.command=claude -p",
            "budget.max_experiments=5",
            "limits.memory=4GiB",
            "policy.constraints=no new dependencies",
        ] {
            d.apply_set(s).unwrap();
        }
        let text = d.render("autoresearch.toml");
        let r = spec::parse(&text, Path::new("/tmp/x/autoresearch.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(r.id.as_str(), "python-runtime");
        assert_eq!(r.spec.metric.json.as_deref(), Some("results.0.mean"));
        assert_eq!(r.spec.guards[0].command, "pytest -q");
        assert!(
            text.find("[metric]").unwrap() < text.find("[scope]").unwrap(),
            "{text}"
        );
        let table = d.table(Some(1.5));
        assert!(
            table.contains("| Metric extraction") && table.contains("JSON path results.0.mean"),
            "{table}"
        );
        assert!(d.missing().is_empty());
        assert_eq!(Draft::default().missing().len(), 4);
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/c/d")),
            PathBuf::from("../c/d")
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b")),
            PathBuf::from(".")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a/b")),
            PathBuf::from("b")
        );
    }

    #[test]
    fn lists_and_slugs() {
        assert_eq!(
            split_list("src/**, lib/{a,b}.py ,"),
            vec!["src/**", "lib/{a,b}.py"]
        );
        assert_eq!(
            slug("Cut the ETL's wall time").as_deref(),
            Some("cut-the-etl-s")
        );
        assert_eq!(slug("!!"), None);
        let tracked: Vec<String> = ["src/a.py", "src/b.py", "src/fixtures/f.py", "README.md"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (r, empty) = scope_report(
            &["src/**".into(), "nope/**".into()],
            &["src/fixtures/**".into()],
            &tracked,
        )
        .unwrap();
        assert!(empty);
        assert!(
            r.contains("src/**: 3 tracked files")
                && r.contains("nope/** matches no tracked file")
                && r.contains("in scope: 2"),
            "{r}"
        );
    }
}
