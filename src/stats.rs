//! Statistics of the keep/discard decision (DESIGN.md section 4). Pure functions: no I/O.
//!
//! # Modes
//!
//! At baseline the loop runs the metric [`probe_runs`] times and calls [`probe_mode`]. All
//! values equal (test counts, deterministic losses) gives [`Mode::Deterministic`]: one run per
//! measurement and a strict comparison ([`evaluate_deterministic`]). Anything else gives
//! [`Mode::Noisy`]: every round measures the current best and the candidate back to back (in
//! alternating order AB, BA, ...) and [`evaluate_noisy`] tests the paired rounds.
//!
//! # The noisy test
//!
//! * **Per-round log ratios.** Round `i` gives `d_i = ln(best_i / cand_i)` for a
//!   lower-is-better metric and `ln(cand_i / best_i)` for higher-is-better, so `d > 0` means the
//!   candidate was better in that round. Pairing measurements taken seconds apart cancels slow
//!   drift of the machine; the log makes the test scale-free (a 2% noise is a 2% noise whatever
//!   the unit). If any value is zero, negative or infinite, logs are meaningless and the test
//!   runs on differences scaled by the best's median instead (absolute differences if that
//!   median is zero). Rounds with a NaN or infinite value are dropped.
//! * **Gain.** A location `θ` of the `d_i` is a log ratio; it is reported as a relative gain with
//!   the same definition as [`Direction::gain`]: for lower-is-better `gain = 1 - cand/best =
//!   1 - e^-θ`, for higher-is-better `gain = cand/best - 1 = e^θ - 1`. `min_effect` is a gain,
//!   so "the estimate ≥ `min_effect`" is exactly `θ̂ ≥ θ_min` with `θ_min` the log ratio whose
//!   gain is `min_effect`.
//! * **Robust location: a Huber M-estimate.** The metric has occasional spikes (a benchmark
//!   that hit a busy moment runs 15% slow). One spike in eight rounds ruins a mean and its
//!   standard deviation: the t statistic collapses and real gains are never proven, or,
//!   worse, a spike in the *best's* run reads as a big gain. The Huber estimate behaves like
//!   the mean on the Gaussian bulk (≈99% efficient at `k` = [`HUBER_K`] = 2) and caps the pull
//!   of any round at `k` robust standard deviations (scale: the MAD), so a spike of 5σ counts
//!   as 2σ. Its standard error is the sandwich estimate with small-sample corrections (see
//!   `huber`), and the test uses Student's t. Why not the alternatives: a plain t loses power
//!   to spikes (measured: 5% gains kept 88% vs 93%, 3% gains 60% vs 67%); a trimmed mean (Yuen) drops
//!   whole rounds and degrees of freedom, which hurts at 5-8 rounds; sign and signed-rank
//!   tests cannot reach α/4 before 5-7 rounds whatever the data; "drop outliers, then t" is
//!   badly anti-conservative at these sample sizes (measured 3-4× the nominal level). With
//!   fewer than [`ROBUST_MIN_N`] rounds the MAD means little, so the plain t on the log ratios
//!   is used (a spike there inflates the standard deviation and merely delays the decision).
//! * **Checkpoints and α.** The test is looked at only at checkpoints (default 3, 5, 8, 12
//!   rounds). The one-sided level α is spent across them in proportion to the number of rounds
//!   at each (α_k = α·n_k/Σn_j: 0.54%, 0.89%, 1.43%, 2.14% for α = 5%), so by Bonferroni's
//!   inequality the chance of ever keeping a no-op is at most α whatever the correlation of
//!   the looks; early looks get a smaller share because they carry less information.
//! * **Keep** at checkpoint k when the one-sided (1-α_k) lower bound on `θ` is above 0 (the
//!   candidate is better with confidence) **and** the estimate `θ̂ ≥ θ_min` (the gain is worth
//!   having).
//! * **Discard early** ("too small") at a checkpoint before the last when the one-sided
//!   (1-[`FUTILITY_BETA`]) upper bound on the gain is below `min_effect`, or when the candidate
//!   is significantly worse (the (1-α_k) upper bound is below 0). The futility bound is looser
//!   than the keep bound on purpose (β = 30%, an upper bound at the 70% level): proving
//!   "below 1%" at α_k would take ~30 rounds of a 2%-noise metric, so every no-op would run
//!   to the last checkpoint. A futility stop can only turn a keep into a discard, so it never
//!   raises the rate of false keeps; it costs little power (a true 5% gain is almost never
//!   70%-confidently below 1%: kept 92.8% vs 93.7% without it) and halves the rounds spent
//!   on no-op changes (6.1 vs 11.8; measured by `cargo bench --bench decision`).
//! * **Last checkpoint**: undecided means Discard ("inconclusive").
//! * **Simplicity** (`simplicity` and the candidate has fewer lines): a candidate that is not
//!   significantly worse is kept, marked as a simplification. Early, at a checkpoint where it
//!   is shown to be no worse than `-min_effect` ((1-α_k) lower bound above `-θ_min`); at the
//!   last checkpoint when it is not significantly worse (upper bound ≥ 0) and its estimate is
//!   not a loss of more than `min_effect`. A significant regression is discarded early.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::spec::Direction;

