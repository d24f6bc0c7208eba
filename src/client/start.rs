//! `arctl start SPEC`: send the (already validated) spec; print the new run's id.

use super::{expect_ok, json_out, unexpected, Client, CmdResult};
use crate::protocol::{Request, Response};
use crate::spec::ResolvedSpec;

pub async fn run(
    client: &mut Client,
    resolved: &ResolvedSpec,
    text: String,
    id: Option<String>,
    json: bool,
) -> CmdResult {
    let shown_id = id.clone().unwrap_or_else(|| resolved.id.to_string());
    // Creating a worktree of a big repo takes a while: show that something happens.
    let spinner = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!("creating the worktree and branch for {shown_id}"));
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        pb
    });
    let resp = client
        .call(&Request::Start {
            spec_path: resolved.spec_file.clone(),
            spec_text: text,
            id,
        })
        .await?;
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    match expect_ok(resp)? {
        Response::Started(s) if json => json_out(&s),
        Response::Started(s) => {
            for w in &s.warnings {
                eprintln!("arctl: warning: {w}");
            }
            println!("{}", s.id);
            eprintln!(
                "started run {} on branch {} in {}\n  follow it: arctl status {0} | arctl watch {0} | arctl log {0} -f",
                s.id,
                s.branch,
                s.worktree.display()
            );
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}
