//! `arctl report`: the seed's Phase 4 for one run, from its record and journal (so it works
//! after `arctl cleanup`): the experiment table, totals, baseline → final, the top changes,
//! the git log of the kept experiments (4.1), a run-level review as far as the data allows
//! (4.1b) and next steps as a checklist (4.3).
//!
//! The JSON shape (`arctl report RUN --json`) is [`RunReport`]; fields are only ever added.

use std::collections::BTreeSet;

use crate::git;
use crate::ops::results::result_rows;
use crate::protocol::format::{count, pct, short_commit};
use crate::protocol::{
    FailureQuote, Flag, GitLog, KeptChange, ResultRow, Review, Revisit, RunReport, Totals,
};
use crate::run::journal::{clean_description, ExperimentRecord, Status};
use crate::run::record::{RunPaths, RunRecord};
use crate::run::truth;
use crate::stats::Mode;

fn totals_kept(records: &[ExperimentRecord]) -> usize {
    records.iter().filter(|r| r.status == Status::Keep).count()
}

/// Build the report of a run from its record and journal (and its repo, for the git log).
pub fn build(rec: &RunRecord, paths: &RunPaths, records: &[ExperimentRecord]) -> RunReport {
    let spec = &rec.spec.spec;
    let direction = spec.metric.direction;
    let min_effect = spec.metric.min_effect.0;
    let rows = result_rows(records, direction);
    let (mode, cv) = mode_and_cv(rec);
    let totals = totals(records);
    let baseline = records
        .iter()
        .find(|r| r.status == Status::Baseline)
        .and_then(|r| r.metric)
        .or(rec.baseline);
    // Same-time comparisons only: the confirmation, else the chain of kept estimates.
    let gain = truth::gain(records, direction);
    let change = match gain {
        Some(g) => Some(g.gain).filter(|g| g.is_finite()),
        None if totals_kept(records) == 0 => baseline.map(|_| 0.0),
        None => None,
    };
    let final_value = match (baseline, change) {
        (Some(b), Some(c)) => Some(truth::apply(b, c, direction)),
        _ => None,
    };

    let kept = kept_changes(records, &rows, cv, min_effect);
    let top = top_changes(&kept);

    let git_log = git_log(rec, records);
    let fragile = fragile_flags(&kept);
    let ideas = ideas_not_tried(records);
    let revisit = revisit(records, &rows);
    let overfitting = overfitting(records, &rows, min_effect);
    let summary = summary(
        &totals,
        baseline,
        final_value,
        change,
        &kept,
        &fragile,
        &overfitting,
    );

    let mut report = RunReport {
        run: rec.id.clone(),
        goal: spec.goal.clone(),
        state: rec.state(),
        stop_reason: rec.stop_reason.clone(),
        metric_command: spec.metric.command.clone(),
        direction,
        mode,
        cv,
        min_effect,
        repo: rec.repo.clone(),
        worktree: rec.worktree.clone(),
        branch: rec.branch.clone(),
        base: rec.base.clone(),
        base_commit: rec.base_commit.clone(),
        best_commit: rec.best_commit.clone(),
        merged: rec.merged,
        cleaned_up: rec.cleaned_up,
        experiments: rows,
        totals,
        baseline,
        final_value,
        change,
        change_interval: gain.map(|g| [g.low, g.high]).filter(|i| i[0] != i[1]),
        change_source: gain.map(|g| g.source().to_string()),
        chain: truth::chain_gain(records, direction),
        confirmation: truth::confirmation(records).and_then(|c| c.decision.clone()),
        noise: rec.noise.clone(),
        top_changes: top,
        kept,
        git_log,
        review: Review {
            summary,
            fragile,
            ideas_not_tried: ideas,
            revisit,
            overfitting,
        },
        next_steps: Vec::new(),
        failures: failures(paths, records),
    };
    report.next_steps = next_steps(&report, branch_exists(rec));
    report
}

