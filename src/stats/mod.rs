//! Statistics of the keep/discard decision (DESIGN.md section 4). Pure functions: no I/O.
//!
//! # Modes
//!
//! At baseline the loop runs the metric [`probe_runs`] times and calls [`probe_mode`]. All
//! values equal (at least [`probe_runs`] of them: test counts, deterministic losses) gives
//! [`Mode::Deterministic`]: one run per measurement and a strict comparison
//! ([`evaluate_deterministic`]); the loop re-measures before keeping and switches the run to
//! noisy mode when a value differs. Anything else gives [`Mode::Noisy`]: every round
//! measures the current best and the candidate back to back (in alternating order AB, BA,
//! ...) and [`evaluate_noisy`] tests the paired rounds.
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
//!   `huber`), and the test uses Student's t. With fewer than [`ROBUST_MIN_N`] rounds the MAD
//!   means little, so the plain t on the log ratios is used (a spike there inflates the
//!   standard deviation and merely delays the decision).
//! * **Ties: a signed-rank test.** A discrete metric (two levels, a millisecond clock on a
//!   short benchmark) gives tied contrasts: the MAD is zero, a standard error can be zero and
//!   a t statistic infinite. When the contrasts are tie-heavy (their magnitudes fewer than
//!   three quarters distinct, or more than half equal to their median; this covers every
//!   zero MAD) the p-value is the exact sign-flip permutation test (`perm`) of their signed
//!   ranks — Wilcoxon's signed-rank test, tied magnitudes sharing their midrank, zeros
//!   dropped: under "the candidate is no better" best and candidate are exchangeable within
//!   a round, so each contrast's sign is a fair coin given its magnitude. It is valid whatever
//!   the ties, never gives p = 0 (at least `2^-n`), and so never keeps from a zero standard
//!   error. Ranks rather than values: under a shift the rounds whose noise went against the
//!   candidate are the small contrasts, and ranks weigh them least (on the two-level bench
//!   metric, with the carry below, a true 5% gain takes 10.1 rounds on average instead of
//!   12.6 with the sum of the values).
//! * **Tied looks charged their first rejection (discrete tests).** An exact test of tied
//!   rounds can only reach a few p-values (`2^-n` at best: never 0.32% at 3 rounds), so a
//!   look alone rejects a no-op less often than its share. Given the rounds' magnitudes the
//!   signs are fair coins under the null; a dynamic program over the per-magnitude counts of
//!   positive rounds gives each look's exact chance of rejecting when no earlier look did, and
//!   a tied look rejects the most extreme patterns whose such chance fits the plan's shares up
//!   to it less what the earlier looks spent (`noisy::first`; a plain t look below
//!   [`ROBUST_MIN_N`] rounds is counted the same way, a Huber look spends its own share). The
//!   choice of test depends on the magnitudes only, so given them the chances of a false keep
//!   add up to at most the plan's sum: the bound below is unchanged.
//! * **Looks and α (the spending plan).** The test is looked at only at checkpoints (default
//!   3, 5, 8, 12 rounds) and, for a candidate still promising at the last one, at the
//!   extension looks (18, 24). The one-sided level α is spent across all looks by a fixed
//!   plan ([`SPEND`]): the checkpoints spend 60% of it in proportion to their rounds, the
//!   extension looks 10% the same way (α = 5%: 0.32%, 0.54%, 0.86%, 1.29%, then 0.21%,
//!   0.29%). By Bonferroni's inequality the chance of ever keeping a no-op is at most the
//!   sum whatever the correlation of the looks and whichever looks are taken. The 30% left
//!   unspent is a margin: each look of the t test on 2% Gaussian noise keeps at close to
//!   its nominal level, so a plan spending all of α keeps ~3.3% of no-ops, and heavier
//!   tails or drift add to that (measured by `cargo bench --bench decision`).
//! * **Keep** at a look when the candidate is better with confidence (the one-sided (1-α_k)
//!   lower bound on `θ` above 0, or for tied rounds the signed-rank p at most the level
//!   the look's first-rejection budget affords) **and** the estimate `θ̂ ≥ θ_min`.
//! * **Discard early** ("too small") at a checkpoint before the last when the one-sided
//!   (1-[`FUTILITY_BETA`]) upper bound on the gain is below `min_effect` — only from
//!   [`ROBUST_MIN_N`] rounds on, on the same robust estimate as the keep, so one spike in three
//!   rounds never stops a candidate — or when the candidate is significantly worse. A
//!   futility stop can only turn a keep into a discard, so it never raises the rate of false
//!   keeps.
//! * **Undecided is not discarded blindly.** At the last checkpoint a candidate whose estimate
//!   is at least `min_effect` and whose p-value is at most [`PROMISING_P`] (or any candidate
//!   not shown futile while the machine is unstable) goes on to the extension looks; at the
//!   last look undecided means Discard ("inconclusive").
//! * **Noise now.** Every evaluation estimates the per-measurement noise of its rounds (the
//!   robust spread of the contrasts over √2) and calls the machine *unstable* when it is at
//!   least [`UNSTABLE_RATIO`] times the baseline probe's (and at least [`UNSTABLE_FLOOR`]).
//! * **Simplicity** (`simplicity` and the candidate has fewer lines): a candidate that is not
//!   significantly worse is kept, marked as a simplification. Early, at a checkpoint where it
//!   is shown to be no worse than `-min_effect` ((1-α_k) lower bound above `-θ_min`); at the
//!   last checkpoint when it is not significantly worse (upper bound ≥ 0) and its estimate is
//!   not a loss of more than `min_effect`. A significant regression is discarded early.
//! * **Reasons carry intervals**: every verdict's reason gives the estimate with its 95%
//!   interval, so the magnitude of an early stop is never read without its uncertainty.
//!
//! # The change of a run
//!
//! [`chain`] combines the kept experiments' paired estimates (each against the best of its
//! time) into the change of the best against the baseline, with an interval: log ratios add,
//! their variances add. A final paired confirmation of best against baseline, when a run
//! has one, supersedes it.
//!
//! # Files
//!
//! `probe` classifies the baseline, `deterministic` and `noisy` decide (`location` holds
//! the noisy test's estimators and Student's t, `perm` the sign-flip test and signed ranks),
//! `chain` combines decisions, `summary` has the descriptive statistics and `format` the
//! numbers of the reasons. Everything public is re-exported here.

