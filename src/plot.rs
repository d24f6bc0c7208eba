//! `arctl plot`: every experiment over its number, as a dependency-free SVG, in the
//! baseline's terms: values measured at different times under different load are never
//! compared. The running best (a step line through the baseline and the kept experiments)
//! is the baseline moved by the chain of the kept experiments' paired estimates; each
//! experiment's point is the best of its time moved by its own paired estimate; the final
//! confirmation, when the run has one, is a diamond with its interval at the right end.
//!
//! Drawn from the experiment table (`arctl results`), so the daemon needs no extra request.
//! Every experiment is one `<circle class="exp STATUS" data-experiment="N" ...>`
//! (`data-metric` is the TSV's raw value, `data-shown` where it is drawn): the baseline and
//! kept ones solid, discarded, crashed and inspector-rejected ones faded. Experiments without
//! a measurement (crashes, "no change", rejections before measuring) sit on a separate lane
//! under the plot area, labelled "no metric", so each experiment still has its point. The
//! baseline is a dashed horizontal line; axes carry labels and ticks; the title names the
//! run and the direction.

use std::fmt::Write;

use crate::protocol::format::{format_metric, pct};
use crate::protocol::ResultsTable;
use crate::spec::Direction;

/// Where each row is drawn, in the baseline's terms: the baseline at its value, a measured
/// experiment at the best of its time moved by its own change, the rest nowhere (the lane).
fn shown(t: &ResultsTable) -> Vec<Option<f64>> {
    let mut prev: Option<f64> = None;
    t.rows
        .iter()
        .map(|r| {
            let y = if r.status == "baseline" {
                finite(r.metric)
            } else {
                match (prev, r.change) {
                    (Some(p), Some(c)) => finite(Some(move_by(p, c, t.direction))),
                    _ => None,
                }
            };
            if let Some(b) = finite(r.best_after) {
                prev = Some(b);
            } else if r.status == "baseline" {
                prev = finite(r.metric);
            }
            y
        })
        .collect()
}

/// `value` moved by a relative gain in the metric's direction.
fn move_by(value: f64, gain: f64, direction: Direction) -> f64 {
    match direction {
        Direction::Lower => value * (1.0 - gain),
        Direction::Higher => value * (1.0 + gain),
    }
}

/// The final confirmation (or the chain) at the right end: (value, low, high, label).
fn end_estimate(t: &ResultsTable) -> Option<(f64, f64, f64, String)> {
    let g = t.gain?;
    let base = t
        .rows
        .iter()
        .find(|r| r.status == "baseline")
        .and_then(|r| finite(r.metric))?;
    let v = move_by(base, g.gain, t.direction);
    let (a, b) = (
        move_by(base, g.low, t.direction),
        move_by(base, g.high, t.direction),
    );
    let label = format!(
        "{} {} [{}, {}]",
        if g.confirmed { "confirmed" } else { "chain" },
        pct(g.gain),
        pct(g.low),
        pct(g.high)
    );
    Some((v, a.min(b), a.max(b), label)).filter(|x| x.0.is_finite() && x.1.is_finite())
}

const W: f64 = 820.0;
const H: f64 = 500.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 60.0;
/// Bottom of the value area.
const VALUES_BOTTOM: f64 = 380.0;
/// The lane of experiments without a metric.
const LANE: f64 = 402.0;
/// The x axis.
const AXIS: f64 = 418.0;