/// Huber's tuning constant, in robust standard deviations (≈99% efficiency at the normal).
pub const HUBER_K: f64 = 2.0;
/// Below this many valid rounds the plain t on the log ratios is used instead of Huber.
pub const ROBUST_MIN_N: usize = 5;
/// One-sided level of the futility (upper) bound used for early "too small" discards.
pub const FUTILITY_BETA: f64 = 0.3;
/// Default checkpoints, in rounds.
pub const DEFAULT_CHECKPOINTS: [usize; 4] = [3, 5, 8, 12];

// ---------------------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------------------

/// How the metric behaves, decided once at baseline by [`probe_mode`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// Every baseline run gave the same value: one run per measurement, strict comparison.
    Deterministic,
    /// Baseline runs differ; `cv` is their robust coefficient of variation (see [`probe_mode`]).
    Noisy {
        #[serde(with = "finite_or_null")]
        cv: f64,
    },
}

/// How many baseline runs the "auto" noise probe does.
pub fn probe_runs() -> usize {
    5
}

/// Classify baseline samples.
///
/// * All values finite and exactly equal (and at least one): [`Mode::Deterministic`].
/// * Otherwise [`Mode::Noisy`] with a robust coefficient of variation:
///   `1.4826 × MAD / |median|` (the MAD-based standard deviation over the median, so one slow
///   run out of five does not make a 1% metric look like a 10% one). When the MAD is zero
///   (most runs equal, a few not) the classical [`cv`] is used; when the centre is zero the
///   spread is reported unscaled. Non-finite samples are ignored for the `cv` but make the
///   metric noisy (a metric that sometimes fails is not deterministic). With fewer than two
///   finite samples the `cv` is 0 (unknown).
pub fn probe_mode(samples: &[f64]) -> Mode {
    let finite: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if finite.is_empty() {
        return Mode::Noisy { cv: 0.0 };
    }
    let all_equal = finite.iter().all(|&x| x == finite[0]);
    if all_equal && finite.len() == samples.len() {
        return Mode::Deterministic;
    }
    if finite.len() < 2 || all_equal {
        return Mode::Noisy { cv: 0.0 };
    }
    let med = median(&finite);
    let spread = 1.4826 * mad(&finite, med);
    let cv = if spread > 0.0 && med != 0.0 {
        spread / med.abs()
    } else if spread > 0.0 {
        spread
    } else {
        let c = cv(&finite);
        if c.is_finite() {
            c
        } else {
            sample_sd(&finite, mean(&finite))
        }
    };
    Mode::Noisy {
        cv: if cv.is_finite() { cv } else { 0.0 },
    }
}

// ---------------------------------------------------------------------------------------
// Configuration and results
// ---------------------------------------------------------------------------------------

/// Parameters of the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    pub direction: Direction,
    /// Smallest gain worth keeping, as a fraction (0.01 = 1%). Clamped to [0, 0.99].
    pub min_effect: f64,
    /// One-sided significance level of the keep decision, spent across the checkpoints.
    pub alpha: f64,
    /// Round counts at which the test is looked at, increasing; the last is the maximum.
    pub checkpoints: Vec<usize>,
    /// Keep a candidate with fewer lines that is not significantly worse.
    pub simplicity: bool,
}

