//! The agent's prompt: the template (built in, or the spec's `proposer.prompt`) rendered
//! with the run's context. Pure: the loop hands in what it read (the record, the journal,
//! the last diff). It tells the truth the daemon knows: each experiment's decision reason
//! verbatim and its paired estimate, the best's change measured at the same time as the
//! baseline, the noise and how many rounds a decision takes, the budget, whether the last
//! change was kept or reverted, and a quick-fix section only for a failure of the agent's
//! own change.

use crate::protocol::format::{format_metric, pct};
use crate::run::journal::{self, ExperimentRecord, Status};
use crate::run::record::RunRecord;
use crate::run::truth;
use crate::spec::Extraction;
use crate::stats::Mode;

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
    /// Time the run has spent running so far (for `max_wall`).
    pub elapsed_ms: u64,
}

/// The value of the template variable `name` for one prompt (None: no such variable).
/// Only what the template names is computed: some variables cover the whole history.
pub fn variable(c: &Context, name: &str) -> Option<String> {
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
    Some(match name {
        "run_id" => c.rec.id.clone(),
        "experiment" => c.experiment.to_string(),
        "goal" => or(&s.goal, "(not stated: improve the metric)"),
        "metric_command" => m.command.clone(),
        "extraction" => extraction(&m.extraction()),
        "direction" => format!("{:?}", m.direction).to_lowercase(),
        "min_effect" => format!("{}%", m.min_effect.0 * 100.0),
        "baseline" => format_metric(c.rec.baseline),
        "best" => best(c),
        "noise" => noise(c),
        "budget" => budget(c),
        "last_change" => last_change(c.records),
        "scope_include" => list(s.scope.include.iter().map(|g| g.0.clone()).collect()),
        "scope_exclude" => list(s.scope.exclude.iter().map(|g| g.0.clone()).collect()),
        "constraints" => constraints(&s.policy.constraints),
        "guards" => list(
            s.guards
                .iter()
                .map(|g| format!("{} (`{}`)", g.name, g.command))
                .collect(),
        ),
        "web_search" => format!("{:?}", s.policy.web_search).to_lowercase(),
        "simplicity" => simplicity(s.policy.simplicity),
        "results_file" => c.rec.spec.tsv_name(),
        "results" => results(c),
        "results_tsv" => journal::render_tsv(c.records),
        "last_diff" => c.last_diff.clone(),
        "hints" => hints_for(c.records, one_file_scope(c.rec)),
        "failure" => c.fix.map(quick_fix).unwrap_or_default(),
        "notes" => notes(&c.rec.notes),
        _ => return None,
    })
}

/// The best, in the baseline's terms, with its change measured at the same time.
fn best(c: &Context) -> String {
    let dir = c.rec.spec.spec.metric.direction;
    match (c.rec.baseline, truth::gain(c.records, dir)) {
        (Some(b), Some(g)) => format!(
            "{} in the baseline's terms: {} vs the baseline (95% CI {} to {}; {})",
            format_metric(Some(truth::apply(b, g.gain, dir))),
            pct(g.gain),
            pct(g.low),
            pct(g.high),
            if g.confirmed {
                "measured paired against the baseline at the end".to_string()
            } else {
                format!(
                    "the kept experiments' paired estimates combined; {} kept",
                    g.kept
                )
            }
        ),
        _ => format!(
            "{} (nothing kept yet: the baseline)",
            format_metric(c.rec.baseline)
        ),
    }
}

/// The noise and what a decision takes.
fn noise(c: &Context) -> String {
    let rec = c.rec;
    let rounds: Vec<usize> = c
        .records
        .iter()
        .filter(|r| r.status.is_row() && r.status != Status::Baseline)
        .filter_map(|r| r.decision.as_ref())
        .filter(|d| d.rounds > 1)
        .map(|d| d.rounds)
        .collect();
    let cfg = crate::run::measure::decision_config(rec);
    match &rec.mode {
        Some(Mode::Noisy { cv }) => {
            let mut out = format!(
                "noisy: cv {:.1}% at the baseline probe; each decision measures the best and your change side by side for {} to {} paired rounds",
                cv * 100.0,
                cfg.checkpoints.first().copied().unwrap_or(1),
                cfg.max_rounds()
            );
            if !rounds.is_empty() {
                let mut r = rounds.clone();
                r.sort_unstable();
                out.push_str(&format!(" (so far {} to {}, median {})", r[0], r[r.len() - 1], r[r.len() / 2]));
            }
            out.push_str(&format!(
                "; a change is kept when its gain is significant and at least {}% (smaller gains cannot be told from noise)",
                rec.spec.spec.metric.min_effect.0 * 100.0
            ));
            if let Some(m) = &rec.noise.message {
                out.push_str(&format!(". The machine is {m}: decisions take more rounds"));
            }
            out
        }
        Some(Mode::Deterministic) => {
            "deterministic (every run gives the same value): one run decides, any strict improvement is kept".into()
        }
        None => "not measured yet".into(),
    }
}

