//! The sign-flip permutation test of paired contrasts: valid under ties. A discrete metric
//! (two levels, a coarse clock) gives many equal contrasts; a t statistic there can have a
//! zero standard error and a p-value of 0. Under "the candidate is no better", best and
//! candidate are exchangeable within a round, so each contrast's sign is a fair coin and the
//! p-value is the share of the 2^n sign patterns whose sum reaches the observed one.
//!
//! The decision applies it to the contrasts' signed ranks ([`signed_ranks`]: Wilcoxon's
//! signed-rank test with midranks for tied magnitudes, zeros dropped), the textbook exact test
//! of paired data with ties: conditional on the multiset of magnitudes it is exact, and the
//! ranks give the small contrasts of a shifted distribution (the rounds where the noise went
//! against the candidate) a small weight. [`sign_flip_size`] gives the test's attained size,
//! P(p ≤ level) under the null given the magnitudes: a discrete test rejects less often than
//! its level, and the decision carries the difference to its next look.
//!
//! Exact: equal magnitudes are grouped (a pattern only matters through how many of each
//! group are positive, a binomial count), so tie-heavy data — the only data this test is
//! used for — costs a few hundred terms. Data with too many distinct magnitudes fall back
//! to a Monte Carlo estimate from a generator seeded by the data (the same data always give
//! the same p-value).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Beyond this many grouped terms, Monte Carlo.
const MAX_EXACT_TERMS: f64 = 1_048_576.0;
/// Monte Carlo draws.
const DRAWS: usize = 1 << 16;

/// Two magnitudes within this relative distance are tied (the same two levels measured in
/// another order give log ratios that differ in the last bits).
const TIE_TOLERANCE: f64 = 1e-9;

/// One-sided p-values of the sum of `d` under random sign flips: (upper, lower) =
/// (P(S ≥ s_obs), P(S ≤ s_obs)). Zeros carry no sign and drop out. (1, 1) when `d` is
/// empty or all zero.
pub fn sign_flip_p(d: &[f64]) -> (f64, f64) {
    match Null::of(d) {
        None => (1.0, 1.0),
        Some(Null::Exact {
            dist,
            observed,
            eps,
        }) => tails(&dist, observed, eps),
        Some(Null::Sampled {
            mags,
            observed,
            eps,
        }) => monte_carlo(&mags, observed, eps),
    }
}

/// The attained size of the upper test at `level`: P(P(S ≥ s_obs) ≤ level) when the signs
/// are fair coins and the magnitudes are those of `d` — at most `level`, often well below it
/// for tied data (the p-values are few). `level` itself when the null is sampled (no claim
/// of a smaller size), 0 when `d` has no nonzero value (the test never rejects).
pub fn sign_flip_size(d: &[f64], level: f64) -> f64 {
    match Null::of(d) {
        None => 0.0,
        Some(Null::Sampled { .. }) => level,
        Some(Null::Exact { dist, .. }) => {
            // Tails from the top: the size is the largest tail at most `level`.
            let mut tail = 0.0;
            let mut size = 0.0;
            for &(_, p) in dist.iter().rev() {
                tail += p;
                if tail > level * (1.0 + 1e-12) {
                    break;
                }
                size = tail;
            }
            size.min(level)
        }
    }
}

/// Signed midranks: each nonzero contrast replaced by its sign times the rank of its
/// magnitude among the nonzero ones (tied magnitudes share the mean of their ranks); zeros
/// and non-finite values stay out (a zero is kept as 0, which the test drops).
pub fn signed_ranks(d: &[f64]) -> Vec<f64> {
    let d: Vec<f64> = d.iter().copied().filter(|x| x.is_finite()).collect();
    let mut order: Vec<usize> = (0..d.len()).filter(|&i| d[i] != 0.0).collect();
    order.sort_by(|&i, &j| d[i].abs().total_cmp(&d[j].abs()));
    let top = order.last().map_or(0.0, |&i| d[i].abs());
    let tol = TIE_TOLERANCE * top;
    let mut r = vec![0.0; d.len()];
    let mut start = 0;
    while start < order.len() {
        let first = d[order[start]].abs();
        let end = (start..order.len())
            .find(|&k| d[order[k]].abs() - first > tol)
            .unwrap_or(order.len());
        // Ranks start+1..=end share their mean.
        let mid = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            r[i] = mid.copysign(d[i]);
        }
        start = end;
    }
    r
}