impl DecisionConfig {
    /// Default checkpoints 3, 5, 8, 12 rounds.
    pub fn new(direction: Direction, min_effect: f64, alpha: f64, simplicity: bool) -> Self {
        DecisionConfig {
            direction,
            min_effect,
            alpha,
            checkpoints: DEFAULT_CHECKPOINTS.to_vec(),
            simplicity,
        }
    }

    /// `repeats = N`: a single checkpoint at N rounds (at least 1), with the whole α.
    pub fn fixed_rounds(mut self, n: usize) -> Self {
        self.checkpoints = vec![n.max(1)];
        self
    }

    /// The last checkpoint: the most rounds a candidate is measured for.
    pub fn max_rounds(&self) -> usize {
        self.clean_checkpoints().last().copied().unwrap_or(1)
    }

    /// Checkpoints sorted, deduplicated, zero removed; the defaults if none is left.
    fn clean_checkpoints(&self) -> Vec<usize> {
        let mut c: Vec<usize> = self
            .checkpoints
            .iter()
            .copied()
            .filter(|&n| n > 0)
            .collect();
        c.sort_unstable();
        c.dedup();
        if c.is_empty() {
            c = DEFAULT_CHECKPOINTS.to_vec();
        }
        c
    }

    /// The one-sided α spent at `rounds`, if `rounds` is a checkpoint:
    /// `α·rounds/Σcheckpoints`. The shares add up to α.
    pub fn checkpoint_alpha(&self, rounds: usize) -> Option<f64> {
        let c = self.clean_checkpoints();
        if !c.contains(&rounds) {
            return None;
        }
        let total: usize = c.iter().sum();
        Some(self.alpha_clamped() * rounds as f64 / total as f64)
    }

    fn alpha_clamped(&self) -> f64 {
        if self.alpha.is_finite() {
            self.alpha.clamp(1e-9, 0.5)
        } else {
            0.05
        }
    }

    fn min_effect_clamped(&self) -> f64 {
        if self.min_effect.is_finite() {
            self.min_effect.clamp(0.0, 0.99)
        } else {
            0.0
        }
    }
}

/// The decision after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Keep,
    Discard,
    /// Measure another round.
    Continue,
}

/// A verdict with the numbers behind it (for the journal and the TSV).
///
/// Gains use [`Direction::gain`]'s definition: relative, positive when the candidate is
/// better. Non-finite numbers (not computable yet) serialize as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// Rounds used (valid pairs for the noisy test; 1 for deterministic).
    pub rounds: usize,
    /// Estimated relative gain of the candidate over the best (0.05 = 5% better).
    #[serde(with = "finite_or_null")]
    pub estimate: f64,
    /// One-sided (1-α_k) lower bound on the gain: the keep bound.
    #[serde(with = "finite_or_null")]
    pub lower: f64,
    /// One-sided upper bound on the gain at the futility level (1-β) used for early "too
    /// small" discards; at the last checkpoint and with `fixed_rounds`, at (1-α_k).
    #[serde(with = "finite_or_null")]
    pub upper: f64,
    /// One-sided p-value of "the candidate is not better".
    #[serde(with = "finite_or_null")]
    pub p_value: f64,
    /// The `min_effect` used (0 in deterministic mode: any strict improvement keeps).
    #[serde(with = "finite_or_null")]
    pub threshold: f64,
    /// The candidate's estimated metric value, in the metric's units.
    #[serde(with = "finite_or_null")]
    pub candidate_estimate: f64,
    /// The best's estimated metric value, in the metric's units.
    #[serde(with = "finite_or_null")]
    pub best_estimate: f64,
    /// Kept because of the simplicity rule rather than for a gain.
    pub simplification: bool,
    /// Why, in plain words.
    pub reason: String,
}

// ---------------------------------------------------------------------------------------
// Deterministic mode
// ---------------------------------------------------------------------------------------

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
        estimate: f64::NAN,
        lower: f64::NAN,
        upper: f64::NAN,
        p_value: 1.0,
        threshold: 0.0,
        candidate_estimate: candidate,
        best_estimate: best,
        simplification: false,
        reason: String::new(),
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

