//! `arctl merge`: land finished runs on their base; the daemon re-measures and answers with
//! one row per run.

use super::{expect_ok, json_out, unexpected, Client, CmdResult, Error};
use crate::protocol::{MergeRequest, Request, Response};
use crate::text::reports;

pub async fn run(client: &mut Client, req: MergeRequest, json: bool) -> CmdResult {
    if !req.dry_run {
        eprintln!("arctl: merging; runs merged on top of others are re-measured first (progress: `arctl log RUN -f`)");
    }
    match expect_ok(client.call(&Request::Merge(req)).await?)? {
        Response::Merge(v) => {
            if json {
                json_out(&v)?;
            } else {
                print!("{}", reports::merge(&v));
            }
            match &v.error {
                Some(e) => Err(Error::failed(format!("the merge stopped: {e}"))),
                None => Ok(()),
            }
        }
        other => Err(unexpected(other)),
    }
}
