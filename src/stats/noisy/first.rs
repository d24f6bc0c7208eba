//! The level of a look of the exact test of tied rounds, spent on the chance that it is the
//! FIRST look to reject. Under the null each round's sign is a fair coin given its
//! magnitude, so given the rounds' magnitudes the joint null law of every look's statistic
//! is a sum over sign patterns. A pattern matters only through how many rounds of each
//! tied magnitude are positive: a dynamic program over the rounds with those counts as its
//! states (few, for tie-heavy data) gives each look's exact chance of rejecting when no
//! earlier look did. A look may reject on any pattern whose first-rejection mass stays
//! within the plan's shares up to it minus what the earlier looks spent; the chance of any
//! false keep is the sum of those masses, at most the plan's sum. Unlike charging each look
//! its own size (Bonferroni), the overlap between looks (the patterns a later look would
//! also reject) is not paid twice.
//!
//! Counted looks: the signed-rank test of tied rounds and the plain t test below
//! [`ROBUST_MIN_N`] rounds (both functions of the counts, given the magnitudes); a Huber
//! look spends its own share and its rejections are not removed (a union bound covers them).

use std::collections::HashMap;

use super::{contrasts, tie_heavy};
use crate::stats::location::{plain, t_quantile};
use crate::stats::perm::signed_ranks;
use crate::stats::{DecisionConfig, ROBUST_MIN_N};

/// Beyond this many count states, no claim (the caller spends the plan's share only).
const MAX_STATES: usize = 1 << 16;

/// Mass of a count state: (not yet rejected by a counted look, already rejected).
type States = HashMap<Vec<u16>, [f64; 2]>;

/// The level to test the tied look at round `due` against the marginal signed-rank p-value:
/// the marginal tail of the smallest critical value whose first-rejection mass fits the
/// budget. None when `pairs` is not at `due`, the magnitudes do not stay grouped across
/// the looks, or the states are too many.
pub(super) fn tied_level(pairs: &[(f64, f64)], cfg: &DecisionConfig, due: usize) -> Option<f64> {
    if pairs.len() != due {
        return None;
    }
    let full = contrasts(pairs, cfg.direction).d;
    let atoms = atoms(&full);
    let n_atoms = atoms.iter().flatten().max().map_or(0, |&a| a + 1);
    // Valid rounds among the first j pairs.
    let valid_upto = |j: usize| {
        pairs[..j]
            .iter()
            .filter(|(b, c)| b.is_finite() && c.is_finite())
            .count()
    };
    let mut states: States = HashMap::from([(vec![0u16; n_atoms], [1.0, 0.0])]);
    let (mut seen, mut carry) = (0usize, 0.0f64);
    for j in cfg.looks().into_iter().filter(|&j| j <= due) {
        let nj = valid_upto(j);
        for &atom in &atoms[seen..nj] {
            states = advance(states, atom)?;
        }
        seen = nj;
        let share = cfg.checkpoint_alpha(j).unwrap_or(0.0);
        let d = contrasts(&pairs[..j], cfg.direction).d;
        if d.len() < 2 {
            carry += share;
            continue;
        }
        if tie_heavy(&d) {
            let stat = rank_stat(&d, &atoms[..nj], n_atoms)?;
            let budget = carry + share;
            let (spent, marginal) = reject_top(&mut states, &stat, budget);
            if j == due {
                return Some(match marginal {
                    Some(m) => m * (1.0 + 1e-9),
                    // Not even the most extreme pattern fits: a level no p-value reaches.
                    None => (budget.max(1e-12)).min(smallest_tail(&states, &stat) * 0.5),
                });
            }
            carry = budget - spent;
        } else if d.len() < ROBUST_MIN_N {
            if !grouped(&d, &atoms[..nj]) {
                return None;
            }
            carry += share - reject_plain_t(&mut states, &d, &atoms[..nj], share);
        }
        // A Huber look spends its share: the carry passes on.
    }
    None
}

/// Each valid round's group of equal nonzero magnitudes (None for a zero: no sign).
fn atoms(d: &[f64]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..d.len()).filter(|&i| d[i] != 0.0).collect();
    order.sort_by(|&i, &j| d[i].abs().total_cmp(&d[j].abs()));
    let tol = 1e-9 * order.last().map_or(0.0, |&i| d[i].abs());
    let mut out = vec![None; d.len()];
    let (mut id, mut first) = (0usize, f64::NAN);
    for (k, &i) in order.iter().enumerate() {
        if k > 0 && d[i].abs() - first > tol {
            id += 1;
            first = d[i].abs();
        } else if k == 0 {
            first = d[i].abs();
        }
        out[i] = Some(id);
    }
    out
}

/// Every atom's rounds share one magnitude in `d` (a look's own scale).
fn grouped(d: &[f64], atoms: &[Option<usize>]) -> bool {
    let tol = 1e-9 * d.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut first: HashMap<usize, f64> = HashMap::new();
    atoms.iter().zip(d).all(|(atom, x)| match *atom {
        None => *x == 0.0,
        Some(a) => (*first.entry(a).or_insert(x.abs()) - x.abs()).abs() <= tol,
    })
}

