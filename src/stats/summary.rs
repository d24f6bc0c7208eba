//! Descriptive statistics of metric samples: mean, median, coefficient of variation, MAD,
//! standard deviation. All ignore non-finite values where that is said, and never panic on
//! an empty input.

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

/// Robust coefficient of variation of positive samples: `1.4826 × MAD / |median|`, the
/// classical [`cv`] when the MAD is zero; NaN for fewer than two finite values.
pub fn robust_cv(xs: &[f64]) -> f64 {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return f64::NAN;
    }
    let med = median(&v);
    let spread = 1.4826 * mad(&v, med);
    if spread > 0.0 && med != 0.0 {
        spread / med.abs()
    } else {
        cv(&v)
    }
}

/// Median absolute deviation from `center` (unscaled).
pub(super) fn mad(xs: &[f64], center: f64) -> f64 {
    let dev: Vec<f64> = xs.iter().map(|x| (x - center).abs()).collect();
    median(&dev)
}

/// Sample standard deviation (n - 1) of the finite values around `m`.
pub(super) fn sample_sd(xs: &[f64], m: f64) -> f64 {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return 0.0;
    }
    let ss: f64 = v.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (v.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!((robust_cv(&[100.0, 102.0, 98.0, 101.0, 99.0]) - 0.014826).abs() < 1e-9);
        assert!(robust_cv(&[1.0]).is_nan());
        assert!(robust_cv(&[10.0, 10.0, 10.0, 11.0]) > 0.0);
    }
}