// ---------------------------------------------------------------------------------------
// Noisy mode
// ---------------------------------------------------------------------------------------

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

/// Location, standard error and degrees of freedom of the contrasts.
struct Location {
    theta: f64,
    se: f64,
    df: f64,
}

fn locate(d: &[f64]) -> Location {
    let n = d.len();
    let m = mean(d);
    if n < 2 {
        return Location {
            theta: if n == 1 { d[0] } else { 0.0 },
            se: f64::INFINITY,
            df: 1.0,
        };
    }
    let df = (n - 1) as f64;
    let plain = Location {
        theta: m,
        se: sample_sd(d, m) / (n as f64).sqrt(),
        df,
    };
    if n < ROBUST_MIN_N {
        return plain;
    }
    huber(d, HUBER_K).unwrap_or(plain)
}

/// Huber M-estimate of location with a fixed MAD scale, with small-sample corrections that
/// keep the t test close to its nominal level at 5-12 rounds (checked by simulation: at a
/// nominal 1% and pure Gaussian noise the rejection rate is 1.0-1.2% at n = 5, 8, 12, where
/// the uncorrected version rejects 1.5-2.6%):
///
/// * the MAD gets the Croux & Rousseeuw (1992) finite-sample factor (it underestimates σ by
///   ~17% at n = 5, which would clip Gaussian rounds and shrink the error);
/// * the sandwich variance `s²·[Σψ²/(n-1)]/[Σψ'/n]²/n` gets Huber's (1981) correction factor
///   `K² = (1 + (1-m)/(n·m))²`, `m` the share of unclipped rounds;
/// * degrees of freedom are `m·n - 1`, the unclipped rounds minus one (as for a trimmed t).
///
/// `None` when the MAD is zero (more than half the rounds tie) so the scale is unknown.
fn huber(d: &[f64], k: f64) -> Option<Location> {
    let n = d.len() as f64;
    let med = median(d);
    let s = 1.4826 * mad(d, med) * mad_small_sample_factor(d.len());
    if !(s > 0.0 && s.is_finite()) {
        return None;
    }
    let mut mu = med;
    for _ in 0..50 {
        let (mut sum_psi, mut sum_dpsi) = (0.0, 0.0);
        for &x in d {
            let r = (x - mu) / s;
            sum_psi += r.clamp(-k, k);
            if r.abs() <= k {
                sum_dpsi += 1.0;
            }
        }
        if sum_dpsi == 0.0 {
            break;
        }
        let step = s * sum_psi / sum_dpsi;
        mu += step;
        if step.abs() <= 1e-12 * s {
            break;
        }
    }
    let (mut sum_psi2, mut sum_dpsi) = (0.0, 0.0);
    for &x in d {
        let r = (x - mu) / s;
        let p = r.clamp(-k, k);
        sum_psi2 += p * p;
        if r.abs() <= k {
            sum_dpsi += 1.0;
        }
    }
    let m = (sum_dpsi / n).max(1.0 / n);
    let var = s * s * (sum_psi2 / (n - 1.0)) / (m * m) / n;
    let correction = 1.0 + (1.0 - m) / (n * m);
    Some(Location {
        theta: mu,
        se: var.sqrt() * correction,
        df: (m * n - 1.0).max(1.0),
    })
}

/// Croux & Rousseeuw (1992) small-sample correction of the normal-consistent MAD.
fn mad_small_sample_factor(n: usize) -> f64 {
    match n {
        0..=1 => 1.0,
        2 => 1.196,
        3 => 1.495,
        4 => 1.363,
        5 => 1.206,
        6 => 1.200,
        7 => 1.140,
        8 => 1.129,
        9 => 1.107,
        _ => n as f64 / (n as f64 - 0.8),
    }
}

/// Upper quantile `t_{1-a}` of Student's t with `df` degrees of freedom.
fn t_quantile(one_minus: f64, df: f64) -> f64 {
    let p = one_minus.clamp(1e-12, 1.0 - 1e-12);
    let df = if df.is_finite() && df >= 1.0 { df } else { 1.0 };
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => t.inverse_cdf(p),
        Err(_) => f64::INFINITY,
    }
}