/// One more round: its atom's positive count goes up by one with chance 1/2.
fn advance(states: States, atom: Option<usize>) -> Option<States> {
    let Some(a) = atom else {
        return Some(states);
    };
    let mut next: States = HashMap::with_capacity(states.len() * 2);
    for (k, m) in states {
        let mut up = k.clone();
        up[a] += 1;
        for key in [k, up] {
            let e = next.entry(key).or_insert([0.0, 0.0]);
            e[0] += m[0] / 2.0;
            e[1] += m[1] / 2.0;
        }
    }
    (next.len() <= MAX_STATES).then_some(next)
}

/// The signed-rank statistic of a state at a look: per atom (its midrank at this look, its
/// round count). None when an atom's rounds do not share one rank here.
fn rank_stat(d: &[f64], atoms: &[Option<usize>], n_atoms: usize) -> Option<Vec<(f64, u16)>> {
    let r = signed_ranks(d);
    let mut per: Vec<(f64, u16)> = vec![(f64::NAN, 0); n_atoms];
    for (i, atom) in atoms.iter().enumerate() {
        let Some(a) = *atom else {
            continue;
        };
        let rank = r[i].abs();
        let (ra, c) = &mut per[a];
        if ra.is_nan() {
            *ra = rank;
        } else if *ra != rank {
            return None;
        }
        *c += 1;
    }
    Some(per)
}

fn stat_of(k: &[u16], stat: &[(f64, u16)]) -> f64 {
    k.iter()
        .zip(stat)
        .filter(|(_, (_, c))| *c > 0)
        .map(|(&k, &(r, c))| r * (2.0 * k as f64 - c as f64))
        .sum()
}

/// Rejects the states with the largest statistic while their not-yet-rejected mass stays
/// within `budget`: (that mass, the marginal tail at the critical value, None when no
/// value fits).
fn reject_top(states: &mut States, stat: &[(f64, u16)], budget: f64) -> (f64, Option<f64>) {
    let mut by: Vec<(f64, Vec<u16>)> = states
        .keys()
        .map(|k| (stat_of(k, stat), k.clone()))
        .collect();
    by.sort_by(|a, b| b.0.total_cmp(&a.0));
    let eps = 1e-9
        * stat
            .iter()
            .map(|(r, c)| r * *c as f64)
            .sum::<f64>()
            .max(1.0);
    let (mut live, mut total, mut cut) = (0.0, 0.0, 0usize);
    let mut marginal = None;
    let mut i = 0;
    while i < by.len() {
        // One value of the statistic at a time (equal within eps).
        let mut end = i;
        let (mut l, mut t) = (0.0, 0.0);
        while end < by.len() && (by[i].0 - by[end].0).abs() <= eps {
            let m = states[&by[end].1];
            l += m[0];
            t += m[0] + m[1];
            end += 1;
        }
        if live + l > budget * (1.0 + 1e-12) {
            break;
        }
        (live, total, cut) = (live + l, total + t, end);
        marginal = Some(total);
        i = end;
    }
    for (_, k) in &by[..cut] {
        let m = states.get_mut(k).expect("state");
        m[1] += m[0];
        m[0] = 0.0;
    }
    (live, marginal)
}

/// The marginal chance of the largest statistic (the smallest p-value the look can give).
fn smallest_tail(states: &States, stat: &[(f64, u16)]) -> f64 {
    let top = states
        .keys()
        .map(|k| stat_of(k, stat))
        .fold(f64::NEG_INFINITY, f64::max);
    let eps = 1e-9
        * stat
            .iter()
            .map(|(r, c)| r * *c as f64)
            .sum::<f64>()
            .max(1.0);
    states
        .iter()
        .filter(|(k, _)| stat_of(k, stat) >= top - eps)
        .map(|(_, m)| m[0] + m[1])
        .sum()
}

/// Rejects the states the plain one-sided t test at `level` rejects (its statistic depends
/// on the sum of the contrasts given their magnitudes): their not-yet-rejected mass.
fn reject_plain_t(states: &mut States, d: &[f64], atoms: &[Option<usize>], level: f64) -> f64 {
    let tq = t_quantile(1.0 - level, (d.len() - 1) as f64);
    let mut spent = 0.0;
    let mut x = vec![0.0; d.len()];
    for (k, m) in states.iter_mut() {
        // Any assignment of the counted signs within an atom gives the same mean and sd.
        let mut left = k.clone();
        for (i, atom) in atoms.iter().enumerate() {
            x[i] = match *atom {
                None => 0.0,
                Some(a) if left[a] > 0 => {
                    left[a] -= 1;
                    d[i].abs()
                }
                Some(_) => -d[i].abs(),
            };
        }
        let loc = plain(&x);
        if loc.se > 0.0 && loc.theta - tq * loc.se > 0.0 {
            spent += m[0];
            m[1] += m[0];
            m[0] = 0.0;
        }
    }
    spent
}
