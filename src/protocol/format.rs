//! How numbers and commits are written wherever arctl shows them (tables, reports, the TSV,
//! commit messages, logs): one spelling each.

/// The metric column: the value, or the seed's `0.0` for a run that produced none.
pub fn format_metric(v: Option<f64>) -> String {
    match v {
        // Very large or very small values in scientific notation (1e308 has 309 digits).
        Some(v) if v.is_finite() && v != 0.0 && !(1e-6..1e15).contains(&v.abs()) => {
            format!("{v:e}")
        }
        Some(v) if v.is_finite() => {
            let s = format!("{v:.6}");
            let s = s.trim_end_matches('0');
            if s.ends_with('.') {
                format!("{s}0")
            } else {
                s.to_string()
            }
        }
        _ => "0.0".into(),
    }
}

/// A metric value, or `-` when there is none.
pub fn metric_or_dash(v: Option<f64>) -> String {
    v.map(|v| format_metric(Some(v)))
        .unwrap_or_else(|| "-".into())
}

/// A relative change as a signed percentage: `+5.20%`.
pub fn pct(v: f64) -> String {
    format!("{:+.2}%", v * 100.0)
}

/// A relative change, or `-` when there is none (or it is not finite).
pub fn pct_or_dash(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => pct(v),
        _ => "-".into(),
    }
}

/// A count with its noun, singular or plural as English wants: "1 experiment",
/// "2 experiments", "0 rounds". Nouns that take more than an "s" pass their plural.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The short form of a commit id (7 characters, as `git log --oneline`).
pub fn short_commit(c: &str) -> &str {
    &c[..7.min(c.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(format_metric(Some(142.0)), "142.0");
        assert_eq!(format_metric(Some(0.000123)), "0.000123");
        assert_eq!(format_metric(None), "0.0");
        assert_eq!(format_metric(Some(1e308)), "1e308");
        assert_eq!(format_metric(Some(-2.5e-9)), "-2.5e-9");
        assert_eq!(format_metric(Some(123456789.0)), "123456789.0");
        assert_eq!(metric_or_dash(None), "-");
        assert_eq!(pct(0.052), "+5.20%");
        assert_eq!(pct_or_dash(Some(f64::NAN)), "-");
        assert_eq!(short_commit("a1b2c3d4e5"), "a1b2c3d");
        assert_eq!(short_commit("ab"), "ab");
        assert_eq!(count(1, "experiment"), "1 experiment");
        assert_eq!(count(0, "experiment"), "0 experiments");
        assert_eq!(count(12, "round"), "12 rounds");
    }
}
