//! `arctl plot -o progress.png`: the plot's SVG rasterised by resvg (pure Rust), at twice
//! its size so text stays sharp on a high-density screen. Text needs a font: the system's
//! (fontconfig's folders); on a machine without any the picture has no text, and the
//! caller is told.

use resvg::{tiny_skia, usvg};

/// How many pixels per SVG unit.
pub const ZOOM: f32 = 2.0;

/// A PNG of `svg`, and whether the text could be drawn (some font was found).
pub fn rasterise(svg: &str) -> Result<(Vec<u8>, bool), String> {
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    let has_fonts = !db.is_empty();
    // "sans-serif" means Arial to fontdb; point it at a sans face this system has.
    let sans = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans"]
        .into_iter()
        .find(|f| {
            db.faces()
                .any(|face| face.families.iter().any(|(n, _)| n == f))
        })
        .map(str::to_string)
        .or_else(|| {
            db.faces()
                .next()
                .and_then(|f| f.families.first().map(|(n, _)| n.clone()))
        });
    if let Some(family) = sans {
        db.set_sans_serif_family(family.clone());
        opt.font_family = family;
    }
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| format!("the plot's SVG: {e}"))?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(ZOOM)
        .ok_or("an empty plot")?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| format!("no {}x{} picture", size.width(), size.height()))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(ZOOM, ZOOM),
        &mut pixmap.as_mut(),
    );
    let png = pixmap
        .encode_png()
        .map_err(|e| format!("encoding the PNG: {e}"))?;
    Ok((png, has_fonts))
}
