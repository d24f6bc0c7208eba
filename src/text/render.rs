//! Human output: tables of runs, a run in detail, the experiment table.

use crate::protocol::format::{format_metric, metric_or_dash as metric, pct_or_dash as pct};
use crate::protocol::{ResultsTable, RunDetail, RunSummary};

pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub fn status_table(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "no runs yet: start one with `arctl start SPEC.toml` (or try `arctl demo`)\n"
            .into();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.state.as_str().to_string(),
                r.step_text(),
                match r.max_experiments {
                    Some(m) => format!("{}/{m}", r.experiments),
                    None => r.experiments.to_string(),
                },
                format!(
                    "{}/{}/{}/{}",
                    r.counts.kept, r.counts.discarded, r.counts.crashed, r.counts.rejected
                ),
                metric(r.baseline),
                if nothing_kept(r) {
                    "none".into()
                } else {
                    metric(r.best_estimate.or(r.best))
                },
                if nothing_kept(r) {
                    "-".into()
                } else {
                    pct(r.change)
                },
                duration_ms(r.elapsed_ms),
                r.sparkline.clone(),
            ]
        })
        .collect();
    let notes: String = runs
        .iter()
        .flat_map(|r| {
            let unstable = r.noise.message.as_ref().map(|m| format!("{}: {m}\n", r.id));
            let paused = r.pause_reason.as_ref().map(|m| format!("{}: {m}\n", r.id));
            unstable.into_iter().chain(paused)
        })
        .collect();
    let mut out = table(
        &[
            "RUN",
            "STATE",
            "STEP",
            "EXP",
            "K/D/C/R",
            "BASELINE",
            "BEST",
            "CHANGE",
            "ELAPSED",
            "BEST SO FAR",
        ],
        &rows,
    );
    out.push_str(&notes);
    out
}

/// "running, measuring (round 3/12) for 2.1s" while active; "finished after 16.8s" once
/// ended (the run's own running time: the clock of its last step means nothing then).
pub fn state_text(s: &RunSummary) -> String {
    if s.state.is_active() {
        format!(
            "{}, {} for {}",
            s.state.as_str(),
            s.step_text(),
            duration_ms(s.step_elapsed_ms)
        )
    } else {
        format!("{} after {}", s.state.as_str(), duration_ms(s.elapsed_ms))
    }
}

/// Nothing kept: the best is still the baseline, so no best value and no change to show.
pub fn nothing_kept(s: &RunSummary) -> bool {
    s.counts.kept == 0
}

/// The words for a run without a best of its own ("none yet: the baseline 100.0 stands"),
/// or None when it has one to show.
pub fn no_best_text(s: &RunSummary) -> Option<String> {
    if !nothing_kept(s) {
        return None;
    }
    let active = s.state.is_active();
    Some(match (s.baseline, active) {
        (Some(b), true) => format!("none yet: the baseline {} stands", format_metric(Some(b))),
        (Some(b), false) => format!("none kept: the baseline {} stands", format_metric(Some(b))),
        (None, true) => "none yet: the baseline is not measured yet".into(),
        (None, false) => "none: no baseline was measured".into(),
    })
}

/// "+10.2% (95% CI +7.1% to +13.1%; final paired confirmation against the baseline)".
pub fn change_text(s: &RunSummary) -> String {
    let mut out = pct(s.change);
    if let (Some(lo), Some(hi)) = (s.change_low, s.change_high) {
        let how = match s.change_source.as_deref() {
            Some("confirmation") if lo == hi => "final confirmation against the baseline",
            Some("confirmation") => "final paired confirmation against the baseline",
            Some(_) => "chain of the kept experiments' paired estimates",
            None => "",
        };
        let mut parts = Vec::new();
        if lo != hi {
            parts.push(format!("95% CI {} to {}", pct(Some(lo)), pct(Some(hi))));
        }
        if !how.is_empty() {
            parts.push(how.to_string());
        }
        if !parts.is_empty() {
            out.push_str(&format!(" ({})", parts.join("; ")));
        }
    }
    out
}

pub fn detail(d: &RunDetail) -> String {
    let s = &d.summary;
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    about_lines(d, &mut kv);
    progress_lines(d, &mut kv);
    workspace_lines(d, &mut kv);
    if !d.recent.is_empty() {
        out.push('\n');
        out.push_str(&results(&ResultsTable::new(
            s.id.clone(),
            s.direction,
            d.recent.clone(),
            None,
        )));
    }
    out
}

/// The detail's lines on what the run is: its id, state, goal, metric and mode.
fn about_lines(d: &RunDetail, kv: &mut impl FnMut(&str, String)) {
    let s = &d.summary;
    kv("run", s.id.clone());
    kv("state", state_text(s));
    if let Some(r) = &s.stop_reason {
        kv("ended", r.clone());
    }
    if let Some(e) = &s.error {
        kv("error", e.clone());
    }
    if let Some(t) = s.recovered_at_ms {
        kv("recovered", format_time(t));
    }
    if !d.spec.spec.goal.trim().is_empty() {
        kv("goal", d.spec.spec.goal.clone());
    }
    kv(
        "metric",
        format!(
            "{} ({:?} is better)",
            d.spec.spec.metric.command, s.direction
        )
        .to_string(),
    );
    kv(
        "mode",
        match (&s.mode, s.cv) {
            (Some(m), Some(cv)) => format!("{m}, cv {:.2}%", cv * 100.0),
            (Some(m), None) => m.clone(),
            _ => "-".into(),
        },
    );
}