/// Where the run stands in its budget.
fn budget(c: &Context) -> String {
    let b = &c.rec.spec.spec.budget;
    let mut parts = Vec::new();
    match b.max_experiments {
        Some(max) => parts.push(format!(
            "experiment {} of {max} ({} left after this one)",
            c.experiment,
            max.saturating_sub(c.experiment)
        )),
        None => parts.push(format!(
            "experiment {} (no limit on experiments)",
            c.experiment
        )),
    }
    if let Some(w) = b.max_wall {
        parts.push(format!(
            "{} of {} running time used",
            crate::spec::format_duration(std::time::Duration::from_millis(c.elapsed_ms)),
            crate::spec::format_duration(w.0)
        ));
    }
    parts.join("; ")
}

/// What became of the experiment whose diff the prompt shows.
fn last_change(records: &[ExperimentRecord]) -> String {
    let Some(r) = records
        .iter()
        .rev()
        .filter(|r| r.status.is_row() && r.status != Status::Baseline)
        .find(|r| r.commit.is_some())
    else {
        return "No change has been measured yet.".into();
    };
    let what = match r.status {
        Status::Keep => "was KEPT: it is in the code you see now".to_string(),
        s => format!(
            "was {} and REVERTED: the worktree is back at the best, the diff below is not in the code",
            match s {
                Status::Crash => "a crash",
                Status::InspectorReject => "rejected by the inspector",
                _ => "discarded",
            }
        ),
    };
    format!(
        "Experiment {} ({}) {what}. Reason: {}",
        r.experiment,
        journal::clean_description(&r.description),
        r.reason
    )
}

/// How many of the latest experiments the prompt lists, and how many of the keeps before
/// them: a long run's prompt stays bounded (the results file holds every row).
const RECENT_SHOWN: usize = 40;
const KEEPS_SHOWN: usize = 20;

/// The experiments so far (the baseline, the latest [`RECENT_SHOWN`] and the
/// [`KEEPS_SHOWN`] latest keeps before them): status, its own paired estimate against the
/// best of its time, and the decision's reason verbatim.
fn results(c: &Context) -> String {
    let rows: Vec<&ExperimentRecord> = c.records.iter().filter(|r| r.status.is_row()).collect();
    let recent_from = rows.len().saturating_sub(RECENT_SHOWN);
    let mut keeps_left = KEEPS_SHOWN;
    let mut shown = vec![false; rows.len()];
    for (i, r) in rows.iter().enumerate().rev() {
        let earlier_keep = i < recent_from && r.status == Status::Keep && keeps_left > 0;
        keeps_left -= usize::from(earlier_keep);
        shown[i] = i >= recent_from || r.status == Status::Baseline || earlier_keep;
    }
    let left_out = shown.iter().filter(|s| !**s).count();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        if i == recent_from && left_out > 0 {
            out.push_str(&format!(
                "- ({left_out} earlier experiments not listed: every row is in `{}`)\n",
                c.rec.spec.tsv_name()
            ));
        }
        if !shown[i] {
            continue;
        }
        let commit = r
            .commit
            .as_deref()
            .map(crate::protocol::format::short_commit)
            .unwrap_or("-");
        let measured = match (&r.decision, r.status) {
            (Some(d), s) if s != Status::Crash && d.estimate.is_finite() => {
                let ci = d
                    .interval()
                    .filter(|[lo, hi]| lo != hi)
                    .map(|[lo, hi]| format!(" (95% CI {} to {})", pct(lo), pct(hi)))
                    .unwrap_or_default();
                let rounds = if d.rounds > 1 {
                    format!(", {} paired rounds", d.rounds)
                } else {
                    String::new()
                };
                format!(
                    "change {}{ci} vs the best of its time{rounds}",
                    pct(d.estimate)
                )
            }
            _ if r.status == Status::Baseline => format!("metric {}", format_metric(r.metric)),
            _ => "not measured".into(),
        };
        out.push_str(&format!(
            "- #{} {} {commit} \"{}\": {measured}; reason: {}\n",
            r.experiment,
            r.status.as_str(),
            journal::clean_description(&r.description),
            if r.reason.is_empty() { "-" } else { &r.reason }
        ));
    }
    out
}