/// One-sided p-value of `t` (upper tail).
fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return 1.0;
    }
    let df = if df.is_finite() && df >= 1.0 { df } else { 1.0 };
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => dist.sf(t).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

/// Noisy mode. `pairs[i] = (best_value, candidate_value)` measured in round `i` (alternating
/// AB/BA order). Returns Continue except at a checkpoint where a decision is reached, and
/// never at (or past) `cfg.max_rounds()`, where undecided means Discard ("inconclusive").
/// `fewer_lines`: the candidate has fewer lines of code than the best (simplicity rule).
/// See the module documentation for the method.
pub fn evaluate_noisy(pairs: &[(f64, f64)], cfg: &DecisionConfig, fewer_lines: bool) -> Evaluation {
    let dir = cfg.direction;
    let min_effect = cfg.min_effect_clamped();
    let rounds = pairs.len();
    let max_rounds = cfg.max_rounds();
    let last = rounds >= max_rounds;
    let checkpoints = cfg.clean_checkpoints();
    // At or past the maximum, the last checkpoint's level applies.
    let alpha_k = if last {
        cfg.checkpoint_alpha(max_rounds)
    } else {
        cfg.checkpoint_alpha(rounds)
    };
    let at_checkpoint = alpha_k.is_some();
    let alpha_k = alpha_k.unwrap_or_else(|| {
        // Not a checkpoint: report bounds at the level of the next checkpoint.
        let next = checkpoints
            .iter()
            .copied()
            .find(|&c| c > rounds)
            .unwrap_or(max_rounds);
        cfg.checkpoint_alpha(next).unwrap_or(cfg.alpha_clamped())
    });

    let c = contrasts(pairs, dir);
    let n = c.d.len();
    let loc = locate(&c.d);
    let simplicity = cfg.simplicity && fewer_lines;

    // Map from the contrast scale to a gain, and the threshold to the contrast scale.
    let to_gain = |theta: f64| -> f64 {
        if c.log {
            match dir {
                Direction::Lower => -(-theta).exp_m1(),
                Direction::Higher => theta.exp_m1(),
            }
        } else {
            theta
        }
    };
    let theta_min = if c.log {
        match dir {
            Direction::Lower => -(-min_effect).ln_1p(),
            Direction::Higher => min_effect.ln_1p(),
        }
    } else {
        min_effect
    };

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

    let estimate = to_gain(loc.theta);
    let best_estimate = c.best_center;
    let candidate_estimate = if n == 0 {
        f64::NAN
    } else if c.log {
        match dir {
            Direction::Lower => best_estimate * (-loc.theta).exp(),
            Direction::Higher => best_estimate * loc.theta.exp(),
        }
    } else {
        match dir {
            Direction::Lower => best_estimate - loc.theta * c.scale,
            Direction::Higher => best_estimate + loc.theta * c.scale,
        }
    };
    let level = |a: f64| format!("{}%", trim_num((1.0 - a) * 100.0, 2));
    let g = |theta: f64| fmt_gain(to_gain(theta), c.relative);
    let me = fmt_pct(min_effect);

    let mut ev = Evaluation {
        verdict: Verdict::Continue,
        rounds: n,
        estimate,
        lower: to_gain(lower_k),
        upper: to_gain(if last { upper_k } else { upper_f }),
        p_value,
        threshold: min_effect,
        candidate_estimate,
        best_estimate,
        simplification: false,
        reason: String::new(),
    };

    let dropped = rounds - n;
    let dropped_note = if dropped > 0 {
        format!(" ({dropped} round(s) with non-finite values ignored)")
    } else {
        String::new()
    };

    if !at_checkpoint && !last {
        ev.reason = format!(
            "{rounds} round(s): gain {} so far, next look at round {}",
            g(loc.theta),
            checkpoints
                .iter()
                .copied()
                .find(|&c| c > rounds)
                .unwrap_or(max_rounds)
        );
        return ev;
    }
    if n < 2 {
        if last {
            ev.verdict = Verdict::Discard;
            ev.reason = format!(
                "inconclusive after {rounds} round(s): fewer than 2 valid rounds{dropped_note}"
            );
        } else {
            ev.reason = format!("{n} valid round(s): too few to test{dropped_note}");
        }
        return ev;
    }

    if lower_k > 0.0 && loc.theta >= theta_min {
        ev.verdict = Verdict::Keep;
        ev.reason = format!(
            "gain {} ({} bound {}, p={}) >= min_effect {me} after {n} rounds{dropped_note}",
            g(loc.theta),
            level(alpha_k),
            g(lower_k),
            fmt_p(p_value)
        );
        return ev;
    }
    if upper_k < 0.0 {
        ev.verdict = Verdict::Discard;
        ev.reason = format!(
            "significantly worse: gain {} ({} upper bound {}) after {n} rounds{dropped_note}",
            g(loc.theta),
            level(alpha_k),
            g(upper_k)
        );
        return ev;
    }
    if simplicity {
        let early = !last && lower_k > -theta_min;
        let at_end = last && loc.theta > -theta_min;
        if early || at_end {
            ev.verdict = Verdict::Keep;
            ev.simplification = true;
            ev.reason = if early {
                format!(
                    "fewer lines and no worse than -{me}: gain {} ({} bound {}) after {n} rounds: kept as a simplification{dropped_note}",
                    g(loc.theta),
                    level(alpha_k),
                    g(lower_k)
                )
            } else {
                format!(
                    "fewer lines and not significantly worse: gain {} ({} upper bound {}) after {n} rounds: kept as a simplification{dropped_note}",
                    g(loc.theta),
                    level(alpha_k),
                    g(upper_k)
                )
            };
            return ev;
        }
        if !last {
            ev.reason = format!(
                "simplification undecided after {n} rounds: gain {} ({} bound {})",
                g(loc.theta),
                level(alpha_k),
                g(lower_k)
            );
            return ev;
        }
    }
    if !last && upper_f < theta_min {
        ev.verdict = Verdict::Discard;
        ev.reason = format!(
            "gain {} too small: {} upper bound {} < min_effect {me} after {n} rounds{dropped_note}",
            g(loc.theta),
            level(FUTILITY_BETA),
            g(upper_f)
        );
        return ev;
    }
    if last {
        ev.verdict = Verdict::Discard;
        ev.reason = if lower_k > 0.0 {
            format!(
                "gain {} is significant but below min_effect {me} after {n} rounds{dropped_note}",
                g(loc.theta)
            )
        } else {
            format!(
                "inconclusive after {n} rounds: gain {} ({} bound {}, p={}){dropped_note}",
                g(loc.theta),
                level(alpha_k),
                g(lower_k),
                fmt_p(p_value)
            )
        };
        return ev;
    }
    ev.reason = format!(
        "undecided after {n} rounds: gain {} ({} bound {}, p={})",
        g(loc.theta),
        level(alpha_k),
        g(lower_k),
        fmt_p(p_value)
    );
    ev
}

