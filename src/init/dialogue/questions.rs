//! The seed's setup questions, one method per section, in the order they are asked. Each
//! default is the draft's current value, so a second pass edits the answers.

use std::io::Write;

use toml::{Table, Value};

use super::{is_none_word, split_list, trial_key, Answer, Dialogue};
use crate::init::checks::{check_guard, GUARD_CHECK};
use crate::init::checks::{scope_report, trial};
use crate::init::command::slug;
use crate::init::draft::Draft;
use crate::init::keys::EXTRACTION_KEYS;
use crate::protocol::Error;
use crate::spec;

impl Dialogue<'_> {
    /// Every question, in the seed's order.
    pub(super) fn questions(&mut self, d: &mut Draft) -> Answer<()> {
        self.ask_goal(d)?;
        self.ask_metric(d)?;
        self.ask_scope(d)?;
        self.ask_constraints(d)?;
        self.ask_budget(d)?;
        self.ask_limits(d)?;
        let kind = self.ask_proposer(d)?;
        self.ask_web_search(d, &kind)?;
        self.ask_simplicity(d)?;
        self.ask_id(d)
    }

    /// 1.1 Goal.
    fn ask_goal(&mut self, d: &mut Draft) -> Answer<()> {
        self.say("\n1. Goal");
        let goal = self.ask(
            "What are you trying to improve? (e.g. execution time, memory, pytest pass rate, ty errors, query latency, val_loss)",
            d.str("goal"),
        )?;
        d.set_opt("goal", Some(goal.as_str()).filter(|g| !g.is_empty()));
        Ok(())
    }

    /// 1.2 Metric: command, extraction, trial, direction.
    fn ask_metric(&mut self, d: &mut Draft) -> Answer<()> {
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
            if self.trial_reads(d)? {
                break;
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
        Ok(())
    }

    /// Run the metric once, unless it ran unchanged before: does it give a number?
    fn trial_reads(&mut self, d: &Draft) -> Answer<bool> {
        let current = trial_key(d);
        if let Some((ran, v)) = &self.trial {
            if *ran == current {
                let v = *v;
                self.say(&format!(
                    "  metric unchanged: it read {}",
                    crate::protocol::format::format_metric(Some(v))
                ));
                return Ok(true);
            }
        }
        match trial(d, &self.repo.root, &mut self.ui) {
            Ok(t) => {
                self.say(&format!(
                    "  read {} from its output (took {:.1}s)",
                    crate::protocol::format::format_metric(Some(t.value)),
                    t.wall.as_secs_f64()
                ));
                self.trial = Some((current, t.value));
                Ok(true)
            }
            Err(e) if e == "interrupted" => Err(Error::interrupted("interrupted; nothing written")),
            Err(e) => {
                self.say(&format!(
                    "  {e}\n  That gives no number; let's fix the command or how it is read."
                ));
                Ok(false)
            }
        }
    }

    /// How the metric's number is read from the command's output.
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
                if crate::host::instructions_supported().is_ok() {
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

    /// 1.3 Scope: what may be edited, then what is off-limits inside it.
    fn ask_scope(&mut self, d: &mut Draft) -> Answer<()> {
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
        Ok(())
    }

    /// 1.4 Constraints: guards (checked) and free text (for the agent).
    fn ask_constraints(&mut self, d: &mut Draft) -> Answer<()> {
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
        while let Some(g) = self.ask_guard()? {
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
        Ok(())
    }

    /// One guard: `NAME: COMMAND` (a command alone gets its name asked for), run once on
    /// the current tree: one that fails at once is shown, and kept only when the user says
    /// so. None: no more guards.
    fn ask_guard(&mut self) -> Answer<Option<Table>> {
        loop {
            let a = self.ask("Add a guard as NAME: COMMAND (empty when done)", None)?;
            if a.is_empty() {
                return Ok(None);
            }
            let (name, command) = match a.split_once(':') {
                Some((n, c))
                    if !n.trim().is_empty() && !n.contains(' ') && !c.trim().is_empty() =>
                {
                    (n.trim().to_string(), c.trim().to_string())
                }
                _ => (
                    self.ask_required(&format!("Name for the guard `{a}` (e.g. tests)"), None)?,
                    a.clone(),
                ),
            };
            match check_guard(&command, &self.repo.root) {
                Ok(true) => self.say(&format!("  guard {name} passes on the current tree")),
                Ok(false) => self.say(&format!(
                    "  guard {name} still runs after {}s; not waited for",
                    GUARD_CHECK.as_secs()
                )),
                Err(e) if e == "interrupted" => {
                    return Err(Error::interrupted("interrupted; nothing written"))
                }
                Err(e) => {
                    self.say(&format!(
                        "  {e}\n  a guard must pass on the base, or the run stops at its baseline"
                    ));
                    if !self.yes_no("Keep it anyway?", false)? {
                        continue;
                    }
                }
            }
            let mut g = Table::new();
            g.insert("name".into(), Value::String(name));
            g.insert("command".into(), Value::String(command));
            return Ok(Some(g));
        }
    }

    /// 1.5 Budget.
    fn ask_budget(&mut self, d: &mut Draft) -> Answer<()> {
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
        Ok(())
    }

    /// Limits per experiment.
    fn ask_limits(&mut self, d: &mut Draft) -> Answer<()> {
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
        Ok(())
    }

    /// 1.4b Web search (an agent's).
    fn ask_web_search(&mut self, d: &mut Draft, kind: &str) -> Answer<()> {
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
        Ok(())
    }

    /// 1.6 Simplicity.
    fn ask_simplicity(&mut self, d: &mut Draft) -> Answer<()> {
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
        Ok(())
    }

    /// Run id.
    fn ask_id(&mut self, d: &mut Draft) -> Answer<()> {
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
                Err(e) => match slug(&a) {
                    Some(s) => self.say(&format!("  {e}; try {s:?}")),
                    None => self.say(&format!("  {e}")),
                },
            }
        }
        Ok(())
    }
}
