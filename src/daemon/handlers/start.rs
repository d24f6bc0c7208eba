//! `start SPEC`: resolve the spec (once), let its executor check what it can, create the
//! run (one creation at a time, so two starts cannot race past the id and scope checks),
//! register it and start its thread.

use std::path::Path;
use std::sync::Arc;

use super::Registry;
use crate::protocol::{Error, OpResult, Response, StartedRun};
use crate::run::record::RunPaths;
use crate::run::setup::{self, ActiveScope};
use crate::run::{thread, RunHandle};

pub fn handle(
    reg: &Registry,
    spec_path: &Path,
    spec_text: &str,
    id: Option<String>,
) -> OpResult<Response> {
    let mut resolved = setup::resolve(&reg.global, spec_path, spec_text)?;
    if let Some(id) = id {
        resolved.id =
            crate::spec::RunId::parse(&id).map_err(|e| Error::bad_input(format!("--id: {e}")))?;
    }
    // A cluster executor is checked first, without the creation lock (it submits a job).
    let note = setup::preflight(&reg.global, &resolved)?;
    // The registry itself is only locked to read the active scopes and to add the run, so
    // `status` and the other requests are not held up by a checkout.
    let _creating = reg.creating.lock().unwrap_or_else(|e| e.into_inner());
    if reg.shutting_down() {
        return Err(Error::failed("the daemon is shutting down"));
    }
    let active: Vec<ActiveScope> = reg
        .runs()
        .values()
        .filter_map(|h| {
            let l = h.live();
            l.record.state().is_active().then(|| ActiveScope {
                id: l.record.id.clone(),
                repo: l.record.repo.clone(),
                scope: l.record.spec.spec.scope.clone(),
            })
        })
        .collect();
    let (record, warnings) = setup::create(&reg.global, resolved, spec_text, &active)?;
    let started = StartedRun {
        id: record.id.clone(),
        worktree: record.worktree.clone(),
        branch: record.branch.clone(),
        warnings,
    };
    let paths = RunPaths::new(&reg.config.state_dir, &started.id);
    let handle = Arc::new(RunHandle::new(record, paths, Vec::new()));
    handle.log_line(&format!(
        "created: worktree {} on {}",
        started.worktree.display(),
        started.branch
    ));
    for line in note.iter().chain(&started.warnings) {
        handle.log_line(line);
    }
    tracing::info!(run = %started.id, worktree = %started.worktree.display(), "run created");
    reg.runs().insert(started.id.clone(), handle.clone());
    thread::spawn(handle, reg.global.clone());
    Ok(Response::Started(started))
}
