//! The change of a run's best against its baseline from same-time comparisons only: the
//! chain of the kept experiments' paired estimates, each measured against the best of its
//! time. On the log scale the ratios multiply, so the locations add and, the experiments'
//! measurements being independent, so do their variances; the interval uses Student's t
//! with Welch–Satterthwaite degrees of freedom. Never the ratio of two raw values measured
//! at different times under different load.

use serde::{Deserialize, Serialize};

use super::location::t_quantile;
use super::{Evaluation, INTERVAL_LEVEL};
use crate::spec::Direction;

/// The combined change of a chain of kept decisions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Chain {
    /// Relative gain of the last best over the baseline (0.10 = 10% better).
    pub gain: f64,
    /// Two-sided [`INTERVAL_LEVEL`] interval of the gain (equal to `gain` when every link
    /// is exact, e.g. deterministic).
    pub low: f64,
    pub high: f64,
    /// Kept decisions combined.
    pub links: usize,
}

/// Combine kept decisions (in any order). None when there is none or one has no estimate.
pub fn chain(direction: Direction, kept: &[&Evaluation]) -> Option<Chain> {
    if kept.is_empty() {
        return None;
    }
    let log = kept.iter().all(|e| e.log_scale);
    let (mut theta, mut var, mut quad) = (0.0, 0.0, 0.0);
    for e in kept {
        let (t, se) = link(direction, e, log)?;
        theta += t;
        var += se * se;
        let df = if e.df.is_finite() && e.df >= 1.0 {
            e.df
        } else {
            1.0
        };
        quad += se.powi(4) / df;
    }
    let half = if var > 0.0 {
        let df = if quad > 0.0 { var * var / quad } else { 1.0 };
        t_quantile(1.0 - (1.0 - INTERVAL_LEVEL) / 2.0, df) * var.sqrt()
    } else {
        0.0
    };
    let gain = |t: f64| to_gain(direction, t, log);
    Some(Chain {
        gain: gain(theta),
        low: gain(theta - half),
        high: gain(theta + half),
        links: kept.len(),
    })
}

/// One decision's location and standard error on the chain's scale (log ratios, or gains
/// added when a link is not on the log scale). A decision without a standard error (an
/// older journal, deterministic mode) counts as exact.
fn link(direction: Direction, e: &Evaluation, log: bool) -> Option<(f64, f64)> {
    let se = if e.se.is_finite() { e.se } else { 0.0 };
    if log {
        if e.theta.is_finite() {
            return Some((e.theta, se));
        }
        return e
            .estimate
            .is_finite()
            .then(|| (to_theta(direction, e.estimate), se));
    }
    // Additive on the gain scale: a log link's error maps by the delta method.
    let g = e.estimate;
    if !g.is_finite() {
        return None;
    }
    let se = if e.log_scale {
        match direction {
            Direction::Lower => se * (1.0 - g),
            Direction::Higher => se * (1.0 + g),
        }
    } else {
        se
    };
    Some((g, se.abs()))
}

/// A gain as a log ratio (the inverse of `to_gain` on the log scale).
fn to_theta(direction: Direction, gain: f64) -> f64 {
    match direction {
        Direction::Lower => -(-gain).ln_1p(),
        Direction::Higher => gain.ln_1p(),
    }
}

fn to_gain(direction: Direction, theta: f64, log: bool) -> f64 {
    if !log {
        return theta;
    }
    match direction {
        Direction::Lower => -(-theta).exp_m1(),
        Direction::Higher => theta.exp_m1(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(gain: f64, se: f64, df: f64) -> Evaluation {
        Evaluation {
            estimate: gain,
            theta: to_theta(Direction::Lower, gain),
            se,
            df,
            log_scale: true,
            ..Evaluation::default()
        }
    }

    #[test]
    fn ratios_multiply_and_variances_add() {
        let a = kept(0.10, 0.01, 10.0);
        let b = kept(0.05, 0.02, 10.0);
        let c = chain(Direction::Lower, &[&a, &b]).unwrap();
        // 0.9 × 0.95 = 0.855: a 14.5% gain.
        assert!((c.gain - 0.145).abs() < 1e-12, "{}", c.gain);
        assert!(c.low < c.gain && c.gain < c.high);
        assert_eq!(c.links, 2);
        // The half-width on the log scale is t × √(0.01² + 0.02²).
        let theta = |g: f64| -(-g).ln_1p();
        let half = theta(c.gain) - theta(c.low);
        assert!(half > 1.9 * 0.0224 && half < 2.3 * 0.0224, "{half}");
        assert_eq!(chain(Direction::Lower, &[]), None);
    }

    #[test]
    fn exact_links_give_a_point_and_directions_agree() {
        let det = Evaluation {
            estimate: 0.2,
            se: 0.0,
            ..Evaluation::default()
        };
        let c = chain(Direction::Lower, &[&det, &det]).unwrap();
        // Not on the log scale: the gains add.
        assert!((c.gain - 0.4).abs() < 1e-12, "{}", c.gain);
        let h = Evaluation {
            estimate: 0.10,
            theta: 0.10f64.ln_1p(),
            se: 0.0,
            log_scale: true,
            ..Evaluation::default()
        };
        let c = chain(Direction::Higher, &[&h, &h]).unwrap();
        assert!((c.gain - 0.21).abs() < 1e-12);
        assert_eq!((c.low, c.high), (c.gain, c.gain));
        // A link with no estimate at all: no chain.
        assert_eq!(chain(Direction::Lower, &[&Evaluation::default()]), None);
    }
}