/// The null distribution of the sum: exact (value, probability) pairs, or the magnitudes
/// to sample from.
enum Null {
    Exact {
        dist: Vec<(f64, f64)>,
        observed: f64,
        eps: f64,
    },
    Sampled {
        mags: Vec<f64>,
        observed: f64,
        eps: f64,
    },
}

impl Null {
    /// None when `d` has no nonzero finite value.
    fn of(d: &[f64]) -> Option<Null> {
        let d: Vec<f64> = d.iter().copied().filter(|x| x.is_finite()).collect();
        let observed: f64 = d.iter().sum();
        let mut mags: Vec<f64> = d.iter().map(|x| x.abs()).filter(|&a| a > 0.0).collect();
        if mags.is_empty() {
            return None;
        }
        mags.sort_by(f64::total_cmp);
        // Sums of floats in another order differ in the last bits: compare with a tolerance.
        let eps = 1e-9 * mags.iter().sum::<f64>();
        let groups = group(&mags);
        let terms: f64 = groups.iter().map(|&(_, c)| (c + 1) as f64).product();
        Some(if terms <= MAX_EXACT_TERMS {
            Null::Exact {
                dist: exact(&groups, eps),
                observed,
                eps,
            }
        } else {
            Null::Sampled {
                mags,
                observed,
                eps,
            }
        })
    }
}

/// Equal magnitudes and how many of each.
fn group(sorted: &[f64]) -> Vec<(f64, usize)> {
    let mut g: Vec<(f64, usize)> = Vec::new();
    for &m in sorted {
        match g.last_mut() {
            Some((v, c)) if *v == m => *c += 1,
            _ => g.push((m, 1)),
        }
    }
    g
}

/// The exact distribution of S, sorted by value: every count of positives per group,
/// weighted by its binomial chance, built group by group.
fn exact(groups: &[(f64, usize)], eps: f64) -> Vec<(f64, f64)> {
    let mut dist: Vec<(f64, f64)> = vec![(0.0, 1.0)];
    for &(m, c) in groups {
        let weights = binomial_half(c);
        let mut next = Vec::with_capacity(dist.len() * (c + 1));
        for &(s, p) in &dist {
            for (k, w) in weights.iter().enumerate() {
                next.push((s + m * (2.0 * k as f64 - c as f64), p * w));
            }
        }
        dist = merge_equal(next, eps);
    }
    dist
}

/// The tails of an exact distribution at the observed sum.
fn tails(dist: &[(f64, f64)], observed: f64, eps: f64) -> (f64, f64) {
    let upper: f64 = dist
        .iter()
        .filter(|(s, _)| *s >= observed - eps)
        .map(|(_, p)| p)
        .sum();
    let lower: f64 = dist
        .iter()
        .filter(|(s, _)| *s <= observed + eps)
        .map(|(_, p)| p)
        .sum();
    (upper.clamp(0.0, 1.0), lower.clamp(0.0, 1.0))
}

/// C(c, k) / 2^c for k = 0..=c.
fn binomial_half(c: usize) -> Vec<f64> {
    let mut w = vec![0.0; c + 1];
    w[0] = 0.5f64.powi(c as i32);
    for k in 1..=c {
        w[k] = w[k - 1] * (c - k + 1) as f64 / k as f64;
    }
    w
}

/// Sums equal within `eps` merged into one entry (keeps the distribution small).
fn merge_equal(mut v: Vec<(f64, f64)>, eps: f64) -> Vec<(f64, f64)> {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(v.len());
    for (s, p) in v {
        match out.last_mut() {
            Some((t, q)) if (s - *t).abs() <= eps => *q += p,
            _ => out.push((s, p)),
        }
    }
    out
}