/// The run's measurement mode as the report names it, and the noise (cv) of a noisy one.
fn mode_and_cv(rec: &RunRecord) -> (Option<String>, Option<f64>) {
    match &rec.mode {
        Some(Mode::Deterministic) => (Some("deterministic".to_string()), None),
        Some(Mode::Noisy { cv }) => (Some("noisy".to_string()), Some(*cv)),
        None => (None, None),
    }
}

/// The experiments counted by outcome (the baseline and the confirmation are not experiments).
fn totals(records: &[ExperimentRecord]) -> Totals {
    let mut totals = Totals::default();
    for r in records {
        match r.status {
            Status::Baseline | Status::Confirmation => continue,
            Status::Keep => totals.kept += 1,
            Status::Discard => totals.discarded += 1,
            Status::Crash => totals.crashed += 1,
            Status::InspectorReject => totals.rejected += 1,
        }
        totals.experiments += 1;
    }
    totals
}

/// The change each kept experiment made, in journal order.
fn kept_changes(
    records: &[ExperimentRecord],
    rows: &[ResultRow],
    cv: Option<f64>,
    min_effect: f64,
) -> Vec<KeptChange> {
    records
        .iter()
        .zip(rows)
        .filter(|(r, _)| r.status == Status::Keep)
        .map(|(r, row)| kept_change(r, row, cv, min_effect))
        .collect()
}

/// The three kept changes with the largest gains (ties: the earlier experiment first).
fn top_changes(kept: &[KeptChange]) -> Vec<KeptChange> {
    let mut top: Vec<KeptChange> = kept.iter().filter(|k| k.gain.is_some()).cloned().collect();
    top.sort_by(|a, b| {
        b.gain
            .unwrap_or(0.0)
            .total_cmp(&a.gain.unwrap_or(0.0))
            .then(a.experiment.cmp(&b.experiment))
    });
    top.truncate(3);
    top
}

/// A review flag for each kept change that looks fragile, saying why.
fn fragile_flags(kept: &[KeptChange]) -> Vec<Flag> {
    kept.iter()
        .filter_map(|k| {
            k.fragile.as_ref().map(|why| Flag {
                experiment: Some(k.experiment),
                message: format!("experiment {} ({}): {why}", k.experiment, k.description),
            })
        })
        .collect()
}

/// The most failures quoted (the latest ones).
const MAX_FAILURES: usize = 10;

/// The crashed and rejected experiments (and discards a guard decided), with what their
/// failing command printed.
fn failures(paths: &RunPaths, records: &[ExperimentRecord]) -> Vec<FailureQuote> {
    let failed: Vec<&ExperimentRecord> = records
        .iter()
        .filter(|r| match r.status {
            Status::Crash | Status::InspectorReject => true,
            Status::Discard => r.reason.contains("guard"),
            _ => false,
        })
        .collect();
    failed[failed.len().saturating_sub(MAX_FAILURES)..]
        .iter()
        .map(|r| {
            let quote = match r.status {
                // What the inspector saw is its reason; a command's output says nothing more.
                Status::InspectorReject => None,
                _ => super::show::failure_lines(&paths.experiment_output(r.experiment)),
            };
            let (output, lines) = quote.map_or((None, Vec::new()), |(o, l)| (Some(o), l));
            FailureQuote {
                experiment: r.experiment,
                status: r.status.as_str().to_string(),
                reason: r.reason.clone(),
                output,
                lines,
            }
        })
        .collect()
}

