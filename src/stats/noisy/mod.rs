//! The decision for a noisy metric: the paired test of the rounds, looked at only at the
//! checkpoints and extension looks (the method is in the `stats` module documentation). One
//! step per function: the per-round contrasts, their location (or the sign-flip test when
//! they tie), the bounds at the look's level, the verdict and its reason.

use super::format::{fmt_gain, fmt_level, fmt_p, fmt_pct};
use super::location::{locate, plain, robust_sd, t_quantile, t_sf, Location};
use super::perm::{sign_flip_p, signed_ranks};
use super::summary::{mad, median};
use super::{
    DecisionConfig, Evaluation, Verdict, FUTILITY_BETA, INTERVAL_LEVEL, PROMISING_P, ROBUST_MIN_N,
    UNSTABLE_FLOOR, UNSTABLE_RATIO,
};
use crate::spec::Direction;

mod first;

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
/// AB/BA order). Returns Continue except at a look where a decision is reached, and never
/// at (or past) `cfg.max_rounds()`, where undecided means Discard ("inconclusive").
/// `fewer_lines`: the candidate has fewer lines of code than the best (simplicity rule).
/// See the `stats` module documentation for the method.
///
/// The steps: where the round count stands among the looks (`look`), the contrasts, their
/// location and noise (`estimate`), the one-sided bounds at this look's level (`bounds`),
/// then the verdict and its reason (`Test::decide`).
pub fn evaluate_noisy(pairs: &[(f64, f64)], cfg: &DecisionConfig, fewer_lines: bool) -> Evaluation {
    let mut look = look(pairs.len(), cfg);
    let est = estimate(pairs, cfg);
    if est.tied.is_some() {
        // The exact test of tied rounds spends the plan's shares up to this look less what
        // the earlier looks' first rejections took (else its own share only).
        if let Some(level) = first::tied_level(pairs, cfg, look.due) {
            look.alpha_k = level;
        }
    }
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

/// Where a round count stands among the looks.
struct Look {
    rounds: usize,
    /// At or past the last look: undecided means Discard.
    last: bool,
    /// At or past the last checkpoint: only a promising candidate (or an unstable machine)
    /// goes on, to the extension looks.
    end_of_main: bool,
    at_look: bool,
    /// The one-sided level spent here; between looks, the next look's (bounds are reported
    /// at that level).
    alpha_k: f64,
    /// The next look (the maximum when none is left).
    next: usize,
    /// The look whose level `alpha_k` is: this one, else the next.
    due: usize,
    max_rounds: usize,
}

fn look(rounds: usize, cfg: &DecisionConfig) -> Look {
    let max_rounds = cfg.max_rounds();
    let last = rounds >= max_rounds;
    let next = cfg
        .looks()
        .into_iter()
        .find(|&c| c > rounds)
        .unwrap_or(max_rounds);
    // At or past the maximum, the last look's level applies.
    let alpha_k = if last {
        cfg.checkpoint_alpha(max_rounds)
    } else {
        cfg.checkpoint_alpha(rounds)
    };
    let at_look = alpha_k.is_some();
    let due = match (last, at_look) {
        (true, _) => max_rounds,
        (false, true) => rounds,
        (false, false) => next,
    };
    let alpha_k =
        alpha_k.unwrap_or_else(|| cfg.checkpoint_alpha(next).unwrap_or(cfg.alpha_clamped()));
    Look {
        rounds,
        last,
        end_of_main: rounds >= cfg.main_rounds(),
        at_look,
        alpha_k,
        next,
        due,
        max_rounds,
    }
}

/// The contrasts' location, with what maps it to gains and metric values.
struct Estimate {
    dir: Direction,
    c: Contrasts,
    /// Valid rounds.
    n: usize,
    loc: Location,
    /// The contrasts tie too much for a t statistic: the sign-flip test decides, with these
    /// one-sided p-values (better, worse).
    tied: Option<(f64, f64)>,
    /// The clamped `min_effect` (a gain), and the same threshold on the contrast scale.
    min_effect: f64,
    theta_min: f64,
    /// Per-measurement noise of the rounds (NaN below 3 rounds) and the baseline's.
    noise: f64,
    baseline_cv: Option<f64>,
    unstable: bool,
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
    let n = c.d.len();
    let tied = tie_heavy(&c.d).then(|| sign_flip_p(&signed_ranks(&c.d)));
    // The estimate of tied rounds is their mean (the Huber scale, a MAD, is zero).
    let loc = if tied.is_some() {
        plain(&c.d)
    } else {
        locate(&c.d)
    };
    let noise = if n >= 3 {
        robust_sd(&c.d) / std::f64::consts::SQRT_2
    } else {
        f64::NAN
    };
    let unstable = cfg.unstable
        || cfg.baseline_cv.is_some_and(|b| {
            noise.is_finite() && noise >= UNSTABLE_FLOOR && noise >= UNSTABLE_RATIO * b
        });
    Estimate {
        dir,
        n,
        loc,
        tied,
        c,
        min_effect,
        theta_min,
        noise,
        baseline_cv: cfg.baseline_cv,
        unstable,
    }
}

/// Contrasts that tie too much for a t statistic: their magnitudes are fewer than three
/// quarters distinct, or (from 3 rounds) more than half equal to their median. Magnitudes
/// only, so that the choice of test is one the sign-flip null leaves fixed (see
/// [`first`]); it covers every case of a zero MAD of the contrasts themselves.
fn tie_heavy(d: &[f64]) -> bool {
    let n = d.len();
    if n < 2 {
        return false;
    }
    let mut m: Vec<f64> = d.iter().map(|x| x.abs()).collect();
    m.sort_by(f64::total_cmp);
    let tol = 1e-9 * m[n - 1];
    let distinct = 1 + m.windows(2).filter(|w| w[1] - w[0] > tol).count();
    4 * distinct < 3 * n || (n >= 3 && mad(&m, median(&m)) <= tol)
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

    /// "unstable: noise 7.5% now, 2.1% at baseline", when it is.
    fn unstable_note(&self) -> String {
        if !self.unstable || !self.noise.is_finite() {
            return String::new();
        }
        match self.baseline_cv {
            Some(b) => format!(
                "; unstable: noise {} now, {} at baseline",
                fmt_pct(self.noise),
                fmt_pct(b)
            ),
            None => format!("; unstable: noise {}", fmt_pct(self.noise)),
        }
    }
}

/// One-sided bounds on `θ`: at (1-α_k) for the keep and "worse" tests, at (1-β) for
/// futility; the two-sided interval; and the p-value of "the candidate is not better".
struct Bounds {
    lower_k: f64,
    upper_k: f64,
    upper_f: f64,
    ci: (f64, f64),
    p_value: f64,
    /// The p-value of "the candidate is not worse" (for the sign-flip test's "worse").
    p_worse: f64,
}

fn bounds(est: &Estimate, alpha_k: f64) -> Bounds {
    let (n, loc) = (est.n, &est.loc);
    let b = if n >= 2 && loc.se == 0.0 {
        // All rounds agree exactly: the interval is a point, the p-value the sign-flip's.
        let t = loc.theta;
        Bounds {
            lower_k: t,
            upper_k: t,
            upper_f: t,
            ci: (t, t),
            p_value: 1.0,
            p_worse: 1.0,
        }
    } else if n >= 2 && loc.se.is_finite() {
        let tk = t_quantile(1.0 - alpha_k, loc.df);
        let tf = t_quantile(1.0 - FUTILITY_BETA, loc.df);
        let tc = t_quantile(1.0 - (1.0 - INTERVAL_LEVEL) / 2.0, loc.df);
        Bounds {
            lower_k: loc.theta - tk * loc.se,
            upper_k: loc.theta + tk * loc.se,
            upper_f: loc.theta + tf * loc.se,
            ci: (loc.theta - tc * loc.se, loc.theta + tc * loc.se),
            p_value: t_sf(loc.theta / loc.se, loc.df),
            p_worse: t_sf(-loc.theta / loc.se, loc.df),
        }
    } else {
        Bounds {
            lower_k: f64::NEG_INFINITY,
            upper_k: f64::INFINITY,
            upper_f: f64::INFINITY,
            ci: (f64::NEG_INFINITY, f64::INFINITY),
            p_value: 1.0,
            p_worse: 1.0,
        }
    };
    match est.tied {
        Some((better, worse)) => Bounds {
            p_value: better,
            p_worse: worse,
            ..b
        },
        None => b,
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
    /// The verdict: Continue between looks and with too few valid rounds to test.
    fn decide(&self) -> Decision {
        let (rounds, n) = (self.look.rounds, self.est.n);
        if !self.look.at_look && !self.look.last {
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
            return if self.look.end_of_main {
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
        let mut d = self.at_look();
        d.reason.push_str(&self.est.unstable_note());
        d
    }

    /// Better with confidence: the (1-α_k) lower bound above 0, or the sign-flip p ≤ α_k.
    fn significant(&self) -> bool {
        match self.est.tied {
            Some(_) => self.bounds.p_value <= self.look.alpha_k,
            None => self.bounds.lower_k > 0.0,
        }
    }

    /// Worse with confidence, by the same test.
    fn worse(&self) -> bool {
        match self.est.tied {
            Some(_) => self.bounds.p_worse <= self.look.alpha_k,
            None => self.bounds.upper_k < 0.0,
        }
    }

    /// "gain +5.2% (95% CI +2.1% to +8.4%": the estimate with its interval.
    fn gain_ci(&self) -> String {
        let (est, (lo, hi)) = (&self.est, self.bounds.ci);
        format!(
            "gain {} ({}% CI {} to {}",
            est.say(est.loc.theta),
            INTERVAL_LEVEL * 100.0,
            est.say(lo),
            est.say(hi)
        )
    }

    /// The test's evidence: "99.46% bound +1.3%, p=0.0021" or the sign-flip p-value.
    fn evidence(&self, bound: f64, which: &str) -> String {
        let (est, b, alpha_k) = (&self.est, &self.bounds, self.look.alpha_k);
        match est.tied {
            Some(_) => format!(
                "signed-rank test of the tied rounds: p={}, needed <= {}",
                fmt_p(if which == "upper" {
                    b.p_worse
                } else {
                    b.p_value
                }),
                fmt_p(alpha_k)
            ),
            None => format!(
                "{} {which} {}, p={}",
                fmt_level(alpha_k),
                est.say(bound),
                fmt_p(b.p_value)
            ),
        }
    }

    /// At a look with at least 2 valid rounds: keep, significantly worse, the simplicity
    /// rule, futility, then the end, the extension or another round.
    fn at_look(&self) -> Decision {
        let (est, b) = (&self.est, &self.bounds);
        let (n, theta) = (est.n, est.loc.theta);
        let (me, note) = (fmt_pct(est.min_effect), self.dropped_note());
        if self.significant() && theta >= est.theta_min {
            return Decision::new(
                Verdict::Keep,
                format!(
                    "{}; {}) >= min_effect {me} after {n} rounds{note}",
                    self.gain_ci(),
                    self.evidence(b.lower_k, "bound")
                ),
            );
        }
        if self.worse() {
            return Decision::new(
                Verdict::Discard,
                format!(
                    "significantly worse: {}; {}) after {n} rounds{note}",
                    self.gain_ci(),
                    self.evidence(b.upper_k, "upper")
                ),
            );
        }
        if self.simplicity {
            if let Some(d) = self.simplification() {
                return d;
            }
        }
        if !self.look.end_of_main {
            // Futility on the robust estimate only: one spike in three rounds never stops.
            if n >= ROBUST_MIN_N && b.upper_f < est.theta_min {
                return Decision::new(
                    Verdict::Discard,
                    format!(
                        "too small: {}; {} upper bound {} < min_effect {me}) after {n} rounds{note}",
                        self.gain_ci(),
                        fmt_level(FUTILITY_BETA),
                        est.say(b.upper_f)
                    ),
                );
            }
            return self.more("undecided");
        }
        if !self.look.last && theta >= est.theta_min && b.p_value <= PROMISING_P {
            return self.more("promising");
        }
        if !self.look.last && est.unstable && b.upper_f >= est.theta_min {
            return self.more("unstable machine");
        }
        self.undecided()
    }

    /// Another round (or the extension looks): why, and where the next look is.
    fn more(&self, why: &str) -> Decision {
        let (b, n) = (&self.bounds, self.est.n);
        let upto = if self.look.end_of_main {
            format!(": measuring up to {} rounds", self.look.max_rounds)
        } else {
            String::new()
        };
        Decision::new(
            Verdict::Continue,
            format!(
                "{why} after {n} rounds: {}; {}){upto}",
                self.gain_ci(),
                self.evidence(b.lower_k, "bound")
            ),
        )
    }

    /// The simplicity rule: kept when shown no worse than `-min_effect` (early) or not
    /// significantly worse (at the last checkpoint); before it, otherwise another round.
    /// None at the end when not kept: the ordinary end verdict applies.
    fn simplification(&self) -> Option<Decision> {
        let (est, b, end) = (&self.est, &self.bounds, self.look.end_of_main);
        let (n, theta, alpha_k) = (est.n, est.loc.theta, self.look.alpha_k);
        let (me, note) = (fmt_pct(est.min_effect), self.dropped_note());
        let early = !end && b.lower_k > -est.theta_min;
        let at_end = end && theta > -est.theta_min;
        if early || at_end {
            let reason = if early {
                format!(
                    "fewer lines and no worse than -{me}: {}; {} bound {}) after {n} rounds: kept as a simplification{note}",
                    self.gain_ci(),
                    fmt_level(alpha_k),
                    est.say(b.lower_k)
                )
            } else {
                format!(
                    "fewer lines and not significantly worse: {}; {} upper bound {}) after {n} rounds: kept as a simplification{note}",
                    self.gain_ci(),
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
        (!end).then(|| {
            Decision::new(
                Verdict::Continue,
                format!(
                    "simplification undecided after {n} rounds: {}; {} bound {})",
                    self.gain_ci(),
                    fmt_level(alpha_k),
                    est.say(b.lower_k)
                ),
            )
        })
    }

    /// Nothing decided at the end: significant but too small, or inconclusive.
    fn undecided(&self) -> Decision {
        let (est, b) = (&self.est, &self.bounds);
        let n = est.n;
        let (me, note) = (fmt_pct(est.min_effect), self.dropped_note());
        let reason = if self.significant() {
            format!(
                "significant but below min_effect {me}: {}) after {n} rounds{note}",
                self.gain_ci()
            )
        } else {
            format!(
                "inconclusive after {n} rounds: {}; {}){note}",
                self.gain_ci(),
                self.evidence(b.lower_k, "bound")
            )
        };
        Decision::new(Verdict::Discard, reason)
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
        let test = match (est.tied, est.n >= ROBUST_MIN_N && est.loc.robust) {
            (Some(_), _) => "sign-flip",
            (None, true) => "huber-t",
            (None, false) => "t",
        };
        Evaluation {
            verdict: d.verdict,
            rounds: est.n,
            estimate: est.gain(est.loc.theta),
            lower: est.gain(b.lower_k),
            upper: est.gain(if self.look.end_of_main {
                b.upper_k
            } else {
                b.upper_f
            }),
            p_value: b.p_value,
            threshold: est.min_effect,
            candidate_estimate: est.candidate_value(),
            best_estimate: est.c.best_center,
            simplification: d.simplification,
            reason: d.reason,
            ci_low: est.gain(b.ci.0),
            ci_high: est.gain(b.ci.1),
            theta: est.loc.theta,
            se: est.loc.se,
            df: est.loc.df,
            log_scale: est.c.log,
            noise: est.noise,
            unstable: est.unstable,
            test: test.into(),
        }
    }
}

#[cfg(test)]
mod tests;
