//! `arctl plot`: every experiment over its number, as an SVG (or a PNG of it), in the
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
//! run and the direction. The value axis goes logarithmic past a hundredfold range
//! (`scale.rs`); `svg.rs` writes the layers, `png.rs` rasterises them.

mod png;
mod scale;
mod svg;

use std::path::Path;

pub use scale::{Scale, ScaleChoice};
pub use svg::xml_escape;

use crate::protocol::format::pct;
use crate::protocol::ResultsTable;
use crate::spec::Direction;

/// The SVG of a run's experiments, its value axis chosen from the data.
pub fn svg(t: &ResultsTable) -> String {
    svg::draw(t, scale_for(t, ScaleChoice::Auto).unwrap_or(Scale::Linear))
}

/// The axis `choice` gives for this run's values (an error: log over a value <= 0).
pub fn scale_for(t: &ResultsTable, choice: ScaleChoice) -> Result<Scale, String> {
    scale::choose(&scale::values(t), choice)
}

/// What `arctl plot -o FILE` writes, by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// `.svg` or `.png` (any case); None for anything else.
    pub fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "svg" => Some(Format::Svg),
            "png" => Some(Format::Png),
            _ => None,
        }
    }
}

/// A plot ready to write.
pub struct Picture {
    pub bytes: Vec<u8>,
    pub scale: Scale,
    /// Something the user should know (a PNG without text for want of fonts).
    pub note: Option<String>,
}

/// The plot of `t` in `format` on the axis `choice` gives.
pub fn render(t: &ResultsTable, choice: ScaleChoice, format: Format) -> Result<Picture, String> {
    let scale = scale_for(t, choice)?;
    let text = svg::draw(t, scale);
    let (bytes, note) = match format {
        Format::Svg => (text.into_bytes(), None),
        Format::Png => {
            let (png, fonts) = png::rasterise(&text)?;
            let note = (!fonts).then(|| {
                "no fonts found on this system: the PNG has no text (the SVG has it)".to_string()
            });
            (png, note)
        }
    };
    Ok(Picture { bytes, scale, note })
}

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
    let interval = if g.low == g.high {
        String::new()
    } else {
        format!(" [{}, {}]", pct(g.low), pct(g.high))
    };
    let label = format!(
        "{} {}{interval}",
        if g.confirmed { "confirmed" } else { "chain" },
        pct(g.gain),
    );
    Some((v, a.min(b), a.max(b), label)).filter(|x| x.0.is_finite() && x.1.is_finite())
}

/// A metric that can be drawn: NaN and infinities count as none.
fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
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
        let f = scale::Frame::new(&t, Scale::Linear);
        assert!(
            f.y(0.1629) > f.y(0.181),
            "the best is drawn below the baseline"
        );
        assert!(s.contains("confirmed +9.00% [+5.00%, +13.00%]"), "{s}");
    }

    /// A 5000x drop: 100 → 0.02 in three keeps, with a discard between.
    fn wide() -> ResultsTable {
        let mut rows = vec![
            row(0, Some(100.0), "baseline"),
            row(1, Some(1.0), "keep"),
            row(2, Some(3.0), "discard"),
            row(3, Some(0.02), "keep"),
        ];
        let best = [100.0, 1.0, 1.0, 0.02];
        for (i, c) in [None, Some(0.99), Some(-2.0), Some(0.98)]
            .into_iter()
            .enumerate()
        {
            rows[i].change = c;
            rows[i].best_after = Some(best[i]);
        }
        ResultsTable::new("wide".into(), Direction::Lower, rows, None)
    }

    #[test]
    fn a_wide_range_goes_log_and_every_point_has_its_title() {
        let t = wide();
        let s = svg(&t);
        assert!(s.contains(r#"data-scale="log""#), "{s}");
        let ticks: Vec<&str> = s
            .split(r#"<text class="tick y""#)
            .skip(1)
            .map(|x| &x[x.find('>').unwrap() + 1..x.find("</text>").unwrap()])
            .collect();
        assert_eq!(ticks, ["0.1", "1", "10", "100"], "{s}");
        assert!(s.contains("log scale"));
        for n in 0..4 {
            assert!(
                s.contains(&format!("<title>experiment {n}: ")),
                "no title for {n}: {s}"
            );
        }
        // The kept points spread over the height, not flattened on the floor.
        let f = scale::Frame::new(&t, Scale::Log);
        let (y100, y1, y002) = (f.y(100.0), f.y(1.0), f.y(0.02));
        assert!(y1 - y100 > 100.0 && y002 - y1 > 100.0, "{y100} {y1} {y002}");
        // --linear keeps the old axis, --log refuses values at or below zero.
        let lin = render(&t, ScaleChoice::Linear, Format::Svg).unwrap();
        assert_eq!(lin.scale, Scale::Linear);
        assert!(!String::from_utf8(lin.bytes).unwrap().contains("-0.0<"));
        let mut neg = wide();
        neg.rows[2].metric = Some(-3.0);
        neg.rows[2].change = None;
        neg.rows[2].best_after = Some(-3.0);
        assert!(render(&neg, ScaleChoice::Log, Format::Svg).is_err());
        assert_eq!(scale_for(&neg, ScaleChoice::Auto), Ok(Scale::Linear));
    }

    #[test]
    fn png_by_extension_with_the_svgs_shape_at_twice_its_size() {
        assert_eq!(Format::of(Path::new("a/b.PNG")), Some(Format::Png));
        assert_eq!(Format::of(Path::new("b.svg")), Some(Format::Svg));
        assert_eq!(Format::of(Path::new("b.gif")), None);
        let p = render(&wide(), ScaleChoice::Auto, Format::Png).unwrap();
        assert_eq!(&p.bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, at bytes 16..24.
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        assert_eq!(&p.bytes[12..16], b"IHDR");
        assert_eq!((be(&p.bytes[16..20]), be(&p.bytes[20..24])), (1640, 1000));
    }
}
