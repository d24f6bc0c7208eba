//! `arctl stop`, `pause`, `resume` and `shutdown`: one request, one line of answer.

use super::{expect_ok, unexpected, Client, CmdResult};
use crate::protocol::{Request, Response};

pub async fn run(client: &mut Client, req: Request) -> CmdResult {
    match expect_ok(client.call(&req).await?)? {
        Response::Ok { message } => {
            println!("{message}");
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}
