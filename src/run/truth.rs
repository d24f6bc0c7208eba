//! The gain a run shows, from same-time comparisons only (issue 15): the best's change
//! against the baseline is the final paired confirmation when the run has one, else the
//! chain of the kept experiments' paired estimates ([`stats::chain`]), never the ratio of two
//! raw values measured at different times under different load. Pure: read from the
//! journal. Used by the record (status), results, report, plot, merge and the prompt.

use crate::protocol::GainEstimate;
use crate::run::journal::{ExperimentRecord, Status};
use crate::spec::Direction;
use crate::stats::{self, Evaluation, Verdict};

/// The run's gain: the last confirmation if nothing was kept after it, else the chain of
/// the kept decisions. None when nothing was kept (or a kept decision has no estimate).
pub fn gain(records: &[ExperimentRecord], direction: Direction) -> Option<GainEstimate> {
    if let Some(c) = confirmation(records) {
        let d = c.decision.as_ref()?;
        let kept = kept(records).len();
        let (low, high) = match d.interval() {
            Some([l, h]) => (l, h),
            None => (d.estimate, d.estimate),
        };
        return d.estimate.is_finite().then_some(GainEstimate {
            gain: d.estimate,
            low,
            high,
            confirmed: true,
            significant: d.verdict == Verdict::Keep,
            kept,
            rounds: Some(d.rounds),
        });
    }
    chain_gain(records, direction)
}

/// The chain of the kept decisions alone (what the report shows beside a confirmation).
pub fn chain_gain(records: &[ExperimentRecord], direction: Direction) -> Option<GainEstimate> {
    let kept = kept(records);
    let c = stats::chain(direction, &kept)?;
    Some(GainEstimate {
        gain: c.gain,
        low: c.low,
        high: c.high,
        confirmed: false,
        significant: false,
        kept: c.links,
        rounds: None,
    })
}

/// The final confirmation, if it measured the current best (nothing kept after it).
pub fn confirmation(records: &[ExperimentRecord]) -> Option<&ExperimentRecord> {
    let last_keep = records.iter().rposition(|r| r.status == Status::Keep)?;
    records[last_keep..]
        .iter()
        .rev()
        .find(|r| r.status == Status::Confirmation && r.decision.is_some())
}

/// The decisions of the kept experiments, in order.
pub fn kept(records: &[ExperimentRecord]) -> Vec<&Evaluation> {
    records
        .iter()
        .filter(|r| r.status == Status::Keep)
        .filter_map(|r| r.decision.as_ref())
        .collect()
}

/// The value `gain` moves `baseline` to, in the metric's direction.
pub fn apply(baseline: f64, gain: f64, direction: Direction) -> f64 {
    match direction {
        Direction::Lower => baseline * (1.0 - gain),
        Direction::Higher => baseline * (1.0 + gain),
    }
}

/// The best after each TSV row in the baseline's terms (baseline × the chain so far): the
/// running best of the sparkline and the plot. A keep without a decision (an older
/// journal) falls back to its raw value.
pub fn history(records: &[ExperimentRecord], direction: Direction) -> Vec<f64> {
    let baseline = records
        .iter()
        .find(|r| r.status == Status::Baseline)
        .and_then(|r| r.metric);
    let mut best = f64::NAN;
    let mut kept: Vec<&Evaluation> = Vec::new();
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.status.is_row()) {
        match r.status {
            Status::Baseline => best = r.metric.unwrap_or(f64::NAN),
            Status::Keep => {
                best = match (r.decision.as_ref(), baseline) {
                    (Some(d), Some(b)) => {
                        kept.push(d);
                        stats::chain(direction, &kept)
                            .map(|c| apply(b, c.gain, direction))
                            .unwrap_or(r.metric.unwrap_or(best))
                    }
                    _ => r.metric.unwrap_or(best),
                }
            }
            _ => {}
        }
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(n: u32, gain: f64, metric: f64) -> ExperimentRecord {
        ExperimentRecord {
            metric: Some(metric),
            decision: Some(Evaluation {
                verdict: Verdict::Keep,
                estimate: gain,
                theta: -(-gain).ln_1p(),
                se: 0.01,
                df: 8.0,
                log_scale: true,
                ..Evaluation::default()
            }),
            ..ExperimentRecord::new(n, Status::Keep, 0)
        }
    }

    fn baseline(v: f64) -> ExperimentRecord {
        ExperimentRecord {
            metric: Some(v),
            ..ExperimentRecord::new(0, Status::Baseline, 0)
        }
    }

    #[test]
    fn the_chain_not_the_raw_ratio() {
        // The raw value of the keep was measured on a loaded machine (0.237 vs a 0.181
        // baseline); its paired estimate says 10% better: the chain says +10%.
        let recs = vec![baseline(0.181), keep(1, 0.10, 0.237)];
        let g = gain(&recs, Direction::Lower).unwrap();
        assert!((g.gain - 0.10).abs() < 1e-12);
        assert!(!g.confirmed && g.low < 0.10 && g.high > 0.10);
        let h = history(&recs, Direction::Lower);
        assert!((h[1] - 0.181 * 0.9).abs() < 1e-12, "{h:?}");
        assert!(gain(&recs[..1], Direction::Lower).is_none());
    }

    #[test]
    fn a_confirmation_of_the_current_best_wins() {
        let mut c = keep(1, 0.08, 0.17);
        c.status = Status::Confirmation;
        c.decision.as_mut().unwrap().ci_low = 0.05;
        c.decision.as_mut().unwrap().ci_high = 0.11;
        let recs = vec![baseline(0.181), keep(1, 0.10, 0.237), c.clone()];
        let g = gain(&recs, Direction::Lower).unwrap();
        assert!(g.confirmed && (g.gain - 0.08).abs() < 1e-12);
        assert_eq!((g.low, g.high), (0.05, 0.11));
        // The history (the plot's running best) has no row for it.
        assert_eq!(history(&recs, Direction::Lower).len(), 2);
        // A keep after the confirmation (a resumed run) makes it stale.
        let mut later = recs.clone();
        later.push(keep(2, 0.05, 0.16));
        assert!(!gain(&later, Direction::Lower).unwrap().confirmed);
    }
}
