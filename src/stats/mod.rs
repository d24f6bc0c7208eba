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
//!
//! # Files
//!
//! `probe` classifies the baseline, `deterministic` and `noisy` decide (`location` holds
//! the noisy test's estimators and Student's t), `summary` has the descriptive statistics
//! and `format` the numbers of the reasons. Everything public is re-exported here.

use serde::{Deserialize, Serialize};

use crate::spec::Direction;

mod deterministic;
mod format;
mod location;
mod noisy;
mod probe;
mod summary;

pub use deterministic::{evaluate_deterministic, naive_keep};
pub use noisy::evaluate_noisy;
pub use probe::{probe_mode, probe_runs};
pub use summary::{cv, mean, median};

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
}
