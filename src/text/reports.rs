//! Human output of `arctl report`, `arctl merge` and `arctl cleanup`.

use std::fmt::Write;

use super::render::{results, table};
use crate::protocol::format::{count, format_metric, pct_or_dash as pct, short_commit as short};
use crate::protocol::{CleanupReport, MergeReport, MergeStatus, ResultsTable, RunReport};

/// `arctl report`: one Markdown section after another, each written by its own function.
pub fn report(r: &RunReport) -> String {
    let mut s = String::new();
    head(&mut s, r);
    experiments(&mut s, r);
    top_changes(&mut s, r);
    git_log(&mut s, r);
    failures(&mut s, r);
    review(&mut s, r);
    next_steps(&mut s, r);
    s
}

/// The crashed and rejected experiments, quoting what their failing command printed.
fn failures(s: &mut String, r: &RunReport) {
    if r.failures.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## Failures\n");
    for f in &r.failures {
        let _ = writeln!(
            s,
            "- experiment {} ({}): {}",
            f.experiment, f.status, f.reason
        );
        if let Some(out) = &f.output {
            let _ = writeln!(s, "  {out}:");
        }
        for l in &f.lines {
            let _ = writeln!(s, "      {l}");
        }
    }
    let _ = writeln!(
        s,
        "\nEach experiment's whole output: `arctl show {} N`.",
        r.run
    );
}

/// The title and the run's facts: goal, state, metric, branch.
fn head(s: &mut String, r: &RunReport) {
    let better = format!("{:?}", r.direction).to_lowercase();
    let _ = writeln!(s, "# Report: run {}", r.run);
    if !r.goal.is_empty() {
        let _ = writeln!(s, "goal      {}", r.goal);
    }
    let _ = writeln!(
        s,
        "state     {}{}",
        r.state.as_str(),
        r.stop_reason
            .as_ref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "metric    {} ({better} is better; {})",
        r.metric_command,
        match (&r.mode, r.cv) {
            (Some(m), Some(cv)) => format!("{m}, cv {:.2}%", cv * 100.0),
            (Some(m), None) => m.clone(),
            _ => "mode not measured yet".into(),
        }
    );
    let n = &r.noise;
    let noise = match (&n.message, n.baseline_cv, n.now) {
        (Some(m), _, _) => Some(format!(
            "{m}{}",
            n.since_experiment
                .map(|e| format!(" (since experiment {e}): its decisions took more rounds"))
                .unwrap_or_default()
        )),
        (None, Some(b), Some(now)) => Some(format!(
            "cv {:.1}% at the last decision, {:.1}% at baseline",
            now * 100.0,
            b * 100.0
        )),
        _ => None,
    };
    if let Some(text) = noise {
        let _ = writeln!(s, "noise     {text}");
    }
    let _ = writeln!(
        s,
        "branch    {} from {} at {}; best {}{}{}",
        r.branch,
        r.base,
        short(&r.base_commit),
        short(&r.best_commit),
        if r.merged { "; merged" } else { "" },
        if r.cleaned_up { "; cleaned up" } else { "" }
    );
}

/// The experiment table (as `arctl results` shows it) and the totals under it.
fn experiments(s: &mut String, r: &RunReport) {
    let _ = writeln!(s, "\n## Experiments\n");
    s.push_str(&results(&ResultsTable::new(
        r.run.clone(),
        r.direction,
        r.experiments.clone(),
        None,
    )));
    let t = &r.totals;
    let _ = writeln!(
        s,
        "\nTotal {}: {} kept, {} discarded, {} crashed, {} inspector-rejected",
        count(t.experiments as usize, "experiment"),
        t.kept,
        t.discarded,
        t.crashed,
        t.rejected
    );
    let _ = writeln!(s, "{}", headline(r));
    if let (Some(c), Some(k)) = (&r.confirmation, &r.chain) {
        if c.rounds > 1 {
            let _ = writeln!(
                s,
                "(the chain of the {} own estimates says {}; each won its own test and reads a little high, the confirmation was measured without selection: {})",
                if k.kept == 1 { "1 kept experiment's".to_string() } else { format!("{} kept experiments'", k.kept) },
                pct(Some(k.gain)),
                c.reason
            );
        }
    }
}

