//! `forget RUN [--purge]`: drop an ended, cleaned-up run from the list. Its history (record,
//! journal, TSV, log) moves aside to `<state>/forgotten/`, or is deleted with `--purge`;
//! either way its id is free for a new run.

use super::{find, Registry};
use crate::protocol::{Error, OpResult, Response};

pub fn handle(reg: &Registry, id: &str, purge: bool) -> OpResult<Response> {
    let h = find(reg, id)?;
    let rec = h.record();
    if rec.state().is_active() || h.is_thread_running() {
        return Err(Error::bad_input(format!(
            "run {id} is {}: stop it first with `arctl stop {id}`",
            rec.state().as_str()
        )));
    }
    if !rec.cleaned_up && rec.worktree.exists() {
        return Err(Error::bad_input(format!(
            "run {id} still has its worktree {}: `arctl cleanup {id}` first (forgetting it would leave the worktree and branch behind, unknown to arctl)",
            rec.worktree.display()
        )));
    }
    let _creating = reg.creating.lock().unwrap_or_else(|e| e.into_inner());
    let dir = h.paths.dir.clone();
    let moved = if purge {
        std::fs::remove_dir_all(&dir).map(|_| None)
    } else {
        let aside = reg.config.state_dir.join("forgotten");
        let to = aside.join(format!("{id}.{}", crate::store::now_ms()));
        std::fs::create_dir_all(&aside)
            .and_then(|_| std::fs::rename(&dir, &to))
            .map(|_| Some(to))
    }
    .map_err(|e| Error::failed(format!("removing {}: {e}", dir.display())))?;
    reg.runs().remove(id);
    tracing::info!(run = %id, purge, "run forgotten");
    Ok(Response::ok(match moved {
        Some(to) => format!(
            "run {id} forgotten; its history is kept in {}",
            to.display()
        ),
        None => format!("run {id} forgotten and its history deleted"),
    }))
}
