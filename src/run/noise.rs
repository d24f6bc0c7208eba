//! A run's noise during the run, against its baseline probe: each noisy decision's rounds
//! give the noise now; when it is far above the baseline's ([`stats::UNSTABLE_RATIO`]) the
//! run measures a fresh probe of the best alone, and if the machine is still that noisy it
//! says so in words (`status`, `log`, `report`: "unstable: cv 9% now, 2.3% at baseline") and
//! its next decisions get more rounds, until a probe finds it calm again. Also the switch of
//! a "deterministic" metric to noisy mode when a value measured again moved.

use anyhow::Result;

use crate::exec::Cancel;
use crate::protocol::NoiseState;
use crate::run::measure::Once;
use crate::run::runner::Runner;
use crate::stats::{self, Evaluation, Mode, UNSTABLE_FLOOR, UNSTABLE_RATIO};

/// "9%" / "2.3%".
fn pct(x: f64) -> String {
    let s = format!("{:.1}", x * 100.0);
    format!("{}%", s.trim_end_matches(".0"))
}

/// The words for a noise level against the baseline's.
pub fn unstable_message(now: f64, baseline: f64) -> String {
    format!(
        "unstable: cv {} now, {} at baseline",
        pct(now),
        pct(baseline)
    )
}

/// Is `now` far above the baseline's noise?
fn far_above(now: f64, baseline: f64) -> bool {
    now.is_finite() && now >= UNSTABLE_FLOOR && now >= UNSTABLE_RATIO * baseline
}

impl Runner {
    /// The metric was taken for deterministic, but a value measured again moved: the run is
    /// noisy from now on, with the cv of the values seen.
    pub(super) fn switch_to_noisy(&mut self, detail: &str, values: &[f64]) -> Result<()> {
        let cv = stats::robust_cv(values);
        let cv = if cv.is_finite() { cv } else { 0.0 };
        self.log(&format!(
            "the metric is not deterministic after all: {detail}; switching to noisy mode (cv {}): every decision now measures the best and the candidate paired",
            pct(cv)
        ));
        self.update(|r| {
            r.mode = Some(Mode::Noisy { cv });
            r.noise = NoiseState {
                baseline_cv: Some(cv),
                ..Default::default()
            };
        })
    }

    /// After a noisy decision: record its noise; when it (or the run) is unstable, a fresh
    /// probe of the best decides whether the machine is unstable now.
    pub(super) fn track_noise(&mut self, ev: &Evaluation, cancel: &Cancel) -> Result<()> {
        let Some(Mode::Noisy { cv: baseline }) = self.rec.mode.clone() else {
            return Ok(());
        };
        if !ev.noise.is_finite() || ev.rounds < 3 {
            return Ok(());
        }
        let was = self.rec.noise.unstable;
        let mut now = ev.noise;
        if far_above(now, baseline) || was {
            match self.fresh_probe(cancel)? {
                Some(cv) => now = cv,
                None => return Ok(()), // interrupted, or the best failed: decide nothing
            }
        }
        let unstable = far_above(now, baseline);
        let n = self.rec.next_experiment.saturating_sub(1);
        let message = unstable.then(|| unstable_message(now, baseline));
        if unstable && !was {
            self.log(&format!(
                "{}: the next decisions take more rounds",
                message.as_deref().unwrap_or_default()
            ));
        } else if unstable {
            self.log(&format!("still {}", message.as_deref().unwrap_or_default()));
        } else if was {
            self.log(&format!(
                "stable again: cv {} now, {} at baseline",
                pct(now),
                pct(baseline)
            ));
        }
        let since = if unstable {
            self.rec.noise.since_experiment.or(Some(n))
        } else {
            None
        };
        // Shown, not needed by recovery (the next decision measures it again): persisted
        // with the next durable write, not one more fsync per noisy experiment.
        self.update_deferred(|r| {
            r.noise = NoiseState {
                baseline_cv: Some(baseline),
                now: Some(now),
                unstable,
                since_experiment: since,
                message,
            };
        });
        Ok(())
    }

    /// The best alone, [`stats::probe_runs`] times: its robust cv. None when interrupted
    /// or when a run failed (the next decision will say more).
    fn fresh_probe(&mut self, cancel: &Cancel) -> Result<Option<f64>> {
        let tree = self.h.paths.best_tree();
        let runs = stats::probe_runs();
        let mut values = Vec::new();
        {
            let meter = self.meter(self.rec.next_experiment.saturating_sub(1));
            for i in 0..runs {
                self.h
                    .set_detail(format!("fresh noise probe {}/{runs}", i + 1));
                match meter.once(&tree, "probe", cancel)? {
                    Once::Value(v, _) => values.push(v),
                    Once::Failed(..) | Once::Interrupted => return Ok(None),
                }
            }
        }
        let cv = stats::robust_cv(&values);
        self.log(&format!(
            "fresh noise probe of the best: cv {} ({} runs)",
            pct(cv),
            values.len()
        ));
        Ok(cv.is_finite().then_some(cv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_of_an_unstable_machine() {
        assert_eq!(
            unstable_message(0.09, 0.023),
            "unstable: cv 9% now, 2.3% at baseline"
        );
        assert!(far_above(0.09, 0.023));
        assert!(!far_above(0.05, 0.023));
        // A very quiet baseline: a tiny noise is not worth a warning.
        assert!(!far_above(0.006, 0.001));
    }
}
