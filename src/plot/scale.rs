//! The plot's value axis: linear or logarithmic, chosen from the data unless the user says,
//! with the ticks of each, and the frame that maps experiments and values to pixels. A log
//! axis is what a 5000x drop needs: on a linear one every point after the first keep lies
//! flat on the floor.

use super::svg::{LEFT, RIGHT, TOP, VALUES_BOTTOM, W};
use super::{end_estimate, finite, shown};
use crate::protocol::ResultsTable;

/// Past this ratio of the largest to the smallest positive value the axis goes log.
pub const LOG_RATIO: f64 = 100.0;

/// What the user asked for (`arctl plot --log / --linear`, or neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleChoice {
    #[default]
    Auto,
    Linear,
    Log,
}

/// The axis drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

impl Scale {
    pub fn as_str(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log => "log",
        }
    }

    /// A value in the axis's own space (log10 for a log axis).
    fn to_axis(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log => v.log10(),
        }
    }
}

/// The axis for `values` (the points and the running best): log when asked, or on its own
/// when every value is positive and they span more than [`LOG_RATIO`]. Asked for log over a
/// value at or below zero: the error says which.
pub fn choose(values: &[f64], choice: ScaleChoice) -> Result<Scale, String> {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match choice {
        ScaleChoice::Linear => Ok(Scale::Linear),
        ScaleChoice::Log if lo <= 0.0 => Err(format!(
            "--log needs positive values, and this run has {}: use --linear",
            crate::protocol::format::format_metric(Some(lo))
        )),
        ScaleChoice::Log => Ok(Scale::Log),
        ScaleChoice::Auto if lo > 0.0 && hi / lo > LOG_RATIO => Ok(Scale::Log),
        ScaleChoice::Auto => Ok(Scale::Linear),
    }
}

/// The experiment range (x) and the padded value range (y, in the axis's space), mapped to
/// pixels.
pub struct Frame {
    pub emin: f64,
    pub emax: f64,
    pub lo: f64,
    pub hi: f64,
    pub scale: Scale,
}

/// The values a frame must hold: the points, the running best, the end estimate.
pub fn values(t: &ResultsTable) -> Vec<f64> {
    let mut values: Vec<f64> = shown(t).into_iter().flatten().collect();
    values.extend(t.rows.iter().filter_map(|r| finite(r.best_after)));
    values
}

impl Frame {
    pub fn new(t: &ResultsTable, scale: Scale) -> Frame {
        let rows = &t.rows;
        let mut vals = values(t);
        if let Some((v, lo, hi, _)) = end_estimate(t) {
            vals.extend([v, lo, hi]);
        }
        // A log axis holds the positive values; the rest are drawn at its floor.
        let vals: Vec<f64> = vals
            .into_iter()
            .filter(|v| scale == Scale::Linear || *v > 0.0)
            .map(|v| scale.to_axis(v))
            .collect();
        let (emin, emax) = rows.iter().fold((u32::MAX, 0u32), |(lo, hi), r| {
            (lo.min(r.experiment), hi.max(r.experiment))
        });
        let (emin, emax) = if rows.is_empty() {
            (0.0, 1.0)
        } else {
            (emin as f64, (emax as f64).max(emin as f64 + 1.0))
        };
        let (mut lo, mut hi) = vals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        if !lo.is_finite() {
            lo = 0.0;
            hi = 1.0;
        }
        if hi - lo <= 0.0 {
            let pad = match scale {
                Scale::Log => 0.5,
                Scale::Linear if lo == 0.0 => 1.0,
                Scale::Linear => lo.abs() * 0.05,
            };
            lo -= pad;
            hi += pad;
        } else {
            let pad = (hi - lo) * 0.06;
            lo -= pad;
            hi += pad;
        }
        Frame {
            emin,
            emax,
            lo,
            hi,
            scale,
        }
    }

    pub fn x(&self, e: f64) -> f64 {
        LEFT + (e - self.emin) / (self.emax - self.emin) * (W - LEFT - RIGHT)
    }

