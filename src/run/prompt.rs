//! The agent's prompt: the template (built in, or the spec's `proposer.prompt`) rendered
//! with the run's context. Pure: the loop hands in what it read (the record, the journal,
//! the last diff).

use crate::protocol::format::format_metric;
use crate::run::journal::{self, ExperimentRecord, Status};
use crate::run::record::RunRecord;
use crate::spec::Extraction;

pub const DEFAULT_TEMPLATE: &str = include_str!("../../config/prompt.md");

/// A quick-fix call: which attempt, and the failure it must fix.
pub struct Fix {
    /// 1 or 2.
    pub attempt: u32,
    /// Why the metric failed and the last lines of its output.
    pub failure: String,
}

/// What one prompt is rendered from.
pub struct Context<'a> {
    pub rec: &'a RunRecord,
    pub records: &'a [ExperimentRecord],
    pub experiment: u32,
    /// The diff of the last experiment, or "(none yet)".
    pub last_diff: String,
    pub fix: Option<&'a Fix>,
}

/// The template's variables for one prompt.
pub fn variables(c: &Context) -> Vec<(&'static str, String)> {
    let s = &c.rec.spec.spec;
    let m = &s.metric;
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    };
    let or = |v: &str, none: &str| {
        if v.is_empty() {
            none.to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        ("run_id", c.rec.id.clone()),
        ("experiment", c.experiment.to_string()),
        ("goal", or(&s.goal, "(not stated: improve the metric)")),
        ("metric_command", m.command.clone()),
        ("extraction", extraction(&m.extraction())),
        ("direction", format!("{:?}", m.direction).to_lowercase()),
        ("min_effect", format!("{}%", m.min_effect.0 * 100.0)),
        ("baseline", format_metric(c.rec.baseline)),
        ("best", format_metric(c.rec.best)),
        (
            "scope_include",
            list(s.scope.include.iter().map(|g| g.0.clone()).collect()),
        ),
        (
            "scope_exclude",
            list(s.scope.exclude.iter().map(|g| g.0.clone()).collect()),
        ),
        ("constraints", constraints(&s.policy.constraints)),
        (
            "guards",
            list(
                s.guards
                    .iter()
                    .map(|g| format!("{} (`{}`)", g.name, g.command))
                    .collect(),
            ),
        ),
        (
            "web_search",
            format!("{:?}", s.policy.web_search).to_lowercase(),
        ),
        ("simplicity", simplicity(s.policy.simplicity)),
        ("results_file", c.rec.spec.tsv_name()),
        ("results", journal::render_tsv(c.records)),
        ("last_diff", c.last_diff.clone()),
        ("hints", hints(c.records)),
        ("failure", c.fix.map(quick_fix).unwrap_or_default()),
        ("notes", notes(&c.rec.notes)),
    ]
}

fn extraction(e: &Extraction) -> String {
    match e {
        Extraction::Regex(r) => format!("number read with regex `{}`", r.as_str()),
        Extraction::Json(p) => format!("number read from stdout JSON at `{p}`"),
        Extraction::Line(n) => format!("number read from output line {n}"),
        Extraction::LastNumber => "the last number printed".into(),
        Extraction::Time(t) => format!("arctl times the command ({t:?} time)").to_lowercase(),
    }
}

fn constraints(c: &[String]) -> String {
    if c.is_empty() {
        return "- (none beyond the guards)".to_string();
    }
    c.iter()
        .map(|c| format!("- {c}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The user's notes (`arctl note`), as a section of their own; nothing when there are none.
fn notes(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = notes.iter().map(|n| format!("- {n}")).collect();
    format!(
        "\n## Notes from the user (follow them)\n{}\n",
        lines.join("\n")
    )
}

fn simplicity(on: bool) -> String {
    if on {
        "simpler beats marginally faster; removing code while holding the metric is a win".into()
    } else {
        "off: only the metric counts".into()
    }
}

/// The quick-fix section: which attempt, and the failure.
fn quick_fix(f: &Fix) -> String {
    format!(
        "\n## QUICK FIX (attempt {})\nThe last change made the metric fail. Fix the error with a minimal edit (typo, import, simple error); do not start a new idea.\nLast lines of the failure:\n```\n{}\n```\n",
        f.attempt, f.failure
    )
}

/// Replace every `{{name}}` with its value; unknown names are left as they are.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match vars.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The seed's pattern hints, from the experiments so far.
pub fn hints(records: &[ExperimentRecord]) -> String {
    let mut out = Vec::new();
    let exps: Vec<&ExperimentRecord> = records
        .iter()
        .filter(|r| r.status != Status::Baseline)
        .collect();
    let discards = exps
        .iter()
        .rev()
        .take_while(|r| {
            matches!(
                r.status,
                Status::Discard | Status::InspectorReject | Status::Crash
            )
        })
        .count();
    if discards >= 3 {
        out.push(format!(
            "- {discards} experiments in a row were not kept: PIVOT to a different strategy or area."
        ));
    }
    let keeps: Vec<&&ExperimentRecord> = exps
        .iter()
        .rev()
        .take_while(|r| r.status == Status::Keep)
        .collect();
    if keeps.len() >= 2 {
        let areas: Vec<String> = keeps
            .iter()
            .flat_map(|r| r.changes.iter().map(|c| c.path.clone()))
            .collect();
        let mut uniq: Vec<String> = Vec::new();
        for a in areas {
            if !uniq.contains(&a) {
                uniq.push(a);
            }
        }
        out.push(format!(
            "- {} keeps in a row (in {}): PROBE DEEPER in this area.",
            keeps.len(),
            if uniq.is_empty() {
                "the same area".to_string()
            } else {
                uniq.join(", ")
            }
        ));
    }
    if exps
        .last()
        .map(|r| r.status == Status::Crash)
        .unwrap_or(false)
    {
        out.push(
            "- The last experiment crashed: look for a structural issue, not a parameter one."
                .into(),
        );
    }
    if out.is_empty() {
        "- No strong pattern yet.".into()
    } else {
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_known_and_keeps_unknown() {
        let r = render(
            "a {{x}} b {{ y }} {{z}} {{",
            &[("x", "1".into()), ("y", "2".into())],
        );
        assert_eq!(r, "a 1 b 2 {{z}} {{");
    }

    #[test]
    fn the_quick_fix_says_which_attempt() {
        for attempt in [1, 2] {
            let f = Fix {
                attempt,
                failure: "NameError: x".into(),
            };
            let text = quick_fix(&f);
            assert!(
                text.contains(&format!("QUICK FIX (attempt {attempt})")),
                "{text}"
            );
            assert!(text.contains("NameError: x"));
        }
    }

    #[test]
    fn default_template_has_the_seed_steps() {
        for s in [
            "QUESTION",
            "THINK",
            "SCORE",
            "REFLECT",
            "{{results}}",
            "{{hints}}",
            "{{goal}}",
        ] {
            assert!(DEFAULT_TEMPLATE.contains(s), "{s}");
        }
    }
}