fn kept_change(
    r: &ExperimentRecord,
    row: &ResultRow,
    cv: Option<f64>,
    min_effect: f64,
) -> KeptChange {
    let d = r.decision.as_ref();
    let noisy = d.map(|d| d.rounds > 1).unwrap_or(false);
    let gain = d
        .filter(|_| noisy)
        .map(|d| d.estimate)
        .filter(|g| g.is_finite())
        .or(row.change);
    let simplification = d.map(|d| d.simplification).unwrap_or(false);
    let fragile = if simplification {
        None
    } else if noisy {
        let d = d.expect("noisy has a decision");
        let noise = cv.unwrap_or(0.0);
        match gain {
            Some(g) if noise > 0.0 && g < 2.0 * noise => Some(format!(
                "its gain {} is less than twice the metric's noise (cv {:.2}%)",
                pct(g),
                noise * 100.0
            )),
            _ if d.lower.is_finite() && d.lower < min_effect => Some(format!(
                "the lower bound of its gain ({}) is under min_effect ({:.2}%)",
                pct(d.lower),
                min_effect * 100.0
            )),
            _ => None,
        }
    } else {
        match gain {
            Some(g) if g < min_effect => Some(format!(
                "its gain {} is below min_effect ({:.2}%): real on this input, but small",
                pct(g),
                min_effect * 100.0
            )),
            _ => None,
        }
    };
    KeptChange {
        experiment: r.experiment,
        commit: r.commit.as_deref().map(|c| short_commit(c).to_string()),
        description: clean_description(&r.description),
        metric: r.metric,
        gain,
        evidence: if noisy { "noisy" } else { "deterministic" }.into(),
        confidence: d
            .filter(|_| noisy)
            .map(|d| 1.0 - d.p_value)
            .filter(|c| c.is_finite()),
        interval: d.filter(|_| noisy).and_then(|d| {
            d.interval()
                .or(Some([d.lower, d.upper]).filter(|i| i[0].is_finite() && i[1].is_finite()))
        }),
        rounds: d.filter(|_| noisy).map(|d| d.rounds),
        simplification,
        fragile,
    }
}

fn branch_exists(rec: &RunRecord) -> bool {
    git2::Repository::open(&rec.repo)
        .ok()
        .map(|r| git::merge::branch_tip(&r, &rec.branch).is_some())
        .unwrap_or(false)
}

fn git_log(rec: &RunRecord, records: &[ExperimentRecord]) -> GitLog {
    let repo = match git2::Repository::open(&rec.repo) {
        Ok(r) => r,
        Err(e) => {
            return GitLog {
                source: "unavailable".into(),
                lines: vec![],
                note: Some(format!(
                    "the repository {} cannot be opened: {}",
                    rec.repo.display(),
                    e.message()
                )),
            }
        }
    };
    let branch_note = || {
        if git::merge::branch_tip(&repo, &rec.branch).is_none() {
            Some(format!(
                "branch {} no longer exists; commits read from the object database",
                rec.branch
            ))
        } else {
            None
        }
    };
    if let (Ok(base), Ok(best)) = (
        git::parse_oid(&rec.base_commit),
        git::parse_oid(&rec.best_commit),
    ) {
        if base == best {
            return GitLog {
                source: "history".into(),
                lines: vec![],
                note: Some("no kept experiment: the branch never moved from its base".into()),
            };
        }
        if git::merge::has_commit(&repo, best) {
            if let Ok(lines) = git::merge::log_oneline(&repo, base, best) {
                return GitLog {
                    source: "history".into(),
                    lines,
                    note: branch_note(),
                };
            }
        }
    }
    // The branch tip is gone: the kept commits the journal names, those still there.
    let kept: Vec<&str> = records
        .iter()
        .filter(|r| r.status == Status::Keep)
        .filter_map(|r| r.commit.as_deref())
        .collect();
    let mut lines = Vec::new();
    let mut missing = 0;
    for c in kept.iter().rev() {
        match git::parse_oid(c)
            .ok()
            .and_then(|o| git::merge::oneline(&repo, o))
        {
            Some(l) => lines.push(l),
            None => missing += 1,
        }
    }
    let note = (missing > 0).then(|| {
        format!(
            "{} recorded in the journal {} no longer in the repository",
            count(missing, "kept commit"),
            if missing == 1 { "is" } else { "are" }
        )
    });
    GitLog {
        source: if lines.is_empty() {
            "unavailable"
        } else {
            "journal"
        }
        .into(),
        lines,
        note,
    }
}

