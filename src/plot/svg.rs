//! The plot's SVG, layer by layer: the frame's ticks and axes, the baseline, the running
//! best, one point per experiment (each with a `<title>` a viewer shows on hover), the end
//! estimate and the legend. `mod.rs` decides what is drawn where; this file only writes it.

use std::fmt::Write;

use super::scale::{nice_step, Frame, Scale};
use super::{end_estimate, finite, shown};
use crate::protocol::format::{format_metric, pct};
use crate::protocol::ResultsTable;
use crate::spec::Direction;

pub const W: f64 = 820.0;
pub const H: f64 = 500.0;
pub const LEFT: f64 = 90.0;
pub const RIGHT: f64 = 30.0;
pub const TOP: f64 = 60.0;
/// Bottom of the value area.
pub const VALUES_BOTTOM: f64 = 380.0;
/// The lane of experiments without a metric.
pub const LANE: f64 = 402.0;
/// The x axis.
pub const AXIS: f64 = 418.0;

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

/// The SVG of a run's experiments.
pub fn draw(t: &ResultsTable, scale: Scale) -> String {
    let rows = &t.rows;
    let f = Frame::new(t, scale);
    let better = match t.direction {
        Direction::Lower => "lower is better",
        Direction::Higher => "higher is better",
    };
    let no_metric = shown(t).iter().filter(|y| y.is_none()).count();
    let mut s = String::new();
    header(&mut s, &t.run, better, scale);
    y_ticks(&mut s, &f);
    x_ticks(&mut s, &f);
    axes(&mut s, better, no_metric, scale);
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
fn header(s: &mut String, run: &str, better: &str, scale: Scale) {
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" data-scale="{scale}" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
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
        scale = scale.as_str(),
        title = xml_escape(&format!(
            "arctl run {run}: metric per experiment ({better})"
        )),
    );
}

/// Horizontal grid lines with their value labels (`class="tick y"`).
fn y_ticks(s: &mut String, f: &Frame) {
    for (v, label) in f.ticks() {
        let yy = f.y(v);
        let _ = writeln!(
            s,
            r##"<line class="grid" x1="{LEFT}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}"/>"##,
            x2 = W - RIGHT
        );
        let _ = writeln!(
            s,
            r##"<text class="tick y" x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"##,
            tx = LEFT - 8.0,
            ty = yy + 4.0,
            label = xml_escape(&label)
        );
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
fn axes(s: &mut String, better: &str, no_metric: usize, scale: Scale) {
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
        r##"<text x="20" y="{ty}" text-anchor="middle" transform="rotate(-90 20 {ty})">metric in the baseline's terms ({better}{log})</text>"##,
        ty = (TOP + VALUES_BOTTOM) / 2.0,
        log = if scale == Scale::Log {
            ", log scale"
        } else {
            ""
        }
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
                "experiment {}: {}, {} ({} against the best of its time): {}",
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
    // A deterministic confirmation has no interval (and a line of no length is no line).
    if f.y(lo) != f.y(hi) {
        let _ = writeln!(
            s,
            r##"<line class="confirmation" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"/>"##,
            f.y(lo),
            f.y(hi)
        );
    }
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