use serde::{Deserialize, Serialize};

use crate::spec::Direction;

mod chain;
mod deterministic;
mod format;
mod location;
mod noisy;
mod perm;
mod probe;
mod summary;

pub use chain::{chain, Chain};
pub use deterministic::{evaluate_deterministic, naive_keep};
pub use noisy::evaluate_noisy;
pub use perm::{sign_flip_p, sign_flip_size, signed_ranks};
pub use probe::{probe_mode, probe_runs};
pub use summary::{cv, mean, median, robust_cv};

/// Huber's tuning constant, in robust standard deviations (≈99% efficiency at the normal).
pub const HUBER_K: f64 = 2.0;
/// Below this many valid rounds the plain t on the log ratios is used instead of Huber.
pub const ROBUST_MIN_N: usize = 5;
/// One-sided level of the futility (upper) bound used for early "too small" discards.
pub const FUTILITY_BETA: f64 = 0.3;
/// A candidate goes on to the extension looks when its estimate is at least `min_effect`
/// and its p-value at most this (close to significant: a long shot is not worth 12 rounds).
pub const PROMISING_P: f64 = 0.15;
/// Default checkpoints, in rounds.
pub const DEFAULT_CHECKPOINTS: [usize; 4] = [3, 5, 8, 12];
/// Default extension looks, in rounds: for a candidate still promising at the last checkpoint.
pub const DEFAULT_EXTENSION: [usize; 2] = [18, 24];
/// The default spending plan: the shares of α spent by the checkpoints and by the extension
/// looks (a single look, `repeats = N`, spends both). The rest is a margin (see the module
/// documentation).
pub const SPEND: [f64; 2] = [0.6, 0.1];
/// The final confirmation of a run (best against baseline) looks from this many rounds on.
pub const CONFIRM_MIN_ROUNDS: usize = 8;
/// Noise at least this many times the baseline probe's makes the machine "unstable".
pub const UNSTABLE_RATIO: f64 = 3.0;
/// ... and at least this much (a 0.2% metric at 0.6% is not worth a warning).
pub const UNSTABLE_FLOOR: f64 = 0.01;
/// Two-sided level of the intervals printed in reasons and reports.
pub const INTERVAL_LEVEL: f64 = 0.95;

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
    /// Looks after the last checkpoint, for a candidate still promising there (or any not
    /// futile one on an unstable machine); increasing. Empty: none.
    pub extension: Vec<usize>,
    /// The baseline probe's per-measurement noise (cv): the reference of "unstable".
    pub baseline_cv: Option<f64>,
    /// The loop found the machine unstable before this decision: the extension looks are
    /// open to any candidate not shown futile.
    pub unstable: bool,
    /// The spending plan: the shares of α the checkpoints and the extension looks spend
    /// (their sum at most 1; see [`SPEND`]).
    pub spend: [f64; 2],
}

