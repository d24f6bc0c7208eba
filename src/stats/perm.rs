//! The sign-flip permutation test of paired contrasts: valid under ties. A discrete metric
//! (two levels, a coarse clock) gives many equal contrasts; a t statistic there can have a
//! zero standard error and a p-value of 0. Under "the candidate is no better", best and
//! candidate are exchangeable within a round, so each contrast's sign is a fair coin and the
//! p-value is the share of the 2^n sign patterns whose sum reaches the observed one.
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

/// One-sided p-values of the sum of `d` under random sign flips: (upper, lower) =
/// (P(S ≥ s_obs), P(S ≤ s_obs)). Zeros carry no sign and drop out. (1, 1) when `d` is
/// empty or all zero.
pub fn sign_flip_p(d: &[f64]) -> (f64, f64) {
    let d: Vec<f64> = d.iter().copied().filter(|x| x.is_finite()).collect();
    let observed: f64 = d.iter().sum();
    let mut mags: Vec<f64> = d.iter().map(|x| x.abs()).filter(|&a| a > 0.0).collect();
    if mags.is_empty() {
        return (1.0, 1.0);
    }
    mags.sort_by(f64::total_cmp);
    // Sums of floats in another order differ in the last bits: compare with a tolerance.
    let eps = 1e-9 * mags.iter().sum::<f64>();
    let groups = group(&mags);
    let terms: f64 = groups.iter().map(|&(_, c)| (c + 1) as f64).product();
    if terms <= MAX_EXACT_TERMS {
        exact(&groups, observed, eps)
    } else {
        monte_carlo(&mags, observed, eps)
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

/// The exact tails: every count of positives per group, weighted by its binomial chance.
fn exact(groups: &[(f64, usize)], observed: f64, eps: f64) -> (f64, f64) {
    // The distribution of S as (value, probability) pairs, built group by group.
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
}
