//! How the numbers of a decision are written in its reason: percentages, gains, p-values,
//! confidence levels.

fn trim_num(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

pub(super) fn fmt_pct(x: f64) -> String {
    if x.is_finite() {
        format!("{}%", trim_num(x * 100.0, 2))
    } else {
        format!("{x}")
    }
}

/// A gain: a percentage when relative, else a signed absolute number.
pub(super) fn fmt_gain(x: f64, relative: bool) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if relative {
        format!("{:+.1}%", x * 100.0)
    } else {
        format!("{x:+}")
    }
}

pub(super) fn fmt_num(x: f64) -> String {
    format!("{x}")
}

pub(super) fn fmt_p(p: f64) -> String {
    if p < 0.0001 {
        "<0.0001".to_string()
    } else {
        format!("{p:.4}")
    }
}

/// A one-sided confidence level `1 - a`, as a percentage ("99.46%").
pub(super) fn fmt_level(a: f64) -> String {
    format!("{}%", trim_num((1.0 - a) * 100.0, 2))
}