impl DecisionConfig {
    /// Default checkpoints 3, 5, 8, 12 rounds, extension looks 18 and 24.
    pub fn new(direction: Direction, min_effect: f64, alpha: f64, simplicity: bool) -> Self {
        DecisionConfig {
            direction,
            min_effect,
            alpha,
            checkpoints: DEFAULT_CHECKPOINTS.to_vec(),
            simplicity,
            extension: DEFAULT_EXTENSION.to_vec(),
            baseline_cv: None,
            unstable: false,
            spend: SPEND,
        }
    }

    /// `repeats = N`: a single checkpoint at N rounds (at least 1), spending the whole plan,
    /// and no extension.
    pub fn fixed_rounds(mut self, n: usize) -> Self {
        self.checkpoints = vec![n.max(1)];
        self.extension.clear();
        self
    }

    /// The noise reference (the baseline probe's cv) and whether the loop found the machine
    /// unstable already.
    pub fn with_noise(mut self, baseline_cv: Option<f64>, unstable: bool) -> Self {
        self.baseline_cv = baseline_cv.filter(|c| c.is_finite() && *c >= 0.0);
        self.unstable = unstable;
        self
    }

    /// The rule of a final confirmation (best against baseline): the same, but looked at
    /// from [`CONFIRM_MIN_ROUNDS`] rounds on, so its estimate is a precise one.
    pub fn confirmation(mut self) -> Self {
        let last = self.main_rounds();
        let mut c: Vec<usize> = self
            .clean_checkpoints()
            .into_iter()
            .filter(|&n| n >= CONFIRM_MIN_ROUNDS)
            .collect();
        if c.is_empty() {
            c.push(last.max(CONFIRM_MIN_ROUNDS));
        }
        self.checkpoints = c;
        self.simplicity = false;
        self
    }

    /// The most rounds a candidate is measured for (the last extension look, else the last
    /// checkpoint).
    pub fn max_rounds(&self) -> usize {
        self.clean_extension()
            .last()
            .copied()
            .unwrap_or_else(|| self.main_rounds())
    }

    /// The last checkpoint: where an unpromising candidate is decided at the latest.
    pub fn main_rounds(&self) -> usize {
        self.clean_checkpoints().last().copied().unwrap_or(1)
    }

    /// Extension looks sorted, deduplicated, past the last checkpoint.
    fn clean_extension(&self) -> Vec<usize> {
        let last = self.clean_checkpoints().last().copied().unwrap_or(1);
        let mut e: Vec<usize> = self
            .extension
            .iter()
            .copied()
            .filter(|&n| n > last)
            .collect();
        e.sort_unstable();
        e.dedup();
        e
    }

