//! The decision for a noisy metric: the paired test of the rounds, looked at only at the
//! checkpoints (the method is in the `stats` module documentation). One step per function:
//! the per-round contrasts, their location, the bounds at the checkpoint's level, the
//! verdict and its reason.

use super::format::{fmt_gain, fmt_level, fmt_p, fmt_pct};
use super::location::{locate, t_quantile, t_sf, Location};
use super::summary::median;
use super::{DecisionConfig, Evaluation, Verdict, FUTILITY_BETA};
use crate::spec::Direction;

/// The per-round contrasts, on the log scale or (degenerate values) as scaled differences.
struct Contrasts {
    d: Vec<f64>,
    /// `d` are log ratios (else differences divided by `scale`).
    log: bool,
    scale: f64,
    /// Gains are relative (log ratios, or differences scaled by a nonzero median).
    relative: bool,
    best_center: f64,
}

fn contrasts(pairs: &[(f64, f64)], dir: Direction) -> Contrasts {
    let valid: Vec<(f64, f64)> = pairs
        .iter()
        .copied()
        .filter(|(b, c)| b.is_finite() && c.is_finite())
        .collect();
    let bests: Vec<f64> = valid.iter().map(|p| p.0).collect();
    let best_center = median(&bests);
    let sign = match dir {
        Direction::Lower => 1.0,
        Direction::Higher => -1.0,
    };
    if valid.iter().all(|&(b, c)| b > 0.0 && c > 0.0) {
        let d = valid
            .iter()
            .map(|&(b, c)| sign * (b.ln() - c.ln()))
            .collect();
        Contrasts {
            d,
            log: true,
            scale: 1.0,
            relative: true,
            best_center,
        }
    } else {
        let relative = best_center.is_finite() && best_center != 0.0;
        let scale = if relative { best_center.abs() } else { 1.0 };
        let d = valid.iter().map(|&(b, c)| sign * (b - c) / scale).collect();
        Contrasts {
            d,
            log: false,
            scale,
            relative,
            best_center,
        }
    }
}

/// Noisy mode. `pairs[i] = (best_value, candidate_value)` measured in round `i` (alternating
/// AB/BA order). Returns Continue except at a checkpoint where a decision is reached, and
/// never at (or past) `cfg.max_rounds()`, where undecided means Discard ("inconclusive").
/// `fewer_lines`: the candidate has fewer lines of code than the best (simplicity rule).
/// See the `stats` module documentation for the method.
///
/// The steps: where the round count stands among the checkpoints (`look`), the contrasts
/// and their location (`estimate`), the one-sided bounds at this checkpoint's level
/// (`bounds`), then the verdict and its reason (`Test::decide`).
pub fn evaluate_noisy(pairs: &[(f64, f64)], cfg: &DecisionConfig, fewer_lines: bool) -> Evaluation {
    let look = look(pairs.len(), cfg);
    let est = estimate(pairs, cfg);
    let bounds = bounds(&est, look.alpha_k);
    let test = Test {
        look,
        est,
        bounds,
        simplicity: cfg.simplicity && fewer_lines,
    };
    let decision = test.decide();
    test.evaluation(decision)
}

/// Where a round count stands among the checkpoints.
struct Look {
    rounds: usize,
    /// At or past the last checkpoint: undecided means Discard.
    last: bool,
    at_checkpoint: bool,
    /// The one-sided level spent here; between checkpoints, the next checkpoint's (bounds
    /// are reported at that level).
    alpha_k: f64,
    /// The next checkpoint (the maximum when none is left).
    next: usize,
}