/// "Baseline → final: 0.1816 → 0.1634 (+10.00%), measured at the same time: final paired
/// confirmation, 12 rounds, 95% CI +7.00% to +13.10%".
fn headline(r: &RunReport) -> String {
    let how = match (r.change_source.as_deref(), &r.confirmation) {
        (Some("confirmation"), Some(c)) if c.rounds > 1 => {
            format!("final paired confirmation, {} rounds", c.rounds)
        }
        (Some("confirmation"), _) => "final confirmation (deterministic: one run each)".into(),
        (Some(_), _) => {
            "the chain of the kept experiments' paired estimates (no final confirmation)".into()
        }
        (None, _) => "nothing kept".into(),
    };
    let interval = r
        .change_interval
        .map(|[lo, hi]| format!(", 95% CI {} to {}", pct(Some(lo)), pct(Some(hi))))
        .unwrap_or_default();
    format!(
        "Baseline → final: {} → {} ({}), measured at the same time: {how}{interval}",
        format_metric(r.baseline),
        format_metric(r.final_value),
        pct(r.change)
    )
}

/// The largest kept gains, largest first.
fn top_changes(s: &mut String, r: &RunReport) {
    let _ = writeln!(s, "\n## Top changes\n");
    if r.top_changes.is_empty() {
        let _ = writeln!(s, "(no kept experiment)");
    }
    for (i, k) in r.top_changes.iter().enumerate() {
        let _ = writeln!(
            s,
            "{}. experiment {} ({}): {} — {}",
            i + 1,
            k.experiment,
            k.commit.as_deref().unwrap_or("-"),
            pct(k.gain),
            k.description
        );
    }
}

/// The kept commits as git shows them, and where the lines came from.
fn git_log(s: &mut String, r: &RunReport) {
    let _ = writeln!(
        s,
        "\n## Kept experiments: git log --oneline {}..{}\n",
        short(&r.base_commit),
        short(&r.best_commit)
    );
    for l in &r.git_log.lines {
        let _ = writeln!(s, "{l}");
    }
    if r.git_log.source == "journal" {
        let _ = writeln!(s, "(from the commits recorded in the journal)");
    }
    if let Some(n) = &r.git_log.note {
        let _ = writeln!(s, "({n})");
    }
}

/// The review: its summary, how sure each kept gain is, then what deserves a second look.
fn review(s: &mut String, r: &RunReport) {
    let _ = writeln!(s, "\n## Review\n");
    let _ = writeln!(s, "{}", r.review.summary);
    kept_gains(s, r);
    list(
        s,
        "Fragile gains (small against the noise or min_effect)",
        r.review.fragile.iter().map(|f| f.message.clone()).collect(),
    );
    list(
        s,
        "Ideas proposed but never tried",
        r.review.ideas_not_tried.clone(),
    );
    list(
        s,
        "Inspector-rejected experiments worth revisiting",
        r.review
            .revisit
            .iter()
            .map(|v| {
                format!(
                    "experiment {} ({}): {}{}",
                    v.experiment,
                    v.description,
                    v.reason,
                    v.gain
                        .filter(|g| *g > 0.0)
                        .map(|g| format!("; the metric had improved {}", pct(Some(g))))
                        .unwrap_or_default()
                )
            })
            .collect(),
    );
    list(
        s,
        "Signs of overfitting",
        r.review
            .overfitting
            .iter()
            .map(|f| f.message.clone())
            .collect(),
    );
}

/// How sure each kept gain is: the paired test's numbers (noisy), or one strict comparison.
fn kept_gains(s: &mut String, r: &RunReport) {
    if r.kept.is_empty() {
        return;
    }
    let _ = writeln!(s, "\nHow sure each kept gain is:");
    for k in &r.kept {
        let evidence = if k.evidence == "noisy" {
            format!(
                "{} confident{}{}",
                k.confidence
                    .map(|c| format!("{:.1}%", c * 100.0))
                    .unwrap_or_else(|| "-".into()),
                k.interval
                    .map(|i| format!(", 95% CI {} to {}", pct(Some(i[0])), pct(Some(i[1]))))
                    .unwrap_or_default(),
                k.rounds
                    .map(|n| format!(", {n} paired rounds"))
                    .unwrap_or_default()
            )
        } else {
            "deterministic: strictly better in one measurement".into()
        };
        let _ = writeln!(
            s,
            "- experiment {} {}: {}{}{}",
            k.experiment,
            pct(k.gain),
            evidence,
            if k.simplification {
                " (kept as a simplification)"
            } else {
                ""
            },
            k.fragile
                .as_ref()
                .map(|f| format!(" — FRAGILE: {f}"))
                .unwrap_or_default()
        );
    }
}

