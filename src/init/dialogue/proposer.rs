//! The proposer's questions: which kind, then what that kind needs (an agent's command, a
//! folder of patches, or parameters in files with the values to try).

use toml::{Table, Value};

use super::{on_path, split_list, Answer, Dialogue};
use crate::init::draft::Draft;
use crate::init::keys::parse_value;
use crate::spec::Glob;

impl Dialogue<'_> {
    /// Who makes each change; then that proposer's own questions. Returns the kind.
    pub(super) fn ask_proposer(&mut self, d: &mut Draft) -> Answer<String> {
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
        Ok(kind)
    }

    /// An AI coding agent: its command, with a warning when it is not on PATH here.
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

    /// A folder of `*.patch` files, tried once each.
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

    /// Parameters in files and the values to try (no AI).
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
            let file = self.ask_param_file(|f| scope.allows(f))?;
            let regex = self.ask_param_regex(&file)?;
            let mut t = Table::new();
            t.insert("file".into(), Value::String(file.0));
            t.insert("regex".into(), Value::String(regex));
            self.ask_param_values(&mut t)?;
            params.push(t);
        }
        d.set_tables("proposer.param", params);
        d.remove("proposer.command");
        d.remove("proposer.dir");
        Ok(())
    }

    /// A readable, in-scope file: its path and its text.
    fn ask_param_file(&mut self, in_scope: impl Fn(&str) -> bool) -> Answer<(String, String)> {
        loop {
            let f = self.ask_required("File holding the parameter (repo-relative)", None)?;
            let text = match std::fs::read_to_string(self.repo.root.join(&f)) {
                Ok(t) => t,
                Err(e) => {
                    self.say(&format!("  {f}: {e}"));
                    continue;
                }
            };
            if !in_scope(&f) {
                self.say(&format!(
                    "  warning: {f} is not in scope; the run could not change it"
                ));
                continue;
            }
            return Ok((f, text));
        }
    }

    /// A regex whose first group matches the value in the file (shown to the user).
    fn ask_param_regex(&mut self, file: &(String, String)) -> Answer<String> {
        loop {
            let r = self.ask_required(
                "Regex whose first group is the value (e.g. BATCH_SIZE = (\\d+))",
                None,
            )?;
            match regex::Regex::new(&r) {
                Ok(re) if re.captures_len() >= 2 => {
                    match re.captures(&file.1).and_then(|c| c.get(1)) {
                        Some(m) => {
                            self.say(&format!("  current value: {}", m.as_str()));
                            return Ok(r);
                        }
                        None => self.say(&format!("  it matches nothing in {}", file.0)),
                    }
                }
                Ok(_) => self.say("  it needs a capture group around the value"),
                Err(e) => self.say(&format!("  not a valid regex: {e}")),
            }
        }
    }

    /// The values to try into `t`: a list (`values`) or a range (`min`, `max`, `step`).
    fn ask_param_values(&mut self, t: &mut Table) -> Answer<()> {
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
                        return Ok(());
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
            return Ok(());
        }
    }
}