/// Ideas the proposer listed under `ideas_not_tried` that no experiment's description matches.
fn ideas_not_tried(records: &[ExperimentRecord]) -> Vec<String> {
    let tried: Vec<String> = records
        .iter()
        .map(|r| clean_description(&r.description).to_lowercase())
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in records {
        let Some(list) = r
            .hypothesis
            .as_ref()
            .and_then(|h| h.get("ideas_not_tried"))
            .and_then(|v| v.as_array())
        else {
            continue;
        };
        for idea in list {
            let text = match idea {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(o) => ["idea", "description", "title", "hypothesis"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(|v| v.as_str()).map(str::to_string))
                    .unwrap_or_else(|| idea.to_string()),
                other => other.to_string(),
            };
            let text = clean_description(&text);
            let key = text.to_lowercase();
            if key.is_empty()
                || tried
                    .iter()
                    .any(|t| t.contains(&key) || (!t.is_empty() && key.contains(t.as_str())))
            {
                continue;
            }
            if seen.insert(key) {
                out.push(text);
            }
        }
    }
    out
}

fn revisit(records: &[ExperimentRecord], rows: &[ResultRow]) -> Vec<Revisit> {
    let mut out: Vec<Revisit> = records
        .iter()
        .zip(rows)
        .filter(|(r, _)| r.status == Status::InspectorReject)
        .map(|(r, row)| Revisit {
            experiment: r.experiment,
            description: clean_description(&r.description),
            reason: r.reason.clone(),
            gain: if r.metric.is_some() { row.change } else { None },
        })
        .collect();
    // Those whose metric improved first: they found something, the way was wrong.
    out.sort_by(|a, b| {
        let ka = a.gain.filter(|g| *g > 0.0).is_none();
        let kb = b.gain.filter(|g| *g > 0.0).is_none();
        ka.cmp(&kb).then(a.experiment.cmp(&b.experiment))
    });
    out
}

fn looks_like_benchmark_input(path: &str) -> bool {
    path.split('/').any(|seg| {
        let s = seg.to_lowercase();
        [
            "bench",
            "fixture",
            "testdata",
            "test_data",
            "tests",
            "test",
            "data",
            "input",
            "sample",
        ]
        .iter()
        .any(|w| {
            s == *w
                || s.starts_with(&format!("{w}s"))
                || s.starts_with(&format!("{w}_"))
                || s.starts_with(&format!("{w}."))
        })
    })
}

fn overfitting(records: &[ExperimentRecord], rows: &[ResultRow], min_effect: f64) -> Vec<Flag> {
    let mut out = Vec::new();
    for (i, (r, row)) in records.iter().zip(rows).enumerate() {
        if r.status == Status::InspectorReject && r.reason.starts_with("guard") {
            out.extend(guard_failure_flags(records, i, row));
        }
        if r.status == Status::Keep {
            out.extend(kept_flags(r, row, min_effect));
        }
    }
    out.extend(diminishing_returns(records, rows));
    out
}

/// The paths an experiment changed.
fn changed_paths(r: &ExperimentRecord) -> BTreeSet<String> {
    r.changes.iter().map(|c| c.path.clone()).collect()
}

/// The flags of experiment `i`, rejected by a guard: its gain, if it improved the metric,
/// and each kept neighbour editing the same files.
fn guard_failure_flags(records: &[ExperimentRecord], i: usize, row: &ResultRow) -> Vec<Flag> {
    let r = &records[i];
    let mut out = Vec::new();
    if let Some(g) = row.change.filter(|g| *g > 0.0) {
        out.push(Flag {
            experiment: Some(r.experiment),
            message: format!(
                "experiment {} improved the metric by {} but {}: the gain may come from breaking what the guard checks",
                r.experiment,
                pct(g),
                r.reason
            ),
        });
    }
    // A kept neighbour touching the same files may lean on the same shortcut.
    for j in [i.wrapping_sub(1), i + 1] {
        if let Some(k) = records.get(j).filter(|k| k.status == Status::Keep) {
            let shared: Vec<String> = changed_paths(r)
                .intersection(&changed_paths(k))
                .cloned()
                .collect();
            if !shared.is_empty() {
                out.push(Flag {
                    experiment: Some(k.experiment),
                    message: format!(
                        "kept experiment {} edits the same files ({}) as experiment {}, which failed a guard: check it doesn't rely on the same shortcut",
                        k.experiment,
                        git::merge::shown(&shared),
                        r.experiment
                    ),
                });
            }
        }
    }
    out
}

