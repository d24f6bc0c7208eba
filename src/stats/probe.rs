//! The baseline's noise probe: is the metric deterministic (one run per measurement, a
//! strict comparison) or noisy (paired rounds and a test)? Decided once per run, from the
//! baseline's samples.

use super::summary::{cv, mad, mean, median, sample_sd};
use super::Mode;

/// How many baseline runs the "auto" noise probe does.
pub fn probe_runs() -> usize {
    5
}

/// Classify baseline samples.
///
/// * At least [`probe_runs`] values, all finite and exactly equal: [`Mode::Deterministic`].
///   Fewer equal values prove nothing (a 50/50 two-level metric gives three equal values a
///   quarter of the time, five 6% of the time): noisy, with a `cv` of 0 until rounds say more.
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
    if all_equal && finite.len() == samples.len() && samples.len() >= probe_runs() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_mode_equal_samples_is_deterministic() {
        assert_eq!(probe_mode(&[42.0; 5]), Mode::Deterministic);
        assert_eq!(probe_mode(&[0.0; 6]), Mode::Deterministic);
        // Fewer than five equal values prove nothing.
        assert_eq!(probe_mode(&[0.0, 0.0, 0.0]), Mode::Noisy { cv: 0.0 });
        assert_eq!(probe_mode(&[7.0]), Mode::Noisy { cv: 0.0 });
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
}
