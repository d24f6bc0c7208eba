//! The decision for a deterministic metric: one value each, a strict comparison; and the
//! naive rule the benchmarks compare the noisy test with.

use super::format::{fmt_gain, fmt_num};
use super::{DecisionConfig, Evaluation, Verdict};
use crate::spec::Direction;

/// Deterministic mode: one value each, strict comparison in `cfg.direction`. Any strict
/// improvement keeps (no `min_effect`: there is no noise to guard against); an equal value
/// keeps as a simplification when `cfg.simplicity` and `fewer_lines`.
pub fn evaluate_deterministic(
    best: f64,
    candidate: f64,
    cfg: &DecisionConfig,
    fewer_lines: bool,
) -> Evaluation {
    let dir = cfg.direction;
    let mut ev = Evaluation {
        verdict: Verdict::Discard,
        rounds: 1,
        threshold: 0.0,
        candidate_estimate: candidate,
        best_estimate: best,
        test: "deterministic".into(),
        ..Evaluation::default()
    };
    if !candidate.is_finite() {
        ev.reason = format!("candidate value {candidate} is not a finite number");
        return ev;
    }
    if !best.is_finite() {
        ev.verdict = Verdict::Keep;
        ev.p_value = 0.0;
        ev.reason = format!("best value {best} is not a finite number; candidate {candidate} is");
        return ev;
    }
    let gain = det_gain(dir, best, candidate);
    ev.estimate = gain;
    ev.lower = gain;
    ev.upper = gain;
    ev.ci_low = gain;
    ev.ci_high = gain;
    // Exact: a point on the chain's scale (the log ratio when both values are positive).
    ev.se = 0.0;
    ev.log_scale = best > 0.0 && candidate > 0.0;
    ev.theta = if ev.log_scale {
        match dir {
            Direction::Lower => best.ln() - candidate.ln(),
            Direction::Higher => candidate.ln() - best.ln(),
        }
    } else {
        gain
    };
    let (better, worse) = (dir.better(candidate, best), dir.better(best, candidate));
    if better {
        ev.verdict = Verdict::Keep;
        ev.p_value = 0.0;
        ev.reason = format!(
            "{} -> {} ({}): strictly better (deterministic metric)",
            fmt_num(best),
            fmt_num(candidate),
            fmt_gain(gain, best != 0.0)
        );
    } else if !worse && fewer_lines && cfg.simplicity {
        ev.verdict = Verdict::Keep;
        ev.simplification = true;
        ev.reason = format!(
            "equal ({}) with fewer lines: kept as a simplification",
            fmt_num(candidate)
        );
    } else if !worse {
        ev.reason = format!("equal ({}): no improvement", fmt_num(candidate));
    } else {
        ev.reason = format!(
            "{} -> {} ({}): worse",
            fmt_num(best),
            fmt_num(candidate),
            fmt_gain(gain, best != 0.0)
        );
    }
    ev
}

/// Relative gain when `best != 0`, else the signed absolute improvement.
fn det_gain(dir: Direction, best: f64, candidate: f64) -> f64 {
    if best != 0.0 {
        dir.gain(best, candidate)
    } else {
        match dir {
            Direction::Lower => best - candidate,
            Direction::Higher => candidate - best,
        }
    }
}

/// Naive rule for the benchmark comparison: keep iff the candidate is strictly better than
/// the best (a single measurement each).
pub fn naive_keep(best: f64, candidate: f64, direction: Direction) -> bool {
    direction.better(candidate, best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::cfg;

    #[test]
    fn deterministic_lower_is_better() {
        let c = cfg(Direction::Lower);
        let keep = evaluate_deterministic(10.0, 9.0, &c, false);
        assert_eq!(keep.verdict, Verdict::Keep);
        assert!((keep.estimate - 0.1).abs() < 1e-12);
        assert!(!keep.simplification);
        assert_eq!(keep.candidate_estimate, 9.0);
        // Any strict improvement keeps, however small.
        assert_eq!(
            evaluate_deterministic(10.0, 9.9999, &c, false).verdict,
            Verdict::Keep
        );
        assert_eq!(
            evaluate_deterministic(10.0, 11.0, &c, false).verdict,
            Verdict::Discard
        );
        assert_eq!(
            evaluate_deterministic(10.0, 10.0, &c, false).verdict,
            Verdict::Discard
        );
        // Equal with fewer lines: only with the simplicity policy.
        assert_eq!(
            evaluate_deterministic(10.0, 10.0, &c, true).verdict,
            Verdict::Discard
        );
        let simple = DecisionConfig::new(Direction::Lower, 0.01, 0.05, true);
        let s = evaluate_deterministic(10.0, 10.0, &simple, true);
        assert_eq!(s.verdict, Verdict::Keep);
        assert!(s.simplification);
        // Worse with fewer lines is still discarded.
        assert_eq!(
            evaluate_deterministic(10.0, 10.5, &simple, true).verdict,
            Verdict::Discard
        );
    }

    #[test]
    fn deterministic_higher_is_better() {
        let c = DecisionConfig::new(Direction::Higher, 0.01, 0.05, true);
        let keep = evaluate_deterministic(40.0, 41.0, &c, false);
        assert_eq!(keep.verdict, Verdict::Keep);
        assert!((keep.estimate - 0.025).abs() < 1e-12);
        assert_eq!(
            evaluate_deterministic(40.0, 39.0, &c, false).verdict,
            Verdict::Discard
        );
        let s = evaluate_deterministic(40.0, 40.0, &c, true);
        assert_eq!(s.verdict, Verdict::Keep);
        assert!(s.simplification);
        assert_eq!(
            evaluate_deterministic(40.0, 40.0, &c, false).verdict,
            Verdict::Discard
        );
    }

    #[test]
    fn deterministic_degenerate_values() {
        let c = cfg(Direction::Lower);
        // Zero best: absolute gain, finite.
        let z = evaluate_deterministic(0.0, -1.0, &c, false);
        assert_eq!(z.verdict, Verdict::Keep);
        assert_eq!(z.estimate, 1.0);
        assert_eq!(
            evaluate_deterministic(0.0, 0.0, &c, false).verdict,
            Verdict::Discard
        );
        assert_eq!(
            evaluate_deterministic(5.0, f64::NAN, &c, false).verdict,
            Verdict::Discard
        );
        assert_eq!(
            evaluate_deterministic(f64::NAN, 5.0, &c, false).verdict,
            Verdict::Keep
        );
        let j = serde_json::to_string(&evaluate_deterministic(5.0, f64::NAN, &c, false)).unwrap();
        let back: Evaluation = serde_json::from_str(&j).unwrap();
        assert_eq!(back.verdict, Verdict::Discard);
        assert!(back.candidate_estimate.is_nan());
    }

    #[test]
    fn naive_rule() {
        assert!(naive_keep(10.0, 9.0, Direction::Lower));
        assert!(!naive_keep(10.0, 10.0, Direction::Lower));
        assert!(naive_keep(10.0, 11.0, Direction::Higher));
        assert!(!naive_keep(10.0, 9.0, Direction::Higher));
    }
}