/// Monte Carlo tails with the add-one correction (never 0), seeded by the data.
fn monte_carlo(mags: &[f64], observed: f64, eps: f64) -> (f64, f64) {
    let seed = mags.iter().fold(0xcbf29ce484222325u64, |h, m| {
        (h ^ m.to_bits()).wrapping_mul(0x100000001b3)
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut up, mut low) = (0usize, 0usize);
    for _ in 0..DRAWS {
        let s: f64 = mags
            .iter()
            .map(|&m| if rng.gen::<bool>() { m } else { -m })
            .sum();
        up += usize::from(s >= observed - eps);
        low += usize::from(s <= observed + eps);
    }
    let p = |k: usize| (k + 1) as f64 / (DRAWS + 1) as f64;
    (p(up), p(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_positive_is_two_to_the_minus_n() {
        for n in 1..=12 {
            let (up, low) = sign_flip_p(&vec![0.077; n]);
            assert!((up - 0.5f64.powi(n as i32)).abs() < 1e-12, "n {n}: {up}");
            assert!((low - 1.0).abs() < 1e-12);
        }
        // Never zero, even for identical contrasts (a zero standard error).
        assert!(sign_flip_p(&[0.1; 3]).0 > 0.1);
    }

    #[test]
    fn zeros_drop_out_and_ties_are_exact() {
        // Three-level contrasts of a two-level metric: 2 up, 1 down, 3 ties.
        let d = [0.077, 0.0, 0.077, 0.0, -0.077, 0.0];
        let (up, low) = sign_flip_p(&d);
        // S = +c; of 8 patterns of the 3 nonzero, S >= c in 4 (3 up or 2 up): 1/8 + 3/8.
        assert!((up - 0.5).abs() < 1e-12, "{up}");
        assert!((low - 0.875).abs() < 1e-12, "{low}");
        assert_eq!(sign_flip_p(&[0.0; 5]), (1.0, 1.0));
        assert_eq!(sign_flip_p(&[]), (1.0, 1.0));
    }

    #[test]
    fn matches_brute_force_on_distinct_values() {
        let d = [0.03, -0.01, 0.02, 0.05, -0.004, 0.011, 0.027, -0.02];
        let obs: f64 = d.iter().sum();
        let n = d.len();
        let mut ge = 0usize;
        for mask in 0..(1u32 << n) {
            let s: f64 = (0..n)
                .map(|i| {
                    if mask & (1 << i) != 0 {
                        d[i].abs()
                    } else {
                        -d[i].abs()
                    }
                })
                .sum();
            ge += usize::from(s >= obs - 1e-12);
        }
        let (up, _) = sign_flip_p(&d);
        assert!((up - ge as f64 / (1u32 << n) as f64).abs() < 1e-12, "{up}");
        // Many distinct magnitudes: Monte Carlo, close to the normal approximation, stable.
        let many: Vec<f64> = (0..40).map(|i| 0.01 + i as f64 * 0.001).collect();
        let (p1, _) = sign_flip_p(&many);
        assert!(p1 < 1e-3, "{p1}");
        assert_eq!(sign_flip_p(&many), sign_flip_p(&many));
    }

    #[test]
    fn signed_midranks() {
        // Magnitudes 0.026 < 0.051 (twice, equal to the last bits) < 0.128; a zero stays 0.
        let d = [0.051, -0.026, 0.128, 0.0, 0.051 + 1e-17];
        assert_eq!(signed_ranks(&d), vec![2.5, -1.0, 4.0, 0.0, 2.5]);
        assert_eq!(signed_ranks(&[-0.2, -0.2, 0.1]), vec![-2.5, -2.5, 1.0]);
        assert!(signed_ranks(&[]).is_empty());
        // Ranks ignore how far a spike is: the test of a spiky sample equals its tame twin's.
        assert_eq!(
            sign_flip_p(&signed_ranks(&[0.01, 0.02, -0.005, 9.0])),
            sign_flip_p(&signed_ranks(&[0.01, 0.02, -0.005, 0.03]))
        );
    }

    #[test]
    fn attained_size_is_the_largest_reachable_tail() {
        // Eight equal magnitudes: the tails are 1/256, 9/256, ...; at 1.71% only the first
        // is reachable, at 4% the second.
        let d = [1.0; 8];
        let s = sign_flip_size(&d, 0.0171);
        assert!((s - 1.0 / 256.0).abs() < 1e-12, "{s}");
        assert!((sign_flip_size(&d, 0.04) - 9.0 / 256.0).abs() < 1e-12);
        // Three rounds never reach 0.32%: the size is 0 and the whole level is left.
        assert_eq!(sign_flip_size(&[1.0, 2.0, 2.0], 0.0032), 0.0);
        assert_eq!(sign_flip_size(&[0.0; 4], 0.05), 0.0);
        // The size is the chance that the p-value is at most the level: brute force.
        let d = signed_ranks(&[0.051, -0.026, 0.128, 0.051, 0.051, -0.026, 0.128, 0.051]);
        let level = 0.03;
        let n = d.len();
        let hits = (0..1u32 << n)
            .filter(|mask| {
                let f: Vec<f64> = (0..n)
                    .map(|i| {
                        if mask & (1 << i) != 0 {
                            d[i].abs()
                        } else {
                            -d[i].abs()
                        }
                    })
                    .collect();
                sign_flip_p(&f).0 <= level
            })
            .count();
        let s = sign_flip_size(&d, level);
        assert!((s - hits as f64 / 256.0).abs() < 1e-12, "{s} vs {hits}/256");
        assert!(s <= level);
    }
}
