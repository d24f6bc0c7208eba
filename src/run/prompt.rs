//! The agent's prompt: the template (built in, or the spec's `proposer.prompt`) rendered
//! with the run's context. Pure.

use crate::run::journal::{ExperimentRecord, Status};

pub const DEFAULT_TEMPLATE: &str = include_str!("../../config/prompt.md");

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