    /// The pixel row of a value; on a log axis a value at or below zero sits on the floor.
    pub fn y(&self, v: f64) -> f64 {
        let a = match self.scale {
            Scale::Log if v <= 0.0 => self.lo,
            s => s.to_axis(v).clamp(self.lo, self.hi),
        };
        TOP + (self.hi - a) / (self.hi - self.lo) * (VALUES_BOTTOM - TOP)
    }

    /// The value ticks: (value, label).
    pub fn ticks(&self) -> Vec<(f64, String)> {
        match self.scale {
            Scale::Linear => linear_ticks(self.lo, self.hi),
            Scale::Log => log_ticks(self.lo, self.hi),
        }
    }
}

/// About six ticks at a "nice" step.
fn linear_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let step = nice_step(hi - lo, 6.0);
    let mut out = Vec::new();
    let mut i = (lo / step).ceil();
    while i * step <= hi + step * 1e-9 {
        let v = i * step;
        out.push((v, tick_label(v, step)));
        i += 1.0;
    }
    out
}

/// Powers of ten inside `lo..hi` (log10 space); with 2x and 5x between them when the axis
/// spans fewer than three decades.
fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let few = hi - lo < 3.0;
    let mut out = Vec::new();
    for k in (lo.floor() as i32)..=(hi.ceil() as i32) {
        let mults: &[f64] = if few { &[1.0, 2.0, 5.0] } else { &[1.0] };
        for m in mults {
            let v = m * 10f64.powi(k);
            let a = v.log10();
            if a >= lo - 1e-9 && a <= hi + 1e-9 {
                out.push((v, log_label(v)));
            }
        }
    }
    out
}

/// "0.001", "50", "1000", "1e7": plain digits in a readable range, else scientific.
fn log_label(v: f64) -> String {
    // Round away the float noise of 10^k first (0.30000000000000004 → 0.3).
    let v: f64 = format!("{v:.11e}").parse().unwrap_or(v);
    if (1e-4..1e7).contains(&v) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) for about `n` ticks over `range`.
pub fn nice_step(range: f64, n: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// A linear tick's label with the decimals its step needs; zero is "0", never "-0.0".
pub fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_only_past_a_hundredfold_of_positive_values() {
        assert_eq!(choose(&[5000.0, 1.0], ScaleChoice::Auto), Ok(Scale::Log));
        assert_eq!(choose(&[90.0, 1.0], ScaleChoice::Auto), Ok(Scale::Linear));
        assert_eq!(choose(&[5000.0, 0.0], ScaleChoice::Auto), Ok(Scale::Linear));
        assert_eq!(choose(&[2.0, 1.0], ScaleChoice::Log), Ok(Scale::Log));
        assert_eq!(
            choose(&[5000.0, 1.0], ScaleChoice::Linear),
            Ok(Scale::Linear)
        );
        assert!(choose(&[5.0, -1.0], ScaleChoice::Log)
            .unwrap_err()
            .contains("-1.0"));
    }

    #[test]
    fn ticks_read_well() {
        let labels = |t: Vec<(f64, String)>| t.into_iter().map(|x| x.1).collect::<Vec<_>>();
        // 0.5 .. 6000: decades only.
        assert_eq!(
            labels(log_ticks(0.5f64.log10(), 6000f64.log10())),
            ["1", "10", "100", "1000"]
        );
        // 3 .. 80: with 2x and 5x.
        assert_eq!(
            labels(log_ticks(3f64.log10(), 80f64.log10())),
            ["5", "10", "20", "50"]
        );
        assert_eq!(log_label(1e-5), "1e-5");
        assert_eq!(log_label(0.002), "0.002");
        // Around zero: no "-0.0".
        let lin = labels(linear_ticks(-0.31, 0.29));
        assert!(lin.contains(&"0.0".to_string()), "{lin:?}");
        assert!(lin.iter().all(|l| l != "-0.0" && l != "-0"), "{lin:?}");
        assert_eq!(tick_label(-0.0000001, 0.1), "0.0");
        assert_eq!(tick_label(-0.2, 0.1), "-0.2");
        assert_eq!(nice_step(97.0, 6.0), 20.0);
        assert_eq!(tick_label(0.25, 0.05), "0.25");
    }
}