/// The flags of a kept experiment: benchmark inputs or tests changed, a big diff for a small
/// gain.
fn kept_flags(r: &ExperimentRecord, row: &ResultRow, min_effect: f64) -> Vec<Flag> {
    let mut out = Vec::new();
    let bench: Vec<String> = changed_paths(r)
        .into_iter()
        .filter(|p| looks_like_benchmark_input(p))
        .collect();
    if !bench.is_empty() {
        out.push(Flag {
            experiment: Some(r.experiment),
            message: format!(
                "kept experiment {} changes {} (benchmark input or tests?): check the gain holds on other inputs",
                r.experiment,
                git::merge::shown(&bench)
            ),
        });
    }
    if let (Some(d), Some(g)) = (r.diff, row.change) {
        let lines = d.insertions + d.deletions;
        if lines >= 40 && g < 2.0 * min_effect.max(0.005) {
            out.push(Flag {
                experiment: Some(r.experiment),
                message: format!(
                    "kept experiment {} changes {lines} lines for a {} gain: a big diff for a small win",
                    r.experiment,
                    pct(g)
                ),
            });
        }
    }
    out
}

/// The flag for a diff that keeps growing while the gains shrink (the last three kept
/// experiments), if it does.
fn diminishing_returns(records: &[ExperimentRecord], rows: &[ResultRow]) -> Option<Flag> {
    let kept: Vec<(u32, usize, f64)> = records
        .iter()
        .zip(rows)
        .filter(|(r, _)| r.status == Status::Keep)
        .filter_map(|(r, row)| {
            Some((
                r.experiment,
                r.diff.map(|d| d.insertions + d.deletions)?,
                row.change?,
            ))
        })
        .collect();
    if kept.len() < 3 {
        return None;
    }
    let last = &kept[kept.len() - 3..];
    let grew_while_shrinking = last[0].1 < last[1].1
        && last[1].1 < last[2].1
        && last[0].2 > last[1].2
        && last[1].2 > last[2].2;
    grew_while_shrinking.then(|| Flag {
        experiment: None,
        message: format!(
            "the last kept changes grew ({} → {} → {} lines) while their gains shrank ({} → {} → {}): diminishing returns, maybe tuning to the benchmark",
            last[0].1,
            last[1].1,
            last[2].1,
            pct(last[0].2),
            pct(last[1].2),
            pct(last[2].2)
        ),
    })
}

fn summary(
    totals: &Totals,
    baseline: Option<f64>,
    final_value: Option<f64>,
    change: Option<f64>,
    kept: &[KeptChange],
    fragile: &[Flag],
    overfitting: &[Flag],
) -> String {
    let fmt = |v: Option<f64>| crate::protocol::format::format_metric(v);
    let mut s = format!(
        "{}: {} kept, {} discarded, {} crashed, {} rejected by the inspector.",
        count(totals.experiments as usize, "experiment"),
        totals.kept,
        totals.discarded,
        totals.crashed,
        totals.rejected
    );
    match change {
        Some(c) if c > 0.0 => s.push_str(&format!(
            " Measured against the baseline at the same time, the best is {} ({} → {} in the baseline's terms).",
            pct(c),
            fmt(baseline),
            fmt(final_value)
        )),
        Some(c) if totals.kept > 0 => s.push_str(&format!(
            " The kept changes together measure {} against the baseline at the same time: no net improvement shown.",
            pct(c)
        )),
        _ => s.push_str(&format!(
            " No net improvement over the baseline ({}).",
            fmt(baseline)
        )),
    }
    if !kept.is_empty() {
        let noisy = kept.iter().filter(|k| k.evidence == "noisy").count();
        s.push_str(&format!(
            " {} of {} fragile{}{}.",
            fragile.len(),
            match kept.len() {
                1 => "1 kept gain looks".to_string(),
                n => format!("{n} kept gains look"),
            },
            if noisy > 0 {
                format!(", {noisy} decided on paired noisy measurements")
            } else {
                ", all decided on a deterministic metric".into()
            },
            if overfitting.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} of overfitting",
                    count(overfitting.len(), "possible sign")
                )
            }
        ));
    }
    s
}

