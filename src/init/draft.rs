//! The draft: the answers so far, as a TOML table keyed exactly like the spec. A preset,
//! `--set` and the dialogue all fill it; it renders the spec file's text and the seed's
//! confirmation table, and says which required answers are still missing.

use toml::{Table, Value};

use super::keys::{
    coerce, kind_of, parse_value, scalar_text, unknown_key, Kind, EXTRACTION_KEYS, KEYS,
};
use crate::init::presets::{Preset, Read};
use crate::protocol::Error;
use crate::spec::MetricSpec;

/// The answers so far, as a spec-shaped TOML table.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Draft(Table);

impl Draft {
    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        let mut parts = key.split('.');
        let mut cur = self.0.get(parts.next()?)?;
        for p in parts {
            cur = cur.as_table()?.get(p)?;
        }
        Some(cur)
    }

    pub(super) fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub(super) fn strings(&self, key: &str) -> Vec<String> {
        self.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn tables(&self, key: &str) -> Vec<Table> {
        self.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_table().cloned()).collect())
            .unwrap_or_default()
    }

    pub(super) fn set(&mut self, key: &str, v: Value) {
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

    pub(super) fn remove(&mut self, key: &str) {
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

    pub(super) fn set_str(&mut self, key: &str, s: &str) {
        self.set(key, Value::String(s.to_string()));
    }

    /// Set or clear an optional string key.
    pub(super) fn set_opt(&mut self, key: &str, s: Option<&str>) {
        match s {
            Some(s) => self.set_str(key, s),
            None => self.remove(key),
        }
    }

    pub(super) fn set_extraction(&mut self, key: Option<&str>, v: Option<Value>) {
        for k in EXTRACTION_KEYS {
            self.remove(k);
        }
        if let (Some(k), Some(v)) = (key, v) {
            self.set(k, v);
        }
    }

    pub(super) fn apply_preset(&mut self, p: &Preset) {
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
    pub(super) fn apply_set(&mut self, arg: &str) -> Result<(), Error> {
        let Some((key, raw)) = arg.split_once('=') else {
            return Err(Error::bad_input(format!(
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

    pub(super) fn set_tables(&mut self, key: &str, tables: Vec<Table>) {
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
    pub(super) fn metric_spec(&self) -> Result<MetricSpec, String> {
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

    pub(super) fn kind(&self) -> &str {
        self.str("proposer.kind").unwrap_or("agent")
    }

    /// Required answers not given yet (non-interactive), with a hint each.
    pub(super) fn missing(&self) -> Vec<String> {
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
    pub(super) fn render(&self, file_name: &str) -> String {
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
    pub(super) fn table(&self, trial: Option<f64>) -> String {
        let rows = self.rows(trial);
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

    /// The table's rows in the seed's order: (parameter, value).
    fn rows(&self, trial: Option<f64>) -> Vec<(&'static str, String)> {
        let list = |key: &str| {
            let l = self.strings(key);
            if l.is_empty() {
                "-".to_string()
            } else {
                l.join(", ")
            }
        };
        vec![
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
                    .map(|v| crate::protocol::format::format_metric(Some(v)))
                    .unwrap_or_else(|| "-".into()),
            ),
            ("In-scope", list("scope.include")),
            ("Out-of-scope", list("scope.exclude")),
            ("Constraints", self.constraints_text()),
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
            ("Limits", self.limits_text()),
            ("Proposer", self.proposer_text()),
            ("Simplicity policy", self.simplicity_text().to_string()),
            (
                "Web search",
                if self.kind() == "agent" {
                    self.str("policy.web_search").unwrap_or("no").to_string()
                } else {
                    "- (no agent)".into()
                },
            ),
        ]
    }

    /// The guards (checked) and the free-text constraints (for the agent), in one line.
    fn constraints_text(&self) -> String {
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
        if constraints.is_empty() {
            "-".into()
        } else {
            constraints.join("; ")
        }
    }

    fn limits_text(&self) -> String {
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
        if limits.is_empty() {
            "-".into()
        } else {
            limits.join(", ")
        }
    }

    fn proposer_text(&self) -> String {
        match self.kind() {
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
        }
    }

    fn simplicity_text(&self) -> &'static str {
        if self
            .get("policy.simplicity")
            .and_then(Value::as_bool)
            .unwrap_or(true)
        {
            "default: simpler beats marginally better; removing code while holding the metric is a win"
        } else {
            "off: a change is kept only for a significant metric gain"
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::init::presets;
    use crate::spec;

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
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.message.contains("metric.comand")
                && e.message.contains("did you mean `metric.command`"),
            "{}",
            e.message
        );
        assert_eq!(
            d.apply_set("budget.max_experiments=lots")
                .unwrap_err()
                .exit_code(),
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
}
