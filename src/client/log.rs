//! `arctl log RUN [-f]`: print the run's log; with `-f`, follow it until the run ends.

use std::io::Write;
use std::time::Duration;

use super::{expect_ok, unexpected, Client, CmdResult};
use crate::protocol::{Request, Response};

/// How long a follower waits before asking again when nothing new came.
const FOLLOW_POLL: Duration = Duration::from_millis(300);

pub async fn run(client: &mut Client, run: String, follow: bool) -> CmdResult {
    let mut offset = 0;
    loop {
        let req = Request::Log {
            run: run.clone(),
            offset,
        };
        let resp = expect_ok(client.call(&req).await?)?;
        let Response::Log {
            text,
            offset: next,
            finished,
        } = resp
        else {
            return Err(unexpected(resp));
        };
        print!("{text}");
        let _ = std::io::stdout().flush();
        offset = next;
        if !follow || (finished && text.is_empty()) {
            return Ok(());
        }
        if text.is_empty() {
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}
