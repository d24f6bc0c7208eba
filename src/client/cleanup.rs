//! `arctl cleanup`: remove what ended runs left in their repositories; one row per run.

use super::{expect_ok, json_out, unexpected, Client, CmdResult, Error};
use crate::protocol::{CleanupRequest, Request, Response};
use crate::text::reports;

pub async fn run(client: &mut Client, req: CleanupRequest, json: bool) -> CmdResult {
    match expect_ok(client.call(&Request::Cleanup(req)).await?)? {
        Response::Cleanup(v) => {
            if json {
                json_out(&v)?;
            } else {
                print!("{}", reports::cleanup(&v));
            }
            let failed: Vec<&str> = v
                .runs
                .iter()
                .filter(|r| r.error.is_some())
                .map(|r| r.run.as_str())
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Error::failed(format!(
                    "could not clean up: {}",
                    failed.join(", ")
                )))
            }
        }
        other => Err(unexpected(other)),
    }
}
