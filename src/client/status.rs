//! `arctl status [RUN]`: the table of runs, or one run in detail.

use super::{expect_ok, json_out, unexpected, Client, CmdResult};
use crate::protocol::{Request, Response, RunSummary};
use crate::text::render;

pub async fn run(client: &mut Client, run: Option<String>, json: bool, active: bool) -> CmdResult {
    match expect_ok(client.call(&Request::Status { run }).await?)? {
        Response::Status { mut runs, problems } => {
            if active {
                runs.retain(|r| r.state.is_active());
            }
            if json {
                // Typed, not through serde_json::Value: building, sorting and dropping Value
                // maps was ~7% of this command's CPU with 128 runs.
                #[derive(serde::Serialize)]
                struct Out<'a> {
                    runs: &'a [RunSummary],
                    problems: &'a [String],
                }
                return json_out(&Out {
                    runs: &runs,
                    problems: &problems,
                });
            }
            print!("{}", render::status_table(&runs));
            for p in problems {
                eprintln!("arctl: problem: {p}");
            }
            Ok(())
        }
        Response::Detail(d) if json => json_out(&d),
        Response::Detail(d) => {
            print!("{}", render::detail(&d));
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}