/// The detail's lines on how far the run got: its experiments, baseline and best, noise,
/// time, cost and notes.
fn progress_lines(d: &RunDetail, kv: &mut impl FnMut(&str, String)) {
    let s = &d.summary;
    kv(
        "experiments",
        format!(
            "{}{} (kept {}, discarded {}, crashed {}, rejected {})",
            s.experiments,
            s.max_experiments
                .map(|m| format!(" of {m}"))
                .unwrap_or_default(),
            s.counts.kept,
            s.counts.discarded,
            s.counts.crashed,
            s.counts.rejected
        ),
    );
    if let Some(p) = &s.pause_reason {
        kv("paused", p.clone());
    }
    kv("baseline", metric(s.baseline));
    kv(
        "best",
        match no_best_text(s) {
            Some(words) => words,
            None => format!(
                "{}, {}  {}",
                metric(s.best_estimate.or(s.best)),
                change_text(s),
                s.sparkline
            ),
        },
    );
    if let Some(n) = noise_text(s) {
        kv("noise", n);
    }
    kv("elapsed", duration_ms(s.elapsed_ms));
    if let Some(c) = s.cost_usd {
        kv("cost", format!("${c:.2} reported by the agent"));
    }
    for (i, n) in d.notes.iter().enumerate() {
        kv(if i == 0 { "notes" } else { "" }, format!("- {n}"));
    }
}

/// The detail's lines on where and how the run works: its worktree, branch and commits,
/// limits, sandbox, cluster and the last experiment's resources.
fn workspace_lines(d: &RunDetail, kv: &mut impl FnMut(&str, String)) {
    let s = &d.summary;
    kv("worktree", s.worktree.display().to_string());
    kv(
        "branch",
        format!(
            "{} (base {} at {})",
            s.branch,
            d.base,
            &d.base_commit[..7.min(d.base_commit.len())]
        ),
    );
    kv(
        "best commit",
        d.best_commit[..7.min(d.best_commit.len())].to_string(),
    );
    kv("limits", d.limits_mechanism.clone());
    kv("sandbox", d.sandbox.clone());
    if let Some(c) = &s.cluster {
        kv("cluster", c.text.clone());
    }
    if let (Some(rss), Some(cpu), Some(wall)) = (d.last_peak_rss, d.last_cpu_ms, d.last_wall_ms) {
        kv(
            "last exp.",
            format!(
                "peak RSS {:.1} MiB, CPU {}, wall {}",
                rss as f64 / 1048576.0,
                duration_ms(cpu),
                duration_ms(wall)
            ),
        );
    }
}

/// The run's noise now against the baseline's, in words (None before anything is known).
pub fn noise_text(s: &RunSummary) -> Option<String> {
    let n = &s.noise;
    if let Some(m) = &n.message {
        return Some(m.clone());
    }
    match (n.baseline_cv, n.now) {
        (Some(b), Some(now)) => Some(format!(
            "cv {:.1}% now, {:.1}% at baseline",
            now * 100.0,
            b * 100.0
        )),
        _ => None,
    }
}

pub fn format_time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

pub fn results(t: &ResultsTable) -> String {
    let rows: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| {
            vec![
                r.experiment.to_string(),
                r.commit.clone(),
                // No value (a crash, a reject): a dash; the TSV keeps the seed's 0.0.
                metric(r.metric),
                r.status.clone(),
                pct(r.change),
                r.confidence
                    .map(|c| format!("{:.0}%", c * 100.0))
                    .unwrap_or_else(|| "-".into()),
                r.description.clone(),
                if r.reason.is_empty() {
                    "-".into()
                } else {
                    r.reason.clone()
                },
            ]
        })
        .collect();
    let mut out = table(
        &[
            "EXP",
            "COMMIT",
            "METRIC",
            "STATUS",
            "CHANGE",
            "CONF",
            "DESCRIPTION",
            "REASON",
        ],
        &rows,
    );
    if let Some(g) = &t.gain {
        out.push_str(&format!(
            "\nbest vs baseline: {} (95% CI {} to {}; {})\n",
            pct(Some(g.gain)),
            pct(Some(g.low)),
            pct(Some(g.high)),
            if g.confirmed {
                format!(
                    "final paired confirmation{}",
                    g.rounds
                        .map(|n| format!(", {n} rounds"))
                        .unwrap_or_default()
                )
            } else {
                match g.kept {
                    1 => "the kept experiment's paired estimate".to_string(),
                    n => format!("chain of {n} kept experiments' paired estimates"),
                }
            }
        ));
    }
    out
}