// ---------------------------------------------------------------------------------------
// Descriptive helpers
// ---------------------------------------------------------------------------------------

/// Arithmetic mean of the finite values; NaN when there are none.
pub fn mean(xs: &[f64]) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for &x in xs.iter().filter(|x| x.is_finite()) {
        s += x;
        n += 1;
    }
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Median of the finite values; NaN when there are none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Classical coefficient of variation of the finite values: sample standard deviation over
/// |mean|. 0 for fewer than two values; infinite when the mean is 0 and the values differ.
pub fn cv(xs: &[f64]) -> f64 {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(&v);
    let sd = sample_sd(&v, m);
    if sd == 0.0 {
        0.0
    } else {
        sd / m.abs()
    }
}

/// Median absolute deviation from `center` (unscaled).
fn mad(xs: &[f64], center: f64) -> f64 {
    let dev: Vec<f64> = xs.iter().map(|x| (x - center).abs()).collect();
    median(&dev)
}

/// Sample standard deviation (n - 1) of the finite values around `m`.
fn sample_sd(xs: &[f64], m: f64) -> f64 {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return 0.0;
    }
    let ss: f64 = v.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (v.len() - 1) as f64).sqrt()
}

fn trim_num(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn fmt_pct(x: f64) -> String {
    if x.is_finite() {
        format!("{}%", trim_num(x * 100.0, 2))
    } else {
        format!("{x}")
    }
}

/// A gain: a percentage when relative, else a signed absolute number.
fn fmt_gain(x: f64, relative: bool) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if relative {
        format!("{:+.1}%", x * 100.0)
    } else {
        format!("{x:+}")
    }
}