fn next_steps(r: &RunReport, branch_exists: bool) -> Vec<String> {
    let mut out = Vec::new();
    let improved = r.change.map(|c| c > 0.0).unwrap_or(false)
        || (r.totals.kept > 0 && r.best_commit != r.base_commit);
    if r.state.is_active() {
        out.push(format!(
            "Let the run finish, or stop it: `arctl stop {}`",
            r.run
        ));
    }
    if !improved {
        if branch_exists || !r.cleaned_up {
            out.push(format!(
                "Delete the branch {} (no net improvement): `arctl cleanup {}`",
                r.branch, r.run
            ));
        }
        out.push("Rethink the hypothesis, the scope or the metric before another run".into());
    } else if r.merged {
        out.push(format!(
            "Run the full test suite on {} (the merge landed there)",
            r.base
        ));
        if !r.cleaned_up {
            out.push(format!(
                "Remove the worktree and the merged branch: `arctl cleanup {}`",
                r.run
            ));
        }
    } else {
        out.extend(unmerged_steps(r, branch_exists));
    }
    out.extend(review_steps(r, improved));
    out.push(
        "Consider what the loop does not try by itself: algorithmic rewrites that change public interfaces, dependency upgrades, schema or data-structure changes, parallelism"
            .into(),
    );
    if !r.cleaned_up && improved && !r.merged {
        out.push(format!(
            "When done with it: `arctl cleanup {}` (keeps the branch until it is merged)",
            r.run
        ));
    }
    out
}

/// The steps for an improvement not merged yet: review, test and land its branch, or
/// recreate the branch if it is gone.
fn unmerged_steps(r: &RunReport, branch_exists: bool) -> Vec<String> {
    let mut out = Vec::new();
    let base7 = short_commit(&r.base_commit);
    if branch_exists {
        out.push(format!("Review the diff: `git diff {base7}..{}`", r.branch));
        out.push(format!(
            "Run the full test suite one final time on {}",
            r.branch
        ));
        if r.kept.len() > 1 {
            out.push(format!(
                "Squash the {} experiment commits into one or a few logical commits before merging: `arctl merge {} --squash`, or `git rebase -i {base7}` with meaningful messages",
                r.kept.len(),
                r.run
            ));
        }
        out.push("Update docstrings and comments that describe the old behavior".into());
        out.push(format!(
            "Open a PR from {} into {} and paste the summary table (`arctl report {}`) so reviewers see the methodology",
            r.branch, r.base, r.run
        ));
        out.push("Or merge it with the other finished runs, each re-measured on top: `arctl merge --dry-run`, then `arctl merge`".into());
    } else {
        out.push(format!(
            "The branch {} is gone; recreate it from the kept commits if you still want the change: `git branch {} {}`",
            r.branch,
            r.branch,
            short_commit(&r.best_commit)
        ));
    }
    out
}