/// A one-file scope: one include glob naming a file (no wildcard).
fn one_file_scope(rec: &RunRecord) -> bool {
    let inc = &rec.spec.spec.scope.include;
    inc.len() == 1 && !inc[0].0.contains(['*', '?', '[', '{'])
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

/// The quick-fix section (only for a failure of the candidate's own tree): which attempt,
/// and the failure.
fn quick_fix(f: &Fix) -> String {
    format!(
        "\n## QUICK FIX (attempt {})\nQuick fix {} of at most {}: your change (committed by arctl and still in the worktree) made the metric fail on your tree; the current best measured fine. Fix the error with a minimal edit (typo, import, simple error); do not start a new idea.\nLast lines of the failure:\n```\n{}\n```\n",
        f.attempt,
        f.attempt,
        crate::run::experiment_max_fix_attempts(),
        f.failure
    )
}

/// Replace every `{{name}}` with its value; unknown names are left as they are.
pub fn render(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match lookup(name) {
                    Some(v) => out.push_str(&v),
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
    hints_for(records, false)
}

/// The hints for a scope (a one-file scope has no other area to pivot to).
pub fn hints_for(records: &[ExperimentRecord], one_file: bool) -> String {
    let mut out = Vec::new();
    let exps: Vec<&ExperimentRecord> = records
        .iter()
        .filter(|r| r.status.is_row() && r.status != Status::Baseline)
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
        out.push(if one_file {
            format!(
                "- {discards} experiments in a row were not kept: PIVOT to a different strategy (the scope is one file: a different approach in it)."
            )
        } else {
            format!(
                "- {discards} experiments in a row were not kept: PIVOT to a different strategy or area."
            )
        });
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
        let r = render("a {{x}} b {{ y }} {{z}} {{", |n| match n {
            "x" => Some("1".into()),
            "y" => Some("2".into()),
            _ => None,
        });
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
            assert!(
                text.contains(&format!("{attempt} of at most 2: your change")),
                "{text}"
            );
            assert!(text.contains("NameError: x"));
        }
    }

    fn record(include: &str) -> RunRecord {
        let text = format!(
            "id = \"p\"\n[metric]\ncommand = \"./m\"\ntime = \"wall\"\ndirection = \"lower\"\n[scope]\ninclude = [\"{include}\"]\n[budget]\nmax_experiments = 10\n[proposer]\ncommand = \"agent\"\n"
        );
        let spec = crate::spec::parse(&text, std::path::Path::new("/tmp/p.toml")).unwrap();
        let mut rec = RunRecord::new(
            crate::run::record::Origin {
                id: "p".into(),
                spec,
                repo: "/tmp/r".into(),
                common_dir: "/tmp/r/.git".into(),
                worktree: "/tmp/r-p".into(),
                branch: "autoresearch/p".into(),
                base: "main".into(),
                base_commit: "0".repeat(40),
            },
            0,
        );
        rec.baseline = Some(0.2);
        rec.best = Some(0.237);
        rec.mode = Some(Mode::Noisy { cv: 0.023 });
        rec
    }

    fn exp(n: u32, status: Status, gain: f64, reason: &str) -> ExperimentRecord {
        ExperimentRecord {
            commit: Some(format!("{n:040}")),
            metric: Some(0.237),
            description: format!("idea {n}"),
            reason: reason.into(),
            decision: Some(crate::stats::Evaluation {
                verdict: crate::stats::Verdict::Discard,
                rounds: 12,
                estimate: gain,
                theta: -(-gain).ln_1p(),
                se: 0.01,
                df: 10.0,
                log_scale: true,
                ci_low: gain - 0.02,
                ci_high: gain + 0.02,
                ..crate::stats::Evaluation::default()
            }),
            ..ExperimentRecord::new(n, status, 0)
        }
    }

    #[test]
    fn the_prompt_tells_the_truth() {
        let rec = record("src/parse.py");
        let reason = "inconclusive after 12 rounds: gain +9.4% (95% CI +1.2% to +17.6%; 98.71% bound -0.5%, p=0.0210)";
        let records = vec![
            ExperimentRecord {
                metric: Some(0.2),
                ..ExperimentRecord::new(0, Status::Baseline, 0)
            },
            exp(
                1,
                Status::Keep,
                0.10,
                "gain +10.0% ... >= min_effect 1% after 5 rounds",
            ),
            exp(2, Status::Discard, 0.094, reason),
        ];
        let ctx = Context {
            rec: &rec,
            records: &records,
            experiment: 3,
            last_diff: "(diff)".into(),
            fix: None,
            elapsed_ms: 60_000,
        };
        let text = render(DEFAULT_TEMPLATE, |n| variable(&ctx, n));
        // Each experiment's reason verbatim and its paired estimate, not only raw values.
        assert!(text.contains(reason), "{text}");
        assert!(
            text.contains("change +9.40% (95% CI +7.40% to +11.40%)"),
            "{text}"
        );
        // The best from the chain (+10% of 0.2 = 0.18), not the raw 0.237 of the keep.
        assert!(
            text.contains("current best: 0.18 in the baseline's terms: +10.00%"),
            "{text}"
        );
        assert!(!text.contains("current best: 0.237"), "{text}");
        // Noise, rounds, budget, what became of the last change.
        assert!(text.contains("cv 2.3% at the baseline probe"), "{text}");
        assert!(text.contains("3 to 24 paired rounds"), "{text}");
        assert!(
            text.contains("experiment 3 of 10 (7 left after this one)"),
            "{text}"
        );
        assert!(
            text.contains("Experiment 2 (idea 2) was discarded and REVERTED"),
            "{text}"
        );
        // No quick-fix section outside a quick fix; commits are folded, as the daemon does.
        assert!(!text.contains("QUICK FIX"), "{text}");
        assert!(
            text.contains("commits you make are folded into it"),
            "{text}"
        );
        assert!(!text.contains("Do not commit"), "{text}");
    }

    #[test]
    fn a_long_run_lists_the_baseline_the_earlier_keeps_and_the_latest_experiments() {
        let rec = record("src/**");
        let mut records = vec![ExperimentRecord {
            metric: Some(0.2),
            ..ExperimentRecord::new(0, Status::Baseline, 0)
        }];
        for n in 1..=300 {
            let status = if n % 50 == 0 {
                Status::Keep
            } else {
                Status::Discard
            };
            records.push(exp(n, status, 0.01, "r"));
        }
        let ctx = Context {
            rec: &rec,
            records: &records,
            experiment: 301,
            last_diff: String::new(),
            fix: None,
            elapsed_ms: 0,
        };
        let text = results(&ctx);
        let listed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("- #"))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut expected: Vec<String> = ["0", "50", "100", "150", "200", "250"]
            .map(String::from)
            .to_vec();
        expected.extend((261..=300).map(|n| n.to_string()));
        assert_eq!(listed, expected, "{text}");
        assert!(
            text.contains(
                "(255 earlier experiments not listed: every row is in `autoresearch-p.tsv`)"
            ),
            "{text}"
        );
        // A short run lists every row and no omission line.
        let ctx = Context {
            records: &records[..30],
            ..ctx
        };
        assert_eq!(results(&ctx).lines().count(), 30);
    }

    #[test]
    fn a_one_file_scope_pivots_to_another_approach_not_another_area() {
        let discards: Vec<ExperimentRecord> = (1..=3)
            .map(|n| exp(n, Status::Discard, 0.0, "too small"))
            .collect();
        assert!(hints_for(&discards, true).contains("the scope is one file"));
        assert!(hints_for(&discards, false).contains("strategy or area"));
        assert!(one_file_scope(&record("src/parse.py")));
        assert!(!one_file_scope(&record("src/**")));
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