fn look(rounds: usize, cfg: &DecisionConfig) -> Look {
    let max_rounds = cfg.max_rounds();
    let last = rounds >= max_rounds;
    let next = cfg
        .clean_checkpoints()
        .iter()
        .copied()
        .find(|&c| c > rounds)
        .unwrap_or(max_rounds);
    // At or past the maximum, the last checkpoint's level applies.
    let alpha_k = if last {
        cfg.checkpoint_alpha(max_rounds)
    } else {
        cfg.checkpoint_alpha(rounds)
    };
    let at_checkpoint = alpha_k.is_some();
    let alpha_k =
        alpha_k.unwrap_or_else(|| cfg.checkpoint_alpha(next).unwrap_or(cfg.alpha_clamped()));
    Look {
        rounds,
        last,
        at_checkpoint,
        alpha_k,
        next,
    }
}

/// The contrasts' location, with what maps it to gains and metric values.
struct Estimate {
    dir: Direction,
    c: Contrasts,
    /// Valid rounds.
    n: usize,
    loc: Location,
    /// The clamped `min_effect` (a gain), and the same threshold on the contrast scale.
    min_effect: f64,
    theta_min: f64,
}

fn estimate(pairs: &[(f64, f64)], cfg: &DecisionConfig) -> Estimate {
    let dir = cfg.direction;
    let min_effect = cfg.min_effect_clamped();
    let c = contrasts(pairs, dir);
    let theta_min = if c.log {
        match dir {
            Direction::Lower => -(-min_effect).ln_1p(),
            Direction::Higher => min_effect.ln_1p(),
        }
    } else {
        min_effect
    };
    Estimate {
        dir,
        n: c.d.len(),
        loc: locate(&c.d),
        c,
        min_effect,
        theta_min,
    }
}

impl Estimate {
    /// A location on the contrast scale as a gain.
    fn gain(&self, theta: f64) -> f64 {
        if self.c.log {
            match self.dir {
                Direction::Lower => -(-theta).exp_m1(),
                Direction::Higher => theta.exp_m1(),
            }
        } else {
            theta
        }
    }

    /// The gain of `theta`, for a reason.
    fn say(&self, theta: f64) -> String {
        fmt_gain(self.gain(theta), self.c.relative)
    }

    /// The candidate's value implied by the best's median and the estimate.
    fn candidate_value(&self) -> f64 {
        let (best, theta) = (self.c.best_center, self.loc.theta);
        if self.n == 0 {
            f64::NAN
        } else if self.c.log {
            match self.dir {
                Direction::Lower => best * (-theta).exp(),
                Direction::Higher => best * theta.exp(),
            }
        } else {
            match self.dir {
                Direction::Lower => best - theta * self.c.scale,
                Direction::Higher => best + theta * self.c.scale,
            }
        }
    }
}

/// One-sided bounds on `θ`: at (1-α_k) for the keep and "worse" tests, at (1-β) for
/// futility; and the p-value of "the candidate is not better".
struct Bounds {
    lower_k: f64,
    upper_k: f64,
    upper_f: f64,
    p_value: f64,
}

fn bounds(est: &Estimate, alpha_k: f64) -> Bounds {
    let (n, loc) = (est.n, &est.loc);
    let (lower_k, upper_k, upper_f, p_value) = if n >= 2 && loc.se == 0.0 {
        // All rounds agree exactly: no noise left to test against.
        let p = if loc.theta > 0.0 { 0.0 } else { 1.0 };
        (loc.theta, loc.theta, loc.theta, p)
    } else if n >= 2 && loc.se.is_finite() {
        let tk = t_quantile(1.0 - alpha_k, loc.df);
        let tf = t_quantile(1.0 - FUTILITY_BETA, loc.df);
        (
            loc.theta - tk * loc.se,
            loc.theta + tk * loc.se,
            loc.theta + tf * loc.se,
            t_sf(loc.theta / loc.se, loc.df),
        )
    } else {
        (f64::NEG_INFINITY, f64::INFINITY, f64::INFINITY, 1.0)
    };
    Bounds {
        lower_k,
        upper_k,
        upper_f,
        p_value,
    }
}