/// A titled bullet list; "- none" when it is empty.
fn list(s: &mut String, title: &str, items: Vec<String>) {
    let _ = writeln!(s, "\n{title}:");
    if items.is_empty() {
        let _ = writeln!(s, "- none");
    }
    for i in items {
        let _ = writeln!(s, "- {i}");
    }
}

/// A checklist: one `- [ ]` item per next step.
fn next_steps(s: &mut String, r: &RunReport) {
    let _ = writeln!(s, "\n## Next steps\n");
    for n in &r.next_steps {
        let _ = writeln!(s, "- [ ] {n}");
    }
}

pub fn merge(m: &MergeReport) -> String {
    let mut s = String::new();
    if !m.target.is_empty() {
        let _ = writeln!(
            s,
            "{}merge into {}{}{}",
            if m.dry_run { "dry run: " } else { "" },
            m.target,
            if m.squash { " (squash)" } else { "" },
            if m.repo.as_os_str().is_empty() {
                String::new()
            } else {
                format!(" in {}", m.repo.display())
            }
        );
    }
    let rows: Vec<Vec<String>> = m
        .rows
        .iter()
        .map(|r| {
            vec![
                if r.order == 0 {
                    "-".into()
                } else {
                    r.order.to_string()
                },
                r.run.clone(),
                pct(r.gain_alone),
                if r.remeasured && r.gain_on_top.is_none() && m.dry_run {
                    "(measured)".into()
                } else {
                    pct(r.gain_on_top)
                },
                r.status.as_str().to_string(),
                r.method.clone().unwrap_or_else(|| "-".into()),
                r.reason.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        s.push_str(&table(
            &[
                "ORDER",
                "RUN",
                "GAIN ALONE",
                "GAIN ON TOP",
                "RESULT",
                "METHOD",
                "WHY",
            ],
            &rows,
        ));
    }
    match (&m.before, &m.after) {
        (Some(b), Some(a)) if b != a => {
            let _ = writeln!(s, "{}: {} → {}", m.target, short(b), short(a));
        }
        (Some(b), _) if !m.dry_run => {
            let _ = writeln!(s, "{}: unchanged at {}", m.target, short(b));
        }
        _ => {}
    }
    let merged = m
        .rows
        .iter()
        .filter(|r| r.status == MergeStatus::Merged)
        .count();
    if !m.dry_run && merged > 0 {
        let _ = writeln!(
            s,
            "merged {}; branches stay until `arctl cleanup`",
            count(merged, "run")
        );
    }
    for n in &m.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

pub fn cleanup(c: &CleanupReport) -> String {
    let mut s = String::new();
    if c.runs.is_empty() {
        s.push_str("nothing to clean up\n");
    }
    for r in &c.runs {
        if let Some(e) = &r.error {
            let _ = writeln!(s, "{}: not cleaned up: {e}", r.run);
            continue;
        }
        let _ = writeln!(
            s,
            "{}: worktree {}; branch {}; {} deleted; exclude lines {}",
            r.run,
            if r.worktree_removed {
                format!("{} removed", r.worktree.display())
            } else {
                "already gone".into()
            },
            if r.branch_deleted {
                format!("{} deleted", r.branch)
            } else {
                match &r.branch_kept {
                    Some(why) => format!("{} {why}", r.branch),
                    None => format!("{} already gone", r.branch),
                }
            },
            count(r.refs_deleted, "ref"),
            if r.excludes_removed {
                "removed"
            } else {
                "left"
            }
        );
        for n in &r.notes {
            let _ = writeln!(s, "  {n}");
        }
    }
    if !c.runs.is_empty() {
        s.push_str(
            "results and journals stay in the state dir: `arctl results RUN`, `arctl report RUN`\n",
        );
    }
    s
}
