//! The dialogue: the terminal side of `arctl init`. The prompt primitives (ask, yes/no,
//! choose, a checked optional value) and the loop of questions, table and confirmation;
//! the questions themselves are in `questions` (the seed's sections) and `proposer`.

mod proposer;
mod questions;

use std::io::Write;
use std::path::Path;

use super::checks::Repo;
use super::draft::Draft;
use super::lines::{Lines, INTERRUPTED};
use crate::protocol::Error;
use crate::spec;

pub(super) struct Dialogue<'a> {
    pub(super) input: Box<dyn Lines + 'a>,
    pub(super) ui: Box<dyn Write + 'a>,
    pub(super) repo: &'a Repo,
    pub(super) spec_dir: &'a Path,
    /// The last trial: what it ran (`trial_key`) and what it read.
    pub(super) trial: Option<(String, f64)>,
}

type Answer<T> = Result<T, Error>;

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
        let prompt = match default {
            Some(d) if !d.is_empty() => format!("{q} [{d}]: "),
            _ => format!("{q}: "),
        };
        let line = match self.input.read(&prompt, &mut self.ui) {
            Ok(Some(line)) => line,
            Ok(None) => {
                let _ = writeln!(self.ui);
                return Err(Error::bad_input(
                    "the input ended before the setup was complete; nothing written",
                ));
            }
            Err(e) if e.to_string() == INTERRUPTED => {
                return Err(Error::interrupted("interrupted; nothing written"))
            }
            Err(e) => return Err(Error::failed(format!("reading the answer: {e}"))),
        };
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

    /// The questions, the table, and "write it?" until the answer is yes (or no).
    pub(super) fn run(&mut self, d: &mut Draft, out_abs: &Path, file_name: &str) -> Answer<String> {
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
            match spec::parse_for_host(&text, out_abs, &crate::host::facts()) {
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
                "no" => return Err(Error::failed("not confirmed; nothing written")),
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(
            split_list("src/**, lib/{a,b}.py ,"),
            vec!["src/**", "lib/{a,b}.py"]
        );
    }
}