/// A verdict with its reason.
struct Decision {
    verdict: Verdict,
    simplification: bool,
    reason: String,
}

impl Decision {
    fn new(verdict: Verdict, reason: String) -> Decision {
        Decision {
            verdict,
            simplification: false,
            reason,
        }
    }
}

/// Everything the verdict at this look depends on.
struct Test {
    look: Look,
    est: Estimate,
    bounds: Bounds,
    /// The simplicity rule applies (policy on, the candidate has fewer lines).
    simplicity: bool,
}

impl Test {
    /// The verdict: Continue between checkpoints and with too few valid rounds to test.
    fn decide(&self) -> Decision {
        let (rounds, n) = (self.look.rounds, self.est.n);
        if !self.look.at_checkpoint && !self.look.last {
            return Decision::new(
                Verdict::Continue,
                format!(
                    "{rounds} round(s): gain {} so far, next look at round {}",
                    self.est.say(self.est.loc.theta),
                    self.look.next
                ),
            );
        }
        if n < 2 {
            let note = self.dropped_note();
            return if self.look.last {
                Decision::new(
                    Verdict::Discard,
                    format!(
                        "inconclusive after {rounds} round(s): fewer than 2 valid rounds{note}"
                    ),
                )
            } else {
                Decision::new(
                    Verdict::Continue,
                    format!("{n} valid round(s): too few to test{note}"),
                )
            };
        }
        self.at_checkpoint()
    }

    /// At a checkpoint (or past the last) with at least 2 valid rounds: keep, significantly
    /// worse, the simplicity rule, futility, then the end or another round.
    fn at_checkpoint(&self) -> Decision {
        let (est, b) = (&self.est, &self.bounds);
        let (n, theta, alpha_k) = (est.n, est.loc.theta, self.look.alpha_k);
        let (me, note) = (fmt_pct(est.min_effect), self.dropped_note());
        if b.lower_k > 0.0 && theta >= est.theta_min {
            return Decision::new(
                Verdict::Keep,
                format!(
                    "gain {} ({} bound {}, p={}) >= min_effect {me} after {n} rounds{note}",
                    est.say(theta),
                    fmt_level(alpha_k),
                    est.say(b.lower_k),
                    fmt_p(b.p_value)
                ),
            );
        }
        if b.upper_k < 0.0 {
            return Decision::new(
                Verdict::Discard,
                format!(
                    "significantly worse: gain {} ({} upper bound {}) after {n} rounds{note}",
                    est.say(theta),
                    fmt_level(alpha_k),
                    est.say(b.upper_k)
                ),
            );
        }
        if self.simplicity {
            if let Some(d) = self.simplification() {
                return d;
            }
        }
        if !self.look.last && b.upper_f < est.theta_min {
            return Decision::new(
                Verdict::Discard,
                format!(
                    "gain {} too small: {} upper bound {} < min_effect {me} after {n} rounds{note}",
                    est.say(theta),
                    fmt_level(FUTILITY_BETA),
                    est.say(b.upper_f)
                ),
            );
        }
        self.undecided()
    }

    /// The simplicity rule: kept when shown no worse than `-min_effect` (early) or not
    /// significantly worse (at the end); before the end, otherwise another round. None at
    /// the end when not kept: the ordinary end verdict applies.
    fn simplification(&self) -> Option<Decision> {
        let (est, b, last) = (&self.est, &self.bounds, self.look.last);
        let (n, theta, alpha_k) = (est.n, est.loc.theta, self.look.alpha_k);
        let (me, note) = (fmt_pct(est.min_effect), self.dropped_note());
        let early = !last && b.lower_k > -est.theta_min;
        let at_end = last && theta > -est.theta_min;
        if early || at_end {
            let reason = if early {
                format!(
                    "fewer lines and no worse than -{me}: gain {} ({} bound {}) after {n} rounds: kept as a simplification{note}",
                    est.say(theta),
                    fmt_level(alpha_k),
                    est.say(b.lower_k)
                )
            } else {
                format!(
                    "fewer lines and not significantly worse: gain {} ({} upper bound {}) after {n} rounds: kept as a simplification{note}",
                    est.say(theta),
                    fmt_level(alpha_k),
                    est.say(b.upper_k)
                )
            };
            return Some(Decision {
                verdict: Verdict::Keep,
                simplification: true,
                reason,
            });
        }
        (!last).then(|| {
            Decision::new(
                Verdict::Continue,
                format!(
                    "simplification undecided after {n} rounds: gain {} ({} bound {})",
                    est.say(theta),
                    fmt_level(alpha_k),
                    est.say(b.lower_k)
                ),
            )
        })
    }

