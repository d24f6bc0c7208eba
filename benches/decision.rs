//! Benchmark of the keep/discard decision (DESIGN.md section 4) on a simulated noisy metric.
//!
//! Run with `cargo bench --bench decision`. Exits non-zero when a target fails.
//!
//! The simulated metric is lower-is-better (a run time). Each measurement at time step `t`
//! (one step per metric run) is
//!
//! ```text
//! value = true_value × drift(t) × (1 + 0.02·z) × (1.15 if spike)
//! ```
//!
//! with `z` standard normal (2% multiplicative Gaussian noise), a spike in 5% of the runs
//! (+15%, the machine was busy) and a slow linear drift whose slope is drawn per trial
//! uniformly in ±0.25% per run (up to ±6% over a 12-round candidate). The loop's protocol is
//! followed: each round measures the best and the candidate back to back, alternating the
//! order (AB, BA, ...), and `evaluate_noisy` is called after every round until it stops. A
//! candidate with true gain `g` has true value `base × (1 − g)` ([`Direction::gain`]'s
//! definition). The naive rule measures each once (back to back) and keeps when the
//! candidate's number is lower. Every trial draws its own noise from one seeded RNG.

use std::process::ExitCode;
use std::time::Instant;

use arctl::spec::Direction;
use arctl::stats::{evaluate_noisy, naive_keep, DecisionConfig, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x5EED_2024_A7C7;
const TRIALS: usize = 20_000;
const NOISE: f64 = 0.02;
const SPIKE_P: f64 = 0.05;
const SPIKE: f64 = 0.15;
const MAX_DRIFT_PER_RUN: f64 = 0.0025;
const MIN_EFFECT: f64 = 0.01;
const ALPHA: f64 = 0.05;

struct Metric {
    base: f64,
    slope: f64,
    spike_p: f64,
    t: f64,
}

impl Metric {
    fn new(rng: &mut StdRng, spike_p: f64) -> Metric {
        Metric {
            // Scale-free check: the unit should not matter.
            base: 10f64.powf(rng.gen_range(-1.0..3.0)),
            slope: rng.gen_range(-MAX_DRIFT_PER_RUN..MAX_DRIFT_PER_RUN),
            spike_p,
            t: 0.0,
        }
    }

    /// One metric run of a version whose true value is `base × factor`.
    fn run(&mut self, rng: &mut StdRng, factor: f64) -> f64 {
        let drift = 1.0 + self.slope * self.t;
        self.t += 1.0;
        let spike = if rng.gen_bool(self.spike_p) {
            1.0 + SPIKE
        } else {
            1.0
        };
        self.base * factor * drift * (1.0 + NOISE * normal(rng)) * spike
    }
}

/// Standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

struct Scenario {
    name: &'static str,
    /// True relative gain of the candidate (negative: a regression).
    gain: f64,
    spike_p: f64,
    /// Part of the targets (else shown for information).
    target: bool,
}

struct Outcome {
    kept: usize,
    rounds: usize,
    naive_kept: usize,
}

fn simulate(rng: &mut StdRng, cfg: &DecisionConfig, sc: &Scenario) -> Outcome {
    let factor = 1.0 - sc.gain;
    let mut out = Outcome {
        kept: 0,
        rounds: 0,
        naive_kept: 0,
    };
    for _ in 0..TRIALS {
        // Naive: one run each, back to back.
        let mut m = Metric::new(rng, sc.spike_p);
        let b = m.run(rng, 1.0);
        let c = m.run(rng, factor);
        if naive_keep(b, c, Direction::Lower) {
            out.naive_kept += 1;
        }

        // The paired sequential rule, called after every round as the loop does.
        let mut m = Metric::new(rng, sc.spike_p);
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        loop {
            let (b, c) = if pairs.len().is_multiple_of(2) {
                let b = m.run(rng, 1.0);
                (b, m.run(rng, factor))
            } else {
                let c = m.run(rng, factor);
                (m.run(rng, 1.0), c)
            };
            pairs.push((b, c));
            match evaluate_noisy(&pairs, cfg, false).verdict {
                Verdict::Continue => {
                    assert!(pairs.len() < cfg.max_rounds(), "Continue at max rounds");
                }
                Verdict::Keep => {
                    out.kept += 1;
                    break;
                }
                Verdict::Discard => break,
            }
        }
        out.rounds += pairs.len();
    }
    out
}

fn pct(k: usize) -> f64 {
    100.0 * k as f64 / TRIALS as f64
}

fn main() -> ExitCode {
    let start = Instant::now();
    let cfg = DecisionConfig::new(Direction::Lower, MIN_EFFECT, ALPHA, false);
    println!("arctl decision benchmark (DESIGN.md section 4)");
    println!(
        "seed {SEED:#x}, {TRIALS} trials per scenario; metric: {}% Gaussian noise, {}% of runs +{}% spikes, drift up to ±{}%/run",
        NOISE * 100.0,
        SPIKE_P * 100.0,
        SPIKE * 100.0,
        MAX_DRIFT_PER_RUN * 100.0
    );
    println!(
        "rule: min_effect {}%, alpha {}, checkpoints {:?}; a round = one run of the best + one of the candidate",
        MIN_EFFECT * 100.0,
        ALPHA,
        cfg.checkpoints
    );
    println!("naive: one run of each, keep if the candidate's number is better");
    println!();
    println!(
        "{:<26} {:>8} {:>12} {:>11} {:>11} {:>15}",
        "scenario", "kept", "mean rounds", "naive kept", "kept/naive", "runs vs naive"
    );

    let scenarios = [
        Scenario {
            name: "no-op (0%)",
            gain: 0.0,
            spike_p: SPIKE_P,
            target: true,
        },
        Scenario {
            name: "true 3% gain",
            gain: 0.03,
            spike_p: SPIKE_P,
            target: true,
        },
        Scenario {
            name: "true 5% gain",
            gain: 0.05,
            spike_p: SPIKE_P,
            target: true,
        },
        Scenario {
            name: "5% regression",
            gain: -0.05,
            spike_p: SPIKE_P,
            target: true,
        },
        Scenario {
            name: "(info) no-op, no spikes",
            gain: 0.0,
            spike_p: 0.0,
            target: false,
        },
        Scenario {
            name: "(info) 5% gain, no spikes",
            gain: 0.05,
            spike_p: 0.0,
            target: false,
        },
    ];
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut results = Vec::new();
    for sc in &scenarios {
        let o = simulate(&mut rng, &cfg, sc);
        let mean_rounds = o.rounds as f64 / TRIALS as f64;
        let ratio = if o.naive_kept > 0 {
            format!("{:.3}x", o.kept as f64 / o.naive_kept as f64)
        } else {
            "-".to_string()
        };
        println!(
            "{:<26} {:>7.2}% {:>12.2} {:>10.2}% {:>11} {:>14.1}x",
            sc.name,
            pct(o.kept),
            mean_rounds,
            pct(o.naive_kept),
            ratio,
            // The naive rule costs one run of the candidate (the best's number is stored);
            // the paired rule costs two runs per round.
            2.0 * mean_rounds
        );
        results.push((sc, o, mean_rounds));
    }
    println!();

    let mut failed = false;
    let mut check = |ok: bool, what: String| {
        println!("{} {what}", if ok { "PASS" } else { "FAIL" });
        failed |= !ok;
    };
    let share = |gain: f64| {
        let r = results
            .iter()
            .find(|r| r.0.target && r.0.gain == gain)
            .expect("scenario");
        pct(r.1.kept)
    };
    check(
        share(0.0) <= 3.0,
        format!("no-op kept {:.2}% <= 3%", share(0.0)),
    );
    check(
        share(0.05) >= 85.0,
        format!("true 5% gain kept {:.2}% >= 85%", share(0.05)),
    );
    for (sc, _, mean_rounds) in results.iter().filter(|r| r.0.target) {
        check(
            *mean_rounds <= 9.0,
            format!("{}: mean rounds {mean_rounds:.2} <= 9", sc.name),
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!("elapsed {elapsed:.1}s");
    if failed {
        println!("decision benchmark: FAIL");
        ExitCode::FAILURE
    } else {
        println!("decision benchmark: PASS");
        ExitCode::SUCCESS
    }
}
