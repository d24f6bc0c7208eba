//! `arctl results`, `report` and `plot`: a run's experiment table, its end-of-run report,
//! and the table drawn as a progress plot.

use std::path::Path;

use super::{expect_ok, json_out, unexpected, Client, CmdResult, Error};
use crate::protocol::format::count;
use crate::protocol::{Request, Response, ResultsTable};
use crate::text::{render, reports};

pub async fn results(client: &mut Client, run: String, json: bool) -> CmdResult {
    match expect_ok(client.call(&Request::Results { run }).await?)? {
        Response::Results(t) if json => json_out(&t),
        Response::Results(t) => {
            print!("{}", render::results(&t));
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}

pub async fn report(client: &mut Client, run: String, json: bool) -> CmdResult {
    match expect_ok(client.call(&Request::Report { run }).await?)? {
        Response::Report(v) if json => json_out(&v),
        Response::Report(v) => {
            print!("{}", reports::report(&v));
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}

pub async fn plot(
    client: &mut Client,
    run: String,
    output: &Path,
    scale: crate::plot::ScaleChoice,
) -> CmdResult {
    match expect_ok(client.call(&Request::Results { run }).await?)? {
        Response::Results(t) => write_plot(&t, output, scale),
        other => Err(unexpected(other)),
    }
}

/// `arctl plot` writes SVG: refuse another file name before asking the daemon.
pub fn check_plot_file(path: &std::path::Path) -> CmdResult {
    match crate::plot::Format::of(path) {
        Some(_) => Ok(()),
        None => Err(Error::bad_input(format!(
            "{}: arctl plot writes SVG or PNG; name the file *.svg or *.png",
            path.display()
        ))),
    }
}

/// `arctl plot`: write the SVG or PNG (by the file's extension) and say where.
pub fn write_plot(
    t: &ResultsTable,
    path: &std::path::Path,
    scale: crate::plot::ScaleChoice,
) -> CmdResult {
    check_plot_file(path)?;
    let format = crate::plot::Format::of(path).unwrap_or(crate::plot::Format::Svg);
    let picture = crate::plot::render(t, scale, format).map_err(|e| {
        if scale == crate::plot::ScaleChoice::Log {
            Error::bad_input(e)
        } else {
            Error::failed(format!("plotting {}: {e}", t.run))
        }
    })?;
    std::fs::write(path, &picture.bytes)
        .map_err(|e| Error::failed(format!("writing {}: {e}", path.display())))?;
    let total = t.rows.iter().filter(|r| r.status != "baseline").count();
    let kept = t.rows.iter().filter(|r| r.status == "keep").count();
    println!(
        "wrote {} ({}, {kept} kept; {} scale)",
        path.display(),
        count(total, "experiment"),
        picture.scale.as_str()
    );
    if let Some(n) = picture.note {
        eprintln!("arctl: note: {n}");
    }
    Ok(())
}