/// Escape text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) for about `n` ticks over `range`.
fn nice_step(range: f64, n: f64) -> f64 {
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

fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    let s = format!("{v:.decimals$}");
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// A metric that can be drawn: NaN and infinities count as none.
fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// The experiment range (x) and the padded value range (y), mapped to pixels.
struct Frame {
    emin: f64,
    emax: f64,
    lo: f64,
    hi: f64,
}

impl Frame {
    fn new(t: &ResultsTable) -> Frame {
        let rows = &t.rows;
        let mut values: Vec<f64> = shown(t).into_iter().flatten().collect();
        values.extend(rows.iter().filter_map(|r| finite(r.best_after)));
        if let Some((v, lo, hi, _)) = end_estimate(t) {
            values.extend([v, lo, hi]);
        }
        let (emin, emax) = rows.iter().fold((u32::MAX, 0u32), |(lo, hi), r| {
            (lo.min(r.experiment), hi.max(r.experiment))
        });
        let (emin, emax) = if rows.is_empty() {
            (0.0, 1.0)
        } else {
            (emin as f64, (emax as f64).max(emin as f64 + 1.0))
        };
        let (mut lo, mut hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        if !lo.is_finite() {
            lo = 0.0;
            hi = 1.0;
        }
        if hi - lo <= 0.0 {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.05 };
            lo -= pad;
            hi += pad;
        } else {
            let pad = (hi - lo) * 0.06;
            lo -= pad;
            hi += pad;
        }
        Frame { emin, emax, lo, hi }
    }

    fn x(&self, e: f64) -> f64 {
        LEFT + (e - self.emin) / (self.emax - self.emin) * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        TOP + (self.hi - v) / (self.hi - self.lo) * (VALUES_BOTTOM - TOP)
    }
}

/// The SVG of a run's experiments.
pub fn svg(t: &ResultsTable) -> String {
    let rows = &t.rows;
    let f = Frame::new(t);
    let better = match t.direction {
        Direction::Lower => "lower is better",
        Direction::Higher => "higher is better",
    };
    let no_metric = shown(t).iter().filter(|y| y.is_none()).count();
    let mut s = String::new();
    header(&mut s, &t.run, better);
    y_ticks(&mut s, &f);
    x_ticks(&mut s, &f);
    axes(&mut s, better, no_metric);
    let baseline = rows
        .iter()
        .find(|r| r.status == "baseline")
        .and_then(|r| finite(r.metric));
    if let Some(b) = baseline {
        baseline_line(&mut s, &f, b);
    }
    best_line(&mut s, &f, t);
    points(&mut s, &f, t);
    end_marker(&mut s, &f, t);
    legend(&mut s, t, no_metric);
    s.push_str("</svg>\n");
    s
}

/// The XML prolog, the styles of every class, the background and the title.
fn header(s: &mut String, run: &str, better: &str) {
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<style>
  .exp {{ stroke: #ffffff; stroke-width: 1; }}
  .exp.keep {{ fill: #1a7f37; }}
  .exp.baseline {{ fill: #0969da; }}
  .exp.discard {{ fill: #6e7781; opacity: 0.4; }}
  .exp.crash {{ fill: #cf222e; opacity: 0.45; }}
  .exp.inspector-reject {{ fill: #bf8700; opacity: 0.45; }}
  .best {{ fill: none; stroke: #1a7f37; stroke-width: 2; }}
  .confirmation {{ fill: #8250df; stroke: #8250df; stroke-width: 2; }}
  .baseline-line {{ stroke: #0969da; stroke-width: 1; stroke-dasharray: 6 4; }}
  .grid {{ stroke: #d0d7de; stroke-width: 0.5; }}
  .axis {{ stroke: #24292f; stroke-width: 1; }}
</style>
<rect width="{W}" height="{H}" fill="#ffffff"/>
<text x="{tx}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{title}</text>"##,
        tx = W / 2.0,
        title = xml_escape(&format!(
            "arctl run {run}: metric per experiment ({better})"
        )),
    );
}

/// Horizontal grid lines with their value labels.
fn y_ticks(s: &mut String, f: &Frame) {
    let ystep = nice_step(f.hi - f.lo, 6.0);
    let mut v = (f.lo / ystep).ceil() * ystep;
    while v <= f.hi + ystep * 1e-9 {
        let yy = f.y(v);
        let _ = writeln!(
            s,
            r##"<line class="grid" x1="{LEFT}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}"/>"##,
            x2 = W - RIGHT
        );
        let _ = writeln!(
            s,
            r##"<text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"##,
            tx = LEFT - 8.0,
            ty = yy + 4.0,
            label = xml_escape(&tick_label(v, ystep))
        );
        v += ystep;
    }
}

/// Tick marks and experiment numbers under the x axis.
fn x_ticks(s: &mut String, f: &Frame) {
    let xstep = nice_step(f.emax - f.emin, 10.0).max(1.0).round();
    let mut e = (f.emin / xstep).ceil() * xstep;
    while e <= f.emax + 1e-9 {
        let xx = f.x(e);
        let _ = writeln!(
            s,
            r##"<line class="axis" x1="{xx:.1}" y1="{AXIS}" x2="{xx:.1}" y2="{y2}"/>"##,
            y2 = AXIS + 5.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{xx:.1}" y="{ty}" text-anchor="middle">{e}</text>"##,
            ty = AXIS + 18.0
        );
        e += xstep;
    }
}

/// Both axes, their labels, and the "no metric" lane's label when the lane is used.
fn axes(s: &mut String, better: &str, no_metric: usize) {
    let _ = writeln!(
        s,
        r##"<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{AXIS}"/>"##
    );
    let _ = writeln!(
        s,
        r##"<line class="axis" x1="{LEFT}" y1="{AXIS}" x2="{x2}" y2="{AXIS}"/>"##,
        x2 = W - RIGHT
    );
    let _ = writeln!(
        s,
        r##"<text x="{tx}" y="{ty}" text-anchor="middle">experiment</text>"##,
        tx = (LEFT + W - RIGHT) / 2.0,
        ty = AXIS + 40.0
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="{ty}" text-anchor="middle" transform="rotate(-90 20 {ty})">metric in the baseline's terms ({better})</text>"##,
        ty = (TOP + VALUES_BOTTOM) / 2.0
    );
    if no_metric > 0 {
        let _ = writeln!(
            s,
            r##"<text x="{tx}" y="{ty}" text-anchor="end" font-size="10" fill="#57606a">no metric</text>"##,
            tx = LEFT - 8.0,
            ty = LANE + 4.0
        );
    }
}

/// The baseline's dashed line and its value.
fn baseline_line(s: &mut String, f: &Frame, b: f64) {
    let yy = f.y(b);
    let _ = writeln!(
        s,
        r##"<line class="baseline-line" x1="{LEFT}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}"/>"##,
        x2 = W - RIGHT
    );
    let _ = writeln!(
        s,
        r##"<text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="11" fill="#0969da">baseline {label}</text>"##,
        tx = W - RIGHT - 4.0,
        ty = yy - 5.0,
        label = xml_escape(&format_metric(Some(b)))
    );
}

/// The running best in the baseline's terms: a step line through the baseline and the kept
/// experiments, at the baseline moved by the chain of kept estimates.
fn best_line(s: &mut String, f: &Frame, t: &ResultsTable) {
    let mut path = String::new();
    for (r, y) in t.rows.iter().zip(shown(t)) {
        if r.status != "baseline" && r.status != "keep" {
            continue;
        }
        let Some(m) = finite(r.best_after).or(y) else {
            continue;
        };
        if path.is_empty() {
            let _ = write!(path, "M{:.1},{:.1}", f.x(r.experiment as f64), f.y(m));
        } else {
            let _ = write!(path, " H{:.1} V{:.1}", f.x(r.experiment as f64), f.y(m));
        }
    }
    if !path.is_empty() {
        let _ = write!(path, " H{:.1}", f.x(f.emax));
        let _ = writeln!(s, r##"<path class="best" d="{path}"/>"##);
    }
}

/// One point per experiment, on the lane when nothing was measured.
fn points(s: &mut String, f: &Frame, t: &ResultsTable) {
    for (r, y) in t.rows.iter().zip(shown(t)) {
        let status = xml_escape(&r.status);
        let metric = finite(r.metric)
            .map(|m| format_metric(Some(m)))
            .unwrap_or_else(|| "none".to_string());
        let (cy, at) = match y {
            Some(v) => (f.y(v), format_metric(Some(v))),
            None => (LANE, "none".to_string()),
        };
        let radius = if r.status == "keep" || r.status == "baseline" {
            5.0
        } else {
            3.5
        };
        let _ = writeln!(
            s,
            r##"<circle class="exp {status}" data-experiment="{n}" data-status="{status}" data-metric="{m}" data-shown="{at}" cx="{cx:.1}" cy="{cy:.1}" r="{radius}"><title>{tip}</title></circle>"##,
            n = r.experiment,
            m = xml_escape(&metric),
            at = xml_escape(&at),
            cx = f.x(r.experiment as f64),
            tip = xml_escape(&format!(
                "#{} {} {} ({} against the best of its time): {}",
                r.experiment,
                r.status,
                metric,
                r.change.map(pct).unwrap_or_else(|| "-".into()),
                r.description
            )),
        );
    }
}

/// The final confirmation (or the chain) at the right end: a diamond, its interval, a label.
fn end_marker(s: &mut String, f: &Frame, t: &ResultsTable) {
    let Some((v, lo, hi, label)) = end_estimate(t) else {
        return;
    };
    let (x, y) = (f.x(f.emax), f.y(v));
    let _ = writeln!(
        s,
        r##"<line class="confirmation" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"/>"##,
        f.y(lo),
        f.y(hi)
    );
    let _ = writeln!(
        s,
        r##"<path class="confirmation" data-shown="{}" d="M{x:.1},{:.1} l6,6 l-6,6 l-6,-6 z"><title>{}</title></path>"##,
        xml_escape(&format_metric(Some(v))),
        y - 6.0,
        xml_escape(&label)
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#8250df">{}</text>"##,
        x - 8.0,
        y - 8.0,
        xml_escape(&label)
    );
}

/// The legend along the top and the counts in the bottom corner.
fn legend(s: &mut String, t: &ResultsTable, no_metric: usize) {
    let items = [
        ("keep", "kept (running best)"),
        ("discard", "discarded"),
        ("crash", "crashed"),
        ("inspector-reject", "rejected"),
    ];
    let mut lx = LEFT + 10.0;
    for (class, label) in items {
        let _ = writeln!(
            s,
            r##"<circle class="legend {class}" cx="{lx:.1}" cy="46" r="4" fill="{fill}" opacity="{op}"/>"##,
            fill = legend_fill(class),
            op = if class == "keep" { 1.0 } else { 0.5 }
        );
        let _ = writeln!(
            s,
            r##"<text x="{tx:.1}" y="50" font-size="11">{label}</text>"##,
            tx = lx + 8.0
        );
        lx += 8.0 + label.len() as f64 * 6.5 + 18.0;
    }
    let total = t.rows.iter().filter(|r| r.status != "baseline").count();
    let kept = t.rows.iter().filter(|r| r.status == "keep").count();
    let _ = writeln!(
        s,
        r##"<text x="{tx}" y="{ty}" text-anchor="end" font-size="11" fill="#57606a">{text}</text>"##,
        tx = W - RIGHT,
        ty = H - 12.0,
        text = xml_escape(&format!(
            "{}, {kept} kept{}",
            crate::protocol::format::count(total, "experiment"),
            if no_metric > 0 {
                format!(", {no_metric} without a metric (bottom lane)")
            } else {
                String::new()
            }
        ))
    );
}

fn legend_fill(class: &str) -> &'static str {
    match class {
        "keep" => "#1a7f37",
        "discard" => "#6e7781",
        "crash" => "#cf222e",
        _ => "#bf8700",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ResultRow;

    fn row(n: u32, metric: Option<f64>, status: &str) -> ResultRow {
        ResultRow {
            experiment: n,
            commit: "abc1234".into(),
            metric,
            status: status.into(),
            description: "a <b> & \"c\"".into(),
            change: None,
            confidence: None,
            reason: String::new(),
            rounds: None,
            interval: None,
            best_after: None,
        }
    }

    #[test]
    fn one_point_per_experiment_escaped_and_balanced() {
        let mut rows = vec![
            row(0, Some(100.0), "baseline"),
            row(1, Some(90.0), "keep"),
            row(2, Some(120.0), "discard"),
            row(3, None, "crash"),
            row(4, Some(80.0), "keep"),
        ];
        for (r, c) in rows
            .iter_mut()
            .zip([None, Some(0.1), Some(-0.2), None, Some(0.1)])
        {
            r.change = c;
        }
        let t = ResultsTable::new("r&d".into(), Direction::Lower, rows, None);
        let s = svg(&t);
        assert_eq!(s.matches("<circle class=\"exp ").count(), 5);
        assert!(s.contains(r##"data-experiment="3" data-status="crash" data-metric="none""##));
        assert!(s.contains("r&amp;d") && s.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
        assert!(!s.contains("NaN") && !s.contains("inf"));
        assert_eq!(
            s.matches("<circle").count(),
            s.matches("</circle>").count() + 4
        );
        assert!(s.contains("class=\"best\"") && s.contains("baseline 100.0"));
        // Degenerate input still draws.
        let one = ResultsTable::new(
            "x".into(),
            Direction::Higher,
            vec![row(0, Some(5.0), "baseline")],
            None,
        );
        assert_eq!(svg(&one).matches("<circle class=\"exp ").count(), 1);
        assert_eq!(nice_step(97.0, 6.0), 20.0);
        assert_eq!(tick_label(0.25, 0.05), "0.25");
    }

    #[test]
    fn the_best_line_follows_the_chain_not_the_raw_values() {
        // A keep measured on a loaded machine: raw 0.237 against a 0.181 baseline, its
        // paired estimate +10%. The best line must go down (lower is better) to 0.1629.
        let mut keep = row(1, Some(0.237), "keep");
        keep.change = Some(0.10);
        keep.best_after = Some(0.181 * 0.9);
        let mut base = row(0, Some(0.181), "baseline");
        base.best_after = Some(0.181);
        let gain = crate::protocol::GainEstimate {
            gain: 0.09,
            low: 0.05,
            high: 0.13,
            confirmed: true,
            significant: true,
            kept: 1,
            rounds: Some(12),
        };
        let t = ResultsTable::new("r".into(), Direction::Lower, vec![base, keep], Some(gain));
        let s = svg(&t);
        assert!(
            s.contains(r#"data-metric="0.237" data-shown="0.1629""#),
            "{s}"
        );
        let f = Frame::new(&t);
        assert!(
            f.y(0.1629) > f.y(0.181),
            "the best is drawn below the baseline"
        );
        assert!(s.contains("confirmed +9.00% [+5.00%, +13.00%]"), "{s}");
    }
}