/// The steps the review calls for: fragile gains to re-measure, possible overfitting, many
/// crashes, rejected experiments worth revisiting, untried ideas.
fn review_steps(r: &RunReport, improved: bool) -> Vec<String> {
    let mut out = Vec::new();
    let fragile: Vec<String> = r
        .review
        .fragile
        .iter()
        .filter_map(|f| f.experiment)
        .map(|e| e.to_string())
        .collect();
    if improved && !fragile.is_empty() {
        out.push(format!(
            "Re-measure the fragile gains before relying on them (experiments {})",
            fragile.join(", ")
        ));
    }
    if !r.review.overfitting.is_empty() {
        out.push("Check the gain on inputs other than the benchmark's (possible overfitting, see the review)".into());
    }
    if r.totals.experiments > 0
        && r.totals.crashed * 3 >= r.totals.experiments
        && r.totals.crashed > 0
    {
        out.push(format!(
            "Look at why {} crashed: `arctl log {}`",
            count(r.totals.crashed as usize, "experiment"),
            r.run
        ));
    }
    for v in r
        .review
        .revisit
        .iter()
        .filter(|v| v.gain.map(|g| g > 0.0).unwrap_or(false))
        .take(3)
    {
        out.push(format!(
            "Revisit experiment {} ({}): it improved the metric but {}",
            v.experiment, v.description, v.reason
        ));
    }
    if !r.review.ideas_not_tried.is_empty() {
        out.push(format!(
            "Decide which untried ideas are worth pursuing: {}",
            r.review.ideas_not_tried.join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Direction;
    use crate::stats::{Evaluation, Verdict};

    fn rec(n: u32, status: Status, metric: Option<f64>, desc: &str) -> ExperimentRecord {
        ExperimentRecord {
            commit: Some(format!("{n:07}abcdef")),
            metric,
            description: desc.into(),
            ..ExperimentRecord::new(n, status, 0)
        }
    }

    #[test]
    fn ideas_not_tried_skips_the_tried_ones_and_duplicates() {
        let mut a = rec(1, Status::Keep, Some(90.0), "cache the parser");
        a.hypothesis = Some(
            serde_json::json!({"ideas_not_tried": ["Cache the parser", "use a bloom filter", {"idea": "vectorize the loop"}]}),
        );
        let mut b = rec(2, Status::Discard, Some(95.0), "x");
        b.hypothesis = Some(serde_json::json!({"ideas_not_tried": ["use a bloom filter"]}));
        assert_eq!(
            ideas_not_tried(&[a, b]),
            vec![
                "use a bloom filter".to_string(),
                "vectorize the loop".to_string()
            ]
        );
    }

    #[test]
    fn the_headline_is_a_same_time_comparison() {
        // The kept candidate's raw value was measured on a loaded machine (worse than the
        // baseline's raw value); its paired estimate says 10% better.
        let mut k = rec(1, Status::Keep, Some(0.237), "tweak");
        k.decision = Some(Evaluation {
            verdict: Verdict::Keep,
            rounds: 8,
            estimate: 0.10,
            theta: -(0.9f64).ln(),
            se: 0.01,
            df: 7.0,
            log_scale: true,
            ..Evaluation::default()
        });
        let recs = [rec(0, Status::Baseline, Some(0.181), "baseline"), k];
        let rows = result_rows(&recs, Direction::Lower);
        assert!((rows[1].change.unwrap() - 0.10).abs() < 1e-12);
        let g = truth::gain(&recs, Direction::Lower).unwrap();
        assert!((g.gain - 0.10).abs() < 1e-12 && !g.confirmed);
        // The running best goes down, not up to the raw 0.237.
        assert!(rows[1].best_after.unwrap() < 0.181);
    }

    #[test]
    fn noisy_gain_under_twice_the_noise_is_fragile() {
        let mut k = rec(1, Status::Keep, Some(97.0), "tweak");
        k.decision = Some(Evaluation {
            verdict: Verdict::Keep,
            rounds: 8,
            estimate: 0.03,
            lower: 0.012,
            upper: 0.05,
            p_value: 0.01,
            threshold: 0.01,
            candidate_estimate: 97.0,
            best_estimate: 100.0,
            simplification: false,
            reason: String::new(),
            ..Evaluation::default()
        });
        let row = result_rows(
            &[rec(0, Status::Baseline, Some(100.0), "baseline"), k.clone()],
            Direction::Lower,
        )[1]
        .clone();
        let c = kept_change(&k, &row, Some(0.02), 0.01);
        assert_eq!(c.evidence, "noisy");
        assert!((c.confidence.unwrap() - 0.99).abs() < 1e-9);
        assert!(c.fragile.unwrap().contains("twice the metric's noise"));
        let c = kept_change(&k, &row, Some(0.005), 0.02);
        assert!(c.fragile.unwrap().contains("lower bound"));
        let c = kept_change(&k, &row, Some(0.005), 0.01);
        assert_eq!(c.fragile, None);
    }
}