    /// Every look, checkpoints then extension looks.
    pub(crate) fn looks(&self) -> Vec<usize> {
        let mut all = self.clean_checkpoints();
        all.extend(self.clean_extension());
        all
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

    /// The one-sided α spent at `rounds`, if `rounds` is a look: a checkpoint gets
    /// `α·m·rounds/Σcheckpoints`, an extension look `α·e·rounds/Σextension`, with `[m, e]` =
    /// `spend` (without extension looks the checkpoints spend `m + e`). The shares add up to
    /// at most α.
    pub fn checkpoint_alpha(&self, rounds: usize) -> Option<f64> {
        let (c, e) = (self.clean_checkpoints(), self.clean_extension());
        let [main, ext] = self.spend.map(|s| {
            if s.is_finite() {
                s.clamp(0.0, 1.0)
            } else {
                0.0
            }
        });
        // Without extension looks the checkpoints spend both shares.
        let main = if e.is_empty() {
            (main + ext).min(1.0)
        } else {
            main
        };
        let alpha = self.alpha_clamped();
        if c.contains(&rounds) {
            let total: usize = c.iter().sum();
            return Some(alpha * main * rounds as f64 / total as f64);
        }
        if e.contains(&rounds) {
            let total: usize = e.iter().sum();
            return Some(alpha * ext * rounds as f64 / total as f64);
        }
        None
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
    /// Two-sided [`INTERVAL_LEVEL`] interval of the gain (NaN: not computable).
    #[serde(default = "nan", with = "finite_or_null")]
    pub ci_low: f64,
    #[serde(default = "nan", with = "finite_or_null")]
    pub ci_high: f64,
    /// The location on the contrast scale (a log ratio when `log_scale`), its standard
    /// error and degrees of freedom: what [`chain`] combines.
    #[serde(default = "nan", with = "finite_or_null")]
    pub theta: f64,
    #[serde(default = "nan", with = "finite_or_null")]
    pub se: f64,
    #[serde(default = "nan", with = "finite_or_null")]
    pub df: f64,
    /// The contrasts were log ratios (else differences scaled by the best's median).
    #[serde(default)]
    pub log_scale: bool,
    /// Per-measurement noise of these rounds (a cv; NaN: fewer than 3 rounds).
    #[serde(default = "nan", with = "finite_or_null")]
    pub noise: f64,
    /// The noise was at least [`UNSTABLE_RATIO`] times the baseline probe's.
    #[serde(default)]
    pub unstable: bool,
    /// Which test decided: "t", "huber-t", "sign-flip" (ties) or "deterministic".
    #[serde(default)]
    pub test: String,
}

fn nan() -> f64 {
    f64::NAN
}

impl Default for Evaluation {
    /// Nothing measured: a discard with every number unknown.
    fn default() -> Evaluation {
        Evaluation {
            verdict: Verdict::Discard,
            rounds: 0,
            estimate: f64::NAN,
            lower: f64::NAN,
            upper: f64::NAN,
            p_value: 1.0,
            threshold: 0.0,
            candidate_estimate: f64::NAN,
            best_estimate: f64::NAN,
            simplification: false,
            reason: String::new(),
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            theta: f64::NAN,
            se: f64::NAN,
            df: f64::NAN,
            log_scale: false,
            noise: f64::NAN,
            unstable: false,
            test: String::new(),
        }
    }
}

impl Evaluation {
    /// The interval as a pair, when both ends are finite.
    pub fn interval(&self) -> Option<[f64; 2]> {
        (self.ci_low.is_finite() && self.ci_high.is_finite()).then_some([self.ci_low, self.ci_high])
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

    /// The configuration most tests use (shared by the tests of each file).
    pub(super) fn cfg(direction: Direction) -> DecisionConfig {
        DecisionConfig::new(direction, 0.01, 0.05, false)
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
        assert_eq!(c.max_rounds(), 24);
        assert_eq!(c.main_rounds(), 12);
        // The spending plan: the looks' shares add up to the plan's part of α.
        let total: f64 = [3, 5, 8, 12, 18, 24]
            .iter()
            .map(|&n| c.checkpoint_alpha(n).unwrap())
            .sum();
        assert!((total - 0.05 * (SPEND[0] + SPEND[1])).abs() < 1e-12);
        assert!(total <= 0.05);
        let ext: f64 = [18, 24]
            .iter()
            .map(|&n| c.checkpoint_alpha(n).unwrap())
            .sum();
        assert!((ext - 0.05 * SPEND[1]).abs() < 1e-12);
        assert_eq!(c.checkpoint_alpha(4), None);
        let f = c.clone().fixed_rounds(7);
        assert_eq!(f.checkpoints, vec![7]);
        assert_eq!(f.max_rounds(), 7);
        assert!((f.checkpoint_alpha(7).unwrap() - 0.05 * (SPEND[0] + SPEND[1])).abs() < 1e-12);
        assert_eq!(c.clone().fixed_rounds(0).max_rounds(), 1);
        // The confirmation looks from 8 rounds on, with the same extension.
        let k = c.clone().confirmation();
        assert_eq!(k.checkpoints, vec![8, 12]);
        assert_eq!(k.max_rounds(), 24);
        assert_eq!(f.confirmation().checkpoints, vec![8]);
    }
}