    /// Nothing decided: Discard at the end (significant but too small, or inconclusive),
    /// else another round.
    fn undecided(&self) -> Decision {
        let (est, b) = (&self.est, &self.bounds);
        let (n, theta, alpha_k) = (est.n, est.loc.theta, self.look.alpha_k);
        let (me, note) = (fmt_pct(est.min_effect), self.dropped_note());
        if self.look.last {
            let reason = if b.lower_k > 0.0 {
                format!(
                    "gain {} is significant but below min_effect {me} after {n} rounds{note}",
                    est.say(theta)
                )
            } else {
                format!(
                    "inconclusive after {n} rounds: gain {} ({} bound {}, p={}){note}",
                    est.say(theta),
                    fmt_level(alpha_k),
                    est.say(b.lower_k),
                    fmt_p(b.p_value)
                )
            };
            return Decision::new(Verdict::Discard, reason);
        }
        Decision::new(
            Verdict::Continue,
            format!(
                "undecided after {n} rounds: gain {} ({} bound {}, p={})",
                est.say(theta),
                fmt_level(alpha_k),
                est.say(b.lower_k),
                fmt_p(b.p_value)
            ),
        )
    }

    /// Said of a verdict when rounds with non-finite values were dropped.
    fn dropped_note(&self) -> String {
        let dropped = self.look.rounds - self.est.n;
        if dropped > 0 {
            format!(" ({dropped} round(s) with non-finite values ignored)")
        } else {
            String::new()
        }
    }