fn fmt_num(x: f64) -> String {
    format!("{x}")
}

fn fmt_p(p: f64) -> String {
    if p < 0.0001 {
        "<0.0001".to_string()
    } else {
        format!("{p:.4}")
    }
}

/// Serialize non-finite floats as `null` and read `null` back as NaN, so an [`Evaluation`]
/// with a not-yet-computable bound round-trips through JSON.
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_f64(*x)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn cfg(direction: Direction) -> DecisionConfig {
        DecisionConfig::new(direction, 0.01, 0.05, false)
    }

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
    fn probe_mode_equal_samples_is_deterministic() {
        assert_eq!(probe_mode(&[42.0; 5]), Mode::Deterministic);
        assert_eq!(probe_mode(&[0.0, 0.0, 0.0]), Mode::Deterministic);
        assert_eq!(probe_mode(&[7.0]), Mode::Deterministic);
    }

    #[test]
    fn probe_mode_unequal_samples_is_noisy_with_robust_cv() {
        let Mode::Noisy { cv } = probe_mode(&[100.0, 102.0, 98.0, 101.0, 99.0]) else {
            panic!("expected noisy");
        };
        // median 100, MAD 1 -> 1.4826%.
        assert!((cv - 0.014826).abs() < 1e-9, "cv {cv}");
        // One big outlier barely moves the robust cv.
        let Mode::Noisy { cv: cv2 } = probe_mode(&[100.0, 102.0, 98.0, 101.0, 150.0]) else {
            panic!("expected noisy");
        };
        assert!(cv2 < 0.03, "cv {cv2}");
        // MAD zero (most equal): falls back to the classical cv, still positive.
        let Mode::Noisy { cv: cv3 } = probe_mode(&[10.0, 10.0, 10.0, 10.0, 11.0]) else {
            panic!("expected noisy");
        };
        assert!(cv3 > 0.0 && cv3.is_finite());
        // Non-finite samples make the metric noisy; empty input does not panic.
        assert!(matches!(
            probe_mode(&[1.0, f64::NAN, 1.0]),
            Mode::Noisy { .. }
        ));
        assert_eq!(probe_mode(&[]), Mode::Noisy { cv: 0.0 });
        assert!(matches!(probe_mode(&[-1.0, 1.0]), Mode::Noisy { cv } if cv.is_finite()));
        assert_eq!(probe_runs(), 5);
    }

    #[test]
    fn mode_serde_round_trip() {
        for m in [Mode::Deterministic, Mode::Noisy { cv: 0.02 }] {
            let j = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Mode>(&j).unwrap(), m);
        }
        assert_eq!(
            serde_json::to_string(&Mode::Noisy { cv: 0.5 }).unwrap(),
            r#"{"mode":"noisy","cv":0.5}"#
        );
    }

    #[test]
    fn config_checkpoints_and_alpha_split() {
        let c = cfg(Direction::Lower);
        assert_eq!(c.checkpoints, vec![3, 5, 8, 12]);
        assert_eq!(c.max_rounds(), 12);
        let total: f64 = [3, 5, 8, 12]
            .iter()
            .map(|&n| c.checkpoint_alpha(n).unwrap())
            .sum();
        assert!((total - 0.05).abs() < 1e-12);
        assert_eq!(c.checkpoint_alpha(4), None);
        let f = c.clone().fixed_rounds(7);
        assert_eq!(f.checkpoints, vec![7]);
        assert_eq!(f.max_rounds(), 7);
        assert_eq!(f.checkpoint_alpha(7), Some(0.05));
        assert_eq!(c.clone().fixed_rounds(0).max_rounds(), 1);
    }

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

    #[test]
    fn descriptive_helpers() {
        assert_eq!(mean(&[1.0, 2.0, 3.0, f64::NAN]), 2.0);
        assert!(mean(&[]).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(cv(&[5.0, 5.0]), 0.0);
        assert_eq!(cv(&[5.0]), 0.0);
        assert!((cv(&[9.0, 11.0]) - 2f64.sqrt() / 10.0).abs() < 1e-12);
    }
}
