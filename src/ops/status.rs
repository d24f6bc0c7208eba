//! What `arctl status` shows: a run's summary row and its detail, built from its handle
//! (the record, the live step, the history) and its journal.

use crate::protocol::{ClusterJobs, ResultRow, RunDetail, RunSummary};
use crate::run::record::RunRecord;
use crate::run::truth;
use crate::run::{Global, RunHandle};
use crate::stats::Mode;

/// The summary row of a run, as it is now.
pub fn summary(h: &RunHandle, g: &Global) -> RunSummary {
    let (mut s, record) = {
        let l = h.live();
        let active = l.record.state().is_active();
        let mut s = summarize(&l.record);
        s.step = if active { l.step.as_str() } else { "-" }.to_string();
        s.step_elapsed_ms = l.step_started.elapsed().as_millis() as u64;
        s.elapsed_ms = l.elapsed_ms();
        s.sparkline = sparkline(&l.best_history);
        if active && !l.step_detail.is_empty() {
            s.step_detail = Some(l.step_detail.clone());
        }
        (s, l.record.clone())
    };
    s.cluster = cluster_status(g, &record);
    s
}

/// `arctl status RUN`: the summary, the spec, the limits in force and the latest rows.
pub fn detail(h: &RunHandle, g: &Global, rows: &[ResultRow]) -> RunDetail {
    let summary = summary(h, g);
    let (record, resources) = {
        let l = h.live();
        (l.record.clone(), l.last_resources)
    };
    RunDetail {
        summary,
        spec: record.spec.clone(),
        base: record.base.clone(),
        base_commit: record.base_commit.clone(),
        best_commit: record.best_commit.clone(),
        limits_mechanism: limits_description(g, &record),
        sandbox: crate::run::sandbox_description(&record),
        recent: rows[rows.len().saturating_sub(10)..].to_vec(),
        last_peak_rss: resources.map(|r| r.0),
        last_cpu_ms: resources.map(|r| r.1),
        last_wall_ms: resources.map(|r| r.2),
        notes: record.notes.clone(),
    }
}

fn limits_description(g: &Global, rec: &RunRecord) -> String {
    let e = g.executor(rec);
    if e.is_local() {
        crate::exec::limit_mechanism().to_string()
    } else {
        format!("{}: --mem and --cpus-per-task per job, enforced by the cluster; cpu_time as ulimit -t per process", e.describe())
    }
}

/// What `arctl status` shows of a run's cluster jobs (None: it runs on this machine).
fn cluster_status(g: &Global, rec: &RunRecord) -> Option<ClusterJobs> {
    let e = rec.spec.spec.executor.as_ref().filter(|e| !e.is_local())?;
    Some(ClusterJobs::new(e.describe(), g.jobs_of(&rec.id)))
}

/// The summary of a record alone (no live step, no history).
fn summarize(r: &RunRecord) -> RunSummary {
    let direction = r.spec.spec.metric.direction;
    // Same-time comparisons only: the confirmation or the chain, never baseline vs best raw.
    let gain = r
        .gain
        .filter(|g| g.gain.is_finite() && r.best_commit != r.base_commit);
    let change = match gain {
        Some(g) => Some(g.gain),
        None if r.best_commit == r.base_commit && r.baseline.is_some() => Some(0.0),
        None => None,
    };
    let best_estimate = match (r.baseline, change) {
        (Some(b), Some(g)) => Some(truth::apply(b, g, direction)),
        (b, None) if r.best_commit == r.base_commit => b,
        _ => None,
    };
    let (mode, cv) = match &r.mode {
        Some(Mode::Deterministic) => (Some("deterministic".to_string()), None),
        Some(Mode::Noisy { cv }) => (Some("noisy".to_string()), Some(*cv)),
        None => (None, None),
    };
    RunSummary {
        id: r.id.clone(),
        state: r.state(),
        step: "-".into(),
        step_detail: None,
        experiments: r.next_experiment.saturating_sub(1),
        max_experiments: r.spec.spec.budget.max_experiments,
        max_wall_ms: r.spec.spec.budget.max_wall.map(|w| w.0.as_millis() as u64),
        counts: r.counts,
        direction,
        baseline: r.baseline,
        best: r.best,
        change,
        change_low: gain.map(|g| g.low).filter(|x| x.is_finite()),
        change_high: gain.map(|g| g.high).filter(|x| x.is_finite()),
        change_source: gain.map(|g| g.source().to_string()),
        best_estimate,
        noise: r.noise.clone(),
        pause_reason: r.pause_reason.clone(),
        mode,
        cv,
        created_at_ms: r.created_at_ms,
        elapsed_ms: r.active_ms,
        step_elapsed_ms: 0,
        last_status: r.last_status.clone(),
        worktree: r.worktree.clone(),
        branch: r.branch.clone(),
        recovered_at_ms: r.recovered_at_ms,
        error: r.error.clone(),
        stop_reason: r.stop_reason.clone(),
        sparkline: String::new(),
        cost_usd: r.cost_usd,
        cluster: None,
    }
}

/// A one-line sparkline of the values.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let vals: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if vals.is_empty() {
        return String::new();
    }
    let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tail = &vals[vals.len().saturating_sub(40)..];
    tail.iter()
        .map(|v| {
            if hi == lo {
                BARS[3]
            } else {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sparkline_spans_the_range() {
        assert_eq!(super::sparkline(&[1.0, 2.0, 3.0]), "▁▅█");
        assert_eq!(super::sparkline(&[]), "");
    }
}