    /// The evaluation: the decision with the numbers behind it.
    fn evaluation(&self, d: Decision) -> Evaluation {
        let (est, b) = (&self.est, &self.bounds);
        Evaluation {
            verdict: d.verdict,
            rounds: est.n,
            estimate: est.gain(est.loc.theta),
            lower: est.gain(b.lower_k),
            upper: est.gain(if self.look.last { b.upper_k } else { b.upper_f }),
            p_value: b.p_value,
            threshold: est.min_effect,
            candidate_estimate: est.candidate_value(),
            best_estimate: est.c.best_center,
            simplification: d.simplification,
            reason: d.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::cfg;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// `n` rounds of a lower-is-better metric around 100 whose candidate is `factor` × best,
    /// with multiplicative noise `noise` (deterministic, seeded).
    fn noisy_pairs(seed: u64, n: usize, factor: f64, noise: f64) -> Vec<(f64, f64)> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let b = 100.0 * (1.0 + noise * (rng.gen::<f64>() - 0.5) * 3.46);
                let c = 100.0 * factor * (1.0 + noise * (rng.gen::<f64>() - 0.5) * 3.46);
                (b, c)
            })
            .collect()
    }

    /// Feed rounds one by one like the loop; return the first non-Continue evaluation.
    fn run_sequential(pairs: &[(f64, f64)], cfg: &DecisionConfig, fewer: bool) -> Evaluation {
        for r in 1..=pairs.len() {
            let ev = evaluate_noisy(&pairs[..r], cfg, fewer);
            if ev.verdict != Verdict::Continue {
                return ev;
            }
            assert!(r < cfg.max_rounds(), "Continue at max rounds");
        }
        panic!("no decision after {} rounds", pairs.len());
    }

    #[test]
    fn noisy_clear_gain_kept_at_first_checkpoint() {
        let c = cfg(Direction::Lower);
        let pairs = [(100.0, 80.0), (101.0, 80.5), (99.5, 79.8)];
        assert_eq!(
            evaluate_noisy(&pairs[..1], &c, false).verdict,
            Verdict::Continue
        );
        assert_eq!(
            evaluate_noisy(&pairs[..2], &c, false).verdict,
            Verdict::Continue
        );
        let ev = evaluate_noisy(&pairs, &c, false);
        assert_eq!(ev.verdict, Verdict::Keep, "{}", ev.reason);
        assert_eq!(ev.rounds, 3);
        assert!((ev.estimate - 0.2).abs() < 0.01, "estimate {}", ev.estimate);
        assert!(ev.lower > 0.0 && ev.lower <= ev.estimate);
        assert!(ev.p_value < 0.005);
        assert_eq!(ev.threshold, 0.01);
        assert!(!ev.simplification);
        assert!((ev.candidate_estimate - 80.0).abs() < 1.0);
        assert_eq!(ev.best_estimate, 100.0);
        assert!(ev.reason.contains("min_effect 1%"), "{}", ev.reason);
        // Serializes with snake_case verdicts and round-trips.
        let j = serde_json::to_string(&ev).unwrap();
        assert!(j.contains(r#""verdict":"keep""#), "{j}");
        let back: Evaluation = serde_json::from_str(&j).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn noisy_random_gain_kept_within_max_rounds() {
        // A 10% gain on a 2% metric: kept, on the way.
        let c = cfg(Direction::Lower);
        for seed in 0..20 {
            let ev = run_sequential(&noisy_pairs(seed, 12, 0.90, 0.02), &c, false);
            assert_eq!(ev.verdict, Verdict::Keep, "seed {seed}: {}", ev.reason);
            assert!(ev.rounds <= 8, "seed {seed}: {} rounds", ev.rounds);
        }
    }

    #[test]
    fn noisy_identical_distributions_not_kept() {
        let c = cfg(Direction::Lower);
        // Exactly identical values: no gain, never kept, Discard at the end.
        let same = vec![(100.0, 100.0); 12];
        let ev = run_sequential(&same, &c, false);
        assert_eq!(ev.verdict, Verdict::Discard, "{}", ev.reason);
        // Same distribution, random noise: kept at most at the rate alpha (5%); the naive
        // rule would keep half.
        let kept = (0..1000)
            .filter(|&seed| {
                run_sequential(&noisy_pairs(1000 + seed, 12, 1.0, 0.02), &c, false).verdict
                    == Verdict::Keep
            })
            .count();
        assert!(kept <= 50, "{kept} of 1000 no-op candidates kept");
    }

    #[test]
    fn noisy_clear_regression_discarded_early() {
        let c = cfg(Direction::Lower);
        let pairs = noisy_pairs(7, 12, 1.10, 0.02);
        let ev = run_sequential(&pairs, &c, false);
        assert_eq!(ev.verdict, Verdict::Discard, "{}", ev.reason);
        assert_eq!(ev.rounds, 3, "{}", ev.reason);
        assert!(ev.estimate < -0.05, "estimate {}", ev.estimate);
        assert!(ev.upper < 0.01);
    }

    #[test]
    fn noisy_inconclusive_at_the_end() {
        // Round gains alternate +5% / -4%: small average, too noisy for any decision.
        let c = cfg(Direction::Lower);
        let pairs: Vec<(f64, f64)> = (0..12)
            .map(|i| {
                let d: f64 = if i % 2 == 0 { 0.05 } else { -0.04 };
                (100.0, 100.0 / d.exp())
            })
            .collect();
        for r in [3, 5, 8] {
            let ev = evaluate_noisy(&pairs[..r], &c, false);
            assert_eq!(ev.verdict, Verdict::Continue, "round {r}: {}", ev.reason);
        }
        let ev = evaluate_noisy(&pairs, &c, false);
        assert_eq!(ev.verdict, Verdict::Discard);
        assert!(ev.reason.contains("inconclusive"), "{}", ev.reason);
        assert_eq!(ev.rounds, 12);
        // Past the maximum: still a decision, never Continue.
        let mut more = pairs.clone();
        more.push((100.0, 100.0));
        assert_ne!(evaluate_noisy(&more, &c, false).verdict, Verdict::Continue);
    }

    #[test]
    fn noisy_continue_between_checkpoints() {
        let c = cfg(Direction::Lower);
        let pairs = noisy_pairs(3, 12, 0.5, 0.01);
        for r in [1, 2, 4, 6, 7, 9, 10, 11] {
            let ev = evaluate_noisy(&pairs[..r], &c, false);
            assert_eq!(ev.verdict, Verdict::Continue, "round {r}");
            assert_eq!(ev.rounds, r);
        }
    }

    #[test]
    fn noisy_higher_is_better() {
        let c = cfg(Direction::Higher);
        // Throughput up 20%.
        let up = [(50.0, 60.0), (50.5, 60.2), (49.8, 59.9)];
        let ev = evaluate_noisy(&up, &c, false);
        assert_eq!(ev.verdict, Verdict::Keep, "{}", ev.reason);
        assert!((ev.estimate - 0.2).abs() < 0.01, "estimate {}", ev.estimate);
        assert!(ev.candidate_estimate > ev.best_estimate);
        // Throughput down 20%: discarded.
        let down = [(50.0, 40.0), (50.5, 40.2), (49.8, 39.9)];
        let ev = evaluate_noisy(&down, &c, false);
        assert_eq!(ev.verdict, Verdict::Discard, "{}", ev.reason);
        assert!(ev.estimate < -0.15);
        // Same data read as lower-is-better: the opposite verdicts.
        assert_eq!(
            evaluate_noisy(&down, &cfg(Direction::Lower), false).verdict,
            Verdict::Keep
        );
    }

    #[test]
    fn noisy_small_gain_below_min_effect_not_kept() {
        // A real but tiny 0.3% gain, measured very precisely: significant, but below 1%.
        let c = cfg(Direction::Lower);
        let pairs: Vec<(f64, f64)> = (0..12)
            .map(|i| (100.0 + (i % 3) as f64 * 0.01, 99.7 + (i % 2) as f64 * 0.01))
            .collect();
        let ev = run_sequential(&pairs, &c, false);
        assert_eq!(ev.verdict, Verdict::Discard, "{}", ev.reason);
    }

    #[test]
    fn noisy_simplification() {
        let simple = DecisionConfig::new(Direction::Lower, 0.01, 0.05, true);
        let pairs = noisy_pairs(11, 12, 1.0, 0.005);
        let ev = run_sequential(&pairs, &simple, true);
        assert_eq!(ev.verdict, Verdict::Keep, "{}", ev.reason);
        assert!(ev.simplification);
        // Without fewer lines, or without the policy: not kept.
        assert_eq!(
            run_sequential(&pairs, &simple, false).verdict,
            Verdict::Discard
        );
        assert_eq!(
            run_sequential(&pairs, &cfg(Direction::Lower), true).verdict,
            Verdict::Discard
        );
        // A clear regression with fewer lines is still discarded, early.
        let worse = noisy_pairs(12, 12, 1.10, 0.01);
        let ev = run_sequential(&worse, &simple, true);
        assert_eq!(ev.verdict, Verdict::Discard, "{}", ev.reason);
        assert!(ev.rounds <= 5);
        assert!(!ev.simplification);
    }

    #[test]
    fn noisy_fixed_rounds() {
        let c = cfg(Direction::Lower).fixed_rounds(4);
        let pairs = noisy_pairs(5, 4, 0.8, 0.01);
        for r in 1..4 {
            assert_eq!(
                evaluate_noisy(&pairs[..r], &c, false).verdict,
                Verdict::Continue
            );
        }
        assert_eq!(evaluate_noisy(&pairs, &c, false).verdict, Verdict::Keep);
    }

    #[test]
    fn noisy_robust_to_a_spike() {
        // A clear 5% gain with one 15% spike in the candidate's runs: still kept by round 8.
        let c = cfg(Direction::Lower);
        let mut pairs = noisy_pairs(21, 12, 0.95, 0.01);
        pairs[1].1 *= 1.15;
        let ev = run_sequential(&pairs, &c, false);
        assert_eq!(ev.verdict, Verdict::Keep, "{}", ev.reason);
        assert!(ev.rounds <= 8, "{} rounds", ev.rounds);
    }

    #[test]
    fn noisy_degenerate_inputs_do_not_panic() {
        let c = cfg(Direction::Lower);
        let cases: Vec<Vec<(f64, f64)>> = vec![
            vec![],
            vec![(0.0, 0.0); 12],
            vec![(0.0, 1.0); 12],
            vec![(1.0, 0.0); 12],
            vec![(-5.0, -6.0), (-5.1, -6.2), (-4.9, -5.9)],
            vec![(f64::NAN, 1.0); 12],
            vec![(f64::NAN, f64::NAN); 3],
            vec![(1.0, f64::INFINITY), (1.0, 0.5), (1.0, 0.5)],
            vec![(1.0, 0.5); 3],
            vec![(1e-300, 1e300); 5],
            vec![(f64::MAX, f64::MIN_POSITIVE); 5],
        ];
        for pairs in &cases {
            for r in 0..=pairs.len() {
                for dir in [Direction::Lower, Direction::Higher] {
                    for simple in [false, true] {
                        let mut c = cfg(dir);
                        c.simplicity = simple;
                        let ev = evaluate_noisy(&pairs[..r], &c, simple);
                        if r >= c.max_rounds() {
                            assert_ne!(ev.verdict, Verdict::Continue);
                        }
                        let j = serde_json::to_string(&ev).unwrap();
                        let _: Evaluation = serde_json::from_str(&j).unwrap();
                    }
                }
            }
        }
        // All zeros: no gain, discarded at the end.
        let ev = evaluate_noisy(&cases[1], &c, false);
        assert_eq!(ev.verdict, Verdict::Discard, "{}", ev.reason);
        // Zeros in the candidate (lower is better): differences, gain 100%, kept.
        let ev = evaluate_noisy(&cases[3][..3], &c, false);
        assert_eq!(ev.verdict, Verdict::Keep, "{}", ev.reason);
        // Negative values: differences scaled by |median best|, candidate lower, kept.
        let ev = evaluate_noisy(&cases[4], &c, false);
        assert_eq!(ev.verdict, Verdict::Keep, "{}", ev.reason);
        // NaN rounds are ignored; all-NaN ends inconclusive.
        let ev = evaluate_noisy(&cases[5], &c, false);
        assert_eq!(ev.verdict, Verdict::Discard);
        assert_eq!(ev.rounds, 0);
        // Nonsense configuration does not panic either.
        let mut odd = cfg(Direction::Lower);
        odd.alpha = f64::NAN;
        odd.min_effect = f64::INFINITY;
        odd.checkpoints = vec![];
        let _ = evaluate_noisy(&noisy_pairs(1, 12, 0.9, 0.02), &odd, false);
        odd.alpha = 2.0;
        odd.min_effect = -1.0;
        odd.checkpoints = vec![5, 0, 5, 2];
        assert_eq!(odd.max_rounds(), 5);
        let _ = evaluate_noisy(&noisy_pairs(1, 5, 0.9, 0.02), &odd, false);
    }
}
