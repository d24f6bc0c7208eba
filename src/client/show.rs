//! `arctl show RUN N` and `arctl diff RUN N`: one experiment, rendered for a person.

use std::fmt::Write;

use super::{expect_ok, json_out, unexpected, Client, CmdResult, Error};
use crate::protocol::format::{format_metric, pct_or_dash};
use crate::protocol::{ExperimentView, Request, Response};

pub async fn run(client: &mut Client, run: String, n: u32, diff: bool, json: bool) -> CmdResult {
    let req = Request::Show {
        run,
        experiment: n,
        diff,
    };
    let v = match expect_ok(client.call(&req).await?)? {
        Response::Experiment(v) => v,
        other => return Err(unexpected(other)),
    };
    if json {
        return json_out(&v);
    }
    if diff {
        return match &v.diff {
            Some(d) => {
                print!("{d}");
                Ok(())
            }
            None => Err(Error::failed(format!(
                "experiment {n} has no diff: {}",
                v.diff_note.as_deref().unwrap_or("-")
            ))),
        };
    }
    print!("{}", render(&v));
    Ok(())
}

fn render(v: &ExperimentView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "experiment {} of {}: {}", v.experiment, v.run, v.status);
    let _ = writeln!(s, "description  {}", v.description);
    let _ = writeln!(s, "reason       {}", v.reason);
    if let Some(c) = &v.commit {
        let _ = writeln!(s, "commit       {c}");
    }
    let _ = writeln!(s, "metric       {}", format_metric(v.metric));
    if let Some(d) = &v.decision {
        let _ = writeln!(
            s,
            "decision     {} rounds, change {} (bound {}), p {:.3}",
            d.rounds,
            pct_or_dash(Some(d.estimate)),
            pct_or_dash(Some(d.lower)),
            d.p_value
        );
    }
    if v.fix_attempts > 0 {
        let _ = writeln!(s, "quick fixes  {}", v.fix_attempts);
    }
    if let Some(c) = v.cost_usd {
        let _ = writeln!(s, "cost         ${c:.2}");
    }
    if let Some(h) = &v.hypothesis {
        let _ = writeln!(s, "hypothesis   {h}");
    }
    match (&v.diff, &v.diff_note) {
        (Some(d), _) => {
            let _ = write!(s, "\n{d}");
        }
        (None, Some(why)) => {
            let _ = writeln!(s, "\ndiff: {why}");
        }
        _ => {}
    }
    for o in &v.outputs {
        let _ = writeln!(
            s,
            "\n--- {} ({} bytes), last lines:\n{}",
            o.name, o.bytes, o.tail
        );
    }
    s
}
