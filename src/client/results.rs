//! `arctl results`, `report` and `plot`: a run's experiment table, its end-of-run report,
//! and the table drawn as a progress plot.

use std::path::Path;

use super::{expect_ok, json_out, render, reports, unexpected, Client, CmdResult};
use crate::protocol::{Request, Response};

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
        Response::Results(t) => reports::write_plot(&t, output, scale),
        other => Err(unexpected(other)),
    }
}
